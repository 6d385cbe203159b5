/**
 * The co-resident shortcut's channel (cpp/core/shortcut_ring.h): two mappings
 * of one sealed memfd, as the two vale-ts will have, and a peer that writes
 * impossible indices, lengths or headers into the shared memory.
 *
 * Layout with 4 slots of 64 bytes (stride 128): header at 0; ring 0 (creator
 * -> attacher) tail at 64, head at 128, slots from 192; ring 1 tail at 704,
 * head at 768, slots from 832.
 */
import test from 'ava';
import { closeSync, ftruncateSync, openSync, readSync, unlinkSync, writeSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { nativeRaw } from '../../src/netmap/addon.js';

interface Ring {
  push(b: Buffer): 'ok' | 'full' | 'tooLong' | 'broken';
  pop(): Buffer | null;
  unconsumed(): number;
  dupFd(): number;
  wait(step: 'armData' | 'disarmData' | 'dataKickDue' | 'armRoom' | 'disarmRoom' | 'roomKickDue'): boolean;
  readonly broken: boolean;
}
const { ShortcutRing } = nativeRaw as {
  ShortcutRing: { new (a: { slots?: number; slotSize?: number } | number): Ring; readonly VERSION: number; readonly SLOT_HEADER: number };
};

const R0_TAIL = 64, R0_HEAD = 128, R0_SLOTS = 192, R1_HEAD = 768;
// the wait words (version 2), each beside its owner's index
const R0_CONSUMER_WAIT = R0_HEAD + 4;

function pair(): { a: Ring; b: Ring; fd: number } {
  const a = new ShortcutRing({ slots: 4, slotSize: 64 });
  const fd = a.dupFd();
  const b = new ShortcutRing(fd);
  return { a, b, fd };
}

function poke32(fd: number, at: number, v: number): void {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  writeSync(fd, b, 0, 4, at);
}

const frame = (n: number, len = 60): Buffer => Buffer.alloc(len, n);

test('frames cross both ways in order, across the ring\'s wrap; a full ring says so; a frame longer than a slot is refused', (t) => {
  const { a, b, fd } = pair();
  t.teardown(() => closeSync(fd));
  for (let i = 0; i < 10; i++) {
    t.is(a.push(frame(i, 14 + i)), 'ok');
    t.deepEqual(b.pop(), frame(i, 14 + i));
  }
  t.is(b.pop(), null);
  for (let i = 0; i < 4; i++) t.is(b.push(frame(100 + i)), 'ok');
  t.is(b.push(frame(104)), 'full');
  t.is(b.unconsumed(), 4);
  t.deepEqual(a.pop(), frame(100));
  t.is(b.unconsumed(), 3);
  t.is(b.push(frame(104)), 'ok');
  for (let i = 1; i <= 4; i++) t.deepEqual(a.pop(), frame(100 + i));
  t.is(a.pop(), null);
  t.is(a.push(Buffer.alloc(65)), 'tooLong');
  t.is(a.push(Buffer.alloc(64)), 'ok');
  t.false(a.broken || b.broken);
  // sealed: the peer can neither shrink the channel under a mapping (SIGBUS) nor grow it
  t.throws(() => ftruncateSync(fd, 0), { code: 'EPERM' });
  t.throws(() => ftruncateSync(fd, 1 << 20), { code: 'EPERM' });
});

test('a producer index past a ring ahead breaks the channel for the consumer', (t) => {
  const { a, b, fd } = pair();
  t.teardown(() => closeSync(fd));
  t.is(a.push(frame(1)), 'ok');
  poke32(fd, R0_TAIL, 4 + 2); // 6 frames "published" in a ring of 4
  t.is(b.pop(), null);
  t.true(b.broken);
  t.is(b.push(frame(2)), 'broken');
});

test('a consumer index past what was published, or going back, breaks the channel for the producer', (t) => {
  const { a, b, fd } = pair();
  t.teardown(() => closeSync(fd));
  t.is(a.push(frame(1)), 'ok');
  poke32(fd, R0_HEAD, 3); // consumed 3 of 1
  t.is(a.push(frame(2)), 'broken');
  t.true(a.broken);
  t.is(a.unconsumed(), 0);
  // the other ring, back to front: b produces, a consumed 2 then "un-consumes"
  const p = pair();
  t.teardown(() => closeSync(p.fd));
  t.is(p.b.push(frame(1)), 'ok');
  t.is(p.b.push(frame(2)), 'ok');
  t.truthy(p.a.pop());
  t.truthy(p.a.pop());
  t.is(p.b.push(frame(3)), 'ok'); // b has seen head 2
  poke32(p.fd, R1_HEAD, 1);
  t.is(p.b.push(frame(4)), 'broken');
});

test('a slot is its frame\'s length then the frame: a 60-byte frame and its length fill the slot\'s first cache line, so each crosses between the CPUs as one line', (t) => {
  const { a, b, fd } = pair();
  t.teardown(() => closeSync(fd));
  t.is(ShortcutRing.VERSION, 3);
  t.is(ShortcutRing.SLOT_HEADER, 4);
  t.is(a.push(frame(9)), 'ok');
  const slot = Buffer.alloc(128);
  readSync(fd, slot, 0, slot.length, R0_SLOTS);
  t.is(slot.readUInt32LE(0), 60);
  t.deepEqual(slot.subarray(ShortcutRing.SLOT_HEADER, ShortcutRing.SLOT_HEADER + 60), frame(9));
  t.true(slot.subarray(64).every((x) => x === 0), 'nothing of it in the next line');
  t.deepEqual(b.pop(), frame(9));
  // every length that fits the line (streamed as whole words on x86-64):
  // the frame intact, zeros after it to the line's end, nothing past it
  for (let len = 1; len <= 64 - ShortcutRing.SLOT_HEADER; len++) {
    const f = Buffer.alloc(len);
    for (let i = 0; i < len; i++) f[i] = (len * 7 + i) & 0xff || 1;
    t.is(a.push(f), 'ok');
    readSync(fd, slot, 0, slot.length, R0_SLOTS + (len % 4) * 128);
    t.is(slot.readUInt32LE(0), len);
    t.deepEqual(slot.subarray(ShortcutRing.SLOT_HEADER, ShortcutRing.SLOT_HEADER + len), f, `a ${len}-byte frame`);
    t.true(slot.subarray(ShortcutRing.SLOT_HEADER + len, 64).every((x) => x === 0), `zeros after a ${len}-byte frame`);
    t.deepEqual(b.pop(), f);
  }
});

test('a slot length beyond the slot breaks the channel; nothing is read from it', (t) => {
  const { a, b, fd } = pair();
  t.teardown(() => closeSync(fd));
  t.is(a.push(frame(1)), 'ok');
  poke32(fd, R0_SLOTS, 65);
  t.is(b.pop(), null);
  t.true(b.broken);
});

test('attach refuses a channel with another magic, an impossible geometry, or no seals', (t) => {
  const bad = (at: number, v: number, msg: RegExp): void => {
    const a = new ShortcutRing({ slots: 4, slotSize: 64 });
    const fd = a.dupFd();
    t.teardown(() => closeSync(fd));
    poke32(fd, at, v);
    t.throws(() => new ShortcutRing(fd), { message: msg });
  };
  bad(0, 0x41414141, /another magic or version/);
  bad(8, 1, /another magic or version/);  // version 1 had no wait words
  bad(8, 2, /another magic or version/);  // version 2's slots had an 8-byte header
  bad(12, 3, /impossible geometry/); // 3 slots: not a power of two
  bad(12, 8, /impossible geometry/); // 8 slots: not what the size holds
  bad(16, 1 << 20, /impossible geometry/);
  const file = path.join(os.tmpdir(), `shortcut-ring-${process.pid}`);
  const fd = openSync(file, 'w+');
  t.teardown(() => {
    closeSync(fd);
    unlinkSync(file);
  });
  writeSync(fd, Buffer.alloc(1024));
  t.throws(() => new ShortcutRing(fd), { message: /not sealed|memfd/ });
  t.throws(() => new ShortcutRing({ slots: 5 }), { message: /power of two/ });
  t.throws(() => new ShortcutRing({ slotSize: 10 }), { message: /slot of 10 bytes/ });
});

test('wakeups: a side about to sleep asks for a kick and gets exactly one; what came meanwhile is seen on its second look; nonsense in a wait word costs at most one kick', (t) => {
  const { a, b, fd } = pair();
  t.teardown(() => closeSync(fd));
  // frames: the consumer (b) asks before it sleeps on the empty ring
  t.false(b.wait('armData'), 'empty: sleep');
  t.is(a.push(frame(1)), 'ok');
  t.true(a.wait('dataKickDue'), 'a sleeping consumer is kicked');
  t.false(a.wait('dataKickDue'), 'once per ask');
  b.wait('disarmData');
  t.deepEqual(b.pop(), frame(1));
  t.false(b.wait('armData'));
  t.is(a.push(frame(2)), 'ok');
  t.true(a.wait('dataKickDue'), 'a new ask, a new kick');
  b.wait('disarmData');
  t.is(a.push(frame(3)), 'ok');
  t.false(a.wait('dataKickDue'), 'an awake consumer is not kicked');
  // the race the second look closes: frames published before the ask
  t.true(b.wait('armData'), 'frames already there: do not sleep');
  b.wait('disarmData');
  t.deepEqual(b.pop(), frame(2));
  t.deepEqual(b.pop(), frame(3));
  // room: the producer (a) asks before it sleeps on the full ring
  for (let i = 0; i < 4; i++) t.is(a.push(frame(10 + i)), 'ok');
  t.is(a.push(frame(14)), 'full');
  t.false(a.wait('armRoom'), 'still full: sleep');
  t.deepEqual(b.pop(), frame(10));
  t.true(b.wait('roomKickDue'), 'a producer waiting for room is kicked');
  t.false(b.wait('roomKickDue'), 'once');
  t.true(a.wait('armRoom'), 'room now: do not sleep');
  a.wait('disarmRoom');
  t.false(b.wait('roomKickDue'), 'an awake producer is not kicked');
  // a hostile consumer's word: one kick per value it writes, nothing else
  poke32(fd, R0_CONSUMER_WAIT, 0xdeadbeef);
  t.true(a.wait('dataKickDue'));
  t.false(a.wait('dataKickDue'));
  poke32(fd, R0_CONSUMER_WAIT, 0);
  t.false(a.wait('dataKickDue'));
  t.is(a.push(frame(14)), 'ok');
  t.false(a.broken || b.broken);
});
