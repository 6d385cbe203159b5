/**
 * pkt-gen's thread bodies (sender_body, receiver_body, txseq_body,
 * rxseq_body, ping_body, pong_body) over a {@link Port}. The same code runs
 * on the main thread (thread 0) and in worker threads (`-p N`): it shares
 * nothing with the reporting thread but a counter array and a cancel flag on
 * SharedArrayBuffers.
 *
 * The tx and rx loops call the addon once per batch (see native.ts). Between
 * batches they sync the rings, spin briefly when the other side is a little
 * behind, sleep in {@link Port.poll} when it is far behind, and yield to the
 * event loop every few milliseconds so timers and signals keep running.
 *
 * @module
 */
import { performance } from 'node:perf_hooks';
import type { Ring } from '../../src/index.js';
import { Port, RingError, SwitchGoneError } from '../../src/index.js';
import { NS_MOREFRAG } from '../../src/netmap/abi.js';
import { dumpPayload, ringPointer } from './dump.js';
import { CTR, PONG_DROP, PONG_DROP_KINDS, PONG_STATE, PONG_STATE_LEN, RX_EVENT, createRxCounter, createTxGen, pktgenNative, type TxGenSpec } from './native.js';
import { native } from '../../src/netmap/addon.js';
import { requestShortSlice } from '../../src/netmap/sched.js';
import type { PktGenFunction } from './options.js';
import { LINE, logLine, RttStats } from './report.js';

/** `__LINE__`s of D() calls that report.ts does not list (approximate, near their upstream spot). */
export const XLINE = {
  POLL_ERROR_PING: 1577,
  POLL_ERROR_PONG: 1684,
  OUCH_CANNOT_SEND: 1548,
  RXSEQ_FRAGS: 2212,
  AFFINITY: 642,
  PONG_NOT_ECHOED: 1720,
  PING_NOT_REPLIES: 1640,
} as const;

/** Everything a thread needs, structured-clone-able (sent to workers as is). */
export interface ThreadConfig {
  /** Thread number (pkt-gen's `me`). */
  index: number;
  nthreads: number;
  func: PktGenFunction;
  /** The name this thread opens (`NAME-i` with -p N) — used by workers. */
  portName: string;
  /** pkt-gen's g.ifname, for log lines. */
  iface: string;
  /** The first thread's fd, for `main_fd` in log lines. */
  mainFd: number;
  /** Packets (tx/rx) or transactions (ping/pong) for this thread; 0 = forever. */
  count: number;
  burst: number;
  /** -R packets per second (0 = unlimited) and the period of one burst. */
  rate: number;
  periodNs: number;
  /** rx: keep running after 1 s without traffic (no -W). */
  forever: boolean;
  /** -X */
  dump: boolean;
  /** CPU to pin to, -1 for none. */
  cpu: number;
  /** Senders and ping: the frame template. */
  template: Uint8Array;
  /** Senders: the native generator's options. */
  tx?: TxGenSpec;
  /** sender_body: what its `frags %u frag_size %u` line says (see senderFrags). */
  fragsLine?: { frags: number; fragSize: number };
  /** virtio-net header bytes in front of each frame. */
  hdrLen: number;
  /** Options given to open() by workers. */
  openOpts: { backend?: 'auto' | 'user' | 'kernel'; socket?: string };
}

/** What a thread shares with the reporting thread. */
export interface ThreadShared {
  /** This thread's counters (see {@link CTR}). */
  counters: Float64Array;
  /** [0]: cancel flag, set by the SIGINT handler for every thread. */
  control: Int32Array;
}

/**
 * A pointer-looking thread id for the lines where pkt-gen prints
 * pthread_self() (`%p`): one per process and thread number.
 */
export function threadPointer(index: number): string {
  return `0x7f${(((process.pid * 2654435761 + index * 0x801000) >>> 0) % 0xffffff).toString(16).padStart(6, '0')}5740`;
}

/** Wall-clock milliseconds with sub-ms resolution (comparable across workers). */
export const now = (): number => performance.timeOrigin + performance.now();

/** Write one D() line to stderr. */
export function D(func: string, line: number, msg: string): void {
  process.stderr.write(logLine(func, line, msg) + '\n');
}

/** netmap's RD(lps, ...): at most `lps` lines per wall-clock second per call site. */
export class RateLimitedLog {
  private sec = -1;
  private cnt = 0;
  constructor(private readonly lps: number) {}
  /** Whether a line may be printed now. */
  ok(): boolean {
    const s = Math.floor(Date.now() / 1000);
    if (s !== this.sec) {
      this.sec = s;
      this.cnt = 0;
    }
    return this.cnt++ < this.lps;
  }
}

const yieldNow = (): Promise<void> => new Promise((r) => setImmediate(r));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, Math.max(0, ms)));
/**
 * Longest spin on sync before a loop sleeps in poll, ms. Across a pipe the
 * two ends each keep a core on an idle machine and spinning avoids a wakeup
 * per batch; on a vale-ts port the switch is a third party, so the window
 * is short (the switch's next round, not a time slice).
 * PKTGEN_TS_SPIN_US fixes the window (no adaptation; for A/B runs).
 */
