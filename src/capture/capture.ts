/**
 * Capturing from open ports into a pcapng stream: each rx ring of a port is
 * one pcapng interface (a monitor `vale0:01/rt` has two: what port 01
 * received and what it sent), frames are filtered per batch natively
 * ({@link CaptureFilter}) and written as they come. A consumer that reads
 * slowly (a pipe into tcpdump) is waited for: the capture stops taking
 * frames, its rings fill, and the switch counts what it could not copy
 * (the monitor's dropMonitor), never slowing the port watched. A
 * multi-slot frame (an NS_MOREFRAG chain) is filtered and written as one
 * packet.
 *
 * @module
 */
import type { Port } from '../netmap/port.js';
import { SwitchGoneError } from '../netmap/errors.js';
import type { CaptureFilter } from './filter.js';
import type { PcapngWriter } from './pcapng.js';

/** One rx ring of a port and the pcapng interface its frames are written under. */
export interface CaptureRing {
  ring: number;
  /** interface name, e.g. `vale0:01/rx` */
  name: string;
  /** direction as the watched port sees it: in (it received), out (it sent) */
  direction: 'in' | 'out';
}

/** A port to read and how its rings map to interfaces. */
export interface CaptureSource {
  port: Port;
  /** every rx ring of the port, each once ({@link monitorRings} for a monitor) */
  rings: readonly CaptureRing[];
}

/** Options of {@link capture}. */
export interface CaptureOptions {
  filter?: CaptureFilter;
  /** stop after writing this many frames */
  count?: number;
  /** stop when aborted (Ctrl-C) */
  signal?: AbortSignal;
  /** resolves when the writer's sink has drained (called after a write returned false; not waited for once the capture stops) */
  drained?: () => Promise<void>;
  /** now, in ns since the Unix epoch (tests inject one) */
  clockNs?: () => bigint;
}

/** What a capture did. */
export interface CaptureResult {
  /** frames taken from the rings */
  seen: number;
  /** frames written */
  written: number;
  /** frames the filter rejected */
  filtered: number;
  /** why the capture ended early: a source's port hung up (the port it watches went away, or the switch) */
  hungUp?: string;
}

/** Ring interfaces of a monitor opened as `port/r`, `/t` or `/rt`: rx ring 0 is what it received, the next what it sent. */
export function monitorRings(port: string, rx: boolean, tx: boolean): CaptureRing[] {
  const out: CaptureRing[] = [];
  if (rx) out.push({ ring: out.length, name: `${port}/rx`, direction: 'in' });
  if (tx) out.push({ ring: out.length, name: `${port}/tx`, direction: 'out' });
  return out;
}

/** Wall-clock ns, monotonic within the process. */
function defaultClock(): () => bigint {
  const base = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();
  return () => base + process.hrtime.bigint();
}

const MAX_BATCH = 4096;
/** How often an idle capture checks whether it was stopped (ms). */
const STOP_CHECK_MS = 200;

/**
 * Read every source until `count` frames are written, the signal aborts or
 * a port hangs up, writing pcapng as frames arrive. Declares one interface
 * per source ring on `writer` first.
 */
export async function capture(sources: readonly CaptureSource[], writer: PcapngWriter, opts: CaptureOptions = {}): Promise<CaptureResult> {
  const res: CaptureResult = { seen: 0, written: 0, filtered: 0 };
  const clock = opts.clockNs ?? defaultClock();
  const limit = opts.count ?? Infinity;
  for (const s of sources) {
    // every rx ring is read (a ring left out would keep poll() waking for frames nobody takes)
    const listed = new Set(s.rings.map((r) => r.ring));
    const n = s.port.rxRings.length;
    if (n === 0 || listed.size !== s.rings.length || listed.size !== n || ![...listed].every((r) => Number.isInteger(r) && r >= 0 && r < n)) {
      throw new RangeError(`capture: ${s.port.name} has ${n} rx rings: list each once (0..${n - 1})`);
    }
  }
  const ifIds = sources.map((s) => s.rings.map((r) => writer.addInterface(r.name, { direction: r.direction }).id));
  const offsets = new Uint32Array(MAX_BATCH);
  const lens = new Uint32Array(MAX_BATCH);
  const keep = new Uint8Array(MAX_BATCH);
  const iface = new Uint32Array(MAX_BATCH);
  /** frames of the batch that are copies (by position), not views of the port's memory */
  const copies = new Map<number, Uint8Array>();
  let stop = false;
  // a source waiting for a sink that never drains (a reader that never reads) still stops
  let wakeStopped: () => void = () => {};
  const stopped = new Promise<void>((r) => (wakeStopped = r));
  const done = (): boolean => stop || res.written >= limit || (opts.signal?.aborted ?? false);

  const one = async (src: CaptureSource, ids: number[]): Promise<void> => {
    const port = src.port;
    const mem = port.rxRings[0]!.bytes;
    // the interface of each rx ring's frames, by the ring's index as dispatch() names it
    const ifOf = new Map<number, number>();
    src.rings.forEach((r, k) => ifOf.set(port.rxRings[r.ring]!.index, ids[k]!));
    while (!done()) {
      let ev: { hup: boolean };
      try {
        ev = await port.poll({ rx: true, timeoutMs: STOP_CHECK_MS });
      } catch (e) {
        // the switch hung up on the monitor (its port went, or the switch): what was written stays
        if (!(e instanceof SwitchGoneError)) throw e;
        res.hungUp ??= e.message;
        ev = { hup: true };
      }
      if (ev.hup) {
        res.hungUp ??= `${port.name}: hung up`;
        stop = true;
        wakeStopped();
        return;
      }
      port.rxsync();
      // Frames, not slots: a multi-slot frame (an NS_MOREFRAG chain, a jumbo
      // or GSO frame) is one packet, as dispatch() joins it. Cut into slots,
      // its tail would be written (and filtered) as frames of their own,
      // which a sender can lay out to forge any frame in the capture.
      let n = 0;
      copies.clear();
      port.dispatch(MAX_BATCH, (frame, ring) => {
        iface[n] = ifOf.get(ring)!;
        if (frame.buffer === mem.buffer) {
          offsets[n] = frame.byteOffset - mem.byteOffset;
          lens[n] = frame.length;
        } else {
          // a chain whose buffers are not one span: dispatch's copy is reused, keep one
          copies.set(n, frame.slice());
          offsets[n] = lens[n] = 0;
        }
        n++;
      });
      if (n === 0) continue;
      const ts = clock();
      res.seen += n;
      if (opts.filter) {
        let kept = opts.filter.matchBatch(mem, offsets, lens, n, keep);
        for (const [i, f] of copies) {
          kept -= keep[i]!;
          keep[i] = opts.filter.match(f) ? 1 : 0;
          kept += keep[i]!;
        }
        res.filtered += n - kept;
      }
      let writable = true;
      for (let i = 0; i < n && res.written < limit; i++) {
        if (opts.filter && !keep[i]) continue;
        const o = offsets[i]!;
        writable = writer.writePacket(iface[i]!, ts, copies.get(i) ?? mem.subarray(o, o + lens[i]!)) && writable;
        res.written++;
      }
      // the slots go back to the switch only now: the bytes were copied out
      port.rxsync();
      if (!writable && opts.drained && !done()) await Promise.race([opts.drained(), stopped]);
    }
  };
  const abort = (): void => {
    stop = true;
    wakeStopped();
  };
  opts.signal?.addEventListener('abort', abort, { once: true });
  try {
    await Promise.all(sources.map((s, i) => one(s, ifIds[i]!)));
  } finally {
    opts.signal?.removeEventListener('abort', abort);
  }
  return res;
}
