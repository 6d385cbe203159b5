// Monotonic time in nanoseconds, the one place the addon, the tools and the
// preload library read it. Signed like time_t (2^63 ns is 292 years, so a
// stamp is never negative); callers that keep stamps as uint64_t take the
// value as is.
#pragma once

#include <time.h>

#include <cstdint>

namespace nm {

namespace detail {
inline int64_t clock_ns(clockid_t id) {
  timespec ts{};
  ::clock_gettime(id, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}
}  // namespace detail

// CLOCK_MONOTONIC: to the nanosecond, for bounds and intervals that are
// short or measured (backpressure holds, benchmarks, poll deadlines).
inline int64_t mono_ns() { return detail::clock_ns(CLOCK_MONOTONIC); }

// CLOCK_MONOTONIC_COARSE: the kernel's last tick (1-4 ms resolution), read
// without the hardware counter, for per-batch stamps on a datapath whose
// periods are 10 ms or more (ageing, hellos, sweeps).
inline int64_t mono_coarse_ns() { return detail::clock_ns(CLOCK_MONOTONIC_COARSE); }

}  // namespace nm
