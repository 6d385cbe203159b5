/**
 * Scaling: aggregate Mpps as independent sender->receiver pairs are added,
 * (a) all through one vale-ts (one event loop), (b) each pair on its own
 * switch in its own vale-ts process, (c) each pair over its own pipe. Meant
 * for machines with more cores than this project's 2-core CI machine.
 *   node dist/bench/scale.bench.js [--seconds S] [--pairs 1,2,4,6] [--verbose]
 * --verbose: for the one-vale-ts runs, what each pair sent and received and
 * the switch's wakeup/hold counters and moved drop counters.
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { child, peerJs, startSwitch, macN, aggregateMpps, switchLineOf } from './lib.js';

async function throughSwitches(pairs: number, switches: number, ms: number, len: number, verbose = false): Promise<number> {
  const sws = await Promise.all(Array.from({ length: switches }, () => startSwitch()));
  try {
    const rx = [];
    for (let i = 0; i < pairs; i++) {
      const env = { VALE_TS_SOCKET: sws[i % switches]!.socket };
      rx.push(child([peerJs, 'rx', `vale0:r${i}`, '400', macN(2 * i + 1)], env));
    }
    await new Promise((r) => setTimeout(r, 500));
    const tx = [];
    for (let i = 0; i < pairs; i++) {
      const env = { VALE_TS_SOCKET: sws[i % switches]!.socket };
      tx.push(child([peerJs, 'tx', `vale0:t${i}`, macN(2 * i), macN(2 * i + 1), String(len), String(ms)], env));
    }
    const sent = await Promise.all(tx.map((t) => t.out));
    const res = await Promise.all(rx.map((r) => r.out));
    if (verbose) {
      console.log(`  ${pairs} pair(s) on ${switches} vale-ts: sent ${sent.map((x) => x['sent']).join(' ')}  received ${res.map((x) => x['received']).join(' ')}`);
      for (const sw of sws) console.log(`    ${await switchLineOf(sw.socket)}`);
    }
    return aggregateMpps(res);
  } finally {
    for (const s of sws) s.proc.kill('SIGTERM');
  }
}

async function throughPipes(pairs: number, ms: number, len: number): Promise<number> {
  const rx = [];
  const tag = `${process.pid}${Math.random().toString(36).slice(2, 6)}`;
  for (let i = 0; i < pairs; i++) rx.push(child([peerJs, 'rx', `vale0:sc${tag}x${i}}0`, '400'], {}));
  await new Promise((r) => setTimeout(r, 300));
  const tx = [];
  for (let i = 0; i < pairs; i++) tx.push(child([peerJs, 'tx', `vale0:sc${tag}x${i}{0`, macN(0), macN(1), String(len), String(ms)], {}));
  await Promise.all(tx.map((t) => t.out));
  const res = await Promise.all(rx.map((r) => r.out));
  return aggregateMpps(res);
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: 'string' }, pairs: { type: 'string' }, len: { type: 'string' }, verbose: { type: 'boolean' } } });
  const ms = Number(values.seconds ?? 3) * 1000;
  const len = Number(values.len ?? 60);
  const counts = (values.pairs ?? '1,2,4,6').split(',').map(Number);
  console.log(`scaling benchmark on ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), ${len}-byte frames, ${ms / 1000} s per run`);
  console.log('pairs   one vale-ts (Mpps)   one vale-ts per pair (Mpps)   one pipe per pair (Mpps)');
  for (const n of counts) {
    const one = await throughSwitches(n, 1, ms, len, values.verbose ?? false);
    const many = await throughSwitches(n, n, ms, len);
    const pipes = await throughPipes(n, ms, len);
    console.log(`${String(n).padStart(5)}   ${one.toFixed(2).padStart(18)}   ${many.toFixed(2).padStart(27)}   ${pipes.toFixed(2).padStart(24)}`);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
