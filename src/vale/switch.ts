/**
 * One VALE-style switch (vale0, vale1, ...): its ports, its forwarding
 * decision (learning bridge unless a lookup is given) and the loop that
 * moves frames. Each round is one native call (cpp/core/switch_core.h): it
 * collects one batch across every port, calls the decision here in
 * TypeScript once for that batch, on header bytes it copied out of the
 * clients' reach, and delivers it.
 */
import { EventEmitter } from 'node:events';
import { Worker, MessageChannel, type MessagePort } from 'node:worker_threads';
import { native, type NativeFdWatcher, type NativeSwitchCore } from '../netmap/addon.js';
import { type Clock, systemClock } from './clock.js';
import { yieldInTime } from './busy-poll.js';
import { StallWatch } from './stall-watch.js';
import { LearningBridge, type BatchLookup } from './learning-bridge.js';
import type { PortGeometry, SwitchStats } from '../control/protocol.js';
import type { DatapathCommand, DatapathInit, DatapathServe } from './datapath-thread.js';

export { DEST_DROP, DEST_FLOOD, DEST_SAME_PORT, type BatchLookup } from './learning-bridge.js';

/** Options of a switch. */
export interface SwitchOptions {
  /**
   * Where the forwarding loop runs. 'loop' (the library's default: an
   * embedding program keeps one thread): on this thread's event loop,
   * sleeping in a libuv watcher. 'thread' (vale-ts's default): on a worker
   * thread of its own (named dp:NAME) that sleeps in epoll_wait, so a
   * doorbell wakes it in microseconds whatever the event loop is doing; the lookup then comes from
   * {@link SwitchOptions.lookupModule} (a function cannot cross threads), and
   * the MAC table in {@link Switch.stats} is the one the thread last
   * published (about once a second, and when a port goes).
   */
  datapath?: 'loop' | 'thread';
  /** Replaces the learning bridge: decide a destination per frame of a batch ('loop' datapath). */
  lookup?: BatchLookup;
  /** 'thread' datapath: a module (path or file: URL) whose export is the lookup. */
  lookupModule?: string;
  /** The export of {@link SwitchOptions.lookupModule} to use (default 'lookup'). */
  lookupExport?: string;
  /**
   * Decide in C++ (a learning bridge in the switch core) instead of calling
   * TypeScript: the benchmarks' like-with-like baseline for the cost of the
   * TypeScript decision. No MAC table in stats, no aging.
   */
  nativeBridge?: boolean;
  /** Frames taken from one source ring per turn (default 512). */
  batch?: number;
  /**
   * Bytes at the start of each frame the lookup can read (default 128,
   * 14..2048): the switch copies them before deciding and delivers that copy.
   */
  headerBytes?: number;
  /** Keep polling this long (µs) after the last frame before sleeping (default 50). */
  busyPollUs?: number;
  /** MAC table aging (default 300 000 ms). */
  macAgeMs?: number;
  /** MAC table bound (default 8192 entries). */
  macTableSize?: number;
  /** Clock for aging and the lossless stall bound (tests inject one; 'loop' datapath only). */
  clock?: Clock;
  /**
   * A receiver whose full rx ring has held back a lossless sender this long
   * (ms, by `clock`) while taking fewer than 64 frames (the hold quantum) is
   * declared stalled: its copies are dropped and counted (dropStalled) until
   * it drains again (default 1000).
   */
  stallMs?: number;
  /**
   * Bounded backpressure, every port's default (µs, 0..1 000 000; default
   * {@link DEFAULT_HOLD_US}): when a receiver's rx ring is full, the frames
   * for it stay in their senders' tx rings and are retried on later rounds,
   * so senders slow to the receiver's pace instead of losing frames. A
   * receiver that releases fewer than 64 slots in this long (a rate, not any
   * one slot: SWITCH_HOLD_QUANTUM in cpp/core/switch_core.h) is shed: its
   * copies are dropped (dropNoSpace) until it has released 64. The bound
   * in force adapts: a hold that needed more than a quarter of it for its 64
   * slots, or ran out, halves the port's next bound (down to 0 after 5,
   * counted in its holdShortened), and each bound of time without another
   * gives one halving back: a receiver freeing exactly 64 slots per bound
   * does not hold its senders (all their frames, head-of-line) to that pace.
   * The lossless stall bound (`stallMs`) adapts alike. 0: drop at once
   * (netmap's VALE behaviour). Per port: `addPort(..., { holdUs })`.
   */
  holdUs?: number;
}

/**
 * Default bound of bounded backpressure (µs). Measured on a 2-core machine
 * under load: a preempted pkt-gen-ts receiver waits ~300 µs for a CPU on
 * average (and a 1024-slot ring holds ~140 µs of a 7 Mpps sender); 2 ms
 * covers most such waits while a receiver that stopped reading costs its
 * senders at most 2 ms once (see bench/RESULTS.md, issue 10).
 */
