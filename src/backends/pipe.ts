/**
 * Netmap pipes (`vale0:x{1` / `vale0:x}1`, `netmap:eth0{3` ...) between any
 * two processes, with no switch: the region is a file under NETMAP_PIPE_DIR
 * (default /dev/shm) named after the pipe, frames cross by buffer swap.
 */
import path from 'node:path';
import { native, type NativePipe } from '../netmap/addon.js';
import { DEFAULT_BUF_SIZE, DEFAULT_SLOTS, MAX_SLOTS, NIF } from '../netmap/abi.js';
import type { ParsedPortName } from '../netmap/name.js';
import { pipeKey } from '../netmap/name.js';
import type { Backend } from './backend.js';
import { CsbDoorbell, CsbView } from './csb.js';

/** Options that shape a pipe region (only the end that creates it decides). */
export interface PipeOptions {
  rings?: number;
  /** slots per ring (default {@link pipeDefaultSlots}: 4096 with 2 KiB buffers) */
  slots?: number;
  bufSize?: number;
  extraBufs?: number;
}

/**
 * Slots per ring of a pipe whose creator asks for no size (`@conf:slots=`,
 * `slots`) and keeps the default 2 KiB buffers: the most a ring takes
 * (MAX_SLOTS), not the 1024 of a VALE port. Two busy processes beside a
 * pipe's two ends leave each end a CPU only part of the time, in slices of
 * a few ms; the sender then fills the ring in microseconds and sleeps, and
 * its CPU goes to the neighbour. A ring four times longer lets each end work
 * through more of the other's absence (bench/contention.bench.ts;
 * bench/RESULTS.md, session 7). It costs address space (a 32 MiB region
 * instead of 8) and, once traffic has cycled through every buffer, that much
 * of /dev/shm; an idle pipe stays small (the region is a sparse file: 264 KiB
 * resident, 72 KiB at 1024). See {@link pipeDefaultSlots} for larger buffers.
 */
export const PIPE_DEFAULT_SLOTS = MAX_SLOTS;

/**
 * The default slots per ring for a pipe of `bufSize`-byte buffers: as many
 * as keep a ring's buffers within what {@link PIPE_DEFAULT_SLOTS} slots of
 * 2 KiB take (8 MiB), but never fewer than a VALE port's 1024 (so a pipe of
 * 64 KiB buffers is the 256 MiB region it was, not 1 GiB).
 */
export function pipeDefaultSlots(bufSize: number = DEFAULT_BUF_SIZE): number {
  const fit = Math.floor((PIPE_DEFAULT_SLOTS * DEFAULT_BUF_SIZE) / Math.max(bufSize, 1));
  return Math.min(PIPE_DEFAULT_SLOTS, Math.max(DEFAULT_SLOTS, fit));
}

/** Directory holding pipe regions and doorbells. */
export function pipeDir(): string {
  return process.env['NETMAP_PIPE_DIR'] || '/dev/shm';
}

/** Path of the region file shared by both ends of a pipe. */
export function pipePath(p: ParsedPortName): string {
  const key = pipeKey(p);
  if (key === undefined) throw new Error(`${p.spec} is not a pipe name (expected NAME{ID or NAME}ID)`);
  // the prefix as the core (stale-file sweep) and the preload spell it
  const prefix: unknown = native.Pipe.filePrefix;
  if (typeof prefix !== 'string') throw new Error('addon lacks Pipe.filePrefix: rebuild the addon (npm run build:native)');
  return path.join(pipeDir(), prefix + encodeURIComponent(key).replace(/%/g, '_'));
}

/** One end of a pipe. */
export class PipeBackend extends CsbDoorbell implements Backend {
  readonly kind = 'pipe' as const;
  readonly syncsAllRings = false;
  readonly memory: ArrayBuffer;
  readonly nifpOffset: number;
  readonly txRingIds: readonly number[];
  readonly rxRingIds: readonly number[];
  readonly waitFd: number;
  private readonly pipe: NativePipe;
  private readonly spec: string;
  protected readonly csb: CsbView;
  private peerSeen = false;
  private closed = false;

