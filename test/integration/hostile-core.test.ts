/**
 * Hostile clients against the switch core: what a registered client writes
 * into its own region (ring slots, fragment chains, heads) must never
 * overrun the switch's memory, keep it spinning or lose frames uncounted.
 */
import test from 'ava';
import os from 'node:os';
import path from 'node:path';
import { open, Switch, ValeServer, ManualClock, type Port, type Ring } from '../../src/index.js';
import type { CsbView } from '../../src/backends/csb.js';
import { until } from '../fixtures/wait.js';

const NS_MOREFRAG = 0x20;
let uniq = 0;
const sockPath = (): string => path.join(os.tmpdir(), `hostile-core-x4-${process.pid}-${uniq++}.sock`);

async function withServer(sw: Switch, fn: (socket: string) => Promise<void>): Promise<void> {
  const socket = sockPath();
  const srv = await ValeServer.listen({ socket, switches: [sw], log: () => {} });
  try {
    await fn(socket);
  } finally {
    srv.close();
  }
}

/** Puts one frame of `frags` slots in `ring` (unsynced): a 60-byte header slot, then 1-byte slots tagged `tag`. */
function putChain(ring: Ring, frags: number, tag: number): void {
  for (let i = 0; i < frags; i++) {
    const s = ring.head;
    const o = ring.bufOffset(s);
    if (i === 0) {
      ring.bytes.fill(0xff, o, o + 6);
      ring.bytes.set([2, 0, 0, 0, 0, 0xa, 0x08, 0], o + 6);
      ring.bytes[o + 14] = tag;
      ring.setLen(s, 60);
    } else {
      ring.bytes[o] = tag;
      ring.setLen(s, 1);
    }
    ring.setFlags(s, i + 1 < frags ? NS_MOREFRAG : 0);
    ring.advance(1);
  }
}

/** Takes every whole frame waiting in `p`'s rx rings: [ring, fragments, tag ok] each. */
function takeChains(p: Port, out: { ring: number; frags: number; ok: boolean }[]): void {
  p.rxRings.forEach((rx, r) => {
    while (rx.space() > 0) {
      let s = rx.head;
      const tag = rx.bytes[rx.bufOffset(s) + 14]!;
      let frags = 0;
      let ok = rx.len(s) === 60;
      for (;;) {
        frags++;
        if (frags > 1) ok &&= rx.len(s) === 1 && rx.bytes[rx.bufOffset(s)] === tag;
        if (!(rx.flags(s) & NS_MOREFRAG) || frags === rx.space()) break;
        s = rx.next(s);
      }
      out.push({ ring: r, frags, ok });
      rx.advance(frags);
    }
  });
  p.rxsync();
}

test('64-slot chains on 16 tx rings in one round: the batch\'s fragment list is bounded, every frame arrives whole', async (t) => {
  const sw = new Switch('vale0');
  await withServer(sw, async (socket) => {
    const a = await open('vale0:x4fa@conf:rings=16', { socket });
    const b = await open('vale0:x4fb@conf:rings=16', { socket });
    t.teardown(() => {
      a.close();
      b.close();
    });
    // 8 chains of 64 slots per ring (a 512-frame batch's worth of slots
    // each), all published before the switch's next round (it runs on this
    // event loop): 8192 fragments, 128 frames
    a.txRings.forEach((ring, r) => {
      for (let f = 0; f < 8; f++) putChain(ring, 64, r * 8 + f);
    });
    a.txsync();
    const got: { ring: number; frags: number; ok: boolean }[] = [];
    while (got.length < 128) {
      const ev = await b.poll({ rx: true, timeoutMs: 10_000 });
      if (!ev.rx) break;
      takeChains(b, got);
    }
    t.is(got.length, 128);
    t.true(got.every((g) => g.frags === 64 && g.ok), 'every frame whole, with its bytes');
    const c = sw.counters(sw.port('vale0:x4fa')!.index);
    t.is(c['rxFrames'], 128);
    t.is((c['dropInvalid'] ?? 0) + (c['dropFrag'] ?? 0), 0);
    t.is(sw.counters(sw.port('vale0:x4fb')!.index)['dropOversize'], 0);
  });
});

