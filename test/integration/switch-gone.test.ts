/**
 * The switch killed under running clients: the library throws
 * SwitchGoneError (for-await, txsync/rxsync, poll), pkt-gen-ts prints its
 * summary and exits 1, vale-ctl-ts exits 1; with `{ reconnect: true }` a port
 * follows the restarted switch and counts the frames lost across the gap.
 */
import test from 'ava';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import { open, SwitchGoneError, type Port, type ReconnectEvent } from '../../src/index.js';
import { ensurePackages } from '../fixtures/system-packages.js';
import { startValeTs } from '../fixtures/vale-ts-process.js';

const tools = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'tools');
let uniq = 0;
const sockPath = (): string => path.join(os.tmpdir(), `swgone-${process.pid}-${uniq++}.sock`);

interface Switch {
  proc: ChildProcess;
  exited: Promise<void>;
}

/** vale-ts as a child process (so it can be killed), resolved once it listens; stopped at the end of the test. */
async function startSwitch(t: { teardown(fn: () => unknown): void }, socket: string): Promise<Switch> {
  const sw = await startValeTs(socket);
  t.teardown(sw.stop);
  return sw;
}

async function kill(sw: Switch, sig: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  sw.proc.kill(sig);
  await sw.exited;
}

/** A 60-byte broadcast frame from 02:00:00:00:00:<id>. */
function frame(id: number, seq: number): Uint8Array {
  const f = new Uint8Array(60);
  f.fill(0xff, 0, 6);
  f.set([0x02, 0, 0, 0, 0, id], 6);
  f[12] = 0x88;
  f[13] = 0xb5;
  f[14] = seq & 0xff;
  f[15] = (seq >> 8) & 0xff;
  return f;
}

/** Frames received on `port` until `n` have come (or the port fails). */
async function receive(port: Port, n: number): Promise<number> {
  let got = 0;
  for await (const b of port) {
    got += b.frames.length;
    if (got >= n) break;
  }
  return got;
}

test('the switch killed: for-await throws SwitchGoneError, syncs throw, poll rejects, untaken tx frames are counted', async (t) => {
  const socket = sockPath();
  const sw = await startSwitch(t, socket);
  const a = await open('vale0:a', { socket, backend: 'user' });
  const b = await open('vale0:b', { socket, backend: 'user' });
  t.teardown(() => {
    a.close();
    b.close();
  });
  // traffic flows first
  for (let i = 0; i < 4; i++) t.true(a.inject(frame(1, i)));
  a.txsync();
  t.is(await receive(b, 4), 4);
  // three frames queued, never synced: the switch cannot have taken them
  for (let i = 0; i < 3; i++) t.true(a.inject(frame(1, 100 + i)));
  const iterating = (async () => {
    for await (const _ of b) {
      // nothing more is sent to b
    }
  })();
  await kill(sw);
  await t.throwsAsync(iterating, { instanceOf: SwitchGoneError, message: /vale0:b: the vale-ts switch at .* went away/ });
  const e = await t.throwsAsync(a.poll({ tx: true }), { instanceOf: SwitchGoneError });
  t.is(e?.lostTxFrames, 3, 'the three unsynced frames are named as lost');
  t.regex(e?.message ?? '', /3 frames queued on tx that it never took/);
  t.throws(() => a.txsync(), { instanceOf: SwitchGoneError });
  t.throws(() => b.rxsync(), { instanceOf: SwitchGoneError });
  t.throws(() => a.txRings[0]!.sync(), { instanceOf: SwitchGoneError });
  t.true(a.hungUp);
});