  private constructor(pipe: NativePipe, spec: string, end: number, rings: number, ringId: number | undefined) {
    super();
    this.pipe = pipe;
    this.spec = spec;
    const mem = pipe.memory;
    if (!mem) throw new Error(`pipe ${spec}: region not mapped`);
    this.memory = mem;
    this.nifpOffset = pipe.nifpOffset;
    this.waitFd = pipe.doorbellFd;
    const all = Array.from({ length: rings }, (_, i) => i);
    if (ringId !== undefined) {
      if (ringId >= rings) {
        pipe.close();
        throw new RangeError(`${spec}: ring ${ringId} does not exist (the pipe has ${rings} ring pair${rings === 1 ? '' : 's'})`);
      }
      this.txRingIds = [ringId];
      this.rxRingIds = [ringId];
    } else {
      this.txRingIds = all;
      this.rxRingIds = all;
    }
    this.csb = new CsbView(mem, end);
    this.peerSeen = pipe.peerState() === native.Pipe.peerStates.open;
  }

  /** Open (creating or attaching to) the pipe end `p` names. */
  static open(p: ParsedPortName, opts: PipeOptions = {}): PipeBackend {
    if (!p.pipe) throw new Error(`${p.spec} is not a pipe name`);
    const conf = p.conf;
    const rings = opts.rings ?? conf.rings ?? conf.txRings ?? conf.rxRings ?? 1;
    const slots = opts.slots ?? conf.slots ?? conf.txSlots ?? conf.rxSlots ?? pipeDefaultSlots(opts.bufSize);
    const params: PipeOptions = { rings, slots };
    if (opts.bufSize !== undefined) params.bufSize = opts.bufSize;
    if (opts.extraBufs !== undefined) params.extraBufs = opts.extraBufs;
    const end = p.pipe.role === 'master' ? 0 : 1;
    let np: NativePipe;
    try {
      np = new native.Pipe(pipePath(p), end, params, p.nrName);
    } catch (e) {
      throw decorate(e, `pipe backend: cannot open ${p.spec}`);
    }
    // the creator decided the ring count; read it back from the region
    const dv = new DataView(np.memory!);
    const nifp = np.nifpOffset;
    const txRings = dv.getUint32(nifp + NIF.ni_tx_rings, true);
    return new PipeBackend(np, p.spec, end, txRings, p.mode === 'one_nic' ? p.ringId : undefined);
  }

  txsync(ring: number): void {
    if (this.pipe.txsync(ring) < 0) throw new Error(`${this.spec}: tx ring ${ring} changed under the sync (another process wrote it)`);
  }

  rxsync(ring: number): void {
    if (this.pipe.rxsync(ring) < 0) throw new Error(`${this.spec}: rx ring ${ring} changed under the sync (another process wrote it)`);
  }

  /** Peer state: 'open', 'closed' (never came, or closed cleanly) or 'dead'. */
  peerState(): 'open' | 'closed' | 'dead' {
    const s = this.pipe.peerState();
    const { never, open, left } = native.Pipe.peerStates;
    // left: came and closed, a hang-up even if this end never saw it open
    if (s === open || s === left) this.peerSeen = true;
    return s === open ? 'open' : s === never || s === left ? 'closed' : 'dead';
  }

  hungUp(): boolean {
    const s = this.peerState();
    return this.peerSeen && s !== 'open';
  }

  /** Counters of this end (frames pushed, invalid slots dropped, peer errors). */
  stats(): { txFrames: number; invalidSlots: number; peerErrors: number } & Record<string, number> {
    return this.pipe.stats();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.pipe.close();
  }
}

function decorate(e: unknown, prefix: string): Error {
  if (e instanceof Error) {
    e.message = `${prefix}: ${e.message}`;
    return e;
  }
  return new Error(`${prefix}: ${String(e)}`);
}
