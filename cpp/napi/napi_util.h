// Small helpers shared by the addon's parts: errno-carrying errors and
// argument checks that name what was wrong.
#pragma once

#include <napi.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

namespace nm {

inline const char *errno_code(int e) {
  switch (e) {
    case EBUSY: return "EBUSY";
    case ENOENT: return "ENOENT";
    case EINVAL: return "EINVAL";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case ENOMEM: return "ENOMEM";
    case EEXIST: return "EEXIST";
    case EAGAIN: return "EAGAIN";
    case ECONNREFUSED: return "ECONNREFUSED";
    case EPIPE: return "EPIPE";
    case ENXIO: return "ENXIO";
    case ENODEV: return "ENODEV";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EBADF: return "EBADF";
    case ECONNRESET: return "ECONNRESET";
    case ENOSPC: return "ENOSPC";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case EMFILE: return "EMFILE";
    default: return "EIO";
  }
}

// An Error with .code (e.g. 'EBUSY'), .errno and .syscall, like Node's own.
inline Napi::Error errno_error(Napi::Env env, const std::string &what, int e) {
  Napi::Error err = Napi::Error::New(env, what + ": " + std::strerror(e) + " (" + errno_code(e) + ")");
  err.Set("code", Napi::String::New(env, errno_code(e)));
  err.Set("errno", Napi::Number::New(env, e));
  return err;
}

inline Napi::Error coded_error(Napi::Env env, const std::string &msg, const char *code) {
  Napi::Error err = Napi::Error::New(env, msg);
  err.Set("code", Napi::String::New(env, code));
  return err;
}

inline uint32_t arg_u32(const Napi::CallbackInfo &info, size_t i, const char *name) {
  if (info.Length() <= i || !info[i].IsNumber())
    throw Napi::TypeError::New(info.Env(), std::string(name) + " must be a number");
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 4294967295.0) || d != static_cast<double>(static_cast<uint32_t>(d)))
    throw Napi::RangeError::New(info.Env(), std::string(name) + " must be an integer in 0..2^32-1");
  return static_cast<uint32_t>(d);
}

inline int arg_fd(const Napi::CallbackInfo &info, size_t i) {
  uint32_t v = arg_u32(info, i, "fd");
  if (v > 0x7fffffff) throw Napi::RangeError::New(info.Env(), "fd out of range");
  return static_cast<int>(v);
}

inline uint32_t opt_u32(Napi::Object o, const char *key, uint32_t dflt) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return dflt;
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string(key) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 4294967295.0) || d != static_cast<double>(static_cast<uint32_t>(d)))
    throw Napi::RangeError::New(o.Env(), std::string(key) + " must be a non-negative integer");
  return static_cast<uint32_t>(d);
}

// Maps [base, base+size) as an external ArrayBuffer; munmap runs when the
// last JS reference goes, so a view can never outlive its mapping.
Napi::ArrayBuffer mapping_to_arraybuffer(Napi::Env env, void *base, size_t size);

struct LayoutParams;
// Region parameters from a JS object ({txRings, rxRings, txSlots, ...}).
LayoutParams params_from(Napi::Object o);

void InitAbi(Napi::Env env, Napi::Object exports);
void InitFdio(Napi::Env env, Napi::Object exports);
void InitRegion(Napi::Env env, Napi::Object exports);
void InitPipe(Napi::Env env, Napi::Object exports);
void InitKernel(Napi::Env env, Napi::Object exports);
void InitForward(Napi::Env env, Napi::Object exports);
void InitPktgen(Napi::Env env, Napi::Object exports);

}  // namespace nm
