// The C++ reference loop of the pipe benchmark (bench/pipe.bench): the same
// work bench/pipe-peer does from TypeScript, on a pipe end opened here
// through cpp/core/pipe. tx writes a sequence number into each frame and
// sets its length; rx checks the number and length of each frame and
// releases it. Both spin on sync, as the TypeScript loop does.
#include <time.h>

#include <cstring>

#include "core/clock.h"
#include "core/pipe.h"
#include "napi/napi_util.h"
#include "tools/tools.h"

namespace nm {

namespace {

// pipeBenchLoop(path, end, {rings, slots, bufSize, extraBufs}, name, role 'tx'|'rx', count, len, batch)
//   -> {frames, errors, ns}; waits (up to a minute) for the peer end first.
Napi::Value PipeBenchLoop(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 8 || !info[0].IsString() || !info[2].IsObject() || !info[3].IsString() || !info[4].IsString())
    throw Napi::TypeError::New(env, "pipeBenchLoop(path, end, params, name, role, count, len, batch)");
  const std::string path = info[0].As<Napi::String>();
  const uint32_t end_no = arg_u32(info, 1, "end");
  const std::string name = info[3].As<Napi::String>();
  const std::string role = info[4].As<Napi::String>();
  if (role != "tx" && role != "rx") throw Napi::TypeError::New(env, "role must be 'tx' or 'rx'");
  const bool tx = role == "tx";
  const uint32_t count = arg_u32(info, 5, "count");
  const uint32_t len = arg_u32(info, 6, "len");
  const uint32_t batch = arg_u32(info, 7, "batch");
  const Layout want = unwrap(env, compute_layout(pipe_params_from(info[2].As<Napi::Object>())));
  PipeEnd end = unwrap(env, PipeEnd::open(path, end_no, want, name));
  const Layout &l = end.layout();
  if (len < 4 || len > l.p.buf_size) throw Napi::RangeError::New(env, "len out of range");
  if (batch == 0) throw Napi::RangeError::New(env, "batch must be at least 1");

  // both loops time the same traffic: start once the peer is there
  const int64_t give_up = mono_ns() + 60'000'000'000LL;
  while (end.peer_state() != PeerState::kOpen) {
    if (mono_ns() > give_up) throw coded_error(env, "pipe bench: the peer end never opened " + path, ETIMEDOUT);
    struct timespec ms = {0, 1'000'000};
    nanosleep(&ms, nullptr);
  }

  netmap_ring *rg = end.ring(end_no, tx ? 0 : l.p.tx_rings);
  const uint32_t N = tx ? l.p.tx_slots : l.p.rx_slots;
  netmap_slot *sl = ring_slots(rg);
  uint8_t *const pool = end.base() + l.buf_pool_ofs;
  const uint64_t total = count;
  uint64_t done = 0, errors = 0;
  auto changed = [&] { return coded_error(env, "pipe bench: the ring changed under the loop", EPROTO); };
  const int64_t t0 = mono_ns();
  while (done < total) {
    if (tx) {
      uint32_t h = rg->head;
      uint32_t room = ring_dist(rg->tail, h, N);
      if (room > batch) room = batch;
      if (room > total - done) room = static_cast<uint32_t>(total - done);
      for (uint32_t i = 0; i < room; i++) {
        const uint32_t idx = sl[h].buf_idx;
        if (idx < 2 || idx >= l.num_bufs) throw changed();
        const uint32_t seq = static_cast<uint32_t>(done + i);
        std::memcpy(pool + static_cast<uint64_t>(idx) * l.p.buf_size, &seq, 4);
        sl[h].len = static_cast<uint16_t>(len);
        h = ring_next(h, N);
      }
      rg->head = rg->cur = h;
      done += room;
      if (end.tx_sync(0) < 0) throw changed();
    } else {
      if (end.rx_sync(0) < 0) throw changed();
      uint32_t h = rg->head;
      const uint32_t t = rg->tail;
      while (h != t) {
        const uint32_t idx = sl[h].buf_idx;
        uint32_t seq = 0;
        if (idx >= 2 && idx < l.num_bufs) std::memcpy(&seq, pool + static_cast<uint64_t>(idx) * l.p.buf_size, 4);
        if (seq != static_cast<uint32_t>(done) || sl[h].len != len) errors++;
        done++;
        h = ring_next(h, N);
      }
      rg->head = rg->cur = h;
    }
  }
  if (tx) {
    // flush what the peer has not taken yet
    while (end.tx_sync(0) > 0) {
    }
  } else {
    (void)end.rx_sync(0);
  }
  const int64_t ns = mono_ns() - t0;
  auto o = Napi::Object::New(env);
  o.Set("frames", static_cast<double>(done));
  o.Set("errors", static_cast<double>(errors));
  o.Set("ns", static_cast<double>(ns));
  return o;
}

}  // namespace

void InitPipeBench(Napi::Env env, Napi::Object exports) {
  exports.Set("pipeBenchLoop", Napi::Function::New(env, PipeBenchLoop, "pipeBenchLoop"));
}

}  // namespace nm
