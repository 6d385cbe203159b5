/**
 * pkt-gen's output, byte for byte: the `D()` log prefix, `norm()` numbers,
 * the periodic report, the final summary, the startup lines and the ping
 * RTT lines; plus pkt-gen-ts's own RTT percentile line.
 *
 * Numbers are formatted like glibc's `printf("%.Nf")` (exact decimal value
 * of the double, ties to even), not like `Number.prototype.toFixed`.
 *
 * @module
 */

import type { IpRange } from './net.js';
import { type PktGenFunction, functionKind } from './options.js';

/**
 * `__LINE__` values printed in `[N]` by pkt-gen's `D()` lines, taken from the
 * literal output in pkt-gen.md (netmap @ 89607e14). Those marked "approx."
 * were not in the examples; they are placeholders near their upstream spot.
 */
export const LINE = {
  /** main_thread periodic report. */
  MAIN_THREAD_REPORT: 2781,
  /** sender_body `start, fd %d main_fd %d`. */
  SENDER_START: 1702,
  /** sender_body `frags %u frag_size %u`. */
  SENDER_FRAGS: 1760,
  /** sender_body `flush tail %d head %d on thread %p`. */
  SENDER_FLUSH: 1848,
  /** txseq_body `flush tail %d head %d on thread %p`. */
  TXSEQ_FLUSH: 2205,
  /** receiver_body `waiting for initial packets, poll returns %d %d`. */
  RECEIVER_WAITING: 1954,
  /** receiver_body `reading from %s fd %d main_fd %d` (approx.). */
  RECEIVER_READING: 1939,
  /** main `interface is %s`. */
  MAIN_INTERFACE: 3036,
  /** main `using default burst size: %d`. */
  MAIN_DEFAULT_BURST: 3159,
  /** main `running on %d cpus (have %d)`. */
  MAIN_RUNNING_ON: 3167,
  /** main `Sending %d packets every  %jd.%09ld s`. */
  MAIN_SENDING_EVERY: 3369,
  /** start_threads `Wait %d secs for phy reset`. */
  START_THREADS_WAIT: 2695,
  /** start_threads `Ready...`. */
  START_THREADS_READY: 2697,
  /** extract_ip_range `range is ...`. */
  EXTRACT_IP_RANGE: 477,
  /** sigint_h `received control-C on thread %p`. */
  SIGINT_H: 574,
  /** ping_body `count %d RTT: min %d av %d ns` (approx.). */
  PING_COUNT: 1592,
  /** ping_body histogram `k: %d .. %d` (approx.). */
  PING_HISTOGRAM: 1608,
  /** ping_body `RTT over %llu packets ...` (approx.). */
  PING_RTT_OVER: 1624,
  /** rxseq_body sequence gap / out-of-order lines (approx.). */
  RXSEQ_SEQUENCE: 2232,
} as const;

// ---------------------------------------------------------------------------
// printf-style number formatting

const F64 = new DataView(new ArrayBuffer(8));

/**
 * Format like C `printf("%.<digits>f", x)` with glibc: rounding uses the exact
 * binary value with ties to even; NaN prints `-nan` (x86's default NaN, e.g.
 * 0.0/0), infinities `inf` / `-inf`.
 */
export function formatFixed(x: number, digits: number): string {
  if (Number.isNaN(x)) return '-nan';
  if (x === Infinity) return 'inf';
  if (x === -Infinity) return '-inf';
  const neg = x < 0 || Object.is(x, -0);
  F64.setFloat64(0, Math.abs(x));
  const bits = F64.getBigUint64(0);
  const exp = Number((bits >> 52n) & 0x7ffn);
  const frac = bits & 0xfffffffffffffn;
  const mant = exp === 0 ? frac : frac | 0x10000000000000n;
  const e = exp === 0 ? -1074 : exp - 1075;
  let num = mant * 10n ** BigInt(digits);
  let den = 1n;
  if (e >= 0) num <<= BigInt(e);
  else den <<= BigInt(-e);
  let q = num / den;
  const twice = 2n * (num - q * den);
  if (twice > den || (twice === den && (q & 1n) === 1n)) q += 1n;
  let s = q.toString();
  if (digits > 0) {
    s = s.padStart(digits + 1, '0');
    s = `${s.slice(0, -digits)}.${s.slice(-digits)}`;
  }
  return neg ? `-${s}` : s;
}

