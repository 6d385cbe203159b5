// Acquire/release accessors for index words shared with another process.
// The words live in netmap's plain structs (uint32_t), so we use the GCC
// builtins, which are defined for any suitably aligned integer object.
#pragma once

#include <cstdint>

namespace nm {

inline uint32_t load_acquire(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
inline void store_release(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
inline uint32_t load_relaxed(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
inline void store_relaxed(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
inline uint32_t exchange(uint32_t *p, uint32_t v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }
// Orders "publish index" before "read the peer's need-kick flag" (and the
// mirror image on the sleeping side), so a wakeup is never lost.
inline void full_fence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

}  // namespace nm
