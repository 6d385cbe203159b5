/**
 * One VALE-style switch (vale0, vale1, ...): its ports, its forwarding
 * decision (learning bridge unless a lookup is given) and the loop that
 * moves frames. Decisions happen here in TypeScript, per batch, reading
 * Ethernet headers in place; copies happen in C++ (cpp/switch_core.cc).
 */
import { EventEmitter } from 'node:events';
import { native, type NativeFdWatcher, type NativeSwitchCore } from '../netmap/addon.js';
import { REGION } from '../netmap/abi.js';
import { type Clock, systemClock } from './clock.js';
import { LearningBridge, type BatchLookup } from './learning-bridge.js';
import type { PortGeometry, SwitchStats } from '../control/protocol.js';

export { DEST_DROP, DEST_FLOOD, DEST_SAME_PORT, type BatchLookup } from './learning-bridge.js';

/** Options of a switch. */
export interface SwitchOptions {
  /** Replaces the learning bridge: decide a destination per frame of a batch. */
  lookup?: BatchLookup;
  /** Frames taken from one source ring per turn (default 512). */
  batch?: number;
  /** Keep polling this long (µs) after the last frame before sleeping (default 50). */
  busyPollUs?: number;
  /** MAC table aging (default 300 000 ms). */
  macAgeMs?: number;
  /** MAC table bound (default 8192 entries). */
  macTableSize?: number;
  /** Clock for aging and the lossless stall bound (tests inject one). */
  clock?: Clock;
  /**
   * A receiver whose full rx ring has held back a lossless sender this long
   * (ms, by `clock`) is declared stalled: its copies are dropped and counted
   * (dropStalled) until it drains again (default 1000).
   */
  stallMs?: number;
}

/** Register parameters for a new port. */
export interface PortParams {
  txRings?: number;
  rxRings?: number;
  txSlots?: number;
  rxSlots?: number;
  bufSize?: number;
  extraBufs?: number;
}

/** A port of a switch. */
export interface SwitchPort {
  /** valeX:Y */
  readonly name: string;
  /** index in the switch (0..253), netmap's port_idx */
  readonly index: number;
  readonly persistent: boolean;
  lossless: boolean;
  /** a client currently holds the port */
  attached: boolean;
  pid?: number;
  readonly geometry: PortGeometry;
  /** fds to hand a client: region, client doorbell, switch doorbell */
  readonly fds: readonly [number, number, number];
  readonly bytes: Uint8Array;
  readonly txRings: number;
  readonly rxRings: number;
  readonly watcher: NativeFdWatcher;
}

/** Switch-wide counters (not per port). */
export interface SwitchCounters {
  /** times a doorbell woke the sleeping switch */
  wakeups: number;
  /** wakeups that found nothing to do */
  spuriousWakeups: number;
  /** times a port's doorbell was ignored for a while after repeated spurious wakeups */
  doorbellBackoffs: number;
  /** receivers declared stalled (lossless bound) */
  stalls: number;
}

/** Spurious wakeups in a row from one doorbell before it is ignored for a while. */
const SPURIOUS_LIMIT = 8;
/** First and longest time (ms) a doorbell ringing for nothing is ignored. */
const BACKOFF_MIN_MS = 1;
const BACKOFF_MAX_MS = 100;

const MAX_BATCH = 4096;

/**
 * The mem_id reported for the next port. Every vale-ts port has a region of
 * its own (no two ports share buffers, unlike netmap's global allocator, id
 * 1), so each gets a fresh number, never reused within the process, as netmap
 * numbers its private allocators.
 */
let nextMemId = 2;

/**
 * Frames counted under any drop reason (every counter named drop*): with
 * the frames delivered, they account for every frame a switch took.
 */
export function sumDrops(counters: Readonly<Record<string, number>>): number {
  let n = 0;
  for (const [k, v] of Object.entries(counters)) if (k.startsWith('drop')) n += v;
  return n;
}

/** A switch. Ports come from its control server, or {@link Switch.addPort}. */
export class Switch extends EventEmitter {
  readonly name: string;
  /** netmap's bridge_idx, assigned by the server hosting the switch */
  bridgeIndex = 0;
  readonly bridge: LearningBridge | undefined;
  private readonly lookup: BatchLookup;
  private readonly core: NativeSwitchCore;
  private readonly offsets: Uint32Array;
  private readonly lens: Uint16Array;
  private readonly dests: Int16Array;
  private readonly batch: number;
  private readonly busyPollNs: bigint;
  private readonly portsById = new Map<number, SwitchPort>();
  private order: SwitchPort[] = [];
  private rr = 0;
  private running = false;
  private sleeping = false;
  private scheduled = false;
  private lastWork = 0n;
  private blocked = false;
  private wakeTimer: NodeJS.Timeout | undefined;
  private expireTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** counters of ports that have gone, summed, so totals stay exact */
  private readonly retired: Record<string, number> = {};
  private readonly clock: Clock;
  private readonly stallMs: number;
  /** receivers holding back a lossless sender: since when (clock ms) they took nothing, and what they had taken then */
  private readonly blockedSince = new Map<number, { since: number; delivered: number }>();
  /** the port whose doorbell woke the switch, to judge the wakeup */
  private wokenBy: SwitchPort | undefined;
  /** per port: spurious wakeups in a row, and the backoff in force */
  private readonly bellState = new Map<SwitchPort, { spurious: number; backoffMs: number; until: NodeJS.Timeout | undefined }>();
  private readonly sc: SwitchCounters = { wakeups: 0, spuriousWakeups: 0, doorbellBackoffs: 0, stalls: 0 };

