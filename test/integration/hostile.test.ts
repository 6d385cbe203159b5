/**
 * Hostile clients against an in-process vale-ts: what a client controls
 * (names, fds, geometry, rings, heads, draining) must never crash, stall,
 * leak into another client, or go uncounted. The multi-process attacks
 * (fd exhaustion, memory cycles, doorbell floods, other users) are in
 * hostile-proc.test.ts.
 */
import test from 'ava';
import { once } from 'node:events';
import { execFile } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { rmSync } from 'node:fs';
import { open, Switch, ValeServer, ValeClient, ManualClock, type Port } from '../../src/index.js';
import { native } from '../../src/netmap/addon.js';
import { ControlConnection, requestOnce } from '../../src/control/client.js';
import { encodeMessage, MAX_MESSAGE, PROTOCOL_VERSION, type Reply, type RegisterRequest } from '../../src/control/protocol.js';
import { parsePortName } from '../../src/netmap/name.js';
import { NR_MONITOR_RX, NR_MONITOR_TX } from '../../src/netmap/abi.js';
import { registerPortKind } from '../../src/ports/index.js';
import { receiveTags as receive } from '../fixtures/tagged-frames.js';
import { until } from '../fixtures/wait.js';
import { formatStats } from '../../tools/vale-ctl/vale-ctl.js';

let uniq = 0;
const sockPath = (): string => path.join(os.tmpdir(), `hostile-${process.pid}-${uniq++}.sock`);

async function withServer<T>(fn: (socket: string, srv: ValeServer) => Promise<T>, opts: Partial<Parameters<typeof ValeServer.listen>[0]> = {}): Promise<T> {
  const socket = sockPath();
  const logs: string[] = [];
  const srv = await ValeServer.listen({ socket, log: (l) => logs.push(l), ...opts });
  try {
    return await fn(socket, srv);
  } finally {
    srv.close();
  }
}

function frame(dst: number[], src: number[], tag = 0): Uint8Array {
  const f = new Uint8Array(60);
  f.set(dst, 0);
  f.set(src, 6);
  f[12] = 0x08;
  f[14] = tag;
  return f;
}
const BCAST = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
const A = [2, 0, 0, 0, 0, 0xa];
const B = [2, 0, 0, 0, 0, 0xb];

async function register(socket: string, req: Partial<RegisterRequest> & { name: string }): Promise<{ reply: Reply; fds: number[]; conn: ControlConnection }> {
  const conn = ControlConnection.connect(socket);
  const { reply, fds } = await conn.request({ v: PROTOCOL_VERSION, op: 'register', nrMode: 1, ringId: 0, flags: 0, conf: {}, ...req });
  return { reply, fds, conn };
}

function closeAll(r: { fds: number[]; conn: ControlConnection }): void {
  for (const f of r.fds) native.close(f);
  r.conn.close();
}

test('an exception thrown by an fd callback is counted and logged, never fatal', async (t) => {
  const fd = native.eventfd();
  const before = native.callbackErrors();
  let calls = 0;
  const w = new native.FdWatcher(fd, () => {
    calls++;
    native.drain(fd);
    throw new Error('hostile callback');
  });
  w.start(1);
  native.kick(fd);
  while (native.callbackErrors() === before) await new Promise((r) => setImmediate(r));
  native.kick(fd);
  while (native.callbackErrors() < before + 2) await new Promise((r) => setImmediate(r));
  t.is(calls, 2, 'the watcher kept serving after the first throw');
  w.close();
  native.close(fd);
});

