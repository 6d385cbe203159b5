// N-API glue of the port drivers that move frames between a vale-ts port and
// file descriptors (cpp/core/tap_driver, cpp/core/socket_netdev_driver), and
// two pure functions of cpp/core/offload for the tests. The drivers run in
// their own threads or in their switch's rounds (start_pump); JS only
// starts them, reads counters and stops them.
#include <fcntl.h>

#include <cstdio>
#include <cstring>

#include <memory>

#include "core/offload.h"
#include "core/socket_netdev_driver.h"
#include "core/tap_driver.h"
#include "core/vxlan_driver.h"
#include "napi/napi_util.h"
#include "napi/switch_core_ref.h"

namespace nm {

namespace {

// The port's three fds (region, client doorbell, switch doorbell), dup'ed:
// the switch keeps its own.
PortClient attach_port(const Napi::Env &env, const Napi::Value &v) {
  if (!v.IsArray() || v.As<Napi::Array>().Length() != 3) throw Napi::TypeError::New(env, "port fds must be [region, clientBell, switchBell]");
  Napi::Array a = v.As<Napi::Array>();
  unique_fd fds[3];
  for (uint32_t i = 0; i < 3; i++) {
    Napi::Value f = a.Get(i);
    if (!f.IsNumber()) throw Napi::TypeError::New(env, "port fd must be a number");
    int fd = ::fcntl(f.As<Napi::Number>().Int32Value(), F_DUPFD_CLOEXEC, 3);
    if (fd < 0) throw errno_error(env, "dup of a port fd", errno, "fcntl");
    fds[i].reset(fd);
  }
  auto pc = PortClient::attach(std::move(fds[0]), std::move(fds[1]), std::move(fds[2]));
  if (!pc) throw sys_error(env, pc.error());
  return std::move(pc).value();
}

// Starts a driver: in `core`'s rounds when info[core_at] is a switch core
// (with the port's index at info[core_at + 1]: the switch then hands the
// driver frames from the senders' buffers), else in a thread of its own.
// An in-line start that fails for a reason of the machine's (an epoll set
// nested deeper than the kernel allows where an embedder's loop holds the
// switch's) logs it and runs the thread; a wrong port index is the caller's
// to fix (EINVAL: thrown).
void start_pump(const Napi::CallbackInfo &info, PortPump &pump, size_t core_at, const std::string &label) {
  Napi::Env env = info.Env();
  std::shared_ptr<SwitchCore> core;
  if (info.Length() > core_at && !info[core_at].IsUndefined()) core = switch_core_of(env, info[core_at]);
  int switch_port = -1;
  if (core && info.Length() > core_at + 1 && !info[core_at + 1].IsUndefined()) {
    const Napi::Value v = info[core_at + 1];
    const double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0 && d < 65536) || d != static_cast<double>(static_cast<int>(d))) throw Napi::TypeError::New(env, label + ": switchPort must be a port index");
    switch_port = static_cast<int>(d);
  }
  Status st = core ? pump.start_in_line(core, switch_port) : pump.start();
  if (!st && core && st.error().err != EINVAL) {
    const SysError &e = st.error();
    std::fprintf(stderr, "vale-ts: %s: cannot run in-line in the switch's rounds (%s%s%s); it runs in a thread of its own\n", label.c_str(), e.what.c_str(),
                 e.syscall ? ": " : "", e.syscall ? std::strerror(e.err) : "");
    st = pump.start();
  }
  if (!st) throw sys_error(env, st.error());
}

std::string str_opt(const Napi::Object &o, const char *k) {
  Napi::Value v = o.Get(k);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
}

