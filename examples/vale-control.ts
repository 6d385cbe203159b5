/**
 * Controlling a switch from a program, as valectl does: ValeClient talks to
 * a running vale-ts (here one embedded in this process, on a private socket);
 * KernelValeControl does the same with kernel VALE through /dev/netmap.
 *   node dist/examples/vale-control.js
 */
import { KernelValeControl, ValeClient, ValeControlError, ValeServer, kernelAvailable, open } from '@x/netmap';
import os from 'node:os';
import path from 'node:path';

const socket = path.join(os.tmpdir(), `vale-control-${process.pid}.sock`);
const server = await ValeServer.listen({ socket }); // in real life: `vale-ts` running elsewhere

const vale = new ValeClient({ socket });
// a persistent port: it stays when its users close it, until removed
const made = await vale.create('vale0:store', { txSlots: 512, rxSlots: 512 });
console.log(`created ${made.name}: ${made.txSlots}/${made.rxSlots} slots, ${made.memsize} bytes`);

const user = await open('vale0:user', { socket });
for (const p of await vale.list()) console.log(`${p.name} bridge_idx ${p.bridgeIndex} port_idx ${p.portIndex}${p.persistent ? ' (persistent)' : ''}`);

const [sw] = await vale.stats('vale0');
console.log(`vale0 has ${sw!.ports.length} ports`);

try {
  await vale.remove('vale0:user'); // not persistent: refused with a reason
} catch (e) {
  if (!(e instanceof ValeControlError)) throw e;
  console.log(`remove vale0:user: ${e.code}`);
}
await vale.remove('vale0:store');
console.log(`after remove: ${(await vale.list()).map((p) => p.name).join(', ')}`);

if (kernelAvailable()) {
  const k = new KernelValeControl();
  console.log(`kernel VALE ports: ${(await k.list()).length}`);
} else {
  console.log('no /dev/netmap here: kernel VALE control (KernelValeControl) skipped');
}
user.close();
server.close();
