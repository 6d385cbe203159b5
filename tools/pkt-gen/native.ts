/**
 * The pkt-gen datapath in the tools addon (cpp/tools/pktgen.cc): a whole batch of tx
 * slots filled, or of rx slots counted, per call. TypeScript runs the loop
 * (sync, wait, rate, stop, reports) and never touches a frame per packet on
 * these paths.
 *
 * Both loops take the port's region (`Port.memory`) and a ring's byte offset
 * in it (`Ring.offset`); the addon re-reads and checks the ring's geometry on
 * every call, since the region is shared with another process.
 *
 * @module
 */
import { toolsRaw } from '../addon.js';

/** Index of each counter in a thread's counter array (a Float64Array, possibly shared with the reporting thread). */
export const CTR = {
  /** packets (tx: frames filled; rx: complete packets counted) */
  PKTS: 0,
  BYTES: 1,
  /** batches that moved at least one packet */
  EVENTS: 2,
  /** rxseq: sequence gaps */
  GAPS: 3,
  /** rxseq: out-of-order sequence numbers */
  OUT_OF_ORDER: 4,
  /** rxseq: packets whose fragment count changed */
  FRAG_ERRORS: 5,
  /** rx: smallest summed free rx space since the last report (0 before the first report, as pkt-gen's zeroed counters; 99999 afterwards when not measured) */
  MIN_SPACE: 6,
  /** start time (ms since the epoch, fractional), 0 until started */
  TIC: 7,
  /** end time (ms since the epoch) */
  TOC: 8,
  /** 1 while the thread runs */
  USED: 9,
  /** 1 when the thread finished its work without error */
  COMPLETED: 10,
} as const;
/** Length of a thread's counter array. */
export const CTR_LEN = 16;

/** Why {@link NativePktgen.pongEcho} did not echo a frame: indices into its `drops`. */
export const PONG_DROP = {
  /** a chain of slots (NS_MOREFRAG) over NETMAP_MAX_FRAGS slots, filling the rx ring without an end, or longer than the tx ring: it can never be echoed whole */
  TOO_LONG: 0,
  /** the rx slot held no Ethernet frame inside the region (bad buffer index, length over a buffer, a first slot under 14 bytes), or the tx slot a bad buffer index */
  BAD_SLOT: 1,
  /** the source MAC was a group address: the echo would flood the switch (and two pongs would echo it to each other for ever) */
  GROUP_SOURCE: 2,
} as const;
/** Length of pongEcho's `drops`. */
export const PONG_DROP_KINDS = 3;

/** Indices into pongEcho's per-rx-ring `state`. */
export const PONG_STATE = {
  /** in and out: 1 while the rest of a chain dropped as too long is being skipped */
  SKIPPING: 0,
  /** out: tx slots the frame at the rx head waits for (0: it did not wait for room) */
  TX_NEED: 1,
  /** out: rx slots of a chain whose last slot has not arrived yet (left in the ring) */
  RX_HELD: 2,
} as const;
/** Length of pongEcho's `state`. */
export const PONG_STATE_LEN = 3;

/** Kinds of rx events reported by {@link NativeRxCounter.rxCount}. */
export const RX_EVENT = { GAP: 1, OUT_OF_ORDER: 2, FRAGS: 3 } as const;

/** One side (source or destination) of the per-frame address walk. */
export interface SideSpec {
  /** First address (IPv4 as uint32) or value of the varied 16-bit group (IPv6). */
  a0: number;
  /** Last address / group value, inclusive. */
  a1: number;
  /** First and last UDP port, inclusive. */
  p0: number;
  p1: number;
  /** Draw address and port at random in [a0, a1] x [p0, p1] for every frame. */
  random: boolean;
}

/** Options of the native tx generator (everything structured-clone-able). */
export interface TxGenSpec {
  af: 4 | 6;
  /** Offset of the IP header (14). */
  l3: number;
  /** Offset of the UDP header; 0 when the frame cannot be rewritten (no per-frame changes). */
  l4: number;
  /** Random length in [lenMin, lenMax) when lenMin < lenMax; else the template length. */
  lenMin: number;
  lenMax: number;
  /** Write a 32-bit big-endian sequence number at the UDP payload start (txseq). */
  seq: boolean;
  seqStart: number;
  src: SideSpec;
  dst: SideSpec;
  /** IPv6: the 16-bit group (0..7) of the source address the walk varies. */
  group: number;
  /** IPv6: the same for the destination address. */
  dstGroup: number;
  /** Slots per frame (1 = single-slot). */
  frags: number;
  /** Bytes per fragment (all but the last), when frags > 1 and not fragGroup. */
  fragSize: number;
  /** txseq -F: each slot holds a whole frame; NS_MOREFRAG groups `frags` of them. */
  fragGroup: boolean;
  /** Copy the template into every buffer (pipes: their buffers circulate). */
  alwaysCopy: boolean;
  /** -r: send the buffers as they are. */
  rubbish: boolean;
  /** Keep the UDP checksum right (false when an IPv4 template carries none). */
  udpCsum: boolean;
  /** Seed of the generator's PRNG (random sizes and addresses). */
  seed: number;
}

