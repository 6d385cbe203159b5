/**
 * virtio-net headers through the switch: ports declare a header length (0,
 * 10, 12) and the switch converts each copy between them. A header-carrying
 * sender's GSO frame reaches a header-less receiver as segments whose IPv4
 * and TCP checksums verify (checked here against RFC 1071, written here), a
 * receiver declaring the same length gets it untouched, one declaring 12
 * gets the 10 bytes plus num_buffers = 1, a header-less sender's frame gets
 * a zero header; the lookup decides on the frame after the header; counters
 * say what was done, and the conservation identity holds.
 */
import test from 'ava';
import os from 'node:os';
import path from 'node:path';
import { open, Switch, ValeServer, type Port } from '../../src/index.js';
import { conservationOf } from '../../src/vale/counters.js';
import { NS_MOREFRAG } from '../../src/netmap/abi.js';
import { recvFrames } from '../fixtures/chains.js';

const socket = path.join(os.tmpdir(), `vt-vnet-${process.pid}.sock`);
const MAC_H = [2, 0, 0, 0, 0, 0x11];
const MAC_P = [2, 0, 0, 0, 0, 0x22];

function sum16(b: Uint8Array, start = 0, end = b.length, init = 0): number {
  let s = init;
  for (let i = start; i < end; i += 2) s += (b[i]! << 8) | (i + 1 < end ? b[i + 1]! : 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

/** virtio_net_hdr (10 bytes, little-endian) */
function vnetHdr(o: { flags?: number; gsoType?: number; hdrLen?: number; gsoSize?: number; csumStart?: number; csumOffset?: number }): Buffer {
  const b = Buffer.alloc(10);
  b[0] = o.flags ?? 0;
  b[1] = o.gsoType ?? 0;
  b.writeUInt16LE(o.hdrLen ?? 0, 2);
  b.writeUInt16LE(o.gsoSize ?? 0, 4);
  b.writeUInt16LE(o.csumStart ?? 0, 6);
  b.writeUInt16LE(o.csumOffset ?? 0, 8);
  return b;
}

/** Broadcast TCP/IPv4 from MAC_H with `payload` bytes, the TCP checksum field holding the pseudo-header sum (as Linux leaves it for offload). */
function tcpFrame(payload: number): Buffer {
  const f = Buffer.alloc(54 + payload);
  f.fill(0xff, 0, 6);
  f.set(MAC_H, 6);
  f.writeUInt16BE(0x0800, 12);
  f[14] = 0x45;
  f.writeUInt16BE(40 + payload, 16);
  f.writeUInt16BE(777, 18);
  f[22] = 64;
  f[23] = 6;
  f.set([10, 0, 0, 1, 10, 0, 0, 2], 26);
  f.writeUInt16BE(sum16(f, 14, 34) ^ 0xffff, 24);
  f.writeUInt16BE(40000, 34);
  f.writeUInt16BE(5201, 36);
  f.writeUInt32BE(1000, 38);
  f[46] = 5 << 4;
  f[47] = 0x18;
  for (let i = 0; i < payload; i++) f[54 + i] = (i * 13 + 5) & 0xff;
  const len = 20 + payload;
  f.writeUInt16BE(sum16(Buffer.from([10, 0, 0, 1, 10, 0, 0, 2, 0, 6, len >> 8, len & 0xff])), 50);
  return f;
}

function tcpOk(f: Uint8Array): boolean {
  const len = f.length - 34;
  let s = sum16(f, 26, 34);
  s = sum16(Buffer.from([0, 6, len >> 8, len & 0xff]), 0, 4, s);
  return sum16(f, 34, f.length, s) === 0xffff;
}

/** One frame, over as many slots as it needs (NS_MOREFRAG on all but the last). */
function sendChain(p: Port, bytes: Uint8Array): void {
  const ring = p.txRings[0]!;
  const bs = p.bufSize;
  const slots = Math.ceil(bytes.length / bs);
  if (ring.space() < slots) throw new Error('tx ring full');
  for (let i = 0; i < slots; i++) {
    const s = ring.head;
    const part = bytes.subarray(i * bs, Math.min(bytes.length, (i + 1) * bs));
    ring.bytes.set(part, ring.bufOffset(s));
    ring.setLen(s, part.length);
    ring.setFlags(s, i + 1 < slots ? NS_MOREFRAG : 0);
    ring.advance(1);
  }
  p.txsync();
}

const sw = new Switch('vale0');
let srv: ValeServer;
let h: Port; // header 10
let q: Port; // header 10
let r: Port; // header 12
let p: Port; // no header
const idx = (name: string): number => sw.port(name)!.index;

test.before(async () => {
  srv = await ValeServer.listen({ socket, switches: [sw] });
  // h declares its header at registration (the vale-ts form of NETMAP_REQ_PORT_HDR_SET), the others through the Switch
  h = await open('vale0:h', { socket, vnetHdrLen: 10 });
  q = await open('vale0:q', { socket });
  r = await open('vale0:r', { socket });
  p = await open('vale0:p', { socket });
  sw.setVnetHdrLen(idx('vale0:q'), 10);
  sw.setVnetHdrLen(idx('vale0:r'), 12);
});

test.after.always(() => {
  for (const x of [h, q, r, p]) x?.close();
  srv?.close();
});

test.serial('a GSO frame with its header: segmented with valid checksums for the header-less port, untouched for the same length, 10 -> 12 for the other', async (t) => {
  const mss = 1000;
  const f = tcpFrame(4 * mss + 200);
  const hdr = vnetHdr({ flags: 1, gsoType: 1, hdrLen: 54, gsoSize: mss, csumStart: 34, csumOffset: 16 });
  const wire = Buffer.concat([hdr, f]); // 4264 bytes: a 3-slot chain
  sendChain(h, wire);
  const segs = await recvFrames(p, 5);
  segs.forEach((s, i) => {
    const last = i === 4;
    t.is(s.length, 54 + (last ? 200 : mss), `segment ${i} length`);
    t.deepEqual([...s.subarray(6, 12)], MAC_H);
    t.is(s.readUInt16BE(16), s.length - 14, `segment ${i} IP length`);
    t.is(sum16(s, 14, 34), 0xffff, `segment ${i} IPv4 header checksum`);
    t.true(tcpOk(s), `segment ${i} TCP checksum`);
    t.is(s.readUInt32BE(38), 1000 + i * mss, `segment ${i} sequence number`);
    t.deepEqual(s.subarray(54), f.subarray(54 + i * mss, 54 + i * mss + s.length - 54));
  });
  const [same] = await recvFrames(q, 1);
  t.deepEqual(same, wire, 'same header length: the frame as sent');
  const [longer] = await recvFrames(r, 1);
  t.is(longer!.length, wire.length + 2);
  t.deepEqual(longer!.subarray(0, 10), hdr);
  t.is(longer!.readUInt16LE(10), 1, 'num_buffers');
  t.deepEqual(longer!.subarray(12), f);
  const cp = sw.counters(idx('vale0:p'));
  t.is(cp['vnetSegmented'], 1);
  t.is(cp['vnetSegments'], 5);
  t.is(cp['txFrames'], 5);
  t.is(sw.counters(idx('vale0:q'))['vnetPassed'], 1);
  t.is(sw.counters(idx('vale0:h'))['rxFrames'], 1);
});

test.serial('a partial checksum is completed for the header-less port only; an impossible header is dropped there and counted', async (t) => {
  const f = tcpFrame(300);
  sendChain(h, Buffer.concat([vnetHdr({ flags: 1, csumStart: 34, csumOffset: 16 }), f]));
  const [done] = await recvFrames(p, 1);
  t.is(done!.length, f.length);
  t.true(tcpOk(done!));
  t.is(sw.counters(idx('vale0:p'))['vnetCsumCompleted'], 1);
  const [asSent] = await recvFrames(q, 1);
  t.deepEqual(asSent!.subarray(10), f, 'a header-aware port gets the partial checksum and its header');
  await recvFrames(r, 1);
  // csum_start beyond the frame: nothing the switch can do for p
  const bad = Buffer.concat([vnetHdr({ flags: 1, csumStart: 4000, csumOffset: 16 }), tcpFrame(10)]);
  sendChain(h, bad);
  const [passed] = await recvFrames(q, 1);
  t.deepEqual(passed, bad);
  await recvFrames(r, 1);
  t.is(sw.counters(idx('vale0:p'))['dropBadVnetHdr'], 1);
});

test.serial('a header-less frame gets a zero header; the lookup learned the sender from the bytes after the header', async (t) => {
  // from p to MAC_H, which the learning bridge saw behind h's headers above
  const f = Buffer.alloc(60);
  f.set(MAC_H, 0);
  f.set(MAC_P, 6);
  f.writeUInt16BE(0x0800, 12);
  f[20] = 0x5a;
  const before = { q: sw.counters(idx('vale0:q'))['txFrames']!, r: sw.counters(idx('vale0:r'))['txFrames']! };
  sendChain(p, f);
  const [got] = await recvFrames(h, 1);
  t.is(got!.length, 70);
  t.deepEqual(got!.subarray(0, 10), Buffer.alloc(10));
  t.deepEqual(got!.subarray(10), f);
  // delivered to h alone, in the round that delivered it to h
  t.is(sw.counters(idx('vale0:q'))['txFrames'], before.q);
  t.is(sw.counters(idx('vale0:r'))['txFrames'], before.r);
  // and every copy accounted for, segments counted once as their copy
  const c = conservationOf(sw.totals(), 0, 0);
  t.is(c.copies, c.delivered + c.dropped, JSON.stringify(c));
});

test.serial('header lengths other than 0, 10 and 12 are refused; a port in use keeps its length', async (t) => {
  t.is(sw.port('vale0:h')!.vnetHdrLen, 10);
  t.throws(() => sw.setVnetHdrLen(idx('vale0:p'), 11 as 10), { message: /must be 0, 10 or 12/ });
  t.is(sw.port('vale0:p')!.vnetHdrLen, 0);
  await t.throwsAsync(open('vale0:x', { socket, vnetHdrLen: 11 as 10 }), { message: /'vnetHdrLen' must be 0, 10 or 12/ });
  await t.throwsAsync(open('vale0:h', { socket, vnetHdrLen: 12 }), { message: /in use|busy/ });
});
