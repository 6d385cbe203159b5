import test from 'ava';
import { MacTable, keyToMac, macToKey } from '../../src/vale/mac-table.js';
import { ManualClock } from '../../src/vale/clock.js';

/** Small deterministic PRNG (xorshift32) so failures reproduce. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

test('learn and lookup', (t) => {
  const m = new MacTable();
  t.is(m.lookup(0x0200, 0x00000001, 0), -1);
  m.learn(0x0200, 0x00000001, 3, 0);
  m.learn(0x0200, 0x00000002, 5, 0);
  t.is(m.lookup(0x0200, 0x00000001, 0), 3);
  t.is(m.lookup(0x0200, 0x00000002, 0), 5);
  t.is(m.lookup(0x0201, 0x00000001, 0), -1, 'hi16 is part of the key');
  t.is(m.size, 2);
  t.is(m.counters.learned, 2);
  // lo32 passed signed is the same key
  m.learn(0xffff, 0xfffffffe, 7, 0);
  t.is(m.lookup(0xffff, -2, 0), 7);
  t.is(m.capacity, 16384);
});

test('a MAC that moves is re-pointed, not duplicated', (t) => {
  const m = new MacTable();
  m.learn(0x0a0b, 0x0c0d0e0f, 1, 0);
  m.learn(0x0a0b, 0x0c0d0e0f, 1, 1);
  t.is(m.counters.moved, 0);
  m.learn(0x0a0b, 0x0c0d0e0f, 2, 2);
  t.is(m.lookup(0x0a0b, 0x0c0d0e0f, 2), 2);
  t.is(m.size, 1);
  t.is(m.counters.learned, 1);
  t.is(m.counters.moved, 1);
});

test('fill to maxEntries with colliding keys, then one more is refused', (t) => {
  const max = 1000;
  const m = new MacTable({ maxEntries: max });
  // Keys that differ only in a few bits plus a sequential run: plenty of shared probe runs.
  const keys: Array<[number, number]> = [];
  for (let i = 0; i < max; i++) keys.push([(i * 7) & 0x3, (i * 0x10001) >>> 0]);
  keys.forEach(([hi, lo], i) => m.learn(hi, lo, i % 200, 0));
  t.is(m.size, max);
  let ok = 0;
  keys.forEach(([hi, lo], i) => {
    if (m.lookup(hi, lo, 0) === i % 200) ok++;
  });
  t.is(ok, max);
  t.is(m.counters.tableFull, 0);
  m.learn(0x1234, 0x56789abc, 9, 0);
  t.is(m.counters.tableFull, 1);
  t.is(m.lookup(0x1234, 0x56789abc, 0), -1, 'not inserted');
  t.is(m.size, max);
  // Known MACs still refresh and move when full.
  m.learn(keys[0]![0], keys[0]![1], 199, 0);
  t.is(m.lookup(keys[0]![0], keys[0]![1], 0), 199);
  t.is(m.counters.tableFull, 1);
});

test('aging: absent after ageMs, expire reclaims, re-learn refreshes', (t) => {
  const clock = new ManualClock(1000);
  const m = new MacTable({ ageMs: 10_000, clock });
  m.learn(1, 1, 1, clock.nowMs());
  m.learn(1, 2, 2, clock.nowMs());
  clock.advance(6000);
  m.learn(1, 2, 2, clock.nowMs()); // refresh
  clock.advance(3999);
  t.is(m.lookup(1, 1, clock.nowMs()), 1, 'still alive just before ageMs');
  clock.advance(1);
  t.is(m.lookup(1, 1, clock.nowMs()), -1, 'gone at ageMs');
  t.is(m.lookup(1, 2, clock.nowMs()), 2, 'refreshed one is alive');
  t.deepEqual([...m.entries()].map((e) => [e.mac, e.port, e.ageMs]), [['00:01:00:00:00:02', 2, 4000]]);
  t.is(m.size, 2, 'stale entry still stored until expire');
  t.is(m.expire(clock.nowMs()), 1);
  t.is(m.size, 1);
  t.is(m.counters.aged, 1);
  // Stale-but-unswept entry learned again comes back.
  clock.advance(20_000);
  t.is(m.lookup(1, 2, clock.nowMs()), -1);
  m.learn(1, 2, 4, clock.nowMs());
  t.is(m.lookup(1, 2, clock.nowMs()), 4);
  t.is(m.size, 1);
  t.is(m.expire(clock.nowMs()), 0);
});

test('a full table reclaims stale entries before refusing', (t) => {
  const m = new MacTable({ maxEntries: 4, ageMs: 100 });
  for (let i = 0; i < 4; i++) m.learn(0, i, i, 0);
  m.learn(0, 99, 0, 50);
  t.is(m.counters.tableFull, 1);
  m.learn(0, 3, 3, 60); // keep one fresh
  m.learn(0, 99, 0, 100 + 50); // 0..2 are stale now
  t.is(m.counters.tableFull, 1);
  t.is(m.lookup(0, 99, 150), 0);
  t.is(m.size, 2);
  t.is(m.counters.aged, 3);
});

test('removePort and remove', (t) => {
  const m = new MacTable({ maxEntries: 300 });
  for (let i = 0; i < 300; i++) m.learn(0x0002, i, i % 3, 0);
  t.is(m.removePort(1), 100);
  t.is(m.size, 200);
  for (let i = 0; i < 300; i++) {
    t.is(m.lookup(0x0002, i, 0), i % 3 === 1 ? -1 : i % 3);
  }
  t.true(m.remove(0x0002, 0));
  t.false(m.remove(0x0002, 0));
  t.false(m.remove(0x0002, 1));
  t.is(m.lookup(0x0002, 0, 0), -1);
  t.is(m.size, 199);
  t.throws(() => m.learn(0, 0, -1, 0), { instanceOf: RangeError });
  t.throws(() => m.learn(0, 0, 1.5, 0), { instanceOf: RangeError });
  t.throws(() => m.learn(0, 0, 0x8000, 0), { instanceOf: RangeError });
});

test('entries() lists live entries with their MAC strings', (t) => {
  const clock = new ManualClock();
  const m = new MacTable({ clock });
  const a = macToKey('02:00:00:00:00:0a');
  const b = macToKey('02:00:00:00:00:0b');
  m.learn(a.hi, a.lo, 1, 0);
  clock.advance(5);
  m.learn(b.hi, b.lo, 2, clock.nowMs());
  const got = [...m.entries()].sort((x, y) => (x.mac < y.mac ? -1 : 1));
  t.deepEqual(got, [
    { mac: '02:00:00:00:00:0a', port: 1, ageMs: 5 },
    { mac: '02:00:00:00:00:0b', port: 2, ageMs: 0 },
  ]);
});

test('macToKey / keyToMac round trip', (t) => {
  t.deepEqual(macToKey('ff:ff:ff:ff:ff:ff'), { hi: 0xffff, lo: 0xffffffff });
  t.deepEqual(macToKey('01-23-45-67-89-AB'), { hi: 0x0123, lo: 0x456789ab });
  t.is(keyToMac(0x0123, 0x456789ab), '01:23:45:67:89:ab');
  t.is(keyToMac(0xffff, -1), 'ff:ff:ff:ff:ff:ff');
  t.is(keyToMac(0, 0), '00:00:00:00:00:00');
  const r = rng(42);
  for (let i = 0; i < 1000; i++) {
    const hi = r() & 0xffff;
    const lo = r();
    const s = keyToMac(hi, lo);
    t.deepEqual(macToKey(s), { hi, lo });
    t.is(keyToMac(macToKey(s).hi, macToKey(s).lo), s);
  }
  for (const bad of ['', '00:11:22:33:44', '00:11:22:33:44:55:66', '00:11-22:33:44:55', 'g0:11:22:33:44:55', '0:11:22:33:44:55']) {
    t.throws(() => macToKey(bad), { instanceOf: SyntaxError }, bad);
  }
});

/**
 * Reference model: a Map of key -> {port, seen}, with the same rules as the
 * table (stale at now - seen >= ageMs, bounded size counting unswept stale
 * entries, an inline sweep when full at most every min(ageMs, 1000) ms).
 */
