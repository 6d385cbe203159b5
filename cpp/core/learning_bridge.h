// A learning bridge in C++ with the decisions of src/vale/learning-bridge.ts
// (learn unicast sources, flood group and unknown destinations, never
// reflect, drop runts), over a fixed open-addressing table. It exists as the
// like-with-like baseline of the benchmarks: the same switch core deciding
// in C++ instead of calling the TypeScript lookup. No aging (a benchmark
// runs for seconds); when the table is full, new sources are not learned.
#pragma once

#include <cstdint>
#include <memory>

#include "core/switch_core.h"

namespace nm {

class NativeLearningBridge {
 public:
  static constexpr uint32_t CAPACITY = 1u << 14;  // power of two, 2x the TS table's default bound

  NativeLearningBridge() : keys_(new uint64_t[CAPACITY]()), ports_(new int16_t[CAPACITY]) {
    for (uint32_t i = 0; i < CAPACITY; i++) ports_[i] = -1;
  }

  void decide(const LookupBatch &b) {
    for (uint32_t i = 0; i < b.count; i++) {
      if (b.lens[i] < 14) {
        b.dests[i] = DEST_DROP;
        continue;
      }
      const uint8_t *h = b.hdr + b.offsets[i];
      const uint64_t src = mac(h + 6), dst = mac(h);
      if (!(h[6] & 1)) learn(src, b.src[i]);
      if (h[0] & 1) {
        b.dests[i] = DEST_FLOOD;
        continue;
      }
      const int16_t p = find(dst);
      b.dests[i] = p < 0 ? DEST_FLOOD : p == b.src[i] ? DEST_SAME_PORT : p;
    }
  }

  // the port went away: forget what was learned on it
  void port_removed(uint32_t port) {
    for (uint32_t i = 0; i < CAPACITY; i++)
      if (ports_[i] == static_cast<int16_t>(port)) ports_[i] = -2;  // tombstone: probing continues past it
  }

 private:
  static uint64_t mac(const uint8_t *p) {
    return (uint64_t(p[0]) << 40) | (uint64_t(p[1]) << 32) | (uint64_t(p[2]) << 24) | (uint64_t(p[3]) << 16) |
           (uint64_t(p[4]) << 8) | p[5];
  }
  static uint32_t hash(uint64_t k) { return static_cast<uint32_t>((k * 0x9E3779B97F4A7C15ull) >> 50) & (CAPACITY - 1); }

  int16_t find(uint64_t k) const {
    for (uint32_t i = hash(k), n = 0; n < CAPACITY; i = (i + 1) & (CAPACITY - 1), n++) {
      if (ports_[i] == -1) return -1;
      if (ports_[i] >= 0 && keys_[i] == k) return ports_[i];
    }
    return -1;
  }

  void learn(uint64_t k, uint8_t port) {
    uint32_t free = CAPACITY;
    for (uint32_t i = hash(k), n = 0; n < CAPACITY; i = (i + 1) & (CAPACITY - 1), n++) {
      if (ports_[i] == -1) {
        if (free == CAPACITY) free = i;
        break;
      }
      if (ports_[i] == -2) {
        if (free == CAPACITY) free = i;
        continue;
      }
      if (keys_[i] == k) {
        ports_[i] = port;
        return;
      }
    }
    if (free == CAPACITY) return;  // full
    keys_[free] = k;
    ports_[free] = port;
  }

  std::unique_ptr<uint64_t[]> keys_;
  std::unique_ptr<int16_t[]> ports_;
};

}  // namespace nm