/** Whether the switch asks `p`'s client for a kick on tx ring `r` (it set kern_need_kick before sleeping). */
function kickWanted(p: Port, r: number): boolean {
  const { csb } = p.backendObject as unknown as { csb: CsbView };
  return csb.kernNeedKick(csb.txKey(r));
}

test('a chain published without its last slot: the switch sleeps until the rest comes (no busy loop), then delivers it whole', async (t) => {
  const sw = new Switch('vale0');
  await withServer(sw, async (socket) => {
    const a = await open('vale0:x4pa', { socket });
    const b = await open('vale0:x4pb', { socket });
    t.teardown(() => {
      a.close();
      b.close();
    });
    const ring = a.txRings[0]!;
    // two slots of a three-slot chain, the second with NS_MOREFRAG: the
    // frame is not complete, the switch takes nothing yet
    putChain(ring, 3, 7);
    ring.head = ring.cur = 2;
    // the switch runs in this event loop: kern_need_kick is set only while
    // it sleeps (a switch that keeps polling, because the ring looks
    // pending, withdraws the request before this code can see it)
    await until(() => kickWanted(a, 0));
    const woke = sw.switchCounters().wakeups;
    a.txsync(); // kicks the sleeping switch
    await until(() => sw.switchCounters().wakeups > woke);
    await until(() => kickWanted(a, 0)); // asleep again
    t.is(sw.counters(sw.port('vale0:x4pa')!.index)['rxFrames'], 0);
    ring.head = ring.cur = 3;
    a.txsync(); // kicks the sleeping switch
    const got: { ring: number; frags: number; ok: boolean }[] = [];
    while (got.length < 1) {
      const ev = await b.poll({ rx: true, timeoutMs: 10_000 });
      if (!ev.rx) break;
      takeChains(b, got);
    }
    t.deepEqual(got, [{ ring: 0, frags: 3, ok: true }]);
  });
});

for (const lossless of [false, true]) {
  test(`a chain longer than the receiver's whole rx ring is dropped as dropOversize at once: the receiver is not shed, the sender not held (${lossless ? 'lossless' : 'bounded'})`, async (t) => {
    // the switch's clock stands still: a lossless sender held by a receiver
    // that can never take its frame would wait for good
    const sw = new Switch('vale0', { clock: new ManualClock() });
    await withServer(sw, async (socket) => {
      const a = await open('vale0:x4oa', { socket, lossless });
      const b = await open('vale0:x4ob', { socket, slots: 64 }); // 63 frames of room at most
      t.teardown(() => {
        a.close();
        b.close();
      });
      // b's MAC learnt on its port
      b.inject(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 0xb, 0x08, 0, ...new Array(46).fill(0)]));
      b.txsync();
      await a.poll({ rx: true, timeoutMs: 10_000 });
      a.rxRings[0]!.advance(a.rxRings[0]!.space());
      a.rxsync();
      // 64 slots to b (unicast), then a one-slot frame behind it
      const ring = a.txRings[0]!;
      putChain(ring, 64, 1);
      putChain(ring, 1, 9);
      for (const s of [ring.head - 65, ring.head - 1]) ring.bytes.set([2, 0, 0, 0, 0, 0xb], ring.bufOffset(s));
      a.txsync();
      const got: { ring: number; frags: number; ok: boolean }[] = [];
      while (got.length < 1) {
        const ev = await b.poll({ rx: true, timeoutMs: 10_000 });
        if (!ev.rx) break;
        takeChains(b, got);
      }
      t.deepEqual(got, [{ ring: 0, frags: 1, ok: true }]);
      const c = sw.counters(sw.port('vale0:x4ob')!.index);
      t.is(c['dropOversize'], 1, 'counted for what it is');
      t.is(c['dropNoSpace'], 0, 'b was never full: nothing waited for it, nothing was shed');
    });
  });
}

