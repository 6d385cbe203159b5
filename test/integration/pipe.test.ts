import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmdirSync, rmSync, writeFileSync, unlinkSync } from 'node:fs';
import os from 'node:os';
import { open } from '../../src/netmap/open.js';
import { PIPE_DEFAULT_SLOTS, pipeDefaultSlots, pipePath } from '../../src/backends/pipe.js';
import { DEFAULT_SLOTS, MAX_SLOTS } from '../../src/netmap/abi.js';
import { parsePortName } from '../../src/netmap/name.js';

const peer = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'pipe-peer.js');
let uniq = 0;
const pname = (): string => `vale0:t${process.pid}x${uniq++}`;

function run(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [peer, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d: Buffer) => (out += d));
    c.stderr.on('data', (d: Buffer) => (err += d));
    c.on('close', (code) => resolve({ code, out, err }));
  });
}

test('a pipe created without a size has PIPE_DEFAULT_SLOTS (MAX_SLOTS) slots a ring (fewer with larger buffers); @conf:slots= and {slots} set it, and the other end takes the creator\'s', async (t) => {
  t.is(PIPE_DEFAULT_SLOTS, MAX_SLOTS);
  const cases: [string, number, number][] = [
    ['', NaN, PIPE_DEFAULT_SLOTS],
    ['@conf:slots=256', NaN, 256],
    ['', 128, 128],
  ];
  for (const [conf, slots, want] of cases) {
    const base = pname();
    const m = await open(`${base}{1${conf}`, Number.isNaN(slots) ? {} : { slots });
    const s = await open(`${base}}1`);
    t.is(m.txRings[0]!.numSlots, want, `creator ${conf || slots}`);
    t.is(m.rxRings[0]!.numSlots, want);
    t.is(s.txRings[0]!.numSlots, want, 'the other end takes the creator\'s size');
    t.is(s.rxRings[0]!.numSlots, want);
    m.close();
    s.close();
  }
  // larger buffers: a ring's buffers stay within 4096 x 2 KiB, never below 1024 slots
  t.is(pipeDefaultSlots(2048), 4096);
  t.is(pipeDefaultSlots(4096), 2048);
  t.is(pipeDefaultSlots(65536), DEFAULT_SLOTS);
  t.is(pipeDefaultSlots(64), MAX_SLOTS);
  const base = pname();
  const big = await open(`${base}{1`, { bufSize: 8192 });
  t.is(big.txRings[0]!.numSlots, 1024);
  big.close();
});

test('pipe ends in one process swap buffers, in order, without copying', async (t) => {
  const base = pname();
  const m = await open(`${base}{1`, { slots: 64 });
  const s = await open(`${base}}1`);
  t.is(m.backend, 'user');
  t.is(m.transport, 'pipe');
  const tx = m.txRings[0]!;
  const rx = s.rxRings[0]!;
  t.is(tx.numSlots, 64);
  t.is(tx.space(), 63, 'one slot always stays free');
  const sent: number[] = [];
  for (let i = 0; i < 10; i++) {
    const h = tx.head;
    sent.push(tx.bufIdx(h));
    tx.bytes[tx.bufOffset(h)] = i;
    tx.setLen(h, 60 + i);
    tx.advance(1);
  }
  m.txsync();
  t.is(tx.space(), 63, 'all 10 moved, room is back');
  s.rxsync();
  t.is(rx.space(), 10);
  for (let i = 0; i < 10; i++) {
    const h = (rx.head + i) % rx.numSlots;
    t.is(rx.len(h), 60 + i);
    t.is(rx.bytes[rx.bufOffset(h)], i);
    t.is(rx.bufIdx(h), sent[i], 'the rx slot carries the very buffer the sender filled');
  }
  rx.advance(10);
  s.rxsync();
  t.true(rx.empty());
  m.close();
  s.close();
  t.false(existsSync(pipePath(parsePortName(`${base}{1`))), 'last close removes the region');
});

test('a full peer rx ring holds frames pending in tx, none lost', async (t) => {
  const base = pname();
  const m = await open(`${base}{2`, { slots: 8 });
  const s = await open(`${base}}2`);
  const tx = m.txRings[0]!;
  const rx = s.rxRings[0]!;
  let seq = 0;
  let got = 0;
  for (let round = 0; round < 50; round++) {
    while (!tx.empty()) {
      tx.bytes[tx.bufOffset(tx.head)] = seq++ & 0xff;
      tx.setLen(tx.head, 60);
      tx.advance(1);
    }
    m.txsync();
    s.rxsync();
    // consume only some, leaving the ring partly full
    const n = Math.min(rx.space(), 3);
    for (let i = 0; i < n; i++) {
      t.is(rx.bytes[rx.bufOffset(rx.head)], got++ & 0xff);
      rx.advance(1);
    }
    s.rxsync();
  }
  // drain
  for (let i = 0; i < 100 && got < seq; i++) {
    m.txsync();
    s.rxsync();
    while (!rx.empty()) {
      t.is(rx.bytes[rx.bufOffset(rx.head)], got++ & 0xff);
      rx.advance(1);
    }
    s.rxsync();
  }
  t.is(got, seq);
  m.close();
  s.close();
});

