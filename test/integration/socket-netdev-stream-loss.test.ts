/**
 * A stream socket netdev loses no frame without a counter when its peer
 * goes away: the frames the peer sent before (read into the driver's
 * buffer while the switch had no room, or still in the socket) are
 * delivered after a write to it failed, and a frame the end of the stream
 * cuts short is counted (dropTruncated). The peer here is a plain socket
 * speaking QEMU's framing (4-byte big-endian length, then the frame).
 */
import test from 'ava';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { open, ValeClient, ValeServer } from '../../src/index.js';
import { untilAnswer } from '../fixtures/wait.js';

let uniq = 0;
const sock = (what: string): string => path.join(os.tmpdir(), `snl-${process.pid}-${what}-${uniq++}.sock`);

function frame(len: number, tag: number): Buffer {
  const f = Buffer.alloc(len);
  f.fill(0xff, 0, 6); // broadcast: the switch floods it to the other port
  Buffer.from([0x02, 0, 0, 0, 0, tag]).copy(f, 6);
  f.writeUInt16BE(0x88b5, 12); // local experimental ethertype
  f[14] = tag;
  return f;
}
const lenPrefix = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
};
const framed = (f: Buffer): Buffer => Buffer.concat([lenPrefix(f.length), f]);

const counters = async (vale: ValeClient, name: string): Promise<Record<string, number>> => {
  const [sw] = await vale.stats('vale0');
  return sw!.ports.find((p) => p.name === name)!.driver!.counters;
};

async function connected(p: string): Promise<net.Socket> {
  const conn = net.connect(p);
  await new Promise<void>((r, reject) => {
    conn.once('connect', () => r());
    conn.once('error', reject);
  });
  return conn;
}

test('stream: frames held for tx room are delivered after a write to the closed peer fails', async (t) => {
  t.timeout(60_000);
  // lossless with 64 tx slots, its receiver 64 slots not read yet: of the 300
  // frames the peer sends, those after the first ~128 wait in the driver (its
  // buffer, or the socket) for room (a stall bound beyond the test)
  const socket = sock('ctl');
  const srv = await ValeServer.listen({ socket, switchOptions: { stallMs: 3_600_000 } });
  t.teardown(() => srv.close());
  const vale = new ValeClient({ socket });
  const p = sock('stream');
  await srv.createPort('vale0:vm', { conf: { txSlots: 64 }, lossless: true, driver: { kind: 'stream', path: p } });
  const peer = await open('vale0:peer', { socket, slots: 64 });
  t.teardown(() => peer.close());
  const conn = await connected(p);
  t.teardown(() => conn.destroy());
  const frames: Buffer[] = [];
  for (let i = 0; i < 300; i++) frames.push(framed(frame(100, i & 0xff)));
  // all in the kernel before the close (the callback: flushed to the socket)
  await new Promise<void>((r, reject) => conn.write(Buffer.concat(frames), (e) => (e ? reject(e) : r())));
  await untilAnswer(() => counters(vale, 'vale0:vm'), (c) => c['inFrames']! >= 120);
  // The peer closes (QEMU exiting after a burst), then a frame comes for it:
  // the driver's write to it fails while it holds the rest of the burst.
  conn.destroy();
  peer.inject(frame(60, 0xee));
  peer.txsync();
  await untilAnswer(() => counters(vale, 'vale0:vm'), (c) => c['linkErrors']! >= 1);
  // The receiver reads. Everything the peer sent arrives, in order; the old
  // driver threw the held frames away with its buffer (the loop ends once
  // the driver has disconnected and delivered all it counted).
  const tags: number[] = [];
  let c: Record<string, number>;
  for (;;) {
    peer.rxsync();
    peer.dispatch(1024, (f) => {
      if (f.length >= 15 && f[12] === 0x88 && f[13] === 0xb5) tags.push(f[14]!);
    });
    peer.rxsync();
    c = await counters(vale, 'vale0:vm');
    if (tags.length >= 300 || (c['disconnects']! >= 1 && tags.length >= c['inFrames']!)) break;
  }
  c = await untilAnswer(() => counters(vale, 'vale0:vm'), (x) => x['disconnects'] === 1);
  t.is(tags.length, 300, `received ${tags.length} of 300; ${JSON.stringify(c)}`);
  t.deepEqual(tags, Array.from({ length: 300 }, (_, i) => i & 0xff));
  t.is(c['inFrames'], 300);
  t.is(c['linkErrors'], 1);
  t.is(c['dropLinkDown'], 1, 'the frame for the closed peer');
  t.is(c['outFrames'], 0);
  t.is(c['dropTruncated'], 0);
});

test('stream: a frame the end of the stream cuts short is counted, a too-long one it cuts is not counted twice', async (t) => {
  t.timeout(60_000);
  const socket = sock('ctl');
  const srv = await ValeServer.listen({ socket });
  t.teardown(() => srv.close());
  const vale = new ValeClient({ socket });
  const p = sock('stream');
  await vale.create('vale0:vm', {}, { driver: { kind: 'stream', path: p } });
  const peer = await open('vale0:peer', { socket });
  t.teardown(() => peer.close());
  const ends = async (bytes: Buffer, disconnects: number): Promise<Record<string, number>> => {
    const conn = await connected(p);
    t.teardown(() => conn.destroy());
    conn.end(bytes);
    return untilAnswer(() => counters(vale, 'vale0:vm'), (c) => c['disconnects'] === disconnects);
  };
  // two whole frames, then a length of 100 and 10 bytes of its frame
  let c = await ends(Buffer.concat([framed(frame(60, 1)), framed(frame(60, 2)), lenPrefix(100), frame(60, 3).subarray(0, 10)]), 1);
  t.is(c['inFrames'], 2);
  t.is(c['dropTruncated'], 1, JSON.stringify(c));
  // two bytes of a length prefix
  c = await ends(Buffer.concat([framed(frame(60, 4)), lenPrefix(100).subarray(0, 2)]), 2);
  t.is(c['inFrames'], 3);
  t.is(c['dropTruncated'], 2, JSON.stringify(c));
  // a too-long frame (the port's buffers are 2048) cut short: counted once, as too long
  c = await ends(Buffer.concat([lenPrefix(3000), Buffer.alloc(100)]), 3);
  t.is(c['dropTooLong'], 1);
  t.is(c['dropTruncated'], 2, JSON.stringify(c));
  t.is(c['dropBadLength'], 0);
  t.is(c['inFrames'], 3);
});
