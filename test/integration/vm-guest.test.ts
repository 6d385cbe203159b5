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
 *   eth3  -netdev dgram (rootless)     --- vale3:vm  [dgram port]    --- vale3:nsd [TAP] --- namespace D
 *   eth2  -netdev vhost-user (QEMU server=on; guest memory a shared memfd)
 *                                     --- vale2:vm  [vhost-user, client] --- vale2:nsc [TAP] --- namespace C
 *
 * vale2 lives in a vale-ts process of its own, so that it can be killed and
 * started again while the guest runs: vale-ts reconnects to QEMU's socket and
 * traffic resumes. The guest's TSO frames on eth2 arrive whole in the
 * vhost-user port's virtqueue and are segmented there (20 MB, digests
 * compared). One guest boot for the file.
 */
import test, { type ExecutionContext } from 'ava';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ValeClient, ValeServer } from '../../src/index.js';
import { inNs, ip, makeNs, plugInto, tcpSink } from '../fixtures/netns.js';
import { ensurePackages } from '../fixtures/system-packages.js';
import { startValeTs } from '../fixtures/vale-ts-process.js';
import { vhostUserNic, VmGuest } from '../fixtures/vm-guest.js';
import { assertPingReplies } from '../fixtures/ping-output.js';

const tag = `vm${process.pid}`;
const nsA = `${tag}a`;
const nsB = `${tag}b`;
const nsC = `${tag}c`;
const nsD = `${tag}d`;
const dgramVale = path.join(os.tmpdir(), `vm-guest-${process.pid}.dgv`);
const dgramQemu = path.join(os.tmpdir(), `vm-guest-${process.pid}.dgq`);
const ctl2 = path.join(os.tmpdir(), `vm-guest-${process.pid}-2.ctl`);
const vhuSock = path.join(os.tmpdir(), `vm-guest-${process.pid}.vhu`);
const qtap = `${tag}q`;
const bridge = `${tag}br`;
const ctl = path.join(os.tmpdir(), `vm-guest-${process.pid}.ctl`);
const streamSock = path.join(os.tmpdir(), `vm-guest-${process.pid}.stream`);
const cleanups: (() => void | Promise<void>)[] = [];
let srv: ValeServer;
let vale: ValeClient;
let guest: VmGuest;
/** The vale-ts process that holds vale2 (the vhost-user port and namespace C's TAP). */
let vale2: { proc: ChildProcess; exited: Promise<void>; client: ValeClient } | undefined;

/**
 * Starts a vale-ts process for vale2 and creates its ports: the vhost-user
 * port in client mode (QEMU is the server) and namespace C's TAP, which goes
 * with the process, so a restart makes and plugs it again.
 */
async function startVale2(): Promise<void> {
  fs.rmSync(ctl2, { force: true }); // a killed vale-ts leaves its socket file
  const { proc, exited } = await startValeTs(ctl2);
  const client = new ValeClient({ socket: ctl2 });
  vale2 = { proc, exited, client };
  await client.create('vale2:vm', {}, { driver: { kind: 'vhost-user', path: vhuSock, client: true, queuePairs: 1 } });
  await client.create('vale2:nsc', {}, { driver: { kind: 'tap', ifname: nsC } });
  plugInto(nsC, nsC, '10.211.3.2/24');
}

async function killVale2(): Promise<void> {
  if (!vale2) return;
  const { proc, exited } = vale2;
  vale2 = undefined;
  if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  await exited;
}

const quietly = (f: () => unknown) => (): void => {
  try {
    f();
  } catch {
    // already gone
  }
};

test.before(async () => {
  ensurePackages(['qemu-system-x86', 'busybox-static', 'kmod', 'iproute2', 'iputils-ping']);
  cleanups.push(makeNs(nsA), makeNs(nsB), makeNs(nsD));
  // closed before the namespaces go (cleanups run in reverse)
  srv = await ValeServer.listen({ socket: ctl });
  cleanups.push(() => srv.close());
  vale = new ValeClient({ socket: ctl });
  // in-line in the switch's rounds (on this event-loop datapath a thread is the default)
  await vale.create('vale0:vm', {}, { driver: { kind: 'stream', path: streamSock, inline: true } });
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
  await vale.create('vale3:vm', {}, { driver: { kind: 'dgram', path: dgramVale, peer: dgramQemu } });
  await vale.create('vale3:nsd', {}, { driver: { kind: 'tap', ifname: nsD } });
  plugInto(nsD, nsD, '10.211.4.2/24');
  cleanups.push(makeNs(nsC));
  cleanups.push(async () => {
    await killVale2();
    fs.rmSync(ctl2, { force: true });
  });
  await startVale2();
  // QEMU's sockets stay behind when it is killed
  cleanups.push(() => {
    fs.rmSync(dgramQemu, { force: true });
    fs.rmSync(vhuSock, { force: true });
  });
  guest = await VmGuest.boot([
    { netdev: `stream,server=off,addr.type=unix,addr.path=${streamSock}`, cidr: '10.211.1.10/24' },
    { netdev: `tap,ifname=${qtap},script=no,downscript=no,vhost=off`, cidr: '10.211.2.10/24' },
    vhostUserNic(vhuSock, '10.211.3.10/24'),
    { netdev: `dgram,local.type=unix,local.path=${dgramQemu},remote.type=unix,remote.path=${dgramVale}`, cidr: '10.211.4.10/24' },
  ]);
  cleanups.push(() => guest.close());
});

