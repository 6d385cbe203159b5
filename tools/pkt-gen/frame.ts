/**
 * pkt-gen's generated frame: Ethernet + IPv4 (or IPv6) + UDP + a repeated
 * text payload, the Internet checksum helpers (RFC 1071) and the incremental
 * updates (RFC 1624) used to rewrite addresses, ports, lengths and sequence
 * numbers in place while keeping every checksum valid.
 *
 * Layout built by {@link buildFrame} (offsets in bytes):
 *
 * | af | Ethernet | IP header | UDP header | payload |
 * |----|----------|-----------|------------|---------|
 * | 4  | 0..13 (type 0x0800) | 14..33: v4, IHL 5, TOS 0x10 (IPTOS_LOWDELAY), total length = len-14, id 0, DF, TTL 64, proto 17, header checksum | 34..41 | 42.. |
 * | 6  | 0..13 (type 0x86dd) | 14..53: version 6, flow 0, payload length = len-54, next header 17, hop limit 64 | 54..61 | 62.. |
 *
 * The UDP length is `len - 34` (IPv4) or `len - 54` (IPv6); the UDP checksum
 * covers the pseudo-header. The payload repeats {@link DEFAULT_PAYLOAD}
 * (or {@link INDIRECT_PAYLOAD} with `-I`) and its last byte is NUL.
 *
 * @module
 */

import {
  type AddressFamily,
  AddressError,
  ipv4ToBytes,
  parseIp,
  parseMac,
} from './net.js';

export {
  type AddressFamily,
  type IpRange,
  AddressError,
  parseMac,
  formatMac,
  parseIpv4,
  formatIpv4,
  parseIpv6,
  formatIpv6,
  parseIp,
  formatIp,
  parsePort,
  parseIpRange,
  isRange,
} from './net.js';
export { readFirstPcapPacket, PcapError } from './pcap.js';

/** pkt-gen's payload text (`default_payload` in pkt-gen.c). */
export const DEFAULT_PAYLOAD = 'netmap pkt-gen DIRECT payload\nhttp://info.iet.unipi.it/~luigi/netmap/ ';
/** pkt-gen's payload text with `-I` (`indirect_payload`). */
export const INDIRECT_PAYLOAD = 'netmap pkt-gen indirect payload\nhttp://info.iet.unipi.it/~luigi/netmap/ ';

const asciiBytes = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0) & 0xff);
const DEFAULT_BYTES = asciiBytes(DEFAULT_PAYLOAD);
const INDIRECT_BYTES = asciiBytes(INDIRECT_PAYLOAD);

/** Ethernet header length. */
export const ETH_HLEN = 14;
/** Offset of the UDP header in an IPv4 frame built by {@link buildFrame}. */
export const UDP_OFF_V4 = 34;
/** Offset of the UDP header in an IPv6 frame built by {@link buildFrame}. */
export const UDP_OFF_V6 = 54;
/** Offset of the UDP payload in an IPv4 frame (pkt-gen's "offset 42"). */
export const PAYLOAD_OFF_V4 = 42;
/** Offset of the UDP payload in an IPv6 frame. */
export const PAYLOAD_OFF_V6 = 62;
/** Smallest frame length pkt-gen accepts with `-l`. */
export const MIN_FRAME_LEN = 16;
/** Largest frame length pkt-gen accepts with `-l` (MAX_PKTSIZE). */
export const MAX_FRAME_LEN = 65536;

const ETHERTYPE_IP = 0x0800;
const ETHERTYPE_IPV6 = 0x86dd;
const IPPROTO_UDP = 17;

// ---------------------------------------------------------------------------
// Checksums

/**
 * Ones'-complement sum (RFC 1071) of `len` bytes of `buf` from `off`, taken
 * as big-endian 16-bit words (an odd last byte is the high byte of a word
 * padded with zero), added to `initial`. Returns the folded 16-bit sum.
 */