  constructor(name: string, opts: SwitchOptions = {}) {
    super();
    if (!/^vale[A-Za-z0-9_]*$/.test(name)) {
      throw new Error(`invalid switch name '${name}': a switch is named vale followed by letters, digits or _ (vale0, valeA)`);
    }
    this.name = name;
    const batch = opts.batch ?? 512;
    if (!Number.isInteger(batch) || batch < 1 || batch > MAX_BATCH) throw new RangeError(`batch ${batch} out of range: use 1..${MAX_BATCH}`);
    this.batch = batch;
    const busy = opts.busyPollUs ?? 50;
    if (!(busy >= 0)) throw new RangeError(`busyPollUs ${busy} must be >= 0`);
    this.busyPollNs = BigInt(Math.round(busy * 1000));
    this.offsets = new Uint32Array(MAX_BATCH);
    this.lens = new Uint16Array(MAX_BATCH);
    this.dests = new Int16Array(MAX_BATCH);
    this.core = new native.SwitchCore(this.offsets, this.lens, this.dests);
    this.clock = opts.clock ?? systemClock;
    const stall = opts.stallMs ?? 1000;
    if (!(stall > 0) || !Number.isFinite(stall)) throw new RangeError(`stallMs ${stall} must be a positive number of milliseconds`);
    this.stallMs = stall;
    if (opts.lookup) {
      this.lookup = opts.lookup;
    } else {
      const lb = new LearningBridge({ maxEntries: opts.macTableSize, ageMs: opts.macAgeMs, clock: opts.clock ?? systemClock });
      this.bridge = lb;
      this.lookup = lb.lookupBatch;
      this.expireTimer = setInterval(() => lb.expire(), 1000);
      this.expireTimer.unref();
    }
  }

  /** Ports in index order. */
  ports(): SwitchPort[] {
    return [...this.portsById.values()].sort((a, b) => a.index - b.index);
  }

  /** The port called `name` (valeX:Y), if any. */
  port(name: string): SwitchPort | undefined {
    for (const p of this.portsById.values()) if (p.name === name) return p;
    return undefined;
  }

  /** Create a port: its region, doorbells and place in the forwarding loop. */
  addPort(name: string, params: PortParams, opts: { persistent?: boolean; lossless?: boolean; regionFd?: number } = {}): SwitchPort {
    if (this.closed) throw new Error(`switch ${this.name} is shut down`);
    if (this.port(name)) throw Object.assign(new Error(`${name} already exists`), { code: 'EEXIST' });
    const np = opts.regionFd !== undefined ? this.core.addPort(params, name, opts.lossless ?? false, opts.regionFd) : this.core.addPort(params, name, opts.lossless ?? false);
    // a persistent port starts with nobody on it
    if (opts.persistent) this.core.setAttached(np.id, false);
    // the geometry is what the addon laid out, read back from the region
    // header it wrote, not our idea of its defaults
    const hdr = new DataView(np.memory);
    const txRings = hdr.getUint32(REGION.tx_rings, true);
    const rxRings = hdr.getUint32(REGION.rx_rings, true);
    const watcher = new native.FdWatcher(np.switchBell, () => this.wake(port));
    const port: SwitchPort = {
      name,
      index: np.id,
      persistent: opts.persistent ?? false,
      lossless: opts.lossless ?? false,
      attached: false,
      geometry: {
        memsize: np.size,
        nifpOffset: np.nifpOffset,
        txRings,
        rxRings,
        txSlots: hdr.getUint32(REGION.tx_slots, true),
        rxSlots: hdr.getUint32(REGION.rx_slots, true),
        bufSize: hdr.getUint32(REGION.buf_size, true),
        memId: nextMemId++,
      },
      fds: [np.fd, np.clientBell, np.switchBell],
      bytes: new Uint8Array(np.memory),
      txRings,
      rxRings,
      watcher,
    };
    this.portsById.set(np.id, port);
    this.order = this.ports();
    if (this.sleeping) {
      this.core.arm(np.id, true, this.blocked);
      watcher.start(1);
    }
    this.start();
    this.emit('port', port);
    return port;
  }

