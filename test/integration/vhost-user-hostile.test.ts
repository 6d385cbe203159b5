/**
 * A hostile vhost-user front-end: our own small one over the unix socket
 * (SCM_RIGHTS through the addon's sendMsg, a memfd as guest memory) hands
 * vale-ts descriptors outside its memory table, chain loops, bad indices,
 * wrong directions, short and oversized frames, bad indirect tables, an
 * impossible avail index and malformed memory tables. The switch survives,
 * each is dropped and counted by its reason, good frames still pass both
 * ways, and other ports keep forwarding.
 */
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { open, ValeClient, ValeServer, type Port } from '../../src/index.js';
import { nativeRaw } from '../../src/netmap/addon.js';
import { VHOST_INLINE_HOLD_US } from '../../src/ports/vhost-user.js';
import { DEFAULT_HOLD_US } from '../../src/vale/switch.js';
import { readable, untilAnswer } from '../fixtures/wait.js';
import { EVENTFD_FULL, makeBlocking } from '../fixtures/hostile-fd.js';
import { taggedBroadcast as frame } from '../fixtures/tagged-frames.js';

interface FrontAddon {
  memfd(name: string, size: number, sealable?: boolean): number;
  unixStreamConnect(path: string): number;
  mapFd(fd: number, size: number): ArrayBuffer;
  sendMsg(fd: number, data: Uint8Array, fds?: number[]): boolean;
  recvMsg(fd: number, maxLen: number): { eof: true } | { eof?: undefined; data: Buffer; fds: number[] } | null;
  eventfd(): number;
  kick(fd: number): void;
  close(fd: number): void;
}
const native = nativeRaw as FrontAddon;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), `vhost-hostile-${process.pid}-`));

/**
 * A switch on its own control socket with a vhost-user port vale0:guest (at
 * its socket VH) and a netmap port vale0:peer, closed at teardown; drv()
 * reads the guest port's driver counters.
 */
async function guestSwitch(
  t: ExecutionContext,
  tag: string,
  extra: { inline?: boolean; backlogPollUs?: number } = {},
  datapath?: 'thread',
): Promise<{ vale: ValeClient; VH: string; peer: Port; socket: string; drv: () => Promise<Record<string, number>> }> {
  const socket = path.join(dir, `ctl-${tag}.sock`);
  const srv = await ValeServer.listen({ socket, ...(datapath ? { switchOptions: { datapath } } : {}) });
  t.teardown(() => srv.close());
  const vale = new ValeClient({ socket });
  const VH = path.join(dir, `guest-${tag}.sock`);
  await vale.create('vale0:guest', {}, { driver: { kind: 'vhost-user', path: VH, ...extra } });
  const peer = await open('vale0:peer', { socket });
  t.teardown(() => peer.close());
  const drv = async (): Promise<Record<string, number>> => {
    const [sw] = await vale.stats('vale0');
    return sw!.ports.find((p) => p.name === 'vale0:guest')!.driver!.counters;
  };
  return { vale, VH, peer, socket, drv };
}
test.after.always(() => fs.rmSync(dir, { recursive: true, force: true }));

const TMPFS_MAGIC = 0x01021994, HUGETLBFS_MAGIC = 0x958458f6;
let disk: string | undefined;
/** A directory of ours on a filesystem that is not RAM-backed (the temporary dir may be tmpfs). */
function diskDir(): string {
  if (disk) return disk;
  for (const base of ['/var/tmp', process.cwd(), os.tmpdir()]) {
    const { type } = fs.statfsSync(base);
    if (type !== TMPFS_MAGIC && type !== HUGETLBFS_MAGIC) {
      disk = fs.mkdtempSync(path.join(base, `vhost-hostile-disk-${process.pid}-`));
      return disk;
    }
  }
  throw new Error('no disk filesystem among /var/tmp, the working directory and the temporary directory');
}
test.after.always(() => disk && fs.rmSync(disk, { recursive: true, force: true }));

// vhost-user requests
const GET_FEATURES = 1, SET_FEATURES = 2, SET_OWNER = 3, SET_MEM_TABLE = 5, SET_VRING_NUM = 8, SET_VRING_ADDR = 9;
const SET_VRING_BASE = 10, SET_VRING_KICK = 12, SET_VRING_CALL = 13;
const VERSION_1 = 1n << 32n, INDIRECT = 1n << 28n;
const NEXT = 1, WRITE = 2, IND = 4;

const GPA = 0x100000, SIZE = 1 << 20, UVA = 0x7f0000000000;
const QN = 16;
const DESC = 0, AVAIL = 0x1000, USED = 0x2000, INDT = 0x8000, BUF = 0x10000;

const until = async (cond: () => Promise<boolean>): Promise<void> => {
  await untilAnswer(cond, (yes) => yes);
};

/** A vhost-user front-end that does exactly what it is told. */
class Front {
  private pending = Buffer.alloc(0);
  constructor(readonly fd: number) {}
  static connect(p: string): Front {
    return new Front(native.unixStreamConnect(p));
  }
  send(req: number, payload: Uint8Array = new Uint8Array(0), fds: number[] = [], sizeOverride?: number): void {
    const h = Buffer.alloc(12);
    h.writeUInt32LE(req, 0);
    h.writeUInt32LE(1, 4);
    h.writeUInt32LE(sizeOverride ?? payload.length, 8);
    if (!native.sendMsg(this.fd, Buffer.concat([h, payload]), fds)) throw new Error('sendMsg would block');
  }
  /** Next reply's payload, or 'eof' when the back-end hung up. */
  async reply(): Promise<Buffer | 'eof'> {
    for (;;) {
      if (this.pending.length >= 12) {
        const size = this.pending.readUInt32LE(8);
        if (this.pending.length >= 12 + size) {
          const p = this.pending.subarray(12, 12 + size);
          this.pending = this.pending.subarray(12 + size);
          return p;
        }
      }
      const r = native.recvMsg(this.fd, 4096);
      if (r === null) {
        await readable(this.fd);
        continue;
      }
      if (r.eof) return 'eof';
      this.pending = Buffer.concat([this.pending, r.data]);
    }
  }
  close(): void {
    native.close(this.fd);
  }
}

const u64 = (v: bigint | number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
};
const state = (idx: number, num: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeUInt32LE(idx, 0);
  b.writeUInt32LE(num, 4);
  return b;
};
function memTable(regions: Array<{ gpa: number; size: number; uva: number; off?: number }>, n = regions.length): Buffer {
  const b = Buffer.alloc(8 + 32 * regions.length);
  b.writeUInt32LE(n, 0);
  regions.forEach((r, i) => {
    b.writeBigUInt64LE(BigInt(r.gpa), 8 + 32 * i);
    b.writeBigUInt64LE(BigInt(r.size), 16 + 32 * i);
    b.writeBigUInt64LE(BigInt(r.uva), 24 + 32 * i);
    b.writeBigUInt64LE(BigInt(r.off ?? 0), 32 + 32 * i);
  });
  return b;
}

/** Guest memory and the split rings of one queue in it. */
class Guest {
  readonly mem: DataView;
  private availIdx = 0;
  /** Guest memory in `fd` (a memfd of SIZE bytes unless given), mapped here too. */
  constructor(readonly fd: number = native.memfd('hostile-guest', SIZE)) {
    this.mem = new DataView(native.mapFd(fd, SIZE));
  }
  desc(i: number, addr: number, len: number, flags = 0, next = 0, table = DESC): void {
    const o = table + 16 * i;
    this.mem.setBigUint64(o, BigInt(addr), true);
    this.mem.setUint32(o + 8, len, true);
    this.mem.setUint16(o + 12, flags, true);
    this.mem.setUint16(o + 14, next, true);
  }
  post(head: number, kick: number): void {
    this.mem.setUint16(AVAIL + 4 + 2 * (this.availIdx % QN), head, true);
    this.availIdx++;
    this.mem.setUint16(AVAIL + 2, this.availIdx & 0xffff, true);
    native.kick(kick);
  }
  bogusAvail(jump: number, kick: number): void {
    this.mem.setUint16(AVAIL + 2, (this.availIdx + jump) & 0xffff, true);
    native.kick(kick);
  }
  usedIdx(): number {
    return this.mem.getUint16(USED + 2, true);
  }
  bytes(off: number, n: number): Uint8Array {
    return new Uint8Array(this.mem.buffer, off, n);
  }
}

async function receive(p: Port): Promise<Uint8Array> {
  for (;;) {
    const ev = await p.poll({ rx: true, timeoutMs: 10_000 });
    if (!ev.rx) throw new Error('no frame arrived');
    let got: Uint8Array | undefined;
    p.dispatch(1, (f) => (got = Uint8Array.from(f)));
    p.rxsync();
    if (got) return got;
  }
}

/**
 * guestSwitch, a second netmap port vale0:peer2, guest memory and a
 * front-end connected to the port: what the serial tests below start from.
 */
async function guestRig(t: ExecutionContext, tag: string, extra: { inline?: boolean } = {}, datapath?: 'thread') {
  const sw = await guestSwitch(t, tag, extra, datapath);
  const peer2 = await open('vale0:peer2', { socket: sw.socket });
  t.teardown(() => peer2.close());
  const g = new Guest();
  t.teardown(() => native.close(g.fd));
  const f = Front.connect(sw.VH);
  t.teardown(() => f.close());
  return { ...sw, peer2, g, f };
}

/** The switch still forwards between other ports: a frame (tag 42) from `from` reaches `to`, which may see earlier broadcasts first. */
async function forwardsOn(t: ExecutionContext, from: Port, to: Port): Promise<void> {
  const other = frame(0x62, 42);
  from.inject(other);
  from.txsync();
  let last: Uint8Array;
  do last = await receive(to);
  while (last[14] !== 42);
  t.deepEqual(last.subarray(0, 60), other);
}


/** Where an RX queue's rings lie in guest memory (offsets from GPA), and its size. */
interface RxLayout {
  num: number;
  desc: number;
  avail: number;
  used: number;
}

