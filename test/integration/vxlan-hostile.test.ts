/**
 * A VXLAN port fed what a hostile client of its switch or a hostile sender
 * on the underlay can give it, in one process on the loopback: a vale-ts
 * server here, a VTEP on 127.0.0.1 whose one static remote is a plain UDP
 * socket on 127.0.0.2 (the test reads what the VTEP sends and sends it
 * what it likes), a netmap client on the same switch.
 */
import test, { type ExecutionContext } from 'ava';
import { execFileSync } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { open, ValeClient, ValeServer, type Port } from '../../src/index.js';
import { NS_MOREFRAG } from '../../src/netmap/abi.js';
import { ensurePackages } from '../fixtures/system-packages.js';
import { untilAnswer } from '../fixtures/wait.js';

const socket = path.join(os.tmpdir(), `vxlan-hostile-${process.pid}.sock`);
const VNI = 77;
let srv: ValeServer;
let vale: ValeClient;

test.before(async () => {
  srv = await ValeServer.listen({ socket });
  vale = new ValeClient({ socket });
});

test.after.always(() => {
  srv?.close();
});

/** A UDP socket bound to a free port of `addr`. */
async function udpOn(addr: string): Promise<Socket> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind({ address: addr, port: 0 }, () => resolve());
  });
  return s;
}

