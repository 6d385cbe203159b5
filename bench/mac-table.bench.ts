/**
 * Micro benchmark of the switch's per-batch decision loop.
 *
 *   node dist/bench/mac-table.bench.js [--hosts N] [--ports N] [--batches N] [--stride BYTES] [--quick]
 *
 * Frames sit in one Uint8Array "region" at 2 KiB strides (like netmap buffers);
 * each benchmark op decides one batch of 512 frames from one source port.
 * Compared: the LearningBridge (open-addressing typed-array MAC table and
 * last-source cache) and a baseline loop of the same shape whose table is a
 * `Map<number, number>` keyed by the 48-bit MAC as a number.
 *
 * Scenarios:
 *   random  - src and dst drawn at random among all hosts (all learned);
 *             the last-source cache almost never hits.
 *   one-mac - every source port sends from one MAC only (a VM behind its port),
 *             dsts random among all hosts;
 *             the last-source cache hits for all but the first frame.
 */
import Benchmark from 'benchmark';
import { DEST_DROP, DEST_FLOOD, DEST_SAME_PORT, LearningBridge, type BatchLookup } from '../src/index.js';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
}

const BATCH = 512;
// Distinct batches cycled through, so branch patterns do not repeat. 16 batches at a
// 2 KiB stride is 16 MiB of frames, the buffer pools of 8 ports with 1024-slot rings:
// headers are mostly not in L1/L2, as in a running switch.
const BATCHES = arg('--batches', 16);
const STRIDE = arg('--stride', 2048);
const FRAME_LEN = 60;

const HOSTS = arg('--hosts', 1000);
const PORTS = arg('--ports', 8);
const QUICK = process.argv.includes('--quick');

let seed = 0x9e3779b9;
function rand(): number {
  seed ^= seed << 13;
  seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  seed >>>= 0;
  return seed;
}

interface Batch {
  /** the source port of every frame (one port per batch here) */
  srcPorts: Uint8Array;
  offsets: Uint32Array;
  lens: Uint16Array;
}

interface Workload {
  region: Uint8Array;
  batches: Batch[];
  /** Frames that teach every host's location (one per host, from its port). */
  warm: Batch[];
}

/** Host h: MAC 02:00:hh:hh:hh:hh-ish (locally administered unicast), on port portOf(h). */
function hostMac(h: number): [number, number] {
  return [0x0200 | ((h * 0x3b) & 0xfc), (Math.imul(h + 1, 0x01000193) ^ 0x5a5a0000) >>> 0];
}

function writeFrame(region: Uint8Array, off: number, dst: number, src: number): void {
  const [dh, dl] = hostMac(dst);
  const [sh, sl] = hostMac(src);
  region[off] = dh >>> 8;
  region[off + 1] = dh & 0xff;
  region[off + 2] = dl >>> 24;
  region[off + 3] = (dl >>> 16) & 0xff;
  region[off + 4] = (dl >>> 8) & 0xff;
  region[off + 5] = dl & 0xff;
  region[off + 6] = sh >>> 8;
  region[off + 7] = sh & 0xff;
  region[off + 8] = sl >>> 24;
  region[off + 9] = (sl >>> 16) & 0xff;
  region[off + 10] = (sl >>> 8) & 0xff;
  region[off + 11] = sl & 0xff;
  region[off + 12] = 0x08;
  region[off + 13] = 0x00;
}

function makeWorkload(hosts: number, ports: number, oneMacPerPort: boolean): Workload {
  const portOf = (h: number) => h % ports;
  const byPort: number[][] = Array.from({ length: ports }, () => []);
  for (let h = 0; h < hosts; h++) byPort[portOf(h)]!.push(h);
  const warmFrames = hosts;
  const region = new Uint8Array((BATCHES * BATCH + warmFrames) * STRIDE);
  const batches: Batch[] = [];
  let slot = 0;
  for (let b = 0; b < BATCHES; b++) {
    const srcPort = b % ports;
    const offsets = new Uint32Array(BATCH);
    const lens = new Uint16Array(BATCH).fill(FRAME_LEN);
    const mine = byPort[srcPort]!;
    for (let i = 0; i < BATCH; i++) {
      const src = oneMacPerPort ? mine[0]! : mine[rand() % mine.length]!;
      const dst = rand() % hosts;
      const off = slot++ * STRIDE;
      writeFrame(region, off, dst, src);
      offsets[i] = off;
    }
    batches.push({ srcPorts: new Uint8Array(offsets.length).fill(srcPort), offsets, lens });
  }
  const warm: Batch[] = [];
  for (let p = 0; p < ports; p++) {
    const mine = byPort[p]!;
    const offsets = new Uint32Array(mine.length);
    mine.forEach((h, i) => {
      const off = slot++ * STRIDE;
      writeFrame(region, off, 0, h);
      region[off] = 0xff; // broadcast dst: just teach the source
      offsets[i] = off;
    });
    warm.push({ srcPorts: new Uint8Array(mine.length).fill(p), offsets, lens: new Uint16Array(mine.length).fill(FRAME_LEN) });
  }
  return { region, batches, warm };
}

