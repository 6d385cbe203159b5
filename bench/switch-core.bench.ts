/**
 * The switch core's CPU cost per frame, in one process and one thread, so
 * scheduling noise (other processes, other cores) stays out of it, timed
 * in CPU time of this process (user + system) rather than wall time: a client
 * queues a batch on its tx ring, the switch runs one round (Switch.pump, the
 * native round with its lookup), the receiving client releases what arrived;
 * repeat. Same run, same traffic (1->1, 60 B, learned unicast), varied:
 *   - the decision: TypeScript learning bridge vs C++ learning bridge on the
 *     same core (what the TypeScript decision costs; target <= 15%);
 *   - ports attached: 2, 16, 64 (the extra ones idle; target: 64 within 10%
 *     of 2);
 *   - header bytes the switch snapshots for the lookup: 14 vs 128 (default)
 *     vs 2048 (the cost of deciding on bytes the client can no longer change).
 *   node dist/bench/switch-core.bench.js [--frames N] [--ports-only] [--flood-only] [--len N]
 *     [--copy-only [--lib PATH] [--header N]]
 * --len sets every frame's length (default 60); --copy-only measures only
 * 1->1 and 1->flood, with the options an older tree has too, and --lib runs
 * them on another build's library (its dist/src/index.js), for A/B of the
 * copy path against, e.g., the first release in the same sitting; --header
 * sets the snapshot size (this tree only).
 * The port counts are measured alternated with 2 ports (2, 16, 64, 2, 16,
 * 64, ...), best of each, so a change in the machine's load hits them alike;
 * then what one idle port adds to a round that finds nothing (the scan's
 * own cost, without the frames' work around it).
 * Per frame: slot validation, the header snapshot, the lookup, one copy into
 * the rx ring; per round (512 frames): one native call, one lookup call, one
 * publish per touched ring; the client side: a head store and a sync per batch.
 */
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as thisLib from '../src/index.js';
import type { Port, SwitchOptions, Switch } from '../src/index.js';

/** The library under test: this tree's, or another build's (--lib, for A/B against an older tree). */
let lib: Pick<typeof thisLib, 'Switch' | 'ValeServer' | 'open'> = thisLib;
/** Frame length of every measured frame (--len). */
let LEN = 60;

const A = [2, 0, 0, 0, 0, 0x0a];
const B = [2, 0, 0, 0, 0, 0x0b];
let uniq = 0;
const ROUNDS = 5;

/** A switch with a served pair a -> b and `idle` persistent idle ports, for `fn`; closed after. */
async function withPair<T>(opts: SwitchOptions, idle: number, fn: (sw: Switch, tx: Port, rx: Port) => T | Promise<T>): Promise<T> {
  const sw = new lib.Switch('vale0', { ...opts, busyPollUs: 0 });
  const socket = path.join(os.tmpdir(), `vtcore-${process.pid}-${uniq++}.sock`);
  const srv = await lib.ValeServer.listen({ socket, switches: [sw] });
  const tx = await lib.open('vale0:a', { socket });
  const rx = await lib.open('vale0:b', { socket });
  for (let i = 0; i < idle; i++) sw.addPort(`vale0:idle${i}`, {}, { persistent: true });
  try {
    return await fn(sw, tx, rx);
  } finally {
    tx.close();
    rx.close();
    srv.close();
    sw.close();
  }
}

/**
 * `rounds` timed runs of `frames` frames in 512-frame batches: the sender
 * queues a batch, one Switch.pump, every receiver releases what it got.
 * The best run's CPU ns per sent frame: CPU time, not wall time (on a shared
 * machine the process is often descheduled, and that is not the switch's cost).
 */
function timedRounds(sw: Switch, tx: Port, receivers: { be: Port['backendObject']; ring: Port['rxRings'][number] }[], frames: number, rounds: number): number {
  const tr = tx.txRings[0]!;
  const txBe = tx.backendObject;
  const batch = 512;
  let best = Infinity;
  for (let r = 0; r < rounds; r++) {
    const c0 = process.cpuUsage();
    for (let sent = 0; sent < frames; sent += batch) {
      tr.advance(batch);
      txBe.txsync(0);
      sw.pump();
      for (const x of receivers) {
        x.be.rxsync(0);
        x.ring.advance(x.ring.space());
        x.be.rxsync(0);
      }
    }
    const c = process.cpuUsage(c0);
    best = Math.min(best, ((c.user + c.system) * 1000) / frames);
  }
  return best;
}

