// Setting up a Linux interface for a driver that attaches it to a switch port
// (AF_PACKET, AF_XDP): its index and MTU, checked against the port's buffers,
// its flags, a promiscuity reference, and raising it when it is down (and
// lowering it again at the end). Every call goes through a socket the driver
// owns, in the driver's network namespace.
#pragma once

#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

#include "core/result.h"

namespace nm {

struct LinkInfo {
  int ifindex = 0;
  uint32_t mtu = 0;
};

namespace link_detail {
inline ifreq named(const std::string &ifname) {
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, ifname.data(), ifname.size());  // the caller checked size < IFNAMSIZ
  return ifr;
}
}  // namespace link_detail

// `ifname`'s index (ENXIO, with a hint, where there is no such interface) and
// MTU; refuses an MTU whose frames (the MTU plus 22 bytes of link-level
// header) do not fit the port's `buf_size`-byte buffers, naming both fixes.
inline Result<LinkInfo> probe_link(int sock, const std::string &ifname, uint32_t buf_size) {
  LinkInfo l;
  l.ifindex = static_cast<int>(::if_nametoindex(ifname.c_str()));
  if (l.ifindex == 0) {
    SysError e = sys_fail("if_nametoindex", "no interface " + ifname + " in vale-ts's network namespace", "check `ip link show " + ifname + "`");
    e.code_err = ENXIO;
    return e;
  }
  ifreq ifr = link_detail::named(ifname);
  if (::ioctl(sock, SIOCGIFMTU, &ifr) < 0) return sys_fail("ioctl", "SIOCGIFMTU " + ifname);
  l.mtu = static_cast<uint32_t>(ifr.ifr_mtu);
  if (l.mtu + 14 + 8 > buf_size)
    return check_fail(EINVAL, ifname + " has MTU " + std::to_string(l.mtu) + ": its frames do not fit the port's " + std::to_string(buf_size) + "-byte buffers",
                      "lower the MTU (ip link set " + ifname + " mtu 1500) or give the switch larger buffers");
  return l;
}

// The interface's flags (IFF_UP, IFF_PROMISC, ...).
inline Result<short> link_flags(int sock, const std::string &ifname) {
  ifreq ifr = link_detail::named(ifname);
  if (::ioctl(sock, SIOCGIFFLAGS, &ifr) < 0) return sys_fail("ioctl", "SIOCGIFFLAGS " + ifname);
  return static_cast<short>(ifr.ifr_flags);
}

// A promiscuity reference held by `sock` (PACKET_MR_PROMISC on an AF_PACKET
// socket): the kernel counts it and drops it when the socket closes, so the
// interface's own IFF_PROMISC setting is never touched.
inline Result<int> hold_promisc(int sock, int ifindex, const std::string &ifname) {
  packet_mreq mr{};
  mr.mr_ifindex = ifindex;
  mr.mr_type = PACKET_MR_PROMISC;
  if (::setsockopt(sock, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mr, sizeof mr) < 0)
    return sys_fail("setsockopt", "PACKET_ADD_MEMBERSHIP promiscuous on " + ifname);
  return 0;
}

// Sets IFF_UP on an interface whose `flags` (read before) lack it; true when it did.
inline Result<bool> raise_link(int sock, const std::string &ifname, short flags) {
  if (flags & IFF_UP) return false;
  ifreq ifr = link_detail::named(ifname);
  ifr.ifr_flags = static_cast<short>(flags | IFF_UP);
  if (::ioctl(sock, SIOCSIFFLAGS, &ifr) < 0) return sys_fail("ioctl", "SIOCSIFFLAGS up " + ifname);
  return true;
}

// Takes IFF_UP away again (at the driver's end, where raise_link set it); best effort.
inline void lower_link(int sock, const std::string &ifname) {
  ifreq ifr = link_detail::named(ifname);
  if (::ioctl(sock, SIOCGIFFLAGS, &ifr) < 0) return;
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags & ~IFF_UP);
  (void)::ioctl(sock, SIOCSIFFLAGS, &ifr);
}

}  // namespace nm
