/**
 * Watching a port: a `/rt` monitor of vale0:b (what it receives and sends)
 * written as pcapng through a tcpdump filter, while vale0:a sends it frames.
 *   node dist/examples/capture.js > out.pcapng   (then: tcpdump -r out.pcapng)
 * Filters need libpcap (Debian: libpcap0.8).
 */
import { Switch, ValeServer, open, PcapngWriter, CaptureFilter, capture, monitorRings } from '@x/netmap';
import os from 'node:os';
import path from 'node:path';

const socket = path.join(os.tmpdir(), `capture-example-${process.pid}.sock`);
const server = await ValeServer.listen({ socket, switches: [new Switch('vale0')] });
const a = await open('vale0:a', { socket });
const b = await open('vale0:b', { socket });
const mon = await open('vale0:b/rt', { socket });

// ten broadcast frames from a (b receives them), the IEEE experimental ethertype
const frame = new Uint8Array(60);
frame.fill(0xff, 0, 6);
frame.set([2, 0, 0, 0, 0, 0xa, 0x88, 0xb5], 6);
for (let i = 0; i < 10; i++) a.inject(frame);
a.txsync();

const chunks: Uint8Array[] = [];
const writer = new PcapngWriter({ write: (c) => (chunks.push(c), true) }, { tsResolution: 'ns' });
const res = await capture([{ port: mon, rings: monitorRings('vale0:b', true, true) }], writer, {
  filter: new CaptureFilter('ether proto 0x88b5'),
  count: 10,
});
if (!process.stdout.isTTY) process.stdout.write(Buffer.concat(chunks));
console.error(`captured ${res.written} frames on ${writer.interfaces().map((i) => i.name).join(', ')}`);
for (const p of [mon, a, b]) p.close();
server.close();