/**
 * Sets up both virtqueues (RX 0, TX 1) in the guest memory layout, each with
 * a call and a kick eventfd, and waits until vale0:guest says they run.
 * Returns the kick eventfds by queue (the call eventfds go into `calls`).
 */
async function queuesUp(f: Front, vale: ValeClient, rx: RxLayout = { num: QN, desc: 0x20000 + DESC, avail: 0x20000 + AVAIL, used: 0x20000 + USED }, calls: number[] = []): Promise<number[]> {
  const kicks: number[] = [];
  for (const q of [0, 1]) {
    // both queues share the rings' memory layout; queue 0 (RX) gets its own copy further up (or where `rx` says)
    const l = q === 0 ? rx : { num: QN, desc: DESC, avail: AVAIL, used: USED };
    f.send(SET_VRING_NUM, state(q, l.num));
    const a = Buffer.alloc(40);
    a.writeUInt32LE(q, 0);
    a.writeBigUInt64LE(BigInt(UVA + l.desc), 8);
    a.writeBigUInt64LE(BigInt(UVA + l.used), 16);
    a.writeBigUInt64LE(BigInt(UVA + l.avail), 24);
    f.send(SET_VRING_ADDR, a);
    f.send(SET_VRING_BASE, state(q, 0));
    const kick = native.eventfd();
    kicks.push(kick);
    const call = native.eventfd();
    calls.push(call);
    f.send(SET_VRING_CALL, u64(q), [call]);
    f.send(SET_VRING_KICK, u64(q), [kick]);
  }
  await until(async () => (await vale.stats('vale0'))[0]!.ports.find((p) => p.name === 'vale0:guest')!.driver!.describe.includes('2 queues running'));
  return kicks;
}

// the driver thread also with backlogPollUs: its RX side then polls the
// guest's queue (the same checks on every index it reads) instead of sleeping
for (const [inline, backlogPollUs] of [[false, 0], [true, 0], [false, 100_000]] as const) test(`hostile vhost-user front-end: every bad descriptor dropped and counted by reason, the switch forwards on (${inline ? 'in-line in the switch' : 'driver thread'}${backlogPollUs ? `, backlogPollUs ${backlogPollUs}` : ''})`, async (t) => {
  t.timeout(60_000);
  const { vale, VH, peer, socket, drv } = await guestSwitch(t, `${inline}-${backlogPollUs}`, { inline, ...(backlogPollUs ? { backlogPollUs } : {}) });
  const peer2 = await open('vale0:peer2', { socket });
  t.teardown(() => peer2.close());
  const reaches = (name: string, n: number) => async (): Promise<boolean> => ((await drv())[name] ?? 0) >= n;

  const g = new Guest();
  const f = Front.connect(VH);
  t.teardown(() => f.close());
  f.send(GET_FEATURES);
  const feats = (await f.reply()) as Buffer;
  t.is(feats.readBigUInt64LE(0) & (VERSION_1 | INDIRECT), VERSION_1 | INDIRECT);
  f.send(SET_FEATURES, u64(VERSION_1 | INDIRECT)); // no PROTOCOL_FEATURES: rings run once kicked
  f.send(SET_OWNER);
  f.send(SET_MEM_TABLE, memTable([{ gpa: GPA, size: SIZE, uva: UVA }]), [g.fd]);
  const kicks = await queuesUp(f, vale);
  const txKick = kicks[1]!;

  // a good frame: header + Ethernet frame in one descriptor
  const hdr = 12;
  const good = frame(0x61, 1);
  g.bytes(BUF, hdr).fill(0);
  g.bytes(BUF + hdr, 60).set(good);
  g.desc(0, GPA + BUF, hdr + 60);
  g.post(0, txKick);
  t.deepEqual((await receive(peer)).subarray(0, 60), good, 'a good frame from the guest reaches another port');
  await until(reaches('fromGuestFrames', 1));

  const cases: Array<[string, () => void]> = [
    ['dropOutOfMemoryTable', () => (g.desc(1, 0x10, 100), g.post(1, txKick))],
    ['dropOutOfMemoryTable', () => (g.desc(1, GPA + SIZE - 10, 100), g.post(1, txKick))],
    ['dropChainLoop', () => (g.desc(2, GPA + BUF, 10, NEXT, 3), g.desc(3, GPA + BUF, 10, NEXT, 2), g.post(2, txKick))],
    ['dropBadDescriptor', () => (g.desc(4, GPA + BUF, 10, NEXT, 99), g.post(4, txKick))],
    ['dropBadDescriptor', () => (g.desc(5, GPA + BUF, hdr + 60, WRITE), g.post(5, txKick))],
    ['dropShortFrame', () => (g.desc(6, GPA + BUF, 5), g.post(6, txKick))],
    ['dropOversize', () => (g.desc(7, GPA + BUF, hdr + 5000), g.post(7, txKick))],
    // a header asking for a checksum (NEEDS_CSUM) though VIRTIO_NET_F_CSUM was not negotiated
    ['dropOffloadNotNegotiated', () => (g.bytes(BUF + 0x4000, hdr + 60).set([1]), g.bytes(BUF + 0x4000 + hdr, 60).set(good), g.desc(7, GPA + BUF + 0x4000, hdr + 60), g.post(7, txKick))],
    // and one asking for TSO (gso_type TCPV4) without HOST_TSO4
    ['dropOffloadNotNegotiated', () => (g.bytes(BUF + 0x4000, 2).set([0, 1]), g.desc(7, GPA + BUF + 0x4000, hdr + 60), g.post(7, txKick))],
    ['dropBadDescriptor', () => (g.desc(8, GPA + INDT, 15, IND), g.post(8, txKick))],
    ['dropOutOfMemoryTable', () => (g.desc(9, 0xdead0000, 32, IND), g.post(9, txKick))],
    [
      'dropChainLoop',
      () => (g.desc(0, GPA + BUF, 10, NEXT, 1, INDT), g.desc(1, GPA + BUF, 10, NEXT, 0, INDT), g.desc(10, GPA + INDT, 32, IND), g.post(10, txKick)),
    ],
  ];
  const expect: Record<string, number> = {};
  for (const [reason, act] of cases) {
    expect[reason] = (expect[reason] ?? 0) + 1;
    act();
    await until(reaches(reason, expect[reason]!));
  }
  // a good chain through an indirect table: header and frame in two descriptors
  g.desc(0, GPA + BUF, hdr, NEXT, 1, INDT + 0x100);
  g.desc(1, GPA + BUF + hdr, 60, 0, 0, INDT + 0x100);
  g.desc(11, GPA + INDT + 0x100, 32, IND);
  g.post(11, txKick);
  t.deepEqual((await receive(peer)).subarray(0, 60), good, 'an indirect chain is read right');
  t.is(g.usedIdx(), 14, 'every chain, good or bad, went back to the guest');

  // the RX direction: a good buffer, then one outside memory, then an impossible head
  const rxm = 0x20000;
  const rxPost = (head: number, availAt: number): void => {
    g.mem.setUint16(rxm + AVAIL + 4 + 2 * availAt, head, true);
    g.mem.setUint16(rxm + AVAIL + 2, availAt + 1, true);
    native.kick(kicks[0]!);
  };
  g.desc(0, GPA + 0x30000, 2048, WRITE, 0, rxm + DESC);
  rxPost(0, 0);
  const toGuest = frame(0x62, 7);
  peer2.inject(toGuest);
  peer2.txsync();
  await until(reaches('toGuestFrames', 1));
  t.deepEqual(g.bytes(0x30000 + hdr, 60), toGuest, 'a frame for the guest lands after its 12-byte header');
  t.is(new DataView(g.mem.buffer).getUint16(0x30000 + 10, true), 1, 'num_buffers is 1');
  g.desc(1, 0xfff00000, 2048, WRITE, 0, rxm + DESC);
  rxPost(1, 1);
  peer2.inject(frame(0x62, 8));
  peer2.txsync();
  await until(reaches('dropOutOfMemoryTable', (expect['dropOutOfMemoryTable'] ?? 0) + 1));
  rxPost(500, 2);
  peer2.inject(frame(0x62, 9));
  peer2.txsync();
  await until(reaches('queuesBroken', 1));

  // an avail index 1000 ahead of the last one: the TX queue stops, counted
  g.bogusAvail(1000, txKick);
  await until(reaches('dropBadIndex', 1));
  const c = await drv();
  t.is(c['queuesBroken'], 2);
  t.is(c['fromGuestFrames'], 2);

  await forwardsOn(t, peer2, peer);
  native.close(g.fd);
});

