/**
 * A source NAT between two vale-ts switches: hosts on vale0 (10.1.0.0/24,
 * gateway 10.1.0.1) reach the network on vale1 through one outside address
 * (192.0.2.1), TCP and UDP ports and ICMP echo identifiers translated, with
 * a bounded connection table whose entries time out. The outside network
 * needs no route back to 10.1.0.0/24: it only ever sees 192.0.2.1.
 *   node dist/examples/nat.js [--socket PATH] [--inside vale0:gw=10.1.0.1/24] [--outside vale1:nat=192.0.2.1/24]
 *        [--route PREFIX=VIA ...] [--max-entries N] [--max-per-host N] [--rp-filter strict|loose|off] [--stats-ms MS]
 * Prints counters and the connection table on SIGUSR1 (every MS with --stats-ms); stops on SIGINT/SIGTERM.
 */
import { parseArgs } from 'node:util';
import { Router, RouterPorts } from '@x/netmap';
import { nameValue, rpFilterOf, serve } from './router-cli.js';

const { values } = parseArgs({
  options: {
    socket: { type: 'string' },
    inside: { type: 'string', default: 'vale0:gw=10.1.0.1/24' },
    outside: { type: 'string', default: 'vale1:nat=192.0.2.1/24' },
    route: { type: 'string', multiple: true, default: [] },
    'max-entries': { type: 'string', default: '4096' },
    // default: a quarter of --max-entries, so one host can't take everyone's flows
    'max-per-host': { type: 'string' },
    'rp-filter': { type: 'string', default: 'strict' },
    'stats-ms': { type: 'string' },
  },
});

const split = (s: string, what: string): [string, string] => nameValue(s, what, 'vale1:nat=192.0.2.1/24');
const inside = split(values.inside, 'inside');
const outside = split(values.outside, 'outside');
const router = new Router({
  interfaces: [
    { name: inside[0], address: inside[1] },
    { name: outside[0], address: outside[1] },
  ],
  routes: values.route.map((s) => split(s, 'route')).map(([prefix, via]) => ({ prefix, via })),
  nat: {
    outside: outside[0],
    table: { maxEntries: Number(values['max-entries']), ...(values['max-per-host'] !== undefined ? { maxEntriesPerHost: Number(values['max-per-host']) } : {}) },
  },
  rpFilter: rpFilterOf(values['rp-filter']),
});
const run = await RouterPorts.start(router, { ports: [inside[0], outside[0]], ...(values.socket ? { socket: values.socket } : {}) });
for (const i of router.interfaces) console.log(`nat up: ${i.name} ${i.address} (${i.prefix}) mac ${i.mac}${i.name === outside[0] ? ' outside' : ''}`);

const stats = (): void => console.log(`stats ${JSON.stringify({ counters: router.counters(), nat: router.natEntries() })}`);
await serve(run, 'nat', stats, values['stats-ms']);
