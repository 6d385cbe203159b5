/**
 * Address parsing and formatting helpers for pkt-gen-ts: MAC addresses,
 * IPv4/IPv6 addresses and pkt-gen's `ip[:port][-ip[:port]]` ranges.
 *
 * All parsers throw {@link AddressError} with a message that quotes the bad
 * text and says what is accepted; the option parser prefixes the flag name.
 *
 * @module
 */

/** Address family as pkt-gen's `-4` / `-6` select it. */
export type AddressFamily = 4 | 6;

/** Thrown by the parsers in this module for malformed addresses or ranges. */
export class AddressError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AddressError';
  }
}

/** Default source range text for IPv4 (pkt-gen's `g.src_ip.name`). */
export const DEFAULT_SRC_IP4 = '10.0.0.1';
/** Default destination range text for IPv4 (pkt-gen's `g.dst_ip.name`). */
export const DEFAULT_DST_IP4 = '10.1.0.1';
/**
 * Default source address for IPv6 (`-6` without `-s`).
 *
 * pkt-gen keeps its IPv4 default text and fails to parse it as IPv6, ending up
 * with `::`; pkt-gen-ts instead uses the unique-local pair fd00::1 -> fd00::2.
 */
export const DEFAULT_SRC_IP6 = 'fd00::1';
/** Default destination address for IPv6 (`-6` without `-d`); see {@link DEFAULT_SRC_IP6}. */
export const DEFAULT_DST_IP6 = 'fd00::2';
/** Default UDP port for both ends when a range gives none. */
export const DEFAULT_PORT = 1234;

// ---------------------------------------------------------------------------
// MAC

/**
 * Parse a MAC address in colon notation (`aa:bb:cc:dd:ee:ff`); like
 * `ether_aton`, each octet may be one or two hex digits, case-insensitive.
 *
 * @throws AddressError when the text is not six hex octets separated by `:`.
 */
export function parseMac(text: string): Uint8Array {
  const parts = text.split(':');
  if (parts.length !== 6 || !parts.every((p) => /^[0-9a-fA-F]{1,2}$/.test(p))) {
    throw new AddressError(
      `invalid MAC address '${text}' (expected six hex octets separated by ':', e.g. 00:1b:21:0a:0b:0c)`,
    );
  }
  return Uint8Array.from(parts.map((p) => parseInt(p, 16)));
}

/** Format 6 bytes as lowercase `aa:bb:cc:dd:ee:ff` (what `ether_ntoa`-style `%02x` gives). */
export function formatMac(mac: ArrayLike<number>): string {
  if (mac.length !== 6) throw new AddressError(`a MAC address has 6 bytes, got ${mac.length}`);
  const out: string[] = [];
  for (let i = 0; i < 6; i++) out.push((mac[i]! & 0xff).toString(16).padStart(2, '0'));
  return out.join(':');
}

// ---------------------------------------------------------------------------
// IPv4

/**
 * Parse a dotted-quad IPv4 address into an unsigned 32-bit integer (host
 * order). Strict like `inet_pton(AF_INET)`: four decimal parts 0..255 and no
 * leading zeros.
 *
 * @throws AddressError for anything else.
 */
export function parseIpv4(text: string): number {
  const parts = text.split('.');
  if (parts.length === 4 && parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255)) {
    return ((Number(parts[0]) << 24) | (Number(parts[1]) << 16) | (Number(parts[2]) << 8) | Number(parts[3])) >>> 0;
  }
  throw new AddressError(`invalid IPv4 address '${text}' (expected dotted decimal a.b.c.d, each 0..255)`);
}

/** Format an unsigned 32-bit integer as a dotted-quad IPv4 address. */
export function formatIpv4(addr: number): string {
  const a = addr >>> 0;
  return `${a >>> 24}.${(a >>> 16) & 0xff}.${(a >>> 8) & 0xff}.${a & 0xff}`;
}

/** IPv4 address as 4 network-order bytes. */
export function ipv4ToBytes(addr: number): Uint8Array {
  const a = addr >>> 0;
  return Uint8Array.of(a >>> 24, (a >>> 16) & 0xff, (a >>> 8) & 0xff, a & 0xff);
}

/** 4 network-order bytes (at `off`) as an unsigned 32-bit integer. */
export function bytesToIpv4(b: ArrayLike<number>, off = 0): number {
  return ((b[off]! << 24) | (b[off + 1]! << 16) | (b[off + 2]! << 8) | b[off + 3]!) >>> 0;
}