for (const inline of [false, true]) test(`malformed vhost-user messages close the connection, counted; the port takes the next front-end (${inline ? 'in-line in the switch' : 'driver thread'})`, async (t) => {
  t.timeout(60_000);
  const socket = path.join(dir, `ctl2-${inline}.sock`);
  const srv = await ValeServer.listen({ socket });
  t.teardown(() => srv.close());
  const vale = new ValeClient({ socket });
  const VH = path.join(dir, `proto-${inline}.sock`);
  await vale.create('vale0:h', {}, { driver: { kind: 'vhost-user', path: VH, inline } });
  const counters = async (): Promise<{ c: Record<string, number>; d: string }> => {
    const [sw] = await vale.stats('vale0');
    const p = sw!.ports.find((x) => x.name === 'vale0:h')!;
    return { c: p.driver!.counters, d: p.driver!.describe };
  };
  const fd = native.memfd('small-guest', SIZE);
  const fd2 = native.memfd('small-guest-2', SIZE);
  t.teardown(() => (native.close(fd), native.close(fd2)));
  const diskFd = fs.openSync(path.join(diskDir(), `guest-mem-${process.pid}-${inline}`), fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_TRUNC, 0o600);
  t.teardown(() => fs.closeSync(diskFd));
  fs.ftruncateSync(diskFd, SIZE);
  const attacks: Array<[string, (f: Front) => void, RegExp]> = [
    ['region past the end of its fd', (f) => f.send(SET_MEM_TABLE, memTable([{ gpa: 0, size: 2 * SIZE, uva: UVA }]), [fd]), /past the end of its fd/],
    ['9 regions', (f) => f.send(SET_MEM_TABLE, memTable([{ gpa: 0, size: SIZE, uva: UVA }], 9), [fd]), /9 memory regions/],
    [
      'overlapping regions',
      (f) => f.send(SET_MEM_TABLE, memTable([{ gpa: 0, size: SIZE, uva: UVA }, { gpa: SIZE / 2, size: SIZE / 2, uva: UVA + SIZE }]), [fd, fd2]),
      /overlaps/,
    ],
    ['fd count', (f) => f.send(SET_MEM_TABLE, memTable([{ gpa: 0, size: SIZE, uva: UVA }]), []), /0 fds for 1 regions/],
    // page faults on it would wait for that filesystem (on FUSE: a process the front-end runs)
    ['region on a disk filesystem', (f) => f.send(SET_MEM_TABLE, memTable([{ gpa: 0, size: SIZE, uva: UVA }]), [diskFd]), /not RAM-backed/],
    ['queue size', (f) => f.send(SET_VRING_NUM, state(1, 1000)), /not a power of 2/],
    ['queue index', (f) => f.send(SET_VRING_NUM, state(77, 16)), /queue 77 does not exist/],
    ['payload size', (f) => f.send(SET_OWNER, new Uint8Array(0), [], 100_000), /payload of 100000 bytes/],
    ['features not offered', (f) => f.send(SET_FEATURES, u64(1n << 63n)), /were not offered/],
    ['rings outside memory', (f) => {
      f.send(SET_MEM_TABLE, memTable([{ gpa: 0, size: SIZE, uva: UVA }]), [fd]);
      f.send(SET_VRING_NUM, state(1, 16));
      const a = Buffer.alloc(40);
      a.writeUInt32LE(1, 0);
      a.writeBigUInt64LE(BigInt(UVA + SIZE - 16), 8);
      f.send(SET_VRING_ADDR, a);
    }, /rings lie outside/],
  ];
  let n = 0;
  for (const [what, act, msg] of attacks) {
    const f = Front.connect(VH);
    try {
      act(f);
      t.is(await f.reply(), 'eof', `${what}: the back-end hangs up`);
    } finally {
      f.close();
    }
    n++;
    const { c, d } = await counters();
    t.is(c['protocolErrors'], n, what);
    t.regex(d, msg, what);
  }
  // a well-behaved front-end is served afterwards
  const f = Front.connect(VH);
  f.send(GET_FEATURES);
  const r = await f.reply();
  t.true(r !== 'eof' && r.readBigUInt64LE(0) !== 0n);
  f.close();
});

const CSUM = 1n << 0n, HOST_TSO4 = 1n << 11n;

/** A port's switch counters (vnetPassed, vnetSegmented, drops...). */
async function portCounters(vale: ValeClient, port: string): Promise<Record<string, number>> {
  const [sw] = await vale.stats('vale0');
  const p = sw!.ports.find((x) => x.name === port);
  if (!p) throw new Error(`${port} is not in the stats`);
  return p.counters;
}

/** One's complement sum of 16-bit big-endian words, folded, not inverted. */
function sum16(b: Uint8Array, init = 0): number {
  let s = init;
  for (let i = 0; i + 1 < b.length; i += 2) s += (b[i]! << 8) | b[i + 1]!;
  if (b.length % 2) s += b[b.length - 1]! << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}
/** The IPv4 pseudo-header's sum for an L4 segment of `len` bytes. */
const pseudo = (f: Uint8Array, proto: number, len: number): number => sum16(f.subarray(26, 34), proto + len);

/** Ethernet + IPv4 + TCP (or UDP) with `payload` bytes of a counting pattern; the L4 checksum field holds the pseudo-header sum, as a sender with checksum offload leaves it. */
function ipFrame(proto: 6 | 17, payload: number): Uint8Array {
  const l4h = proto === 6 ? 20 : 8;
  const f = new Uint8Array(14 + 20 + l4h + payload);
  f.fill(0xff, 0, 6);
  f.set([2, 0, 0, 0, 0, 0x71, 0x08, 0x00], 6);
  const ip = new DataView(f.buffer, 14);
  ip.setUint8(0, 0x45);
  ip.setUint16(2, 20 + l4h + payload);
  ip.setUint16(4, 0x1234);
  ip.setUint8(8, 64);
  ip.setUint8(9, proto);
  f.set([10, 9, 0, 1, 10, 9, 0, 2], 26);
  ip.setUint16(10, ~sum16(f.subarray(14, 34)) & 0xffff);
  const l4 = new DataView(f.buffer, 34);
  l4.setUint16(0, 40000);
  l4.setUint16(2, 5201);
  if (proto === 6) {
    l4.setUint32(4, 1000);
    l4.setUint8(12, 5 << 4);
    l4.setUint8(13, 0x18); // PSH ACK
    l4.setUint16(14, 65535);
    l4.setUint16(16, pseudo(f, 6, 20 + payload));
  } else {
    l4.setUint16(4, 8 + payload);
    l4.setUint16(6, pseudo(f, 17, 8 + payload));
  }
  for (let i = 0; i < payload; i++) f[34 + l4h + i] = i & 0xff;
  return f;
}

/** A virtio-net header (12 bytes, VERSION_1). */
function vnetHdr(flags: number, gsoType: number, gsoSize: number, csumStart: number, csumOffset: number): Uint8Array {
  const h = new DataView(new ArrayBuffer(12));
  h.setUint8(0, flags);
  h.setUint8(1, gsoType);
  h.setUint16(2, 54, true);
  h.setUint16(4, gsoSize, true);
  h.setUint16(6, csumStart, true);
  h.setUint16(8, csumOffset, true);
  return new Uint8Array(h.buffer);
}

test('guest offloads over vhost-user: NEEDS_CSUM completed, TSO segmented with valid checksums, bad offload headers dropped and counted', async (t) => {
  t.timeout(60_000);
  const { vale, VH, peer, drv } = await guestSwitch(t, 'off');
  const g = new Guest();
  t.teardown(() => native.close(g.fd));
  const f = Front.connect(VH);
  t.teardown(() => f.close());
  f.send(GET_FEATURES);
  const feats = (await f.reply()) as Buffer;
  t.is(feats.readBigUInt64LE(0) & (CSUM | HOST_TSO4), CSUM | HOST_TSO4, 'checksum and TSO offloads offered');
  f.send(SET_FEATURES, u64(VERSION_1 | CSUM | HOST_TSO4));
  f.send(SET_OWNER);
  f.send(SET_MEM_TABLE, memTable([{ gpa: GPA, size: SIZE, uva: UVA }]), [g.fd]);
  // only the TX queue (1): the ring layout of the Guest class
  f.send(SET_VRING_NUM, state(1, QN));
  const a = Buffer.alloc(40);
  a.writeUInt32LE(1, 0);
  a.writeBigUInt64LE(BigInt(UVA + DESC), 8);
  a.writeBigUInt64LE(BigInt(UVA + USED), 16);
  a.writeBigUInt64LE(BigInt(UVA + AVAIL), 24);
  f.send(SET_VRING_ADDR, a);
  f.send(SET_VRING_BASE, state(1, 0));
  const kick = native.eventfd();
  f.send(SET_VRING_CALL, u64(1), [native.eventfd()]);
  f.send(SET_VRING_KICK, u64(1), [kick]);
  const at = 0x40000;
  const send = (head: number, hdr: Uint8Array, fr: Uint8Array): void => {
    g.bytes(at, hdr.length).set(hdr);
    g.bytes(at + hdr.length, fr.length).set(fr);
    g.desc(head, GPA + at, hdr.length + fr.length);
    g.post(head, kick);
  };

  // a UDP frame whose checksum the guest left to the device
  const udp = ipFrame(17, 100);
  send(0, vnetHdr(1, 0, 0, 34, 6), udp);
  const u = await receive(peer);
  t.is(u.length, udp.length);
  t.is(sum16(u.subarray(34), pseudo(u, 17, 108)), 0xffff, 'the UDP checksum was filled in');
  t.deepEqual(u.subarray(42), udp.subarray(42));

  // a 3000-byte TCP payload with gso_size 1000: three frames, each with its own lengths and checksums
  const tso = ipFrame(6, 3000);
  send(1, vnetHdr(1, 1, 1000, 34, 16), tso);
  const payload: number[] = [];
  for (let i = 0; i < 3; i++) {
    const s = await receive(peer);
    const ip = new DataView(s.buffer, s.byteOffset + 14);
    t.is(ip.getUint16(2), 1040, `segment ${i}: IPv4 total length`);
    t.is(sum16(s.subarray(14, 34)), 0xffff, `segment ${i}: IPv4 header checksum`);
    t.is(sum16(s.subarray(34), pseudo(s, 6, 1020)), 0xffff, `segment ${i}: TCP checksum`);
    t.is(new DataView(s.buffer, s.byteOffset + 34).getUint32(4), 1000 + 1000 * i, `segment ${i}: sequence number`);
    payload.push(...s.subarray(54));
  }
  t.deepEqual(Uint8Array.from(payload), tso.subarray(54), 'the segments carry the payload in order');
  // the guest's header went on with the frames; the switch finished them for the header-less peer
  const c0 = await drv();
  t.is(c0['offloadCsumPassed'], 1);
  t.is(c0['offloadGsoPassed'], 1);
  const p0 = await portCounters(vale, 'vale0:peer');
  t.is(p0['vnetCsumCompleted'], 1);
  t.is(p0['vnetSegmented'], 1);
  t.is(p0['vnetSegments'], 3);

  // what a broken or hostile guest can put in the header
  const cases: Array<[string, Uint8Array, Uint8Array]> = [
    ['dropOffloadBadCsumOffsets', vnetHdr(1, 0, 0, 140, 6), udp],
    ['dropOffloadBadCsumOffsets', vnetHdr(1, 0, 0, 34, 0xfff0), udp],
    // into the headers the lookup decided on: the destination MAC, the IP
    // destination, the UDP destination port
    ['dropOffloadBadCsumOffsets', vnetHdr(1, 0, 0, 0, 0), udp],
    ['dropOffloadBadCsumOffsets', vnetHdr(1, 0, 0, 14, 16), udp],
    ['dropOffloadBadCsumOffsets', vnetHdr(1, 0, 0, 34, 2), udp],
    ['dropOffloadBadGsoSize', vnetHdr(1, 1, 0, 34, 16), tso],
    ['dropOffloadBadHeaders', vnetHdr(1, 1, 1000, 34, 16), udp], // TSO on a UDP packet
    ['dropOffloadBadHeaders', vnetHdr(1, 1, 1000, 34, 16), frame(0x71, 1)], // not IPv4 at all
    ['dropOffloadNotNegotiated', vnetHdr(1, 4, 1000, 34, 16), tso], // TCPv6 TSO: HOST_TSO6 not negotiated
    ['dropOffloadNotNegotiated', vnetHdr(1, 3, 1000, 34, 16), udp], // UFO: never offered
  ];
  const expect: Record<string, number> = {};
  let head = 2;
  for (const [reason, hdr, fr] of cases) {
    expect[reason] = (expect[reason] ?? 0) + 1;
    send(head++ % QN, hdr, fr);
    await until(async () => ((await drv())[reason] ?? 0) >= expect[reason]!);
  }
  const c = await drv();
  for (const [reason, n] of Object.entries(expect)) t.is(c[reason], n, reason);
  t.is(c['fromGuestFrames'], 2, 'only the two good frames entered the switch');
  // a valid TSO header whose segments (4000 bytes) fit no buffer of the
  // header-less peer: the guest's word is good (a TAP could take it), the
  // peer's copy is dropped and counted there
  send(2 + cases.length, vnetHdr(1, 1, 4000, 34, 16), ipFrame(6, 8000));
  await until(async () => ((await portCounters(vale, 'vale0:peer'))['dropOversize'] ?? 0) >= 1);
  t.is((await drv())['fromGuestFrames'], 3);
  t.is(g.usedIdx(), 3 + cases.length, 'every chain went back to the guest');
});