test('names: vale0:.. is refused; @conf in a register name is applied, a conflicting conf refused; ring and flag suffixes refused', async (t) => {
  t.throws(() => parsePortName('vale0:..'), { message: /\.\./ });
  t.throws(() => parsePortName('vale0:.'), { message: /\./ });
  await withServer(async (socket) => {
    const r = await register(socket, { name: 'vale0:a@conf:rings=16' });
    t.true(r.reply.ok, JSON.stringify(r.reply));
    if (r.reply.ok && r.reply.op === 'register') {
      t.is(r.reply.txRings, 16, '@conf applied');
      t.is(r.reply.rxRings, 16);
    }
    closeAll(r);
    const bad = await register(socket, { name: 'vale0:b@conf:rings=2', conf: { txRings: 4 } });
    t.false(bad.reply.ok);
    if (!bad.reply.ok) t.regex(bad.reply.error, /@conf says txRings 2 but the request's conf says 4/);
    closeAll(bad);
    for (const name of ['vale0:c-1', 'vale0:c/x', 'vale0:c@3', 'vale0:..']) {
      const x = await register(socket, { name });
      t.false(x.reply.ok, name);
      if (!x.reply.ok) t.is(x.reply.code, 'EINVAL', name);
      closeAll(x);
    }
  });
});

test('a message carrying 250 fds is refused as such (not as an oversized message), and the fds are not kept', async (t) => {
  await withServer(async (socket) => {
    const script = `
import socket, os, json, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.connect(sys.argv[1])
fds = [os.open('/dev/null', os.O_RDONLY) for _ in range(250)]
socket.send_fds(s, [json.dumps({"v": 1, "op": "list"}).encode()], fds)
print(s.recv(65536).decode())
`;
    const out = await new Promise<string>((resolve, reject) =>
      execFile('python3', ['-c', script, socket], (err, stdout, stderr) => (err ? reject(new Error(stderr || err.message)) : resolve(stdout))),
    );
    const reply = JSON.parse(out) as { ok: boolean; code: string; error: string };
    t.false(reply.ok);
    t.is(reply.code, 'EPROTO');
    t.regex(reply.error, /file descriptors \(more than 8\): clients send none/);
    t.notRegex(reply.error, /longer than/);
  });
});

test('stats with 10 000 MACs: one message, the first entries and the count; pages reach the rest; vale-ctl shows the count', async (t) => {
  const sw = new Switch('vale0', { macTableSize: 16384 });
  await withServer(
    async (socket) => {
      const tx = await open('vale0:tx', { socket, slots: 4096 });
      const rx = await open('vale0:rx', { socket, slots: 4096 });
      const f = frame(BCAST, [2, 0, 0, 0, 0, 0]);
      for (let i = 0; i < 10_000; i++) {
        f[9] = (i >> 16) & 0xff;
        f[10] = (i >> 8) & 0xff;
        f[11] = i & 0xff;
        while (!tx.inject(f)) {
          tx.txsync();
          await tx.poll({ tx: true, rx: false, timeoutMs: 5000 });
        }
        if ((i & 255) === 255) tx.txsync();
      }
      tx.txsync();
      // the switch learns as it forwards, in this event loop; the flood is drained meanwhile
      await until(() => {
        rx.dispatch(1e9, () => {});
        rx.rxsync();
        return sw.bridge!.table.size >= 10_000;
      });
      const r = await requestOnce(socket, { v: PROTOCOL_VERSION, op: 'stats' });
      t.true(r.ok);
      if (!r.ok || r.op !== 'stats') return;
      const s = r.switches[0]!;
      t.is(s.macTableTotal, 10_000);
      t.true(s.macTable.length > 0 && s.macTable.length <= 256);
      t.true(encodeMessage(r).length <= MAX_MESSAGE);
      const last = await requestOnce(socket, { v: PROTOCOL_VERSION, op: 'stats', macOffset: 9_990, macLimit: 100 });
      if (last.ok && last.op === 'stats') t.is(last.switches[0]!.macTable.length, 10);
      // asking for all of them is cut to what fits, never an error
      const all = await requestOnce(socket, { v: PROTOCOL_VERSION, op: 'stats', macLimit: 100_000 });
      t.true(all.ok);
      if (all.ok && all.op === 'stats') t.true(all.switches[0]!.macTable.length < 10_000);
      t.regex(formatStats(r.switches), /MAC table: 10000 entries, showing the first \d+/);
      tx.close();
      rx.close();
    },
    { switches: [sw] },
  );
});

/**
 * A lossless sender (tx) flooding TOTAL broadcasts, a receiver (idle) whose
 * 63-slot ring fills, and a probe path c -> d beside them: a frame c sends
 * to D that reaches d proves the switch ran a round (and read its clock)
 * after whatever the test did before sending it, so "nothing happened" is
 * then a fact, not a guess.
 */
async function losslessStallRig(socket: string, sw: Switch) {
  const pc = await open('vale0:c', { socket, slots: 2048 });
  const pd = await open('vale0:d', { socket, slots: 2048 });
  const C = [2, 0, 0, 0, 0, 0xc];
  const D = [2, 0, 0, 0, 0, 0xd];
  pd.inject(frame(C, D, 0)); // d's MAC learnt; only c hears this flood (idle and tx do not exist yet)
  pd.txsync();
  await receive(pc, 1);
  const rounds = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++) {
      pc.inject(frame(D, C, i));
      pc.txsync();
      await receive(pd, 1);
    }
  };
  // room for every broadcast of the run at c and d, undrained: only idle may hold the sender up
  const idle = await open('vale0:idle', { socket, slots: 64 });
  const tx = await open('vale0:tx', { socket, lossless: true, slots: 256 });
  const TOTAL = 1000;
  let sent = 0;
  const pump = async (): Promise<void> => {
    while (sent < TOTAL) {
      while (sent < TOTAL && tx.inject(frame(BCAST, A, sent & 0xff))) sent++;
      tx.txsync();
      if (sent < TOTAL) await tx.poll({ tx: true, rx: false, timeoutMs: 100 });
    }
  };
  const sending = pump();
  const idx = sw.port('vale0:idle')!.index;
  const txIdx = sw.port('vale0:tx')!.index;
  // the idle receiver's ring fills (63 slots), then the sender waits
  await until(() => (sw.counters(idx)['txFrames'] ?? 0) >= 63);
  const close = (): void => {
    for (const p of [idle, tx, pc, pd]) p.close();
  };
  return { TOTAL, rounds, idle, tx, sending, idx, txIdx, close };
}

