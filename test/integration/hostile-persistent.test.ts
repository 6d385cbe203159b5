/**
 * A persistent port outlives its clients, and its client is handed the
 * region and doorbells as descriptors: a client that leaves may keep them
 * (a forked child, or on purpose), and unlike netmap's mmap, which keeps the
 * kernel's port busy until munmap, vale-ts cannot see that mapping. Before,
 * the port kept one region and one pair of doorbells for life: the next
 * client (maybe another uid) got the same ones, and the one that left could
 * read its frames, send as it and ring its bells. Now the port gets a fresh
 * region and doorbells when its last client goes.
 */
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { fstatSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ManualClock, open, Switch, ValeClient, ValeServer, type OpenOptions, type Port, type ValePortConfig } from '../../src/index.js';
import type { CsbView } from '../../src/backends/csb.js';
import { native, type NativeFdWatcher } from '../../src/netmap/addon.js';
import { sendChain } from '../fixtures/chains.js';
import { departures, until } from '../fixtures/wait.js';
import { receiveTags as receive, taggedBroadcast as frame } from '../fixtures/tagged-frames.js';

let uniq = 0;
const sockPath = (): string => path.join(os.tmpdir(), `hostile-persistent-${process.pid}-${uniq++}.sock`);

/** What a client holds of its port (ValeClientBackend's own fields). */
interface Held {
  conn: { close(): void };
  hupWatch: NativeFdWatcher;
  memfd: number;
  waitFd: number;
  switchBell: number;
  memory: ArrayBuffer;
  csb: CsbView;
}
const heldOf = (p: Port): Held => p.backendObject as unknown as Held;

/**
 * A server (torn down with the test) with a persistent port vale0:p (`port`
 * its configuration) and a client port vale0:c (opened with `client`) beside
 * it; vale0 is `sw` if given, else one made with `datapath`.
 */
async function persistentRig(
  t: ExecutionContext,
  opts: { datapath?: 'loop' | 'thread'; sw?: Switch; port?: ValePortConfig; client?: OpenOptions } = {},
) {
  const socket = sockPath();
  const srv = await ValeServer.listen({ socket, ...(opts.sw ? { switches: [opts.sw] } : {}), ...(opts.datapath ? { switchOptions: { datapath: opts.datapath } } : {}) });
  t.teardown(() => srv.close());
  const gone = departures(srv);
  const vale = new ValeClient({ socket });
  await vale.create('vale0:p', opts.port);
  const c = await open('vale0:c', { ...opts.client, socket });
  t.teardown(() => c.close());
  return { socket, srv, gone, vale, c, sw: srv.switch('vale0')! };
}

/**
 * Opens a client of vale0:p that sends `tag` from 02:00:00:00:00:`src`, and
 * waits for c to receive it: the bridge has learned the client at p.
 */
async function learnedClient(t: ExecutionContext, socket: string, c: Port, src: number, tag: number): Promise<Port> {
  const x = await open('vale0:p', { socket });
  x.inject(frame(src, tag));
  x.txsync();
  t.deepEqual(await receive(c, 1), [tag], `the bridge learned 02:00:00:00:00:${src.toString(16)} at p`);
  return x;
}

/** Close the control connection only: the region stays mapped, the fds open (and the Port's tx path writes the old ring). */
function leaveKeepingEverything(p: Port): Held {
  const h = heldOf(p);
  h.hupWatch.close();
  h.conn.close();
  return h;
}

