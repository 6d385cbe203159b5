/**
 * examples/router.ts and examples/nat.ts against the real Linux stack:
 * namespaces behind TAP ports on two vale-ts switches, the router (or NAT)
 * a separate process attached to both. Through the router: ping (TTL seen
 * decremented: 63) and a TCP transfer checked by SHA-256. Through the NAT:
 * the same from an inside namespace to an outside one that has no route
 * back to the inside subnet, and the connection table lists the flows.
 */
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ValeClient, ValeServer, type NatEntry } from '../../src/index.js';
import { inNs, ip, makeNs, plugInto, tcpTransfer } from '../fixtures/netns.js';
import { ensurePackages } from '../fixtures/system-packages.js';
import { assertPingReplies } from '../fixtures/ping-output.js';

const tag = `l3${process.pid}`;
const socket = path.join(os.tmpdir(), `l3-${process.pid}.sock`);
const example = (f: string): string => path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'examples', f);
const cleanups: (() => void)[] = [];
const children: ChildProcess[] = [];
let srv: ValeServer;
let vale: ValeClient;

/** A namespace `ns` behind a TAP port `port` (its interface named after the namespace) with `cidr` and a default route via `gw`. */
async function host(ns: string, port: string, cidr: string, gw: string): Promise<void> {
  cleanups.push(makeNs(ns));
  await vale.create(port, {}, { driver: { kind: 'tap', ifname: ns } });
  plugInto(ns, ns, cidr);
  ip('-n', ns, 'route', 'add', 'default', 'via', gw);
}

/** An example as a child process, its stdout split in lines. */
function start(file: string, args: string[]): { proc: ChildProcess; line: (re: RegExp) => Promise<string>; output: () => string } {
  const proc = spawn(process.execPath, [example(file), '--socket', socket, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let seen = 0;
  const waiters: { re: RegExp; resolve: (l: string) => void }[] = [];
  const scan = (): void => {
    const lines = out.split('\n');
    for (; seen < lines.length - 1; seen++) {
      const l = lines[seen]!;
      for (const w of waiters.splice(0)) {
        if (w.re.test(l)) w.resolve(l);
        else waiters.push(w);
      }
    }
  };
  proc.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    scan();
  });
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  children.push(proc);
  return {
    proc,
    output: () => out,
    // only lines printed after the call match: a hang guard is the test's timeout
    line: (re) => new Promise((resolve) => waiters.push({ re, resolve })),
  };
}

test.before(async () => {
  ensurePackages(['iproute2', 'iputils-ping']);
  srv = await ValeServer.listen({ socket });
  vale = new ValeClient({ socket });
});

test.after.always(() => {
  for (const p of children) p.kill('SIGKILL');
  // the switch first: its TAP drivers stop reading before the namespaces (and their TAPs) go
  srv?.close();
  for (const c of cleanups) c();
});

test.serial('router: ping (TTL 63 on arrival) and TCP between two switches\' subnets', async (t) => {
  t.timeout(90_000);
  const ex = start('router.js', ['--if', 'vale0:gw=10.1.0.1/24', '--if', 'vale1:gw=10.2.0.1/24']);
  const up = ex.line(/router up: vale1:gw/);
  await up;
  await host(`${tag}a`, 'vale0:a', '10.1.0.2/24', '10.1.0.1');
  await host(`${tag}b`, 'vale1:b', '10.2.0.2/24', '10.2.0.1');
  const p = await inNs(`${tag}a`, ['ping', '-c', '3', '-i', '0.2', '-w', '60', '10.2.0.2']);
  assertPingReplies(t, p, 3);
  t.regex(p, /ttl=63 /, 'the reply crossed the router once: 64 - 1');
  assertPingReplies(t, await inNs(`${tag}a`, ['ping', '-c', '1', '-w', '60', '10.1.0.1']), 1);
  const r = await tcpTransfer(`${tag}b`, `${tag}a`, '10.1.0.2', 5201, 4 << 20);
  t.is(r.received.bytes, 4 << 20);
  t.is(r.received.sha256, r.sent.sha256);
  const s = ex.line(/^stats /);
  ex.proc.kill('SIGUSR1');
  const { counters, neighbours } = JSON.parse((await s).slice(6)) as { counters: Record<string, number>; neighbours: { ip: string }[] };
  t.true(counters['forwarded']! > 2000, JSON.stringify(counters));
  t.is(counters['echoRepliesSent'], 1);
  t.is(counters['dropBadIpChecksum'], 0);
  t.deepEqual(neighbours.map((n) => n.ip).sort(), ['10.1.0.2', '10.2.0.2']);
});

test.serial('NAT: an inside namespace reaches an outside one that has no route back; the table lists the flows', async (t) => {
  t.timeout(90_000);
  const ex = start('nat.js', ['--inside', 'vale2:gw=10.1.0.1/24', '--outside', 'vale3:nat=192.0.2.1/24']);
  await ex.line(/nat up: vale3:nat .* outside/);
  await host(`${tag}i`, 'vale2:in', '10.1.0.2/24', '10.1.0.1');
  cleanups.push(makeNs(`${tag}o`));
  await vale.create('vale3:out', {}, { driver: { kind: 'tap', ifname: `${tag}o` } });
  plugInto(`${tag}o`, `${tag}o`, '192.0.2.2/24'); // and no route to 10.1.0.0/24
  const p = await inNs(`${tag}i`, ['ping', '-c', '3', '-i', '0.2', '-w', '60', '192.0.2.2']);
  assertPingReplies(t, p, 3);
  t.regex(p, /ttl=63 /);
  const r = await tcpTransfer(`${tag}i`, `${tag}o`, '192.0.2.2', 5202, 2 << 20);
  t.is(r.received.bytes, 2 << 20);
  t.is(r.received.sha256, r.sent.sha256);
  // the outside saw only the NAT's address
  t.regex(ip('-n', `${tag}o`, 'neigh', 'show'), /192\.0\.2\.1 /);
  t.notRegex(ip('-n', `${tag}o`, 'neigh', 'show'), /10\.1\.0\./);
  const s = ex.line(/^stats /);
  ex.proc.kill('SIGUSR1');
  const { counters, nat } = JSON.parse((await s).slice(6)) as { counters: Record<string, number>; nat: NatEntry[] };
  const tcp = nat.find((e) => e.protocol === 'tcp' && e.remotePort === 5202);
  t.truthy(tcp, JSON.stringify(nat));
  t.is(tcp!.insideAddr, '10.1.0.2');
  t.is(tcp!.remoteAddr, '192.0.2.2');
  t.true(tcp!.packetsIn > 0 && tcp!.packetsOut > 0);
  t.truthy(nat.find((e) => e.protocol === 'icmp' && e.insideAddr === '10.1.0.2'));
  t.true(counters['natTranslatedOut']! > 1000 && counters['natTranslatedIn']! > 0, JSON.stringify(counters));
  t.is(counters['natEntries'], nat.length);
  t.is(counters['dropNatUnsupported'], 0);
});
