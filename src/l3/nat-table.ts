/**
 * The connection table of a source NAT: one entry per inside flow
 * (protocol, inside address and port, remote address and port), each with
 * its own outside port (for ICMP echo: its own identifier), a per-protocol
 * timeout refreshed by traffic, and a bound on the number of entries.
 * Pure bookkeeping: the frame rewriting is in nat.ts, time comes from an
 * injectable {@link Clock} so expiry is testable without waiting.
 */
import { systemClock, type Clock } from '../vale/clock.js';
import { formatIpv4 } from './addr.js';

/** The protocols a NAT translates. */
export type NatProtocol = 'tcp' | 'udp' | 'icmp';

const PROTO_INDEX: Record<NatProtocol, number> = { tcp: 0, udp: 1, icmp: 2 };

/** Idle timeouts in milliseconds (defaults in {@link DEFAULT_NAT_TIMEOUTS}). */
export interface NatTimeouts {
  /** a TCP flow answered from outside and not closing */
  tcpEstablished: number;
  /** a TCP flow not yet answered, or after a FIN or RST */
  tcpTransitory: number;
  udp: number;
  icmp: number;
}

/** Linux conntrack's defaults for the same states (RFC 5382/4787 ask for at least these orders). */
export const DEFAULT_NAT_TIMEOUTS: Readonly<NatTimeouts> = Object.freeze({
  tcpEstablished: 7_440_000,
  tcpTransitory: 240_000,
  udp: 300_000,
  icmp: 30_000,
});

/** Options of a {@link NatTable}. */
export interface NatTableOptions {
  /**
   * most entries at once (default 4096); a new flow beyond it evicts the
   * least recently used flow never answered of the host holding the most
   * entries, if that host holds more than the new flow's (else the new
   * flow's host's own) (`entriesEvicted`), or, when there is none, is
   * dropped and counted (`dropTableFull`)
   */
  maxEntries?: number;
  /**
   * most entries of one inside address (default: a quarter of `maxEntries`,
   * rounded up; `maxEntries` itself: no per-host bound); a new flow of a
   * host at it evicts that host's own least recently used flow never
   * answered (`entriesEvicted`), or, when every one of its flows has been
   * answered, is dropped (`dropHostLimit`)
   */
  maxEntriesPerHost?: number;
  /** outside ports (and ICMP identifiers) handed out, inclusive (default [1024, 65535]) */
  portRange?: readonly [number, number];
  timeouts?: Partial<NatTimeouts>;
  clock?: Clock;
}

/** One translation, as {@link NatTable.entries} lists it. */
export interface NatEntry {
  readonly protocol: NatProtocol;
  readonly insideAddr: string;
  readonly insidePort: number;
  readonly outsidePort: number;
  readonly remoteAddr: string;
  readonly remotePort: number;
  /** 'new' until the first reply from outside; 'closing' after a TCP FIN or RST */
  readonly state: 'new' | 'established' | 'closing';
  readonly packetsOut: number;
  readonly packetsIn: number;
  /** milliseconds of idleness left before the entry expires */
  readonly expiresInMs: number;
}

/** The table's counters. */
export interface NatTableCounters {
  entriesCreated: number;
  entriesExpired: number;
  /** flows never answered, removed to make room for a new one at the table's or a host's bound */
  entriesEvicted: number;
  /** a new flow found the table at its bound */
  dropTableFull: number;
  /** a new flow found its inside host at `maxEntriesPerHost` (the table below its bound), every one of that host's flows answered */
  dropHostLimit: number;
  /** a new flow found every outside port of its protocol taken */
  dropPortsExhausted: number;
}

/** @internal a live entry */
export interface Flow {
  readonly proto: number;
  readonly insideAddr: number;
  readonly insidePort: number;
  readonly remoteAddr: number;
  readonly remotePort: number;
  readonly outsidePort: number;
  state: 'new' | 'established' | 'closing';
  expiresAt: number;
  packetsOut: number;
  packetsIn: number;
}

const PROTOS: NatProtocol[] = ['tcp', 'udp', 'icmp'];

/** Why {@link NatTable.outbound} gave no flow. */
export type NatRefusal = 'dropTableFull' | 'dropHostLimit' | 'dropPortsExhausted';

/** One inside address's share of the table. */
interface Host {
  readonly addr: number;
  flows: number;
  /** its flows not answered yet, least recently used first: what it gives up first */
  readonly unanswered: Set<Flow>;
}

/** A bounded NAT connection table with per-protocol timeouts. */
export class NatTable {
  readonly maxEntries: number;
  readonly maxEntriesPerHost: number;
  readonly portRange: readonly [number, number];
  readonly timeouts: Readonly<NatTimeouts>;
  private readonly clock: Clock;
  /** key: inside 5-tuple */
  private readonly byInside = new Map<string, Flow>();
  /** key: protocol index * 65536 + outside port */
  private readonly byOutside = new Map<number, Flow>();
  private readonly nextPort = [0, 0, 0];
  private lastSweep = -Infinity;
  /**
   * each inside address with entries, and the addresses by how many entries
   * they hold (`byCount[n]`: those with n): a full table takes the place of
   * an unanswered flow (Linux's early drop) of the host holding the most, so
   * one host spraying flows cannot evict those of a host holding fewer, and
   * finding that host costs O(1) however many hosts there are
   */
  private readonly hosts = new Map<number, Host>();
  private readonly byCount: Set<Host>[] = [];
  private mostFlows = 0;
  private readonly c: NatTableCounters = { entriesCreated: 0, entriesExpired: 0, entriesEvicted: 0, dropTableFull: 0, dropHostLimit: 0, dropPortsExhausted: 0 };