const GUEST_CSUM = 1n << 1n, GUEST_TSO4 = 1n << 7n, MRG_RXBUF = 1n << 15n;

/** Connects a front-end to `sock` with `features` and runs queue `q` on `g`'s rings; resolves once the back-end has taken it all in. */
async function frontWith(sock: string, g: Guest, features: bigint, q: number): Promise<{ f: Front; kick: number }> {
  const f = Front.connect(sock);
  f.send(SET_FEATURES, u64(features));
  f.send(SET_OWNER);
  f.send(SET_MEM_TABLE, memTable([{ gpa: GPA, size: SIZE, uva: UVA }]), [g.fd]);
  f.send(SET_VRING_NUM, state(q, QN));
  const a = Buffer.alloc(40);
  a.writeUInt32LE(q, 0);
  a.writeBigUInt64LE(BigInt(UVA + DESC), 8);
  a.writeBigUInt64LE(BigInt(UVA + USED), 16);
  a.writeBigUInt64LE(BigInt(UVA + AVAIL), 24);
  f.send(SET_VRING_ADDR, a);
  f.send(SET_VRING_BASE, state(q, 0));
  const kick = native.eventfd();
  f.send(SET_VRING_CALL, u64(q), [native.eventfd()]);
  f.send(SET_VRING_KICK, u64(q), [kick]);
  // messages are handled in order: this reply means the queue runs
  f.send(GET_FEATURES);
  await f.reply();
  return { f, kick };
}

/** An RX guest's received frames: its 12-byte header and the frame, buffers of `bufLen` joined by num_buffers. */
function rxFrames(g: Guest, bufAt: number, bufLen: number): Array<{ hdr: Uint8Array; frame: Uint8Array }> {
  const out: Array<{ hdr: Uint8Array; frame: Uint8Array }> = [];
  const used = g.usedIdx();
  for (let i = 0; i < used; ) {
    const head = g.mem.getUint32(USED + 4 + 8 * (i % QN), true);
    const first = g.bytes(bufAt + head * bufLen, 12);
    const nbuf = first[10]! | (first[11]! << 8);
    const parts: Uint8Array[] = [];
    for (let k = 0; k < nbuf; k++) {
      const id = g.mem.getUint32(USED + 4 + 8 * ((i + k) % QN), true);
      const len = g.mem.getUint32(USED + 8 + 8 * ((i + k) % QN), true);
      parts.push(Uint8Array.from(g.bytes(bufAt + id * bufLen, len)));
    }
    const all = Buffer.concat(parts);
    out.push({ hdr: Uint8Array.from(all.subarray(0, 12)), frame: Uint8Array.from(all.subarray(12)) });
    i += Math.max(nbuf, 1);
  }
  return out;
}

test('a guest TSO frame passes whole to header-aware ports (vhost-user, TAP with vnet_hdr: vnetPassed) and is segmented for a plain client and a guest without GUEST_TSO4', async (t) => {
  t.timeout(60_000);
  const tap = `vt${process.pid}p`;
  // after the server (teardowns run last first): the TAP goes with its port; this is for a failure part way
  t.teardown(() => {
    if (fs.existsSync(`/sys/class/net/${tap}`)) execFileSync('ip', ['link', 'del', tap], { stdio: 'ignore' });
  });
  const socket = path.join(dir, 'ctl-pass.sock');
  const srv = await ValeServer.listen({ socket });
  t.teardown(() => srv.close());
  const vale = new ValeClient({ socket });
  const TX = path.join(dir, 'pass-tx.sock'), RX = path.join(dir, 'pass-rx.sock'), RX2 = path.join(dir, 'pass-rx2.sock');
  await vale.create('vale0:tx', {}, { driver: { kind: 'vhost-user', path: TX } });
  await vale.create('vale0:rx', {}, { driver: { kind: 'vhost-user', path: RX } });
  await vale.create('vale0:rx2', {}, { driver: { kind: 'vhost-user', path: RX2 } });
  const peer = await open('vale0:peer', { socket });
  t.teardown(() => peer.close());
  // a TAP with virtio-net headers whose interface counts what the kernel took in
  await vale.create('vale0:tap', {}, { driver: { kind: 'tap', ifname: tap, vnetHdr: true } });
  // nothing of its own (IPv6 autoconfiguration) from the TAP's side into the switch
  fs.writeFileSync(`/proc/sys/net/ipv6/conf/${tap}/disable_ipv6`, '1');
  execFileSync('ip', ['link', 'set', tap, 'up']);
  const tapStat = (s: string): number => Number(fs.readFileSync(`/sys/class/net/${tap}/statistics/${s}`, 'utf8'));
  const tap0 = { packets: tapStat('rx_packets'), bytes: tapStat('rx_bytes') };

  const BUFS = 0x80000, BUFLEN = 2048;
  const rxGuest = async (sock: string, features: bigint): Promise<Guest> => {
    const g = new Guest();
    t.teardown(() => native.close(g.fd));
    const { f, kick } = await frontWith(sock, g, features, 0);
    t.teardown(() => f.close());
    // 8 mergeable receive buffers of 2 KiB
    for (let i = 0; i < 8; i++) {
      g.desc(i, GPA + BUFS + i * BUFLEN, BUFLEN, WRITE);
      g.post(i, kick);
    }
    return g;
  };
  const gRx = await rxGuest(RX, VERSION_1 | MRG_RXBUF | GUEST_CSUM | GUEST_TSO4);
  const gRx2 = await rxGuest(RX2, VERSION_1 | MRG_RXBUF);
  const gTx = new Guest();
  t.teardown(() => native.close(gTx.fd));
  const { f: fTx, kick } = await frontWith(TX, gTx, VERSION_1 | CSUM | HOST_TSO4, 1);
  t.teardown(() => fTx.close());

  // 3000 bytes of TCP payload, gso_size 1000, checksum left to the device
  const tso = ipFrame(6, 3000);
  const hdr = vnetHdr(1, 1, 1000, 34, 16);
  gTx.bytes(0x40000, 12).set(hdr);
  gTx.bytes(0x40000 + 12, tso.length).set(tso);
  gTx.desc(0, GPA + 0x40000, 12 + tso.length);
  gTx.post(0, kick);

  // the plain client: three segments, checksums valid
  for (let i = 0; i < 3; i++) {
    const s = await receive(peer);
    t.is(new DataView(s.buffer, s.byteOffset + 14).getUint16(2), 1040, `segment ${i}: IPv4 total length`);
    t.is(sum16(s.subarray(34), pseudo(s, 6, 1020)), 0xffff, `segment ${i}: TCP checksum`);
  }
  // the guest that takes TSO: the frame whole (two merged buffers), the sender's header untouched
  await until(() => Promise.resolve(gRx.usedIdx() >= 2));
  const [whole] = rxFrames(gRx, BUFS, BUFLEN);
  t.deepEqual(whole!.hdr.subarray(0, 10), hdr.subarray(0, 10), "the sender's header as it wrote it");
  t.is(whole!.hdr[10], 2, 'num_buffers: the frame took two 2 KiB buffers');
  t.deepEqual(whole!.frame, tso, 'the frame byte for byte');
  // the guest without GUEST_TSO4: three frames with zero headers and complete checksums
  await until(() => Promise.resolve(gRx2.usedIdx() >= 3));
  const segs = rxFrames(gRx2, BUFS, BUFLEN);
  t.is(segs.length, 3);
  for (const [i, s] of segs.entries()) {
    t.deepEqual(s.hdr, Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]), `segment ${i}: a zero header, one buffer`);
    t.is(sum16(s.frame.subarray(34), pseudo(s.frame, 6, 1020)), 0xffff, `segment ${i}: TCP checksum`);
  }
  // the TAP's kernel took one frame of the whole length (a bad header would have been refused)
  await until(() => Promise.resolve(tapStat('rx_packets') > tap0.packets));
  t.is(tapStat('rx_packets') - tap0.packets, 1);
  t.is(tapStat('rx_bytes') - tap0.bytes, tso.length);

  const pc = async (p: string): Promise<Record<string, number>> => portCounters(vale, p);
  t.is((await pc('vale0:rx'))['vnetPassed'], 1);
  t.is((await pc('vale0:rx2'))['vnetPassed'], 1);
  t.is((await pc('vale0:tap'))['vnetPassed'], 1);
  t.like(await pc('vale0:peer'), { vnetSegmented: 1, vnetSegments: 3 });
  const [sw] = await vale.stats('vale0');
  const drv = (p: string): Record<string, number> => sw!.ports.find((x) => x.name === p)!.driver!.counters;
  t.like(drv('vale0:tx'), { fromGuestFrames: 1, offloadGsoPassed: 1 });
  t.like(drv('vale0:rx'), { toGuestFrames: 1, toGuestGso: 1, toGuestSegmented: 0 });
  t.like(drv('vale0:rx2'), { toGuestFrames: 3, toGuestSegmented: 1, toGuestSegments: 3 });

  // a partial checksum with DATA_VALID, a flag only a device may set: cleared on entry
  const udp = ipFrame(17, 100);
  const uh = vnetHdr(1 | 2, 0, 0, 34, 6);
  gTx.bytes(0x48000, 12).set(uh);
  gTx.bytes(0x48000 + 12, udp.length).set(udp);
  gTx.desc(1, GPA + 0x48000, 12 + udp.length);
  gTx.post(1, kick);
  await until(() => Promise.resolve(gRx.usedIdx() >= 3 && gRx2.usedIdx() >= 4));
  const [, u1] = rxFrames(gRx, BUFS, BUFLEN);
  t.is(u1!.hdr[0], 1, 'GUEST_CSUM guest: NEEDS_CSUM kept, DATA_VALID gone');
  t.deepEqual(u1!.frame, udp, 'its checksum still left to the guest');
  const u2 = rxFrames(gRx2, BUFS, BUFLEN)[3]!;
  t.is(u2.hdr[0], 0, 'guest without GUEST_CSUM: no flags');
  t.is(sum16(u2.frame.subarray(34), pseudo(u2.frame, 17, 108)), 0xffff, 'its UDP checksum filled in by the driver');
  await until(async () => ((await vale.stats('vale0'))[0]!.ports.find((x) => x.name === 'vale0:rx2')!.driver!.counters['toGuestCsumCompleted'] ?? 0) >= 1);
});