// ---------------------------------------------------------------------------
// IPv6

/**
 * Parse an IPv6 address (RFC 4291 text forms, including `::` compression and
 * an embedded dotted-quad tail) into 16 network-order bytes.
 *
 * @throws AddressError when the text is not a valid IPv6 address.
 */
export function parseIpv6(text: string): Uint8Array {
  const bad = (): AddressError =>
    new AddressError(`invalid IPv6 address '${text}' (expected e.g. fd00::1 or 2001:db8::10)`);
  let s = text;
  const tailWords: number[] = [];
  const lastColon = s.lastIndexOf(':');
  if (lastColon < 0) throw bad();
  const last = s.slice(lastColon + 1);
  if (last.includes('.')) {
    let v4: number;
    try {
      v4 = parseIpv4(last);
    } catch {
      throw bad();
    }
    tailWords.push(v4 >>> 16, v4 & 0xffff);
    s = s.slice(0, lastColon + 1);
    if (!s.endsWith('::')) s = s.slice(0, -1);
  }
  const halves = s.split('::');
  if (halves.length > 2) throw bad();
  const toWords = (part: string): number[] => {
    if (part === '') return [];
    return part.split(':').map((g) => {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) throw bad();
      return parseInt(g, 16);
    });
  };
  const head = toWords(halves[0]!);
  let words: number[];
  if (halves.length === 2) {
    const tail = toWords(halves[1]!);
    const n = head.length + tail.length + tailWords.length;
    if (n > 7) throw bad();
    words = [...head, ...new Array<number>(8 - n).fill(0), ...tail, ...tailWords];
  } else {
    words = [...head, ...tailWords];
    if (words.length !== 8) throw bad();
  }
  const out = new Uint8Array(16);
  words.forEach((w, i) => {
    out[2 * i] = w >>> 8;
    out[2 * i + 1] = w & 0xff;
  });
  return out;
}

/**
 * Format 16 bytes as an IPv6 address the way glibc's `inet_ntop` does:
 * lowercase hex, the first longest run (>= 2) of zero groups compressed to
 * `::`, and an IPv4 tail for `::a.b.c.d` / `::ffff:a.b.c.d`.
 */
export function formatIpv6(b: ArrayLike<number>): string {
  if (b.length !== 16) throw new AddressError(`an IPv6 address has 16 bytes, got ${b.length}`);
  const words: number[] = [];
  for (let i = 0; i < 8; i++) words.push((b[2 * i]! << 8) | b[2 * i + 1]!);
  let bestBase = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) {
      bestBase = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (bestLen < 2) bestBase = -1;
  let out = '';
  for (let i = 0; i < 8; i++) {
    if (bestBase >= 0 && i >= bestBase && i < bestBase + bestLen) {
      if (i === bestBase) out += ':';
      continue;
    }
    if (i !== 0) out += ':';
    if (i === 6 && bestBase === 0 && (bestLen === 6 || (bestLen === 5 && words[5] === 0xffff))) {
      out += formatIpv4(bytesToIpv4(b, 12));
      break;
    }
    out += words[i]!.toString(16);
  }
  if (bestBase >= 0 && bestBase + bestLen === 8) out += ':';
  return out;
}

// ---------------------------------------------------------------------------
// Generic helpers

/** Parse an address of the given family into network-order bytes (4 or 16). */
export function parseIp(text: string, af: AddressFamily): Uint8Array {
  return af === 4 ? ipv4ToBytes(parseIpv4(text)) : parseIpv6(text);
}

/** Format network-order bytes (4 or 16) as an address string. */
export function formatIp(bytes: ArrayLike<number>): string {
  if (bytes.length === 4) return formatIpv4(bytesToIpv4(bytes));
  if (bytes.length === 16) return formatIpv6(bytes);
  throw new AddressError(`an IP address has 4 or 16 bytes, got ${bytes.length}`);
}

/**
 * Parse a port like `strtol(s, NULL, 0)` would (decimal, `0x` hex or leading-0
 * octal), but strictly: the whole text must be a number in 0..65535.
 *
 * @throws AddressError otherwise.
 */
export function parsePort(text: string): number {
  let v = NaN;
  if (/^0[xX][0-9a-fA-F]+$/.test(text)) v = parseInt(text.slice(2), 16);
  else if (/^0[0-7]*$/.test(text)) v = parseInt(text, 8);
  else if (/^[1-9][0-9]*$/.test(text)) v = Number(text);
  if (!(v >= 0 && v <= 65535)) {
    throw new AddressError(`invalid port '${text}' (expected an integer in 0..65535)`);
  }
  return v;
}

