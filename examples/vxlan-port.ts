/**
 * A VXLAN port, rootless: vale-ts's VTEP on 127.0.0.1 with `srcport: 'fixed'`
 * (no raw socket, so no CAP_NET_RAW), and this program playing the remote
 * VTEP with a plain UDP socket: it sends one VXLAN datagram (VNI 42, a
 * broadcast frame), which reaches another port of the switch; that port
 * answers the sender's MAC, and the VTEP, having learned where that MAC
 * lives, sends the answer back as VXLAN. With real hosts: `remote:` is the
 * other VTEP's address and the default per-flow source ports are used.
 *   node dist/examples/vxlan-port.js
 */
import { ValeClient, ValeServer, open } from '@x/netmap';
import dgram from 'node:dgram';
import os from 'node:os';
import path from 'node:path';

const socket = path.join(os.tmpdir(), `vxlan-example-${process.pid}.ctl`);
const server = await ValeServer.listen({ socket }); // in real life: `vale-ts` running elsewhere
const vale = new ValeClient({ socket });

// the "remote VTEP": this program's UDP socket on an ephemeral port
const remote = dgram.createSocket('udp4');
await new Promise<void>((r) => remote.bind(0, '127.0.0.1', r));
const remotePort = remote.address().port;
const valePort = 20000 + (process.pid % 20000);

await vale.create('vale0:vx0', {}, {
  driver: { kind: 'vxlan', vni: 42, local: `127.0.0.1:${valePort}`, remote: ['127.0.0.1'], dstport: remotePort, srcport: 'fixed' },
});
const peer = await open('vale0:peer', { socket });

// VXLAN header: flags 0x08 (VNI valid), VNI 42; then a broadcast frame from 02:00:00:00:00:01
const hdr = Buffer.from([0x08, 0, 0, 0, 0, 0, 42, 0]);
const frame = Buffer.alloc(60);
frame.fill(0xff, 0, 6);
Buffer.from([2, 0, 0, 0, 0, 1]).copy(frame, 6);
frame.writeUInt16BE(0x88b5, 12);
// the answer; the port's once-a-second HELLOs of the co-resident shortcut
// (flags 0x48, docs/vxlan-shortcut.md) reach this socket too and are skipped,
// as a Linux VTEP drops them
const answered = new Promise<Buffer>((r) => {
  const see = (m: Buffer): void => {
    if (m.length >= 8 && (m[0]! & 0x40) === 0) {
      remote.off('message', see);
      r(m);
    }
  };
  remote.on('message', see);
});
remote.send(Buffer.concat([hdr, frame]), valePort, '127.0.0.1');

let got = 0;
while (got === 0) {
  await peer.poll({ rx: true });
  got += peer.dispatch(16, (f) => console.log(`vale0:peer received ${f.length} bytes from ${[...f.subarray(6, 12)].map((b) => b.toString(16).padStart(2, '0')).join(':')}`));
  peer.rxsync();
}
// the answer, unicast to the MAC the VTEP just learned
const reply = Buffer.alloc(60);
Buffer.from([2, 0, 0, 0, 0, 1]).copy(reply, 0);
Buffer.from([2, 0, 0, 0, 0, 2]).copy(reply, 6);
reply.writeUInt16BE(0x88b5, 12);
if (!peer.inject(reply)) throw new Error("vale0:peer has no tx room");
peer.txsync();
const back = await answered;
console.log(`remote VTEP received VXLAN: flags 0x${back[0]!.toString(16)}, VNI ${back.readUIntBE(4, 3)}, inner frame to ${[...back.subarray(8, 14)].map((b) => b.toString(16).padStart(2, '0')).join(':')}`);

const [sw] = await vale.stats('vale0');
const d = sw!.ports.find((p) => p.name === 'vale0:vx0')!.driver!;
console.log(d.describe);
console.log(`inFrames ${d.counters['inFrames']}, outFrames ${d.counters['outFrames']}, learned ${d.counters['fdbLearned']}, remote 127.0.0.1 txFrames ${d.counters['remote 127.0.0.1 txFrames']}`);

remote.close();
peer.close();
server.close();
