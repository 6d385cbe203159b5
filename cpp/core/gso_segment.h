// The minimal offload work an AF_PACKET interface port needs (issue 12,
// item 3): what the kernel hands a packet socket with PACKET_VNET_HDR may be
// a GSO super-frame (GRO on receive, TSO from a local stack) or carry a
// partial checksum (CHECKSUM_PARTIAL). Switch ports take plain frames, so the
// driver completes the checksum or cuts the frame into MSS-sized segments with
// correct IPv4/TCP checksums here.
//
// Named for this driver on purpose (namespace nm::afp): cpp/core/offload.h
// (issue 11) landed while this was written; this file is the one to fold into it. Everything here works on bytes the kernel wrote, but lengths and
// offsets in the virtio-net header are still checked before use.
#pragma once

#include <cstddef>
#include <cstdint>

namespace nm::afp {

// The legacy virtio-net header a packet socket with PACKET_VNET_HDR puts
// before each frame (linux/virtio_net.h's struct virtio_net_hdr, which C++
// cannot include: a member is named `class`). Native byte order on
// little-endian hosts, as the kernel writes it for packet sockets.
struct virtio_net_hdr {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
};
static_assert(sizeof(virtio_net_hdr) == 10);
constexpr uint8_t VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
constexpr uint8_t VIRTIO_NET_HDR_F_DATA_VALID = 2;
constexpr uint8_t VIRTIO_NET_HDR_GSO_NONE = 0;
constexpr uint8_t VIRTIO_NET_HDR_GSO_TCPV4 = 1;
constexpr uint8_t VIRTIO_NET_HDR_GSO_UDP = 3;
constexpr uint8_t VIRTIO_NET_HDR_GSO_TCPV6 = 4;
constexpr uint8_t VIRTIO_NET_HDR_GSO_ECN = 0x80;

// Ones' complement sum of `len` bytes (not folded, not inverted), added to `sum`.
uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t len);
// Folds a 32-bit sum to 16 bits (not inverted).
uint16_t csum_fold(uint32_t sum);

enum class OffloadStatus : uint8_t {
  ok,
  bad_header,       // csum_start/offset or headers outside the frame
  unsupported_gso,  // a gso_type other than TCPv4/TCPv6
  too_many_segments,
};

// Writes the checksum a CHECKSUM_PARTIAL frame still needs: the kernel left
// the pseudo-header sum at csum_start + csum_offset.
OffloadStatus complete_csum(uint8_t *frame, size_t len, const virtio_net_hdr &h);

// Where a TCP GSO frame's headers end and how many segments it makes.
struct GsoPlan {
  size_t l3 = 0;     // offset of the IP header
  size_t l4 = 0;     // offset of the TCP header
  size_t hdrs = 0;   // bytes of headers copied into every segment
  size_t mss = 0;
  uint32_t segments = 0;
  bool ipv6 = false;
};
OffloadStatus plan_gso(const uint8_t *frame, size_t len, const virtio_net_hdr &h, GsoPlan &out);

// Segment i (0-based) of a planned frame, written to `dst` (room for
// plan.hdrs + plan.mss bytes); returns its length. IPv4 id += i, TCP seq +=
// i * mss, FIN/PSH only on the last segment, CWR only on the first, the IPv4
// header checksum and the TCP checksum computed in full.
size_t write_segment(const uint8_t *frame, size_t len, const GsoPlan &plan, uint32_t i, uint8_t *dst);

}  // namespace nm::afp
