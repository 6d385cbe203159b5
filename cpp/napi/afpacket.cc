// N-API glue of the AF_PACKET interface driver (cpp/core/afpacket_driver.h):
// new AfPacketPort(regionFd, clientBell, switchBell, ifname, {vnetHdr, passHdr, blockSize, blockCount, rxVersion, frameSize, overflowV3, switchPort, txRing}[, core])
// starts the driver thread on the port whose fds are given (they are dup'ed:
// the switch keeps its own); counters(), info(), close().
#include <fcntl.h>

#include <memory>

#include "core/afpacket_driver.h"
#include "core/afxdp_driver.h"
#include "core/tap_twin.h"
#include "napi/napi_util.h"
#include "napi/switch_core_ref.h"

namespace nm {

namespace {

unique_fd dup_arg(const Napi::CallbackInfo &info, size_t i, const char *name) {
  const int fd = static_cast<int>(arg_u32(info, i, name));
  unique_fd d(::fcntl(fd, F_DUPFD_CLOEXEC, 3));
  if (!d) throw errno_error(info.Env(), std::string("dup ") + name + " " + std::to_string(fd), errno, "fcntl");
  return d;
}

// The first three arguments of every driver here: the switch port's region,
// client doorbell and switch doorbell fds, dup'ed and attached as its client.
PortClient attach_port(const Napi::CallbackInfo &info) {
  unique_fd region = dup_arg(info, 0, "regionFd"), bell = dup_arg(info, 1, "clientBell"), sbell = dup_arg(info, 2, "switchBell");
  return unwrap(info.Env(), PortClient::attach(std::move(region), std::move(bell), std::move(sbell)));
}

// info() of an interface driver: its own fields (`own`), between the interface's
// name and what the driver did to the interface.
template <class Driver, class Own>
Napi::Value link_info(const Napi::CallbackInfo &info, const std::unique_ptr<Driver> &drv, Own &&own) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  if (!drv) return o;
  o.Set("ifname", drv->ifname());
  own(env, o, *drv);
  o.Set("raisedUp", drv->raised_up());
  o.Set("wasPromisc", drv->was_promisc());
  o.Set("mtu", Napi::Number::New(env, drv->mtu()));
  return o;
}

// close() of both drivers: stops the thread and frees the driver; again is a no-op.
template <class Driver>
Napi::Value stop_driver(const Napi::CallbackInfo &info, std::unique_ptr<Driver> &drv) {
  if (drv) {
    drv->stop();
    drv.reset();
  }
  return info.Env().Undefined();
}

// One counter of a driver's X-macro list onto `o` (with `env` and `c` in scope).
#define NM_SET_COUNTER(n) o.Set(#n, Napi::Number::New(env, static_cast<double>(c.n.load(std::memory_order_relaxed))));

class AfPacketPort : public Napi::ObjectWrap<AfPacketPort> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "AfPacketPort",
                       {InstanceMethod("counters", &AfPacketPort::Counters), InstanceMethod("info", &AfPacketPort::Info),
                        InstanceMethod("close", &AfPacketPort::Close)});
  }

  AfPacketPort(const Napi::CallbackInfo &info) : Napi::ObjectWrap<AfPacketPort>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 5 || !info[3].IsString() || !info[4].IsObject())
      throw Napi::TypeError::New(env, "AfPacketPort(regionFd, clientBell, switchBell, ifname, opts)");
    AfPacketConfig cfg;
    cfg.ifname = info[3].As<Napi::String>();
    Napi::Object o = info[4].As<Napi::Object>();
    if (o.Has("vnetHdr")) cfg.vnet_hdr = o.Get("vnetHdr").ToBoolean();
    if (o.Has("passHdr")) cfg.pass_hdr = o.Get("passHdr").ToBoolean();
    if (o.Has("blockSize")) cfg.block_size = o.Get("blockSize").ToNumber().Uint32Value();
    if (o.Has("blockCount")) cfg.block_count = o.Get("blockCount").ToNumber().Uint32Value();
    if (o.Has("rxVersion")) cfg.rx_version = o.Get("rxVersion").ToNumber().Int32Value();
    if (o.Has("overflowV3")) cfg.overflow_v3 = o.Get("overflowV3").ToBoolean();
    if (o.Has("frameSize")) cfg.frame_size = o.Get("frameSize").ToNumber().Uint32Value();
    if (o.Has("switchPort")) cfg.switch_port = o.Get("switchPort").ToNumber().Int32Value();
    if (o.Has("txRing")) cfg.tx_ring = o.Get("txRing").ToBoolean();
    std::shared_ptr<SwitchCore> core;  // in-line in this switch's rounds, else a thread of its own
    if (info.Length() > 5 && !info[5].IsUndefined()) core = switch_core_of(env, info[5]);
    drv_ = unwrap(env, AfPacketDriver::start(attach_port(info), cfg, std::move(core)));
  }

 private:
  Napi::Value Counters(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    if (!drv_) return o;
    const AfPacketCounters &c = drv_->counters();
    NM_AFP_COUNTERS(NM_SET_COUNTER)
    return o;
  }

  Napi::Value Info(const Napi::CallbackInfo &info) {
    return link_info(info, drv_, [](Napi::Env, Napi::Object &o, const AfPacketDriver &d) {
      o.Set("vnetHdr", d.vnet_hdr());
      o.Set("passHdr", d.pass_hdr());
      o.Set("qdiscBypass", d.qdisc_bypass());
      o.Set("rxVersion", d.rx_version());
      o.Set("overflowV3", d.overflow_v3());
      o.Set("inline", d.in_line());
      o.Set("txRing", d.tx_ring());
    });
  }

  Napi::Value Close(const Napi::CallbackInfo &info) { return stop_driver(info, drv_); }

  std::unique_ptr<AfPacketDriver> drv_;
};

