/**
 * The co-resident shortcut end to end (docs/vxlan-shortcut.md): two vale-ts
 * on one host, joined by VXLAN (vni 46), switch their traffic to a shared
 * memory channel and back while a TCP transfer runs through them.
 *
 *   t1 (192.172.R.1) --TAP-- vale-ts #1 (v1) ==VXLAN / shortcut== vale-ts #2 (v2) --AF_PACKET-- veth -- t2 (192.172.R.2)
 *
 * vale-ts #2 reaches t2 through a veth it attaches (not a TAP it owns), so
 * t2's interface, address and MAC outlive vale-ts #2 being killed.
 *
 * The two start with separate rendezvous directories, as two containers
 * whose runtime directories are not shared yet: they find each other by
 * HELLO but cannot meet, so the transfer starts over VXLAN. Linking each
 * one's socket into the other's directory (what bind-mounting a shared
 * directory does) lets the next HELLO bring the shortcut up under load.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { closeSync, linkSync, mkdtempSync, openSync, readdirSync, readlinkSync, readSync, rmSync, statSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ValeClient } from '../../src/index.js';
import { inNs, ip, makeNs, tcpSink, tcpTransfer } from '../fixtures/netns.js';
import { ensurePackages } from '../fixtures/system-packages.js';
import { shortcutRingOffsets } from '../fixtures/shortcut.js';
import { untilAnswer } from '../fixtures/wait.js';
import { startValeTsIn, tapInto } from '../fixtures/vale-ts-netns.js';

const R = 100 + (process.pid % 100);
const tag = `vs${process.pid}`;
const ns = { u: `${tag}u`, v1: `${tag}v1`, v2: `${tag}v2`, t1: `${tag}t1`, t2: `${tag}t2` };
const under = { v1: `10.${R}.1.1`, v2: `10.${R}.1.3` };
const host1 = `192.172.${R}.1`;
const host2 = `192.172.${R}.2`;
const dir1 = mkdtempSync(path.join(os.tmpdir(), 'vs-rdv1-'));
const dir2 = mkdtempSync(path.join(os.tmpdir(), 'vs-rdv2-'));
const sock1 = path.join(os.tmpdir(), `vxlan-sc-${process.pid}-1.sock`);
const sock2 = path.join(os.tmpdir(), `vxlan-sc-${process.pid}-2.sock`);
const cleanups: (() => void)[] = [];
const stops: (() => Promise<void>)[] = [];

function underlayLink(a: string, name: string, cidr: string): void {
  ip('link', 'add', name, 'type', 'veth', 'peer', 'name', `${name}p`);
  ip('link', 'set', name, 'netns', a);
  ip('link', 'set', `${name}p`, 'netns', ns.u);
  ip('-n', ns.u, 'link', 'set', `${name}p`, 'master', 'br0', 'up');
  ip('-n', a, 'addr', 'add', cidr, 'dev', name);
  ip('-n', a, 'link', 'set', name, 'up');
}

/** vale-ts #2 and its two ports: the veth to t2 (AF_PACKET) and the VTEP. */
async function startVale2(dir: string): Promise<ValeClient> {
  const p = await startValeTsIn(ns.v2, sock2);
  stops.push(p.stop);
  await p.client.create('valeS:eth', {}, { driver: { kind: 'af-packet', ifname: `${tag}h` } });
  await p.client.create('valeS:vx', {}, { driver: { kind: 'vxlan', vni: 46, local: under.v2, remote: [under.v1], shortcutdir: dir, inline: 'off' } });
  return p.client;
}

let vale1: ValeClient;
let vale2: ValeClient;
let pid1 = 0;

