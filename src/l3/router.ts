/**
 * A static IPv4 router with an optional source NAT, as pure frame
 * processing: {@link Router.handle} takes one Ethernet frame received on an
 * interface, rewrites it in place (MACs, TTL, and for NAT the addresses,
 * ports or echo identifiers) with the checksums updated incrementally (RFC
 * 1624), and hands it, or the frames it answers with (ARP replies and
 * requests, ICMP echo replies, time exceeded), to a {@link FrameSink}. It
 * opens nothing: {@link RouterPorts} (router-ports.ts) runs it between
 * switch ports, and tests run it on plain arrays. Every frame that is not
 * forwarded or answered is counted under a named reason.
 */
import { systemClock, type Clock } from '../vale/clock.js';
import { formatIpv4, formatMac, inPrefix, maskOf, parseIpv4, parseMac, parsePrefix, type Ipv4Prefix } from './addr.js';
import { ArpCache, DEFAULT_ARP_LIMITS, type ArpLimits } from './arp-cache.js';
import { csumReplace16, csumReplace32, get16, get32, internetChecksum, put16, put32 } from './checksum.js';
import { NatTable, type NatEntry, type NatProtocol, type NatTableOptions } from './nat-table.js';

/** One interface of the router: a port on one switch, on one subnet. */
export interface RouterInterfaceConfig {
  /** a name for messages and listings, e.g. the port's name 'vale0:gw' */
  name: string;
  /** the router's address and the subnet's prefix length, e.g. '10.1.0.1/24' */
  address: string;
  /** the interface's MAC (default: 02:00 followed by the four address bytes) */
  mac?: string;
}

/** A static route: `prefix` is reached through the neighbour `via` (on a connected subnet). */
export interface StaticRoute {
  prefix: string;
  via: string;
}

/** Source NAT: what leaves through interface `outside` takes that interface's address. */
export interface NatConfig {
  /** name of the outside interface */
  outside: string;
  /** bound, port range, timeouts and clock of the connection table (the clock defaults to the router's) */
  table?: NatTableOptions;
}

/** Options of a {@link Router}. */
export interface RouterOptions {
  interfaces: readonly RouterInterfaceConfig[];
  routes?: readonly StaticRoute[];
  nat?: NatConfig;
  arp?: Partial<ArpLimits>;
  /**
   * reverse-path filter, as Linux's rp_filter (default 'strict'): a packet
   * is dropped (`dropRpFilter`) unless the route back to its source leaves
   * through the interface it came in on ('strict', rp_filter=1), or through
   * any interface ('loose', 2); 'off' (0) checks nothing
   */
  rpFilter?: 'strict' | 'loose' | 'off';
  /** time source for ARP and NAT ageing (default: the monotonic system clock) */
  clock?: Clock;
}

/**
 * Where the router's output goes: frame `frame` (its first `len` bytes) to
 * interface `ifIndex`. Copy it before returning (the router reuses the
 * bytes); return false when there is no room (counted as `dropTxFull`).
 */
export type FrameSink = (ifIndex: number, frame: Uint8Array, len: number) => boolean;

/** What the router counts; every `drop*` is a frame lost for that reason, `ignored*` frames were not the router's. */
export interface RouterCounters {
  rxFrames: number;
  /** handed to the output port (a frame held for ARP counts when it leaves) */
  forwarded: number;
  arpRepliesSent: number;
  arpRequestsSent: number;
  arpLearned: number;
  echoRepliesSent: number;
  icmpTimeExceededSent: number;
  natTranslatedOut: number;
  natTranslatedIn: number;
  /** unicast to another MAC, multicast, or broadcast other than ARP (the switch floods them to every port) */
  ignoredNotForUs: number;
  /** ARP not asking for the router's address */
  ignoredArp: number;
  dropTooShort: number;
  /** from a group (multicast, broadcast) or all-zero source MAC: no host sends from one, and an answer to it would be flooded to every port */
  dropBadSrcMac: number;
  /** neither IPv4 nor ARP (IPv6, VLAN tags, ...): the router routes IPv4 */
  dropUnsupportedEthertype: number;
  dropBadArp: number;
  /** neighbours forgotten before their time to make room in a full ARP table (at most `arp.maxEntries` per interface) */
  arpEvicted: number;
  dropBadIpHeader: number;
  dropBadIpChecksum: number;
  /** IPv4 options are not forwarded (header longer than 20 bytes) */
  dropIpOptions: number;
  /** to a broadcast, multicast or 0.x address, or from one (any of the router's subnets' broadcasts), or from one of the router's own addresses */
  dropNotRoutable: number;
  dropNoRoute: number;
  /** TTL would reach 0: answered with ICMP time exceeded (when allowed) and dropped */
  dropTtlExceeded: number;
  /** to the router itself, but not an echo request */
  dropLocalDelivery: number;
  dropArpQueueFull: number;
  /** its source had `arp.pendingPerSource` frames waiting for ARP on the output interface already */
  dropArpSourceLimit: number;
  dropArpUnresolved: number;
  dropTooLong: number;
  dropTxFull: number;
  /** arriving on the NAT's outside interface for an inside address (no port forwarding) */
  dropOutsideToInside: number;
  /** to the outside address with no matching connection-table entry */
  dropNatNoMapping: number;
  /** fragments, ICMP other than echo, protocols other than TCP/UDP/ICMP across the NAT */
  dropNatUnsupported: number;
  dropNatTableFull: number;
  /** a new flow of an inside host at `nat.table.maxEntriesPerHost`, every one of its flows answered */
  dropNatHostLimit: number;
  dropNatPortsExhausted: number;
  /** the source is not reachable back through the interface the packet came in on (see `rpFilter`): a spoofed source */
  dropRpFilter: number;
}

