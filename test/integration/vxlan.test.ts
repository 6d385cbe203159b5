/**
 * VXLAN ports against Linux's own vxlan driver and against another vale-ts.
 *
 * Namespaces (one set per file, shared by the tests): an underlay bridge in
 * `u`; vale-ts #1 in `v1` (underlay 10.R.0.1, fdR::1), Linux vxlan devices in
 * `l` (10.R.0.2, fdR::2), vale-ts #2 in `v2` (10.R.0.3); the TAP ports of
 * each vale-ts are moved into `t1` / `t2`, whose Linux stacks are the hosts
 * of the overlay. One switch per scenario, so the VNIs stay apart:
 *
 *   valeA: TAP + VXLAN vni 42 to a static remote   <-> Linux vx42 (IPv4)
 *   valeB: TAP + VXLAN vni 43 on group 239.1.R.43  <-> Linux vx43 (same group)
 *   valeC: TAP + VXLAN vni 44 over IPv6            <-> Linux vx44 (IPv6)
 *   valeD: TAP + VXLAN vni 45                      <-> vale-ts #2's valeD + TAP
 */
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ValeClient } from '../../src/index.js';
import { inNs, ip, makeNs, tcpTransfer } from '../fixtures/netns.js';
import { ensurePackages } from '../fixtures/system-packages.js';
import { untilAnswer } from '../fixtures/wait.js';
import { statFields } from '../fixtures/proc-stat.js';
import { startValeTsIn, tapInto as tapIntoMtu, toolsDir as tools } from '../fixtures/vale-ts-netns.js';
import { assertPingReplies } from '../fixtures/ping-output.js';

const R = 100 + (process.pid % 100);
const tag = `vx${process.pid}`;
const ns = { u: `${tag}u`, v1: `${tag}v1`, l: `${tag}l`, v2: `${tag}v2`, t1: `${tag}t1`, t2: `${tag}t2` };
const under = { v1: `10.${R}.0.1`, l: `10.${R}.0.2`, v2: `10.${R}.0.3`, v1six: `fd00:${R}::1`, lsix: `fd00:${R}::2` };
const group = `239.1.${R}.43`;
const cleanups: (() => void)[] = [];
const stops: (() => Promise<void>)[] = [];
let vale1: ValeClient;
let vale2: ValeClient;
let pid1 = 0;  // vale-ts #1's process, held with SIGSTOP by the socket-overflow test

/** A veth from namespace `a` (named `name`) to the underlay bridge. */
function underlayLink(a: string, name: string, cidrs: string[]): void {
  ip('link', 'add', name, 'type', 'veth', 'peer', 'name', `${name}p`);
  ip('link', 'set', name, 'netns', a);
  ip('link', 'set', `${name}p`, 'netns', ns.u);
  ip('-n', ns.u, 'link', 'set', `${name}p`, 'master', 'br0', 'up');
  for (const c of cidrs) ip('-n', a, 'addr', 'add', c, 'dev', name, ...(c.includes(':') ? ['nodad'] : []));
  ip('-n', a, 'link', 'set', name, 'up');
}

