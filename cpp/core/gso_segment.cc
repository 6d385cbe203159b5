#include "core/gso_segment.h"

#include <cstring>

namespace nm::afp {

namespace {
uint16_t rd16(const uint8_t *p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t rd32(const uint8_t *p) { return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3]; }
void wr16(uint8_t *p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void wr32(uint8_t *p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}
// Offset of the L3 header after Ethernet and up to two VLAN tags, with its ethertype.
bool l3_of(const uint8_t *f, size_t len, size_t &off, uint16_t &type) {
  off = 12;
  for (int tags = 0; tags < 3; tags++) {
    if (len < off + 2) return false;
    type = rd16(f + off);
    if (type != 0x8100 && type != 0x88a8) {
      off += 2;
      return true;
    }
    off += 4;
  }
  return false;
}
}  // namespace

uint32_t csum_add(uint32_t sum, const uint8_t *p, size_t len) {
  uint64_t s = sum;
  size_t i = 0;
  for (; i + 1 < len; i += 2) s += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  if (i < len) s += static_cast<uint32_t>(p[i] << 8);
  while (s >> 32) s = (s & 0xffffffff) + (s >> 32);
  return static_cast<uint32_t>(s);
}

uint16_t csum_fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

OffloadStatus complete_csum(uint8_t *frame, size_t len, const virtio_net_hdr &h) {
  size_t start = h.csum_start, field = size_t{h.csum_start} + h.csum_offset;
  if (start >= len || field + 2 > len) return OffloadStatus::bad_header;
  uint16_t c = static_cast<uint16_t>(~csum_fold(csum_add(0, frame + start, len - start)));
  // UDP writes 0 as 0xffff (0 means "no checksum"); TCP accepts either
  wr16(frame + field, c);
  return OffloadStatus::ok;
}

OffloadStatus plan_gso(const uint8_t *f, size_t len, const virtio_net_hdr &h, GsoPlan &p) {
  const uint8_t type = h.gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
  if (type != VIRTIO_NET_HDR_GSO_TCPV4 && type != VIRTIO_NET_HDR_GSO_TCPV6) return OffloadStatus::unsupported_gso;
  uint16_t et = 0;
  if (!l3_of(f, len, p.l3, et)) return OffloadStatus::bad_header;
  p.ipv6 = type == VIRTIO_NET_HDR_GSO_TCPV6;
  if (et != (p.ipv6 ? 0x86dd : 0x0800)) return OffloadStatus::bad_header;
  // the TCP header: csum_start when the kernel gave it, else after a plain IP header
  if (h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
    p.l4 = h.csum_start;
  } else if (p.ipv6) {
    p.l4 = p.l3 + 40;
  } else {
    if (len < p.l3 + 20) return OffloadStatus::bad_header;
    p.l4 = p.l3 + size_t{static_cast<uint8_t>(f[p.l3] & 0x0f)} * 4;
  }
  if (p.l4 < p.l3 + (p.ipv6 ? 40 : 20) || len < p.l4 + 20) return OffloadStatus::bad_header;
  if (!p.ipv6 && (f[p.l3] >> 4) != 4) return OffloadStatus::bad_header;
  p.hdrs = p.l4 + size_t{static_cast<uint8_t>(f[p.l4 + 12] >> 4)} * 4;
  if (p.hdrs < p.l4 + 20 || p.hdrs > len) return OffloadStatus::bad_header;
  p.mss = h.gso_size;
  if (p.mss == 0) return OffloadStatus::bad_header;
  size_t payload = len - p.hdrs;
  size_t n = payload == 0 ? 1 : (payload + p.mss - 1) / p.mss;
  if (n > 65535) return OffloadStatus::too_many_segments;
  p.segments = static_cast<uint32_t>(n);
  return OffloadStatus::ok;
}

size_t write_segment(const uint8_t *f, size_t len, const GsoPlan &p, uint32_t i, uint8_t *d) {
  const size_t off = p.hdrs + size_t{i} * p.mss;
  const size_t chunk = off >= len ? 0 : (len - off < p.mss ? len - off : p.mss);
  const bool last = i + 1 == p.segments;
  std::memcpy(d, f, p.hdrs);
  std::memcpy(d + p.hdrs, f + off, chunk);
  const size_t total = p.hdrs + chunk;
  const size_t l4len = total - p.l4;
  uint8_t *ip = d + p.l3;
  uint32_t pseudo = 0;
  if (p.ipv6) {
    wr16(ip + 4, static_cast<uint16_t>(total - p.l3 - 40));
    pseudo = csum_add(pseudo, ip + 8, 32);
  } else {
    const size_t ihl = size_t{static_cast<uint8_t>(ip[0] & 0x0f)} * 4;
    wr16(ip + 2, static_cast<uint16_t>(total - p.l3));
    wr16(ip + 4, static_cast<uint16_t>(rd16(ip + 4) + i));
    wr16(ip + 10, 0);
    wr16(ip + 10, static_cast<uint16_t>(~csum_fold(csum_add(0, ip, ihl))));
    pseudo = csum_add(pseudo, ip + 12, 8);
  }
  uint8_t *tcp = d + p.l4;
  wr32(tcp + 4, rd32(tcp + 4) + static_cast<uint32_t>(i * p.mss));
  if (!last) tcp[13] &= static_cast<uint8_t>(~(0x01 | 0x08));  // FIN, PSH
  if (i != 0) tcp[13] &= static_cast<uint8_t>(~0x80);           // CWR
  uint8_t ph[4] = {0, 6, static_cast<uint8_t>(l4len >> 8), static_cast<uint8_t>(l4len)};
  pseudo = csum_add(pseudo, ph, 4);
  wr16(tcp + 16, 0);
  wr16(tcp + 16, static_cast<uint16_t>(~csum_fold(csum_add(pseudo, tcp, l4len))));
  return total;
}

}  // namespace nm::afp