/** The router's view of one interface. */
export interface RouterInterface {
  readonly index: number;
  readonly name: string;
  readonly address: string;
  readonly prefix: string;
  readonly mac: string;
}

interface Iface {
  index: number;
  name: string;
  addr: number;
  prefix: Ipv4Prefix;
  bcast: number;
  mac: Uint8Array;
  arp: ArpCache;
}

interface Route {
  prefix: Ipv4Prefix;
  mask: number;
  iface: Iface;
  via: number; // 0: directly connected
}

const ETH_IPV4 = 0x0800;
const ETH_ARP = 0x0806;
const IP = 14; // offset of the IPv4 header in a frame
const PROTO_ICMP = 1;
const PROTO_TCP = 6;
const PROTO_UDP = 17;
const BCAST = Uint8Array.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
const ZERO_MAC = new Uint8Array(6);
const MIN_FRAME = 60;
const DEFAULT_TTL = 64;

function newCounters(): RouterCounters {
  return {
    rxFrames: 0, forwarded: 0, arpRepliesSent: 0, arpRequestsSent: 0, arpLearned: 0, echoRepliesSent: 0,
    icmpTimeExceededSent: 0, natTranslatedOut: 0, natTranslatedIn: 0, ignoredNotForUs: 0, ignoredArp: 0,
    dropTooShort: 0, dropBadSrcMac: 0, dropUnsupportedEthertype: 0, dropBadArp: 0, arpEvicted: 0, dropBadIpHeader: 0,
    dropBadIpChecksum: 0, dropIpOptions: 0, dropNotRoutable: 0, dropNoRoute: 0, dropTtlExceeded: 0,
    dropLocalDelivery: 0, dropArpQueueFull: 0, dropArpSourceLimit: 0, dropArpUnresolved: 0, dropTooLong: 0, dropTxFull: 0,
    dropOutsideToInside: 0, dropNatNoMapping: 0, dropNatUnsupported: 0, dropNatTableFull: 0, dropNatHostLimit: 0,
    dropNatPortsExhausted: 0, dropRpFilter: 0,
  };
}

function macEq(b: Uint8Array, off: number, mac: Uint8Array): boolean {
  for (let i = 0; i < 6; i++) if (b[off + i] !== mac[i]) return false;
  return true;
}

/** Not a unicast host address: 0.0.0.0/8, multicast and reserved (224/3), 127/8. */
function notRoutable(a: number): boolean {
  const top = a >>> 24;
  return top === 0 || top === 127 || top >= 224;
}

/**
 * A static IPv4 router, optionally a source NAT: pure frame processing
 * (see the module comment); {@link RouterPorts} runs it on switch ports.
 *
 * ```ts
 * const router = new Router({
 *   interfaces: [{ name: 'vale0:gw', address: '10.1.0.1/24' }, { name: 'vale1:gw', address: '192.0.2.1/24' }],
 *   nat: { outside: 'vale1:gw' },                 // optional: source NAT behind 192.0.2.1
 * });
 * const run = await RouterPorts.start(router, { ports: ['vale0:gw', 'vale1:gw'] });
 * console.log(router.counters(), router.natEntries());
 * ```
 */
export class Router {
  private readonly ifs: Iface[];
  private readonly routes: Route[];
  private readonly clock: Clock;
  private readonly nat: NatTable | undefined;
  private readonly natIf: Iface | undefined;
  private readonly c = newCounters();
  private readonly arpLimits: ArpLimits;
  private readonly rpFilter: 'strict' | 'loose' | 'off';
  private readonly scratch = new Uint8Array(2048);
  private sink: FrameSink = () => false;
  /** largest frame an interface's ring takes (the sink's buffers); 0: no limit known */
  private maxFrame = 0;

