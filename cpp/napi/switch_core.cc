// N-API binding of the switch datapath (cpp/core/switch_core.h): argument
// checks, errors as JS Errors, the batch arrays as typed arrays over the
// core's own memory, and the call into the JS decision during a round.
//
// A core can be shared with a worker thread (share() -> token,
// SwitchCore.attach(token) there): both wrappers hold the same C++ core,
// which serialises them with its mutex.
#include "core/switch_core.h"
#include "core/learning_bridge.h"

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "napi/napi_util.h"
#include "napi/switch_core_ref.h"

namespace nm {

namespace {

using CorePtr = std::shared_ptr<SwitchCore>;

// cores handed out by share(), waiting for attach() on another thread
std::mutex g_share_mu;
std::map<uint32_t, CorePtr> g_shared;
uint32_t g_next_token = 1;

// An ArrayBuffer over memory the core owns; it keeps the core alive.
Napi::ArrayBuffer core_buffer(Napi::Env env, const CorePtr &core, void *data, size_t size) {
  auto *hold = new CorePtr(core);
  napi_value ab;
  napi_status st = napi_create_external_arraybuffer(
      env, data, size, [](napi_env, void *, void *hint) { delete static_cast<CorePtr *>(hint); }, hold, &ab);
  if (st != napi_ok) {
    delete hold;
    throw Napi::Error::New(env, "cannot expose the switch's batch arrays");
  }
  return Napi::ArrayBuffer(env, ab);
}

Napi::Object counters_object(Napi::Env env, const SwitchCounters &c) {
  auto o = Napi::Object::New(env);
  for (uint32_t i = 0; i < C_COUNT; i++) o.Set(SWITCH_COUNTER_NAMES[i], static_cast<double>(c[i]));
  return o;
}

class SwitchCoreWrap : public Napi::ObjectWrap<SwitchCoreWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    auto names = Napi::Array::New(env, C_COUNT);
    for (uint32_t i = 0; i < C_COUNT; i++) names.Set(i, SWITCH_COUNTER_NAMES[i]);
    return DefineClass(
        env, "SwitchCore",
        {InstanceMethod("addPort", &SwitchCoreWrap::AddPort), InstanceMethod("removePort", &SwitchCoreWrap::RemovePort),
         InstanceMethod("renewPort", &SwitchCoreWrap::RenewPort),
         InstanceMethod("round", &SwitchCoreWrap::Round), InstanceMethod("roundNative", &SwitchCoreWrap::RoundNative),
         InstanceMethod("nativePortRemoved", &SwitchCoreWrap::NativePortRemoved), InstanceMethod("armAll", &SwitchCoreWrap::ArmAll),
         InstanceMethod("disarmAll", &SwitchCoreWrap::DisarmAll), InstanceMethod("wait", &SwitchCoreWrap::Wait),
         InstanceMethod("notify", &SwitchCoreWrap::Notify), InstanceMethod("stats", &SwitchCoreWrap::Stats),
         InstanceMethod("occupancy", &SwitchCoreWrap::Occupancy),
         InstanceMethod("setVnetHdrLen", &SwitchCoreWrap::SetVnetHdrLen),
         InstanceMethod("vnetHdrLen", &SwitchCoreWrap::VnetHdrLen),
         InstanceMethod("setLossless", &SwitchCoreWrap::SetLossless),
         InstanceMethod("setAttached", &SwitchCoreWrap::SetAttached),
         InstanceMethod("setExtraBells", &SwitchCoreWrap::SetExtraBells),
         InstanceMethod("setStalled", &SwitchCoreWrap::SetStalled),
         InstanceMethod("countHoldShortened", &SwitchCoreWrap::CountHoldShortened),
         InstanceMethod("setHoldUs", &SwitchCoreWrap::SetHoldUs),
         InstanceMethod("setFloodHoldUs", &SwitchCoreWrap::SetFloodHoldUs),
         InstanceMethod("setMonitor", &SwitchCoreWrap::SetMonitor),
         InstanceMethod("blockedOn", &SwitchCoreWrap::BlockedOn),
         InstanceMethod("noteWakeup", &SwitchCoreWrap::NoteWakeup),
         InstanceMethod("backoffDue", &SwitchCoreWrap::BackoffDue),
         InstanceMethod("heldDueMs", &SwitchCoreWrap::HeldDueMs),
         InstanceMethod("hooksBatching", &SwitchCoreWrap::HooksBatching),
         InstanceMethod("switchCounters", &SwitchCoreWrap::WideCounters),
         InstanceMethod("share", &SwitchCoreWrap::Share), InstanceMethod("detach", &SwitchCoreWrap::Detach),
         InstanceMethod("shutdown", &SwitchCoreWrap::Shutdown), InstanceMethod("unshare", &SwitchCoreWrap::Unshare), StaticMethod("attach", &SwitchCoreWrap::Attach),
         StaticMethod("yieldCpu", &SwitchCoreWrap::YieldCpu),
         StaticValue("counterNames", names),
         StaticValue("maxBatch", Napi::Number::New(env, SWITCH_MAX_BATCH)),
         StaticValue("defaultHeaderBytes", Napi::Number::New(env, SWITCH_DEFAULT_HEADER)),
         StaticValue("holdQuantum", Napi::Number::New(env, SWITCH_HOLD_QUANTUM)),
         StaticValue("holdSlowDiv", Napi::Number::New(env, SWITCH_HOLD_SLOW_DIV)),
         StaticValue("holdLevels", Napi::Number::New(env, SWITCH_HOLD_LEVELS)),
         StaticValue("maxHeaderBytes", Napi::Number::New(env, SWITCH_MAX_HEADER))});
  }