test.before(async () => {
  ensurePackages(['iproute2', 'iputils-ping', 'ethtool']);
  for (const n of Object.values(ns)) cleanups.push(makeNs(n));
  cleanups.push(() => rmSync(dir1, { recursive: true, force: true }), () => rmSync(dir2, { recursive: true, force: true }));
  ip('-n', ns.u, 'link', 'add', 'br0', 'type', 'bridge');
  ip('-n', ns.u, 'link', 'set', 'br0', 'up');
  underlayLink(ns.v1, `${tag}a`, `${under.v1}/24`);
  underlayLink(ns.v2, `${tag}b`, `${under.v2}/24`);
  // t2's veth: its far end stays in v2 for vale-ts #2 to attach
  ip('link', 'add', `${tag}g`, 'type', 'veth', 'peer', 'name', `${tag}h`);
  ip('link', 'set', `${tag}g`, 'netns', ns.t2);
  ip('link', 'set', `${tag}h`, 'netns', ns.v2);
  ip('-n', ns.v2, 'link', 'set', `${tag}h`, 'mtu', '1430', 'up');
  ip('-n', ns.t2, 'link', 'set', `${tag}g`, 'mtu', '1430');
  ip('-n', ns.t2, 'addr', 'add', `${host2}/24`, 'dev', `${tag}g`);
  ip('-n', ns.t2, 'link', 'set', `${tag}g`, 'up');

  const p1 = await startValeTsIn(ns.v1, sock1);
  stops.push(p1.stop);
  vale1 = p1.client;
  pid1 = p1.proc.pid!;
  await vale1.create('valeS:tap', {}, { driver: { kind: 'tap', ifname: `${tag}T` } });
  // #1's VTEP in-line in its switch's rounds (the default: the switch
  // copies the transfer's frames from the TAP port's buffers straight into
  // the ring), #2's in a thread of its own: the shortcut between the two
  // ways a VTEP runs
  await vale1.create('valeS:vx', {}, { driver: { kind: 'vxlan', vni: 46, local: under.v1, remote: [under.v2], shortcutdir: dir1 } });
  tapInto(ns.v1, ns.t1, `${tag}T`, `${host1}/24`, 1430);
  vale2 = await startVale2(dir2);
});

test.after.always(async () => {
  await Promise.all(stops.map((s) => s()));
  for (const c of cleanups.reverse()) c();
});

async function vx(c: ValeClient): Promise<Record<string, number>> {
  const [s] = await c.stats('valeS');
  const p = s!.ports.find((x) => x.name === 'valeS:vx');
  if (!p?.driver) throw new Error('valeS:vx has no driver in the stats');
  return p.driver.counters;
}

/** Waits for a condition on the two VTEPs' counters (polled: they are another process's). */
async function until(what: (c1: Record<string, number>, c2: Record<string, number>) => boolean, only1 = false): Promise<[Record<string, number>, Record<string, number>]> {
  const ask = async (): Promise<[Record<string, number>, Record<string, number>]> => [await vx(vale1), only1 ? {} : await vx(vale2)];
  return untilAnswer(ask, ([c1, c2]) => what(c1, c2));
}

// A sender that streams random bytes (paced, so it never starves the
// switches of the CPU) until told to stop on stdin, then prints its count and digest.
const SENDER = `
const net = require('node:net'), crypto = require('node:crypto');
const h = crypto.createHash('sha256');
let sent = 0, stop = false;
process.stdin.on('data', () => (stop = true));
const s = net.connect(Number(process.argv[1]), process.argv[2], () => {
  const tick = () => {
    if (stop) return s.end(() => { console.log(JSON.stringify({ bytes: sent, sha256: h.digest('hex') })); process.exit(0); });
    if (s.writableLength < (1 << 20)) {
      const c = crypto.randomBytes(128 << 10);
      h.update(c); sent += c.length; s.write(c);
    }
    // paces the writes (keeps ~1 MiB queued); nothing waits on it
    setTimeout(tick, 10);
  };
  tick();
});
s.on('data', () => {});
`;

const r1 = `remote ${under.v2} `; // vale-ts #1's view of #2
const r2 = `remote ${under.v1} `;