  constructor(opts: RouterOptions) {
    if (!opts.interfaces.length) throw new RangeError('a router needs at least one interface');
    this.clock = opts.clock ?? systemClock;
    const limits: ArpLimits = { ...DEFAULT_ARP_LIMITS, ...opts.arp };
    for (const [k, v] of Object.entries(limits)) {
      if (!(v > 0) || !Number.isFinite(v)) throw new RangeError(`router ARP limit ${k} ${v} is not a positive number`);
    }
    this.arpLimits = limits;
    this.rpFilter = opts.rpFilter ?? 'strict';
    if (!['strict', 'loose', 'off'].includes(this.rpFilter)) throw new RangeError(`router rpFilter '${String(opts.rpFilter)}' is not 'strict', 'loose' or 'off'`);
    const names = new Set<string>();
    this.ifs = opts.interfaces.map((c, index) => {
      if (names.has(c.name)) throw new RangeError(`router interface '${c.name}' is listed twice`);
      names.add(c.name);
      const prefix = parsePrefix(c.address);
      if (prefix.len > 30) throw new RangeError(`router interface '${c.name}': ${c.address} leaves no room for neighbours (use a prefix of /30 or shorter)`);
      const m = maskOf(prefix.len);
      const addr = prefix.addr;
      const host = (addr & ~m) >>> 0;
      if (host === 0 || host === ~m >>> 0) {
        throw new RangeError(`router interface '${c.name}': ${c.address} is the subnet's network or broadcast address`);
      }
      const mac = c.mac ? parseMac(c.mac) : Uint8Array.from([0x02, 0x00, addr >>> 24, (addr >>> 16) & 0xff, (addr >>> 8) & 0xff, addr & 0xff]);
      if (mac[0]! & 1) throw new RangeError(`router interface '${c.name}': ${c.mac} is a multicast MAC`);
      return { index, name: c.name, addr, prefix, bcast: (addr | ~m) >>> 0, mac, arp: new ArpCache(limits) };
    });
    this.routes = this.ifs.map((i) => ({ prefix: i.prefix, mask: maskOf(i.prefix.len), iface: i, via: 0 }));
    for (const r of opts.routes ?? []) {
      const prefix = parsePrefix(r.prefix);
      const via = parseIpv4(r.via);
      const iface = this.ifs.find((i) => inPrefix(via, i.prefix));
      if (!iface) throw new RangeError(`route ${r.prefix} via ${r.via}: ${r.via} is on none of the router's subnets (${this.ifs.map((i) => `${formatIpv4(i.prefix.addr)}/${i.prefix.len}`).join(', ')})`);
      this.routes.push({ prefix, mask: maskOf(prefix.len), iface, via });
    }
    // longest prefix first: the first match wins
    this.routes.sort((a, b) => b.prefix.len - a.prefix.len);
    if (opts.nat) {
      const natIf = this.ifs.find((i) => i.name === opts.nat!.outside);
      if (!natIf) throw new RangeError(`NAT outside interface '${opts.nat.outside}' is not one of the router's (${this.ifs.map((i) => i.name).join(', ')})`);
      this.natIf = natIf;
      this.nat = new NatTable({ clock: this.clock, ...opts.nat.table });
    }
  }

  /** The interfaces, in the order configured (their index is what {@link Router.handle} and the sink use). */
  get interfaces(): RouterInterface[] {
    return this.ifs.map((i) => ({
      index: i.index,
      name: i.name,
      address: formatIpv4(i.addr),
      prefix: `${formatIpv4((i.addr & maskOf(i.prefix.len)) >>> 0)}/${i.prefix.len}`,
      mac: formatMac(i.mac),
    }));
  }

  /** Sets where output goes, and the largest frame it takes (0: any). */
  attach(sink: FrameSink, maxFrame = 0): void {
    this.sink = sink;
    this.maxFrame = maxFrame;
  }

  /** A copy of the counters, the NAT table's included (as `nat*`). */
  counters(): RouterCounters & { natEntries: number; natEntriesCreated: number; natEntriesExpired: number; natEntriesEvicted: number } {
    const t = this.nat?.counters();
    return { ...this.c, natEntries: this.nat?.size ?? 0, natEntriesCreated: t?.entriesCreated ?? 0, natEntriesExpired: t?.entriesExpired ?? 0, natEntriesEvicted: t?.entriesEvicted ?? 0 };
  }

  /** The NAT's live connection-table entries (empty without NAT). */
  natEntries(): NatEntry[] {
    return this.nat?.entries() ?? [];
  }

