#include "core/tap_twin.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace nm {

Result<std::unique_ptr<TapTwinDriver>> TapTwinDriver::start(PortClient port, const std::string &tapname) {
  if (tapname.empty() || tapname.size() >= IFNAMSIZ)
    return check_fail(EINVAL, "TAP name '" + tapname + "' must be 1.." + std::to_string(IFNAMSIZ - 1) + " characters",
                      "the host port's TAP is named IFNAME^: use an interface name of at most 14 characters");
  if (port.tx_rings() < 1 || port.rx_rings() < 1) return check_fail(EINVAL, "the port has no rings");
  std::unique_ptr<TapTwinDriver> d(new TapTwinDriver());
  d->name_ = tapname;
  d->port_ = std::move(port);
  d->overflow_.resize(65536 + 256);  // a TAP's largest frame (MTU 65521 with its headers), and room to spare
  d->tap_.reset(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!d->tap_) return sys_fail("open", "/dev/net/tun for the TAP " + tapname, "load the tun module (modprobe tun)");
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, tapname.data(), tapname.size());
  // IFF_TUN_EXCL: never take over a TAP someone else made
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_TUN_EXCL;
  if (::ioctl(d->tap_.get(), TUNSETIFF, &ifr) < 0) {
    SysError e = sys_fail("ioctl", "TUNSETIFF " + tapname, "an interface named " + tapname + " exists already?");
    return e;
  }
  {
    unique_fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    ifreq f{};
    std::memcpy(f.ifr_name, tapname.data(), tapname.size());
    if (!s || ::ioctl(s.get(), SIOCGIFFLAGS, &f) < 0) return sys_fail("ioctl", "SIOCGIFFLAGS " + tapname);
    f.ifr_flags = static_cast<short>(f.ifr_flags | IFF_UP);
    if (::ioctl(s.get(), SIOCSIFFLAGS, &f) < 0) return sys_fail("ioctl", "SIOCSIFFLAGS " + tapname + " up");
  }
  auto opened = d->thread_.open({d->tap_.get(), d->port_.wait_fd()}, "driver thread of " + tapname);
  if (!opened) return std::move(opened).take_error();
  TapTwinDriver *self = d.get();
  d->thread_.start([self] { self->run(); }, "tap:" + tapname);
  return d;
}

TapTwinDriver::~TapTwinDriver() { stop(); }

void TapTwinDriver::stop() {
  thread_.stop();
  tap_.reset();
}

bool TapTwinDriver::pump_in() {
  netmap_ring *tx = port_.tx_ring(0);
  (void)port_.txsync(0);
  bool moved = false;
  in_blocked_ = false;
  for (;;) {
    if (port_.tx_space(0) == 0) {
      (void)port_.txsync(0);
      if (port_.tx_space(0) == 0) {
        in_blocked_ = true;
        break;
      }
    }
    netmap_slot &sl = tx->slot[tx->head];
    uint8_t *b = port_.slot_buf(sl);
    if (!b) break;  // a corrupt region: nothing sane to do but stop reading
    // the TAP has no offloads: a frame is at most its MTU, but that may have
    // been raised beyond the buffers; a read gives only what fits the iovecs
    // (the rest of the frame is lost), so one too long lands in overflow_
    const size_t bs = slot_fill(port_.buf_size());  // what one slot may carry
    iovec iov[2] = {{b, bs}, {overflow_.data(), overflow_.size()}};
    ssize_t n = ::readv(tap_.get(), iov, 2);
    if (n <= 0) break;
    if (static_cast<size_t>(n) > bs) {
      c_.drop_too_big.fetch_add(1, std::memory_order_relaxed);
      if (!logged_big_.exchange(true))
        std::fprintf(stderr, "vale-ts: %s: a %zd-byte frame is larger than the port's %zu-byte buffers: dropped (logged once); lower the MTU of %s\n",
                     name_.c_str(), n, bs, name_.c_str());
      moved = true;
      continue;
    }
    sl.len = static_cast<uint16_t>(n);
    sl.flags = 0;
    tx->head = tx->cur = tx->head + 1 == tx->num_slots ? 0 : tx->head + 1;
    c_.rx_frames.fetch_add(1, std::memory_order_relaxed);
    c_.rx_bytes.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
    moved = true;
  }
  (void)port_.txsync(0);
  return moved;
}

bool TapTwinDriver::pump_out() {
  netmap_ring *rx = port_.rx_ring(0);
  (void)port_.rxsync(0);
  bool moved = false;
  while (port_.rx_avail(0) > 0) {
    netmap_slot &sl = rx->slot[rx->head];
    uint8_t *b = port_.slot_buf(sl);
    if (!b || sl.len > port_.buf_size() || sl.len < 14) {
      c_.drop_tx_bad_slot.fetch_add(1, std::memory_order_relaxed);
    } else if (::write(tap_.get(), b, sl.len) == static_cast<ssize_t>(sl.len)) {
      c_.tx_frames.fetch_add(1, std::memory_order_relaxed);
      c_.tx_bytes.fetch_add(sl.len, std::memory_order_relaxed);
    } else {
      c_.drop_tx_error.fetch_add(1, std::memory_order_relaxed);
      if (!logged_tx_.exchange(true))
        std::fprintf(stderr, "vale-ts: %s: write to the TAP: %s: frame dropped (logged once)\n", name_.c_str(), std::strerror(errno));
    }
    rx->head = rx->cur = rx->head + 1 == rx->num_slots ? 0 : rx->head + 1;
    moved = true;
    if (port_.rx_avail(0) == 0) (void)port_.rxsync(0);
  }
  (void)port_.rxsync(0);
  return moved;
}

void TapTwinDriver::run() {
  while (!thread_.stopping()) {
    bool moved = pump_in();
    moved |= pump_out();
    if (moved) continue;
    port_.arm(true, in_blocked_);
    (void)port_.rxsync(0);
    (void)port_.txsync(0);
    if (port_.rx_avail(0) > 0 || (in_blocked_ && port_.tx_space(0) > 0)) {
      port_.disarm();
      continue;
    }
    // while the port's tx ring is full, the TAP (readable) is not listened to
    epoll_event ev{};
    ev.events = in_blocked_ ? 0u : static_cast<uint32_t>(EPOLLIN);
    ev.data.fd = tap_.get();
    (void)::epoll_ctl(thread_.epoll_fd(), EPOLL_CTL_MOD, tap_.get(), &ev);
    epoll_event evs[4];
    int n = ::epoll_wait(thread_.epoll_fd(), evs, 4, -1);
    c_.wakeups.fetch_add(1, std::memory_order_relaxed);
    port_.disarm();
    for (int k = 0; k < n; k++)
      if (evs[k].data.fd == port_.wait_fd()) port_.drain_bell();
  }
}

}  // namespace nm