test('ring misuse is caught at sync time with a clear error', async (t) => {
  const base = pname();
  const m = await open(`${base}{3`, { slots: 16, checkSlots: true });
  const tx = m.txRings[0]!;
  tx.head = 15; // beyond tail (14)
  t.throws(() => m.txsync(), { message: /head 15 .* outside the user's part/ });
  t.is(tx.head, 0, 'head reset to the last synced value');
  tx.setBufIdx(0, 1_000_000);
  tx.advance(1);
  t.throws(() => m.txsync(), { message: /buffer index 1000000, outside the pool/ });
  tx.setBufIdx(0, 5);
  tx.setLen(0, 4000);
  tx.advance(1);
  t.throws(() => m.txsync(), { message: /length 4000, over the 2048-byte buffer/ });
  tx.head = 3;
  tx.cur = 2;
  t.throws(() => m.txsync(), { message: /cur 2 outside/ });
  m.close();
});

test('each pipe end opens once (EBUSY)', async (t) => {
  const base = pname();
  const m = await open(`${base}{4`);
  await t.throwsAsync(open(`${base}{4`), { code: 'EBUSY', message: /already open/ });
  m.close();
});

// Serial, in a directory of its own (NETMAP_PIPE_DIR, read at each open;
// concurrent tests start only after the serial ones): a failed open leaves
// its region file with no end holding it, stale by design, and any pipe
// created meanwhile in /dev/shm (another test, another process) sweeps it
// with the doorbell paths beside it: the .s file this test put there and
// unlinks after would be gone (unlink: ENOENT), or gone before the open that
// must refuse it.
test.serial('a doorbell that cannot be opened fails the open cleanly: clear error, nothing held, the next open succeeds at once', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pipe-doorbell-'));
  const before = process.env['NETMAP_PIPE_DIR'];
  process.env['NETMAP_PIPE_DIR'] = dir;
  try {
    await doorbellCannotBeOpened(t);
  } finally {
    if (before === undefined) delete process.env['NETMAP_PIPE_DIR'];
    else process.env['NETMAP_PIPE_DIR'] = before;
    rmSync(dir, { recursive: true, force: true });
  }
});

async function doorbellCannotBeOpened(t: ExecutionContext): Promise<void> {
  const base = pname();
  const region = pipePath(parsePortName(`${base}{5`));
  // something other than a FIFO where the master's doorbell goes
  mkdirSync(region + '.m');
  const e = await t.throwsAsync(open(`${base}{5`), { code: 'EISDIR', message: /doorbell FIFO .*\.m.*remove .*\.m/ });
  t.is((e as NodeJS.ErrnoException).syscall, 'open');
  t.true(e!.message.includes(region + '.m'), 'the message names the path');
  rmdirSync(region + '.m');
  // the failed open left no flock, lock or fd behind: this would block in flock otherwise
  const m = await open(`${base}{5`);
  const s = await open(`${base}}5`);
  t.is(m.txRings.length, 1);
  s.close();
  m.close();
  t.false(existsSync(region), 'last close removes the region');

  // a regular file there is refused as well (open(2) alone would accept it)
  writeFileSync(region + '.s', '');
  await t.throwsAsync(open(`${base}{5`), { code: 'EEXIST', message: /is not a FIFO.*remove/ });
  unlinkSync(region + '.s');
  const again = await open(`${base}{5`);
  again.close();
  t.deepEqual(readdirSync(path.dirname(region)), [], 'nothing left');
}

test('10 million frames of varying length cross a pipe between two processes, intact and in order', async (t) => {
  const name = pname();
  const count = 10_000_000;
  const rx = run([`${name}}9`, 'rx', String(count)]);
  const tx = run([`${name}{9`, 'tx', String(count)]);
  const [r, s] = await Promise.all([rx, tx]);
  t.is(s.code, 0, s.err);
  t.is(r.code, 0, r.err);
  const res = JSON.parse(r.out) as { received: number; bad: number; firstBad: string };
  t.deepEqual(JSON.parse(s.out), { sent: count });
  t.is(res.received, count);
  t.is(res.bad, 0, res.firstBad);
});

test('closing one end is seen by the other; so is a peer killed with SIGKILL', async (t) => {
  const name = pname();
  const s = await open(`${name}}5`);
  t.false(s.hungUp, 'no peer yet is not a hang-up');
  const child = run([`${name}{5`, 'tx', '10']);
  t.true((await s.poll()).rx, 'frames came');
  await child;
  const ev = await s.poll({ rx: false }); // returns on the hang-up
  t.true(ev.hup, 'clean close seen');
  s.close();

  const name2 = pname();
  const s2 = await open(`${name2}}6`);
  const c = spawn(process.execPath, [peer, `${name2}{6`, 'tx', '5', 'linger'], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((res) => c.stdout.once('data', () => res()));
  t.false(s2.hungUp);
  c.kill('SIGKILL');
  const ev2 = await s2.poll({ rx: false });
  t.true(ev2.hup, 'death seen');
  s2.close();
  // the name is reusable at once
  const again = await open(`${name2}{6`);
  again.close();
});

test('a process that exits with a pipe port still open (and a poll done) exits cleanly', async (t) => {
  const name = pname();
  const script = `
    import { open } from ${JSON.stringify(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'netmap', 'open.js'))};
    const tx = await open('${name}{7'); const rx = await open('${name}}7');
    tx.inject(new Uint8Array(60)); tx.txsync(); tx.close();
    await rx.poll({ timeoutMs: 50 }); await rx.poll({ timeoutMs: 50 });
    console.log('end');`;
  const res = await new Promise<{ code: number | null; signal: string | null; out: string }>((resolve) => {
    const c = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d));
    c.on('close', (code, signal) => resolve({ code, signal, out }));
  });
  t.is(res.out.trim(), 'end');
  t.is(res.signal, null, 'no crash in the finalizers at exit');
  t.is(res.code, 0);
  t.false(existsSync(pipePath(parsePortName(`${name}{7`))), 'the region went with the last end');
});