// Kick batching (docs/vhost-user.md): a wake that moved a burst (16 frames
// or more) makes the driver thread's next sleep a batched one (guest kicks
// off, a timer bounds it); a wake that moved a lone frame does not.
// in-line, the switch's own sleep takes the timer: only a datapath thread's
// (its wait() honours a hook's bound; the event loop's datapath never batches)
for (const inline of [false, true]) test(`kick batching: a burst of 16 frames makes one batched sleep, lone frames after it none, and every frame arrives (${inline ? 'in-line, datapath thread' : 'driver thread'})`, async (t) => {
  t.timeout(60_000);
  const { vale, VH, peer, drv } = inline ? await guestSwitch(t, 'batch-inline', { inline: true }, 'thread') : await guestSwitch(t, 'batch');
  const g = new Guest();
  const f = Front.connect(VH);
  t.teardown(() => f.close());
  f.send(SET_FEATURES, u64(VERSION_1)); // no EVENT_IDX (as DPDK's virtio-user): kicks go off with used->flags
  f.send(SET_OWNER);
  f.send(SET_MEM_TABLE, memTable([{ gpa: GPA, size: SIZE, uva: UVA }]), [g.fd]);
  const txKick = (await queuesUp(f, vale))[1]!;
  const hdr = 12;
  const put = (i: number, tag: number): void => {
    g.bytes(BUF + 0x100 * i, hdr).fill(0);
    g.bytes(BUF + 0x100 * i + hdr, 60).set(frame(0x62, tag));
    g.desc(i, GPA + BUF + 0x100 * i, hdr + 60);
    g.mem.setUint16(AVAIL + 4 + 2 * (i % QN), i, true);
  };
  // the burst: 16 chains published with one avail index store and one kick
  for (let i = 0; i < QN; i++) put(i, i);
  g.mem.setUint16(AVAIL + 2, QN, true);
  native.kick(txKick);
  for (let i = 0; i < QN; i++) t.is((await receive(peer))[14], i, `burst frame ${i} arrives in order`);
  await untilAnswer(drv, (c) => (c.batchedSleeps ?? 0) >= 1);
  t.is((await drv()).batchedSleeps, 1, 'the wake that moved the burst ended in one batched sleep');
  // lone frames, each kicked (a guest may kick while kicks are off; this one
  // has no memory barrier between its avail store and a used->flags read, so
  // it does not rely on the batched sleep's timer): one frame per wake
  for (let k = 0; k < 4; k++) {
    put(k, 100 + k);
    g.mem.setUint16(AVAIL + 2, QN + k + 1, true);
    native.kick(txKick);
    t.is((await receive(peer))[14], 100 + k, `lone frame ${k} arrives`);
  }
  const c = await drv();
  t.is(c.batchedSleeps, 1, 'wakes that moved one frame slept unbatched');
  t.is(c.fromGuestFrames, QN + 4);
  t.is(g.usedIdx(), QN + 4, 'every chain went back to the guest');
});

// inline's default: in-line on a switch with a datapath thread, a thread per
// port on the event-loop datapath; the spec's `inline` chooses either way.
// An in-line port holds its senders back for VHOST_INLINE_HOLD_US, not the
// switch's default 2 ms, unless the port was given a hold.
for (const datapath of ['loop', 'thread'] as const) test(`vhost-user inline's default follows the switch's datapath, the spec overrides it; in-line ports hold senders for a second (datapath ${datapath})`, async (t) => {
  const socket = path.join(dir, `ctl-default-${datapath}.sock`);
  const srv = await ValeServer.listen({ socket, switchOptions: { datapath } });
  t.teardown(() => srv.close());
  const vale = new ValeClient({ socket });
  const sock = (n: string): string => path.join(dir, `default-${datapath}-${n}.sock`);
  await vale.create('vale0:d', {}, { driver: { kind: 'vhost-user', path: sock('d') } });
  await vale.create('vale0:t', {}, { driver: { kind: 'vhost-user', path: sock('t'), inline: false } });
  await vale.create('vale0:i', {}, { driver: { kind: 'vhost-user', path: sock('i'), inline: true } });
  const [sw] = await vale.stats('vale0');
  const describe = (n: string): string => sw!.ports.find((p) => p.name === `vale0:${n}`)!.driver!.describe;
  t.is(describe('d'), `vhost-user ${sock('d')} (server${datapath === 'thread' ? ', in-line' : ''}, waiting for a front-end)`);
  t.is(describe('t'), `vhost-user ${sock('t')} (server, waiting for a front-end)`);
  t.is(describe('i'), `vhost-user ${sock('i')} (server, in-line, waiting for a front-end)`);
  const hold = (n: string): number => srv.switch('vale0')!.port(`vale0:${n}`)!.holdUs;
  t.is(hold('d'), datapath === 'thread' ? VHOST_INLINE_HOLD_US : DEFAULT_HOLD_US);
  t.is(hold('t'), DEFAULT_HOLD_US);
  t.is(hold('i'), VHOST_INLINE_HOLD_US);
  await srv.createPort('vale0:h', { holdUs: 500, driver: { kind: 'vhost-user', path: sock('h'), inline: true } });
  t.is(hold('h'), 500, 'a hold asked for the port stays');
  await srv.createPort('vale0:h2', { holdUs: DEFAULT_HOLD_US, driver: { kind: 'vhost-user', path: sock('h2'), inline: true } });
  t.is(hold('h2'), DEFAULT_HOLD_US, 'a hold asked for the port stays, also when it equals the default');
});

test('an in-line vhost-user port keeps the switch\'s hold when the switch was given one, even the default value', async (t) => {
  const socket = path.join(dir, 'ctl-hold-given.sock');
  const srv = await ValeServer.listen({ socket, switchOptions: { datapath: 'thread', holdUs: DEFAULT_HOLD_US } });
  t.teardown(() => srv.close());
  await srv.createPort('vale0:g', { driver: { kind: 'vhost-user', path: path.join(dir, 'hold-given.vhu'), inline: true } });
  t.is(srv.switch('vale0')!.port('vale0:g')!.holdUs, DEFAULT_HOLD_US);
});

