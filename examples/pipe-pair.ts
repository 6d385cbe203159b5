/**
 * Two ends of a netmap pipe in one program: the sender fills tx slots in
 * place, the receiver reads the very same buffers (they are swapped, not
 * copied). Run the two halves in different processes just the same.
 *   node dist/examples/pipe-pair.js
 */
import { open } from '@x/netmap';

// The pipe's name is shared by every process on the host: the pid keeps two
// copies of this example (e.g. parallel test runs) from opening each other's.
const name = `vale0:demo${process.pid}`;
const tx = await open(`${name}{0`); // master end: whoever opens first creates the pipe
const rx = await open(`${name}}0`); // slave end: attaches

const ring = tx.txRings[0]!;
let sent = 0;
while (!ring.empty() && sent < 100) {
  const i = ring.head;
  const o = ring.bufOffset(i);
  ring.bytes.fill(0xff, o, o + 6); // broadcast destination
  ring.bytes[o + 14] = sent; // a payload byte
  ring.setLen(i, 60);
  ring.head = ring.cur = ring.next(i);
  sent++;
}
tx.txsync();

await rx.poll({ rx: true }); // until frames are there
let received = 0;
rx.dispatch(Infinity, (frame) => {
  if (frame[14] === received) received++;
});
rx.rxsync();
console.log(`sent ${sent}, received ${received} in order`);
tx.close();
rx.close();
