// The userspace memory region: netmap's layout (netmap_if, rings, buffer pool
// addressed by index) in one mapping, preceded by a small header of ours that
// lets a second process validate the layout before trusting a single offset.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "abi/netmap_abi.h"
#include "core/fd.h"
#include "core/result.h"

namespace nm {

constexpr uint32_t REGION_MAGIC = 0x53544d4e;  // "NMTS" little-endian
constexpr uint32_t REGION_VERSION = 1;
constexpr uint32_t MAX_IFS = 2;         // a port has one netmap_if, a pipe two
constexpr uint32_t MAX_RINGS = 16;      // NM_BDG_MAXRINGS
constexpr uint32_t MAX_SLOTS = 4096;    // NM_BDG_MAXSLOTS
constexpr uint32_t MIN_SLOTS = 2;
constexpr uint32_t DEFAULT_SLOTS = 1024;
constexpr uint32_t DEFAULT_BUF_SIZE = 2048;
constexpr uint32_t MIN_BUF_SIZE = 64;
constexpr uint32_t MAX_BUF_SIZE = 65536;
// Bytes a writer may put in one slot of a port with `buf_size` buffers: the
// buffer, but no more than netmap_slot's 16-bit len can say (a 64 KiB buffer
// holds 65536, which would read back as a slot of length 0)
constexpr uint32_t slot_fill(uint32_t buf_size) { return buf_size < 0xffffu ? buf_size : 0xffffu; }
constexpr uint32_t MAX_EXTRA_BUFS = 1u << 20;
constexpr uint64_t REGION_HEADER_SIZE = 4096;
constexpr uint64_t CSB_ENTRY_SIZE = 128;  // nm_csb_atok + nm_csb_ktoa

// A pipe end's word: never opened (a fresh region's zero), open, or left
// (closed cleanly after being open: a peer that came and went before the
// other end looked is still a hang-up, not "never came")
enum EndState : uint32_t { END_CLOSED = 0, END_OPEN = 1, END_LEFT = 2 };

// Region header at offset 0. Everything a peer reads from here is re-derived
// from the parameters and compared before use (see validate_header).
struct RegionHeader {
  uint32_t magic;
  uint32_t version;
  uint64_t size;
  uint32_t n_ifs;
  uint32_t tx_rings;
  uint32_t rx_rings;
  uint32_t tx_slots;
  uint32_t rx_slots;
  uint32_t buf_size;
  uint32_t extra_bufs;
  uint32_t num_bufs;
  uint64_t nifp_ofs[MAX_IFS];
  uint64_t csb_ofs;
  uint64_t buf_pool_ofs;
  std::atomic<uint32_t> end_state[MAX_IFS];  // pipes: which ends are open
  std::atomic<uint32_t> generation;          // bumped on every (re)initialisation
  uint32_t pad;
};
static_assert(std::atomic<uint32_t>::is_always_lock_free);
static_assert(sizeof(std::atomic<uint32_t>) == 4);
static_assert(sizeof(RegionHeader) <= REGION_HEADER_SIZE);
// The header's layout, as netmap_abi.h does for netmap's structs: one list
// for the static_asserts and the offsets exported to JavaScript.
#define NM_ABI_FIELDS_RegionHeader(F, T)                                                                   \
  F(T, magic, 0) F(T, version, 4) F(T, size, 8) F(T, n_ifs, 16) F(T, tx_rings, 20) F(T, rx_rings, 24)      \
  F(T, tx_slots, 28) F(T, rx_slots, 32) F(T, buf_size, 36) F(T, extra_bufs, 40) F(T, num_bufs, 44)         \
  F(T, nifp_ofs, 48) F(T, csb_ofs, 64) F(T, buf_pool_ofs, 72) F(T, end_state, 80) F(T, generation, 88)
#define NM_REGION_STRUCTS(S) S(RegionHeader, 96)
NM_REGION_STRUCTS(NM_ABI_ASSERT_STRUCT)

struct LayoutParams {
  uint32_t n_ifs = 1;
  uint32_t tx_rings = 1;
  uint32_t rx_rings = 1;
  uint32_t tx_slots = DEFAULT_SLOTS;
  uint32_t rx_slots = DEFAULT_SLOTS;
  uint32_t buf_size = DEFAULT_BUF_SIZE;
  uint32_t extra_bufs = 0;
};

struct Layout {
  LayoutParams p;
  uint64_t size = 0;
  uint64_t nifp_ofs[MAX_IFS] = {};
  // absolute offsets of each ring: [if][k], k < tx_rings are tx, then rx
  uint64_t ring_ofs[MAX_IFS][2 * MAX_RINGS] = {};
  uint64_t csb_ofs = 0;
  uint64_t buf_pool_ofs = 0;
  uint32_t num_bufs = 0;

  uint32_t rings_per_if() const { return p.tx_rings + p.rx_rings; }
  uint32_t slots_of(uint32_t k) const { return k < p.tx_rings ? p.tx_slots : p.rx_slots; }
  uint64_t csb_entry(uint32_t iface, uint32_t k) const {
    return csb_ofs + (static_cast<uint64_t>(iface) * rings_per_if() + k) * CSB_ENTRY_SIZE;
  }
};

// Computes the layout, or fails with EINVAL and why the parameters are
// unusable (with the accepted range).
Result<Layout> compute_layout(const LayoutParams &p);

// Writes header, netmap_ifs, rings (netmap's initial head/cur/tail), CSB and
// the extra-buffer lists into zeroed memory of at least layout.size bytes.
void init_region(uint8_t *base, const Layout &l, const std::string names[MAX_IFS]);

// A fresh region in a sealed memfd, mapped once.
struct MemfdRegion {
  unique_fd fd;
  mapping map;
};

// Creates a memfd of layout.size bytes, seals its size, maps it shared and
// writes a fresh region into it. On failure nothing is left open.
Result<MemfdRegion> create_memfd_region(const char *memfd_name, const Layout &l, const std::string names[MAX_IFS]);

// Checks a header found in memory of `mapped` bytes written by someone else;
// returns the layout re-derived from its parameters, or EINVAL and why not.
Result<Layout> validate_header(const uint8_t *base, uint64_t mapped);

inline netmap_slot *ring_slots(netmap_ring *r) {
  return reinterpret_cast<netmap_slot *>(reinterpret_cast<uint8_t *>(r) + sizeof(netmap_ring));
}

inline uint32_t ring_next(uint32_t i, uint32_t n) { return i + 1 == n ? 0 : i + 1; }
// (a - b) mod n for indices already < n
inline uint32_t ring_dist(uint32_t a, uint32_t b, uint32_t n) { return a >= b ? a - b : a + n - b; }

}  // namespace nm