  /** The learned neighbours of each interface. */
  neighbours(): { iface: string; ip: string; mac: string; expiresInMs: number }[] {
    const now = this.clock.nowMs();
    return this.ifs.flatMap((i) => i.arp.list(now).map((e) => ({ iface: i.name, ip: formatIpv4(e.ip), mac: formatMac(e.mac), expiresInMs: e.expiresInMs })));
  }

  /**
   * Housekeeping, to call every few hundred ms: repeats ARP requests for
   * unresolved next hops, drops (and counts) frames that waited too long,
   * ages ARP entries and NAT flows.
   */
  tick(): void {
    const now = this.clock.nowMs();
    for (const i of this.ifs) {
      i.arp.expire(now);
      for (const [ip, p] of i.arp.pending) {
        if (now - p.since >= this.arpLimits.pendingTimeoutMs) {
          this.c.dropArpUnresolved += i.arp.release(ip).length;
        } else if (now - p.lastRequest >= this.arpLimits.retryMs) {
          p.lastRequest = now;
          this.sendArpRequest(i, ip);
        }
      }
    }
    this.nat?.sweep();
  }

  /**
   * Processes one frame received on interface `ifIndex`. The frame may be
   * rewritten in place and handed to the sink; it is not kept after the
   * call returns (frames waiting for ARP are copied).
   */
  handle(ifIndex: number, f: Uint8Array): void {
    const inIf = this.ifs[ifIndex];
    if (!inIf) throw new RangeError(`router has no interface ${ifIndex}`);
    this.c.rxFrames++;
    if (f.length < 14) {
      this.c.dropTooShort++;
      return;
    }
    // echo replies and ICMP errors go back to the source MAC: a broadcast one
    // would have the switch flood every answer (as a Linux bridge, drop it)
    if (f[6]! & 1 || macEq(f, 6, ZERO_MAC)) {
      this.c.dropBadSrcMac++;
      return;
    }
    const toUs = macEq(f, 0, inIf.mac);
    const type = get16(f, 12);
    if (type === ETH_ARP && (toUs || macEq(f, 0, BCAST))) return this.arp(inIf, f);
    if (!toUs) {
      this.c.ignoredNotForUs++;
      return;
    }
    if (type !== ETH_IPV4) {
      this.c.dropUnsupportedEthertype++;
      return;
    }
    this.ipv4(inIf, f);
  }

  private arp(i: Iface, f: Uint8Array): void {
    if (f.length < 42) {
      this.c.dropTooShort++;
      return;
    }
    if (get16(f, 14) !== 1 || get16(f, 16) !== ETH_IPV4 || f[18] !== 6 || f[19] !== 4) {
      this.c.dropBadArp++;
      return;
    }
    const op = get16(f, 20);
    const spa = get32(f, 28);
    const tpa = get32(f, 38);
    const sha = f.subarray(22, 28);
    // a sender that claims a group MAC, the router's own address, or an address off this subnet
    // is not learned: it would let any host poison the table
    const senderOk = (sha[0]! & 1) === 0 && spa !== i.addr && spa !== i.bcast && inPrefix(spa, i.prefix) && !macEq(sha, 0, ZERO_MAC);
    if ((op !== 1 && op !== 2) || !senderOk) {
      this.c.dropBadArp++;
      return;
    }
    const now = this.clock.nowMs();
    // learn only from ARP that is about us, or refresh what we know (Linux's rule)
    if (tpa === i.addr || i.arp.has(spa)) {
      if (i.arp.learn(spa, sha, now) === 'evicted') this.c.arpEvicted++;
      this.c.arpLearned++;
      for (const q of i.arp.release(spa)) if (this.send(i, q, q.length, sha)) this.c.forwarded++;
    }
    if (op === 1 && tpa === i.addr) {
      if (this.emit(i.index, this.arpFrame(i, 2, sha, sha, spa), MIN_FRAME)) this.c.arpRepliesSent++;
      return;
    }
    if (tpa !== i.addr) this.c.ignoredArp++;
  }

  /**
   * Sends a gratuitous ARP (a request for its own address) on every
   * interface: the switches learn the gateway MACs at once, so the first
   * frames for the gateway are not flooded, and hosts refresh stale entries.
   */
  announce(): void {
    for (const i of this.ifs) this.sendArpRequest(i, i.addr);
  }

  private sendArpRequest(i: Iface, ip: number): void {
    if (this.emit(i.index, this.arpFrame(i, 1, BCAST, undefined, ip), MIN_FRAME)) this.c.arpRequestsSent++;
  }

