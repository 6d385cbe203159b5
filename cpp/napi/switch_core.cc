// The switch's datapath: it plays the kernel for every port's rings (the
// CSB model), collects a batch of tx slots from a source port, lets JS decide
// destinations, then copies the batch into destination rx rings.
//
// Every value read from a port's region is the client's and may be hostile:
// head indices, buffer indices and lengths are read once, checked against
// the layout the switch itself computed (never the header in shared memory),
// and a bad slot is dropped and counted.
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "napi/napi_util.h"
#include "core/region.h"
#include "core/shm_atomic.h"

namespace nm {

namespace {

constexpr uint32_t MAX_PORTS = 254;  // NM_BDG_MAXPORTS
constexpr uint32_t MAX_BATCH = 4096;
constexpr int16_t DEST_DROP = -1;
constexpr int16_t DEST_FLOOD = -2;
constexpr int16_t DEST_SAME_PORT = -3;

// per-port counters; the order is the JS-visible order (see COUNTER_NAMES)
enum Counter {
  C_RX_FRAMES,       // frames taken from the port's tx rings
  C_RX_BYTES,
  C_TX_FRAMES,       // frames delivered into the port's rx rings
  C_TX_BYTES,
  C_DROP_NO_SPACE,   // copies to this port lost: its rx ring was full
  C_DROP_INVALID,    // slots from this port with a bad buffer index or length
  C_DROP_RUNT,       // frames from this port under 14 bytes
  C_DROP_SAME_PORT,  // destination was the source (never reflected)
  C_DROP_LOOKUP,     // the lookup function said drop
  C_DROP_NO_PORT,    // the lookup named a port that does not exist, or a flood found no other port
  C_DROP_OVERSIZE,   // copies to this port larger than its buffers
  C_DROP_FRAG,       // a fragment chain longer than NETMAP_MAX_FRAGS slots
  C_DROP_CLOSED,     // frames left in the port's tx rings when it went away
  C_FLOODED,         // frames from this port sent to all others
  C_BAD_HEAD,        // impossible indices the client published (each new value once)
  C_KICKS,           // doorbell writes to this port's client
  C_DROP_STALLED,    // copies to this port lost while it was declared stalled (lossless senders)
  C_FLOOD_COPIES,    // copies made of this port's flooded frames, one per other port (each delivered or dropped)
  C_COUNT
};
const char *const COUNTER_NAMES[C_COUNT] = {
    "rxFrames",      "rxBytes",    "txFrames",   "txBytes",     "dropNoSpace",
    "dropInvalid",   "dropRunt",   "dropSamePort", "dropLookup", "dropNoPort",
    "dropOversize",  "dropFrag",   "dropClosed",   "flooded",    "badHead",     "kicks",
    "dropStalled",   "floodCopies"};

struct RxState {
  uint32_t hwtail = 0;    // next slot the switch fills
  uint32_t released = 0;  // client's head as last validated
};

struct PortState {
  bool used = false;
  bool lossless = false;
  // a client holds the port: only then can backpressure from it end
  bool attached = true;
  // an attached receiver that stopped draining for longer than the switch's
  // stall bound: lossless senders no longer wait for it (see setStalled)
  bool stalled = false;
  Layout layout;
  uint8_t *base = nullptr;
  int memfd = -1;
  int switch_bell = -1;  // the client kicks this
  int client_bell = -1;  // the switch kicks this
  // extra doorbells of further registrations sharing the port (one ring
  // each), so no holder can swallow another's wakeup; not owned here
  std::vector<int> extra_bells;
  uint32_t tx_hwcur[MAX_RINGS] = {};
  // last impossible head seen per ring (tx, then rx): badHead counts each
  // publication once, not every sync that reads it again
  uint32_t bad_head[2 * MAX_RINGS];
  RxState rx[MAX_RINGS];
  uint64_t c[C_COUNT] = {};
  bool rx_dirty[MAX_RINGS] = {};
  bool any_dirty = false;
  Napi::Reference<Napi::ArrayBuffer> memory;