test('pkt-gen-ts under a killed switch prints its summary and exits 1', async (t) => {
  const socket = sockPath();
  const sw = await startSwitch(t, socket);
  const env: NodeJS.ProcessEnv = { ...process.env, NETMAP_BACKEND: 'user' };
  delete env['VALE_TS_SOCKET'];
  const pg = (args: string[]): { proc: ChildProcess; out: () => string; err: () => string; done: Promise<number> } => {
    const proc = spawn(process.execPath, [path.join(tools, 'pkt-gen-ts.js'), '--socket', socket, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout!.on('data', (d: Buffer) => (out += d));
    proc.stderr!.on('data', (d: Buffer) => (err += d));
    const done = new Promise<number>((r) => proc.once('close', (code) => r(code ?? -1)));
    t.teardown(() => {
      if (proc.exitCode === null) proc.kill('SIGKILL');
    });
    return { proc, out: () => out, err: () => err, done };
  };
  const rx = pg(['-i', 'vale0:rx', '-f', 'rx']);
  // the receiver registers first, then the sender floods; wait for frames to arrive
  const tx = pg(['-i', 'vale0:tx', '-f', 'tx', '-T', '100']);
  await new Promise<void>((resolve, reject) => {
    const check = (): void => {
      if (/main_thread \[\d+\] [1-9][\d.]* [KMG]?pps/.test(rx.err() + rx.out())) resolve();
    };
    rx.proc.stderr!.on('data', check);
    rx.proc.stdout!.on('data', check);
    void rx.done.then((c) => reject(new Error(`rx ended early (${c}): ${rx.err()}`)));
  });
  await kill(sw);
  const [rc, tc] = await Promise.all([rx.done, tx.done]);
  t.is(rc, 1, rx.err());
  t.is(tc, 1, tx.err());
  t.regex(rx.out(), /^Received \d+ packets/m, 'the receiver printed its summary');
  t.regex(tx.out(), /^Sent \d+ packets/m, 'the sender printed its summary');
  t.regex(rx.err(), /vale0:rx: the vale-ts switch at .* went away/);
  t.regex(tx.err(), /vale0:tx: the vale-ts switch at .* went away/);
});

test('vale-ctl-ts waiting on a switch that dies exits 1 and says so', async (t) => {
  ensurePackages(['iproute2']); // ss
  const socket = sockPath();
  const sw = await startSwitch(t, socket);
  // stopped, the switch accepts nothing: the request waits in its backlog
  sw.proc.kill('SIGSTOP');
  t.teardown(() => sw.proc.kill('SIGCONT'));
  const env: NodeJS.ProcessEnv = { ...process.env, NETMAP_BACKEND: 'user' };
  delete env['VALE_TS_SOCKET'];
  const ctl = new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile(process.execPath, [path.join(tools, 'vale-ctl-ts.js'), '--socket', socket], { env }, (err, _out, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stderr: String(stderr) }),
    );
  });
  // wait for its connection to be queued on the listening socket (ss: Recv-Q of a listener = pending connections)
  for (;;) {
    const line = await new Promise<string>((r) => execFile('ss', ['-xlH'], (_e, out) => r(String(out).split('\n').find((l) => l.includes(` ${socket} `)) ?? '')));
    if (Number(line.trim().split(/\s+/)[2] ?? 0) > 0) break;
    await new Promise((r) => setImmediate(r));
  }
  await kill(sw);
  const r = await ctl;
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /closed the connection without answering: it exited or was killed/);
});

test('open(name, { reconnect: true }) follows a restarted switch and counts the frames lost across the gap', async (t) => {
  const socket = sockPath();
  let sw = await startSwitch(t, socket);
  const s = await open('vale0:s', { socket, backend: 'user', reconnect: true });
  const r = await open('vale0:r', { socket, backend: 'user', reconnect: true });
  t.teardown(() => {
    s.close();
    r.close();
  });
  const reconnected = (p: Port): Promise<ReconnectEvent> => new Promise((res) => (p.onReconnect = res));
  for (let i = 0; i < 8; i++) s.inject(frame(2, i));
  s.txsync();
  t.is(await receive(r, 8), 8);
  // five frames queued but never handed over, then the switch dies
  for (let i = 0; i < 5; i++) t.true(s.inject(frame(2, 100 + i)));
  const sBack = reconnected(s);
  const rBack = reconnected(r);
  await kill(sw);
  // no error while it is away: syncs move nothing, the port waits
  t.notThrows(() => s.txsync());
  t.false(s.hungUp);
  sw = await startSwitch(t, socket);
  const [se, re] = await Promise.all([sBack, rBack]);
  t.deepEqual(se, { reconnects: 1, lostTxFrames: 5, lostRxFrames: 0 });
  t.is(re.reconnects, 1);
  t.like(s.counters(), { reconnects: 1, reconnectLostTxFrames: 5, reconnectLostRxFrames: 0 });
  // the ports exist again on the new switch, and traffic resumes
  for (let i = 0; i < 6; i++) t.true(s.inject(frame(2, 200 + i)));
  s.txsync();
  t.is(await receive(r, 6), 6);
});
