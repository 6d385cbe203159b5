/**
 * A netmap port from TypeScript: its rings over the mapped region, sync,
 * an async poll on the Node loop, and nm_inject/nm_dispatch-style helpers.
 */
import { native, type NativeFdWatcher } from './addon.js';
import { NIF, NETMAP_MAX_FRAGS, NS_MOREFRAG } from './abi.js';
import type { Backend, BackendKind, PollEvents, PortRegistration } from '../backends/backend.js';
import type { ParsedPortName } from './name.js';
import { Ring, type RingOptions } from './ring.js';

/** What {@link Port.poll} waits for. */
export interface PollOptions {
  /** wait for received frames (default true) */
  rx?: boolean;
  /** wait for tx room (default false) */
  tx?: boolean;
  /** give up after this many ms (default: wait forever); 0 checks and returns */
  timeoutMs?: number;
  /**
   * Busy-wait this long (µs) before sleeping, re-checking the rings and
   * yielding the CPU between checks (netmap's and DPDK's busy-wait): a frame
   * that comes within the window is seen without a wakeup. Default
   * {@link Port.busyWaitUs}.
   */
  spinUs?: number;
}

/**
 * Default busy-wait window of {@link Port.poll}, µs: long enough to cover a
 * round trip through vale-ts on a quiet machine (tens of µs), short enough
 * that an idle port costs nothing (it spins once, then sleeps).
 */
export const DEFAULT_BUSY_WAIT_US = 50;

/** A batch of received frames: zero-copy views valid until the next batch. */
export interface FrameBatch {
  /**
   * the frames, in ring order: views into the port's buffers, not copies
   * (but for a multi-slot frame whose buffers are not one span in memory,
   * which is a copy)
   */
  readonly frames: Uint8Array[];
  /** rx ring index each frame came from */
  readonly rings: number[];
}

/** What {@link Port.onReconnect} is told after a reconnect. */
export interface ReconnectEvent {
  /** reconnects so far, this one included */
  reconnects: number;
  /** frames queued on tx that the old switch never took */
  lostTxFrames: number;
  /** frames the old switch had delivered to the rx rings that were not read yet */
  lostRxFrames: number;
}

/** @internal re-register the port (open's part of reconnecting) */
export type Reopen = () => Promise<Backend>;

/** @internal what a backend that can be followed across restarts offers (vale-ts) */
interface HangupHooks {
  holdOnHangup: boolean;
  onHangup: (() => void) | undefined;
  untakenTxFrames(): number;
}

/** First retry delay and longest delay while waiting for a restarted switch. */
const RECONNECT_FIRST_MS = 20;
const RECONNECT_MAX_MS = 500;

/** How often a sleeping poll re-checks that the other side is alive. */
const LIVENESS_MS = 200;

/** What {@link Port.scanChain} found at a slot with NS_MOREFRAG. */
const CHAIN_WHOLE = 0;
/** the chain's last slot is not published yet: leave it in the ring */
const CHAIN_WAIT = 1;
/** dropped (counted): release its slots, then skip the rest of it if {@link Port.discard} says so */
const CHAIN_DROP = 2;

/** {@link Port.waitSync}'s bits as pollSync()'s object. */
function eventsOf(ev: number): PollEvents {
  return { rx: (ev & Port.RX) !== 0, tx: (ev & Port.TX) !== 0, hup: (ev & Port.HUP) !== 0 };
}

/** An open netmap port. Create with {@link open}. */
export class Port {
  /** The name as opened. */
  readonly name: string;
  /** The parsed name. */
  readonly parsed: ParsedPortName;
  /**
   * Which of {@link open}'s two backends serves the port, as `open(name, {
   * backend })` and `NETMAP_BACKEND` name them: 'kernel' (/dev/netmap) or
   * 'user' (everything in userspace: vale-ts ports and pipes).
   */
  readonly backend: 'user' | 'kernel';
  /** What carries frames: the vale-ts switch, a pipe, or kernel netmap (the backend's {@link BackendKind}). */
  readonly transport: BackendKind;
  /**
   * Bound tx rings. On a port opened with `{ reconnect: true }` a reconnect
   * replaces them (and {@link Port.memory}) with the new registration's:
   * read them from the port again after one, don't keep them.
   */
  get txRings(): readonly Ring[] {
    return this.tx;
  }
  /** Bound rx rings (replaced by a reconnect, as {@link Port.txRings}). */
  get rxRings(): readonly Ring[] {
    return this.rx;
  }
  /** The mapped region (replaced by a reconnect, as {@link Port.txRings}). */
  get memory(): ArrayBuffer {
    return this.be.memory;
  }
  /** Buffer size in bytes. */
  get bufSize(): number {
    return this.tx[0]?.bufSize ?? this.rx[0]?.bufSize ?? 0;
  }
  /**
   * Ring counts and allocator as the registration reported them (what C's
   * `nmport_d.reg` holds): host ring counts are the real ones, 0 on VALE
   * ports and pipes, where the netmap_if counts a placeholder host ring.
   */
  get registration(): PortRegistration {
    return this.reg;
  }