// new AfXdpPort(regionFd, clientBell, switchBell, ifname, {mode: 'auto'|'zerocopy'|'copy'}[, core]):
// the AF_XDP driver (cpp/core/afxdp_driver.h); throws where AF_XDP is not
// possible on the interface (the caller falls back to AfPacketPort). With
// core (the port's SwitchCore) the datapath runs in-line in its rounds.
class AfXdpPort : public Napi::ObjectWrap<AfXdpPort> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "AfXdpPort",
                       {InstanceMethod("counters", &AfXdpPort::Counters), InstanceMethod("info", &AfXdpPort::Info),
                        InstanceMethod("close", &AfXdpPort::Close)});
  }

  AfXdpPort(const Napi::CallbackInfo &info) : Napi::ObjectWrap<AfXdpPort>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 5 || !info[3].IsString() || !info[4].IsObject())
      throw Napi::TypeError::New(env, "AfXdpPort(regionFd, clientBell, switchBell, ifname, opts)");
    AfXdpConfig cfg;
    cfg.ifname = info[3].As<Napi::String>();
    Napi::Object o = info[4].As<Napi::Object>();
    if (o.Has("mode")) {
      const std::string m = o.Get("mode").ToString();
      if (m == "zerocopy") cfg.mode = AfXdpMode::ZeroCopy;
      else if (m == "copy") cfg.mode = AfXdpMode::Copy;
      else if (m != "auto") throw Napi::TypeError::New(env, "AfXdpPort mode must be 'auto', 'zerocopy' or 'copy'");
    }
    std::shared_ptr<SwitchCore> core;  // in-line in this switch's rounds, else a thread of its own
    if (info.Length() > 5 && !info[5].IsUndefined()) core = switch_core_of(env, info[5]);
    drv_ = unwrap(env, AfXdpDriver::start(attach_port(info), cfg, std::move(core)));
  }

 private:
  Napi::Value Counters(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    if (!drv_) return o;
    const AfXdpCounters &c = drv_->counters();
    NM_AFX_COUNTERS(NM_SET_COUNTER)
    return o;
  }

  Napi::Value Info(const Napi::CallbackInfo &info) {
    return link_info(info, drv_, [](Napi::Env env, Napi::Object &o, const AfXdpDriver &d) {
      o.Set("zeroCopy", d.zero_copy());
      o.Set("inline", d.in_line());
      o.Set("queues", Napi::Number::New(env, d.queues()));
    });
  }

  Napi::Value Close(const Napi::CallbackInfo &info) { return stop_driver(info, drv_); }

  std::unique_ptr<AfXdpDriver> drv_;
};

// new TapTwinPort(regionFd, clientBell, switchBell, tapname): the host stack port's TAP twin
class TapTwinPort : public Napi::ObjectWrap<TapTwinPort> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "TapTwinPort", {InstanceMethod("counters", &TapTwinPort::Counters), InstanceMethod("close", &TapTwinPort::Close)});
  }

  TapTwinPort(const Napi::CallbackInfo &info) : Napi::ObjectWrap<TapTwinPort>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 4 || !info[3].IsString()) throw Napi::TypeError::New(env, "TapTwinPort(regionFd, clientBell, switchBell, tapname)");
    drv_ = unwrap(env, TapTwinDriver::start(attach_port(info), info[3].As<Napi::String>()));
  }

 private:
  Napi::Value Counters(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    if (!drv_) return o;
    const TapTwinCounters &c = drv_->counters();
    NM_TAP_COUNTERS(NM_SET_COUNTER)
    return o;
  }

  Napi::Value Close(const Napi::CallbackInfo &info) { return stop_driver(info, drv_); }

  std::unique_ptr<TapTwinDriver> drv_;
};

#undef NM_SET_COUNTER

}  // namespace

void InitAfPacket(Napi::Env env, Napi::Object exports) {
  exports.Set("AfPacketPort", AfPacketPort::Define(env));
  exports.Set("TapTwinPort", TapTwinPort::Define(env));
  exports.Set("AfXdpPort", AfXdpPort::Define(env));
  exports.Set("afxdpBuiltIn", Napi::Boolean::New(env, afxdp_built_in()));
}

}  // namespace nm
