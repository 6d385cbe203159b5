/**
 * The tools addon (netmap_tools.node) in process: pkt-gen's native loops
 * against regions written by someone hostile, and the pipe benchmark's
 * reference loop between two processes. No CLI here, so the sanitizer run
 * (test/asan/run.sh) covers this addon's code directly.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { buildFrame } from '../../tools/pkt-gen/frame.js';
import { verifyFrameChecksums } from '../fixtures/frame-check.js';
import { NS_MOREFRAG, RING, SLOT, SLOT_SIZE } from '../../src/netmap/abi.js';
import { CTR, RX_EVENT, PONG_DROP, PONG_DROP_KINDS, PONG_STATE, PONG_STATE_LEN, createRxCounter, createTxGen, newCounters, pktgenNative, type TxGenSpec } from '../../tools/pkt-gen/native.js';
import { pipeBench } from '../../tools/addon.js';
import { dumpSlots, readPingReplies } from '../../tools/pkt-gen/threads.js';
import { RttStats } from '../../tools/pkt-gen/report.js';
import { Ring, RingError } from '../../src/netmap/ring.js';
import { pipePath } from '../../src/backends/pipe.js';
import { parsePortName } from '../../src/netmap/name.js';

// ---------------------------------------------------------------------------
// The native loops against a region written by someone hostile

interface FakeRing {
  slots?: number;
  bufSize?: number;
  bufOfs?: number;
  head?: number;
  tail?: number;
}
/** A 64 KiB region with one ring at offset `at` (buffers after the slots unless told). */
function fakeRegion(r: FakeRing = {}, at = 0, mem = new ArrayBuffer(65536)): { mem: ArrayBuffer; dv: DataView } {
  const dv = new DataView(mem);
  const slots = r.slots ?? 8;
  dv.setBigInt64(at + RING.buf_ofs, BigInt(r.bufOfs ?? RING.slot + slots * SLOT_SIZE), true);
  dv.setUint32(at + RING.num_slots, slots, true);
  dv.setUint32(at + RING.nr_buf_size, r.bufSize ?? 256, true);
  dv.setUint32(at + RING.head, r.head ?? 0, true);
  dv.setUint32(at + RING.cur, r.head ?? 0, true);
  dv.setUint32(at + RING.tail, r.tail ?? 7, true);
  for (let i = 0; i < Math.min(slots, 64); i++) dv.setUint32(at + RING.slot + i * SLOT_SIZE + SLOT.buf_idx, 2 + i, true);
  return { mem, dv };
}
const plainSpec = (): TxGenSpec => ({
  af: 4,
  l3: 14,
  l4: 34,
  lenMin: 60,
  lenMax: 60,
  seq: true,
  seqStart: 0,
  src: { a0: 0x0a000001, a1: 0x0a000001, p0: 1234, p1: 1234, random: false },
  dst: { a0: 0x0a010001, a1: 0x0a010001, p0: 1234, p1: 1234, random: false },
  group: 7,
  dstGroup: 7,
  frags: 1,
  fragSize: 0,
  fragGroup: false,
  alwaysCopy: false,
  rubbish: false,
  udpCsum: true,
  seed: 1,
});
const frame60 = (): Uint8Array => buildFrame({ srcMac: '00:00:00:00:00:00', dstMac: 'ff:ff:ff:ff:ff:ff', srcIp: '10.0.0.1', dstIp: '10.1.0.1', srcPort: 1234, dstPort: 1234, len: 60 });

test('native tx fill: writes the template, lengths and sequence numbers, then moves head', (t) => {
  const { mem, dv } = fakeRegion();
  const ctr = newCounters();
  const gen = createTxGen(frame60(), plainSpec(), ctr);
  t.is(gen.txFill(mem, 0, 100), 7, 'min(space, max)');
  t.is(dv.getUint32(RING.head, true), 7);
  t.is(dv.getUint32(RING.cur, true), 7);
  t.is(ctr[CTR.PKTS], 7);
  t.is(ctr[CTR.BYTES], 420);
  t.is(ctr[CTR.EVENTS], 1);
  const bufOfs = RING.slot + 8 * SLOT_SIZE;
  for (let i = 0; i < 7; i++) {
    t.is(dv.getUint16(RING.slot + i * SLOT_SIZE + SLOT.len, true), 60);
    const f = new Uint8Array(mem, bufOfs + (2 + i) * 256, 60);
    t.true(verifyFrameChecksums(f));
    t.is(new DataView(mem).getUint32(bufOfs + (2 + i) * 256 + 42), i, 'sequence number');
  }
  t.is(gen.txFill(mem, 0, 100), 0, 'a full ring takes nothing');
});

