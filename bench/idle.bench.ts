/**
 * Idle benchmark: the CPU an idle vale-ts uses with clients attached
 * (issue 10: "an idle vale-ts with clients attached uses < 1% of a core"),
 * and each idle client's, for each datapath (thread, then loop).
 *   node dist/bench/idle.bench.js [--seconds S] [--datapath thread|loop]
 * Per datapath: a fresh vale-ts, then the usual idle parties:
 *   - a persistent port, vale0:store (created over the control socket, no
 *     client: a port of the switch all the same; its rx ring fills and stays full);
 *   - pkt-gen-ts rx on vale0:rx (it wakes once a second to report);
 *   - a monitor of vale0:rx (vale-ctl-ts --capture, pcapng to /dev/null);
 *   - a library client that opened vale0:lib0 and does nothing;
 *   - pkt-gen-ts pong on vale0:pong.
 * First a burst enters every spin and busy-poll window there is:
 * pkt-gen-ts tx sends 200 000 frames (flooded: to rx and its monitor,
 * store and lib) before pong attaches (pong would echo a flood), then
 * pkt-gen-ts ping makes 2000 round trips with pong (the switch's
 * busy-poll, ping's and pong's spins; its requests flood to rx too). Each
 * sender's exit, then the switch's ring occupancy (everything delivered has
 * been taken by rx and pong), says the burst is over: no sleep. Then, over
 * the window (default 10 s; no request to vale-ts inside it, as one would
 * cost it CPU), each process's utime+stime from /proc/PID/stat (all its
 * threads), as % of one core; vale-ts's also by thread name (schedstat),
 * which says which thread of it ran (the datapath thread dp:vale0, the
 * main thread, the shared doorbell's bell-watchdog, V8's). vale-ts's
 * switch-wide counters (wakeups) before and after the window say how
 * often its datapath woke.
 * Target: vale-ts < 1% of one core on both datapaths. The clients have no
 * target; their figures show what each idle kind costs.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ValeClient } from '../src/control/client.js';
import type { SwitchStats } from '../src/control/protocol.js';
import { peerJs, startSwitch } from './lib.js';
import { parseSeconds } from './repeat.js';

const tools = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'tools');
const pktgen = path.join(tools, 'pkt-gen-ts.js');
const valectl = path.join(tools, 'vale-ctl-ts.js');

/** frames of the tx burst, round trips of the ping burst */
const TX_BURST = 200_000;
const PING_BURST = 2000;

/** clock ticks per second of /proc/PID/stat's utime and stime */
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** utime + stime of process `pid` (every thread, live or exited), in seconds. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // fields after the command name, which is in parentheses and may hold spaces
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

/** CPU ns so far of each live thread of `pid`, by thread id, with its name (schedstat: finer than stat's ticks). */
function threadNs(pid: number): Map<string, { comm: string; ns: number }> {
  const m = new Map<string, { comm: string; ns: number }>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      m.set(tid, { comm, ns: Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]) });
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return m;
}

/**
 * Where a process's CPU in the window went, by thread name (threads of one
 * name summed, e.g. V8's workers), % of one core, largest first; threads
 * that started in the window count from zero.
 */
function byThread(before: Map<string, { comm: string; ns: number }>, after: Map<string, { comm: string; ns: number }>, window: number): string {
  const sum = new Map<string, number>();
  for (const [tid, a] of after) sum.set(a.comm, (sum.get(a.comm) ?? 0) + a.ns - (before.get(tid)?.ns ?? 0));
  return [...sum]
    // a datapath thread is listed even at 0: that it slept is the point
    .filter(([comm, ns]) => ns > 0 || comm.startsWith('dp:'))
    .sort((x, y) => y[1] - x[1])
    .map(([comm, ns]) => `${comm} ${((100 * ns) / 1e9 / window).toFixed(2)}%`)
    .join(', ');
}

/** The last 2 KB each child wrote to stderr, for the error when one fails. */
const stderrTail = new WeakMap<ChildProcess, string>();

/**
 * A node process running `script` with `args`. Its stdout is discarded
 * (pkt-gen-ts reports every second: part of what its idle costs) and the
 * tail of its stderr kept for an error message.
 */
