/**
 * Counters that outlive ports and switches. The switch core forgets a port
 * when it goes, and the server closes a switch created on demand with its
 * last port (as netmap does); a monitoring system, and an operator looking
 * back at a run, still need what they counted. This registry keeps, per
 * switch name for the life of the process:
 *
 * - the totals of earlier instances of the switch (a switch that went and
 *   came back continues its totals: they only ever grow, as a Prometheus
 *   counter must);
 * - the last counters of every port that left, under its name, until the
 *   retention passes, the name is used by a new port, or the operator
 *   removes it (`vale-ctl-ts -r NAME`);
 * - when the switch was first created and last saw activity.
 *
 * It reads only what the switch already exposes (counter snapshots, the
 * `portRemoved` event with a port's final counters, ring occupancy).
 */
import type { DepartedPortStats, SwitchStats } from '../control/protocol.js';
import { sumDrops, type Switch, type SwitchPort } from './switch.js';

/** How long a departed client port's counters are kept by default (seconds). */
export const DEFAULT_RETAIN_COUNTERS_S = 3600;

/** Frames waiting in a port's rings at one instant. */
export interface RingOccupancy {
  /** published by the client on its tx rings, not yet taken by the switch: in flight */
  txQueued: number;
  /** delivered into its rx rings, not yet released by the client */
  rxQueued: number;
}

/**
 * Occupancy of a live port's rings, as the switch core reads them from the
 * port's CSB and its own cursors.
 */
export function ringOccupancy(sw: Switch, port: SwitchPort): RingOccupancy {
  return sw.occupancy(port.index);
}

/** Departed ports kept at most, over all switches: the oldest go first (names are the clients' to choose). */
export const MAX_DEPARTED_PORTS = 4096;
/** Gone switches remembered at most: the one gone longest is forgotten first. */
export const MAX_GONE_SWITCHES = 256;

/** How a port left: its client went (kept for the retention), or it was removed on request (forgotten). */
export type Departure = 'left' | 'removed';

interface Departed {
  name: string;
  portIndex: number;
  counters: Record<string, number>;
  departedAt: number;
  expiresAt: number;
}

interface SwitchRecord {
  name: string;
  createdAt: number;
  lastActivityAt: number;
  /** totals, switch counters and MAC table counters of the instances that have gone */
  base: Record<string, number>;
  baseSwitch: Record<string, number>;
  baseMac: Record<string, number>;
  /** frames moved as last seen, to notice activity between port events */
  lastMoved: number;
  departed: Map<string, Departed>;
  live: Switch | undefined;
  /** bridge index while live; of the last instance once gone */
  bridgeIndex: number;
  closedAt: number | undefined;
  onRemoved: ((p: SwitchPort, last?: Record<string, number>) => void) | undefined;
}

