#include "core/offload.h"

#include <cstring>

namespace nm {

namespace {

uint16_t rd16be(const uint8_t *p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t rd32be(const uint8_t *p) { return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3]; }
void wr16be(uint8_t *p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void wr32be(uint8_t *p, uint32_t v) {
  wr16be(p, static_cast<uint16_t>(v >> 16));
  wr16be(p + 2, static_cast<uint16_t>(v));
}
uint16_t rd16le(const uint8_t *p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }
void wr16le(uint8_t *p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}

constexpr uint8_t IPPROTO_TCP_ = 6, IPPROTO_UDP_ = 17;
constexpr uint8_t TCP_FIN = 0x01, TCP_PSH = 0x08, TCP_CWR = 0x80;

// Where the headers of a GSO frame are, parsed from the frame.
struct Parsed {
  size_t l3 = 0, l4 = 0, hlen = 0;  // IP header, L4 header, end of headers
  bool v6 = false, tcp = false;
};

// An IPv4/IPv6 frame behind up to two VLAN tags: 802.1Q, or 802.1ad with
// 802.1Q inside (what the interface drivers put back in front of a frame
// the kernel untagged). Where its IP and L4 headers start and the L4
// protocol (IPv6: the next header, extension headers not walked); false
// when it is not such a frame or is cut short inside its IP header.
struct L3 {
  size_t l3 = 0, l4 = 0;
  uint8_t proto = 0;
  bool v6 = false;
};
bool parse_l3(const uint8_t *f, size_t len, L3 &o) {
  if (len < 14) return false;
  size_t l3 = 14;
  uint16_t et = rd16be(f + 12);
  for (int tags = 0; tags < 2 && (et == 0x8100 || et == 0x88a8); tags++) {
    if (len < l3 + 4) return false;
    et = rd16be(f + l3 + 2);
    l3 += 4;
  }
  if (et == 0x0800) {
    if (len < l3 + 20 || (f[l3] >> 4) != 4) return false;
    const size_t ihl = size_t{f[l3] & 0x0fu} * 4;
    if (ihl < 20 || len < l3 + ihl) return false;
    o.proto = f[l3 + 9];
    o.l4 = l3 + ihl;
    o.v6 = false;
  } else if (et == 0x86dd) {
    if (len < l3 + 40 || (f[l3] >> 4) != 6) return false;
    o.proto = f[l3 + 6];
    o.l4 = l3 + 40;
    o.v6 = true;
  } else {
    return false;
  }
  o.l3 = l3;
  return true;
}

bool parse(const VnetHdr &h, const uint8_t *f, size_t len, Parsed &p) {
  L3 ip;
  if (!parse_l3(f, len, ip)) return false;
  const uint8_t proto = ip.proto;
  const size_t l4 = ip.l4;
  p.v6 = ip.v6;
  const uint8_t g = h.gso_type & static_cast<uint8_t>(~VNET_GSO_ECN);
  if (g == VNET_GSO_TCPV4 || g == VNET_GSO_TCPV6) {
    if (proto != IPPROTO_TCP_ || p.v6 != (g == VNET_GSO_TCPV6)) return false;
    if (len < l4 + 20) return false;
    size_t thl = size_t{static_cast<uint8_t>(f[l4 + 12] >> 4)} * 4;
    if (thl < 20 || len < l4 + thl) return false;
    p.hlen = l4 + thl;
    p.tcp = true;
  } else {
    if (proto != IPPROTO_UDP_ || len < l4 + 8) return false;
    p.hlen = l4 + 8;
    p.tcp = false;
  }
  p.l3 = ip.l3;
  p.l4 = l4;
  return true;
}

// The L4 checksum of one segment, from scratch: pseudo-header + L4 header + payload.
uint16_t l4_csum(const uint8_t *seg, const Parsed &p, size_t seg_len) {
  const size_t l4len = seg_len - p.l4;
  uint32_t sum = 0;
  if (p.v6) {
    sum = csum_partial(seg + p.l3 + 8, 32, 0);
  } else {
    sum = csum_partial(seg + p.l3 + 12, 8, 0);
  }
  sum += p.tcp ? IPPROTO_TCP_ : IPPROTO_UDP_;
  sum += static_cast<uint32_t>(l4len >> 16) + static_cast<uint32_t>(l4len & 0xffff);
  sum = csum_partial(seg + p.l4, l4len, sum);
  uint16_t c = csum_fold(sum);
  if (!p.tcp && c == 0) c = 0xffff;  // UDP: 0 means "no checksum"
  return c;
}

OffloadError check_gso(const VnetHdr &h, const uint8_t *frame, size_t len, Parsed &p, uint32_t &nseg) {
  const uint8_t g = h.gso_type & static_cast<uint8_t>(~VNET_GSO_ECN);
  if (g != VNET_GSO_TCPV4 && g != VNET_GSO_TCPV6 && g != VNET_GSO_UDP_L4) return OffloadError::BadGsoType;
  if (h.gso_size == 0) return OffloadError::BadGsoSize;
  if (!parse(h, frame, len, p)) return OffloadError::BadHeaders;
  const size_t payload = len - p.hlen;
  nseg = payload == 0 ? 1 : static_cast<uint32_t>((payload + h.gso_size - 1) / h.gso_size);
  return OffloadError::None;
}

}  // namespace

VnetHdr vnet_hdr_read(const uint8_t *p) {
  VnetHdr h;
  h.flags = p[0];
  h.gso_type = p[1];
  h.hdr_len = rd16le(p + 2);
  h.gso_size = rd16le(p + 4);
  h.csum_start = rd16le(p + 6);
  h.csum_offset = rd16le(p + 8);
  return h;
}

void vnet_hdr_write(const VnetHdr &h, uint8_t *p) {
  p[0] = h.flags;
  p[1] = h.gso_type;
  wr16le(p + 2, h.hdr_len);
  wr16le(p + 4, h.gso_size);
  wr16le(p + 6, h.csum_start);
  wr16le(p + 8, h.csum_offset);
}

const char *offload_error_name(OffloadError e) {
  switch (e) {
    case OffloadError::None: return "none";
    case OffloadError::BadCsumOffsets: return "badCsumOffsets";
    case OffloadError::BadGsoType: return "badGsoType";
    case OffloadError::BadHeaders: return "badHeaders";
    case OffloadError::BadGsoSize: return "badGsoSize";
    case OffloadError::SegmentTooLong: return "segmentTooLong";
    case OffloadError::NoRoom: return "noRoom";
  }
  return "unknown";
}

uint32_t csum_partial(const uint8_t *p, size_t len, uint32_t sum) {
  uint64_t s = sum;
  size_t i = 0;
  for (; i + 1 < len; i += 2) s += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  if (i < len) s += static_cast<uint32_t>(p[i] << 8);
  while (s >> 32) s = (s & 0xffffffffu) + (s >> 32);
  return static_cast<uint32_t>(s);
}

uint16_t csum_fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum & 0xffff);
}

