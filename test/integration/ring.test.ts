import test from 'ava';
import { open } from '../../src/netmap/open.js';
import { Port } from '../../src/netmap/port.js';
import { parsePortName } from '../../src/netmap/name.js';
import { native } from '../../src/netmap/addon.js';
import type { Backend } from '../../src/backends/backend.js';

let uniq = 0;
const pname = (): string => `vale0:r${process.pid}x${uniq++}`;

test('ring helpers with a ring size that is not a power of two: next wraps, space and empty', async (t) => {
  const base = pname();
  const m = await open(`${base}{0`, { slots: 10 });
  const s = await open(`${base}}0`);
  const tx = m.txRings[0]!;
  const rx = s.rxRings[0]!;
  t.is(tx.numSlots, 10);
  t.is(tx.next(8), 9);
  t.is(tx.next(9), 0, 'next wraps at num_slots');
  t.is(tx.head, 0);
  t.is(tx.tail, 9, 'tx starts with tail = num_slots - 1');
  t.is(tx.space(), 9, 'one slot is always kept free');
  t.false(tx.empty());
  t.true(rx.empty(), 'rx starts empty: head == tail');
  t.is(rx.space(), 0);
  // run the indices around the ring several times
  let seq = 0;
  let got = 0;
  for (let round = 0; round < 7; round++) {
    const n = 7;
    for (let i = 0; i < n; i++) {
      const h = tx.head;
      tx.bytes[tx.bufOffset(h)] = seq++ & 0xff;
      tx.setLen(h, 60);
      tx.advance(1);
    }
    m.txsync();
    s.rxsync();
    t.is(rx.space(), n);
    for (let i = 0; i < n; i++) {
      t.is(rx.bytes[rx.bufOffset(rx.head)], got++ & 0xff);
      rx.advance(1);
    }
    s.rxsync();
    t.true(rx.empty());
  }
  t.true(tx.head !== 0 || seq % 10 === 0, 'indices wrapped');
  m.close();
  s.close();
});

test('a full tx ring: inject refuses, space is 0 until the peer releases', async (t) => {
  const base = pname();
  const m = await open(`${base}{0`, { slots: 4 });
  const s = await open(`${base}}0`);
  const f = new Uint8Array(60);
  let n = 0;
  // tx ring (3 usable) + peer rx ring (3 usable) hold 6 frames
  for (let k = 0; k < 3; k++) {
    while (m.inject(f)) n++;
    m.txsync();
  }
  t.is(n, 6);
  t.true(m.txRings[0]!.empty(), 'tx ring full: no slot for the user');
  t.false(m.inject(f));
  s.rxsync();
  t.is(s.rxAvailable(), 3);
  t.is(s.dispatch(Infinity, () => undefined), 3);
  s.rxsync();
  m.txsync();
  t.is(m.txRings[0]!.space(), 3, 'pending frames moved once the peer made room');
  m.close();
  s.close();
});

test('cur may run ahead of head (wakeup point) but not past tail; head may not move backwards', async (t) => {
  const base = pname();
  const m = await open(`${base}{0`, { slots: 8 });
  const s = await open(`${base}}0`);
  const tx = m.txRings[0]!;
  tx.cur = 5; // ask for a later wakeup, send nothing
  t.notThrows(() => m.txsync());
  tx.cur = 0;
  tx.advance(3);
  m.txsync();
  tx.head = 1; // backwards
  t.throws(() => m.txsync(), { message: /head 1 .* outside the user's part/ });
  t.is(tx.head, 3, 'reset to the last synced head');
  const rx = s.rxRings[0]!;
  s.rxsync();
  t.is(rx.space(), 3);
  rx.head = 4; // past tail
  t.throws(() => s.rxsync(), { message: /rx ring 0: head 4 .*outside/ });
  rx.cur = 3;
  rx.head = 1;
  t.notThrows(() => s.rxsync(), 'rx cur ahead of head: wait for more while holding slots');
  m.close();
  s.close();
});

test('async iteration yields zero-copy batches and releases them on the next step', async (t) => {
  const base = pname();
  const m = await open(`${base}{0`);
  const s = await open(`${base}}0`);
  const total = 3000;
  const sender = (async (): Promise<void> => {
    const f = new Uint8Array(64);
    for (let i = 0; i < total; ) {
      if (m.inject(f)) {
        new DataView(m.txRings[0]!.bytes.buffer).setUint32(m.txRings[0]!.bufOffset((m.txRings[0]!.head + m.txRings[0]!.numSlots - 1) % m.txRings[0]!.numSlots), i, true);
        i++;
      } else {
        m.txsync();
        await m.poll({ rx: false, tx: true, timeoutMs: 100 });
      }
    }
    // flush: frames the full peer could not take yet stay pending in tx
    t.true(await m.flush(), 'flushed');
    t.false(m.txPending());
  })();
  let next = 0;
  let batches = 0;
  for await (const batch of s.batches(256)) {
    batches++;
    t.true(batch.frames.length <= 256);
    for (const fr of batch.frames) {
      t.is(fr.length, 64);
      t.is(new DataView(fr.buffer, fr.byteOffset, 4).getUint32(0, true), next++);
    }
    if (next >= total) break;
  }
  await sender;
  t.is(next, total);
  t.true(batches > 1);
  m.close();
  s.close();
});

test('Port.syncRings: one backend call where one sync covers every ring, prologue still checked; per ring otherwise', (t) => {
  for (const all of [true, false]) {
    const r = native.createRegion({ txRings: 3, rxRings: 3, txSlots: 16, rxSlots: 16 }, ['stub']);
    const calls: number[] = [];
    const be: Backend = {
      kind: all ? 'kernel' : 'pipe',
      syncsAllRings: all,
      memory: r.memory,
      nifpOffset: r.layout.nifpOffsets[0]!,
      txRingIds: [0, 1, 2],
      rxRingIds: [0, 1, 2],
      waitFd: -1,
      txsync: (ring) => calls.push(ring),
      rxsync: (ring) => calls.push(100 + ring),
      armWait: () => 1,
      afterWait: () => undefined,
      hungUp: () => false,
      close: () => native.close(r.fd),
    };
    const port = new Port(parsePortName('vale0:stub'), be);
    for (const ring of port.txRings) ring.advance(2);
    port.txsync();
    t.deepEqual(calls, all ? [0] : [0, 1, 2]);
    t.is(port.txRings[2]!.head, 2);
    // a bad head on the last ring is caught even when only ring 0's sync runs
    port.txRings[2]!.head = 15;
    calls.length = 0;
    t.throws(() => port.txsync(), { message: /tx ring 2: head 15/ });
    t.deepEqual(calls, all ? [] : [0, 1]);
    port.close();
  }
});
