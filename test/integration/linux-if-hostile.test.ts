/**
 * Attached Linux interfaces against frames someone else shapes: a netmap
 * client of the switch whose multi-slot frames (NS_MOREFRAG chains) leave
 * through an interface, and a process in a namespace behind a veth (raw
 * packet sockets, PACKET_VNET_HDR, VLAN tags). What each test checks is what reaches
 * the other side, byte for byte, or the counter that says why nothing did.
 */
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { open, ValeClient, ValeServer, type Port } from '../../src/index.js';
import { afxdpBuiltIn } from '../../src/ports/linux-if.js';
import { ensurePackages } from '../fixtures/system-packages.js';
import { makeNamespaces, must, run, type NsEnd, type Run } from '../fixtures/linux-if-netns.js';
import { ctl } from '../fixtures/vale-ctl-run.js';
import { untilAnswer } from '../fixtures/wait.js';
import { recvFrames, sendChain } from '../fixtures/chains.js';

const root = process.getuid?.() === 0;
const suite = root ? test.serial : test.serial.skip;
const SRC_P = [2, 0, 0, 0, 0x71, 0x01]; // the netmap client's MAC
const SMUGGLED_SRC = 'de00000071ee'; // the source MAC of a frame hidden inside another

async function driverCounters(socket: string, port: string): Promise<Record<string, number>> {
  const st = await ctl(socket, '--stats', '--json');
  const ports = (JSON.parse(st.stdout) as { switches: { ports: { name: string; driver?: { counters: Record<string, number> } }[] }[] }).switches[0]!.ports;
  return ports.find((q) => q.name === port)!.driver!.counters;
}

/** The frames at `p` up to and with the first that `last` accepts. */
async function recvUntil(p: Port, last: (f: Buffer) => boolean): Promise<Buffer[]> {
  const out: Buffer[] = [];
  while (out.length === 0 || !last(out[out.length - 1]!)) out.push(...(await recvFrames(p, 1)));
  return out;
}

/** An Ethernet frame of the local experimental ethertype 0x88b5, `len` bytes, `marker` after the header. */
function exp(dst: string, src: string, marker: string, len: number): Buffer {
  const f = Buffer.alloc(len, 0x5a);
  Buffer.from(dst + src + '88b5', 'hex').copy(f, 0);
  f.write(marker, 14, 'latin1');
  return f;
}

/**
 * A raw packet socket in `end`'s namespace that prints (hex) every 0x88b5
 * frame the namespace's end of the veth receives, until one carrying
 * `SENTINEL`. Resolves once it is bound; `frames` once the sentinel came.
 */
async function capture(end: NsEnd): Promise<{ frames: Promise<string[]>; kill: () => void }> {
  const py = [
    'import socket, sys',
    's = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88b5))',
    's.bind((sys.argv[1], 0))',
    'print("ready", flush=True)',
    'while True:',
    '    f = s.recv(65536)',
    '    print(f.hex(), flush=True)',
    '    if b"SENTINEL" in f: break',
  ].join('\n');
  const child = spawn('ip', ['netns', 'exec', end.ns, 'python3', '-c', py, end.inner], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const frames = new Promise<string[]>((resolve, reject) => {
    child.on('close', (code) => (code === 0 ? resolve(out.split('\n').slice(1).filter(Boolean)) : reject(new Error(`capture in ${end.ns} exited ${code}: ${err}`))));
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.startsWith('ready\n')) resolve();
    });
    child.on('close', () => reject(new Error(`capture in ${end.ns} ended before it was ready: ${err}`)));
  });
  return { frames, kill: () => child.kill() };
}

/** Runs a python program in `end`'s namespace with the veth end's name and MAC as its first two arguments. */
async function pyIn(end: NsEnd, code: string, ...args: string[]): Promise<Run> {
  return run('ip', ['netns', 'exec', end.ns, 'python3', '-c', code, end.inner, end.mac.replaceAll(':', ''), ...args]);
}

const afxdpMissing = afxdpBuiltIn ? undefined : 'the addon was built without AF_XDP (libxdp-dev/libbpf-dev absent at compile time)';