const SPIN_ENV = process.env['PKTGEN_TS_SPIN_US'];
const maxSpinMs = (port: Port): number => (port.transport === 'vale-ts' ? 0.05 : 2);
/**
 * ping: how long to spin for the answer before sleeping. By default a
 * {@link SpinBudget} of at most PING_SPIN_MAX_MS: about twice the recent
 * round trip, none once round trips are longer than half of it (the CPUs
 * are contended). Spinning keeps ping's vCPU busy,
 * so the answer does not also pay for waking an idle vCPU (tens of µs on a
 * VM); the switch and pong are woken onto a busy CPU, where the spinner's
 * yield lets them run at once. PKTGEN_TS_PING_SPIN_US fixes the window (0:
 * sleep right after sending, the session-6 default; for A/B runs).
 */
const PING_SPIN_MAX_MS = 1;
const PINGSPIN_ENV = process.env['PKTGEN_TS_PING_SPIN_US'];
/**
 * pong: how long to spin for the next request before sleeping. By default
 * a {@link SpinBudget} as ping's: about twice the recent gap between
 * requests, at most PING_SPIN_MAX_MS, none once requests come further apart
 * (an idle or sparse ping costs pong nothing). While ping runs back to back
 * this keeps pong's vCPU from going idle between requests, so the request
 * does not also pay for waking it (~75 µs on this project's VM, against a
 * sched_yield when pong shares the CPU). PKTGEN_TS_PONG_SPIN_US fixes the
 * window (0: sleep right after answering, the session-6 default; A/B runs).
 */
const PONGSPIN_ENV = process.env['PKTGEN_TS_PONG_SPIN_US'];
/**
 * CLOCK_MONOTONIC in ns as a double, with nothing allocated (no hrtime
 * array, no BigInt): performance.now() (the same clock, from this process's
 * start) plus its offset from process.hrtime, taken once, so ping's stamps
 * compare across processes as hrtime's did (a late reply to an earlier ping
 * on the same port still gives a true round trip). Exact to the ns for 104
 * days of uptime (2^53 ns), then to a few ns.
 */
const MONO_OFFSET_NS = ((): number => {
  // the tightest of a few brackets (the first calls load code lazily)
  let width = Infinity;
  let off = 0;
  for (let i = 0; i < 8; i++) {
    const a = performance.now();
    const h = Number(process.hrtime.bigint());
    const b = performance.now();
    if (b - a < width) {
      width = b - a;
      off = h - ((a + b) / 2) * 1e6;
    }
  }
  return off;
})();
const clockNs = (): number => Math.round(MONO_OFFSET_NS + performance.now() * 1e6);
/**
 * Sleep in a blocking poll(2) on the port's doorbell (the kick wakes this
 * thread directly) rather than on the event loop; PKTGEN_TS_WAIT=uv for the
 * event-loop poll (A/B runs).
 */
const WAIT_SYNC = process.env['PKTGEN_TS_WAIT'] !== 'uv';

/**
 * Adaptive spin window: spin about twice as long as the other side recently
 * took to make room or send frames (a moving average of the gaps), and not
 * at all once that is longer than the loop's longest spin: then the peer is
 * descheduled or idle, a spin would only burn this process's share of the
 * CPU (and sched_yield hands the CPU to a busy neighbour for a whole slice),
 * and sleeping lets the scheduler wake this side as soon as the peer acts.
 */
export class SpinBudget {
  /** moving average of the gaps, ms */
  private gap: number;
  /**
   * @param maxMs the longest spin
   * @param fixedMs a fixed window instead (A/B runs); default PKTGEN_TS_SPIN_US
   */
  constructor(
    readonly maxMs: number,
    private readonly fixedMs: number | undefined = SPIN_ENV !== undefined ? Number(SPIN_ENV) / 1000 : undefined,
  ) {
    this.gap = maxMs / 4;
  }
  /** how long to spin now, ms (0: sleep at once) */
  get ms(): number {
    if (this.fixedMs !== undefined) return this.fixedMs;
    const b = 2 * this.gap;
    return b > this.maxMs ? 0 : Math.max(b, Math.min(0.02, this.maxMs));
  }
  /** the other side acted `ms` after this side started waiting */
  note(ms: number): void {
    this.gap += (ms - this.gap) / 4;
  }
  /**
   * sched_yield, in a spin; false when it came back late: another runnable
   * thread had this CPU (a busy neighbour, or the peer sharing the core), so
   * spinning now only costs slices: stop, and sleep at once for a while.
   */
  yieldOk(): boolean {
    const t = now();
    native.schedYield();
    if (now() - t < YIELD_LATE_MS) return true;
    // about ten waits sleep at once before a spin is tried again
    if (this.fixedMs === undefined) this.gap = Math.max(this.gap, 8 * this.maxMs);
    return false;
  }
}
/** A sched_yield that returns later than this gave the CPU away (ms). */
const YIELD_LATE_MS = 0.03;