test.after.always(async () => {
  for (const c of cleanups.reverse()) await c();
});

const driverCounters = async (sw: string, port: string, client = vale): Promise<Record<string, number>> => {
  const [s] = await client.stats(sw);
  return s!.ports.find((x) => x.name === port)!.driver!.counters;
};

/**
 * Three replies to the guest's pings of `ip`, one echo at a time (up to 30):
 * busybox's `ping -c 3 -w 60` sends only 3 and fails on one lost, and the
 * first can be, while the guest's ARP for a namespace interface plugged in
 * just before resolves on an emulated CPU beside a loaded host (a CI run
 * beside two CPU hogs lost seq 0 and 1 of 3). Fails unless 3 replies come.
 */
async function guestPings(t: ExecutionContext, ip: string): Promise<void> {
  const g = await guest.run(`n=0; i=0; while [ $n -lt 3 ] && [ $i -lt 30 ]; do i=$((i+1)); ping -c 1 -W 2 ${ip} >/dev/null && n=$((n+1)); done; echo "replies $n of $i"; [ $n -ge 3 ]`);
  t.is(g.rc, 0, g.out);
  t.log(`guest -> ${ip}: ${g.out.trim()}`);
}

test.serial('-netdev stream: the guest and a namespace behind a TAP port ping each other', async (t) => {
  t.timeout(90_000);
  await guestPings(t, '10.211.1.2');
  assertPingReplies(t, await inNs(nsA, ['ping', '-c', '3', '-i', '0.2', '-w', '60', '10.211.1.10']), 3);
  const c = await driverCounters('vale0', 'vale0:vm');
  t.true(c['inFrames']! >= 6 && c['outFrames']! >= 6, JSON.stringify(c));
  t.is(c['connects'], 1);
  t.regex((await vale.list()).find((p) => p.name === 'vale0:vm')!.driver!, / \(in-line\)$/);
});

test.serial('-netdev dgram: the guest and a namespace behind a TAP port ping each other', async (t) => {
  t.timeout(90_000);
  await guestPings(t, '10.211.4.2');
  assertPingReplies(t, await inNs(nsD, ['ping', '-c', '3', '-i', '0.2', '-w', '60', '10.211.4.10']), 3);
  const c = await driverCounters('vale3', 'vale3:vm');
  t.true(c['inFrames']! >= 6 && c['outFrames']! >= 6, JSON.stringify(c));
});

test.serial('-netdev tap (bridged to a vnet_hdr TAP port): the guest and a namespace ping each other', async (t) => {
  t.timeout(90_000);
  await guestPings(t, '10.211.2.2');
  assertPingReplies(t, await inNs(nsB, ['ping', '-c', '3', '-i', '0.2', '-w', '60', '10.211.2.10']), 3);
});

test.serial('TCP from the guest with its TSO/checksum offloads on: passed whole from the vnet_hdr TAP, segmented by the switch for the plain one, verified by the namespace', async (t) => {
  t.timeout(90_000);
  const bytes = 4 << 20;
  const sink = tcpSink(nsB, '10.211.2.2', 5201, bytes);
  t.teardown(() => sink.kill());
  await sink.listening;
  const nsbCounters = async (): Promise<Record<string, number>> => {
    const [sw] = await vale.stats('vale1');
    return sw!.ports.find((x) => x.name === 'vale1:nsb')!.counters;
  };
  const before = await nsbCounters();
  const g = await guest.run(`dd if=/dev/urandom of=/tmp/f bs=65536 count=${bytes / 65536} 2>/dev/null && sha256sum /tmp/f && nc 10.211.2.2 5201 < /tmp/f`);
  const got = await sink.result;
  t.is(got.bytes, bytes);
  t.is(got.sha256, /^([0-9a-f]{64})/m.exec(g.out)?.[1] ?? `no digest from the guest: ${g.out}`);
  // the vnet_hdr TAP port reads the guest's TSO frames whole; the switch segments them for the TAP without a header
  const after = await nsbCounters();
  t.true(after['vnetSegmented']! > before['vnetSegmented']!, `the guest's TSO frames should cross the switch whole: ${JSON.stringify(after)}`);
  t.is(after['dropBadVnetHdr'], 0);
});

const vale2Counters = (): Promise<Record<string, number>> => driverCounters('vale2', 'vale2:vm', vale2!.client);