  /**
   * An ARP frame from `i`'s MAC and address, in the scratch buffer (MIN_FRAME
   * bytes): `op` 1 (request, `tha` left zero) or 2 (reply), to `ethDst`.
   */
  private arpFrame(i: Iface, op: 1 | 2, ethDst: Uint8Array, tha: Uint8Array | undefined, tpa: number): Uint8Array {
    const r = this.scratch;
    r.fill(0, 0, MIN_FRAME);
    r.set(ethDst, 0);
    r.set(i.mac, 6);
    put16(r, 12, ETH_ARP);
    put16(r, 14, 1); // hardware type: Ethernet
    put16(r, 16, ETH_IPV4);
    r[18] = 6;
    r[19] = 4;
    put16(r, 20, op);
    r.set(i.mac, 22);
    put32(r, 28, i.addr);
    if (tha) r.set(tha, 32);
    put32(r, 38, tpa);
    return r;
  }

  private ipv4(inIf: Iface, f: Uint8Array): void {
    if (f.length < IP + 20) {
      this.c.dropTooShort++;
      return;
    }
    const vihl = f[IP]!;
    const hl = (vihl & 0x0f) * 4;
    const total = get16(f, IP + 2);
    if (vihl >>> 4 !== 4 || hl < 20 || total < hl || IP + total > f.length) {
      this.c.dropBadIpHeader++;
      return;
    }
    if (internetChecksum(f, IP, hl) !== 0) {
      this.c.dropBadIpChecksum++;
      return;
    }
    // Ethernet padding after the IP packet is not carried on
    const len = IP + total;
    const src = get32(f, IP + 12);
    let dst = get32(f, IP + 16);
    // a source that is one of the router's own addresses is a forgery (Linux
    // drops it as a martian): let through, a frame from inside with the NAT's
    // outside address would leave untranslated, and the answers to it come
    // back into whichever inside host's mapping has that port. A subnet's
    // broadcast address, any of them, is no sender either: the answers to it
    // would go to every host of that subnet (Linux: a martian too)
    if (notRoutable(src) || this.ifs.some((i) => i.addr === src || i.bcast === src)) {
      this.c.dropNotRoutable++;
      return;
    }
    // a source from another subnet would be routed (or NATed, taking a
    // share of the table in that host's name) and its answers sent to
    // whoever really has it: Linux's rp_filter, checked before anything
    // is answered or translated
    if (this.rpFilter !== 'off') {
      const back = this.route(src);
      if (!back || (this.rpFilter === 'strict' && back.iface !== inIf)) {
        this.c.dropRpFilter++;
        return;
      }
    }
    const nat = this.nat;
    const fromOutside = nat !== undefined && inIf === this.natIf;
    // a reply to a NATed flow: checked below on the inside address it is
    // for, and translated only once it passed every check, so one that is
    // dropped moves no flow on (state, lifetime, packets in) and is counted
    // once, as the drop
    let natIn = false;
    if (fromOutside && dst === inIf.addr) {
      // a reply to a NATed flow, or something for the router itself
      const flow = this.natInboundFlow(f, hl, total);
      if (flow === 'local') return this.local(inIf, f, hl, total);
      if (typeof flow === 'string') {
        this.c[flow]++;
        return;
      }
      natIn = true;
      dst = flow.insideAddr;
    } else {
      if (this.ifs.some((i) => i.addr === dst)) return this.local(inIf, f, hl, total);
      if (fromOutside) {
        this.c.dropOutsideToInside++;
        return;
      }
    }
    if (notRoutable(dst) || this.ifs.some((i) => i.bcast === dst)) {
      this.c.dropNotRoutable++;
      return;
    }
    if (hl !== 20) {
      this.c.dropIpOptions++;
      return;
    }
    const route = this.route(dst);
    if (!route) {
      this.c.dropNoRoute++;
      return;
    }
    if (f[IP + 8]! <= 1) {
      // a reply to a NATed flow is quoted as it came (to its sender outside)
      this.timeExceeded(inIf, f, hl, total);
      return;
    }
    if (natIn) {
      const r = this.natInbound(f, hl, total);
      if (r !== 'ok') {
        this.c[r]++;
        return;
      }
    }
    const outIf = route.iface;
    if (nat && outIf === this.natIf && inIf !== this.natIf) {
      const r = this.natOutbound(f, hl, total);
      if (r !== 'ok') {
        this.c[r]++;
        return;
      }
    }
    // TTL: the word it shares with the protocol byte changes, so does the checksum (RFC 1624)
    const oldWord = get16(f, IP + 8);
    f[IP + 8] = f[IP + 8]! - 1;
    put16(f, IP + 10, csumReplace16(get16(f, IP + 10), oldWord, get16(f, IP + 8)));
    this.toNextHop(outIf, route.via || dst, src, f, len);
  }