  private be: Backend;
  private tx: readonly Ring[] = [];
  private rx: readonly Ring[] = [];
  private reg!: PortRegistration;
  private readonly ringOpts: RingOptions;
  private readonly reopen: Reopen | undefined;
  private reconnecting: Promise<void> | undefined;
  private reconnectCount = 0;
  private lostTx = 0;
  private lostRx = 0;
  private watcher: NativeFdWatcher | undefined;
  private wake: ((ev: number) => void) | undefined;
  private closed = false;
  private lastTx = 0;
  private batchRelease: number[] | undefined;
  /**
   * A chain's fragments as {@link Port.scanChain} read them, each slot once
   * (a peer sharing the region may rewrite the ring meanwhile): buffer byte
   * offsets in the region and lengths; with chainSlots, chainLen and
   * chainContig, the last scan's result. Fixed size: chains are bounded.
   */
  private readonly fragOfs = new Float64Array(NETMAP_MAX_FRAGS);
  private readonly fragLen = new Uint32Array(NETMAP_MAX_FRAGS);
  private chainSlots = 0;
  private chainLen = 0;
  private chainContig = false;
  /** Per bound rx ring: 1 while the slots of a dropped chain are skipped up to its last one. */
  private discard = new Uint8Array(0);
  /** dispatch()'s copy of a chain whose buffers are not one span (at most NETMAP_MAX_FRAGS buffers). */
  private scratch = new Uint8Array(0);
  private chainsTooLong = 0;
  private chainsInvalid = 0;
  private chainsNotReceived = 0;
  private lastYield = 0;
  /** Default busy-wait window of {@link Port.poll}, µs (0: sleep at once). */
  busyWaitUs = DEFAULT_BUSY_WAIT_US;

  /** @internal use {@link open} */
  constructor(parsed: ParsedPortName, be: Backend, ringOpts: RingOptions = {}, reopen?: Reopen) {
    this.name = parsed.spec;
    this.parsed = parsed;
    this.be = be;
    this.backend = be.kind === 'kernel' ? 'kernel' : 'user';
    this.transport = be.kind;
    this.ringOpts = ringOpts;
    this.reopen = reopen;
    this.bind(be);
    if (reopen) this.follow(be);
  }

  /** Build the rings over `be`'s region. */
  private bind(be: Backend): void {
    const ringOpts = this.ringOpts;
    const dv = new DataView(be.memory);
    const nifp = be.nifpOffset;
    const nTx = dv.getUint32(nifp + NIF.ni_tx_rings, true);
    const nHostTx = dv.getUint32(nifp + NIF.ni_host_tx_rings, true);
    const nRx = dv.getUint32(nifp + NIF.ni_rx_rings, true);
    const nHostRx = dv.getUint32(nifp + NIF.ni_host_rx_rings, true);
    const ringOfs = (i: number): number => nifp + Number(dv.getBigInt64(nifp + NIF.ring_ofs + 8 * i, true));
    const tx: Ring[] = [];
    for (const id of be.txRingIds) {
      if (id >= nTx + nHostTx) throw new RangeError(`${this.name}: tx ring ${id} does not exist`);
      tx.push(new Ring(be.memory, ringOfs(id), 'tx', id, (r) => be.txsync(r), this.name, ringOpts));
    }
    const rx: Ring[] = [];
    for (const id of be.rxRingIds) {
      if (id >= nRx + nHostRx) throw new RangeError(`${this.name}: rx ring ${id} does not exist`);
      rx.push(new Ring(be.memory, ringOfs(nTx + nHostTx + id), 'rx', id, (r) => be.rxsync(r), this.name, ringOpts));
    }
    this.tx = tx;
    this.rx = rx;
    this.discard = new Uint8Array(rx.length);
    this.reg = be.registration ?? Object.freeze({ txRings: nTx, rxRings: nRx, hostTxRings: nHostTx, hostRxRings: nHostRx, memId: 0 });
  }

  /** Reconnect mode: hold the rings still on a hang-up and start re-creating the port. */
  private follow(be: Backend): void {
    const f = be as Backend & Partial<HangupHooks>;
    if (!('holdOnHangup' in f)) throw new Error(`${this.name}: reconnect is offered for vale-ts ports only`);
    f.holdOnHangup = true;
    f.onHangup = () => void this.reconnect();
  }