test('a header-less 65530-byte frame to a 12-byte-header port with 64 KiB buffers: no slot claims 65536 bytes (its 16-bit length would read 0)', async (t) => {
  const sw = new Switch('vale0');
  await withServer(sw, async (socket) => {
    const a = await open('vale0:x4ka', { socket });
    const b = await open('vale0:x4kb', { socket, slots: 4, bufSize: 65536, vnetHdrLen: 12 });
    t.teardown(() => {
      a.close();
      b.close();
    });
    // 31 full 2 KiB slots and one of 2042: 65530 bytes, byte i of the frame is i & 0xff
    const ring = a.txRings[0]!;
    const TOTAL = 65530;
    for (let off = 0; off < TOTAL; off += 2048) {
      const s = ring.head;
      const n = Math.min(2048, TOTAL - off);
      for (let i = 0; i < n; i++) ring.bytes[ring.bufOffset(s) + i] = (off + i) & 0xff;
      if (off === 0) ring.bytes.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 0xa, 0x08, 0], ring.bufOffset(s));
      ring.setLen(s, n);
      ring.setFlags(s, off + n < TOTAL ? NS_MOREFRAG : 0);
      ring.advance(1);
    }
    a.txsync();
    t.true((await b.poll({ rx: true, timeoutMs: 10_000 })).rx);
    const rx = b.rxRings[0]!;
    const lens: number[] = [];
    const bytes: number[] = [];
    for (let s = rx.head; ; s = rx.next(s)) {
      lens.push(rx.len(s));
      for (let i = 0; i < rx.len(s); i++) bytes.push(rx.bytes[rx.bufOffset(s) + i]!);
      if (!(rx.flags(s) & NS_MOREFRAG)) break;
    }
    t.is(lens.reduce((x, y) => x + y, 0), 12 + TOTAL, `slot lengths ${lens.join(', ')}`);
    t.true(lens.every((l) => l > 0 && l <= 65535));
    t.deepEqual(bytes.slice(0, 12), new Array(12).fill(0), 'a zero header');
    t.true(bytes.slice(12 + 14).every((v, i) => v === ((i + 14) & 0xff)), 'the frame, whole');
  });
});

/** A 12-byte virtio-net header asking for a TCP checksum (csum_start 34, csum_offset 16), then an IPv4/TCP frame of 60 bytes tagged `tag`. */
function csumFrame(tag: number): Uint8Array {
  const f = new Uint8Array(12 + 74);
  f.set([1, 0, 0, 0, 0, 0, 34, 0, 16, 0]);
  const e = f.subarray(12);
  e.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 0xa, 0x08, 0x00]);
  e.set([0x45, 0, 0, 60, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2], 14);
  e.set([0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff], 34);
  e[54] = tag;
  return f;
}

function putBytes(ring: Ring, bytes: Uint8Array): void {
  ring.bytes.set(bytes, ring.bufOffset(ring.head));
  ring.setLen(ring.head, bytes.length);
  ring.setFlags(ring.head, 0);
  ring.advance(1);
}

test('a frame shorter than its port\'s virtio-net header, seen by a /t monitor: dropped there as dropBadVnetHdr, never converted from the last frame\'s header and copy', async (t) => {
  const sw = new Switch('vale0');
  await withServer(sw, async (socket) => {
    const a = await open('vale0:x4va', { socket, vnetHdrLen: 12 });
    const mon = await open('vale0:x4va/t', { socket });
    t.teardown(() => {
      a.close();
      mon.close();
    });
    const ring = a.txRings[0]!;
    // a frame whose checksum the switch completes for the monitor: the
    // offload copy now holds its header and bytes
    putBytes(ring, csumFrame(0x55));
    // 3 bytes where a 12-byte header should be, the first saying
    // VIRTIO_NET_HDR_F_NEEDS_CSUM: the rest of a header and the frame
    // after it are not there
    putBytes(ring, new Uint8Array([1, 0, 0]));
    // and a whole frame behind it
    putBytes(ring, csumFrame(0x77));
    a.txsync();
    const tags: number[] = [];
    const rx = mon.rxRings[0]!;
    while (tags.length < 2) {
      if (!(await mon.poll({ rx: true, timeoutMs: 10_000 })).rx) break;
      while (rx.space() > 0) {
        t.is(rx.len(rx.head), 74);
        tags.push(rx.bytes[rx.bufOffset(rx.head) + 54]!);
        rx.advance(1);
      }
      mon.rxsync();
    }
    t.deepEqual(tags, [0x55, 0x77], 'the two whole frames, nothing for the runt');
    const mi = sw.monitors().find((m) => m.name === 'vale0:x4va/t')!;
    t.is(mi.counters['dropBadVnetHdr'], 1);
    t.is(mi.counters['vnetCsumCompleted'], 2);
    t.is(sw.counters(sw.port('vale0:x4va')!.index)['dropRunt'], 1);
  });
});
