#include "core/afpacket_driver.h"

#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/clock.h"
#include "core/link.h"
#include "core/linux_if_hook.h"
#include "core/offload.h"
#include "core/switch_core.h"

namespace nm {

namespace {

constexpr uint32_t kTxBatch = 64;
constexpr size_t kVnetLen = VNET_HDR_LEN;
// a ring frame that holds a 64 KiB GSO frame and the ring's headers
constexpr uint32_t kWholeFrame = 65536 + 1024;
// the most a frame read whole from the socket can be: a GSO frame
constexpr uint32_t kLargestFrame = 65536 + 512;
constexpr int64_t kStatsNs = kLinuxIfStatsNs;  // how often, at most, the kernel's drop count is read
// The tx ring (AfPacketConfig::tx_ring): TPACKET_V2 frames of 256 bytes, the
// kernel reading each frame's bytes (virtio-net header first) at 32, after
// the ring's header. 512 frames, 128 KiB: a send hands over at most a batch
// (kTxBatch), and a frame stays the kernel's until its skb is freed (at once
// into a veth, at the NIC's tx completion on hardware), so eight batches can
// be in flight before the ring pushes back.
constexpr uint32_t kTxRingFrame = 256;
constexpr uint32_t kTxRingFrames = 512;
constexpr uint32_t kTxRingData = TPACKET_ALIGN(sizeof(tpacket2_hdr));
constexpr uint32_t kTxRingMax = kTxRingFrame - kTxRingData;  // the virtio-net header and the frame
// below that sendmmsg keeps the frame: it is shorter than some link-level
// headers (a VLAN device's 18 bytes), which the ring would refuse by marking
// the frame TP_STATUS_WRONG_FORMAT where sendmmsg returns an error
constexpr uint32_t kTxRingMin = kVnetLen + 32;
constexpr uint32_t kTpKernel = TP_STATUS_SEND_REQUEST | TP_STATUS_SENDING | TP_STATUS_WRONG_FORMAT;  // a tx ring frame the kernel still owns

#ifndef PACKET_FANOUT_FLAG_IGNORE_OUTGOING
#define PACKET_FANOUT_FLAG_IGNORE_OUTGOING 0x4000  // Linux 4.20; older uapi headers lack it
#endif

// A classic BPF program that returns 0: as a socket filter it takes no frame,
// as a fanout program it sends every frame to the group's first socket.
Status load_ret0(int s, int level, int opt, const char *what, const std::string &ifname) {
  sock_filter code[] = {BPF_STMT(BPF_RET | BPF_K, 0)};
  sock_fprog prog{1, code};
  if (::setsockopt(s, level, opt, &prog, sizeof prog) < 0) return sys_fail("setsockopt", std::string(what) + " on a packet socket of " + ifname);
  return Ok{};
}

template <class T>
Result<int> sockopt(int s, int level, int opt, const T &v, const char *what, const std::string &ifname, std::string hint = {}) {
  if (::setsockopt(s, level, opt, &v, sizeof v) < 0) return sys_fail("setsockopt", std::string(what) + " on the packet socket of " + ifname, std::move(hint));
  return 0;
}

constexpr size_t kVlanLen = 4;

// A tag the kernel reports beside a frame: (TPID << 16) | TCI, 0 for none
// (or for a frame too short to hold the MAC addresses it would follow).
template <class H>
uint32_t reported_vlan(const H &h, uint16_t tci, uint16_t tpid) {
  if (!(h.tp_status & TP_STATUS_VLAN_VALID) || h.tp_snaplen < 12) return 0;
  return uint32_t{(h.tp_status & TP_STATUS_VLAN_TPID_VALID) && tpid ? tpid : uint16_t{ETH_P_8021Q}} << 16 | tci;
}

// The kernel's header counts csum_start from the untagged frame (af_packet
// gives virtio_net_hdr_from_skb no VLAN length): 4 bytes on once the tag is
// back in. hdr_len is a hint, kept in step.
void vnet_hdr_after_tag(uint8_t *p) {
  VnetHdr vh = vnet_hdr_read(p);
  if ((vh.flags & VNET_F_NEEDS_CSUM) && vh.csum_start <= 0xffff - kVlanLen) vh.csum_start = static_cast<uint16_t>(vh.csum_start + kVlanLen);
  if (vh.hdr_len && vh.hdr_len <= 0xffff - kVlanLen) vh.hdr_len = static_cast<uint16_t>(vh.hdr_len + kVlanLen);
  vnet_hdr_write(vh, p);
}

// The kernel takes a received frame's VLAN tag out of it (skb_vlan_untag, a
// NIC's VLAN offload, or a sender's stack that never wrote it in) and
// reports it in the ring header: put back, or a tagged frame crosses the
// switch untagged, into whatever the untagged ports are. In place, in the
// ring frame (ours until handed back): the virtio-net header and the MAC
// addresses move 4 bytes down into the room the kernel leaves before a frame
// (the caller checked it), the tag goes after them, and the ring header is
// changed to match, so a frame taken again after a full tx ring is not
// tagged twice.
template <class H>
void restore_vlan(H &h, uint32_t tag, bool vnet) {
  uint8_t *mac = reinterpret_cast<uint8_t *>(&h) + h.tp_mac;
  const size_t pre = vnet ? kVnetLen : 0;
  std::memmove(mac - kVlanLen - pre, mac - pre, pre + 12);
  mac -= kVlanLen;
  const uint8_t t[kVlanLen] = {static_cast<uint8_t>(tag >> 24), static_cast<uint8_t>(tag >> 16), static_cast<uint8_t>(tag >> 8), static_cast<uint8_t>(tag)};
  std::memcpy(mac + 12, t, kVlanLen);
  if (vnet) vnet_hdr_after_tag(mac - kVnetLen);
  h.tp_mac = static_cast<uint16_t>(h.tp_mac - kVlanLen);
  h.tp_snaplen += kVlanLen;
  h.tp_len += kVlanLen;
  h.tp_status &= ~static_cast<uint32_t>(TP_STATUS_VLAN_VALID | TP_STATUS_VLAN_TPID_VALID);
}

}  // namespace

// The in-line datapath (linux_if_hook.h): the ring walk before the switch
// collects, sendmmsg after it forwards, the receiving socket in the switch's
// epoll set.
struct AfPacketDriver::Hook final : LinuxIfHook<AfPacketDriver::Hook>, DirectSink {
  explicit Hook(AfPacketDriver &d) : d(d) {}
  AfPacketDriver &d;