  constructor(opts: NatTableOptions = {}) {
    const max = opts.maxEntries ?? 4096;
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`NAT maxEntries ${max} is not a positive integer`);
    const perHost = opts.maxEntriesPerHost ?? Math.ceil(max / 4);
    if (!Number.isInteger(perHost) || perHost < 1) throw new RangeError(`NAT maxEntriesPerHost ${perHost} is not a positive integer`);
    const [lo, hi] = opts.portRange ?? [1024, 65535];
    if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 1 || hi > 65535 || lo > hi) {
      throw new RangeError(`NAT portRange [${lo}, ${hi}] is not a range within 1..65535`);
    }
    const timeouts = { ...DEFAULT_NAT_TIMEOUTS, ...opts.timeouts };
    for (const [k, v] of Object.entries(timeouts)) {
      if (!(v > 0) || !Number.isFinite(v)) throw new RangeError(`NAT timeout ${k} ${v} is not a positive number of ms`);
    }
    this.maxEntries = max;
    this.maxEntriesPerHost = Math.min(perHost, max);
    this.portRange = [lo, hi];
    this.timeouts = Object.freeze(timeouts);
    this.clock = opts.clock ?? systemClock;
    this.nextPort.fill(lo);
  }

  /** Live entries (expired ones are removed first). */
  get size(): number {
    this.sweep();
    return this.byInside.size;
  }

  /** A copy of the counters. */
  counters(): NatTableCounters {
    return { ...this.c };
  }

  /** Every live entry, for listing. */
  entries(): NatEntry[] {
    this.sweep();
    const now = this.clock.nowMs();
    return [...this.byInside.values()].map((f) => ({
      protocol: PROTOS[f.proto]!,
      insideAddr: formatIpv4(f.insideAddr),
      insidePort: f.insidePort,
      outsidePort: f.outsidePort,
      remoteAddr: formatIpv4(f.remoteAddr),
      remotePort: f.remotePort,
      state: f.state,
      packetsOut: f.packetsOut,
      packetsIn: f.packetsIn,
      expiresInMs: f.expiresAt - now,
    }));
  }

  /** Removes expired entries; returns how many. */
  sweep(): number {
    const now = this.clock.nowMs();
    this.lastSweep = now;
    let n = 0;
    for (const f of this.byInside.values()) {
      if (f.expiresAt <= now) {
        this.remove(f);
        n++;
      }
    }
    return n;
  }

  /**
   * The flow for a packet leaving from inside, created if new; or why none
   * can be made. `tcpFlags` (the TCP header's flag byte) moves a TCP flow
   * to 'closing' on FIN or RST.
   */
  outbound(protocol: NatProtocol, insideAddr: number, insidePort: number, remoteAddr: number, remotePort: number, tcpFlags = 0): Flow | NatRefusal {
    const proto = PROTO_INDEX[protocol];
    const key = `${proto}:${insideAddr}:${insidePort}:${remoteAddr}:${remotePort}`;
    const now = this.clock.nowMs();
    let f = this.byInside.get(key);
    if (f && f.expiresAt <= now) {
      this.remove(f);
      f = undefined;
    }
    if (!f) {
      const refusal = this.makeRoom(insideAddr, now);
      if (refusal) {
        this.c[refusal]++;
        return refusal;
      }
      const port = this.allocatePort(proto, insidePort, now);
      if (port < 0) {
        this.c.dropPortsExhausted++;
        return 'dropPortsExhausted';
      }
      f = { proto, insideAddr, insidePort, remoteAddr, remotePort, outsidePort: port, state: 'new', expiresAt: 0, packetsOut: 0, packetsIn: 0 };
      this.byInside.set(key, f);
      this.byOutside.set(proto * 65536 + port, f);
      this.recount(this.host(insideAddr), +1);
      this.c.entriesCreated++;
    }
    f.packetsOut++;
    this.touch(f, tcpFlags, now);
    return f;
  }

  /**
   * The flow a packet arriving from outside belongs to: its protocol and
   * destination (outside) port must match an entry, and its source must be
   * the remote that entry talks to (address- and port-dependent filtering:
   * nobody else gets in through a mapping). Undefined when none.
   */
  inbound(protocol: NatProtocol, outsidePort: number, remoteAddr: number, remotePort: number, tcpFlags = 0): Flow | undefined {
    const proto = PROTO_INDEX[protocol];
    const f = this.byOutside.get(proto * 65536 + outsidePort);
    if (!f) return undefined;
    const now = this.clock.nowMs();
    if (f.expiresAt <= now) {
      this.remove(f);
      return undefined;
    }
    if (f.remoteAddr !== remoteAddr || f.remotePort !== remotePort) return undefined;
    // answered, whatever its state (a TCP flow may be 'closing' already): no longer one to evict
    if (f.packetsIn++ === 0) this.hosts.get(f.insideAddr)!.unanswered.delete(f);
    if (f.state === 'new') f.state = 'established';
    this.touch(f, tcpFlags, now);
    return f;
  }

  /** The live flow {@link NatTable.inbound} would pick, without refreshing it or counting a packet. */
  find(protocol: NatProtocol, outsidePort: number, remoteAddr: number, remotePort: number): Flow | undefined {
    const f = this.byOutside.get(PROTO_INDEX[protocol] * 65536 + outsidePort);
    return f !== undefined && f.expiresAt > this.clock.nowMs() && f.remoteAddr === remoteAddr && f.remotePort === remotePort ? f : undefined;
  }

  private touch(f: Flow, tcpFlags: number, now: number): void {
    const t = this.timeouts;
    if (f.packetsIn === 0) {
      // most recently used last
      const u = this.hosts.get(f.insideAddr)!.unanswered;
      u.delete(f);
      u.add(f);
    }
    if (f.proto === 0) {
      if (tcpFlags & 0x05) f.state = 'closing'; // FIN or RST
      f.expiresAt = now + (f.state === 'established' ? t.tcpEstablished : t.tcpTransitory);
    } else {
      f.expiresAt = now + (f.proto === 1 ? t.udp : t.icmp);
    }
  }

  private remove(f: Flow, expired = true): void {
    this.byInside.delete(`${f.proto}:${f.insideAddr}:${f.insidePort}:${f.remoteAddr}:${f.remotePort}`);
    this.byOutside.delete(f.proto * 65536 + f.outsidePort);
    const h = this.hosts.get(f.insideAddr)!;
    h.unanswered.delete(f);
    this.recount(h, -1);
    if (expired) this.c.entriesExpired++;
  }

  /**
   * Room for one more flow of `insideAddr`, or why there is none. At the
   * table's bound the host holding the most entries gives up its oldest
   * unanswered flow (the new flow's own host when it holds as many), so no
   * host loses a flow to one that holds no more entries than it; below it,
   * a host at its own bound gives up its own oldest. Answered flows are
   * live connections: never evicted, the new flow is refused instead.
   */
  private makeRoom(insideAddr: number, now: number): NatRefusal | undefined {
    // a sweep is O(entries): at most one per second while full, so a flood of new flows costs no more
    if (this.byInside.size >= this.maxEntries && now - this.lastSweep >= 1000) this.sweep();
    const h = this.hosts.get(insideAddr);
    if (this.byInside.size >= this.maxEntries) {
      const heaviest = h && h.flows === this.mostFlows ? h : this.byCount[this.mostFlows]!.values().next().value!;
      if (this.evictOldest(heaviest) || (h !== undefined && heaviest !== h && this.evictOldest(h))) return undefined;
      return 'dropTableFull';
    }
    if (h && h.flows >= this.maxEntriesPerHost) return this.evictOldest(h) ? undefined : 'dropHostLimit';
    return undefined;
  }

  private evictOldest(h: Host): boolean {
    const victim = h.unanswered.values().next().value;
    if (!victim) return false;
    this.remove(victim, false);
    this.c.entriesEvicted++;
    return true;
  }

  /** The bookkeeping of `addr`, created for its first flow (and forgotten with its last: {@link recount}). */
  private host(addr: number): Host {
    let h = this.hosts.get(addr);
    if (!h) {
      h = { addr, flows: 0, unanswered: new Set() };
      this.hosts.set(addr, h);
    }
    return h;
  }

  /** Moves `h` to the bucket of its new count (and forgets it at 0); keeps `mostFlows` the largest non-empty bucket. */
  private recount(h: Host, delta: 1 | -1): void {
    if (h.flows > 0) this.byCount[h.flows]!.delete(h);
    h.flows += delta;
    if (h.flows > 0) (this.byCount[h.flows] ??= new Set()).add(h);
    else this.hosts.delete(h.addr);
    if (h.flows > this.mostFlows) this.mostFlows = h.flows;
    while (this.mostFlows > 0 && !this.byCount[this.mostFlows]?.size) this.mostFlows--;
  }

  /** The inside port itself when free (as Linux keeps it), else the next free one in the range; -1 when none. */
  private allocatePort(proto: number, wanted: number, now: number): number {
    const [lo, hi] = this.portRange;
    const free = (p: number): boolean => {
      const f = this.byOutside.get(proto * 65536 + p);
      if (!f) return true;
      if (f.expiresAt <= now) {
        this.remove(f);
        return true;
      }
      return false;
    };
    if (wanted >= lo && wanted <= hi && free(wanted)) return wanted;
    const span = hi - lo + 1;
    let p = this.nextPort[proto]!;
    for (let i = 0; i < span; i++) {
      const cand = p;
      p = p === hi ? lo : p + 1;
      if (free(cand)) {
        this.nextPort[proto] = p;
        return cand;
      }
    }
    return -1;
  }
}