async function measure(frames: number, opts: SwitchOptions, idle: number, rounds = 3): Promise<number> {
  return withPair(opts, idle, (sw, tx, rx) => {
    // b announces itself so a->b is learned unicast
    const hello = new Uint8Array(60);
    hello.set([...A, ...B, 0x88, 0xb5]);
    rx.inject(hello);
    rx.txsync();
    sw.pump();
    const tr = tx.txRings[0]!;
    const rr = rx.rxRings[0]!;
    for (let i = 0; i < tr.numSlots; i++) {
      const o = tr.bufOffset(i);
      tr.bytes.set([...B, ...A, 0x88, 0xb5], o);
      tr.setLen(i, LEN);
    }
    const best = timedRounds(sw, tx, [{ be: rx.backendObject, ring: rr }], frames, rounds);
    const c = sw.counters(sw.port('vale0:b')!.index);
    if (c['txFrames']! < frames * rounds) throw new Error(`only ${c['txFrames']} of ${frames * rounds} frames delivered: ${JSON.stringify(c)}`);
    return best;
  });
}

/**
 * 1 -> flood: a broadcast from a to b, c and d (all learned, all draining),
 * CPU ns per flooded frame (three copies each), same loop as measure().
 */
async function measureFlood(frames: number, opts: SwitchOptions, rounds = 1): Promise<number> {
  const sw = new lib.Switch('vale0', { ...opts, busyPollUs: 0 });
  const socket = path.join(os.tmpdir(), `vtcore-${process.pid}-${uniq++}.sock`);
  const srv = await lib.ValeServer.listen({ socket, switches: [sw] });
  const tx = await lib.open('vale0:a', { socket });
  const rxs = [await lib.open('vale0:b', { socket }), await lib.open('vale0:c', { socket }), await lib.open('vale0:d', { socket })];
  try {
    const tr = tx.txRings[0]!;
    for (let i = 0; i < tr.numSlots; i++) {
      tr.bytes.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, ...A, 0x88, 0xb5], tr.bufOffset(i));
      tr.setLen(i, LEN);
    }
    const best = timedRounds(sw, tx, rxs.map((p) => ({ be: p.backendObject, ring: p.rxRings[0]! })), frames, rounds);
    const c = sw.counters(sw.port('vale0:d')!.index);
    if (c['txFrames']! < frames * rounds) throw new Error(`only ${c['txFrames']} of ${frames * rounds} flood copies delivered to d: ${JSON.stringify(c)}`);
    return best;
  } finally {
    tx.close();
    for (const p of rxs) p.close();
    srv.close();
    sw.close();
  }
}

/**
 * What one idle port adds to a round: the 10th percentile of Switch.pump's
 * time over rounds that find nothing (2 ports vs 2 + idle), alternated. A low
 * percentile of many short calls survives a loaded machine where a total
 * over a long run does not (preempted calls land in the upper tail).
 */