  void pump_in() {
    d.in_blocked_ = false;
    (void)d.pump_in();
  }
  void pump_out() { (void)d.pump_out(); }
  uint64_t tx_frames() const { return d.c_.tx_frames.load(std::memory_order_relaxed); }
  int64_t &stats_ns() { return d.stats_ns_; }
  void poll_stats() { d.poll_kernel_drops(); }
  PortClient &port() { return d.port_; }
  // a GSO frame needs up to 33 free slots: fewer is no room
  bool kernel_waiting() const { return d.kernel_ready() && d.port_.tx_space(0) >= d.need_slots_; }
  void before_sleep() {}
  void count_wakeup() { d.c_.wakeups.fetch_add(1, std::memory_order_relaxed); }
  bool pushed_back() const { return d.out_blocked_; }
  bool no_carrier() { return d.no_carrier(); }
  // readable with nothing in the ring: a pending socket error (ENETDOWN),
  // which epoll reports until it is read
  void fd_ready(int fd) override {
    if (!d.kernel_ready()) d.clear_socket_error(fd);
  }
  uint32_t send_direct(const iovec *iov, const uint32_t *at, uint32_t n) override { return d.send_direct(iov, at, n); }
};

AfPacketDriver::AfPacketDriver() = default;

Result<std::unique_ptr<AfPacketDriver>> AfPacketDriver::start(PortClient port, const AfPacketConfig &cfg_in, std::shared_ptr<SwitchCore> core) {
  if (cfg_in.ifname.empty() || cfg_in.ifname.size() >= IFNAMSIZ)
    return check_fail(EINVAL, "interface name '" + cfg_in.ifname + "' must be 1.." + std::to_string(IFNAMSIZ - 1) + " characters");
  if (port.tx_rings() < 1 || port.rx_rings() < 1) return check_fail(EINVAL, "the port has no rings");
  if (cfg_in.pass_hdr && !cfg_in.vnet_hdr) return check_fail(EINVAL, "passing virtio-net headers through needs vnet_hdr");
  if (cfg_in.rx_version != 2 && cfg_in.rx_version != 3) return check_fail(EINVAL, "the receive ring is TPACKET_V2 or TPACKET_V3 (rx_version 2 or 3)");
  if (cfg_in.overflow_v3 && cfg_in.rx_version != 2) return check_fail(EINVAL, "an overflow ring goes behind a TPACKET_V2 receive ring (rx_version 2)");
  AfPacketConfig cfg = cfg_in;
  if (cfg.block_size == 0) cfg.block_size = cfg.rx_version == 2 ? 1u << 20 : 1u << 18;
  if (cfg.block_count == 0) cfg.block_count = cfg.rx_version == 2 ? 16 : 32;
  if (cfg.block_size < 65536 + 4096 || (cfg.block_size & (cfg.block_size - 1)) != 0 || cfg.block_count < 2)
    return check_fail(EINVAL, "ring blocks must be a power of two ≥ 128 KiB, at least 2 of them");
  if (cfg.rx_version == 2 && cfg.frame_size != 0 && (cfg.frame_size < 2048 || cfg.frame_size % TPACKET_ALIGNMENT != 0 || cfg.frame_size > cfg.block_size))
    return check_fail(EINVAL, "TPACKET_V2 frames must be at least 2048 bytes, a multiple of 16 and fit a block");
  if (cfg.rx_version == 2 && cfg.frame_size != 0 && cfg.frame_size < kWholeFrame && !cfg.pass_hdr)
    return check_fail(EINVAL, "TPACKET_V2 frames smaller than a 64 KiB GSO frame and its headers (65536 + 1024 bytes) need pass_hdr");
  std::unique_ptr<AfPacketDriver> d(new AfPacketDriver());
  d->cfg_ = cfg;
  d->port_ = std::move(port);
  const std::string &ifn = cfg.ifname;

  // protocol 0: no frames queue before bind() selects the interface and ETH_P_ALL
  d->sock_.reset(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
  if (!d->sock_) return sys_fail("socket", "AF_PACKET socket for " + ifn, "attaching an interface needs CAP_NET_RAW (run vale-ts as root)");
  const int s = d->sock_.get();
  auto link = probe_link(s, ifn, d->port_.buf_size());
  if (!link) return std::move(link).take_error();
  d->ifindex_ = link.value().ifindex;
  d->mtu_ = link.value().mtu;
  if (cfg.rx_version == 2 && cfg.frame_size == 0) {
    // one MTU-sized frame (Ethernet and two VLAN tags, the ring's ~80 bytes
    // of headers, slack) per ring frame; behind an overflow ring, whole GSO frames
    const uint64_t want = cfg.overflow_v3 || !cfg.pass_hdr ? kWholeFrame : std::max<uint64_t>(2048, (uint64_t{d->mtu_} + 22 + 160 + 15) / 16 * 16);
    if (want > cfg.block_size) return check_fail(EINVAL, "a ring frame for the MTU of " + ifn + " (" + std::to_string(d->mtu_) + ") does not fit a ring block");
    cfg.frame_size = static_cast<uint32_t>(want);
    d->cfg_.frame_size = cfg.frame_size;
  }

  // order matters: version and vnet header before the ring
  const bool v2 = cfg.rx_version == 2;
  auto r = sockopt(s, SOL_PACKET, PACKET_VERSION, int{v2 ? TPACKET_V2 : TPACKET_V3}, v2 ? "PACKET_VERSION TPACKET_V2" : "PACKET_VERSION TPACKET_V3", ifn);
  if (!r) return std::move(r).take_error();
  if (cfg.vnet_hdr) {
    r = sockopt(s, SOL_PACKET, PACKET_VNET_HDR, int{1}, "PACKET_VNET_HDR", ifn);
    if (!r) return std::move(r).take_error();
  }
  // our own sends are not read back
  r = sockopt(s, SOL_PACKET, PACKET_IGNORE_OUTGOING, int{1}, "PACKET_IGNORE_OUTGOING", ifn, "needs Linux 4.20 or later");
  if (!r) return std::move(r).take_error();
  // Sending goes through a socket of its own, bound with protocol 0 (it
  // receives nothing) and never in the epoll set: every sent skb, when the
  // receiver frees it, runs sock_wfree -> sock_def_write_space on its socket,
  // which on the receiving socket meant a locked walk of its wait queue (our
  // epoll's entry) per frame, ~5% of the delivering thread at 60 B
  // (bench/RESULTS.md, session 8). With no waiter the walk is skipped.
  d->tx_sock_.reset(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
  if (!d->tx_sock_) return sys_fail("socket", "AF_PACKET send socket for " + ifn, "attaching an interface needs CAP_NET_RAW (run vale-ts as root)");
  const int ts = d->tx_sock_.get();
  if (cfg.vnet_hdr) {
    r = sockopt(ts, SOL_PACKET, PACKET_VNET_HDR, int{1}, "PACKET_VNET_HDR (send socket)", ifn);
    if (!r) return std::move(r).take_error();
  }
  // bypass is an optimisation: without it the qdisc is used
  const int one = 1;
  d->qdisc_bypass_ = ::setsockopt(ts, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) == 0;
  {
    sockaddr_ll tll{};
    tll.sll_family = AF_PACKET;
    tll.sll_protocol = 0;  // no protocol hook: sends only
    tll.sll_ifindex = d->ifindex_;
    if (::bind(ts, reinterpret_cast<sockaddr *>(&tll), sizeof tll) < 0) return sys_fail("bind", "packet send socket to " + ifn);
  }
  // The tx ring, on a socket of its own set up as tx_sock_ (a socket with a
  // tx ring ignores the messages given to sendmsg). It is an optimisation:
  // where the kernel refuses it, sendmmsg sends everything.
  if (cfg.tx_ring && cfg.vnet_hdr) {
    unique_fd rs(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
    tpacket_req req{};
    req.tp_block_size = kTxRingFrame * kTxRingFrames;  // one block: 32 pages, a multiple of any page size up to 128 KiB
    req.tp_block_nr = 1;
    req.tp_frame_size = kTxRingFrame;
    req.tp_frame_nr = kTxRingFrames;
    const int v = TPACKET_V2;
    sockaddr_ll tll{};
    tll.sll_family = AF_PACKET;
    tll.sll_ifindex = d->ifindex_;
    // vnet header and version before the ring (the kernel refuses them after)
    if (rs && ::setsockopt(rs.get(), SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) == 0 &&
        ::setsockopt(rs.get(), SOL_PACKET, PACKET_VERSION, &v, sizeof v) == 0 &&
        (!d->qdisc_bypass_ || ::setsockopt(rs.get(), SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) == 0) &&
        ::setsockopt(rs.get(), SOL_PACKET, PACKET_TX_RING, &req, sizeof req) == 0 &&
        ::bind(rs.get(), reinterpret_cast<sockaddr *>(&tll), sizeof tll) == 0) {
      // frames start AVAILABLE (zeroed by the kernel)
      if (auto m = mapping::map_shared(rs.get(), size_t{kTxRingFrame} * kTxRingFrames, "the tx ring of " + ifn)) {
        d->tx_ring_ = std::move(m).value();
        d->ring_sock_ = std::move(rs);
      }
    }
  }

  if (v2) {
    // whole frames per block, and nothing else: the kernel sees frame i at
    // block i / per_block, offset (i % per_block) * frame_size
    tpacket_req req{};
    req.tp_block_size = cfg.block_size;
    req.tp_block_nr = cfg.block_count;
    req.tp_frame_size = cfg.frame_size;
    d->frames_per_block_ = cfg.block_size / cfg.frame_size;
    req.tp_frame_nr = d->frame_nr_ = d->frames_per_block_ * cfg.block_count;
    r = sockopt(s, SOL_PACKET, PACKET_RX_RING, req, "PACKET_RX_RING (TPACKET_V2)", ifn);
    if (r && cfg.frame_size < kWholeFrame) {
      // frames that do not fit a ring frame are queued whole on the socket
      // (a reference to the skb) while there is receive buffer for them:
      // 8 MiB, a hundred GSO frames, beyond the default rmem_max as root
      r = sockopt(s, SOL_PACKET, PACKET_COPY_THRESH, int{1}, "PACKET_COPY_THRESH", ifn);
      const int rcvbuf = 8 << 20;
      if (r && ::setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf) < 0)
        (void)::setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);  // net.core.rmem_max bounds it
    }
  } else {
    tpacket_req3 req{};
    req.tp_block_size = cfg.block_size;
    req.tp_block_nr = cfg.block_count;
    req.tp_frame_size = 2048;  // only checked by the kernel, V3 packs frames
    req.tp_frame_nr = static_cast<unsigned>((uint64_t{cfg.block_size} * cfg.block_count) / req.tp_frame_size);
    req.tp_retire_blk_tov = 1;  // ms, the least there is: a partly filled block is handed over soon
    req.tp_sizeof_priv = 0;
    req.tp_feature_req_word = 0;
    r = sockopt(s, SOL_PACKET, PACKET_RX_RING, req, "PACKET_RX_RING (TPACKET_V3)", ifn);
  }
  if (!r) return std::move(r).take_error();
  const size_t ring_len = size_t{cfg.block_size} * cfg.block_count;
  void *m = ::mmap(nullptr, ring_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_LOCKED, s, 0);
  if (m == MAP_FAILED) m = ::mmap(nullptr, ring_len, PROT_READ | PROT_WRITE, MAP_SHARED, s, 0);
  if (m == MAP_FAILED) return sys_fail("mmap", "the packet ring of " + ifn);
  d->ring_ = mapping(m, ring_len);
  if (!v2) d->v3_ = V3Walk{d->ring_.data(), cfg.block_size, cfg.block_count};

  if (cfg.overflow_v3) {
    // The overflow ring: a TPACKET_V3 socket that takes no frame (a filter
    // returning 0) until it has joined sock_'s fanout group below, so that
    // nothing is read twice in between.
    d->sock3_.reset(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
    if (!d->sock3_) return sys_fail("socket", "AF_PACKET overflow socket for " + ifn);
    const int s3 = d->sock3_.get();
    r = sockopt(s3, SOL_PACKET, PACKET_VERSION, int{TPACKET_V3}, "PACKET_VERSION TPACKET_V3 (overflow ring)", ifn);
    if (!r) return std::move(r).take_error();
    if (cfg.vnet_hdr) {
      r = sockopt(s3, SOL_PACKET, PACKET_VNET_HDR, int{1}, "PACKET_VNET_HDR (overflow ring)", ifn);
      if (!r) return std::move(r).take_error();
    }
    constexpr uint32_t kOvBlock = 1u << 18, kOvBlocks = 32;  // V3's default: 8 MiB
    tpacket_req3 req{};
    req.tp_block_size = kOvBlock;
    req.tp_block_nr = kOvBlocks;
    req.tp_frame_size = 2048;
    req.tp_frame_nr = kOvBlock / 2048 * kOvBlocks;
    req.tp_retire_blk_tov = 1;
    r = sockopt(s3, SOL_PACKET, PACKET_RX_RING, req, "PACKET_RX_RING (TPACKET_V3, overflow ring)", ifn);
    if (!r) return std::move(r).take_error();
    const size_t len3 = size_t{kOvBlock} * kOvBlocks;
    void *m3 = ::mmap(nullptr, len3, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_LOCKED, s3, 0);
    if (m3 == MAP_FAILED) m3 = ::mmap(nullptr, len3, PROT_READ | PROT_WRITE, MAP_SHARED, s3, 0);
    if (m3 == MAP_FAILED) return sys_fail("mmap", "the overflow ring of " + ifn);
    d->ring3_ = mapping(m3, len3);
    d->ov_ = V3Walk{d->ring3_.data(), kOvBlock, kOvBlocks};
    if (Status st = load_ret0(s3, SOL_SOCKET, SO_ATTACH_FILTER, "SO_ATTACH_FILTER (nothing until it joins the group)", ifn); !st) return std::move(st).take_error();
  }

  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_ALL);
  sll.sll_ifindex = d->ifindex_;
  if (::bind(s, reinterpret_cast<sockaddr *>(&sll), sizeof sll) < 0) return sys_fail("bind", "packet socket to " + ifn);
  if (d->sock3_) {
    // A fanout group of the two, V2 first: its program (return 0) picks the
    // V2 socket for every frame, and rollover moves a frame to the V3 one
    // when the V2 ring has no room (full, or three quarters full under one
    // flow). The group gets a fresh id (UNIQUEID); it does not read back our
    // own sends (IGNORE_OUTGOING, the group's own PACKET_IGNORE_OUTGOING).
    const int s3 = d->sock3_.get();
    if (::bind(s3, reinterpret_cast<sockaddr *>(&sll), sizeof sll) < 0) return sys_fail("bind", "packet overflow socket to " + ifn);
    constexpr int kFlags = PACKET_FANOUT_FLAG_ROLLOVER | PACKET_FANOUT_FLAG_IGNORE_OUTGOING;
    r = sockopt(s, SOL_PACKET, PACKET_FANOUT, int{(PACKET_FANOUT_CBPF | kFlags | PACKET_FANOUT_FLAG_UNIQUEID) << 16}, "PACKET_FANOUT (new group)", ifn,
                "the overflow ring needs Linux 4.20 or later");
    if (!r) return std::move(r).take_error();
    int fan = 0;
    socklen_t fl = sizeof fan;
    if (::getsockopt(s, SOL_PACKET, PACKET_FANOUT, &fan, &fl) < 0) return sys_fail("getsockopt", "PACKET_FANOUT (the group's id) on " + ifn);
    if (Status st = load_ret0(s, SOL_PACKET, PACKET_FANOUT_DATA, "PACKET_FANOUT_DATA (every frame to the V2 ring)", ifn); !st) return std::move(st).take_error();
    r = sockopt(s3, SOL_PACKET, PACKET_FANOUT, int{(fan & 0xffff) | ((PACKET_FANOUT_CBPF | kFlags) << 16)}, "PACKET_FANOUT (join)", ifn);
    if (!r) return std::move(r).take_error();
    const int zero = 0;
    if (::setsockopt(s3, SOL_SOCKET, SO_DETACH_FILTER, &zero, sizeof zero) < 0) return sys_fail("setsockopt", "SO_DETACH_FILTER on the overflow socket of " + ifn);
  }

  auto flags = link_flags(s, ifn);
  if (!flags) return std::move(flags).take_error();
  d->was_promisc_ = (flags.value() & IFF_PROMISC) != 0;
  r = hold_promisc(s, d->ifindex_, ifn);
  if (!r) return std::move(r).take_error();
  auto raised = raise_link(s, ifn, flags.value());
  if (!raised) return std::move(raised).take_error();
  d->raised_up_ = raised.value();

  if (core) {
    d->core_ = std::move(core);
    d->hook_ = std::make_unique<Hook>(*d);
    (void)d->port_.txsync(0);
    // from here stop() (the destructor, on an error) unregisters the hook and its fd
    if (Status st = d->core_->add_wait_fd(d->hook_.get(), s, true); !st) return std::move(st).take_error();
    if (d->sock3_)
      if (Status st = d->core_->add_wait_fd(d->hook_.get(), d->sock3_.get(), true); !st) return std::move(st).take_error();
    if (Status st = d->core_->add_round_hook(d->hook_.get()); !st) return std::move(st).take_error();
    // frames come with the header this socket sends with (pass_hdr): the
    // switch may hand them over from the senders' buffers
    if (cfg.pass_hdr && cfg.switch_port >= 0)
      if (Status st = d->core_->set_direct(static_cast<uint32_t>(cfg.switch_port), d->hook_.get(), d->port_.region_fd()); !st) return std::move(st).take_error();
    d->core_->notify();
    return d;
  }
  auto opened = d->sock3_ ? d->thread_.open({s, d->sock3_.get(), d->port_.wait_fd()}, "driver thread of " + ifn)
                          : d->thread_.open({s, d->port_.wait_fd()}, "driver thread of " + ifn);
  if (!opened) return std::move(opened).take_error();
  AfPacketDriver *self = d.get();
  // "afp:IFNAME": bench/linux-if splits vale-ts's CPU by thread name
  d->thread_.start([self] { self->run(); }, "afp:" + cfg.ifname);
  return d;
}

AfPacketDriver::~AfPacketDriver() { stop(); }

void AfPacketDriver::stop() {
  thread_.stop();
  if (core_) {
    // once this returned the switch never calls the hook again, and its
    // epoll set no longer holds the socket
    if (hook_ && cfg_.switch_port >= 0) core_->clear_direct(static_cast<uint32_t>(cfg_.switch_port), hook_.get());
    if (hook_) core_->remove_round_hook(hook_.get());
    core_.reset();
  }
  hook_.reset();
  if (sock_) {
    if (raised_up_) lower_link(sock_.get(), cfg_.ifname);
    ring_.reset();
    sock_.reset();  // the kernel drops our promiscuity reference here
  }
  ring3_.reset();
  sock3_.reset();
  tx_sock_.reset();
  tx_ring_.reset();
  ring_sock_.reset();
}

void AfPacketDriver::log_once(std::atomic<bool> &flag, const std::string &msg) {
  if (!flag.exchange(true)) std::fprintf(stderr, "vale-ts: %s: %s (logged once)\n", cfg_.ifname.c_str(), msg.c_str());
}

void AfPacketDriver::poll_kernel_drops() {
  tpacket_stats_v3 st{};
  socklen_t len = sizeof st;
  // reading resets the kernel's counters: we accumulate
  if (::getsockopt(sock_.get(), SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0 && st.tp_drops)
    c_.drop_kernel_ring.fetch_add(st.tp_drops, std::memory_order_relaxed);
  len = sizeof st;
  if (sock3_ && ::getsockopt(sock3_.get(), SOL_PACKET, PACKET_STATISTICS, &st, &len) == 0 && st.tp_drops)
    c_.drop_kernel_ring.fetch_add(st.tp_drops, std::memory_order_relaxed);
}

// The kernel's header and the frame, into one tx slot or a chain of them.
bool AfPacketDriver::put_frame_with_hdr(uint8_t *data, uint32_t len) {
  netmap_ring *tx = port_.tx_ring(0);
  const uint32_t bufsz = slot_fill(port_.buf_size());  // what one slot may carry
  const VnetHdr vh = vnet_hdr_read(data - kVnetLen);
  const bool gso = vh.gso_type != VNET_GSO_NONE;
  if (!gso && len > bufsz) {
    c_.drop_too_big.fetch_add(1, std::memory_order_relaxed);
    log_once(logged_too_big_, "a " + std::to_string(len) + "-byte frame (not GSO) is larger than the port's " + std::to_string(bufsz) + "-byte buffers: dropped; lower the MTU of " + cfg_.ifname);
    return true;
  }
  const size_t flen = kVnetLen + len;
  const uint32_t n = static_cast<uint32_t>((flen + bufsz - 1) / bufsz);
  if (n > NETMAP_MAX_FRAGS || n >= tx->num_slots) {
    c_.drop_too_big.fetch_add(1, std::memory_order_relaxed);
    log_once(logged_too_big_, "a " + std::to_string(len) + "-byte GSO frame takes more than " + std::to_string(NETMAP_MAX_FRAGS) + " of the port's buffers: dropped");
    return true;
  }
  if (port_.tx_space(0) < n) {
    need_slots_ = n;
    return false;
  }
  uint8_t *to[NETMAP_MAX_FRAGS];
  if (!chain_bufs(n, to)) return true;
  // the header sits right before the MAC header in the block: one contiguous source
  const uint8_t *src = data - kVnetLen;
  for (uint32_t j = 0; j < n; j++) std::memcpy(to[j], src + size_t{j} * bufsz, std::min<size_t>(bufsz, flen - size_t{j} * bufsz));
  publish_chain(n, len, vh);
  return true;
}

bool AfPacketDriver::chain_bufs(uint32_t n, uint8_t **to) {
  netmap_ring *tx = port_.tx_ring(0);
  for (uint32_t j = 0, i = tx->head; j < n; j++, i = i + 1 == tx->num_slots ? 0 : i + 1) {
    if (!(to[j] = port_.slot_buf(tx->slot[i]))) {
      c_.drop_tx_bad_slot.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
  }
  return true;
}

void AfPacketDriver::publish_chain(uint32_t n, uint32_t len, const VnetHdr &vh) {
  netmap_ring *tx = port_.tx_ring(0);
  const uint32_t bufsz = slot_fill(port_.buf_size());  // what one slot may carry
  const size_t flen = kVnetLen + len;
  for (uint32_t j = 0; j < n; j++) {
    netmap_slot &sl = tx->slot[tx->head];
    sl.len = static_cast<uint16_t>(std::min<size_t>(bufsz, flen - size_t{j} * bufsz));
    sl.flags = j + 1 < n ? NS_MOREFRAG : 0;
    tx->head = tx->cur = tx->head + 1 == tx->num_slots ? 0 : tx->head + 1;
  }
  if (vh.gso_type != VNET_GSO_NONE) c_.gso_passed.fetch_add(1, std::memory_order_relaxed);
  else if (vh.flags & VNET_F_NEEDS_CSUM) c_.csum_passed.fetch_add(1, std::memory_order_relaxed);
  c_.rx_frames.fetch_add(1, std::memory_order_relaxed);
  c_.rx_bytes.fetch_add(len, std::memory_order_relaxed);
}

bool AfPacketDriver::put_frame(uint8_t *data, uint32_t len) {
  if (cfg_.pass_hdr) return put_frame_with_hdr(data, len);
  netmap_ring *tx = port_.tx_ring(0);
  uint32_t space = port_.tx_space(0);
  const uint32_t bufsz = slot_fill(port_.buf_size());  // what one slot may carry
  VnetHdr vh{};
  if (cfg_.vnet_hdr) vh = vnet_hdr_read(data - kVnetLen);  // the kernel puts it right before the MAC header
  auto take = [&]() -> uint8_t * { return port_.slot_buf(tx->slot[tx->head]); };
  auto commit = [&](uint32_t l) {
    netmap_slot &sl = tx->slot[tx->head];
    sl.len = static_cast<uint16_t>(l);
    sl.flags = 0;
    tx->head = tx->cur = tx->head + 1 == tx->num_slots ? 0 : tx->head + 1;
  };
  if (cfg_.vnet_hdr && vh.gso_type != VNET_GSO_NONE) {
    // offload.h's segmenter, writing into the tx slots ahead of head; head
    // moves only once every segment is written, so a failure part way
    // publishes nothing
    struct SlotSink final : SegmentSink {
      PortClient &port;
      netmap_ring *ring;
      uint32_t bufsz, at, used = 0;
      bool bad_slot = false;
      SlotSink(PortClient &p, netmap_ring *r, uint32_t b) : port(p), ring(r), bufsz(b), at(r->head) {}
      uint8_t *next(size_t l) override {
        if (l > bufsz) return nullptr;
        netmap_slot &sl = ring->slot[at];
        uint8_t *b = port.slot_buf(sl);
        if (!b) {  // a buffer index we cannot use: the switch's region is corrupt
          bad_slot = true;
          return nullptr;
        }
        sl.len = static_cast<uint16_t>(l);
        sl.flags = 0;
        at = at + 1 == ring->num_slots ? 0 : at + 1;
        used++;
        return b;
      }
    };
    const uint32_t nseg = gso_segment_count(vh, data, len);
    if (nseg > tx->num_slots - 1) {
      c_.drop_bad_vnet_hdr.fetch_add(1, std::memory_order_relaxed);
      log_once(logged_vnet_, "a GSO frame makes more segments (" + std::to_string(nseg) + ") than the port's ring holds: dropped");
      return true;
    }
    if (nseg > 0 && space < nseg) {
      need_slots_ = nseg;
      return false;
    }
    SlotSink sink(port_, tx, bufsz);
    SegmentResult r = gso_segment(vh, data, len, bufsz, sink);
    if (r.err == OffloadError::BadGsoType) {
      c_.drop_gso_unsupported.fetch_add(1, std::memory_order_relaxed);
      log_once(logged_gso_, "GSO frame of type " + std::to_string(vh.gso_type) + " cannot be segmented (only TCP and UDP_L4): dropped; turn the offload off with `ethtool -K " + cfg_.ifname + " gro off` or on the sender");
      return true;
    }
    if (r.err == OffloadError::NoRoom && sink.bad_slot) {
      c_.drop_tx_bad_slot.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    if (r.err != OffloadError::None) {
      c_.drop_bad_vnet_hdr.fetch_add(1, std::memory_order_relaxed);
      log_once(logged_vnet_, std::string("a GSO frame's virtio-net header does not fit the frame or the port (") + offload_error_name(r.err) +
                                 ", gso_size " + std::to_string(vh.gso_size) + ", len " + std::to_string(len) + "): dropped");
      return true;
    }
    tx->head = tx->cur = sink.at;
    c_.gso_frames.fetch_add(1, std::memory_order_relaxed);
    c_.gso_segments.fetch_add(r.segments, std::memory_order_relaxed);
    c_.rx_frames.fetch_add(1, std::memory_order_relaxed);
    c_.rx_bytes.fetch_add(len, std::memory_order_relaxed);
    return true;
  }
  if (len > bufsz) {
    c_.drop_too_big.fetch_add(1, std::memory_order_relaxed);
    log_once(logged_too_big_, "a " + std::to_string(len) + "-byte frame (not GSO) is larger than the port's " + std::to_string(bufsz) + "-byte buffers: dropped; lower the MTU of " + cfg_.ifname);
    return true;
  }
  if (space < 1) {
    need_slots_ = 1;
    return false;
  }
  uint8_t *b = take();
  if (!b) {
    c_.drop_tx_bad_slot.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  std::memcpy(b, data, len);
  if (cfg_.vnet_hdr && (vh.flags & VNET_F_NEEDS_CSUM)) {
    if (complete_csum(vh, b, len) != OffloadError::None) {
      c_.drop_bad_vnet_hdr.fetch_add(1, std::memory_order_relaxed);
      log_once(logged_vnet_, "a partial checksum's offsets fall outside its frame: dropped");
      return true;
    }
    c_.csum_completed.fetch_add(1, std::memory_order_relaxed);
  }
  commit(len);
  c_.rx_frames.fetch_add(1, std::memory_order_relaxed);
  c_.rx_bytes.fetch_add(len, std::memory_order_relaxed);
  return true;
}

// A ring frame marked TP_STATUS_COPY: the kernel queued the whole frame (len
// bytes, the ring frame's tp_len) on the socket before it published the ring
// frame, in ring order, so the next datagram on the socket is this frame.
// Read straight into the port's tx slots (its virtio-net header first, as
// put_frame_with_hdr lays a frame out: only pass_hdr ports have such small
// ring frames), once they have room. A VLAN tag the kernel took out (`tag`,
// as reported_vlan gives it) goes back in after the MAC addresses: the
// datagram is read around a 4-byte gap left for it.
bool AfPacketDriver::put_copied(bool gso, uint32_t len, uint32_t tag) {
  const int s = sock_.get();
  // A pending socket error (ENETDOWN while the interface went down) is
  // returned, and cleared, before the queue is read, and the frame stays
  // next: read again, or every later TP_STATUS_COPY frame would read the
  // datagram of the one before it.
  auto recv_next = [&](msghdr *mh) {
    ssize_t got = ::recvmsg(s, mh, MSG_DONTWAIT | MSG_TRUNC);
    for (int i = 0; got < 0 && i < 4 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINVAL; i++) {
      c_.socket_errors.fetch_add(1, std::memory_order_relaxed);
      got = ::recvmsg(s, mh, MSG_DONTWAIT | MSG_TRUNC);
    }
    return got;
  };
  auto drop_next = [&](std::atomic<uint64_t> &counter) {
    msghdr none{};
    (void)recv_next(&none);  // takes the datagram off the queue
    counter.fetch_add(1, std::memory_order_relaxed);
    return true;
  };
  netmap_ring *tx = port_.tx_ring(0);
  const uint32_t bufsz = slot_fill(port_.buf_size());  // what one slot may carry
  const size_t tl = tag ? kVlanLen : 0;
  if (!gso && len + tl > bufsz) {
    log_once(logged_too_big_, "a " + std::to_string(len + tl) + "-byte frame (not GSO) is larger than the port's " + std::to_string(bufsz) + "-byte buffers: dropped; lower the MTU of " + cfg_.ifname);
    return drop_next(c_.drop_too_big);
  }
  const size_t flen = kVnetLen + len + tl;  // as it will lie in the slots
  const size_t n = (flen + bufsz - 1) / bufsz;
  if (!cfg_.pass_hdr || len > kLargestFrame || n > NETMAP_MAX_FRAGS || n >= tx->num_slots) {
    log_once(logged_too_big_, "a " + std::to_string(len) + "-byte GSO frame takes more than " + std::to_string(NETMAP_MAX_FRAGS) + " of the port's buffers: dropped");
    return drop_next(c_.drop_too_big);
  }
  if (port_.tx_space(0) < n) {
    need_slots_ = static_cast<uint32_t>(n);
    return false;
  }
  uint8_t *to[NETMAP_MAX_FRAGS];
  if (!chain_bufs(static_cast<uint32_t>(n), to)) {
    msghdr none{};
    (void)recv_next(&none);  // the frame is not read: off the queue with it
    return true;
  }
  // the slots' bytes [0, flen) less the tag's [gap, gap + tl)
  const size_t gap = kVnetLen + 12;
  iovec iov[NETMAP_MAX_FRAGS + 1];
  size_t niov = 0;
  for (size_t j = 0; j < n; j++) {
    const size_t lo = j * bufsz, hi = std::min(flen, lo + bufsz);
    if (gap >= hi || gap + tl <= lo) {
      iov[niov++] = iovec{to[j], hi - lo};
      continue;
    }
    if (gap > lo) iov[niov++] = iovec{to[j], gap - lo};
    if (gap + tl < hi) iov[niov++] = iovec{to[j] + (gap + tl - lo), hi - (gap + tl)};
  }
  msghdr mh{};
  mh.msg_iov = iov;
  mh.msg_iovlen = niov;
  const ssize_t got = recv_next(&mh);
  if (got != static_cast<ssize_t>(flen - tl)) {
    // EAGAIN: nothing queued although the ring said so; EINVAL: a GSO type
    // the kernel cannot describe in a virtio-net header (the frame is gone)
    c_.drop_truncated.fetch_add(1, std::memory_order_relaxed);
    log_once(logged_copy_, got < 0 ? std::string("reading a frame too large for a ring frame failed (") + std::strerror(errno) + "): dropped"
                                   : "a frame read from the socket had " + std::to_string(got) + " bytes where the ring said " + std::to_string(flen - tl) + ": dropped");
    return true;
  }
  if (tl) {
    for (size_t b = 0; b < tl; b++) to[(gap + b) / bufsz][(gap + b) % bufsz] = static_cast<uint8_t>(tag >> (8 * (tl - 1 - b)));
    vnet_hdr_after_tag(to[0]);
  }
  c_.rx_copied.fetch_add(1, std::memory_order_relaxed);
  publish_chain(static_cast<uint32_t>(n), static_cast<uint32_t>(len + tl), vnet_hdr_read(to[0]));
  return true;
}

// Frame block_ as the kernel lays it out (whole frames per block, see
// start()). In bounds: block_ < frame_nr_ = frames_per_block_ * block_count,
// so the block is < block_count, and (block_ % frames_per_block_ + 1) *
// frame_size <= frames_per_block_ * frame_size <= block_size: all frame_size
// bytes lie inside the block_size * block_count mapping.
uint8_t *AfPacketDriver::v2_frame() const {
  return ring_.data() + size_t{block_ / frames_per_block_} * cfg_.block_size + size_t{block_ % frames_per_block_} * cfg_.frame_size;
}

// TPACKET_V2: one frame per ring entry, its status word handed back and
// forth; block_ counts frames here
bool AfPacketDriver::pump_in_v2(bool &moved) {
  const uint32_t fsz = cfg_.frame_size;
  for (;;) {
    uint8_t *f = v2_frame();
    auto *h = reinterpret_cast<tpacket2_hdr *>(f);
    if (!(__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) return true;
    if (h->tp_status & TP_STATUS_COPY) {
      // too large for a ring frame: the whole frame is next on the socket,
      // read before anything else or the queue falls out of step with the
      // ring; its virtio-net header is in the ring frame too, before its bytes
      const bool hdr_ok = cfg_.vnet_hdr && h->tp_mac >= kVnetLen && h->tp_mac <= fsz;
      const uint32_t tag = reported_vlan(*h, h->tp_vlan_tci, h->tp_vlan_tpid);
      if (!put_copied(hdr_ok && vnet_hdr_read(f + h->tp_mac - kVnetLen).gso_type != VNET_GSO_NONE, h->tp_len, tag)) return false;  // the port's tx ring is full: resume here
    } else if (h->tp_mac < sizeof(tpacket2_hdr) + kVnetLen + kVlanLen || size_t{h->tp_mac} + h->tp_snaplen > fsz) {
      // not a frame we can read (the kernel leaves more room before one): give it back
    } else if (h->tp_snaplen < h->tp_len) {
      c_.drop_truncated.fetch_add(1, std::memory_order_relaxed);
      log_once(logged_truncated_, "a " + std::to_string(h->tp_len) + "-byte frame did not fit a ring frame and the socket's receive buffer was full: dropped; raise net.core.rmem_max (8 MiB is asked for)");
    } else {
      if (const uint32_t tag = reported_vlan(*h, h->tp_vlan_tci, h->tp_vlan_tpid)) restore_vlan(*h, tag, cfg_.vnet_hdr);
      if (!put_frame(f + h->tp_mac, h->tp_snaplen)) return false;  // the port's tx ring is full: resume at this frame
    }
    moved = true;
    __atomic_store_n(&h->tp_status, static_cast<unsigned>(TP_STATUS_KERNEL), __ATOMIC_RELEASE);
    block_ = block_ + 1 == frame_nr_ ? 0 : block_ + 1;
    if (port_.tx_space(0) == 0) (void)port_.txsync(0);
  }
}

bool AfPacketDriver::V3Walk::ready() const {
  const auto *bd = reinterpret_cast<const tpacket_block_desc *>(base + size_t{block} * block_size);
  return pkt_left > 0 || (__atomic_load_n(&bd->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER);
}

bool AfPacketDriver::kernel_ready() const {
  if (cfg_.rx_version != 2) return v3_.ready();
  return (__atomic_load_n(&reinterpret_cast<const tpacket2_hdr *>(v2_frame())->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER) ||
         (sock3_ && ov_.ready());
}

// TPACKET_V3: blocks of frames, each block handed back whole; w.block is
// the block being read, w.pkt_left what is left of it (resumed there after
// a full port tx ring)
bool AfPacketDriver::pump_in_v3(V3Walk &w, bool &moved, bool overflow) {
  bool released = false;
  for (;;) {
    auto *bd = reinterpret_cast<tpacket_block_desc *>(w.base + size_t{w.block} * w.block_size);
    uint8_t *block_end = reinterpret_cast<uint8_t *>(bd) + w.block_size;
    if (w.pkt_left == 0) {
      if (!(__atomic_load_n(&bd->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) break;
      w.pkt_left = bd->hdr.bh1.num_pkts;
      uint32_t first = bd->hdr.bh1.offset_to_first_pkt;
      w.pkt = first < w.block_size ? reinterpret_cast<uint8_t *>(bd) + first : nullptr;
      if (!w.pkt) w.pkt_left = 0;
    }
    while (w.pkt_left > 0) {
      auto *h = reinterpret_cast<tpacket3_hdr *>(w.pkt);
      if (w.pkt + sizeof(tpacket3_hdr) > block_end || w.pkt + h->tp_mac + h->tp_snaplen > block_end || h->tp_mac < sizeof(tpacket3_hdr) + kVnetLen + kVlanLen) {
        w.pkt_left = 0;  // a block we cannot walk: give it back whole
        break;
      }
      if (h->tp_snaplen < h->tp_len) {
        c_.drop_truncated.fetch_add(1, std::memory_order_relaxed);
        log_once(logged_truncated_, "a " + std::to_string(h->tp_len) + "-byte frame did not fit a ring block: dropped");
      } else {
        if (const uint32_t tag = reported_vlan(*h, static_cast<uint16_t>(h->hv1.tp_vlan_tci), h->hv1.tp_vlan_tpid)) restore_vlan(*h, tag, cfg_.vnet_hdr);
        if (!put_frame(w.pkt + h->tp_mac, h->tp_snaplen)) return false;  // the port's tx ring is full: resume here
        if (overflow) c_.rx_overflow.fetch_add(1, std::memory_order_relaxed);
      }
      moved = true;
      w.pkt_left--;
      w.pkt = h->tp_next_offset ? w.pkt + h->tp_next_offset : block_end;
      if (port_.tx_space(0) == 0) (void)port_.txsync(0);
    }
    __atomic_store_n(&bd->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
    w.block = (w.block + 1) % w.block_count;
    released = true;
  }
  // The kernel rolls frames over only to a group member not marked under
  // pressure, and clears the mark in poll() or recvmsg(), neither of which
  // the ring path calls while it keeps up: ask once per batch that freed room.
  if (overflow && released) {
    pollfd p{sock3_.get(), POLLIN, 0};
    (void)::poll(&p, 1, 0);
  }
  return true;
}

bool AfPacketDriver::pump_in() {
  bool moved = false;
  in_blocked_ = false;
  (void)port_.txsync(0);
  if (cfg_.rx_version == 2) {
    if (!pump_in_v2(moved) || (sock3_ && !pump_in_v3(ov_, moved, true))) in_blocked_ = true;
  } else if (!pump_in_v3(v3_, moved, false)) {
    in_blocked_ = true;
  }
  (void)port_.txsync(0);
  return moved;
}

bool AfPacketDriver::pump_out() {
  netmap_ring *rx = port_.rx_ring(0);
  (void)port_.rxsync(0);
  bool moved = false;
  out_blocked_ = false;
  const bool pass = cfg_.pass_hdr;
  while (port_.rx_avail(0) > 0) {
    mmsghdr msgs[kTxBatch];
    // one iovec per slot; a chain takes one per fragment (and the zero header)
    iovec iov[kTxBatch + NETMAP_MAX_FRAGS];
    static uint8_t zero_hdr[kVnetLen]{};  // no offload asked of the kernel: frames are complete
    uint32_t n = 0, i = rx->head, used_iov = 0;
    const uint32_t avail = port_.rx_avail(0);
    uint32_t slots = 0;  // slots consumed (sent or dropped) in this batch, in order
    uint32_t start[kTxBatch];  // the slot each message starts at
    while (slots < avail && n < kTxBatch && used_iov + NETMAP_MAX_FRAGS + 1 <= kTxBatch + NETMAP_MAX_FRAGS) {
      // the frame's slots: one, or a chain the switch published whole (a GSO
      // frame with its header, or any sender's multi-slot frame), sent as one
      // frame: a slot of a chain sent alone would put on the wire a frame the
      // switch's lookup never saw, whatever its sender wrote there
      const uint32_t first = slots, iov0 = used_iov;
      bool bad = false, complete = false;
      uint32_t k = 0;
      size_t total = 0;
      if (!pass && cfg_.vnet_hdr) iov[used_iov + k++] = iovec{zero_hdr, kVnetLen};
      while (slots < avail) {
        netmap_slot &sl = rx->slot[i];
        i = i + 1 == rx->num_slots ? 0 : i + 1;
        slots++;
        uint8_t *b = port_.slot_buf(sl);
        if (!b || sl.len > port_.buf_size()) bad = true;
        else if (k < NETMAP_MAX_FRAGS + 1) iov[used_iov + k++] = iovec{b, sl.len};
        else bad = true;
        total += sl.len;
        if (!(sl.flags & NS_MOREFRAG)) {
          complete = true;
          break;
        }
      }
      if (bad || !complete || total < (pass ? kVnetLen : 0) + 14) {
        c_.drop_tx_bad_slot.fetch_add(1, std::memory_order_relaxed);
        log_once(logged_slot_, "a slot with a bad buffer index or length on the port's rx ring: dropped");
        continue;
      }
      start[n] = first;
      msgs[n] = mmsghdr{};
      msgs[n].msg_hdr.msg_iov = iov + iov0;
      msgs[n].msg_hdr.msg_iovlen = k;
      used_iov += k;
      n++;
    }
    int sent = n ? send_msgs(msgs, n) : 0;
    uint32_t done_slots = slots;  // how far head may move
    if (sent < 0) {
      if (send_failed(errno)) {
        out_blocked_ = true;
        // keep the first unsent frame: head stops before it
        done_slots = n ? start[0] : slots;
      } else {
        // the first frame was dropped: go on after it
        done_slots = n > 1 ? start[1] : slots;
      }
      sent = 0;
    } else if (static_cast<uint32_t>(sent) < n) {
      done_slots = start[sent];
    }
    for (int j = 0; j < sent; j++) c_.tx_bytes.fetch_add(msgs[j].msg_len > kVnetLen && cfg_.vnet_hdr ? msgs[j].msg_len - kVnetLen : msgs[j].msg_len, std::memory_order_relaxed);
    c_.tx_frames.fetch_add(static_cast<uint64_t>(sent), std::memory_order_relaxed);
    if (done_slots == 0) break;
    moved = true;
    uint32_t h = rx->head + done_slots;
    if (h >= rx->num_slots) h -= rx->num_slots;
    rx->head = rx->cur = h;
    (void)port_.rxsync(0);
    if (out_blocked_) break;
  }
  return moved;
}

// SIOCGIFFLAGS: IFF_RUNNING is the carrier (operstate up). Asked only while
// the kernel pushes back, once per wait. An interface that cannot be asked
// (gone) counts as having one: the short retries then find out.
bool AfPacketDriver::no_carrier() {
  auto f = link_flags(sock_.get(), cfg_.ifname);
  const bool down = f && (f.value() & IFF_UP) && !(f.value() & IFF_RUNNING);
  if (down) c_.tx_waits_no_carrier.fetch_add(1, std::memory_order_relaxed);
  return down;
}

bool AfPacketDriver::send_failed(int e) {
  if (e == EAGAIN || e == ENOBUFS || e == EINTR) {
    c_.tx_retries.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  // the first frame is refused (too big for the device, interface down, a header the kernel rejects): dropped
  c_.drop_tx_error.fetch_add(1, std::memory_order_relaxed);
  log_once(logged_tx_, std::string(tx_ring_ ? "send (tx ring or sendmmsg): " : "sendmmsg: ") + std::strerror(e) + ": frame dropped (counted in drop_tx_error)" +
                           (e == ENETDOWN ? "; the interface or its carrier is down: ip link set " + cfg_.ifname + " up, and its peer" : ""));
  return false;
}

// As pump_out, from the switch's iovecs (the senders' buffers and the
// decision's snapshot) instead of our rx ring's slots; the header in front
// is the sender's, checked by the kernel as pump_out's are. A push-back
// ends it: the switch puts the rest in our rx ring, and pump_out retries.
uint32_t AfPacketDriver::send_direct(const iovec *iov, const uint32_t *at, uint32_t n) {
  uint32_t done = 0;
  while (done < n) {
    mmsghdr msgs[kTxBatch];
    const uint32_t m = std::min(n - done, kTxBatch);
    for (uint32_t j = 0; j < m; j++) {
      msgs[j] = mmsghdr{};
      msgs[j].msg_hdr.msg_iov = const_cast<iovec *>(iov + at[done + j]);
      msgs[j].msg_hdr.msg_iovlen = at[done + j + 1] - at[done + j];
    }
    const int sent = send_msgs(msgs, m);
    if (sent < 0) {
      if (send_failed(errno)) break;
      done++;  // that frame is dropped, counted
      continue;
    }
    for (int j = 0; j < sent; j++) c_.tx_bytes.fetch_add(msgs[j].msg_len > kVnetLen ? msgs[j].msg_len - kVnetLen : msgs[j].msg_len, std::memory_order_relaxed);
    c_.tx_frames.fetch_add(static_cast<uint64_t>(sent), std::memory_order_relaxed);
    c_.tx_direct.fetch_add(static_cast<uint64_t>(sent), std::memory_order_relaxed);
    done += static_cast<uint32_t>(sent);
    if (static_cast<uint32_t>(sent) < m) break;  // the kernel took only part: as a push-back
  }
  return done;
}

// How stale the MTU the tx ring checks against may be: a frame between a
// lowered MTU and the old one that went through the ring in that window is
// dropped by the device (not counted by us), where sendmmsg would refuse it
// (EMSGSIZE, drop_tx_error). Only MTUs below ~200 bytes matter (ring frames
// are at most kTxRingMax); an ioctl every 10 ms is noise.
constexpr int64_t kMtuRecheckNs = 10'000'000;

void AfPacketDriver::refresh_mtu() {
  const int64_t now = mono_ns();
  if (now - mtu_read_ns_ < kMtuRecheckNs) return;
  mtu_read_ns_ = now;
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, cfg_.ifname.data(), std::min(cfg_.ifname.size(), size_t{IFNAMSIZ - 1}));
  // renamed or gone: keep the last value (the sends then fail and are counted)
  if (::ioctl(tx_sock_.get(), SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu > 0) mtu_.store(static_cast<uint32_t>(ifr.ifr_mtu), std::memory_order_relaxed);
}

int AfPacketDriver::send_msgs(mmsghdr *msgs, uint32_t n) {
  if (!tx_ring_) return ::sendmmsg(tx_sock_.get(), msgs, n, MSG_DONTWAIT);
  refresh_mtu();
  uint32_t done = 0;
  while (done < n) {
    // the run of frames that go the same way (the ring may have been given
    // up in the last pass: ring_send's fallback)
    const auto fits = [&](uint32_t i) { return tx_ring_ && ring_fits(msgs[i].msg_hdr); };
    const bool ring = fits(done);
    uint32_t end = done + 1;
    while (end < n && fits(end) == ring) end++;
    // the ring's send returns once the kernel has handed each frame it took
    // to the device, so what follows on tx_sock_ queues behind them
    const int r = ring ? ring_send(msgs + done, end - done) : ::sendmmsg(tx_sock_.get(), msgs + done, end - done, MSG_DONTWAIT);
    // as sendmmsg: an error after some frames went waits for the next call,
    // which starts with the frame it concerns
    if (r < 0) return done ? static_cast<int>(done) : -1;
    done += static_cast<uint32_t>(r);
    if (done < end) break;
  }
  return static_cast<int>(done);
}

bool AfPacketDriver::ring_fits(const msghdr &m) const {
  size_t total = 0;
  for (size_t j = 0; j < m.msg_iovlen; j++) total += m.msg_iov[j].iov_len;
  // sendmmsg refuses a frame over the MTU (EMSGSIZE, counted in
  // drop_tx_error); the ring, with a virtio-net header, does not check it
  if (total < kTxRingMin || total > kTxRingMax || total - kVnetLen > size_t{mtu_.load(std::memory_order_relaxed)} + ETH_HLEN) return false;
  uint8_t hb[kVnetLen];
  for (size_t j = 0, got = 0; got < kVnetLen; j++) {
    const size_t k = std::min(m.msg_iov[j].iov_len, kVnetLen - got);
    std::memcpy(hb + got, m.msg_iov[j].iov_base, k);
    got += k;
  }
  // a GSO frame stays on sendmmsg: its header's hdr_len is the kernel's to use
  return vnet_hdr_read(hb).gso_type == VNET_GSO_NONE;
}

// Copies the frames into the ring's free frames, marks them
// TP_STATUS_SEND_REQUEST and hands them to the kernel with one send(). The
// kernel takes them from its own index (tx_head_) in order and stops at the
// first it cannot send: pushed back (ENOBUFS, the slot left SEND_REQUEST) or
// refused (TP_STATUS_WRONG_FORMAT, as we have no PACKET_LOSS). Its index
// stays on that frame; we take that frame and the ones after it back
// (AVAILABLE again: no send() is running, and the kernel only reads a
// SEND_REQUEST frame in one), so the caller sees sendmmsg's outcome: the
// frames before were sent, that one failed with the kernel's errno, and the
// next call writes that frame again where the kernel's index waits. A
// refused frame is then refused again as the first of a call: -1 with the
// kernel's errno, counted and dropped by the caller, as sendmmsg's refusal is.
int AfPacketDriver::ring_send(mmsghdr *msgs, uint32_t n) {
  uint8_t *const base = tx_ring_.data();
  auto frame = [&](uint32_t k) { return reinterpret_cast<tpacket2_hdr *>(base + size_t{(tx_head_ + k) % kTxRingFrames} * kTxRingFrame); };
  uint32_t filled = 0;
  for (; filled < n; filled++) {
    tpacket2_hdr *h = frame(filled);
    // still the kernel's (its skb not freed yet): the ring is full from here
    if (__atomic_load_n(&h->tp_status, __ATOMIC_ACQUIRE) & kTpKernel) break;
    uint8_t *to = reinterpret_cast<uint8_t *>(h) + kTxRingData;
    const msghdr &m = msgs[filled].msg_hdr;
    size_t len = 0;
    for (size_t j = 0; j < m.msg_iovlen; j++) {
      std::memcpy(to + len, m.msg_iov[j].iov_base, m.msg_iov[j].iov_len);
      len += m.msg_iov[j].iov_len;
    }
    // hdr_len (a hint of the headers' length) is how much of the frame the
    // kernel copies into the skb (tpacket_fill_skb's copylen); the rest it
    // would attach as fragments of the ring's pages, which a receiver behind
    // a veth holds past the destructor that hands the frame back to us (it
    // orphans the skb). The whole frame: a linear skb, nothing of ours held.
    VnetHdr vh = vnet_hdr_read(to);
    vh.hdr_len = static_cast<uint16_t>(len - kVnetLen);
    vnet_hdr_write(vh, to);
    h->tp_len = static_cast<uint32_t>(len);
    msgs[filled].msg_len = static_cast<unsigned>(len);
    __atomic_store_n(&h->tp_status, uint32_t{TP_STATUS_SEND_REQUEST}, __ATOMIC_RELEASE);
  }
  if (filled == 0) {
    errno = ENOBUFS;  // a push-back: retried once the kernel frees frames
    return -1;
  }
  const ssize_t r = ::send(ring_sock_.get(), nullptr, 0, MSG_DONTWAIT);
  const int e = errno;
  uint32_t taken = 0;
  // taken: SENDING, or AVAILABLE again once its skb was freed
  while (taken < filled && !(__atomic_load_n(&frame(taken)->tp_status, __ATOMIC_ACQUIRE) & (TP_STATUS_SEND_REQUEST | TP_STATUS_WRONG_FORMAT))) taken++;
  for (uint32_t k = taken; k < filled; k++) __atomic_store_n(&frame(k)->tp_status, uint32_t{TP_STATUS_AVAILABLE}, __ATOMIC_RELEASE);
  tx_head_ = (tx_head_ + taken) % kTxRingFrames;
  c_.tx_ring.fetch_add(taken, std::memory_order_relaxed);
  if (taken > 0) return static_cast<int>(taken);
  if (r >= 0) {
    // the kernel took nothing and saw nothing wrong: its index is not where
    // ours is. Not expected; sendmmsg serves the port from here on.
    log_once(logged_ring_, "the tx ring's index went out of step with the kernel's: sending with sendmmsg from now on");
    tx_ring_.reset();
    ring_sock_.reset();
    return ::sendmmsg(tx_sock_.get(), msgs, n, MSG_DONTWAIT);
  }
  errno = e;
  return -1;
}

void AfPacketDriver::clear_socket_error(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err) c_.socket_errors.fetch_add(1, std::memory_order_relaxed);
}

void AfPacketDriver::watch_socket(bool on) {
  if (on == sock_watched_) return;
  bool ok = true;
  for (int fd : {sock_.get(), sock3_ ? sock3_.get() : -1}) {
    if (fd < 0) continue;
    epoll_event ev{};
    ev.events = on ? static_cast<uint32_t>(EPOLLIN) : 0u;
    ev.data.fd = fd;
    ok &= ::epoll_ctl(thread_.epoll_fd(), EPOLL_CTL_MOD, fd, &ev) == 0;
  }
  if (ok) sock_watched_ = on;
}

void AfPacketDriver::run() {
  uint32_t idle_rounds = 0;
  while (!thread_.stopping()) {
    bool moved = pump_in();
    moved |= pump_out();
    if (moved) {
      idle_rounds = 0;
      continue;
    }
    if (++idle_rounds < 2) continue;
    // ask for kicks, then look again: frames that came in between are not missed
    port_.arm(true, in_blocked_);
    (void)port_.rxsync(0);
    (void)port_.txsync(0);
    if (port_.rx_avail(0) > 0 && !out_blocked_) {
      port_.disarm();
      continue;
    }
    const bool ready = kernel_ready();
    // blocked on a frame that needs more slots than are free (a GSO frame
    // takes 33): sleep until the switch frees some, rather than spin
    if (ready && !(in_blocked_ && port_.tx_space(0) < need_slots_)) {
      port_.disarm();
      continue;
    }
    // a block we could not finish keeps the socket readable: stop listening to
    // it until the switch makes room, or the thread would spin
    watch_socket(!(in_blocked_ && ready));
    // the kernel's drop count costs a syscall: at most every kStatsNs while
    // busy (TCP sleeps and wakes per frame), and a sleep ends by then to
    // read it, so a drop is counted within kStatsNs even if nothing follows
    const int64_t now = mono_ns();
    const bool stats_due = now - stats_ns_ >= kStatsNs;
    if (stats_due) {
      poll_kernel_drops();
      stats_ns_ = now;
    }
    epoll_event evs[4];
    // a send the kernel pushed back is retried after a short wait: the device's
    // backlog drains in softirq, and there is no event for it on a packet socket
    // (100 ms while the interface has no carrier: it pushes back until it has)
    int n = ::epoll_wait(thread_.epoll_fd(), evs, 4, out_blocked_ ? (no_carrier() ? int(kLinuxIfNoCarrierMaxNs / 1'000'000) : 1) : !stats_due ? int(kStatsNs / 1'000'000) : -1);
    c_.wakeups.fetch_add(1, std::memory_order_relaxed);
    port_.disarm();
    for (int k = 0; k < n; k++) {
      if (evs[k].data.fd == port_.wait_fd()) port_.drain_bell();
      // a pending socket error (ENETDOWN: bound while the interface was
      // down, or it went down) is reported by epoll until it is read: read
      // it, or the thread spins (and kicks the switch) until something else does
      if ((evs[k].data.fd == sock_.get() || (sock3_ && evs[k].data.fd == sock3_.get())) && (evs[k].events & EPOLLERR)) clear_socket_error(evs[k].data.fd);
    }
    idle_rounds = 0;
  }
}

}  // namespace nm
