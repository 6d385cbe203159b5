/**
 * GatewaySteering in a real embedded switch: a frame for the gateway's MAC
 * reaches the router's port before the switch has learned that MAC (not
 * flooded to the other hosts), and a host that sends with the gateway's MAC
 * as its source is dropped by the lookup instead of hijacking the entry.
 */
import test from 'ava';
import os from 'node:os';
import path from 'node:path';
import { GatewaySteering, LearningBridge, Switch, ValeServer, open, type Port } from '../../src/index.js';

const GW = '02:00:0a:01:00:01';
const gwBytes = [0x02, 0x00, 0x0a, 0x01, 0x00, 0x01];

function frame(dst: number[], src: number[], marker: number): Uint8Array {
  const f = new Uint8Array(60);
  f.set(dst, 0);
  f.set(src, 6);
  f[12] = 0x88;
  f[13] = 0xb5; // local experimental ethertype
  f[14] = marker;
  return f;
}

/** The markers of the frames `p` receives until one carries `last`. */
async function markersUntil(p: Port, last: number): Promise<number[]> {
  const got: number[] = [];
  for (;;) {
    await p.poll({ rx: true });
    p.dispatch(64, (f) => got.push(f[14]!));
    if (got.includes(last)) return got;
  }
}

test('frames for a pinned gateway MAC go to the router port only; a spoofed gateway source is dropped', async (t) => {
  t.timeout(60_000);
  const socket = path.join(os.tmpdir(), `l3-steer-${process.pid}.sock`);
  const steering = new GatewaySteering(new LearningBridge().lookupBatch);
  const sw = new Switch('vale0', { lookup: steering.lookup });
  const srv = await ValeServer.listen({ socket, switches: [sw] });
  t.teardown(() => srv.close());
  const gw = await open('vale0:gw', { socket });
  const h1 = await open('vale0:h1', { socket });
  const h2 = await open('vale0:h2', { socket });
  t.teardown(() => [gw, h1, h2].forEach((p) => p.close()));
  steering.pin(GW, sw.port('vale0:gw')!.index);
  const H1 = [0x52, 0x54, 0, 0, 0, 1];
  const H2 = [0x52, 0x54, 0, 0, 0, 2];
  const BC = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff];

  // h1 -> gateway MAC (never seen by the switch), then a broadcast marker
  h1.inject(frame(gwBytes, H1, 1));
  h1.inject(frame(BC, H1, 2));
  h1.txsync();
  t.deepEqual(await markersUntil(gw, 2), [1, 2]);
  t.deepEqual(await markersUntil(h2, 2), [2], 'the gateway-bound frame was not flooded to h2');

  // h2 claims the gateway's MAC, then a broadcast marker from its own
  h2.inject(frame(BC, gwBytes, 3));
  h2.inject(frame(BC, H2, 4));
  h2.txsync();
  t.deepEqual(await markersUntil(h1, 4), [4]);
  t.deepEqual(await markersUntil(gw, 4), [4]);
  t.is(steering.spoofDrops, 1);
  t.is(sw.counters(sw.port('vale0:h2')!.index)['dropLookup'], 1, JSON.stringify(sw.counters(sw.port('vale0:h2')!.index)));

  // and the gateway's own frames still reach the hosts
  gw.inject(frame(H1, gwBytes, 5));
  gw.txsync();
  t.deepEqual(await markersUntil(h1, 5), [5]);
});
