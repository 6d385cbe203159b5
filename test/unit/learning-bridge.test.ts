import test from 'ava';
import { DEST_DROP, DEST_FLOOD, DEST_SAME_PORT, LearningBridge } from '../../src/vale/learning-bridge.js';
import { ManualClock } from '../../src/vale/clock.js';
import { macToKey } from '../../src/vale/mac-table.js';

const BCAST = 'ff:ff:ff:ff:ff:ff';
const A = '02:00:00:00:00:0a';
const B = '02:00:00:00:00:0b';
const C = '02:00:00:00:00:0c';
const MCAST = '01:00:5e:00:00:01';
// Vendor-style addresses with high bits set, to catch 32-bit sign mistakes.
const HI1 = 'fc:fe:ff:ee:dd:cc';
const HI2 = '8c:8e:9f:80:81:82';

interface Frame {
  dst: string;
  src: string;
  len?: number;
}

/**
 * Lay frames out in a shared "region" at scattered, unaligned offsets, the way
 * slots point into a port's buffer pool, and run one batch.
 */
function batch(bridge: LearningBridge, srcPort: number, frames: Frame[]): number[] {
  if (frames.length > 601) throw new Error('too many frames for the test region');
  const region = new Uint8Array(64 * 1024).fill(0xa5);
  const offsets = new Uint32Array(frames.length);
  const lens = new Uint16Array(frames.length);
  const dests = new Int16Array(frames.length).fill(0x7777);
  frames.forEach((f, i) => {
    // Distinct, shuffled, unaligned slots (601 is prime: i -> i*263 mod 601 is one-to-one).
    const off = ((i * 263) % 601) * 100 + (i % 7) + 1;
    const len = f.len ?? 60;
    offsets[i] = off;
    lens[i] = len;
    const bytes = [...f.dst.split(':'), ...f.src.split(':')].map((x) => parseInt(x, 16));
    for (let b = 0; b < Math.min(len, 12); b++) region[off + b] = bytes[b]!;
    if (len >= 14) {
      region[off + 12] = 0x08;
      region[off + 13] = 0x00;
    }
  });
  bridge.lookupBatch(region, offsets, lens, frames.length, new Uint8Array(frames.length).fill(srcPort), dests);
  return [...dests];
}

test('unknown unicast floods; after one frame each way unicast goes to the learned port', (t) => {
  const br = new LearningBridge({ clock: new ManualClock() });
  t.deepEqual(batch(br, 0, [{ dst: B, src: A }]), [DEST_FLOOD]);
  t.deepEqual(batch(br, 1, [{ dst: A, src: B }]), [0]);
  t.deepEqual(batch(br, 0, [{ dst: B, src: A }]), [1]);
  t.deepEqual(batch(br, 2, [{ dst: A, src: C }, { dst: B, src: C }, { dst: C, src: C }]), [0, 1, DEST_SAME_PORT]);
  const a = macToKey(A);
  t.is(br.table.lookup(a.hi, a.lo, 0), 0);
  t.is(br.table.size, 3);
});

test('learning within one batch affects later frames of the same batch', (t) => {
  const br = new LearningBridge({ clock: new ManualClock() });
  t.deepEqual(batch(br, 3, [{ dst: A, src: B }, { dst: B, src: A }]), [DEST_FLOOD, DEST_SAME_PORT]);
});

test('broadcast and multicast destinations flood', (t) => {
  const br = new LearningBridge({ clock: new ManualClock() });
  batch(br, 1, [{ dst: BCAST, src: B }]);
  t.deepEqual(batch(br, 0, [{ dst: BCAST, src: A }, { dst: MCAST, src: A }, { dst: '33:33:00:00:00:01', src: A }]), [
    DEST_FLOOD,
    DEST_FLOOD,
    DEST_FLOOD,
  ]);
  t.deepEqual(batch(br, 0, [{ dst: B, src: A }]), [1]);
});

test('a multicast source is not learned', (t) => {
  const br = new LearningBridge({ clock: new ManualClock() });
  t.deepEqual(batch(br, 0, [{ dst: BCAST, src: MCAST }]), [DEST_FLOOD]);
  t.is(br.table.size, 0);
  t.deepEqual(batch(br, 1, [{ dst: MCAST, src: B }]), [DEST_FLOOD]);
  t.is(br.table.size, 1);
  // The group address with bit 0 cleared is a different unicast address: unknown.
  t.deepEqual(batch(br, 1, [{ dst: '00:00:5e:00:00:01', src: B }]), [DEST_FLOOD]);
});

