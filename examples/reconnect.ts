/**
 * A switch that goes away and comes back: a plain port fails loudly with
 * SwitchGoneError; a port opened with { reconnect: true } is re-created on
 * the restarted switch and says how many frames the gap cost.
 *   node dist/examples/reconnect.js
 */
import { ValeServer, SwitchGoneError, open, type ReconnectEvent } from '@x/netmap';
import os from 'node:os';
import path from 'node:path';

const socket = path.join(os.tmpdir(), `reconnect-${process.pid}.sock`);
let server = await ValeServer.listen({ socket });

const plain = await open('vale0:plain', { socket });
const app = await open('vale0:app', { socket, reconnect: true });
const back = new Promise<ReconnectEvent>((resolve) => (app.onReconnect = resolve));

const frame = new Uint8Array(60);
frame.fill(0xff, 0, 6); // broadcast
frame.set([2, 0, 0, 0, 0, 0xb], 6);
for (let i = 0; i < 3; i++) app.inject(frame); // queued, not yet handed to the switch

server.close('restarting'); // in real life: vale-ts killed, or restarted by systemd
try {
  await plain.poll({ rx: true });
} catch (e) {
  if (!(e instanceof SwitchGoneError)) throw e;
  console.log(`plain port: ${e.name}`);
}
plain.close();

server = await ValeServer.listen({ socket });
const ev = await back;
console.log(`app reconnected (${ev.reconnects}), ${ev.lostTxFrames} queued frames lost in the gap`);
app.inject(frame); // the rings are the new registration's now
app.txsync();
console.log('counters:', app.counters());
app.close();
server.close();