  netmap_ring *ring(uint32_t k) const { return reinterpret_cast<netmap_ring *>(base + layout.ring_ofs[0][k]); }
  nm_csb_atok *atok(uint32_t k) const { return reinterpret_cast<nm_csb_atok *>(base + layout.csb_entry(0, k)); }
  nm_csb_ktoa *ktoa(uint32_t k) const {
    return reinterpret_cast<nm_csb_ktoa *>(base + layout.csb_entry(0, k) + sizeof(nm_csb_atok));
  }
  uint8_t *buf(uint32_t idx) const {
    return base + layout.buf_pool_ofs + static_cast<uint64_t>(idx) * layout.p.buf_size;
  }
  bool buf_ok(uint32_t idx) const { return idx >= 2 && idx < layout.num_bufs; }
};

class SwitchCore : public Napi::ObjectWrap<SwitchCore> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(
        env, "SwitchCore",
        {InstanceMethod("addPort", &SwitchCore::AddPort), InstanceMethod("removePort", &SwitchCore::RemovePort),
         InstanceMethod("collect", &SwitchCore::Collect), InstanceMethod("forward", &SwitchCore::Forward),
         InstanceMethod("pending", &SwitchCore::Pending), InstanceMethod("arm", &SwitchCore::Arm),
         InstanceMethod("flushRx", &SwitchCore::FlushRx), InstanceMethod("stats", &SwitchCore::Stats),
         InstanceMethod("drainBell", &SwitchCore::DrainBell),
         InstanceMethod("setLossless", &SwitchCore::SetLossless),
         InstanceMethod("setAttached", &SwitchCore::SetAttached),
         InstanceMethod("setExtraBells", &SwitchCore::SetExtraBells),
         InstanceMethod("setStalled", &SwitchCore::SetStalled),
         InstanceMethod("blockedOn", &SwitchCore::BlockedOn),
         StaticValue("counterNames", CounterNames(env))});
  }

  static Napi::Array CounterNames(Napi::Env env) {
    auto a = Napi::Array::New(env, C_COUNT);
    for (uint32_t i = 0; i < C_COUNT; i++) a.Set(i, COUNTER_NAMES[i]);
    return a;
  }