export function onesSum(buf: Uint8Array, off: number, len: number, initial = 0): number {
  let sum = initial;
  const end = off + len;
  let i = off;
  for (; i + 1 < end; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
  if (i < end) sum += buf[i]! << 8;
  return fold(sum);
}

function fold(sum: number): number {
  let s = sum;
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}

/**
 * Internet checksum of `len` bytes at `off`: the complement of their
 * ones'-complement sum. Over a header whose checksum field is zero it gives the
 * value to store; over a header with a valid checksum in place it gives 0.
 */
export function ipChecksum(buf: Uint8Array, off: number, len: number): number {
  return ~onesSum(buf, off, len) & 0xffff;
}

/**
 * UDP checksum (complement of the ones'-complement sum over the IPv4 or IPv6
 * pseudo-header and `udpLen` bytes of UDP header + data at `udpOff`), as it
 * currently reads: with the checksum field zeroed the result is the value to
 * store (write 0xffff for 0), with a valid checksum in place the result is 0.
 *
 * @param src source address, 4 (IPv4) or 16 (IPv6) network-order bytes
 * @param dst destination address, same length as `src`
 */
export function udpChecksum(
  buf: Uint8Array,
  udpOff: number,
  udpLen: number,
  src: Uint8Array,
  dst: Uint8Array,
): number {
  if (src.length !== dst.length || (src.length !== 4 && src.length !== 16)) {
    throw new RangeError('udpChecksum: src and dst must both be 4 or 16 bytes');
  }
  let sum = onesSum(src, 0, src.length);
  sum = onesSum(dst, 0, dst.length, sum);
  sum += IPPROTO_UDP + (udpLen & 0xffff) + Math.floor(udpLen / 0x10000);
  return ~onesSum(buf, udpOff, udpLen, sum) & 0xffff;
}

/** A UDP checksum of 0 means "none" (RFC 768), so a computed 0 is sent as 0xffff. */
function udpWire(csum: number): number {
  return csum === 0 ? 0xffff : csum;
}

// ---------------------------------------------------------------------------
// Building

/** A MAC address: colon text or 6 bytes. */
export type MacInput = string | Uint8Array;
/** An IP address: text, an IPv4 address as uint32, or 4/16 network-order bytes. */
export type IpInput = string | number | Uint8Array;

/** What {@link buildFrame} needs. */
export interface FrameSpec {
  srcMac: MacInput;
  dstMac: MacInput;
  srcIp: IpInput;
  dstIp: IpInput;
  srcPort: number;
  dstPort: number;
  /** Frame length excluding CRC, 16..65536 (pkt-gen's `-l`). */
  len: number;
  /** Address family; 4 unless given. */
  af?: AddressFamily;
  /** Use pkt-gen's `indirect` payload text (as with `-I`). */
  indirect?: boolean;
}

function macBytes(m: MacInput): Uint8Array {
  if (typeof m === 'string') return parseMac(m);
  if (m.length !== 6) throw new AddressError(`a MAC address has 6 bytes, got ${m.length}`);
  return m;
}

/** An address as its bytes: text, an IPv4 number, or bytes of the family's length. */
export function ipBytes(ip: IpInput, af: AddressFamily): Uint8Array {
  if (typeof ip === 'string') return parseIp(ip, af);
  if (typeof ip === 'number') {
    if (af !== 4 || !Number.isInteger(ip) || ip < 0 || ip > 0xffffffff) {
      throw new AddressError(`numeric address ${ip} is only valid for IPv4 (0..2^32-1)`);
    }
    return ipv4ToBytes(ip);
  }
  const want = af === 4 ? 4 : 16;
  if (ip.length !== want) throw new AddressError(`an IPv${af} address has ${want} bytes, got ${ip.length}`);
  return ip;
}

/** Throws unless p is a UDP/TCP port number. */
export function checkPort(p: number, what: string): void {
  if (!Number.isInteger(p) || p < 0 || p > 65535) throw new RangeError(`${what} ${p} is not in 0..65535`);
}

function w16(b: Uint8Array, off: number, v: number): void {
  b[off] = (v >>> 8) & 0xff;
  b[off + 1] = v & 0xff;
}

function r16(b: Uint8Array, off: number): number {
  return (b[off]! << 8) | b[off + 1]!;
}

/**
 * Build pkt-gen's UDP frame of exactly `spec.len` bytes.
 *
 * Frames shorter than the headers (len < 42 for IPv4, < 62 for IPv6) are
 * built in full and truncated, with the length fields computed from `len`
 * modulo 2^16, as pkt-gen would send them.
 *
 * @throws RangeError for a length outside 16..65536 or a bad port;
 *         AddressError for a malformed address.
 */
export function buildFrame(spec: FrameSpec): Uint8Array {
  const af: AddressFamily = spec.af ?? 4;
  const len = spec.len;
  if (!Number.isInteger(len) || len < MIN_FRAME_LEN || len > MAX_FRAME_LEN) {
    throw new RangeError(`frame length ${len} is not in ${MIN_FRAME_LEN}..${MAX_FRAME_LEN}`);
  }
  checkPort(spec.srcPort, 'source port');
  checkPort(spec.dstPort, 'destination port');
  const src = ipBytes(spec.srcIp, af);
  const dst = ipBytes(spec.dstIp, af);
  const l4 = af === 4 ? UDP_OFF_V4 : UDP_OFF_V6;
  const payOff = l4 + 8;
  const f = new Uint8Array(Math.max(len, payOff));

  f.set(macBytes(spec.dstMac), 0);
  f.set(macBytes(spec.srcMac), 6);
  w16(f, 12, af === 4 ? ETHERTYPE_IP : ETHERTYPE_IPV6);

  // Payload: the text repeated, last byte of the frame NUL.
  if (len > payOff) {
    const text = spec.indirect ? INDIRECT_BYTES : DEFAULT_BYTES;
    for (let i = payOff; i < len; i += text.length) f.set(text.subarray(0, Math.min(text.length, len - i)), i);
    f[len - 1] = 0;
  }

  const udpLen = (len - l4) & 0xffff;
  if (af === 4) {
    f[14] = 0x45;
    f[15] = 0x10; // IPTOS_LOWDELAY
    w16(f, 16, (len - ETH_HLEN) & 0xffff);
    w16(f, 18, 0); // id
    w16(f, 20, 0x4000); // DF
    f[22] = 64; // IPDEFTTL
    f[23] = IPPROTO_UDP;
    f.set(src, 26);
    f.set(dst, 30);
    w16(f, 24, ipChecksum(f, 14, 20));
  } else {
    f[14] = 0x60;
    w16(f, 18, udpLen);
    f[20] = IPPROTO_UDP;
    f[21] = 64; // IPV6_DEFHLIM
    f.set(src, 22);
    f.set(dst, 38);
  }
  w16(f, l4, spec.srcPort);
  w16(f, l4 + 2, spec.dstPort);
  w16(f, l4 + 4, udpLen);
  const covered = Math.max(8, Math.min(udpLen, len - l4));
  w16(f, l4 + 6, udpWire(udpChecksum(f, l4, covered, src, dst)));
  return len < f.length ? f.slice(0, len) : f;
}

/**
 * Prepend a zeroed virtio-net header of `hdrLen` bytes (pkt-gen's `-H`: 0, 10
 * or 12) to a frame; returns the frame itself for 0.
 */
export function withVnetHeader(frame: Uint8Array, hdrLen: number): Uint8Array {
  if (hdrLen !== 0 && hdrLen !== 10 && hdrLen !== 12) throw new RangeError(`virtio-net header length ${hdrLen} is not 0, 10 or 12`);
  if (hdrLen === 0) return frame;
  const out = new Uint8Array(hdrLen + frame.length);
  out.set(frame, hdrLen);
  return out;
}

// ---------------------------------------------------------------------------
// Inspecting and rewriting

/** Where things are in an Ethernet + IPv4/IPv6 + UDP frame. */
export interface FrameLayout {
  af: AddressFamily;
  /** Offset of the IP header (14). */
  l3: number;
  /** Offset of the UDP header. */
  l4: number;
  /** Offset of the UDP payload (`l4 + 8`). */
  payload: number;
  /** Frame length the IP length field describes (14 + IP total length). */
  len: number;
}

/**
 * Locate the headers of an untagged Ethernet + IPv4/IPv6 + UDP frame.
 *
 * @throws RangeError when the frame is not one (other ethertype, not UDP,
 *         truncated, or length fields beyond the buffer).
 */
export function frameLayout(frame: Uint8Array): FrameLayout {
  if (frame.length < ETH_HLEN + 20) throw new RangeError(`frame of ${frame.length} bytes is too short for Ethernet + IP`);
  const type = r16(frame, 12);
  let af: AddressFamily;
  let l4: number;
  let len: number;
  if (type === ETHERTYPE_IP) {
    af = 4;
    if (frame[14]! >> 4 !== 4) throw new RangeError('not an IPv4 header (version field)');
    const ihl = (frame[14]! & 0x0f) * 4;
    if (ihl < 20) throw new RangeError(`bad IPv4 header length ${ihl}`);
    if (frame[23] !== IPPROTO_UDP) throw new RangeError(`IPv4 protocol ${frame[23]} is not UDP`);
    l4 = ETH_HLEN + ihl;
    len = ETH_HLEN + r16(frame, 16);
  } else if (type === ETHERTYPE_IPV6) {
    af = 6;
    if (frame[20] !== IPPROTO_UDP) throw new RangeError(`IPv6 next header ${frame[20]} is not UDP`);
    l4 = UDP_OFF_V6;
    len = UDP_OFF_V6 + r16(frame, 18);
  } else {
    throw new RangeError(`ethertype 0x${type.toString(16).padStart(4, '0')} is neither IPv4 nor IPv6`);
  }
  if (len < l4 + 8 || len > frame.length) {
    throw new RangeError(`IP length field says ${len} bytes, buffer has ${frame.length} (UDP header needs ${l4 + 8})`);
  }
  return { af, l3: ETH_HLEN, l4, payload: l4 + 8, len };
}

