/**
 * Capturing from open ports into a pcapng stream: each rx ring of a port is
 * one pcapng interface (a monitor `vale0:01/rt` has two: what port 01
 * received and what it sent), frames are filtered per batch natively
 * ({@link CaptureFilter}) and written as they come. A consumer that reads
 * slowly (a pipe into tcpdump) is waited for: the capture stops taking
 * frames, its rings fill, and the switch counts what it could not copy
 * (the monitor's dropMonitor), never slowing the port watched.
 *
 * @module
 */
import type { Port } from '../netmap/port.js';
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
  rings: readonly CaptureRing[];
}

/** Options of {@link capture}. */
export interface CaptureOptions {
  filter?: CaptureFilter;
  /** stop after writing this many frames */
  count?: number;
  /** stop when aborted (Ctrl-C) */
  signal?: AbortSignal;
  /** resolves when the writer's sink has drained (called after a write returned false) */
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
  const ifIds = sources.map((s) => s.rings.map((r) => writer.addInterface(r.name, { direction: r.direction }).id));
  const offsets = new Uint32Array(MAX_BATCH);
  const lens = new Uint32Array(MAX_BATCH);
  const keep = new Uint8Array(MAX_BATCH);
  let stop = false;
  const done = (): boolean => stop || res.written >= limit || (opts.signal?.aborted ?? false);

  const one = async (src: CaptureSource, ids: number[]): Promise<void> => {
    const port = src.port;
    while (!done()) {
      const ev = await port.poll({ rx: true, timeoutMs: STOP_CHECK_MS });
      if (ev.hup) {
        stop = true;
        return;
      }
      port.rxsync();
      for (let k = 0; k < src.rings.length && !done(); k++) {
        const ring = port.rxRings[src.rings[k]!.ring];
        if (!ring) continue;
        const n = Math.min(ring.space(), MAX_BATCH);
        if (n === 0) continue;
        const ts = clock();
        let slot = ring.head;
        for (let i = 0; i < n; i++, slot = ring.next(slot)) {
          offsets[i] = ring.bufOffset(slot);
          lens[i] = ring.len(slot);
        }
        res.seen += n;
        if (opts.filter) res.filtered += n - opts.filter.matchBatch(ring.bytes, offsets, lens, n, keep);
        let writable = true;
        for (let i = 0; i < n && res.written < limit; i++) {
          if (opts.filter && !keep[i]) continue;
          const o = offsets[i]!;
          writable = writer.writePacket(ids[k]!, ts, ring.bytes.subarray(o, o + lens[i]!)) && writable;
          res.written++;
        }
        // the slots go back to the switch only now: the bytes were copied out
        ring.advance(n);
        port.rxsync();
        if (!writable && opts.drained) await opts.drained();
      }
    }
  };
  const abort = (): void => {
    stop = true;
  };
  opts.signal?.addEventListener('abort', abort, { once: true });
  try {
    await Promise.all(sources.map((s, i) => one(s, ifIds[i]!)));
  } finally {
    opts.signal?.removeEventListener('abort', abort);
  }
  return res;
}