test.serial('two vale-ts on one host: VXLAN, then the shortcut under load (VXLAN counters stand still), #2 killed: back to VXLAN, restarted: the shortcut again; the TCP transfer throughout is intact', async (t) => {
  t.timeout(180_000);
  // -w: on a slow machine ping may send (and get) a third before the second reply
  t.regex(await inNs(ns.t1, ['ping', '-c', '2', '-A', '-w', '50', host2]), /[2-9] received/);
  const sink = tcpSink(ns.t2, host2, 5301);
  t.teardown(() => sink.kill());
  await sink.listening;
  const sender = spawn('ip', ['netns', 'exec', ns.t1, process.execPath, '-e', SENDER, '5301', host2], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.teardown(() => sender.kill());
  let sout = '', serr = '';
  sender.stdout.on('data', (d: Buffer) => (sout += d.toString()));
  sender.stderr.on('data', (d: Buffer) => (serr += d.toString()));
  const senderDone = new Promise<number | null>((r) => sender.once('exit', (code) => r(code)));

  // 1. over VXLAN: the two see each other on this host but cannot meet
  let [c1, c2] = await until((a) => a[`${r1}txFrames`]! > 2000);
  t.is(c1[`${r1}sameHost`], 1);
  t.is(c1[`${r1}shortcut`], 0);
  t.is(c2[`${r2}shortcut`], 0);
  t.is(c1[`${r1}shortcutUps`], 0);

  // 2. the directories shared: the shortcut comes up under load, both ways
  const socks = [dir1, dir2].map((d) => readdirSync(d).filter((f) => f.endsWith('.sock')));
  for (const f of socks[0]!) linkSync(path.join(dir1, f), path.join(dir2, f));
  for (const f of socks[1]!) linkSync(path.join(dir2, f), path.join(dir1, f));
  [c1, c2] = await until((a, b) => a[`${r1}shortcut`] === 2 && b[`${r2}shortcut`] === 2);
  t.is(c1[`${r1}shortcutUps`], 1);
  t.is(c2[`${r2}shortcutUps`], 1);
  // the data (#1 -> #2) and the ACKs (#2 -> #1) cross the rings; the VXLAN
  // counters stand still meanwhile
  const [s1, s2] = [c1, c2];
  [c1, c2] = await until((a, b) => a[`${r1}shortcutTxFrames`]! > s1[`${r1}shortcutTxFrames`]! + 3000 && b[`${r2}shortcutTxFrames`]! > s2[`${r2}shortcutTxFrames`]! + 300);
  t.is(c1[`${r1}txFrames`], s1[`${r1}txFrames`]);
  t.is(c2[`${r2}txFrames`], s2[`${r2}txFrames`]);
  t.true(c2[`${r2}shortcutRxFrames`]! >= c1[`${r1}shortcutTxFrames`]! - 1024); // read by #2 (at most a ring behind)
  t.true(c1['shortcutMarkersOut']! >= 1 && c2['shortcutMarkersIn']! >= 1);
  // #1's switch handed frames over from the senders' buffers; #2's thread never can
  t.true(c1['shortcutTxDirect']! > s1['shortcutTxDirect']!, JSON.stringify(c1));
  t.is(c2['shortcutTxDirect'], 0);

  // 3. vale-ts #2 killed: #1 sees the hang-up and sends over VXLAN again
  const before = c1[`${r1}txFrames`]!;
  await stops[1]!();
  [c1] = await until((a) => a[`${r1}shortcut`] === 0 && a[`${r1}txFrames`]! > before, true);
  t.is(c1[`${r1}shortcutDowns`], 1);
  // 4. restarted (in the shared directory now): VXLAN, then the shortcut again
  vale2 = await startVale2(dir1);
  [c1, c2] = await until((a, b) => a[`${r1}shortcut`] === 2 && b[`${r2}shortcut`] === 2 && a[`${r1}shortcutUps`] === 2);
  const s3 = c1[`${r1}shortcutTxFrames`]!;
  await until((a) => a[`${r1}shortcutTxFrames`]! > s3 + 2000);

  // 5. the transfer ends: every byte arrived, in order
  sender.stdin.write('stop\n');
  t.is(await senderDone, 0, serr);
  const sent = JSON.parse(sout.trim().split('\n').pop()!) as { bytes: number; sha256: string };
  const received = await sink.result;
  t.true(sent.bytes > 4 << 20, `only ${sent.bytes} bytes sent`);
  t.is(received.bytes, sent.bytes);
  t.is(received.sha256, sent.sha256);
  [c1, c2] = await until(() => true);
  const pick = (c: Record<string, number>, r: string): Record<string, number> =>
    Object.fromEntries(Object.entries(c).filter(([k]) => (k.startsWith(r) && /txFrames|shortcut/.test(k)) || /^shortcut(Markers|Lost|Late|Ring)/.test(k)));
  t.log(`${sent.bytes} bytes; #1: ${JSON.stringify(pick(c1, r1))}; #2 (restarted): ${JSON.stringify(pick(c2, r2))}`);
  for (const c of [c1, c2]) {
    t.is(c['shortcutRingBroken'], 0, JSON.stringify(c));
    t.is(c['shortcutPeerBad'], 0, JSON.stringify(c));
    t.is(c['shortcutMarkerBad'], 0, JSON.stringify(c));
  }
});

test.serial('a peer writing impossible indices into the live channel: the ring is declared broken, both fall back to VXLAN, and a new channel comes up; traffic intact', async (t) => {
  t.timeout(120_000);
  let [c1, c2] = await until((a, b) => a[`${r1}shortcut`] === 2 && b[`${r2}shortcut`] === 2);
  const ups = c1[`${r1}shortcutUps`]!, ups2 = c2[`${r2}shortcutUps`]!;
  // as a hostile process of the same uid would: open vale-ts #1's channel
  // (the memfd both map) and move every shared index a ring and more ahead
  const fdDir = `/proc/${pid1}/fd`;
  const chans = readdirSync(fdDir).filter((f) => {
    try {
      return readlinkSync(path.join(fdDir, f)).startsWith('/memfd:vale-ts-shortcut');
    } catch {
      return false;
    }
  });
  t.is(chans.length, 1);
  const chan = path.join(fdDir, chans[0]!);
  const ino = statSync(chan).ino;
  // false once the channel is gone or replaced: never corrupt a new one
  const corrupt = (): boolean => {
    let fd: number;
    try {
      if (statSync(chan).ino !== ino) return false;
      fd = openSync(chan, 'r+');
    } catch {
      return false;
    }
    try {
      const hdr = Buffer.alloc(64);
      readSync(fd, hdr, 0, 64, 0);
      for (const ring of shortcutRingOffsets(hdr.readUInt32LE(12), hdr.readUInt32LE(16)))
        for (const off of [ring, ring + 64]) {
          const b = Buffer.alloc(4);
          readSync(fd, b, 0, 4, off);
          b.writeUInt32LE((b.readUInt32LE(0) + 0x10000) >>> 0);
          writeSync(fd, b, 0, 4, off);
        }
    } finally {
      closeSync(fd);
    }
    return true;
  };
  const t0 = Date.now();
  const at = (what: string): void => t.log(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}`);
  // traffic makes both sides look at the indices. An index's owner may
  // store its own value over ours between our read and write, or before
  // the other side reads it (a race that CPU hogs made happen once): then
  // nothing is broken, and we corrupt again (each try waits for its ping)
  const broken = (a: Record<string, number>, b: Record<string, number>): boolean => a['shortcutRingBroken']! + b['shortcutRingBroken']! >= 1;
  for (let tries = 1; ; tries++) {
    if (!corrupt()) break;
    await inNs(ns.t1, ['ping', '-c', '3', '-A', '-w', '50', host2]);
    at(`ping done (try ${tries})`);
    if (broken(await vx(vale1), await vx(vale2)) || tries === 20) break;
  }
  [c1, c2] = await until((a, b) => broken(a, b) && a[`${r1}shortcutDowns`]! >= 2);
  at('broken, down');
  // nothing read from a broken ring; the next HELLO brings a new channel
  // (state 2 needs a frame read from the ring: the transfer below brings it)
  [c1, c2] = await until((a, b) => a[`${r1}shortcutUps`]! > ups && b[`${r2}shortcutUps`]! > ups2 && a[`${r1}shortcutPeer`] === 3 && b[`${r2}shortcutPeer`] === 3);
  at('up again');
  const s1 = c1[`${r1}shortcutTxFrames`]!;
  const r = await tcpTransfer(ns.t1, ns.t2, host2, 5302, 1 << 20);
  at('transfer done');
  t.is(r.received.sha256, r.sent.sha256);
  [c1, c2] = await until((a, b) => a[`${r1}shortcut`] === 2 && b[`${r2}shortcut`] === 2);
  t.true(c1[`${r1}shortcutTxFrames`]! > s1 + 500); // the new channel carried it
  t.is(c1['shortcutPeerBad'], 0, JSON.stringify(c1));
  t.is(c2['shortcutPeerBad'], 0, JSON.stringify(c2));

  // forged MARKERs from #2's address (anyone on the underlay can send them):
  // another epoch, no copies, an index past the count. Counted, nothing moves
  const before = c1;
  const send = `
const to = process.argv[1];
const marker = (n, i) => Buffer.concat([Buffer.from([0x48, 0, 0, 0, 0, 0, 46, 0]), Buffer.from('0376616c6573037661 6c657388b5'.replace(/ /g, ''), 'hex'),
  Buffer.from('VTSC'), Buffer.from([1, 3, 0, 0]), Buffer.alloc(16, 9), Buffer.alloc(8, 0xee), Buffer.from([n >> 8, n & 255, i >> 8, i & 255]), Buffer.alloc(4)]);
const msgs = [marker(1, 0), marker(0, 0), marker(2, 5)];
const u = require('node:dgram').createSocket('udp4');
const go = (i) => (i === msgs.length ? u.close() : u.send(msgs[i], 4789, to, () => go(i + 1)));
u.bind({ address: process.argv[2] }, () => go(0));`;
  await inNs(ns.v2, [process.execPath, '-e', send, under.v1, under.v2]);
  [c1] = await until((a) => a['shortcutMarkerBad']! >= before['shortcutMarkerBad']! + 3, true);
  t.is(c1['shortcutMarkerBad']! - before['shortcutMarkerBad']!, 3);
  t.is(c1['shortcutMarkersIn'], before['shortcutMarkersIn']);
  t.is(c1[`${r1}shortcut`], 2);
  t.is(c1[`${r1}shortcutDowns`], before[`${r1}shortcutDowns`]);
  t.is(c1['dropBadSrcMac'], before['dropBadSrcMac']); // taken out before the frame checks
});
