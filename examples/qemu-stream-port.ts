/**
 * A port for a QEMU guest, rootless: vale-ts listens on a unix socket that
 * QEMU's `-netdev stream` connects to. Here the "guest" is this program
 * speaking QEMU's framing (a 4-byte big-endian length, then the frame), so
 * the example runs without QEMU; the QEMU command line is printed.
 *   node dist/examples/qemu-stream-port.js
 */
import { ValeClient, ValeServer, open } from '@x/netmap';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const socket = path.join(os.tmpdir(), `qemu-stream-${process.pid}.ctl`);
const vmSocket = path.join(os.tmpdir(), `qemu-stream-${process.pid}.vm`);
const server = await ValeServer.listen({ socket }); // in real life: `vale-ts` running elsewhere
const vale = new ValeClient({ socket });

// vale-ts serves the port's far side itself: a driver thread moves frames between the socket and the port's rings
await vale.create('vale0:vm1', {}, { driver: { kind: 'stream', path: vmSocket } });
console.log(`qemu-system-x86_64 ... -netdev stream,id=n0,server=off,addr.type=unix,addr.path=${vmSocket} -device virtio-net-pci,netdev=n0`);

// another port on the switch, to see the guest's frame arrive
const peer = await open('vale0:peer', { socket });

// what QEMU would send: one broadcast frame, length-prefixed
const frame = Buffer.alloc(60);
frame.fill(0xff, 0, 6);
Buffer.from([0x52, 0x54, 0, 0x12, 0x34, 0x56]).copy(frame, 6);
frame.writeUInt16BE(0x88b5, 12);
const len = Buffer.alloc(4);
len.writeUInt32BE(frame.length);
const guest = net.connect(vmSocket, () => guest.write(Buffer.concat([len, frame])));

let got = 0;
while (got === 0) {
  await peer.poll({ rx: true });
  got += peer.dispatch(16, (f) => console.log(`vale0:peer received ${f.length} bytes from ${[...f.subarray(6, 12)].map((b) => b.toString(16).padStart(2, '0')).join(':')}`));
  peer.rxsync();
}

const [sw] = await vale.stats('vale0');
const d = sw!.ports.find((p) => p.name === 'vale0:vm1')!.driver!;
console.log(`${d.describe}: inFrames ${d.counters['inFrames']}, dropTooLong ${d.counters['dropTooLong']}`);

guest.destroy();
peer.close();
server.close();
