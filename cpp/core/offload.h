// virtio-net header offloads, done in software: what a NIC would do for a
// frame that a header-aware sender (a TAP with IFF_VNET_HDR, a guest with
// checksum/TSO offload) left unfinished, so it can leave through a port that
// takes plain Ethernet frames.
//
//  - NEEDS_CSUM: the sender left the L4 checksum to be filled in. Linux's
//    convention: the checksum field already holds the pseudo-header sum, and
//    the one's complement sum from csum_start to the end goes at
//    csum_start + csum_offset.
//  - GSO (TCPv4, TCPv6, UDP_L4): one large frame to cut into frames of at most
//    gso_size payload bytes each, every one with its own IP length, IPv4 id
//    and header checksum, TCP sequence number and flags, and L4 checksum.
//
// Everything in the header and the frame is the sender's word (a guest, a
// process on the host): offsets and lengths are checked against the frame
// before any access, and a frame we cannot finish is reported with a reason
// rather than passed on half done. No allocation, no exceptions: the caller
// supplies where segments go.
#pragma once

#include <cstddef>
#include <cstdint>

namespace nm {

// struct virtio_net_hdr (virtio 1.0, little-endian; also what a TAP with
// IFF_VNET_HDR reads and writes on a little-endian host). Without
// VIRTIO_NET_F_MRG_RXBUF it is 10 bytes; with it, 12 (num_buffers follows).
struct VnetHdr {
  uint8_t flags = 0;
  uint8_t gso_type = 0;
  uint16_t hdr_len = 0;
  uint16_t gso_size = 0;
  uint16_t csum_start = 0;
  uint16_t csum_offset = 0;
};
constexpr size_t VNET_HDR_LEN = 10;

constexpr uint8_t VNET_F_NEEDS_CSUM = 1;
constexpr uint8_t VNET_F_DATA_VALID = 2;
constexpr uint8_t VNET_GSO_NONE = 0;
constexpr uint8_t VNET_GSO_TCPV4 = 1;
constexpr uint8_t VNET_GSO_UDP = 3;  // UFO: IP fragmentation, gone from Linux senders since 4.14
constexpr uint8_t VNET_GSO_TCPV6 = 4;
constexpr uint8_t VNET_GSO_UDP_L4 = 5;
constexpr uint8_t VNET_GSO_ECN = 0x80;

// Reads the 10-byte header from wire bytes (unaligned, little-endian).
VnetHdr vnet_hdr_read(const uint8_t *p);
// Writes it (10 bytes).
void vnet_hdr_write(const VnetHdr &h, uint8_t *p);

// Why a frame could not be finished. Each is a drop counter's reason.
enum class OffloadError : uint8_t {
  None = 0,
  BadCsumOffsets,  // csum_start/csum_offset point outside the frame, or into its L2/L3 headers or L4 ports
  BadGsoType,      // a GSO type we do not segment (UFO, unknown)
  BadHeaders,      // the Ethernet/IP/TCP/UDP headers do not parse, or disagree with the GSO type
  BadGsoSize,      // gso_size 0
  SegmentTooLong,  // headers + gso_size do not fit the outgoing buffer
  NoRoom,          // the sink ran out of buffers part way (segments already written are withdrawn by the caller)
};
// A camelCase name for counters ("badCsumOffsets").
const char *offload_error_name(OffloadError e);

// Internet checksum (RFC 1071) helpers, exposed for tests and other drivers.
uint32_t csum_partial(const uint8_t *p, size_t len, uint32_t sum);
uint16_t csum_fold(uint32_t sum);

// Whether a NEEDS_CSUM header's checksum lands inside the frame and outside
// the headers a lookup decides on (Ethernet, VLAN, IP, L4 ports): an
// IPv4/IPv6 frame, csum_start at or after the IP header, and over TCP/UDP
// either that header's checksum field or a start past that header.
bool csum_offsets_ok(const VnetHdr &h, const uint8_t *frame, size_t len);

// Fills in the checksum a NEEDS_CSUM header asks for, in place (BadCsumOffsets
// unless csum_offsets_ok).
OffloadError complete_csum(const VnetHdr &h, uint8_t *frame, size_t len);

// Where segments go: next(len) returns a buffer for one segment of `len`
// bytes, or nullptr when there is no room.
class SegmentSink {
 public:
  virtual uint8_t *next(size_t len) = 0;

 protected:
  ~SegmentSink() = default;
};

struct SegmentResult {
  OffloadError err = OffloadError::None;
  uint32_t segments = 0;  // written to the sink
};

// Cuts a GSO frame into frames of at most max_frame bytes (gso_size payload
// each, less for the last), complete with checksums. The headers are parsed
// from the frame itself (hdr_len is a hint senders get wrong); up to two
// VLAN tags (802.1Q, 802.1ad) are understood. IPv6 extension headers are not
// (BadHeaders).
SegmentResult gso_segment(const VnetHdr &h, const uint8_t *frame, size_t len, size_t max_frame, SegmentSink &sink);

// How many segments gso_segment would write, or 0 when it would fail.
uint32_t gso_segment_count(const VnetHdr &h, const uint8_t *frame, size_t len);

}  // namespace nm