// Each variant: how the interface is attached, and the counter a chain too long for it lands in.
const chainVariants = [
  { name: 'afxdp', args: ['--backend', 'afxdp'], tag: 'x1x', subnet: 231, tooBig: 'drop_too_big' },
  { name: 'afxdp, threaded', args: ['--backend', 'afxdp', '--inline', 'off'], tag: 'x1y', subnet: 232, tooBig: 'drop_too_big' },
  { name: 'packet', args: ['--backend', 'packet'], tag: 'x1z', subnet: 233, tooBig: 'drop_tx_error' },
  // the af-packet kind: no header passed, frames sent with a zero one
  { name: 'af-packet kind', args: [], tag: 'x1k', subnet: 235, tooBig: 'drop_tx_error' },
] as const;


/** a.host attached to vale0 (vale-ctl-ts -a ARGS; no ARGS: the af-packet driver kind) and the client port vale0:x1p beside it. */
async function attachAndOpen(t: ExecutionContext, socket: string, a: NsEnd, args: readonly string[]): Promise<Port> {
  if (args.length > 0) {
    const r = await ctl(socket, '-a', `vale0:${a.host}`, ...args);
    t.is(r.code, 0, r.stderr);
  } else {
    await new ValeClient({ socket }).create(`vale0:${a.host}`, {}, { driver: { kind: 'af-packet', ifname: a.host } });
    await must('ip', 'link', 'set', a.host, 'up');
  }
  const p = await open('vale0:x1p', { socket });
  t.teardown(() => p.close());
  return p;
}

/** A namespace with one veth end (`a.host` on this side) and a switch on its own socket, removed at teardown. */
async function nsAndSwitch(t: ExecutionContext, v: { tag: string; subnet: number }): Promise<{ a: NsEnd; socket: string }> {
  ensurePackages(['iproute2', 'python3']);
  const { ends, remove } = await makeNamespaces(v.tag, 1, v.subnet);
  t.teardown(remove);
  const socket = path.join(os.tmpdir(), `linux-if-hostile-${v.tag}-${process.pid}.sock`);
  const srv = await ValeServer.listen({ socket });
  t.teardown(() => srv.close());
  return { a: ends[0]!, socket };
}

for (const v of chainVariants) {
  suite(`${v.name}: a multi-slot frame from a netmap port leaves the interface as one frame or not at all, never as one frame per slot`, async (t) => {
    t.timeout(120_000, 'hang guard');
    if (v.name.startsWith('afxdp') && afxdpMissing) {
      if (process.env['CI'] === 'true') t.fail(afxdpMissing);
      else t.pass(`AF_XDP not tested: ${afxdpMissing}`);
      return;
    }
    const { a, socket } = await nsAndSwitch(t, v);
    const p = await attachAndOpen(t, socket, a, v.args);
    const cap = await capture(a);
    t.teardown(cap.kill);
    const dst = a.mac.replaceAll(':', '');
    const src = Buffer.from(SRC_P).toString('hex');
    const c0 = await driverCounters(socket, `vale0:${a.host}`);
    // a 300-byte frame in three slots; its second slot, alone, would be a
    // complete frame from another MAC (what the lookup never saw)
    const small = [exp(dst, src, 'SMALL', 100), exp('ffffffffffff', SMUGGLED_SRC, 'HIDDEN1', 100), Buffer.alloc(100, 0x33)];
    sendChain(p, small);
    // a frame larger than the interface's MTU, its second slot a frame of its own
    sendChain(p, [exp(dst, src, 'LARGE', 1500), exp('ffffffffffff', SMUGGLED_SRC, 'HIDDEN2', 900)]);
    sendChain(p, [exp(dst, src, 'SENTINEL', 60)]);
    const frames = await cap.frames;
    t.deepEqual(
      frames.filter((f) => f.slice(12, 24) === SMUGGLED_SRC),
      [],
      'no slot of a chain left as a frame of its own',
    );
    t.deepEqual(frames, [Buffer.concat(small).toString('hex'), exp(dst, src, 'SENTINEL', 60).toString('hex')], 'the small chain left whole, the large one not at all');
    const c1 = await untilAnswer(
      () => driverCounters(socket, `vale0:${a.host}`),
      (c) => c[v.tooBig]! > c0[v.tooBig]!,
    );
    t.is(c1[v.tooBig]! - c0[v.tooBig]!, 1, `the large chain is counted: ${JSON.stringify(c1)}`);
  });
}

