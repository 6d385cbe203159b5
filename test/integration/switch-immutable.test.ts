/**
 * The forwarding decision is made on bytes the sending client can no longer
 * change: against the README's filter example (examples/routed-lookup.ts,
 * IPv4 only), a client sends IPv4 while another thread keeps flipping the
 * ethertype of its buffers to ARP; no ARP frame may come out of the switch.
 */
import test from 'ava';
import { Worker } from 'node:worker_threads';
import os from 'node:os';
import path from 'node:path';
import { Switch, ValeServer, open } from '../../src/index.js';
import { routed } from '../../examples/routed-lookup.js';

const FRAMES = 20000;

function ipv4Frame(len: number): Uint8Array {
  const f = new Uint8Array(len);
  f.set([2, 0, 0, 0, 0, 0x0b, 2, 0, 0, 0, 0, 0x0a, 0x08, 0x00], 0);
  f[14] = 0x45; // version 4, IHL 5
  f.set([10, 0, 0, 1], 26);
  f.set([10, 0, 0, 2], 30); // -> port index 1 (the receiver)
  return f;
}

const routedModule = new URL('../../examples/routed-lookup.js', import.meta.url).href;

// 60 B: delivered from the snapshot alone; 1514 B: copied from the client's
// buffer with the snapshot copied over its start
for (const [datapath, len] of [['loop', 60], ['thread', 60], ['loop', 1514], ['thread', 1514]] as const) {
  test(`${datapath} datapath, ${len} B: a client flipping the ethertype after sending cannot get a non-IPv4 frame past the IPv4 filter`, async (t) => {
    const sw =
      datapath === 'loop' ? new Switch('vale0', { lookup: routed }) : new Switch('vale0', { datapath, lookupModule: routedModule, lookupExport: 'routed' });
    await sw.whenReady();
    const socket = path.join(os.tmpdir(), `vale-imm-${process.pid}-${datapath}-${len}.sock`);
    const srv = await ValeServer.listen({ socket, switches: [sw] });
    const tx = await open('vale0:tx', { socket }); // port index 0
    const rx = await open('vale0:rx', { socket }); // port index 1
    const txPort = sw.port('vale0:tx')!;
    const ring = tx.txRings[0]!;
    const offsets = Array.from({ length: ring.numSlots }, (_, i) => ring.bufOffset(i));
    const control = new SharedArrayBuffer(8);
    const ctl = new Int32Array(control);
    const flipper = new Worker(new URL('../fixtures/flipper.js', import.meta.url), {
      workerData: { fd: txPort.fds[0], size: txPort.geometry.memsize, offsets, control },
    });
    const stopped = new Promise((r) => flipper.once('message', r));
    try {
      // the flipper is running before the first frame goes out
      while (Atomics.load(ctl, 1) === 0) await new Promise((r) => setImmediate(r));
      const tpl = ipv4Frame(len);
      let sent = 0;
      let received = 0;
      let notIpv4 = 0;
      const take = (): void => {
        rx.rxsync();
        rx.dispatch(1e9, (fr) => {
          received++;
          if (fr[12] !== 0x08 || fr[13] !== 0x00) notIpv4++;
        });
        rx.rxsync();
      };
      // send until FRAMES went out and the flipper has been seen to win at
      // least once (a frame filtered as ARP): the race was really run
      while (sent < FRAMES || sw.counters(txPort.index)['dropLookup'] === 0) {
        while (tx.inject(tpl)) sent++;
        await tx.poll({ rx: false, tx: true });
        take();
      }
      t.true(await tx.flush(), 'the switch took every frame');
      Atomics.store(ctl, 0, 1);
      await stopped;
      // everything the switch delivered to rx, received
      const rxIndex = sw.port('vale0:rx')!.index;
      while (received < sw.counters(rxIndex)['txFrames']!) {
        take();
        if (received < sw.counters(rxIndex)['txFrames']!) await rx.poll({ rx: true });
      }
      const s = sw.counters(txPort.index);
      const r = sw.counters(rxIndex);
      t.log(`sent ${sent}, delivered ${r['txFrames']}, filtered ${s['dropLookup']}, no room ${r['dropNoSpace']}, flipper passes ${Atomics.load(ctl, 1)}`);
      t.is(notIpv4, 0, 'no frame other than IPv4 was delivered');
      t.true(received > 0, 'IPv4 frames were delivered');
      t.is(s['rxFrames'], sent);
      t.is(r['txFrames']! + s['dropLookup']! + r['dropNoSpace']!, sent, 'every frame delivered or counted');
    } finally {
      Atomics.store(ctl, 0, 1);
      await flipper.terminate();
      tx.close();
      rx.close();
      srv.close();
      sw.close();
      await sw.stopped();
    }
  });
}