const UNITS = ['', 'K', 'M', 'G', 'T'] as const;

/**
 * pkt-gen's `norm()` (ctrs.h): normalised, `"%.3f %s"` after dividing by 1000
 * up to four times (units "", K, M, G, T) — `14.880 M`, `10.000 `; with `-N`
 * (normalize false), `"%.0f %s"` with an empty unit — `14880000 `. The caller
 * appends the quantity: `norm(x) + 'pps'`.
 */
export function norm(value: number, normalize = true): string {
  if (!normalize) return `${formatFixed(value, 0)} `;
  let v = value;
  let i = 0;
  while (v >= 1000 && i < UNITS.length - 1) {
    v /= 1000;
    i++;
  }
  return `${formatFixed(v, 3)} ${UNITS[i]}`;
}

// ---------------------------------------------------------------------------
// D() lines

/** A point in time for {@link logLine}: a Date, or milliseconds since the epoch (fractions give µs). */
export type TimeInput = Date | number;

function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * One `D()` line (without newline; pkt-gen writes these to stderr):
 * `SSS.UUUUUU func [line] msg`, with SSS = seconds % 1000 and UUUUUU the
 * microseconds, both zero-padded.
 */
export function logLine(func: string, line: number, msg: string, now?: TimeInput): string {
  const ms = now === undefined ? nowMs() : typeof now === 'number' ? now : now.getTime();
  // Round to the microsecond (float milliseconds carry sub-µs noise).
  const totalUs = Math.round(ms * 1000);
  const sec = Math.floor(totalUs / 1e6);
  const usec = totalUs - sec * 1e6;
  const s3 = String(((sec % 1000) + 1000) % 1000).padStart(3, '0');
  return `${s3}.${String(usec).padStart(6, '0')} ${func} [${line}] ${msg}`;
}

// ---------------------------------------------------------------------------
// Periodic report

/**
 * pkt-gen's interval pps: `(pkts * 1000000 + usec / 2) / usec` in integer
 * arithmetic (rounded to nearest). Returns 0 for usec 0.
 */
export function intervalPps(pkts: number, usec: number): number {
  if (usec <= 0) return 0;
  const u = BigInt(Math.floor(usec));
  return Number((BigInt(Math.floor(pkts)) * 1000000n + u / 2n) / u);
}

/** Figures for one periodic report line. */
export interface PeriodicFigures {
  /** Packets per second in the interval (see {@link intervalPps}). */
  pps: number;
  /** With `-A`: sliding-window mean and standard deviation of pps ({@link PpsWindow}). */
  ppsAvgStd?: { avg: number; std: number };
  /** Packets in the interval. */
  pkts: number;
  /** Bits in the interval: bytes * 8 + pkts * framing bits. */
  bits: number;
  /** Interval length in microseconds. */
  usec: number;
  /** pkts / events in the interval (0 when there were no events). */
  avgBatch: number;
  /** Minimum free rx slots seen (0 in the first report, as pkt-gen's zeroed counters; 99999 afterwards when not measured, e.g. tx). */
  minSpace: number;
}

/**
 * Body of main_thread's periodic `D()` line:
 * `1.234 Mpps (1.234 Mpkts 0.592 Gbps in 1000000 usec) 512.00 avg_batch 99999 min_space`;
 * with `-A` the `(` is preceded by `[avg/std A/S pps]` built from norm() strings
 * (so `[avg/std 1.500 K/500.000  pps]`: two spaces when S has no unit; no space before `(`,
 * as in pkt-gen).
 */
export function periodicReport(f: PeriodicFigures, normalize = true): string {
  const b4 = f.ppsAvgStd ? `[avg/std ${norm(f.ppsAvgStd.avg, normalize)}/${norm(f.ppsAvgStd.std, normalize)} pps]` : '';
  const bps = f.usec > 0 ? (1000000 * f.bits) / f.usec : NaN;
  return (
    `${norm(f.pps, normalize)}pps ${b4}(${norm(f.pkts, normalize)}pkts ${norm(bps, normalize)}bps ` +
    `in ${Math.floor(f.usec)} usec) ${formatFixed(f.avgBatch, 2)} avg_batch ${Math.trunc(f.minSpace) | 0} min_space`
  );
}

