#include "core/tap_driver.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace nm {

namespace {
constexpr uint32_t BATCH = 256;           // frames per direction before the other gets a turn
constexpr size_t OVERFLOW = 65536 + 256;  // a GSO frame's largest size, with its Ethernet header
#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#define TUN_F_USO6 0x40
#endif
}  // namespace

Result<std::unique_ptr<TapDriver>> TapDriver::open(PortClient pc, const TapOptions &o, std::string label) {
  if (o.ifname.empty() || o.ifname.size() >= IFNAMSIZ)
    return check_fail(EINVAL, "TAP name '" + o.ifname + "' must be 1 to " + std::to_string(IFNAMSIZ - 1) + " characters");
  if (o.queues < 1 || o.queues > 16) return check_fail(EINVAL, "TAP queues must be 1 to 16, not " + std::to_string(o.queues));
  std::unique_ptr<TapDriver> d(new TapDriver(std::move(pc), std::move(label)));
  d->vnet_ = o.vnet_hdr;
  d->pass_hdr_ = o.vnet_hdr && o.pass_hdr;
  for (uint32_t q = 0; q < o.queues; q++) {
    unique_fd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
    if (!fd) {
      const int e = errno;  // saved before the hint's strings are made
      return SysError{e, "open", "/dev/net/tun",
                      e == ENOENT ? "this /dev has no /dev/net/tun: load the tun module (modprobe tun); under systemd, a unit with "
                                    "PrivateDevices=yes (as vale-ts.service) needs PrivateDevices=no in a drop-in for TAP ports"
                                  : "TAP ports need the tun module and CAP_NET_ADMIN (run vale-ts as root)",
                      {}, 0};
    }
    ifreq ifr{};
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    if (o.vnet_hdr) ifr.ifr_flags |= IFF_VNET_HDR;
    if (o.queues > 1) ifr.ifr_flags |= IFF_MULTI_QUEUE;
    std::memcpy(ifr.ifr_name, o.ifname.data(), o.ifname.size());
    if (::ioctl(fd.get(), TUNSETIFF, &ifr) < 0)
      return sys_fail("ioctl(TUNSETIFF)", "TAP " + o.ifname,
                      errno == EBUSY ? "another process has it open (a TAP without multi_queue has one reader)"
                      : errno == EINVAL ? "an existing TAP of that name was made with other flags (vnet_hdr, multi_queue) or is a TUN"
                                        : "");
    if (o.vnet_hdr) {
      int sz = static_cast<int>(VNET_HDR_LEN);
      if (::ioctl(fd.get(), TUNSETVNETHDRSZ, &sz) < 0) return sys_fail("ioctl(TUNSETVNETHDRSZ)", "TAP " + o.ifname);
      if (o.offload) {
        unsigned base = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
        // UDP segmentation offload (Linux 6.2+) where the kernel has it
        if (::ioctl(fd.get(), TUNSETOFFLOAD, base | TUN_F_USO4 | TUN_F_USO6) < 0 && ::ioctl(fd.get(), TUNSETOFFLOAD, base) < 0)
          return sys_fail("ioctl(TUNSETOFFLOAD)", "TAP " + o.ifname);
      }
    }
    d->ifname_.assign(ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ));
    d->q_.push_back(std::move(fd));
    d->readable_.push_back(true);
    d->dead_.push_back(false);
  }
  d->scratch_.resize(OVERFLOW);
  return d;
}

TapDriver::~TapDriver() { stop(); }

void TapDriver::link_wants(std::vector<Want> &w, bool room_in, bool pending_out) {
  // not watched while the tx ring is full: once there is room, every queue is tried
  if (!room_in) recheck_ = true;
  for (size_t i = 0; i < q_.size(); i++) {
    uint32_t ev = 0;
    if (dead_[i]) continue;
    if (room_in && !readable_[i]) ev |= POLLIN;
    if (i == 0 && pending_out) ev |= POLLOUT;
    if (ev) w.push_back({q_[i].get(), ev});
  }
}

void TapDriver::link_event(int fd, uint32_t events) {
  for (size_t i = 0; i < q_.size(); i++) {
    if (q_[i].get() != fd) continue;
    if (events & (POLLIN | POLLERR | POLLHUP)) readable_[i] = !dead_[i];
    if (events & (POLLOUT | POLLERR | POLLHUP)) out_blocked_ = false;
  }
}