test('native loops refuse hostile ring headers and slots, never touching memory outside the region', (t) => {
  const gen = (): ReturnType<typeof createTxGen> => createTxGen(frame60(), plainSpec(), newCounters());
  const fill = (r: FakeRing, at = 0): number => gen().txFill(fakeRegion(r).mem, at, 512);
  const { mem } = fakeRegion();
  for (const ofs of [65536, 65536 - 8, 3, -8, NaN, 2 ** 53]) t.throws(() => gen().txFill(mem, ofs, 1), { instanceOf: RangeError }, `ring offset ${ofs}`);
  t.throws(() => fill({ slots: 0xffffffff }), { message: /slots, which do not fit/ });
  t.throws(() => fill({ slots: 1 }), { message: /slots, which do not fit/ });
  t.throws(() => fill({ bufSize: 0 }), { message: /buffer size 0/ });
  t.throws(() => fill({ bufSize: 70000 }), { message: /buffer size 70000/ });
  t.throws(() => fill({ bufOfs: -1e12 }), { message: /buffers outside the region/ });
  t.throws(() => fill({ bufOfs: 1e12 }), { message: /buffers outside the region/ });
  t.throws(() => fill({ bufOfs: 65536 - 100 }), { message: /buffer index 2, outside/ }, 'buffers past the end');
  t.throws(() => fill({ head: 8 }), { message: /ring head 8 is outside the ring/ });
  t.throws(() => fill({ tail: 1000 }), { message: /ring tail 1000 is outside the ring/ });
  t.throws(() => fill({ bufSize: 32 }), { message: /does not fit the ring's 32-byte buffers/ });
  t.throws(() => gen().txFill(new Uint8Array(64) as unknown as ArrayBuffer, 0, 1), { instanceOf: TypeError });
  // a bad buffer index in slot 3: slots 0..2 are published, then an error names the slot
  const bad = fakeRegion();
  bad.dv.setUint32(RING.slot + 3 * SLOT_SIZE + SLOT.buf_idx, 1e9, true);
  const ctr = newCounters();
  t.throws(() => createTxGen(frame60(), plainSpec(), ctr).txFill(bad.mem, 0, 512), { message: /tx slot 3 has buffer index 1000000000/ });
  t.is(bad.dv.getUint32(RING.head, true), 3);
  t.is(ctr[CTR.PKTS], 3);

  // rx: garbage indices and lengths are counted, never read through
  const rxr = fakeRegion({ tail: 6 });
  for (let i = 0; i < 6; i++) {
    rxr.dv.setUint32(RING.slot + i * SLOT_SIZE + SLOT.buf_idx, i % 2 ? 0xffffffff : 1, true);
    rxr.dv.setUint16(RING.slot + i * SLOT_SIZE + SLOT.len, 0xffff, true);
  }
  const rctr = newCounters();
  t.is(createRxCounter(rctr, { seq: true, events: new Uint32Array(25), rings: 4 }).rxCount(rxr.mem, 0, 512, 3), 6);
  t.is(rxr.dv.getUint32(RING.head, true), 6);
  t.is(rctr[CTR.BYTES], 6 * 0xffff);
  t.throws(() => createRxCounter(newCounters()).rxCount(fakeRegion({ head: 9 }).mem, 0, 512), { message: /ring head 9/ });

  // pong: rx ring at 0, tx ring at 16384 in one region; bad slots are dropped
  const pm = fakeRegion({ tail: 4 }).mem;
  const pdv = new DataView(pm);
  fakeRegion({ tail: 7, bufOfs: 1024 }, 16384, pm);
  pdv.setUint16(RING.slot + SLOT.len, 60, true);
  pdv.setUint16(RING.slot + SLOT_SIZE + SLOT.len, 60, true);
  pdv.setUint32(RING.slot + SLOT_SIZE + SLOT.buf_idx, 5000, true);
  pdv.setUint16(RING.slot + 2 * SLOT_SIZE + SLOT.len, 9000, true);
  pdv.setUint16(RING.slot + 3 * SLOT_SIZE + SLOT.len, 60, true);
  t.is(pktgenNative.pongEcho(pm, 0, 16384, 512), 2, 'slots 1 (bad index) and 2 (too long) dropped');
  t.is(pdv.getUint32(RING.head, true), 4, 'every rx slot consumed');
  t.is(pdv.getUint32(16384 + RING.head, true), 2);
});

// A forged frame with a group source MAC (here broadcast) becomes, once its
// MACs are swapped, a frame to that group: the switch floods it to every
// port, so two pongs echo it to each other for ever. Such a frame and every
// other one pong consumes without echoing are counted by reason.
test('pong: a frame from a group source MAC is not echoed; every frame not echoed is counted by reason', (t) => {
  const pm = fakeRegion({ tail: 5 }).mem;
  const pdv = new DataView(pm);
  fakeRegion({ tail: 2, bufOfs: 1024 }, 16384, pm); // tx: room for 2 frames (head 0, tail 2)
  const rxBuf = (i: number): number => RING.slot + 8 * SLOT_SIZE + (2 + i) * 256;
  const put = (i: number, dst: string, src: string, len = 60): void => {
    const f = buildFrame({ srcMac: src, dstMac: dst, srcIp: '10.0.0.1', dstIp: '10.1.0.1', srcPort: 1234, dstPort: 1234, len: 60 });
    new Uint8Array(pm, rxBuf(i), 60).set(f);
    pdv.setUint16(RING.slot + i * SLOT_SIZE + SLOT.len, len, true);
  };
  put(0, 'ff:ff:ff:ff:ff:ff', 'ff:ff:ff:ff:ff:ff'); // broadcast source: would flood back
  put(1, '02:00:00:00:00:01', '01:00:5e:00:00:01'); // multicast source
  put(2, 'ff:ff:ff:ff:ff:ff', '02:00:00:00:00:02'); // a ping: echoed
  put(3, 'ff:ff:ff:ff:ff:ff', '02:00:00:00:00:03', 13); // shorter than an Ethernet header
  put(4, 'ff:ff:ff:ff:ff:ff', '02:00:00:00:00:04'); // echoed: then the tx ring is full
  const drops = new Float64Array(PONG_DROP_KINDS);
  t.is(pktgenNative.pongEcho(pm, 0, 16384, 512, drops), 2);
  const txFrame = (i: number): Uint8Array => new Uint8Array(pm, 16384 + 1024 + (2 + i) * 256, 60);
  for (const i of [0, 1]) t.is(txFrame(i)[0]! & 1, 0, `echo ${i} goes to one station, not a group`);
  t.deepEqual([...txFrame(0).subarray(0, 12)], [2, 0, 0, 0, 0, 2, 255, 255, 255, 255, 255, 255], 'MACs swapped');
  t.deepEqual([...txFrame(1).subarray(0, 6)], [2, 0, 0, 0, 0, 4]);
  t.is(pdv.getUint32(RING.head, true), 5, 'every rx slot consumed');
  t.is(pdv.getUint32(16384 + RING.head, true), 2);
  t.deepEqual([...drops], [0, 1, 2], 'too long 0, bad slot 1, group source 2');
  t.is(drops[PONG_DROP.GROUP_SOURCE], 2);
  // one more frame with the tx ring full: it waits in the rx ring for room, nothing dropped
  pdv.setUint32(16384 + RING.tail, 2, true);
  pdv.setUint32(RING.tail, 6, true);
  put(5, 'ff:ff:ff:ff:ff:ff', '02:00:00:00:00:05');
  const state = new Uint32Array(PONG_STATE_LEN);
  t.is(pktgenNative.pongEcho(pm, 0, 16384, 512, drops, state), 0);
  t.is(pdv.getUint32(RING.head, true), 5, 'left in the rx ring');
  t.is(state[PONG_STATE.TX_NEED], 1, 'waiting for one tx slot');
  t.deepEqual([...drops], [0, 1, 2]);
});

// A frame longer than a port's buffers reaches it as a chain of slots,
// NS_MOREFRAG on all but the last (the switch splits it so). pong echoed
// each slot as a frame of its own: a 3-slot ping got three answers, the
// first cut short, the others headed by payload bytes taken for MACs.
// Now the chain is echoed as one chain, published whole or not at all.
const MF = NS_MOREFRAG;
/** rx ring at 0 and tx ring at 16384 of one region (8 slots of 256-byte buffers each). */
function pongRegion(rx: FakeRing, tx: FakeRing): { pm: ArrayBuffer; pdv: DataView; rxBuf: (i: number) => Uint8Array; txBuf: (i: number) => Uint8Array } {
  const pm = fakeRegion(rx).mem;
  fakeRegion({ bufOfs: 1024, ...tx }, 16384, pm);
  const rxBuf = (i: number): Uint8Array => new Uint8Array(pm, RING.slot + 8 * SLOT_SIZE + (2 + i) * 256, 256);
  const txBuf = (i: number): Uint8Array => new Uint8Array(pm, 16384 + 1024 + (2 + i) * 256, 256);
  return { pm, pdv: new DataView(pm), rxBuf, txBuf };
}
const setSlot = (dv: DataView, at: number, i: number, len: number, flags: number): void => {
  dv.setUint16(at + RING.slot + i * SLOT_SIZE + SLOT.len, len, true);
  dv.setUint16(at + RING.slot + i * SLOT_SIZE + SLOT.flags, flags, true);
};
const slotOf = (dv: DataView, at: number, i: number): [number, number] => [
  dv.getUint16(at + RING.slot + i * SLOT_SIZE + SLOT.len, true),
  dv.getUint16(at + RING.slot + i * SLOT_SIZE + SLOT.flags, true),
];

test('pong: a frame spread over several slots is echoed as one chain, whole or not at all', (t) => {
  const { pm, pdv, rxBuf, txBuf } = pongRegion({ tail: 4 }, { tail: 7 });
  const ping = buildFrame({ srcMac: '02:00:00:00:00:01', dstMac: '02:00:00:00:00:02', srcIp: '10.0.0.1', dstIp: '10.0.0.2', srcPort: 9, dstPort: 9, len: 612 });
  // slots 0..2: one 612-byte frame in 256 + 256 + 100 bytes; slot 3: a 60-byte frame
  for (const [i, from, len, fl] of [[0, 0, 256, MF], [1, 256, 256, MF], [2, 512, 100, 0]] as const) {
    rxBuf(i).set(ping.subarray(from, from + len));
    setSlot(pdv, 0, i, len, fl);
  }
  rxBuf(3).set(ping.subarray(0, 60));
  setSlot(pdv, 0, 3, 60, 0);
  const drops = new Float64Array(PONG_DROP_KINDS);
  const state = new Uint32Array(PONG_STATE_LEN);
  t.is(pktgenNative.pongEcho(pm, 0, 16384, 512, drops, state), 2, 'two frames echoed');
  t.is(pdv.getUint32(16384 + RING.head, true), 4, 'four tx slots published');
  t.deepEqual([0, 1, 2, 3].map((i) => slotOf(pdv, 16384, i)), [[256, MF], [256, MF], [100, 0], [60, 0]], 'the same chain: lengths and NS_MOREFRAG');
  t.deepEqual([...txBuf(0).subarray(0, 12)], [2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2], 'MACs swapped in the first slot');
  t.deepEqual([...txBuf(0).subarray(26, 34)], [10, 0, 0, 2, 10, 0, 0, 1], 'IPv4 addresses swapped');
  t.deepEqual([...txBuf(1)], [...ping.subarray(256, 512)], 'the second slot as it came');
  t.deepEqual([...txBuf(2).subarray(0, 100)], [...ping.subarray(512, 612)]);
  t.deepEqual([...drops], [0, 0, 0]);

  // a 3-slot chain with room for 2: it waits in the rx ring, nothing of it is sent
  for (const [i, fl] of [[4, MF], [5, MF], [6, 0]] as const) {
    rxBuf(i).set(ping.subarray(0, 256));
    setSlot(pdv, 0, i, 256, fl);
  }
  pdv.setUint32(RING.tail, 7, true);
  pdv.setUint32(16384 + RING.tail, 6, true); // tx head 4, tail 6: 2 slots free
  t.is(pktgenNative.pongEcho(pm, 0, 16384, 512, drops, state), 0);
  t.is(pdv.getUint32(RING.head, true), 4, 'the chain stays in the rx ring');
  t.is(pdv.getUint32(16384 + RING.head, true), 4, 'no slot of it sent');
  t.is(state[PONG_STATE.TX_NEED], 3, 'it waits for 3 tx slots');
  pdv.setUint32(16384 + RING.tail, 0, true); // 4 free
  t.is(pktgenNative.pongEcho(pm, 0, 16384, 512, drops, state), 1);
  t.is(state[PONG_STATE.TX_NEED], 0);
  t.deepEqual([4, 5, 6].map((i) => slotOf(pdv, 16384, i)), [[256, MF], [256, MF], [256, 0]]);
  t.is(pdv.getUint32(16384 + RING.head, true), 7);

  // a chain whose last slot has not arrived: held, not echoed in parts
  setSlot(pdv, 0, 7, 256, MF);
  pdv.setUint32(RING.tail, 0, true);
  t.is(pktgenNative.pongEcho(pm, 0, 16384, 512, drops, state), 0);
  t.is(pdv.getUint32(RING.head, true), 7, 'held in the rx ring');
  t.is(state[PONG_STATE.RX_HELD], 1);
  t.is(pdv.getUint32(16384 + RING.head, true), 7, 'nothing sent');
  t.deepEqual([...drops], [0, 0, 0], 'nothing dropped');
});

test('pong: a chain that can never be echoed whole is counted and skipped to its end, across calls', (t) => {
  // seven slots with NS_MOREFRAG fill the 8-slot rx ring: its end cannot come before they go
  const { pm, pdv, rxBuf } = pongRegion({ tail: 7 }, { tail: 7 });
  const ping = buildFrame({ srcMac: '02:00:00:00:00:01', dstMac: '02:00:00:00:00:02', srcIp: '10.0.0.1', dstIp: '10.0.0.2', srcPort: 9, dstPort: 9, len: 60 });
  for (let i = 0; i < 7; i++) {
    rxBuf(i).set(ping);
    setSlot(pdv, 0, i, 60, MF);
  }
  const drops = new Float64Array(PONG_DROP_KINDS);
  const state = new Uint32Array(PONG_STATE_LEN);
  t.is(pktgenNative.pongEcho(pm, 0, 16384, 512, drops, state), 0);
  t.is(pdv.getUint32(RING.head, true), 7, 'released');
  t.is(pdv.getUint32(16384 + RING.head, true), 0, 'nothing of it sent');
  t.is(drops[PONG_DROP.TOO_LONG], 1);
  t.is(state[PONG_STATE.SKIPPING], 1);
  // its last slot, then a frame: the slot is skipped, the frame echoed
  rxBuf(7).set(ping);
  setSlot(pdv, 0, 7, 60, 0);
  rxBuf(0).set(ping);
  setSlot(pdv, 0, 0, 60, 0);
  pdv.setUint32(RING.tail, 1, true);
  t.is(pktgenNative.pongEcho(pm, 0, 16384, 512, drops, state), 1);
  t.is(pdv.getUint32(16384 + RING.head, true), 1, 'one frame sent');
  t.is(state[PONG_STATE.SKIPPING], 0);
  t.deepEqual([...drops], [1, 0, 0]);

  // a chain longer than the tx ring (4 slots: 3 usable) can never be sent whole
  const s = pongRegion({ tail: 5 }, { slots: 4, tail: 3 });
  for (let i = 0; i < 5; i++) setSlot(s.pdv, 0, i, 60, i < 3 ? MF : 0);
  s.rxBuf(0).set(ping);
  s.rxBuf(4).set(ping);
  const d2 = new Float64Array(PONG_DROP_KINDS);
  t.is(pktgenNative.pongEcho(s.pm, 0, 16384, 512, d2, new Uint32Array(PONG_STATE_LEN)), 1, 'the frame after it is echoed');
  t.deepEqual([...d2], [1, 0, 0]);
  t.is(s.pdv.getUint32(RING.head, true), 5);
});

// rxseq over several rx rings: txseq -F 3 chains of 3 slots (NS_MOREFRAG on
// the first two) reach ring 0 and ring 1. A batch limit stops ring 0 after
// one slot of its second chain; ring 1 is counted next. A chain never spans
// rings, so ring 1's slots must not be counted into ring 0's open chain:
// with one counter for all rings they were, giving false "Received packets
// with 4 frags, expected 3" warnings and FRAG_ERRORS.
test('rxseq: a chain cut by the batch limit on one ring is not continued by the next ring\'s slots', (t) => {
  const { pm, pdv } = pongRegion({ tail: 6 }, { tail: 6 });
  for (const at of [0, 16384]) for (let i = 0; i < 6; i++) setSlot(pdv, at, i, 60, i % 3 === 2 ? 0 : MF);
  const ctr = newCounters();
  const events = new Uint32Array(25);
  const rx = createRxCounter(ctr, { seq: true, events, rings: 2 });
  t.is(rx.rxCount(pm, 0, 4, 0), 4, 'ring 0: one chain and one slot of the next (rxseq counts slots)');
  t.is(pdv.getUint32(RING.head, true), 4);
  t.is(rx.rxCount(pm, 16384, 512, 1), 6, 'ring 1: two whole chains');
  t.is(events[0], 0, 'no fragment event for ring 1');
  t.is(rx.rxCount(pm, 0, 512, 0), 2, 'ring 0: the rest of its chain');
  t.is(events[0], 0, 'no fragment event for the end of ring 0\'s chain');
  t.is(ctr[CTR.FRAG_ERRORS], 0);
  t.is(ctr[CTR.PKTS], 12);
  // a real change of fragment count is still reported, per ring as a chain ends
  for (let i = 0; i < 2; i++) setSlot(pdv, 0, 6 + i, 60, i === 0 ? MF : 0);
  pdv.setUint32(RING.tail, 0, true);
  t.is(rx.rxCount(pm, 0, 512, 0), 2);
  t.deepEqual([...events.subarray(0, 4)], [1, RX_EVENT.FRAGS, 3, 2]);
  t.is(ctr[CTR.FRAG_ERRORS], 1);
});

// A kernel port may have more than 64 rx rings: each keeps its own sequence
// and chain state. With state for 64 rings, rings 63 and up shared one slot:
// two interleaved in-order streams read as gaps and reorderings.
test('rxseq: every rx ring keeps its own sequence and chain state, past 64 rings too', (t) => {
  const { pm, pdv, rxBuf, txBuf } = pongRegion({ tail: 6 }, { tail: 6 });
  const put = (buf: Uint8Array, seq: number): void => {
    buf.set([0x08, 0x00], 12);
    new DataView(buf.buffer, buf.byteOffset).setUint32(42, seq);
  };
  // ring 63 at 0 carries 0..5, ring 64 at 16384 carries 100..105
  for (let i = 0; i < 6; i++) {
    setSlot(pdv, 0, i, 60, 0);
    put(rxBuf(i), i);
    setSlot(pdv, 16384, i, 60, 0);
    put(txBuf(i), 100 + i);
  }
  const ctr = newCounters();
  const events = new Uint32Array(25);
  const rx = createRxCounter(ctr, { seq: true, events, rings: 70 });
  t.is(rx.rxCount(pm, 0, 3, 63), 3, 'ring 63: 0..2');
  t.is(rx.rxCount(pm, 16384, 512, 64), 6, 'ring 64: 100..105');
  t.is(events[0], 0, 'ring 64 starts its own sequence');
  t.is(rx.rxCount(pm, 0, 512, 63), 3, 'ring 63: 3..5');
  t.is(events[0], 0, 'ring 63 goes on from 3');
  t.is(ctr[CTR.GAPS] + ctr[CTR.OUT_OF_ORDER], 0);
  // a chain cut by the batch limit on ring 69 is not continued by ring 68's slots
  pdv.setUint32(RING.head, 0, true);
  pdv.setUint32(16384 + RING.head, 0, true);
  for (const at of [0, 16384]) for (let i = 0; i < 6; i++) setSlot(pdv, at, i, 60, i % 3 === 2 ? 0 : MF);
  const ctr2 = newCounters();
  const rx2 = createRxCounter(ctr2, { seq: true, events, rings: 70 });
  t.is(rx2.rxCount(pm, 0, 4, 69), 4);
  t.is(rx2.rxCount(pm, 16384, 512, 68), 6);
  t.is(rx2.rxCount(pm, 0, 512, 69), 2);
  t.is(ctr2[CTR.FRAG_ERRORS], 0);
  // a ring the counter was not made for is refused, not folded onto another
  t.throws(() => rx.rxCount(pm, 0, 512, 70), { instanceOf: RangeError, message: /ring 70 .* 70 rx rings/ });
  t.throws(() => createRxCounter(newCounters(), { rings: 0 }), { instanceOf: RangeError, message: /rings must be 1\.\.65536/ });
});

// The rx counter's virtio-net header length sized a 32-bit check
// (len >= hdrLen + 14) that wrapped for a huge value: a 60-byte slot
// passed it and the sequence number was read ~4 GiB past the buffer.
test('rxseq: a virtio-net header length no slot can hold is refused, not read past', (t) => {
  for (const hdrLen of [0xfffffff5, 65536]) {
    t.throws(() => createRxCounter(newCounters(), { seq: true, hdrLen }), { instanceOf: RangeError, message: /hdrLen must be 0\.\.65535/ }, `hdrLen ${hdrLen}`);
  }
  const { mem, dv } = fakeRegion({ tail: 1 });
  dv.setUint16(RING.slot + SLOT.len, 60, true);
  const ctr = newCounters();
  t.is(createRxCounter(ctr, { seq: true, hdrLen: 65535 }).rxCount(mem, 0, 8), 1, 'the largest accepted: the slot is counted, its payload not read');
  t.is(ctr[CTR.BYTES], 60);
});

// ---------------------------------------------------------------------------
// ping's reply loop (TypeScript) against a ring written by someone hostile:
// a pipe peer maps the whole region, this ring's head and tail included.

/** `r`'s field `name` read from the region, failing the test once it was read `limit` times (an endless loop). */
function countReads(r: Ring, dv: DataView, name: 'head' | 'tail', ofs: number, limit = 1000): void {
  let reads = 0;
  Object.defineProperty(r, name, {
    get: () => {
      if (++reads > limit) throw new Error(`${name} read ${limit} times: an endless loop`);
      return dv.getUint32(ofs, true);
    },
    set: (v: number) => dv.setUint32(ofs, v, true),
  });
}

test("ping's reply loop: a head or tail out of range ends it with an error, not an endless loop", (t) => {
  for (const [field, ofs] of [['tail', RING.tail], ['head', RING.head]] as const) {
    const { mem, dv } = fakeRegion({ tail: 3 });
    const r = new Ring(mem, 0, 'rx', 0, () => undefined);
    // written by the peer after ping's rxsync set it right
    dv.setUint32(ofs, 0xfffffff0, true);
    countReads(r, dv, 'head', RING.head);
    countReads(r, dv, 'tail', RING.tail);
    const stats = new RttStats();
    t.throws(() => readPingReplies(r, dv, 42, stats, { more: false }), { instanceOf: RingError, message: new RegExp(`${field} 4294967280 .*outside the ring`) }, field);
    t.is(stats.count, 0);
  }
});

test("ping's reply loop: only frames a ping stamped are timed, the others counted", (t) => {
  const { mem, dv } = fakeRegion({ tail: 6 });
  const r = new Ring(mem, 0, 'rx', 0, () => undefined);
  const buf = (i: number): number => RING.slot + 8 * SLOT_SIZE + (2 + i) * 256;
  const now = Number(process.hrtime.bigint()) - 1e6; // CLOCK_MONOTONIC, as ping stamps: 1 ms ago
  const sec = Math.floor(now / 1e9);
  const stamp = (i: number, s: number, ns: number, len = 60): void => {
    dv.setUint32(buf(i) + 46, s, true);
    dv.setUint32(buf(i) + 50, ns, true);
    dv.setUint16(RING.slot + i * SLOT_SIZE + SLOT.len, len, true);
  };
  stamp(0, sec, now - sec * 1e9); // a reply
  stamp(1, sec + 1000, 0); // stamped in the future
  stamp(2, sec, 0xffffffff); // nanoseconds past 1e9
  stamp(3, sec, now - sec * 1e9, 20); // too short for a stamp
  stamp(4, sec, now - sec * 1e9, 9000); // longer than its buffer
  stamp(5, sec, now - sec * 1e9);
  dv.setUint32(RING.slot + 5 * SLOT_SIZE + SLOT.buf_idx, 1e9, true); // no buffer
  const stats = new RttStats();
  const notReplies = readPingReplies(r, dv, 42, stats, { more: false });
  t.is(stats.count, 1, 'only the reply timed');
  t.is(notReplies, 5, 'the others counted');
  t.true(stats.min >= 1e6 && stats.min < 60e9, `RTT ${stats.min} ns`);
  t.is(r.head, 6, 'every slot released');
  t.is(r.cur, 6);
});

// A reply longer than ping's buffers comes as a chain of slots; ping timed
// every slot as a reply, so the zeros of the later slots read as a stamp of
// 0: a "round trip" as long as the machine's uptime. Now a frame is timed
// once, by its first slot, also when its slots span two reads.
test("ping's reply loop: a reply spread over several slots is timed once, by its first slot", (t) => {
  const { mem, dv } = fakeRegion({ tail: 4 });
  const r = new Ring(mem, 0, 'rx', 0, () => undefined);
  const buf = (i: number): number => RING.slot + 8 * SLOT_SIZE + (2 + i) * 256;
  const now = Number(process.hrtime.bigint()) - 1e6;
  const sec = Math.floor(now / 1e9);
  const slot = (i: number, len: number, flags: number, stamped: boolean): void => {
    if (stamped) {
      dv.setUint32(buf(i) + 46, sec, true);
      dv.setUint32(buf(i) + 50, now - sec * 1e9, true);
    }
    dv.setUint16(RING.slot + i * SLOT_SIZE + SLOT.len, len, true);
    dv.setUint16(RING.slot + i * SLOT_SIZE + SLOT.flags, flags, true);
  };
  slot(0, 256, NS_MOREFRAG, true);
  slot(1, 256, NS_MOREFRAG, false);
  slot(2, 100, 0, false);
  slot(3, 256, NS_MOREFRAG, true); // the next reply: its second slot comes later
  const stats = new RttStats();
  const chain = { more: false };
  t.is(readPingReplies(r, dv, 42, stats, chain), 0, 'no slot counted as a frame that was no reply');
  t.is(stats.count, 2, 'two replies timed');
  t.is(r.head, 4);
  slot(4, 100, 0, false);
  dv.setUint32(RING.tail, 5, true);
  t.is(readPingReplies(r, dv, 42, stats, chain), 0);
  t.is(stats.count, 2, 'the rest of a reply is not timed');
  t.true(stats.mean < 60e9, `mean RTT ${stats.mean} ns`);
});

// -X prints the slots a batch took, from the head before it to the head
// after, read back from the ring: where the peer wrote that out of range,
// the walk never reached it.
test('-X dump: a head written out of range after the batch ends it with an error, not an endless walk', (t) => {
  const { mem } = fakeRegion();
  const r = new Ring(mem, 0, 'rx', 0, () => undefined);
  const next = r.next.bind(r);
  let steps = 0;
  Object.defineProperty(r, 'next', {
    value: (i: number): number => {
      if (++steps > 1000) throw new Error('1000 slots walked: an endless walk');
      return next(i);
    },
  });
  t.throws(() => dumpSlots(r, 0, 0xfffffff0), { instanceOf: RingError, message: /head 4294967280 outside the ring/ });
  t.is(steps, 0);
});

test('pipe benchmark reference loop: every frame crosses between two processes, in order, intact', async (t) => {
  const name = `vale0:pb${process.pid}`;
  const region = pipePath(parsePortName(`${name}{0`));
  const addon = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'tools', 'addon.js');
  // the sender in a child: each loop blocks its thread until done
  const code = `const { pipeBench } = await import(${JSON.stringify(addon)});
    const r = pipeBench.pipeBenchLoop(${JSON.stringify(region)}, 0, { slots: 256 }, 'pb', 'tx', 200000, 60, 64);
    process.stdout.write(JSON.stringify(r));`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  const rx = pipeBench.pipeBenchLoop(region, 1, { slots: 256 }, 'pb', 'rx', 200000, 60, 64);
  t.is(await exited, 0);
  const tx = JSON.parse(out) as { frames: number };
  t.is(tx.frames, 200000);
  t.is(rx.frames, 200000);
  t.is(rx.errors, 0, 'every sequence number and length as sent');
});