class FdPortDriver : public Napi::ObjectWrap<FdPortDriver> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FdPortDriver",
                       {InstanceMethod("counters", &FdPortDriver::Counters), InstanceMethod("close", &FdPortDriver::Close),
                        InstanceMethod("ifname", &FdPortDriver::Ifname)});
  }

  // new FdPortDriver(kind: 'tap' | 'stream-server' | 'stream-client' | 'dgram', fds, options, label[, core[, switchPort]])
  FdPortDriver(const Napi::CallbackInfo &info) : Napi::ObjectWrap<FdPortDriver>(info) {
    Napi::Env env = info.Env();
    if (!info[0].IsString() || !info[2].IsObject() || !info[3].IsString())
      throw Napi::TypeError::New(env, "FdPortDriver(kind, fds, options, label)");
    const std::string kind = info[0].As<Napi::String>().Utf8Value();
    const Napi::Object o = info[2].As<Napi::Object>();
    const std::string label = info[3].As<Napi::String>().Utf8Value();
    if (kind == "tap") {
      TapOptions t;
      t.ifname = str_opt(o, "ifname");
      t.vnet_hdr = o.Get("vnetHdr").ToBoolean();
      t.pass_hdr = o.Get("passHdr").ToBoolean();
      t.offload = !o.Has("offload") || o.Get("offload").ToBoolean();
      if (o.Get("queues").IsNumber()) t.queues = o.Get("queues").As<Napi::Number>().Uint32Value();
      PortClient pc = attach_port(env, info[1]);
      auto d = TapDriver::open(std::move(pc), t, label);
      if (!d) throw sys_error(env, d.error());
      ifname_ = (*d)->ifname();
      pump_ = std::move(d).value();
    } else if (kind == "stream-server" || kind == "stream-client" || kind == "dgram") {
      SocketNetdevOptions s;
      using M = SocketNetdevOptions::Mode;
      s.mode = kind == "dgram" ? M::Dgram : kind == "stream-client" ? M::StreamClient : M::StreamServer;
      s.path = str_opt(o, "path");
      s.peer = str_opt(o, "peer");
      PortClient pc = attach_port(env, info[1]);
      auto d = SocketNetdevDriver::open(std::move(pc), s, label);
      if (!d) throw sys_error(env, d.error());
      pump_ = std::move(d).value();
    } else {
      throw Napi::TypeError::New(env, "FdPortDriver: unknown kind '" + kind + "'");
    }
    try {
      start_pump(info, *pump_, 4, label);
    } catch (...) {
      pump_.reset();
      throw;
    }
  }

  ~FdPortDriver() override {
    if (pump_) pump_->stop();
  }

 private:
  Napi::Value Counters(const Napi::CallbackInfo &info) {
    Napi::Object o = Napi::Object::New(info.Env());
    for (auto &[k, v] : pump_ ? pump_->counters() : last_) o.Set(k, Napi::Number::New(info.Env(), static_cast<double>(v)));
    return o;
  }
  // close(): joins the driver's thread (it wakes at once) and closes its fds
  Napi::Value Close(const Napi::CallbackInfo &info) {
    if (pump_) {
      pump_->stop();
      last_ = pump_->counters();
      pump_.reset();
    }
    return info.Env().Undefined();
  }
  Napi::Value Ifname(const Napi::CallbackInfo &info) { return Napi::String::New(info.Env(), ifname_); }

  std::unique_ptr<PortPump> pump_;
  std::vector<std::pair<const char *, uint64_t>> last_;
  std::string ifname_;
};