export const DEFAULT_HOLD_US = 2000;

function checkHoldUs(us: number): number {
  if (!Number.isInteger(us) || us < 0 || us > 1_000_000) throw new RangeError(`holdUs ${us} out of range: use an integer 0..1000000 (µs; 0 drops at once)`);
  return us;
}

/** Switch-wide counters (not per port). */
export interface SwitchCounters {
  /** rounds run (collect, decide, deliver), including those that found nothing: a switch spinning without progress shows here */
  rounds: number;
  /** times a doorbell woke the sleeping switch */
  wakeups: number;
  /** wakeups that found nothing to do */
  spuriousWakeups: number;
  /** times a port's doorbell was ignored for a while after repeated spurious wakeups */
  doorbellBackoffs: number;
  /** sleeps with frames held back for a full receiver that ended on the guard timer, not the receiver's kick */
  heldTimeouts: number;
  /** times a held-back switch found, while asking for the receiver's kick, that room had freed meanwhile: it ran another round instead of sleeping */
  heldRechecks: number;
  /** times the streaming switch took its in-line packet sockets out of its epoll set (each back before it sleeps): while out, a received frame costs the sending CPU no epoll callback */
  waitFdsQuieted: number;
  /** receivers declared stalled (lossless bound) */
  stalls: number;
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
  /** bounded backpressure: how long (µs) this port's full rx ring may hold senders back without draining (0: never) */
  holdUs: number;
  /** a client currently holds the port */
  attached: boolean;
  pid?: number;
  readonly geometry: PortGeometry;
  /** fds to hand a client: region, client doorbell, switch doorbell (new ones after {@link Switch.renewPort}) */
  fds: readonly [number, number, number];
  readonly txRings: number;
  readonly rxRings: number;
  /** virtio-net header length its frames carry, both ways: 0, 10 or 12 ({@link Switch.setVnetHdrLen}) */
  vnetHdrLen: VnetHdrLen;
}

/** The virtio-net header lengths a port can declare (NETMAP_REQ_PORT_HDR_SET's). */
export type VnetHdrLen = 0 | 10 | 12;

/**
 * The mem_id reported for the next port. Every vale-ts port has a region of
 * its own (no two ports share buffers, unlike netmap's global allocator, id
 * 1), so each gets a fresh number, never reused within the process, as netmap
 * numbers its private allocators.
 */
let nextMemId = 2;

/** Monitors one port may have at once (each costs a copy of every frame). */
const MAX_MONITORS_PER_PORT = 8;

/**
 * The region of a monitor of `watched` ({@link Switch.addMonitor}): one rx
 * ring per direction watched, of buffers as large as the watched port's (so
 * every copy fits), and a token tx ring.
 */
export function monitorParams(watched: SwitchPort, rx: boolean, tx: boolean, rxSlots = 1024): PortParams {
  return { txRings: 1, rxRings: rx && tx ? 2 : 1, txSlots: 64, rxSlots, bufSize: watched.geometry.bufSize };
}

/**
 * Frames counted under any drop reason (every counter named drop*): with
 * the frames delivered, they account for every frame a switch took.
 */
export function sumDrops(counters: Readonly<Record<string, number>>): number {
  let n = 0;
  for (const [k, v] of Object.entries(counters)) if (k.startsWith('drop')) n += v;
  return n;
}

/** Switches with a datapath thread, woken at exit so the thread ends at once. */
const threadSwitches = new Set<Switch>();
let exitHooked = false;
function wakeThreadsAtExit(): void {
  for (const sw of threadSwitches) sw.close();
}

const DATAPATH_THREAD = new URL('./datapath-thread.js', import.meta.url);

/**
 * Datapath threads whose switch has closed, waiting for the next switch. A
 * worker costs tens of ms of CPU and some MB to start, and on-demand switches
 * come and go with their ports: without reuse a client creating and removing
 * switches in a loop would have vale-ts start threads in a loop.
 */
const spareThreads: Worker[] = [];
/**
 * A datapath thread allocates almost nothing while forwarding; what it leaves
 * per switch served (a few KB) would sit in a default-sized young generation
 * (tens of MB) until it fills. A small one is collected often and cheaply, so
 * switches that come and go leave no growing footprint.
 */
const THREAD_LIMITS = { maxYoungGenerationSizeMb: 2 };
/** Spare threads kept at most; beyond these a closing switch's thread ends. */
const MAX_SPARE_THREADS = 2;

/** What one switch hears from the thread serving it. */
interface ThreadRoute {
  message(m: ThreadMessage): void;
  error(e: Error): void;
  exit(): void;
}
type ThreadMessage = { op: string; token?: number; message?: string; entries?: []; counters?: Record<string, number>; size?: number; index?: number };