  // new SwitchCore({batch, headerBytes}) or, from attach(), new SwitchCore(token)
  SwitchCoreWrap(const Napi::CallbackInfo &info) : Napi::ObjectWrap<SwitchCoreWrap>(info) {
    Napi::Env env = info.Env();
    if (info.Length() >= 1 && info[0].IsNumber()) {
      uint32_t token = arg_u32(info, 0, "token");
      std::lock_guard<std::mutex> g(g_share_mu);
      auto it = g_shared.find(token);
      if (it == g_shared.end()) throw coded_error(env, "no shared switch core " + std::to_string(token), ENOENT);
      core_ = std::move(it->second);
      g_shared.erase(it);
      core_->set_timed_waits();  // a datapath thread's: its rounds sleep in wait()
    } else {
      if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "SwitchCore({ batch, headerBytes })");
      auto o = info[0].As<Napi::Object>();
      core_ = CorePtr(unwrap(env, SwitchCore::create(opt_u32(o, "batch", 512), opt_u32(o, "headerBytes", SWITCH_DEFAULT_HEADER))));
    }
    SwitchCore *c = core_.get();
    const size_t B = SWITCH_MAX_BATCH;
    auto hdr = Napi::Uint8Array::New(env, c->header_area_size(), core_buffer(env, core_, c->header_area(), c->header_area_size()), 0);
    auto off = Napi::Uint32Array::New(env, B, core_buffer(env, core_, c->offsets(), B * 4), 0);
    auto len = Napi::Uint16Array::New(env, B, core_buffer(env, core_, c->lens(), B * 2), 0);
    auto src = Napi::Uint8Array::New(env, B, core_buffer(env, core_, c->sources(), B), 0);
    auto dst = Napi::Int16Array::New(env, B, core_buffer(env, core_, c->dests(), B * 2), 0);
    Napi::Object self = info.This().As<Napi::Object>();
    self.Set("headers", hdr);
    self.Set("offsets", off);
    self.Set("lens", len);
    self.Set("sources", src);
    self.Set("dests", dst);
    self.Set("waitFd", Napi::Number::New(env, c->wait_fd()));
    self.Set("headerBytes", Napi::Number::New(env, c->header_bytes()));
    views_[0] = Napi::Persistent(hdr.As<Napi::Object>());
    views_[1] = Napi::Persistent(off.As<Napi::Object>());
    views_[2] = Napi::Persistent(len.As<Napi::Object>());
    views_[3] = Napi::Persistent(src.As<Napi::Object>());
    views_[4] = Napi::Persistent(dst.As<Napi::Object>());
  }

 private:
  // addPort(params, name, lossless[, regionFd]) -> {id, fd, switchBell, clientBell, size, nifpOffset,
  //   txRings, rxRings, txSlots, rxSlots, bufSize} (the geometry as laid out)
  // regionFd: a region prepared off the event loop (createRegionFdAsync);
  // the core maps a duplicate, the caller closes its own
  Napi::Value AddPort(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject() || !info[1].IsString()) throw Napi::TypeError::New(env, "addPort(params, name, lossless)");
    LayoutParams p = params_from(info[0].As<Napi::Object>());
    std::string name = info[1].As<Napi::String>();
    int prepared = info.Length() > 3 && info[3].IsNumber() ? arg_fd(info, 3) : -1;
    return port_object(env, unwrap(env, core_->add_port(p, name, info.Length() > 2 && info[2].ToBoolean(), prepared)));
  }

  // renewPort(port, name) -> as addPort's: see SwitchCore::renew_port
  Napi::Value RenewPort(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (!info[1].IsString()) throw Napi::TypeError::New(env, "renewPort(port, name)");
    return port_object(env, unwrap(env, core_->renew_port(arg_u32(info, 0, "port"), info[1].As<Napi::String>())));
  }

  static Napi::Object port_object(Napi::Env env, const SwitchPortInfo &pi) {
    auto o = Napi::Object::New(env);
    o.Set("id", pi.id);
    o.Set("fd", pi.memfd);
    o.Set("switchBell", pi.switch_bell);
    o.Set("clientBell", pi.client_bell);
    o.Set("size", static_cast<double>(pi.size));
    o.Set("nifpOffset", static_cast<double>(pi.nifp_ofs));
    o.Set("txRings", pi.geometry.tx_rings);
    o.Set("rxRings", pi.geometry.rx_rings);
    o.Set("txSlots", pi.geometry.tx_slots);
    o.Set("rxSlots", pi.geometry.rx_slots);
    o.Set("bufSize", pi.geometry.buf_size);
    return o;
  }

  Napi::Value RemovePort(const Napi::CallbackInfo &info) {
    return counters_object(info.Env(), unwrap(info.Env(), core_->remove_port(arg_u32(info, 0, "port"))));
  }

  Napi::Value Stats(const Napi::CallbackInfo &info) {
    return counters_object(info.Env(), unwrap(info.Env(), core_->counters(arg_u32(info, 0, "port"))));
  }

  // occupancy(port) -> {txQueued, rxQueued}: see SwitchCore::occupancy
  Napi::Value Occupancy(const Napi::CallbackInfo &info) {
    auto q = unwrap(info.Env(), core_->occupancy(arg_u32(info, 0, "port")));
    auto o = Napi::Object::New(info.Env());
    o.Set("txQueued", static_cast<double>(q.first));
    o.Set("rxQueued", static_cast<double>(q.second));
    return o;
  }

  // setVnetHdrLen(port, 0 | 10 | 12): see SwitchCore::set_vnet_hdr_len
  Napi::Value SetVnetHdrLen(const Napi::CallbackInfo &info) {
    (void)unwrap(info.Env(), core_->set_vnet_hdr_len(arg_u32(info, 0, "port"), arg_u32(info, 1, "length")));
    return info.Env().Undefined();
  }

  Napi::Value VnetHdrLen(const Napi::CallbackInfo &info) {
    return Napi::Number::New(info.Env(), unwrap(info.Env(), core_->vnet_hdr_len(arg_u32(info, 0, "port"))));
  }

  Napi::Value SetAttached(const Napi::CallbackInfo &info) {
    (void)unwrap(info.Env(), core_->set_attached(arg_u32(info, 0, "port"), info[1].ToBoolean()));
    return info.Env().Undefined();
  }

  // setStalled(port, on): see SwitchCore::set_stalled
  Napi::Value SetStalled(const Napi::CallbackInfo &info) {
    (void)unwrap(info.Env(), core_->set_stalled(arg_u32(info, 0, "port"), info[1].ToBoolean()));
    return info.Env().Undefined();
  }

  // countHoldShortened(port): see SwitchCore::count_hold_shortened
  Napi::Value CountHoldShortened(const Napi::CallbackInfo &info) {
    (void)unwrap(info.Env(), core_->count_hold_shortened(arg_u32(info, 0, "port")));
    return info.Env().Undefined();
  }

  // setHoldUs(port, us): see SwitchCore::set_hold_us (0..1e6 µs)
  Napi::Value SetHoldUs(const Napi::CallbackInfo &info) {
    const uint32_t us = arg_u32(info, 1, "holdUs");
    if (us > 1000000) throw Napi::RangeError::New(info.Env(), "holdUs " + std::to_string(us) + " out of range: use 0..1000000 (µs)");
    (void)unwrap(info.Env(), core_->set_hold_us(arg_u32(info, 0, "port"), us));
    return info.Env().Undefined();
  }

  // setFloodHoldUs(us): see SwitchCore::set_flood_hold_us (0..1e6 µs)
  Napi::Value SetFloodHoldUs(const Napi::CallbackInfo &info) {
    const uint32_t us = arg_u32(info, 0, "holdUs");
    if (us > 1000000) throw Napi::RangeError::New(info.Env(), "holdUs " + std::to_string(us) + " out of range: use 0..1000000 (µs)");
    core_->set_flood_hold_us(us);
    return info.Env().Undefined();
  }

  // setMonitor(port, watched, rx, tx): see SwitchCore::set_monitor
  Napi::Value SetMonitor(const Napi::CallbackInfo &info) {
    (void)unwrap(info.Env(), core_->set_monitor(arg_u32(info, 0, "port"), arg_u32(info, 1, "watched"), info[2].ToBoolean(),
                                                info[3].ToBoolean()));
    return info.Env().Undefined();
  }

  // blockedOn(): the port whose full rx ring stopped a lossless sender in the last round, or -1
  Napi::Value BlockedOn(const Napi::CallbackInfo &info) { return Napi::Number::New(info.Env(), core_->blocked_on()); }

  // noteWakeup(useful): see SwitchCore::note_wakeup
  Napi::Value NoteWakeup(const Napi::CallbackInfo &info) {
    core_->note_wakeup(info[0].ToBoolean());
    return info.Env().Undefined();
  }

  // backoffDue() -> ms until a muted doorbell is listened to again, -1 if none
  Napi::Value BackoffDue(const Napi::CallbackInfo &info) { return Napi::Number::New(info.Env(), core_->backoff_due()); }
  // heldDueMs() -> ms until a held-back ring's bound runs out, -1 if none
  Napi::Value HeldDueMs(const Napi::CallbackInfo &info) { return Napi::Number::New(info.Env(), core_->held_due_ms()); }

  // hooksBatching() -> an in-line hook will ask for a timed sleep: skip the busy poll
  Napi::Value HooksBatching(const Napi::CallbackInfo &info) { return Napi::Boolean::New(info.Env(), core_->hooks_batching()); }

  // switchCounters() -> {rounds, wakeups, spuriousWakeups, doorbellBackoffs, heldTimeouts, heldRechecks, waitFdsQuieted}
  Napi::Value WideCounters(const Napi::CallbackInfo &info) {
    SwitchWideCounters w = core_->wide_counters();
    auto o = Napi::Object::New(info.Env());
    o.Set("rounds", static_cast<double>(w.rounds));
    o.Set("wakeups", static_cast<double>(w.wakeups));
    o.Set("spuriousWakeups", static_cast<double>(w.spurious_wakeups));
    o.Set("doorbellBackoffs", static_cast<double>(w.doorbell_backoffs));
    o.Set("heldTimeouts", static_cast<double>(w.held_timeouts));
    o.Set("heldRechecks", static_cast<double>(w.held_rechecks));
    o.Set("waitFdsQuieted", static_cast<double>(w.wait_fds_quieted));
    return o;
  }

  Napi::Value SetLossless(const Napi::CallbackInfo &info) {
    (void)unwrap(info.Env(), core_->set_lossless(arg_u32(info, 0, "port"), info[1].ToBoolean()));
    return info.Env().Undefined();
  }

  // setExtraBells(port, fds[])
  Napi::Value SetExtraBells(const Napi::CallbackInfo &info) {
    uint32_t id = arg_u32(info, 0, "port");
    if (!info[1].IsArray()) throw Napi::TypeError::New(info.Env(), "setExtraBells(port, fds: number[])");
    auto a = info[1].As<Napi::Array>();
    std::vector<int> fds;
    for (uint32_t i = 0; i < a.Length(); i++) {
      Napi::Value v = a.Get(i);
      if (!v.IsNumber() || v.As<Napi::Number>().Int32Value() < 0)
        throw Napi::TypeError::New(info.Env(), "setExtraBells: fds must be non-negative numbers");
      fds.push_back(v.As<Napi::Number>().Int32Value());
    }
    (void)unwrap(info.Env(), core_->set_extra_bells(id, std::move(fds)));
    return info.Env().Undefined();
  }

  // round(lookup) -> frames consumed, or -(n+1) when a lossless sender is
  // waiting for rx room. The lookup is called once, only for a non-empty
  // batch: lookup(headers, offsets, lens, count, sources, dests). If it
  // throws, its batch is dropped (dropLookup) and the error rethrown here.
  Napi::Value Round(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsFunction()) throw Napi::TypeError::New(env, "round(lookup: function)");
    napi_value fn = info[0];
    napi_value recv = env.Undefined();
    napi_value thrown = nullptr;
    bool stopping = false;
    // the C API here, not Napi::Function::Call: a thread being terminated
    // (a worker at process exit) must unwind quietly, not throw from C++
    RoundResult r = core_->round([&](LookupBatch &b) {
      napi_value argv[6] = {views_[0].Value(), views_[1].Value(), views_[2].Value(), nullptr, views_[3].Value(),
                            views_[4].Value()};
      if (napi_create_uint32(env, b.count, &argv[3]) != napi_ok) {
        stopping = true;
        return false;
      }
      napi_value ret;
      napi_status st = napi_call_function(env, recv, fn, 6, argv, &ret);
      if (st == napi_ok) return true;
      bool pending = false;
      napi_is_exception_pending(env, &pending);
      if (pending && napi_get_and_clear_last_exception(env, &thrown) == napi_ok && thrown) return false;
      stopping = true;
      return false;
    });
    if (thrown) {
      napi_throw(env, thrown);
      return Napi::Value();
    }
    if (stopping) return Napi::Value();
    napi_value out;
    napi_create_double(env, r.blocked ? -static_cast<double>(r.moved) - 1 : r.moved, &out);
    return Napi::Value(env, out);
  }

  // roundNative(): a round decided by the C++ learning bridge (the
  // benchmarks' baseline for the TypeScript decision); same return as round()
  Napi::Value RoundNative(const Napi::CallbackInfo &info) {
    if (!bridge_) bridge_ = std::make_unique<NativeLearningBridge>();
    RoundResult r = core_->round([&](LookupBatch &b) {
      bridge_->decide(b);
      return true;
    });
    return Napi::Number::New(info.Env(), r.blocked ? -static_cast<double>(r.moved) - 1 : r.moved);
  }

  Napi::Value NativePortRemoved(const Napi::CallbackInfo &info) {
    if (bridge_) bridge_->port_removed(arg_u32(info, 0, "port"));
    return info.Env().Undefined();
  }

  // armAll(rxToo) -> false when frames arrived meanwhile (do not sleep)
  Napi::Value ArmAll(const Napi::CallbackInfo &info) {
    return Napi::Boolean::New(info.Env(), core_->arm_all(info[0].ToBoolean()));
  }

  Napi::Value DisarmAll(const Napi::CallbackInfo &info) {
    core_->disarm_all();
    return info.Env().Undefined();
  }

  // wait(timeoutMs): blocks this thread (a datapath worker's, never the
  // main loop's) until a doorbell or notify() rings
  Napi::Value Wait(const Napi::CallbackInfo &info) {
    double t = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : -1;
    int ms = t < 0 ? -1 : t > 1e9 ? 1000000000 : static_cast<int>(t);
    return Napi::Number::New(info.Env(), core_->wait(ms));
  }

  Napi::Value Notify(const Napi::CallbackInfo &info) {
    core_->notify();
    return info.Env().Undefined();
  }

  // detach(): this thread is done with the core: its batch arrays become
  // empty (detached) views, so nothing here can touch the core's memory after
  // shutdown() frees it
  Napi::Value Detach(const Napi::CallbackInfo &info) {
    detach_views(info.Env());
    return info.Env().Undefined();
  }

  // shutdown(): releases every port, the batch arrays and the descriptors of
  // the core now (see SwitchCore::shutdown); every other thread using it must
  // have called detach() first
  Napi::Value Shutdown(const Napi::CallbackInfo &info) {
    detach_views(info.Env());
    core_->shutdown();
    return info.Env().Undefined();
  }

  void detach_views(Napi::Env env) {
    for (auto &v : views_) {
      if (v.IsEmpty()) continue;
      napi_value ta = v.Value(), ab = nullptr;
      napi_typedarray_type type;
      size_t length, offset;
      void *data;
      if (napi_get_typedarray_info(env, ta, &type, &length, &data, &ab, &offset) == napi_ok && ab)
        napi_detach_arraybuffer(env, ab);
      v.Reset();
    }
  }

  // share() -> token another thread passes to SwitchCore.attach()
  Napi::Value Share(const Napi::CallbackInfo &info) {
    std::lock_guard<std::mutex> g(g_share_mu);
    uint32_t t = g_next_token++;
    g_shared[t] = core_;
    return Napi::Number::New(info.Env(), t);
  }

  // unshare() -> true when a token share() handed out was still unclaimed
  // (no other thread holds the core): it is withdrawn
  Napi::Value Unshare(const Napi::CallbackInfo &info) {
    std::lock_guard<std::mutex> g(g_share_mu);
    bool any = false;
    for (auto it = g_shared.begin(); it != g_shared.end();) {
      if (it->second == core_) {
        it = g_shared.erase(it);
        any = true;
      } else {
        ++it;
      }
    }
    return Napi::Boolean::New(info.Env(), any);
  }

  static Napi::Value Attach(const Napi::CallbackInfo &info) {
    Napi::FunctionReference *ctor = info.Env().GetInstanceData<Napi::FunctionReference>();
    return ctor->New({info[0]});
  }

  // sched_yield(): a polling loop that found nothing lets other runnable
  // threads have the CPU instead of spinning out its time slice
  static Napi::Value YieldCpu(const Napi::CallbackInfo &info) {
    sched_yield();
    return info.Env().Undefined();
  }

  CorePtr core_;

 public:
  const CorePtr &core() const { return core_; }

 private:
  std::unique_ptr<NativeLearningBridge> bridge_;  // roundNative()'s, made on first use
  Napi::ObjectReference views_[5];
};

