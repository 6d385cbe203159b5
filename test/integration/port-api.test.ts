/**
 * Port API for users' own loops: the allocation-free receive, the wait
 * handle (fd, prepareWait, finishWait), and open() imported from its own
 * module for every kind of name.
 */
import test from 'ava';
import os from 'node:os';
import path from 'node:path';
import { open } from '../../src/netmap/open.js';
import { Port } from '../../src/netmap/port.js';
import { ValeServer } from '../../src/vale/server.js';
import { native } from '../../src/netmap/addon.js';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const pktgen = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'tools', 'pkt-gen-ts.js');

let uniq = 0;
const pname = (): string => `vale0:pa${process.pid}x${uniq++}`;

function send(p: Awaited<ReturnType<typeof open>>, n: number, from = 0): void {
  for (let i = 0; i < n; i++) {
    const f = new Uint8Array(60 + i);
    f[0] = from + i;
    if (!p.inject(f)) throw new Error('tx ring full');
  }
  p.txsync();
}

test('receive() fills offsets and lengths, releases the slots, and stops at the arrays\' length', async (t) => {
  const base = pname();
  const a = await open(`${base}{1`, { slots: 64 });
  const b = await open(`${base}}1`);
  send(a, 10);
  b.rxsync();
  const offs = new Uint32Array(4);
  const lens = new Uint16Array(8);
  const bytes = new Uint8Array(b.memory);
  let n = b.receive(offs, lens);
  t.is(n, 4, 'no more than the shorter array holds');
  t.deepEqual([...lens.subarray(0, 4)], [60, 61, 62, 63]);
  t.deepEqual([...offs].map((o) => bytes[o]), [0, 1, 2, 3]);
  t.is(b.rxAvailable(), 6, 'the four slots were released');
  const offs2 = new Uint32Array(16);
  const lens2 = new Uint16Array(16);
  n = b.receive(offs2, lens2);
  t.is(n, 6);
  t.deepEqual([...offs2.subarray(0, 6)].map((o) => bytes[o]), [4, 5, 6, 7, 8, 9]);
  t.is(b.receive(offs2, lens2), 0, 'nothing left until the next rxsync');
  b.rxsync();
  t.is(b.rxAvailable(), 0);
  a.close();
  b.close();
});

test('the wait handle: prepareWait, sleep on fd in a loop of our own, finishWait', async (t) => {
  const base = pname();
  const a = await open(`${base}{1`);
  const b = await open(`${base}}1`);
  t.true(b.fd >= 0);
  const events = b.prepareWait({ rx: true });
  t.is(events & 1, 1, 'wait for readable');
  b.rxsync();
  t.is(b.rxAvailable(), 0);
  // our own poll loop: a libuv watcher on b.fd (any event library would do)
  const woke = new Promise<void>((resolve) => {
    const w = new native.FdWatcher(b.fd, () => {
      w.close();
      resolve();
    });
    w.start(events);
  });
  send(a, 3);
  await woke;
  b.finishWait();
  b.rxsync();
  t.is(b.rxAvailable(), 3);
  t.is(b.peer, 'open');
  a.close();
  t.is(b.peer, 'closed', 'the peer closed cleanly');
  b.close();
  t.throws(() => b.prepareWait(), { message: /port is closed/ });
});

test('pollSync: blocks this thread on the doorbell until a frame from another process wakes it', async (t) => {
  t.timeout(60_000); // hang guard only
  const base = pname();
  const b = await open(`${base}}1`);
  t.deepEqual(b.pollSync({ rx: true, timeoutMs: 0 }), { rx: false, tx: false, hup: false }, 'nothing sent: no events');
  const tx = spawn(process.execPath, [pktgen, '-i', `${base}{1`, '-f', 'tx', '-n', '100', '-l', '60'], { stdio: 'ignore' });
  const exited = new Promise<number | null>((r) => tx.on('exit', r));
  let ev = { rx: false, tx: false, hup: false };
  // slices of at most 200 ms; the event loop turns between them
  while (!ev.rx) {
    ev = b.pollSync({ rx: true, spinUs: 0 });
    if (!ev.rx) await new Promise((r) => setImmediate(r));
  }
  t.true(b.rxAvailable() > 0, 'woken with frames in the ring');
  let got = 0;
  while (got < 100) {
    got += b.rxAvailable();
    for (const r of b.rxRings) r.advance(r.space());
    b.rxsync();
    if (got < 100 && b.rxAvailable() === 0) b.pollSync({ rx: true, spinUs: 0 });
    await new Promise((r) => setImmediate(r));
  }
  t.is(got, 100);
  t.is(await exited, 0);
  b.close();
  t.throws(() => b.pollSync(), { message: /port is closed/ });
});

test('waitSync: the allocation-free wait returns RX / TX / HUP bits, 0 on timeout', async (t) => {
  t.timeout(60_000); // hang guard only
  const base = pname();
  const b = await open(`${base}}1`);
  t.is(b.waitSync(true, false, 0), 0, 'nothing sent: no bits');
  t.is(b.waitSync(false, true, 0) & Port.TX, Port.TX, 'an empty tx ring has room');
  const tx = spawn(process.execPath, [pktgen, '-i', `${base}{1`, '-f', 'tx', '-n', '100', '-l', '60'], { stdio: 'ignore' });
  const exited = new Promise<number | null>((r) => tx.on('exit', r));
  let ev = 0;
  while (!(ev & Port.RX)) {
    ev = b.waitSync(true, false, 200);
    if (!(ev & Port.RX)) await new Promise((r) => setImmediate(r));
  }
  t.is(ev & Port.TX, 0, 'TX only when asked for');
  t.true(b.rxAvailable() > 0, 'woken with frames in the ring');
  let got = 0;
  while (got < 100) {
    got += b.rxAvailable();
    for (const r of b.rxRings) r.advance(r.space());
    b.rxsync();
    if (got < 100 && b.rxAvailable() === 0) b.waitSync(true, false, 200);
    await new Promise((r) => setImmediate(r));
  }
  t.is(got, 100);
  t.is(await exited, 0);
  b.close();
  t.throws(() => b.waitSync(true, false, 0), { message: /port is closed/ });
});

test('open() from src/netmap/open.js serves vale names too (no registration needed)', async (t) => {
  const socket = path.join(os.tmpdir(), `pa-${process.pid}-${uniq++}.sock`);
  const srv = await ValeServer.listen({ socket });
  try {
    const p = await open('vale0:1', { socket, backend: 'user' });
    t.is(p.transport, 'vale-ts');
    t.is(p.backend, 'user');
    p.close();
  } finally {
    srv.close();
  }
  const k = await t.throwsAsync(open('netmap:eth0', { backend: 'kernel' }));
  t.notRegex(k!.message, /not available in this build/);
});