  // new SwitchCore(offsets: Uint32Array, lens: Uint16Array, dests: Int16Array)
  SwitchCore(const Napi::CallbackInfo &info) : Napi::ObjectWrap<SwitchCore>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 3 || !info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[2].IsTypedArray())
      throw Napi::TypeError::New(env, "SwitchCore(offsets: Uint32Array, lens: Uint16Array, dests: Int16Array)");
    auto o = info[0].As<Napi::TypedArray>();
    auto l = info[1].As<Napi::TypedArray>();
    auto d = info[2].As<Napi::TypedArray>();
    if (o.TypedArrayType() != napi_uint32_array || l.TypedArrayType() != napi_uint16_array ||
        d.TypedArrayType() != napi_int16_array)
      throw Napi::TypeError::New(env, "SwitchCore batch arrays: Uint32Array, Uint16Array, Int16Array");
    cap_ = static_cast<uint32_t>(std::min({o.ElementLength(), l.ElementLength(), d.ElementLength(),
                                           static_cast<size_t>(MAX_BATCH)}));
    offsets_ = static_cast<uint32_t *>(o.As<Napi::Uint32Array>().Data());
    lens_ = static_cast<uint16_t *>(l.As<Napi::Uint16Array>().Data());
    dests_ = static_cast<int16_t *>(d.As<Napi::Int16Array>().Data());
    refs_[0] = Napi::Persistent(info[0].As<Napi::Object>());
    refs_[1] = Napi::Persistent(info[1].As<Napi::Object>());
    refs_[2] = Napi::Persistent(info[2].As<Napi::Object>());
    ports_.resize(MAX_PORTS);
  }

  ~SwitchCore() override {
    for (auto &p : ports_) ClosePort(p);
  }

 private:
  PortState *port_arg(const Napi::CallbackInfo &info, size_t i) {
    uint32_t id = arg_u32(info, i, "port");
    if (id >= MAX_PORTS || !ports_[id].used) throw Napi::RangeError::New(info.Env(), "no such switch port");
    return &ports_[id];
  }

  // addPort(params, name, lossless) -> {id, fd, memory, switchBell, clientBell, layout}
  Napi::Value AddPort(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject() || !info[1].IsString()) throw Napi::TypeError::New(env, "addPort(params, name, lossless)");
    LayoutParams p = params_from(info[0].As<Napi::Object>());
    p.n_ifs = 1;  // a switch port is one netmap_if
    const Layout l = unwrap(env, compute_layout(p));
    uint32_t id = 0;
    while (id < MAX_PORTS && ports_[id].used) id++;
    if (id == MAX_PORTS) throw coded_error(env, "switch is full (254 ports, as NM_BDG_MAXPORTS)", ENOSPC);
    std::string name = info[1].As<Napi::String>();
    std::string names[MAX_IFS] = {name, ""};
    unique_fd fd_owner;
    mapping map_owner;
    if (info.Length() > 3 && info[3].IsNumber()) {
      // a region prepared off the event loop (createRegionFdAsync): map it;
      // the caller keeps (and closes) its own descriptor
      fd_owner = unique_fd(fcntl(arg_fd(info, 3), F_DUPFD_CLOEXEC, 0));
      if (!fd_owner) throw errno_error(env, "dup prepared region", errno, "fcntl");
      struct stat st;
      if (fstat(fd_owner.get(), &st) < 0) throw errno_error(env, "stat prepared region", errno, "fstat");
      if (static_cast<uint64_t>(st.st_size) != l.size)
        throw coded_error(env, "prepared region has " + std::to_string(st.st_size) + " bytes, the layout needs " + std::to_string(l.size), EINVAL);
      map_owner = unwrap(env, mapping::map_shared(fd_owner.get(), l.size, "map prepared region"));
    } else {
      MemfdRegion region = unwrap(env, create_memfd_region(("vale-ts:" + name).c_str(), l, names));
      fd_owner = std::move(region.fd);
      map_owner = std::move(region.map);
    }
    int fd = fd_owner.release();
    uint8_t *m = static_cast<uint8_t *>(map_owner.release());
    int sb = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int cb = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (sb < 0 || cb < 0) {
      int e = errno;
      if (sb >= 0) close(sb);
      if (cb >= 0) close(cb);
      munmap(m, l.size);
      close(fd);
      throw errno_error(env, "eventfd", e, "eventfd");
    }
    PortState &ps = ports_[id];
    ps = PortState{};
    ps.used = true;
    ps.lossless = info.Length() > 2 && info[2].ToBoolean();
    ps.layout = l;
    ps.base = m;
    ps.memfd = fd;
    ps.switch_bell = sb;
    ps.client_bell = cb;
    std::fill(std::begin(ps.bad_head), std::end(ps.bad_head), UINT32_MAX);
    for (uint32_t r = 0; r < p.tx_rings; r++) ps.tx_hwcur[r] = 0;
    Napi::ArrayBuffer ab = mapping_to_arraybuffer(env, m, l.size);
    ps.memory = Napi::Persistent(ab);
    active_.push_back(id);
    auto o = Napi::Object::New(env);
    o.Set("id", id);
    o.Set("fd", fd);
    o.Set("memory", ab);
    o.Set("switchBell", sb);
    o.Set("clientBell", cb);
    o.Set("size", static_cast<double>(l.size));
    o.Set("nifpOffset", static_cast<double>(l.nifp_ofs[0]));
    return o;
  }

  void ClosePort(PortState &p) {
    if (!p.used) return;
    const uint32_t id = static_cast<uint32_t>(&p - ports_.data());
    active_.erase(std::remove(active_.begin(), active_.end(), id), active_.end());
    dirty_.erase(std::remove(dirty_.begin(), dirty_.end(), id), dirty_.end());
    if (p.memfd >= 0) close(p.memfd);
    if (p.switch_bell >= 0) close(p.switch_bell);
    if (p.client_bell >= 0) close(p.client_bell);
    p.memory.Reset();  // unmapped when JS drops its last view too
    p.used = false;
    p.base = nullptr;
  }

  Napi::Value RemovePort(const Napi::CallbackInfo &info) {
    PortState *p = port_arg(info, 0);
    // frames the client queued but the switch never took are lost: count them
    for (uint32_t r = 0; r < p->layout.p.tx_rings; r++) {
      uint32_t head = load_acquire(&p->atok(r)->head);
      if (head < p->layout.p.tx_slots) {
        uint32_t n = ring_dist(head, p->tx_hwcur[r], p->layout.p.tx_slots);
        p->c[C_DROP_CLOSED] += n;
        p->c[C_RX_FRAMES] += n;
      }
    }
    Napi::Object final_counters = CountersOf(info.Env(), p);
    ClosePort(*p);
    return final_counters;
  }

  Napi::Value SetAttached(const Napi::CallbackInfo &info) {
    port_arg(info, 0)->attached = info[1].ToBoolean();
    return info.Env().Undefined();
  }

  // setStalled(port, on): the switch's clock says this receiver has blocked
  // a lossless sender for longer than the bound; until it releases an rx
  // slot again, copies to it are dropped (dropStalled) instead of waited for
  Napi::Value SetStalled(const Napi::CallbackInfo &info) {
    port_arg(info, 0)->stalled = info[1].ToBoolean();
    return info.Env().Undefined();
  }

  // blockedOn(): the port whose full rx ring stopped the last forward(), or -1
  Napi::Value BlockedOn(const Napi::CallbackInfo &info) { return Napi::Number::New(info.Env(), blocked_on_); }

  Napi::Value SetLossless(const Napi::CallbackInfo &info) {
    port_arg(info, 0)->lossless = info[1].ToBoolean();
    return info.Env().Undefined();
  }

  // collect(port, ring, max): reads up to max tx slots [hwcur, head) into the
  // batch arrays (offsets are into the port's region). Invalid slots are
  // counted and left out. Returns the number of frames in the batch.
  Napi::Value Collect(const Napi::CallbackInfo &info) {
    PortState *p = port_arg(info, 0);
    uint32_t r = arg_u32(info, 1, "ring");
    uint32_t max = arg_u32(info, 2, "max");
    if (r >= p->layout.p.tx_rings) throw Napi::RangeError::New(info.Env(), "tx ring out of range");
    if (max > cap_) max = cap_;
    const uint32_t N = p->layout.p.tx_slots;
    uint32_t head = load_acquire(&p->atok(r)->head);
    if (head >= N) {
      if (p->bad_head[r] != head) p->c[C_BAD_HEAD]++;
      p->bad_head[r] = head;
      batch_port_ = nullptr;
      return Napi::Number::New(info.Env(), 0);
    }
    netmap_slot *s = ring_slots(p->ring(r));
    uint32_t i = p->tx_hwcur[r], n = 0, scanned = 0, nf = 0;
    const uint32_t bsz = p->layout.p.buf_size;
    const uint64_t pool = p->layout.buf_pool_ofs;
    // a frame is one slot, or a chain of slots with NS_MOREFRAG on all but
    // the last (netmap's multi-slot frames); each slot is read once, here
    while (i != head && n < max && scanned < max) {
      const uint32_t first = i, f0 = nf;
      bool ok = true, complete = false;
      uint32_t total = 0;
      while (i != head) {
        const uint32_t idx = s[i].buf_idx;
        const uint16_t len = s[i].len;
        const uint16_t fl = s[i].flags;
        if (!p->buf_ok(idx) || len > bsz) ok = false;
        fidx_[nf] = idx;
        flen_[nf] = len;
        nf++;
        total += len;
        i = ring_next(i, N);
        if (!(fl & NS_MOREFRAG)) {
          complete = true;
          break;
        }
        if (nf - f0 == NETMAP_MAX_FRAGS) break;  // chain too long: dropped below
      }
      const uint32_t frags = nf - f0;
      if (!complete && frags < NETMAP_MAX_FRAGS) {
        // the rest of the frame is not published yet: take it next time
        i = first;
        nf = f0;
        break;
      }
      scanned += frags;
      if (!complete) {
        p->c[C_DROP_FRAG]++;
        nf = f0;
      } else if (!ok || total > 65535) {
        p->c[C_DROP_INVALID]++;
        nf = f0;
      } else {
        slot_of_[n] = first;
        fstart_[n] = f0;
        fcount_[n] = frags;
        ftotal_[n] = total;
        offsets_[n] = static_cast<uint32_t>(pool + static_cast<uint64_t>(fidx_[f0]) * bsz);
        lens_[n] = flen_[f0];  // the lookup reads the header from the first fragment
        n++;
      }
    }
    batch_port_ = p;
    batch_ring_ = r;
    batch_end_ = i;
    batch_n_ = n;
    return Napi::Number::New(info.Env(), n);
  }

  bool rx_room(PortState *d, uint32_t rr, uint32_t *room) {
    RxState &st = d->rx[rr];
    const uint32_t N = d->layout.p.rx_slots;
    uint32_t rel = load_acquire(&d->atok(d->layout.p.tx_rings + rr)->head);
    uint32_t &bad = d->bad_head[d->layout.p.tx_rings + rr];
    if (rel >= N || ring_dist(rel, st.released, N) > ring_dist(st.hwtail, st.released, N)) {
      if (bad != rel) d->c[C_BAD_HEAD]++;
      bad = rel;
      rel = st.released;
    }
    // a receiver that releases slots is draining again
    if (rel != st.released) d->stalled = false;
    st.released = rel;
    *room = ring_dist(rel == 0 ? N - 1 : rel - 1, st.hwtail, N);
    return *room > 0;
  }

  // one copy of batch frame k from port p into port d's rx ring rr, one rx
  // slot per fragment; false when there is no room for all of them
  bool deliver(PortState *d, uint32_t rr, const PortState *p, uint32_t k, uint32_t *room) {
    const uint32_t frags = fcount_[k], f0 = fstart_[k];
    if (*room < frags) {
      rx_room(d, rr, room);
      if (*room < frags) return false;
    }
    RxState &st = d->rx[rr];
    const uint32_t N = d->layout.p.rx_slots;
    netmap_slot *rs = ring_slots(d->ring(d->layout.p.tx_rings + rr));
    uint32_t dst_idx[NETMAP_MAX_FRAGS];
    for (uint32_t f = 0, j = st.hwtail; f < frags; f++, j = ring_next(j, N)) {
      dst_idx[f] = rs[j].buf_idx;
      if (!d->buf_ok(dst_idx[f])) {
        // the client broke its own rx slot: the copy is lost, counted there
        d->c[C_DROP_INVALID]++;
        return true;
      }
      if (flen_[f0 + f] > d->layout.p.buf_size) {
        d->c[C_DROP_OVERSIZE]++;
        return true;
      }
    }
    for (uint32_t f = 0; f < frags; f++) {
      netmap_slot *slot = &rs[st.hwtail];
      const uint16_t len = flen_[f0 + f];
      std::memcpy(d->buf(dst_idx[f]), p->buf(fidx_[f0 + f]), len);
      slot->len = len;
      slot->flags = f + 1 < frags ? NS_MOREFRAG : 0;
      st.hwtail = ring_next(st.hwtail, N);
    }
    *room -= frags;
    if (!d->any_dirty) {
      d->any_dirty = true;
      dirty_.push_back(static_cast<uint32_t>(d - ports_.data()));
    }
    d->rx_dirty[rr] = true;
    d->c[C_TX_FRAMES]++;
    d->c[C_TX_BYTES] += ftotal_[k];
    return true;
  }

  // forward(): delivers the collected batch by dests[]; returns frames consumed
  // from the source ring (fewer than the batch only in lossless mode).
  Napi::Value Forward(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    PortState *p = batch_port_;
    if (!p) return Napi::Number::New(env, 0);
    batch_port_ = nullptr;
    const uint32_t src_id = static_cast<uint32_t>(p - ports_.data());
    const uint32_t r = batch_ring_;
    const uint32_t N = p->layout.p.tx_slots;
    blocked_on_ = -1;
    uint32_t room[MAX_PORTS];
    std::fill(room, room + MAX_PORTS, 0u);
    uint32_t done = 0;
    bool stopped = false;
    for (; done < batch_n_; done++) {
      const int16_t dst = dests_[done];
      const uint32_t len = ftotal_[done];
      if (flen_[fstart_[done]] < 14) {
        p->c[C_DROP_RUNT]++;
      } else if (dst >= 0) {
        const uint32_t d = static_cast<uint32_t>(dst);
        if (d == src_id) {
          p->c[C_DROP_SAME_PORT]++;
        } else if (d >= MAX_PORTS || !ports_[d].used) {
          p->c[C_DROP_NO_PORT]++;
        } else {
          PortState *dp = &ports_[d];
          uint32_t rr = r % dp->layout.p.rx_rings;
          if (!deliver(dp, rr, p, done, &room[d])) {
            if (p->lossless && dp->attached && !dp->stalled) {
              stopped = true;
              blocked_on_ = static_cast<int32_t>(d);
              break;
            }
            dp->c[dp->stalled ? C_DROP_STALLED : C_DROP_NO_SPACE]++;
          }
        }
      } else if (dst == DEST_FLOOD) {
        if (p->lossless) {
          // all or nothing: never deliver a flood twice
          bool all = true;
          for (uint32_t d : active_) {
            if (d == src_id || !ports_[d].attached || ports_[d].stalled) continue;
            uint32_t rr = r % ports_[d].layout.p.rx_rings;
            if (room[d] < fcount_[done]) rx_room(&ports_[d], rr, &room[d]);
            if (room[d] < fcount_[done] && !ports_[d].stalled) {
              all = false;
              blocked_on_ = static_cast<int32_t>(d);
              break;
            }
          }
          if (!all) {
            stopped = true;
            break;
          }
        }
        if (active_.size() < 2) {
          // nobody else on the switch: the frame goes nowhere, and says so
          p->c[C_DROP_NO_PORT]++;
          p->c[C_RX_FRAMES]++;
          p->c[C_RX_BYTES] += len;
          continue;
        }
        p->c[C_FLOODED]++;
        for (uint32_t d : active_) {
          if (d == src_id) continue;
          p->c[C_FLOOD_COPIES]++;
          PortState *dp = &ports_[d];
          if (!deliver(dp, r % dp->layout.p.rx_rings, p, done, &room[d]))
            dp->c[dp->stalled && p->lossless ? C_DROP_STALLED : C_DROP_NO_SPACE]++;
        }
      } else if (dst == DEST_SAME_PORT) {
        p->c[C_DROP_SAME_PORT]++;
      } else {
        p->c[C_DROP_LOOKUP]++;
      }
      p->c[C_RX_FRAMES]++;
      p->c[C_RX_BYTES] += len;
    }
    // advance the source ring: up to the end of the scan, or to the frame
    // that could not be delivered (lossless)
    uint32_t newcur = stopped ? slot_of_[done] : batch_end_;
    p->tx_hwcur[r] = newcur;
    nm_csb_ktoa *k = p->ktoa(r);
    store_release(&k->hwcur, newcur);
    store_release(&k->hwtail, newcur == 0 ? N - 1 : newcur - 1);
    full_fence();
    nm_csb_atok *a = p->atok(r);
    if (load_relaxed(&a->appl_need_kick) && exchange(&a->appl_need_kick, 0)) {
      KickClient(p);
    }
    PublishRx();
    return Napi::Number::New(env, stopped ? -static_cast<double>(done) - 1 : done);
  }

  void KickClient(PortState *p) {
    uint64_t one = 1;
    ssize_t w = write(p->client_bell, &one, sizeof one);
    for (int fd : p->extra_bells) w = write(fd, &one, sizeof one);
    (void)w;
    p->c[C_KICKS]++;
  }

  // setExtraBells(port, fds[]): doorbells of the other registrations
  Napi::Value SetExtraBells(const Napi::CallbackInfo &info) {
    PortState *p = port_arg(info, 0);
    if (!info[1].IsArray()) throw Napi::TypeError::New(info.Env(), "setExtraBells(port, fds: number[])");
    auto a = info[1].As<Napi::Array>();
    std::vector<int> fds;
    for (uint32_t i = 0; i < a.Length(); i++) fds.push_back(a.Get(i).As<Napi::Number>().Int32Value());
    p->extra_bells = std::move(fds);
    return info.Env().Undefined();
  }

  // publish new rx tails and wake receivers that asked for it
  void PublishRx() {
    for (uint32_t id : dirty_) {
      PortState &d = ports_[id];
      d.any_dirty = false;
      bool kick = false;
      for (uint32_t rr = 0; rr < d.layout.p.rx_rings; rr++) {
        if (!d.rx_dirty[rr]) continue;
        d.rx_dirty[rr] = false;
        uint32_t k = d.layout.p.tx_rings + rr;
        store_release(&d.ktoa(k)->hwtail, d.rx[rr].hwtail);
        full_fence();
        nm_csb_atok *a = d.atok(k);
        if (load_relaxed(&a->appl_need_kick) && exchange(&a->appl_need_kick, 0)) kick = true;
      }
      if (kick) KickClient(&d);
    }
    dirty_.clear();
  }

  Napi::Value FlushRx(const Napi::CallbackInfo &info) {
    PublishRx();
    return info.Env().Undefined();
  }

  // pending(port, ring): tx slots published by the client and not consumed yet
  Napi::Value Pending(const Napi::CallbackInfo &info) {
    PortState *p = port_arg(info, 0);
    uint32_t r = arg_u32(info, 1, "ring");
    if (r >= p->layout.p.tx_rings) throw Napi::RangeError::New(info.Env(), "tx ring out of range");
    const uint32_t N = p->layout.p.tx_slots;
    uint32_t head = load_acquire(&p->atok(r)->head);
    if (head >= N) return Napi::Number::New(info.Env(), 0);
    return Napi::Number::New(info.Env(), ring_dist(head, p->tx_hwcur[r], N));
  }

  // arm(port, on, rxToo): ask (or stop asking) the client for a kick when it
  // publishes tx frames, and when rxToo, when it frees rx room (lossless)
  Napi::Value Arm(const Napi::CallbackInfo &info) {
    PortState *p = port_arg(info, 0);
    uint32_t v = info[1].ToBoolean() ? 1 : 0;
    bool rx_too = info.Length() > 2 && info[2].ToBoolean();
    for (uint32_t r = 0; r < p->layout.p.tx_rings; r++) store_release(&p->ktoa(r)->kern_need_kick, v);
    for (uint32_t rr = 0; rr < p->layout.p.rx_rings; rr++)
      store_release(&p->ktoa(p->layout.p.tx_rings + rr)->kern_need_kick, rx_too ? v : 0);
    full_fence();
    return info.Env().Undefined();
  }

  Napi::Value DrainBell(const Napi::CallbackInfo &info) {
    PortState *p = port_arg(info, 0);
    uint64_t v;
    while (read(p->switch_bell, &v, sizeof v) > 0) {
    }
    return info.Env().Undefined();
  }

  static Napi::Object CountersOf(Napi::Env env, const PortState *p) {
    auto o = Napi::Object::New(env);
    for (uint32_t i = 0; i < C_COUNT; i++) o.Set(COUNTER_NAMES[i], static_cast<double>(p->c[i]));
    return o;
  }

  Napi::Value Stats(const Napi::CallbackInfo &info) { return CountersOf(info.Env(), port_arg(info, 0)); }

  std::vector<PortState> ports_;
  std::vector<uint32_t> active_;  // ids in use, so floods and publishing cost O(ports in use)
  std::vector<uint32_t> dirty_;   // ports whose rx rings got frames in this batch
  uint32_t cap_ = 0;
  uint32_t *offsets_ = nullptr;
  uint16_t *lens_ = nullptr;
  int16_t *dests_ = nullptr;
  Napi::ObjectReference refs_[3];
  PortState *batch_port_ = nullptr;
  int32_t blocked_on_ = -1;
  uint32_t batch_ring_ = 0, batch_end_ = 0, batch_n_ = 0;
  uint32_t slot_of_[MAX_BATCH] = {};
  // per batch frame: first fragment in fidx_/flen_, fragment count, bytes
  uint32_t fstart_[MAX_BATCH] = {};
  uint32_t fcount_[MAX_BATCH] = {};
  uint32_t ftotal_[MAX_BATCH] = {};
  // every fragment of the batch, as read once from the client's tx ring
  uint32_t fidx_[MAX_BATCH + NETMAP_MAX_FRAGS] = {};
  uint16_t flen_[MAX_BATCH + NETMAP_MAX_FRAGS] = {};
};

}  // namespace

void InitForward(Napi::Env env, Napi::Object exports) { exports.Set("SwitchCore", SwitchCore::Define(env)); }

}  // namespace nm