/** The Internet checksum sum (RFC 1071), unfolded-then-folded, not complemented. */
function sum16(b: Uint8Array, start = 0, end = b.length, init = 0): number {
  let s = init;
  for (let i = start; i < end; i += 2) s += (b[i]! << 8) | (i + 1 < end ? b[i + 1]! : 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

// the receive paths: a TPACKET_V2 ring (the tagged GSO frame, larger than a
// ring frame, read from the socket: TP_STATUS_COPY), a TPACKET_V3 ring, and
// the af-packet kind (no header passed: the driver segments)
const vlanVariants = [
  { name: 'packet', tag: 'x1v', subnet: 234, rx: '2' },
  { name: 'packet with VALE_TS_TPACKET_RX=3', tag: 'x1w', subnet: 236, rx: '3' },
  { name: 'af-packet kind', tag: 'x1u', subnet: 237, rx: '' },
] as const;

for (const v of vlanVariants) {
  suite(`${v.name}: VLAN-tagged frames from the interface reach the switch with their tag (802.1Q, 802.1ad), GSO frames too (segments tagged, checksums right)`, async (t) => {
    t.timeout(120_000, 'hang guard');
    const { a, socket } = await nsAndSwitch(t, v);
    // the switch runs in this process: the driver reads the variable at attach
    if (v.rx) process.env['VALE_TS_TPACKET_RX'] = v.rx;
    const p = await attachAndOpen(t, socket, a, v.rx ? ['--backend', 'packet'] : []).finally(() => delete process.env['VALE_TS_TPACKET_RX']);
    // a tagged frame (VLAN 100, priority 5), one with an 802.1ad tag, then a
    // tagged TCP/IPv4 GSO frame with its checksum left to the receiver, from
    // a raw socket with PACKET_VNET_HDR
    const send = [
      'import socket, struct, sys',
      's = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)',
      's.setsockopt(263, 15, 1)  # SOL_PACKET, PACKET_VNET_HDR',
      's.bind((sys.argv[1], 0))',
      'eth = bytes.fromhex("ffffffffffff" + sys.argv[2] + "8100a064")',
      's.send(bytes(10) + eth + bytes.fromhex("88b5") + b"TAGGED" + bytes(40))',
      's.send(bytes(10) + bytes.fromhex("ffffffffffff" + sys.argv[2] + "88a8000788b5") + b"OUTER" + bytes(40))',
      'def gso(eth, n):',
      '    pay = bytes((i * 7 + 3) & 0xff for i in range(n))',
      '    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(pay), 0, 0x4000, 64, 6, 0, bytes([10, 1, 0, 1]), bytes([10, 1, 0, 2]))',
      '    w = sum(struct.unpack("!10H", ip)); w = (w & 0xffff) + (w >> 16); w = (w & 0xffff) + (w >> 16)',
      '    ip = ip[:10] + struct.pack("!H", ~w & 0xffff) + ip[12:]',
      '    ps = sum(struct.unpack("!4H", ip[12:20])) + 6 + 20 + len(pay); ps = (ps & 0xffff) + (ps >> 16); ps = (ps & 0xffff) + (ps >> 16)',
      '    tcp = struct.pack("!HHIIBBHHH", 40000, 9, 1, 0, 0x50, 0x18, 65535, ps, 0)',
      '    l4 = len(eth) + 2 + 20',
      '    # virtio-net header: NEEDS_CSUM, TCPV4, gso_size 1000, the checksum at the TCP header + 16',
      '    s.send(struct.pack("<BBHHHH", 1, 1, l4 + 20, 1000, l4, 16) + eth + bytes.fromhex("0800") + ip + tcp + pay)',
      'gso(eth, 3000)',
      '# 802.1ad outside 802.1Q: the kernel takes the outer tag out, the inner stays',
      'gso(bytes.fromhex("ffffffffffff" + sys.argv[2] + "88a8000a8100a064"), 2000)',
      's.send(bytes(10) + bytes.fromhex("ffffffffffff" + sys.argv[2] + "88b5") + b"SENTINEL" + bytes(40))',
    ].join('\n');
    const sent = await pyIn(a, send);
    t.is(sent.code, 0, sent.stderr);
    const mac = a.mac.replaceAll(':', '');
    const got = await recvUntil(p, (f) => f.includes('SENTINEL'));
    const [tagged, outer, ...segs] = got.filter((f) => f.subarray(6, 12).toString('hex') === mac && f.readUInt16BE(12) !== 0x86dd).slice(0, -1);
    t.is(tagged!.subarray(12, 18).toString('hex'), '8100a06488b5', 'the tag is where the sender put it');
    t.is(tagged!.subarray(18, 24).toString('latin1'), 'TAGGED');
    t.is(outer!.subarray(12, 18).toString('hex'), '88a8000788b5', 'an 802.1ad tag keeps its TPID');
    t.is(segs.length, 5);
    segs.forEach((s, j) => {
      const qinq = j >= 3;
      const i = qinq ? j - 3 : j;
      t.is(s.subarray(12, qinq ? 22 : 18).toString('hex'), qinq ? '88a8000a8100a0640800' : '8100a0640800', `segment ${j} tagged`);
      const l3 = qinq ? 22 : 18;
      const l4 = l3 + 20;
      t.is(s.length, l4 + 20 + 1000, `segment ${i} length`);
      t.is(sum16(s, l3, l4), 0xffff, `segment ${i} IPv4 header checksum`);
      const len = s.length - l4;
      const ps = sum16(Buffer.from([0, 6, len >> 8, len & 0xff]), 0, 4, sum16(s, l3 + 12, l3 + 20));
      t.is(sum16(s, l4, s.length, ps), 0xffff, `segment ${i} TCP checksum`);
      t.is(s.readUInt32BE(l4 + 4), 1 + i * 1000, `segment ${i} sequence number`);
    });
    const c = await driverCounters(socket, `vale0:${a.host}`);
    if (v.rx === '2') t.is(c['rx_copied'], 2, 'the GSO frames were read from the socket, their tags reported in the ring frame');
    if (v.rx) t.is(c['gso_passed'], 2, `the GSO frames crossed whole, segmented by the switch: ${JSON.stringify(c)}`);
    else t.is(c['gso_segments'], 5, `the GSO frames were segmented by the driver: ${JSON.stringify(c)}`);
  });
}

// A frame the kernel refuses as it sends it: a header asking for a checksum
// at byte 206 of a 60-byte frame (`__packet_snd_vnet_parse`: EINVAL). Through
// sendmmsg that message fails and the next call starts after it; through
// the tx ring (the in-line default) the kernel marks the ring frame
// TP_STATUS_WRONG_FORMAT and stops there, and the driver must take the frame
// back and go on, or nothing after it would ever leave.
const refusedVariants = [
  { name: 'tx ring', txRing: '1', tag: 'x1r', subnet: 238 },
  { name: 'VALE_TS_LINUX_IF_TX_RING=0', txRing: '0', tag: 'x1s', subnet: 239 },
] as const;

for (const v of refusedVariants) {
  suite(`packet, in-line, ${v.name}: a frame the kernel refuses (its header's checksum offset beyond the frame) is counted in drop_tx_error; the frames around it, small and large, leave in order`, async (t) => {
    t.timeout(120_000, 'hang guard');
    const { a, socket } = await nsAndSwitch(t, v);
    // the switch runs in this process: the driver reads the variable at attach
    process.env['VALE_TS_LINUX_IF_TX_RING'] = v.txRing;
    try {
      const r = await ctl(socket, '-a', `vale0:${a.host}`, '--backend', 'packet');
      t.is(r.code, 0, r.stderr);
    } finally {
      delete process.env['VALE_TS_LINUX_IF_TX_RING'];
    }
    const listing = (await ctl(socket)).stdout;
    t.is(listing.includes('tx ring'), v.txRing === '1', `the listing says whether the tx ring serves the port: ${listing}`);
    // a client with the interface's 10-byte header: the switch passes its headers on as they are
    const p = await open('vale0:x1p', { socket, vnetHdrLen: 10 });
    t.teardown(() => p.close());
    const cap = await capture(a);
    t.teardown(cap.kill);
    const dst = a.mac.replaceAll(':', '');
    const src = Buffer.from(SRC_P).toString('hex');
    const c0 = await driverCounters(socket, `vale0:${a.host}`);
    const plain = Buffer.alloc(10);
    const bad = Buffer.alloc(10);
    bad[0] = 1; // VIRTIO_NET_HDR_F_NEEDS_CSUM
    bad.writeUInt16LE(200, 6); // csum_start
    bad.writeUInt16LE(6, 8); // csum_offset
    // in one batch: ring-sized frames around the refused one, one too large
    // for a ring frame (sendmmsg) between them
    const frames = [exp(dst, src, 'FIRST', 60), exp(dst, src, 'REFUSED', 60), exp(dst, src, 'AFTER', 60), exp(dst, src, 'LARGE', 600), exp(dst, src, 'SMALL', 100), exp(dst, src, 'SENTINEL', 60)];
    const ring = p.txRings[0]!;
    frames.forEach((f, i) => {
      const s = ring.head;
      ring.bytes.set(Buffer.concat([i === 1 ? bad : plain, f]), ring.bufOffset(s));
      ring.setLen(s, 10 + f.length);
      ring.advance(1);
    });
    p.txsync();
    const got = await cap.frames;
    const want = frames.filter((_, i) => i !== 1).map((f) => f.toString('hex'));
    t.deepEqual(got, want, 'every frame but the refused one, in order');
    const c1 = await untilAnswer(
      () => driverCounters(socket, `vale0:${a.host}`),
      (c) => c['drop_tx_error']! > c0['drop_tx_error']!,
    );
    t.is(c1['drop_tx_error']! - c0['drop_tx_error']!, 1, `the refused frame is counted: ${JSON.stringify(c1)}`);
    t.is(c1['tx_frames']! - c0['tx_frames']!, 5, 'the five others were sent');
    if (v.txRing === '1') t.is(c1['tx_ring']! - c0['tx_ring']!, 4, 'the four small ones through the ring');
    else t.is(c1['tx_ring'], 0, 'none through the ring');
  });
}

// The MTU lowered after the attach: sendmmsg refuses a frame over it
// (EMSGSIZE, drop_tx_error), and the tx ring, which does not check it,
// must do the same once the driver has read the new MTU (within 10 ms of
// sending: it looks again as it sends), not pass it on as before.
suite('packet, in-line, tx ring: after the interface\'s MTU is lowered, a frame over it is refused and counted in drop_tx_error, as sendmmsg refuses it; smaller frames still go through the ring', async (t) => {
  t.timeout(120_000, 'hang guard');
  const { a, socket } = await nsAndSwitch(t, { tag: 'x1m', subnet: 240 });
  const r = await ctl(socket, '-a', `vale0:${a.host}`, '--backend', 'packet');
  t.is(r.code, 0, r.stderr);
  t.true((await ctl(socket)).stdout.includes('tx ring'), 'the tx ring serves the port');
  const p = await open('vale0:x1q', { socket });
  t.teardown(() => p.close());
  const dst = a.mac.replaceAll(':', '');
  const src = Buffer.from(SRC_P).toString('hex');
  const send = (f: Buffer): void => {
    const ring = p.txRings[0]!;
    ring.bytes.set(f, ring.bufOffset(ring.head));
    ring.setLen(ring.head, f.length);
    ring.advance(1);
    p.txsync();
  };
  // the switch's end of the veth (what the driver sends on): 100 bytes
  await must('ip', 'link', 'set', a.host, 'mtu', '100');
  const c0 = await driverCounters(socket, `vale0:${a.host}`);
  // 150-byte frames (ring-sized, 36 over the MTU) until one is refused: the
  // first few may still leave by the MTU read at the attach
  const c1 = await untilAnswer(
    async () => {
      send(exp(dst, src, 'OVER', 150));
      return driverCounters(socket, `vale0:${a.host}`);
    },
    (c) => c['drop_tx_error']! > c0['drop_tx_error']!,
  );
  // from now on every such frame is refused, and a small one still uses the ring
  send(exp(dst, src, 'OVER', 150));
  send(exp(dst, src, 'SMALL', 60));
  const c2 = await untilAnswer(
    () => driverCounters(socket, `vale0:${a.host}`),
    (c) => c['drop_tx_error']! + c['tx_frames']! >= c1['drop_tx_error']! + c1['tx_frames']! + 2,
  );
  t.is(c2['drop_tx_error']! - c1['drop_tx_error']!, 1, `the second frame over the MTU is refused: ${JSON.stringify(c2)}`);
  t.is(c2['tx_ring']! - c1['tx_ring']!, 1, 'the small one went through the ring');
});
