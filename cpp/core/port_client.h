// The client side of one vale-ts port, without N-API: what a process gets
// from a `register` reply (the port's region fd, its own doorbell and the
// switch's doorbell), as C++. A port driver that lives inside vale-ts (TAP,
// socket netdevs, vhost-user, AF_PACKET, VXLAN) is the client of a port of its
// own: it fills the port's tx rings and drains its rx rings exactly as a
// netmap program does, so the switch forwards, learns and counts for it with
// no special case. The sync protocol is docs/control-protocol.md's: publish
// cur then head in the ring's CSB record, kick the switch only when it asked,
// read hwtail back.
//
// Everything read from the shared region is treated as hostile input even
// here: the region is also mapped by the switch, and a port's rings can be
// handed to a client process later. Indices are checked against the ring
// size, buffer indices against the pool, lengths against the buffer size.
#pragma once

#include <cstdint>

#include "abi/netmap_abi.h"
#include "core/fd.h"
#include "core/region.h"
#include "core/result.h"

namespace nm {

class PortClient {
 public:
  PortClient() = default;
  PortClient(PortClient &&) noexcept = default;
  PortClient &operator=(PortClient &&) noexcept = default;
  PortClient(const PortClient &) = delete;
  PortClient &operator=(const PortClient &) = delete;

  // Maps the region behind `region_fd` and checks its header. Takes
  // ownership of all three fds (dup them first to keep yours); on failure
  // they are closed.
  static Result<PortClient> attach(unique_fd region_fd, unique_fd wait_bell, unique_fd switch_bell);

  uint32_t tx_rings() const { return layout_.p.tx_rings; }
  uint32_t rx_rings() const { return layout_.p.rx_rings; }
  uint32_t buf_size() const { return layout_.p.buf_size; }
  const Layout &layout() const { return layout_; }
  netmap_ring *tx_ring(uint32_t r) const { return ring(r); }
  netmap_ring *rx_ring(uint32_t r) const { return ring(layout_.p.tx_rings + r); }

  // The buffer of a slot, or nullptr when its buf_idx is outside the pool
  // (index 0 and 1 are netmap's reserved buffers and never valid either).
  uint8_t *slot_buf(const netmap_slot &s) const {
    uint32_t i = s.buf_idx;
    if (i < 2 || i >= layout_.num_bufs) return nullptr;
    return map_.data() + layout_.buf_pool_ofs + static_cast<uint64_t>(i) * layout_.p.buf_size;
  }

  // Slots we may fill on tx ring r (head .. tail), after a txsync.
  uint32_t tx_space(uint32_t r) const;
  // Frames waiting on rx ring r (head .. tail), after an rxsync.
  uint32_t rx_avail(uint32_t r) const;

  // netmap's txsync/rxsync on one ring: publish the ring's head and cur to
  // the switch, kick it if it asked, and take its hwtail as the ring's tail.
  // Returns false if the switch wrote an impossible hwtail (ignored).
  bool txsync(uint32_t r) { return sync(r, tx_ring(r), layout_.p.tx_rings > r); }
  bool rxsync(uint32_t r) { return sync(layout_.p.tx_rings + r, rx_ring(r), layout_.p.rx_rings > r); }

  // Before sleeping on wait_fd(): ask the switch to kick us when frames
  // arrive (rx) or room frees up (tx). Withdraw with disarm() after waking;
  // then sync again (the classic need-kick handshake: no lost wakeup).
  void arm(bool rx, bool tx);
  void disarm();
  // Empties the doorbell after a wakeup.
  void drain_bell() const;

  // Readable when the switch kicked us.
  int wait_fd() const { return wait_bell_.get(); }
  int region_fd() const { return region_fd_.get(); }

  // ---- for a client whose rings an untrusted program writes (the preload
  // gives them to a netmap application), binding some rings only ----------
  // The region as mapped here: rings, CSB records and buffers lie at the
  // layout's offsets from it.
  uint8_t *base() const { return map_.data(); }
  size_t mapped_size() const { return map_.size(); }
  // netmap's record of one ring as the kernel last left it: the head it
  // accepted and the tail it gave. The program's head and cur are checked
  // against it on every sync.
  struct Shadow {
    uint32_t head = 0;
    uint32_t tail = 0;
  };
  // Ring k (tx rings first, then rx) as it is now, out-of-range values reset.
  Shadow shadow(uint32_t k) const;
  // txsync/rxsync of ring k as netmap does it for an application: a head or
  // cur outside [s.head, s.tail] is refused (false, nothing published: the
  // caller resets the ring, netmap's "ring reinit"); else cur then head go
  // to the switch, which is kicked only if it asked and head moved, and its
  // hwtail, when in range, becomes the ring's tail and s.tail.
  bool sync_checked(uint32_t k, Shadow &s);
  // Asks for (on) or withdraws a kick on ring k alone.
  void need_kick(uint32_t k, bool on);

 private:
  netmap_ring *ring(uint32_t k) const { return reinterpret_cast<netmap_ring *>(map_.data() + layout_.ring_ofs[0][k]); }
  nm_csb_atok *atok(uint32_t k) const { return reinterpret_cast<nm_csb_atok *>(map_.data() + layout_.csb_entry(0, k)); }
  nm_csb_ktoa *ktoa(uint32_t k) const {
    return reinterpret_cast<nm_csb_ktoa *>(map_.data() + layout_.csb_entry(0, k) + sizeof(nm_csb_atok));
  }
  bool sync(uint32_t k, netmap_ring *r, bool exists);

  unique_fd region_fd_, wait_bell_, switch_bell_;
  mapping map_;
  Layout layout_;
};

}  // namespace nm
