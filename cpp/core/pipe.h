// Netmap pipes between processes: both ends live in one region (a file in
// /dev/shm), master = netmap_if 0, slave = netmap_if 1. txsync of one end
// moves slots into the other end's rx ring by swapping buffer indices, never
// copying. Each index word has a single writer; wakeups go through a FIFO
// doorbell per end. Which end is open is held as an OFD byte lock, so a
// crashed peer is seen (the kernel drops its lock) and a stale file reused.
//
// No N-API here: failures come back as Result, every fd and mapping is
// owned by an RAII member, and an end is only built once everything it
// needs is open (a failed open leaves no fd, lock or mapping behind).
#pragma once

#include <cstdint>
#include <string>

#include "core/fd.h"
#include "core/region.h"
#include "core/result.h"

namespace nm {

// kClosed: never came; kLeft: came and closed; kDead: died without closing
enum class PeerState : uint32_t { kClosed = 0, kOpen = 1, kDead = 2, kLeft = 3 };

struct PipeStats {
  uint64_t tx_frames = 0;
  uint64_t invalid_slots = 0;  // tx slots with a bad buffer index or length: returned, not moved
  uint64_t peer_errors = 0;    // index words the peer published out of range: ignored
};

// A pipe's region file is DIR/PIPE_FILE_PREFIX + the pipe's escaped name
// (DIR: NETMAP_PIPE_DIR, default /dev/shm); its doorbells add .m and .s.
inline constexpr char PIPE_FILE_PREFIX[] = "netmap-pipe-";

class PipeEnd {
 public:
  // Opens end `end` (0 master, 1 slave) of the pipe whose region lives at
  // `path`, creating the region with layout `want` when no end is attached
  // (the attaching end takes the creator's layout). `name` goes into the
  // netmap_ifs. Doorbells are the FIFOs path.m and path.s.
  static Result<PipeEnd> open(const std::string &path, uint32_t end, const Layout &want, const std::string &name);

  PipeEnd(PipeEnd &&) noexcept = default;
  PipeEnd &operator=(PipeEnd &&) = delete;
  PipeEnd(const PipeEnd &) = delete;
  PipeEnd &operator=(const PipeEnd &) = delete;
  ~PipeEnd() { close(); }

  // Marks this end closed, wakes the peer, drops the lock; the last end to
  // close removes the region and the doorbells. Idempotent.
  void close();
  // Drops this process's fds and mapping without the close protocol: for a
  // forked child, whose fds share the parent's open file descriptions (and
  // so its end lock), where close() would announce the parent's end closed.
  void abandon();
  bool is_open() const { return static_cast<bool>(map_); }

  // txsync: pushes [hwcur, head) into the peer's rx ring, as far as it has
  // room. Returns slots still pending, or -1 if head/cur are invalid.
  int64_t tx_sync(uint32_t r);
  // rxsync: releases [hwcur, head) to the producer, picks up new frames.
  // Returns the slots available to the user, or -1 if head/cur are invalid.
  int64_t rx_sync(uint32_t r);
  // netmap's ring reinit after a sync refused head/cur: ring r (tx or rx)
  // back as this end's last sync left it (head = cur = hwcur, tail =
  // hwtail), from this process's own record: never from the region's CSB
  // words, which the peer can write.
  void reset_ring(bool tx, uint32_t r);
  PeerState peer_state() const;

  // Summed over the rings: each ring and direction counts in words of its
  // own, so threads syncing different rings of one end (pkt-gen -p N, a
  // tx-only and an rx-only registration) never write a shared one.
  PipeStats stats() const;
  const Layout &layout() const { return layout_; }
  uint32_t end() const { return end_; }
  bool created() const { return created_; }
  int doorbell_fd() const { return my_bell_.get(); }
  // The region file (for a caller that maps it again through a description
  // of its own) and the size of this end's mapping.
  int region_fd() const { return fd_.get(); }
  uint64_t size() const { return map_.size(); }
  uint8_t *base() const { return map_.data(); }
  netmap_ring *ring(uint32_t iface, uint32_t k) const {
    return reinterpret_cast<netmap_ring *>(map_.data() + layout_.ring_ofs[iface][k]);
  }
  // A second mapping of the region, for a caller whose lifetime differs
  // from this end's (a JS ArrayBuffer).
  Result<mapping> map_again() const;

 private:
  struct RingState {
    uint32_t hwcur = 0;
    uint32_t hwtail = 0;
  };

  PipeEnd(std::string path, uint32_t end, unique_fd fd, mapping map, const Layout &layout, bool created,
          unique_fd my_bell, unique_fd peer_bell);

  nm_csb_atok *atok(uint32_t iface, uint32_t k) const {
    return reinterpret_cast<nm_csb_atok *>(map_.data() + layout_.csb_entry(iface, k));
  }
  nm_csb_ktoa *ktoa(uint32_t iface, uint32_t k) const {
    return reinterpret_cast<nm_csb_ktoa *>(map_.data() + layout_.csb_entry(iface, k) + sizeof(nm_csb_atok));
  }
  RegionHeader *header() const { return reinterpret_cast<RegionHeader *>(map_.data()); }
  void restore_state();
  void kick_peer() const;

  std::string path_;
  uint32_t end_ = 0;
  unique_fd fd_, my_bell_, peer_bell_;
  mapping map_;
  Layout layout_;
  bool created_ = false;
  RingState tx_[MAX_RINGS], rx_[MAX_RINGS];
  uint32_t fill_[MAX_RINGS] = {};
  uint32_t peer_released_[MAX_RINGS] = {};
  PipeStats tx_stats_[MAX_RINGS], rx_stats_[MAX_RINGS];  // per ring and direction: see stats()
};

}  // namespace nm