  private route(dst: number): Route | undefined {
    for (const r of this.routes) if (((dst & r.mask) >>> 0) === ((r.prefix.addr & r.mask) >>> 0)) return r;
    return undefined;
  }

  /** Sends `f` to `nextHop` on `outIf`, or holds it while ARP resolves that address (`src`: its source as received, before NAT). */
  private toNextHop(outIf: Iface, nextHop: number, src: number, f: Uint8Array, len: number): void {
    const now = this.clock.nowMs();
    const mac = outIf.arp.lookup(nextHop, now);
    if (mac) {
      if (this.send(outIf, f, len, mac)) this.c.forwarded++;
      return;
    }
    const held = outIf.arp.hold(nextHop, src, f.subarray(0, len), now);
    if (held === 'full') this.c.dropArpQueueFull++;
    else if (held === 'sourceFull') this.c.dropArpSourceLimit++;
    else if (held === 'new') this.sendArpRequest(outIf, nextHop);
  }

  /** Addresses `f` from `outIf` to `mac` and hands it to the sink. */
  private send(outIf: Iface, f: Uint8Array, len: number, mac: Uint8Array): boolean {
    f.set(mac, 0);
    f.set(outIf.mac, 6);
    return this.emit(outIf.index, f, len);
  }

  private emit(ifIndex: number, f: Uint8Array, len: number): boolean {
    if (this.maxFrame && len > this.maxFrame) {
      this.c.dropTooLong++;
      return false;
    }
    if (!this.sink(ifIndex, f, len)) {
      this.c.dropTxFull++;
      return false;
    }
    return true;
  }

  /** For the router itself: echo requests are answered, the rest counted. */
  private local(inIf: Iface, f: Uint8Array, hl: number, total: number): void {
    const l4 = IP + hl;
    if (f[IP + 9] !== PROTO_ICMP || total - hl < 8 || f[l4] !== 8 || f[l4 + 1] !== 0 || (get16(f, IP + 6) & 0x3fff) !== 0) {
      this.c.dropLocalDelivery++;
      return;
    }
    if (internetChecksum(f, l4, total - hl) !== 0) {
      this.c.dropLocalDelivery++;
      return;
    }
    // the request becomes the reply in place: swap addresses, type 8 -> 0, fresh TTL
    const src = get32(f, IP + 12);
    put32(f, IP + 12, get32(f, IP + 16));
    put32(f, IP + 16, src);
    f[IP + 8] = DEFAULT_TTL;
    put16(f, IP + 10, 0);
    put16(f, IP + 10, internetChecksum(f, IP, hl));
    f[l4] = 0;
    put16(f, l4 + 2, csumReplace16(get16(f, l4 + 2), 0x0800, 0x0000));
    const mac = Uint8Array.from(f.subarray(6, 12));
    if (this.send(inIf, f, IP + total, mac)) this.c.echoRepliesSent++;
  }

  /** ICMP time exceeded (type 11, code 0) back to the sender of `f`, from `inIf`'s address; counted as a drop of `f`. */
  private timeExceeded(inIf: Iface, f: Uint8Array, hl: number, total: number): void {
    this.c.dropTtlExceeded++;
    // never an error about an error, a fragment after the first, or a broadcast (RFC 1812 4.3.2.7)
    const l4 = IP + hl;
    if ((get16(f, IP + 6) & 0x1fff) !== 0) return;
    if (f[IP + 9] === PROTO_ICMP && (total - hl < 1 || (f[l4] !== 8 && f[l4] !== 0))) return;
    const quoted = Math.min(total, hl + 8);
    const r = this.scratch;
    const rlen = Math.max(MIN_FRAME, IP + 20 + 8 + quoted);
    r.fill(0, 0, rlen);
    r.set(f.subarray(6, 12), 0);
    r.set(inIf.mac, 6);
    put16(r, 12, ETH_IPV4);
    r[IP] = 0x45;
    put16(r, IP + 2, 20 + 8 + quoted);
    r[IP + 8] = DEFAULT_TTL;
    r[IP + 9] = PROTO_ICMP;
    put32(r, IP + 12, inIf.addr);
    put32(r, IP + 16, get32(f, IP + 12));
    put16(r, IP + 10, internetChecksum(r, IP, 20));
    r[IP + 20] = 11;
    r.set(f.subarray(IP, IP + quoted), IP + 28);
    put16(r, IP + 22, internetChecksum(r, IP + 20, 8 + quoted));
    if (this.emit(inIf.index, r, rlen)) this.c.icmpTimeExceededSent++;
  }