  /** Remove a port: the MAC table forgets it, other ports are untouched. */
  removePort(index: number): void {
    const p = this.portsById.get(index);
    if (!p) return;
    p.watcher.close();
    // take what the port queued before it went, then count what is left
    this.pump();
    const last = this.core.removePort(index);
    for (const [k, v] of Object.entries(last)) this.retired[k] = (this.retired[k] ?? 0) + v;
    // the mapping goes now, not when the GC gets to it: views over it read
    // as empty from here on (the core forgot the port above)
    native.unmap(p.bytes.buffer as ArrayBuffer);
    const bs = this.bellState.get(p);
    if (bs?.until) clearTimeout(bs.until);
    this.bellState.delete(p);
    this.blockedSince.delete(index);
    if (this.wokenBy === p) this.wokenBy = undefined;
    this.portsById.delete(index);
    this.order = this.ports();
    this.bridge?.portRemoved(index);
    // with its final counters, for whoever keeps them beyond the port
    this.emit('portRemoved', p, last);
  }

  /**
   * Mark whether a client holds the port. A lossless sender waits for room
   * only at attached ports: an unattended persistent port, which nobody
   * drains, gets its copies dropped (and counted) instead of stalling it.
   */
  setAttached(index: number, on: boolean): void {
    const p = this.portsById.get(index);
    if (!p) throw new Error(`no port ${index} on ${this.name}`);
    p.attached = on;
    this.core.setAttached(index, on);
  }

  /** Doorbells of further registrations sharing a port; each is kicked with the port's own. */
  setExtraBells(index: number, fds: number[]): void {
    this.core.setExtraBells(index, fds);
  }

  /** Switch a port's lossless (backpressure) mode. */
  setLossless(index: number, on: boolean): void {
    const p = this.portsById.get(index);
    if (!p) throw new Error(`no port ${index} on ${this.name}`);
    p.lossless = on;
    this.core.setLossless(index, on);
  }

  /** Counters of one port, by name: rxFrames, txFrames, drops by reason... */
  counters(index: number): Record<string, number> {
    return this.core.stats(index);
  }

  /** Counters summed over every port, present and removed. */
  totals(): Record<string, number> {
    const t: Record<string, number> = { ...this.retired };
    for (const p of this.portsById.values()) for (const [k, v] of Object.entries(this.core.stats(p.index))) t[k] = (t[k] ?? 0) + v;
    return t;
  }

  /** Switch-wide counters: wakeups, doorbell backoffs, stalls. */
  switchCounters(): SwitchCounters {
    return { ...this.sc };
  }

  /**
   * Counters of the ports plus a page of the MAC table (`macLimit` entries
   * from `macOffset`, default all) and the table's size.
   */
  stats(page: { macOffset?: number; macLimit?: number; portOffset?: number; portLimit?: number } = {}): SwitchStats {
    const macTable: SwitchStats['macTable'] = [];
    const byIdx = new Map([...this.portsById.values()].map((p) => [p.index, p.name]));
    const mo = page.macOffset ?? 0;
    const ml = page.macLimit ?? Infinity;
    let i = 0;
    if (this.bridge && ml > 0) {
      for (const e of this.bridge.table.entries()) {
        if (i++ < mo) continue;
        macTable.push({ mac: e.mac, port: byIdx.get(e.port) ?? `#${e.port}`, ageMs: e.ageMs });
        if (macTable.length >= ml) break;
      }
    }
    const all = this.ports();
    const po = page.portOffset ?? 0;
    const ports = all.slice(po, po + (page.portLimit ?? all.length));
    return {
      name: this.name,
      bridgeIndex: this.bridgeIndex,
      ports: ports.map((p) => ({ name: p.name, portIndex: p.index, counters: this.core.stats(p.index) })),
      portsTotal: all.length,
      portsOffset: po,
      macTable,
      macTableTotal: this.bridge ? this.bridge.table.size : 0,
      macTableOffset: mo,
      macTableCounters: this.bridge ? { ...this.bridge.table.counters, size: this.bridge.table.size } : {},
      totals: this.totals(),
      switchCounters: { ...this.sc },
    };
  }

  /**
   * One round over every port, round-robin, at most one batch per tx ring:
   * each source gets its turn, so N senders into one receiver get ~1/N each.
   * Returns the frames consumed.
   */
  pump(): number {
    const order = this.order;
    const n = order.length;
    if (n === 0) return 0;
    const start = this.rr++ % n;
    let moved = 0;
    let blocked = false;
    const core = this.core;
    for (let k = 0; k < n; k++) {
      const p = order[(start + k) % n]!;
      for (let r = 0; r < p.txRings; r++) {
        const cnt = core.collect(p.index, r, this.batch);
        if (cnt > 0) this.lookup(p.bytes, this.offsets, this.lens, cnt, p.index, this.dests);
        const done = core.forward();
        if (done < 0) {
          blocked = true;
          moved += -done - 1;
          this.noteBlocked(core.blockedOn());
        } else {
          moved += done;
        }
      }
    }
    this.blocked = blocked;
    if (!blocked && this.blockedSince.size) this.blockedSince.clear();
    return moved;
  }