for (const datapath of ['loop', 'thread'] as const) {
  test(`a persistent port's next client shares no region or doorbell with a client that left keeping them; what that one never read is counted (datapath ${datapath})`, async (t) => {
    t.timeout(60_000);
    const { socket, srv, gone, vale, c, sw } = await persistentRig(t, { datapath });
    const p = sw.port('vale0:p')!;

    const a = await open('vale0:p', { socket });
    // three frames delivered to a that it never reads
    for (const tag of [1, 2, 3]) {
      c.inject(frame(0x0c, tag));
      c.txsync();
    }
    await until(() => sw.counters(p.index)['txFrames'] === 3);
    const aIno = fstatSync(heldOf(a).memfd).ino;
    const old = leaveKeepingEverything(a);
    t.teardown(() => [old.memfd, old.waitFd, old.switchBell].forEach((fd) => native.close(fd)));
    await gone.of('vale0:p');

    // a, gone, writes its old tx ring and kicks its old switch bell
    a.inject(frame(0x0a, 0x41));
    a.txsync();

    const b = await open('vale0:p', { socket });
    t.teardown(() => b.close());
    const bh = heldOf(b);
    t.not(fstatSync(bh.memfd).ino, aIno, 'b got a region of its own');

    // b sends; c gets b's frame and nothing of what a wrote after it left
    b.inject(frame(0x0b, 0x42));
    b.txsync();
    t.deepEqual(await receive(c, 1), [0x42]);

    // c sends to b: b gets it, a's old mapping never sees it
    const marker = randomBytes(16);
    const f = frame(0x0c, 0x43);
    f.set(marker, 20);
    c.inject(f);
    c.txsync();
    t.deepEqual(await receive(b, 1), [0x43]);
    t.is(Buffer.from(old.memory).indexOf(marker), -1, "b's frame is not in a's old region");

    // a's old client bell is not b's
    native.drain(bh.waitFd);
    native.kick(old.waitFd);
    t.is(native.waitFd(bh.waitFd, 1, 0) & 1, 0, "a kick into a's old bell does not reach b's");

    // the port's counters went on across the new region, and the frames a
    // never read are counted
    const k = sw.counters(p.index);
    t.is(k['rxFrames'], 1);
    t.is(k['txFrames'], 4);
    t.is(k['detachedUnread'], 3);
  });
}

test('a persistent port keeps its counters across clients, with a fresh region each time', async (t) => {
  t.timeout(60_000);
  const { socket, srv, gone, vale, c, sw } = await persistentRig(t);
  const idx = sw.port('vale0:p')!.index;
  const inos: number[] = [];
  for (let round = 0; round < 3; round++) {
    const x = await open('vale0:p', { socket });
    const ino = fstatSync(heldOf(x).memfd).ino;
    t.false(inos.includes(ino), 'each client gets a region of its own');
    inos.push(ino);
    x.inject(frame(0x0b, 10 + round));
    x.txsync();
    t.deepEqual(await receive(c, 1), [10 + round]);
    c.inject(frame(0x0c, 20 + round));
    c.txsync();
    t.deepEqual(await receive(x, 1), [20 + round]);
    x.close();
    await gone.of('vale0:p');
    const k = sw.counters(idx);
    t.is(k['rxFrames'], round + 1);
    t.is(k['txFrames'], round + 1);
    const listed = (await vale.list()).find((l) => l.name === 'vale0:p');
    t.false(listed?.attached);
  }
  // stats over the control socket say the same
  const st = (await vale.stats('vale0'))[0]!.ports.find((q) => q.name === 'vale0:p')!.counters;
  t.is(st['rxFrames'], 3);
  t.is(st['txFrames'], 3);
  t.is(st['detachedUnread'], 0, 'everything delivered was read');
});

/** Unicast to 02:00:00:00:00:`dst` (the learning bridge's), otherwise as `frame`. */
function unicast(src: number, dst: number, tag: number): Uint8Array {
  const f = frame(src, tag);
  f.set([2, 0, 0, 0, 0, dst], 0);
  return f;
}

/** `count` unicasts from c to 02:00:00:00:00:`dst`, tagged `first`.., published at once. */
function sendFromC(c: Port, dst: number, first: number, count: number): void {
  for (let i = 0; i < count; i++) if (!c.inject(unicast(0x0c, dst, first + i))) throw new Error('c: tx ring full');
  c.txsync();
}

