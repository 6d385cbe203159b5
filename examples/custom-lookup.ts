/**
 * A switch with its own forwarding decision instead of the learning bridge:
 * the static L3 forwarder of examples/routed-lookup.ts (the "routed mode" of
 * the design notes), which routes on the IPv4 destination's last octet and
 * drops everything that is not IPv4. The lookup reads the switch's own copy
 * of each frame's first bytes, so a client cannot slip a frame past the
 * filter by rewriting it after sending.
 * Clients attach as usual: `pkt-gen-ts -i vale0:1 -f tx -d 10.0.0.2`.
 *   node dist/examples/custom-lookup.js [--socket PATH]
 */
import { Switch, ValeServer } from '@x/netmap';
import { routed } from './routed-lookup.js';

const socket = process.argv.includes('--socket') ? process.argv[process.argv.indexOf('--socket') + 1] : undefined;
const sw = new Switch('vale0', { lookup: routed });
const server = await ValeServer.listen({ switches: [sw], ...(socket ? { socket } : {}) });
console.log(`routing switch vale0 listening on ${server.socketPath}`);
process.on('SIGINT', () => {
  server.close();
  process.exit(0);
});