/** Options for Ctx.sync (one object, not one per call). */
const TRUSTED = { trusted: true } as const;
const RX_ONLY = { rx: true, tx: false } as const;

/**
 * sched_yield in a spin loop. The tx/rx loops yield every 16th empty turn;
 * ping and pong (waiting for one frame) every turn: when they share a CPU
 * with each other or with the switch, the party that has the frame runs
 * one yield later instead of up to 16 turns later (pinned ping, pong and
 * switch: p50 14.2 against 15.8 µs, bench/RESULTS.md session 11).
 */
const spinYield = (): void => native.schedYield();
/** How often a busy loop yields to the event loop, ms. */
const YIELD_MS = 4;
/** Longest single sleep, so cancellation is noticed quickly, ms. */
const POLL_SLICE_MS = 100;

/** Why a thread stopped early: the other side went away. */
export class PeerGoneError extends Error {}

class Ctx {
  readonly counters: Float64Array;
  readonly control: Int32Array;
  readonly mem: ArrayBuffer;
  private nextYield = now() + YIELD_MS;
  /** how long to spin on sync before sleeping in poll */
  readonly spin: SpinBudget;
  /** ping: how long to spin for the answer */
  readonly pingSpin: SpinBudget;
  /** pong: how long to spin for the next request */
  readonly pongSpin: SpinBudget;

  constructor(
    readonly cfg: ThreadConfig,
    readonly port: Port,
    shared: ThreadShared,
  ) {
    this.counters = shared.counters;
    this.control = shared.control;
    this.mem = port.memory;
    this.spin = new SpinBudget(maxSpinMs(port));
    this.pingSpin = new SpinBudget(PING_SPIN_MAX_MS, PINGSPIN_ENV !== undefined ? Number(PINGSPIN_ENV) / 1000 : undefined);
    this.pongSpin = new SpinBudget(PING_SPIN_MAX_MS, PONGSPIN_ENV !== undefined ? Number(PONGSPIN_ENV) / 1000 : undefined);
  }

  get cancelled(): boolean {
    return Atomics.load(this.control, 0) !== 0;
  }

  /** True when a busy loop has held the event loop for a while: await {@link maybeYield} (a check that costs no Promise). */
  yieldDue(): boolean {
    return now() >= this.nextYield;
  }

  /** Yield to the event loop if a busy loop has held it for a while. */
  async maybeYield(): Promise<void> {
    if (now() >= this.nextYield) {
      await yieldNow();
      this.nextYield = now() + YIELD_MS;
    }
  }

  /**
   * txsync / rxsync without Ring.sync's per-slot prologue check: the slots
   * were written by the addon, which validated every index it used.
   */
  sync(rings: readonly Ring[]): void {
    this.port.syncRings(rings, TRUSTED);
  }

  /**
   * The first slice of a wait for frames to receive, up to `ms`: it sleeps
   * synchronously in the native poll, which neither allocates nor turns the
   * event loop, so a round trip costs no Promise. Returns {@link Port.RX}
   * (| {@link Port.HUP}) once frames came, or -1: nothing yet (a slice
   * passed, a pipe peer hung up, or PKTGEN_TS_WAIT=uv): await
   * {@link waitRx} for the rest.
   */
  waitRxNow(ms: number): number {
    if (!WAIT_SYNC) return -1;
    const ev = this.port.waitSync(true, false, Math.max(0, Math.min(POLL_SLICE_MS, ms)));
    return ev & Port.RX ? ev : -1;
  }

  /** The rest of a wait for frames to receive, in {@link pollFor}'s slices: {@link Port.RX} / {@link Port.HUP} bits (0: timed out or cancelled). */
  async waitRx(ms: number): Promise<number> {
    const end = now() + ms;
    // let the event loop turn first (hang-ups, signals, reports)
    await yieldNow();
    this.nextYield = now() + YIELD_MS;
    const ev = await this.pollFor(RX_ONLY, end - now());
    return (ev.rx ? Port.RX : 0) | (ev.hup ? Port.HUP : 0);
  }

  /** Sleep in poll for up to `ms`, in slices so a cancel is seen; returns the last events. */
  async pollFor(what: { rx: boolean; tx: boolean }, ms: number): Promise<{ rx: boolean; tx: boolean; hup: boolean }> {
    const end = now() + ms;
    for (;;) {
      const left = end - now();
      const slice = Math.max(0, Math.min(POLL_SLICE_MS, left));
      // the loops spin themselves before calling this: sleep at once
      const ev = WAIT_SYNC ? this.port.pollSync({ rx: what.rx, tx: what.tx, timeoutMs: slice, spinUs: 0 }) : await this.port.poll({ rx: what.rx, tx: what.tx, timeoutMs: slice, spinUs: 0 });
      if (!WAIT_SYNC || (!ev.rx && !ev.tx)) {
        // a slice passed: let the event loop turn (hang-ups, signals, reports)
        if (WAIT_SYNC) await yieldNow();
        this.nextYield = now() + YIELD_MS;
      }
      // A pollSync that returned an event did not turn the event loop, so
      // the deadline stays: maybeYield() in the caller's loop still turns it
      // every YIELD_MS while traffic keeps every wait short (else SIGINT and
      // reports would wait until the traffic stops).
      if (ev.rx || ev.tx || this.cancelled || end - now() <= 0) return ev;
      if (ev.hup) {
        // a vale-ts switch that went away is gone for good; a pipe peer may
        // come back (poll reports the hang-up at once, so sleep here)
        if (this.port.transport !== 'pipe') return ev;
        await sleep(Math.min(slice, 20));
      }
    }
  }