  /**
   * Re-create the port on the restarted switch (same name, same options),
   * retrying until it answers or the port is closed. Frames queued on tx
   * that the old switch never took, and received frames not yet read, are
   * counted as lost ({@link Port.counters}).
   */
  private reconnect(): Promise<void> {
    if (this.reconnecting) return this.reconnecting;
    const reopen = this.reopen!;
    const run = async (): Promise<void> => {
      let delay = RECONNECT_FIRST_MS;
      while (!this.closed) {
        let next: Backend;
        try {
          next = await reopen();
        } catch {
          // not back yet (refused, or still starting): try again, backing off
          await new Promise<void>((r) => setTimeout(r, delay));
          delay = Math.min(delay * 2, RECONNECT_MAX_MS);
          continue;
        }
        if (this.closed) {
          next.close();
          return;
        }
        const old = this.be;
        const untaken = (old as Backend & Partial<HangupHooks>).untakenTxFrames?.() ?? 0;
        let unread = 0;
        for (const r of this.rx) unread += r.space();
        try {
          this.bind(next);
          this.follow(next);
        } catch {
          // a registration whose rings this port cannot use: drop it and keep
          // waiting (bind assigns nothing when it throws)
          next.close();
          await new Promise<void>((r) => setTimeout(r, RECONNECT_MAX_MS));
          continue;
        }
        this.be = next;
        this.lostTx += untaken;
        this.lostRx += unread;
        this.batchRelease = undefined;
        if (this.watcher) {
          this.watcher.close();
          this.watcher = undefined;
        }
        const w = this.wake;
        this.wake = undefined;
        old.close();
        this.reconnectCount++;
        this.reconnecting = undefined;
        w?.(0);
        this.onReconnect?.({ reconnects: this.reconnectCount, lostTxFrames: untaken, lostRxFrames: unread });
        return;
      }
    };
    this.reconnecting = run();
    return this.reconnecting;
  }

  /**
   * Called after each reconnect (ports opened with `{ reconnect: true }`),
   * with what was lost across that gap; `txRings`, `rxRings` and `memory`
   * are the new ones by then.
   */
  onReconnect: ((e: ReconnectEvent) => void) | undefined;

  /** txsync every bound tx ring: push queued frames, learn free room. */
  txsync(): void {
    this.syncRings(this.txRings);
  }

  /** rxsync every bound rx ring: release consumed slots, learn new frames. */
  rxsync(): void {
    this.syncRings(this.rxRings);
  }

  /**
   * Sync these rings of this port (all of one direction), with one backend
   * call where one covers them all (kernel netmap). `trusted` skips the
   * per-slot prologue checks (where `checkSlots` asked for them), for slots
   * written by the addon's batch loops.
   */
  syncRings(rings: readonly Ring[], opts: { trusted?: boolean } = {}): void {
    const trusted = opts.trusted ?? false;
    if (this.be.syncsAllRings && rings.length > 1) {
      for (const r of rings) r.prologue(trusted);
      rings[0]!.sync(true);
      for (const r of rings) r.markSynced();
      return;
    }
    for (const r of rings) r.sync(trusted);
  }

  /** Slots waiting in the rx rings (as of the last rxsync): frames, each slot of a multi-slot frame counted. */
  rxAvailable(): number {
    let n = 0;
    for (const r of this.rxRings) n += r.space();
    return n;
  }

  /** Free tx slots (as of the last txsync). */
  txSpace(): number {
    let n = 0;
    for (const r of this.txRings) n += r.space();
    return n;
  }

  /** True once the other side (switch, pipe peer) has gone. */
  get hungUp(): boolean {
    return this.reopen ? false : this.be.hungUp();
  }

  /** True while a port opened with `{ reconnect: true }` waits for its switch to come back. */
  get reconnectPending(): boolean {
    return this.reconnecting !== undefined;
  }

  /**
   * The other side as of now: a pipe's peer end, the vale-ts switch, the
   * kernel. 'closed' when a pipe's peer has not come yet or closed cleanly,
   * 'dead' when it went away without closing (or the switch is gone).
   */
  get peer(): 'open' | 'closed' | 'dead' {
    return this.be.peerState ? this.be.peerState() : this.be.hungUp() ? 'dead' : 'open';
  }

  /**
   * This side's counters where its transport keeps any: a pipe end counts
   * `txFrames`, `invalidSlots` (slots it refused to pass on) and
   * `peerErrors`; vale-ts ports are counted by the switch (see
   * `ValeClient.stats`), kernel ports by the kernel. On every port, the
   * multi-slot frames the receive helpers dropped: `rxChainsTooLong` (over
   * NETMAP_MAX_FRAGS slots, or filling the rx ring without an end the
   * sender could ever publish), `rxChainsInvalid` (a slot's buffer outside
   * the region or its length over the buffer), `rxChainsNotReceived`
   * (scattered chains {@link Port.receive} could not hand up).
   */
  counters(): Record<string, number> {
    const c: Record<string, number> = this.be.stats ? { ...this.be.stats() } : {};
    c['rxChainsTooLong'] = this.chainsTooLong;
    c['rxChainsInvalid'] = this.chainsInvalid;
    c['rxChainsNotReceived'] = this.chainsNotReceived;
    if (this.reopen) {
      c['reconnects'] = this.reconnectCount;
      c['reconnectLostTxFrames'] = this.lostTx;
      c['reconnectLostRxFrames'] = this.lostRx;
    }
    return c;
  }