// setSchedSlice(us): the calling thread's EEVDF request size (Linux >= 6.12
// reads sched_attr.sched_runtime of a SCHED_OTHER thread as its slice; the
// kernel clamps it to 100 us..100 ms; 0 restores the default). Same weight,
// so the same share of the CPU: a short slice only means that when this
// thread wakes beside a CPU-bound one it runs at once instead of after the
// other's slice. Threads created later inherit it. Keeps the thread's nice
// value (sched_setattr would reset it to 0). Returns false where the kernel
// refuses (the caller runs on with the default); throws on a bad argument.
struct SliceAttr {  // struct sched_attr (linux/sched/types.h), SCHED_ATTR_SIZE_VER1
  uint32_t size, sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime, sched_deadline, sched_period;
  uint32_t sched_util_min, sched_util_max;
};
static_assert(sizeof(SliceAttr) == 56, "SCHED_ATTR_SIZE_VER1");

Napi::Value SetSchedSlice(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(env, "setSchedSlice(us): us must be a number");
  const double us = info[0].As<Napi::Number>().DoubleValue();
  if (!(us >= 0 && us <= 100000)) throw Napi::RangeError::New(env, "setSchedSlice(us): us must be 0..100000");
  if (sched_getscheduler(0) != SCHED_OTHER) return Napi::Boolean::New(env, false);  // batch, idle, RT: not ours to change
  errno = 0;
  const int nice = getpriority(PRIO_PROCESS, 0);  // this thread's (Linux: per thread)
  if (errno != 0) return Napi::Boolean::New(env, false);
  SliceAttr a{};
  a.size = sizeof a;
  a.sched_policy = SCHED_OTHER;
  a.sched_nice = nice;
  a.sched_runtime = static_cast<uint64_t>(us * 1000);
  return Napi::Boolean::New(env, syscall(SYS_sched_setattr, 0, &a, 0) == 0);
}

