/**
 * Attaching a Linux interface to a switch from a program (vale-ctl-ts -a):
 * a veth pair made here, its one end attached to vale0 through AF_XDP where
 * the kernel allows it (else AF_PACKET: `backend: 'auto'`), the listing
 * saying which backend serves it, then detached. Needs root.
 *   node dist/examples/attach-interface.js [auto|afxdp|packet]
 */
import { ValeClient, ValeServer, type AttachBackend } from '@x/netmap';
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';

const backend = (process.argv[2] ?? 'auto') as AttachBackend;
const veth = `ex${process.pid % 100000}`;
execFileSync('ip', ['link', 'add', veth, 'type', 'veth', 'peer', 'name', `${veth}p`]);
const socket = path.join(os.tmpdir(), `attach-example-${process.pid}.sock`);
const server = await ValeServer.listen({ socket }); // in real life: `vale-ts` running elsewhere
try {
  const vale = new ValeClient({ socket });
  await vale.attach(`vale0:${veth}`, { backend });
  const [sw] = await vale.stats('vale0');
  for (const p of sw!.ports) console.log(`${p.name}: ${p.driver?.describe ?? '(no driver)'}`);
  await vale.detach(`vale0:${veth}`); // the interface goes back as it was
  console.log(`detached ${veth}`);
} finally {
  await server.close();
  execFileSync('ip', ['link', 'del', veth]);
}