class Model {
  readonly m = new Map<number, { port: number; seen: number }>();
  lastSweep = -Infinity;
  tableFull = 0;
  constructor(
    readonly max: number,
    readonly age: number,
  ) {}
  lookup(k: number, now: number): number {
    const e = this.m.get(k);
    return e === undefined || now - e.seen >= this.age ? -1 : e.port;
  }
  learn(k: number, port: number, now: number): void {
    const e = this.m.get(k);
    if (e !== undefined) {
      e.port = port;
      e.seen = now;
      return;
    }
    if (this.m.size >= this.max) {
      if (!(now - this.lastSweep >= Math.min(this.age, 1000) && this.expire(now) > 0)) {
        this.tableFull++;
        return;
      }
    }
    this.m.set(k, { port, seen: now });
  }
  expire(now: number): number {
    this.lastSweep = now;
    let n = 0;
    for (const [k, e] of this.m) {
      if (now - e.seen >= this.age) {
        this.m.delete(k);
        n++;
      }
    }
    return n;
  }
  removePort(port: number): number {
    let n = 0;
    for (const [k, e] of this.m) {
      if (e.port === port) {
        this.m.delete(k);
        n++;
      }
    }
    return n;
  }
}

function modelRun(t: import('ava').ExecutionContext, seed: number, maxEntries: number, universe: number, ops: number): number {
  const age = 500;
  const table = new MacTable({ maxEntries, ageMs: age });
  const model = new Model(maxEntries, age);
  const r = rng(seed);
  // A small universe of keys with structure (shared hi, nearby lo) so probe runs overlap.
  const his = new Uint16Array(universe);
  const los = new Uint32Array(universe);
  for (let i = 0; i < universe; i++) {
    his[i] = i & 3;
    los[i] = (i % 7 === 0 ? r() : 0x00c0ffee + i * 0x100) >>> 0;
  }
  const key = (i: number) => his[i]! * 0x1_0000_0000 + los[i]!;
  let now = 0;
  let mismatches = 0;
  for (let op = 0; op < ops; op++) {
    const x = r() % 1000;
    const i = r() % universe;
    if (x < 3) now += r() % 200;
    if (x < 450) {
      const port = r() % 8;
      table.learn(his[i]!, los[i]!, port, now);
      model.learn(key(i), port, now);
    } else if (x < 800) {
      if (table.lookup(his[i]!, los[i]!, now) !== model.lookup(key(i), now)) mismatches++;
    } else if (x < 990) {
      const a = table.remove(his[i]!, los[i]!);
      const b = model.m.delete(key(i));
      if (a !== b) mismatches++;
    } else if (x < 996) {
      if (table.expire(now) !== model.expire(now)) mismatches++;
    } else {
      const port = r() % 8;
      if (table.removePort(port) !== model.removePort(port)) mismatches++;
    }
    if (table.size !== model.m.size) mismatches++;
    if (mismatches > 0) {
      t.fail(`diverged at op ${op} (x=${x}, i=${i}, now=${now})`);
      return -1;
    }
  }
  // Full cross-check at the end.
  for (let i = 0; i < universe; i++) {
    if (table.lookup(his[i]!, los[i]!, now) !== model.lookup(key(i), now)) mismatches++;
  }
  const live = [...table.entries(now)].length;
  const modelLive = [...model.m.values()].filter((e) => now - e.seen < age).length;
  t.is(mismatches, 0);
  t.is(live, modelLive);
  t.is(table.counters.tableFull, model.tableFull);
  return model.tableFull;
}

test('randomised against a Map model: 100k ops, table never full', (t) => {
  t.is(modelRun(t, 1, 256, 200, 100_000), 0);
});

test('randomised against a Map model: 100k ops, table often full', (t) => {
  t.true(modelRun(t, 7, 64, 100, 100_000) > 0, 'the full path was exercised');
});

test('randomised against a Map model: several seeds, tiny table', (t) => {
  let full = 0;
  for (let seed = 100; seed < 110; seed++) full += modelRun(t, seed, 8, 12, 20_000);
  t.true(full > 0);
});
