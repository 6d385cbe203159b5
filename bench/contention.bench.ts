/**
 * Steady under contention: pkt-gen-ts tx -> rx over a pipe, and through
 * vale-ts 1->1, each unloaded and then beside two CPU hogs (two processes
 * spinning in a busy loop), same run; the result is the loaded rate as a
 * share of the unloaded one (target >= 40%: what a fair scheduler leaves
 * three busy parties on two cores), and how many of the N runs finished (a
 * run that takes longer than --limit seconds counts as hung and is killed).
 *   node dist/bench/contention.bench.js [--count N] [--runs R] [--limit S] [--only pipe|vale] [--datapath loop|thread]
 *                                      [--slots N[,M...]] [--verbose]
 * --count: frames per run (default 20 M over a pipe, 4 M through vale-ts: an
 * unloaded run lasts a second or more, past the pair's start-up).
 * Unloaded and loaded runs alternate (U L U L ...; the hogs start afresh for
 * each loaded run), so a change in the machine's other load falls on both.
 * --slots asks for N slots per ring (`@conf:slots=N` on both ends) instead
 * of the ports' default, and with a list alternates the variants too (an
 * A/B in one run). --verbose prints each run with every process's on-CPU
 * and runnable-but-waiting time (/proc/PID/task/N/schedstat, summed over its
 * threads) and its voluntary / involuntary context switches.
 * Per frame, pipe: the sender writes a slot and the receiver takes it by
 * buffer swap (two processes). vale-ts (--datapath, default thread as
 * vale-ts's own default): the sender writes a slot, the switch copies it (TS learning bridge decides), the
 * receiver counts it (three processes). Rates are the receiver's.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startSwitch, switchLineOf } from './lib.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const bin = path.join(here, '..', 'tools', 'pkt-gen-ts.js');
const UNIT: Record<string, number> = { '': 1, K: 1e3, M: 1e6, G: 1e9, T: 1e12 };

interface Done {
  code: number | null;
  out: string;
}

/** A process's scheduler accounting, summed over its threads. */
interface Sched {
  /** on-CPU, ms */
  run: number;
  /** runnable but waiting for a CPU, ms */
  wait: number;
  voluntary: number;
  involuntary: number;
}

/** /proc/PID/task/N/schedstat and status of every thread; undefined once the process is gone. */
function schedOf(pid: number): Sched | undefined {
  try {
    const s: Sched = { run: 0, wait: 0, voluntary: 0, involuntary: 0 };
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      const [run, wait] = readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ').map(Number);
      s.run += run! / 1e6;
      s.wait += wait! / 1e6;
      const st = readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8');
      s.voluntary += Number(/^voluntary_ctxt_switches:\s*(\d+)/m.exec(st)?.[1] ?? 0);
      s.involuntary += Number(/^nonvoluntary_ctxt_switches:\s*(\d+)/m.exec(st)?.[1] ?? 0);
    }
    return s;
  } catch {
    return undefined; // exited between the listing and the read
  }
}

/** Samples a process's accounting every 20 ms and keeps the last reading (a process's /proc is gone once it is reaped). */
class SchedWatch {
  last: Sched | undefined;
  private readonly timer: NodeJS.Timeout;
  constructor(private readonly pid: number | undefined) {
    this.timer = setInterval(() => this.sample(), 20);
  }
  sample(): void {
    if (this.pid === undefined) return;
    const s = schedOf(this.pid);
    if (s) this.last = s;
  }
  stop(): Sched | undefined {
    clearInterval(this.timer);
    return this.last;
  }
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
/** Default frames per run (see main). */
const PIPE_COUNT = 20_000_000;
const VALE_COUNT = 4_000_000;

interface Once {
  /** the receiver's Mpps, or null when the run did not finish within the limit */
  mpps: number | null;
  /** per process: on-CPU / waiting ms and switches over its whole life (startup included) */
  sched: Record<string, Sched | undefined>;
  /** vale: the switch's wakeup and hold counters and its drops (--verbose) */
  switchLine?: string;
}

/** One tx -> rx run. `slots`: @conf:slots for both ends (undefined: the ports' default). */
async function once(kind: 'pipe' | 'vale', count: number, limitMs: number, switchArgs: string[], slots: number | undefined, watch: boolean): Promise<Once> {
  let env: Record<string, string> = {};
  let sw: ChildProcess | undefined;
  let socket: string | undefined;
  let txName: string;
  let rxName: string;
  const conf = slots === undefined ? '' : `@conf:slots=${slots}`;
  if (kind === 'pipe') {
    const name = `vale0:ctb${process.pid}x${uniq++}`;
    txName = `${name}{0${conf}`;
    rxName = `${name}}0${conf}`;
  } else {
    const s = await startSwitch(switchArgs);
    sw = s.proc;
    socket = s.socket;
    env = { VALE_TS_SOCKET: s.socket };
    txName = `vale0:a${conf}`;
    rxName = `vale0:b${conf}`;
  }
  // the pipe receiver stops after count frames; the vale receiver after 1 s of silence (-W)
  const rx = run(['-i', rxName, '-f', 'rx', ...(kind === 'pipe' ? ['-n', String(count)] : ['-W'])], env, /reading from/);
  await rx.ready;
  const tx = run(['-i', txName, '-f', 'tx', '-n', String(count), '-l', '60'], env);
  // sampling /proc costs this process some CPU beside the measured ones: only with --verbose
  const watches: Record<string, SchedWatch> = watch ? { tx: new SchedWatch(tx.c.pid), rx: new SchedWatch(rx.c.pid), ...(sw ? { switch: new SchedWatch(sw.pid) } : {}) } : {};
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<'hung'>((r) => (timer = setTimeout(() => r('hung'), limitMs)));
  const res = await Promise.race([Promise.all([tx.done, rx.done]), hung]);
  clearTimeout(timer);
  watches.switch?.sample();
  const sched = Object.fromEntries(Object.entries(watches).map(([k, w]) => [k, w.stop()]));
  // how the switch's sleeps ended (a kick or the held-back guard timer) and what it dropped
  let line: string | undefined;
  if (watch && socket && res !== 'hung') {
    try {
      line = await switchLineOf(socket);
    } catch (e) {
      line = `switch stats: ${(e as Error).message}`;
    }
  }
  sw?.kill('SIGTERM');
  if (res === 'hung') {
    tx.c.kill('SIGKILL');
    rx.c.kill('SIGKILL');
    return { mpps: null, sched };
  }
  const [, r] = res;
  return { mpps: mppsOf(r.out), sched, ...(line ? { switchLine: line } : {}) };
}

function hogs(n: number): ChildProcess[] {
  return Array.from({ length: n }, () => spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }));
}

