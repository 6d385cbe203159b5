/**
 * The preload benchmark: netmap's own C pkt-gen, unmodified, under
 * libvale-ts-netmap.so against pkt-gen-ts doing the same job, over the same
 * kind of pipe and through the same vale-ts (a separate process), in one run.
 * Each case swaps one side: the sender (the other side is a pkt-gen-ts rx)
 * or the receiver (the other side is a pkt-gen-ts tx); the rate is the
 * receiver's `Speed:` line. Target: the C program under the preload reaches
 * ≥ 90% of pkt-gen-ts's rate.
 *
 *   node dist/bench/preload.bench.js [--count N] [--rounds R]
 *
 * Needs netmap's source snapshot (the netmap-lab kit: docs/conformance.md),
 * from which pkt-gen is built as the tests build it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { netmapApps, netmapSourceMissing, pktgenTs, preloadEnv, repoRoot, run, type Run } from '../test/fixtures/preload/apps.js';

const { values } = parseArgs({ options: { count: { type: 'string', default: '3000000' }, rounds: { type: 'string', default: '3' } } });
const COUNT = Number(values.count);
const ROUNDS = Number(values.rounds);

/** pps from a pkt-gen `Speed:` line. */
function speed(out: string): number {
  const m = /^Speed: (\d+\.\d+) ([KMGT]?)pps/m.exec(out);
  if (!m) throw new Error(`no Speed line in:\n${out}`);
  return Number(m[1]) * ({ '': 1, K: 1e3, M: 1e6, G: 1e9, T: 1e12 } as Record<string, number>)[m[2]!]!;
}

/** vale-ts as a process of its own, on a private socket. */
async function startSwitch(): Promise<{ proc: ChildProcess; socket: string }> {
  const socket = path.join(os.tmpdir(), `vtpreload-${process.pid}.sock`);
  const proc = spawn(process.execPath, [path.join(repoRoot, 'dist', 'tools', 'vale-ts.js'), '--socket', socket], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    proc.stdout!.on('data', (d: Buffer) => d.toString().includes('listening') && resolve());
    proc.on('exit', (code) => reject(new Error(`vale-ts exited ${code}`)));
  });
  return { proc, socket };
}

let uniq = 0;
type Side = 'ts' | 'c';

/** One transfer: `tx` side sends COUNT frames to the `rx` side; returns the receiver's pps. */
async function transfer(pktgen: string, via: 'pipe' | 'vale', tx: Side, rx: Side, env: Record<string, string>): Promise<number> {
  const name = `vale0:plb${process.pid}x${uniq++}`;
  const [txName, rxName] = via === 'pipe' ? [`${name}{0`, `${name}}0`] : [`${name}a`, `${name}b`];
  // through the switch frames may be dropped: the receiver stops 1 s after the last one
  const rxArgs = ['-i', rxName, '-f', 'rx', ...(via === 'pipe' ? ['-n', String(COUNT)] : ['-W'])];
  const txArgs = ['-i', txName, '-f', 'tx', '-n', String(COUNT)];
  const pre = { ...env, LD_PRELOAD: preloadEnv };
  const start = (side: Side, args: string[]): Run => (side === 'ts' ? pktgenTs(args, env, 600000) : run(pktgen, args, pre, 600000));
  const r = start(rx, rxArgs);
  await r.waitFor(/reading from/);
  const t = start(tx, txArgs);
  const [rt, rr] = await Promise.all([t.done, r.done]);
  if (rt.code !== 0 || rr.code !== 0) throw new Error(`transfer failed:\n${rt.stderr}\n${rr.stderr}`);
  return speed(rr.stdout);
}

async function best(fn: () => Promise<number>): Promise<number> {
  let b = 0;
  for (let i = 0; i < ROUNDS; i++) b = Math.max(b, await fn());
  return b;
}

async function main(): Promise<void> {
  if (netmapSourceMissing) throw new Error(netmapSourceMissing);
  const { pktgen } = await netmapApps();
  const sw = await startSwitch();
  const vale = { VALE_TS_SOCKET: sw.socket };
  console.log(`preload benchmark: C pkt-gen under the preload vs pkt-gen-ts, ${COUNT} 60-byte frames, best of ${ROUNDS} rounds (rate at the receiver)`);
  let worst = Infinity;
  try {
    for (const via of ['pipe', 'vale'] as const) {
      const env = via === 'vale' ? vale : {};
      for (const role of ['tx', 'rx'] as const) {
        // the side under test is `role`; the other side is pkt-gen-ts both times
        const ts = await best(() => transfer(pktgen, via, 'ts', 'ts', env));
        const c = await best(() => (role === 'tx' ? transfer(pktgen, via, 'c', 'ts', env) : transfer(pktgen, via, 'ts', 'c', env)));
        const ratio = c / ts;
        worst = Math.min(worst, ratio);
        const where = via === 'pipe' ? 'pipe   ' : 'vale-ts';
        console.log(`${where} ${role}  pkt-gen-ts ${(ts / 1e6).toFixed(2)} Mpps   C pkt-gen (preload) ${(c / 1e6).toFixed(2)} Mpps   ratio ${ratio.toFixed(2)}`);
      }
    }
  } finally {
    sw.proc.kill('SIGTERM');
  }
  console.log(`worst ratio ${worst.toFixed(2)} (target >= 0.90: ${worst >= 0.9 ? 'met' : 'not met'})`);
}

await main();