test('lossless: a receiver that stops draining is declared stalled after the bound (by the switch clock); its copies are dropped and counted', async (t) => {
  const clock = new ManualClock();
  const sw = new Switch('vale0', { clock, stallMs: 1000 });
  await withServer(
    async (socket) => {
      const { TOTAL, rounds, idle, tx, sending, idx, txIdx, close } = await losslessStallRig(socket, sw);
      const taken = sw.counters(txIdx)['rxFrames'];
      await rounds(3); // several blocked rounds: no time has passed on the switch clock
      t.is(sw.switchCounters().stalls, 0, 'not stalled before the bound');
      t.is(sw.counters(txIdx)['rxFrames'], taken, 'the lossless sender waits');
      const stalled = once(sw, 'stalled');
      clock.advance(999);
      await rounds(2); // rounds that read the clock after the advance
      t.is(sw.switchCounters().stalls, 0, 'still within the bound');
      t.is(sw.counters(txIdx)['rxFrames'], taken, 'the lossless sender still waits');
      clock.advance(2);
      const [p] = (await stalled) as [{ name: string }];
      t.is(p.name, 'vale0:idle');
      await sending;
      await until(() => (sw.counters(txIdx)['rxFrames'] ?? 0) >= TOTAL);
      const c = sw.counters(idx);
      t.is(c['txFrames'], 63);
      t.is((c['txFrames'] ?? 0) + (c['dropStalled'] ?? 0), TOTAL, 'every copy delivered or counted as dropStalled');
      // it drains: no longer stalled, lossless again
      t.deepEqual((await receive(idle, 63)).length, 63);
      for (let i = 0; i < 10; i++) tx.inject(frame(BCAST, A, 200));
      tx.txsync();
      t.is((await receive(idle, 10)).length, 10);
      t.is(sw.counters(idx)['dropStalled'], TOTAL - 63);
      t.is(sw.counters(idx)['txFrames'], 63 + 10, 'idle got only what tx sent: the c-d frames were unicast');
      close();
    },
    { switches: [sw] },
  );
});

test('lossless: a receiver taking one frame now and then, under the hold quantum per stall bound, is still declared stalled: it cannot hold the sender to its pace', async (t) => {
  const clock = new ManualClock();
  const sw = new Switch('vale0', { clock, stallMs: 1000 });
  await withServer(
    async (socket) => {
      const { TOTAL, rounds, idle, sending, idx, txIdx, close } = await losslessStallRig(socket, sw);
      const stalled = once(sw, 'stalled');
      // a frame taken every 600 ms of the switch's clock: each one lets the
      // sender deliver one more, which was progress enough for the old rule
      for (let i = 1; i <= 2; i++) {
        clock.advance(600);
        idle.rxsync(); // sees what the switch delivered
        t.is(idle.dispatch(1, () => {}), 1, 'one frame taken (its ring is full)');
        idle.rxsync(); // releases that one slot
        await until(() => (sw.counters(idx)['txFrames'] ?? 0) >= 63 + i || sw.switchCounters().stalls > 0);
        await rounds(2); // blocked rounds that read the clock after the delivery
      }
      t.is(sw.switchCounters().stalls, 1, 'two frames in 1200 ms is under the quantum per bound: stalled');
      const [p] = (await stalled) as [{ name: string }];
      t.is(p.name, 'vale0:idle');
      await sending;
      await until(() => (sw.counters(txIdx)['rxFrames'] ?? 0) >= TOTAL);
      const c = sw.counters(idx);
      t.is((c['txFrames'] ?? 0) + (c['dropStalled'] ?? 0), TOTAL, 'every copy delivered or counted as dropStalled');
      close();
    },
    { switches: [sw] },
  );
});