function run(script: string, args: string[], socket: string): ChildProcess {
  const c = spawn(process.execPath, [script, ...args], { env: { ...process.env, VALE_TS_SOCKET: socket }, stdio: ['ignore', 'ignore', 'pipe'] });
  stderrTail.set(c, '');
  c.stderr!.on('data', (d: Buffer) => stderrTail.set(c, (stderrTail.get(c)! + d.toString()).slice(-2048)));
  return c;
}

/** Resolves when `c` exits with status 0; rejects, naming `what` and quoting its stderr, otherwise. */
function exited(c: ChildProcess, what: string): Promise<void> {
  const fail = (how: string | number | null): Error => new Error(`${what} exited ${how}; its stderr ended:\n${stderrTail.get(c) ?? ''}`);
  return new Promise((resolve, reject) => {
    if (c.exitCode !== null) return c.exitCode === 0 ? resolve() : reject(fail(c.exitCode));
    c.on('exit', (code, sig) => (code === 0 ? resolve() : reject(fail(code ?? sig))));
  });
}

/**
 * Asks vale-ts for vale0's stats until `ready` holds (a counter or a port
 * list reached what the step waits for). The 60 s bound only turns a hang
 * into an error that says what never happened; nothing waits for time.
 */
async function until(client: ValeClient, what: string, ready: (st: SwitchStats) => boolean): Promise<SwitchStats> {
  const t0 = Date.now();
  let last: SwitchStats | undefined;
  for (;;) {
    [last] = await client.stats('vale0');
    if (last && ready(last)) return last;
    if (Date.now() - t0 > 60_000) throw new Error(`idle bench: waited 60 s for ${what}; last stats: ${JSON.stringify(last?.ports.map((p) => [p.name, p.occupancy]))}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const port = (st: SwitchStats, name: string): SwitchStats['ports'][number] | undefined => st.ports.find((p) => p.name === name);
/** every frame delivered to `name` has been taken by its client, and it has none waiting to be taken */
const drained = (st: SwitchStats, name: string): boolean => {
  const o = port(st, name)?.occupancy;
  return o !== undefined && o.rxQueued === 0 && o.txQueued === 0;
};

interface Row {
  datapath: string;
  window: number;
  switchPct: number;
  /** vale-ts's CPU in the window by thread name */
  switchThreads: string;
  clients: { what: string; pct: number }[];
  wakeups: string;
}

async function idleRun(datapath: string, seconds: number): Promise<Row> {
  const { proc: sw, socket } = await startSwitch(['--datapath', datapath]);
  const client = new ValeClient({ socket });
  const kids: ChildProcess[] = [];
  const start = (script: string, args: string[]): ChildProcess => {
    const c = run(script, args, socket);
    kids.push(c);
    return c;
  };
  try {
    await client.create('vale0:store');
    const rx = start(pktgen, ['-i', 'vale0:rx', '-f', 'rx']);
    const lib = start(peerJs, ['hold', 'vale0:lib', '1']);
    await until(client, 'vale0:rx and vale0:lib0 to attach', (st) => !!port(st, 'vale0:rx') && !!port(st, 'vale0:lib0'));
    // the monitor: the watched port must exist first
    const mon = start(valectl, ['--capture', 'vale0:rx', '-w', '/dev/null']);
    await until(client, 'the monitor of vale0:rx to open', (st) => (st.monitors ?? []).some((m) => m.watches === 'vale0:rx'));
    // burst 1: a flood to rx (and its monitor), store and lib, before pong is there to echo it
    await exited(start(pktgen, ['-i', 'vale0:tx', '-f', 'tx', '-n', String(TX_BURST)]), 'pkt-gen-ts tx');
    await until(client, 'pkt-gen-ts rx to take the tx burst', (st) => drained(st, 'vale0:rx'));
    // burst 2: ping-pong round trips
    const pong = start(pktgen, ['-i', 'vale0:pong', '-f', 'pong']);
    await until(client, 'vale0:pong to attach', (st) => !!port(st, 'vale0:pong'));
    await exited(start(pktgen, ['-i', 'vale0:ping', '-f', 'ping', '-n', String(PING_BURST)]), 'pkt-gen-ts ping');
    const before = await until(client, 'rx and pong to take the ping burst', (st) => drained(st, 'vale0:rx') && drained(st, 'vale0:pong'));
    // the window: nothing asked of vale-ts inside it
    const parties: [string, ChildProcess][] = [
      ['pkt-gen-ts pong', pong],
      ['pkt-gen-ts rx', rx],
      ['monitor (vale-ctl-ts --capture)', mon],
      ['library port (open, idle)', lib],
    ];
    const pids = [sw, ...parties.map(([, c]) => c)].map((c) => c.pid!);
    const c0 = pids.map(cpuSeconds);
    const th0 = threadNs(sw.pid!);
    const t0 = process.hrtime.bigint();
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const c1 = pids.map(cpuSeconds);
    const th1 = threadNs(sw.pid!);
    const window = Number(process.hrtime.bigint() - t0) / 1e9;
    // every party still there: a client that died would read as idle
    for (const [what, c] of parties) {
      if (c.exitCode !== null || c.signalCode !== null) throw new Error(`idle bench: ${what} exited during the window; its stderr ended:\n${stderrTail.get(c) ?? ''}`);
    }
    const [after] = await client.stats('vale0');
    const pct = (i: number): number => (100 * (c1[i]! - c0[i]!)) / window;
    const wake = (st: SwitchStats | undefined): Record<string, number> => st?.switchCounters ?? {};
    const moved = Object.entries(wake(after))
      .map(([k, v]) => [k, v - (wake(before)[k] ?? 0)] as const)
      .filter(([, d]) => d !== 0)
      .map(([k, d]) => `${k} +${d}`)
      .join(', ');
    return { datapath, window, switchPct: pct(0), switchThreads: byThread(th0, th1, window), clients: parties.map(([what], i) => ({ what, pct: pct(i + 1) })), wakeups: `${moved || 'none moved'} (wakeups ${wake(before)['wakeups'] ?? '?'} before it, burst included)` };
  } finally {
    await Promise.all(
      [...kids, sw].map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            c.on('exit', () => resolve());
            c.kill(c === sw ? 'SIGTERM' : 'SIGKILL');
          }),
      ),
    );
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: 'string' }, datapath: { type: 'string' } } });
  const seconds = parseSeconds('seconds', values.seconds, 10);
  const datapaths = values.datapath === undefined ? ['thread', 'loop'] : [values.datapath];
  for (const d of datapaths) if (d !== 'thread' && d !== 'loop') throw new RangeError(`--datapath ${d}: thread or loop (default: both, thread first)`);
  const load = (): string => os.loadavg().map((l) => l.toFixed(1)).join(' ');
  console.log(
    `idle benchmark: CPU over a ${seconds} s window after a burst (${TX_BURST} frames tx -> rx, then ${PING_BURST} ping-pong round trips), ` +
      `utime+stime of every thread, % of one core, in steps of ${(100 / CLK_TCK / seconds).toFixed(2)}% (one clock tick) (${os.cpus().length} CPUs, load ${load()})`,
  );
  console.log('persistent port vale0:store attached too (no process: its cost is in vale-ts)');
  for (const d of datapaths) {
    const r = await idleRun(d, seconds);
    console.log(`vale-ts --datapath ${r.datapath.padEnd(6)} ${r.switchPct.toFixed(2).padStart(5)}% of one core (target < 1%): ${r.switchPct < 1 ? 'met' : 'NOT met'}   window ${r.window.toFixed(1)} s`);
    console.log(`  vale-ts by thread (schedstat): ${r.switchThreads || 'none ran'}`);
    console.log(`  clients: ${r.clients.map((c) => `${c.what} ${c.pct.toFixed(2)}%`).join('  ')}`);
    console.log(`  switch counters in the window: ${r.wakeups}`);
  }
  console.log(`  load ${load()}`);
}

main().catch((e: unknown) => {
  console.error(e instanceof RangeError ? e.message : e);
  process.exit(1);
});