bool TapDriver::pick_queue(uint32_t &spins, uint32_t &qi) {
  const auto nq = static_cast<uint32_t>(q_.size());
  if (recheck_) {
    // readiness nobody watched (a full tx ring, or a busy batch that never
    // polled): assume readable; a read says EAGAIN soon enough
    recheck_ = false;
    for (uint32_t i = 0; i < nq; i++) readable_[i] = !dead_[i];
  }
  for (; spins < nq; spins++) {
    if (tx_room() == 0) return false;
    qi = next_q_;
    // a frame at a time from each queue in turn: a queue kept full (one busy
    // flow) cannot hold back the frames waiting in the others
    next_q_ = (next_q_ + 1) % nq;
    if (readable_[qi] && !dead_[qi]) {
      spins = 0;
      return true;
    }
  }
  return false;
}

void TapDriver::read_failed(uint32_t qi) {
  if (errno == EINTR) return;  // read it again
  if (errno != EAGAIN) {
    // EBADFD: the device is gone; nothing more will come from this queue
    count(Ctr::LinkErrors);
    log(std::string("read from TAP ") + ifname_ + ": " + std::strerror(errno) + "; this queue is not read any more");
    dead_[qi] = true;
  }
  readable_[qi] = false;
}

uint32_t TapDriver::link_in() {
  if (pass_hdr_) return link_in_with_hdr();
  uint32_t moved = 0;
  if (pending_) {
    if (!ingest_vnet(pending_hdr_, scratch_.data(), pending_len_, false)) return 0;
    pending_ = false;
    moved++;
  }
  const size_t bs = slot_fill();
  for (uint32_t spins = 0, qi = 0; moved < BATCH && pick_queue(spins, qi);) {
    uint8_t hdr[VNET_HDR_LEN];
    uint8_t *slot = tx_buf();
    iovec iov[3];
    int n = 0;
    if (vnet_) iov[n++] = {hdr, sizeof hdr};
    iov[n++] = {slot, bs};
    // past the slot: only GSO frames and frames too long for the port land here
    iov[n++] = {scratch_.data() + std::min(bs, scratch_.size()), scratch_.size() - std::min(bs, scratch_.size())};
    ssize_t r = ::readv(q_[qi].get(), iov, n);
    if (r < 0) {
      read_failed(qi);
      continue;
    }
    size_t len = static_cast<size_t>(r);
    if (!vnet_) {
      if (len > bs) count(Ctr::DropTooLong);
      else if (len > 0) tx_push(static_cast<uint32_t>(len));
      moved++;
      continue;
    }
    if (len < VNET_HDR_LEN) {
      count(Ctr::DropBadVnetHdr);
      continue;
    }
    len -= VNET_HDR_LEN;
    VnetHdr h = vnet_hdr_read(hdr);
    moved++;
    if ((h.gso_type & static_cast<uint8_t>(~VNET_GSO_ECN)) == VNET_GSO_NONE) {
      ingest_vnet(h, slot, len, true);
      continue;
    }
    // make the GSO frame contiguous in scratch, then cut it into the tx slots
    std::memcpy(scratch_.data(), slot, std::min(len, bs));
    if (!ingest_vnet(h, scratch_.data(), len, false)) {
      pending_ = true;
      pending_hdr_ = h;
      pending_len_ = len;
      moved--;
      break;
    }
  }
  if (moved >= BATCH) recheck_ = true;  // no poll comes between busy batches
  return moved;
}