test('lossless: a stalled receiver taking one frame is not waited for again until it has taken a quantum (a slot just after each stall would hold the sender a stall bound per frame)', async (t) => {
  const clock = new ManualClock();
  const sw = new Switch('vale0', { clock, stallMs: 1000 });
  await withServer(
    async (socket) => {
      const { TOTAL, rounds, idle, tx, sending, idx, txIdx, close } = await losslessStallRig(socket, sw);
      t.teardown(close);
      const stalled = once(sw, 'stalled');
      clock.advance(1001);
      await stalled;
      await sending;
      await until(() => (sw.counters(txIdx)['rxFrames'] ?? 0) >= TOTAL);
      // the attack: one slot taken right after the stall, its ring full again at once
      idle.rxsync();
      t.is(idle.dispatch(1, () => {}), 1);
      idle.rxsync();
      for (let i = 0; i < 10; i++) t.true(tx.inject(frame(BCAST, A, i)));
      tx.txsync();
      await rounds(2); // rounds that took tx's frames (published before the probe), or left them waiting
      t.is(sw.counters(txIdx)['rxFrames'], TOTAL + 10, 'the sender does not wait for a receiver that took one frame since its stall');
      t.is(sw.counters(idx)['dropStalled'], TOTAL - 63 + 9, 'one copy took the slot, the other nine are counted');
      t.is(sw.switchCounters().stalls, 1);
      // a receiver that drains (64 slots with the first) is waited for again, losslessly
      t.is((await receive(idle, 63)).length, 63);
      for (let i = 0; i < 70; i++) t.true(tx.inject(frame(BCAST, A, i)));
      tx.txsync();
      await until(() => (sw.counters(idx)['txFrames'] ?? 0) >= 64 + 63);
      await rounds(2);
      t.is(sw.counters(txIdx)['rxFrames'], TOTAL + 10 + 63, 'the sender waits for room again: 63 fitted, 7 wait');
      t.is(sw.counters(idx)['dropStalled'], TOTAL - 63 + 9, 'nothing more dropped');
    },
    { switches: [sw] },
  );
});

test('badHead counts each impossible index once, however many syncs read it', async (t) => {
  const sw = new Switch('vale0');
  await withServer(
    async (socket) => {
      const a = await open('vale0:evil', { socket });
      const b = await open('vale0:good', { socket });
      const c = await open('vale0:other', { socket });
      const ring = a.txRings[0]!;
      ring.head = ring.cur = 5000;
      a.backendObject.txsync(0);
      // other traffic makes the switch run many rounds over the bad ring
      for (let i = 0; i < 20; i++) {
        c.inject(frame(BCAST, B, i));
        c.txsync();
        await receive(b, 1);
      }
      const idx = sw.port('vale0:evil')!.index;
      t.is(sw.counters(idx)['badHead'], 1);
      ring.head = ring.cur = 5001;
      a.backendObject.txsync(0);
      c.inject(frame(BCAST, B, 99));
      c.txsync();
      await receive(b, 1);
      t.is(sw.counters(idx)['badHead'], 2, 'a new impossible value is a new publication');
      a.close();
      b.close();
      c.close();
    },
    { switches: [sw] },
  );
});

test.serial('limits: a huge region, too many ports per client, a full switch: refused before allocating, naming the limit and its option', async (t) => {
  await withServer(
    async (socket, srv) => {
      const huge = await register(socket, { name: 'vale0:huge', extraBufs: 1 << 20 });
      t.false(huge.reply.ok);
      if (!huge.reply.ok) {
        t.is(huge.reply.code, 'ENOMEM');
        t.regex(huge.reply.error, /--max-port-memory/);
      }
      closeAll(huge);
      t.is(native.liveMappings().count, 0, 'nothing mapped for it');
      const held: Awaited<ReturnType<typeof register>>[] = [];
      for (let i = 0; i < 3; i++) held.push(await register(socket, { name: `vale0:p${i}` }));
      const over = await register(socket, { name: 'vale0:p3' });
      t.false(over.reply.ok);
      if (!over.reply.ok) t.regex(over.reply.error, /--max-ports-per-client|--max-ports-per-switch/);
      closeAll(over);
      const s = srv.serverCounters();
      t.is(s.refusedMemoryLimit, 1);
      t.is(s.refusedPortLimit, 1);
      for (const h of held) closeAll(h);
    },
    { limits: { maxPortsPerClient: 3, maxPortMemory: 64 << 20 } },
  );
});

