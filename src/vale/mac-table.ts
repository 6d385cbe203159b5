/**
 * MAC address table for the learning bridge.
 *
 * Open addressing with linear probing over typed arrays; a 48-bit MAC is held as
 * hi16 (first two octets) + lo32 (last four octets), so the hot path works on
 * small integers only and never allocates.
 *
 * Layout (one slot per index, capacity a power of two >= 2 * maxEntries):
 *   keyHi[i]  Uint16  first two octets
 *   keyLo[i]  Uint32  last four octets
 *   slot[i]   Uint16  port + 1; 0 marks an empty slot
 *   seen[i]   Float64 time of the last learn, in clock milliseconds
 *
 * Deletion uses backward-shift deletion (no tombstones): after a slot is
 * emptied, later members of the same probe run that may legally move back are
 * shifted into the hole. Probe runs therefore stay short and `size` is exactly
 * the number of stored entries.
 *
 * Aging: an entry with `now - seen >= ageMs` is stale. Stale entries are absent
 * for lookup; `expire(now)` removes them (the switch calls it about once a
 * second). Learning a stale MAC again refreshes it in place. When the table is
 * full, `learn` runs one sweep (at most once per `min(ageMs, 1000)` ms) to
 * reclaim stale entries before giving up and counting `tableFull`.
 *
 * Because load is kept at or below 50 %, there is always an empty slot, so every
 * probe terminates.
 */
import { type Clock, systemClock } from './clock.js';

/** Largest port index the table can store (dests are Int16Array in the switch). */
export const MAX_PORT = 0x7fff;

export const DEFAULT_MAX_ENTRIES = 8192;
export const DEFAULT_AGE_MS = 300_000;

export interface MacTableOptions {
  /** Bound on the number of entries (default 8192). */
  maxEntries?: number;
  /** Entries not refreshed for this long are treated as absent (default 300 000 ms). */
  ageMs?: number;
  /** Only used by `entries()` when it is not given a time. */
  clock?: Clock;
}

export interface MacTableCounters {
  /** New MACs not learned because the table was full. */
  tableFull: number;
  /** New MACs inserted (including a stale MAC learned again). */
  learned: number;
  /** Known MACs seen on a different port. */
  moved: number;
  /** Entries dropped because they aged out. */
  aged: number;
}

export interface MacTableEntry {
  mac: string;
  port: number;
  ageMs: number;
}

/**
 * Hash of a 48-bit key to a 32-bit value whose HIGH bits are well mixed
 * (Fibonacci hashing: the table indexes with `h >>> shift`). hi16 is spread
 * over all 32 bits first so it reaches the top bits too.
 */
function mix(hi: number, lo: number): number {
  return Math.imul(lo ^ Math.imul(hi ^ 0x2b, 0x85ebca6b) ^ (lo >>> 15), 0x9e3779b1);
}

function checkPort(port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > MAX_PORT) {
    throw new RangeError(`MacTable: port ${port} out of range 0..${MAX_PORT}`);
  }
}

export class MacTable {
  readonly maxEntries: number;
  readonly ageMs: number;
  readonly capacity: number;
  readonly counters: MacTableCounters = { tableFull: 0, learned: 0, moved: 0, aged: 0 };

  private readonly mask: number;
  /** 32 - log2(capacity): the index is the top bits of the hash. */
  private readonly shift: number;
  private readonly keyHi: Uint16Array;
  private readonly keyLo: Uint32Array;
  private readonly slot: Uint16Array;
  private readonly seen: Float64Array;
  private readonly clock: Clock;
  private readonly sweepIntervalMs: number;
  private count = 0;
  private lastSweep = -Infinity;

