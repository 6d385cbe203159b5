#include "core/afxdp_driver.h"

#include <arpa/inet.h>
#include <linux/ethtool.h>
#include <linux/if_packet.h>
#include <linux/sockios.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "core/clock.h"

#include "core/link.h"
#include "core/linux_if_hook.h"
#include "core/offload.h"
#include "core/switch_core.h"

#if NM_HAVE_LIBXDP
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <bpf/libbpf.h>
#include <xdp/libxdp.h>
#include <xdp/xsk.h>
#endif

namespace nm {

namespace {

constexpr uint32_t kFrame = 2048;
constexpr uint32_t kBatch = 64;
constexpr int64_t kStatsNs = kLinuxIfStatsNs;  // how often, at most, the kernel's drop counts are read

// The counters have one writer (the driver's thread, or in-line the
// switch's) and readers elsewhere: a plain load and store, no locked add.
inline void bump(std::atomic<uint64_t> &c, uint64_t n) {
  if (n) c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

uint16_t rd16(const uint8_t *p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

// A TCP/UDP frame whose checksum field holds exactly the pseudo-header sum is
// a CHECKSUM_PARTIAL frame from a local sender: compute its checksum. One
// VLAN tag, IPv4 (unfragmented) and IPv6 without extension headers; anything
// else is left as it is. True when a checksum was written.
bool complete_if_partial(uint8_t *f, uint32_t len) {
  size_t l3 = 14;
  if (len < l3) return false;
  uint16_t type = rd16(f + 12);
  if (type == 0x8100) {
    if (len < 18) return false;
    type = rd16(f + 16);
    l3 = 18;
  }
  size_t l4 = 0, l4len = 0;
  uint8_t proto = 0;
  uint32_t pseudo = 0;
  if (type == 0x0800) {
    if (len < l3 + 20) return false;
    const uint8_t *ip = f + l3;
    const size_t ihl = size_t{ip[0] & 0x0fu} * 4;
    const size_t tot = rd16(ip + 2);
    if ((ip[0] >> 4) != 4 || ihl < 20 || tot < ihl || l3 + tot > len) return false;
    if (rd16(ip + 6) & 0x3fff) return false;  // a fragment: no whole L4 here
    proto = ip[9];
    l4 = l3 + ihl;
    l4len = tot - ihl;
    pseudo = csum_partial(ip + 12, 8, 0);
  } else if (type == 0x86dd) {
    if (len < l3 + 40) return false;
    const uint8_t *ip = f + l3;
    if ((ip[0] >> 4) != 6) return false;
    proto = ip[6];
    l4 = l3 + 40;
    l4len = rd16(ip + 4);
    if (l4 + l4len > len) return false;
    pseudo = csum_partial(ip + 8, 32, 0);
  } else {
    return false;
  }
  uint16_t off = 0;
  if (proto == 6 && l4len >= 20) off = 16;
  else if (proto == 17 && l4len >= 8) off = 6;
  else return false;
  pseudo += proto + static_cast<uint32_t>(l4len);
  const uint16_t partial = static_cast<uint16_t>(~csum_fold(pseudo));
  if (rd16(f + l4 + off) != partial) return false;
  VnetHdr vh{};
  vh.flags = VNET_F_NEEDS_CSUM;
  vh.csum_start = static_cast<uint16_t>(l4);
  vh.csum_offset = off;
  return complete_csum(vh, f, l4 + l4len) == OffloadError::None;
}

}  // namespace

#if NM_HAVE_LIBXDP

bool afxdp_built_in() { return true; }

namespace {

// libxdp and libbpf print their diagnostics; keep the last line of the
// calling thread so a failed start can say what the library said.
thread_local std::string g_lib_msg;
int lib_print(const char *fmt, va_list ap) {
  char buf[512];
  int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
  if (n > 0) {
    std::string s(buf);
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    if (!s.empty()) g_lib_msg = s;
  }
  return n;
}
int xdp_print(enum libxdp_print_level, const char *fmt, va_list ap) { return lib_print(fmt, ap); }
int bpf_print(enum libbpf_print_level, const char *fmt, va_list ap) { return lib_print(fmt, ap); }

// How many receive queues the interface has: one XDP socket each.
uint32_t if_rx_queues(int sock, const std::string &ifname) {
  ethtool_channels ch{};
  ch.cmd = ETHTOOL_GCHANNELS;
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, ifname.data(), ifname.size());
  ifr.ifr_data = reinterpret_cast<char *>(&ch);
  if (::ioctl(sock, SIOCETHTOOL, &ifr) < 0) return 1;  // no channels reported: one queue
  return std::clamp<uint32_t>(std::max(ch.rx_count, ch.combined_count), 1, 64);
}

}  // namespace

struct AfXdpDriver::Queue {
  uint32_t id = 0;
  mapping area;
  xsk_umem *umem = nullptr;
  xsk_socket *xsk = nullptr;
  xsk_ring_prod fill{}, tx{};
  xsk_ring_cons comp{}, rx{};
  std::vector<uint64_t> free_tx;    // UMEM frames free for transmit
  std::vector<uint64_t> to_fill;    // frames back from rx, not yet on the fill ring
  uint32_t tx_outstanding = 0;      // posted on the tx ring, not completed yet
  bool has_tx = false;
  int fd() const { return xsk_socket__fd(xsk); }
  ~Queue() {
    if (xsk) xsk_socket__delete(xsk);
    if (umem) xsk_umem__delete(umem);
  }
};

// The in-line datapath (linux_if_hook.h): the XDP rx rings drained before
// the switch collects, the XDP tx ring filled and kicked after it forwards,
// the XDP sockets in the switch's epoll set (level-triggered).
struct AfXdpDriver::Hook final : LinuxIfHook<AfXdpDriver::Hook> {
  explicit Hook(AfXdpDriver &d) : d(d) {}
  AfXdpDriver &d;