async function idleRound(idle: number, pumps = 20000): Promise<number> {
  return withPair({}, idle, (sw) => {
    const t = new Float64Array(pumps);
    for (let i = 0; i < pumps; i++) {
      const t0 = process.hrtime.bigint();
      sw.pump();
      t[i] = Number(process.hrtime.bigint() - t0);
    }
    t.sort();
    return t[Math.floor(pumps / 10)]!;
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      frames: { type: 'string' },
      'ports-only': { type: 'boolean' },
      'flood-only': { type: 'boolean' },
      'copy-only': { type: 'boolean' },
      len: { type: 'string' },
      lib: { type: 'string' },
      header: { type: 'string' },
    },
  });
  const frames = Number(values.frames ?? 2_000_000);
  const portsOnly = values['ports-only'] === true;
  LEN = Number(values.len ?? 60);
  if (!(LEN >= 60 && LEN <= 1514)) throw new Error(`--len ${values.len}: 60..1514`);
  if (values.lib !== undefined) lib = (await import(path.resolve(values.lib))) as typeof lib;
  if (values['copy-only'] === true) {
    // 1->1 and 1->flood, LEN bytes, the default options only (what an older
    // tree has too): for A/B of the copy path against another build (--lib)
    const o: SwitchOptions = values.header !== undefined ? { headerBytes: Number(values.header) } : {};
    let one = Infinity;
    let fl = Infinity;
    for (let r = 0; r < ROUNDS; r++) {
      one = Math.min(one, await measure(frames, o, 0, 1));
      fl = Math.min(fl, await measureFlood(frames, o));
    }
    console.log(`copy       ${LEN} B${values.header !== undefined ? `, headerBytes ${values.header}` : ''}: 1->1 ${one.toFixed(1)} ns per frame, 1->flood(4 ports) ${fl.toFixed(1)} ns per flooded frame (3 copies); load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
    return;
  }
  if (values['flood-only'] === true) {
    let fb = Infinity;
    let f0 = Infinity;
    for (let r = 0; r < ROUNDS; r++) {
      fb = Math.min(fb, await measureFlood(frames, {}));
      f0 = Math.min(f0, await measureFlood(frames, { holdUs: 0 }));
    }
    console.log(`flood      1->flood(4 ports): ${fb.toFixed(1)} ns per flooded frame (3 copies), holdUs 0: ${f0.toFixed(1)} ns; load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
    return;
  }
  console.log(`switch core, one thread: CPU ns per frame (best of ${ROUNDS} alternated runs x ${frames} frames), 1->1, ${LEN} B; load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  // TypeScript and C++ alternated, so a change in the machine's load hits both
  let ts = Infinity;
  let cxx = Infinity;
  for (let r = 0; r < ROUNDS && !portsOnly; r++) {
    ts = Math.min(ts, await measure(frames, {}, 0, 1));
    cxx = Math.min(cxx, await measure(frames, { nativeBridge: true }, 0, 1));
  }
  if (!portsOnly)
    console.log(`decision   TypeScript learning bridge ${ts.toFixed(1)} ns   C++ learning bridge ${cxx.toFixed(1)} ns   TS decision costs ${(100 * (1 - cxx / ts)).toFixed(1)}% of throughput (target <= 15%)`);
  // 2 ports and the idle-port rows alternated, for the same reason
  const idles = [14, 62];
  let p2 = Infinity;
  const best = idles.map(() => Infinity);
  for (let r = 0; r < ROUNDS; r++) {
    p2 = Math.min(p2, await measure(frames, {}, 0, 1));
    for (const [i, idle] of idles.entries()) best[i] = Math.min(best[i]!, await measure(frames, {}, idle, 1));
  }
  console.log(`ports      2 attached: ${p2.toFixed(1)} ns`);
  for (const [i, idle] of idles.entries()) {
    const v = best[i]!;
    console.log(`ports      ${idle + 2} attached (${idle} idle): ${v.toFixed(1)} ns   ${(v / p2).toFixed(3)} of 2 ports (target <= 1.10)`);
  }
  let r2 = Infinity;
  let r64 = Infinity;
  for (let r = 0; r < ROUNDS; r++) {
    r2 = Math.min(r2, await idleRound(0));
    r64 = Math.min(r64, await idleRound(62));
  }
  console.log(`ports      a round that finds nothing (p10 of 20000 pumps, best of ${ROUNDS}): 2 ports ${r2.toFixed(0)} ns, 64 ports ${r64.toFixed(0)} ns: ${((r64 - r2) / 62).toFixed(1)} ns per idle port per round`);
  if (portsOnly) return;
  // the flood with bounded backpressure (the default) and without (holdUs 0,
  // netmap VALE's drop-at-once), alternated
  let fb = Infinity;
  let f0 = Infinity;
  for (let r = 0; r < ROUNDS; r++) {
    fb = Math.min(fb, await measureFlood(frames, {}));
    f0 = Math.min(f0, await measureFlood(frames, { holdUs: 0 }));
  }
  console.log(`flood      1->flood(4 ports): ${fb.toFixed(1)} ns per flooded frame (3 copies), holdUs 0: ${f0.toFixed(1)} ns   bounded backpressure costs ${(100 * (fb / f0 - 1)).toFixed(1)}%`);
  for (const h of [14, 2048]) {
    const v = await measure(frames, { headerBytes: h }, 0);
    console.log(`snapshot   headerBytes ${String(h).padEnd(4)} ${v.toFixed(1)} ns   default (128) is ${(ts / v).toFixed(3)} of it`);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
