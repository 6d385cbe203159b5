#include "core/vxlan_driver.h"

#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/sock_diag.h>
#include <net/if.h>
#include <netinet/udp.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/clock.h"
#include "core/shared_bell.h"

namespace nm {

// Time here is mono_coarse_ns() (no hardware counter read on the datapath):
// every period it bounds (ageing, hellos, sport windows, the 10 ms service
// tick) is long beside its 1-4 ms resolution.

const char *vx_ctr_name(VxCtr c) {
  switch (c) {
    case VxCtr::DropShortHeader: return "dropShortHeader";
    case VxCtr::DropNoVniFlag: return "dropNoVniFlag";
    case VxCtr::DropWrongVni: return "dropWrongVni";
    case VxCtr::DropShortFrame: return "dropShortFrame";
    case VxCtr::DropBadSrcMac: return "dropBadSrcMac";
    case VxCtr::DropTooLongIn: return "dropTooLongIn";
    case VxCtr::DropNoDestination: return "dropNoDestination";
    case VxCtr::DropShortOut: return "dropShortOut";
    case VxCtr::DropSendFailed: return "dropSendFailed";
    case VxCtr::FdbLearned: return "fdbLearned";
    case VxCtr::FdbMoved: return "fdbMoved";
    case VxCtr::FdbAged: return "fdbAged";
    case VxCtr::FdbFull: return "fdbFull";
    case VxCtr::Floods: return "floods";
    case VxCtr::FloodCopies: return "floodCopies";
    case VxCtr::ShortcutHelloOut: return "shortcutHelloOut";
    case VxCtr::ShortcutHelloIn: return "shortcutHelloIn";
    case VxCtr::ShortcutHelloBad: return "shortcutHelloBad";
    case VxCtr::ShortcutHelloStranger: return "shortcutHelloStranger";
    case VxCtr::ShortcutHelloOtherHost: return "shortcutHelloOtherHost";
    case VxCtr::ShortcutConnects: return "shortcutConnects";
    case VxCtr::ShortcutConnectFailed: return "shortcutConnectFailed";
    case VxCtr::ShortcutPeerBad: return "shortcutPeerBad";
    case VxCtr::ShortcutPeerGone: return "shortcutPeerGone";
    case VxCtr::ShortcutProofs: return "shortcutProofs";
    case VxCtr::ShortcutProofBad: return "shortcutProofBad";
    case VxCtr::ShortcutChannels: return "shortcutChannels";
    case VxCtr::ShortcutMarkersOut: return "shortcutMarkersOut";
    case VxCtr::ShortcutMarkersIn: return "shortcutMarkersIn";
    case VxCtr::ShortcutMarkerBad: return "shortcutMarkerBad";
    case VxCtr::ShortcutRingBroken: return "shortcutRingBroken";
    case VxCtr::ShortcutLostOnHangup: return "shortcutLostOnHangup";
    case VxCtr::ShortcutLateVxlan: return "shortcutLateVxlan";
    case VxCtr::ShortcutTxBatches: return "shortcutTxBatches";
    case VxCtr::ShortcutRxBatches: return "shortcutRxBatches";
    case VxCtr::ShortcutTxDirect: return "shortcutTxDirect";
    case VxCtr::ShortcutRingFull: return "shortcutRingFull";
    case VxCtr::ShortcutKicks: return "shortcutKicks";
    case VxCtr::ShortcutSelfWakes: return "shortcutSelfWakes";
    case VxCtr::ShortcutFullTimeouts: return "shortcutFullTimeouts";
    case VxCtr::ShortcutFullTimeoutsRoom: return "shortcutFullTimeoutsRoom";
    case VxCtr::ShortcutPeerStalled: return "shortcutPeerStalled";
    case VxCtr::ShortcutBellStuck: return "shortcutBellStuck";
    case VxCtr::ShortcutLeftOnHangup: return "shortcutLeftOnHangup";
    case VxCtr::ShortcutHandshakeTimeout: return "shortcutHandshakeTimeout";
    case VxCtr::ShortcutUnclaimedEvicted: return "shortcutUnclaimedEvicted";
    case VxCtr::ShortcutDrainDropped: return "shortcutDrainDropped";
    case VxCtr::TxGsoSends: return "txGsoSends";
    case VxCtr::TxGsoDatagrams: return "txGsoDatagrams";
    case VxCtr::TxGsoUnavailable: return "txGsoUnavailable";
    case VxCtr::TxGsoRunsRefused: return "txGsoRunsRefused";
    case VxCtr::RxGroDatagrams: return "rxGroDatagrams";
    case VxCtr::RxGroSegments: return "rxGroSegments";
    case VxCtr::TxPushedBack: return "txPushedBack";
    case VxCtr::Count_: break;
  }
  return "unknown";
}

namespace {
constexpr uint32_t RX_BATCH = 64;  // datagrams per recvmmsg
constexpr uint32_t TX_BATCH = 64;  // frames taken from the rx ring per turn
constexpr uint32_t RING_BATCH = 1024;  // frames taken from a shortcut ring per turn
// slots per shortcut ring (2 MiB a direction with 2 KiB buffers); 4096
// showed no difference in alternated runs on the busy 2-CPU host
constexpr uint32_t SHORTCUT_SLOTS = 1024;
// the shortest Ethernet frame without FCS: what a shortcut slot's first line holds
constexpr uint32_t kSmallFrame = 60;
constexpr uint32_t MMSG = 64;      // datagrams per sendmmsg
constexpr size_t GSO_MIN = 2;            // a run this long leaves as one UDP GSO send
constexpr size_t GSO_MAX = 64;           // datagrams per GSO send (the kernel takes up to 128)
constexpr size_t GSO_MAX_BYTES = 60000;  // UDP payload of one GSO send (below 64 KiB with headers)
constexpr size_t GSO_SOCKETS = 64;       // per-flow source ports with a GSO socket
constexpr size_t GRO_SPILL = 65536;      // a coalesced datagram beyond its first slot (the kernel caps one at 64 KiB)
constexpr size_t ETH_HLEN = 14;

// A ring's free-running consumer index `pos` has not reached `mark` (a
// producer index it read earlier; both within a ring of each other).
bool ahead(uint32_t mark, uint32_t pos) { return static_cast<int32_t>(mark - pos) > 0; }

// A UDP GSO send's control message: `seg` bytes a datagram (the last may be
// shorter), in `cbuf`, which must outlive the sendmsg.
void set_udp_segment(msghdr &mh, char (&cbuf)[CMSG_SPACE(sizeof(uint16_t))], uint16_t seg) {
  std::memset(cbuf, 0, sizeof cbuf);
  mh.msg_control = cbuf;
  mh.msg_controllen = sizeof cbuf;
  cmsghdr *c = CMSG_FIRSTHDR(&mh);
  c->cmsg_level = IPPROTO_UDP;
  c->cmsg_type = UDP_SEGMENT;
  c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
  std::memcpy(CMSG_DATA(c), &seg, sizeof seg);
}

uint64_t mac_key(const uint8_t *m) {
  uint64_t k = 0;
  for (int i = 0; i < 6; i++) k = k << 8 | m[i];
  return k;
}

std::string mac_text(uint64_t k) {
  char s[18];
  std::snprintf(s, sizeof s, "%02x:%02x:%02x:%02x:%02x:%02x", unsigned(k >> 40 & 0xff), unsigned(k >> 32 & 0xff), unsigned(k >> 24 & 0xff),
                unsigned(k >> 16 & 0xff), unsigned(k >> 8 & 0xff), unsigned(k & 0xff));
  return s;
}

bool parse_mac(const std::string &t, uint8_t out[6]) {
  unsigned v[6];
  char tail;
  if (t.size() != 17 || std::sscanf(t.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6) return false;
  for (int i = 0; i < 6; i++) out[i] = static_cast<uint8_t>(v[i]);
  return true;
}

// An address of `family` (AF_UNSPEC: either) with `port`; IPv6 link-local
// addresses take `scope` (the dev's ifindex).
bool parse_addr(const std::string &t, int family, uint16_t port, uint32_t scope, sockaddr_storage &ss, socklen_t &len) {
  ss = {};
  if (family != AF_INET6) {
    auto *a = reinterpret_cast<sockaddr_in *>(&ss);
    if (::inet_pton(AF_INET, t.c_str(), &a->sin_addr) == 1) {
      a->sin_family = AF_INET;
      a->sin_port = htons(port);
      len = sizeof *a;
      return true;
    }
  }
  if (family != AF_INET) {
    auto *a = reinterpret_cast<sockaddr_in6 *>(&ss);
    if (::inet_pton(AF_INET6, t.c_str(), &a->sin6_addr) == 1) {
      a->sin6_family = AF_INET6;
      a->sin6_port = htons(port);
      if (IN6_IS_ADDR_LINKLOCAL(&a->sin6_addr) || IN6_IS_ADDR_MC_LINKLOCAL(&a->sin6_addr)) a->sin6_scope_id = scope;
      len = sizeof *a;
      return true;
    }
  }
  return false;
}

bool is_multicast(const sockaddr_storage &ss) {
  if (ss.ss_family == AF_INET) return IN_MULTICAST(ntohl(reinterpret_cast<const sockaddr_in &>(ss).sin_addr.s_addr));
  return IN6_IS_ADDR_MULTICAST(&reinterpret_cast<const sockaddr_in6 &>(ss).sin6_addr);
}

bool is_unspecified(const sockaddr_storage &ss) {
  if (ss.ss_family == AF_INET) return reinterpret_cast<const sockaddr_in &>(ss).sin_addr.s_addr == 0;
  return IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6 &>(ss).sin6_addr);
}

// The address bytes (and IPv6 scope) as a map key; SSO-sized, no allocation.
std::string addr_key(const sockaddr_storage &ss) {
  if (ss.ss_family == AF_INET) {
    const auto &a = reinterpret_cast<const sockaddr_in &>(ss);
    return std::string(reinterpret_cast<const char *>(&a.sin_addr), 4);
  }
  const auto &a = reinterpret_cast<const sockaddr_in6 &>(ss);
  std::string k(reinterpret_cast<const char *>(&a.sin6_addr), 16);
  if (a.sin6_scope_id) k.append(reinterpret_cast<const char *>(&a.sin6_scope_id), 4);
  return k;
}

std::string addr_text(const sockaddr_storage &ss) {
  char b[INET6_ADDRSTRLEN] = "?";
  if (ss.ss_family == AF_INET) ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in &>(ss).sin_addr, b, sizeof b);
  else ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6 &>(ss).sin6_addr, b, sizeof b);
  return b;
}

void set_port(sockaddr_storage &ss, uint16_t port) {
  if (ss.ss_family == AF_INET) reinterpret_cast<sockaddr_in &>(ss).sin_port = htons(port);
  else {
    auto &a = reinterpret_cast<sockaddr_in6 &>(ss);
    a.sin6_port = htons(port);
    a.sin6_flowinfo = 0;
  }
}

uint32_t mix(uint32_t h, uint32_t v) {
  h ^= v;
  h *= 0x01000193u;
  return h ^ (h >> 15);
}
uint32_t mix_bytes(uint32_t h, const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) h = mix(h, p[i]);
  return h;
}
// murmur3's finaliser: every input bit reaches every output bit
uint32_t fmix(uint32_t h) {
  h ^= h >> 16;
  h *= 0x85ebca6bu;
  h ^= h >> 13;
  h *= 0xc2b2ae35u;
  return h ^ (h >> 16);
}

// This boot's id (/proc/sys/kernel/random/boot_id: 32 hex digits with
// dashes), the same in every namespace and container under one kernel.
bool read_boot_id(std::array<uint8_t, SHORTCUT_ID_LEN> &out) {
  unique_fd f(::open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC));
  if (!f) return false;
  char text[64];
  const ssize_t n = ::read(f.get(), text, sizeof text);
  if (n <= 0) return false;
  size_t digits = 0;
  for (ssize_t i = 0; i < n && digits < 2 * SHORTCUT_ID_LEN; i++) {
    const char c = text[i];
    int v;
    if (c >= '0' && c <= '9') v = c - '0';
    else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
    else if (c == '-') continue;
    else return false;
    out[digits / 2] = static_cast<uint8_t>(digits % 2 ? out[digits / 2] | v : v << 4);
    digits++;
  }
  return digits == 2 * SHORTCUT_ID_LEN;
}

constexpr uint8_t SHORTCUT_MAC[6] = {0x03, 0x76, 0x61, 0x6c, 0x65, 0x73};  // multicast, locally administered: "\x03vales"
constexpr uint8_t SHORTCUT_MAGIC[4] = {'V', 'T', 'S', 'C'};

Status sockopt(int fd, int level, int name, int value, const char *what) {
  if (::setsockopt(fd, level, name, &value, sizeof value) < 0) return sys_fail("setsockopt", what);
  return Ok{};
}
}  // namespace

uint16_t VxlanDriver::src_port(const uint8_t *f, uint32_t len) const {
  // the inner flow: IP addresses, protocol and, for an unfragmented TCP/UDP/
  // SCTP packet, its ports; else the Ethernet addresses (what Linux falls
  // back to when it has no flow hash)
  uint32_t h = 0x811c9dc5u;
  size_t off = 12;
  uint16_t type = static_cast<uint16_t>(f[12] << 8 | f[13]);
  if ((type == 0x8100 || type == 0x88a8) && len >= 18) {
    type = static_cast<uint16_t>(f[16] << 8 | f[17]);
    off = 16;
  }
  const uint8_t *ip = f + off + 2;
  const size_t iplen = len - off - 2;
  bool hashed = false;
  if (type == 0x0800 && iplen >= 20 && (ip[0] >> 4) == 4) {
    const size_t ihl = size_t{ip[0] & 0x0fu} * 4;
    const uint8_t proto = ip[9];
    h = mix_bytes(h, ip + 12, 8);
    h = mix(h, proto);
    const bool frag = (ip[6] & 0x3f) != 0 || ip[7] != 0;
    if (!frag && ihl >= 20 && iplen >= ihl + 4 && (proto == 6 || proto == 17 || proto == 132)) h = mix_bytes(h, ip + ihl, 4);
    hashed = true;
  } else if (type == 0x86dd && iplen >= 40 && (ip[0] >> 4) == 6) {
    const uint8_t nh = ip[6];
    h = mix_bytes(h, ip + 8, 32);
    h = mix(h, nh);
    if (iplen >= 44 && (nh == 6 || nh == 17 || nh == 132)) h = mix_bytes(h, ip + 40, 4);
    hashed = true;
  }
  if (!hashed) h = mix_bytes(h, f, 12);
  h = fmix(h);
  const uint32_t range = uint32_t{o_.srcport_max} - o_.srcport_min;
  return static_cast<uint16_t>(((uint64_t{h} * range) >> 32) + o_.srcport_min);
}