// setThreadName(name): the calling thread's name in /proc/PID/task/TID/comm
// (top -H, perf, ps -L), so a switch's datapath thread shows which switch it
// forwards for. Linux keeps 15 bytes; longer names are cut there.
Napi::Value SetThreadName(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "setThreadName(name): name must be a string");
  std::string name = info[0].As<Napi::String>().Utf8Value();
  if (name.find('\0') != std::string::npos) throw Napi::TypeError::New(env, "setThreadName(name): name must not contain NUL");
  if (name.size() > 15) name.resize(15);
  return Napi::Boolean::New(env, pthread_setname_np(pthread_self(), name.c_str()) == 0);
}

}  // namespace

std::shared_ptr<SwitchCore> switch_core_of(Napi::Env env, Napi::Value v) {
  Napi::FunctionReference *ctor = env.GetInstanceData<Napi::FunctionReference>();
  if (!v.IsObject() || !ctor || !v.As<Napi::Object>().InstanceOf(ctor->Value()))
    throw Napi::TypeError::New(env, "expected a native SwitchCore");
  SwitchCoreWrap *w = SwitchCoreWrap::Unwrap(v.As<Napi::Object>());
  if (!w || !w->core()) throw coded_error(env, "the switch core is shut down", ESHUTDOWN);
  return w->core();
}

void InitForward(Napi::Env env, Napi::Object exports) {
  Napi::Function f = SwitchCoreWrap::Define(env);
  // attach() needs the constructor of this thread's instance of the addon
  env.SetInstanceData(new Napi::FunctionReference(Napi::Persistent(f)));
  exports.Set("SwitchCore", f);
  exports.Set("schedYield", Napi::Function::New(env, [](const Napi::CallbackInfo &info) {
                sched_yield();
                return info.Env().Undefined();
              }, "schedYield"));
  exports.Set("setSchedSlice", Napi::Function::New(env, SetSchedSlice, "setSchedSlice"));
  exports.Set("setThreadName", Napi::Function::New(env, SetThreadName, "setThreadName"));
}

}  // namespace nm