namespace {

// Where a checksum may be written, for a frame whose sender asked for one:
// the switch writes it after the lookup decided on the frame's headers, so
// it must not land in them. A sender that could point it at a MAC, a VLAN
// tag, an IP header or an L4 port could set those 2 bytes to anything (the
// checksum of data it chose) behind the lookup's back. So: an IPv4/IPv6
// frame (up to two VLAN tags), csum_start at or after the IP header; over
// TCP or UDP either that header's own checksum field (what Linux sends), or
// past that header (an encapsulated packet's, as a guest's tunnel sends).
bool csum_place_ok(const VnetHdr &h, const uint8_t *f, size_t len) {
  L3 ip;
  if (!parse_l3(f, len, ip)) return false;
  const uint8_t proto = ip.proto;
  const size_t l4 = ip.l4;
  const size_t start = h.csum_start, field = start + h.csum_offset;
  if (start < l4) return false;
  if (proto == IPPROTO_TCP_) {
    if (start == l4) return field == l4 + 16;
    if (len < l4 + 20) return false;
    return start >= l4 + size_t{static_cast<uint8_t>(f[l4 + 12] >> 4)} * 4 && start >= l4 + 20;
  }
  if (proto == IPPROTO_UDP_) return start == l4 ? field == l4 + 6 : start >= l4 + 8;
  return true;
}
}  // namespace

