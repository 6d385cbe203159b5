/**
 * Multi-slot (NS_MOREFRAG) frames at the receive helpers: dispatch(),
 * receive() and batches() hand a chain up as ONE frame, as netmap's
 * nm_dispatch does; an unfinished chain waits in the ring; a chain the
 * sender never ends (or one over NETMAP_MAX_FRAGS slots) is dropped and
 * counted, never looped over or buffered without bound.
 */
import test from 'ava';
import os from 'node:os';
import path from 'node:path';
import { open, ValeServer, type Port } from '../../src/index.js';
import { NETMAP_MAX_FRAGS, NS_MOREFRAG, RING } from '../../src/netmap/abi.js';
import { sendChain } from '../fixtures/chains.js';

let uniq = 0;
const pname = (): string => `vale0:rc${process.pid}x${uniq++}`;

/** `len` bytes: a broadcast Ethernet header, then a pattern that tells every byte's position and `tag`. */
function frame(len: number, tag: number): Uint8Array {
  const f = new Uint8Array(len);
  f.fill(0xff, 0, 6);
  f.set([2, 0, 0, 0, 0, tag, 0x88, 0xb5], 6);
  for (let i = 14; i < len; i++) f[i] = (i * 7 + tag) & 0xff;
  return f;
}

/** `f` cut into pieces of these lengths. */
function cut(f: Uint8Array, lens: number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let at = 0;
  for (const l of lens) {
    out.push(f.subarray(at, at + l));
    at += l;
  }
  if (at !== f.length) throw new Error('cut: lengths do not add up');
  return out;
}

/** A pipe pair in this process: what `a` sends, `b` receives. */
async function pipePair(slots = 64): Promise<{ a: Port; b: Port }> {
  const base = pname();
  const a = await open(`${base}{1`, { slots });
  const b = await open(`${base}}1`);
  return { a, b };
}

/** Every frame dispatch() hands up (copied out), until none is left. */
function drain(p: Port): Buffer[] {
  const got: Buffer[] = [];
  p.rxsync();
  while (p.dispatch(Infinity, (f) => got.push(Buffer.from(f))) > 0) p.rxsync();
  return got;
}

test('dispatch() hands a chain from a vale-ts peer up as one frame, the switch having published it whole; max counts frames', async (t) => {
  const socket = path.join(os.tmpdir(), `rc-${process.pid}-${uniq++}.sock`);
  const srv = await ValeServer.listen({ socket });
  t.teardown(() => srv.close());
  const a = await open('vale0:a', { socket });
  const b = await open('vale0:b', { socket });
  t.teardown(() => {
    a.close();
    b.close();
  });
  const bs = a.bufSize;
  const big = frame(2 * bs + 904, 1);
  const small = frame(60, 2);
  sendChain(a, cut(big, [bs, bs, 904]));
  sendChain(a, [small]);
  const got: Buffer[] = [];
  while (got.length < 2) {
    const ev = await b.poll({ rx: true });
    t.false(ev.hup);
    b.dispatch(1, (f) => got.push(Buffer.from(f)));
  }
  t.is(got.length, 2, 'two frames, not four pieces');
  t.deepEqual(got[0], Buffer.from(big), 'the whole chain, as one frame');
  t.deepEqual(got[1], Buffer.from(small));
});

test('dispatch(): a chain of adjacent full buffers is a zero-copy view over them; any other chain is copied whole', async (t) => {
  const { a, b } = await pipePair();
  t.teardown(() => {
    a.close();
    b.close();
  });
  const bs = a.bufSize;
  // a's tx buffers are consecutive, and the pipe swaps them into b's rx ring in order
  const tr = a.txRings[0]!;
  t.is(tr.bufIdx(tr.next(tr.head)), tr.bufIdx(tr.head) + 1, 'the test needs adjacent buffers');
  const f1 = frame(2 * bs + 10, 3);
  const f2 = frame(700, 4);
  const f3 = frame(61, 5);
  sendChain(a, cut(f1, [bs, bs, 10]));
  sendChain(a, cut(f2, [100, 200, 400])); // slots not full: not one span in memory
  sendChain(a, [f3]);
  b.rxsync();
  const rr = b.rxRings[0]!;
  const firstBuf = rr.bufOffset(rr.head);
  const got: { bytes: Buffer; inRing: boolean; offset: number }[] = [];
  const n = b.dispatch(10, (f, ring) => {
    t.is(ring, 0);
    got.push({ bytes: Buffer.from(f), inRing: f.buffer === b.memory, offset: f.byteOffset });
  });
  t.is(n, 3, 'three frames');
  t.deepEqual(got.map((g) => g.bytes), [Buffer.from(f1), Buffer.from(f2), Buffer.from(f3)]);
  t.true(got[0]!.inRing && got[0]!.offset === firstBuf, 'the adjacent chain is handed up in place');
  t.false(got[1]!.inRing, 'the scattered chain is a copy');
  t.true(got[2]!.inRing);
  t.is(b.rxAvailable(), 0, 'every slot of the three frames released');
});