  /** Offset of this port's netmap_if in {@link Port.memory} (NETMAP_IF). */
  get nifpOffset(): number {
    return this.be.nifpOffset;
  }

  /**
   * The file descriptor to watch in a poll loop of your own (epoll, libuv,
   * another event library): the netmap fd for kernel ports, this side's
   * doorbell eventfd/FIFO for vale-ts ports and pipes. Use it with
   * {@link Port.prepareWait} and {@link Port.finishWait}:
   *
   * ```ts
   * const events = port.prepareWait({ rx: true });   // 1 = readable, 2 = writable
   * if (port.rxRings.every((r) => r.empty())) await yourPoll(port.fd, events);
   * port.finishWait();
   * port.rxsync();
   * ```
   */
  get fd(): number {
    return this.be.waitFd;
  }

  /**
   * Ask the other side for a wakeup on {@link Port.fd} when frames arrive
   * (`rx`) or tx room frees up (`tx`), before sleeping on it. Returns the
   * poll events to wait for: 1 readable, 2 writable (or both). Check the
   * rings again after this call and before sleeping: a frame may have landed
   * in between. {@link Port.poll} does all of this on the Node loop.
   */
  prepareWait(want: { rx?: boolean; tx?: boolean } = {}): number {
    if (this.closed) throw new Error(`${this.name}: port is closed`);
    return this.be.armWait(want.rx ?? true, want.tx ?? false);
  }

  /** After waking on {@link Port.fd}: drain the doorbell and withdraw the wakeup requests. */
  finishWait(): void {
    if (this.closed) return;
    this.be.afterWait();
  }

  /** @internal the backend object, for tests that play a hostile client */
  get backendObject(): Backend {
    return this.be;
  }

  /**
   * Wait, without blocking the event loop, until an rx ring has frames or a
   * tx ring has room (as asked), like poll(2) on a netmap fd. Pending tx
   * frames are always pushed first, as netmap's poll does. `rx` means a
   * whole frame to read: the first slots of a multi-slot frame whose last
   * slot is not published yet do not wake it.
   */
  async poll(opts: PollOptions = {}): Promise<PollEvents> {
    // a loop of polls that are always ready would otherwise run on microtasks
    // alone and starve the event loop: let it turn at least once a millisecond
    const now = Date.now();
    if (now - this.lastYield >= 1) {
      this.lastYield = now;
      await new Promise<void>((r) => setImmediate(r));
    }
    const wantRx = opts.rx ?? true;
    const wantTx = opts.tx ?? false;
    const deadline = opts.timeoutMs === undefined ? Infinity : Date.now() + opts.timeoutMs;
    const spinNs = BigInt(Math.round(Math.max(0, Math.min(opts.spinUs ?? this.busyWaitUs, (opts.timeoutMs ?? Infinity) * 1000)) * 1000));
    let spinEnd = spinNs > 0n ? process.hrtime.bigint() + spinNs : 0n;
    for (;;) {
      if (this.reconnecting) {
        if (!(await this.awaitReconnect(deadline))) return { rx: false, tx: false, hup: false };
        continue;
      }
      let ev = this.check(wantRx, wantTx);
      if (ev.rx || ev.tx || ev.hup) return ev;
      if (Date.now() >= deadline) return ev;
      if (spinEnd !== 0n) {
        if (process.hrtime.bigint() < spinEnd) {
          // nothing yet: let a runnable peer (perhaps the switch) have the CPU
          native.schedYield();
          continue;
        }
        spinEnd = 0n;
      }
      // check() has pushed pending tx frames (kicking the other side if it
      // sleeps); asking for a tx-room kick only for that would wake this
      // thread once more per frame for nothing
      const uvEvents = this.be.armWait(wantRx, wantTx);
      // re-check after asking for a kick: a frame may have landed in between
      ev = this.check(wantRx, wantTx);
      if (ev.rx || ev.tx || ev.hup) {
        this.be.afterWait();
        return ev;
      }
      const left = deadline - Date.now();
      await this.sleep(uvEvents, Math.min(left, LIVENESS_MS));
      this.be.afterWait();
    }
  }