  /** Reads the NAT key fields of `f`'s transport header, or why it cannot cross the NAT. */
  private natFields(f: Uint8Array, hl: number, total: number, outbound: boolean): { proto: NatProtocol; src: number; dst: number; flags: number } | 'dropNatUnsupported' | 'local' | 'icmpError' {
    const l4 = IP + hl;
    const p = f[IP + 9]!;
    if ((get16(f, IP + 6) & 0x3fff) !== 0) return 'dropNatUnsupported'; // fragments carry no ports
    if (p === PROTO_TCP && total - hl >= 20) return { proto: 'tcp', src: get16(f, l4), dst: get16(f, l4 + 2), flags: f[l4 + 13]! };
    if (p === PROTO_UDP && total - hl >= 8) return { proto: 'udp', src: get16(f, l4), dst: get16(f, l4 + 2), flags: 0 };
    if (p === PROTO_ICMP && total - hl >= 8) {
      const type = f[l4]!;
      if (outbound && type === 8) return { proto: 'icmp', src: get16(f, l4 + 4), dst: 0, flags: 0 };
      if (!outbound && type === 0) return { proto: 'icmp', src: 0, dst: get16(f, l4 + 4), flags: 0 };
      if (!outbound && type === 8) return 'local'; // someone pings the outside address
      if (!outbound && (type === 3 || type === 11)) return 'icmpError';
    }
    return 'dropNatUnsupported';
  }

  private natOutbound(f: Uint8Array, hl: number, total: number): 'ok' | 'dropNatUnsupported' | 'dropNatTableFull' | 'dropNatHostLimit' | 'dropNatPortsExhausted' {
    const k = this.natFields(f, hl, total, true);
    if (typeof k === 'string') return 'dropNatUnsupported';
    const src = get32(f, IP + 12);
    const dst = get32(f, IP + 16);
    const flow = this.nat!.outbound(k.proto, src, k.src, dst, k.dst, k.flags);
    if (typeof flow === 'string') return flow === 'dropTableFull' ? 'dropNatTableFull' : flow === 'dropHostLimit' ? 'dropNatHostLimit' : 'dropNatPortsExhausted';
    this.rewrite(f, hl, k.proto, IP + 12, src, this.natIf!.addr, k.proto === 'icmp' ? 4 : 0, k.src, flow.outsidePort);
    this.c.natTranslatedOut++;
    return 'ok';
  }

  /**
   * The flow a packet from outside to the outside address belongs to (an
   * ICMP error: the flow it quotes), 'local' for the router itself, or why
   * it cannot come in. A peek: the flow is neither refreshed nor counted.
   */
  private natInboundFlow(f: Uint8Array, hl: number, total: number): { insideAddr: number } | 'local' | 'dropNatUnsupported' | 'dropNatNoMapping' {
    const k = this.natFields(f, hl, total, false);
    if (k === 'icmpError') return this.natInboundIcmpError(f, hl, total, false);
    if (typeof k === 'string') return k;
    return this.nat!.find(k.proto, k.dst, get32(f, IP + 12), k.src) ?? 'dropNatNoMapping';
  }

  /** Translates a packet from outside that {@link natInboundFlow} found a flow for, moving the flow on. */
  private natInbound(f: Uint8Array, hl: number, total: number): 'ok' | 'dropNatUnsupported' | 'dropNatNoMapping' {
    const k = this.natFields(f, hl, total, false);
    if (k === 'icmpError') {
      const r = this.natInboundIcmpError(f, hl, total, true);
      return typeof r === 'string' ? r : 'ok';
    }
    if (typeof k === 'string') return 'dropNatUnsupported';
    const src = get32(f, IP + 12);
    const flow = this.nat!.inbound(k.proto, k.dst, src, k.src, k.flags);
    if (!flow) return 'dropNatNoMapping';
    const dst = get32(f, IP + 16);
    this.rewrite(f, hl, k.proto, IP + 16, dst, flow.insideAddr, k.proto === 'icmp' ? 4 : 2, k.dst, flow.insidePort);
    this.c.natTranslatedIn++;
    return 'ok';
  }

