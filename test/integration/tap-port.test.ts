/**
 * TAP ports against the real Linux stack: two namespaces, each behind a TAP
 * that vale-ts serves, ping each other through the switch, and a TCP
 * transfer from the namespace whose TAP carries virtio-net headers (with
 * the kernel's TSO/checksum offloads on) arrives intact at the one whose TAP
 * does not: the GSO frames were segmented and checksummed by the driver, and
 * the receiving kernel verified every checksum.
 */
import test from 'ava';
import os from 'node:os';
import path from 'node:path';
import { ValeClient, ValeServer } from '../../src/index.js';
import { inNs, ip, makeNs, plugInto, tcpTransfer } from '../fixtures/netns.js';
import { ensurePackages } from '../fixtures/system-packages.js';
import { untilAnswer } from '../fixtures/wait.js';

const tag = `vt${process.pid}`;
const nsA = `${tag}a`;
const nsB = `${tag}b`;
const socket = path.join(os.tmpdir(), `tap-port-${process.pid}.sock`);
const cleanups: (() => void)[] = [];
let srv: ValeServer;
let vale: ValeClient;

test.before(async () => {
  ensurePackages(['iproute2', 'iputils-ping', 'ethtool']);
  srv = await ValeServer.listen({ socket });
  vale = new ValeClient({ socket });
  cleanups.push(makeNs(nsA), makeNs(nsB));
  // A: plain frames; B: virtio-net headers with the kernel's offloads on
  await vale.create('vale0:a', {}, { driver: { kind: 'tap', ifname: nsA } });
  await vale.create('vale0:b', {}, { driver: { kind: 'tap', ifname: nsB, vnetHdr: true, queues: 2 } });
  plugInto(nsA, nsA, '10.211.0.1/24');
  plugInto(nsB, nsB, '10.211.0.2/24');
});

test.after.always(() => {
  srv?.close();
  for (const c of cleanups) c();
});

const driverCounters = async (port: string): Promise<Record<string, number>> => {
  const [sw] = await vale.stats('vale0');
  const p = sw!.ports.find((x) => x.name === port);
  if (!p?.driver) throw new Error(`${port} has no driver in the stats`);
  return p.driver.counters;
};

test.serial('two namespaces behind TAP ports ping each other through vale-ts, both ways', async (t) => {
  t.timeout(60_000);
  const list = await vale.list();
  t.regex(list.find((p) => p.name === 'vale0:b')!.driver ?? '', /^tap vt\d+b \(vnet_hdr\+offloads, 2 queues\)$/);
  // -w: a hang guard; ping exits as soon as it has its 3 replies
  const ab = await inNs(nsA, ['ping', '-c', '3', '-i', '0.2', '-w', '50', '10.211.0.2']);
  t.regex(ab, /3 received/);
  const ba = await inNs(nsB, ['ping', '-c', '3', '-i', '0.2', '-w', '50', '10.211.0.1']);
  t.regex(ba, /3 received/);
  const a = await driverCounters('vale0:a');
  t.true(a['inFrames']! >= 6 && a['outFrames']! >= 6, JSON.stringify(a));
});

test.serial('TCP from the vnet_hdr TAP: GSO frames segmented and checksummed on the way in, verified by the receiving kernel', async (t) => {
  t.timeout(120_000);
  // the TAP's interface offers TSO because vale-ts turned the offloads on
  t.regex(ip('netns', 'exec', nsB, 'ethtool', '-k', nsB), /tcp-segmentation-offload: on/);
  const before = await driverCounters('vale0:b');
  const r = await tcpTransfer(nsB, nsA, '10.211.0.1', 5201, 8 << 20);
  t.is(r.received.bytes, 8 << 20);
  t.is(r.received.sha256, r.sent.sha256);
  const after = await driverCounters('vale0:b');
  t.true(after['offloadSegmented']! > before['offloadSegmented']!, `no GSO frame was segmented: ${JSON.stringify(after)}`);
  t.true(after['offloadSegments']! > after['offloadSegmented']!);
  t.is(after['dropBadVnetHdr'], 0);
  t.is(after['dropTooLong'], 0);
});

test.serial('a frame longer than the port\'s buffer is dropped and counted, never truncated', async (t) => {
  t.timeout(60_000);
  // A's TAP has no vnet header, so the kernel hands over whole 3042-byte frames; the port's buffers are 2048
  ip('-n', nsA, 'link', 'set', nsA, 'mtu', '4000');
  t.teardown(() => ip('-n', nsA, 'link', 'set', nsA, 'mtu', '1500'));
  const before = (await driverCounters('vale0:a'))['dropTooLong']!;
  // one big echo request, unanswerable: ping's own deadline ends it, the counter is what is checked
  await inNs(nsA, ['ping', '-c', '1', '-s', '3000', '-w', '1', '10.211.0.2']).catch(() => undefined);
  const after = await untilAnswer(() => driverCounters('vale0:a'), (c) => c['dropTooLong']! > before);
  t.true(after['dropTooLong']! > before);
});

test.serial('a TAP port with bad settings is refused with the reason, and leaves no port behind', async (t) => {
  await t.throwsAsync(vale.create('vale0:bad', {}, { driver: { kind: 'tap', ifname: 'x/y' } }), { message: /TAP name 'x\/y'/ });
  await t.throwsAsync(vale.create('vale0:bad', {}, { driver: { kind: 'tap', ifname: 'ok0', queues: 99 } }), { message: /queues/ });
  await t.throwsAsync(vale.create('vale0:bad', {}, { driver: { kind: 'tap', ifname: 'ok0', vnetHdr: true, typo: 1 } }), { message: /no setting 'typo'/ });
  t.falsy((await vale.list()).find((p) => p.name === 'vale0:bad'));
});