/** The baseline: the same decision loop over a Map<number, number> (no aging, no cache). */
function mapBridge(): BatchLookup {
  const table = new Map<number, number>();
  return (buf, offsets, lens, count, srcPorts, dests) => {
    for (let i = 0; i < count; i++) {
      const srcPort = srcPorts[i]!;
      if (lens[i]! < 14) {
        dests[i] = DEST_DROP;
        continue;
      }
      const o = offsets[i]!;
      if ((buf[o + 6]! & 1) === 0) {
        const src =
          ((buf[o + 6]! << 8) | buf[o + 7]!) * 0x1_0000_0000 +
          (((buf[o + 8]! << 24) | (buf[o + 9]! << 16) | (buf[o + 10]! << 8) | buf[o + 11]!) >>> 0);
        table.set(src, srcPort);
      }
      if ((buf[o]! & 1) !== 0) {
        dests[i] = DEST_FLOOD;
        continue;
      }
      const dst =
        ((buf[o]! << 8) | buf[o + 1]!) * 0x1_0000_0000 +
        (((buf[o + 2]! << 24) | (buf[o + 3]! << 16) | (buf[o + 4]! << 8) | buf[o + 5]!) >>> 0);
      const port = table.get(dst);
      dests[i] = port === undefined ? DEST_FLOOD : port === srcPort ? DEST_SAME_PORT : port;
    }
  };
}

/** Runs `fn` over the workload's batches round-robin; returns a benchmark body. */
function driver(w: Workload, fn: BatchLookup): { run: () => void; check: () => number[] } {
  const dests = new Int16Array(BATCH);
  for (const b of w.warm) fn(w.region, b.offsets, b.lens, b.offsets.length, b.srcPorts, new Int16Array(b.offsets.length));
  let k = 0;
  return {
    run: () => {
      const b = w.batches[k]!;
      if (++k === BATCHES) k = 0;
      fn(w.region, b.offsets, b.lens, BATCH, b.srcPorts, dests);
    },
    /** Destinations of every batch, to prove both loops decide the same. */
    check: () => {
      const all: number[] = [];
      for (const b of w.batches) {
        fn(w.region, b.offsets, b.lens, BATCH, b.srcPorts, dests);
        all.push(...dests);
      }
      return all;
    },
  };
}

function runScenario(name: string, w: Workload): Promise<Record<string, number>> {
  const typed = driver(w, new LearningBridge().lookupBatch);
  const map = driver(w, mapBridge());
  const a = typed.check();
  const b = map.check();
  const diff = a.findIndex((x, i) => x !== b[i]);
  if (diff >= 0) throw new Error(`${name}: decisions differ at frame ${diff}: ${a[diff]} vs ${b[diff]}`);
  const floods = a.filter((x) => x === DEST_FLOOD).length;
  if (floods > 0) throw new Error(`${name}: ${floods} floods; every host should be learned`);

  const results: Record<string, number> = {};
  const opts: Benchmark.Options = QUICK ? { maxTime: 1, minSamples: 5 } : { maxTime: 4, minSamples: 20 };
  return new Promise((resolve) => {
    new Benchmark.Suite(name)
      .add(`${name} LearningBridge (typed-array table)`, typed.run, opts)
      .add(`${name} Map<number, number>`, map.run, opts)
      .on('cycle', (ev: Benchmark.Event) => {
        const t = ev.target as unknown as Benchmark;
        const mpps = ((t.hz ?? 0) * BATCH) / 1e6;
        results[t.name ?? '?'] = mpps;
        const rme = t.stats?.rme ?? 0;
        console.log(`${(t.name ?? '?').padEnd(44)} ${mpps.toFixed(2).padStart(7)} Mpps  ±${rme.toFixed(1)}%  (${t.stats?.sample.length ?? 0} samples)`);
      })
      .on('complete', () => resolve(results))
      .run({ async: false });
  });
}

async function main(): Promise<void> {
  console.log(`MAC decision loop: ${BATCH}-frame batches, ${HOSTS} hosts on ${PORTS} ports, node ${process.version}`);
  const summary: string[] = [];
  for (const [name, oneMac] of [
    ['random', false],
    ['one-mac', true],
  ] as const) {
    const w = makeWorkload(HOSTS, PORTS, oneMac);
    const r = await runScenario(name, w);
    const typed = r[`${name} LearningBridge (typed-array table)`] ?? 0;
    const base = r[`${name} Map<number, number>`] ?? 0;
    summary.push(`${name}: LearningBridge ${typed.toFixed(2)} Mpps, Map ${base.toFixed(2)} Mpps, ratio ${(typed / base).toFixed(2)}x`);
  }
  console.log('---');
  for (const s of summary) console.log(s);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