/**
 * What sender_body's `frags %u frag_size %u` line says, computed as pkt-gen
 * does: `pktSize / frags` bytes per fragment unless that exceeds the limit
 * (-M, capped at the buffer size), in which case as many limit-sized
 * fragments as the frame needs. `pktSize` excludes any virtio-net header.
 */
export function senderFrags(pktSize: number, frags: number, fragSizeOpt: number | undefined, bufSize: number): { frags: number; fragSize: number } {
  const limit = fragSizeOpt === undefined ? bufSize : Math.min(fragSizeOpt, bufSize);
  let n = frags;
  let size = Math.floor(pktSize / n);
  if (size > limit && limit > 0) {
    n = Math.floor(pktSize / limit) + (pktSize % limit !== 0 ? 1 : 0);
    size = limit;
  }
  return { frags: n, fragSize: size };
}

/** Number of samples in pkt-gen's `-A` sliding window (STATS_WIN). */
export const STATS_WIN = 15;

/**
 * pkt-gen's `-A` statistics: a ring of the last 15 interval pps values; the
 * mean and (population) standard deviation are taken over the non-zero
 * entries.
 */
export class PpsWindow {
  private readonly win = new Array<number>(STATS_WIN).fill(0);
  private idx = 0;

  /** Add one interval's pps and return the window's mean and std. */
  push(pps: number): { avg: number; std: number } {
    this.win[this.idx] = pps;
    this.idx = (this.idx + 1) % STATS_WIN;
    let sum = 0;
    let n = 0;
    for (const v of this.win) {
      sum += v;
      if (v) n++;
    }
    const avg = sum / n;
    let dev = 0;
    for (const v of this.win) {
      if (v === 0) continue;
      dev += (v - avg) * (v - avg);
    }
    return { avg, std: Math.sqrt(dev / n) };
  }
}

// ---------------------------------------------------------------------------
// Final summary

/** Totals for {@link finalSummary}. */
export interface SummaryFigures {
  kind: 'Sent' | 'Received';
  pkts: number;
  bytes: number;
  events: number;
  /** Elapsed seconds (pkt-gen: latest end minus latest start, µs resolution). */
  seconds: number;
  /** Bits of framing per packet for the raw figure: 192 with `-B`, else 0. */
  framingBits: number;
}

/**
 * pkt-gen's `tx_output()` (stdout): two lines,
 * `Sent N packets B bytes E events S bytes each in T.TT seconds.` and
 * `Speed: Xpps Bandwidth: Ybps (raw Zbps). Average batch: A.AA pkts`,
 * or the single line `Sent nothing.` when no packet was counted.
 */
export function finalSummary(f: SummaryFigures, normalize = true): string[] {
  if (f.pkts === 0) return [`${f.kind} nothing.`];
  const size = Math.trunc(f.bytes / f.pkts) | 0;
  const first =
    `${f.kind} ${f.pkts} packets ${f.bytes} bytes ${f.events} events ${size} bytes each in ` +
    `${formatFixed(f.seconds, 2)} seconds.`;
  const delta = f.seconds === 0 ? 1e-6 : f.seconds;
  const pps = f.pkts / delta;
  const bw = (8.0 * f.bytes) / delta;
  const raw = (8.0 * f.bytes + f.pkts * f.framingBits) / delta;
  const abs = f.pkts / f.events;
  const second =
    `Speed: ${norm(pps, normalize)}pps Bandwidth: ${norm(bw, normalize)}bps ` +
    `(raw ${norm(raw, normalize)}bps). Average batch: ${formatFixed(abs, 2)} pkts`;
  return [first, second];
}

// ---------------------------------------------------------------------------
// Startup

/** What {@link startupLines} prints. */
export interface StartupInfo {
  func: PktGenFunction;
  /** Port name as pkt-gen holds it (after `-i` mapping). */
  iface: string;
  /** Rings in the direction used (tx rings for senders, rx rings otherwise). */
  queues: number;
  threads: number;
  cpus: number;
  /** Senders: `-s` text as given. */
  srcName?: string;
  /** Senders: `-d` text as given. */
  dstName?: string;
  /** Senders: source MAC text. */
  srcMacName?: string;
  /** Senders: destination MAC text. */
  dstMacName?: string;
}

/**
 * The stdout startup lines: `Sending on %s: %d queues, %d threads and %d cpus.`
 * (`Receiving from` for rx/rxseq, `Working on` for ping/pong), and for tx/txseq
 * `src -> dst (smac -> dmac)`.
 */
