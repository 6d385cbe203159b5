/**
 * Monitor benchmark: the rate of a port (60-byte frames a -> b through
 * vale-ts, the receiver's count) with no monitor open, with a `vale0:b/rt`
 * monitor open and drained by another process, and with no monitor again
 * after that one closed, alternating in one run (best of the rounds). The
 * first and last rows are the "costs nothing while nobody watches" check:
 * an unwatched port pays one branch per frame on a per-port flag.
 *   node dist/bench/monitor.bench.js [--seconds S] [--rounds N]
 */
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { child, peerJs, startSwitch, aggregateMpps } from './lib.js';

const A = '02000000000a';
const B = '02000000000b';

async function round(socket: string, ms: number, monitor: boolean): Promise<{ port: number; monitorFrames: number; portFrames: number }> {
  const env = { VALE_TS_SOCKET: socket };
  const rx = child([peerJs, 'rx', 'vale0:b', '400', B], env);
  // the watched port must exist before its monitor opens
  await new Promise((r) => setTimeout(r, 500));
  const mon = monitor ? child([peerJs, 'rx', 'vale0:b/rt', '400'], env) : undefined;
  await new Promise((r) => setTimeout(r, 500));
  const tx = child([peerJs, 'tx', 'vale0:a', A, B, '60', String(ms)], env);
  await tx.out;
  const r = await rx.out;
  const m = mon ? await mon.out : undefined;
  return { port: aggregateMpps([r]), monitorFrames: m?.['received'] ?? 0, portFrames: r['received'] ?? 0 };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: 'string' }, rounds: { type: 'string' } } });
  const ms = Number(values.seconds ?? 2) * 1000;
  const rounds = Number(values.rounds ?? 3);
  const { proc, socket } = await startSwitch();
  try {
    const best = { none: 0, rt: 0, after: 0 };
    let copies = '';
    for (let i = 0; i < rounds; i++) {
      best.none = Math.max(best.none, (await round(socket, ms, false)).port);
      const w = await round(socket, ms, true);
      best.rt = Math.max(best.rt, w.port);
      copies = `${w.monitorFrames} copies read of ${w.portFrames} frames received (both directions: b sends nothing here)`;
      best.after = Math.max(best.after, (await round(socket, ms, false)).port);
    }
    console.log(`monitor benchmark: 60 B a -> b through vale-ts, ${ms / 1000} s per round, best of ${rounds} rounds`);
    console.log(`  no monitor open             ${best.none.toFixed(2)} Mpps`);
    console.log(`  vale0:b/rt open, drained    ${best.rt.toFixed(2)} Mpps   ratio ${(best.rt / best.none).toFixed(2)}   (last round: ${copies})`);
    console.log(`  no monitor (after closing)  ${best.after.toFixed(2)} Mpps   ratio ${(best.after / best.none).toFixed(2)}`);
    console.log(`  ${execFileSync('uptime', { encoding: 'utf8' }).trim()}`);
  } finally {
    proc.kill('SIGTERM');
  }
}

await main();