/**
 * Each thread's switches by token. A thread is promised to the next switch
 * while the last one still winds down (its 'stopped' may come after many
 * quick switches on a busy machine), so one listener per event per thread
 * routes by token instead of a listener per switch on the Worker.
 */
const threadRoutes = new WeakMap<Worker, Map<number, ThreadRoute>>();

function routesOf(w: Worker): Map<number, ThreadRoute> {
  const known = threadRoutes.get(w);
  if (known) return known;
  const r = new Map<number, ThreadRoute>();
  threadRoutes.set(w, r);
  w.on('message', (m: ThreadMessage) => {
    if (typeof m?.token === 'number') r.get(m.token)?.message(m);
  });
  // a spare serves no switch: its error reaches nobody, its exit takes it out of the pool
  w.on('error', (e: Error) => {
    for (const route of [...r.values()]) route.error(e);
  });
  w.on('exit', () => {
    const i = spareThreads.indexOf(w);
    if (i >= 0) spareThreads.splice(i, 1);
    for (const route of [...r.values()]) route.exit();
  });
  return r;
}

/** A thread for a new switch: a spare, told to serve it, or a new worker. */
function takeThread(init: DatapathInit, control: MessagePort): Worker {
  const w = spareThreads.pop();
  if (w) {
    w.postMessage({ op: 'serve', init } satisfies DatapathServe, [control]);
    return w;
  }
  return new Worker(DATAPATH_THREAD, { workerData: init, transferList: [control], resourceLimits: THREAD_LIMITS });
}

/**
 * A thread whose switch is stopping: kept as a spare (it takes the next
 * switch once it has finished with this one), or false: the caller ends it.
 */
function returnThread(w: Worker): boolean {
  if (spareThreads.length >= MAX_SPARE_THREADS) return false;
  w.unref();
  routesOf(w); // a spare's error and exit are heard
  spareThreads.push(w);
  return true;
}

/**
 * Starts a spare datapath thread now (vale-ts does at startup), so the first
 * switch with a 'thread' datapath does not wait for one. Resolves when the
 * thread is up.
 */
export async function prestartDatapathThread(): Promise<void> {
  if (spareThreads.length > 0) return;
  const w = new Worker(DATAPATH_THREAD, { resourceLimits: THREAD_LIMITS });
  w.unref();
  await new Promise<void>((res, rej) => {
    const loaded = (m: { op?: string }): void => {
      if (m?.op !== 'spare') return;
      w.off('message', loaded);
      w.off('error', rej);
      res();
    };
    w.on('message', loaded);
    w.once('error', rej);
  });
  if (!returnThread(w)) void w.terminate();
}

/** A switch. Ports come from its control server, or {@link Switch.addPort}. */
export class Switch extends EventEmitter {
  readonly name: string;
  /** netmap's bridge_idx, assigned by the server hosting the switch */
  bridgeIndex = 0;
  readonly bridge: LearningBridge | undefined;
  /** 'thread': where the forwarding loop runs (see {@link SwitchOptions.datapath}) */
  readonly datapath: 'loop' | 'thread';
  private readonly lookup: BatchLookup | undefined;
  private readonly nativeBridge: boolean;
  private readonly core: NativeSwitchCore;
  /** 'loop': one watcher on the core's epoll set of every doorbell */
  private readonly watcher: NativeFdWatcher | undefined;
  /** 'thread': the datapath thread, its command port, its last MAC table */
  private readonly thread: { worker: Worker; control: MessagePort; ready: Promise<void>; exited: Promise<void> } | undefined;
  private threadMac: { entries: { mac: string; port: number; ageMs: number }[]; counters: Record<string, number>; size: number; at: number } | undefined;
  /** busy-poll window, ms (the clock is performance.now(): no BigInt per round) */
  private readonly busyPollMs: number;
  private readonly portsById = new Map<number, SwitchPort>();
  /** monitors (valeX:Y/r, /t, /rt) by core index, and the port each watches: not ports of the switch */
  private readonly monitorsById = new Map<number, { mon: SwitchPort; watched: SwitchPort }>();
  private running = false;
  private sleeping = false;
  private scheduled = false;
  private lastWork = 0;
  private blocked = false;
  private wakeTimer: NodeJS.Timeout | undefined;
  private expireTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** counters of ports that have gone, summed, so totals stay exact */
  private readonly retired: Record<string, number> = {};
  private readonly clock: Clock;
  private readonly stallMs: number;
  /** every new port's bounded-backpressure bound (µs) */
  private readonly holdUs: number;
  private readonly holdGiven: boolean;
  /** 'loop': receivers holding back a lossless sender (the thread keeps its own) */
  private readonly stallWatch: StallWatch;
  /** 'loop': the next round is the first after a wakeup, to judge it */
  private woken = false;
  /** 'loop': wakes the switch when a doorbell's backoff ends */
  private backoffTimer: NodeJS.Timeout | undefined;
  private stalls = 0;
  /** 'thread': the pool of spare threads is full; the thread ends with this switch */
  private endThread = false;