  /**
   * {@link Port.poll} for a thread that owns its loop (a pkt-gen-ts thread, a
   * worker): it blocks the calling thread in poll(2) on {@link Port.fd}, so a
   * kick wakes this thread directly, without an event-loop turn in between
   * (one syscall to sleep, one to drain the doorbell). Nothing else on this
   * thread's event loop runs meanwhile: keep `timeoutMs` short (default and
   * most 200 ms) and let the loop turn between calls — a vale-ts switch's
   * hang-up, and a reconnect, are noticed there. While a reconnect is under
   * way it returns no events at once: `await` {@link Port.poll} then.
   * Spins first as {@link Port.poll} does (`spinUs`, default {@link Port.busyWaitUs}).
   */
  pollSync(opts: PollOptions = {}): PollEvents {
    const wantRx = opts.rx ?? true;
    const wantTx = opts.tx ?? false;
    const deadline = Date.now() + Math.min(opts.timeoutMs ?? LIVENESS_MS, LIVENESS_MS);
    const spinNs = BigInt(Math.round(Math.max(0, Math.min(opts.spinUs ?? this.busyWaitUs, (opts.timeoutMs ?? Infinity) * 1000)) * 1000));
    if (spinNs > 0n) {
      const spinEnd = process.hrtime.bigint() + spinNs;
      for (;;) {
        if (this.reconnecting) return eventsOf(0);
        const ev = this.checkBits(wantRx, wantTx);
        if (ev !== 0 || deadline - Date.now() <= 0) return eventsOf(ev);
        if (process.hrtime.bigint() >= spinEnd) break;
        native.schedYield();
      }
    }
    return eventsOf(this.waitUntil(wantRx, wantTx, deadline));
  }

  /** {@link Port.waitSync}'s bits: frames to receive. */
  static readonly RX = 1;
  /** {@link Port.waitSync}'s bits: room to send. */
  static readonly TX = 2;
  /** {@link Port.waitSync}'s bits: the other side hung up. */
  static readonly HUP = 4;

  /**
   * {@link Port.pollSync} without the spin, returning a bit mask
   * ({@link Port.RX} | {@link Port.TX} | {@link Port.HUP}; 0 on timeout, or at
   * once while a reconnect is under way) instead of an object: a loop that
   * waits once per round trip allocates nothing here. `timeoutMs` is capped
   * as pollSync's.
   */
  waitSync(wantRx: boolean, wantTx: boolean, timeoutMs: number): number {
    return this.waitUntil(wantRx, wantTx, Date.now() + Math.min(timeoutMs, LIVENESS_MS));
  }

  /** The sleeping wait of pollSync() and waitSync(): check, ask for a kick, check again, sleep; until `deadline` (Date.now() ms). */
  private waitUntil(wantRx: boolean, wantTx: boolean, deadline: number): number {
    for (;;) {
      if (this.reconnecting) return 0;
      let ev = this.checkBits(wantRx, wantTx);
      if (ev !== 0) return ev;
      const left = deadline - Date.now();
      if (left <= 0) return 0;
      const events = this.be.armWait(wantRx, wantTx); // as poll(): pending tx was pushed by checkBits()
      ev = this.checkBits(wantRx, wantTx);
      if (ev !== 0) {
        this.be.afterWait();
        return ev;
      }
      native.waitFd(this.be.waitFd, events, left);
      this.be.afterWait();
    }
  }