test("a persistent port's next client starts afresh: a client that left shed, with its rx ring full and half a chain on tx, holds back or drops none of its frames", async (t) => {
  t.timeout(60_000);
  const { socket, gone, c, sw } = await persistentRig(t, { port: { rxSlots: 64 } });
  const idx = sw.port('vale0:p')!.index;
  // a bound long enough for b to drain its ring within it, whatever the load
  sw.setHoldUs(idx, 1_000_000);

  const a = await learnedClient(t, socket, c, 0x0a, 1);
  // a never reads: 63 fill its ring, the rest wait out the bound and p is shed
  sendFromC(c, 0x0a, 0, 100);
  await until(() => sw.counters(idx)['dropNoSpace'] === 37);
  t.is(sw.counters(idx)['txFrames'], 63);
  // the first slot of a chain whose end a never publishes
  sendChain(a, [unicast(0x0a, 0x0c, 2)], true);
  a.close();
  await gone.of('vale0:p');
  let k = sw.counters(idx);
  t.is(k['detachedUnread'], 63, 'what a never read');
  t.is(k['dropClosed'], 1, 'the slot a left unfinished');

  // b's first frame goes (no cursor or chain of a's region applies to b's)
  const b = await learnedClient(t, socket, c, 0x0b, 3);
  t.teardown(() => b.close());
  k = sw.counters(idx);
  t.deepEqual([k['rxFrames'], k['dropRunt'], k['dropInvalid'], k['dropFrag']], [3, 0, 0, 0], "a's frame, its unfinished slot and b's: nothing read from b's ring but what b sent");
  // b's ring full: the next copies wait for it (its own hold), none is
  // dropped as if b were shed as a was
  const n = 63 + 5;
  sendFromC(c, 0x0b, 100, n);
  await until(() => sw.counters(idx)['txFrames'] === 63 + 63);
  t.is(sw.counters(idx)['dropNoSpace'], 37, 'held for b, not dropped');
  t.deepEqual(await receive(b, n), Array.from({ length: n }, (_, i) => 100 + i));
  k = sw.counters(idx);
  t.is(k['dropNoSpace'], 37, 'no drop since a left');
  t.is(k['txFrames'], 63 + n);
});

test('a monitor opened while a persistent port had a client sees the next client\'s frames both ways, after the port got a fresh region', async (t) => {
  t.timeout(60_000);
  const { socket, gone, c, sw } = await persistentRig(t);
  const a = await open('vale0:p', { socket });
  const mon = await open('vale0:p/rt', { socket });
  t.teardown(() => mon.close());
  a.close();
  await gone.of('vale0:p');

  const b = await open('vale0:p', { socket });
  t.teardown(() => b.close());
  b.inject(frame(0x0b, 0x51));
  b.txsync();
  t.deepEqual(await receive(c, 1), [0x51]);
  c.inject(frame(0x0c, 0x52));
  c.txsync();
  t.deepEqual(await receive(b, 1), [0x52]);
  // ring 0: what p received; ring 1: what p sent
  const [rxCopies, txCopies] = [mon.rxRings[0]!, mon.rxRings[1]!];
  while (rxCopies.space() + txCopies.space() < 2) {
    const ev = await mon.poll({ rx: true, timeoutMs: 10_000 });
    if (!ev.rx) break;
  }
  const tags = (r: typeof rxCopies): number[] => Array.from({ length: r.space() }, (_, i) => r.bytes[r.bufOffset((r.head + i) % r.numSlots) + 14]!);
  t.deepEqual(tags(rxCopies), [0x52], "the monitor got c's frame to b");
  t.deepEqual(tags(txCopies), [0x51], "the monitor got b's frame");
  t.is(sw.monitors()[0]!.counters['dropMonitor'], 0);
});

