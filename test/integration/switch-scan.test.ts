/**
 * The switch core visits a ring only when its client's head moved, from a
 * scan array it keeps beside the ports (cpp/core/switch_core.cc, collect()).
 * That array is rebuilt whenever the set of ports changes and must stay in
 * step with where the switch stopped reading each ring: a stale position
 * equal to the client's head would leave frames in the ring unseen. Here a
 * sender's ring wraps several times while ports below and above it come and
 * go and a monitor is added and removed, in one process, rounds driven by
 * hand (Switch.pump): every frame must arrive, in order, nothing dropped.
 */
import test from 'ava';
import os from 'node:os';
import path from 'node:path';
import { open, Switch, ValeServer, type Port } from '../../src/index.js';

const A = [2, 0, 0, 0, 0, 0x0a];
const B = [2, 0, 0, 0, 0, 0x0b];

function frame(dst: number[], src: number[], seq: number): Uint8Array {
  const f = new Uint8Array(60);
  f.set(dst, 0);
  f.set(src, 6);
  f.set([0x88, 0xb5], 12);
  new DataView(f.buffer).setUint32(14, seq);
  return f;
}

/** Frames waiting at p now: their sequence numbers. */
function drain(p: Port): number[] {
  const got: number[] = [];
  p.rxsync();
  p.dispatch(Infinity, (f) => got.push(new DataView(f.buffer, f.byteOffset).getUint32(14)));
  p.rxsync();
  return got;
}

test('ports and a monitor come and go while a ring wraps: the switch still sees every frame', async (t) => {
  const sw = new Switch('vale0', { busyPollUs: 0 });
  const socket = path.join(os.tmpdir(), `vt-scan-${process.pid}.sock`);
  const srv = await ValeServer.listen({ socket, switches: [sw] });
  // ids are taken lowest first: an idle port below the clients, so removing
  // it moves their entries in the scan array
  let low = sw.addPort('vale0:low0', {}, { persistent: true });
  const tx = await open('vale0:a', { socket });
  const rx = await open('vale0:b', { socket });
  t.teardown(() => {
    tx.close();
    rx.close();
    srv.close();
    sw.close();
  });
  const b = sw.port('vale0:b')!;
  const a = sw.port('vale0:a')!;
  // b announces itself: a -> b is learned unicast
  rx.inject(frame(A, B, 0));
  rx.txsync();
  sw.pump();

  const slots = tx.txRings[0]!.numSlots;
  const got: number[] = [];
  let sent = 0;
  /** n frames from a in one publication, then rounds until all reached b. */
  const burst = (n: number, what: string): void => {
    tx.txsync(); // learn the room the switch made
    for (let i = 0; i < n; i++) t.true(tx.inject(frame(B, A, ++sent)), `tx ring has room for frame ${sent}`);
    tx.txsync();
    // a bounded number of rounds, not a clock: each round must move what is there
    for (let r = 0; r < 8 && got.length < sent; r++) {
      sw.pump();
      got.push(...drain(rx));
    }
    t.is(got.length, sent, `${what}: ${sent - got.length} frames left behind`);
  };
  const extra: number[] = [];
  let mon: number | undefined;
  burst(13, 'first');
  for (let step = 0; step < 8; step++) {
    // the set of ports changes, a different way each step...
    switch (step % 4) {
      case 0:
        sw.removePort(low.index);
        low = sw.addPort(`vale0:low${step}`, {}, { persistent: true });
        break;
      case 1:
        extra.push(sw.addPort(`vale0:x${step}`, {}, { persistent: true }).index);
        break;
      case 2:
        if (mon === undefined) mon = sw.addMonitor(b, true, true).index;
        else {
          sw.removeMonitor(mon);
          mon = undefined;
        }
        break;
      default:
        if (extra.length) sw.removePort(extra.shift()!);
        break;
    }
    // ...then, with the ports as they are, the client's head passes 0 and
    // comes back to where the ring stood at the change (a position the
    // switch kept from before would now look like "nothing new"), then moves
    // on by a step that is no divisor of the ring
    const at = sent % slots;
    if (at !== 0) burst(slots - at, `step ${step}: up to slot 0`);
    if (at !== 0) burst(at, `step ${step}: back to slot ${at}`);
    else burst(slots / 2, `step ${step}: half`), burst(slots / 2, `step ${step}: back to slot 0`);
    burst(97 + step, `step ${step}: onwards`);
  }
  const total = sent;
  t.deepEqual(got, Array.from({ length: total }, (_, i) => i + 1));
  const ca = sw.counters(a.index);
  const cb = sw.counters(b.index);
  t.is(ca['rxFrames'], total);
  t.is(cb['txFrames'], total);
  t.is(Object.entries(cb).filter(([k, v]) => k.startsWith('drop') && v !== 0).length, 0, JSON.stringify(cb));
});
