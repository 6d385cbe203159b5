/**
 * A netmap ring seen from TypeScript: head/cur/tail and the slots are read
 * and written in place through typed-array views over the mapped region, so
 * moving a frame costs no native call. Only sync goes to the backend.
 */
import { RING, SLOT, SLOT_SIZE, NS_BUF_CHANGED } from './abi.js';

/** Thrown when a sync finds the ring misused (netmap's prologue checks). */
export class RingError extends Error {
  /** Always 'EINVAL', as netmap's prologue reports it. */
  readonly code = 'EINVAL';
  constructor(message: string) {
    super(message);
    this.name = 'RingError';
  }
}

/** Syncs one ring through its backend. */
export type RingSync = (ring: number) => void;

/** Options of a {@link Ring} (given to `open()` for every ring of the port). */
export interface RingOptions {
  /**
   * Also check, on every sync, each slot handed back since the last one
   * (buffer index inside the pool, tx length within the buffer), throwing
   * RingError where netmap's kernel would refuse the slot. Off by default:
   * the other side validates every slot it takes anyway (the switch and the
   * pipe peer drop and count bad ones, the kernel refuses them), so this is
   * a debugging aid that costs a pass over the slots. The head/cur/tail
   * checks of netmap's prologue always run.
   */
  checkSlots?: boolean;
}

/**
 * One tx or rx ring. Indices are slot numbers in 0..numSlots-1; use
 * {@link Ring.next} to advance, as netmap's nm_ring_next does.
 */
export class Ring {
  /** Ring index within its direction, as the backend numbers it. */
  readonly index: number;
  /**
   * 'tx' or 'rx': from the ring's position in the netmap_if's ring_ofs[]
   * (tx rings first), never from the header's `dir` field.
   */
  readonly dir: 'tx' | 'rx';
  /** Slots in the ring (not necessarily a power of two). */
  readonly numSlots: number;
  /** Size of each buffer in bytes. */
  readonly bufSize: number;
  /** Byte offset of this ring inside the region. */
  readonly offset: number;
  /** The whole region as bytes: frames live at {@link Ring.bufOffset}. */
  readonly bytes: Uint8Array;
  /** Highest valid buffer index + 1, from the mapping's extent. */
  readonly bufLimit: number;
  /** Human-readable owner, for error messages. */
  readonly label: string;

  private readonly u32: Uint32Array;
  private readonly u16: Uint16Array;
  private readonly hIdx: number;
  private readonly cIdx: number;
  private readonly tIdx: number;
  private readonly slot32: number;
  private readonly slot16: number;
  private readonly bufBase: number;
  private readonly syncFn: RingSync;
  /** head at the last successful sync: the user's part starts here */
  private lastHead: number;
  /** Whether a sync also walks the slots handed back (see {@link RingOptions.checkSlots}). */
  readonly checkSlots: boolean;

  /**
   * @param memory the mapped region
   * @param offset byte offset of the netmap_ring inside it
   * @param dir whether the ring is a tx or rx ring: the caller knows from
   *   where in ring_ofs[] it found the ring
   * @param index ring number passed to `sync`
   * @param sync the backend's txsync or rxsync
   * @param opts see {@link RingOptions}
   */
  constructor(memory: ArrayBuffer, offset: number, dir: 'tx' | 'rx', index: number, sync: RingSync, label = 'port', opts: RingOptions = {}) {
    if (offset % 8 !== 0 || offset + RING.slot > memory.byteLength) {
      throw new RangeError(`ring offset ${offset} lies outside the ${memory.byteLength}-byte region`);
    }
    const dv = new DataView(memory);
    this.u32 = new Uint32Array(memory, 0, memory.byteLength >>> 2);
    this.u16 = new Uint16Array(memory, 0, memory.byteLength >>> 1);
    this.bytes = new Uint8Array(memory);
    this.offset = offset;
    this.index = index;
    this.syncFn = sync;
    this.numSlots = dv.getUint32(offset + RING.num_slots, true);
    this.bufSize = dv.getUint32(offset + RING.nr_buf_size, true);
    this.dir = dir;
    this.label = `${label} ${this.dir} ring ${index}`;
    const bufOfs = Number(dv.getBigInt64(offset + RING.buf_ofs, true));
    this.bufBase = offset + bufOfs;
    const slotsEnd = offset + RING.slot + this.numSlots * SLOT_SIZE;
    if (this.numSlots < 2 || slotsEnd > memory.byteLength || this.bufSize === 0 || this.bufBase < 0 || this.bufBase > memory.byteLength) {
      throw new RangeError(`${this.label}: header describes a ring outside the region (slots ${this.numSlots}, buffer size ${this.bufSize})`);
    }
    this.bufLimit = Math.floor((memory.byteLength - this.bufBase) / this.bufSize);
    this.hIdx = (offset + RING.head) >>> 2;
    this.cIdx = (offset + RING.cur) >>> 2;
    this.tIdx = (offset + RING.tail) >>> 2;
    this.slot32 = (offset + RING.slot + SLOT.buf_idx) >>> 2;
    this.slot16 = (offset + RING.slot + SLOT.len) >>> 1;
    this.lastHead = this.head;
    this.checkSlots = opts.checkSlots ?? false;
  }

  /** First slot owned by the user. */
  get head(): number {
    return this.u32[this.hIdx]!;
  }
  set head(v: number) {
    this.u32[this.hIdx] = v;
  }
  /** Wakeup point (≥ head). */
  get cur(): number {
    return this.u32[this.cIdx]!;
  }
  set cur(v: number) {
    this.u32[this.cIdx] = v;
  }
  /** First slot owned by the kernel side; changes only inside a sync. */
  get tail(): number {
    return this.u32[this.tIdx]!;
  }

