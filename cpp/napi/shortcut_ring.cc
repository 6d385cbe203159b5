// JS bindings of the shortcut's channel (cpp/core/shortcut_ring.h) and
// rendezvous (cpp/core/shortcut_peer.h), so both and their checks against a
// hostile peer are tested from ava: make a channel, attach a second mapping
// to its fd as the peer would, push, peek, corrupt the shared indices through
// the fd; listen, connect, exchange CLAIMs carrying the channel's fd.
#include <fcntl.h>
#include <unistd.h>

#include <optional>

#include <sys/eventfd.h>
#include <sys/socket.h>

#include "core/shortcut_peer.h"
#include "core/shortcut_ring.h"
#include "napi/napi_util.h"

namespace nm {

namespace {

class ShortcutRingJs : public Napi::ObjectWrap<ShortcutRingJs> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ShortcutRing",
                       {InstanceMethod("push", &ShortcutRingJs::PushJs), InstanceMethod("pop", &ShortcutRingJs::PopJs),
                        InstanceMethod("unconsumed", &ShortcutRingJs::Unconsumed), InstanceMethod("dupFd", &ShortcutRingJs::DupFd),
                        InstanceMethod("wait", &ShortcutRingJs::Wait),
                        InstanceAccessor("broken", &ShortcutRingJs::Broken, nullptr),
                        // the layout's numbers, for tests that play a peer writing the memory itself
                        StaticValue("VERSION", Napi::Number::New(env, SHORTCUT_RING_VERSION)),
                        StaticValue("SLOT_HEADER", Napi::Number::New(env, static_cast<double>(ShortcutRing::SLOT_HDR)))});
  }

  // new ShortcutRing({slots, slotSize}) creates; new ShortcutRing(fd) attaches to a dup of fd
  ShortcutRingJs(const Napi::CallbackInfo &info) : Napi::ObjectWrap<ShortcutRingJs>(info) {
    Napi::Env env = info.Env();
    if (info.Length() == 1 && info[0].IsObject()) {
      Napi::Object o = info[0].As<Napi::Object>();
      r_.emplace(unwrap(env, ShortcutRing::create(opt_u32(o, "slots", 256), opt_u32(o, "slotSize", 2048))));
    } else if (info.Length() == 1 && info[0].IsNumber()) {
      unique_fd fd(::fcntl(arg_fd(info, 0), F_DUPFD_CLOEXEC, 0));
      if (!fd) throw errno_error(env, "dup of the shortcut channel fd", errno, "fcntl");
      r_.emplace(unwrap(env, ShortcutRing::attach(std::move(fd))));
    } else {
      throw Napi::TypeError::New(env, "ShortcutRing({slots, slotSize}) or ShortcutRing(fd)");
    }
  }

 private:
  // 'ok' | 'full' | 'tooLong' | 'broken'
  Napi::Value PushJs(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsBuffer()) throw Napi::TypeError::New(env, "push(buffer)");
    auto b = info[0].As<Napi::Buffer<uint8_t>>();
    if (b.Length() > UINT32_MAX) throw Napi::RangeError::New(env, "frame too long");
    switch (r_->push(b.Data(), static_cast<uint32_t>(b.Length()))) {
      case ShortcutRing::Push::Ok: return Napi::String::New(env, "ok");
      case ShortcutRing::Push::Full: return Napi::String::New(env, "full");
      case ShortcutRing::Push::TooLong: return Napi::String::New(env, "tooLong");
      case ShortcutRing::Push::Broken: break;
    }
    return Napi::String::New(env, "broken");
  }

  // the oldest incoming frame (copied), or null when empty or broken
  Napi::Value PopJs(const Napi::CallbackInfo &info) {
    const uint8_t *f;
    uint32_t l;
    if (!r_->peek(f, l)) return info.Env().Null();
    auto b = Napi::Buffer<uint8_t>::Copy(info.Env(), f, l);
    r_->pop();
    return b;
  }

  // the wakeup handshake, one step: wait('armData' | 'disarmData' |
  // 'dataKickDue' | 'armRoom' | 'disarmRoom' | 'roomKickDue') -> boolean
  Napi::Value Wait(const Napi::CallbackInfo &info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "wait(step)");
    const std::string op = info[0].As<Napi::String>();
    bool r = false;
    if (op == "armData") r = r_->arm_data();
    else if (op == "disarmData") r_->disarm_data();
    else if (op == "dataKickDue") r = r_->data_kick_due();
    else if (op == "armRoom") r = r_->arm_room();
    else if (op == "disarmRoom") r_->disarm_room();
    else if (op == "roomKickDue") r = r_->room_kick_due();
    else throw Napi::TypeError::New(env, "wait step '" + op + "' is none of armData, disarmData, dataKickDue, armRoom, disarmRoom, roomKickDue");
    return Napi::Boolean::New(env, r);
  }

  Napi::Value Unconsumed(const Napi::CallbackInfo &info) { return Napi::Number::New(info.Env(), r_->unconsumed()); }
  Napi::Value Broken(const Napi::CallbackInfo &info) { return Napi::Boolean::New(info.Env(), r_->broken()); }

  // a new fd of the channel for the caller to own (and close)
  Napi::Value DupFd(const Napi::CallbackInfo &info) {
    const int fd = ::fcntl(r_->fd(), F_DUPFD_CLOEXEC, 0);
    if (fd < 0) throw errno_error(info.Env(), "dup of the shortcut channel fd", errno, "fcntl");
    return Napi::Number::New(info.Env(), fd);
  }

  std::optional<ShortcutRing> r_;
};