// Backpressure in-line: a guest whose RX queue is full (here: it posted no
// buffers) holds the frames addressed to it in their senders' rings for a
// second, not the switch's 2 ms after which it used to shed them
// (dropNoSpace) and spin taking frames only to drop them. The switch's
// guard timer ends several held sleeps (heldTimeouts, 10 ms each) well past
// 2 ms with nothing dropped; once the guest posts buffers the held frames
// arrive. (A flood waits for it only the switch's 2 ms: backpressure.test.)
test('in-line backpressure: frames for a guest with a full RX queue wait in the sender\'s ring, none shed; they arrive once it posts buffers', async (t) => {
  t.timeout(60_000);
  const socket = path.join(dir, 'ctl-bp.sock');
  const srv = await ValeServer.listen({ socket, switchOptions: { datapath: 'thread' } });
  t.teardown(() => srv.close());
  const vale = new ValeClient({ socket });
  const VH = path.join(dir, 'guest-bp.sock');
  await vale.create('vale0:guest', { rxSlots: 64 }, { driver: { kind: 'vhost-user', path: VH } });
  const peer = await open('vale0:peer', { socket });
  t.teardown(() => peer.close());
  const g = new Guest();
  const f = Front.connect(VH);
  t.teardown(() => f.close());
  f.send(SET_FEATURES, u64(VERSION_1));
  f.send(SET_OWNER);
  f.send(SET_MEM_TABLE, memTable([{ gpa: GPA, size: SIZE, uva: UVA }]), [g.fd]);
  const kicks = await queuesUp(f, vale);
  // the guest speaks first, so the switch learns its MAC: the frames below are addressed to it
  const hello = frame(0x77, 0);
  g.bytes(BUF, 12).fill(0);
  g.bytes(BUF + 12, 60).set(hello);
  g.desc(0, GPA + BUF, 12 + 60);
  g.post(0, kicks[1]!);
  t.deepEqual((await receive(peer)).subarray(0, 60), hello);
  const toGuest = (tag: number): Uint8Array => {
    const fr = frame(0x63, tag);
    fr.set([2, 0, 0, 0, 0, 0x77], 0);
    return fr;
  };
  const stats = async (): Promise<{ held: number; drops: number; queued: number; toGuest: number }> => {
    const [sw] = await vale.stats('vale0');
    const gp = sw!.ports.find((p) => p.name === 'vale0:guest')!;
    return { held: sw!.switchCounters?.heldTimeouts ?? 0, drops: gp.counters['dropNoSpace'] ?? 0, queued: srv.switch('vale0')!.occupancy(srv.switch('vale0')!.port('vale0:peer')!.index).txQueued, toGuest: gp.driver!.counters['toGuestFrames'] ?? 0 };
  };
  const N = 200;
  for (let i = 0; i < N; i++) {
    peer.inject(toGuest(i & 0xff));
    peer.txsync();
  }
  // 64 slots in the guest port's rx ring: the rest waits in the peer's tx ring
  const held = await untilAnswer(stats, (s) => (s.held >= 5 && s.queued > 0) || s.drops > 0);
  t.is(held.drops, 0, 'nothing shed while the guest is off its CPU');
  t.true(held.queued > 0, 'the rest waits in the sender\'s ring');
  t.true(N - held.queued <= 64, `at most the guest port's ring was taken (${N - held.queued})`);
  // the guest posts 16 buffers: 16 frames land, in order, and the rest still waits
  const rxm = 0x20000;
  for (let i = 0; i < QN; i++) {
    g.desc(i, GPA + 0x30000 + 0x800 * i, 0x800, WRITE, 0, rxm + DESC);
    g.mem.setUint16(rxm + AVAIL + 4 + 2 * i, i, true);
  }
  g.mem.setUint16(rxm + AVAIL + 2, QN, true);
  native.kick(kicks[0]!);
  const after = await untilAnswer(stats, (s) => s.toGuest >= QN);
  t.is(after.toGuest, QN);
  for (let i = 0; i < QN; i++) t.is(g.bytes(0x30000 + 0x800 * i + 12, 60)[14], i, `frame ${i} in guest buffer ${i}`);
  t.is(after.drops, 0);
});

// The tests below run serially (before the concurrent ones): under ASan on
// two CPUs, run beside the others, their load (60000 segments, 2048-entry
// queues) kept the in-line backpressure test from seeing its held sleeps
// within the 1 s hold; and the gso_size 1 test measures the process's
// memory, which needs the process to itself.

/**
 * A front-end in a worker thread (it goes on while this thread waits in a
 * native call, as a hostile process would) that sends a SET_OWNER header
 * promising 4096 bytes of payload, one byte every 50 ms, at most `cap`
 * bytes, and then waits. `sent` resolves once it has sent `n` bytes,
 * `closed` with the bytes it had sent when the back-end hung up.
 */
function dribbler(t: ExecutionContext, socketPath: string, cap: number): { sent: (n: number) => Promise<void>; closed: Promise<number> } {
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    const net = require('node:net');
    const msg = Buffer.alloc(12 + 4096);
    msg.writeUInt32LE(3, 0); msg.writeUInt32LE(1, 4); msg.writeUInt32LE(4096, 8);
    let sent = 0, timer;
    const s = net.createConnection(workerData.path, () => {
      const one = () => { if (sent < workerData.cap) { s.write(msg.subarray(sent, sent + 1)); sent++; parentPort.postMessage({ sent }); } };
      one();
      timer = setInterval(one, 50);
    });
    s.on('error', () => {});
    s.on('close', () => { clearInterval(timer); parentPort.postMessage({ closed: sent }); });`;
  const w = new Worker(code, { eval: true, workerData: { path: socketPath, cap } });
  t.teardown(() => w.terminate());
  let sent = 0;
  const waiters: Array<() => void> = [];
  const closed = new Promise<number>((resolve) => {
    w.on('message', (m: { sent?: number; closed?: number }) => {
      if (m.closed !== undefined) resolve(m.closed);
      if (m.sent !== undefined) sent = m.sent;
      for (const f of waiters.splice(0)) f();
    });
  });
  const sentN = async (n: number): Promise<void> => {
    while (sent < n) await new Promise<void>((r) => waiters.push(r));
  };
  return { sent: sentN, closed };
}

// A message must arrive whole within 0.5 s. Before, each read had its own
// 0.5 s: a byte every 50 ms kept the driver inside one message for 205 s,
// and removing the port (its close() joins the thread on this event loop)
// waited as long.
for (const inline of [false, true]) test.serial(`a front-end dribbling a message is dropped at the message's deadline, and removing the port does not wait for it (${inline ? 'in-line in the switch' : 'driver thread'})`, async (t) => {
  t.timeout(60_000);
  const CAP = 400; // 20 s of dribbling: on an addon without the deadline, the hang-up comes only after it
  const { vale, VH, drv } = await guestSwitch(t, `dribble-${inline}`, { inline });
  const d1 = dribbler(t, VH, CAP);
  const sent1 = await d1.closed;
  t.true(sent1 < CAP, `hung up on after ${sent1} of ${CAP} bytes`);
  t.is((await drv())['protocolErrors'], 1);
  const [sw] = await vale.stats('vale0');
  t.regex(sw!.ports.find((p) => p.name === 'vale0:guest')!.driver!.describe, /message not complete within 0\.5 s/);

  const d2 = dribbler(t, VH, CAP);
  await d2.sent(2); // the back-end is reading its header
  await vale.remove('vale0:guest');
  const sent2 = await d2.closed;
  t.true(sent2 < CAP, `the port went away after ${sent2} of ${CAP} bytes`);
});

