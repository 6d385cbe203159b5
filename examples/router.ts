/**
 * A static IPv4 router between two vale-ts switches: a port on each
 * (vale0:gw, vale1:gw) that answers ARP for its gateway address, forwards
 * between the subnets with the TTL decremented and the IP checksum updated
 * incrementally, and answers pings to itself. Hosts use it as their gateway:
 *   ip route add 10.2.0.0/24 via 10.1.0.1     (on vale0's side)
 *   node dist/examples/router.js [--socket PATH] [--if vale0:gw=10.1.0.1/24 --if vale1:gw=10.2.0.1/24]
 *        [--route PREFIX=VIA ...] [--rp-filter strict|loose|off] [--stats-ms MS]
 * Prints its counters and neighbours on SIGUSR1 (every MS with --stats-ms), and stops on SIGINT/SIGTERM.
 */
import { parseArgs } from 'node:util';
import { Router, RouterPorts } from '@x/netmap';
import { nameValue, rpFilterOf, serve } from './router-cli.js';

const { values } = parseArgs({
  options: {
    socket: { type: 'string' },
    if: { type: 'string', multiple: true, default: ['vale0:gw=10.1.0.1/24', 'vale1:gw=10.2.0.1/24'] },
    route: { type: 'string', multiple: true, default: [] },
    'rp-filter': { type: 'string', default: 'strict' },
    'stats-ms': { type: 'string' },
  },
});

const split = (s: string, what: string): [string, string] => nameValue(s, what, 'vale0:gw=10.1.0.1/24');
const ifs = values.if.map((s) => split(s, 'if'));
const router = new Router({
  interfaces: ifs.map(([name, address]) => ({ name, address })),
  routes: values.route.map((s) => split(s, 'route')).map(([prefix, via]) => ({ prefix, via })),
  rpFilter: rpFilterOf(values['rp-filter']),
});
const run = await RouterPorts.start(router, { ports: ifs.map(([name]) => name), ...(values.socket ? { socket: values.socket } : {}) });
for (const i of router.interfaces) console.log(`router up: ${i.name} ${i.address} (${i.prefix}) mac ${i.mac}`);

const stats = (): void => console.log(`stats ${JSON.stringify({ counters: router.counters(), neighbours: router.neighbours() })}`);
await serve(run, 'router', stats, values['stats-ms']);