test('an unfinished chain waits in the ring (not handed up in part, not released); poll() does not wake for it', async (t) => {
  const { a, b } = await pipePair();
  t.teardown(() => {
    a.close();
    b.close();
  });
  const f = frame(900, 6);
  const [p1, p2, p3] = cut(f, [300, 300, 300]);
  sendChain(a, [frame(60, 7)]);
  sendChain(a, [p1!, p2!], true);
  b.rxsync();
  const got: Buffer[] = [];
  t.is(b.dispatch(10, (x) => got.push(Buffer.from(x))), 1, 'only the whole frame before it');
  t.deepEqual(got, [Buffer.from(frame(60, 7))]);
  t.is(b.rxAvailable(), 2, 'the two published slots of the chain stay in the ring');
  t.is(b.dispatch(10, () => t.fail('a part of a frame')), 0);
  const offs = new Uint32Array(8);
  const lens = new Uint16Array(8);
  t.is(b.receive(offs, lens), 0, 'receive() leaves it too');
  t.false((await b.poll({ rx: true, timeoutMs: 0 })).rx, 'no whole frame to read: poll() does not report rx');
  sendChain(a, [p3!]);
  const ev = await b.poll({ rx: true });
  t.true(ev.rx, 'the end of the chain wakes it');
  const rest: Buffer[] = [];
  t.is(b.dispatch(10, (x) => rest.push(Buffer.from(x))), 1);
  t.deepEqual(rest, [Buffer.from(f)]);
});

test('a chain over NETMAP_MAX_FRAGS slots is dropped and counted, its remaining slots skipped up to its end', async (t) => {
  const { a, b } = await pipePair(256);
  t.teardown(() => {
    a.close();
    b.close();
  });
  const slots = NETMAP_MAX_FRAGS + 6;
  sendChain(a, Array.from({ length: slots }, (_, i) => frame(60, i & 0xff)));
  sendChain(a, [frame(62, 0xaa)]);
  t.is(b.counters()['rxChainsTooLong'], 0);
  const got = drain(b);
  t.deepEqual(got, [Buffer.from(frame(62, 0xaa))], 'no piece of the long chain handed up as a frame');
  t.is(b.counters()['rxChainsTooLong'], 1);
  t.is(b.rxAvailable(), 0, 'all its slots released');
});

test('a chain that fills the ring without an end is dropped and counted (the sender could never finish it), and what follows it up to its end is skipped', async (t) => {
  const { a, b } = await pipePair(32);
  t.teardown(() => {
    a.close();
    b.close();
  });
  const tr = a.txRings[0]!;
  const room = tr.numSlots - 1;
  t.true(room < NETMAP_MAX_FRAGS, 'the test needs a ring smaller than the longest chain');
  sendChain(a, Array.from({ length: room }, (_, i) => frame(60, i)), true);
  b.rxsync();
  t.is(b.rxAvailable(), room, 'the ring is full');
  t.is(b.dispatch(Infinity, () => t.fail('a piece of a chain handed up')), 0);
  t.is(b.counters()['rxChainsTooLong'], 1);
  t.is(b.rxAvailable(), 0, 'released');
  // the sender goes on with the same chain, then ends it, then sends a frame
  b.rxsync();
  sendChain(a, [frame(60, 1), frame(60, 2)], true);
  sendChain(a, [frame(60, 3)]);
  sendChain(a, [frame(66, 0xbb)]);
  t.deepEqual(drain(b), [Buffer.from(frame(66, 0xbb))]);
  t.is(b.counters()['rxChainsTooLong'], 1);
});

test('a chain slot with a length over the buffer is dropped and counted as rxChainsInvalid', async (t) => {
  const { a, b } = await pipePair();
  t.teardown(() => {
    a.close();
    b.close();
  });
  sendChain(a, [frame(100, 1), frame(100, 2)]);
  sendChain(a, [frame(64, 9)]);
  b.rxsync();
  const rr = b.rxRings[0]!;
  rr.setLen(rr.head, b.bufSize + 1); // what a peer sharing the region could write
  t.deepEqual(drain(b), [Buffer.from(frame(64, 9))]);
  t.is(b.counters()['rxChainsInvalid'], 1);
});