test.serial('limits: a monitor is a region and a switch slot like a port: counted against --max-memory and --max-ports-per-uid, refused before allocating, its opener\'s and orphaned ones alike', async (t) => {
  const mon = (name: string, flags = NR_MONITOR_RX | NR_MONITOR_TX) => (socket: string) => register(socket, { name, flags });
  const size = (r: { reply: Reply }): number => (r.reply.ok && r.reply.op === 'register' ? r.reply.memsize : NaN);
  // the sizes of a port and of a monitor of it (/rt: two rx rings of copies)
  const [portSize, monSize] = await withServer(async (socket) => {
    const w = await register(socket, { name: 'vale0:x2w' });
    const m = await mon('vale0:x2w')(socket);
    const s = [size(w), size(m)];
    closeAll(m);
    closeAll(w);
    return s;
  });
  t.true(portSize > 0 && monSize > 0);
  // memory: room for the port, not for the port and a monitor
  await withServer(
    async (socket, srv) => {
      const w = await register(socket, { name: 'vale0:x2w' });
      t.true(w.reply.ok);
      const before = native.liveMappings().count;
      const m = await mon('vale0:x2w')(socket);
      t.false(m.reply.ok, 'a monitor over --max-memory was opened');
      if (!m.reply.ok) {
        t.is(m.reply.code, 'ENOMEM');
        t.regex(m.reply.error, /--max-memory/);
      }
      closeAll(m);
      t.is(native.liveMappings().count, before, 'nothing mapped for it');
      t.is(srv.serverCounters().refusedMemoryLimit, 1);
      closeAll(w);
    },
    { limits: { maxMemory: portSize + monSize - 1 } },
  );
  // ports of one uid: a monitor is one of them, also once the port it
  // watched is gone (a monitor outlives its port: watching a port, closing
  // it and opening it again must not gather monitors without end)
  await withServer(
    async (socket, srv) => {
      const keep = await register(socket, { name: 'vale0:x2keep' }); // the switch stays
      const w = await register(socket, { name: 'vale0:x2w' });
      const m1 = await mon('vale0:x2w', NR_MONITOR_RX)(socket);
      t.true(m1.reply.ok);
      closeAll(w);
      while (srv.switch('vale0')!.port('vale0:x2w')) await new Promise((r) => setImmediate(r));
      const w2 = await register(socket, { name: 'vale0:x2w' });
      t.true(w2.reply.ok, 'a port, the orphaned monitor and the new port: three');
      const m2 = await mon('vale0:x2w', NR_MONITOR_TX)(socket);
      t.false(m2.reply.ok, 'a fourth region of the uid was opened');
      if (!m2.reply.ok) {
        t.is(m2.reply.code, 'ENOSPC');
        t.regex(m2.reply.error, /--max-ports-per-uid/);
      }
      for (const r of [m2, w2, m1, keep]) closeAll(r);
    },
    { limits: { maxPortsPerUid: 3 } },
  );
});

test.serial('deterministic release: a removed port is unmapped at once (no GC), a vanished on-demand switch leaves no mapping', async (t) => {
  await withServer(async (socket, srv) => {
    const base = native.liveMappings();
    for (let i = 0; i < 200; i++) {
      const r = await register(socket, { name: `valeq${i % 7}:p`, extraBufs: 1024 });
      t.true(r.reply.ok);
      closeAll(r);
      // the server sees EOF on its next turn
      while (srv.list().length) await new Promise((res) => setImmediate(res));
    }
    t.deepEqual(native.liveMappings(), base, 'no mapping outlives its port');
  });
});

test('ring theft: a ring of another uid\'s port is refused; the same uid may share', async (t) => {
  await withServer(async (socket, srv) => {
    const r0 = await open('vale0:m-0@conf:rings=2', { socket });
    // a second registration as another uid: drive the check with a fake peer
    // uid (the multi-user path, with setpriv, is in hostile-proc.test.ts)
    const r1 = await open('vale0:m-1', { socket });
    t.deepEqual(r1.txRings.map((r) => r.index), [1], 'same uid shares');
    r1.close();
    const internal = srv as unknown as { clients: Set<{ uid: number; port?: unknown }> };
    for (const c of internal.clients) if (c.port) c.uid = 4242;
    const e = await t.throwsAsync(open('vale0:m-1', { socket }));
    t.regex(e!.message, /held by uid 4242: binding another of its rings would map its whole region/);
    r0.close();
  });
});