test("a persistent port's next client is waited for by a lossless sender, though the client that left had been declared stalled", async (t) => {
  t.timeout(60_000);
  // the switch's clock moves only when told: no stall but the one below
  const clock = new ManualClock();
  const sw = new Switch('vale0', { clock, stallMs: 1000 });
  const { socket, gone, c } = await persistentRig(t, { sw, port: { rxSlots: 64 }, client: { lossless: true } });
  const idx = sw.port('vale0:p')!.index;

  const a = await learnedClient(t, socket, c, 0x0a, 1);
  // a never reads: 63 fill its ring and c waits, until a is declared stalled
  sendFromC(c, 0x0a, 0, 100);
  await until(() => sw.counters(idx)['txFrames'] === 63);
  const stalled = once(sw, 'stalled');
  clock.advance(1001);
  a.inject(frame(0x0a, 2)); // a round that reads the clock
  a.txsync();
  t.deepEqual(await receive(c, 1), [2]);
  await stalled;
  await until(() => sw.counters(idx)['dropStalled'] === 37);
  a.close();
  await gone.of('vale0:p');

  const b = await learnedClient(t, socket, c, 0x0b, 3);
  t.teardown(() => b.close());
  // b's ring full: c waits for b (no time passes on the switch's clock), b
  // is not stalled as a was
  const n = 63 + 5;
  sendFromC(c, 0x0b, 100, n);
  await until(() => sw.counters(idx)['txFrames'] === 63 + 63);
  t.is(sw.counters(idx)['dropStalled'], 37, 'c waits for b: none of its copies dropped');
  t.deepEqual(await receive(b, n), Array.from({ length: n }, (_, i) => 100 + i));
  t.is(sw.counters(idx)['dropStalled'], 37);
  t.is(sw.switchCounters().stalls, 1, 'only a was');
});

test('frames a client left queued when it went are counted as frames (dropClosed), a chain of slots as one', async (t) => {
  t.timeout(60_000);
  // no stall: the switch's clock stands still, so a's ring stays held
  const sw = new Switch('vale0', { clock: new ManualClock() });
  const { socket, gone, c } = await persistentRig(t, { sw, client: { slots: 64 } });
  const idx = sw.port('vale0:p')!.index;

  const a = await open('vale0:p', { socket, lossless: true });
  // 63 fill c's ring (c never reads); the 64th waits, lossless, and so does
  // everything a queues behind it
  for (let i = 0; i < 64; i++) a.inject(frame(0x0a, i));
  a.txsync();
  await until(() => sw.counters(sw.port('vale0:c')!.index)['txFrames'] === 63);
  const slots = (k: number): Uint8Array[] => Array.from({ length: k }, () => frame(0x0a, 200));
  sendChain(a, slots(3)); // a 3-slot frame
  // and a chain a never finishes, longer than a frame may be (64 slots,
  // NETMAP_MAX_FRAGS): the switch would have taken it as three (64, 64, 2)
  sendChain(a, slots(2 * 64 + 2), true);
  a.close();
  await gone.of('vale0:p');
  const k = sw.counters(idx);
  t.is(k['dropClosed'], 1 + 1 + 3, 'the held frame, the chain, the endless chain: five frames (134 slots)');
  t.is(k['rxFrames'], 63 + 5);
});

test('frames a client never read when it went are counted as frames (detachedUnread), a chain of slots as one', async (t) => {
  t.timeout(60_000);
  const { socket, gone, c, sw } = await persistentRig(t);
  const idx = sw.port('vale0:p')!.index;
  const a = await open('vale0:p', { socket });
  // c sends a a 3-slot frame and a 1-slot one; a never reads them
  sendChain(c, [frame(0x0c, 7), frame(0x0c, 7), frame(0x0c, 7)]);
  c.inject(frame(0x0c, 8));
  c.txsync();
  await until(() => sw.counters(idx)['txFrames'] === 2);
  a.close();
  await gone.of('vale0:p');
  t.is(sw.counters(idx)['detachedUnread'], 2, 'two frames delivered and not read (four slots)');
});

test("a client's lossless request lasts while it holds a persistent port: the next client starts from the port's own mode", async (t) => {
  const { socket, gone, sw } = await persistentRig(t);
  const port = (): { lossless: boolean } => sw.port('vale0:p')!;
  t.false(port().lossless, "the port's own mode");
  const a = await open('vale0:p', { socket, lossless: true });
  t.true(port().lossless, "a's request");
  a.close();
  await gone.of('vale0:p');
  t.false(port().lossless, 'back to its own when a left');
  const b = await open('vale0:p', { socket });
  t.teardown(() => b.close());
  t.false(port().lossless, 'b asked for nothing and gets the port as it is, not as a left it');
});
