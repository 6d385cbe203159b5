/**
 * IPv4 and MAC addresses as the L3 modules keep them: an IPv4 address is an
 * unsigned 32-bit number, a MAC six bytes; parsing refuses anything else
 * with a message naming the bad text.
 */

/** An IPv4 prefix: `addr` (host bits may be set, e.g. an interface's own address) and its length. */
export interface Ipv4Prefix {
  readonly addr: number;
  readonly len: number;
}

/** Parses dotted-quad IPv4 text into an unsigned 32-bit number. */
export function parseIpv4(text: string): number {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (!m) throw new RangeError(`'${text}' is not an IPv4 address (expected a.b.c.d)`);
  const b = m.slice(1).map(Number);
  if (b.some((x) => x > 255)) throw new RangeError(`'${text}' is not an IPv4 address (a part is over 255)`);
  return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
}

/** Formats an unsigned 32-bit number as dotted-quad text. */
export function formatIpv4(a: number): string {
  return `${a >>> 24}.${(a >>> 16) & 0xff}.${(a >>> 8) & 0xff}.${a & 0xff}`;
}

/** Parses `a.b.c.d/len`. */
export function parsePrefix(text: string): Ipv4Prefix {
  const slash = text.indexOf('/');
  if (slash < 0) throw new RangeError(`'${text}' has no prefix length (expected a.b.c.d/len, e.g. 10.1.0.1/24)`);
  const lenText = text.slice(slash + 1);
  const len = Number(lenText);
  if (!/^\d{1,2}$/.test(lenText) || len > 32) throw new RangeError(`'${text}': prefix length '${lenText}' is not 0..32`);
  return { addr: parseIpv4(text.slice(0, slash)), len };
}

/** The netmask of a prefix length, as an unsigned number. */
export function maskOf(len: number): number {
  return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
}

/** True when `a` lies in prefix `p`. */
export function inPrefix(a: number, p: Ipv4Prefix): boolean {
  const m = maskOf(p.len);
  return ((a & m) >>> 0) === ((p.addr & m) >>> 0);
}

/** Parses `aa:bb:cc:dd:ee:ff` into six bytes. */
export function parseMac(text: string): Uint8Array {
  const m = /^([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2}):([0-9a-f]{2})$/i.exec(text);
  if (!m) throw new RangeError(`'${text}' is not a MAC address (expected six hex pairs, aa:bb:cc:dd:ee:ff)`);
  return Uint8Array.from(m.slice(1).map((h) => parseInt(h, 16)));
}

/** Formats six bytes as `aa:bb:cc:dd:ee:ff`. */
export function formatMac(b: Uint8Array, off = 0): string {
  const out: string[] = [];
  for (let i = 0; i < 6; i++) out.push(b[off + i]!.toString(16).padStart(2, '0'));
  return out.join(':');
}