  constructor(name: string, opts: SwitchOptions = {}) {
    super();
    if (!/^vale[A-Za-z0-9_]*$/.test(name)) {
      throw new Error(`invalid switch name '${name}': a switch is named vale followed by letters, digits or _ (vale0, valeA)`);
    }
    this.name = name;
    const batch = opts.batch ?? 512;
    const maxBatch = native.SwitchCore.maxBatch;
    if (!Number.isInteger(batch) || batch < 1 || batch > maxBatch) throw new RangeError(`batch ${batch} out of range: use 1..${maxBatch}`);
    const headerBytes = opts.headerBytes ?? native.SwitchCore.defaultHeaderBytes;
    const maxHeader = native.SwitchCore.maxHeaderBytes;
    if (!Number.isInteger(headerBytes) || headerBytes < 14 || headerBytes > maxHeader) {
      throw new RangeError(`headerBytes ${headerBytes} out of range: use 14..${maxHeader} (the lookup reads at least the Ethernet header)`);
    }
    const busy = opts.busyPollUs ?? 50;
    if (!(busy >= 0)) throw new RangeError(`busyPollUs ${busy} must be >= 0`);
    this.busyPollMs = busy / 1000;
    this.clock = opts.clock ?? systemClock;
    const stall = opts.stallMs ?? 1000;
    if (!(stall > 0) || !Number.isFinite(stall)) throw new RangeError(`stallMs ${stall} must be a positive number of milliseconds`);
    this.stallMs = stall;
    this.stallWatch = new StallWatch(stall, (idx) => this.core.countHoldShortened(idx));
    this.holdUs = checkHoldUs(opts.holdUs ?? DEFAULT_HOLD_US);
    this.holdGiven = opts.holdUs !== undefined;
    this.core = new native.SwitchCore({ batch, headerBytes });
    // a flood waits for a full receiver at most the switch's own bound, even
    // where a port's is longer (an in-line guest's: ports/vhost-user.ts)
    this.core.setFloodHoldUs(this.holdUs);
    this.datapath = opts.datapath ?? 'loop';
    this.nativeBridge = opts.nativeBridge ?? false;
    if (this.nativeBridge && (opts.lookup || opts.lookupModule)) throw new TypeError(`switch ${name}: nativeBridge replaces the lookup; give one or the other`);
    if (this.datapath === 'thread') {
      if (opts.lookup) throw new TypeError(`switch ${name}: a 'thread' datapath takes its lookup from lookupModule (a function cannot cross threads)`);
      if (opts.clock) throw new TypeError(`switch ${name}: a 'thread' datapath keeps the system clock (a clock cannot cross threads); use datapath 'loop' to inject one`);
      this.thread = this.startThread(busy, opts);
      return;
    }
    if (opts.datapath !== undefined && opts.datapath !== 'loop') throw new RangeError(`datapath '${String(opts.datapath)}': use 'loop' or 'thread'`);
    this.watcher = new native.FdWatcher(this.core.waitFd, () => this.wake());
    if (opts.lookup) {
      this.lookup = opts.lookup;
    } else if (this.nativeBridge) {
      this.lookup = undefined;
    } else {
      const lb = new LearningBridge({ maxEntries: opts.macTableSize, ageMs: opts.macAgeMs, clock: opts.clock ?? systemClock });
      this.bridge = lb;
      this.lookup = lb.lookupBatch;
      this.expireTimer = setInterval(() => lb.expire(), 1000);
      this.expireTimer.unref();
    }
  }