test.before(async () => {
  ensurePackages(['iproute2', 'iputils-ping', 'ethtool', 'tcpdump']);
  for (const n of Object.values(ns)) cleanups.push(makeNs(n));
  ip('-n', ns.u, 'link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '0');
  ip('-n', ns.u, 'link', 'set', 'br0', 'up');
  underlayLink(ns.v1, `${tag}a`, [`${under.v1}/24`, `${under.v1six}/64`]);
  underlayLink(ns.l, `${tag}b`, [`${under.l}/24`, `${under.lsix}/64`]);
  underlayLink(ns.v2, `${tag}c`, [`${under.v2}/24`]);
  // A veth hands a Linux vxlan device's frames on with the inner TCP/UDP
  // checksum still to be filled (CHECKSUM_PARTIAL: a real NIC fills it, and a
  // Linux receiver in another namespace trusts the mark); a UDP socket gets
  // the bytes as they are. With tx checksumming off the kernel fills it.
  ip('netns', 'exec', ns.l, 'ethtool', '-K', `${tag}b`, 'tx', 'off');
  // Linux's VTEPs
  const lx = (name: string, ...args: string[]): void => {
    ip('-n', ns.l, 'link', 'add', name, 'type', 'vxlan', ...args);
    ip('-n', ns.l, 'link', 'set', name, 'up');
  };
  lx('vx42', 'id', '42', 'dstport', '4789', 'local', under.l, 'remote', under.v1);
  ip('-n', ns.l, 'addr', 'add', `192.168.${R}.2/24`, 'dev', 'vx42');
  lx('vx43', 'id', '43', 'dstport', '4790', 'local', under.l, 'group', group, 'dev', `${tag}b`);
  ip('-n', ns.l, 'addr', 'add', `192.169.${R}.2/24`, 'dev', 'vx43');
  lx('vx44', 'id', '44', 'dstport', '4789', 'local', under.lsix, 'remote', under.v1six);
  ip('-n', ns.l, 'addr', 'add', `192.170.${R}.2/24`, 'dev', 'vx44');

  const s1 = path.join(os.tmpdir(), `vxlan-${process.pid}-1.sock`);
  const s2 = path.join(os.tmpdir(), `vxlan-${process.pid}-2.sock`);
  const started = await Promise.allSettled([startValeTsIn(ns.v1, s1), startValeTsIn(ns.v2, s2)]);
  for (const r of started) if (r.status === 'fulfilled') stops.push(r.value.stop);
  for (const r of started) if (r.status === 'rejected') throw r.reason;
  const [p1, p2] = started.map((r) => (r as PromiseFulfilledResult<Awaited<ReturnType<typeof startValeTsIn>>>).value);
  vale1 = p1!.client;
  pid1 = p1!.proc.pid!;
  vale2 = p2!.client;
  // the VXLAN header and outer IP/UDP take 50 bytes of the underlay's 1500 (70 over IPv6)
  const tapInto = (from: string, to: string, ifname: string, cidr: string): void => tapIntoMtu(from, to, ifname, cidr, 1430);
  const tap = (sw: string): { driver: { kind: string; ifname: string } } => ({ driver: { kind: 'tap', ifname: `${tag}${sw}` } });
  await vale1.create('valeA:tap', {}, tap('A'));
  // valeA's VTEP in a thread of its own (inline off); every other one in-line, the default
  await vale1.create('valeA:vx', {}, { driver: { kind: 'vxlan', vni: 42, local: under.v1, remote: [under.l], inline: 'off' } });
  await vale1.create('valeB:tap', {}, tap('B'));
  await vale1.create('valeB:vx', {}, { driver: { kind: 'vxlan', vni: 43, local: `${under.v1}:4790`, group, dev: `${tag}a` } });
  await vale1.create('valeC:tap', {}, tap('C'));
  await vale1.create('valeC:vx', {}, { driver: { kind: 'vxlan', vni: 44, local: `[${under.v1six}]`, remote: [under.lsix] } });
  await vale1.create('valeD:tap', {}, tap('D'));
  await vale1.create('valeD:vx', {}, { driver: { kind: 'vxlan', vni: 45, local: `${under.v1}:4792`, remote: [under.v2] } });
  await vale2.create('valeD:tap', {}, tap('E'));
  // vale-ts #2's VTEP from the command line, as a user makes one
  await inNs(ns.v2, [process.execPath, path.join(tools, 'vale-ctl-ts.js'), '--socket', s2, '-n', 'valeD:vx', '--vxlan', `vni=45,local=${under.v2}:4792,remote=${under.v1}`]);
  tapInto(ns.v1, ns.t1, `${tag}A`, `192.168.${R}.1/24`);
  tapInto(ns.v1, ns.t1, `${tag}B`, `192.169.${R}.1/24`);
  tapInto(ns.v1, ns.t1, `${tag}C`, `192.170.${R}.1/24`);
  tapInto(ns.v1, ns.t1, `${tag}D`, `192.171.${R}.1/24`);
  tapInto(ns.v2, ns.t2, `${tag}E`, `192.171.${R}.2/24`);
});

test.after.always(async () => {
  await Promise.all(stops.map((s) => s()));
  for (const c of cleanups.reverse()) c();
});

async function vx(c: ValeClient, sw: string): Promise<{ describe: string; counters: Record<string, number> }> {
  const [s] = await c.stats(sw);
  const p = s!.ports.find((x) => x.name === `${sw}:vx`);
  if (!p?.driver) throw new Error(`${sw}:vx has no driver in the stats`);
  return p.driver;
}

const ping = (from: string, to: string): Promise<string> => inNs(from, ['ping', '-c', '3', '-A', '-w', '50', to]);

/** tcpdump -l in the Linux side's namespace, resolved once it listens; stop() ends it and gives its lines (also stopped at teardown). */
async function lineDump(t: ExecutionContext, iface: string, filter: string): Promise<{ stop: () => Promise<string> }> {
  const dump = spawn('ip', ['netns', 'exec', ns.l, 'tcpdump', '-l', '-nn', '-i', iface, filter], { stdio: ['ignore', 'pipe', 'pipe'] });
  const dumped = new Promise<void>((r) => dump.once('exit', () => r()));
  const stop = async (): Promise<string> => {
    dump.kill('SIGINT');
    await dumped;
    return lines;
  };
  t.teardown(stop);
  let lines = '';
  dump.stdout.on('data', (d: Buffer) => (lines += d.toString()));
  await new Promise<void>((resolve, reject) => {
    dump.stderr.on('data', (d: Buffer) => d.toString().includes('listening on') && resolve());
    dump.once('exit', (code) => reject(new Error(`tcpdump exited ${code}`)));
  });
  return { stop };
}

test.serial('vale-ts and a Linux vxlan device (static remotes, IPv4): ping both ways, TCP both ways intact, per-remote counters', async (t) => {
  t.timeout(120_000);
  // the outer source ports vale-ts picks, seen on the Linux side's underlay
  const dump = await lineDump(t, `${tag}b`, `udp and src host ${under.v1} and dst port 4789`);
  assertPingReplies(t, await ping(ns.t1, `192.168.${R}.2`), 3);
  assertPingReplies(t, await ping(ns.l, `192.168.${R}.1`), 3);
  const there = await tcpTransfer(ns.t1, ns.l, `192.168.${R}.2`, 5201, 1 << 20);
  t.is(there.received.bytes, 1 << 20);
  t.is(there.received.sha256, there.sent.sha256);
  const back = await tcpTransfer(ns.l, ns.t1, `192.168.${R}.1`, 5202, 1 << 20);
  t.is(back.received.sha256, back.sent.sha256);
  const lines = await dump.stop();
  // one port per inner flow (ARP, ICMP, two TCP connections), all in Linux's range [32768, 61000)
  const ports = new Set([...lines.matchAll(new RegExp(`IP ${under.v1.replace(/\./g, '\\.')}\\.(\\d+) > `, 'g'))].map((m) => Number(m[1])));
  t.true(ports.size >= 3, `outer source ports seen: ${[...ports].join(', ')}`);
  for (const p of ports) t.true(p >= 32768 && p < 61000, `outer source port ${p}`);
  const d = await vx(vale1, 'valeA');
  t.regex(d.describe, new RegExp(`^vxlan vni 42 ${under.v1}:4789 -> ${under.l} \\(srcport 32768-61000\\)$`)); // (no ' in-line')
  const c = d.counters;
  t.true(c[`remote ${under.l} txFrames`]! > 500 && c[`remote ${under.l} rxFrames`]! > 500, JSON.stringify(c));
  // the Linux vxlan device's MAC was learned behind its VTEP
  const vxMac = JSON.parse(ip('-j', '-n', ns.l, 'link', 'show', 'vx42'))[0].address as string;
  t.true(c[`fdb ${vxMac} -> ${under.l} expiresInS`]! > 200, JSON.stringify(c));
  for (const k of ['dropShortHeader', 'dropNoVniFlag', 'dropWrongVni', 'dropShortFrame', 'dropSendFailed']) t.is(c[k], 0, k);
  // Linux learned the TAP's MAC behind vale-ts's address
  const tapMac = JSON.parse(ip('-j', '-n', ns.t1, 'link', 'show', `${tag}A`))[0].address as string;
  t.regex(ip('netns', 'exec', ns.l, 'bridge', 'fdb', 'show', 'dev', 'vx42'), new RegExp(`${tapMac} dst ${under.v1.replace(/\./g, '\\.')}`));
});

test.serial('vale-ts and a Linux vxlan device on a multicast group: ping both ways, TCP intact', async (t) => {
  t.timeout(120_000);
  assertPingReplies(t, await ping(ns.l, `192.169.${R}.1`), 3);
  assertPingReplies(t, await ping(ns.t1, `192.169.${R}.2`), 3);
  const r = await tcpTransfer(ns.t1, ns.l, `192.169.${R}.2`, 5203, 1 << 20);
  t.is(r.received.sha256, r.sent.sha256);
  const c = (await vx(vale1, 'valeB')).counters;
  t.true(c['floods']! >= 1, JSON.stringify(c)); // the ARP request went to the group
  // then unicast to the learned VTEP: ~750 data frames out, and back the ACKs,
  // whose number Linux's delayed/coalesced ACKs vary (51..360 seen)
  t.true(c[`remote ${under.l} rxFrames`]! > 20 && c[`remote ${under.l} txFrames`]! > 500, JSON.stringify(c));
  t.regex(ip('-n', ns.v1, 'maddr', 'show', 'dev', `${tag}a`), new RegExp(group.replace(/\./g, '\\.')));
});

test.serial('vale-ts and a Linux vxlan device over an IPv6 underlay: ping both ways', async (t) => {
  t.timeout(60_000);
  assertPingReplies(t, await ping(ns.t1, `192.170.${R}.2`), 3);
  assertPingReplies(t, await ping(ns.l, `192.170.${R}.1`), 3);
  const d = await vx(vale1, 'valeC');
  t.is(d.describe, `vxlan vni 44 [${under.v1six}]:4789 -> ${under.lsix} (srcport 32768-61000) in-line`);
  const c = d.counters;
  t.true(c[`remote ${under.lsix} rxFrames`]! >= 3 && c[`remote ${under.lsix} txFrames`]! >= 3, JSON.stringify(c));
});

test.serial('two vale-ts over VXLAN, a namespace behind each: ping, TCP intact, remote MACs learned in --stats', async (t) => {
  t.timeout(120_000);
  assertPingReplies(t, await ping(ns.t1, `192.171.${R}.2`), 3);
  assertPingReplies(t, await ping(ns.t2, `192.171.${R}.1`), 3);
  const r = await tcpTransfer(ns.t2, ns.t1, `192.171.${R}.1`, 5204, 1 << 20);
  t.is(r.received.sha256, r.sent.sha256);
  const macD = JSON.parse(ip('-j', '-n', ns.t1, 'link', 'show', `${tag}D`))[0].address as string;
  const macE = JSON.parse(ip('-j', '-n', ns.t2, 'link', 'show', `${tag}E`))[0].address as string;
  t.true((await vx(vale2, 'valeD')).counters[`fdb ${macD} -> ${under.v1} expiresInS`]! > 0);
  t.true((await vx(vale1, 'valeD')).counters[`fdb ${macE} -> ${under.v2} expiresInS`]! > 0);
  // and vale-ctl-ts --stats prints them
  const out = await inNs(ns.v1, [process.execPath, path.join(tools, 'vale-ctl-ts.js'), '--socket', path.join(os.tmpdir(), `vxlan-${process.pid}-1.sock`), '--stats=valeD']);
  t.regex(out, new RegExp(`driver of valeD:vx: vxlan vni 45[^\\n]*\\n[\\s\\S]*fdb ${macE} -> ${under.v2.replace(/\./g, '\\.')} expiresInS \\d+`));
  // the pair shares this host: by now its frames may cross the co-resident
  // shortcut instead (VXLAN between two vale-ts: vxlan-shortcut.test.ts)
  t.regex(out, new RegExp(`remote ${under.v2.replace(/\./g, '\\.')} (rxFrames|shortcutRxFrames) \\d+`));
});

test.serial('co-resident shortcut, stage 1: the two vale-ts of valeD notice they share a host by their HELLOs; Linux never counts as one; foreign, malformed and stranger HELLOs are counted, never switched', async (t) => {
  t.timeout(60_000);
  const sameHost = async (c: ValeClient, sw: string, remote: string): Promise<void> => {
    await untilAnswer(() => vx(c, sw), (d) => d.counters[`remote ${remote} sameHost`] === 1);
  };
  await Promise.all([sameHost(vale1, 'valeD', under.v2), sameHost(vale2, 'valeD', under.v1)]);
  const d1 = (await vx(vale1, 'valeD')).counters;
  t.true(d1['shortcutHelloOut']! >= 1 && d1['shortcutHelloIn']! >= 1, JSON.stringify(d1));
  const out = await inNs(ns.v1, [process.execPath, path.join(tools, 'vale-ctl-ts.js'), '--socket', path.join(os.tmpdir(), `vxlan-${process.pid}-1.sock`), '--stats=valeD']);
  t.regex(out, new RegExp(`remote ${under.v2.replace(/\./g, '\\.')} sameHost 1`));
  // Linux's VTEP drops HELLOs (a reserved flag): none comes out of its vxlan
  // device while two more are sent to it, it never answers, so it is no shortcut peer
  const dump = await lineDump(t, 'vx42', 'ether proto 0x88b5');
  const start = (await vx(vale1, 'valeA')).counters['shortcutHelloOut']!;
  await untilAnswer(() => vx(vale1, 'valeA'), (d) => d.counters['shortcutHelloOut']! >= start + 2);
  const seen = await dump.stop();
  t.deepEqual(seen.split('\n').filter((l) => l.trim() !== ''), [], 'a HELLO came out of the Linux vxlan device'); // (tcpdump ends with an empty line)
  const before = (await vx(vale1, 'valeA')).counters;
  t.is(before['shortcutHelloIn'], 0);
  t.is(before[`remote ${under.l} sameHost`], 0);
  // forged HELLOs from the Linux side's namespace: another host's boot id, a
  // wrong magic, and a right one from an address that is no static remote
  const stranger = `10.${R}.0.9`;
  ip('-n', ns.l, 'addr', 'add', `${stranger}/24`, 'dev', `${tag}b`);
  t.teardown(() => ip('-n', ns.l, 'addr', 'del', `${stranger}/24`, 'dev', `${tag}b`));
  const send = `
const [to, from, bootHex] = process.argv.slice(1);
const hello = (magic, boot) => Buffer.concat([Buffer.from([0x48, 0, 0, 0, 0, 0, 42, 0]), Buffer.from('037661 6c6573 037661 6c6573 88b5'.replace(/ /g, ''), 'hex'),
  Buffer.from(magic), Buffer.from([1, 1, 0, 0]), Buffer.from(boot, 'hex'), Buffer.alloc(16, 7)]);
const other = 'ff'.repeat(16);
const msgs = [[hello('VTSC', other), undefined], [hello('XXXX', other), undefined], [hello('VTSC', bootHex), from]];
const go = (i) => { if (i === msgs.length) return; const [m, src] = msgs[i];
  const u = require('node:dgram').createSocket('udp4'); u.bind({ address: src ?? '0.0.0.0' }, () => u.send(m, 4789, to, () => { u.close(); go(i + 1); })); };
go(0);`;
  const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim().replace(/-/g, '');
  await inNs(ns.l, [process.execPath, '-e', send, under.v1, stranger, boot]);
  const want = ['shortcutHelloOtherHost', 'shortcutHelloBad', 'shortcutHelloStranger'];
  await untilAnswer(() => vx(vale1, 'valeA'), (d) => want.every((k) => d.counters[k]! > before[k]!));
  const after = (await vx(vale1, 'valeA')).counters;
  for (const k of want) t.is(after[k]! - before[k]!, 1, k);
  t.is(after[`remote ${under.l} sameHost`], 0);
  t.is(after['shortcutHelloIn']! - before['shortcutHelloIn']!, 1); // the other-host one, from the static remote
  // never learned from: no FDB entry for the HELLOs' inner source MAC or the
  // stranger's address (not the global fdbLearned count: the Linux side's own
  // frames may teach the VTEP a MAC meanwhile, which is right)
  const fdb = Object.keys(after).filter((k) => k.startsWith('fdb '));
  t.deepEqual(fdb.filter((k) => k.startsWith('fdb 03:76:61:6c:65:73 ') || k.includes(` -> ${stranger} `)), [], JSON.stringify(fdb));
  // taken out before the frame checks, so never switched: their inner source
  // MAC is multicast, which the checks would have dropped and counted here
  // (not the remote's rxFrames: the Linux side's own IPv6 neighbour and MLD
  // frames move it meanwhile on a slow machine)
  t.is(after['dropBadSrcMac'], before['dropBadSrcMac']);
});

test.serial('hostile datagrams: short header, no I flag, wrong VNI, short inner frame, multicast source MAC are dropped by reason', async (t) => {
  t.timeout(60_000);
  const before = (await vx(vale1, 'valeA')).counters;
  // from the Linux side's namespace, to vale-ts's VTEP socket
  const send = `
const s = require('node:dgram').createSocket('udp4');
const hdr = (flags, vni) => Buffer.from([flags, 0, 0, 0, vni >> 16, (vni >> 8) & 255, vni & 255, 0]);
const eth = (src0) => { const f = Buffer.alloc(60); f.fill(0xff, 0, 6); f[6] = src0; f[11] = 9; f[12] = 8; f[13] = 6; return f; };
const msgs = [Buffer.from([8, 0, 0]), Buffer.concat([hdr(0, 42), eth(2)]), Buffer.concat([hdr(8, 7), eth(2)]), Buffer.concat([hdr(8, 42), Buffer.alloc(10)]), Buffer.concat([hdr(8, 42), eth(1)])];
let n = 0; for (const m of msgs) s.send(m, 4789, process.argv[1], () => { if (++n === msgs.length) s.close(); });`;
  await inNs(ns.l, [process.execPath, '-e', send, under.v1]);
  const want = ['dropShortHeader', 'dropNoVniFlag', 'dropWrongVni', 'dropShortFrame', 'dropBadSrcMac'];
  await untilAnswer(() => vx(vale1, 'valeA'), (d) => want.every((k) => d.counters[k]! > before[k]!));
  const after = (await vx(vale1, 'valeA')).counters;
  for (const k of want) t.is(after[k]! - before[k]!, 1, k);
  // none reached the switch: one that had would have taught valeA its source
  // MAC (not inFrames: the Linux side's own IPv6 neighbour and MLD frames may
  // arrive meanwhile, and do on a slow machine)
  const [st] = await vale1.stats('valeA');
  t.true(st!.macTableTotal === st!.macTable.length, 'the whole table in one page');
  t.falsy(st!.macTable.find((e) => e.mac === '02:00:00:00:00:00'), JSON.stringify(st!.macTable));
});

test.serial('a receiving socket that overflows is counted: dropKernelRx moves by what the kernel dropped, and every datagram is received or counted', async (t) => {
  t.timeout(60_000);
  // a VTEP with a receive buffer for about two datagrams, no HELLOs
  await vale1.create('valeE:vx', {}, { driver: { kind: 'vxlan', vni: 46, local: `${under.v1}:4793`, remote: [under.l], shortcut: 'off', rcvbuf: 2048 } });
  const snmp = (): number => {
    const l = readFileSync(`/proc/${pid1}/net/snmp`, 'utf8').split('\n').filter((x) => x.startsWith('Udp:'));
    const names = l[0]!.split(/\s+/), vals = l[1]!.split(/\s+/);
    return Number(vals[names.indexOf('RcvbufErrors')]);
  };
  const before = (await vx(vale1, 'valeE')).counters;
  const rcvbufErrors0 = snmp();  // vale-ts #1's namespace: /proc/PID/net is its view
  t.is(before['dropKernelRx'], 0);
  // vale-ts #1 held: its thread reads nothing, so the socket's buffer fills
  // and the kernel drops the rest (an event, not a race with the reader)
  process.kill(pid1, 'SIGSTOP');
  t.teardown(() => {
    try { process.kill(pid1, 'SIGCONT'); } catch { /* gone already */ }
  });
  await untilAnswer(async () => statFields(readFileSync(`/proc/${pid1}/stat`, 'utf8'))[0], (st) => st === 'T');
  // 200 datagrams of one frame each (no GSO: one kernel drop is one frame), from the Linux side's namespace
  const n = 200;
  const send = `
const s = require('node:dgram').createSocket('udp4');
const f = Buffer.alloc(8 + 1000); f[0] = 8; f[4] = 0; f[5] = 0; f[6] = 46;
f.fill(0xff, 8, 14); Buffer.from([2, 0, 0, 0, 0x46, 1]).copy(f, 14); f[20] = 8; f[21] = 0;
let k = 0; for (let i = 0; i < ${n}; i++) s.send(f, 4793, process.argv[1], () => { if (++k === ${n}) s.close(); });`;
  await inNs(ns.l, [process.execPath, '-e', send, under.v1]);
  process.kill(pid1, 'SIGCONT');
  // every datagram is taken by the driver (rxFrames of the remote) or counted dropped by the kernel
  const key = `remote ${under.l} rxFrames`;
  const after = (await untilAnswer(() => vx(vale1, 'valeE'), (d) => (d.counters[key] ?? 0) + d.counters['dropKernelRx']! >= n)).counters;
  const dropped = after['dropKernelRx']!;
  t.true(dropped > 0, JSON.stringify(after));
  t.is((after[key] ?? 0) - (before[key] ?? 0) + dropped, n);
  // the kernel's own namespace-wide count saw the same drops (the other VTEPs here have 4 MiB buffers)
  t.is(snmp() - rcvbufErrors0, dropped);
  await vale1.remove('valeE:vx');
});

test.serial('bad settings are refused with the fix, and leave no port behind', async (t) => {
  const bad = async (driver: Record<string, string | number | string[]>, msg: RegExp): Promise<void> => {
    await t.throwsAsync(vale1.create('valeZ:bad', {}, { driver: { kind: 'vxlan', ...driver } }), { message: msg });
  };
  await bad({ local: under.v1, remote: [under.l] }, /needs vni=N/);
  await bad({ vni: 1 << 24, local: under.v1, remote: [under.l] }, /'vni' must be an integer 0\.\.16777215/);
  await bad({ vni: 1, local: under.v1 }, /needs remote=ADDR/);
  await bad({ vni: 1, local: under.v1, remote: [under.lsix] }, /IPv6 but the port is IPv4/);
  await bad({ vni: 1, local: under.v1, remote: [under.l], group }, /not both/);
  await bad({ vni: 1, local: under.v1, group: '10.0.0.1' }, /not a multicast address/);
  await bad({ vni: 1, local: under.v1, remote: [under.l], srcport: '9-3' }, /srcport '9-3' must be MIN-MAX/);
  await bad({ vni: 1, local: under.v1, fdb: ['01:00:5e:00:00:01@10.0.0.9'] }, /UNICAST_MAC@ADDR/);
  await bad({ vni: 1, local: '192.0.2.77', remote: [under.l] }, /local= must be an address of an interface/);
  await bad({ vni: 1, local: under.v1, remote: [under.l], rcvbuf: 100 }, /'rcvbuf' must be an integer 2048\.\.1073741824/);
  await bad({ vni: 1, local: under.v1, remote: [under.l] }, /another VTEP .* has this UDP port/);
  await bad({ vni: 1, local: under.v1, group, dev: 'nosuchif0' }, /no interface 'nosuchif0'/);
  // a rendezvous directory open to others is refused (nothing in it could be trusted)
  const open = mkdtempSync(path.join(os.tmpdir(), `vxlan-sc-${process.pid}-`));
  t.teardown(() => rmSync(open, { recursive: true, force: true }));
  chmodSync(open, 0o755);
  await bad({ vni: 1, local: `${under.v1}:4799`, remote: [under.l], shortcutdir: open }, /shortcut directory .* is open to group or others.*chmod 0700/);
  t.falsy((await vale1.list()).find((p) => p.name === 'valeZ:bad'));
});

test.serial('co-resident shortcut, rendezvous: the valeD pair proves each other (CLAIMs over the unix socket, PROOFs over VXLAN) and maps one channel; a killed vale-ts\'s hang-up is seen; restarted, it is proven again', async (t) => {
  t.timeout(120_000);
  const state = async (c: ValeClient, remote: string): Promise<number | undefined> => (await vx(c, 'valeD')).counters[`remote ${remote} shortcutPeer`];
  const until = async (what: () => Promise<boolean>): Promise<void> => {
    await untilAnswer(what, (yes) => yes);
  };
  // 3: proven, and the channel (a sealed memfd) made by one side and mapped by the other
  const bothProven = async (): Promise<boolean> => (await state(vale1, under.v2)) === 3 && (await state(vale2, under.v1)) === 3;
  await until(bothProven);
  const c1 = (await vx(vale1, 'valeD')).counters, c2 = (await vx(vale2, 'valeD')).counters;
  t.is(c1['shortcutPeerBad'], 0, JSON.stringify(c1));
  t.is(c2['shortcutPeerBad'], 0, JSON.stringify(c2));
  t.is(c1['shortcutProofs']! + c2['shortcutProofs']!, 2);
  t.is(c1['shortcutConnects']! + c2['shortcutConnects']!, 2); // one connection, counted at each end
  t.is(c1['shortcutChannels']! + c2['shortcutChannels']!, 2); // one channel: made and sent, received and mapped
  // Linux answers no HELLO: no rendezvous with it
  t.is((await vx(vale1, 'valeA')).counters[`remote ${under.l} shortcutPeer`], 0);
  // vale-ts #2 killed (SIGKILL): the kernel closes its end, vale-ts #1 sees the hang-up
  await stops[1]!();
  await until(async () => (await state(vale1, under.v2)) === 0);
  t.true((await vx(vale1, 'valeD')).counters['shortcutPeerGone']! >= 1);
  // restarted with its VTEP: a new instance id in its HELLOs, a new rendezvous
  const p2 = await startValeTsIn(ns.v2, path.join(os.tmpdir(), `vxlan-${process.pid}-2.sock`));
  stops.push(p2.stop);
  vale2 = p2.client;
  await vale2.create('valeD:vx', {}, { driver: { kind: 'vxlan', vni: 45, local: `${under.v2}:4792`, remote: [under.v1] } });
  await until(bothProven);
  t.is((await vx(vale1, 'valeD')).counters['shortcutPeerBad'], 0);
});
