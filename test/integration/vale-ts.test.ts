import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import { open, SwitchGoneError } from '../../src/index.js';
import { until, untilAnswer } from '../fixtures/wait.js';
import { blockedInPipeWrite, fullPipe, sleepsInPoll } from '../fixtures/full-pipe.js';
import { statNice } from '../fixtures/proc-stat.js';

const valeTs = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'tools', 'vale-ts.js');
let uniq = 0;
const sockPath = (): string => path.join(os.tmpdir(), `vt-cli-${process.pid}-${uniq++}.sock`);

function start(t: ExecutionContext, args: string[], env: Record<string, string> = {}): { proc: ReturnType<typeof spawn>; out: () => string; listening: Promise<void>; exited: Promise<number | null> } {
  const proc = spawn(process.execPath, [valeTs, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  // a failed assertion ends the test: the process must not outlive it (ava waits for it)
  t.teardown(() => void proc.kill('SIGKILL'));
  let out = '';
  let res: () => void = () => {};
  const listening = new Promise<void>((r) => (res = r));
  proc.stdout!.on('data', (d: Buffer) => {
    out += d;
    if (out.includes('listening')) res();
  });
  proc.stderr!.on('data', (d: Buffer) => (out += d));
  // 'close', not 'exit': the streams may still hold output when the process has exited
  const exited = new Promise<number | null>((r) => proc.on('close', (code) => r(code)));
  return { proc, out: () => out, listening, exited };
}

test('vale-ts says where it listens and which backend; SIGTERM tells clients, removes the socket', async (t) => {
  const socket = sockPath();
  const s = start(t, ['--socket', socket]);
  await s.listening;
  t.regex(s.out(), new RegExp(`listening on ${socket.replace(/[.]/g, '\\.')} \\(userspace backend`));
  const p = await open('vale0:01', { socket });
  t.false(p.hungUp);
  s.proc.kill('SIGTERM');
  t.is(await s.exited, 0);
  // the client is told: poll rejects once the hang-up is seen
  await t.throwsAsync(p.poll({ rx: true }), { instanceOf: SwitchGoneError, message: /went away/ });
  t.true(p.hungUp);
  t.false(existsSync(socket), 'socket file removed');
  p.close();
  t.regex(s.out(), /SIGTERM, shutting down/);
});

test('VALE_TS_SOCKET selects the socket for the switch and its clients; SIGINT stops it', async (t) => {
  const socket = sockPath();
  const s = start(t, [], { VALE_TS_SOCKET: socket });
  await s.listening;
  const prev = process.env['VALE_TS_SOCKET'];
  process.env['VALE_TS_SOCKET'] = socket;
  try {
    const p = await open('vale3:x');
    t.is(p.transport, 'vale-ts');
    p.close();
  } finally {
    if (prev === undefined) delete process.env['VALE_TS_SOCKET'];
    else process.env['VALE_TS_SOCKET'] = prev;
  }
  s.proc.kill('SIGINT');
  t.is(await s.exited, 0);
  t.false(existsSync(socket));
});

test('a second vale-ts on a live socket refuses; a stale socket file is taken over', async (t) => {
  const socket = sockPath();
  const a = start(t, ['--socket', socket]);
  await a.listening;
  const b = start(t, ['--socket', socket]);
  t.is(await b.exited, 1);
  t.regex(b.out(), /another vale-ts is already listening/);
  a.proc.kill('SIGKILL'); // leaves the socket file behind
  await a.exited;
  t.true(existsSync(socket));
  const c = start(t, ['--socket', socket]);
  await c.listening;
  c.proc.kill('SIGTERM');
  t.is(await c.exited, 0);
});

test('bad options get a clear error and exit 1', async (t) => {
  for (const [args, re] of [
    [['--batch', '0'], /--batch 0 is invalid: expected a number in 1\.\.4096/],
    [['--busy-poll-us', 'x'], /--busy-poll-us x is invalid/],
    [['--frobnicate'], /Unknown option '--frobnicate'/],
    [['--priority=-21'], /--priority -21 is invalid: expected a number in -20\.\.19/],
    [['--priority', '1.5'], /--priority 1\.5 is invalid: expected an integer nice value/],
  ] as const) {
    const s = start(t, [...args, '--socket', sockPath()]);
    t.is(await s.exited, 1, args.join(' '));
    t.regex(s.out(), re);
  }
});

test('an error into a full pipe (2>&1 | a reader that lags) is written whole before the exit, not dropped', async (t) => {
  t.timeout(60_000);
  const pipe = fullPipe(t);
  const p = spawn(process.execPath, [valeTs, '--datapath', 'bogus', '--socket', sockPath()], { stdio: ['ignore', pipe.wr, pipe.wr] });
  t.teardown(() => p.kill('SIGKILL'));
  pipe.closeWriter();
  let code: number | null | undefined;
  const exited = new Promise<void>((r) => p.on('exit', (c) => r(void (code = c))));
  // vale-ts waits for room: in poll(2) if the pipe is non-blocking (node
  // makes it so once a stdio stream is opened on it), else in write(2)
  // (before: the line was queued on a non-blocking stderr and the exit dropped it)
  await until(() => code !== undefined || sleepsInPoll(p.pid!) || blockedInPipeWrite(p.pid!));
  const [text] = await Promise.all([pipe.read().ended, exited]);
  t.is(code, 1);
  t.is(text.slice(0, pipe.filled), '.'.repeat(pipe.filled), 'what was in the pipe came first');
  t.is(text.slice(pipe.filled), 'vale-ts: --datapath bogus is invalid: expected thread or loop\n');
});

/**
 * nice of PID's main thread (task PID) and of its datapath thread (named
 * dp:...), field 19 of /proc/PID/task/TID/stat. Not by thread-id order: ids
 * wrap at pid_max, and a process started near it has threads with lower ids.
 */
function threadNices(pid: number): { main: number; datapath: number | undefined } {
  const nice = (tid: number | string): number => statNice(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8'));
  const dp = readdirSync(`/proc/${pid}/task`).find((tid) => readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').startsWith('dp:'));
  return { main: nice(pid), datapath: dp === undefined ? undefined : nice(dp) };
}

test('vale-ts runs at nice -10 by default (as ovs-ctl runs ovs-vswitchd), its datapath thread too; --priority sets another', async (t) => {
  const socket = sockPath();
  const s = start(t, ['--socket', socket, '--datapath', 'thread']);
  await s.listening;
  t.regex(s.out(), /nice -10\)/);
  const nices = threadNices(s.proc.pid!);
  // the main thread, and the datapath thread (started before it listens)
  t.is(nices.main, -10);
  t.is(nices.datapath, -10);
  s.proc.kill('SIGTERM');
  t.is(await s.exited, 0);

  const b = start(t, ['--socket', sockPath(), '--priority', '5']);
  await b.listening;
  t.regex(b.out(), /nice 5\)/);
  t.is(threadNices(b.proc.pid!).main, 5);
  b.proc.kill('SIGTERM');
  t.is(await b.exited, 0);
});

/** The names (comm) of a process's threads. */
function threadNames(pid: number): string[] {
  return readdirSync(`/proc/${pid}/task`).map((tid) => readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim());
}

test('by default each switch forwards on a thread of its own, named dp:SWITCH while it serves it and dp:spare between switches', async (t) => {
  const socket = sockPath();
  const s = start(t, ['--socket', socket]);
  await s.listening;
  const pid = s.proc.pid!;
  // started before vale-ts listens, waiting for the first switch
  t.deepEqual(threadNames(pid).filter((n) => n.startsWith('dp:')), ['dp:spare']);
  const a = await open('vale7:a', { socket });
  const b = await open('vale7:b', { socket });
  // the thread takes its name when it starts serving (it may still be loading the switch)
  await untilAnswer(async () => threadNames(pid).filter((n) => n.startsWith('dp:')), (n) => n.length === 1 && n[0] === 'dp:vale7');
  // and forwards: a frame from a reaches b
  t.true(a.inject(new Uint8Array([...new Array(6).fill(0xff), 2, 0, 0, 0, 0, 7, 0x88, 0xb5, ...new Array(46).fill(0)])));
  a.txsync();
  const ev = await b.poll({ rx: true, timeoutMs: 60_000 });
  t.true(ev.rx, 'the broadcast reached the other port');
  a.close();
  b.close();
  // the on-demand switch goes with its last port; its thread waits for the next one
  await untilAnswer(async () => threadNames(pid).filter((n) => n.startsWith('dp:')), (n) => n.length === 1 && n[0] === 'dp:spare');
  s.proc.kill('SIGTERM');
  t.is(await s.exited, 0);
});

test('a user who may not raise the priority is told why, and vale-ts runs on at its nice', async (t) => {
  if (process.getuid?.() !== 0 || !existsSync('/usr/bin/setpriv')) return t.pass('needs root (to drop to nobody) and setpriv');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vt-prio-'));
  chmodSync(dir, 0o777);
  try {
    const socket = path.join(dir, 'vale-ts.sock');
    const proc = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, valeTs, '--socket', socket], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const listening = new Promise<void>((r) => {
      const on = (d: Buffer): void => {
        out += d;
        if (out.includes('listening')) r();
      };
      proc.stdout.on('data', on);
      proc.stderr.on('data', on);
    });
    const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
    await listening;
    t.regex(out, /priority -10: not permitted: raising the priority needs root, CAP_SYS_NICE or an RLIMIT_NICE/);
    t.regex(out, /nice 0\)/);
    proc.kill('SIGTERM');
    t.is(await exited, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
