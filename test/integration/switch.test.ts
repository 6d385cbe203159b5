import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import { open, Switch, ValeServer, ManualClock, DEST_DROP, sumDrops, type Port, type BatchLookup } from '../../src/index.js';
import { native } from '../../src/netmap/addon.js';
import { encodeMessage } from '../../src/control/protocol.js';
import { departures, until } from '../fixtures/wait.js';

const peerJs = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'vale-peer.js');
let uniq = 0;
const sockPath = (): string => path.join(os.tmpdir(), `vt-test-${process.pid}-${uniq++}.sock`);

const MAC = {
  A: '02000000000a',
  B: '02000000000b',
  C: '02000000000c',
  D: '02000000000d',
};
function mac(s: string): number[] {
  return Array.from({ length: 6 }, (_, i) => parseInt(s.slice(2 * i, 2 * i + 2), 16));
}
function frame(dst: string, src: string, tag = 0, len = 60): Uint8Array {
  const f = new Uint8Array(len);
  f.set(dst === 'bcast' ? [255, 255, 255, 255, 255, 255] : mac(dst), 0);
  f.set(mac(src), 6);
  f[12] = 0x08;
  if (len > 14) f[14] = tag;
  return f;
}
async function send(p: Port, f: Uint8Array): Promise<void> {
  if (!p.inject(f)) throw new Error('tx ring full');
  p.txsync();
}
/**
 * The next frame at `p`, waiting for it: events only, no deadline (ava's
 * timeout is the safety net if it never comes).
 */
async function next(p: Port): Promise<Uint8Array> {
  for (;;) {
    let f: Uint8Array | undefined;
    p.dispatch(1, (fr) => (f = fr.slice()));
    if (f) {
      p.rxsync();
      return f;
    }
    const ev = await p.poll();
    if (!ev.rx && ev.hup) throw new Error(`${p.name}: the switch went away`);
  }
}

/** A port whose broadcasts mark "everything sent before this has been forwarded". */
const PROBE_MAC = '02000000fffe';
const isProbe = (f: Uint8Array): boolean => f.subarray(6, 12).every((b, i) => b === mac(PROBE_MAC)[i]);
interface Probe {
  port: Port;
  seq: number;
}
/** Two rings, so its markers reach both rx rings of a two-ring port too (ring r goes to ring r % rxRings). */
async function probeOn(socket: string): Promise<Probe> {
  return { port: await open('vale0:probe@conf:rings=2', { socket }), seq: 0 };
}

/** The next `n` frames at `p` (probe markers skipped), as their tag bytes. */
async function recv(p: Port, n: number): Promise<number[]> {
  const tags: number[] = [];
  while (tags.length < n) {
    const f = await next(p);
    if (!isProbe(f)) tags.push(f[14]!);
  }
  return tags;
}

/** The next frame at `p` from `src` (others skipped), as its tag byte. */
async function recvFrom(p: Port, src: string): Promise<number> {
  const want = mac(src);
  for (;;) {
    const f = await next(p);
    if (f.subarray(6, 12).every((b, i) => b === want[i])) return f[14]!;
  }
}

/**
 * Everything that reaches each of `ports` from the frames `senders` queued,
 * without waiting for time: once a sender's ring is flushed the switch has
 * delivered or dropped every frame on it, so those frames sit in the
 * destination rings ahead of a probe broadcast sent afterwards. Reading each
 * port up to that marker gives exactly what it got, as tag bytes.
 */
async function rest(probe: Probe, ports: Port[], senders: Port[]): Promise<number[][]> {
  for (const s of senders) if (!(await s.flush())) throw new Error(`${s.name}: the switch went away`);
  const id = ++probe.seq & 0xff;
  const f = frame('bcast', PROBE_MAC, id);
  for (const ring of probe.port.txRings) {
    ring.bytes.set(f, ring.bufOffset(ring.head));
    ring.setLen(ring.head, f.length);
    ring.advance(1);
  }
  probe.port.txsync();
  const got: number[][] = [];
  for (const p of ports) {
    const tags: number[] = [];
    for (;;) {
      const fr = await next(p);
      if (!isProbe(fr)) tags.push(fr[14]!);
      else if (fr[14] === id) break;
    }
    got.push(tags);
  }
  return got;
}