  /** pkt-gen's wait_time: sleep while more than 1 ms is left, then spin. */
  async waitUntil(t: number): Promise<void> {
    for (;;) {
      if (this.cancelled) return;
      const left = t - now();
      if (left <= 0) return;
      if (left > 1.5) await sleep(left - 1);
      else if (left > 0.2) await yieldNow();
    }
  }

  pin(): void {
    if (this.cfg.cpu < 0) return;
    try {
      pktgenNative.setAffinity(this.cfg.cpu);
    } catch (e) {
      D('setaffinity', XLINE.AFFINITY, `Unable to set affinity: ${(e as Error).message}`);
      throw e;
    }
  }
}

/** Whether one of `rings` has `need` free slots. */
function roomFor(rings: readonly Ring[], need: number): boolean {
  for (const r of rings) if (r.space() >= need) return true;
  return false;
}

function txPending(rings: readonly Ring[]): boolean {
  for (const r of rings) if (r.next(r.tail) !== r.head) return true;
  return false;
}

/**
 * Throws RingError unless both indices (read once from a ring a pipe peer
 * maps too) lie inside `r`: one out of range never meets the other, and a
 * walk from one to the other would not end.
 */
function checkRingIndices(r: Ring, aName: string, a: number, bName: string, b: number): void {
  if (a >= r.numSlots || b >= r.numSlots) {
    throw new RingError(`${r.label}: ${aName} ${a} / ${bName} ${b} outside the ring (${r.numSlots} slots): the ring was changed by someone else`);
  }
}

/**
 * -X: print slots [from, to) of `r`. `to` is the head read after a batch:
 * a pipe peer that wrote it out of range would make the walk endless, so
 * it is checked (RingError) first.
 */
export function dumpSlots(r: Ring, from: number, to: number): void {
  checkRingIndices(r, 'from', from, 'head', to);
  let out = '';
  for (let i = from; i !== to; i = r.next(i)) out += dumpPayload(ringPointer(r.offset), i, r.bufIdx(i), r.flags(i), r.frame(i));
  if (out) process.stdout.write(out);
}

/**
 * Wait until one of `rings` has room for `need` slots (a sender: one; pong:
 * its whole chain, never part of one on the wire), syncing them: spin on sync
 * for a moment, then sleep in poll. poll wakes as soon as one slot is free, so
 * a wait for more yields (to the peer, then the event loop) between polls.
 * A hang-up poll reports: with `hangUp` 'ends' (the senders) the run ends,
 * PeerGoneError; with 'switch' (pong, as its rx waits) only a vale-ts switch
 * gone ends it, SwitchGoneError, and a pipe peer may come back.
 */
async function waitTxRoom(c: Ctx, rings: readonly Ring[], need: number, hangUp: 'ends' | 'switch'): Promise<void> {
  const t0 = now();
  const spin = c.spin.ms;
  for (let i = 1; ; i++) {
    if (c.cancelled) return;
    c.sync(rings);
    if (roomFor(rings, need)) return c.spin.note(now() - t0);
    if ((i & 15) === 0 || spin === 0) {
      if (now() - t0 >= spin || !c.spin.yieldOk()) break;
    }
  }
  while (!c.cancelled) {
    const ev = await c.pollFor({ rx: false, tx: true }, POLL_SLICE_MS);
    c.sync(rings);
    if (roomFor(rings, need)) return c.spin.note(now() - t0);
    if (ev.hup) {
      if (hangUp === 'ends') throw new PeerGoneError(`${c.cfg.iface}: the other side went away`);
      if (c.port.transport === 'vale-ts') throw new SwitchGoneError(`${c.cfg.iface}: the vale-ts switch went away`);
    }
    if (ev.tx) {
      // a slot, not yet enough of them: poll would return at once
      spinYield();
      await c.maybeYield();
    }
  }
}

/**
 * -R pacing as pkt-gen does it: start on a whole second two seconds ahead,
 * then `burst` frames per period. Without -R every batch may be a full burst.
 */
class RatePacer {
  private next = 0;
  private left = 0;
  constructor(private readonly c: Ctx) {}

  private get on(): boolean {
    return this.c.cfg.rate > 0;
  }

  /** Wait for the start when pacing; returns the start time. */
  async start(): Promise<number> {
    const t = now();
    if (!this.on) return t;
    const tic = (Math.floor(t / 1000) + 2) * 1000;
    await this.c.waitUntil(tic);
    this.next = tic;
    return tic;
  }

