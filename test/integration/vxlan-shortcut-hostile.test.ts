/**
 * The co-resident shortcut's rendezvous and hang-ups against a local process
 * of vale-ts's own uid that does what the socket protocol lets it do, in one
 * process on the loopback: a vale-ts server here, VTEPs on 127.0.0.1 and
 * 127.0.0.2 that are each other's static remote, and connections the test
 * makes to a VTEP's rendezvous socket itself (docs/vxlan-shortcut.md).
 */
import test from 'ava';
import { createSocket, type Socket } from 'node:dgram';
import { chmodSync, closeSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ValeClient, ValeServer } from '../../src/index.js';
import { nativeRaw } from '../../src/netmap/addon.js';
import { untilAnswer } from '../fixtures/wait.js';

const hook = nativeRaw as {
  shortcutConnect(dir: string, id: string): number;
  shortcutRecvClaim(fd: number): unknown;
  shortcutSendClaim(fd: number, c: { instance: string; vni: number; family: number; mine: string; yours: string; nonce: string; bufSize: number }): void;
};

const socket = path.join(os.tmpdir(), `vxlan-sc-hostile-${process.pid}.sock`);
const VNI = 78;
let srv: ValeServer;
let vale: ValeClient;

test.before(async () => {
  srv = await ValeServer.listen({ socket });
  vale = new ValeClient({ socket });
});

test.after.always(() => {
  srv?.close();
});

async function udpOn(addr: string): Promise<Socket> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind({ address: addr, port: 0 }, () => resolve());
  });
  return s;
}

/** A free UDP port of 127.0.0.1 (let go just before a VTEP binds it). */
async function freePort(): Promise<number> {
  const s = await udpOn('127.0.0.1');
  const p = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

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

test.serial('rendezvous connections that never send a CLAIM: at most 8 wait at once, the oldest closed and counted (shortcutUnclaimedEvicted), and the real neighbour still pairs', async (t) => {
  t.timeout(60_000);
  const dir = rendezvousDir(t);
  const [pa, pb] = [await freePort(), await freePort()];
  // a handshake bound no run comes near: only the cap is at work here
  const vtep = (local: string, port: number, remote: string, dstport: number) => ({
    driver: { kind: 'vxlan', vni: VNI, local: `${local}:${port}`, remote: [remote], dstport, srcport: 'fixed', shortcutdir: dir, shortcuthandshakems: 3_600_000 },
  });
  await vale.create('valeUA:vx', {}, vtep('127.0.0.1', pa, '127.0.0.2', pb));
  t.teardown(() => vale.remove('valeUA:vx').catch(() => undefined));
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
  for (;;) {
    await vale.create('valeUB:vx', {}, vtep('127.0.0.2', pb, '127.0.0.1', pa));
    if (listeners(dir).some((id) => id < idA!)) break;
    await vale.remove('valeUB:vx');
  }
  await untilAnswer(() => vx('valeUA'), (x) => x['remote 127.0.0.2 shortcutPeer'] === 3);
  await untilAnswer(() => vx('valeUB'), (x) => x['remote 127.0.0.1 shortcutPeer'] === 3);
  t.is((await vx('valeUB'))['shortcutPeerBad'], 0);
  // its connection took the place of the oldest one waiting, if any
  const a = await vx('valeUA');
  t.true(a['shortcutUnclaimedEvicted']! <= 5, JSON.stringify(a));
  t.is(fds.filter(closedByPeer).length, a['shortcutUnclaimedEvicted']);
});

test.serial('rendezvous connections not through CLAIM and PROOF within shortcuthandshakems are closed and counted (shortcutHandshakeTimeout): one that sends nothing, and one whose CLAIM holds the endpoint but never proves it', async (t) => {
  t.timeout(30_000);
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
  const hello = Buffer.alloc(8 + 54);
  hello.set([0x48, 0, 0, 0, VNI >> 16, (VNI >> 8) & 0xff, VNI & 0xff, 0]);
  const inner = hello.subarray(8);
  inner.set([3, 0x76, 0x61, 0x6c, 0x65, 0x73, 3, 0x76, 0x61, 0x6c, 0x65, 0x73, 0x88, 0xb5], 0);
  inner.write('VTSC', 14, 'latin1');
  inner.set([1, 1, 0, 0], 18);
  Buffer.from(readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim().replace(/-/g, ''), 'hex').copy(inner, 22);
  Buffer.from(fake, 'hex').copy(inner, 38);
  remote.send(hello, pa, '127.0.0.1');
  await untilAnswer(() => vx('valeUC'), (x) => x['remote 127.0.0.2 sameHost'] === 1);
  const claimed = hook.shortcutConnect(dir, id!);
  t.teardown(() => closeSync(claimed));
  const pad = '0'.repeat(24);
  hook.shortcutSendClaim(claimed, { instance: fake, vni: VNI, family: 4, mine: `7f000002${pad}`, yours: `7f000001${pad}`, nonce: 'ab'.repeat(16), bufSize: 2048 });
  // checked once a HELLO period: the counter is the event
  const c = await untilAnswer(() => vx('valeUC'), (x) => x['shortcutHandshakeTimeout'] === 2 || x['shortcutPeerBad']! > 0);
  t.is(c['shortcutConnects'], 2);
  t.is(c['shortcutHandshakeTimeout'], 2);
  t.is(c['shortcutPeerBad'], 0);
  t.is(c['remote 127.0.0.2 shortcutPeer'], 0, 'the endpoint is free for a rendezvous again');
  t.true(closedByPeer(silent));
  // A took the CLAIM (it answered with its own) before it gave up on the PROOF
  const answer = hook.shortcutRecvClaim(claimed) as { yours: string };
  t.is(answer.yours, `7f000002${pad}`);
  t.true(closedByPeer(claimed));
});