const load = (): string => loadavg().map((x) => x.toFixed(2)).join(' ');

function schedLine(s: Record<string, Sched | undefined>): string {
  return Object.entries(s)
    .map(([k, v]) => (v ? `${k} cpu ${v.run.toFixed(0)} ms wait ${v.wait.toFixed(0)} ms vol ${v.voluntary} invol ${v.involuntary}` : `${k} -`))
    .join(' | ');
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? 0 : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { count: { type: 'string' }, runs: { type: 'string' }, limit: { type: 'string' }, only: { type: 'string' }, datapath: { type: 'string' }, slots: { type: 'string' }, verbose: { type: 'boolean' } },
  });
  // frames per run: --count for both, else enough for an unloaded run to last
  // about a second or more (a pipe moves 10-35 Mpps unloaded, vale-ts 1->1 2-5):
  // a pkt-gen-ts pair takes about a second to reach its steady rate (JIT,
  // first touch of the ring's buffers), so 2 M frames over a pipe (0.1-0.2 s)
  // measured its start-up, not its rate, and the unloaded side read low
  const countOf = (kind: 'pipe' | 'vale'): number => (values.count !== undefined ? Number(values.count) : kind === 'pipe' ? PIPE_COUNT : VALE_COUNT);
  const runs = Number(values.runs ?? 3);
  const limitMs = Number(values.limit ?? 60) * 1000;
  const datapath = values.datapath ?? 'thread';
  if (datapath !== 'loop' && datapath !== 'thread') throw new Error(`--datapath ${datapath}: use loop or thread`);
  const variants: (number | undefined)[] = values.slots === undefined ? [undefined] : values.slots.split(',').map(Number);
  for (const v of variants) if (v !== undefined && (!Number.isInteger(v) || v < 2 || v > 4096)) throw new Error(`--slots ${values.slots}: give slot counts 2..4096, comma-separated`);
  console.log(`contention: pkt-gen-ts tx -> rx, ${values.count ?? `${PIPE_COUNT} (pipe) / ${VALE_COUNT} (vale-ts)`} frames of 60 B, ${runs} runs each, unloaded and loaded alternating; best rate (median in brackets); a run over ${limitMs / 1000} s counts as hung`);
  console.log(`load average ${load()}`);
  const switchArgs = ['--datapath', datapath];
  const kinds: readonly ('pipe' | 'vale')[] = values.only === 'pipe' ? ['pipe'] : values.only === 'vale' ? ['vale'] : ['pipe', 'vale'];
  for (const kind of kinds) {
    type Tally = { rates: number[]; finished: number };
    const res = new Map<string, Tally>();
    const tally = (k: string): Tally => res.get(k) ?? (res.set(k, { rates: [], finished: 0 }), res.get(k)!);
    for (let i = 0; i < runs; i++) {
      for (const v of variants) {
        for (const loaded of [false, true]) {
          const hs = loaded ? hogs(2) : [];
          try {
            const o = await once(kind, countOf(kind), limitMs, switchArgs, v, values.verbose === true);
            const t = tally(`${v}/${loaded}`);
            if (o.mpps !== null) {
              t.finished++;
              t.rates.push(o.mpps);
            }
            if (values.verbose) console.log(`  ${kind} slots ${v ?? 'default'} ${loaded ? 'two hogs' : 'unloaded'}: ${o.mpps === null ? 'hung' : o.mpps.toFixed(3) + ' Mpps'}  ${schedLine(o.sched)}  (load ${load()})${o.switchLine ? '\n    ' + o.switchLine : ''}`);
          } finally {
            for (const h of hs) h.kill('SIGKILL');
          }
        }
      }
    }
    for (const v of variants) {
      const u = tally(`${v}/false`);
      const l = tally(`${v}/true`);
      const ub = Math.max(0, ...u.rates);
      const lb = Math.max(0, ...l.rates);
      const what = kind === 'pipe' ? 'pipe           ' : `vale-ts 1->1 (datapath ${datapath})`;
      const label = v === undefined ? what : `${what} slots ${v}`;
      console.log(
        `${label} unloaded ${ub.toFixed(3)} Mpps [${median(u.rates).toFixed(3)}] (${u.finished}/${runs} finished)  two hogs ${lb.toFixed(3)} Mpps [${median(l.rates).toFixed(3)}] (${l.finished}/${runs} finished)  share ${((100 * lb) / ub).toFixed(0)}% (target >= 40%)`,
      );
    }
  }
  console.log(`load average ${load()}`);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