test('without checkSlots a bad slot reaches the other side, which drops and counts it', async (t) => {
  const base = pname();
  const m = await open(`${base}{4`, { slots: 16 });
  const s = await open(`${base}}4`);
  const tx = m.txRings[0]!;
  tx.setBufIdx(0, 1_000_000);
  tx.setLen(0, 60);
  tx.setLen(1, 61);
  tx.advance(2);
  t.notThrows(() => m.txsync(), 'the prologue walks no slot by default');
  t.is(m.counters()['invalidSlots'], 1, 'the pipe refused the bad slot');
  s.rxsync();
  const lens: number[] = [];
  s.dispatch(16, (f) => lens.push(f.length));
  t.deepEqual(lens, [61], 'only the good frame crossed');
  tx.head = 15;
  t.throws(() => m.txsync(), { message: /outside the user's part/ }, 'head/cur checks always run');
  m.close();
  s.close();
});

test('a pipe whose ends both died without closing leaves no files once another pipe is made: a live end\'s files stay', async (t) => {
  // a directory of its own, so what is swept is only what this test made
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pipe-sweep-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const env = { ...process.env, NETMAP_PIPE_DIR: dir };
  const openJs = JSON.stringify(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'netmap', 'open.js'));
  const node = (script: string): Promise<number | null> =>
    new Promise((resolve) => {
      const c = spawn(process.execPath, ['--input-type=module', '-e', script], { env, stdio: ['ignore', 'inherit', 'inherit'] });
      c.on('close', (code) => resolve(code));
    });
  const files = (): string[] => readdirSync(dir).sort();
  const name = pname();
  // both ends in one process that exits without closing them (as a killed one would)
  t.is(await node(`import { open } from ${openJs}; const a = await open('${name}{1'); const b = await open('${name}}1'); a.inject(new Uint8Array(60)); a.txsync(); process.exit(0);`), 0);
  const dead = pipePath(parsePortName(`${name}{1`));
  t.deepEqual(files(), [path.basename(dead), path.basename(dead) + '.m', path.basename(dead) + '.s'], 'the dead pair left its files');
  // one end alive in another process (its peer never came): not stale
  const live = spawn(process.execPath, [peer, `${name}{2`, 'tx', '1', 'linger'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => live.kill('SIGKILL'));
  await new Promise<void>((res) => live.stdout.once('data', () => res()));
  const liveFile = path.basename(pipePath(parsePortName(`${name}{2`)));
  t.true(files().includes(liveFile));
  // making another pipe sweeps the dead pair's files, not the live end's
  t.is(await node(`import { open } from ${openJs}; const a = await open('${name}{3'); a.close();`), 0);
  t.deepEqual(files(), [liveFile, liveFile + '.m', liveFile + '.s'], 'only the live end\'s files are left');
  // once that end is killed its files are stale too
  live.kill('SIGKILL');
  await new Promise<void>((res) => (live.exitCode !== null || live.signalCode !== null ? res() : live.once('close', () => res())));
  t.is(await node(`import { open } from ${openJs}; const a = await open('${name}{4'); a.close();`), 0);
  t.deepEqual(files(), [], 'nothing left');
});

test('a peer that came, sent and closed before this end looked is a hang-up, not a peer that never came', async (t) => {
  const name = pname();
  const s = await open(`${name}}8`);
  t.teardown(() => s.close());
  t.is(s.peer, 'closed', 'no peer yet');
  t.false(s.hungUp, 'a peer that never came is no hang-up');
  // the whole life of the other end happens before this one looks again
  const child = await run([`${name}{8`, 'tx', '3']);
  t.is(child.code, 0, child.err);
  t.true(s.hungUp, 'the peer came and left');
  const ev = await s.poll({ rx: true });
  t.true(ev.rx, 'its frames are there');
  t.true(ev.hup, 'and its leaving is seen at once, with no kick left to wake on');
});