  void pump_in() {
    d.in_blocked_ = false;
    for (auto &q : d.q_) (void)d.pump_in(*q);
  }
  void pump_out() { (void)d.pump_out(); }
  uint64_t tx_frames() const { return d.c_.tx_frames.load(std::memory_order_relaxed); }
  int64_t &stats_ns() { return d.stats_ns_; }
  void poll_stats() { d.poll_kernel_stats(); }
  PortClient &port() { return d.port_; }
  bool kernel_waiting() {
    if (d.port_.tx_space(0) == 0) return false;
    for (auto &q : d.q_) {
      uint32_t idx = 0;
      if (xsk_ring_cons__peek(&q->rx, 1, &idx) > 0) {
        xsk_ring_cons__cancel(&q->rx, 1);
        return true;
      }
    }
    return false;
  }
  // a zero-copy driver that waits for a wakeup to take fill frames
  void before_sleep() {
    for (auto &q : d.q_)
      if (xsk_ring_prod__needs_wakeup(&q->fill)) (void)::recvfrom(q->fd(), nullptr, 0, MSG_DONTWAIT, nullptr, nullptr);
  }
  void count_wakeup() { d.c_.wakeups.fetch_add(1, std::memory_order_relaxed); }
  bool pushed_back() const { return d.out_blocked_; }
  // not asked here: AF_XDP's TX waits on its completion ring, not on a
  // carrier; the 1 ms retries stand
  bool no_carrier() { return false; }
  // readability is all the socket says: the next round reads the ring
  void fd_ready(int) override {}
};

AfXdpDriver::AfXdpDriver() = default;

uint32_t AfXdpDriver::queues() const { return static_cast<uint32_t>(q_.size()); }

namespace {

// One XDP socket on queue `id`, bound zero-copy or copy.
Result<std::unique_ptr<AfXdpDriver::Queue>> open_queue(const AfXdpConfig &cfg, uint32_t id, bool zc, bool with_tx) {
  auto q = std::make_unique<AfXdpDriver::Queue>();
  q->id = id;
  q->has_tx = with_tx;
  const size_t size = size_t{cfg.frames_per_queue} * kFrame;
  void *m = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (m == MAP_FAILED) return sys_fail("mmap", "the UMEM of " + cfg.ifname + " queue " + std::to_string(id));
  q->area = mapping(m, size);
  xsk_umem_config uc{};
  uc.fill_size = cfg.ring_size;
  uc.comp_size = cfg.ring_size;
  uc.frame_size = kFrame;
  uc.frame_headroom = 0;
  uc.flags = 0;
  g_lib_msg.clear();
  int err = xsk_umem__create(&q->umem, m, size, &q->fill, &q->comp, &uc);
  if (err) {
    q->umem = nullptr;
    return check_fail(-err, "xsk_umem__create for " + cfg.ifname + ": " + std::strerror(-err) + (g_lib_msg.empty() ? "" : " (" + g_lib_msg + ")"),
                      "AF_XDP needs locked memory: raise RLIMIT_MEMLOCK (ulimit -l) or run vale-ts as root");
  }
  xsk_socket_config sc{};
  sc.rx_size = cfg.ring_size;
  sc.tx_size = cfg.ring_size;
  sc.libxdp_flags = 0;  // libxdp loads its default redirect program
  sc.xdp_flags = XDP_FLAGS_DRV_MODE;
  sc.bind_flags = static_cast<uint16_t>(XDP_USE_NEED_WAKEUP | (zc ? XDP_ZEROCOPY : XDP_COPY));
  g_lib_msg.clear();
  err = xsk_socket__create(&q->xsk, cfg.ifname.c_str(), id, q->umem, &q->rx, with_tx ? &q->tx : nullptr, &sc);
  if (err) {
    q->xsk = nullptr;
    return check_fail(-err, std::string("AF_XDP ") + (zc ? "zero-copy" : "copy") + " socket on " + cfg.ifname + " queue " + std::to_string(id) + ": " +
                                std::strerror(-err) + (g_lib_msg.empty() ? "" : " (libxdp: " + g_lib_msg + ")"));
  }
  // half the frames wait on the fill ring for the kernel, half are for transmit
  const uint32_t nfill = std::min(cfg.frames_per_queue / 2, cfg.ring_size);
  uint32_t idx = 0;
  if (xsk_ring_prod__reserve(&q->fill, nfill, &idx) != nfill) return check_fail(ENOSPC, "the fill ring of " + cfg.ifname + " took fewer frames than it holds");
  for (uint32_t i = 0; i < nfill; i++) *xsk_ring_prod__fill_addr(&q->fill, idx + i) = uint64_t{i} * kFrame;
  xsk_ring_prod__submit(&q->fill, nfill);
  if (with_tx)
    for (uint32_t i = nfill; i < cfg.frames_per_queue; i++) q->free_tx.push_back(uint64_t{i} * kFrame);
  return q;
}

}  // namespace

Result<std::unique_ptr<AfXdpDriver>> AfXdpDriver::start(PortClient port, const AfXdpConfig &cfg, std::shared_ptr<SwitchCore> core) {
  const std::string &ifn = cfg.ifname;
  if (ifn.empty() || ifn.size() >= IFNAMSIZ)
    return check_fail(EINVAL, "interface name '" + ifn + "' must be 1.." + std::to_string(IFNAMSIZ - 1) + " characters");
  if (port.tx_rings() < 1 || port.rx_rings() < 1) return check_fail(EINVAL, "the port has no rings");
  if (cfg.ring_size < 64 || (cfg.ring_size & (cfg.ring_size - 1)) != 0 || cfg.frames_per_queue < 2 * kBatch || cfg.frames_per_queue > (1u << 20))
    return check_fail(EINVAL, "AF_XDP rings must be a power of two ≥ 64 and UMEM frames between 128 and 1M");
  static const bool printers = [] {
    libxdp_set_print(xdp_print);
    libbpf_set_print(bpf_print);
    return true;
  }();
  (void)printers;
  std::unique_ptr<AfXdpDriver> d(new AfXdpDriver());
  d->cfg_ = cfg;
  d->port_ = std::move(port);
  // protocol 0, never bound: receives nothing; used for ioctls and to hold the promiscuity reference
  d->ctl_.reset(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
  if (!d->ctl_) return sys_fail("socket", "AF_PACKET control socket for " + ifn, "attaching an interface needs CAP_NET_RAW and CAP_NET_ADMIN (run vale-ts as root)");
  const int s = d->ctl_.get();
  auto link = probe_link(s, ifn, d->port_.buf_size());
  if (!link) return std::move(link).take_error();
  d->ifindex_ = link.value().ifindex;
  d->mtu_ = link.value().mtu;
  if (d->mtu_ + 14 + 8 > kFrame - XDP_PACKET_HEADROOM)
    return check_fail(EMSGSIZE, ifn + " has MTU " + std::to_string(d->mtu_) + ": larger than a " + std::to_string(kFrame) + "-byte AF_XDP frame holds", "use --backend packet, or an MTU ≤ 1500");
  auto got_flags = link_flags(s, ifn);
  if (!got_flags) return std::move(got_flags).take_error();
  const short flags = got_flags.value();
  d->was_promisc_ = (flags & IFF_PROMISC) != 0;

  const uint32_t nq = if_rx_queues(s, ifn);
  std::string why;
  for (bool zc : {true, false}) {
    if ((zc && cfg.mode == AfXdpMode::Copy) || (!zc && cfg.mode == AfXdpMode::ZeroCopy)) continue;
    d->q_.clear();
    bool ok = true;
    for (uint32_t i = 0; i < nq && ok; i++) {
      auto q = open_queue(cfg, i, zc, i == 0);
      if (!q) {
        if (!why.empty()) why += "; ";
        why += q.error().what;
        ok = false;
        // a zero-copy failure is worth a copy-mode try; anything else is not
        if (zc && cfg.mode == AfXdpMode::Auto) break;
        return std::move(q).take_error();
      }
      d->q_.push_back(std::move(q).value());
    }
    if (ok) {
      d->zero_copy_ = zc;
      break;
    }
    d->q_.clear();  // deletes the sockets: libxdp detaches its program with the last
  }
  if (d->q_.empty()) return check_fail(EOPNOTSUPP, why.empty() ? "no AF_XDP mode left to try on " + ifn : why);

  auto promisc = hold_promisc(s, d->ifindex_, ifn);
  if (!promisc) return std::move(promisc).take_error();
  if (core) {
    auto raised = raise_link(s, ifn, flags);
    if (!raised) return std::move(raised).take_error();
    d->raised_up_ = raised.value();
    // from here stop() (the destructor, on an error) unregisters what was registered
    d->core_ = std::move(core);
    d->hook_ = std::make_unique<Hook>(*d);
    (void)d->port_.txsync(0);
    for (auto &q : d->q_)
      if (Status st = d->core_->add_wait_fd(d->hook_.get(), q->fd()); !st) return std::move(st).take_error();
    if (Status st = d->core_->add_round_hook(d->hook_.get()); !st) return std::move(st).take_error();
    d->core_->notify();  // frames may be waiting already: the switch looks at once
    return d;
  }
  std::vector<int> fds{d->port_.wait_fd()};
  for (auto &q : d->q_) fds.push_back(q->fd());
  auto opened = d->thread_.open(fds, "driver thread of " + ifn);
  if (!opened) return std::move(opened).take_error();
  auto raised = raise_link(s, ifn, flags);
  if (!raised) return std::move(raised).take_error();
  d->raised_up_ = raised.value();
  AfXdpDriver *self = d.get();
  // "xdp:IFNAME": bench/linux-if splits vale-ts's CPU by thread name
  d->thread_.start([self] { self->run(); }, "xdp:" + cfg.ifname);
  return d;
}

AfXdpDriver::~AfXdpDriver() { stop(); }

void AfXdpDriver::stop() {
  thread_.stop();
  if (core_) {
    // once this returned the switch never calls the hook again, and its
    // epoll set no longer holds the XDP sockets
    if (hook_) core_->remove_round_hook(hook_.get());
    core_.reset();
  }
  hook_.reset();
  if (!q_.empty()) {
    poll_kernel_stats();
    q_.clear();  // the XDP program goes with the last socket
  }
  if (ctl_) {
    if (raised_up_) lower_link(ctl_.get(), cfg_.ifname);
    ctl_.reset();  // the kernel drops our promiscuity reference
  }
}

void AfXdpDriver::log_once(std::atomic<bool> &flag, const std::string &msg) {
  if (!flag.exchange(true)) std::fprintf(stderr, "vale-ts: %s: %s (logged once)\n", cfg_.ifname.c_str(), msg.c_str());
}

void AfXdpDriver::poll_kernel_stats() {
  // the kernel's counters are per socket and cumulative: the sum is the total
  uint64_t rx = 0, inval = 0;
  for (auto &q : q_) {
    xdp_statistics st{};
    socklen_t len = sizeof st;
    if (::getsockopt(q->fd(), SOL_XDP, XDP_STATISTICS, &st, &len) == 0) {
      rx += st.rx_dropped + st.rx_ring_full;
      inval += st.rx_invalid_descs + st.tx_invalid_descs;
    }
  }
  c_.drop_kernel_rx.store(rx, std::memory_order_relaxed);
  c_.drop_kernel_invalid.store(inval, std::memory_order_relaxed);
}

// Frames waiting in an rx ring keep its socket readable: while the port's tx
// ring is full the thread must not listen to it, or epoll_wait returns at once
// and the thread spins, on two CPUs taking the time of the switch it waits for
// (bench/RESULTS.md, session 9). The switch's bell (armed for tx room) wakes it.
void AfXdpDriver::watch_rx(bool on) {
  if (on == rx_watched_) return;
  bool all = true;
  for (auto &q : q_) {
    epoll_event ev{};
    ev.events = on ? static_cast<uint32_t>(EPOLLIN) : 0u;
    ev.data.fd = q->fd();
    if (::epoll_ctl(thread_.epoll_fd(), EPOLL_CTL_MOD, q->fd(), &ev) < 0) all = false;
  }
  // a socket left watched only spins; one left unwatched could miss frames,
  // so "watched" is claimed only when every socket is, and retried until then
  rx_watched_ = on && all;
}

bool AfXdpDriver::pump_in(Queue &q) {
  // frames from the last round go back to the kernel first
  if (!q.to_fill.empty()) {
    uint32_t idx = 0;
    const uint32_t n = xsk_ring_prod__reserve(&q.fill, static_cast<uint32_t>(q.to_fill.size()), &idx);
    for (uint32_t i = 0; i < n; i++) *xsk_ring_prod__fill_addr(&q.fill, idx + i) = q.to_fill[q.to_fill.size() - 1 - i];
    if (n) xsk_ring_prod__submit(&q.fill, n);
    q.to_fill.resize(q.to_fill.size() - n);
  }
  (void)port_.txsync(0);
  netmap_ring *tx = port_.tx_ring(0);
  const uint32_t bufsz = port_.buf_size();
  const size_t area = q.area.size();
  bool moved = false;
  for (;;) {
    const uint32_t space = port_.tx_space(0);
    if (space == 0) {
      uint32_t idx = 0;
      in_blocked_ = xsk_ring_cons__peek(&q.rx, 1, &idx) > 0;
      if (in_blocked_) xsk_ring_cons__cancel(&q.rx, 1);
      break;
    }
    uint32_t idx = 0;
    const uint32_t n = xsk_ring_cons__peek(&q.rx, std::min(space, kBatch), &idx);
    if (n == 0) break;
    uint64_t frames = 0, bytes = 0, csums = 0;
    for (uint32_t i = 0; i < n; i++) {
      const xdp_desc *dsc = xsk_ring_cons__rx_desc(&q.rx, idx + i);
      const uint64_t addr = dsc->addr;
      const uint32_t len = dsc->len;
      q.to_fill.push_back(addr - addr % kFrame);
      if (addr >= area || len > area - addr || (addr % kFrame) + len > kFrame) {
        c_.drop_bad_desc.fetch_add(1, std::memory_order_relaxed);
        log_once(logged_desc_, "an AF_XDP rx descriptor outside the UMEM: dropped");
        continue;
      }
      if (len > bufsz || len < 14) {
        c_.drop_too_big.fetch_add(1, std::memory_order_relaxed);
        log_once(logged_too_big_, "a " + std::to_string(len) + "-byte frame does not fit the port's " + std::to_string(bufsz) + "-byte buffers: dropped");
        continue;
      }
      netmap_slot &sl = tx->slot[tx->head];
      uint8_t *b = port_.slot_buf(sl);
      if (!b) {
        c_.drop_tx_bad_slot.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      std::memcpy(b, q.area.data() + addr, len);
      if (complete_if_partial(b, len)) csums++;
      sl.len = static_cast<uint16_t>(len);
      sl.flags = 0;
      tx->head = tx->cur = tx->head + 1 == tx->num_slots ? 0 : tx->head + 1;
      frames++;
      bytes += len;
    }
    xsk_ring_cons__release(&q.rx, n);
    // once per batch: a locked add per frame and counter was measurable at 60 B
    bump(c_.rx_frames, frames);
    bump(c_.rx_bytes, bytes);
    bump(c_.csum_completed, csums);
    frames = bytes = csums = 0;
    moved = true;
    (void)port_.txsync(0);
    // refill now: the kernel drops what arrives with an empty fill ring
    uint32_t fidx = 0;
    const uint32_t f = xsk_ring_prod__reserve(&q.fill, static_cast<uint32_t>(q.to_fill.size()), &fidx);
    for (uint32_t i = 0; i < f; i++) *xsk_ring_prod__fill_addr(&q.fill, fidx + i) = q.to_fill[q.to_fill.size() - 1 - i];
    if (f) xsk_ring_prod__submit(&q.fill, f);
    q.to_fill.resize(q.to_fill.size() - f);
  }
  return moved;
}

void AfXdpDriver::reap_completions() {
  Queue &q = *q_[0];
  uint32_t idx = 0;
  const uint32_t n = xsk_ring_cons__peek(&q.comp, cfg_.ring_size, &idx);
  for (uint32_t i = 0; i < n; i++) {
    const uint64_t a = *xsk_ring_cons__comp_addr(&q.comp, idx + i);
    q.free_tx.push_back(a - a % kFrame);
  }
  if (n) xsk_ring_cons__release(&q.comp, n);
  q.tx_outstanding -= std::min(q.tx_outstanding, n);
}

void AfXdpDriver::kick_tx() {
  Queue &q = *q_[0];
  // copy mode transmits only inside sendto(); zero-copy only when the driver asks
  if (q.tx_outstanding == 0 || (zero_copy_ && !xsk_ring_prod__needs_wakeup(&q.tx))) return;
  int e = 0;
  for (;;) {
    c_.tx_kicks.fetch_add(1, std::memory_order_relaxed);
    const uint32_t taken = __atomic_load_n(q.tx.consumer, __ATOMIC_ACQUIRE);
    if (::sendto(q.fd(), nullptr, 0, MSG_DONTWAIT, nullptr, 0) >= 0) return;
    e = errno;
    // Copy mode sends at most a budget of frames (32) per call and answers
    // EAGAIN when frames are left: that is no push-back, call again. Only a
    // call that took nothing is one (each pass takes a frame from a ring we
    // do not fill meanwhile, so this ends). Taken for push-back, it sent the
    // thread to sleep (up to 1 ms) with frames queued after three kicks,
    // while the switch's ring for this port filled (bench/RESULTS.md, session 9).
    if (e != EAGAIN || zero_copy_ || __atomic_load_n(q.tx.consumer, __ATOMIC_ACQUIRE) == taken) break;
  }
  if (e == EAGAIN || e == EBUSY || e == ENOBUFS || e == EINTR) {
    c_.tx_retries.fetch_add(1, std::memory_order_relaxed);
    out_blocked_ = true;
    return;
  }
  c_.drop_tx_error.fetch_add(1, std::memory_order_relaxed);
  out_blocked_ = true;
  log_once(logged_tx_, std::string("AF_XDP transmit: ") + std::strerror(e) + (e == ENETDOWN ? ": the interface or its carrier is down: ip link set " + cfg_.ifname + " up, and its peer" : ""));
}

bool AfXdpDriver::pump_out() {
  Queue &q = *q_[0];
  netmap_ring *rx = port_.rx_ring(0);
  bool moved = false;
  out_blocked_ = false;
  reap_completions();
  (void)port_.rxsync(0);
  while (port_.rx_avail(0) > 0) {
    if (q.free_tx.empty()) {
      reap_completions();
      if (q.free_tx.empty()) {
        out_blocked_ = true;
        break;
      }
    }
    const uint32_t want = std::min({port_.rx_avail(0), static_cast<uint32_t>(q.free_tx.size()), kBatch});
    uint32_t idx = 0;
    const uint32_t k = xsk_ring_prod__reserve(&q.tx, want, &idx);
    if (k == 0) {
      out_blocked_ = true;
      break;
    }
    uint32_t used = 0;
    uint64_t bytes = 0;
    while (used < k && port_.rx_avail(0) > 0) {
      // One frame: a slot, or a chain the switch published whole (NS_MOREFRAG
      // on all but the last), gathered into one UMEM frame. A slot of a chain
      // sent alone would put on the wire a frame the switch's lookup never
      // saw, whatever its sender wrote there.
      const uint64_t a = q.free_tx.back();
      uint8_t *out = q.area.data() + a;
      uint64_t total = 0;
      bool bad = false, complete = false;
      while (port_.rx_avail(0) > 0) {
        netmap_slot &sl = rx->slot[rx->head];
        rx->head = rx->cur = rx->head + 1 == rx->num_slots ? 0 : rx->head + 1;
        const uint8_t *b = port_.slot_buf(sl);
        if (!b || sl.len > port_.buf_size()) bad = true;
        else if (!bad && total + sl.len <= kFrame) std::memcpy(out + total, b, sl.len);
        total += sl.len;
        if (!(sl.flags & NS_MOREFRAG)) {
          complete = true;
          break;
        }
      }
      if (bad || !complete || total < 14) {
        c_.drop_tx_bad_slot.fetch_add(1, std::memory_order_relaxed);
        log_once(logged_slot_, "a slot with a bad buffer index or length on the port's rx ring: dropped");
        continue;
      }
      if (total > kFrame) {
        c_.drop_too_big.fetch_add(1, std::memory_order_relaxed);
        log_once(logged_too_big_, "a " + std::to_string(total) + "-byte frame is larger than an AF_XDP frame: dropped");
        continue;
      }
      q.free_tx.pop_back();
      xdp_desc *dsc = xsk_ring_prod__tx_desc(&q.tx, idx + used);
      dsc->addr = a;
      dsc->len = static_cast<uint32_t>(total);
      dsc->options = 0;
      bytes += total;
      used++;
    }
    q.tx.cached_prod -= k - used;  // reserved descriptors left unwritten (bad slots) are given back
    if (used) xsk_ring_prod__submit(&q.tx, used);
    q.tx_outstanding += used;
    bump(c_.tx_frames, used);
    bump(c_.tx_bytes, bytes);
    moved = true;
    (void)port_.rxsync(0);
    kick_tx();
    if (out_blocked_) break;
  }
  if (!moved) kick_tx();  // frames left from a pushed-back kick
  return moved;
}

void AfXdpDriver::run() {
  uint32_t idle_rounds = 0;
  while (!thread_.stopping()) {
    bool moved = false;
    in_blocked_ = false;
    for (auto &q : q_) moved |= pump_in(*q);
    moved |= pump_out();
    if (moved) {
      idle_rounds = 0;
      continue;
    }
    if (++idle_rounds < 2) continue;
    // the kernel's drop counts cost a getsockopt per queue: at most every
    // kStatsNs (at 60 B the thread came here for nearly every frame, one
    // syscall each; bench/RESULTS.md, session 9), and a sleep ends by then
    // to read them, so a drop is counted within kStatsNs even if nothing follows
    const int64_t now = mono_ns();
    const bool stats_due = now - stats_ns_ >= kStatsNs;
    if (stats_due) {
      poll_kernel_stats();
      stats_ns_ = now;
    }
    port_.arm(true, in_blocked_);
    (void)port_.rxsync(0);
    (void)port_.txsync(0);
    if (port_.rx_avail(0) > 0 && !out_blocked_) {
      port_.disarm();
      continue;
    }
    // room made between the pump and arm() rang no bell: look again rather
    // than sleep deaf to the XDP sockets (watch_rx below) with frames waiting
    if (in_blocked_ && port_.tx_space(0) > 0) {
      port_.disarm();
      continue;
    }
    bool ready = false;
    for (auto &q : q_) {
      uint32_t idx = 0;
      if (!in_blocked_ && xsk_ring_cons__peek(&q->rx, 1, &idx) > 0) {
        xsk_ring_cons__cancel(&q->rx, 1);
        ready = true;
      }
      // a zero-copy driver that waits for a wakeup to take fill frames
      if (xsk_ring_prod__needs_wakeup(&q->fill)) (void)::recvfrom(q->fd(), nullptr, 0, MSG_DONTWAIT, nullptr, nullptr);
    }
    if (ready) {
      port_.disarm();
      continue;
    }
    watch_rx(!in_blocked_);
    epoll_event evs[8];
    // transmit frames still in flight (or a kick pushed back): look again soon,
    // completions raise no event on the socket
    const bool pending = out_blocked_ || q_[0]->tx_outstanding > 0;
    const int n = ::epoll_wait(thread_.epoll_fd(), evs, 8, pending ? 1 : !stats_due ? int(kStatsNs / 1'000'000) : -1);
    c_.wakeups.fetch_add(1, std::memory_order_relaxed);
    port_.disarm();
    for (int k = 0; k < n; k++)
      if (evs[k].data.fd == port_.wait_fd()) port_.drain_bell();
    idle_rounds = 0;
  }
}

#else  // built without libxdp

bool afxdp_built_in() { return false; }

struct AfXdpDriver::Queue {};
struct AfXdpDriver::Hook {};
AfXdpDriver::AfXdpDriver() = default;
uint32_t AfXdpDriver::queues() const { return 0; }

Result<std::unique_ptr<AfXdpDriver>> AfXdpDriver::start(PortClient, const AfXdpConfig &cfg, std::shared_ptr<SwitchCore>) {
  (void)complete_if_partial;
  return check_fail(ENOTSUP, "AF_XDP on " + cfg.ifname + ": this build of the addon has no AF_XDP (libxdp-dev and libbpf-dev were not found when it was compiled)",
                    "apt-get install libxdp-dev libbpf-dev pkg-config, then npm rebuild (or npx node-gyp rebuild)");
}
AfXdpDriver::~AfXdpDriver() = default;
void AfXdpDriver::stop() {}

#endif

}  // namespace nm