test('receive(): a chain over adjacent full buffers is one entry; others come as fragment entries flagged NS_MOREFRAG, or without a flags array are dropped and counted', async (t) => {
  const { a, b } = await pipePair();
  t.teardown(() => {
    a.close();
    b.close();
  });
  const bs = a.bufSize;
  const f1 = frame(bs + 20, 1);
  const f2 = frame(500, 2);
  sendChain(a, cut(f1, [bs, 20]));
  sendChain(a, cut(f2, [200, 300]));
  sendChain(a, [frame(60, 3)]);
  b.rxsync();
  const bytes = new Uint8Array(b.memory);
  const offs = new Uint32Array(8);
  const lens = new Uint16Array(8);
  const flags = new Uint8Array(8);
  const n = b.receive(offs, lens, flags);
  t.is(n, 4, 'the adjacent chain as one entry, the other as two fragments, then the single frame');
  const at = (i: number): Buffer => Buffer.from(bytes.subarray(offs[i]!, offs[i]! + lens[i]!));
  t.deepEqual(at(0), Buffer.from(f1));
  t.is(flags[0], 0);
  t.deepEqual(Buffer.concat([at(1), at(2)]), Buffer.from(f2));
  t.deepEqual([flags[1], flags[2], flags[3]], [NS_MOREFRAG, 0, 0]);
  t.deepEqual(at(3), Buffer.from(frame(60, 3)));
  t.is(b.rxAvailable(), 0);
  // without a flags array a scattered chain cannot be handed up: counted
  b.rxsync();
  sendChain(a, cut(f2, [200, 300]));
  sendChain(a, cut(f1, [bs, 20]));
  b.rxsync();
  t.is(b.counters()['rxChainsNotReceived'], 0);
  const m = b.receive(offs, lens);
  t.is(m, 1, 'only the adjacent chain');
  t.deepEqual(at(0), Buffer.from(f1));
  t.is(b.counters()['rxChainsNotReceived'], 1);
  t.is(b.rxAvailable(), 0);
  // a chain never splits across calls: one that does not fit in what is left waits for the next call
  b.rxsync();
  sendChain(a, [frame(60, 4)]);
  sendChain(a, [frame(60, 4)]);
  sendChain(a, cut(f2, [100, 100, 100, 200]));
  b.rxsync();
  t.is(b.receive(offs.subarray(0, 5), lens, flags), 2, 'the single frames; three entries left cannot hold four fragments');
  t.is(b.rxAvailable(), 4, 'the chain waits');
  t.is(b.receive(offs, lens, flags), 4);
  t.deepEqual([...flags.subarray(0, 4)], [NS_MOREFRAG, NS_MOREFRAG, NS_MOREFRAG, 0]);
  t.deepEqual(Buffer.concat([0, 1, 2, 3].map(at)), Buffer.from(f2));
  // ... but one that arrays this size could never hold is dropped and counted, not left to block the ring
  b.rxsync();
  sendChain(a, cut(f2, [100, 100, 100, 200]));
  sendChain(a, [frame(60, 5)]);
  b.rxsync();
  t.is(b.receive(offs.subarray(0, 3), lens, flags), 1);
  t.deepEqual(at(0), Buffer.from(frame(60, 5)));
  t.is(b.counters()['rxChainsNotReceived'], 2);
});

test('batches() yields a chain as one frame and leaves an unfinished one for a later batch', async (t) => {
  const { a, b } = await pipePair();
  t.teardown(() => {
    a.close();
    b.close();
  });
  const bs = a.bufSize;
  const f1 = frame(bs + 300, 1);
  const f2 = frame(400, 2);
  sendChain(a, cut(f1, [bs, 300]));
  sendChain(a, [frame(60, 3)]);
  sendChain(a, cut(f2.subarray(0, 300), [150, 150]), true);
  const it = b.batches();
  const first = await it.next();
  t.false(first.done);
  t.deepEqual(first.value!.frames.map((f) => Buffer.from(f)), [Buffer.from(f1), Buffer.from(frame(60, 3))]);
  t.deepEqual(first.value!.rings, [0, 0]);
  const next = it.next();
  sendChain(a, [f2.subarray(300)]);
  const second = await next;
  t.deepEqual(second.value!.frames.map((f) => Buffer.from(f)), [Buffer.from(f2)]);
  await it.return(undefined);
});

test('a pipe peer that writes the rx ring\'s tail or head out of the ring (it shares the region) cannot make dispatch() or receive() loop; the next rxsync puts the ring right', async (t) => {
  const { a, b } = await pipePair();
  t.teardown(() => {
    a.close();
    b.close();
  });
  sendChain(a, [frame(60, 1)]);
  sendChain(a, [frame(61, 2)]);
  b.rxsync();
  const rr = b.rxRings[0]!;
  const u32 = new Uint32Array(b.memory);
  const N = rr.numSlots;
  // what the peer's process could store while this one reads the ring
  u32[(rr.offset + RING.tail) >>> 2] = N + 3;
  let calls = 0;
  const bounded = (): void => {
    if (++calls > 4 * N) throw new Error('dispatch() walked round the ring for ever');
  };
  t.is(b.dispatch(Infinity, bounded), 0, 'a tail outside the ring: nothing handed up');
  t.is(calls, 0);
  t.is(b.receive(new Uint32Array(8), new Uint16Array(8)), 0);
  b.rxsync();
  t.is(rr.tail, rr.next(rr.next(rr.head)), 'the sync put tail back');
  // a head moved out of the ring from under the walk
  const got: Buffer[] = [];
  const n = b.dispatch(Infinity, (f) => {
    bounded();
    got.push(Buffer.from(f));
    u32[(rr.offset + RING.head) >>> 2] = 1_000_000;
  });
  t.is(n, 2);
  t.deepEqual(got, [Buffer.from(frame(60, 1)), Buffer.from(frame(61, 2))]);
});
