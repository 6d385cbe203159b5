// Small helpers shared by the addon's parts: the one errno-to-JS-Error
// conversion and argument checks that name what was wrong. Exceptions live
// here and in the other cpp/napi files only; cpp/core returns Result.
#pragma once

#include <napi.h>
#include <uv.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include "core/fd.h"
#include "core/region.h"
#include "core/result.h"

namespace nm {

// The name of an errno ("EBUSY", "ENOTTY"...): libuv's table, as Node's own
// errors use, then glibc's for the few libuv does not know. Never a catch-all.
// Errno 95 is EOPNOTSUPP here, as netmap's kernel code and docs spell it
// (libuv calls the same number ENOTSUP).
inline std::string errno_name(int e) {
  if (e == EOPNOTSUPP) return "EOPNOTSUPP";
  char buf[64];
  uv_err_name_r(-e, buf, sizeof buf);
  if (std::strncmp(buf, "Unknown", 7) != 0) return buf;
  return errno_symbol(e);
}

// The errno's text as Linux words it (strerror), as netmap's own tools print
// it; libuv's texts differ for some (errno 95: "operation not supported on
// socket"), which would mislead about a netmap port.
inline std::string errno_text(int e) { return std::strerror(e); }

// The one conversion from the core's SysError to a JS Error, shaped like
// Node's own: .code (the errno's name), .errno, and .syscall when a syscall
// failed. The message: `what`, then for a syscall failure its strerror text
// and code, then the hint (the fix) if any.
inline Napi::Error sys_error(Napi::Env env, const SysError &s) {
  const int reported = s.code_err ? s.code_err : s.err;
  const std::string code = errno_name(reported);
  std::string msg = s.what;
  if (s.syscall) msg.append(": ").append(errno_text(s.err)).append(" (").append(errno_name(s.err)).append(")");
  if (!s.hint.empty()) msg.append(": ").append(s.hint);
  Napi::Error err = Napi::Error::New(env, msg);
  err.Set("code", Napi::String::New(env, code));
  err.Set("errno", Napi::Number::New(env, reported));
  if (s.syscall) err.Set("syscall", Napi::String::New(env, s.syscall));
  if (!s.path.empty()) err.Set("path", Napi::String::New(env, s.path));
  return err;
}

// `what` failed in `syscall` with errno e.
inline Napi::Error errno_error(Napi::Env env, const std::string &what, int e, const char *syscall) {
  return sys_error(env, SysError{e, syscall, what, {}, {}, 0});
}

// A failed check: msg as written, .code the name of errno e.
inline Napi::Error coded_error(Napi::Env env, const std::string &msg, int e) {
  return sys_error(env, SysError{e, nullptr, msg, {}, {}, 0});
}

// Unwraps a core Result or throws its error.
template <class T>
T unwrap(Napi::Env env, Result<T> &&r) {
  if (!r) throw sys_error(env, r.error());
  return std::move(r).value();
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
inline Napi::ArrayBuffer mapping_to_arraybuffer(Napi::Env env, mapping &&m) {
  const size_t size = m.size();
  return mapping_to_arraybuffer(env, m.release(), size);
}

// Region parameters from a JS object ({txRings, rxRings, txSlots, ...}).
LayoutParams params_from(Napi::Object o);

// A pipe's region parameters from {rings, slots, bufSize, extraBufs}: two
// netmap_ifs, and one end's tx ring feeds the other's rx ring, so counts and
// sizes are the same both ways.
inline LayoutParams pipe_params_from(Napi::Object po) {
  LayoutParams p;
  p.n_ifs = 2;
  p.tx_rings = p.rx_rings = opt_u32(po, "rings", 1);
  p.tx_slots = p.rx_slots = opt_u32(po, "slots", DEFAULT_SLOTS);
  p.buf_size = opt_u32(po, "bufSize", DEFAULT_BUF_SIZE);
  p.extra_bufs = opt_u32(po, "extraBufs", 0);
  return p;
}

void InitAbi(Napi::Env env, Napi::Object exports);
void InitFdio(Napi::Env env, Napi::Object exports);
void InitRegion(Napi::Env env, Napi::Object exports);
void InitPipe(Napi::Env env, Napi::Object exports);
void InitKernel(Napi::Env env, Napi::Object exports);
void InitKernelCtl(Napi::Env env, Napi::Object exports);
void InitForward(Napi::Env env, Napi::Object exports);
void InitPortDrivers(Napi::Env env, Napi::Object exports);
void InitAfPacket(Napi::Env env, Napi::Object exports);
void InitCapture(Napi::Env env, Napi::Object exports);  // napi/capture.cc

}  // namespace nm