// new VxlanPortDriver(fds, options, label[, core[, switchPort]]): a VTEP
// (cpp/core/vxlan_driver.h), in a thread of its own, or in-line in core's
// rounds (core: the port's SwitchCore; switchPort: the port's index).
// The TypeScript side (src/ports/vxlan.ts) has checked the options and
// named a bad one; the core checks them again (addresses, ranges).
class VxlanPortDriver : public Napi::ObjectWrap<VxlanPortDriver> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "VxlanPortDriver",
                       {InstanceMethod("counters", &VxlanPortDriver::Counters), InstanceMethod("close", &VxlanPortDriver::Close),
                        InstanceMethod("describe", &VxlanPortDriver::Describe)});
  }

  VxlanPortDriver(const Napi::CallbackInfo &info) : Napi::ObjectWrap<VxlanPortDriver>(info) {
    Napi::Env env = info.Env();
    if (!info[1].IsObject() || !info[2].IsString()) throw Napi::TypeError::New(env, "VxlanPortDriver(fds, options, label[, core[, switchPort]])");
    const Napi::Object o = info[1].As<Napi::Object>();
    auto u32 = [&](const char *k, uint32_t def, uint32_t max) -> uint32_t {
      Napi::Value v = o.Get(k);
      if (v.IsUndefined()) return def;
      if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string("vxlan option ") + k + " must be a number");
      double d = v.As<Napi::Number>().DoubleValue();
      if (!(d >= 0 && d <= max) || d != static_cast<double>(static_cast<uint32_t>(d)))
        throw Napi::RangeError::New(env, std::string("vxlan option ") + k + " must be an integer 0.." + std::to_string(max));
      return static_cast<uint32_t>(d);
    };
    auto strs = [&](const char *k) {
      std::vector<std::string> out;
      Napi::Value v = o.Get(k);
      if (v.IsUndefined()) return out;
      if (!v.IsArray()) throw Napi::TypeError::New(env, std::string("vxlan option ") + k + " must be a list of strings");
      Napi::Array a = v.As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); i++) {
        if (!a.Get(i).IsString()) throw Napi::TypeError::New(env, std::string("vxlan option ") + k + " must be a list of strings");
        out.push_back(a.Get(i).As<Napi::String>().Utf8Value());
      }
      return out;
    };
    VxlanOptions x;
    x.vni = u32("vni", 0, 0xffffff);
    x.local = str_opt(o, "local");
    x.port = static_cast<uint16_t>(u32("port", VXLAN_PORT, 65535));
    x.dstport = static_cast<uint16_t>(u32("dstport", x.port, 65535));
    x.remotes = strs("remote");
    x.group = str_opt(o, "group");
    x.dev = str_opt(o, "dev");
    for (const std::string &e : strs("fdb")) {
      const size_t at = e.find('@');
      if (at == std::string::npos) throw Napi::TypeError::New(env, "vxlan fdb entry '" + e + "' must be MAC@ADDR");
      x.fdb.emplace_back(e.substr(0, at), e.substr(at + 1));
    }
    x.ageing_s = u32("ageing", 300, 1000000);
    x.srcport_fixed = o.Get("srcportFixed").ToBoolean();
    x.srcport_min = static_cast<uint16_t>(u32("srcportMin", 32768, 65535));
    x.srcport_max = static_cast<uint16_t>(u32("srcportMax", 61000, 65535));
    x.ttl = static_cast<uint8_t>(u32("ttl", 0, 255));
    x.shortcut = o.Get("shortcut").IsUndefined() || o.Get("shortcut").ToBoolean();
    x.shortcut_dir = str_opt(o, "shortcutDir");
    x.shortcut_handshake_ms = u32("shortcutHandshakeMs", SHORTCUT_HANDSHAKE_MS, 3600000);
    x.gso = o.Get("gso").IsUndefined() || o.Get("gso").ToBoolean();
    x.rcvbuf = u32("rcvbuf", 0, 1u << 30);
    PortClient pc = attach_port(env, info[0]);
    auto d = VxlanDriver::open(std::move(pc), x, info[2].As<Napi::String>().Utf8Value());
    if (!d) throw sys_error(env, d.error());
    drv_ = std::move(d).value();
    // with core (the port's SwitchCore) the VTEP runs in-line in its rounds
    try {
      start_pump(info, *drv_, 3, info[2].As<Napi::String>().Utf8Value());
    } catch (...) {
      drv_.reset();
      throw;
    }
  }

  ~VxlanPortDriver() override {
    if (drv_) drv_->stop();
  }

 private:
  void snapshot() {
    last_.clear();
    for (auto &[k, v] : drv_->counters()) last_.emplace_back(k, v);
    for (auto &kv : drv_->vx_counters(64)) last_.push_back(std::move(kv));
  }
  Napi::Value Counters(const Napi::CallbackInfo &info) {
    if (drv_) snapshot();
    Napi::Object o = Napi::Object::New(info.Env());
    for (auto &[k, v] : last_) o.Set(k, Napi::Number::New(info.Env(), static_cast<double>(v)));
    return o;
  }
  Napi::Value Close(const Napi::CallbackInfo &info) {
    if (drv_) {
      drv_->stop();
      snapshot();
      describe_ = drv_->describe();
      drv_.reset();
    }
    return info.Env().Undefined();
  }
  Napi::Value Describe(const Napi::CallbackInfo &info) { return Napi::String::New(info.Env(), drv_ ? drv_->describe() : describe_); }

  std::unique_ptr<VxlanDriver> drv_;
  std::vector<std::pair<std::string, uint64_t>> last_;
  std::string describe_;
};