/** The native tx generator: a template plus the per-frame state. */
export interface NativeTxGen {
  /**
   * Fill up to min(free slots, maxFrames) frames from head, then move
   * head = cur past them. Adds frames/bytes/events to the stats array.
   * @returns frames written (0 when the ring is full)
   */
  txFill(memory: ArrayBuffer, ringOffset: number, maxFrames: number): number;
  /** C++ reference loop: txFill + sync() per batch until `count` frames, then drain. */
  benchLoop(memory: ArrayBuffer, ringOffset: number, count: number, batch: number, sync: () => void): { frames: number; ns: number };
}

/** The native rx counter. */
export interface NativeRxCounter {
  /**
   * Count up to `maxFrames` packets in [head, tail), checking txseq numbers
   * if asked, and release them (head = cur = past the last slot counted).
   * As pkt-gen counts: complete packets (slots without NS_MOREFRAG), or with
   * the sequence check (rxseq) every slot. `ringIndex` (0 .. the counter's
   * `rings` - 1) picks the ring's own sequence and chain state.
   * @returns packets counted
   */
  rxCount(memory: ArrayBuffer, ringOffset: number, maxFrames: number, ringIndex?: number): number;
  /**
   * C++ reference loop: sync() then count, until `count` packets. The clock
   * starts at the first frames; `timed` packets arrived within `ns`.
   */
  benchLoop(memory: ArrayBuffer, ringOffset: number, count: number, sync: () => void): { frames: number; timed: number; ns: number };
}

/** The addon's pkt-gen part. */
export interface NativePktgen {
  PktgenTx: new (template: Uint8Array, opts: TxGenSpec & { stats: Float64Array }) => NativeTxGen;
  PktgenRx: new (opts: { stats: Float64Array; events?: Uint32Array; seq?: boolean; hdrLen?: number; rings?: number }) => NativeRxCounter;
  /**
   * Echo the frames of an rx ring into a tx ring with MACs (and IPv4
   * addresses) swapped; returns frames echoed. A frame spread over several
   * slots (NS_MOREFRAG) is echoed as the same chain, published whole. It
   * stops at a frame the tx ring lacks room for, or a chain whose last slot
   * has not arrived (both stay in the rx ring; `state` says which), or after
   * `max` frames consumed. Each frame consumed but not echoed is added to
   * `drops` (at least {@link PONG_DROP_KINDS} elements), at its
   * {@link PONG_DROP} reason. `state` ({@link PONG_STATE_LEN} elements,
   * {@link PONG_STATE}) is kept per rx ring across calls.
   */
  pongEcho(memory: ArrayBuffer, rxRingOffset: number, txRingOffset: number, max: number, drops?: Float64Array, state?: Uint32Array): number;
  /** Pin the calling thread to one CPU (sched_setaffinity). */
  setAffinity(cpu: number): void;
}

const raw = toolsRaw as { pktgen?: NativePktgen };
if (!raw.pktgen) throw new Error('the tools addon lacks the pkt-gen datapath (cpp/tools/pktgen.cc): rebuild it with npm run build:native');

/** The typed binding. */
export const pktgenNative: NativePktgen = raw.pktgen;

/** A fresh counter array (on a SharedArrayBuffer, so a reporting thread can read it). */
export function newCounters(): Float64Array {
  // all zero, MIN_SPACE included: pkt-gen calloc()s its counters and only the
  // reporting thread sets min_space to 99999, after its first report
  return new Float64Array(new SharedArrayBuffer(CTR_LEN * 8));
}

/** Make a tx generator writing its counts into `stats`. */
export function createTxGen(template: Uint8Array, spec: TxGenSpec, stats: Float64Array): NativeTxGen {
  return new pktgenNative.PktgenTx(template, { ...spec, stats });
}

/** Make an rx counter writing its counts into `stats` and its events into `events`, with state for `rings` rx rings (default 1). */
export function createRxCounter(stats: Float64Array, opts: { seq?: boolean; hdrLen?: number; events?: Uint32Array; rings?: number } = {}): NativeRxCounter {
  return new pktgenNative.PktgenRx({ ...opts, stats });
}
