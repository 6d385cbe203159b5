// The one error convention of the core (no exceptions below cpp/napi): a
// failed operation returns a SysError saying which errno, which syscall (if
// one failed) and what we were doing, naming the path or port involved. The
// N-API layer turns it into a JS Error (.code, .errno, .syscall) in one place
// (napi/napi_util.h, sys_error).
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace nm {

struct SysError {
  int err = 0;                    // errno value (also for checks that fail without a syscall)
  const char *syscall = nullptr;  // the failed call, or nullptr when `what` is the whole story
  std::string what;               // context; for syscall errors the strerror text is appended
  std::string hint = {};          // what to do about it, if there is something to say
  std::string path = {};          // the file involved, when there is one
  int code_err = 0;               // if set, the errno to report as the code (the message's text stays err's)
};

// The symbolic name of an errno ("EBUSY"), from glibc, which names every
// one. Errno 95 is EOPNOTSUPP, as netmap spells it (ENOTSUP is the same
// number). cpp/napi's errno_name prefers libuv's name, which agrees.
inline std::string errno_symbol(int e) {
  if (e == EOPNOTSUPP) return "EOPNOTSUPP";
  if (const char *n = strerrorname_np(e)) return n;
  return "errno " + std::to_string(e);
}

// A failed syscall: errno as it is now.
inline SysError sys_fail(const char *syscall, std::string what, std::string hint = {}) {
  return SysError{errno, syscall, std::move(what), std::move(hint), {}, 0};
}
// A failed check: the message is complete as given.
inline SysError check_fail(int err, std::string what, std::string hint = {}) {
  return SysError{err, nullptr, std::move(what), std::move(hint), {}, 0};
}

// A value or the reason there is none. [[nodiscard]]: an ignored failure is
// the kind of bug this type exists to prevent.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T v) : v_(std::in_place_index<0>, std::move(v)) {}  // NOLINT: implicit by design
  Result(SysError e) : v_(std::in_place_index<1>, std::move(e)) {}  // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T &value() & { return std::get<0>(v_); }
  T &&value() && { return std::get<0>(std::move(v_)); }
  T *operator->() { return &std::get<0>(v_); }
  T &operator*() & { return std::get<0>(v_); }
  const SysError &error() const { return std::get<1>(v_); }
  SysError &&take_error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, SysError> v_;
};

struct Ok {};
// Success or a SysError, for operations with nothing to return.
using Status = Result<Ok>;

}  // namespace nm
