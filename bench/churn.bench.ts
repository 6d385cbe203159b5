/**
 * Memory under on-demand switch churn: vale-ts's resident memory while a
 * client opens a port on one of four on-demand switches (valecN:p) and
 * closes it, over and over, for each datapath in the same run: `thread`
 * (vale-ts's default) and `loop` (the baseline).
 *
 *   node dist/bench/churn.bench.js [--cycles N] [--every K] [--datapath thread,loop]
 *
 * Per cycle vale-ts creates a switch (its core, its port's region; on the
 * thread datapath it hands the switch a pooled thread), adds the port,
 * removes both when the client hangs up, and the client waits until the
 * switch lists no port before the next cycle. Prints VmRSS every K cycles
 * (default 10 000 of 100 000), then per datapath the highest RSS over the
 * last half of the run and its ratio to the baseline's. A leak shows as RSS
 * still climbing in the last half; V8 sizing its heaps as a rise that stops.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { startSwitch } from './lib.js';
import { native } from '../src/netmap/addon.js';
import { ControlConnection, requestOnce } from '../src/control/client.js';
import { PROTOCOL_VERSION } from '../src/control/protocol.js';

/** VmRSS of a process, kB. */
function rssKb(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? NaN);
}

async function portCount(socket: string): Promise<number> {
  const r = await requestOnce(socket, { v: PROTOCOL_VERSION, op: 'list' });
  return r.ok && r.op === 'list' ? r.ports.length : -1;
}

/** One register/close cycle on switch valec{i % 4}. */
async function cycle(socket: string, i: number): Promise<void> {
  const conn = ControlConnection.connect(socket);
  try {
    const { reply, fds } = await conn.request({ v: PROTOCOL_VERSION, op: 'register', nrMode: 1, ringId: 0, flags: 0, conf: {}, name: `valec${i % 4}:p` }, 60_000);
    if (!reply.ok) throw new Error(`register refused: ${reply.error}`);
    for (const f of fds) native.close(f);
  } finally {
    conn.close();
  }
  while ((await portCount(socket)) !== 0) await new Promise((r) => setImmediate(r));
}

/** RSS samples (kB) every `every` cycles of `cycles`, vale-ts on `datapath`. */
async function run(datapath: string, cycles: number, every: number): Promise<number[]> {
  const { proc, socket } = await startSwitch(['--datapath', datapath]);
  const samples: number[] = [];
  try {
    const t0 = performance.now();
    for (let i = 0; i < cycles; i++) {
      await cycle(socket, i);
      if ((i + 1) % every === 0) {
        samples.push(rssKb(proc.pid!));
        console.log(`  ${datapath.padEnd(6)} ${String(i + 1).padStart(7)} cycles  RSS ${(samples.at(-1)! / 1024).toFixed(1)} MB  (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
      }
    }
  } finally {
    proc.kill('SIGTERM');
  }
  return samples;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { cycles: { type: 'string' }, every: { type: 'string' }, datapath: { type: 'string' } } });
  const cycles = Number(values.cycles ?? 100_000);
  const every = Number(values.every ?? 10_000);
  if (!Number.isInteger(cycles) || !Number.isInteger(every) || every < 1 || cycles < every) throw new Error(`--cycles ${values.cycles} --every ${values.every}: give whole numbers, cycles >= every >= 1`);
  const datapaths = (values.datapath ?? 'thread,loop').split(',');
  for (const d of datapaths) if (d !== 'thread' && d !== 'loop') throw new Error(`--datapath ${d}: use thread and/or loop`);
  console.log(`churn: ${cycles} register/close cycles of on-demand switches per datapath, vale-ts RSS every ${every}`);
  const peak = new Map<string, number>();
  for (const d of datapaths) {
    const s = await run(d, cycles, every);
    const last = s.slice(Math.floor(s.length / 2));
    peak.set(d, Math.max(...last));
    const firstHalf = Math.max(...s.slice(0, Math.floor(s.length / 2)), 0);
    console.log(`  ${d}: highest RSS over the last half ${(peak.get(d)! / 1024).toFixed(1)} MB (first half ${(firstHalf / 1024).toFixed(1)} MB)`);
  }
  const t = peak.get('thread'), l = peak.get('loop');
  if (t !== undefined && l !== undefined) console.log(`ratio thread / loop, highest RSS over the last half: ${(t / l).toFixed(2)}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