function add(into: Record<string, number>, from: Readonly<Record<string, number>>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

/** Options of a {@link CounterRegistry}. */
export interface CounterRegistryOptions {
  /** how long a departed client port's counters are kept, ms (default {@link DEFAULT_RETAIN_COUNTERS_S} s; 0: not kept) */
  retainMs?: number;
  /** wall clock, ms since the epoch (tests inject one) */
  now?: () => number;
}

/** Counters kept across ports' and switches' lifetimes; one per server. */
export class CounterRegistry {
  private readonly records = new Map<string, SwitchRecord>();
  private readonly retainMs: number;
  private readonly now: () => number;
  /** ports the server is removing on request: their counters are not kept */
  private readonly removing = new Set<string>();

  constructor(opts: CounterRegistryOptions = {}) {
    const r = opts.retainMs ?? DEFAULT_RETAIN_COUNTERS_S * 1000;
    if (!(r >= 0) || !Number.isFinite(r)) throw new RangeError(`counter retention ${r} ms must be a finite number >= 0`);
    this.retainMs = r;
    this.now = opts.now ?? Date.now;
  }

  /** A switch is hosted: start its record, or continue the one of its earlier instance. */
  switchAdded(sw: Switch): void {
    const now = this.now();
    let rec = this.records.get(sw.name);
    if (!rec) {
      rec = {
        name: sw.name,
        createdAt: now,
        lastActivityAt: now,
        base: {},
        baseSwitch: {},
        baseMac: {},
        lastMoved: 0,
        departed: new Map(),
        live: undefined,
        bridgeIndex: sw.bridgeIndex,
        closedAt: undefined,
        onRemoved: undefined,
      };
      this.records.set(sw.name, rec);
    }
    rec.live = sw;
    rec.bridgeIndex = sw.bridgeIndex;
    rec.closedAt = undefined;
    rec.lastActivityAt = now;
    const r = rec;
    rec.onRemoved = (p, last) => this.portGone(r, p, last);
    sw.on('portRemoved', rec.onRemoved);
    sw.on('port', (p: SwitchPort) => {
      // a new port under a departed one's name starts its own counters
      r.departed.delete(p.name);
      r.lastActivityAt = this.now();
    });
  }

  /** The server is about to remove `name` on request: do not keep its counters. */
  removingOnRequest(name: string): void {
    this.removing.add(name);
  }

  private portGone(rec: SwitchRecord, p: SwitchPort, last: Record<string, number> | undefined): void {
    const now = this.now();
    rec.lastActivityAt = now;
    if (this.removing.delete(p.name) || !last || this.retainMs === 0) return;
    rec.departed.set(p.name, { name: p.name, portIndex: p.index, counters: { ...last }, departedAt: now, expiresAt: now + this.retainMs });
    this.expire();
    let n = 0;
    for (const r of this.records.values()) n += r.departed.size;
    while (n-- > MAX_DEPARTED_PORTS) this.forgetOldestDeparted();
  }

  private forgetOldestDeparted(): void {
    let oldest: { rec: SwitchRecord; d: Departed } | undefined;
    for (const rec of this.records.values()) for (const d of rec.departed.values()) if (!oldest || d.departedAt < oldest.d.departedAt) oldest = { rec, d };
    if (oldest) oldest.rec.departed.delete(oldest.d.name);
  }

  /** The switch went with its last port: fold what it counted into its record. */
  switchClosed(sw: Switch): void {
    const rec = this.records.get(sw.name);
    if (!rec || rec.live !== sw) return;
    add(rec.base, sw.totals());
    add(rec.baseSwitch, { ...sw.switchCounters() });
    if (sw.bridge) add(rec.baseMac, sw.bridge.table.counters as unknown as Record<string, number>);
    if (rec.onRemoved) sw.off('portRemoved', rec.onRemoved);
    rec.live = undefined;
    rec.closedAt = rec.lastActivityAt = this.now();
    const gone = [...this.records.values()].filter((r) => !r.live).sort((a, b) => (a.closedAt ?? 0) - (b.closedAt ?? 0));
    for (let i = 0; i < gone.length - MAX_GONE_SWITCHES; i++) this.records.delete(gone[i]!.name);
  }

  /**
   * Forget the counters kept under a departed port's name (`vale-ctl-ts -r
   * NAME` once the port has gone). Returns its last port index, or undefined
   * when nothing is kept under that name.
   */
  forget(name: string): number | undefined {
    for (const rec of this.records.values()) {
      const d = rec.departed.get(name);
      if (d) {
        rec.departed.delete(name);
        return d.portIndex;
      }
    }
    return undefined;
  }

  /** Drop departed ports past their retention. */
  expire(): void {
    const now = this.now();
    for (const rec of this.records.values()) for (const [n, d] of rec.departed) if (d.expiresAt <= now) rec.departed.delete(n);
  }

  /** Names of the switches that have gone (no ports), by first creation. */
  goneSwitches(): string[] {
    return [...this.records.values()].filter((r) => !r.live).sort((a, b) => a.createdAt - b.createdAt).map((r) => r.name);
  }

  /**
   * A live switch's stats page completed with what lasts: totals of its
   * earlier instances, departed ports, timestamps, and the in-flight term of
   * conservation read from its ports' rings.
   */
  complete(sw: Switch, st: SwitchStats, departedLimit = Infinity): SwitchStats {
    this.expire();
    const rec = this.records.get(sw.name);
    if (!rec || rec.live !== sw) return st;
    const now = this.now();
    const totals = { ...rec.base };
    add(totals, st.totals);
    const sc = { ...rec.baseSwitch };
    add(sc, st.switchCounters ?? {});
    const mc = { ...rec.baseMac };
    add(mc, st.macTableCounters);
    if (st.macTableCounters['size'] !== undefined) mc['size'] = st.macTableCounters['size'];
    let txQueued = 0;
    let rxQueued = 0;
    for (const ps of st.ports) {
      const p = sw.port(ps.name);
      if (!p) continue;
      const o = ringOccupancy(sw, p);
      ps.occupancy = o;
      txQueued += o.txQueued;
      rxQueued += o.rxQueued;
    }
    // occupancy of ports beyond the page still counts in the switch's in-flight term
    if (st.ports.length < sw.ports().length) {
      const shown = new Set(st.ports.map((p) => p.name));
      for (const p of sw.ports()) {
        if (shown.has(p.name)) continue;
        const o = ringOccupancy(sw, p);
        txQueued += o.txQueued;
        rxQueued += o.rxQueued;
      }
    }
    const moved = (totals['rxFrames'] ?? 0) + (totals['txFrames'] ?? 0);
    if (moved !== rec.lastMoved) {
      rec.lastMoved = moved;
      rec.lastActivityAt = now;
    }
    return {
      ...st,
      totals,
      switchCounters: sc,
      macTableCounters: mc,
      departedPorts: this.departedOf(rec, departedLimit),
      departedPortsTotal: rec.departed.size,
      createdAt: new Date(rec.createdAt).toISOString(),
      lastActivityAt: new Date(rec.lastActivityAt).toISOString(),
      uptimeS: (now - rec.createdAt) / 1000,
      conservation: conservationOf(totals, txQueued, rxQueued),
    };
  }

  /** Stats of a switch that has gone: its totals, departed ports and timestamps, no ports. */
  goneStats(name: string, departedLimit = Infinity): SwitchStats | undefined {
    this.expire();
    const rec = this.records.get(name);
    if (!rec || rec.live) return undefined;
    const now = this.now();
    return {
      name,
      bridgeIndex: rec.bridgeIndex,
      gone: true,
      ports: [],
      portsTotal: 0,
      portsOffset: 0,
      macTable: [],
      macTableTotal: 0,
      macTableOffset: 0,
      // the table went with the switch: its counters stay, its size is 0
      macTableCounters: { ...rec.baseMac, ...(rec.baseMac['size'] !== undefined ? { size: 0 } : {}) },
      totals: { ...rec.base },
      switchCounters: { ...rec.baseSwitch },
      departedPorts: this.departedOf(rec, departedLimit),
      departedPortsTotal: rec.departed.size,
      createdAt: new Date(rec.createdAt).toISOString(),
      lastActivityAt: new Date(rec.lastActivityAt).toISOString(),
      uptimeS: (now - rec.createdAt) / 1000,
      conservation: conservationOf(rec.base, 0, 0),
    };
  }

  private departedOf(rec: SwitchRecord, limit: number): DepartedPortStats[] {
    return [...rec.departed.values()]
      .sort((a, b) => a.name.localeCompare(b.name))
      .slice(0, limit)
      .map((d) => ({ name: d.name, portIndex: d.portIndex, counters: { ...d.counters }, departedAt: new Date(d.departedAt).toISOString(), expiresAt: new Date(d.expiresAt).toISOString() }));
  }
}

/**
 * The conservation identity of a switch's totals. Every frame the switch
 * takes from a tx ring (rxFrames) is delivered once, dropped for a named
 * reason, or flooded; a flood makes one copy per other port, and each copy is
 * delivered (txFrames) or dropped at its receiver. The frames published by
 * clients and not yet taken are the in-flight term.
 */
export function conservationOf(totals: Readonly<Record<string, number>>, txQueued: number, rxQueued: number): NonNullable<SwitchStats['conservation']> {
  return {
    taken: totals['rxFrames'] ?? 0,
    // a GSO copy the switch segmented is one copy delivered as vnetSegments frames
    delivered: (totals['txFrames'] ?? 0) - (totals['vnetSegments'] ?? 0) + (totals['vnetSegmented'] ?? 0),
    dropped: sumDrops(totals),
    flooded: totals['flooded'] ?? 0,
    copies: (totals['rxFrames'] ?? 0) - (totals['flooded'] ?? 0) + (totals['floodCopies'] ?? 0),
    inFlight: txQueued,
    rxQueued,
  };
}