  constructor(opts: MacTableOptions = {}) {
    const maxEntries = opts.maxEntries ?? DEFAULT_MAX_ENTRIES;
    const ageMs = opts.ageMs ?? DEFAULT_AGE_MS;
    if (!Number.isInteger(maxEntries) || maxEntries < 1 || maxEntries > 1 << 24) {
      throw new RangeError(`MacTable: maxEntries ${maxEntries} must be an integer in 1..${1 << 24}`);
    }
    if (!(ageMs > 0)) throw new RangeError(`MacTable: ageMs ${ageMs} must be > 0`);
    let cap = 16;
    while (cap < 2 * maxEntries) cap *= 2;
    this.maxEntries = maxEntries;
    this.ageMs = ageMs;
    this.capacity = cap;
    this.mask = cap - 1;
    this.shift = 32 - Math.log2(cap);
    this.keyHi = new Uint16Array(cap);
    this.keyLo = new Uint32Array(cap);
    this.slot = new Uint16Array(cap);
    this.seen = new Float64Array(cap);
    this.clock = opts.clock ?? systemClock;
    this.sweepIntervalMs = Math.min(ageMs, 1000);
  }

  /** Number of stored entries (stale ones included until `expire` or reuse). */
  get size(): number {
    return this.count;
  }

  /**
   * Port of `hi16:lo32`, or -1 when unknown or aged out. Hot path: no allocation.
   */
  lookup(hi16: number, lo32: number, now: number): number {
    const hi = hi16 & 0xffff;
    const lo = lo32 >>> 0;
    const mask = this.mask;
    const shift = this.shift;
    const slot = this.slot;
    const keyLo = this.keyLo;
    const keyHi = this.keyHi;
    let i = mix(hi, lo) >>> shift;
    for (;;) {
      const p = slot[i];
      if (p === 0) return -1;
      if (keyLo[i] === lo && keyHi[i] === hi) {
        return now - this.seen[i] >= this.ageMs ? -1 : p - 1;
      }
      i = (i + 1) & mask;
    }
  }

  /**
   * Record that `hi16:lo32` was seen on `port` at `now`: insert, refresh, or move.
   * Returns nothing; a MAC that does not fit counts in `counters.tableFull`.
   */
  learn(hi16: number, lo32: number, port: number, now: number): void {
    if ((port >>> 0) > MAX_PORT || port !== (port | 0)) checkPort(port);
    const hi = hi16 & 0xffff;
    const lo = lo32 >>> 0;
    const mask = this.mask;
    const slot = this.slot;
    const keyLo = this.keyLo;
    const keyHi = this.keyHi;
    const tag = port + 1;
    let i = mix(hi, lo) >>> this.shift;
    for (;;) {
      const p = slot[i];
      if (p === 0) break;
      if (keyLo[i] === lo && keyHi[i] === hi) {
        const seen = this.seen;
        if (p === tag && now - seen[i]! < this.ageMs) {
          seen[i] = now; // the common case: refresh
        } else {
          this.relearn(i, tag, now);
        }
        return;
      }
      i = (i + 1) & mask;
    }
    this.insert(i, hi, lo, tag, now);
  }

  /** Known MAC that moved, or that aged out and was not swept yet. */
  private relearn(i: number, tag: number, now: number): void {
    if (now - this.seen[i]! >= this.ageMs) {
      // Aged out but not yet swept: it comes back as a fresh entry.
      this.counters.aged++;
      this.counters.learned++;
    } else {
      this.counters.moved++;
    }
    this.slot[i] = tag;
    this.seen[i] = now;
  }

  /** New MAC; `i` is the empty slot that ends its probe run. */
  private insert(i: number, hi: number, lo: number, tag: number, now: number): void {
    if (this.count >= this.maxEntries) {
      if (now - this.lastSweep >= this.sweepIntervalMs && this.expire(now) > 0) {
        // The sweep moved entries around; find the end of the run again.
        i = mix(hi, lo) >>> this.shift;
        while (this.slot[i] !== 0) i = (i + 1) & this.mask;
      } else {
        this.counters.tableFull++;
        return;
      }
    }
    this.keyHi[i] = hi;
    this.keyLo[i] = lo;
    this.slot[i] = tag;
    this.seen[i] = now;
    this.count++;
    this.counters.learned++;
  }

  /** Forget one MAC. Returns whether it was stored (stale or not). */
  remove(hi16: number, lo32: number): boolean {
    const i = this.find(hi16 & 0xffff, lo32 >>> 0);
    if (i < 0) return false;
    this.deleteAt(i);
    return true;
  }