  /**
   * A lossless sender waits on `idx`. A receiver that drains, however
   * slowly, keeps taking frames; one that took none for the stall bound is
   * declared stalled and no longer waited for.
   */
  private noteBlocked(idx: number): void {
    if (idx < 0) return;
    const now = this.clock.nowMs();
    const delivered = this.core.stats(idx)['txFrames'] ?? 0;
    const b = this.blockedSince.get(idx);
    if (b === undefined || b.delivered !== delivered) {
      this.blockedSince.set(idx, { since: now, delivered });
      return;
    }
    if (now - b.since < this.stallMs) return;
    const p = this.portsById.get(idx);
    if (!p) return;
    this.blockedSince.delete(idx);
    this.core.setStalled(idx, true);
    this.sc.stalls++;
    this.emit('stalled', p);
  }

  private start(): void {
    if (this.running || this.closed) return;
    this.running = true;
    this.lastWork = process.hrtime.bigint();
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.loop();
    });
  }

  private loop(): void {
    if (this.closed) return;
    const moved = this.pump();
    const now = process.hrtime.bigint();
    const by = this.wokenBy;
    if (by) {
      this.wokenBy = undefined;
      if (moved === 0 && !this.blocked) {
        // a doorbell rang for nothing: sleep again at once, no busy poll, and
        // a port that keeps doing it is not listened to for a while
        this.sc.spuriousWakeups++;
        this.spurious(by);
        this.sleep();
        return;
      }
      const bs = this.bellState.get(by);
      if (bs) bs.spurious = bs.backoffMs = 0;
    }
    if (moved > 0) this.lastWork = now;
    if (now - this.lastWork < this.busyPollNs) {
      this.schedule();
      return;
    }
    this.sleep();
  }

  private anyPending(): boolean {
    for (const p of this.order) for (let r = 0; r < p.txRings; r++) if (this.core.pending(p.index, r) > 0) return true;
    return false;
  }

  /** Ask every client for a kick, re-check, and sleep on the doorbells. */
  private sleep(): void {
    const blocked = this.blocked;
    for (const p of this.order) this.core.arm(p.index, true, blocked);
    if (!blocked && this.anyPending()) {
      for (const p of this.order) this.core.arm(p.index, false, false);
      this.lastWork = process.hrtime.bigint();
      this.schedule();
      return;
    }
    this.sleeping = true;
    for (const p of this.order) if (!this.bellState.get(p)?.until) p.watcher.start(1);
    // backpressured frames wait for a receiver's kick; a timer guards against
    // a receiver that never asks
    if (blocked) this.wakeTimer = setTimeout(() => this.wake(), 10);
  }

  private spurious(p: SwitchPort): void {
    let bs = this.bellState.get(p);
    if (!bs) this.bellState.set(p, (bs = { spurious: 0, backoffMs: 0, until: undefined }));
    if (++bs.spurious < SPURIOUS_LIMIT || bs.until) return;
    bs.backoffMs = Math.min(BACKOFF_MAX_MS, bs.backoffMs ? bs.backoffMs * 2 : BACKOFF_MIN_MS);
    bs.spurious = 0;
    this.sc.doorbellBackoffs++;
    p.watcher.stop();
    const state = bs;
    // frames it publishes meanwhile still move whenever the switch runs; the
    // timer then listens again (and wakes the switch once, in case)
    state.until = setTimeout(() => {
      state.until = undefined;
      if (this.closed || !this.portsById.has(p.index)) return;
      if (this.sleeping) p.watcher.start(1);
      this.wake();
    }, bs.backoffMs);
  }

  private wake(by?: SwitchPort): void {
    if (!this.sleeping) return;
    this.sc.wakeups++;
    this.wokenBy = by;
    this.sleeping = false;
    if (this.wakeTimer) {
      clearTimeout(this.wakeTimer);
      this.wakeTimer = undefined;
    }
    for (const p of this.order) {
      p.watcher.stop();
      this.core.arm(p.index, false, false);
      this.core.drainBell(p.index);
    }
    this.lastWork = process.hrtime.bigint();
    this.schedule();
  }

  /** Stop forwarding and release every port. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    if (this.expireTimer) clearInterval(this.expireTimer);
    for (const bs of this.bellState.values()) if (bs.until) clearTimeout(bs.until);
    for (const p of [...this.portsById.values()]) this.removePort(p.index);
  }
}