/** A free UDP port of 127.0.0.1 for the VTEP (let go just before it binds). */
async function freePort(): Promise<number> {
  const s = await udpOn('127.0.0.1');
  const p = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

interface Rig {
  sw: string;
  client: Port;
  remote: Socket;
  vtepPort: number;
  /** inner frames of the datagrams received at the remote, in order */
  got: Buffer[];
  /** resolves once a datagram whose inner frame's byte 14 is `tag` has come */
  until(tag: number): Promise<void>;
  counters(): Promise<Record<string, number>>;
}

let rigs = 0;
/** A switch with a VXLAN port (srcport=fixed, no shortcut) to the test's remote socket, and a client port. */
async function rig(t: ExecutionContext): Promise<Rig> {
  const sw = `valeH${rigs++}`;
  const remote = await udpOn('127.0.0.2');
  t.teardown(() => remote.close());
  const vtepPort = await freePort();
  await vale.create(`${sw}:vx`, {}, {
    driver: { kind: 'vxlan', vni: VNI, local: `127.0.0.1:${vtepPort}`, remote: ['127.0.0.2'], dstport: remote.address().port, srcport: 'fixed', shortcut: 'off' },
  });
  t.teardown(() => vale.remove(`${sw}:vx`).catch(() => undefined));
  const client = await open(`${sw}:c`, { socket });
  t.teardown(() => client.close());
  const got: Buffer[] = [];
  const waiters: { tag: number; resolve: () => void }[] = [];
  remote.on('message', (m) => {
    const inner = m.subarray(8);
    got.push(Buffer.from(inner));
    for (const w of waiters.filter((x) => inner.length > 14 && inner[14] === x.tag)) w.resolve();
  });
  return {
    sw,
    client,
    remote,
    vtepPort,
    got,
    until: (tag) => new Promise<void>((resolve) => {
      if (got.some((f) => f.length > 14 && f[14] === tag)) resolve();
      else waiters.push({ tag, resolve });
    }),
    counters: async () => {
      const [s] = await vale.stats(sw);
      const p = s!.ports.find((x) => x.name === `${sw}:vx`);
      if (!p?.driver) throw new Error(`${sw}:vx has no driver in the stats`);
      return p.driver.counters;
    },
  };
}

/** An Ethernet frame of `len` bytes: broadcast (or `dst`) from `src`, IPv4, byte 14 = tag. */
function frame(src: number, tag: number, len: number, dst?: number[]): Uint8Array {
  const f = new Uint8Array(len);
  f.set(dst ?? [255, 255, 255, 255, 255, 255], 0);
  f.set([2, 0, 0, 0, 0, src], 6);
  f[12] = 0x08;
  f[14] = tag;
  for (let i = 15; i < len; i++) f[i] = (i * 7 + tag) & 0xff;
  return f;
}

/** Sends `parts` as one multi-slot frame (NS_MOREFRAG on all slots but the last). */
function sendChain(p: Port, parts: Uint8Array[]): void {
  const ring = p.txRings[0]!;
  if (ring.space() < parts.length) throw new Error('tx ring full');
  for (let i = 0; i < parts.length; i++) {
    const s = ring.head;
    ring.bytes.set(parts[i]!, ring.bufOffset(s));
    ring.setLen(s, parts[i]!.length);
    ring.setFlags(s, i + 1 < parts.length ? NS_MOREFRAG : 0);
    ring.advance(1);
  }
  p.txsync();
}

function sendOne(p: Port, f: Uint8Array): void {
  if (!p.inject(f)) throw new Error('tx ring full');
  p.txsync();
}

const concat = (parts: Uint8Array[]): Buffer => Buffer.concat(parts.map((x) => Buffer.from(x)));

test.serial('a multi-slot frame from the switch leaves as one VXLAN datagram, never as a datagram per slot whose later slots the sender wrote as Ethernet headers', async (t) => {
  t.timeout(30_000);
  const r = await rig(t);
  const bs = r.client.bufSize;
  // the second slot is a whole Ethernet frame of the client's making, from a
  // MAC the switch never saw: sent as a datagram of its own it would reach
  // the far side as that frame, past the switch's lookup
  const forged = frame(0x66, 0xf0, 60, [2, 0, 0, 0, 0, 0x99]);
  const small = [frame(0x0a, 1, 100), forged];
  // a jumbo frame the switch carries in three slots (a guest's 2.5-buffer frame)
  const big = [frame(0x0a, 2, bs), new Uint8Array(bs).fill(0xb2), new Uint8Array(bs / 2).fill(0xb3)];
  sendChain(r.client, small);
  sendChain(r.client, big);
  sendOne(r.client, frame(0x0a, 3, 60)); // the end marker (one socket, one destination: in order)
  await r.until(3);
  t.is(r.got.length, 3, `datagrams of ${r.got.map((f) => f.length).join(', ')} bytes`);
  t.deepEqual(r.got[0], concat(small));
  t.deepEqual(r.got[1], concat(big));
  t.false(r.got.some((f) => f[6] === 2 && f[11] === 0x66), 'the forged slot went out as a frame of its own');
  const c = await r.counters();
  t.is(c['outFrames'], 3);
  t.is(c['outBytes'], 160 + 2.5 * bs + 60);
});

test.serial('a multi-slot frame longer than any UDP datagram is dropped whole and counted as dropTooLong, not sent in pieces', async (t) => {
  t.timeout(30_000);
  const r = await rig(t);
  const bs = r.client.bufSize;
  // 65500 bytes: within what the switch carries (65535), beyond what a UDP
  // datagram with the VXLAN header and the outer headers holds
  const total = 65500;
  const parts: Uint8Array[] = [frame(0x0a, 4, bs)];
  for (let left = total - bs; left > 0; left -= bs) parts.push(new Uint8Array(Math.min(bs, left)).fill(0xc4));
  if (parts.length > 64) return t.pass(`buffers of ${bs} bytes: such a frame takes more slots than a chain may`);
  sendChain(r.client, parts);
  sendOne(r.client, frame(0x0a, 5, 60));
  await r.until(5);
  t.is(r.got.length, 1, `datagrams of ${r.got.map((f) => f.length).join(', ')} bytes`);
  const c = await r.counters();
  t.is(c['dropTooLong'], 1);
  t.is(c['outFrames'], 1);
});

/** Frames arriving at `p`, copied, until one whose byte 14 is `tag` (events only). */
async function framesUntil(p: Port, tag: number, into: Uint8Array[]): Promise<void> {
  for (;;) {
    p.dispatch(256, (f) => void into.push(f.slice()));
    p.rxsync();
    if (into.some((f) => f.length > 14 && f[14] === tag)) return;
    const ev = await p.poll();
    if (!ev.rx && ev.hup) throw new Error(`${p.name}: the switch went away`);
  }
}

test.serial('co-resident shortcut: a multi-slot frame goes into the ring as one frame, and one longer than the ring\'s slots is counted dropTooLong', async (t) => {
  t.timeout(60_000);
  // two VTEPs of this process, 127.0.0.1 and 127.0.0.2, each the other's
  // static remote: one host, so their HELLOs bring the shortcut up
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vxh-sc-'));
  chmodSync(dir, 0o700);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const [pa, pb] = [await freePort(), await freePort()];
  const vtep = (local: string, port: number, remote: string, dstport: number) => ({
    driver: { kind: 'vxlan', vni: VNI, local: `${local}:${port}`, remote: [remote], dstport, srcport: 'fixed', shortcutdir: dir },
  });
  await vale.create('valeSA:vx', {}, vtep('127.0.0.1', pa, '127.0.0.2', pb));
  t.teardown(() => vale.remove('valeSA:vx').catch(() => undefined));
  await vale.create('valeSB:vx', {}, vtep('127.0.0.2', pb, '127.0.0.1', pa));
  t.teardown(() => vale.remove('valeSB:vx').catch(() => undefined));
  const a = await open('valeSA:c', { socket });
  t.teardown(() => a.close());
  const b = await open('valeSB:c', { socket });
  t.teardown(() => b.close());
  const vx = async (sw: string): Promise<Record<string, number>> => {
    const [st] = await vale.stats(sw);
    return st!.ports.find((x) => x.name === `${sw}:vx`)!.driver!.counters;
  };
  const toB = 'remote 127.0.0.2 ';
  await untilAnswer(() => vx('valeSA'), (c) => c[`${toB}shortcutPeer`] === 3);
  await untilAnswer(() => vx('valeSB'), (c) => c['remote 127.0.0.1 shortcutPeer'] === 3);
  // the first frame marks the ring and goes in; B reads it once the MARKER came
  const got: Uint8Array[] = [];
  sendOne(a, frame(0x0a, 1, 60));
  await framesUntil(b, 1, got);
  t.true((await vx('valeSA'))[`${toB}shortcutTxFrames`]! >= 1, 'the frame went through the ring');
  const forged = frame(0x66, 0xf0, 60, [2, 0, 0, 0, 0, 0x99]);
  const small = [frame(0x0a, 2, 100), forged];
  const bs = a.bufSize;
  sendChain(a, small);
  sendChain(a, [frame(0x0a, 3, bs), new Uint8Array(bs / 2).fill(0xd3)]);  // longer than a slot of the ring
  sendOne(a, frame(0x0a, 4, 60));
  await framesUntil(b, 4, got);
  const c = await vx('valeSA');
  t.is(c[`${toB}txFrames`], 0, 'nothing went over VXLAN');
  t.is(c[`${toB}shortcutTxFrames`], 3);
  t.is(c['dropTooLong'], 1);
  t.deepEqual(got.map((f) => [f[14], f.length]), [[1, 60], [2, 160], [4, 60]]);
  t.deepEqual(Buffer.from(got[1]!), concat(small));
});

/**
 * One UDP GSO send of `data` in segments of `seg` bytes from 127.0.0.2 to
 * 127.0.0.1:port: over the loopback the VTEP's socket (UDP_GRO on) takes it
 * whole, as one coalesced datagram, as it takes another vale-ts's GSO runs.
 */
function gsoSend(port: number, seg: number, data: Buffer): void {
  const py = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('127.0.0.2', 0))
s.sendmsg([bytes.fromhex(sys.argv[3])], [(17, 103, int(sys.argv[2]).to_bytes(2, sys.byteorder))], 0, ('127.0.0.1', int(sys.argv[1])))`;
  execFileSync('python3', ['-c', py, String(port), String(seg), data.toString('hex')]);
}

const vxhdr = (vni = VNI): Buffer => Buffer.from([8, 0, 0, 0, vni >> 16, (vni >> 8) & 255, vni & 255, 0]);

test.serial('UDP GRO runs of odd segment sizes: every datagram in them is delivered in order or counted, one by one', async (t) => {
  t.timeout(30_000);
  ensurePackages(['python3']);
  const r = await rig(t);
  const bs = r.client.bufSize;
  const before = await r.counters();
  // ten datagrams of 5 bytes (shorter than a VXLAN header)
  gsoSend(r.vtepPort, 5, Buffer.alloc(50, 0x08));
  // five of 69 bytes (61-byte frames) and a last one shorter (a 20-byte frame)
  const run = [10, 11, 12, 13, 14].map((tag) => Buffer.concat([vxhdr(), Buffer.from(frame(0x0b, tag, 61))]));
  gsoSend(r.vtepPort, 69, Buffer.concat([...run, vxhdr(), Buffer.from(frame(0x0b, 15, 20))]));
  // a wrong VNI first, then a frame: the first is dropped, the second delivered
  gsoSend(r.vtepPort, 68, Buffer.concat([vxhdr(VNI + 1), Buffer.from(frame(0x0b, 16, 60)), vxhdr(), Buffer.from(frame(0x0b, 17, 60))]));
  // two longer than the port's buffers, then 9 bytes: a header and a 1-byte frame
  const long = Buffer.concat([vxhdr(), Buffer.from(frame(0x0b, 18, bs + 1))]);
  gsoSend(r.vtepPort, long.length, Buffer.concat([long, long, vxhdr(), Buffer.from([1])]));
  // the end: one datagram alone
  const s = await udpOn('127.0.0.2');
  t.teardown(() => s.close());
  s.send(Buffer.concat([vxhdr(), Buffer.from(frame(0x0b, 99, 60))]), r.vtepPort, '127.0.0.1');
  const got: Uint8Array[] = [];
  await framesUntil(r.client, 99, got);
  t.deepEqual(got.map((f) => [f[14], f.length]), [[10, 61], [11, 61], [12, 61], [13, 61], [14, 61], [15, 20], [17, 60], [99, 60]]);
  const c = await r.counters();
  const d = (k: string): number => c[k]! - (before[k] ?? 0);
  t.is(d('dropShortHeader'), 10);
  t.is(d('dropWrongVni'), 1);
  t.is(d('dropTooLongIn'), 2);
  t.is(d('dropShortFrame'), 1);
  t.is(d('rxGroSegments'), 6 + 2 + 3);
});
