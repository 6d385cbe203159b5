/**
 * A slot's len is 16 bits, but a port may have 64 KiB buffers: a driver
 * that fills one slot with a whole buffer (65536 bytes) publishes a slot
 * of length 0 (and the frame is lost with no driver counter). A frame of
 * 65536 bytes from a netdev peer into such a port is counted as too long
 * (the switch carries at most 65535, SWITCH_MAX_FRAME); 65535 passes.
 */
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { open, ValeClient, ValeServer, type Port } from '../../src/index.js';
import { makeNamespaces, must } from '../fixtures/linux-if-netns.js';
import { untilAnswer } from '../fixtures/wait.js';
import { NS_MOREFRAG } from '../../src/netmap/abi.js';
import { driverCounters as counters, tagFrame } from '../fixtures/netdev-frames.js';

/** A frame whose bytes past the header are i & 0xff, to check the whole frame arrives. */
const frame = (len: number, tag: number): Buffer => tagFrame(len, tag, true);

const BUF = 65536;
let uniq = 0;
const sock = (what: string): string => path.join(os.tmpdir(), `slotfill-x7-${process.pid}-${what}-${uniq++}.sock`);



interface Got {
  lens: number[];
  data: Buffer;
}

/** The next `n` frames (of ethertype 0x88b5, or empty) on the port's rx ring, each as its slots' lengths and bytes; fewer if none comes for 20 s. */
async function receive(port: Port, n: number): Promise<Got[]> {
  const rx = port.rxRings[0]!;
  const out: Got[] = [];
  let lens: number[] = [];
  let parts: Buffer[] = [];
  while (out.length < n) {
    port.rxsync();
    if (rx.empty()) {
      if (!(await port.poll({ rx: true, timeoutMs: 20_000 })).rx) break;
      continue;
    }
    while (!rx.empty() && out.length < n) {
      const s = rx.head;
      lens.push(rx.len(s));
      parts.push(Buffer.from(rx.frame(s)));
      const more = (rx.flags(s) & NS_MOREFRAG) !== 0;
      rx.advance(1);
      if (more) continue;
      const data = Buffer.concat(parts);
      // the test's ethertype only (not a namespace's IPv6 chatter)
      if (data.length === 0 || (data.length >= 14 && data.readUInt16BE(12) === 0x88b5)) out.push({ lens, data });
      lens = [];
      parts = [];
    }
  }
  port.rxsync();
  return out;
}

const describe = (g: Got[]): string => g.map((x) => `[${x.lens.join('+')}]`).join(' ');

test('stream: a 65536-byte frame into a port with 64 KiB buffers is counted as too long, not passed on as a slot of length 0', async (t) => {
  t.timeout(120_000);
  const socket = sock('ctl');
  const srv = await ValeServer.listen({ socket });
  t.teardown(() => srv.close());
  const vale = new ValeClient({ socket });
  const p = sock('stream');
  await srv.createPort('vale0:vm', { bufSize: BUF, conf: { txSlots: 16, rxSlots: 16 }, driver: { kind: 'stream', path: p } });
  const peer = await open('vale0:peer', { socket, slots: 16, bufSize: BUF });
  t.teardown(() => peer.close());
  const conn = net.connect(p);
  t.teardown(() => conn.destroy());
  await new Promise<void>((r, reject) => {
    conn.once('connect', () => r());
    conn.once('error', reject);
  });
  // QEMU's framing: a 4-byte big-endian length, then the frame. The switch
  // carries at most 65535 bytes (SWITCH_MAX_FRAME): 65536 is too long, as
  // is 69000 (within the stream's range, longer than a buffer); 65535 fits.
  const sent = [frame(65536, 1), frame(69000, 2), frame(65535, 3)];
  const wire = Buffer.concat(sent.flatMap((f) => [Buffer.from([f.length >>> 24, (f.length >>> 16) & 0xff, (f.length >>> 8) & 0xff, f.length & 0xff]), f]));
  conn.write(wire);
  const got = await receive(peer, 1);
  const c = await untilAnswer(() => counters(vale, 'vale0:vm'), (x) => x['inFrames']! + x['dropTooLong']! >= 3);
  t.is(got.length, 1, `frames ${describe(got)}; ${JSON.stringify(c)}`);
  t.deepEqual(got[0]!.lens, [65535], `the 65535-byte frame in one slot: ${describe(got)}`);
  t.true(got[0]!.data.equals(sent[2]!), 'the 65535-byte frame, whole');
  t.is(c['inFrames'], 1, JSON.stringify(c));
  t.is(c['dropTooLong'], 2, 'the 65536- and 69000-byte frames');
});

