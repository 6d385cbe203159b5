/**
 * Hostile clients against the switch core: what a registered client writes
 * into its own region (ring slots, fragment chains, heads) must never
 * overrun the switch's memory, keep it spinning or lose frames uncounted.
 */
import test from 'ava';
import os from 'node:os';
import path from 'node:path';
import { open, Switch, ValeServer, type Port, type Ring } from '../../src/index.js';

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
