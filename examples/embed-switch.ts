/**
 * Embedding the switch: a learning-bridge vale0 inside your own Node program,
 * serving clients over the usual control socket, with its counters at hand.
 *   node dist/examples/embed-switch.js
 */
import { Switch, ValeServer, open } from '@x/netmap';
import os from 'node:os';
import path from 'node:path';

const socket = path.join(os.tmpdir(), `embed-${process.pid}.sock`);
const sw = new Switch('vale0', { batch: 256, macAgeMs: 60_000 });
const server = await ValeServer.listen({ socket, switches: [sw] });

// two clients (in real life: other processes, e.g. pkt-gen-ts)
const a = await open('vale0:a', { socket });
const b = await open('vale0:b', { socket });
const frame = new Uint8Array(60);
frame.fill(0xff, 0, 6); // broadcast
frame.set([2, 0, 0, 0, 0, 0xa], 6);
a.inject(frame);
a.txsync();
await b.poll({ rx: true }); // until the frame is there
console.log(`b received ${b.rxAvailable()} frame(s)`);
console.log('counters of vale0:a:', sw.counters(sw.port('vale0:a')!.index));
console.log('MAC table:', sw.stats().macTable);
a.close();
b.close();
server.close();
