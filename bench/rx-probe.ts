/**
 * Investigation aid for issue 10's "receivers keep up": one vale-ts 1->1 run
 * of pkt-gen-ts tx -> rx with the rx port's ring size and the sender's
 * port's lossless flag as parameters, printing what each process did while
 * it ran (schedstat of every thread, the switch's wakeups and drops).
 *
 *   node dist/bench/rx-probe.js [--rx-slots N] [--count N] [--lossless] [--hold-us US]
 *
 * --rx-slots: the receiver's rx ring (pkt-gen-ts -C 0,N; 2..4096);
 * --lossless: the sender's port is made lossless before it attaches (the
 * switch holds frames back instead of dropping them at a full rx ring);
 * --hold-us: the switch's bounded-backpressure bound (0: drop at once, as
 * before issue 10's change; default: the switch's default);
 * RXP_SHOW=1 also prints both pkt-gen-ts reports (average batch sizes).
 * schedstat: on-cpu = time run, runnable-but-waiting = time on a runqueue
 * without a CPU, slices = times scheduled in; summed over every thread.
 *
 * @module
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Switch } from '../src/vale/switch.js';
import { ValeServer } from '../src/vale/server.js';

const bin = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'tools', 'pkt-gen-ts.js');

function run(args: string[], readyRe: RegExp, env: Record<string, string>): { ready: Promise<void>; done: Promise<{ code: number | null; out: string; err: string; sched: { run: number; wait: number; slices: number } }> } {
  const c = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  let err = '';
  let ready: () => void = () => {};
  const readyP = new Promise<void>((r) => (ready = r));
  c.stdout.on('data', (d: Buffer) => (out += d));
  c.stderr.on('data', (d: Buffer) => {
    err += d;
    if (readyRe.test(err)) ready();
  });
  // schedstat (ns on cpu, ns waiting on a runqueue, slices) of every thread, sampled until exit
  const sched = { run: 0, wait: 0, slices: 0 };
  const timer = setInterval(() => {
    try {
      const t = { run: 0, wait: 0, slices: 0 };
      for (const tid of readdirSync(`/proc/${c.pid}/task`)) {
        const [a, b, n] = readFileSync(`/proc/${c.pid}/task/${tid}/schedstat`, 'utf8').trim().split(' ').map(Number);
        t.run += a!; t.wait += b!; t.slices += n!;
      }
      Object.assign(sched, t);
    } catch { /* gone */ }
  }, 20);
  const done = new Promise<{ code: number | null; out: string; err: string; sched: { run: number; wait: number; slices: number } }>((res) => c.on('close', (code) => (clearInterval(timer), ready(), res({ code, out, err, sched }))));
  return { ready: readyP, done };
}

const field = (err: string, re: RegExp): string => re.exec(err)?.[1] ?? '?';
function ctx(s: { run: number; wait: number; slices: number }): string {
  return `on-cpu ${(s.run / 1e6).toFixed(0)} ms, runnable-but-waiting ${(s.wait / 1e6).toFixed(0)} ms, ${s.slices} slices`;
}
function selfSched(): { run: number; wait: number; slices: number } {
  const t = { run: 0, wait: 0, slices: 0 };
  for (const tid of readdirSync('/proc/self/task')) {
    const [a, b, n] = readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').trim().split(' ').map(Number);
    t.run += a!; t.wait += b!; t.slices += n!;
  }
  return t;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { lossless: { type: 'boolean' }, 'rx-slots': { type: 'string' }, count: { type: 'string' }, 'hold-us': { type: 'string' } } });
  const count = Number(values.count ?? 5_000_000);
  const socket = path.join(os.tmpdir(), `rxp-${process.pid}.sock`);
  const sw = new Switch('vale0', { datapath: 'thread', ...(values['hold-us'] !== undefined ? { holdUs: Number(values['hold-us']) } : {}) });
  await sw.whenReady();
  const srv = await ValeServer.listen({ socket, switches: [sw] });
  try {
    const env: Record<string, string> = { VALE_TS_SOCKET: socket };
    if (values.lossless) sw.addPort(`vale0:rxp${process.pid}a`, {}, { persistent: true, lossless: true });
    const rxC = values['rx-slots'] ? ['-C', `0,${values['rx-slots']}`] : [];
    const s0 = selfSched();
    const rx = run(['-i', `vale0:rxp${process.pid}b`, '-f', 'rx', '-W', ...rxC], /reading from/, env);
    await rx.ready;
    const tx = run(['-i', `vale0:rxp${process.pid}a`, '-f', 'tx', '-n', String(count), '-l', '60'], /start, fd/, env);
    const [t, r] = await Promise.all([tx.done, rx.done]);
    if (r.code !== 0 || t.code !== 0) console.log(r.err.slice(0,800), t.err.slice(-400));
    if (process.env.RXP_SHOW) console.log(r.out, t.out);
    const got = Number(/^Received (\d+) packets/m.exec(r.out)?.[1] ?? 0);
    const txs = /^Speed: (\S+ \S*pps)/m.exec(t.out)?.[1];
    const rxs = /^Speed: (\S+ \S*pps)/m.exec(r.out)?.[1];
    console.log(`rxSlots ${values['rx-slots'] ?? 'default'}${values.lossless ? ' lossless' : ''} holdUs ${values['hold-us'] ?? 'default'}: tx ${txs} rx ${rxs} got ${((100 * got) / count).toFixed(1)}% load ${os.loadavg()[0]!.toFixed(2)}`);
    console.log(`  tx ${ctx(t.sched)} | rx ${ctx(r.sched)} | switch process ${ctx({ run: selfSched().run - s0.run, wait: selfSched().wait - s0.wait, slices: selfSched().slices - s0.slices })}`);
    const tot = sw.totals();
    const drops = Object.entries(tot).filter(([k, v]) => k.startsWith('drop') && v > 0);
    console.log(`  switch ${JSON.stringify(sw.switchCounters())} drops ${JSON.stringify(Object.fromEntries(drops))}`);
  } finally {
    srv.close();
    sw.close();
    await sw.stopped();
  }
}
main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