export function startupLines(info: StartupInfo): string[] {
  const kind = functionKind(info.func);
  const verb = kind === 'sender' ? 'Sending on' : kind === 'receiver' ? 'Receiving from' : 'Working on';
  const out = [`${verb} ${info.iface}: ${info.queues} queues, ${info.threads} threads and ${info.cpus} cpus.`];
  if (kind === 'sender') {
    out.push(
      `${info.srcName ?? '10.0.0.1'} -> ${info.dstName ?? '10.1.0.1'} ` +
        `(${info.srcMacName ?? '00:00:00:00:00:00'} -> ${info.dstMacName ?? 'ff:ff:ff:ff:ff:ff'})`,
    );
  }
  return out;
}

/** extract_ip_range's message: `range is a:p to b:q` (IPv6: `range is g@[a]:p to h@[b]:q`). */
export function rangeMessage(r: IpRange): string {
  if (r.af === 4) return `range is ${r.ipStart}:${r.portStart} to ${r.ipEnd}:${r.portEnd}`;
  return `range is ${r.group ?? 7}@[${r.ipStart}]:${r.portStart} to ${r.endGroup ?? r.group ?? 7}@[${r.ipEnd}]:${r.portEnd}`;
}

/** main's tx message `Sending %d packets every  %jd.%09ld s` (two spaces, as upstream). */
export function sendingEveryMessage(burst: number, periodNs: number): string {
  const sec = Math.floor(periodNs / 1e9);
  const ns = periodNs - sec * 1e9;
  return `Sending ${burst} packets every  ${sec}.${String(ns).padStart(9, '0')} s`;
}

// ---------------------------------------------------------------------------
// Ping / RTT

/** C's `(int)` of an integral value: wrap to signed 32 bits. */
function cInt(v: number): number {
  if (!Number.isFinite(v)) return 0;
  return Number(BigInt.asIntN(32, BigInt(Math.trunc(v))));
}

/** ping_body's per-second line: `count %d RTT: min %d av %d ns`. */
export function pingCountMessage(count: number, minNs: number, avgNs: number): string {
  return `count ${cInt(count)} RTT: min ${cInt(minNs)} av ${cInt(avgNs)} ns`;
}

/**
 * ping_body's histogram message: `k: <2^kmin> .. <2^kmax>` then a newline, a
 * tab and one ` %5d` per log2 bucket from the lowest to the highest non-empty
 * one (bucket k counts RTTs in [2^k, 2^(k+1)) ns). All-empty buckets give `k: 0 .. 0`.
 */
export function pingHistogramMessage(buckets: ArrayLike<number>): string {
  let kmin = 0;
  while (kmin < 64 && !buckets[kmin]) kmin++;
  let k = 63;
  while (k >= kmin && !buckets[k]) k--;
  if (kmin === 64) return 'k: 0 .. 0\n\t'; // no samples (pkt-gen never gets here: it divides by zero first)
  let buf = '';
  for (let j = kmin; j <= k; j++) buf += ` ${String(cInt(buckets[j] ?? 0)).padStart(5, ' ')}`;
  // 1 << k with C int semantics on x86 (shift count taken modulo 32), same as JS.
  return `k: ${1 << kmin} .. ${1 << k}\n\t${buf}`;
}

/** ping_body's last line: `RTT over %llu packets: min %d av %d ns`. */
export function pingFinalMessage(packets: number, minNs: number, avgNs: number): string {
  return `RTT over ${packets} packets: min ${cInt(minNs)} av ${cInt(avgNs)} ns`;
}

/** pkt-gen-ts's own line: `RTT percentiles: p50 %d p99 %d p99.9 %d ns`. */
export function rttPercentilesMessage(p50: number, p99: number, p999: number): string {
  return `RTT percentiles: p50 ${Math.round(p50)} p99 ${Math.round(p99)} p99.9 ${Math.round(p999)} ns`;
}

/** Index of the highest set bit (pkt-gen's `msb64`), 0 for 0. */
export function msb64(x: number): number {
  if (x < 1) return 0;
  if (x < 2 ** 32) return 31 - Math.clz32(x);
  return Math.min(63, 63 - Math.clz32(Math.floor(x / 2 ** 32)));
}