interface Peer {
  child: ChildProcess;
  done: Promise<Record<string, unknown>>;
  ready: Promise<void>;
  hello: Promise<void>;
  /** tell a receiver that every sender is gone: it takes what is left and reports */
  stop(): void;
}
function peer(args: string[], env: Record<string, string>): Peer {
  const child = spawn(process.execPath, [peerJs, ...args], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  let readyRes: () => void = () => {};
  let helloRes: () => void = () => {};
  const ready = new Promise<void>((r) => (readyRes = r));
  const hello = new Promise<void>((r) => (helloRes = r));
  child.stdout!.on('data', (d: Buffer) => (out += d));
  child.stderr!.on('data', (d: Buffer) => {
    err += d;
    if (err.includes('ready')) readyRes();
    if (err.includes('hello')) helloRes();
  });
  child.stdin!.on('error', () => undefined); // a killed peer's stdin
  const done = new Promise<Record<string, unknown>>((resolve, reject) => {
    child.on('close', (code, sig) => {
      if (code === 0) resolve(JSON.parse(out) as Record<string, unknown>);
      else reject(new Error(`peer ${args.join(' ')} exited ${code ?? sig}: ${err}`));
    });
  });
  return { child, done, ready, hello, stop: () => child.stdin!.end('stop\n') };
}

async function withServer<T>(fn: (socket: string, srv: ValeServer) => Promise<T>, sw?: Switch): Promise<T> {
  const socket = sockPath();
  const srv = await ValeServer.listen({ socket, ...(sw ? { switches: [sw] } : {}) });
  try {
    return await fn(socket, srv);
  } finally {
    srv.close();
  }
}

const dropsOf = sumDrops;

test('learning: unknown unicast and broadcast flood, learned unicast goes only to its port, never back to the source', async (t) => {
  await withServer(async (socket, srv) => {
    const probe = await probeOn(socket);
    const a = await open('vale0:a', { socket });
    const b = await open('vale0:b', { socket });
    const c = await open('vale0:c', { socket });
    t.is(a.backend, 'user');
    t.is(a.transport, 'vale-ts');
    await send(a, frame(MAC.B, MAC.A, 1));
    t.deepEqual(await recv(b, 1), [1], 'unknown unicast flooded to b');
    t.deepEqual(await recv(c, 1), [1], 'unknown unicast flooded to c');
    t.deepEqual(await rest(probe, [a], [a]), [[]], 'not back to the source');
    await send(b, frame(MAC.A, MAC.B, 2));
    t.deepEqual(await recv(a, 1), [2], 'A was learned on a');
    t.deepEqual(await rest(probe, [c], [b]), [[]], 'learned unicast not flooded');
    await send(a, frame(MAC.B, MAC.A, 3));
    t.deepEqual(await recv(b, 1), [3]);
    t.deepEqual(await rest(probe, [c], [a]), [[]]);
    await send(a, frame('bcast', MAC.A, 4));
    t.deepEqual(await recv(b, 1), [4]);
    t.deepEqual(await recv(c, 1), [4]);
    t.deepEqual(await rest(probe, [a], [a]), [[]]);
    // a frame for a MAC that lives on the source port is dropped and counted
    await send(a, frame(MAC.A, MAC.B, 5));
    t.deepEqual(await rest(probe, [b, c], [a]), [[], []]);
    const sw = srv.switch('vale0')!;
    const ca = sw.counters(sw.port('vale0:a')!.index);
    t.is(ca['dropSamePort'], 1);
    t.is(ca['rxFrames'], 4);
    t.is(ca['flooded'], 2);
    // multicast source is not learned
    await send(c, frame(MAC.D, '03000000000d', 6));
    t.deepEqual(await recv(a, 1), [6]);
    t.deepEqual(await recv(b, 1), [6]);
    t.false(sw.stats().macTable.some((e) => e.mac.startsWith('03')), 'multicast source not learned');
    // runts are dropped and counted
    await send(c, frame(MAC.A, MAC.C, 0, 12));
    t.deepEqual(await rest(probe, [a], [c]), [[]]);
    t.is(sw.counters(sw.port('vale0:c')!.index)['dropRunt'], 1);
    a.close();
    b.close();
    c.close();
    probe.port.close();
  });
});

test('aging: a learned MAC is forgotten after the age, with an advanced clock', async (t) => {
  const clock = new ManualClock();
  const sw = new Switch('vale0', { clock, macAgeMs: 300_000 });
  await withServer(async (socket) => {
    const probe = await probeOn(socket);
    const a = await open('vale0:a', { socket });
    const b = await open('vale0:b', { socket });
    const c = await open('vale0:c', { socket });
    await send(b, frame(MAC.A, MAC.B, 1));
    t.deepEqual(await recv(a, 1), [1]);
    t.deepEqual(await recv(c, 1), [1]);
    await send(a, frame(MAC.B, MAC.A, 2));
    t.deepEqual(await rest(probe, [c], [a]), [[]], 'B known: not flooded');
    clock.advance(299_000);
    await send(a, frame(MAC.B, MAC.A, 3));
    t.deepEqual(await rest(probe, [c], [a]), [[]], 'still fresh');
    clock.advance(301_000);
    sw.bridge!.expire();
    await send(a, frame(MAC.B, MAC.A, 4));
    t.deepEqual(await recv(c, 1), [4], 'aged out: flooded again');
    t.deepEqual(await recv(b, 1), [2], 'b got every frame meant for it');
    t.deepEqual(await recv(b, 2), [3, 4]);
    t.true(sw.bridge!.table.counters.aged >= 1);
    a.close();
    b.close();
    c.close();
    probe.port.close();
  }, sw);
});

test('the MAC table is bounded; a full table counts and still forwards', async (t) => {
  const sw = new Switch('vale0', { macTableSize: 4 });
  await withServer(async (socket, srv) => {
    const a = await open('vale0:a', { socket });
    const b = await open('vale0:b', { socket });
    for (let i = 0; i < 10; i++) await send(a, frame('bcast', `0200000001${i.toString(16).padStart(2, '0')}`, i));
    t.deepEqual(await recv(b, 10), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 'all flooded frames delivered, in order');
    const st = srv.switch('vale0')!.stats();
    t.is(st.macTableCounters['size'], 4);
    t.is(st.macTableCounters['tableFull'], 6);
    a.close();
    b.close();
  }, sw);
});

test('a busy port refuses a second open (EBUSY); a closed port is reusable at once', async (t) => {
  await withServer(async (socket, srv) => {
    const left = departures(srv);
    const a = await open('vale0:01', { socket });
    await t.throwsAsync(open('vale0:01', { socket }), { code: 'EBUSY', message: /busy/ });
    a.close();
    await left.of('vale0:01');
    t.is(srv.switch('vale0'), undefined, 'switch gone with its last port');
    const again = await open('vale0:01', { socket });
    t.is(again.txRings.length, 1);
    again.close();
  });
});

test('open with @conf: shapes the port; bad names and a missing switch give clear errors', async (t) => {
  await withServer(async (socket) => {
    const p = await open('vale1:x@conf:rings=4,slots=256', { socket });
    t.is(p.txRings.length, 4);
    t.is(p.rxRings.length, 4);
    t.is(p.txRings[0]!.numSlots, 256);
    p.close();
    const one = await open('vale1:y-2@conf:rings=4', { socket });
    t.deepEqual(one.txRings.map((r) => r.index), [2]);
    one.close();
    await t.throwsAsync(open('vale0', { socket }), { message: /switch name/ });
  });
  await t.throwsAsync(open('vale0:zz', { socket: sockPath(), backend: 'user' }), { message: /vale-ts is not running at .*start the switch/ });
  await t.throwsAsync(open('netmap:eth0', { backend: 'user' }), { message: /without \/dev\/netmap/ });
});

test('a malformed register request gets a clear error and the switch carries on', async (t) => {
  await withServer(async (socket) => {
    // one request on a fresh connection; resolves with the reply when it is readable
    const ask = (data: Uint8Array): Promise<string> => {
      const fd = native.unixConnect(socket);
      native.sendMsg(fd, data, []);
      return new Promise<string>((resolve) => {
        const w = new native.FdWatcher(fd, () => {
          const m = native.recvMsg(fd, 65536);
          if (m === null) return; // woken with nothing to read yet
          w.close();
          native.close(fd);
          if (m.eof) return resolve('');
          for (const f of m.fds) native.close(f);
          resolve(m.data.toString());
        });
        w.start(1);
      });
    };
    t.regex(await ask(new TextEncoder().encode('{not json')), /"code":"EPROTO".*not valid JSON/);
    t.regex(await ask(new TextEncoder().encode('{"v":99,"op":"register"}')), /protocol version 99 is not supported/);
    t.regex(await ask(encodeMessage({ v: 1, op: 'register', name: 'vale0', nrMode: 1, ringId: 0, flags: 0, conf: {} })), /"ok":false.*switch name/);
    t.regex(await ask(new TextEncoder().encode('{"v":1,"op":"register","name":"vale0:q","conf":{"txRings":99}}')), /txRings.*1\.\.16/);
    const p = await open('vale0:ok', { socket });
    t.is(p.txRings.length, 1, 'switch unharmed');
    p.close();
  });
});

test('a client SIGKILLed mid-traffic: others keep flowing, its port is reusable', async (t) => {
  await withServer(async (socket, srv) => {
    const left = departures(srv);
    const r = await open('vale0:r', { socket });
    const q = await open('vale0:q', { socket });
    await send(r, frame('bcast', MAC.A, 0));
    t.deepEqual(await recv(q, 1), [0]);
    const k = peer(['flood', 'vale0:k', MAC.C, MAC.A], { VALE_TS_SOCKET: socket });
    await k.ready;
    // traffic from the killed client reaches r
    await recvFrom(r, MAC.C);
    k.child.kill('SIGKILL');
    await k.done.catch(() => undefined);
    await left.of('vale0:k');
    const sw = srv.switch('vale0')!;
    t.is(sw.port('vale0:k'), undefined, 'port removed on EOF');
    // k's last frames are all placed now: empty r's ring so q's frame has room
    r.rxsync();
    r.dispatch(Infinity, () => undefined);
    r.rxsync();
    await send(q, frame(MAC.A, MAC.B, 7));
    t.is(await recvFrom(r, MAC.B), 7, 'q -> r still flows');
    const k2 = await open('vale0:k', { socket });
    k2.close();
    r.close();
    q.close();
  });
});

test('conservation under overload: every frame sent is delivered or counted as a drop', async (t) => {
  // drops at once (no bounded backpressure), so that the slow receiver does lose frames
  const sw = new Switch('vale0', { holdUs: 0 });
  await withServer(async (socket, srv) => {
    const left = departures(srv);
    const env = { VALE_TS_SOCKET: socket, PEER_SLOW_US: '200' };
    const rx = peer(['recv', 'vale0:rx', MAC.A], env);
    await rx.hello;
    const s1 = peer(['send', 'vale0:s1', MAC.B, MAC.A, '300000'], env);
    const s2 = peer(['send', 'vale0:s2', MAC.C, MAC.A, '300000'], env);
    const [o1, o2] = await Promise.all([s1.done, s2.done]);
    // the senders' ports are gone: every frame they sent is delivered or counted
    await left.of('vale0:s1', 'vale0:s2');
    rx.stop();
    const orx = await rx.done;
    await left.of('vale0:rx');
    const sent = (o1['sent'] as number) + (o2['sent'] as number);
    const received = orx['received'] as number;
    const totals = srv.switch('vale0')?.totals();
    t.truthy(totals);
    const drops = dropsOf(totals!);
    t.log(`sent ${sent}, received ${received}, dropped ${drops} (dropNoSpace ${totals!['dropNoSpace']})`);
    t.is(sent, 600000);
    t.true(drops > 0, 'the receiver was overloaded');
    // the receiver's hello, flooded while it was alone, is one more frame: dropNoPort
    t.is(totals!['dropNoPort'], 1);
    t.is(sent + 1, received + drops, 'sent = delivered + dropped, exactly');
  }, sw);
});

test('lossless ports apply backpressure: an overloaded receiver loses nothing', async (t) => {
  const sw = new Switch('vale0');
  await withServer(async (socket, srv) => {
    const left = departures(srv);
    const env = { VALE_TS_SOCKET: socket, PEER_SLOW_US: '200', PEER_LOSSLESS: '1' };
    const rx = peer(['recv', 'vale0:rx', MAC.A], env);
    await rx.hello;
    const s1 = peer(['send', 'vale0:s1', MAC.B, MAC.A, '200000'], env);
    const s2 = peer(['send', 'vale0:s2', MAC.C, MAC.A, '200000'], env);
    const [o1, o2] = await Promise.all([s1.done, s2.done]);
    await left.of('vale0:s1', 'vale0:s2');
    rx.stop();
    const orx = await rx.done;
    await left.of('vale0:rx');
    const totals = srv.switch('vale0')?.totals() ?? {};
    t.is((o1['sent'] as number) + (o2['sent'] as number), 400000);
    t.is(orx['received'], 400000, 'everything delivered');
    t.is(totals['rxFrames'], 400001, 'the switch took every frame (and the hello)');
    t.is(dropsOf(totals), 1, 'nothing dropped but the hello, flooded while the receiver was alone');
    t.is(totals['dropNoPort'], 1);
  }, sw);
});

test('a flood to several ports (taken in runs): every port gets each copy it has room for, in order and once; a full one loses the rest, counted', async (t) => {
  // drops at once: d's copies past its small ring are lost (dropNoSpace),
  // while b and c, with room for all, get every frame. The switch takes
  // the first frames as a run for all three, the rest (d full) one by one.
  const sw = new Switch('vale0', { holdUs: 0 });
  await withServer(async (socket) => {
    const a = await open('vale0:a', { socket });
    const b = await open('vale0:b', { socket });
    const c = await open('vale0:c', { socket });
    const d = await open('vale0:d@conf:rx_slots=64', { socket });
    const n = 600; // fits a's tx ring and b's and c's rx rings (1024 slots)
    for (let i = 0; i < n; i++) if (!a.inject(frame('bcast', MAC.A, i & 0xff))) throw new Error(`a's tx ring full at ${i}`);
    t.true(await a.flush(), 'the switch took every frame');
    const want = Array.from({ length: n }, (_, i) => i & 0xff);
    t.deepEqual(await recv(b, n), want, 'b: every frame, in order');
    t.deepEqual(await recv(c, n), want, 'c: every frame, in order');
    t.deepEqual(await recv(d, 63), want.slice(0, 63), 'd: what its ring held, the first frames in order');
    const ca = sw.counters(sw.port('vale0:a')!.index);
    const cd = sw.counters(sw.port('vale0:d')!.index);
    t.is(ca['rxFrames'], n);
    t.is(ca['flooded'], n);
    t.is(ca['floodCopies'], 3 * n);
    t.is(sw.counters(sw.port('vale0:b')!.index)['txFrames'], n);
    t.is(sw.counters(sw.port('vale0:c')!.index)['txFrames'], n);
    t.is(cd['txFrames'], 63);
    t.is(cd['dropNoSpace'], n - 63, "d's other copies, counted");
    t.is(ca['rxBytes'], 60 * n);
    a.close();
    b.close();
    c.close();
    d.close();
  }, sw);
});

test('a user-supplied lookup replaces the learning bridge: filter and static forwarding', async (t) => {
  // frames whose tag byte is odd are dropped; even tags go to the port numbered tag/2
  const lookup: BatchLookup = (buf, offsets, lens, count, _src, dests) => {
    for (let i = 0; i < count; i++) {
      const tag = buf[offsets[i]! + 14]!;
      dests[i] = tag & 1 ? DEST_DROP : tag >> 1;
    }
  };
  const sw = new Switch('vale0', { lookup });
  t.is(sw.bridge, undefined, 'no learning bridge');
  await withServer(async (socket) => {
    const p0 = await open('vale0:p0', { socket });
    const p1 = await open('vale0:p1', { socket });
    const p2 = await open('vale0:p2', { socket });
    await send(p0, frame(MAC.B, MAC.A, 4)); // -> port 2
    await send(p0, frame(MAC.B, MAC.A, 2)); // -> port 1
    await send(p0, frame(MAC.B, MAC.A, 3)); // dropped
    await send(p0, frame(MAC.B, MAC.A, 0)); // -> port 0 = source: never reflected
    t.deepEqual(await recv(p2, 1), [4]);
    t.deepEqual(await recv(p1, 1), [2]);
    // once p0's ring is flushed its frames are placed; p1's tag 0 then goes to
    // p0 behind anything of p0's own that was (wrongly) reflected
    t.true(await p0.flush());
    await send(p1, frame(MAC.A, MAC.B, 0));
    t.deepEqual(await recv(p0, 1), [0], 'nothing reflected to p0 before p1\'s frame');
    const c = sw.counters(0);
    t.is(c['dropLookup'], 1);
    t.is(c['dropSamePort'], 1);
    t.is(c['rxFrames'], 4);
    p0.close();
    p1.close();
    p2.close();
  }, sw);
});

test('a lossless sender is not stalled by an unattended persistent port: its copies are dropped and counted', async (t) => {
  const sw = new Switch('vale0');
  await withServer(async (socket) => {
    sw.addPort('vale0:parked', { rxSlots: 8 }, { persistent: true });
    const rx = await open('vale0:rx', { socket });
    const tx = await open('vale0:tx', { socket, lossless: true });
    let sent = 0;
    let got = 0;
    for (let round = 0; round < 20; round++) {
      while (sent < (round + 1) * 20 && tx.inject(frame('bcast', MAC.A, sent & 0xff))) sent++;
      tx.txsync();
      got += (await recv(rx, sent - got)).length;
    }
    t.true(await tx.flush());
    t.is(sent, 400);
    t.is(got, 400, 'the attached receiver got every frame');
    const parked = sw.counters(sw.port('vale0:parked')!.index);
    t.is(parked['txFrames'], 7, 'the parked port took what fits in its ring');
    t.is(parked['dropNoSpace'], 393, 'and the rest is counted, not waited for');
    rx.close();
    tx.close();
  }, sw);
});

test('a flood with no other port on the switch is counted (dropNoPort), not lost', async (t) => {
  const sw = new Switch('vale0');
  await withServer(async (socket) => {
    const a = await open('vale0:alone', { socket });
    await send(a, frame('bcast', MAC.A, 1));
    t.true(await a.flush());
    const c = sw.counters(sw.port('vale0:alone')!.index);
    t.is(c['rxFrames'], 1);
    t.is(c['dropNoPort'], 1);
    t.is(c['flooded'], 0);
    a.close();
  }, sw);
});

test('hostile slots written straight into shared memory are dropped and counted, never followed', async (t) => {
  const sw = new Switch('vale0');
  await withServer(async (socket) => {
    const a = await open('vale0:evil', { socket });
    const b = await open('vale0:good', { socket });
    const ring = a.txRings[0]!;
    const good = frame('bcast', MAC.A, 9);
    // slot 0: buffer index far outside the pool; slot 1: reserved buffer 1;
    // slot 2: length over the buffer size; slot 3: a good frame
    ring.setBufIdx(0, 0x7fffffff);
    ring.setLen(0, 60);
    ring.setBufIdx(1, 1);
    ring.setLen(1, 60);
    ring.setLen(2, 60000);
    ring.bytes.set(good, ring.bufOffset(3));
    ring.setLen(3, 60);
    ring.head = ring.cur = 4;
    // bypass Ring.sync's checks: publish head as a hostile client would
    a.backendObject.txsync(0);
    t.deepEqual(await recv(b, 1), [9], 'only the good frame came through');
    const c = sw.counters(sw.port('vale0:evil')!.index);
    t.is(c['dropInvalid'], 3);
    t.is(c['rxFrames'], 1);
    // an impossible head index is refused and counted, the switch carries on
    ring.head = ring.cur = 5000;
    a.backendObject.txsync(0);
    await until(() => sw.counters(sw.port('vale0:evil')!.index)['badHead']! >= 1);
    t.pass('badHead counted');
    const p = await open('vale0:after', { socket });
    p.close();
    a.close();
    b.close();
  }, sw);
});

test('a receiver that breaks its own rx slot loses those copies (dropInvalid there); frames up to, at and past the snapshot size then arrive byte for byte', async (t) => {
  const sw = new Switch('vale0');
  await withServer(async (socket) => {
    const a = await open('vale0:a', { socket });
    const b = await open('vale0:b', { socket });
    const bIdx = sw.port('vale0:b')!.index;
    const rr = b.rxRings[0]!;
    // the slot the switch fills next, pointed outside the pool by its own client
    const slot = rr.tail;
    const good = rr.bufIdx(slot);
    rr.setBufIdx(slot, 0x7fffffff);
    await send(a, frame('bcast', MAC.A, 1));
    await until(() => sw.counters(bIdx)['dropInvalid']! >= 1);
    t.is(sw.counters(bIdx)['txFrames'], 0, 'nothing was written for the broken slot');
    rr.setBufIdx(slot, good);
    // 60 B: one small copy from the snapshot; 128: the whole default
    // snapshot; 129 and 1514: past it, the rest from the client's buffer
    const sent: Uint8Array[] = [];
    for (const [tag, len] of [[2, 60], [3, 128], [4, 129], [5, 1514]] as const) {
      const f = frame('bcast', MAC.A, tag, len);
      for (let i = 15; i < len; i++) f[i] = (i * 7 + tag) & 0xff;
      sent.push(f);
      await send(a, f);
    }
    for (const f of sent) t.deepEqual(await next(b), f);
    t.is(sw.counters(bIdx)['dropInvalid'], 1);
    a.close();
    b.close();
  }, sw);
});

test('one ring of a port with more tx than rx rings: a ring the rx side lacks binds rx ring 0, as netmap does; a ring neither side has is EINVAL', async (t) => {
  const sw = new Switch('vale0');
  await withServer(async (socket) => {
    const r2 = await open('vale0:u-2@conf:tx_rings=3,rx_rings=1', { socket });
    t.deepEqual(r2.txRings.map((r) => r.index), [2]);
    t.deepEqual(r2.rxRings.map((r) => r.index), [0], 'rx ring 0: the rx side has no ring 2');
    // ring 1 would share rx ring 0 with ring 2's holder: refused, naming why
    await t.throwsAsync(open('vale0:u-1', { socket }), { code: 'EBUSY', message: /ring 1 of vale0:u binds tx ring 1 and rx ring 0.*ring 2 bound already shares one of them/ });
    await t.throwsAsync(open('vale0:u-3', { socket }), { code: 'EINVAL', message: /3 tx \/ 1 rx rings: there is no ring 3/ });
    // it works both ways: a frame sent on tx ring 2 reaches a peer, the peer's reaches rx ring 0
    const peer = await open('vale0:peer', { socket });
    await send(r2, frame('bcast', MAC.A, 1));
    t.deepEqual(await recv(peer, 1), [1]);
    await send(peer, frame('bcast', MAC.B, 2));
    t.deepEqual(await recv(r2, 1), [2]);
    r2.close();
    peer.close();
  }, sw);
});

test('registrations may share a port when each binds its own ring (vale0:x-0, vale0:x-1), as in netmap', async (t) => {
  const sw = new Switch('vale0');
  await withServer(async (socket, srv) => {
    const left = departures(srv);
    const r0 = await open('vale0:m-0@conf:rings=2', { socket });
    const r1 = await open('vale0:m-1', { socket });
    t.deepEqual(r0.txRings.map((r) => r.index), [0]);
    t.deepEqual(r1.txRings.map((r) => r.index), [1]);
    await t.throwsAsync(open('vale0:m-1', { socket }), { code: 'EBUSY', message: /ring 1 of vale0:m is bound/ });
    await t.throwsAsync(open('vale0:m', { socket }), { code: 'EBUSY' });
    await t.throwsAsync(open('vale0:m-2', { socket }), { code: 'EINVAL', message: /there is no ring 2/ });
    const peer = await open('vale0:peer', { socket });
    const probe = await probeOn(socket);
    // frames sent on each ring arrive; each holder is woken for its own ring
    await send(r0, frame('bcast', MAC.A, 1));
    await send(r1, frame('bcast', MAC.B, 2));
    t.deepEqual((await recv(peer, 2)).sort(), [1, 2]);
    peer.inject(frame('bcast', MAC.C, 3));
    peer.inject(frame('bcast', MAC.C, 4));
    peer.txsync();
    // the peer has one ring: both copies go to ring 0 of the shared port
    t.deepEqual(await recv(r0, 2), [3, 4]);
    t.deepEqual(await rest(probe, [r1], [peer]), [[]]);
    // the port stays while one holder is left, and goes with the last
    r0.close();
    await left.of('vale0:m');
    t.truthy(sw.port('vale0:m'));
    await send(r1, frame('bcast', MAC.B, 5));
    t.deepEqual(await recv(peer, 1), [5]);
    r1.close();
    await left.of('vale0:m');
    t.is(sw.port('vale0:m'), undefined);
    t.truthy(srv.switch('vale0'));
    peer.close();
    probe.port.close();
  }, sw);
});

test('multi-slot frames (NS_MOREFRAG) cross the switch as one frame; an endless chain is dropped as dropFrag', async (t) => {
  const sw = new Switch('vale0');
  await withServer(async (socket) => {
    const a = await open('vale0:fa', { socket });
    const b = await open('vale0:fb', { socket });
    const ring = a.txRings[0]!;
    const NS_MOREFRAG = 0x20;
    // one 3-slot frame: header in the first fragment, tags in each
    const first = frame('bcast', MAC.A, 7, 100);
    ring.bytes.set(first, ring.bufOffset(0));
    ring.setLen(0, 100);
    ring.setFlags(0, NS_MOREFRAG);
    ring.bytes[ring.bufOffset(1)] = 0xa1;
    ring.setLen(1, 50);
    ring.setFlags(1, NS_MOREFRAG);
    ring.bytes[ring.bufOffset(2)] = 0xa2;
    ring.setLen(2, 20);
    ring.setFlags(2, 0);
    ring.advance(3);
    a.txsync();
    t.true((await b.poll()).rx);
    const rx = b.rxRings[0]!;
    t.is(rx.space(), 3, 'three slots, one frame');
    const h = rx.head;
    t.deepEqual([rx.len(h), rx.len(rx.next(h)), rx.len(rx.next(rx.next(h)))], [100, 50, 20]);
    t.deepEqual([rx.flags(h) & NS_MOREFRAG, rx.flags(rx.next(h)) & NS_MOREFRAG, rx.flags(rx.next(rx.next(h))) & NS_MOREFRAG], [NS_MOREFRAG, NS_MOREFRAG, 0]);
    t.is(rx.bytes[rx.bufOffset(h) + 14], 7);
    t.is(rx.bytes[rx.bufOffset(rx.next(h))], 0xa1);
    t.is(rx.bytes[rx.bufOffset(rx.next(rx.next(h)))], 0xa2);
    rx.advance(3);
    b.rxsync();
    let c = sw.counters(sw.port('vale0:fa')!.index);
    t.is(c['rxFrames'], 1);
    t.is(c['rxBytes'], 170);
    t.is(sw.counters(sw.port('vale0:fb')!.index)['txFrames'], 1);
    // a chain of 64 slots that never ends is refused as a whole
    const probe = await probeOn(socket);
    for (let i = 0; i < 64; i++) {
      const s = ring.head;
      ring.bytes.set(first, ring.bufOffset(s));
      ring.setLen(s, 60);
      ring.setFlags(s, NS_MOREFRAG);
      ring.advance(1);
    }
    a.txsync();
    t.true(await a.flush());
    c = sw.counters(sw.port('vale0:fa')!.index);
    t.is(c['dropFrag'], 1);
    t.deepEqual(await rest(probe, [b], [a]), [[]]);
    a.close();
    b.close();
    probe.port.close();
  }, sw);
});
