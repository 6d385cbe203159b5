/**
 * The co-resident shortcut's rendezvous and hang-ups against a local process
 * of vale-ts's own uid that does what the socket protocol lets it do, in one
 * process on the loopback: a vale-ts server here, VTEPs on 127.0.0.1 and
 * 127.0.0.2 that are each other's static remote, and connections the test
 * makes to a VTEP's rendezvous socket itself (docs/vxlan-shortcut.md).
 */
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { chmodSync, closeSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { open, ValeClient, ValeServer, type Port } from '../../src/index.js';
import { nativeRaw } from '../../src/netmap/addon.js';
import { SHORTCUT_SLOT_HEADER, shortcutChannels, shortcutRingOffsets, shortcutSlotStride } from '../fixtures/shortcut.js';
import { freePort, udpOn } from '../fixtures/udp.js';
import { readable, untilAnswer } from '../fixtures/wait.js';

interface Claim {
  instance: string;
  nonce: string;
  yours: string;
}
const hook = nativeRaw as {
  shortcutConnect(dir: string, id: string): number;
  shortcutListen(dir: string, id: string): number;
  shortcutAccept(listenFd: number): number;
  shortcutRecvClaim(fd: number): Claim;
  shortcutSendClaim(fd: number, c: { instance: string; vni: number; family: number; mine: string; yours: string; nonce: string; bufSize: number }): void;
};

const socket = path.join(os.tmpdir(), `vxlan-sc-hostile-${process.pid}.sock`);
const VNI = 78;
let srv: ValeServer;
let vale: ValeClient;

test.before(async () => {
  // no stall bound: a lossless port whose receiver stops is held as long as
  // a test wants (the "switch with no room" of the hang-up test)
  srv = await ValeServer.listen({ socket, switchOptions: { stallMs: 1e9 } });
  vale = new ValeClient({ socket });
});

test.after.always(() => {
  srv?.close();
});

async function vx(sw: string): Promise<Record<string, number>> {
  const [st] = await vale.stats(sw);
  const p = st!.ports.find((x) => x.name === `${sw}:vx`);
  if (!p?.driver) throw new Error(`${sw}:vx has no driver in the stats`);
  return p.driver.counters;
}

function rendezvousDir(t: { teardown(f: () => void): void }): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vxsc-h-'));
  chmodSync(dir, 0o700);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The instance ids (hex) of the listeners in `dir`. */
const listeners = (dir: string): string[] => readdirSync(dir).filter((f) => f.endsWith('.sock')).map((f) => f.slice(0, 32));

/** Whether the VTEP closed our end of a rendezvous connection (we never sent it anything). */
function closedByPeer(fd: number): boolean {
  try {
    hook.shortcutRecvClaim(fd);
    return false;
  } catch (e) {
    if (/went away/.test(String(e))) return true;
    if (/EAGAIN|temporarily unavailable/i.test(String(e))) return false;
    throw e;
  }
}

/** This host's boot id, as HELLOs carry it (hex). */
const bootId = (): string => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim().replace(/-/g, '');
const HELLO = 1, PROOF = 2;
/**
 * A shortcut control datagram (docs/vxlan-shortcut.md, "Discovery"): the
 * VXLAN header with I | 0x40, the inner frame's header, "VTSC", version 1,
 * the type, then two 16-byte fields (HELLO: boot id, instance id; PROOF:
 * the sender's instance id, the receiver's nonce), as hex.
 */
function control(type: number, a: string, b: string): Buffer {
  const d = Buffer.alloc(8 + 54);
  d.set([0x48, 0, 0, 0, VNI >> 16, (VNI >> 8) & 0xff, VNI & 0xff, 0]);
  const inner = d.subarray(8);
  inner.set([3, 0x76, 0x61, 0x6c, 0x65, 0x73, 3, 0x76, 0x61, 0x6c, 0x65, 0x73, 0x88, 0xb5], 0);
  inner.write('VTSC', 14, 'latin1');
  inner.set([1, type, 0, 0], 18);
  Buffer.from(a, 'hex').copy(inner, 22);
  Buffer.from(b, 'hex').copy(inner, 38);
  return d;
}
/** A VTEP address as CLAIMs carry it (16 bytes, hex): 127.0.0.x */
const claimAddr = (x: number): string => `7f0000${x.toString(16).padStart(2, '0')}${'0'.repeat(24)}`;

/**
 * Makes `sw`:vx until its instance id (random) is below `below` (it then
 * connects to that one), or with `above`, not below it: failed with a message
 * after 40 tries. Each try's chance is where `below` lies in the id range, so
 * a caller picks a `below` in the upper half (made so with `above`: an even
 * chance a try) and 40 tries fail once in 2^40.
 */
async function createBelow(t: { fail(m: string): void }, sw: string, dir: string, below: string, opts: Record<string, unknown>, above = false): Promise<boolean> {
  const before = new Set(listeners(dir));
  for (let tries = 1; tries <= 40; tries++) {
    await vale.create(`${sw}:vx`, {}, opts);
    if (listeners(dir).some((id) => !before.has(id) && (id < below) !== above)) return true;
    await vale.remove(`${sw}:vx`);
  }
  t.fail(`40 instance ids of ${sw}:vx in a row were ${above ? 'below' : 'above'} ${below}`);
  return false;
}
const HALF = '8'.padEnd(32, '0');

test.serial('rendezvous connections that never send a CLAIM: at most 8 wait at once, the oldest closed and counted (shortcutUnclaimedEvicted), and the real neighbour still pairs', async (t) => {
  t.timeout(60_000);
  const dir = rendezvousDir(t);
  const [pa, pb] = [await freePort(), await freePort()];
  // a handshake bound no run comes near: only the cap is at work here
  const vtep = (local: string, port: number, remote: string, dstport: number) => ({
    driver: { kind: 'vxlan', vni: VNI, local: `${local}:${port}`, remote: [remote], dstport, srcport: 'fixed', shortcutdir: dir, shortcuthandshakems: 3_600_000 },
  });
  // A's id in the upper half, so that each B made below has an even chance
  // of the smaller id (a tiny random idA left B 40 tries of ~1% each)
  t.teardown(() => vale.remove('valeUA:vx').catch(() => undefined));
  if (!(await createBelow(t, 'valeUA', dir, HALF, vtep('127.0.0.1', pa, '127.0.0.2', pb), true))) return;
  const [idA] = listeners(dir);
  t.truthy(idA);
  // a local process of vale-ts's uid opens connections and sends nothing;
  // two rounds, each within the listen backlog, each waited for
  const fds: number[] = [];
  t.teardown(() => fds.forEach((fd) => closeSync(fd)));
  for (const round of [8, 4]) {
    for (let i = 0; i < round; i++) fds.push(hook.shortcutConnect(dir, idA!));
    await untilAnswer(() => vx('valeUA'), (c) => c['shortcutConnects']! >= fds.length);
  }
  const c = await vx('valeUA');
  t.is(c['shortcutConnects'], 12);
  t.is(c['shortcutUnclaimedEvicted'], 4, 'the four oldest are closed');
  t.deepEqual(fds.map(closedByPeer), [...Array<boolean>(4).fill(true), ...Array<boolean>(8).fill(false)]);
  // B, the real neighbour, claims at once on connecting: it pairs although
  // eight connections without a CLAIM still wait at A. The smaller instance
  // id connects: B is made again until its id is the smaller one, so that
  // it is B that connects to A (an even chance each time)
  t.teardown(() => vale.remove('valeUB:vx').catch(() => undefined));
  if (!(await createBelow(t, 'valeUB', dir, idA!, vtep('127.0.0.2', pb, '127.0.0.1', pa)))) return;
  await untilAnswer(() => vx('valeUA'), (x) => x['remote 127.0.0.2 shortcutPeer'] === 3);
  await untilAnswer(() => vx('valeUB'), (x) => x['remote 127.0.0.1 shortcutPeer'] === 3);
  t.is((await vx('valeUB'))['shortcutPeerBad'], 0);
  // its connection took the place of the oldest one waiting, if any
  const a = await vx('valeUA');
  t.true(a['shortcutUnclaimedEvicted']! <= 5, JSON.stringify(a));
  t.is(fds.filter(closedByPeer).length, a['shortcutUnclaimedEvicted']);
});

test.serial('rendezvous connections not through CLAIM and PROOF within shortcuthandshakems are closed and counted (shortcutHandshakeTimeout): one that sends nothing, and one whose CLAIM holds the endpoint but never proves it', async (t) => {
  t.timeout(60_000);
  const dir = rendezvousDir(t);
  // the test plays the remote 127.0.0.2 on the underlay (HELLOs from its
  // address) and on the rendezvous socket; it can never send the PROOF, as
  // a local process that only reads the directory and the HELLOs cannot
  const remote = await udpOn('127.0.0.2');
  t.teardown(() => remote.close());
  const pa = await freePort();
  await vale.create('valeUC:vx', {}, {
    driver: { kind: 'vxlan', vni: VNI, local: `127.0.0.1:${pa}`, remote: ['127.0.0.2'], dstport: remote.address().port, srcport: 'fixed', shortcutdir: dir, shortcuthandshakems: 1 },
  });
  t.teardown(() => vale.remove('valeUC:vx').catch(() => undefined));
  const [id] = listeners(dir);
  const silent = hook.shortcutConnect(dir, id!);
  t.teardown(() => closeSync(silent));
  // a HELLO from the remote's address with this host's boot id and an
  // instance id of the test's choosing (smaller than A's: A waits to be called)
  const fake = '00000000000000000000000000000001';
  remote.send(control(HELLO, bootId(), fake), pa, '127.0.0.1');
  await untilAnswer(() => vx('valeUC'), (x) => x['remote 127.0.0.2 sameHost'] === 1);
  // A reads a CLAIM when it accepts the connection or when the connection
  // turns readable; its once-a-period check of the 1 ms bound may come
  // between the two (a loaded machine), and then closes it unread: the case
  // of the silent one, not this one. So a CLAIM is sent again on a fresh
  // connection until A has answered one (the answer is the event), at most 20.
  let answer: Claim | undefined;
  const claimed: number[] = [];
  t.teardown(() => claimed.forEach((fd) => closeSync(fd)));
  while (!answer) {
    if (claimed.length === 20) return t.fail('A closed 20 connections in a row before it read their CLAIM');
    const fd = hook.shortcutConnect(dir, id!);
    claimed.push(fd);
    hook.shortcutSendClaim(fd, { instance: fake, vni: VNI, family: 4, mine: claimAddr(2), yours: claimAddr(1), nonce: 'ab'.repeat(16), bufSize: 2048 });
    await readable(fd); // A's own CLAIM, or its hang-up
    try {
      answer = hook.shortcutRecvClaim(fd);
    } catch (e) {
      if (!/went away/.test(String(e))) throw e;
    }
  }
  // A took the CLAIM: it answered with its own, for our address
  t.is(answer.yours, claimAddr(2));
  // checked once a HELLO period: the counter is the event
  const n = 1 + claimed.length;
  const c = await untilAnswer(() => vx('valeUC'), (x) => x['shortcutHandshakeTimeout'] === n || x['shortcutPeerBad']! > 0);
  t.is(c['shortcutConnects'], n);
  t.is(c['shortcutHandshakeTimeout'], n);
  t.is(c['shortcutPeerBad'], 0);
  t.is(c['remote 127.0.0.2 shortcutPeer'], 0, 'the endpoint is free for a rendezvous again');
  t.true(closedByPeer(silent));
  t.true(claimed.every(closedByPeer));
});

test.serial('a same-uid peer that takes the rendezvous, CLAIMs and PROVEs but never sends the CHANNEL is closed after shortcuthandshakems (shortcutHandshakeTimeout), and the real neighbour then pairs', async (t) => {
  t.timeout(60_000);
  const dir = rendezvousDir(t);
  // the hostile local process: the remote 127.0.0.2 on the underlay, then
  // (its port let go) the real neighbour B there
  const remote = await udpOn('127.0.0.2');
  const pb = remote.address().port;
  let remoteOpen = true;
  t.teardown(() => {
    if (remoteOpen) remote.close();
  });
  const proofsToRemote = new Set<string>(); // nonces A sent back over VXLAN: it took that CLAIM
  remote.on('message', (d: Buffer) => {
    if (d.length >= 8 + 54 && d[0] === 0x48 && d[8 + 19] === PROOF) proofsToRemote.add(d.subarray(8 + 38, 8 + 54).toString('hex'));
  });
  const pa = await freePort();
  // a bound the hostile's exchange and the real pairing meet with room to
  // spare; one that misses it is tried again (below, and by the next HELLO)
  const vtep = (local: string, port: number, rem: string, dstport: number) => ({
    driver: { kind: 'vxlan', vni: VNI, local: `${local}:${port}`, remote: [rem], dstport, srcport: 'fixed', shortcutdir: dir, shortcuthandshakems: 1000 },
  });
  await vale.create('valeUE:vx', {}, vtep('127.0.0.1', pa, '127.0.0.2', pb));
  t.teardown(() => vale.remove('valeUE:vx').catch(() => undefined));
  const [idA] = listeners(dir);
  // its own listener, with an instance id above A's: A is the one that
  // connects, and gets the CHANNEL from it (which it never sends)
  const fake = 'ff'.repeat(16);
  t.true(idA! < fake);
  const lfd = hook.shortcutListen(dir, fake);
  t.teardown(() => closeSync(lfd));
  const conns: number[] = [];
  t.teardown(() => conns.forEach((fd) => closeSync(fd)));
  // A connects on the HELLO, the hostile takes A's CLAIM (A's nonce), sends
  // its own and the PROOF with A's nonce from the remote's address. Proven
  // when A counted the PROOF for a live connection and sent ours back (it
  // took our CLAIM). A bound that ran out first (a loaded machine) closed
  // the connection before: tried again, at most 10 times.
  let conn = -1;
  for (let attempt = 1; ; attempt++) {
    if (attempt > 10) return t.fail('A closed 10 rendezvous in a row before CLAIM and PROOF were through');
    const before = await vx('valeUE');
    remote.send(control(HELLO, bootId(), fake), pa, '127.0.0.1');
    await readable(lfd);
    conn = hook.shortcutAccept(lfd);
    conns.push(conn);
    await readable(conn);
    const claimA = hook.shortcutRecvClaim(conn); // sent as A connected
    t.is(claimA.instance, idA);
    const nonce = randomBytes(16).toString('hex');
    hook.shortcutSendClaim(conn, { instance: fake, vni: VNI, family: 4, mine: claimAddr(2), yours: claimAddr(1), nonce, bufSize: 2048 });
    remote.send(control(PROOF, fake, claimA.nonce), pa, '127.0.0.1');
    const x = await untilAnswer(
      () => vx('valeUE'),
      (y) => (y['shortcutProofs']! > before['shortcutProofs']! || y['shortcutProofBad']! > before['shortcutProofBad']!) && (proofsToRemote.has(nonce) || closedByPeer(conn)),
    );
    if (x['shortcutProofs']! > before['shortcutProofs']! && proofsToRemote.has(nonce)) break;
  }
  // then silence: no CHANNEL. The bound holds until a ring is mapped, so
  // the connection is closed (the old rule, "CLAIM and PROOF are through",
  // kept it, and the endpoint's one rendezvous, for good)
  await readable(conn);
  t.true(closedByPeer(conn));
  const a = await vx('valeUE');
  t.is(a['shortcutHandshakeTimeout'], conns.length);
  t.is(a['shortcutPeerBad'], 0);
  t.is(a['shortcutChannels'], 0);
  t.is(a['remote 127.0.0.2 shortcutPeer'], 0, 'the endpoint is free for a rendezvous again');
  // the real neighbour at 127.0.0.2 pairs
  await new Promise<void>((r) => remote.close(() => r()));
  remoteOpen = false;
  await vale.create('valeUF:vx', {}, vtep('127.0.0.2', pb, '127.0.0.1', pa));
  t.teardown(() => vale.remove('valeUF:vx').catch(() => undefined));
  await untilAnswer(() => vx('valeUE'), (x) => x['remote 127.0.0.2 shortcutPeer'] === 3);
  await untilAnswer(() => vx('valeUF'), (x) => x['remote 127.0.0.1 shortcutPeer'] === 3);
  t.is((await vx('valeUE'))['shortcutPeerBad'], 0);
});

/** The shortcut channels (memfds) this process holds: each live or draining ring is one. */
const channels = (): number => shortcutChannels().length;

/** A broadcast Ethernet frame from 02:00:00:00:0b:0b. */
function broadcast(seq: number): Uint8Array {
  const f = new Uint8Array(60);
  f.fill(0xff, 0, 6);
  f.set([2, 0, 0, 0, 0x0b, 0x0b], 6);
  f.set([0x08, 0x00], 12);
  f[14] = seq & 0xff;
  return f;
}

/**
 * What a peer that keeps its channel can do after it hung up: publish `n`
 * more frames into its ring to us, in `chan`. Its ring is the one whose
 * producer index is `tail` (our ring to it has none). The layout is
 * cpp/core/shortcut_ring.h's: a 64-byte header ("VTSCRING", version, slots,
 * slot size), then each ring's two index lines (tail at +0) and its slots,
 * each a u32 length and the frame (the header's size from the addon).
 */
function publishAfterHangup(t: ExecutionContext, chan: string, tail: number, n: number): void {
  const fd = openSync(chan, 'r+');
  try {
    const u32 = (off: number): number => {
      const b = Buffer.alloc(4);
      readSync(fd, b, 0, 4, off);
      return b.readUInt32LE(0);
    };
    const slots = u32(12), slotSize = u32(16), hdr = SHORTCUT_SLOT_HEADER;
    const stride = shortcutSlotStride(slotSize);
    const rings = shortcutRingOffsets(slots, slotSize).filter((off) => u32(off) === tail);
    t.is(rings.length, 1, `one ring of ${chan} has ${tail} frames published`);
    const ring = rings[0]!;
    for (let j = 0; j < n; j++) {
      const slot = Buffer.alloc(hdr + 60);
      slot.writeUInt32LE(60, 0);
      slot.set(broadcast(j), hdr);
      writeSync(fd, slot, 0, slot.length, ring + 128 + ((tail + j) & (slots - 1)) * stride);
    }
    const b = Buffer.alloc(4);
    b.writeUInt32LE(tail + n, 0);
    writeSync(fd, b, 0, 4, ring);
  } finally {
    closeSync(fd);
  }
}

test.serial('a peer that pairs and hangs up again and again while the switch has no room leaves at most 2 rings waiting to drain: the oldest is let go, its unread frames counted (shortcutDrainDropped) and those published after the hang-up too (shortcutLeftOnHangup)', async (t) => {
  t.timeout(180_000);
  const dir = rendezvousDir(t);
  const [pa, pb] = [await freePort(), await freePort()];
  const toB = 'remote 127.0.0.2 ', toA = 'remote 127.0.0.1 ';
  // A: a lossless VTEP with a 64-slot tx ring, on a switch whose other
  // port (64 rx slots) never reads: once 128 frames are in, A's ring
  // frames wait in the rings, and A gets a slot only when the test frees one
  await srv.createPort('valeDA:vx', {
    conf: { txSlots: 64 },
    lossless: true,
    driver: { kind: 'vxlan', vni: VNI, local: `127.0.0.1:${pa}`, remote: ['127.0.0.2'], dstport: pb, srcport: 'fixed', shortcutdir: dir },
  });
  t.teardown(() => vale.remove('valeDA:vx').catch(() => undefined));
  const c = await open('valeDA:c@conf:rx_slots=64', { socket });
  t.teardown(() => c.close());
  const b = await open('valeDB:c', { socket });
  t.teardown(() => b.close());
  t.teardown(() => vale.remove('valeDB:vx').catch(() => undefined));
  const vxA = (): Promise<Record<string, number>> => vx('valeDA');
  const vxB = (): Promise<Record<string, number>> => vx('valeDB');
  // A reads its socket (HELLOs, PROOFs) only when it has a free tx slot,
  // which its rings of gone peers take first. Until `done`, whenever a
  // datagram waits in A's socket (/proc/net/udp), one slot is freed and
  // the test waits until A's thread has taken a ring frame into it (a turn
  // of its loop, which may have read the socket first). A slot a datagram
  // costs: a receiver slower than the peer's pairing and hanging up.
  const aSocket = `0100007F:${pa.toString(16).toUpperCase().padStart(4, '0')}`;
  const queued = (): boolean => readFileSync('/proc/net/udp', 'utf8').split('\n').some((l) => {
    const f = l.trim().split(/\s+/);
    return f[1] === aSocket && parseInt(f[4]!.split(':')[1]!, 16) > 0;
  });
  const drip = async (done: (x: Record<string, number>) => boolean): Promise<void> => {
    for (;;) {
      const x = await vxA();
      if (done(x)) return;
      if (!queued()) continue;
      const before = x[`${toB}shortcutRxFrames`] ?? 0;
      c.rxsync();
      c.dispatch(1, () => undefined);
      c.rxsync();
      await untilAnswer(vxA, (y) => (y[`${toB}shortcutRxFrames`] ?? 0) > before || done(y));
    }
  };
  // B sends this many frames into its ring: more than A can take (128)
  const FRAMES = 1000;
  const CYCLES = 6;
  // frames B's ring gets after each hang-up (B's memfd kept by a process
  // of its uid): never read, counted whether the ring is drained or let go
  const EXTRA = 8;
  const seen = new Set<number>();
  for (let k = 1; k <= CYCLES; k++) {
    await vale.create('valeDB:vx', {}, {
      driver: { kind: 'vxlan', vni: VNI, local: `127.0.0.2:${pb}`, remote: ['127.0.0.1'], dstport: pa, srcport: 'fixed', shortcutdir: dir },
    });
    await drip((x) => x[`${toB}shortcutPeer`] === 3);
    await untilAnswer(vxB, (x) => x[`${toA}shortcutPeer`] === 3);
    const fresh = shortcutChannels().map((p) => statSync(p).ino).filter((ino) => !seen.has(ino));
    t.is(fresh.length, 1, 'one new channel');
    seen.add(fresh[0]!);
    for (let sent = 0; sent < FRAMES;) {
      let n = 0;
      while (sent < FRAMES && n < 200 && b.inject(broadcast(sent))) {
        sent++;
        n++;
      }
      b.txsync();
      await untilAnswer(vxB, (x) => x[`${toA}shortcutTxFrames`]! >= sent);
    }
    t.is((await vxB())[`${toA}txFrames`], 0, 'every frame went into the ring');
    await vale.remove('valeDB:vx');
    await untilAnswer(vxA, (x) => x['shortcutPeerGone'] === k);
    // A took B's producer index as the ring's end when it saw B go (it
    // holds the ring: the newest waiting to drain)
    const chan = shortcutChannels().find((p) => statSync(p).ino === fresh[0]);
    if (!chan) return t.fail(`the ring of pairing ${k} is not held after its hang-up`);
    publishAfterHangup(t, chan, FRAMES, EXTRA);
    t.true(channels() <= 2, `after ${k} hang-ups: ${channels()} rings held`);
  }
  const x = await vxA();
  t.is(x['shortcutRingBroken'], 0);
  t.is(channels(), 2, 'two rings wait to drain, the rest were let go');
  // every frame B put in is delivered, counted dropped, or in the two rings
  // kept (the few slots freed per pairing come out of the oldest ring)
  const rx = x[`${toB}shortcutRxFrames`]!, dropped = x['shortcutDrainDropped']!;
  t.true(dropped >= (CYCLES - 3) * FRAMES, JSON.stringify(x));
  t.is(rx + dropped + 2 * FRAMES, CYCLES * FRAMES);
  // the receiver catches up: the two kept rings are read to their end and let go
  const all = await untilAnswer(async () => {
    c.rxsync();
    c.dispatch(1024, () => undefined);
    c.rxsync();
    return vxA();
  }, (y) => y[`${toB}shortcutRxFrames`] === CYCLES * FRAMES - dropped);
  t.is(all['shortcutDrainDropped'], dropped);
  t.is(all['shortcutLeftOnHangup'], CYCLES * EXTRA, 'the frames published after each hang-up, of rings drained and let go alike');
  t.is(channels(), 0);
});
