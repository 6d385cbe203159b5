/**
 * Steady under contention: pkt-gen-ts tx -> rx over a pipe, and through
 * vale-ts 1->1, each unloaded and then beside two CPU hogs (two processes
 * spinning in a busy loop), same run; the result is the loaded rate as a
 * share of the unloaded one (target >= 40%: what a fair scheduler leaves
 * three busy parties on two cores), and how many of the N runs finished (a
 * run that takes longer than --limit seconds counts as hung and is killed).
 *   node dist/bench/contention.bench.js [--count N] [--runs R] [--limit S] [--only pipe|vale] [--datapath loop|thread]
 * Per frame, pipe: the sender writes a slot and the receiver takes it by
 * buffer swap (two processes). vale-ts (--datapath, default loop as
 * vale-ts's own default): the sender writes a slot, the switch copies it (TS learning bridge decides), the
 * receiver counts it (three processes). Rates are the receiver's.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startSwitch } from './lib.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const bin = path.join(here, '..', 'tools', 'pkt-gen-ts.js');
const UNIT: Record<string, number> = { '': 1, K: 1e3, M: 1e6, G: 1e9, T: 1e12 };

interface Done {
  code: number | null;
  out: string;
}

function run(args: string[], env: Record<string, string>, readyRe?: RegExp): { c: ChildProcess; ready: Promise<void>; done: Promise<Done> } {
  const c = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  let ready: () => void = () => {};
  const readyP = new Promise<void>((r) => (ready = r));
  c.stdout!.on('data', (d: Buffer) => (out += d));
  c.stderr!.on('data', (d: Buffer) => {
    out += d;
    if (readyRe?.test(out)) ready();
  });
  const done = new Promise<Done>((r) => c.on('close', (code) => (ready(), r({ code, out }))));
  return { c, ready: readyP, done };
}

function mppsOf(out: string): number {
  const m = /^Speed: (\d+\.\d+) ([KMGT]?)pps/m.exec(out);
  return m ? (Number(m[1]) * UNIT[m[2]!]!) / 1e6 : NaN;
}

let uniq = 0;

/** One tx -> rx run; the receiver's Mpps, or null when it did not finish within limitMs. */
async function once(kind: 'pipe' | 'vale', count: number, limitMs: number, switchArgs: string[]): Promise<number | null> {
  let env: Record<string, string> = {};
  let sw: ChildProcess | undefined;
  let txName: string;
  let rxName: string;
  if (kind === 'pipe') {
    const name = `vale0:ctb${process.pid}x${uniq++}`;
    txName = `${name}{0`;
    rxName = `${name}}0`;
  } else {
    const s = await startSwitch(switchArgs);
    sw = s.proc;
    env = { VALE_TS_SOCKET: s.socket };
    txName = 'vale0:a';
    rxName = 'vale0:b';
  }
  // the pipe receiver stops after count frames; the vale receiver after 1 s of silence (-W)
  const rx = run(['-i', rxName, '-f', 'rx', ...(kind === 'pipe' ? ['-n', String(count)] : ['-W'])], env, /reading from/);
  await rx.ready;
  const tx = run(['-i', txName, '-f', 'tx', '-n', String(count), '-l', '60'], env);
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<'hung'>((r) => (timer = setTimeout(() => r('hung'), limitMs)));
  const res = await Promise.race([Promise.all([tx.done, rx.done]), hung]);
  clearTimeout(timer);
  sw?.kill('SIGTERM');
  if (res === 'hung') {
    tx.c.kill('SIGKILL');
    rx.c.kill('SIGKILL');
    return null;
  }
  const [, r] = res;
  return mppsOf(r.out);
}

function hogs(n: number): ChildProcess[] {
  return Array.from({ length: n }, () => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { count: { type: 'string' }, runs: { type: 'string' }, limit: { type: 'string' }, only: { type: 'string' }, datapath: { type: 'string' } } });
  const count = Number(values.count ?? 2_000_000);
  const runs = Number(values.runs ?? 3);
  const limitMs = Number(values.limit ?? 60) * 1000;
  console.log(`contention: pkt-gen-ts tx -> rx, ${count} frames of 60 B, ${runs} runs each, best rate; a run over ${limitMs / 1000} s counts as hung`);
  const datapath = values.datapath ?? 'loop';
  if (datapath !== 'loop' && datapath !== 'thread') throw new Error(`--datapath ${datapath}: use loop or thread`);
  const switchArgs = ['--datapath', datapath];
  const kinds: readonly ('pipe' | 'vale')[] = values.only === 'pipe' ? ['pipe'] : values.only === 'vale' ? ['vale'] : ['pipe', 'vale'];
  for (const kind of kinds) {
    const res: Record<string, { best: number; finished: number }> = {};
    for (const load of ['unloaded', 'two hogs'] as const) {
      const hs = load === 'two hogs' ? hogs(2) : [];
      let best = 0;
      let finished = 0;
      try {
        for (let i = 0; i < runs; i++) {
          const v = await once(kind, count, limitMs, switchArgs);
          if (v !== null) {
            finished++;
            if (v > best) best = v;
          }
        }
      } finally {
        for (const h of hs) h.kill('SIGKILL');
      }
      res[load] = { best, finished };
    }
    const u = res['unloaded']!;
    const l = res['two hogs']!;
    const label = kind === 'pipe' ? 'pipe           ' : `vale-ts 1->1 (datapath ${datapath})`;
    console.log(
      `${label} unloaded ${u.best.toFixed(3)} Mpps (${u.finished}/${runs} finished)  two hogs ${l.best.toFixed(3)} Mpps (${l.finished}/${runs} finished)  share ${((100 * l.best) / u.best).toFixed(0)}% (target >= 40%)`,
    );
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