test('runts are dropped and counted; their bytes are not read as a header', (t) => {
  const br = new LearningBridge({ clock: new ManualClock() });
  const got = batch(br, 0, [
    { dst: B, src: A, len: 0 },
    { dst: B, src: A, len: 13 },
    { dst: B, src: A, len: 14 },
  ]);
  t.deepEqual(got, [DEST_DROP, DEST_DROP, DEST_FLOOD]);
  t.is(br.counters.runts, 2);
  t.is(br.table.size, 1);
});

test('addresses with the high bit set (32-bit sign)', (t) => {
  const br = new LearningBridge({ clock: new ManualClock() });
  batch(br, 4, [{ dst: BCAST, src: HI1 }]);
  batch(br, 5, [{ dst: BCAST, src: HI2 }]);
  t.deepEqual(batch(br, 0, [{ dst: HI1, src: A }, { dst: HI2, src: A }]), [4, 5]);
  const k = macToKey(HI1);
  t.is(br.table.lookup(k.hi, k.lo, 0), 4);
  t.deepEqual([...br.table.entries()].map((e) => e.mac).sort(), [A, HI2, HI1].sort());
});

test('a host that moves is followed; repeated sources (last-source cache) learn correctly', (t) => {
  const br = new LearningBridge({ clock: new ManualClock() });
  batch(br, 1, [{ dst: BCAST, src: B }, { dst: BCAST, src: B }, { dst: BCAST, src: B }]);
  t.deepEqual(batch(br, 0, [{ dst: B, src: A }]), [1]);
  batch(br, 2, [{ dst: A, src: B }, { dst: A, src: B }]);
  t.deepEqual(batch(br, 0, [{ dst: B, src: A }]), [2]);
  t.is(br.table.counters.moved, 1);
  // Alternating sources inside one batch.
  batch(br, 3, [{ dst: A, src: B }, { dst: A, src: C }, { dst: A, src: B }, { dst: A, src: C }]);
  t.deepEqual(batch(br, 0, [{ dst: B, src: A }, { dst: C, src: A }]), [3, 3]);
});

test('aging turns a learned unicast back into a flood; repeated sources keep refreshing', (t) => {
  const clock = new ManualClock(10);
  const br = new LearningBridge({ clock, ageMs: 1000 });
  batch(br, 1, [{ dst: BCAST, src: B }]);
  batch(br, 2, [{ dst: BCAST, src: C }]);
  clock.advance(600);
  // C keeps talking (same source many times in a batch: the age is still refreshed).
  batch(br, 2, [{ dst: BCAST, src: C }, { dst: BCAST, src: C }, { dst: BCAST, src: C }]);
  clock.advance(399);
  t.deepEqual(batch(br, 0, [{ dst: B, src: A }, { dst: C, src: A }]), [1, 2]);
  clock.advance(1);
  t.deepEqual(batch(br, 0, [{ dst: B, src: A }, { dst: C, src: A }]), [DEST_FLOOD, 2]);
  t.is(br.table.size, 3);
  br.expire();
  t.is(br.table.size, 2);
  t.is(br.table.counters.aged, 1);
  clock.advance(5000);
  t.deepEqual(batch(br, 1, [{ dst: C, src: B }]), [DEST_FLOOD]);
  br.expire();
  t.is(br.table.size, 1, 'only the freshly re-learned B is left');
  t.deepEqual(batch(br, 0, [{ dst: B, src: A }]), [1]);
});

test('portRemoved flushes the port', (t) => {
  const br = new LearningBridge({ clock: new ManualClock() });
  batch(br, 1, [{ dst: BCAST, src: B }]);
  batch(br, 2, [{ dst: BCAST, src: C }]);
  br.portRemoved(1);
  t.deepEqual(batch(br, 0, [{ dst: B, src: A }, { dst: C, src: A }]), [DEST_FLOOD, 2]);
  t.is(br.table.size, 2);
});

test('bounded table: unknown sources beyond maxEntries are not learned', (t) => {
  const br = new LearningBridge({ clock: new ManualClock(), maxEntries: 2 });
  batch(br, 0, [{ dst: BCAST, src: A }, { dst: BCAST, src: B }, { dst: BCAST, src: C }]);
  t.is(br.table.size, 2);
  t.is(br.table.counters.tableFull, 1);
  t.deepEqual(batch(br, 1, [{ dst: C, src: HI1 }]), [DEST_FLOOD]);
});

test('lookupBatch works detached and honours count', (t) => {
  const br = new LearningBridge({ clock: new ManualClock() });
  const fn = br.lookupBatch;
  const region = new Uint8Array(256);
  region.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 0x0a], 100);
  const dests = new Int16Array([9, 9]);
  fn(region, new Uint32Array([100, 100]), new Uint16Array([60, 60]), 1, new Uint8Array(2), dests);
  t.deepEqual([...dests], [DEST_FLOOD, 9]);
  t.is(br.table.size, 1);
});