  /** Before a batch: once this period's frames are spent, wait for the next period. */
  async nextPeriodIfSpent(): Promise<void> {
    if (!this.on || this.left > 0) return;
    this.left = this.c.cfg.burst;
    this.next += this.c.cfg.periodNs / 1e6;
    await this.c.waitUntil(this.next);
  }

  /** True when {@link nextPeriodIfSpent} has to wait (a check that costs no Promise). */
  due(): boolean {
    return this.on && this.left <= 0;
  }

  /** Frames allowed now. */
  remaining(): number {
    return this.on ? this.left : this.c.cfg.burst;
  }

  /** Count m frames sent; true when this period's allowance is spent. */
  spend(m: number): boolean {
    if (!this.on) return false;
    this.left -= m;
    return this.left <= 0;
  }
}

async function senderBody(c: Ctx): Promise<void> {
  const { cfg, port, counters: ctr } = c;
  D(cfg.func === 'txseq' ? 'txseq_body' : 'sender_body', LINE.SENDER_START, `start, fd ${port.fd} main_fd ${cfg.mainFd}`);
  c.pin();
  const rings = cfg.func === 'txseq' ? port.txRings.slice(0, 1) : port.txRings;
  const gen = createTxGen(cfg.template, cfg.tx!, ctr);
  const mem = c.mem;
  const n = cfg.count;
  const pacer = new RatePacer(c);
  ctr[CTR.TIC] = await pacer.start();
  if (cfg.func === 'tx' && cfg.fragsLine) D('sender_body', LINE.SENDER_FRAGS, `frags ${cfg.fragsLine.frags} frag_size ${cfg.fragsLine.fragSize}`);
  let sent = 0;
  // the ring pkt-gen's `flush tail` line describes: the last one the loop looked at
  let last = rings[0];
  try {
    while (!c.cancelled && (n === 0 || sent < n)) {
      await pacer.nextPeriodIfSpent();
      if (c.cancelled) break;
      let filled = 0;
      for (const r of rings) {
        if (n > 0 && sent >= n) break;
        last = r;
        let limit = pacer.remaining();
        if (n > 0 && n - sent < limit) limit = n - sent;
        const h0 = r.head;
        const m = gen.txFill(mem, r.offset, limit);
        if (m === 0) continue;
        if (cfg.dump) dumpSlots(r, h0, r.head);
        sent += m;
        filled += m;
        if (pacer.spend(m)) break;
      }
      if (filled === 0) await waitTxRoom(c, rings, 1, 'ends');
      else {
        c.sync(rings);
        await c.maybeYield();
      }
    }
    // flush, then wait for the queues to drain (pkt-gen's nm_tx_pending loop)
    if (last) {
      const seqBody = cfg.func === 'txseq';
      D(seqBody ? 'txseq_body' : 'sender_body', seqBody ? LINE.TXSEQ_FLUSH : LINE.SENDER_FLUSH, `flush tail ${last.tail} head ${last.head} on thread ${threadPointer(cfg.index)}`);
    }
    c.sync(rings);
    while (!c.cancelled && txPending(rings)) {
      await yieldNow();
      c.sync(rings);
      if (port.hungUp) break;
    }
  } finally {
    ctr[CTR.TOC] = now();
  }
}