/** A driver kind for the test below whose start waits for the test's word. */
let slowGate: { started: () => void; go: Promise<void> } | undefined;
registerPortKind('x3-slow', () => {
  const g = slowGate!;
  g.started();
  return g.go.then(() => ({ kind: 'x3-slow', describe: () => 'x3-slow', counters: () => ({}), close: () => Promise.resolve() }));
});

test('a port served by a driver inside vale-ts cannot be registered by a client (its rings are the driver\'s), nor while the driver starts', async (t) => {
  await withServer(async (socket, srv) => {
    const path1 = path.join(os.tmpdir(), `hostile-x3-drv-${process.pid}-${uniq++}.sock`);
    t.teardown(() => rmSync(path1, { force: true }));
    await srv.createPort('vale0:x3drv', { driver: { kind: 'stream', path: path1 } });
    // any admitted uid (a fake one here, as in the ring theft test) would be handed
    // the region: the driver's frames to read, its ring to race it for
    const conn = ControlConnection.connect(socket);
    t.teardown(() => conn.close());
    const internal = srv as unknown as { clients: Set<{ uid: number }> };
    for (const c of internal.clients) c.uid = 4242;
    const { reply, fds } = await conn.request({ v: PROTOCOL_VERSION, op: 'register', name: 'vale0:x3drv', nrMode: 1, ringId: 0, flags: 0, conf: {} });
    for (const f of fds) native.close(f);
    t.is(fds.length, 0, 'no region handed out');
    t.false(reply.ok, JSON.stringify(reply));
    if (!reply.ok) {
      t.is(reply.code, 'EBUSY');
      t.regex(reply.error, /served by vale-ts itself \(stream server .*\): it has no rings for a client/);
    }
    // one ring of it: the same
    const one = await register(socket, { name: 'vale0:x3drv', nrMode: 4, ringId: 0 });
    t.false(one.reply.ok, JSON.stringify(one.reply));
    closeAll(one);
    const ls = await requestOnce(socket, { v: PROTOCOL_VERSION, op: 'list', name: 'vale0:x3drv' });
    t.true(ls.ok && ls.op === 'list' && ls.ports[0]!.attached && ls.ports[0]!.pid === undefined, JSON.stringify(ls));
    // a driver still starting holds its port as well
    let started!: () => void;
    let go!: () => void;
    const startedP = new Promise<void>((r) => (started = r));
    slowGate = { started, go: new Promise<void>((r) => (go = r)) };
    const creating = srv.createPort('vale0:x3slow', { driver: { kind: 'x3-slow' } });
    await startedP;
    const early = await register(socket, { name: 'vale0:x3slow' });
    t.false(early.reply.ok, JSON.stringify(early.reply));
    if (!early.reply.ok) t.is(early.reply.code, 'EBUSY');
    closeAll(early);
    go();
    await creating;
    await srv.removePort('vale0:x3slow');
  });
});

test('list of 600 ports with long names: too many for one message, answered in pages that ValeClient.list() joins (not a dropped connection)', async (t) => {
  await withServer(async (socket, srv) => {
    const names: string[] = [];
    for (let s = 0; s < 3; s++) {
      for (let i = 0; i < 200; i++) {
        // 63 characters, the longest name: ~170 bytes a listing, 600 of them far beyond 64 KiB
        const name = `vale${s}:x3${String(i).padStart(3, '0')}`.padEnd(63, 'x');
        await srv.createPort(name, { conf: { txSlots: 2, rxSlots: 2 } });
        names.push(name);
      }
    }
    const first = await requestOnce(socket, { v: PROTOCOL_VERSION, op: 'list' });
    t.true(first.ok, JSON.stringify(first).slice(0, 200));
    if (first.ok && first.op === 'list') {
      t.true(first.ports.length > 0 && first.ports.length < 600, `a first page: ${first.ports.length}`);
      t.is(first.portsTotal, 600);
    }
    const all = await new ValeClient({ socket }).list();
    t.deepEqual(all.map((p) => p.name), names, 'every port, in order, once');
  }, { limits: { maxPortsPerUid: 1024 } });
});
