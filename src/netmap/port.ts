/**
 * A netmap port from TypeScript: its rings over the mapped region, sync,
 * an async poll on the Node loop, and nm_inject/nm_dispatch-style helpers.
 */
import { native, type NativeFdWatcher } from './addon.js';
import { NIF } from './abi.js';
import type { Backend, PollEvents, PortRegistration } from '../backends/backend.js';
import type { ParsedPortName } from './name.js';
import { Ring } from './ring.js';

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
  readonly frames: Uint8Array[];
  /** rx ring index each frame came from */
  readonly rings: number[];
}

/** How often a sleeping poll re-checks that the other side is alive. */
const LIVENESS_MS = 200;

/** An open netmap port. Create with {@link open}. */
export class Port {
  /** The name as opened. */
  readonly name: string;
  /** The parsed name. */
  readonly parsed: ParsedPortName;
  /** Which backend serves the port: kernel netmap or the userspace one. */
  readonly backend: 'user' | 'kernel';
  /** What carries frames: kernel netmap, the vale-ts switch, or a pipe. */
  readonly transport: 'kernel' | 'vale-ts' | 'pipe';
  /** Bound tx rings. */
  readonly txRings: readonly Ring[];
  /** Bound rx rings. */
  readonly rxRings: readonly Ring[];
  /** The mapped region. */
  readonly memory: ArrayBuffer;
  /** Buffer size in bytes. */
  readonly bufSize: number;
  /**
   * Ring counts and allocator as the registration reported them (what C's
   * `nmport_d.reg` holds): host ring counts are the real ones, 0 on VALE
   * ports and pipes, where the netmap_if counts a placeholder host ring.
   */
  readonly registration: PortRegistration;

  private readonly be: Backend;
  private watcher: NativeFdWatcher | undefined;
  private wake: ((ev: number) => void) | undefined;
  private closed = false;
  private lastTx = 0;
  private batchRelease: number[] | undefined;
  private lastYield = 0;
  /** Default busy-wait window of {@link Port.poll}, µs (0: sleep at once). */
  busyWaitUs = DEFAULT_BUSY_WAIT_US;

  /** @internal use {@link open} */
  constructor(parsed: ParsedPortName, be: Backend) {
    this.name = parsed.spec;
    this.parsed = parsed;
    this.be = be;
    this.backend = be.kind === 'kernel' ? 'kernel' : 'user';
    this.transport = be.kind === 'kernel' ? 'kernel' : be.kind === 'user' ? 'vale-ts' : 'pipe';
    this.memory = be.memory;
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
      tx.push(new Ring(be.memory, ringOfs(id), 'tx', id, (r) => be.txsync(r), this.name));
    }
    const rx: Ring[] = [];
    for (const id of be.rxRingIds) {
      if (id >= nRx + nHostRx) throw new RangeError(`${this.name}: rx ring ${id} does not exist`);
      rx.push(new Ring(be.memory, ringOfs(nTx + nHostTx + id), 'rx', id, (r) => be.rxsync(r), this.name));
    }
    this.txRings = tx;
    this.rxRings = rx;
    this.registration = be.registration ?? Object.freeze({ txRings: nTx, rxRings: nRx, hostTxRings: nHostTx, hostRxRings: nHostRx, memId: 0 });
    this.bufSize = tx[0]?.bufSize ?? rx[0]?.bufSize ?? 0;
  }

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
   * per-slot prologue checks, for slots written by the addon's batch loops.
   */
  syncRings(rings: readonly Ring[], opts: { trusted?: boolean } = {}): void {
    const trusted = opts.trusted ?? false;
    if (this.be.syncsAllRings && rings.length > 1) {
      if (!trusted) for (const r of rings) r.prologue();
      rings[0]!.sync(true);
      for (const r of rings) r.markSynced();
      return;
    }
    for (const r of rings) r.sync(trusted);
  }

  /** Frames waiting in the rx rings (as of the last rxsync). */
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
    return this.be.hungUp();
  }

  /** The backend object (for backend-specific counters). */
  get backendObject(): Backend {
    return this.be;
  }

  /**
   * Wait, without blocking the event loop, until an rx ring has frames or a
   * tx ring has room (as asked), like poll(2) on a netmap fd. Pending tx
   * frames are always pushed first, as netmap's poll does.
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
      const pendingTx = this.txPending();
      const uvEvents = this.be.armWait(wantRx, wantTx || pendingTx);
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
   * Wait until every frame queued on the tx rings has been taken by the
   * other side (switch, pipe peer, NIC), sleeping rather than spinning.
   * Resolves false on timeout or hang-up with frames still pending.
   */
  async flush(timeoutMs = Infinity): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.txsync();
      if (!this.txPending()) return true;
      if (this.be.hungUp() || Date.now() >= deadline) return false;
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
    if (this.closed) throw new Error(`${this.name}: port is closed`);
    this.txsync();
    let tx = false;
    for (const r of this.txRings) if (!r.empty()) tx = true;
    let rx = false;
    if (wantRx) {
      this.rxsync();
      for (const r of this.rxRings) if (!r.empty()) rx = true;
    }
    return { rx: wantRx && rx, tx: wantTx && tx, hup: this.be.hungUp() };
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
   * nm_dispatch: hand up to `max` received frames to `cb` as zero-copy views
   * (valid only during the call), releasing each slot after. Does not sync.
   * Returns the number of frames handled.
   */
  dispatch(max: number, cb: (frame: Uint8Array, ring: number) => void): number {
    let n = 0;
    for (const r of this.rxRings) {
      while (n < max && !r.empty()) {
        const h = r.head;
        cb(r.frame(h), r.index);
        r.advance(1);
        n++;
      }
    }
    return n;
  }

  /**
   * Async iteration over received batches: each batch's views stay valid
   * until the next iteration step, when its slots are released.
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
        for (const r of this.rxRings) {
          let n = 0;
          for (let i = r.head; n < r.space() && frames.length < maxBatch; i = r.next(i), n++) {
            frames.push(r.frame(i));
            rings.push(r.index);
          }
          release.push(n);
        }
        this.batchRelease = release;
        if (frames.length) yield { frames, rings };
      }
    } finally {
      if (!this.closed) this.releaseBatch();
    }
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