async function receiverBody(c: Ctx): Promise<void> {
  const { cfg, port, counters: ctr } = c;
  const seq = cfg.func === 'rxseq';
  const fn = seq ? 'rxseq_body' : 'receiver_body';
  c.pin();
  D(fn, LINE.RECEIVER_READING, `reading from ${cfg.iface} fd ${port.fd} main_fd ${cfg.mainFd}`);
  const rings = port.rxRings;
  const events = seq ? new Uint32Array(1 + 3 * 8) : undefined;
  // per ring sequence and chain state, by the ring's place in `rings`
  const rx = createRxCounter(ctr, { seq, hdrLen: cfg.hdrLen, rings: rings.length, ...(events ? { events } : {}) });
  const mem = c.mem;
  const waiting = new RateLimitedLog(1);
  const gapLog = new RateLimitedLog(2);
  const oooLog = new RateLimitedLog(2);
  const fragLog = new RateLimitedLog(1);
  const userSwitch = port.transport === 'vale-ts';
  // unbounded wait for the first packet
  while (!c.cancelled) {
    c.sync(rings);
    if (port.rxAvailable() > 0) break;
    const ev = await c.pollFor({ rx: true, tx: false }, 1000);
    if (ev.rx) break;
    if (ev.hup && userSwitch) throw new SwitchGoneError(`${cfg.iface}: the vale-ts switch went away`);
    if (!c.cancelled && waiting.ok()) D(fn, LINE.RECEIVER_WAITING, 'waiting for initial packets, poll returns 0 0');
  }
  ctr[CTR.TIC] = now();
  const n = cfg.count;
  let got = 0;
  let idleSince = 0;
  let toc = 0;
  try {
    while (!c.cancelled && (n === 0 || got < n)) {
      c.sync(rings);
      if (port.rxAvailable() === 0) {
        // spin a moment, then sleep; with -W, 1 s of silence ends the run
        const t0 = now();
        if (idleSince === 0) idleSince = t0;
        const spin = c.spin.ms;
        for (let i = 1; !c.cancelled && spin > 0; i++) {
          c.sync(rings);
          if (port.rxAvailable() > 0 || ((i & 15) === 0 && (now() - t0 > spin || !c.spin.yieldOk()))) break;
        }
        if (port.rxAvailable() === 0) {
          const left = cfg.forever ? POLL_SLICE_MS : 1000 - (now() - idleSince);
          const ev = left > 0 ? await c.pollFor({ rx: true, tx: false }, left) : { rx: false, tx: false, hup: false };
          if (ev.hup && userSwitch) throw new SwitchGoneError(`${cfg.iface}: the vale-ts switch went away`);
          if (!ev.rx && port.rxAvailable() === 0) {
            if (!cfg.forever && now() - idleSince >= 1000) {
              toc = now() - 1000; // as pkt-gen: subtract the timeout
              break;
            }
            continue;
          }
        }
      }
      if (idleSince !== 0) c.spin.note(now() - idleSince);
      idleSince = 0;
      let space = 0;
      for (let i = 0; i < rings.length; i++) {
        const r = rings[i]!;
        let free = r.head + r.numSlots - r.tail;
        if (free >= r.numSlots) free -= r.numSlots;
        space += free;
        if (r.head === r.tail) continue;
        let limit = cfg.burst;
        if (n > 0 && n - got < limit) limit = n - got;
        if (limit === 0) break;
        const h0 = r.head;
        got += rx.rxCount(mem, r.offset, limit, i);
        if (cfg.dump) dumpSlots(r, h0, r.head);
        if (events && events[0]! > 0) {
          for (let k = 0; k < events[0]!; k++) {
            const type = events[1 + 3 * k]!;
            const exp = events[2 + 3 * k]!;
            const found = events[3 + 3 * k]!;
            if (type === RX_EVENT.GAP && gapLog.ok()) D(fn, LINE.RXSEQ_SEQUENCE, `Sequence GAP: exp ${exp} found ${found}`);
            else if (type === RX_EVENT.OUT_OF_ORDER && oooLog.ok()) D(fn, LINE.RXSEQ_SEQUENCE, `Sequence OUT OF ORDER: exp ${exp} found ${found}`);
            else if (type === RX_EVENT.FRAGS && fragLog.ok()) D(fn, XLINE.RXSEQ_FRAGS, `Received packets with ${found} frags, expected ${exp}`);
          }
        }
      }
      if (space < ctr[CTR.MIN_SPACE]!) ctr[CTR.MIN_SPACE] = space;
      await c.maybeYield();
    }
    c.sync(rings); // release what was counted last
  } finally {
    ctr[CTR.TOC] = toc || now();
  }
}

/** Where ping puts its 32-bit sequence number (and the timestamp right after). */
function pingOffset(cfg: ThreadConfig): number {
  return cfg.hdrLen + 42;
}

/** ping: where a ring's slots stand in a frame across calls of {@link readPingReplies}. */
export interface PingChain {
  /** the last slot read had NS_MOREFRAG: the next one goes on with its frame */
  more: boolean;
}

/**
 * ping: time every reply in ring `r` (head to tail) into `stats` and
 * release them; returns how many frames were no reply (too short, a bad
 * slot, or a stamp no ping wrote) and went untimed. A frame spread over
 * several slots (NS_MOREFRAG: a frame longer than a buffer travels so) is
 * timed once, by its first slot, where the stamp is;
 * `chain` carries the state of a frame whose slots span two calls. `dv`
 * views the port's region, `off` is where ping put its sequence number and
 * stamp in the frame. Throws RingError when head or tail lies outside the
 * ring.
 */
export function readPingReplies(r: Ring, dv: DataView, off: number, stats: RttStats, chain: PingChain): number {
  // head and tail read once and checked: a pipe peer maps this ring too,
  // and one it wrote out of range never met the other (an endless loop)
  let h = r.head;
  const tail = r.tail;
  checkRingIndices(r, 'head', h, 'tail', tail);
  if (h === tail) return 0;
  let notReplies = 0;
  for (; h !== tail; h = r.next(h)) {
    const first = !chain.more;
    chain.more = (r.flags(h) & NS_MOREFRAG) !== 0;
    // the rest of a frame: its bytes at `off` are no stamp
    if (!first) continue;
    const idx = r.bufIdx(h);
    const len = r.len(h);
    let rtt = -1;
    if (idx >= 2 && idx < r.bufLimit && len >= off + 12 && len <= r.bufSize) {
      // A stamp is CLOCK_MONOTONIC (the seconds cut to 32 bits: 136 years
      // of uptime), so a reply's lies in [0, now]. One in the future, or
      // with nanoseconds past 1e9, no ping wrote: its "round trip" of
      // about 2^32 s swamped the mean.
      const o = r.bufOffsetOf(idx);
      const t = clockNs();
      const ns = dv.getUint32(o + off + 8, true);
      const stamp = dv.getUint32(o + off + 4, true) * 1e9 + ns;
      if (ns < 1e9 && stamp <= t) rtt = t - stamp;
    }
    if (rtt >= 0) stats.record(rtt);
    else notReplies++;
  }
  r.head = h;
  r.cur = h;
  return notReplies;
}