  /** Forget every MAC learned on `port` (the port went away). Returns how many. */
  removePort(port: number): number {
    checkPort(port);
    const tag = port + 1;
    const slot = this.slot;
    let removed = 0;
    for (let i = 0; i < this.capacity; ) {
      if (slot[i] === tag) {
        // deleteAt may shift a later entry into i: look at i again.
        this.deleteAt(i);
        removed++;
      } else {
        i++;
      }
    }
    return removed;
  }

  /** Remove every entry aged out at `now`. Returns how many; counted in `counters.aged`. */
  expire(now: number): number {
    this.lastSweep = now;
    const slot = this.slot;
    const seen = this.seen;
    const ageMs = this.ageMs;
    let removed = 0;
    for (let i = 0; i < this.capacity; ) {
      if (slot[i] !== 0 && now - seen[i] >= ageMs) {
        this.deleteAt(i);
        removed++;
      } else {
        i++;
      }
    }
    this.counters.aged += removed;
    return removed;
  }

  /** Remove everything (counters are kept). */
  clear(): void {
    this.slot.fill(0);
    this.count = 0;
  }

  /** Live entries, for `vale-ctl-ts --stats`; not for the hot path. */
  *entries(now: number = this.clock.nowMs()): IterableIterator<MacTableEntry> {
    for (let i = 0; i < this.capacity; i++) {
      const p = this.slot[i];
      if (p === 0) continue;
      const age = now - this.seen[i];
      if (age >= this.ageMs) continue;
      yield { mac: keyToMac(this.keyHi[i], this.keyLo[i]), port: p - 1, ageMs: age };
    }
  }

  private find(hi: number, lo: number): number {
    const mask = this.mask;
    const shift = this.shift;
    let i = mix(hi, lo) >>> shift;
    for (;;) {
      if (this.slot[i] === 0) return -1;
      if (this.keyLo[i] === lo && this.keyHi[i] === hi) return i;
      i = (i + 1) & mask;
    }
  }

  /**
   * Backward-shift deletion: empty slot `hole`, then walk the run after it and
   * move back every entry whose home slot does not lie cyclically in (hole, j].
   */
  private deleteAt(hole: number): void {
    const mask = this.mask;
    const shift = this.shift;
    const slot = this.slot;
    const keyHi = this.keyHi;
    const keyLo = this.keyLo;
    const seen = this.seen;
    let j = hole;
    for (;;) {
      j = (j + 1) & mask;
      if (slot[j] === 0) break;
      const home = mix(keyHi[j], keyLo[j]) >>> shift;
      // Distance from home to j versus distance from home to the hole.
      if (((j - home) & mask) >= ((j - hole) & mask)) {
        keyHi[hole] = keyHi[j];
        keyLo[hole] = keyLo[j];
        slot[hole] = slot[j];
        seen[hole] = seen[j];
        hole = j;
      }
    }
    slot[hole] = 0;
    this.count--;
  }
}

const HEX = '0123456789abcdef';

function hex2(b: number): string {
  return HEX[(b >>> 4) & 15]! + HEX[b & 15]!;
}

/** "aa:bb:cc:dd:ee:ff" (also '-' separated) → { hi: 0xaabb, lo: 0xccddeeff }. */
export function macToKey(s: string): { hi: number; lo: number } {
  const m = /^([0-9a-f]{2})([:-])([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})\2([0-9a-f]{2})$/i.exec(s);
  if (m === null) throw new SyntaxError(`not a MAC address: ${JSON.stringify(s)}`);
  const o = [m[1], m[3], m[4], m[5], m[6], m[7]].map((x) => parseInt(x!, 16));
  return {
    hi: ((o[0]! << 8) | o[1]!) >>> 0,
    lo: ((o[2]! << 24) | (o[3]! << 16) | (o[4]! << 8) | o[5]!) >>> 0,
  };
}

/** { hi: 0xaabb, lo: 0xccddeeff } → "aa:bb:cc:dd:ee:ff". */
export function keyToMac(hi: number, lo: number): string {
  lo >>>= 0;
  return [hi >>> 8, hi, lo >>> 24, lo >>> 16, lo >>> 8, lo].map((b) => hex2(b & 0xff)).join(':');
}