  /**
   * Wait until every frame queued on the tx rings has been taken by the
   * other side (switch, pipe peer, NIC), sleeping rather than spinning.
   * Resolves false on timeout or hang-up with frames still pending.
   */
  async flush(timeoutMs = Infinity): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.reconnecting) return false; // what was queued is gone with the old switch
      this.txsync();
      if (!this.txPending()) return true;
      if (this.hungUp || Date.now() >= deadline) return false;
      const uvEvents = this.be.armWait(false, true);
      this.txsync();
      if (!this.txPending()) {
        this.be.afterWait();
        return true;
      }
      await this.sleep(uvEvents, Math.min(deadline - Date.now(), LIVENESS_MS));
      this.be.afterWait();
    }
  }

  /** True while some tx ring holds frames not yet taken by the other side. */
  txPending(): boolean {
    for (const r of this.txRings) if (r.next(r.tail) !== r.head) return true;
    return false;
  }

  private check(wantRx: boolean, wantTx: boolean): PollEvents {
    return eventsOf(this.checkBits(wantRx, wantTx));
  }

  /** check() as {@link Port.waitSync}'s bits. */
  private checkBits(wantRx: boolean, wantTx: boolean): number {
    if (this.closed) throw new Error(`${this.name}: port is closed`);
    this.txsync();
    let ev = 0;
    if (wantTx) for (const r of this.txRings) if (!r.empty()) ev = Port.TX;
    if (wantRx) {
      this.rxsync();
      for (const r of this.rxRings) if (Port.hasFrame(r)) ev |= Port.RX;
    }
    return this.hungUp ? ev | Port.HUP : ev;
  }

  /**
   * Whether `r` holds a whole frame to read (or slots the receive helpers
   * would release): not merely the first slots of a chain whose last slot
   * is not published yet, which would wake a poll loop for nothing until
   * the sender ends it. One flags read when the last published slot ends a
   * frame.
   */
  private static hasFrame(r: Ring): boolean {
    const h = r.head;
    const t = r.tail;
    if (h === t) return false;
    const n = r.numSlots;
    if (h >= n || t >= n) return true; // let the reader see (and skip) it
    const last = t === 0 ? n - 1 : t - 1;
    if ((r.flags(last) & NS_MOREFRAG) === 0) return true;
    if ((t - h + n) % n === n - 1) return true; // full: the reader drops the chain
    for (let i = h; i !== last; i = r.next(i)) if ((r.flags(i) & NS_MOREFRAG) === 0) return true;
    return false;
  }

  /** Wait for a reconnect in progress, until `deadline`; true once it is done. */
  private async awaitReconnect(deadline: number): Promise<boolean> {
    const pending = this.reconnecting;
    if (!pending) return true;
    if (deadline === Infinity) {
      await pending;
      return true;
    }
    let timer: NodeJS.Timeout | undefined;
    const done = await Promise.race([
      pending.then(() => true),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), Math.max(0, deadline - Date.now())))),
    ]);
    clearTimeout(timer);
    return done;
  }

  private sleep(uvEvents: number, ms: number): Promise<number> {
    if (!this.watcher) {
      this.watcher = new native.FdWatcher(this.be.waitFd, (_status, ev) => {
        const w = this.wake;
        this.wake = undefined;
        this.watcher?.stop();
        w?.(ev);
      });
    }
    const watcher = this.watcher;
    return new Promise<number>((resolve) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        watcher.stop();
        resolve(0);
      }, Math.max(0, ms));
      this.wake = (ev) => {
        clearTimeout(timer);
        resolve(ev);
      };
      watcher.start(uvEvents);
    });
  }

  /**
   * nm_inject: copy one frame into the next free tx slot (rotating over the
   * bound tx rings). Returns false when every tx ring is full. Does not sync:
   * call {@link Port.txsync} or {@link Port.poll} to push.
   */
  inject(frame: Uint8Array, len: number = frame.length): boolean {
    const rings = this.txRings;
    for (let k = 0; k < rings.length; k++) {
      const ri = (this.lastTx + k) % rings.length;
      const r = rings[ri]!;
      if (r.empty()) continue;
      if (len > r.bufSize) throw new RangeError(`${this.name}: frame of ${len} bytes exceeds the ${r.bufSize}-byte buffer`);
      const h = r.head;
      r.bytes.set(len === frame.length ? frame : frame.subarray(0, len), r.bufOffset(h));
      r.setLen(h, len);
      r.setFlags(h, 0);
      r.advance(1);
      this.lastTx = ri;
      return true;
    }
    return false;
  }

  /**
   * nm_dispatch: hand up to `max` received frames to `cb` as views (valid
   * only during the call), releasing each frame's slots after. Does not
   * sync. Returns the number of frames handled.
   *
   * A multi-slot frame (a chain of slots with NS_MOREFRAG on all but the
   * last, as netmap's jumbo frames from a VALE peer, a guest or a NIC) is
   * ONE call with the whole frame, and `max` counts frames. As in
   * nm_dispatch, a chain whose buffers are adjacent in memory (each full
   * one followed by the next) is a zero-copy view over them; any other is
   * copied into a buffer the port owns (at most NETMAP_MAX_FRAGS buffers),
   * so the view is valid during the call only either way. A chain whose
   * last slot is not published yet stays in the ring for a later call. A
   * chain over NETMAP_MAX_FRAGS slots, or one filling the ring without an
   * end, is dropped with the rest of its slots up to its end
   * (`rxChainsTooLong` in {@link Port.counters}); one with a slot outside
   * the region's buffers or longer than a buffer, too (`rxChainsInvalid`).
   */
  dispatch(max: number, cb: (frame: Uint8Array, ring: number) => void): number {
    let n = 0;
    const rings = this.rxRings;
    for (let ri = 0; ri < rings.length && n < max; ri++) {
      const r = rings[ri]!;
      const ns = r.numSlots;
      // head and tail read once: a pipe peer shares the region and could
      // move them under the walk (or out of the ring: a walk that never
      // meets tail); the next sync resets them
      let h = r.head;
      const t = r.tail;
      if (t >= ns || h >= ns) continue;
      if (this.discard[ri]) r.head = r.cur = h = this.skipRest(r, ri, h, t);
      while (n < max && h !== t) {
        if ((r.flags(h) & NS_MOREFRAG) === 0) {
          cb(r.frame(h), r.index);
          r.head = r.cur = h = r.next(h);
          n++;
          continue;
        }
        const st = this.scanChain(r, ri, h, t);
        if (st === CHAIN_WAIT) break;
        const slots = this.chainSlots; // before cb, which may receive again
        if (st === CHAIN_WHOLE) {
          cb(this.chainView(r), r.index);
          n++;
        }
        h += slots;
        if (h >= ns) h -= ns;
        if (this.discard[ri]) h = this.skipRest(r, ri, h, t);
        r.head = r.cur = h;
      }
    }
    return n;
  }

  /**
   * Allocation-free receive, as the switch reads its ports: fill `offsets`
   * (byte offset of each frame in {@link Port.memory}, i.e. in
   * `ring.bytes`) and `lens` with up to `min(offsets.length, lens.length)`
   * received frames, taken in order from the bound rx rings, and release
   * their slots. Returns how many were filled. No sync, no wait, no object
   * per frame: call {@link Port.rxsync} (or {@link Port.poll}) first.
   *
   * The frames stay readable at those offsets until the next rxsync hands
   * their buffers back to the other side, so read them before syncing
   * again.
   *
   * Multi-slot frames (NS_MOREFRAG chains): one whose buffers are adjacent
   * in memory (each full one followed by the next, as nm_dispatch checks)
   * and whose total fits `lens` is one entry, zero-copy. Any other chain
   * is given as one entry per slot when a `flags` array is passed:
   * `flags[i]` is NS_MOREFRAG when entry i's frame goes on in entry i+1
   * (0 on a frame's last or only entry), as netmap's slots say it; without
   * `flags` such a chain cannot be handed up and is dropped, counted as
   * `rxChainsNotReceived` in {@link Port.counters}. A chain never splits
   * across calls: one that does not fit in the entries left waits for the
   * next call, unless it could never fit the arrays (more slots than they
   * hold), when it is dropped and counted the same way; arrays of
   * NETMAP_MAX_FRAGS entries or more take any chain. A chain whose last
   * slot is not published yet stays in the ring; too long or invalid ones
   * are dropped as {@link Port.dispatch} drops them.
   *
   * ```ts
   * const offs = new Uint32Array(256), lens = new Uint16Array(256);
   * const bytes = new Uint8Array(port.memory);
   * for (;;) {
   *   await port.poll({ rx: true });
   *   const n = port.receive(offs, lens);
   *   for (let i = 0; i < n; i++) handle(bytes, offs[i]!, lens[i]!);
   * }
   * ```
   */
  receive(offsets: Uint32Array, lens: Uint16Array, flags?: Uint8Array): number {
    const max = Math.min(offsets.length, lens.length, flags ? flags.length : Infinity);
    let n = 0;
    const rings = this.rxRings;
    for (let ri = 0; ri < rings.length && n < max; ri++) {
      const r = rings[ri]!;
      const t = r.tail;
      let h = r.head;
      if (t >= r.numSlots || h >= r.numSlots) continue; // not a state a sync leaves (a pipe peer sharing the region wrote it): the next sync resets it
      if (this.discard[ri]) h = this.skipRest(r, ri, h, t);
      while (h !== t && n < max) {
        if ((r.flags(h) & NS_MOREFRAG) === 0) {
          offsets[n] = r.bufOffset(h);
          lens[n] = r.len(h);
          if (flags) flags[n] = 0;
          n++;
          h = r.next(h);
          continue;
        }
        const st = this.scanChain(r, ri, h, t);
        if (st === CHAIN_WAIT) break;
        const slots = this.chainSlots;
        if (st === CHAIN_WHOLE) {
          if (this.chainContig && this.chainLen <= 0xffff) {
            offsets[n] = this.fragOfs[0]!;
            lens[n] = this.chainLen;
            if (flags) flags[n] = 0;
            n++;
          } else if (flags && slots <= max) {
            if (n + slots > max) break; // whole in the next call
            for (let k = 0; k < slots; k++, n++) {
              offsets[n] = this.fragOfs[k]!;
              lens[n] = this.fragLen[k]!;
              flags[n] = k + 1 === slots ? 0 : NS_MOREFRAG;
            }
          } else {
            this.chainsNotReceived++;
          }
        }
        h += slots;
        if (h >= r.numSlots) h -= r.numSlots;
        if (this.discard[ri]) h = this.skipRest(r, ri, h, t);
      }
      r.head = r.cur = h;
    }
    return n;
  }

  /**
   * Async iteration over received batches: each batch's views stay valid
   * until the next iteration step, when its slots are released. A
   * multi-slot frame is one frame, as {@link Port.dispatch} hands it up (a
   * chain that is not one span in memory is a copy made for the batch).
   */
  async *batches(maxBatch = 512): AsyncGenerator<FrameBatch, void, undefined> {
    try {
      for (;;) {
        this.releaseBatch();
        const ev = await this.poll({ rx: true });
        if (!ev.rx && ev.hup) return;
        const frames: Uint8Array[] = [];
        const rings: number[] = [];
        const release: number[] = [];
        const rxRings = this.rxRings;
        for (let ri = 0; ri < rxRings.length; ri++) {
          const r = rxRings[ri]!;
          const h0 = r.head;
          const t = r.tail;
          const ns = r.numSlots;
          if (t >= ns || h0 >= ns) {
            release.push(0); // not a state a sync leaves (a pipe peer sharing the region wrote it): the next sync resets it
            continue;
          }
          let i = this.discard[ri] ? this.skipRest(r, ri, h0, t) : h0;
          while (i !== t && frames.length < maxBatch) {
            if ((r.flags(i) & NS_MOREFRAG) === 0) {
              frames.push(r.frame(i));
              rings.push(r.index);
              i = r.next(i);
              continue;
            }
            const st = this.scanChain(r, ri, i, t);
            if (st === CHAIN_WAIT) break;
            if (st === CHAIN_WHOLE) {
              // views of a batch outlive this loop: a scattered chain gets a copy of its own
              frames.push(this.chainContig ? this.chainView(r) : this.chainView(r).slice());
              rings.push(r.index);
            }
            i += this.chainSlots;
            if (i >= ns) i -= ns;
            if (this.discard[ri]) i = this.skipRest(r, ri, i, t);
          }
          release.push(i >= h0 ? i - h0 : i + ns - h0);
        }
        this.batchRelease = release;
        if (frames.length) yield { frames, rings };
      }
    } finally {
      if (!this.closed) this.releaseBatch();
    }
  }

  /**
   * Read the chain that starts at slot `first` of rx ring `r` (bound ring
   * number `ri`), up to `tail`, each slot once into fragOfs/fragLen; says
   * whether it is whole (chainSlots, chainLen, chainContig set), not
   * finished yet, or dropped (counted; chainSlots slots to release, and
   * discard[ri] set where the rest of it is still to come). The walk is
   * bounded by NETMAP_MAX_FRAGS: the sender controls these flags.
   */
  private scanChain(r: Ring, ri: number, first: number, tail: number): number {
    const bs = r.bufSize;
    const limit = r.bufLimit;
    let i = first;
    let k = 0;
    let total = 0;
    let contig = true;
    let bad = false;
    let next = -1; // where the next buffer must start to continue one span
    for (;;) {
      if (i === tail) {
        this.chainSlots = k;
        // a chain holding every slot the sender can fill can never be ended
        if (k < r.numSlots - 1) return CHAIN_WAIT;
        this.discard[ri] = 1;
        this.chainsTooLong++;
        return CHAIN_DROP;
      }
      const idx = r.bufIdx(i);
      const len = r.len(i);
      const fl = r.flags(i);
      if (idx >= limit || len > bs) bad = true;
      const o = r.bufOffsetOf(idx);
      if (k > 0 && o !== next) contig = false;
      next = len === bs ? o + bs : -1;
      this.fragOfs[k] = o;
      this.fragLen[k] = len;
      k++;
      total += len;
      i = r.next(i);
      if ((fl & NS_MOREFRAG) === 0) break;
      if (k === NETMAP_MAX_FRAGS) {
        this.chainSlots = k;
        this.discard[ri] = 1;
        this.chainsTooLong++;
        return CHAIN_DROP;
      }
    }
    this.chainSlots = k;
    if (bad) {
      this.chainsInvalid++;
      return CHAIN_DROP;
    }
    this.chainLen = total;
    this.chainContig = contig;
    return CHAIN_WHOLE;
  }

  /**
   * The whole chain scanChain() just read: a view over its buffers where
   * they are one span, else a copy in the port's scratch buffer (valid
   * until the next call).
   */
  private chainView(r: Ring): Uint8Array {
    const len = this.chainLen;
    if (this.chainContig) return r.bytes.subarray(this.fragOfs[0]!, this.fragOfs[0]! + len);
    if (this.scratch.length < len) {
      // len <= NETMAP_MAX_FRAGS * bufSize (scanChain's bounds), so this stays bounded
      this.scratch = new Uint8Array(Math.min(Math.max(len, 2 * this.scratch.length), NETMAP_MAX_FRAGS * r.bufSize));
    }
    const out = this.scratch;
    for (let k = 0, at = 0; k < this.chainSlots; k++) {
      const o = this.fragOfs[k]!;
      const l = this.fragLen[k]!;
      out.set(r.bytes.subarray(o, o + l), at);
      at += l;
    }
    return out.subarray(0, len);
  }

  /**
   * Skip the slots of a dropped chain from `i` up to and with its last one
   * (or up to `tail`, still skipping next time); returns the slot after.
   */
  private skipRest(r: Ring, ri: number, i: number, tail: number): number {
    while (i !== tail) {
      const fl = r.flags(i);
      i = r.next(i);
      if ((fl & NS_MOREFRAG) === 0) {
        this.discard[ri] = 0;
        break;
      }
    }
    return i;
  }

  /** Same as {@link Port.batches} with the default batch size. */
  [Symbol.asyncIterator](): AsyncGenerator<FrameBatch, void, undefined> {
    return this.batches();
  }

  private releaseBatch(): void {
    const rel = this.batchRelease;
    if (!rel) return;
    this.batchRelease = undefined;
    this.rxRings.forEach((r, i) => r.advance(rel[i] ?? 0));
  }

  /** Close the port; the other side (switch, pipe peer) sees it at once. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.watcher) {
      this.watcher.close();
      this.watcher = undefined;
    }
    const w = this.wake;
    this.wake = undefined;
    this.be.close();
    w?.(0);
  }
}
