// JS binding of a pipe end (cpp/core/pipe.h): argument checks, the region as
// an ArrayBuffer, errors as exceptions.
#include <optional>

#include "core/pipe.h"
#include "napi/napi_util.h"

namespace nm {

namespace {

class Pipe : public Napi::ObjectWrap<Pipe> {
 public:
  static Napi::Function Define(Napi::Env env) {
    // peerState()'s values, named as pipe.ts uses them (PeerState, pipe.h)
    Napi::Object states = Napi::Object::New(env);
    states.Set("never", static_cast<uint32_t>(PeerState::kClosed));
    states.Set("open", static_cast<uint32_t>(PeerState::kOpen));
    states.Set("dead", static_cast<uint32_t>(PeerState::kDead));
    states.Set("left", static_cast<uint32_t>(PeerState::kLeft));
    return DefineClass(env, "Pipe",
                       {InstanceMethod("txsync", &Pipe::TxSync), InstanceMethod("rxsync", &Pipe::RxSync),
                        InstanceMethod("peerState", &Pipe::PeerStateJs), InstanceMethod("close", &Pipe::Close),
                        InstanceMethod("stats", &Pipe::Stats), InstanceAccessor("memory", &Pipe::Memory, nullptr),
                        InstanceAccessor("doorbellFd", &Pipe::DoorbellFd, nullptr),
                        InstanceAccessor("nifpOffset", &Pipe::NifpOffset, nullptr),
                        InstanceAccessor("created", &Pipe::Created, nullptr),
                        // the region file's name prefix: pipe.ts names files with the core's and the preload's
                        StaticValue("filePrefix", Napi::String::New(env, PIPE_FILE_PREFIX)),
                        StaticValue("peerStates", states)});
  }

  // new Pipe(path, end /*0 master, 1 slave*/, {rings, slots, bufSize, extraBufs}, name)
  Pipe(const Napi::CallbackInfo &info) : Napi::ObjectWrap<Pipe>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 4 || !info[0].IsString() || !info[2].IsObject() || !info[3].IsString())
      throw Napi::TypeError::New(env, "Pipe(path, end, params, name)");
    const std::string path = info[0].As<Napi::String>();
    const uint32_t end = arg_u32(info, 1, "end");
    if (end > 1) throw Napi::RangeError::New(env, "end must be 0 (master) or 1 (slave)");
    const std::string name = info[3].As<Napi::String>();
    auto want = compute_layout(pipe_params_from(info[2].As<Napi::Object>()));
    if (!want) throw coded_error(env, "pipe " + name + ": " + want.error().what, EINVAL);
    end_.emplace(unwrap(env, PipeEnd::open(path, end, *want, name)));
    // JS gets a mapping of its own: at teardown finalizers run in any order,
    // and the ArrayBuffer's may unmap before this object's destructor runs.
    // If anything here throws, end_ closes the end as the object unwinds.
    memory_ = Napi::Persistent(mapping_to_arraybuffer(env, unwrap(env, end_->map_again())));
  }

 private:
  PipeEnd &open_end(Napi::Env env) {
    if (!end_ || !end_->is_open()) throw coded_error(env, "pipe is closed", EBADF);
    return *end_;
  }

  Napi::Value TxSync(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    PipeEnd &e = open_end(env);
    uint32_t r = arg_u32(info, 0, "ring");
    if (r >= e.layout().p.tx_rings) throw Napi::RangeError::New(env, "tx ring index out of range");
    return Napi::Number::New(env, static_cast<double>(e.tx_sync(r)));
  }

  Napi::Value RxSync(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    PipeEnd &e = open_end(env);
    uint32_t r = arg_u32(info, 0, "ring");
    if (r >= e.layout().p.rx_rings) throw Napi::RangeError::New(env, "rx ring index out of range");
    return Napi::Number::New(env, static_cast<double>(e.rx_sync(r)));
  }

  // PeerState (pipe.h), named for JS in peerStates: 0 never came, 1 open, 2 died without closing, 3 came and closed
  Napi::Value PeerStateJs(const Napi::CallbackInfo &info) {
    const PeerState s = end_ ? end_->peer_state() : PeerState::kClosed;
    return Napi::Number::New(info.Env(), static_cast<uint32_t>(s));
  }

  Napi::Value Stats(const Napi::CallbackInfo &info) {
    PipeStats s;
    if (end_) s = end_->stats();
    auto o = Napi::Object::New(info.Env());
    o.Set("txFrames", static_cast<double>(s.tx_frames));
    o.Set("invalidSlots", static_cast<double>(s.invalid_slots));
    o.Set("peerErrors", static_cast<double>(s.peer_errors));
    return o;
  }

  Napi::Value Close(const Napi::CallbackInfo &info) {
    if (end_) end_->close();
    memory_.Reset();
    return info.Env().Undefined();
  }

  Napi::Value Memory(const Napi::CallbackInfo &info) {
    if (memory_.IsEmpty()) return info.Env().Null();
    return memory_.Value();
  }
  Napi::Value DoorbellFd(const Napi::CallbackInfo &info) {
    return Napi::Number::New(info.Env(), end_ ? end_->doorbell_fd() : -1);
  }
  Napi::Value NifpOffset(const Napi::CallbackInfo &info) {
    return Napi::Number::New(info.Env(), end_ ? static_cast<double>(end_->layout().nifp_ofs[end_->end()]) : 0);
  }
  Napi::Value Created(const Napi::CallbackInfo &info) {
    return Napi::Boolean::New(info.Env(), end_ && end_->created());
  }

  std::optional<PipeEnd> end_;
  Napi::Reference<Napi::ArrayBuffer> memory_;
};

}  // namespace

void InitPipe(Napi::Env env, Napi::Object exports) { exports.Set("Pipe", Pipe::Define(env)); }

}  // namespace nm