async function pingBody(c: Ctx): Promise<void> {
  const { cfg, port, counters: ctr } = c;
  c.pin();
  const tx = port.txRings[0]!;
  const txOnly = [tx];
  const rings = port.rxRings;
  const tpl = cfg.template;
  const size = tpl.length;
  const off = pingOffset(cfg);
  const dv = new DataView(c.mem);
  const stats = new RttStats();
  const chains: PingChain[] = rings.map(() => ({ more: false }));
  const n = cfg.count;
  const spin = c.pingSpin;
  let sent = 0;
  let events = 0;
  /** frames received that were no reply: not timed */
  let notReplies = 0;
  let lastPrint = now();
  const pollErr = new RateLimitedLog(1000);
  ctr[CTR.TIC] = now();
  const pacer = new RatePacer(c);
  await pacer.start();
  // Steady state allocates nothing: the stamp is a double split into the
  // frame's 32-bit seconds and nanoseconds (no hrtime arrays, no BigInt), the
  // rings to sync are fixed arrays, and the wait for the answer is a
  // synchronous poll that returns a bit mask. A scavenge per ~600 round trips
  // (as before) is a stop on the measured path.
  while (!c.cancelled && (n === 0 || sent < n)) {
    if (pacer.due()) await pacer.nextPeriodIfSpent();
    if (c.cancelled) break;
    let limit = pacer.remaining();
    if (n > 0 && n - sent < limit) limit = n - sent;
    let m = 0;
    for (; m < limit; m++) {
      if (tx.head === tx.tail) {
        D('ping_body', XLINE.OUCH_CANNOT_SEND, '-- ouch, cannot send');
        break;
      }
      const h = tx.head;
      const o = tx.bufOffset(h);
      tx.bytes.set(tpl, o);
      const t = clockNs();
      const sec = Math.floor(t / 1e9);
      dv.setUint32(o + off, sent >>> 0, true);
      dv.setUint32(o + off + 4, sec >>> 0, true);
      dv.setUint32(o + off + 8, t - sec * 1e9, true);
      tx.setLen(h, size);
      tx.setFlags(h, 0);
      tx.advance(1);
      sent++;
    }
    if (m > 0) events++;
    pacer.spend(m);
    ctr[CTR.PKTS] = sent;
    ctr[CTR.BYTES] = sent * size;
    ctr[CTR.EVENTS] = events;
    c.sync(txOnly);
    // wait for the reply: spin about as long as answers recently took (the
    // switch and pong are quick on an idle machine, and a spinning ping keeps
    // its vCPU out of a costly idle wakeup), then sleep up to 3 s
    const t0 = now();
    const spinMs = spin.ms;
    if (spinMs > 0) {
      for (;;) {
        c.sync(rings);
        if (port.rxAvailable() > 0 || c.cancelled) break;
        if (now() - t0 >= spinMs) break;
        // a plain yield, not spin.yieldOk(): one that comes back late has
        // usually run pong or the switch on this CPU, the very thing ping
        // waits for, and should not stop the spin (measured: it made ping
        // sleep on 30-50% of round trips and raised the p99)
        spinYield();
      }
    } else c.sync(rings);
    if (port.rxAvailable() === 0 && !c.cancelled) {
      let ev = c.waitRxNow(3000 - (now() - t0));
      if (ev < 0) ev = await c.waitRx(3000 - (now() - t0));
      if ((ev & Port.RX) === 0 && port.rxAvailable() === 0) {
        if (c.cancelled) break;
        if (ev & Port.HUP && port.transport === 'vale-ts') throw new SwitchGoneError(`${cfg.iface}: the vale-ts switch went away`);
        if (pollErr.ok()) D('ping_body', XLINE.POLL_ERROR_PING, `poll error on queue ${cfg.index}: timeout`);
        continue;
      }
    }
    spin.note(now() - t0);
    for (let i = 0; i < rings.length; i++) notReplies += readPingReplies(rings[i]!, dv, off, stats, chains[i]);
    c.sync(rings);
    if (now() - lastPrint >= 1000) {
      const [countLine, histLine] = stats.intervalMessages();
      D('ping_body', LINE.PING_COUNT, countLine);
      D('ping_body', LINE.PING_HISTOGRAM, histLine);
      lastPrint = now();
    }
    if (c.yieldDue()) await c.maybeYield();
  }
  ctr[CTR.TOC] = now();
  if (sent > 0) {
    D('ping_body', LINE.PING_RTT_OVER, stats.finalMessage());
    D('ping_body', LINE.PING_RTT_OVER, stats.percentilesMessage());
  }
  if (notReplies > 0) D('ping_body', XLINE.PING_NOT_REPLIES, `ignored ${notReplies} frames that were no reply (too short, bad slot or a timestamp no ping wrote)`);
}