  /** nm_ring_next: the slot after i. */
  next(i: number): number {
    return i + 1 === this.numSlots ? 0 : i + 1;
  }
  /** nm_ring_space: slots available to the user (tx: free, rx: received). */
  space(): number {
    const d = this.tail - this.head;
    return d < 0 ? d + this.numSlots : d;
  }
  /** nm_ring_empty: no slot available to the user. */
  empty(): boolean {
    return this.head === this.tail;
  }
  /** Advance head and cur by n slots (releases rx slots / queues tx slots). */
  advance(n: number): void {
    let h = this.head + n;
    if (h >= this.numSlots) h -= this.numSlots;
    this.u32[this.hIdx] = h;
    this.u32[this.cIdx] = h;
  }

  /** Buffer index of slot i. */
  bufIdx(i: number): number {
    return this.u32[this.slot32 + i * 4]!;
  }
  /** Point slot i at another buffer (zero-copy swap); sets NS_BUF_CHANGED. */
  setBufIdx(i: number, idx: number): void {
    this.u32[this.slot32 + i * 4] = idx;
    this.u16[this.slot16 + i * 8 + 1] = this.u16[this.slot16 + i * 8 + 1]! | NS_BUF_CHANGED;
  }
  /** Frame length in slot i. */
  len(i: number): number {
    return this.u16[this.slot16 + i * 8]!;
  }
  /** Set the frame length of slot i. */
  setLen(i: number, len: number): void {
    this.u16[this.slot16 + i * 8] = len;
  }
  /** NS_* flags of slot i. */
  flags(i: number): number {
    return this.u16[this.slot16 + i * 8 + 1]!;
  }
  /** Set the NS_* flags of slot i. */
  setFlags(i: number, f: number): void {
    this.u16[this.slot16 + i * 8 + 1] = f;
  }
  /** Byte offset in {@link Ring.bytes} of slot i's buffer (NETMAP_BUF). */
  bufOffset(i: number): number {
    return this.bufBase + this.u32[this.slot32 + i * 4]! * this.bufSize;
  }
  /** Byte offset in {@link Ring.bytes} of buffer `idx`. */
  bufOffsetOf(idx: number): number {
    return this.bufBase + idx * this.bufSize;
  }
  /** Zero-copy view of slot i's whole buffer (bufSize bytes). */
  buffer(i: number): Uint8Array {
    const o = this.bufOffset(i);
    return this.bytes.subarray(o, o + this.bufSize);
  }
  /** Zero-copy view of the frame in slot i (len bytes). */
  frame(i: number): Uint8Array {
    const o = this.bufOffset(i);
    return this.bytes.subarray(o, o + this.len(i));
  }

  /**
   * txsync or rxsync for this ring. Checks first what netmap's prologue
   * checks (head and cur inside the user's part; with
   * {@link RingOptions.checkSlots}, also the slots handed back pointing at
   * real buffers with sane lengths) and throws RingError, after putting
   * head/cur back where the last sync left them. `trusted` skips the
   * per-slot part even then, for slots written by the addon's batch loops,
   * which validated every index they used.
   */
  sync(trusted = false): void {
    this.prologue(trusted);
    this.syncFn(this.index);
    this.lastHead = this.head;
  }

  /**
   * Record head as synced without a sync of this ring's own: for backends
   * where another ring's sync covered it (kernel netmap syncs every bound
   * ring in one ioctl).
   */
  markSynced(): void {
    this.lastHead = this.head;
  }

  /**
   * netmap's txsync/rxsync prologue check (head, cur against tail and the
   * last sync; the slots too with {@link RingOptions.checkSlots}, unless
   * `trusted`); throws RingError.
   */
  prologue(trusted = false): void {
    const n = this.numSlots;
    const head = this.head;
    const cur = this.cur;
    const tail = this.tail;
    const last = this.lastHead;
    const span = (tail - last + n) % n;
    if (head >= n || cur >= n || (head - last + n) % n > span || (cur - head + n) % n > (tail - head + n) % n) {
      this.u32[this.hIdx] = last;
      this.u32[this.cIdx] = last;
      throw new RingError(
        `${this.label}: head ${head} / cur ${cur} outside the user's part of the ring [${last}, ${tail}) ` +
          `(${n} slots): head may only move forward from the last sync, up to tail, and cur must lie in [head, tail]; ` +
          `head/cur were reset to ${last}`,
      );
    }
    if (trusted || !this.checkSlots) return;
    const tx = this.dir === 'tx';
    for (let i = last; i !== head; i = i + 1 === n ? 0 : i + 1) {
      const idx = this.u32[this.slot32 + i * 4]!;
      const fl = this.u16[this.slot16 + i * 8 + 1]!;
      if ((tx || (fl & NS_BUF_CHANGED) !== 0) && (idx < 2 || idx >= this.bufLimit)) {
        this.u32[this.hIdx] = last;
        this.u32[this.cIdx] = last;
        throw new RingError(`${this.label}: slot ${i} has buffer index ${idx}, outside the pool [2, ${this.bufLimit}); head/cur were reset to ${last}`);
      }
      if (tx && this.u16[this.slot16 + i * 8]! > this.bufSize) {
        const len = this.u16[this.slot16 + i * 8]!;
        this.u32[this.hIdx] = last;
        this.u32[this.cIdx] = last;
        throw new RingError(`${this.label}: slot ${i} has length ${len}, over the ${this.bufSize}-byte buffer; head/cur were reset to ${last}`);
      }
    }
  }
}