Result<std::unique_ptr<VxlanDriver>> VxlanDriver::open(PortClient pc, const VxlanOptions &o, std::string label) {
  std::unique_ptr<VxlanDriver> d(new VxlanDriver(std::move(pc), std::move(label)));
  auto s = d->setup(o);
  if (!s) return std::move(s).take_error();
  return d;
}

VxlanDriver::~VxlanDriver() {
  stop();
  if (!listen_path_.empty()) {
    ::unlink((listen_path_ + ".sock").c_str());
    ::unlink((listen_path_ + ".lock").c_str());
  }
}

Status VxlanDriver::setup(const VxlanOptions &o) {
  o_ = o;
  const std::string fix = "see docs/vxlan.md for the settings";
  if (o.vni > 0xffffff) return check_fail(EINVAL, "VXLAN VNI " + std::to_string(o.vni) + " is out of range", "give vni=0..16777215");
  if (o.port == 0 || o.dstport == 0) return check_fail(EINVAL, "VXLAN UDP ports must be 1..65535");
  if (!o.srcport_fixed && (o.srcport_min == 0 || o.srcport_max <= o.srcport_min))
    return check_fail(EINVAL, "VXLAN source port range " + std::to_string(o.srcport_min) + "-" + std::to_string(o.srcport_max) + " is empty",
                      "give srcport=MIN-MAX with 0 < MIN < MAX (MAX excluded), or srcport=fixed");
  if (!o.group.empty() && !o.remotes.empty())
    return check_fail(EINVAL, "a VXLAN port floods to static remotes or to a multicast group, not both", "give remote=... or group=...");
  if (o.ageing_s == 0 || o.ageing_s > 1000000) return check_fail(EINVAL, "VXLAN ageing must be 1..1000000 s, not " + std::to_string(o.ageing_s));
  uint32_t ifindex = 0;
  if (!o.dev.empty()) {
    ifindex = ::if_nametoindex(o.dev.c_str());
    if (ifindex == 0) return check_fail(ENODEV, "no interface '" + o.dev + "' in vale-ts's network namespace", "give dev=IF of an interface vale-ts sees (ip link)");
  }
  ageing_ns_ = uint64_t{o.ageing_s} * 1000000000ull;
  vni_be_[0] = static_cast<uint8_t>(o.vni >> 16);
  vni_be_[1] = static_cast<uint8_t>(o.vni >> 8);
  vni_be_[2] = static_cast<uint8_t>(o.vni);

  // the family: the first address given decides, the others must agree
  sockaddr_storage local{};
  socklen_t local_len = 0;
  family_ = AF_UNSPEC;
  const uint16_t send_port = o.srcport_fixed ? o.dstport : 0;  // raw sockets take no port
  if (!o.local.empty()) {
    if (!parse_addr(o.local, AF_UNSPEC, o.port, ifindex, local, local_len) || is_multicast(local))
      return check_fail(EINVAL, "VXLAN local address '" + o.local + "' is not a unicast IPv4 or IPv6 address", "give local=ADDR of this host");
    family_ = local.ss_family;
  }
  if (!o.group.empty()) {
    if (!parse_addr(o.group, family_, send_port, ifindex, group_, group_len_) || !is_multicast(group_))
      return check_fail(EINVAL, "VXLAN group '" + o.group + "' is not a multicast address" + (family_ != AF_UNSPEC ? " of local's family" : ""),
                        "give group=239.x.x.x or ff0X::..., the same family as local=");
    family_ = group_.ss_family;
  }
  std::vector<sockaddr_storage> remotes;
  for (const std::string &r : o.remotes) {
    sockaddr_storage ss;
    socklen_t l;
    if (!parse_addr(r, family_, send_port, ifindex, ss, l) || is_multicast(ss) || is_unspecified(ss))
      return check_fail(EINVAL, "VXLAN remote '" + r + "' is not a unicast address" + (family_ != AF_UNSPEC ? " of the port's family" : ""),
                        "give remote=ADDR once per remote VTEP, all IPv4 or all IPv6 (a multicast address goes in group=)");
    family_ = ss.ss_family;
    remotes.push_back(ss);
  }
  std::vector<std::pair<uint64_t, sockaddr_storage>> statics;
  for (const auto &[m, a] : o.fdb) {
    uint8_t mac[6];
    if (!parse_mac(m, mac) || (mac[0] & 1) || mac_key(mac) == 0)
      return check_fail(EINVAL, "VXLAN fdb MAC '" + m + "' is not a unicast MAC address", "give fdb=02:00:00:00:00:01@ADDR");
    sockaddr_storage ss;
    socklen_t l;
    if (!parse_addr(a, family_, send_port, ifindex, ss, l) || is_multicast(ss) || is_unspecified(ss))
      return check_fail(EINVAL, "VXLAN fdb address '" + a + "' is not a unicast address of the port's family", "give fdb=MAC@ADDR");
    family_ = ss.ss_family;
    statics.emplace_back(mac_key(mac), ss);
  }
  if (family_ == AF_UNSPEC) return check_fail(EINVAL, "a VXLAN port needs somewhere to send", "give remote=ADDR, group=MCAST or fdb=MAC@ADDR (and local=ADDR)");
  if (statics.size() + remotes.size() > VXLAN_MAX_ENDPOINTS) return check_fail(EINVAL, "too many VXLAN remotes and fdb entries");

  // the receiving socket: local:port, or any:port for a group (multicast is
  // delivered to sockets bound to the wildcard or to the group)
  udp_.reset(::socket(family_, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!udp_) return sys_fail("socket", "VXLAN UDP socket");
  if (family_ == AF_INET6) {
    auto st = sockopt(udp_.get(), IPPROTO_IPV6, IPV6_V6ONLY, 1, "IPV6_V6ONLY");
    if (!st) return st;
  }
  sockaddr_storage bind_addr{};
  socklen_t bind_len;
  if (local_len && group_len_ == 0) {
    bind_addr = local;
    bind_len = local_len;
  } else if (family_ == AF_INET) {
    auto &a = reinterpret_cast<sockaddr_in &>(bind_addr);
    a.sin_family = AF_INET;
    a.sin_port = htons(o.port);
    bind_len = sizeof a;
  } else {
    auto &a = reinterpret_cast<sockaddr_in6 &>(bind_addr);
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(o.port);
    bind_len = sizeof a;
  }
  // a burst the driver thread has not yet drained waits here, not in a drop:
  // past net.core.rmem_max where allowed (CAP_NET_ADMIN), else as far as it goes
  int big = 4 << 20;
  // rcvbuf= sets it smaller (or larger): what the socket holds while the driver is behind
  int rcv = o.rcvbuf ? static_cast<int>(std::min<uint32_t>(o.rcvbuf, INT32_MAX / 2)) : big;
  if (::setsockopt(udp_.get(), SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv) < 0) ::setsockopt(udp_.get(), SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
  if (::setsockopt(udp_.get(), SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big) < 0) ::setsockopt(udp_.get(), SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  if (::bind(udp_.get(), reinterpret_cast<const sockaddr *>(&bind_addr), bind_len) < 0)
    return sys_fail("bind", "VXLAN UDP socket on " + addr_text(bind_addr) + " port " + std::to_string(o.port),
                    errno == EADDRINUSE ? "another VTEP (a Linux vxlan device, another vale-ts port) has this UDP port here: give local=ADDR:PORT with another port, or use another namespace"
                    : errno == EADDRNOTAVAIL ? "local= must be an address of an interface in vale-ts's network namespace"
                                             : "");
  if (group_len_) {
    if (family_ == AF_INET) {
      ip_mreqn m{};
      m.imr_multiaddr = reinterpret_cast<const sockaddr_in &>(group_).sin_addr;
      if (local_len) m.imr_address = reinterpret_cast<const sockaddr_in &>(local).sin_addr;
      m.imr_ifindex = static_cast<int>(ifindex);
      if (::setsockopt(udp_.get(), IPPROTO_IP, IP_ADD_MEMBERSHIP, &m, sizeof m) < 0)
        return sys_fail("setsockopt(IP_ADD_MEMBERSHIP)", "joining VXLAN group " + o.group, "give dev=IF, the interface of the underlay (no multicast route otherwise)");
    } else {
      ipv6_mreq m{};
      m.ipv6mr_multiaddr = reinterpret_cast<const sockaddr_in6 &>(group_).sin6_addr;
      m.ipv6mr_interface = ifindex;
      if (::setsockopt(udp_.get(), IPPROTO_IPV6, IPV6_JOIN_GROUP, &m, sizeof m) < 0)
        return sys_fail("setsockopt(IPV6_JOIN_GROUP)", "joining VXLAN group " + o.group, "give dev=IF, the interface of the underlay");
    }
  }

  // the sending socket
  int tx = udp_.get();
  if (!o.srcport_fixed) {
    raw_.reset(::socket(family_, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP));
    if (!raw_)
      return sys_fail("socket(SOCK_RAW)", "VXLAN sender",
                      errno == EPERM ? "per-flow UDP source ports need CAP_NET_RAW: run vale-ts as root, or give srcport=fixed (send from the bound port)" : "");
    // a raw UDP socket gets a copy of every UDP datagram: keep none
    sock_filter drop_all{BPF_RET | BPF_K, 0, 0, 0};
    sock_fprog prog{1, &drop_all};
    if (::setsockopt(raw_.get(), SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0) return sys_fail("setsockopt(SO_ATTACH_FILTER)", "VXLAN sender");
    if (::setsockopt(raw_.get(), SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big) < 0) ::setsockopt(raw_.get(), SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    if (local_len) {
      sockaddr_storage src = local;
      set_port(src, 0);
      if (::bind(raw_.get(), reinterpret_cast<const sockaddr *>(&src), local_len) < 0) return sys_fail("bind", "VXLAN sender on " + o.local);
    }
    if (family_ == AF_INET6) {
      // the kernel fills the UDP checksum (IPv6 forbids a zero one; Linux's vxlan rejects it)
      auto st = sockopt(raw_.get(), IPPROTO_IPV6, IPV6_CHECKSUM, 6, "IPV6_CHECKSUM");
      if (!st) return st;
    }
    tx = raw_.get();
  }
  // as Linux's vxlan: outer packets may be fragmented (DF clear)
  if (family_ == AF_INET) {
    auto st = sockopt(tx, IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT, "IP_MTU_DISCOVER");
    if (st) st = sockopt(tx, IPPROTO_IP, IP_TTL, o.ttl ? o.ttl : 64, "IP_TTL");
    if (st) st = sockopt(tx, IPPROTO_IP, IP_MULTICAST_TTL, o.ttl ? o.ttl : 1, "IP_MULTICAST_TTL");
    if (st) st = sockopt(tx, IPPROTO_IP, IP_MULTICAST_LOOP, 0, "IP_MULTICAST_LOOP");
    if (!st) return st;
    if (ifindex) {
      ip_mreqn m{};
      m.imr_ifindex = static_cast<int>(ifindex);
      if (::setsockopt(tx, IPPROTO_IP, IP_MULTICAST_IF, &m, sizeof m) < 0) return sys_fail("setsockopt(IP_MULTICAST_IF)", "VXLAN dev " + o.dev);
    }
  } else {
    auto st = sockopt(tx, IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_DONT, "IPV6_MTU_DISCOVER");
    if (st) st = sockopt(tx, IPPROTO_IPV6, IPV6_UNICAST_HOPS, o.ttl ? o.ttl : 64, "IPV6_UNICAST_HOPS");
    if (st) st = sockopt(tx, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, o.ttl ? o.ttl : 1, "IPV6_MULTICAST_HOPS");
    if (st) st = sockopt(tx, IPPROTO_IPV6, IPV6_MULTICAST_LOOP, 0, "IPV6_MULTICAST_LOOP");
    if (st && ifindex) st = sockopt(tx, IPPROTO_IPV6, IPV6_MULTICAST_IF, static_cast<int>(ifindex), "IPV6_MULTICAST_IF");
    if (!st) return st;
  }

  std::lock_guard<std::mutex> g(mu_);
  for (const sockaddr_storage &r : remotes) {
    auto e = endpoint_for(r, true);
    if (!e) return std::move(e).take_error();
    endpoints_[*e].flood = true;
    if (std::find(flood_.begin(), flood_.end(), *e) == flood_.end()) flood_.push_back(*e);
  }
  for (const auto &[k, a] : statics) {
    auto e = endpoint_for(a, true);
    if (!e) return std::move(e).take_error();
    auto [it, fresh] = fdb_.emplace(k, FdbEntry{*e, 0, true});
    if (!fresh) return check_fail(EINVAL, "VXLAN fdb MAC " + mac_text(k) + " is given twice");
    endpoints_[*e].macs++;
  }
  // the shortcut announces itself to static remotes only (anyone can make a
  // VTEP learn an endpoint); without a boot id or randomness it stays off
  if (o.shortcut && !flood_.empty()) {
    std::array<uint8_t, SHORTCUT_ID_LEN> inst{};
    if (read_boot_id(boot_id_) && ::getrandom(inst.data(), inst.size(), GRND_NONBLOCK) == static_cast<ssize_t>(inst.size())) {
      instance_ = inst;
      shortcut_ = true;
    }
  }
  if (shortcut_) {
    // the rendezvous: a socket named by the instance id in a directory only
    // this uid enters. A directory given by the user must pass; the default
    // one failing (not root, no /run/vale-ts) leaves discovery only.
    const bool given = !o.shortcut_dir.empty();
    shortcut_dir_ = given ? o.shortcut_dir : "/run/vale-ts/shortcut";
    if (!given) ::mkdir("/run/vale-ts", 0700);  // systemd's RuntimeDirectory makes it; EEXIST is fine
    auto st = shortcut_dir_check(shortcut_dir_, true);
    if (st) shortcut_sweep(shortcut_dir_);
    Result<ShortcutListener> l = st ? shortcut_listen(shortcut_dir_, instance_) : Result<ShortcutListener>(st.error());
    if (l) {
      listen_ = std::move(l->sock);
      listen_lock_ = std::move(l->lock);
      const std::string sock = shortcut_socket_path(shortcut_dir_, instance_).value();
      listen_path_ = sock.substr(0, sock.size() - 5);
    } else if (given) {
      return std::move(l).take_error();
    } else {
      log("co-resident shortcut: discovery only (" + l.error().what + ")");
    }
    if (family_ == AF_INET) std::memcpy(local_bytes_, &reinterpret_cast<const sockaddr_in &>(local).sin_addr, 4);
    else std::memcpy(local_bytes_, &reinterpret_cast<const sockaddr_in6 &>(local).sin6_addr, 16);
  }
  local_ = local;
  local_len_ = local_len;
  gso_ = o.gso;
  // runs sent with GSO (ours, another vale-ts's) arrive whole: one receive
  // for the run instead of one per datagram. Not set: each comes alone.
  int one = 1;
  if (o.gso && ::setsockopt(udp_.get(), IPPROTO_UDP, UDP_GRO, &one, sizeof one) == 0) {
    gro_ = true;
    gro_spill_.reset(new uint8_t[size_t{RX_BATCH} * GRO_SPILL]);  // not touched until used
  }
  const size_t bs = buf_size();
  // a batch of frames of one buffer each, or fewer when a multi-slot frame
  // (up to the switch's largest, 64 KiB) is among them: one always fits
  out_buf_.resize(std::max<size_t>(size_t{TX_BATCH} * bs, 65536));
  out_off_.resize(TX_BATCH);
  out_len_.resize(TX_BATCH);
  out_hdr_.resize(TX_BATCH);
  out_.reserve(size_t{TX_BATCH} * (flood_.size() + 1));
  return Ok{};
}

Result<uint32_t> VxlanDriver::endpoint_for(const sockaddr_storage &a, bool make_static) {
  sockaddr_storage ss = a;
  set_port(ss, o_.srcport_fixed ? o_.dstport : 0);
  const std::string key = addr_key(ss);
  for (uint32_t i = 0; i < endpoints_.size(); i++) {
    // the table is small and this is the learning path; the send path indexes
    const Endpoint &e = endpoints_[i];
    if (e.addr.ss_family == ss.ss_family && addr_key(e.addr) == key) {
      if (make_static) endpoints_[i].is_static = true;
      return i;
    }
  }
  Endpoint n;
  n.addr = ss;
  n.len = ss.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  n.text = addr_text(ss);
  n.is_static = make_static;
  if (endpoints_.size() < VXLAN_MAX_ENDPOINTS) {
    endpoints_.push_back(std::move(n));
    return static_cast<uint32_t>(endpoints_.size() - 1);
  }
  // full: reuse an endpoint nothing points at (never while datagrams to it wait)
  if (out_sent_ < out_.size()) return check_fail(ENOSPC, "VXLAN endpoint table full");
  for (uint32_t i = 0; i < endpoints_.size(); i++) {
    if (!endpoints_[i].is_static && endpoints_[i].macs == 0) {
      endpoints_[i] = std::move(n);
      return i;
    }
  }
  return check_fail(ENOSPC, "VXLAN endpoint table full");
}

int VxlanDriver::find_endpoint(const sockaddr_storage &a) const {
  sockaddr_storage ss = a;
  set_port(ss, o_.srcport_fixed ? o_.dstport : 0);
  const std::string key = addr_key(ss);
  for (uint32_t i = 0; i < endpoints_.size(); i++)
    if (endpoints_[i].addr.ss_family == ss.ss_family && addr_key(endpoints_[i].addr) == key) return static_cast<int>(i);
  return -1;
}

int VxlanDriver::idle_timeout_ms() {
  if (!shortcut_) return -1;
  if (sc_full_) return 1;  // a kick for room may come late (see ShortcutRing): look again soon
  const uint64_t since = mono_coarse_ns() - last_hello_ns_;
  return since >= SHORTCUT_HELLO_PERIOD_NS ? 0 : static_cast<int>((SHORTCUT_HELLO_PERIOD_NS - since) / 1000000) + 1;
}

void VxlanDriver::on_idle_timeout() {
  if (sc_full_) {
    vcount(VxCtr::ShortcutFullTimeouts);
    // the consumer freed room and did not kick (or its kick is still on the
    // way): the instrument for the room wakeup (docs/vxlan-shortcut.md)
    for (Peer &p : peers_)
      if (p.ring && p.marked && p.ring->room()) {
        vcount(VxCtr::ShortcutFullTimeoutsRoom);
        break;
      }
    sc_full_ = false;
    if (out_sent_ >= out_.size()) out_blocked_ = false;
  }
  maybe_hello(mono_coarse_ns());
}

void VxlanDriver::maybe_hello(uint64_t now) {
  if (!shortcut_ || now - last_hello_ns_ < SHORTCUT_HELLO_PERIOD_NS) return;
  last_hello_ns_ = now;
  uint8_t d[8 + VXLAN_HDR_LEN + SHORTCUT_HELLO_LEN];
  const size_t total = build_control(SHORTCUT_HELLO, boot_id_.data(), instance_.data(), d);
  std::vector<std::pair<sockaddr_storage, socklen_t>> to;
  {
    std::lock_guard<std::mutex> g(mu_);
    for (uint32_t e : flood_) to.emplace_back(endpoints_[e].addr, endpoints_[e].len);
    expire_handshakes(now);
    // MARKERs the peer may have missed: it has not read the ring yet
    for (Peer &p : peers_)
      if (p.marked && p.ring && p.ring->produced() && endpoints_[static_cast<size_t>(p.ep)].sc_tx == 1) send_markers(p);
  }
  // a lost HELLO (a full socket buffer, no route yet) is sent again next period
  const int fd = raw_ ? raw_.get() : udp_.get();
  for (const auto &[a, len] : to)
    if (::sendto(fd, d, total, MSG_DONTWAIT, reinterpret_cast<const sockaddr *>(&a), len) == static_cast<ssize_t>(total)) vcount(VxCtr::ShortcutHelloOut);
}

// Sent as the port sends frames: from the raw socket with its own UDP header
// (the source port of its inner "flow", in the configured range), or from the
// bound port with srcport=fixed.
size_t VxlanDriver::build_control(uint8_t type, const uint8_t *a16, const uint8_t *b16, uint8_t *d) const {
  const size_t uhl = raw_ ? 8 : 0;
  const size_t total = uhl + VXLAN_HDR_LEN + SHORTCUT_HELLO_LEN;
  std::memset(d, 0, total);
  uint8_t *f = d + uhl + VXLAN_HDR_LEN;
  std::memcpy(f, SHORTCUT_MAC, 6);
  std::memcpy(f + 6, SHORTCUT_MAC, 6);
  f[12] = SHORTCUT_ETHERTYPE >> 8;
  f[13] = SHORTCUT_ETHERTYPE & 0xff;
  std::memcpy(f + 14, SHORTCUT_MAGIC, 4);
  f[18] = SHORTCUT_VERSION;
  f[19] = type;
  std::memcpy(f + 22, a16, SHORTCUT_ID_LEN);
  std::memcpy(f + 22 + SHORTCUT_ID_LEN, b16, SHORTCUT_ID_LEN);
  uint8_t *v = d + uhl;
  v[0] = VXLAN_FLAG_I | VXLAN_FLAG_SHORTCUT;
  std::memcpy(v + 4, vni_be_, 3);
  if (raw_) {
    const uint16_t sp = src_port(f, SHORTCUT_HELLO_LEN), ulen = static_cast<uint16_t>(total);
    d[0] = static_cast<uint8_t>(sp >> 8);
    d[1] = static_cast<uint8_t>(sp);
    d[2] = static_cast<uint8_t>(o_.dstport >> 8);
    d[3] = static_cast<uint8_t>(o_.dstport);
    d[4] = static_cast<uint8_t>(ulen >> 8);
    d[5] = static_cast<uint8_t>(ulen);  // checksum 0 (IPv4) or filled by the kernel (IPv6), as for frames
  }
  return total;
}

void VxlanDriver::send_control(uint8_t type, uint32_t ep, const uint8_t *nonce) {
  uint8_t d[8 + VXLAN_HDR_LEN + SHORTCUT_HELLO_LEN];
  const size_t total = build_control(type, instance_.data(), nonce, d);
  const Endpoint &e = endpoints_[ep];
  ::sendto(raw_ ? raw_.get() : udp_.get(), d, total, MSG_DONTWAIT, reinterpret_cast<const sockaddr *>(&e.addr), e.len);
}

void VxlanDriver::start_rendezvous(uint32_t ep) {
  for (const Peer &p : peers_)
    if (p.ep == static_cast<int>(ep)) return;
  if (static_cast<uint64_t>(mono_coarse_ns()) < endpoints_[ep].sc_quiet_until_ns) return;  // its last peer stalled
  auto c = shortcut_connect(shortcut_dir_, endpoints_[ep].peer_instance);
  if (!c) {
    vcount(VxCtr::ShortcutConnectFailed);  // its next HELLO tries again
    return;
  }
  Peer p;
  p.conn = std::move(c).value();
  p.ep = static_cast<int>(ep);
  p.since_ns = mono_coarse_ns();
  if (!shortcut_peer_check(p.conn.get()) || ::getrandom(p.my_nonce.data(), p.my_nonce.size(), GRND_NONBLOCK) != static_cast<ssize_t>(p.my_nonce.size()) ||
      !send_claim(p)) {
    vcount(VxCtr::ShortcutPeerBad);
    return;
  }
  vcount(VxCtr::ShortcutConnects);
  endpoints_[ep].peer_state = 1;
  peers_.push_back(std::move(p));
}

bool VxlanDriver::send_claim(Peer &p) {
  ShortcutClaim c;
  c.instance = instance_;
  c.vni = o_.vni;
  c.family = family_ == AF_INET ? 4 : 6;
  std::memcpy(c.mine.data(), local_bytes_, 16);
  const Endpoint &e = endpoints_[static_cast<size_t>(p.ep)];
  if (family_ == AF_INET) std::memcpy(c.yours.data(), &reinterpret_cast<const sockaddr_in &>(e.addr).sin_addr, 4);
  else std::memcpy(c.yours.data(), &reinterpret_cast<const sockaddr_in6 &>(e.addr).sin6_addr, 16);
  c.nonce = p.my_nonce;
  c.buf_size = buf_size();
  if (!shortcut_send_claim(p.conn.get(), c, {})) return false;
  p.claim_sent = true;
  return true;
}

bool VxlanDriver::handle_claim(Peer &p, const ShortcutClaim &c) {
  // every field is checked against what we know from our own settings and
  // from the peer's HELLOs: the same VNI, our address, one of our static
  // remotes, the instance id that remote announced from the same host
  const size_t alen = family_ == AF_INET ? 4 : 16;
  if (p.claim_got || c.vni != o_.vni || c.family != (family_ == AF_INET ? 4 : 6) || std::memcmp(c.yours.data(), local_bytes_, alen) != 0) return false;
  sockaddr_storage from{};
  from.ss_family = static_cast<sa_family_t>(family_);
  if (family_ == AF_INET) std::memcpy(&reinterpret_cast<sockaddr_in &>(from).sin_addr, c.mine.data(), 4);
  else std::memcpy(&reinterpret_cast<sockaddr_in6 &>(from).sin6_addr, c.mine.data(), 16);
  const int ep = find_endpoint(from);
  if (ep < 0 || (p.ep >= 0 && p.ep != ep)) return false;
  const Endpoint &e = endpoints_[static_cast<size_t>(ep)];
  if (!e.flood || static_cast<uint64_t>(mono_coarse_ns()) < e.sc_quiet_until_ns) return false;
  if (!e.same_host || e.peer_instance != c.instance) {
    // its HELLO (UDP) may simply not have been read yet: wait for it, once
    if (p.pending_claim) return false;
    p.pending_claim = c;
    return true;
  }
  for (const Peer &q : peers_)
    if (&q != &p && q.ep == ep) return false;  // one rendezvous per remote
  p.ep = ep;
  p.their_nonce = c.nonce;
  p.their_buf = c.buf_size;
  p.claim_got = true;
  if (!p.claim_sent) {
    if (::getrandom(p.my_nonce.data(), p.my_nonce.size(), GRND_NONBLOCK) != static_cast<ssize_t>(p.my_nonce.size()) || !send_claim(p)) return false;
  }
  // the peer's nonce back over VXLAN: proves we are the VTEP at our address
  send_control(SHORTCUT_PROOF, static_cast<uint32_t>(ep), p.their_nonce.data());
  endpoints_[static_cast<size_t>(ep)].peer_state = 1;
  return !p.proven || on_proven(p);
}

bool VxlanDriver::on_proven(Peer &p) {
  endpoints_[static_cast<size_t>(p.ep)].peer_state = 2;
  if (!p.acceptor) return !p.channel_fd || attach_channel(p);  // the channel comes from the acceptor
  // slots as large as the larger of the two ports' buffers: every frame of
  // either fits
  auto r = ShortcutRing::create(SHORTCUT_SLOTS, std::max<uint32_t>(buf_size(), p.their_buf));
  if (!r) return false;
  // the wakeups: bell 0 wakes the consumer of ring 0 (the peer), bell 1 us
  unique_fd b0(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)), b1(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!b0 || !b1 || !shortcut_send_channel(p.conn.get(), r->slots(), r->slot_size(), r->fd(), b0.get(), b1.get())) return false;
  p.their_bell = std::move(b0);
  p.my_bell = std::move(b1);
  p.ring.emplace(std::move(r).value());
  vcount(VxCtr::ShortcutChannels);
  endpoints_[static_cast<size_t>(p.ep)].peer_state = 3;
  return true;
}

bool VxlanDriver::handle_channel(Peer &p, const ShortcutMsg &m, std::vector<unique_fd> &fds) {
  // only to a connector, once, after both CLAIMs, with one fd
  if (m.type != SHORTCUT_CHANNEL || p.acceptor || p.ring || p.channel_fd || !p.claim_got || fds.size() != 3) return false;
  if (!shortcut_check_eventfd(fds[1].get()) || !shortcut_check_eventfd(fds[2].get())) return false;
  p.channel_fd = std::move(fds[0]);
  p.my_bell = std::move(fds[1]);
  p.their_bell = std::move(fds[2]);
  p.channel_slots = m.slots;
  p.channel_slot_size = m.slot_size;
  return !p.proven || attach_channel(p);
}

bool VxlanDriver::attach_channel(Peer &p) {
  // the memfd's own header must agree with the message, and hold our frames
  auto r = ShortcutRing::attach(std::move(p.channel_fd));
  if (!r || r->slots() != p.channel_slots || r->slot_size() != p.channel_slot_size || r->slot_size() < buf_size()) return false;
  p.ring.emplace(std::move(r).value());
  vcount(VxCtr::ShortcutChannels);
  endpoints_[static_cast<size_t>(p.ep)].peer_state = 3;
  return true;
}

// A peer that kept its ring full or broke a bell: hung up on like a peer
// that went (it drains the ring when it runs again, before anything we send
// it over VXLAN from now on), and not paired with again for a while.
void VxlanDriver::hang_up_hostile(size_t i, VxCtr why) {
  const Peer &p = peers_[i];
  if (p.ep >= 0) endpoints_[static_cast<size_t>(p.ep)].sc_quiet_until_ns = mono_coarse_ns() + SHORTCUT_STALL_QUIET_NS;
  drop_peer(i, why);
  sc_full_ = false;  // a frame waiting for its ring goes over VXLAN: no wait for room
  if (out_sent_ >= out_.size()) out_blocked_ = false;
}

void VxlanDriver::drop_peer(size_t i, VxCtr why) {
  Peer &p = peers_[i];
  if (p.ep >= 0) {
    Endpoint &e = endpoints_[static_cast<size_t>(p.ep)];
    e.peer_state = 0;
    e.sc_rx_open = false;
    if (e.sc_tx) {
      e.sc_tx = 0;  // the next frame to it goes over VXLAN again
      e.sc_downs++;
    }
  }
  if (p.ring) {
    // what the peer has published by now: read, and nothing after it
    const uint32_t end = p.ring->published_in();
    if (p.ring->broken()) {
      why = VxCtr::ShortcutRingBroken;  // nothing in it can be trusted: not read further
    } else {
      // what we put in and the peer never read goes with it; what it put in
      // is read before any later datagram from its endpoint
      vcount(VxCtr::ShortcutLostOnHangup, p.ring->unconsumed());
      if (p.ep >= 0) {
        // a peer that keeps pairing and hanging up while the switch has no
        // room would pile up rings: the oldest of its endpoint goes first
        size_t mine = 0, oldest = draining_.size();
        for (size_t k = 0; k < draining_.size(); k++)
          if (draining_[k].ep == static_cast<uint32_t>(p.ep) && mine++ == 0) oldest = k;
        if (mine >= SHORTCUT_MAX_DRAINING) retire_draining(oldest);
        draining_.push_back({static_cast<uint32_t>(p.ep), std::move(*p.ring), end, p.late});
      }
    }
  }
  vcount(why);
  peers_.erase(peers_.begin() + static_cast<std::ptrdiff_t>(i));
  link_fds_changed();  // its socket and bell closed (the bell's file lives on in the peer)
}

// A gone peer's ring let go, read to `end` or evicted before (the one
// place either happens): each frame the peer published in it was delivered
// or is counted here, once. Unread up to `end`: shortcutDrainDropped; after
// `end` (published after the hang-up, never read): shortcutLeftOnHangup. A
// broken ring's indices mean nothing: the ring is counted, not its frames.
void VxlanDriver::retire_draining(size_t k) {
  Draining &d = draining_[k];
  const uint32_t t = d.ring.published_in();  // checked: never behind `end`, at most a ring ahead of what was read
  if (d.ring.broken()) {
    vcount(VxCtr::ShortcutRingBroken);
  } else {
    if (ahead(d.end, d.ring.consumed())) vcount(VxCtr::ShortcutDrainDropped, d.end - d.ring.consumed());
    if (t != d.end) vcount(VxCtr::ShortcutLeftOnHangup, t - d.end);
  }
  draining_.erase(draining_.begin() + static_cast<std::ptrdiff_t>(k));  // unmapped: the peer's memory is let go
}

void VxlanDriver::service_peers() {
  if (!listen_) return;
  std::lock_guard<std::mutex> g(mu_);
  for (;;) {
    unique_fd c(::accept4(listen_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!c) break;
    if (!shortcut_peer_check(c.get()) || peers_.size() >= VXLAN_MAX_ENDPOINTS) {
      vcount(VxCtr::ShortcutPeerBad);
      continue;
    }
    vcount(VxCtr::ShortcutConnects);
    Peer p;
    p.conn = std::move(c);
    p.acceptor = true;
    p.since_ns = mono_coarse_ns();
    peers_.push_back(std::move(p));
    // A real peer sends its CLAIM as soon as it has connected: read it now.
    // Connections with none to show are capped, the oldest closed first: a
    // fresh one (the real peer's, its CLAIM perhaps not written yet) is not
    // turned away by connections that never claim, however many are held.
    const size_t i = peers_.size() - 1;
    if (!service_peer(i) || peers_[i].claim_got) continue;
    size_t unclaimed = 0, oldest = 0;
    for (size_t k = peers_.size(); k-- > 0;)
      if (peers_[k].acceptor && !peers_[k].claim_got) {
        unclaimed++;
        oldest = k;
      }
    if (unclaimed > SHORTCUT_MAX_UNCLAIMED) drop_peer(oldest, VxCtr::ShortcutUnclaimedEvicted);
  }
  for (size_t i = 0; i < peers_.size();)
    if (service_peer(i)) i++;
}

bool VxlanDriver::service_peer(size_t i) {
  for (;;) {
    std::vector<unique_fd> fds;
    auto m = shortcut_recv_msg(peers_[i].conn.get(), fds);
    if (!m) {
      const int err = m.error().err;
      if (err == EAGAIN || err == EWOULDBLOCK) return true;
      drop_peer(i, err == ECONNRESET ? VxCtr::ShortcutPeerGone : VxCtr::ShortcutPeerBad);
      return false;
    }
    const bool ok = m->type == SHORTCUT_CLAIM ? fds.empty() && handle_claim(peers_[i], m->claim) : handle_channel(peers_[i], *m, fds);
    if (!ok) {
      drop_peer(i, VxCtr::ShortcutPeerBad);
      return false;
    }
    // more may wait on this connection: look again
  }
}

// Checked once a HELLO period: the bound is that coarse. A connection
// closed here is one its endpoint's next HELLO may start afresh: a PROOF
// lost on the underlay (sent once) costs a bound, not the shortcut for good.
void VxlanDriver::expire_handshakes(uint64_t now) {
  const uint64_t bound = uint64_t{o_.shortcut_handshake_ms} * 1000000;
  for (size_t i = 0; i < peers_.size();)
    // done is when the ring is mapped: a connector has CLAIM and PROOF before
    // the CHANNEL comes, and a peer that never sends it holds the rendezvous too
    if (!peers_[i].ring && now >= peers_[i].since_ns && now - peers_[i].since_ns >= bound) drop_peer(i, VxCtr::ShortcutHandshakeTimeout);
    else i++;
}

void VxlanDriver::on_control(const uint8_t *f, size_t len, const sockaddr_storage &src) {
  // the whole datagram is the sender's word: length, magic, version and type
  // are checked before anything is read from it
  if (len < SHORTCUT_HELLO_LEN || f[12] != (SHORTCUT_ETHERTYPE >> 8) || f[13] != (SHORTCUT_ETHERTYPE & 0xff) ||
      std::memcmp(f + 14, SHORTCUT_MAGIC, 4) != 0 || f[18] != SHORTCUT_VERSION || (f[19] != SHORTCUT_HELLO && f[19] != SHORTCUT_PROOF && f[19] != SHORTCUT_MARKER) ||
      src.ss_family != family_) {
    vcount(VxCtr::ShortcutHelloBad);
    return;
  }
  const int ep = find_endpoint(src);
  if (ep < 0 || !endpoints_[static_cast<size_t>(ep)].flood) {
    vcount(VxCtr::ShortcutHelloStranger);
    return;
  }
  if (f[19] == SHORTCUT_MARKER) {
    // the peer's word, like all of it: its instance, the epoch of the
    // connection we hold with it, 1..64 copies, an index below that number
    const uint8_t *b = f + 22 + SHORTCUT_ID_LEN;
    const uint32_t n = uint32_t{b[8]} << 8 | b[9], idx = uint32_t{b[10]} << 8 | b[11];
    const Endpoint &e = endpoints_[static_cast<size_t>(ep)];
    for (Peer &p : peers_) {
      if (p.ep != ep || !p.claim_got || std::memcmp(f + 22, e.peer_instance.data(), SHORTCUT_ID_LEN) != 0 ||
          std::memcmp(b, p.their_nonce.data(), 8) != 0)
        continue;
      if (n == 0 || n > SHORTCUT_MAX_MARKERS || idx >= n || (p.marker_n && p.marker_n != n)) break;
      p.marker_n = n;
      p.marker_seen |= uint64_t{1} << idx;
      vcount(VxCtr::ShortcutMarkersIn);
      // every copy came, each behind the last datagram from its source port:
      // no ring frame can overtake a datagram sent before it
      if (static_cast<uint32_t>(__builtin_popcountll(p.marker_seen)) == n) endpoints_[static_cast<size_t>(ep)].sc_rx_open = true;
      return;
    }
    vcount(VxCtr::ShortcutMarkerBad);
    return;
  }
  if (f[19] == SHORTCUT_PROOF) {
    // our nonce, which only the process at the other end of our rendezvous
    // connection has seen, coming back from the endpoint that connection
    // claims to be
    for (Peer &p : peers_) {
      if (p.ep != ep || p.proven || std::memcmp(f + 22 + SHORTCUT_ID_LEN, p.my_nonce.data(), SHORTCUT_ID_LEN) != 0) continue;
      p.proven = true;
      vcount(VxCtr::ShortcutProofs);
      if (p.claim_got && !on_proven(p)) {
        for (size_t i = 0; i < peers_.size(); i++)
          if (&peers_[i] == &p) {
            drop_peer(i, VxCtr::ShortcutPeerBad);
            break;
          }
      }
      return;
    }
    vcount(VxCtr::ShortcutProofBad);
    return;
  }
  vcount(VxCtr::ShortcutHelloIn);
  Endpoint &e = endpoints_[static_cast<size_t>(ep)];
  // a boot id is no proof (any local process reads it, the underlay sees it):
  // a match only marks the remote as a candidate for the rendezvous
  if (std::memcmp(f + 22, boot_id_.data(), SHORTCUT_ID_LEN) != 0) {
    vcount(VxCtr::ShortcutHelloOtherHost);
    e.same_host = false;
    return;
  }
  const uint8_t *inst = f + 22 + SHORTCUT_ID_LEN;
  // our own HELLO come back (a remote= naming this VTEP) is no peer
  e.same_host = shortcut_ && std::memcmp(inst, instance_.data(), SHORTCUT_ID_LEN) != 0;
  std::memcpy(e.peer_instance.data(), inst, SHORTCUT_ID_LEN);
  // one side connects: the one with the smaller instance id
  if (e.same_host && listen_ && std::memcmp(instance_.data(), inst, SHORTCUT_ID_LEN) < 0) start_rendezvous(static_cast<uint32_t>(ep));
  // a CLAIM from this remote that came before this HELLO
  for (size_t i = 0; i < peers_.size(); i++) {
    Peer &p = peers_[i];
    if (!p.pending_claim || !e.same_host || p.pending_claim->instance != e.peer_instance) continue;
    const ShortcutClaim c = *p.pending_claim;
    p.pending_claim.reset();
    if (!handle_claim(p, c) || p.pending_claim) drop_peer(i, VxCtr::ShortcutPeerBad);
    break;
  }
}

void VxlanDriver::learn(const uint8_t *mac, uint32_t ep, uint64_t now) {
  const uint64_t k = mac_key(mac);
  auto it = fdb_.find(k);
  if (it != fdb_.end()) {
    FdbEntry &e = it->second;
    if (e.is_static) return;
    if (e.ep != ep) {
      endpoints_[e.ep].macs--;
      endpoints_[ep].macs++;
      e.ep = ep;
      vcount(VxCtr::FdbMoved);
    }
    e.seen_ns = now;
    return;
  }
  if (fdb_.size() >= VXLAN_MAX_FDB) {
    vcount(VxCtr::FdbFull);
    return;
  }
  fdb_.emplace(k, FdbEntry{ep, now, false});
  endpoints_[ep].macs++;
  vcount(VxCtr::FdbLearned);
}

int VxlanDriver::lookup(const uint8_t *mac, uint64_t now) {
  auto it = fdb_.find(mac_key(mac));
  if (it == fdb_.end()) return -1;
  FdbEntry &e = it->second;
  if (!e.is_static && now - e.seen_ns > ageing_ns_) {
    endpoints_[e.ep].macs--;
    fdb_.erase(it);
    vcount(VxCtr::FdbAged);
    return -1;
  }
  return static_cast<int>(e.ep);
}

void VxlanDriver::link_wants(std::vector<Want> &w, bool room_in, bool pending_out) {
  if (room_in) {
    w.push_back({udp_.get(), POLLIN});
    ring_frames_unpolled_ = 0;  // the poll tells
  }
  // blocked by the socket, not (only) by a full ring: by the socket that said
  // EAGAIN. A GSO socket's send buffer fills on its own; the sender's, empty,
  // would end every wait at once (a slow underlay spun this thread at 100%)
  if (pending_out && out_sent_ < out_.size()) w.push_back({out_poll_fd(), POLLOUT});
  if (listen_) w.push_back({listen_.get(), POLLIN});
  // Before the sleep: ask the peer for a kick (ShortcutRing's wait words)
  // when we wait for frames from its ring (room in the switch's ring) or
  // for room in ours (a frame waits for it), then look once more: what came
  // meanwhile wakes us at once (our own bell, read like the peer's kick).
  Peer *ready = nullptr;  // whose bell to ring ourselves: no sleep
  for (Peer &p : peers_) {
    w.push_back({p.conn.get(), POLLIN});
    if (!p.my_bell || !p.ring) continue;
    bool want = false, now_ready = false;
    if (room_in && p.ep >= 0 && endpoints_[static_cast<size_t>(p.ep)].sc_rx_open) {
      want = sc_armed_ = true;
      if (p.ring->arm_data()) now_ready = true;
    }
    if (sc_full_ && p.marked) {
      want = true;
      if (p.ring->room()) {
        now_ready = true;
      } else {
        sc_armed_ = true;
        if (p.ring->arm_room()) now_ready = true;
      }
    }
    if (want) w.push_back({p.my_bell.get(), POLLIN});
    if (now_ready && !ready) ready = &p;
  }
  if (ready) {
    // our bell, but the peer holds its file too (shared_bell.h)
    if (!ring_bell(ready->my_bell.get())) ready->bell_stuck = true;
    vcount(VxCtr::ShortcutSelfWakes);
  }
}

void VxlanDriver::disarm_rings() {
  if (!sc_armed_) return;
  sc_armed_ = false;
  for (Peer &p : peers_)
    if (p.ring) {
      p.ring->disarm_data();
      p.ring->disarm_room();
    }
}

void VxlanDriver::link_event(int fd, uint32_t events) {
  if (fd == udp_.get() && (events & (POLLIN | POLLERR))) readable_ = true;
  const int out_fd = out_poll_fd();
  // (POLLNVAL too: a socket closed under the wait must not end every poll at once)
  if (fd == out_fd && (events & (POLLOUT | POLLERR | POLLNVAL))) {
    out_blocked_ = false;
    out_wait_fd_ = -1;
  }
  if (fd == udp_.get() || fd == raw_.get()) return;
  for (const GsoSock &g : gso_socks_)
    if (g.fd.get() == fd) return;  // (POLLOUT: above)
  for (const Peer &p : peers_) {
    if (p.my_bell.get() != fd) continue;
    drain_bell(fd);  // never waits, whatever the peer did to the file's flags
    if (sc_full_) {  // room in a ring, perhaps: link_out tries again
      sc_full_ = false;
      if (out_sent_ >= out_.size()) out_blocked_ = false;
    }
    return;
  }
  service_peers();  // the listener or a rendezvous connection
}

void VxlanDriver::kick(Peer &p) {
  if (p.bell_stuck) return;
  if (ring_bell(p.their_bell.get()))
    vcount(VxCtr::ShortcutKicks);
  else
    p.bell_stuck = true;  // hung up on where the peer is next looked at
}

VxlanDriver::Peer *VxlanDriver::ring_peer(uint32_t ep) {
  for (Peer &p : peers_)
    if (p.ep == static_cast<int>(ep) && p.ring && p.marked) return &p;
  return nullptr;
}

bool VxlanDriver::ring_waiting(uint32_t ep) {
  if (ep >= endpoints_.size()) return false;
  const uint8_t *f;
  uint32_t l;
  for (Draining &d : draining_)
    if (d.ep == ep && ahead(d.end, d.ring.consumed()) && d.ring.peek(f, l)) return true;
  if (!endpoints_[ep].sc_rx_open) return false;
  for (Peer &p : peers_)
    if (p.ep == static_cast<int>(ep) && p.ring && p.ring->peek(f, l)) return true;
  return false;
}

void VxlanDriver::note_sport(Endpoint &e, uint16_t sp, uint64_t now) {
  if (e.nsports && e.sports[e.last_sport] == sp) {
    e.sports_ns[e.last_sport] = now;
    return;
  }
  uint32_t oldest = 0;
  for (uint32_t i = 0; i < e.nsports; i++) {
    if (e.sports[i] == sp) {
      e.sports_ns[i] = now;
      e.last_sport = i;
      return;
    }
    if (e.sports_ns[i] < e.sports_ns[oldest]) oldest = i;
  }
  // more flows than copies: the oldest port's datagrams are the likeliest gone
  const uint32_t i = e.nsports < SHORTCUT_MAX_MARKERS ? e.nsports++ : oldest;
  e.sports[i] = sp;
  e.sports_ns[i] = now;
  e.last_sport = i;
}

void VxlanDriver::send_markers(Peer &p) {
  // one copy from each outer source port used to the endpoint lately, so
  // each follows that port's last datagram through the same queues; the set
  // is kept: a resend is the same copies again
  Endpoint &e = endpoints_[static_cast<size_t>(p.ep)];
  if (!p.marked) {
    const uint64_t now = mono_coarse_ns();
    p.marker_ports.clear();
    if (raw_)
      for (uint32_t i = 0; i < e.nsports; i++)
        if (now - e.sports_ns[i] < SHORTCUT_SPORT_WINDOW_NS) p.marker_ports.push_back(e.sports[i]);
    if (p.marker_ports.empty()) p.marker_ports.push_back(0);  // the bound port, or the control frame's own
  }
  const uint32_t n = static_cast<uint32_t>(p.marker_ports.size());
  const int fd = raw_ ? raw_.get() : udp_.get();
  for (uint32_t i = 0; i < n; i++) {
    uint8_t b16[SHORTCUT_ID_LEN] = {};
    std::memcpy(b16, p.my_nonce.data(), 8);
    b16[8] = static_cast<uint8_t>(n >> 8);
    b16[9] = static_cast<uint8_t>(n);
    b16[10] = static_cast<uint8_t>(i >> 8);
    b16[11] = static_cast<uint8_t>(i);
    uint8_t d[8 + VXLAN_HDR_LEN + SHORTCUT_HELLO_LEN];
    const size_t total = build_control(SHORTCUT_MARKER, instance_.data(), b16, d);
    if (raw_ && p.marker_ports[i]) {
      d[0] = static_cast<uint8_t>(p.marker_ports[i] >> 8);
      d[1] = static_cast<uint8_t>(p.marker_ports[i]);
    }
    // a lost copy (a full socket buffer) is sent again with the next HELLO
    if (::sendto(fd, d, total, MSG_DONTWAIT, reinterpret_cast<const sockaddr *>(&e.addr), e.len) == static_cast<ssize_t>(total))
      vcount(VxCtr::ShortcutMarkersOut);
  }
}

bool VxlanDriver::deliver_ring_frame(uint32_t ep, const uint8_t *f, uint32_t len, uint64_t now) {
  if (len < ETH_HLEN) {
    vcount(VxCtr::DropShortFrame);
    return true;
  }
  if (len > slot_fill()) {
    vcount(VxCtr::DropTooLongIn);
    return true;
  }
  // the switch's free tx slots, counted down within one drain_rings call
  // (tx_room() syncs and checks the slot: once per run of free slots, not per frame)
  if (ring_tx_room_ == 0 && (ring_tx_room_ = tx_room()) == 0) return false;
  // copied before it is looked at: the peer may rewrite the slot meanwhile
  uint8_t *t = tx_buf();
  if (!t) {
    ring_tx_room_ = 0;
    return false;
  }
  // A minimum frame is copied as 60 bytes whatever its length: one fixed
  // copy the compiler lays out, not a call. Both sides have them: a slot's
  // frame bytes run to its line's end at least (stride_for), a buffer is
  // MIN_BUF_SIZE (64) or more; the bytes past len are not the frame's.
  static_assert(ShortcutRing::SLOT_HDR + kSmallFrame <= 64 && kSmallFrame <= MIN_BUF_SIZE);
  if (len <= kSmallFrame) std::memcpy(t, f, kSmallFrame);
  else std::memcpy(t, f, len);
  const uint64_t k = mac_key(t + 6);
  if ((t[6] & 1) || k == 0) {
    vcount(VxCtr::DropBadSrcMac);
    return true;
  }
  // a run of frames from one MAC (the usual case) is learned once per
  // drain_rings call: nothing else touches the FDB meanwhile
  if (k != learned_key_ || ep != learned_ep_) {
    learn(t + 6, ep, now);
    learned_key_ = k;
    learned_ep_ = ep;
  }
  endpoints_[ep].sc_rx_frames++;
  tx_push(len);
  ring_tx_room_--;
  return true;
}

uint32_t VxlanDriver::drain_rings(uint64_t now) {
  uint32_t moved = 0;
  learned_key_ = 0;  // see deliver_ring_frame
  ring_tx_room_ = 0;  // others push between calls: counted afresh
  const uint8_t *f;
  uint32_t l;
  // rings whose peer went first: nothing new comes into them
  for (size_t i = 0; i < draining_.size();) {
    Draining &d = draining_[i];
    ShortcutRing &r = d.ring;
    bool room = true;
    // a batch per turn, as from a live ring: frames dropped here take no
    // switch room, and the switch's lock is not kept for the whole ring;
    // read up to `end` only, whatever is still written after it
    uint32_t popped = 0;
    while (popped < RING_BATCH && ahead(d.end, r.consumed()) && r.peek(f, l)) {
      if (!deliver_ring_frame(d.ep, f, l, now)) {
        room = false;
        break;
      }
      r.pop_unpublished();
      popped++;
    }
    r.publish_head();
    moved += popped;
    if (!room || popped == RING_BATCH) return moved;
    retire_draining(i);  // read to its end (or broken)
  }
  // One peer's batch; true when it was dropped (peers_[i] is the next one).
  bool first = true;
  auto one = [&](size_t i) {
    Peer &p = peers_[i];
    if (!p.ring || p.ep < 0 || !endpoints_[static_cast<size_t>(p.ep)].sc_rx_open) return false;
    uint32_t popped = 0;
    while (popped < RING_BATCH && p.ring->peek(f, l)) {
      p.ring->prefetch_in(4);
      if (!deliver_ring_frame(static_cast<uint32_t>(p.ep), f, l, now)) break;
      p.ring->pop_unpublished();
      popped++;
    }
    p.ring->publish_head();  // once for the batch: room for the producer
    moved += popped;
    // the first ring read takes what room there is: the next turn begins
    // with the next one, once this one got some (else peer 0, kept full,
    // would starve the others as the rings did the socket)
    if (first && popped) ring_next_++;
    first = false;
    if (p.ring->broken()) {
      drop_peer(i, VxCtr::ShortcutRingBroken);
      return true;
    }
    if (popped) {
      vcount_datapath(VxCtr::ShortcutRxBatches);
      if (p.ring->room_kick_due()) kick(p);  // its producer sleeps for room
    }
    if (p.bell_stuck) {
      hang_up_hostile(i, VxCtr::ShortcutBellStuck);
      return true;
    }
    return false;
  };
  // peers ring_next_ .. end, then 0 .. ring_next_ (a dropped one shifts the rest)
  size_t start = peers_.empty() ? 0 : ring_next_ % peers_.size();
  ring_next_ = start;
  for (size_t i = start; i < peers_.size();)
    if (!one(i)) i++;
  for (size_t i = 0; i < start && i < peers_.size();)
    if (one(i)) start--;
    else i++;
  return moved;
}

// The first datagram of a batch is held back: every ring's producer index
// now (after the batch was read, so no less than when any datagram of it
// was sent). Each held datagram goes after its endpoint's ring frames
// published before that, and waits for no later one: a peer that keeps its
// ring from ever being empty would otherwise hold it, and the socket
// (nothing is read while some are held), for as long as it likes.
void VxlanDriver::mark_late() {
  late_gen_++;
  for (Draining &d : draining_) d.late = {late_gen_, d.ring.published_in()};
  for (Peer &p : peers_)
    if (p.ring && p.ep >= 0 && endpoints_[static_cast<size_t>(p.ep)].sc_rx_open) p.late = {late_gen_, p.ring->published_in()};
}

bool VxlanDriver::late_waits(uint32_t ep) const {
  for (const Draining &d : draining_)
    if (d.ep == ep && d.late.gen == late_gen_ && !d.ring.broken() && ahead(d.late.upto, d.ring.consumed()) && ahead(d.end, d.ring.consumed()))
      return true;
  for (const Peer &p : peers_)
    if (p.ep == static_cast<int>(ep) && p.ring && p.late.gen == late_gen_ && !p.ring->broken() && ahead(p.late.upto, p.ring->consumed()))
      return true;
  return false;
}

// Datagrams held back, in arrival order, each once the ring frames from
// its endpoint that it must follow are in (mu_ held); false while some
// still wait.
bool VxlanDriver::push_late(uint32_t &moved) {
  while (late_done_ < late_.size()) {
    const Late &x = late_[late_done_];
    if (late_waits(x.ep) || tx_room() == 0) break;
    std::memcpy(tx_buf(), late_buf_.data() + x.off, x.len);
    tx_push(x.len);
    late_done_++;
    moved++;
  }
  if (late_done_ < late_.size()) return false;
  late_.clear();
  late_buf_.clear();
  late_done_ = 0;
  return true;
}

uint32_t VxlanDriver::link_in() {
  uint32_t moved = 0;
  const bool rings = !peers_.empty() || !draining_.empty() || !late_.empty();
  // The rings and the socket share the switch's free tx slots. Taken in a
  // fixed order, a peer that refills its ring as fast as the switch frees
  // slots would get every one, and every other remote's datagrams would
  // wait in (and overflow) the socket's buffer for as long as it likes. So
  // the one that goes first alternates: it changes once the first one has
  // taken frames (turns without room don't count, or the turns that find
  // room could all be one side's). Held-back datagrams (late_) must go
  // before any later one: then the rings, and push_late, go first.
  const bool socket_first = rings && socket_first_ && readable_ && late_.empty();
  if (socket_first) {
    const uint32_t got = recv_datagrams();
    if (got) socket_first_ = false;
    moved += got;
  }
  if (rings) {
    std::lock_guard<std::mutex> g(mu_);
    disarm_rings();
    // held-back datagrams whose ring frames are in go before the rings take
    // every free slot (a ring kept full takes them all, turn after turn)
    if (!late_.empty()) push_late(moved);
    const uint32_t drained = drain_rings(mono_coarse_ns());
    if (drained && !socket_first) socket_first_ = true;
    moved += drained;
    // a thread kept busy by the rings never sleeps, so never polls the
    // socket: after RX_BATCH ring frames it is tried anyway (EAGAIN costs a
    // syscall per such turn, not per frame)
    ring_frames_unpolled_ += drained;
    if (!push_late(moved)) return moved;
  }
  if (socket_first) return moved;
  if (!readable_ && ring_frames_unpolled_ >= RX_BATCH) readable_ = true;
  return moved + recv_datagrams();
}

// UDP -> switch: one recvmmsg batch, as much as the switch has room for.
uint32_t VxlanDriver::recv_datagrams() {
  uint32_t rings = 0;  // frames held back before that go in after the batch
  if (!readable_) return 0;
  ring_frames_unpolled_ = 0;
  uint32_t n = std::min(tx_room(), RX_BATCH);
  // each datagram lands straight in a tx slot: the VXLAN header in hdr[i],
  // the inner frame in the slot's buffer
  uint8_t *slot[RX_BATCH];
  for (uint32_t i = 0; i < n; i++) {
    slot[i] = tx_buf_at(i);
    if (!slot[i]) {
      n = i;
      break;
    }
  }
  if (n == 0) return rings;
  uint8_t hdr[RX_BATCH][VXLAN_HDR_LEN];
  sockaddr_storage src[RX_BATCH];
  iovec iov[RX_BATCH][3];
  mmsghdr m[RX_BATCH];
  alignas(cmsghdr) char ctl[RX_BATCH][CMSG_SPACE(sizeof(int))];
  const size_t bs = slot_fill();
  for (uint32_t i = 0; i < n; i++) {
    iov[i][0] = {hdr[i], VXLAN_HDR_LEN};
    iov[i][1] = {slot[i], bs};
    m[i] = {};
    m[i].msg_hdr.msg_name = &src[i];
    m[i].msg_hdr.msg_namelen = sizeof src[i];
    m[i].msg_hdr.msg_iov = iov[i];
    m[i].msg_hdr.msg_iovlen = 2;
    if (gro_) {
      iov[i][2] = {gro_spill_.get() + size_t{i} * GRO_SPILL, GRO_SPILL};
      m[i].msg_hdr.msg_iovlen = 3;
      m[i].msg_hdr.msg_control = ctl[i];
      m[i].msg_hdr.msg_controllen = sizeof ctl[i];
    }
  }
  int r = ::recvmmsg(udp_.get(), m, n, MSG_DONTWAIT, nullptr);
  if (r <= 0) {
    if (r < 0 && errno == EINTR) return rings;
    // EAGAIN: drained; an ICMP error queued on the socket is reported once
    // and is no reason to stop reading
    if (r < 0 && errno != EAGAIN) {
      count(Ctr::LinkErrors);
      return rings + 1;
    }
    readable_ = false;
    return rings;
  }
  if (static_cast<uint32_t>(r) < n) readable_ = false;
  const uint64_t now = mono_coarse_ns();
  std::lock_guard<std::mutex> g(mu_);
  uint32_t pushed = 0;
  bool hold = false;  // a datagram is held back: so is every later one (their order kept)
  bool ring_hold = false;  // ... because a ring from its endpoint still held frames
  // One datagram: its VXLAN header h, inner frame f (flen bytes); in_slot:
  // f is slot i (pushed in place), else it is already at the end of late_buf_
  // (staged; taken back off when dropped).
  auto one = [&](uint32_t i, const uint8_t *h, uint8_t *f, size_t flen, bool in_slot) {
    auto drop = [&](VxCtr c) {
      if (c != VxCtr::Count_) vcount(c);
      if (!in_slot) late_buf_.resize(late_buf_.size() - flen);
    };
    // RFC 7348: the I flag must be set; the reserved bits are ignored
    if (!(h[0] & VXLAN_FLAG_I)) return drop(VxCtr::DropNoVniFlag);
    if (std::memcmp(h + 4, vni_be_, 3) != 0) return drop(VxCtr::DropWrongVni);
    // longer than a slot: the first datagram of a receive ran on into the
    // spill area, not contiguous with its slot (nothing reads past bs)
    if (flen > bs) return drop(VxCtr::DropTooLongIn);
    // the shortcut's control datagrams never reach the switch nor the FDB
    if (h[0] & VXLAN_FLAG_SHORTCUT) {
      if (m[i].msg_hdr.msg_namelen > sizeof src[i]) vcount(VxCtr::ShortcutHelloBad);
      else on_control(f, flen, src[i]);
      return drop(VxCtr::Count_);
    }
    if (flen < ETH_HLEN) return drop(VxCtr::DropShortFrame);
    if ((f[6] & 1) || mac_key(f + 6) == 0) return drop(VxCtr::DropBadSrcMac);
    if (m[i].msg_hdr.msg_namelen > sizeof src[i] || src[i].ss_family != family_) {
      count(Ctr::LinkErrors);
      return drop(VxCtr::Count_);
    }
    auto ep = endpoint_for(src[i], false);
    if (ep) {
      learn(f + 6, *ep, now);
      endpoints_[*ep].rx_frames++;
      endpoints_[*ep].rx_bytes += flen;
    } else {
      vcount(VxCtr::FdbFull);
    }
    const uint32_t epi = ep ? *ep : GROUP_EP;
    if (!in_slot) {  // staged: behind everything before it
      if (late_.empty()) mark_late();
      late_.push_back({static_cast<uint32_t>(late_buf_.size() - flen), static_cast<uint32_t>(flen), epi});
      if (ring_hold) vcount(VxCtr::ShortcutLateVxlan);
      hold = true;
      return;
    }
    // the peer fell back to VXLAN (or died) with frames still in its ring to
    // us: those were published before this datagram was sent, so they go
    // into the switch first (docs/vxlan-shortcut.md, "Ordering argument (down)")
    if (!hold && ep && (endpoints_[*ep].sc_rx_open || !draining_.empty()) && ring_waiting(*ep)) hold = ring_hold = true;
    if (hold) {
      if (ring_hold) vcount(VxCtr::ShortcutLateVxlan);
      if (late_.empty()) mark_late();
      late_.push_back({static_cast<uint32_t>(late_buf_.size()), static_cast<uint32_t>(flen), epi});
      late_buf_.insert(late_buf_.end(), f, f + flen);
      return;
    }
    // a dropped datagram before this one left its slot empty: close the gap
    if (i != pushed) std::memcpy(slot[pushed], f, flen);
    tx_push(static_cast<uint32_t>(flen));
    pushed++;
  };
  for (uint32_t i = 0; i < static_cast<uint32_t>(r); i++) {
    const size_t len = m[i].msg_len;
    if (m[i].msg_hdr.msg_flags & MSG_TRUNC) {
      vcount(VxCtr::DropTooLongIn);
      continue;
    }
    // UDP GRO: a run of datagrams of `seg` bytes each (the last may be shorter)
    size_t seg = len;
    if (gro_ && !(m[i].msg_hdr.msg_flags & MSG_CTRUNC))
      for (cmsghdr *c = CMSG_FIRSTHDR(&m[i].msg_hdr); c; c = CMSG_NXTHDR(&m[i].msg_hdr, c))
        if (c->cmsg_level == IPPROTO_UDP && c->cmsg_type == UDP_GRO && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
          int v;
          std::memcpy(&v, CMSG_DATA(c), sizeof v);
          if (v > 0 && static_cast<size_t>(v) < len) seg = static_cast<size_t>(v);
        }
    const size_t first = std::min(seg, len);
    if (first < VXLAN_HDR_LEN) {
      // every datagram of a coalesced run is as short as the first (the
      // last shorter still): each one counted
      vcount(VxCtr::DropShortHeader, seg ? (len + seg - 1) / seg : 1);  // seg 0: an empty datagram
      continue;
    }
    // the first datagram: header in hdr[i], frame at the start of slot i
    // (longer than a slot: its tail is in the spill area, and it is dropped)
    one(i, hdr[i], slot[i], first - VXLAN_HDR_LEN, true);
    if (seg == len) continue;
    // the others: bytes [k*seg, ...) of hdr[i] | slot[i] (bs) | spill[i]
    vcount(VxCtr::RxGroDatagrams);
    const uint8_t *spill = gro_spill_.get() + size_t{i} * GRO_SPILL;
    auto copy = [&](uint8_t *dst, size_t off, size_t l) {  // off >= VXLAN_HDR_LEN
      off -= VXLAN_HDR_LEN;
      if (off < bs) {
        const size_t a = std::min(l, bs - off);
        std::memcpy(dst, slot[i] + off, a);
        dst += a;
        l -= a;
        off = bs;
      }
      if (l) std::memcpy(dst, spill + (off - bs), l);
    };
    size_t segs = 1;
    for (size_t off = seg; off < len; off += seg) {
      const size_t sl = std::min(seg, len - off);
      segs++;
      if (sl < VXLAN_HDR_LEN) {
        vcount(VxCtr::DropShortHeader);
        continue;
      }
      uint8_t h[VXLAN_HDR_LEN];
      copy(h, off, VXLAN_HDR_LEN);
      const size_t flen = sl - VXLAN_HDR_LEN;
      if (flen > bs) {
        vcount(VxCtr::DropTooLongIn);
        continue;
      }
      late_buf_.resize(late_buf_.size() + flen);
      uint8_t *f = late_buf_.data() + late_buf_.size() - flen;
      copy(f, off + VXLAN_HDR_LEN, flen);
      one(i, h, f, flen, false);
    }
    vcount(VxCtr::RxGroSegments, segs);
  }
  // staged segments follow at once where the ring has room
  if (!late_.empty()) push_late(rings);
  return rings + static_cast<uint32_t>(r);
}

uint32_t VxlanDriver::link_out() {
  if (out_sent_ < out_.size()) {
    flush_out();
    if (out_sent_ < out_.size()) return 0;
  }
  out_.clear();
  out_sent_ = 0;
  out_wait_fd_ = -1;
  out_used_ = 0;
  gso_no_until_ = 0;
  uint32_t moved = 0, nf = 0;
  const size_t uhl = raw_ ? 8 : 0;  // our own UDP header before the VXLAN one
  const uint64_t now = mono_coarse_ns();
  maybe_hello(now);  // a busy port never idles into on_idle_timeout
  if (listen_ && now - last_service_ns_ > 10000000ull) {  // nor polls the rendezvous fds
    last_service_ns_ = now;
    service_peers();
  }
  {
    std::lock_guard<std::mutex> g(mu_);
    if (now - last_sweep_ns_ > 1000000000ull) {
      last_sweep_ns_ = now;
      for (auto it = fdb_.begin(); it != fdb_.end();) {
        if (!it->second.is_static && now - it->second.seen_ns > ageing_ns_) {
          endpoints_[it->second.ep].macs--;
          it = fdb_.erase(it);
          vcount(VxCtr::FdbAged);
        } else {
          ++it;
        }
      }
    }
    disarm_rings();
    // a mapped channel: flush (out_ is empty here: every earlier datagram to
    // the endpoint is with the kernel), MARKERs, then frames into the ring
    for (Peer &p : peers_) {
      p.pushed = false;
      if (!p.ring || p.marked || p.ep < 0 || p.ring->broken()) continue;
      send_markers(p);
      p.marked = true;
      Endpoint &e = endpoints_[static_cast<size_t>(p.ep)];
      e.sc_tx = 1;
      e.sc_ups++;
    }
    const uint8_t *b;
    uint32_t l;
    uint64_t out_frames = 0, out_bytes = 0, floods = 0, flood_copies = 0;
    // A frame is one slot, or a chain of slots (NS_MOREFRAG) when it is
    // longer than one buffer: a guest's jumbo frame, a client's multi-slot
    // frame. A chain is one frame: gathered and sent as one datagram. (Sent
    // slot by slot, each later slot would reach the far side as a frame of
    // its own whose Ethernet header is whatever bytes the sender put there,
    // past the switch's lookup.)
    iovec chain[NETMAP_MAX_FRAGS];
    uint32_t nslots = 0;
    size_t clen = 0;
    auto rx_pop_frame = [&]() {
      for (uint32_t j = 0; j < nslots; j++) rx_pop();
    };
    while (nf < TX_BATCH && rx_peek_chain(chain, NETMAP_MAX_FRAGS, nslots, clen)) {
      // the switch wrote these bytes on another CPU: ask for a later frame's
      // line now (the first read of each frame was most of link_out's time)
      rx_prefetch(4);
      moved++;
      if (clen + uhl + VXLAN_HDR_LEN > 65535 - 48) {
        count(Ctr::DropTooLong);
        rx_pop_frame();
        continue;
      }
      l = static_cast<uint32_t>(clen);
      b = static_cast<const uint8_t *>(chain[0].iov_base);
      // the batch's copy area holds every frame that goes over VXLAN, one
      // after the other: after a long chain there may be no room left for
      // this frame (one slot or several); it waits for the next batch, which
      // starts empty (and always has room: out_buf_ holds the longest frame)
      if (out_used_ + l > out_buf_.size()) {
        moved--;
        break;
      }
      bool gathered = false;
      if (nslots > 1) {
        // gathered into the copy area, where a frame for VXLAN is copied
        // anyway (kept there only if it goes over VXLAN)
        uint8_t *to = out_buf_.data() + out_used_;
        for (uint32_t j = 0, off = 0; j < nslots; off += static_cast<uint32_t>(chain[j].iov_len), j++)
          std::memcpy(to + off, chain[j].iov_base, chain[j].iov_len);
        b = to;
        gathered = true;
      }
      if (l < ETH_HLEN) {
        vcount(VxCtr::DropShortOut);
        rx_pop_frame();
        continue;
      }
      const int ep = (b[0] & 1) ? -1 : lookup(b, now);
      // endpoints behind a shortcut take the frame in their ring: every ring
      // must have room first, or the frame stays in the switch's ring
      ring_dst_.clear();
      bool ring_full = false, ring_too_long = false;
      auto to_ring = [&](uint32_t e) {
        Peer *p = endpoints_[e].sc_tx ? ring_peer(e) : nullptr;
        if (!p) return false;
        if (l > p->ring->slot_size()) {
          // a multi-slot frame longer than the ring's slots, which are as
          // large as the larger of the two ports' buffers: the peer would
          // drop it over VXLAN too (dropTooLongIn)
          count(Ctr::DropTooLong);
          ring_too_long = true;
        } else if (!p->ring->room()) {
          ring_full = true;
          vcount(VxCtr::ShortcutRingFull);
          // a peer that frees no slot must not hold up the port for good
          if (!p->full_since_ns) p->full_since_ns = now;
          else if (now - p->full_since_ns >= SHORTCUT_STALL_NS) p->stalled = true;
        } else {
          p->full_since_ns = 0;
          ring_dst_.push_back(p);
        }
        return true;
      };
      const size_t before = out_.size();
      if (ep >= 0) {
        if (!to_ring(static_cast<uint32_t>(ep))) out_.push_back({nf, static_cast<uint32_t>(ep)});
      } else if (group_len_) {
        out_.push_back({nf, GROUP_EP});
      } else {
        for (uint32_t e : flood_)
          if (!to_ring(e)) out_.push_back({nf, e});
      }
      if (ring_full) {
        out_.resize(before);
        sc_full_ = out_blocked_ = true;
        moved--;
        break;
      }
      const size_t nrp = ring_dst_.size();
      if (out_.size() == before && nrp == 0) {
        if (!ring_too_long) vcount(VxCtr::DropNoDestination);
        rx_pop_frame();
        continue;
      }
      if (ep < 0) {
        floods++;
        flood_copies += out_.size() - before + nrp;
      }
      for (Peer *pp : ring_dst_) {
        Peer &p = *pp;
        p.pushed = true;
        // room was checked and we are the only producer: it fits, or the
        // ring broke (torn down below; this copy is lost with the channel).
        // Published once for the batch, below.
        p.ring->prefetch_out(4);
        if (p.ring->push_unpublished(b, l)) endpoints_[static_cast<size_t>(p.ep)].sc_tx_frames++;
      }
      out_frames++;
      out_bytes += l;
      if (out_.size() == before) {
        rx_pop_frame();
        continue;
      }
      // copied: the slot goes back to the switch at the next rxsync, which
      // may come before sendmmsg has read it (a chain is there already)
      if (!gathered) std::memcpy(out_buf_.data() + out_used_, b, l);
      out_off_[nf] = static_cast<uint32_t>(out_used_);
      out_used_ += l;
      out_len_[nf] = l;
      uint8_t *h = out_hdr_[nf].data();
      const uint16_t sp = raw_ ? src_port(b, l) : 0, ulen = static_cast<uint16_t>(8 + VXLAN_HDR_LEN + l);
      if (raw_ && listen_)  // the source ports a later MARKER must follow
        for (size_t k = before; k < out_.size(); k++)
          if (out_[k].ep != GROUP_EP && endpoints_[out_[k].ep].flood) note_sport(endpoints_[out_[k].ep], sp, now);
      h[0] = static_cast<uint8_t>(sp >> 8);
      h[1] = static_cast<uint8_t>(sp);
      h[2] = static_cast<uint8_t>(o_.dstport >> 8);
      h[3] = static_cast<uint8_t>(o_.dstport);
      h[4] = static_cast<uint8_t>(ulen >> 8);
      h[5] = static_cast<uint8_t>(ulen);
      h[6] = h[7] = 0;  // IPv4: no checksum, as Linux's vxlan sends; IPv6: the kernel fills it
      h[8] = VXLAN_FLAG_I;
      h[9] = h[10] = h[11] = 0;
      h[12] = vni_be_[0];
      h[13] = vni_be_[1];
      h[14] = vni_be_[2];
      h[15] = 0;
      rx_pop_frame();
      nf++;
    }
    count_out(out_frames, out_bytes, floods, flood_copies);
    publish_rings();
  }
  flush_out();
  return moved;
}

void VxlanDriver::publish_rings() {
  // publish the batch; kick a consumer that asked for it before it slept
  for (size_t i = 0; i < peers_.size();) {
    Peer &p = peers_[i];
    if (p.pushed && !p.ring->broken()) {
      p.ring->publish();
      vcount_datapath(VxCtr::ShortcutTxBatches);
      Endpoint &e = endpoints_[static_cast<size_t>(p.ep)];
      if (e.sc_tx == 1 && p.ring->unconsumed() != p.ring->produced()) e.sc_tx = 2;
      if (p.ring->data_kick_due()) kick(p);
    }
    p.pushed = false;
    if (p.ring && p.ring->broken()) {
      drop_peer(i, VxCtr::ShortcutRingBroken);
      continue;
    }
    if (p.stalled || p.bell_stuck) {
      hang_up_hostile(i, p.stalled ? VxCtr::ShortcutPeerStalled : VxCtr::ShortcutBellStuck);
      continue;
    }
    i++;
  }
}

// Only this thread (the switch's, in-line) writes peers_ and endpoints_:
// read here without mu_.
bool VxlanDriver::link_direct_wanted() {
  if (out_sent_ < out_.size()) return false;  // datagrams wait: no frame may overtake them
  for (const Peer &p : peers_)
    if (p.ring && p.marked && p.ep >= 0 && !p.ring->broken() && endpoints_[static_cast<size_t>(p.ep)].sc_tx) return true;
  return false;
}

uint32_t VxlanDriver::link_direct(const iovec *iov, const uint32_t *at, uint32_t n) {
  if (out_sent_ < out_.size()) return 0;
  const uint64_t now = mono_coarse_ns();
  uint64_t bytes = 0, floods = 0, flood_copies = 0;
  uint32_t i = 0;
  uint64_t last_key = ~uint64_t{0};  // no MAC's key (48 bits)
  int last_ep = -1;
  // the rings of the last frame's destination (an endpoint, or -1: the
  // flood's): a burst is mostly one flow, so they are looked up once per
  // destination change, not per frame (nothing else changes them during
  // the call); dst_ok false: that destination is link_out's
  int dst_of = -2;
  bool dst_ok = false;
  std::lock_guard<std::mutex> g(mu_);
  for (; i < n; i++) {
    const iovec *f = iov + at[i];
    const uint32_t nv = at[i + 1] - at[i];
    size_t len = 0;
    for (uint32_t j = 0; j < nv; j++) len += f[j].iov_len;
    // a short or oversized frame is link_out's to count; so is one whose
    // Ethernet header is split (the switch's snapshot normally holds it)
    if (nv == 0 || f[0].iov_len < ETH_HLEN || len > SHORTCUT_RING_MAX_SLOT) break;
    const uint32_t l = static_cast<uint32_t>(len);
    const uint8_t *b = static_cast<const uint8_t *>(f[0].iov_base);
    int ep = -1;
    if (!(b[0] & 1)) {
      const uint64_t k = mac_key(b);
      if (k != last_key) {
        last_key = k;
        last_ep = lookup(b, now);
      }
      ep = last_ep;
    }
    if (ep != dst_of) {
      // every copy into a ring, or the frame is link_out's (a datagram, a
      // group, an endpoint with no ring)
      dst_of = ep;
      ring_dst_.clear();
      auto add = [&](uint32_t e) {
        Peer *p = endpoints_[e].sc_tx ? ring_peer(e) : nullptr;
        if (p) ring_dst_.push_back(p);
        return p != nullptr;
      };
      if (ep >= 0) {
        dst_ok = add(static_cast<uint32_t>(ep));
      } else if (group_len_ || flood_.empty()) {
        dst_ok = false;
      } else {
        dst_ok = true;
        for (uint32_t e : flood_)
          if (!(dst_ok = add(e))) break;
      }
    }
    if (!dst_ok) break;
    // room in every ring first, or the frame is link_out's (a full ring it
    // waits on, a peer it stalls)
    bool fits = true;
    for (Peer *p : ring_dst_) fits = fits && l <= p->ring->slot_size() && p->ring->room();
    if (!fits) break;
    for (Peer *p : ring_dst_) {
      p->full_since_ns = 0;
      p->pushed = true;
      p->ring->prefetch_out(8);
      if (p->ring->push_unpublished(f, nv, l)) endpoints_[static_cast<size_t>(p->ep)].sc_tx_frames++;
    }
    if (ep < 0) {
      floods++;
      flood_copies += ring_dst_.size();
    }
    bytes += l;
  }
  if (i) vcount_datapath(VxCtr::ShortcutTxDirect, i);
  count_out(i, bytes, floods, flood_copies);
  publish_rings();
  return i;
}

// once per batch (read by other threads; written only by the datapath)
void VxlanDriver::count_out(uint64_t frames, uint64_t bytes, uint64_t floods, uint64_t flood_copies) {
  if (frames) {
    count_datapath(Ctr::OutFrames, frames);
    count_datapath(Ctr::OutBytes, bytes);
  }
  if (floods) {
    vcount_datapath(VxCtr::Floods, floods);
    vcount_datapath(VxCtr::FloodCopies, flood_copies);
  }
}

size_t VxlanDriver::gso_run(size_t from) const {
  const Out &o0 = out_[from];
  if (!gso_ || from < gso_no_until_ || o0.ep == GROUP_EP) return 1;
  const uint8_t *h0 = out_hdr_[o0.frame].data();
  const uint32_t len0 = out_len_[o0.frame];
  size_t n = 1, bytes = VXLAN_HDR_LEN + len0;
  while (from + n < out_.size() && n < GSO_MAX) {
    const Out &o = out_[from + n];
    const uint32_t l = out_len_[o.frame];
    const uint8_t *h = out_hdr_[o.frame].data();
    // one endpoint, one source port (h[0..1]), segments of one size but the last
    if (o.ep != o0.ep || h[0] != h0[0] || h[1] != h0[1] || l > len0 || bytes + VXLAN_HDR_LEN + l > GSO_MAX_BYTES) break;
    bytes += VXLAN_HDR_LEN + l;
    n++;
    if (l < len0) break;
  }
  return n;
}

int VxlanDriver::gso_socket(uint16_t sp, uint64_t now) {
  if (!raw_) return udp_.get();  // srcport=fixed: the bound socket sends from its port
  GsoSock *lru = nullptr;
  for (GsoSock &g : gso_socks_) {
    if (g.sport == sp) {
      g.used_ns = now;
      return g.failed ? -1 : g.fd.get();
    }
    if (!lru || g.used_ns < lru->used_ns) lru = &g;
  }
  GsoSock *g = lru;
  if (gso_socks_.size() < GSO_SOCKETS) g = &gso_socks_.emplace_back();
  g->sport = sp;
  g->used_ns = now;
  g->failed = true;
  if (g->fd) link_fds_changed();  // the least recently used one closed
  g->fd.reset(::socket(family_, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP));
  if (!g->fd) return -1;
  // it only sends: whatever reaches its port is dropped at once
  sock_filter drop_all{BPF_RET | BPF_K, 0, 0, 0};
  sock_fprog prog{1, &drop_all};
  int big = 4 << 20;
  bool ok = ::setsockopt(g->fd.get(), SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) == 0;
  if (::setsockopt(g->fd.get(), SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof big) < 0) ::setsockopt(g->fd.get(), SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
  const int ttl = o_.ttl ? o_.ttl : 64, dont = family_ == AF_INET ? IP_PMTUDISC_DONT : IPV6_PMTUDISC_DONT;
  if (family_ == AF_INET) {
    ok = ok && ::setsockopt(g->fd.get(), IPPROTO_IP, IP_MTU_DISCOVER, &dont, sizeof dont) == 0;
    ok = ok && ::setsockopt(g->fd.get(), IPPROTO_IP, IP_TTL, &ttl, sizeof ttl) == 0;
  } else {
    ok = ok && ::setsockopt(g->fd.get(), IPPROTO_IPV6, IPV6_MTU_DISCOVER, &dont, sizeof dont) == 0;
    ok = ok && ::setsockopt(g->fd.get(), IPPROTO_IPV6, IPV6_UNICAST_HOPS, &ttl, sizeof ttl) == 0;
  }
  sockaddr_storage src = local_;
  socklen_t slen = local_len_;
  if (!slen) {
    src = {};
    src.ss_family = static_cast<sa_family_t>(family_);
    slen = family_ == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  }
  set_port(src, sp);
  // EADDRINUSE: another socket here has this port; its datagrams go raw
  ok = ok && ::bind(g->fd.get(), reinterpret_cast<const sockaddr *>(&src), slen) == 0;
  if (!ok) {
    g->fd.reset();
    return -1;
  }
  g->failed = false;
  return g->fd.get();
}

int VxlanDriver::gso_probe() const {
  // two 1-byte segments from a throwaway socket on the loopback to itself
  // (a drop-all filter: nobody reads them, nothing leaves the host)
  unique_fd s(::socket(family_, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP));
  if (!s) return -1;
  sock_filter drop_all{BPF_RET | BPF_K, 0, 0, 0};
  sock_fprog prog{1, &drop_all};
  sockaddr_storage a{};
  socklen_t len;
  if (family_ == AF_INET) {
    auto *v4 = reinterpret_cast<sockaddr_in *>(&a);
    v4->sin_family = AF_INET;
    v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof *v4;
  } else {
    auto *v6 = reinterpret_cast<sockaddr_in6 *>(&a);
    v6->sin6_family = AF_INET6;
    v6->sin6_addr = in6addr_loopback;
    len = sizeof *v6;
  }
  if (::setsockopt(s.get(), SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) < 0 || ::bind(s.get(), reinterpret_cast<const sockaddr *>(&a), len) < 0 ||
      ::getsockname(s.get(), reinterpret_cast<sockaddr *>(&a), &len) < 0)
    return -1;
  char two[2] = {};
  iovec iov{two, sizeof two};
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(uint16_t))];
  msghdr mh{};
  mh.msg_name = &a;
  mh.msg_namelen = len;
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  set_udp_segment(mh, cbuf, 1);
  if (::sendmsg(s.get(), &mh, MSG_DONTWAIT) >= 0) return 1;
  return errno == EINVAL || errno == EIO || errno == ENOPROTOOPT || errno == EOPNOTSUPP ? 0 : -1;
}

uint32_t VxlanDriver::flush_out() {
  const int fd = raw_ ? raw_.get() : udp_.get();
  const size_t uhl = raw_ ? 8 : 0;
  uint32_t sent_total = 0;
  while (out_sent_ < out_.size() && !out_blocked_) {
    // a run to one endpoint from one source port: one UDP GSO send, which
    // crosses the socket and IP output once for all its datagrams
    const size_t run = gso_run(out_sent_);
    if (run >= GSO_MIN) {
      const Out &o0 = out_[out_sent_];
      const uint8_t *h0 = out_hdr_[o0.frame].data();
      const uint16_t sp = static_cast<uint16_t>(h0[0] << 8 | h0[1]);
      const int gfd = gso_socket(sp, mono_coarse_ns());
      if (gfd >= 0) {
        iovec iov[2 * GSO_MAX];
        for (size_t i = 0; i < run; i++) {
          const Out &o = out_[out_sent_ + i];
          iov[2 * i] = {out_hdr_[o.frame].data() + 8, VXLAN_HDR_LEN};
          iov[2 * i + 1] = {out_buf_.data() + out_off_[o.frame], out_len_[o.frame]};
        }
        alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(uint16_t))];
        msghdr mh{};
        sockaddr_storage dst;
        {
          std::lock_guard<std::mutex> g(mu_);
          dst = endpoints_[o0.ep].addr;
          mh.msg_namelen = endpoints_[o0.ep].len;
        }
        // raw sends address the endpoint with port 0 (their UDP header names it)
        set_port(dst, o_.dstport);
        mh.msg_name = &dst;
        mh.msg_iov = iov;
        mh.msg_iovlen = 2 * run;
        set_udp_segment(mh, cbuf, static_cast<uint16_t>(VXLAN_HDR_LEN + out_len_[o0.frame]));
        const ssize_t r = ::sendmsg(gfd, &mh, MSG_DONTWAIT);
        if (r >= 0) {
          std::lock_guard<std::mutex> g(mu_);
          for (size_t i = 0; i < run; i++) {
            const Out &o = out_[out_sent_ + i];
            endpoints_[o.ep].tx_frames++;
            endpoints_[o.ep].tx_bytes += out_len_[o.frame];
          }
          vcount(VxCtr::TxGsoSends);
          vcount(VxCtr::TxGsoDatagrams, run);
          gso_works_ = true;
          out_sent_ += run;
          sent_total += static_cast<uint32_t>(run);
          continue;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == ENOBUFS) {
          out_blocked_ = true;
          out_wait_fd_ = gfd;
          vcount(VxCtr::TxPushedBack);
          break;
        }
        // Whatever the error, this run goes one by one, each datagram judged
        // by the kernel (and fragmented where it must be: DF is clear).
        // EMSGSIZE (recent kernels) or EINVAL (older ones): a segment longer than
        // the route's MTU less the outer headers (GSO never fragments: a
        // guest's full-size frames on a smaller underlay), or more segments
        // than UDP_MAX_SEGMENTS. That is this run's fault, not the kernel's:
        // counted, and GSO stays on for the next run. EINVAL before any GSO
        // send went out may instead be a kernel without UDP GSO: a probe
        // that no MTU refuses tells which, once. EIO (no checksum offload on
        // the route, an xfrm policy), ENOPROTOOPT, EOPNOTSUPP, or EINVAL
        // with the probe refused too: no UDP GSO here, one by one from now
        // on. Any other error (no route) is the datagrams' to meet.
        const int err = errno;
        bool no_gso = err == EIO || err == ENOPROTOOPT || err == EOPNOTSUPP;
        if (err == EINVAL && !gso_works_) {
          gso_works_ = gso_probe() != 0;  // no telling (-1): the run is blamed, each refusal counted
          no_gso = !gso_works_;
        }
        if (no_gso) {
          if (gso_) log(std::string("UDP GSO refused (") + std::strerror(err) + "): datagrams are sent one by one");
          gso_ = false;
          vcount(VxCtr::TxGsoUnavailable);
        } else if (err == EINVAL || err == EMSGSIZE) {
          vcount(VxCtr::TxGsoRunsRefused);
        }
        gso_no_until_ = out_sent_ + run;
        continue;
      }
      gso_no_until_ = out_sent_ + run;  // no socket for this source port: raw, one by one
    }
    mmsghdr m[MMSG];
    iovec iov[MMSG][2];
    // one by one up to the next run that GSO takes
    uint32_t k = 0;
    {
      std::lock_guard<std::mutex> g(mu_);
      while (k < MMSG && out_sent_ + k < out_.size()) {
        if (k > 0 && gso_run(out_sent_ + k) >= GSO_MIN) break;
        const Out &o = out_[out_sent_ + k];
        iov[k][0] = {out_hdr_[o.frame].data() + (8 - uhl), uhl + VXLAN_HDR_LEN};
        iov[k][1] = {out_buf_.data() + out_off_[o.frame], out_len_[o.frame]};
        m[k] = {};
        const Endpoint *e = o.ep == GROUP_EP ? nullptr : &endpoints_[o.ep];
        m[k].msg_hdr.msg_name = const_cast<sockaddr_storage *>(e ? &e->addr : &group_);
        m[k].msg_hdr.msg_namelen = e ? e->len : group_len_;
        m[k].msg_hdr.msg_iov = iov[k];
        m[k].msg_hdr.msg_iovlen = 2;
        k++;
      }
    }
    int r = ::sendmmsg(fd, m, k, MSG_DONTWAIT);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == ENOBUFS) {
        out_blocked_ = true;
        out_wait_fd_ = fd;
        vcount(VxCtr::TxPushedBack);
        break;
      }
      // the first datagram was refused (no route, unreachable): count, skip
      std::lock_guard<std::mutex> g(mu_);
      const Out &o = out_[out_sent_];
      if (o.ep != GROUP_EP) endpoints_[o.ep].tx_errors++;
      vcount(VxCtr::DropSendFailed);
      count(Ctr::LinkErrors);
      out_sent_++;
      continue;
    }
    std::lock_guard<std::mutex> g(mu_);
    for (int i = 0; i < r; i++) {
      const Out &o = out_[out_sent_ + static_cast<size_t>(i)];
      if (o.ep != GROUP_EP) {
        endpoints_[o.ep].tx_frames++;
        endpoints_[o.ep].tx_bytes += out_len_[o.frame];
      }
    }
    out_sent_ += static_cast<size_t>(r);
    sent_total += static_cast<uint32_t>(r);
  }
  return sent_total;
}

