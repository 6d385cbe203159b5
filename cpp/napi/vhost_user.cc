// JS binding of a vhost-user port driver (cpp/core/vhost_user.h): argument
// checks, counters and state as objects. Also the two fd helpers a vhost-user
// front-end needs (a memfd for guest memory, a unix stream connection), used
// by the tests' hostile front-end.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <memory>

#include "core/vhost_user.h"
#include "napi/napi_util.h"
#include "napi/switch_core_ref.h"

namespace nm {

namespace {

unique_fd dup_arg(const Napi::CallbackInfo &info, size_t i, const char *name) {
  int fd = static_cast<int>(arg_u32(info, i, name));
  int d = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  if (d < 0) throw errno_error(info.Env(), std::string("dup of ") + name, errno, "fcntl");
  return unique_fd(d);
}

class VhostUser : public Napi::ObjectWrap<VhostUser> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "VhostUser",
                       {InstanceMethod("counters", &VhostUser::Counters), InstanceMethod("info", &VhostUser::Info),
                        InstanceMethod("close", &VhostUser::Close)});
  }

  // new VhostUser(regionFd, clientBell, switchBell, {path, client, queuePairs, busyPollUs, backlogPollUs}[, core]); the fds
  // are dup'ed. With core (the port's SwitchCore), the datapath runs in-line in its rounds.
  VhostUser(const Napi::CallbackInfo &info) : Napi::ObjectWrap<VhostUser>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 4 || !info[3].IsObject()) throw Napi::TypeError::New(env, "VhostUser(regionFd, clientBell, switchBell, {path, client, queuePairs, busyPollUs, backlogPollUs})");
    unique_fd region = dup_arg(info, 0, "regionFd"), bell = dup_arg(info, 1, "clientBell"), sw = dup_arg(info, 2, "switchBell");
    Napi::Object o = info[3].As<Napi::Object>();
    VhostUserConfig cfg;
    if (!o.Get("path").IsString()) throw Napi::TypeError::New(env, "path must be a string");
    cfg.path = o.Get("path").As<Napi::String>();
    cfg.client = o.Get("client").ToBoolean();
    if (o.Has("queuePairs") && !o.Get("queuePairs").IsUndefined()) {
      if (!o.Get("queuePairs").IsNumber()) throw Napi::TypeError::New(env, "queuePairs must be a number");
      cfg.queue_pairs = o.Get("queuePairs").As<Napi::Number>().Uint32Value();
    }
    // a window in µs, 0..100000, left as it is when not given
    auto window_us = [&](const char *name, uint32_t &out) {
      if (!o.Has(name) || o.Get(name).IsUndefined()) return;
      Napi::Value v = o.Get(name);
      if (!v.IsNumber() || v.As<Napi::Number>().DoubleValue() < 0 || v.As<Napi::Number>().DoubleValue() > 100000)
        throw Napi::RangeError::New(env, std::string(name) + " must be a number of µs, 0..100000");
      out = v.As<Napi::Number>().Uint32Value();
    };
    window_us("busyPollUs", cfg.busy_poll_us);
    window_us("backlogPollUs", cfg.backlog_poll_us);
    std::shared_ptr<SwitchCore> core;
    if (info.Length() > 4 && !info[4].IsUndefined()) core = switch_core_of(env, info[4]);
    PortClient pc = unwrap(env, PortClient::attach(std::move(region), std::move(bell), std::move(sw)));
    port_ = unwrap(env, VhostUserPort::start(std::move(pc), std::move(cfg), std::move(core)));
  }

 private:
  Napi::Value Counters(const Napi::CallbackInfo &info) {
    Napi::Object o = Napi::Object::New(info.Env());
    if (!port_) return o;
    const VhostUserCounters &c = port_->counters();
#define NM_VHU_SET(n) o.Set(#n, static_cast<double>(c.n.load(std::memory_order_relaxed)));
    NM_VHOST_USER_COUNTERS(NM_VHU_SET)
#undef NM_VHU_SET
    return o;
  }

  Napi::Value Info(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    VhostUserInfo i = port_ ? port_->info() : VhostUserInfo{};
    o.Set("connected", i.connected);
    o.Set("features", Napi::BigInt::New(env, i.features));
    o.Set("protocolFeatures", Napi::BigInt::New(env, i.protocol_features));
    o.Set("runningQueues", i.running_queues);
    o.Set("lastError", i.last_error);
    o.Set("offeredFeatures", Napi::BigInt::New(env, VhostUserPort::offered_features()));
    return o;
  }

  // Joins the driver's thread (it wakes at once, also in the middle of a
  // message read; at worst it finishes sending a reply, 0.5 s).
  Napi::Value Close(const Napi::CallbackInfo &info) {
    if (port_) port_->stop();
    return info.Env().Undefined();
  }

  std::unique_ptr<VhostUserPort> port_;
};

// memfd(name, size[, sealable]) -> fd: guest memory for a vhost-user front-end
Napi::Value Memfd(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString()) throw Napi::TypeError::New(env, "memfd(name, size[, sealable])");
  std::string name = info[0].As<Napi::String>();
  uint32_t size = arg_u32(info, 1, "size");
  const bool sealable = info.Length() > 2 && info[2].ToBoolean().Value();
  int fd = ::memfd_create(name.c_str(), MFD_CLOEXEC | (sealable ? MFD_ALLOW_SEALING : 0));
  if (fd < 0) throw errno_error(env, "memfd_create", errno, "memfd_create");
  unique_fd f(fd);
  if (::ftruncate(fd, size) < 0) throw errno_error(env, "ftruncate of memfd", errno, "ftruncate");
  return Napi::Number::New(env, f.release());
}

// unixStreamConnect(path) -> fd (blocking connect; the fd is non-blocking afterwards)
Napi::Value UnixStreamConnect(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "unixStreamConnect(path)");
  std::string path = info[0].As<Napi::String>();
  sockaddr_un a{};
  if (path.size() >= sizeof a.sun_path) throw coded_error(env, "socket path too long: " + path, ENAMETOOLONG);
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.data(), path.size());
  unique_fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw errno_error(env, "socket", errno, "socket");
  if (::connect(fd.get(), reinterpret_cast<sockaddr *>(&a), sizeof a) < 0) throw errno_error(env, "connect to " + path, errno, "connect");
  ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK);
  return Napi::Number::New(env, fd.release());
}

}  // namespace

void InitVhostUser(Napi::Env env, Napi::Object exports) {
  exports.Set("VhostUser", VhostUser::Define(env));
  exports.Set("memfd", Napi::Function::New(env, Memfd));
  exports.Set("unixStreamConnect", Napi::Function::New(env, UnixStreamConnect));
}

}  // namespace nm
