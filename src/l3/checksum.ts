/**
 * Internet checksums (RFC 1071) and their incremental update (RFC 1624,
 * equation 3): a router or NAT that changes a few 16-bit words of a header
 * fixes the checksum from the old and new words alone, without reading the
 * rest of the packet.
 */

/** Folds a 32-bit-or-wider one's-complement accumulator to 16 bits. */
function fold(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}

/** One's-complement sum of `len` bytes at `off` (big-endian 16-bit words, an odd last byte padded with zero), added to `initial`. */
export function onesSum(buf: Uint8Array, off: number, len: number, initial = 0): number {
  let s = initial;
  const end = off + (len & ~1);
  for (let i = off; i < end; i += 2) s += (buf[i]! << 8) | buf[i + 1]!;
  if (len & 1) s += buf[off + len - 1]! << 8;
  return fold(s);
}

/** The Internet checksum of `len` bytes at `off` (the checksum field itself must be zero or skipped by the caller). */
export function internetChecksum(buf: Uint8Array, off: number, len: number, initial = 0): number {
  return ~onesSum(buf, off, len, initial) & 0xffff;
}

/**
 * RFC 1624 eqn. 3: the checksum `hc` of data in which one 16-bit word changed
 * from `oldWord` to `newWord`: HC' = ~(~HC + ~m + m').
 */
export function csumReplace16(hc: number, oldWord: number, newWord: number): number {
  return ~fold((~hc & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff)) & 0xffff;
}

/** {@link csumReplace16} for a 32-bit field (an IPv4 address): both of its halves. */
export function csumReplace32(hc: number, oldValue: number, newValue: number): number {
  return ~fold((~hc & 0xffff) + (~(oldValue >>> 16) & 0xffff) + (newValue >>> 16) + (~oldValue & 0xffff) + (newValue & 0xffff)) & 0xffff;
}

/** Reads the big-endian 16-bit word at `off`. */
export function get16(buf: Uint8Array, off: number): number {
  return (buf[off]! << 8) | buf[off + 1]!;
}

/** Writes `v` as a big-endian 16-bit word at `off`. */
export function put16(buf: Uint8Array, off: number, v: number): void {
  buf[off] = (v >>> 8) & 0xff;
  buf[off + 1] = v & 0xff;
}

/** Reads the big-endian 32-bit word at `off` as an unsigned number. */
export function get32(buf: Uint8Array, off: number): number {
  return ((buf[off]! << 24) | (buf[off + 1]! << 16) | (buf[off + 2]! << 8) | buf[off + 3]!) >>> 0;
}

/** Writes `v` as a big-endian 32-bit word at `off`. */
export function put32(buf: Uint8Array, off: number, v: number): void {
  buf[off] = (v >>> 24) & 0xff;
  buf[off + 1] = (v >>> 16) & 0xff;
  buf[off + 2] = (v >>> 8) & 0xff;
  buf[off + 3] = v & 0xff;
}