test.serial('-netdev vhost-user: the guest and a namespace behind a TAP port ping each other', async (t) => {
  t.timeout(90_000);
  await guestPings(t, '10.211.3.2');
  assertPingReplies(t, await inNs(nsC, ['ping', '-c', '3', '-i', '0.2', '-w', '60', '10.211.3.10']), 3);
  const c = await vale2Counters();
  t.true(c['fromGuestFrames']! >= 6 && c['toGuestFrames']! >= 6, JSON.stringify(c));
  const [s] = await vale2!.client.stats('vale2');
  const d = s!.ports.find((x) => x.name === 'vale2:vm')!.driver!.describe;
  // the guest's virtio-net took the checksum and TSO offloads vale-ts offered, both ways
  t.regex(d, /connected, 2 queues running, csum host_tso4 host_tso6 guest_csum guest_tso4 guest_tso6 /, d);
  // vale-ts runs its switches on a datapath thread by default, and vhost-user ports in-line there
  t.regex(d, /\(client, in-line, connected/, d);
});

test.serial('vhost-user: 20 MB of TCP from the guest with TSO on, its frames whole through the switch and segmented for the header-less TAP, verified by the namespace', async (t) => {
  t.timeout(180_000);
  const bytes = 20 << 20;
  const sink = tcpSink(nsC, '10.211.3.2', 5202, bytes);
  t.teardown(() => sink.kill());
  await sink.listening;
  const nscCounters = async (): Promise<Record<string, number>> => {
    const [sw] = await vale2!.client.stats('vale2');
    return sw!.ports.find((x) => x.name === 'vale2:nsc')!.counters;
  };
  const before = await vale2Counters();
  const nscBefore = await nscCounters();
  const g = await guest.run(`dd if=/dev/urandom of=/tmp/f bs=65536 count=${bytes / 65536} 2>/dev/null && sha256sum /tmp/f && nc 10.211.3.2 5202 < /tmp/f; rm -f /tmp/f`);
  const got = await sink.result;
  t.is(got.bytes, bytes);
  t.is(got.sha256, /^([0-9a-f]{64})/m.exec(g.out)?.[1] ?? `no digest from the guest: ${g.out}`);
  const after = await vale2Counters();
  const nsc = await nscCounters();
  t.true(after['offloadGsoPassed']! > before['offloadGsoPassed']!, `the guest's TSO frames should enter the switch whole: ${JSON.stringify(after)}`);
  t.true(nsc['vnetSegmented']! > nscBefore['vnetSegmented']!, `the switch should segment them for the TAP without a header: ${JSON.stringify(nsc)}`);
  t.true(nsc['vnetSegments']! > nsc['vnetSegmented']!);
  t.is(nsc['dropBadVnetHdr'], 0);
  // (dropGuestNotReady may have counted the namespace's IPv6 chatter before the guest's driver was up)
  const drops = Object.entries(after).filter(([k, v]) => k.startsWith('drop') && v !== before[k]);
  t.deepEqual(drops, [], 'no frame dropped by the vhost-user driver during the transfer');
});

test.serial('vhost-user reconnection: vale-ts killed and started again while the guest runs; traffic resumes', async (t) => {
  t.timeout(120_000);
  const qemuBefore = guest.pid;
  await killVale2();
  await startVale2();
  // the guest was not restarted: the same QEMU process, and it answers through the new vale-ts
  t.is(guest.pid, qemuBefore);
  await guestPings(t, '10.211.3.2');
  assertPingReplies(t, await inNs(nsC, ['ping', '-c', '3', '-i', '0.2', '-w', '60', '10.211.3.10']), 3);
  const c = await vale2Counters();
  t.is(c['connects'], 1, 'the restarted vale-ts connected to QEMU once');
  t.true(c['fromGuestFrames']! >= 3 && c['toGuestFrames']! >= 3, JSON.stringify(c));
  t.is(c['dropBadIndex'], 0, 'the rings resumed where QEMU left them');
});

test.serial("the README's \"Connecting a VM\" shows the QEMU options this file ran", (t) => {
  const readme = fs.readFileSync(path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'README.md'), 'utf8');
  const at = readme.indexOf('## Connecting a VM');
  t.true(at >= 0, 'README has a "Connecting a VM" section');
  const section = readme.slice(at, readme.indexOf('\n## ', at + 1)).replace(/\\\n\s*/g, '');
  // the README's names for this run's unique paths and devices
  const named = (a: string): string =>
    a.replaceAll(vhuSock, '/tmp/vm1.vhu').replaceAll(streamSock, '/tmp/vm1.sock').replaceAll(qtap, 'qtap0').replaceAll(dgramVale, '/tmp/vale-vm2.sock').replaceAll(dgramQemu, '/tmp/qemu-vm2.sock');
  const chunks: string[] = [];
  for (const a of guest.args.map(named)) {
    if (a.startsWith('-')) chunks.push(a);
    else chunks[chunks.length - 1] += ` ${a}`;
  }
  const shown = chunks.filter((c) => !/^-(kernel|initrd|append) /.test(c));
  t.true(shown.length > 10);
  for (const c of shown) t.true(section.includes(c), `README lacks "${c}"`);
});