std::vector<std::pair<std::string, uint64_t>> VxlanDriver::vx_counters(size_t max_fdb_lines) const {
  std::vector<std::pair<std::string, uint64_t>> v;
  for (size_t i = 0; i < vctr_.size(); i++) v.emplace_back(vx_ctr_name(static_cast<VxCtr>(i)), vctr_[i].load(std::memory_order_relaxed));
  // What the kernel dropped at the receiving socket (its receive buffer full:
  // the driver behind): sk_drops, read now with SO_MEMINFO rather than from
  // SO_RXQ_OVFL's cmsg, which only comes with a later datagram and costs a
  // control message per receive. The kernel counts a UDP GRO run (a GSO send
  // from another vale-ts, up to 64 datagrams) as one drop: docs/vxlan.md.
  uint32_t mi[SK_MEMINFO_VARS] = {};
  socklen_t ml = sizeof mi;
  const bool have = ::getsockopt(udp_.get(), SOL_SOCKET, SO_MEMINFO, mi, &ml) == 0 && ml > SK_MEMINFO_DROPS * sizeof mi[0];
  v.emplace_back("dropKernelRx", have ? mi[SK_MEMINFO_DROPS] : 0);
  const uint64_t now = mono_coarse_ns();
  // Under mu_ only a copy of the numbers (an in-line VTEP's switch takes mu_
  // in its rounds: up to 1024 endpoints' worth of strings built under it
  // held the switch); the names are made after.
  struct EpSnap {
    std::string text;  // an IPv4 address fits the string's own buffer
    uint64_t rx_frames, rx_bytes, tx_frames, tx_bytes, tx_errors, macs;
    bool flood, same_host, sc_rx_open;
    uint8_t peer_state, sc_tx;
    uint64_t sc_tx_frames, sc_rx_frames, sc_ups, sc_downs;
  };
  struct FdbSnap {
    uint64_t mac;
    uint32_t ep;
    bool is_static;
    uint64_t seen_ns;
  };
  std::vector<EpSnap> eps;
  std::vector<FdbSnap> fdb;
  size_t fdb_entries = 0;
  {
    std::lock_guard<std::mutex> g(mu_);
    fdb_entries = fdb_.size();
    eps.reserve(endpoints_.size());
    for (const Endpoint &e : endpoints_)
      eps.push_back({e.text, e.rx_frames, e.rx_bytes, e.tx_frames, e.tx_bytes, e.tx_errors, e.macs, e.flood, e.same_host, e.sc_rx_open, e.peer_state,
                     e.sc_tx, e.sc_tx_frames, e.sc_rx_frames, e.sc_ups, e.sc_downs});
    fdb.reserve(std::min(fdb_.size(), max_fdb_lines));
    for (const auto &[k, e] : fdb_) {
      if (fdb.size() >= max_fdb_lines) break;
      fdb.push_back({k, e.ep, e.is_static, e.seen_ns});
    }
  }
  v.emplace_back("fdbEntries", fdb_entries);
  v.emplace_back("endpoints", eps.size());
  for (const EpSnap &e : eps) {
    const std::string p = "remote " + e.text + " ";
    v.emplace_back(p + "rxFrames", e.rx_frames);
    v.emplace_back(p + "rxBytes", e.rx_bytes);
    v.emplace_back(p + "txFrames", e.tx_frames);
    v.emplace_back(p + "txBytes", e.tx_bytes);
    v.emplace_back(p + "txErrors", e.tx_errors);
    v.emplace_back(p + "macs", e.macs);
    if (e.flood) v.emplace_back(p + "sameHost", e.same_host ? 1 : 0);
    if (e.flood) {
      v.emplace_back(p + "shortcutPeer", e.peer_state);
      v.emplace_back(p + "shortcut", e.sc_tx);
      v.emplace_back(p + "shortcutIn", e.sc_rx_open ? 1 : 0);
      v.emplace_back(p + "shortcutTxFrames", e.sc_tx_frames);
      v.emplace_back(p + "shortcutRxFrames", e.sc_rx_frames);
      v.emplace_back(p + "shortcutUps", e.sc_ups);
      v.emplace_back(p + "shortcutDowns", e.sc_downs);
    }
  }
  for (const FdbSnap &e : fdb) {
    const std::string p = "fdb " + mac_text(e.mac) + " -> " + (e.ep < eps.size() ? eps[e.ep].text : std::string("?"));
    if (e.is_static) v.emplace_back(p + " static", 1);
    else if (now - e.seen_ns <= ageing_ns_) v.emplace_back(p + " expiresInS", (ageing_ns_ - (now - e.seen_ns)) / 1000000000ull + 1);
  }
  return v;
}

std::string VxlanDriver::describe() const {
  const std::string host = o_.local.empty() ? std::string("*") : family_ == AF_INET6 ? "[" + o_.local + "]" : o_.local;
  std::string s = "vxlan vni " + std::to_string(o_.vni) + " " + host + ":" + std::to_string(o_.port);
  if (group_len_) s += " group " + o_.group;
  std::lock_guard<std::mutex> g(mu_);
  if (!flood_.empty()) {
    s += " ->";
    for (uint32_t e : flood_) s += " " + endpoints_[e].text;
  }
  if (!o_.dev.empty()) s += " dev " + o_.dev;
  s += o_.srcport_fixed ? " (srcport fixed)" : " (srcport " + std::to_string(o_.srcport_min) + "-" + std::to_string(o_.srcport_max) + ")";
  if (in_line()) s += " in-line";
  return s;
}

}  // namespace nm