std::array<uint8_t, 16> id_arg(const Napi::Value &v, const char *what) {
  std::array<uint8_t, 16> id{};
  const std::string h = v.IsString() ? v.As<Napi::String>().Utf8Value() : std::string();
  if (h.size() != 32) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be 32 hex digits");
  for (size_t i = 0; i < 32; i++) {
    const char c = h[i];
    const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) throw Napi::TypeError::New(v.Env(), std::string(what) + " must be 32 lower-case hex digits");
    id[i / 2] = static_cast<uint8_t>(i % 2 ? id[i / 2] | d : d << 4);
  }
  return id;
}

std::string hex_of(const std::array<uint8_t, 16> &id) {
  static const char x[] = "0123456789abcdef";
  std::string s;
  for (uint8_t b : id) {
    s += x[b >> 4];
    s += x[b & 15];
  }
  return s;
}

std::string str_arg(const Napi::CallbackInfo &info, size_t i, const char *what) {
  if (info.Length() <= i || !info[i].IsString()) throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a string");
  return info[i].As<Napi::String>().Utf8Value();
}

// shortcutDirCheck(dir, create)
// shortcutCheckEventfd(fd): what the driver does with a CHANNEL's wakeup fds
Napi::Value CheckEventfd(const Napi::CallbackInfo &info) {
  auto st = shortcut_check_eventfd(arg_fd(info, 0));
  if (!st) throw sys_error(info.Env(), st.error());
  return info.Env().Undefined();
}
// shortcutEventfd() -> a new eventfd (blocking, as a peer might send it)
Napi::Value MakeEventfd(const Napi::CallbackInfo &info) {
  const int fd = ::eventfd(0, EFD_CLOEXEC);
  if (fd < 0) throw errno_error(info.Env(), "eventfd", errno, "eventfd");
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value DirCheck(const Napi::CallbackInfo &info) {
  auto st = shortcut_dir_check(str_arg(info, 0, "dir"), info.Length() > 1 && info[1].ToBoolean());
  if (!st) throw sys_error(info.Env(), st.error());
  return info.Env().Undefined();
}

// shortcutListen(dir, idHex) -> fd; shortcutConnect(dir, idHex) -> fd
// A listener made here counts as alive for the rest of the process: its lock
// is held until exit (tests make a few).
std::vector<unique_fd> &test_locks() {
  static std::vector<unique_fd> v;
  return v;
}
Napi::Value Listen(const Napi::CallbackInfo &info) {
  ShortcutListener l = unwrap(info.Env(), shortcut_listen(str_arg(info, 0, "dir"), id_arg(info[1], "id")));
  test_locks().push_back(std::move(l.lock));
  return Napi::Number::New(info.Env(), l.sock.release());
}
// shortcutSweep(dir) -> sockets of dead instances removed
Napi::Value Sweep(const Napi::CallbackInfo &info) { return Napi::Number::New(info.Env(), shortcut_sweep(str_arg(info, 0, "dir"))); }
Napi::Value Connect(const Napi::CallbackInfo &info) {
  return Napi::Number::New(info.Env(), unwrap(info.Env(), shortcut_connect(str_arg(info, 0, "dir"), id_arg(info[1], "id"))).release());
}

// shortcutAccept(listenFd) -> fd of a connection already made (checked with SO_PEERCRED)
Napi::Value Accept(const Napi::CallbackInfo &info) {
  unique_fd c(::accept4(arg_fd(info, 0), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  if (!c) throw errno_error(info.Env(), "shortcut listener", errno, "accept4");
  auto st = shortcut_peer_check(c.get());
  if (!st) throw sys_error(info.Env(), st.error());
  return Napi::Number::New(info.Env(), c.release());
}

// shortcutSendClaim(fd, {instance, vni, family, mine, yours, nonce, bufSize}, [fds])
Napi::Value SendClaim(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  const int fd = arg_fd(info, 0);
  if (info.Length() < 2 || !info[1].IsObject()) throw Napi::TypeError::New(env, "shortcutSendClaim(fd, claim, fds)");
  Napi::Object o = info[1].As<Napi::Object>();
  ShortcutClaim c;
  c.instance = id_arg(o.Get("instance"), "instance");
  c.vni = opt_u32(o, "vni", 0);
  c.family = static_cast<uint8_t>(opt_u32(o, "family", 4));
  c.mine = id_arg(o.Get("mine"), "mine");
  c.yours = id_arg(o.Get("yours"), "yours");
  c.nonce = id_arg(o.Get("nonce"), "nonce");
  c.buf_size = opt_u32(o, "bufSize", 2048);
  std::vector<int> fds;
  if (info.Length() > 2 && info[2].IsArray()) {
    Napi::Array a = info[2].As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); i++) fds.push_back(static_cast<int>(a.Get(i).As<Napi::Number>().Int32Value()));
  }
  auto st = shortcut_send_claim(fd, c, fds);
  if (!st) throw sys_error(env, st.error());
  return env.Undefined();
}

// shortcutRecvClaim(fd) -> {instance, vni, family, mine, yours, nonce, bufSize, fds}
Napi::Value RecvClaim(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  std::vector<unique_fd> fds;
  ShortcutClaim c = unwrap(env, shortcut_recv_claim(arg_fd(info, 0), fds));
  Napi::Object o = Napi::Object::New(env);
  o.Set("instance", hex_of(c.instance));
  o.Set("vni", c.vni);
  o.Set("family", c.family);
  o.Set("mine", hex_of(c.mine));
  o.Set("yours", hex_of(c.yours));
  o.Set("nonce", hex_of(c.nonce));
  o.Set("bufSize", c.buf_size);
  Napi::Array a = Napi::Array::New(env, fds.size());
  for (uint32_t i = 0; i < fds.size(); i++) a.Set(i, fds[i].release());
  o.Set("fds", a);
  return o;
}

}  // namespace

void InitShortcutRing(Napi::Env env, Napi::Object exports) {
  exports.Set("ShortcutRing", ShortcutRingJs::Define(env));
  exports.Set("shortcutDirCheck", Napi::Function::New(env, DirCheck));
  exports.Set("shortcutCheckEventfd", Napi::Function::New(env, CheckEventfd));
  exports.Set("shortcutEventfd", Napi::Function::New(env, MakeEventfd));
  exports.Set("shortcutListen", Napi::Function::New(env, Listen));
  exports.Set("shortcutConnect", Napi::Function::New(env, Connect));
  exports.Set("shortcutSweep", Napi::Function::New(env, Sweep));
  exports.Set("shortcutAccept", Napi::Function::New(env, Accept));
  exports.Set("shortcutSendClaim", Napi::Function::New(env, SendClaim));
  exports.Set("shortcutRecvClaim", Napi::Function::New(env, RecvClaim));
}

}  // namespace nm
