/**
 * A receiver on a thread of its own that sleeps in Port.pollSync: a blocking
 * poll(2) on the port's doorbell, so the sender's kick wakes this thread
 * directly (no event-loop turn in between). The main thread sends 1000
 * frames over a pipe; the worker receives them.
 *   node dist/examples/poll-sync-worker.js
 */
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { open } from '@x/netmap';

const COUNT = 1000;

if (isMainThread) {
  const name = `vale0:psw${process.pid}`;
  const tx = await open(`${name}{0`); // the pipe exists once one end is open
  const worker = new Worker(new URL(import.meta.url), { workerData: { name } });
  const done = new Promise<number>((resolve, reject) => {
    worker.on('message', resolve);
    worker.on('error', reject);
  });
  const ring = tx.txRings[0]!;
  let sent = 0;
  while (sent < COUNT) {
    while (!ring.empty() && sent < COUNT) {
      const i = ring.head;
      const o = ring.bufOffset(i);
      ring.bytes.fill(0xff, o, o + 6);
      ring.setLen(i, 60);
      ring.head = ring.cur = ring.next(i);
      sent++;
    }
    tx.txsync();
    if (sent < COUNT) await tx.poll({ rx: false, tx: true }); // wait for room
  }
  console.log(`sent ${sent}, the worker received ${await done}`);
  await worker.terminate();
  tx.close();
} else {
  const rx = await open(`${(workerData as { name: string }).name}}0`);
  let received = 0;
  while (received < COUNT) {
    // blocks this worker (at most 200 ms a call); the main thread runs on.
    // rx.waitSync(true, false, 200) is the same wait without the spin,
    // returning Port.RX | Port.TX | Port.HUP bits: nothing allocated per call
    const ev = rx.pollSync({ rx: true });
    if (!ev.rx) continue;
    for (const r of rx.rxRings) {
      received += r.space();
      r.head = r.cur = r.tail; // release them
    }
    rx.rxsync();
  }
  parentPort!.postMessage(received);
  rx.close();
}