  /**
   * An ICMP destination unreachable or time exceeded from outside about a
   * NATed flow: it quotes the packet as it left (source: the outside
   * address and port), so the quote is translated back too (its source
   * address and port or echo id, its header checksum, a quoted UDP
   * checksum) and the ICMP checksum, which covers the quote, follows every
   * change. Then the outer destination becomes the inside host's. With
   * `apply` false only the flow is looked up (nothing is written).
   */
  private natInboundIcmpError(f: Uint8Array, hl: number, total: number, apply: boolean): { insideAddr: number } | 'dropNatUnsupported' | 'dropNatNoMapping' {
    const icmp = IP + hl;
    const q = icmp + 8; // the quoted IP header
    const end = IP + total;
    if (q + 20 > end || f[q]! >>> 4 !== 4) return 'dropNatUnsupported';
    const qhl = (f[q]! & 0x0f) * 4;
    const ql4 = q + qhl;
    if (qhl < 20 || ql4 + 8 > end) return 'dropNatUnsupported';
    const outsideAddr = this.natIf!.addr;
    if (get32(f, q + 12) !== outsideAddr) return 'dropNatNoMapping';
    const p = f[q + 9]!;
    const proto: NatProtocol | undefined = p === PROTO_TCP ? 'tcp' : p === PROTO_UDP ? 'udp' : p === PROTO_ICMP && f[ql4] === 8 ? 'icmp' : undefined;
    if (!proto) return 'dropNatUnsupported';
    const remote = get32(f, q + 16);
    const portOff = proto === 'icmp' ? ql4 + 4 : ql4;
    const outsidePort = get16(f, portOff);
    const flow = this.nat!.find(proto, outsidePort, remote, proto === 'icmp' ? 0 : get16(f, ql4 + 2));
    if (!flow) return 'dropNatNoMapping';
    if (!apply) return flow;
    let ic = get16(f, icmp + 2);
    // the quote's source address, and its header checksum that covers it
    put32(f, q + 12, flow.insideAddr);
    ic = csumReplace32(ic, outsideAddr, flow.insideAddr);
    const oldQc = get16(f, q + 10);
    const newQc = csumReplace32(oldQc, outsideAddr, flow.insideAddr);
    put16(f, q + 10, newQc);
    ic = csumReplace16(ic, oldQc, newQc);
    // the quoted port or echo id
    put16(f, portOff, flow.insidePort);
    ic = csumReplace16(ic, outsidePort, flow.insidePort);
    if (proto === 'udp' && get16(f, ql4 + 6) !== 0) {
      // a quoted UDP checksum (within the 8 quoted bytes) covers the address and port too
      const oldUc = get16(f, ql4 + 6);
      let newUc = csumReplace16(csumReplace32(oldUc, outsideAddr, flow.insideAddr), outsidePort, flow.insidePort);
      if (newUc === 0) newUc = 0xffff;
      put16(f, ql4 + 6, newUc);
      ic = csumReplace16(ic, oldUc, newUc);
    } else if (proto === 'tcp' && ql4 + 18 <= end) {
      // a quote long enough to hold the TCP checksum (Linux quotes up to 576 bytes): fix it as well
      const oldTc = get16(f, ql4 + 16);
      const newTc = csumReplace16(csumReplace32(oldTc, outsideAddr, flow.insideAddr), outsidePort, flow.insidePort);
      put16(f, ql4 + 16, newTc);
      ic = csumReplace16(ic, oldTc, newTc);
    } else if (proto === 'icmp') {
      // the quoted echo request's checksum covered the id: it is in the quote's first 8 bytes
      const oldEc = get16(f, ql4 + 2);
      const newEc = csumReplace16(oldEc, outsidePort, flow.insidePort);
      put16(f, ql4 + 2, newEc);
      ic = csumReplace16(ic, oldEc, newEc);
    }
    put16(f, icmp + 2, ic);
    // the outer destination: the outside address becomes the inside host's
    put32(f, IP + 16, flow.insideAddr);
    put16(f, IP + 10, csumReplace32(get16(f, IP + 10), outsideAddr, flow.insideAddr));
    this.c.natTranslatedIn++;
    return flow;
  }

  /**
   * Replaces an address (at `addrOff`) and a port or echo id (at `portOff`
   * in the transport header), fixing the IP header checksum and the
   * transport checksum incrementally: TCP's and UDP's cover the addresses
   * through the pseudo-header, ICMP's only its own header.
   */
  private rewrite(f: Uint8Array, hl: number, proto: NatProtocol, addrOff: number, oldAddr: number, newAddr: number, portOff: number, oldPort: number, newPort: number): void {
    const l4 = IP + hl;
    put32(f, addrOff, newAddr);
    put16(f, IP + 10, csumReplace32(get16(f, IP + 10), oldAddr, newAddr));
    put16(f, l4 + portOff, newPort);
    if (proto === 'icmp') {
      put16(f, l4 + 2, csumReplace16(get16(f, l4 + 2), oldPort, newPort));
      return;
    }
    const csOff = l4 + (proto === 'tcp' ? 16 : 6);
    const old = get16(f, csOff);
    if (proto === 'udp' && old === 0) return; // no checksum was sent: none to fix
    let cs = csumReplace16(csumReplace32(old, oldAddr, newAddr), oldPort, newPort);
    if (proto === 'udp' && cs === 0) cs = 0xffff; // 0 means "no checksum" in UDP (RFC 768)
    put16(f, csOff, cs);
  }
}