VnetHdr hdr_arg(const Napi::Env &env, const Napi::Value &v) {
  if (!v.IsBuffer() || v.As<Napi::Buffer<uint8_t>>().Length() < VNET_HDR_LEN)
    throw Napi::TypeError::New(env, "virtio-net header must be a Buffer of 10 bytes");
  return vnet_hdr_read(v.As<Napi::Buffer<uint8_t>>().Data());
}

// offloadCompleteCsum(hdr, frame): fills the checksum in `frame` (in place); returns the error name or 'none'
Napi::Value OffloadCompleteCsum(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  VnetHdr h = hdr_arg(env, info[0]);
  if (!info[1].IsBuffer()) throw Napi::TypeError::New(env, "frame must be a Buffer");
  auto f = info[1].As<Napi::Buffer<uint8_t>>();
  return Napi::String::New(env, offload_error_name(complete_csum(h, f.Data(), f.Length())));
}

class VecSink final : public SegmentSink {
 public:
  explicit VecSink(size_t limit) : limit_(limit) {}
  uint8_t *next(size_t len) override {
    if (segs.size() >= limit_) return nullptr;
    segs.emplace_back(len);
    return segs.back().data();
  }
  std::vector<std::vector<uint8_t>> segs;

 private:
  size_t limit_;
};

// offloadSegment(hdr, frame, maxFrame, maxSegments?): { error, segments: Buffer[] }
Napi::Value OffloadSegment(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  VnetHdr h = hdr_arg(env, info[0]);
  if (!info[1].IsBuffer()) throw Napi::TypeError::New(env, "frame must be a Buffer");
  auto f = info[1].As<Napi::Buffer<uint8_t>>();
  uint32_t max_frame = arg_u32(info, 2, "maxFrame");
  uint32_t limit = info[3].IsNumber() ? arg_u32(info, 3, "maxSegments") : 65536;
  VecSink sink(limit);
  SegmentResult r = gso_segment(h, f.Data(), f.Length(), max_frame, sink);
  Napi::Object o = Napi::Object::New(env);
  o.Set("error", Napi::String::New(env, offload_error_name(r.err)));
  Napi::Array a = Napi::Array::New(env, r.segments);
  for (uint32_t i = 0; i < r.segments; i++) a.Set(i, Napi::Buffer<uint8_t>::Copy(env, sink.segs[i].data(), sink.segs[i].size()));
  o.Set("segments", a);
  o.Set("count", Napi::Number::New(env, gso_segment_count(h, f.Data(), f.Length())));
  return o;
}

}  // namespace

void InitPortDrivers(Napi::Env env, Napi::Object exports) {
  exports.Set("FdPortDriver", FdPortDriver::Define(env));
  exports.Set("VxlanPortDriver", VxlanPortDriver::Define(env));
  exports.Set("offloadCompleteCsum", Napi::Function::New(env, OffloadCompleteCsum));
  exports.Set("offloadSegment", Napi::Function::New(env, OffloadSegment));
}

}  // namespace nm