// Header and frame as the TAP gives them, into one tx slot or, when longer
// than a buffer, a chain of them.
uint32_t TapDriver::link_in_with_hdr() {
  uint32_t moved = 0;
  const size_t bs = slot_fill();
  if (pending_) {
    if (!tx_chain(scratch_.data(), pending_len_)) return 0;
    pending_ = false;
    moved++;
  }
  for (uint32_t spins = 0, qi = 0; moved < BATCH && pick_queue(spins, qi);) {
    uint8_t *slot = tx_buf();
    // the first buffer's worth in the slot, the rest of a long frame after
    // the same number of bytes in scratch, so a copy of the slot makes it whole
    iovec iov[2] = {{slot, bs}, {scratch_.data() + std::min(bs, scratch_.size()), scratch_.size() - std::min(bs, scratch_.size())}};
    ssize_t r = ::readv(q_[qi].get(), iov, 2);
    if (r < 0) {
      read_failed(qi);
      continue;
    }
    const size_t len = static_cast<size_t>(r);
    moved++;
    if (len < VNET_HDR_LEN + 14) {
      count(Ctr::DropBadVnetHdr);
      continue;
    }
    if (len <= bs) {
      tx_push(static_cast<uint32_t>(len));
      continue;
    }
    std::memcpy(scratch_.data(), slot, bs);
    if (!tx_chain(scratch_.data(), len)) {
      pending_ = true;
      pending_len_ = len;
      moved--;
      break;
    }
  }
  if (moved >= BATCH) recheck_ = true;  // no poll comes between busy batches
  return moved;
}

// Frames with their header (the switch gives every frame one: this port
// declared it), each chain in one writev.
uint32_t TapDriver::link_out_with_hdr() {
  uint32_t moved = 0;
  iovec iov[NETMAP_MAX_FRAGS];
  uint32_t n;
  size_t len;
  while (moved < BATCH && !out_blocked_ && rx_peek_chain(iov, NETMAP_MAX_FRAGS, n, len)) {
    const SendOutcome o = account_send(::writev(q_[0].get(), iov, static_cast<int>(n)), len, [this](int e) {
      if (e != EIO) count(Ctr::LinkErrors);  // EIO: the interface is down
    });
    if (o == SendOutcome::Retry) continue;
    if (o == SendOutcome::Blocked) break;
    for (uint32_t j = 0; j < n; j++) rx_pop();
    moved++;
  }
  return moved;
}

namespace {
const uint8_t zero_hdr[VNET_HDR_LEN] = {};
}  // namespace

// The switch hands over frames only when their header is the port's (none,
// or the 10 bytes it declared with vnet_hdr): as link_out writes them, a
// zero header in front where the TAP takes one and the port declared none.
// A write the TAP refuses for now (EAGAIN) stops it: that frame and the rest
// go into the rx ring, for link_out once the TAP has room.
uint32_t TapDriver::link_direct(const iovec *iov, const uint32_t *at, uint32_t n) {
  iovec v[NETMAP_MAX_FRAGS * 3 + 1];
  uint32_t i = 0;
  while (i < n) {
    const uint32_t nv = at[i + 1] - at[i];
    if (nv + 1 > std::size(v)) {
      // more pieces than a chain of slots has: cannot happen from the switch
      count(Ctr::DropTooLong);
      i++;
      continue;
    }
    uint32_t k = 0;
    size_t len = 0;
    if (vnet_ && !pass_hdr_) v[k++] = {const_cast<uint8_t *>(zero_hdr), sizeof zero_hdr};
    for (uint32_t j = 0; j < nv; j++) {
      v[k++] = iov[at[i] + j];
      len += iov[at[i] + j].iov_len;
    }
    const SendOutcome o = account_send(::writev(q_[0].get(), v, static_cast<int>(k)), len, [this](int e) {
      if (e != EIO) count(Ctr::LinkErrors);  // EIO: the interface is down
    });
    if (o == SendOutcome::Retry) continue;
    if (o == SendOutcome::Blocked) break;
    i++;
  }
  if (i) count(Ctr::OutDirect, i);
  return i;
}

uint32_t TapDriver::link_out() {
  if (pass_hdr_) return link_out_with_hdr();
  return send_rx_frames(
      BATCH,
      [this](const uint8_t *b, uint32_t l) {
        iovec iov[2];
        int n = 0;
        if (vnet_) iov[n++] = {const_cast<uint8_t *>(zero_hdr), sizeof zero_hdr};
        iov[n++] = {const_cast<uint8_t *>(b), l};
        return ::writev(q_[0].get(), iov, n);
      },
      // EIO: the TAP's interface is down; the frame has nowhere to go
      [this](int e) {
        if (e != EIO) count(Ctr::LinkErrors);
      });
}

}  // namespace nm