  private startThread(busyPollUs: number, opts: SwitchOptions): NonNullable<Switch['thread']> {
    const { port1, port2 } = new MessageChannel();
    const init: DatapathInit = { token: this.core.share(), name: this.name, busyPollUs, control: port2, stallMs: this.stallMs };
    if (opts.lookupModule !== undefined) init.lookupModule = opts.lookupModule;
    if (opts.lookupExport !== undefined) init.lookupExport = opts.lookupExport;
    if (opts.macTableSize !== undefined) init.macTableSize = opts.macTableSize;
    if (opts.macAgeMs !== undefined) init.macAgeMs = opts.macAgeMs;
    if (opts.nativeBridge) init.nativeBridge = true;
    const worker = takeThread(init, port2);
    worker.ref(); // until it has loaded the lookup (a failure must be seen)
    let readyRes: () => void = () => {};
    let readyRej: (e: Error) => void = () => {};
    const ready = new Promise<void>((res, rej) => {
      readyRes = res;
      readyRej = rej;
    });
    ready.catch(() => {}); // observed through whenReady()
    let exitedRes: () => void = () => {};
    const exited = new Promise<void>((res) => (exitedRes = res));
    const onMessage = (m: ThreadMessage): void => {
      if (m.op === 'ready') {
        readyRes();
        // from now on the control server keeps the process alive, not the
        // datapath (unless stopped() is waiting for it)
        if (!this.closed) worker.unref();
      } else if (m.op === 'mac') this.threadMac = { entries: m.entries ?? [], counters: m.counters ?? {}, size: m.size ?? 0, at: Date.now() };
      else if (m.op === 'lookupError') this.emit('lookupError', new Error(m.message));
      else if (m.op === 'failed') onError(new Error(`switch ${this.name}: its datapath cannot start: ${m.message}`));
      else if (m.op === 'stalled') {
        this.stalls++;
        const p = this.portsById.get(m.index ?? -1);
        if (p) this.emit('stalled', p);
      } else if (m.op === 'stopped') {
        // the last message for this switch: the thread has let go of the
        // core, which goes now rather than at some later GC
        detach();
        this.core.shutdown();
        port1.close();
        exitedRes();
        if (this.endThread) void worker.terminate();
      }
    };
    const onError = (e: Error): void => {
      readyRej(e);
      if (!this.closed) this.emit('datapathError', e);
    };
    const onExit = (): void => {
      detach();
      this.core.shutdown();
      readyRej(new Error(`switch ${this.name}: its datapath thread exited`));
      exitedRes();
    };
    const routes = routesOf(worker);
    const detach = (): void => void routes.delete(init.token);
    routes.set(init.token, { message: onMessage, error: onError, exit: onExit });
    threadSwitches.add(this);
    if (!exitHooked) {
      exitHooked = true;
      process.once('exit', wakeThreadsAtExit);
    }
    void exited.then(() => threadSwitches.delete(this));
    return { worker, control: port1, ready, exited };
  }

  /** Resolves once the forwarding loop runs ('thread': the thread has loaded its lookup). */
  whenReady(): Promise<void> {
    return this.thread ? this.thread.ready : Promise.resolve();
  }

