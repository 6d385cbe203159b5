/**
 * A real VM on vale-ts: one QEMU guest (Debian's kernel under TCG, a busybox
 * initramfs) with two NICs, on two switches:
 *
 *   eth0  -netdev stream (rootless) --- vale0:vm  [stream port]  --- vale0:nsa [TAP] --- namespace A
 *   eth1  -netdev tap (QEMU's own TAP, bridged by the host stack to a
 *         vnet_hdr TAP port)          --- vale1:br  [TAP, vnet_hdr] --- vale1:nsb [TAP] --- namespace B
 *
 * Pings both ways on each path, and a TCP transfer from the guest with its
 * checksum/TSO offloads on (QEMU's TAP backend negotiates them with the
 * guest): its GSO frames reach vale-ts whole, are segmented and checksummed
 * by the vnet_hdr TAP port's driver, and namespace B's kernel verifies them.
 * One guest boot for the file.
 */
import test from 'ava';
import os from 'node:os';
import path from 'node:path';
import { ValeClient, ValeServer } from '../../src/index.js';
import { inNs, ip, makeNs, plugInto, tcpSink } from '../fixtures/netns.js';
import { ensurePackages } from '../fixtures/system-packages.js';
import { VmGuest } from '../fixtures/vm-guest.js';

const tag = `vm${process.pid}`;
const nsA = `${tag}a`;
const nsB = `${tag}b`;
const qtap = `${tag}q`;
const bridge = `${tag}br`;
const ctl = path.join(os.tmpdir(), `vm-guest-${process.pid}.ctl`);
const streamSock = path.join(os.tmpdir(), `vm-guest-${process.pid}.stream`);
const cleanups: (() => void | Promise<void>)[] = [];
let srv: ValeServer;
let vale: ValeClient;
let guest: VmGuest;

const quietly = (f: () => unknown) => (): void => {
  try {
    f();
  } catch {
    // already gone
  }
};

test.before(async () => {
  ensurePackages(['qemu-system-x86', 'busybox-static', 'kmod', 'iproute2', 'iputils-ping']);
  cleanups.push(makeNs(nsA), makeNs(nsB));
  // closed before the namespaces go (cleanups run in reverse)
  srv = await ValeServer.listen({ socket: ctl });
  cleanups.push(() => srv.close());
  vale = new ValeClient({ socket: ctl });
  await vale.create('vale0:vm', {}, { driver: { kind: 'stream', path: streamSock } });
  await vale.create('vale0:nsa', {}, { driver: { kind: 'tap', ifname: nsA } });
  plugInto(nsA, nsA, '10.211.1.2/24');
  await vale.create('vale1:nsb', {}, { driver: { kind: 'tap', ifname: nsB } });
  plugInto(nsB, nsB, '10.211.2.2/24');
  await vale.create('vale1:br', {}, { driver: { kind: 'tap', ifname: `${tag}g`, vnetHdr: true } });
  // QEMU's TAP (it opens it with IFF_VNET_HDR and negotiates offloads with the guest), bridged to the vnet_hdr TAP port
  ip('tuntap', 'add', qtap, 'mode', 'tap', 'vnet_hdr');
  cleanups.push(quietly(() => ip('link', 'del', qtap)));
  ip('link', 'add', bridge, 'type', 'bridge');
  cleanups.push(quietly(() => ip('link', 'del', bridge)));
  for (const dev of [qtap, `${tag}g`]) ip('link', 'set', dev, 'master', bridge, 'up');
  ip('link', 'set', bridge, 'up');
  guest = await VmGuest.boot([
    { netdev: `stream,server=off,addr.type=unix,addr.path=${streamSock}`, cidr: '10.211.1.10/24' },
    { netdev: `tap,ifname=${qtap},script=no,downscript=no,vhost=off`, cidr: '10.211.2.10/24' },
  ]);
  cleanups.push(() => guest.close());
});

test.after.always(async () => {
  for (const c of cleanups.reverse()) await c();
});

const driverCounters = async (sw: string, port: string): Promise<Record<string, number>> => {
  const [s] = await vale.stats(sw);
  return s!.ports.find((x) => x.name === port)!.driver!.counters;
};

test.serial('-netdev stream: the guest and a namespace behind a TAP port ping each other', async (t) => {
  t.timeout(90_000);
  const g = await guest.run('ping -c 3 -w 60 10.211.1.2');
  t.is(g.rc, 0, g.out);
  t.regex(g.out, /3 packets received/);
  t.regex(await inNs(nsA, ['ping', '-c', '3', '-i', '0.2', '-w', '60', '10.211.1.10']), /3 received/);
  const c = await driverCounters('vale0', 'vale0:vm');
  t.true(c['inFrames']! >= 6 && c['outFrames']! >= 6, JSON.stringify(c));
  t.is(c['connects'], 1);
});

test.serial('-netdev tap (bridged to a vnet_hdr TAP port): the guest and a namespace ping each other', async (t) => {
  t.timeout(90_000);
  const g = await guest.run('ping -c 3 -w 60 10.211.2.2');
  t.is(g.rc, 0, g.out);
  t.regex(await inNs(nsB, ['ping', '-c', '3', '-i', '0.2', '-w', '60', '10.211.2.10']), /3 received/);
});

test.serial('TCP from the guest with its TSO/checksum offloads on: segmented by vale-ts, verified by the namespace', async (t) => {
  t.timeout(90_000);
  const bytes = 4 << 20;
  const sink = tcpSink(nsB, '10.211.2.2', 5201, bytes);
  t.teardown(() => sink.kill());
  await sink.listening;
  const before = await driverCounters('vale1', 'vale1:br');
  const g = await guest.run(`dd if=/dev/urandom of=/tmp/f bs=65536 count=${bytes / 65536} 2>/dev/null && sha256sum /tmp/f && nc 10.211.2.2 5201 < /tmp/f`);
  const got = await sink.result;
  t.is(got.bytes, bytes);
  t.is(got.sha256, /^([0-9a-f]{64})/m.exec(g.out)?.[1] ?? `no digest from the guest: ${g.out}`);
  const after = await driverCounters('vale1', 'vale1:br');
  t.true(after['offloadSegmented']! > before['offloadSegmented']!, `the guest's TSO frames should arrive whole: ${JSON.stringify(after)}`);
  t.is(after['dropBadVnetHdr'], 0);
});
