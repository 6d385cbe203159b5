/**
 * The allocation-free receive path: Port.receive() fills two typed arrays
 * with the offsets and lengths of received frames (as the switch reads its
 * ports), so a receive loop creates no object per frame or per batch. The
 * frames are read in place in port.memory until the next rxsync.
 *   node dist/examples/rx-typed-arrays.js
 */
import { open } from '@x/netmap';

const name = `vale0:rx${process.pid}`;
const tx = await open(`${name}{0`, { slots: 256 }); // a pipe: no switch needed
const rx = await open(`${name}}0`);

const TOTAL = 10_000;
const offsets = new Uint32Array(64); // allocated once, reused for every batch
const lens = new Uint16Array(64);
const bytes = new Uint8Array(rx.memory);
const frame = new Uint8Array(60).fill(0xff, 0, 6);

let sent = 0;
let received = 0;
let inOrder = true;
let totalBytes = 0;
while (received < TOTAL) {
  // send what fits, tagging each frame with its sequence number
  while (sent < TOTAL && tx.txSpace() > 0) {
    frame[14] = sent & 0xff;
    tx.inject(frame);
    sent++;
  }
  tx.txsync();
  // wait for frames (or room to send more), then take them in batches
  await rx.poll({ rx: true, timeoutMs: 1000 });
  for (let n; (n = rx.receive(offsets, lens)) > 0; ) {
    for (let i = 0; i < n; i++) {
      if (bytes[offsets[i]! + 14] !== (received & 0xff)) inOrder = false;
      totalBytes += lens[i]!;
      received++;
    }
  }
  rx.rxsync(); // hand the buffers back
}
console.log(`received ${received} frames, ${totalBytes} bytes, ${inOrder ? 'in order' : 'OUT OF ORDER'}`);
tx.close();
rx.close();