// ---------------------------------------------------------------------------
// Ranges

/**
 * An address/port range as pkt-gen's `-s` / `-d` describe it.
 *
 * For IPv6, pkt-gen only ever varies one 16-bit group of the address while
 * walking a range: `group` (0..7, default 7) for the start and `endGroup`
 * for the end, written `group@[addr]:port`.
 */
export interface IpRange {
  /** The text as given (pkt-gen prints it on the `src -> dst` startup line). */
  name: string;
  /** Address family the text was parsed for. */
  af: AddressFamily;
  /** First address, canonical text. */
  ipStart: string;
  /** Last address, canonical text (equal to `ipStart` for a single address). */
  ipEnd: string;
  /** First UDP port. */
  portStart: number;
  /** Last UDP port (`>= portStart`). */
  portEnd: number;
  /** IPv6 only: index of the 16-bit group varied for the start address. */
  group?: number;
  /** IPv6 only: index of the 16-bit group varied for the end address. */
  endGroup?: number;
}

function parseGroup(text: string, whole: string): number {
  if (!/^[0-7]$/.test(text)) {
    throw new AddressError(`invalid IPv6 group '${text}' in '${whole}' (expected 0..7 before '@')`);
  }
  return Number(text);
}

interface Endpoint {
  addr: string;
  port?: number;
  group?: number;
}

function parseEndpoint(part: string, af: AddressFamily, whole: string): Endpoint {
  if (part === '') throw new AddressError(`empty address in range '${whole}'`);
  if (af === 4) {
    const colon = part.indexOf(':');
    const addrText = colon < 0 ? part : part.slice(0, colon);
    const ep: Endpoint = { addr: formatIpv4(parseIpv4(addrText)) };
    if (colon >= 0) ep.port = parsePort(part.slice(colon + 1));
    return ep;
  }
  let rest = part;
  let group: number | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    group = parseGroup(rest.slice(0, at), whole);
    rest = rest.slice(at + 1);
  }
  let port: number | undefined;
  let addrText = rest;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0) throw new AddressError(`missing ']' in '${whole}' (expected [addr] or [addr]:port)`);
    addrText = rest.slice(1, close);
    const after = rest.slice(close + 1);
    if (after !== '') {
      if (!after.startsWith(':')) {
        throw new AddressError(`unexpected '${after}' after ']' in '${whole}' (expected [addr]:port)`);
      }
      port = parsePort(after.slice(1));
    }
  }
  const ep: Endpoint = { addr: formatIpv6(parseIpv6(addrText)) };
  if (port !== undefined) ep.port = port;
  if (group !== undefined) ep.group = group;
  return ep;
}

/**
 * Parse pkt-gen's `-s`/`-d` argument: `ip[:port][-ip[:port]]` for IPv4, and
 * `[g@]addr`, `[g@][addr]` or `[g@][addr]:port`, optionally `-` and a second
 * such endpoint, for IPv6. As in pkt-gen the first `-` splits the range, the
 * port defaults to 1234, the end port defaults to the start port, and the
 * ends are swapped when given in decreasing order (IPv4 addresses, ports).
 *
 * @throws AddressError with a message quoting the bad part.
 */
export function parseIpRange(text: string, af: AddressFamily = 4): IpRange {
  const dash = text.indexOf('-');
  const first = dash < 0 ? text : text.slice(0, dash);
  const second = dash < 0 ? undefined : text.slice(dash + 1);
  const a = parseEndpoint(first, af, text);
  const b = second === undefined ? undefined : parseEndpoint(second, af, text);
  let portStart = a.port ?? DEFAULT_PORT;
  let portEnd = b?.port ?? portStart;
  if (portStart > portEnd) [portStart, portEnd] = [portEnd, portStart];
  let ipStart = a.addr;
  let ipEnd = b?.addr ?? a.addr;
  if (af === 4 && parseIpv4(ipStart) > parseIpv4(ipEnd)) [ipStart, ipEnd] = [ipEnd, ipStart];
  const r: IpRange = { name: text, af, ipStart, ipEnd, portStart, portEnd };
  if (af === 6) {
    r.group = a.group ?? 7;
    r.endGroup = b?.group ?? r.group;
  }
  return r;
}

/** True when a range covers more than one address or port (pkt-gen then sets OPT_COPY). */
export function isRange(r: IpRange): boolean {
  return r.ipStart !== r.ipEnd || r.portStart !== r.portEnd;
}