/** 1-based nearest rank of percentile p among n sorted values (tolerant of float noise in p*n/100). */
function nearestRank(p: number, n: number): number {
  return Math.min(n, Math.max(1, Math.ceil((p * n) / 100 - 1e-9)));
}

/**
 * RTT statistics for ping: per-interval count/min/sum and log2 buckets (what
 * pkt-gen prints every second), run-wide count/min/sum, and a bounded uniform
 * reservoir of samples for percentiles.
 */
export class RttStats {
  /** Per-interval log2 buckets (bucket k: RTT in [2^k, 2^(k+1)) ns). */
  readonly buckets = new Array<number>(64).fill(0);
  private iCount = 0;
  private iMin = Infinity;
  private iSum = 0;
  private gCount = 0;
  private gMin = Infinity;
  private gSum = 0;
  private readonly reservoir: number[] = [];
  private rng: number;

  /**
   * @param reservoirSize most samples kept for percentiles (uniform sample beyond that)
   * @param seed seed of the reservoir's PRNG (deterministic replacement)
   */
  constructor(
    readonly reservoirSize = 16384,
    seed = 0x9e3779b9,
  ) {
    if (!Number.isInteger(reservoirSize) || reservoirSize < 1) throw new RangeError('reservoirSize must be >= 1');
    this.rng = seed >>> 0 || 1;
  }

  private rand(): number {
    // xorshift32
    let x = this.rng;
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    this.rng = x;
    return x / 0x100000000;
  }

  /** Record one round-trip time in nanoseconds (negative values count as 0). */
  record(ns: number): void {
    const v = ns > 0 ? ns : 0;
    this.iCount++;
    this.iSum += v;
    if (v < this.iMin) this.iMin = v;
    this.gCount++;
    this.gSum += v;
    if (v < this.gMin) this.gMin = v;
    this.buckets[msb64(v)]!++;
    if (this.reservoir.length < this.reservoirSize) this.reservoir.push(v);
    else {
      const j = Math.floor(this.rand() * this.gCount);
      if (j < this.reservoirSize) this.reservoir[j] = v;
    }
  }

  /** Samples recorded since the last {@link intervalMessages}. */
  get intervalCount(): number {
    return this.iCount;
  }

  /** Samples recorded in total. */
  get count(): number {
    return this.gCount;
  }

  /** Smallest RTT recorded, ns (-1 when none, as pkt-gen's `(int)~0`). */
  get min(): number {
    return this.gCount ? this.gMin : -1;
  }

  /** Mean RTT, ns (integer division; 0 when none). */
  get mean(): number {
    return this.gCount ? Math.floor(this.gSum / this.gCount) : 0;
  }

  /**
   * The two per-second messages (count line and histogram), then start a new
   * interval. With no samples the minimum prints -1 and the average 0 (where
   * pkt-gen would divide by zero).
   */
  intervalMessages(): [string, string] {
    const min = this.iCount ? this.iMin : -1;
    const av = this.iCount ? Math.floor(this.iSum / this.iCount) : 0;
    const out: [string, string] = [pingCountMessage(this.iCount, min, av), pingHistogramMessage(this.buckets)];
    this.buckets.fill(0);
    this.iCount = 0;
    this.iMin = Infinity;
    this.iSum = 0;
    return out;
  }

  /**
   * The final `RTT over N packets: min M av A ns`, over all samples (pkt-gen
   * prints its sent count and averages over it; we use the replies seen).
   */
  finalMessage(): string {
    return pingFinalMessage(this.gCount, this.min, this.mean);
  }

  /** Nearest-rank percentile (0 < p <= 100) of the reservoir; 0 when empty. */
  percentile(p: number): number {
    if (this.reservoir.length === 0) return 0;
    const sorted = [...this.reservoir].sort((a, b) => a - b);
    return sorted[nearestRank(p, sorted.length) - 1]!;
  }

  /** `RTT percentiles: p50 %d p99 %d p99.9 %d ns`. */
  percentilesMessage(): string {
    if (this.reservoir.length === 0) return rttPercentilesMessage(0, 0, 0);
    const sorted = [...this.reservoir].sort((a, b) => a - b);
    const at = (p: number): number => sorted[nearestRank(p, sorted.length) - 1]!;
    return rttPercentilesMessage(at(50), at(99), at(99.9));
  }
}