bool csum_offsets_ok(const VnetHdr &h, const uint8_t *frame, size_t len) {
  const size_t start = h.csum_start, field = size_t{h.csum_start} + h.csum_offset;
  return start < len && field + 2 <= len && csum_place_ok(h, frame, len);
}

OffloadError complete_csum(const VnetHdr &h, uint8_t *frame, size_t len) {
  if (!csum_offsets_ok(h, frame, len)) return OffloadError::BadCsumOffsets;
  const size_t start = h.csum_start, field = size_t{h.csum_start} + h.csum_offset;
  uint16_t c = csum_fold(csum_partial(frame + start, len - start, 0));
  // a UDP checksum (offset 6) of 0 means "none": send its other form
  if (c == 0 && h.csum_offset == 6) c = 0xffff;
  wr16be(frame + field, c);
  return OffloadError::None;
}

uint32_t gso_segment_count(const VnetHdr &h, const uint8_t *frame, size_t len) {
  Parsed p;
  uint32_t n = 0;
  return check_gso(h, frame, len, p, n) == OffloadError::None ? n : 0;
}

SegmentResult gso_segment(const VnetHdr &h, const uint8_t *frame, size_t len, size_t max_frame, SegmentSink &sink) {
  SegmentResult r;
  Parsed p;
  uint32_t nseg = 0;
  if ((r.err = check_gso(h, frame, len, p, nseg)) != OffloadError::None) return r;
  const size_t mss = h.gso_size;
  if (p.hlen + mss > max_frame && len > max_frame) {
    r.err = OffloadError::SegmentTooLong;
    return r;
  }
  const size_t payload = len - p.hlen;
  const uint32_t seq0 = p.tcp ? rd32be(frame + p.l4 + 4) : 0;
  const uint16_t id0 = p.v6 ? 0 : rd16be(frame + p.l3 + 4);
  const uint8_t flags0 = p.tcp ? frame[p.l4 + 13] : 0;
  for (uint32_t i = 0; i < nseg; i++) {
    const size_t off = size_t{i} * mss;
    const size_t chunk = payload - off < mss ? payload - off : mss;
    const size_t seg_len = p.hlen + chunk;
    uint8_t *s = sink.next(seg_len);
    if (!s) {
      r.err = OffloadError::NoRoom;
      return r;
    }
    std::memcpy(s, frame, p.hlen);
    std::memcpy(s + p.hlen, frame + p.hlen + off, chunk);
    const size_t ip_payload = seg_len - p.l4;
    if (p.v6) {
      wr16be(s + p.l3 + 4, static_cast<uint16_t>(ip_payload));
    } else {
      wr16be(s + p.l3 + 2, static_cast<uint16_t>(seg_len - p.l3));
      wr16be(s + p.l3 + 4, static_cast<uint16_t>(id0 + i));
      wr16be(s + p.l3 + 10, 0);
      wr16be(s + p.l3 + 10, csum_fold(csum_partial(s + p.l3, p.l4 - p.l3, 0)));
    }
    if (p.tcp) {
      wr32be(s + p.l4 + 4, seq0 + static_cast<uint32_t>(off));
      uint8_t fl = flags0;
      if (i != 0) fl &= static_cast<uint8_t>(~TCP_CWR);
      if (i + 1 != nseg) fl &= static_cast<uint8_t>(~(TCP_FIN | TCP_PSH));
      s[p.l4 + 13] = fl;
      wr16be(s + p.l4 + 16, 0);
      wr16be(s + p.l4 + 16, l4_csum(s, p, seg_len));
    } else {
      wr16be(s + p.l4 + 4, static_cast<uint16_t>(ip_payload));
      wr16be(s + p.l4 + 6, 0);
      wr16be(s + p.l4 + 6, l4_csum(s, p, seg_len));
    }
    r.segments++;
  }
  return r;
}

}  // namespace nm
