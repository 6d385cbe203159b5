// JS binding of the shortcut's channel (cpp/core/shortcut_ring.h), so the
// ring and its checks against a hostile peer are tested from ava: make a
// channel, attach a second mapping to its fd as the peer would, push, peek,
// and corrupt the shared indices through the fd.
#include <fcntl.h>
#include <unistd.h>

#include <optional>

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
                        InstanceAccessor("broken", &ShortcutRingJs::Broken, nullptr)});
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

}  // namespace

void InitShortcutRing(Napi::Env env, Napi::Object exports) { exports.Set("ShortcutRing", ShortcutRingJs::Define(env)); }

}  // namespace nm
