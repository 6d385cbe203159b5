/**
 * A vhost-user port from the library: vale-ts (embedded here) becomes the
 * vhost-user back-end on a unix socket, for QEMU's `-netdev vhost-user` or
 * DPDK's `net_virtio_user` to connect to. The port's listing line says what
 * serves it; its driver counters count frames each way and every drop.
 *   node dist/examples/vhost-user-port.js [SOCKET_PATH]
 */
import os from 'node:os';
import path from 'node:path';
import { ValeClient, ValeServer } from '@x/netmap';

const vhostPath = process.argv[2] ?? path.join(os.tmpdir(), `vm1-${process.pid}.sock`);
const socket = path.join(os.tmpdir(), `vhost-example-${process.pid}.sock`);
const server = await ValeServer.listen({ socket });
const vale = new ValeClient({ socket });

// server mode (vale-ts listens); `client: true` connects to a front-end that listens, and reconnects
await vale.create('vale0:vm1', {}, { driver: { kind: 'vhost-user', path: vhostPath, queuePairs: 2 } });
const [sw] = await vale.stats('vale0');
const port = sw!.ports.find((p) => p.name === 'vale0:vm1')!;
console.log(`vale0:vm1: ${port.driver!.describe}`);
console.log(`drop reasons counted: ${Object.keys(port.driver!.counters).filter((k) => k.startsWith('drop')).join(' ')}`);
console.log(`connect with: -chardev socket,id=c,path=${vhostPath} -netdev vhost-user,id=n,chardev=c -device virtio-net-pci,netdev=n`);
await vale.remove('vale0:vm1');
server.close();
