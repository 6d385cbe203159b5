// One end of a userspace netmap pipe, without N-API: the same region file,
// OFD end locks, FIFO doorbells and buffer-swap sync as cpp/napi/pipe.cc, so
// a C program under the preload and a Node process (pkt-gen-ts, open()) are
// the two ends of one pipe. The logic mirrors pipe.cc line for line; when the
// N-API-free pipe of cpp/core lands, both should use it.
#pragma once

#include <cstdint>
#include <string>

#include "core/region.h"

namespace nmpre {

class PipeEnd {
 public:
  PipeEnd() = default;
  PipeEnd(const PipeEnd &) = delete;
  PipeEnd &operator=(const PipeEnd &) = delete;
  ~PipeEnd() { release(); }

  // Opens (creating or attaching to) end `end` (0 master, 1 slave) of the
  // pipe whose region is `path`. Returns 0, or an errno with *err set.
  int open(const std::string &path, uint32_t end, const nm::Layout &want, const std::string &name, std::string *err);
  // Pushes [hwcur, head) of tx ring r to the peer; slots still pending, or -1
  // when head/cur are impossible.
  int64_t tx_sync(uint32_t r);
  // Releases [hwcur, head) of rx ring r, picks up new frames; -1 as above.
  int64_t rx_sync(uint32_t r);
  // 0: the peer never came or closed, 1: open, 2: died without closing.
  int peer_state() const;
  void release();

  uint8_t *base() const { return base_; }
  uint64_t size() const { return size_; }
  int file_fd() const { return fd_; }
  int doorbell_fd() const { return my_bell_; }
  uint32_t end() const { return end_; }
  const nm::Layout &layout() const { return layout_; }
  nm::netmap_ring *ring(uint32_t iface, uint32_t k) const {
    return reinterpret_cast<nm::netmap_ring *>(base_ + layout_.ring_ofs[iface][k]);
  }
  nm::nm_csb_atok *atok(uint32_t iface, uint32_t k) const {
    return reinterpret_cast<nm::nm_csb_atok *>(base_ + layout_.csb_entry(iface, k));
  }

 private:
  nm::nm_csb_ktoa *ktoa(uint32_t iface, uint32_t k) const {
    return reinterpret_cast<nm::nm_csb_ktoa *>(base_ + layout_.csb_entry(iface, k) + sizeof(nm::nm_csb_atok));
  }
  int open_doorbells(std::string *err);
  void restore_state();
  static void kick(int fd);

  struct RingState {
    uint32_t hwcur = 0;
    uint32_t hwtail = 0;
  };
  std::string path_;
  uint32_t end_ = 0;
  int fd_ = -1, my_bell_ = -1, peer_bell_ = -1;
  uint8_t *base_ = nullptr;
  uint64_t size_ = 0;
  nm::RegionHeader *hdr_ = nullptr;
  nm::Layout layout_;
  RingState tx_[nm::MAX_RINGS], rx_[nm::MAX_RINGS];
  uint32_t fill_[nm::MAX_RINGS] = {};
  uint32_t peer_released_[nm::MAX_RINGS] = {};

 public:
  // per ring, so that threads syncing different rings never share a word
  uint64_t tx_frames[nm::MAX_RINGS] = {}, invalid_slots[nm::MAX_RINGS] = {}, peer_errors[nm::MAX_RINGS] = {};
};

}  // namespace nmpre
