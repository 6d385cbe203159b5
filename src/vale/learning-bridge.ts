/**
 * The default forwarding decision of a switch: a learning bridge in the manner
 * of netmap's `netmap_vale_learning()`, plus aging and a bounded table.
 *
 * Called once per batch (frames from every port that had some, each tagged
 * with its source port); reads the Ethernet header of every frame from the
 * switch's private snapshot and writes a destination per frame. No allocation, no DataView: bytes are combined
 * with shifts into the 16 + 32 bit key the MAC table works on.
 */
import { type Clock, systemClock } from './clock.js';
import { MacTable } from './mac-table.js';

/** Drop the frame (the caller counts it by reason; here: runt). */
export const DEST_DROP = -1;
/** Send to every port except the source. */
export const DEST_FLOOD = -2;
/** Destination is the source port itself: drop, counted as 'same-port'. */
export const DEST_SAME_PORT = -3;

/** Shortest frame with a full Ethernet header. */
export const ETH_HLEN = 14;

/**
 * Decision function signature the switch calls once per round, for the frames
 * it took from every port. Frame i's first `lens[i]` bytes are at
 * `buf[offsets[i]]`: a copy the switch made in its own memory (the frame's
 * first `headerBytes` bytes, a switch option, 128 by default), so the
 * sending client can no longer change what is decided on, and the frame is
 * delivered starting with exactly these bytes. `srcPorts[i]` is frame i's
 * source port index. Write the destination port index (>= 0), DEST_FLOOD,
 * DEST_DROP or DEST_SAME_PORT into `dests[i]`.
 */
export type BatchLookup = (
  buf: Uint8Array,
  offsets: Uint32Array,
  lens: Uint16Array,
  count: number,
  srcPorts: Uint8Array,
  dests: Int16Array,
) => void;

export interface LearningBridgeOptions {
  maxEntries?: number;
  ageMs?: number;
  clock?: Clock;
}

/**
 * The switch's default lookup: learns each frame's source MAC on its port,
 * sends a known destination to its port, floods the rest (broadcast,
 * multicast, unknown), and drops runts (counted).
 */
export class LearningBridge {
  /** the MAC table it learns into (bounded, aged by the switch's clock) */
  readonly table: MacTable;
  /** frames too short for an Ethernet header */
  readonly counters = { runts: 0 };
  /** Bound; pass it around as a plain function. */
  readonly lookupBatch: BatchLookup;
  private readonly clock: Clock;

  constructor(opts: LearningBridgeOptions = {}) {
    this.clock = opts.clock ?? systemClock;
    this.table = new MacTable({ maxEntries: opts.maxEntries, ageMs: opts.ageMs, clock: this.clock });
    const table = this.table;
    const counters = this.counters;
    const clock = this.clock;
    // the 32-bit view of the last header buffer seen (the switch passes the same one every round)
    const noWords: Uint32Array<ArrayBufferLike> = new Uint32Array(0);
    let wordsOf: Uint8Array | undefined;
    let words = noWords;

    this.lookupBatch = (buf, offsets, lens, count, srcPorts, dests) => {
      const now = clock.nowMs();
      let n = count | 0;
      if (n > dests.length) n = dests.length;
      // Last-source cache (VALE's last_smac): consecutive frames from the same
      // MAC and port write the table once per batch; the first frame of every
      // batch learns for real, which also refreshes the entry's age. The cache
      // lives only for this call, so nothing done to the table between batches
      // (removePort, expire, remove) can make it stale.
      let cHi = -1;
      let cLo = -1;
      let cPort = -1;
      // Last-destination cache, same lifetime: a stream's frames share a
      // destination, and within one call `now` is fixed, so the answer holds
      // until the table changes (a learn that missed the source cache)
      let dcHi = -1;
      let dcLo = -1;
      let dcPort = -1;
      // Same-header cache: a frame whose 12 address bytes and source port
      // equal the previous full frame's gets its destination, since both
      // caches above still hold that frame's answer. The bytes are compared
      // as three 32-bit words (the switch's snapshots are 8-byte aligned),
      // which costs a third of assembling them byte by byte.
      if (buf !== wordsOf) {
        wordsOf = buf;
        words = buf.byteOffset % 4 === 0 ? new Uint32Array(buf.buffer, buf.byteOffset, buf.byteLength >>> 2) : noWords;
      }
      const w = words;
      const wEnd = w.length - 3;
      let w0 = 0;
      let w1 = 0;
      let w2 = 0;
      let wPort = -1;
      let wDest = 0;
      for (let i = 0; i < n; i++) {
        const srcPort = srcPorts[i]!;
        if (lens[i]! < ETH_HLEN) {
          counters.runts++;
          dests[i] = DEST_DROP;
          continue;
        }
        const o = offsets[i]!;
        const wi = o >>> 2;
        if ((o & 3) === 0 && wi <= wEnd) {
          const a = w[wi]!;
          const b = w[wi + 1]!;
          const c = w[wi + 2]!;
          if (srcPort === wPort && a === w0 && b === w1 && c === w2) {
            dests[i] = wDest;
            continue;
          }
          w0 = a;
          w1 = b;
          w2 = c;
          wPort = srcPort;
        } else {
          wPort = -1;
        }

        // Source: learn unless it is a group address.
        const s0 = buf[o + 6]!;
        if ((s0 & 1) === 0) {
          const sHi = (s0 << 8) | buf[o + 7]!;
          const sLo = ((buf[o + 8]! << 24) | (buf[o + 9]! << 16) | (buf[o + 10]! << 8) | buf[o + 11]!) >>> 0;
          if (sLo !== cLo || sHi !== cHi || srcPort !== cPort) {
            table.learn(sHi, sLo, srcPort, now);
            dcHi = -1;
            cHi = sHi;
            cLo = sLo;
            cPort = srcPort;
          }
        }

        // Destination.
        const d0 = buf[o]!;
        if ((d0 & 1) !== 0) {
          wDest = DEST_FLOOD;
          dests[i] = DEST_FLOOD;
          continue;
        }
        const dHi = (d0 << 8) | buf[o + 1]!;
        const dLo = ((buf[o + 2]! << 24) | (buf[o + 3]! << 16) | (buf[o + 4]! << 8) | buf[o + 5]!) >>> 0;
        let port = dcPort;
        if (dLo !== dcLo || dHi !== dcHi) {
          port = table.lookup(dHi, dLo, now);
          dcHi = dHi;
          dcLo = dLo;
          dcPort = port;
        }
        wDest = port < 0 ? DEST_FLOOD : port === srcPort ? DEST_SAME_PORT : port;
        dests[i] = wDest;
      }
    };
  }

  /** Forget everything and zero the counters: as new, without allocating a table. */
  reset(): void {
    this.table.clear();
    const c = this.table.counters;
    c.tableFull = c.learned = c.moved = c.aged = 0;
    this.counters.runts = 0;
  }

  /** The port went away: forget what was learned on it. */
  portRemoved(port: number): void {
    this.table.removePort(port);
  }

  /** Reclaim aged entries; the switch calls this about once a second. */
  expire(): void {
    this.table.expire(this.clock.nowMs());
  }
}