async function pongBody(c: Ctx): Promise<void> {
  const { cfg, port, counters: ctr } = c;
  c.pin();
  const tx = port.txRings[0]!;
  const txOnly = [tx];
  const rings = port.rxRings;
  const n = cfg.count;
  const pollErr = new RateLimitedLog(1000);
  const drops = new Float64Array(PONG_DROP_KINDS);
  const states = rings.map(() => new Uint32Array(PONG_STATE_LEN));
  /** rx slots pongEcho left for lack of their chain's last slot: no new frame */
  let held = 0;
  let sent = 0;
  ctr[CTR.TIC] = now();
  // as ping: nothing allocated per round trip
  while (!c.cancelled && (n === 0 || sent < n)) {
    c.sync(rings);
    if (port.rxAvailable() <= held) {
      const t0 = now();
      const spinMs = c.pongSpin.ms;
      if (spinMs > 0) {
        while (!c.cancelled) {
          c.sync(rings);
          if (port.rxAvailable() > held || now() - t0 >= spinMs) break;
          spinYield();
        }
      }
      if (port.rxAvailable() <= held) {
        // poll wakes for a whole frame only, not for more slots of a chain
        let ev = c.waitRxNow(1000);
        if (ev < 0) ev = await c.waitRx(1000);
        if ((ev & Port.RX) === 0 && port.rxAvailable() <= held) {
          c.pongSpin.note(now() - t0);
          if (c.cancelled) break;
          if (ev & Port.HUP && port.transport === 'vale-ts') throw new SwitchGoneError(`${cfg.iface}: the vale-ts switch went away`);
          if (pollErr.ok()) D('pong_body', XLINE.POLL_ERROR_PONG, `poll error on queue ${cfg.index}: timeout`);
          continue;
        }
      }
      c.pongSpin.note(now() - t0);
    }
    c.sync(txOnly);
    let m = 0;
    let need = 0;
    held = 0;
    for (let i = 0; i < rings.length; i++) {
      const st = states[i]!;
      m += pktgenNative.pongEcho(c.mem, rings[i]!.offset, tx.offset, n > 0 ? n - sent - m : 0xffffffff, drops, st);
      held += st[PONG_STATE.RX_HELD]!;
      if (st[PONG_STATE.TX_NEED]! > need) need = st[PONG_STATE.TX_NEED]!;
    }
    sent += m;
    c.sync(txOnly);
    c.sync(rings);
    ctr[CTR.PKTS] = sent;
    ctr[CTR.EVENTS] += m > 0 ? 1 : 0;
    // a frame waits for tx room for all its slots (never a partial chain on the wire)
    if (m === 0 && need > 0) await waitTxRoom(c, txOnly, need, 'switch');
    if (c.yieldDue()) await c.maybeYield();
  }
  // let the last replies leave (for at most a second), as the sender flushes
  const until = now() + 1000;
  c.sync(txOnly);
  while (!c.cancelled && txPending(txOnly) && now() < until && !port.hungUp) {
    await yieldNow();
    c.sync(txOnly);
  }
  ctr[CTR.TOC] = now();
  const notEchoed = drops[PONG_DROP.TOO_LONG]! + drops[PONG_DROP.BAD_SLOT]! + drops[PONG_DROP.GROUP_SOURCE]!;
  if (notEchoed > 0) {
    D(
      'pong_body',
      XLINE.PONG_NOT_ECHOED,
      `did not echo ${notEchoed} frames: ${drops[PONG_DROP.TOO_LONG]} too long to echo whole, ${drops[PONG_DROP.BAD_SLOT]} bad slots, ` +
        `${drops[PONG_DROP.GROUP_SOURCE]} from a group source MAC (the echo would flood the switch)`,
    );
  }
}

/**
 * Run one pkt-gen thread on an open port until its work is done or the
 * cancel flag is set. Sets USED while running and COMPLETED on success.
 */
export async function runThread(cfg: ThreadConfig, port: Port, shared: ThreadShared): Promise<void> {
  // tx / rx: woken by the peer's kick beside CPU-bound processes, run at
  // once (src/netmap/sched.ts). Not ping / pong: their spin hands the CPU to
  // the switch and the peer with sched_yield, which under EEVDF pushes the
  // yielder back by one slice: a short slice made that hand-over weak
  // (measured: p50 round trip 16-25 µs -> 25-43 µs)
  if (cfg.func !== 'ping' && cfg.func !== 'pong') requestShortSlice();
  const c = new Ctx(cfg, port, shared);
  shared.counters[CTR.USED] = 1;
  try {
    switch (cfg.func) {
      case 'tx':
      case 'txseq':
        await senderBody(c);
        break;
      case 'rx':
      case 'rxseq':
        await receiverBody(c);
        break;
      case 'ping':
        await pingBody(c);
        break;
      case 'pong':
        await pongBody(c);
        break;
    }
    shared.counters[CTR.COMPLETED] = 1;
  } finally {
    shared.counters[CTR.USED] = 0;
  }
}