test('dgram: a 65536-byte datagram into a port with 64 KiB buffers is counted as too long, not passed on as a slot of length 0', async (t) => {
  t.timeout(120_000);
  if (spawnSync('python3', ['-c', 'import socket']).status !== 0) return t.fail('python3 is needed for the unix datagram peer');
  const socket = sock('ctl');
  const srv = await ValeServer.listen({ socket });
  t.teardown(() => srv.close());
  const vale = new ValeClient({ socket });
  const ours = sock('dgram-vale');
  const theirs = sock('dgram-qemu');
  t.teardown(() => rmSync(theirs, { force: true }));
  await srv.createPort('vale0:vm', { bufSize: BUF, conf: { txSlots: 16, rxSlots: 16 }, driver: { kind: 'dgram', path: ours, peer: theirs } });
  const peer = await open('vale0:peer', { socket, slots: 16, bufSize: BUF });
  t.teardown(() => peer.close());
  // one datagram per frame (QEMU's dgram netdev): 65536 bytes, then 65535
  const script = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
s.bind(sys.argv[1])
def frame(n, tag):
    return b'\\xff'*6 + bytes([2,0,0,0,0,tag]) + b'\\x88\\xb5' + bytes([tag]) + bytes(n - 15)
for f in (frame(65536, 1), frame(65535, 2)):
    s.sendto(f, sys.argv[2])
print('SENT', flush=True)
`;
  const env = { ...process.env };
  delete env['LD_PRELOAD']; // the ASan stage's: not for Python
  const py = spawn('python3', ['-c', script, theirs, ours], { stdio: ['ignore', 'pipe', 'inherit'], env });
  t.teardown(() => py.kill());
  const got = await receive(peer, 1);
  const c = await untilAnswer(() => counters(vale, 'vale0:vm'), (x) => x['inFrames']! + x['dropTooLong']! >= 2);
  t.is(got.length, 1, `frames ${describe(got)}; ${JSON.stringify(c)}`);
  t.deepEqual(got[0]!.lens, [65535], `the 65535-byte frame in one slot: ${describe(got)}`);
  t.is(got[0]!.data[14], 2);
  t.is(c['inFrames'], 1, JSON.stringify(c));
  t.is(c['dropTooLong'], 1, 'the 65536-byte datagram');
});

test('af-packet: a 65536-byte frame from the interface into a port with 64 KiB buffers is counted as too big, not passed on as a slot of length 0', async (t) => {
  t.timeout(120_000);
  if (spawnSync('python3', ['-c', 'import socket']).status !== 0) return t.fail('python3 is needed to send raw frames');
  const { ends, remove } = await makeNamespaces('sfx7', 1, 247);
  t.teardown(remove);
  const e = ends[0]!;
  const socket = sock('ctl');
  const srv = await ValeServer.listen({ socket });
  t.teardown(() => srv.close());
  const vale = new ValeClient({ socket });
  await must('ip', 'link', 'set', e.host, 'mtu', '65000');
  await srv.createPort(`vale0:${e.host}`, { bufSize: BUF, conf: { txSlots: 16, rxSlots: 16 }, driver: { kind: 'af-packet', ifname: e.host } });
  const peer = await open('vale0:peer', { socket, slots: 16, bufSize: BUF });
  t.teardown(() => peer.close());
  // veth takes up to 65535 + 14 bytes once its MTU is raised (after the
  // attach, which refuses an MTU whose frames overrun the buffers)
  await must('ip', 'link', 'set', e.host, 'mtu', '65535');
  await must('ip', '-n', e.ns, 'link', 'set', e.inner, 'mtu', '65535');
  const send =
    'import socket, sys\ns = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\ns.bind((sys.argv[1], 0))\n' +
    'for n, tag in ((65536, 1), (65535, 2)): s.send(bytes([0xff] * 6 + [2, 0, 0, 0, 0, 0x77, 0x88, 0xb5, tag]) + bytes(n - 15))\n';
  const sent = spawnSync('ip', ['netns', 'exec', e.ns, 'python3', '-c', send, e.inner], { encoding: 'utf8' });
  t.is(sent.status, 0, sent.stderr);
  const got = await receive(peer, 1);
  // (the driver thread took the 65536-byte frame before the one received)
  const c = await counters(vale, `vale0:${e.host}`);
  t.is(got.length, 1, `frames ${describe(got)}; ${JSON.stringify(c)}`);
  t.deepEqual(got[0]!.lens, [65535], `the 65535-byte frame in one slot: ${describe(got)}`);
  t.is(got[0]!.data[14], 2);
  t.is(c['drop_too_big'], 1, `the 65536-byte frame: ${JSON.stringify(c)}`);
});