  private command(c: DatapathCommand): void {
    if (!this.thread) return;
    this.thread.control.postMessage(c);
    this.core.notify();
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
  addPort(name: string, params: PortParams, opts: { persistent?: boolean; lossless?: boolean; regionFd?: number; vnetHdrLen?: VnetHdrLen; holdUs?: number } = {}): SwitchPort {
    if (this.closed) throw new Error(`switch ${this.name} is shut down`);
    const holdUs = checkHoldUs(opts.holdUs ?? this.holdUs);
    if (this.port(name)) throw Object.assign(new Error(`${name} already exists`), { code: 'EEXIST' });
    // regionFd: a region prepared off the loop (createRegionFdAsync); the
    // core maps its own duplicate, the caller closes this one
    const np =
      opts.regionFd !== undefined
        ? this.core.addPort(params, name, opts.lossless ?? false, opts.regionFd)
        : this.core.addPort(params, name, opts.lossless ?? false);
    // a persistent port starts with nobody on it
    if (opts.persistent) this.core.setAttached(np.id, false);
    if (holdUs !== 0) this.core.setHoldUs(np.id, holdUs);
    if (opts.vnetHdrLen) {
      try {
        this.core.setVnetHdrLen(np.id, opts.vnetHdrLen);
      } catch (e) {
        this.core.removePort(np.id);
        throw e;
      }
    }
    // the geometry is what the core laid out (defaults applied), not our
    // idea of its defaults
    const txRings = np.txRings;
    const rxRings = np.rxRings;
    const port: SwitchPort = {
      name,
      index: np.id,
      persistent: opts.persistent ?? false,
      lossless: opts.lossless ?? false,
      holdUs,
      attached: false,
      geometry: {
        memsize: np.size,
        nifpOffset: np.nifpOffset,
        txRings,
        rxRings,
        txSlots: np.txSlots,
        rxSlots: np.rxSlots,
        bufSize: np.bufSize,
        memId: nextMemId++,
      },
      fds: [np.fd, np.clientBell, np.switchBell],
      txRings,
      rxRings,
      vnetHdrLen: opts.vnetHdrLen ?? 0,
    };
    this.portsById.set(np.id, port);
    if (this.thread) {
      // a sleeping datapath thread wakes and asks the new port for kicks too
      this.core.notify();
    } else {
      // a sleeping switch asks the new port for kicks too (one call re-arms all)
      if (this.sleeping && !this.core.armAll(this.blocked)) this.wake();
      this.start();
    }
    this.emit('port', port);
    return port;
  }

  /**
   * Open a monitor of `watched`, as netmap's `valeX:Y/r` (rx: what it
   * receives), `/t` (tx: what it sends) or `/rt`: a region of its own whose
   * rx ring 0 gets a copy of every frame delivered to `watched` (with rx)
   * and whose next ring (ring 0 without rx) gets a copy of every frame
   * taken from it. It is not a port of the switch (not listed, not a
   * destination, never waited for): a full ring drops the copy into its
   * dropMonitor counter. Give it to a client like a port (its `fds`).
   * `reserve`: how many of the port's monitors (8 at most) this one may not
   * take, kept for other openers (vale-ts keeps some for root and its uid).
   */
  addMonitor(watched: SwitchPort, rx: boolean, tx: boolean, params: { rxSlots?: number; reserve?: number } = {}): SwitchPort {
    if (this.closed) throw new Error(`switch ${this.name} is shut down`);
    if (this.portsById.get(watched.index) !== watched) throw Object.assign(new Error(`${watched.name} is not a port of ${this.name}`), { code: 'ENXIO' });
    if (!rx && !tx) throw new RangeError('a monitor watches rx, tx or both');
    let n = 0;
    for (const m of this.monitorsById.values()) if (m.watched === watched) n++;
    const reserve = params.reserve ?? 0;
    if (n >= MAX_MONITORS_PER_PORT - reserve) {
      const kept = reserve ? `; the last ${reserve} are kept for privileged openers` : '';
      throw Object.assign(new Error(`${watched.name} has ${n} monitors already (limit ${MAX_MONITORS_PER_PORT}${kept})`), { code: 'ENOSPC' });
    }
    const name = `${watched.name}/${rx ? 'r' : ''}${tx ? 't' : ''}`;
    const np = this.core.addPort(monitorParams(watched, rx, tx, params.rxSlots), name, false);
    try {
      this.core.setMonitor(np.id, watched.index, rx, tx);
    } catch (e) {
      this.core.removePort(np.id);
      throw e;
    }
    const mon: SwitchPort = {
      name,
      index: np.id,
      persistent: false,
      lossless: false,
      holdUs: 0, // a monitor never holds anything back
      attached: true,
      vnetHdrLen: 0, // a monitor takes frames completed or segmented, as any header-less port
      geometry: {
        memsize: np.size,
        nifpOffset: np.nifpOffset,
        txRings: np.txRings,
        rxRings: np.rxRings,
        txSlots: np.txSlots,
        rxSlots: np.rxSlots,
        bufSize: np.bufSize,
        memId: nextMemId++,
      },
      fds: [np.fd, np.clientBell, np.switchBell],
      txRings: np.txRings,
      rxRings: np.rxRings,
    };
    this.monitorsById.set(np.id, { mon, watched });
    return mon;
  }

  /** Close a monitor opened by {@link Switch.addMonitor}; returns its last counters (also emitted as `'monitorRemoved'`). */
  removeMonitor(index: number): Record<string, number> {
    const m = this.monitorsById.get(index);
    if (!m) return {};
    this.monitorsById.delete(index);
    const last = this.core.removePort(index);
    this.emit('monitorRemoved', m.mon, last);
    return last;
  }

  /** The monitors' own ports (regions and switch slots, for limits: not ports of the switch). */
  monitorPorts(): SwitchPort[] {
    return [...this.monitorsById.values()].map((m) => m.mon);
  }

  /** Open monitors: each with the port it watches (or watched: that port may have gone) and its counters. */
  monitors(): { name: string; index: number; watches: string; counters: Record<string, number> }[] {
    return [...this.monitorsById.values()].map(({ mon, watched }) => ({ name: mon.name, index: mon.index, watches: watched.name, counters: this.core.stats(mon.index) }));
  }

  /** Remove a port: the MAC table forgets it, other ports are untouched. */
  removePort(index: number): void {
    const p = this.portsById.get(index);
    if (!p) return;
    // take what the port queued before it went ('loop'; a datapath thread
    // takes it if it gets there first), then count what is left
    if (!this.thread) this.pump();
    const last = this.core.removePort(index);
    // the core unmapped the region and closed its fds just now, not at GC
    for (const [k, v] of Object.entries(last)) this.retired[k] = (this.retired[k] ?? 0) + v;
    this.stallWatch.clear(index);
    this.portsById.delete(index);
    this.bridge?.portRemoved(index);
    if (this.nativeBridge) this.core.nativePortRemoved(index);
    this.command({ op: 'portRemoved', index });
    // with its final counters, for whoever keeps them beyond the port
    this.emit('portRemoved', p, last);
  }

  /**
   * Give a port whose last client has left a fresh region and fresh
   * doorbells (`port.fds` changes), so the next client shares nothing with
   * the last one, which may keep its mapping and descriptors. The frames the
   * last client left on tx are taken first where this thread runs rounds
   * (as {@link removePort}) and the rest counted (dropClosed); what it never
   * read on rx is counted (detachedUnread). Counters and settings stay; the
   * MAC table forgets the port, as a switch does when a link goes down.
   */
  renewPort(index: number): void {
    const p = this.portsById.get(index);
    if (!p) throw new Error(`no port ${index} on ${this.name}`);
    if (!this.thread) this.pump();
    const np = this.core.renewPort(index, p.name);
    p.fds = [np.fd, np.clientBell, np.switchBell];
    this.stallWatch.clear(index);
    this.bridge?.portRemoved(index);
    if (this.nativeBridge) this.core.nativePortRemoved(index);
    this.command({ op: 'portRemoved', index });
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

  /** The bounded-backpressure bound (µs) new ports get unless they say otherwise. */
  get defaultHoldUs(): number {
    return this.holdUs;
  }

  /** Whether the switch's bound was given (SwitchOptions.holdUs, vale-ts --hold-us) rather than the default. */
  get holdUsGiven(): boolean {
    return this.holdGiven;
  }

  /** Change a port's bounded-backpressure bound (µs, 0..1 000 000; 0: its full ring drops at once). */
  setHoldUs(index: number, holdUs: number): void {
    const p = this.portsById.get(index);
    if (!p) throw new Error(`no port ${index} on ${this.name}`);
    this.core.setHoldUs(index, checkHoldUs(holdUs));
    p.holdUs = holdUs;
  }

  /**
   * The native core, for a port driver whose datapath runs in-line in the
   * switch's own rounds (cpp/core/switch_core.h `RoundHook`: vhost-user);
   * not for applications.
   * @internal
   */
  inlineDriverCore(): object {
    return this.core;
  }

  /**
   * Declare the virtio-net header a port's frames carry, both ways (0, 10 or
   * 12 bytes, as netmap's NETMAP_REQ_PORT_HDR_SET). The lookup sees each
   * frame after its header. Between ports of different lengths the switch
   * converts every copy: from a header-carrying port to a header-less one it
   * completes the checksum and segments GSO frames (counted at the receiver:
   * vnetCsumCompleted, vnetSegmented, vnetSegments; dropBadVnetHdr when the
   * header asks for the impossible); to a header-aware port from a
   * header-less one it prepends a zero header; equal lengths pass untouched
   * (vnetPassed). A port driver that reads headers from its link (a TAP with
   * IFF_VNET_HDR, a vhost-user guest) calls this before it starts moving
   * frames, and writes the headers it gets on rx to its link as they are.
   */
  setVnetHdrLen(index: number, len: VnetHdrLen): void {
    const p = this.portsById.get(index);
    if (!p) throw new Error(`no port ${index} on ${this.name}`);
    if (len !== 0 && len !== 10 && len !== 12) throw Object.assign(new RangeError(`virtio-net header length ${String(len)} must be 0, 10 or 12`), { code: 'EINVAL' });
    this.core.setVnetHdrLen(index, len);
    p.vnetHdrLen = len;
  }

  /** Counters of one port, by name: rxFrames, txFrames, drops by reason... */
  counters(index: number): Record<string, number> {
    return this.core.stats(index);
  }

  /**
   * Frames waiting in a port's rings now: published by its client on tx and
   * not yet taken by the switch (in flight), and delivered into its rx rings
   * and not yet released by the client. A head the client set outside the
   * ring counts as nothing queued (the switch ignores it too, as badHead).
   */
  occupancy(index: number): { txQueued: number; rxQueued: number } {
    return this.core.occupancy(index);
  }

  /** Counters summed over every port, present and removed. */
  totals(): Record<string, number> {
    const t: Record<string, number> = { ...this.retired };
    for (const p of this.portsById.values()) for (const [k, v] of Object.entries(this.core.stats(p.index))) t[k] = (t[k] ?? 0) + v;
    return t;
  }

  /** Switch-wide counters: wakeups, doorbell backoffs, stalls. */
  switchCounters(): SwitchCounters {
    return { ...this.core.switchCounters(), stalls: this.stalls };
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
    const tm = this.threadMac;
    const since = tm ? Date.now() - tm.at : 0;
    const entries: Iterable<{ mac: string; port: number; ageMs: number }> = this.bridge ? this.bridge.table.entries() : tm ? tm.entries : [];
    let i = 0;
    if (ml > 0) {
      for (const e of entries) {
        if (i++ < mo) continue;
        macTable.push({ mac: e.mac, port: byIdx.get(e.port) ?? `#${e.port}`, ageMs: Math.round(e.ageMs + since) });
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
      macTableTotal: this.bridge ? this.bridge.table.size : tm ? tm.size : 0,
      macTableOffset: mo,
      macTableCounters: this.bridge ? { ...this.bridge.table.counters, size: this.bridge.table.size } : tm ? { ...tm.counters, size: tm.size } : {},
      totals: this.totals(),
      switchCounters: { ...this.switchCounters() },
      ...(this.monitorsById.size ? { monitors: this.monitors().map(({ name, watches, counters }) => ({ name, watches, counters })) } : {}),
    };
  }

  /**
   * One round over every port, in one native call: at most `batch` frames
   * per tx ring, starting from a rotating port so N senders into one
   * receiver get ~1/N each; the lookup runs once, only if frames came.
   * Returns the frames consumed.
   */
  pump(): number {
    // 'thread': the datapath thread runs the rounds
    if (this.thread) return 0;
    const done = this.lookup ? this.core.round(this.lookup) : this.core.roundNative();
    this.blocked = done < 0;
    if (this.blocked) this.noteBlocked(this.core.blockedOn());
    else if (this.stallWatch.size) this.stallWatch.unblocked(this.clock.nowMs());
    return done < 0 ? -done - 1 : done;
  }

  /**
   * A lossless sender waits on `idx`: declared stalled, and no longer waited
   * for, once it took less than the hold quantum in the stall bound
   * (stall-watch.ts; 'loop' datapath, the thread keeps its own account).
   */
  private noteBlocked(idx: number): void {
    if (idx < 0) return;
    if (!this.stallWatch.blocked(idx, this.core.stats(idx)['txFrames'] ?? 0, this.clock.nowMs())) return;
    const p = this.portsById.get(idx);
    if (!p) return;
    this.core.setStalled(idx, true);
    this.stalls++;
    this.emit('stalled', p);
  }

  private start(): void {
    if (this.running || this.closed) return;
    this.running = true;
    this.lastWork = performance.now();
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.onImmediate);
  }

  /** schedule()'s callback, made once (not a closure per round) */
  private readonly onImmediate = (): void => {
    this.scheduled = false;
    this.loop();
  };

  private loop(): void {
    if (this.closed) return;
    const moved = this.pump();
    const now = performance.now();
    if (this.woken) {
      this.woken = false;
      const useful = moved > 0 || this.blocked;
      this.core.noteWakeup(useful);
      if (!useful) {
        // a doorbell rang for nothing: sleep again at once, no busy poll
        this.lastWork = 0;
        this.sleep();
        return;
      }
    }
    if (moved > 0) {
      this.lastWork = now;
    } else if (now - this.lastWork < this.busyPollMs) {
      // polling and nothing came: let other runnable threads have the CPU
      // (a client this switch waits for may be one of them); if one took it,
      // the CPU is contended: stop polling and sleep until a kick
      if (!yieldInTime()) this.lastWork = 0;
    }
    if (now - this.lastWork < this.busyPollMs) {
      this.schedule();
      return;
    }
    this.sleep();
  }

  /** Ask every client for a kick (one call), re-check, and sleep on the one doorbell set. */
  private sleep(): void {
    const blocked = this.blocked;
    if (!this.core.armAll(blocked)) {
      this.lastWork = performance.now();
      this.schedule();
      return;
    }
    this.sleeping = true;
    this.watcher!.start(1);
    // backpressured frames wait for a receiver's kick; a timer guards against
    // a receiver that never asks
    // (or the hold bound of a held-back ring, whichever comes first)
    if (blocked) {
      const held = this.core.heldDueMs();
      this.wakeTimer = setTimeout(() => this.wake(), held >= 0 ? Math.min(10, held) : 10);
    }
    // a doorbell in backoff is listened to again when it ends, and the
    // switch looks once for what its port sent meanwhile
    const due = this.core.backoffDue();
    if (due >= 0) this.backoffTimer = setTimeout(() => this.wake(), due);
  }

  private wake(): void {
    if (!this.sleeping) return;
    this.sleeping = false;
    if (this.wakeTimer) {
      clearTimeout(this.wakeTimer);
      this.wakeTimer = undefined;
    }
    if (this.backoffTimer) {
      clearTimeout(this.backoffTimer);
      this.backoffTimer = undefined;
    }
    this.watcher!.stop();
    this.core.disarmAll();
    this.woken = true;
    this.lastWork = performance.now();
    // forward at once: the frame that rang is waiting
    if (!this.closed) this.loop();
  }

  /** Stop forwarding and release every port. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    if (this.backoffTimer) clearTimeout(this.backoffTimer);
    if (this.expireTimer) clearInterval(this.expireTimer);
    for (const i of [...this.monitorsById.keys()]) this.removeMonitor(i);
    for (const p of [...this.portsById.values()]) this.removePort(p.index);
    this.watcher?.close();
    // the core goes now ('loop', or a thread that has not taken it yet: a
    // thread busy elsewhere must not hold a closed switch's memory), else
    // once the thread has stopped
    if (!this.thread || this.core.unshare()) this.core.shutdown();
    this.command({ op: 'stop' });
    if (this.thread) this.endThread = !returnThread(this.thread.worker);
  }

  /** Resolves when the datapath has stopped after {@link Switch.close} ('thread': the thread has exited). */
  async stopped(): Promise<void> {
    if (!this.thread) return;
    this.thread.worker.ref(); // waited for: keep the process up until it has stopped
    await this.thread.exited;
    this.thread.worker.unref();
  }
}