test('a large mixed batch matches a straightforward reference', (t) => {
  const clock = new ManualClock();
  const br = new LearningBridge({ clock });
  const hosts = Array.from({ length: 64 }, (_, i) => `02:aa:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`);
  const where = new Map<string, number>();
  let s = 12345;
  const r = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 8;
  for (let round = 0; round < 50; round++) {
    const srcPort = r() % 6;
    const frames: Frame[] = [];
    for (let i = 0; i < 512; i++) {
      const src = r() % 10 === 0 ? MCAST : hosts[r() % hosts.length]!;
      const dst = r() % 10 === 0 ? BCAST : hosts[r() % hosts.length]!;
      frames.push({ src, dst, len: r() % 50 === 0 ? 10 : 64 });
    }
    const expected = frames.map((f) => {
      if ((f.len ?? 60) < 14) return DEST_DROP;
      if (f.src !== MCAST) where.set(f.src, srcPort);
      if (f.dst === BCAST) return DEST_FLOOD;
      const p = where.get(f.dst);
      return p === undefined ? DEST_FLOOD : p === srcPort ? DEST_SAME_PORT : p;
    });
    t.deepEqual(batch(br, srcPort, frames), expected);
    clock.advance(10);
  }
});

test('a destination that moves within a batch is followed (last-destination cache)', (t) => {
  const br = new LearningBridge({ clock: new ManualClock() });
  t.deepEqual(batch(br, 1, [{ dst: A, src: B }]), [DEST_FLOOD]);
  // one batch, a source port per frame: A->B (B on 1), B speaks from 2, A->B again
  const mac = (m: string): number[] => m.split(':').map((x) => parseInt(x, 16));
  const frames = [
    [...mac(B), ...mac(A)],
    [...mac(A), ...mac(B)],
    [...mac(B), ...mac(A)],
  ];
  const buf = new Uint8Array(3 * 64);
  frames.forEach((f, i) => buf.set([...f, 0x08, 0x00], i * 64));
  const dests = new Int16Array(3);
  br.lookupBatch(buf, Uint32Array.of(0, 64, 128), Uint16Array.of(60, 60, 60), 3, Uint8Array.of(0, 2, 0), dests);
  t.deepEqual([...dests], [1, 0, 2]);
});

test('runs of identical headers (the same-header cache) decide as frame-by-frame, aligned or not', (t) => {
  // The switch's snapshots are 8-byte aligned, which the bridge's word
  // comparison uses; unaligned offsets take the byte path. Both must agree
  // with the reference, through repeats, source-port changes, runts between
  // repeats and a MAC moving to another port in the middle of a run.
  const hosts = [A, B, C, HI1, HI2];
  let s = 777;
  const r = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 8;
  const mac = (m: string): number[] => m.split(':').map((x) => parseInt(x, 16));
  for (const stride of [128, 64 + 3]) {
    const br = new LearningBridge({ clock: new ManualClock() });
    const where = new Map<string, number>();
    for (let round = 0; round < 20; round++) {
      const n = 512;
      const buf = new Uint8Array(n * stride + 16).fill(0xa5);
      const offsets = new Uint32Array(n);
      const lens = new Uint16Array(n);
      const srcs = new Uint8Array(n);
      const expected: number[] = [];
      let f = { src: A, dst: B, port: 0 };
      for (let i = 0; i < n; i++) {
        const x = r() % 100;
        if (x < 15) f = { ...f, src: hosts[r() % hosts.length]!, dst: r() % 8 === 0 ? BCAST : hosts[r() % hosts.length]! };
        else if (x < 25) f = { ...f, port: r() % 4 };
        const len = r() % 40 === 0 ? 10 : 60;
        offsets[i] = i * stride;
        lens[i] = len;
        srcs[i] = f.port;
        buf.set([...mac(f.dst), ...mac(f.src), 0x08, 0x00].slice(0, Math.min(len, 14)), i * stride);
        if (len < 14) {
          expected.push(DEST_DROP);
          continue;
        }
        where.set(f.src, f.port);
        const p = f.dst === BCAST ? undefined : where.get(f.dst);
        expected.push(p === undefined ? DEST_FLOOD : p === f.port ? DEST_SAME_PORT : p);
      }
      const dests = new Int16Array(n).fill(0x7777);
      br.lookupBatch(buf, offsets, lens, n, srcs, dests);
      t.deepEqual([...dests], expected, `stride ${stride} round ${round}`);
    }
  }
});
