// The one error convention of the core (no exceptions below cpp/napi): a
// failed operation returns a SysError saying which errno, which syscall (if
// one failed) and what we were doing, naming the path or port involved. The
// N-API layer turns it into a JS Error (.code, .errno, .syscall) in one place
// (napi/napi_util.h, sys_error).
#pragma once

#include <cerrno>
#include <string>
#include <utility>
#include <variant>

namespace nm {

struct SysError {
  int err = 0;                    // errno value (also for checks that fail without a syscall)
  const char *syscall = nullptr;  // the failed call, or nullptr when `what` is the whole story
  std::string what;               // context; for syscall errors the strerror text is appended
};

// A failed syscall: errno as it is now.
inline SysError sys_fail(const char *syscall, std::string what) { return SysError{errno, syscall, std::move(what)}; }
// A failed check: the message is complete as given.
inline SysError check_fail(int err, std::string what) { return SysError{err, nullptr, std::move(what)}; }

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