// Kick and call fds must be eventfds. Before, a FIFO was taken: a call fd
// that is a full FIFO (opened blocking) blocked the datapath's interrupt
// write for good (the driver's thread, or in-line the switch's, and with
// it stop(), which this event loop waits for), and a kick fd that is a
// FIFO whose writer has gone is readable forever (EOF): the thread, or
// in-line the switch, never slept again.
for (const inline of [false, true]) test.serial(`kick and call fds that are not eventfds (a full FIFO, a FIFO at EOF) are refused; the switch forwards on (${inline ? 'in-line, datapath thread' : 'driver thread'})`, async (t) => {
  t.timeout(60_000);
  const { vale, VH, peer, socket, drv } = await guestSwitch(t, `efd-${inline}`, { inline }, inline ? 'thread' : undefined);
  const peer2 = await open('vale0:peer2', { socket });
  t.teardown(() => peer2.close());
  const g = new Guest();
  t.teardown(() => native.close(g.fd));
  const hello = async (f: Front): Promise<number[]> => {
    f.send(SET_FEATURES, u64(VERSION_1));
    f.send(SET_OWNER);
    f.send(SET_MEM_TABLE, memTable([{ gpa: GPA, size: SIZE, uva: UVA }]), [g.fd]);
    return queuesUp(f, vale);
  };
  const describe = async (): Promise<string> => (await vale.stats('vale0'))[0]!.ports.find((p) => p.name === 'vale0:guest')!.driver!.describe;

  // a FIFO, blocking, filled to the brim (from a second, non-blocking opening)
  const callFifo = path.join(dir, `call-${inline}.fifo`);
  execFileSync('mkfifo', [callFifo]);
  const full = fs.openSync(callFifo, 'r+');
  const filler = fs.openSync(callFifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
  for (;;) {
    try {
      fs.writeSync(filler, Buffer.alloc(4096));
    } catch {
      break;
    }
  }
  fs.closeSync(filler);
  // (runs first: unblocks a back-end stuck writing into it, so that the switch can close)
  t.teardown(() => (fs.readSync(full, Buffer.alloc(1 << 20)), fs.closeSync(full)));
  let f = Front.connect(VH);
  await hello(f);
  f.send(SET_VRING_CALL, u64(0), [full]);
  // a frame for the guest in an RX buffer: its interrupt would go to the FIFO
  const rxm = 0x20000;
  g.desc(0, GPA + 0x30000, 2048, WRITE, 0, rxm + DESC);
  g.mem.setUint16(rxm + AVAIL + 4, 0, true);
  g.mem.setUint16(rxm + AVAIL + 2, 1, true);
  peer2.inject(frame(0x62, 1));
  peer2.txsync();
  t.is(await f.reply(), 'eof', 'a call fd that is a FIFO: the back-end hangs up');
  f.close();
  t.regex(await describe(), /call: its fd is not an eventfd but \S*call-\w*\.fifo/);

  // a FIFO whose only writer has gone: readable (EOF) for ever
  const kickFifo = path.join(dir, `kick-${inline}.fifo`);
  execFileSync('mkfifo', [kickFifo]);
  const eof = fs.openSync(kickFifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  t.teardown(() => fs.closeSync(eof));
  fs.closeSync(fs.openSync(kickFifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK));
  f = Front.connect(VH);
  await hello(f);
  f.send(SET_VRING_KICK, u64(1), [eof]);
  t.is(await f.reply(), 'eof', 'a kick fd that is a FIFO: the back-end hangs up');
  f.close();
  t.regex(await describe(), /kick: its fd is not an eventfd but \S*kick-\w*\.fifo/);
  t.is((await drv())['protocolErrors'], 2);

  await forwardsOn(t, peer2, peer);
});

// At most 1024 buffers in a chain, and in the chains of one frame together.
// Before, with MRG_RXBUF, a frame gathered chains until they held it: a
// 2048-entry RX queue whose every entry is the same chain of 2048 empty
// buffers made one frame's segment list 4 M entries (64 MiB; at 32768,
// 16 GiB: std::bad_alloc and vale-ts aborted) and 4 M descriptor reads,
// again on every pass while the frame waited, with nothing counted.
test.serial('vhost-user chains past 1024 buffers, alone or across one frame\'s mergeable buffers, are dropped and counted (dropChainTooLong)', async (t) => {
  t.timeout(30_000);
  const { vale, peer, drv, peer2, g, f } = await guestRig(t, 'long-chains');
  const reaches = (name: string, n: number) => async (): Promise<boolean> => ((await drv())[name] ?? 0) >= n;
  const MRG_RXBUF = 1n << 15n;
  f.send(SET_FEATURES, u64(VERSION_1 | MRG_RXBUF));
  f.send(SET_OWNER);
  f.send(SET_MEM_TABLE, memTable([{ gpa: GPA, size: SIZE, uva: UVA }]), [g.fd]);
  const rx: RxLayout = { num: 2048, desc: 0x40000, avail: 0x48000, used: 0x4a000 };
  await queuesUp(f, vale, rx);
  const used = (): number => g.mem.getUint16(rx.used + 2, true);
  // one chain through the whole table, 2048 empty buffers, in every avail entry
  for (let i = 0; i < rx.num; i++) g.desc(i, GPA + 0x30000, 0, WRITE | (i + 1 < rx.num ? NEXT : 0), i + 1, rx.desc);
  for (let i = 0; i < rx.num; i++) g.mem.setUint16(rx.avail + 4 + 2 * i, 0, true);
  g.mem.setUint16(rx.avail + 2, rx.num, true);
  peer2.inject(frame(0x62, 1));
  peer2.txsync();
  await until(reaches('dropChainTooLong', 1));
  t.is(used(), 1, 'the chain went back to the guest');
  t.is(g.mem.getUint32(rx.used + 4 + 4, true), 0, 'with nothing written');
  // now chain 0 is one empty buffer: the next frame gathers the 2047 entries
  // left as mergeable buffers, and its 1025th passes the limit
  g.desc(0, GPA + 0x30000, 0, WRITE, 0, rx.desc);
  peer2.inject(frame(0x62, 2));
  peer2.txsync();
  await until(reaches('dropChainTooLong', 2));
  t.is(used(), 1 + 1025, 'the 1024 chains gathered and the one past the limit went back');
  t.is((await drv())['toGuestFrames'], 0);

  await forwardsOn(t, peer2, peer);
});

// A frame that waits for mergeable RX buffers waits asleep, asking for a
// kick past the entries it has seen. Before, any avail entry of the RX
// queue counted as work while a frame waited: a guest that posted one
// buffer too small for the frame, and no more, kept the driver's thread
// (in-line: the switch's datapath thread) polling at 100% CPU for as long
// as it liked. The sleep is seen in guest memory: with EVENT_IDX the driver
// asks for a kick once the guest's avail index passes the one it saw (1),
// where polling it left avail_event at its last consumed entry (0).
for (const inline of [false, true]) test.serial(`a frame waiting for a guest's mergeable RX buffers waits asleep and goes once the guest adds one (${inline ? 'in-line, datapath thread' : 'driver thread'})`, async (t) => {
  t.timeout(30_000);
  const { vale, drv, peer2, g, f } = await guestRig(t, `starved-${inline}`, { inline }, inline ? 'thread' : undefined);
  const MRG_RXBUF = 1n << 15n, EVENT_IDX = 1n << 29n;
  f.send(SET_FEATURES, u64(VERSION_1 | MRG_RXBUF | EVENT_IDX));
  f.send(SET_OWNER);
  f.send(SET_MEM_TABLE, memTable([{ gpa: GPA, size: SIZE, uva: UVA }]), [g.fd]);
  const kicks = await queuesUp(f, vale);
  const rxm = 0x20000;
  const availEvent = (): number => g.mem.getUint16(rxm + USED + 4 + 8 * QN, true);
  // one 8-byte buffer: too small for any frame
  g.desc(0, GPA + 0x30000, 8, WRITE, 0, rxm + DESC);
  g.mem.setUint16(rxm + AVAIL + 4, 0, true);
  g.mem.setUint16(rxm + AVAIL + 2, 1, true);
  native.kick(kicks[0]!);
  const toGuest = frame(0x62, 5);
  peer2.inject(toGuest);
  peer2.txsync();
  await untilAnswer(async () => availEvent(), (e) => e === 1);
  t.is((await drv())['toGuestFrames'], 0, 'the frame waits');
  // a second buffer: the frame goes into both (num_buffers 2)
  g.desc(1, GPA + 0x31000, 2048, WRITE, 0, rxm + DESC);
  g.mem.setUint16(rxm + AVAIL + 4 + 2, 1, true);
  g.mem.setUint16(rxm + AVAIL + 2, 2, true);
  native.kick(kicks[0]!);
  await untilAnswer(drv, (c) => (c['toGuestFrames'] ?? 0) >= 1);
  t.is(g.mem.getUint16(rxm + USED + 2, true), 2);
  // the 12-byte header's first 8 bytes fill the first buffer, its last 4 (num_buffers at 10) start the second
  t.is(g.mem.getUint16(0x31000 + 2, true), 2, 'num_buffers');
  t.deepEqual(g.bytes(0x31000 + 4, 60), toGuest);
});

// The segments of a GSO frame for a guest without its GUEST_TSO feature are
// kept packed. Before, each took a whole port buffer: a 60000-byte TCP
// payload with gso_size 1 (what any guest with HOST_TSO4 may send) became
// 60000 x 2 KiB = 123 MB at the receiving port, held after (and 4 GB with
// 64 KiB buffers).
test.serial('a TSO frame with gso_size 1 for a guest without GUEST_TSO4 costs its segments\' bytes, not a port buffer each', async (t) => {
  t.timeout(60_000);
  const socket = path.join(dir, 'ctl-mss1.sock');
  const srv = await ValeServer.listen({ socket });
  t.teardown(() => srv.close());
  const vale = new ValeClient({ socket });
  const TX = path.join(dir, 'mss1-tx.sock'), RX = path.join(dir, 'mss1-rx.sock');
  await vale.create('vale0:tx', {}, { driver: { kind: 'vhost-user', path: TX } });
  await vale.create('vale0:rx', {}, { driver: { kind: 'vhost-user', path: RX } });
  const rxCounters = async (): Promise<Record<string, number>> => (await vale.stats('vale0'))[0]!.ports.find((p) => p.name === 'vale0:rx')!.driver!.counters;
  const gRx = new Guest();
  t.teardown(() => native.close(gRx.fd));
  const { f: fRx, kick: rxKick } = await frontWith(RX, gRx, VERSION_1 | MRG_RXBUF, 0);
  t.teardown(() => fRx.close());
  for (let i = 0; i < 8; i++) {
    gRx.desc(i, GPA + 0x80000 + i * 2048, 2048, WRITE);
    gRx.post(i, rxKick);
  }
  const gTx = new Guest();
  t.teardown(() => native.close(gTx.fd));
  const { f: fTx, kick } = await frontWith(TX, gTx, VERSION_1 | CSUM | HOST_TSO4, 1);
  t.teardown(() => fTx.close());
  const tso = ipFrame(6, 60000);
  const rss0 = process.memoryUsage().rss;
  gTx.bytes(0x20000, 12).set(vnetHdr(1, 1, 1, 34, 16));
  gTx.bytes(0x20000 + 12, tso.length).set(tso);
  gTx.desc(0, GPA + 0x20000, 12 + tso.length);
  gTx.post(0, kick);
  // the first 8 segments land (a header and one byte of payload each); the rest wait for buffers
  await untilAnswer(rxCounters, (c) => (c['toGuestFrames'] ?? 0) >= 8);
  const grew = process.memoryUsage().rss - rss0;
  t.true(grew < 64 << 20, `the process grew by ${(grew / 2 ** 20).toFixed(1)} MiB`);
  const [s0] = rxFrames(gRx, 0x80000, 2048);
  t.is(s0!.frame.length, 54 + 1, 'a segment: the headers and one byte');
});

test.serial('client mode: a server at the path whose backlog is full and that never accepts leaves the port removable at once, with the reason in its state', async (t) => {
  t.timeout(60_000);
  const VH = path.join(dir, 'never-accepts.sock');
  // a listener that never accepts (node would accept on its own): python,
  // listen(0), so that one pending connection fills its backlog; it holds
  // the socket until the test kills it (it reads its stdin, which never ends)
  const py = spawn('python3', ['-c', 'import socket,sys\ns=socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])\ns.listen(0)\nprint("ready",flush=True)\nsys.stdin.read()', VH], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  t.teardown(() => py.kill('SIGKILL'));
  await once(py.stdout!, 'data');
  const filler = native.unixStreamConnect(VH);
  t.teardown(() => native.close(filler));
  const socket = path.join(dir, 'ctl-never-accepts.sock');
  const srv = await ValeServer.listen({ socket });
  t.teardown(() => srv.close());
  const vale = new ValeClient({ socket });
  await vale.create('vale0:cl', {}, { driver: { kind: 'vhost-user', path: VH, client: true } });
  const describe = async (): Promise<string> => (await vale.stats('vale0'))[0]!.ports.find((p) => p.name === 'vale0:cl')!.driver!.describe;
  // the attempt failed rather than waiting in connect() for an accept that never comes
  await until(async () => /listen backlog is full/.test(await describe()));
  t.regex(await describe(), /\(client, connecting\); last error: connecting to \S+: .* \(retrying every second\)/);
  // removing it joins the port's thread: it must not be inside a connect()
  await vale.remove('vale0:cl');
  t.false((await vale.stats()).some((sw) => sw.ports.some((p) => p.name === 'vale0:cl')));
});

test.serial('client mode: once a front-end accepts, the failed attempts before it are no longer shown as the last error', async (t) => {
  t.timeout(60_000);
  const VH = path.join(dir, 'comes-later.sock');
  const socket = path.join(dir, 'ctl-comes-later.sock');
  const srv = await ValeServer.listen({ socket });
  t.teardown(() => srv.close());
  const vale = new ValeClient({ socket });
  await vale.create('vale0:later', {}, { driver: { kind: 'vhost-user', path: VH, client: true } });
  t.teardown(() => vale.remove('vale0:later').catch(() => undefined));
  const describe = async (): Promise<string> => (await vale.stats('vale0'))[0]!.ports.find((p) => p.name === 'vale0:later')!.driver!.describe;
  await until(async () => /No such file or directory \(retrying every second\)/.test(await describe()));
  // the front-end (QEMU's server=on) comes up: an accepting listener at the path
  const { createServer } = await import('node:net');
  const fe = createServer(() => undefined);
  await new Promise<void>((r) => fe.listen(VH, () => r()));
  t.teardown(() => fe.close());
  await until(async () => /\(client(?:, in-line)?, connected, /.test(await describe()));
  t.notRegex(await describe(), /last error/, 'a connected port does not show the attempts before as its last error');
});

// The call eventfd is the front-end's file: it can clear O_NONBLOCK on it
// and fill its counter. Before, the next interrupt's write then waited for
// good, and with it the port's thread (in-line: the switch's datapath).
for (const inline of [false, true]) test.serial(`a front-end that makes its call fd blocking and fills it holds the port one watchdog tick; callStuck counts it and the switch forwards on (${inline ? 'in-line, datapath thread' : 'driver thread'})`, async (t) => {
  t.timeout(60_000);
  const { vale, peer, drv, peer2, g, f } = await guestRig(t, `callstuck-${inline}`, { inline }, inline ? 'thread' : undefined);
  f.send(SET_FEATURES, u64(VERSION_1));
  f.send(SET_OWNER);
  f.send(SET_MEM_TABLE, memTable([{ gpa: GPA, size: SIZE, uva: UVA }]), [g.fd]);
  const calls: number[] = [];
  const kicks = await queuesUp(f, vale, undefined, calls);
  await makeBlocking(calls[0]!, { fill: EVENTFD_FULL });
  const rxm = 0x20000;
  for (const i of [0, 1]) {
    g.desc(i, GPA + 0x30000 + 0x1000 * i, 2048, WRITE, 0, rxm + DESC);
    g.mem.setUint16(rxm + AVAIL + 4 + 2 * i, i, true);
  }
  g.mem.setUint16(rxm + AVAIL + 2, 2, true);
  native.kick(kicks[0]!);
  peer2.inject(frame(0x62, 5));
  peer2.txsync();
  const after = await untilAnswer(drv, (c) => (c['callStuck'] ?? 0) >= 1);
  t.is(after['toGuestFrames'], 1);
  // no call is tried again; frames still reach the guest and the other ports
  peer2.inject(frame(0x62, 6));
  peer2.txsync();
  const more = await untilAnswer(drv, (c) => (c['toGuestFrames'] ?? 0) >= 2);
  t.is(more['callStuck'], 1);
  t.is(g.mem.getUint16(rxm + USED + 2, true), 2);
  await forwardsOn(t, peer2, peer);
});

// A memfd the front-end could still shrink would make vale-ts fault (SIGBUS)
// on a page past the new end: vale-ts seals it against shrinking.
test('a sealable guest memfd without F_SEAL_SHRINK is sealed by vale-ts: the front-end can no longer shrink it', async (t) => {
  t.timeout(30_000);
  const { VH } = await guestSwitch(t, 'seal');
  const fd = native.memfd('sealable-guest', SIZE, true);
  t.teardown(() => native.close(fd));
  fs.ftruncateSync(fd, SIZE - 4096);
  fs.ftruncateSync(fd, SIZE);
  const f = Front.connect(VH);
  t.teardown(() => f.close());
  f.send(SET_FEATURES, u64(VERSION_1));
  f.send(SET_OWNER);
  f.send(SET_MEM_TABLE, memTable([{ gpa: GPA, size: SIZE, uva: UVA }]), [fd]);
  // messages are handled in order: once GET_FEATURES is answered, the table is in
  f.send(GET_FEATURES);
  t.not(await f.reply(), 'eof');
  t.throws(() => fs.ftruncateSync(fd, SIZE / 2), { code: 'EPERM' });
  fs.ftruncateSync(fd, 2 * SIZE); // growing stays allowed (QEMU's own seal set adds F_SEAL_GROW; vale-ts needs only this)
});

// Files on tmpfs (/dev/shm) and hugetlbfs take no seals: a front-end can
// shrink its guest memory after SET_MEM_TABLE, and the next access by the
// switch to a page past the new end raised SIGBUS, killing the process
// (every port of every switch in it: here, the test process itself). The
// guard replaces the page with zeros, counts the frame in flight, and hangs
// up on the front-end; the port takes a new one.
for (const inline of [false, true]) test.serial(`a front-end that truncates its guest memory file (/dev/shm, unsealable) under the switch: no SIGBUS, dropGuestMemoryFault counts the frame, the front-end is disconnected, the switch forwards on and the port takes a new front-end (${inline ? 'in-line in the switch' : 'driver thread'})`, async (t) => {
  t.timeout(60_000);
  t.is(fs.statfsSync('/dev/shm').type, TMPFS_MAGIC, '/dev/shm is tmpfs');
  const { vale, VH, peer, socket, drv } = await guestSwitch(t, `trunc-${inline}`, { inline });
  const peer2 = await open('vale0:peer2', { socket });
  t.teardown(() => peer2.close());
  const shm = `/dev/shm/vhost-hostile-${process.pid}-${inline}`;
  const fd = fs.openSync(shm, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
  t.teardown(() => (fs.closeSync(fd), fs.rmSync(shm, { force: true })));
  fs.ftruncateSync(fd, SIZE);
  const g = new Guest(fd);
  const f = Front.connect(VH);
  t.teardown(() => f.close());
  f.send(SET_FEATURES, u64(VERSION_1));
  f.send(SET_OWNER);
  f.send(SET_MEM_TABLE, memTable([{ gpa: GPA, size: SIZE, uva: UVA }]), [fd]);
  // every ring in the pages below BUF, which stay in the file; the buffers above it do not
  const txKick = (await queuesUp(f, vale, { num: QN, desc: 0x3000, avail: 0x4000, used: 0x5000 }))[1]!;
  const hdr = 12;
  const good = frame(0x61, 1);
  g.bytes(BUF, hdr).fill(0);
  g.bytes(BUF + hdr, 60).set(good);
  g.desc(0, GPA + BUF, hdr + 60);
  g.post(0, txKick);
  t.deepEqual((await receive(peer)).subarray(0, 60), good, 'a frame from guest memory in the file passes');

  // the attack: the file shrinks to BUF, then a frame whose buffer lay past that is posted
  g.desc(1, GPA + BUF, hdr + 60);
  fs.ftruncateSync(fd, BUF);
  g.post(1, txKick); // (the test touches only the pages still in the file)
  t.is(await f.reply(), 'eof', 'the back-end hangs up on the front-end');
  const c = await untilAnswer(drv, (x) => (x['disconnects'] ?? 0) >= 1);
  t.is(c['dropGuestMemoryFault'], 1, 'the frame read from the truncated page is dropped and counted');
  t.is(c['fromGuestFrames'], 1, 'only the first frame went on');
  t.is(c['protocolErrors'], 1);
  const [sw] = await vale.stats('vale0');
  t.regex(sw!.ports.find((p) => p.name === 'vale0:guest')!.driver!.describe, /SIGBUS.*memory-backend-memfd/);

  // nothing of the zeroed frame reached another port: the next frame peer sees is peer2's
  const other = frame(0x62, 42);
  peer2.inject(other);
  peer2.txsync();
  t.deepEqual((await receive(peer)).subarray(0, 60), other, 'the switch forwards on, and forwarded nothing read from zeroed memory');

  // a front-end with fresh memory is served
  const g2 = new Guest();
  t.teardown(() => native.close(g2.fd));
  const f2 = Front.connect(VH);
  t.teardown(() => f2.close());
  f2.send(SET_FEATURES, u64(VERSION_1));
  f2.send(SET_OWNER);
  f2.send(SET_MEM_TABLE, memTable([{ gpa: GPA, size: SIZE, uva: UVA }]), [g2.fd]);
  const kick2 = (await queuesUp(f2, vale))[1]!;
  const again = frame(0x61, 2);
  g2.bytes(BUF, hdr).fill(0);
  g2.bytes(BUF + hdr, 60).set(again);
  g2.desc(0, GPA + BUF, hdr + 60);
  g2.post(0, kick2);
  t.deepEqual((await receive(peer)).subarray(0, 60), again, 'the port takes a new front-end');
});

// The guard takes only faults in guest memory: any other SIGBUS still ends
// the process as before (the default action, or the handler that was there:
// ASan's report under test/asan/run.sh).
test('a SIGBUS outside guest memory in a process with vhost-user ports still ends it', async (t) => {
  t.timeout(60_000);
  const lib = (m: string): string => new URL(`../../src/${m}`, import.meta.url).href;
  const sock = path.join(dir, 'sigbus-child');
  const script = `
    import fs from 'node:fs';
    import { ValeServer, ValeClient } from ${JSON.stringify(lib('index.js'))};
    import { nativeRaw } from ${JSON.stringify(lib('netmap/addon.js'))};
    const srv = await ValeServer.listen({ socket: ${JSON.stringify(sock + '.ctl')} });
    const vale = new ValeClient({ socket: ${JSON.stringify(sock + '.ctl')} });
    await vale.create('vale0:g', {}, { driver: { kind: 'vhost-user', path: ${JSON.stringify(sock + '.vh')} } });
    const fd = nativeRaw.memfd('not-guest-memory', 65536);
    const m = new Uint8Array(nativeRaw.mapFd(fd, 65536));
    fs.ftruncateSync(fd, 0);
    console.log('touching');
    m[100] = 1;
    console.log('survived');
    await srv.close();
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '', err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  t.true(out.includes('touching'), err);
  t.false(out.includes('survived'));
  if ((process.env['LD_PRELOAD'] ?? '').includes('libasan')) t.regex(err, /AddressSanitizer: BUS/, `exit ${code} ${signal}`);
  else t.is(signal, 'SIGBUS', `exit ${code}: ${err}`);
});
