/**
 * VXLAN over WireGuard (wireguard-go, userspace): the secured underlay of
 * README's "VXLAN" section. Two vale-ts in two namespaces, each beside a
 * wireguard-go whose tunnel addresses are the VTEPs' addresses, a namespace
 * with a TAP port behind each switch: ping and TCP across, and a capture on
 * the physical underlay holds none of the TCP payload, while a capture inside
 * the tunnel (the control: same bytes, same method) holds it in the clear.
 * Before that, plaintext VXLAN sent over the underlay to the VTEP address is
 * shown delivered, then dropped by README's nft guard, which stays for the rest.
 *
 * The same over IPsec ESP (strongSwan, ESP in userspace): vxlan-ipsec.test.ts.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ValeClient } from '../../src/index.js';
import { inNs, ip, makeNs, tcpTransfer } from '../fixtures/netns.js';
import { ensurePackages } from '../fixtures/system-packages.js';
import { captureIn, daemonIn, payloadChunksIn, saw, type Stops } from '../fixtures/underlay-capture.js';
import { startValeTsIn, tapInto } from '../fixtures/vale-ts-netns.js';
import { attackerOnUnderlay, guardDrops, injectVxlan, installGuard } from '../fixtures/vxlan-guard.js';
import { untilAnswer } from '../fixtures/wait.js';
import { assertPingReplies } from '../fixtures/ping-output.js';

const S = 100 + (process.pid % 100);
const tag = `wg${process.pid}`;
const ns = { v1: `${tag}v1`, v2: `${tag}v2`, t1: `${tag}t1`, t2: `${tag}t2` };
const phys = { v1: `10.${S}.10.1`, v2: `10.${S}.10.2` };
const tun = { v1: `10.${S}.11.1`, v2: `10.${S}.11.2` };
const overlay = { t1: `192.172.${S}.1`, t2: `192.172.${S}.2` };
// a third address on the underlay, in v2's namespace but routed around the tunnel: an attacker on the wire
const attacker = `10.${S}.10.66`;
const dir = mkdtempSync(path.join(os.tmpdir(), `vxlan-wg-${process.pid}-`));
const cleanups: (() => void)[] = [() => rmSync(dir, { recursive: true, force: true })];
const stops: Stops = [];
let vale: ValeClient[] = [];

test.before(async () => {
  ensurePackages(['iproute2', 'iputils-ping', 'wireguard-go', 'wireguard-tools', 'tcpdump', 'nftables']);
  for (const n of Object.values(ns)) cleanups.push(makeNs(n));
  ip('link', 'add', `${tag}a`, 'type', 'veth', 'peer', 'name', `${tag}b`);
  for (const [n, end, addr] of [[ns.v1, `${tag}a`, phys.v1], [ns.v2, `${tag}b`, phys.v2]] as const) {
    ip('link', 'set', end, 'netns', n);
    ip('-n', n, 'addr', 'add', `${addr}/24`, 'dev', end);
    ip('-n', n, 'link', 'set', end, 'up');
  }
  // WireGuard: a key pair each, the peer's tunnel address routed through it
  const key = (): { priv: string; pub: string } => {
    const priv = execFileSync('wg', ['genkey'], { encoding: 'utf8' }).trim();
    return { priv, pub: execFileSync('wg', ['pubkey'], { input: priv, encoding: 'utf8' }).trim() };
  };
  const keys = [key(), key()];
  const sides = [
    { n: ns.v1, wg: `${tag}w1`, me: tun.v1, peer: tun.v2, peerPhys: phys.v2 },
    { n: ns.v2, wg: `${tag}w2`, me: tun.v2, peer: tun.v1, peerPhys: phys.v1 },
  ];
  await Promise.all(
    sides.map(async (s, i) => {
      // verbose: it says when its control socket is up, and `wg set` may use it
      const wg = daemonIn(stops, s.n, ['wireguard-go', '-f', s.wg], { ...process.env, LOG_LEVEL: 'verbose' });
      await saw(wg, 'UAPI listener started');
      const keyFile = path.join(dir, `key${i}`);
      writeFileSync(keyFile, keys[i]!.priv, { mode: 0o600 });
      ip('netns', 'exec', s.n, 'wg', 'set', s.wg, 'private-key', keyFile, 'listen-port', '51820', 'peer', keys[1 - i]!.pub, 'allowed-ips', `${s.peer}/32`, 'endpoint', `${s.peerPhys}:51820`);
      ip('-n', s.n, 'addr', 'add', `${s.me}/24`, 'dev', s.wg);
      ip('-n', s.n, 'link', 'set', s.wg, 'up');
    }),
  );
  const started = await Promise.allSettled([0, 1].map((i) => startValeTsIn(sides[i]!.n, path.join(dir, `vale${i}.sock`))));
  for (const r of started) if (r.status === 'fulfilled') stops.push(r.value.stop);
  for (const r of started) if (r.status === 'rejected') throw r.reason;
  vale = started.map((r) => (r as PromiseFulfilledResult<Awaited<ReturnType<typeof startValeTsIn>>>).value.client);
  for (const [i, s] of sides.entries()) {
    await vale[i]!.create('valeW:tap', {}, { driver: { kind: 'tap', ifname: `${tag}T${i}` } });
    // shortcut off: the two vale-ts share this host, and the co-resident
    // shortcut would carry their frames past the tunnel under test
    await vale[i]!.create('valeW:vx', {}, { driver: { kind: 'vxlan', vni: 77, local: s.me, remote: [s.peer], shortcut: false } });
  }
  attackerOnUnderlay(ns.v2, `${tag}b`, attacker, tun.v1);
  // WireGuard's MTU (1420) less VXLAN's 50 bytes
  tapInto(ns.v1, ns.t1, `${tag}T0`, `${overlay.t1}/24`, 1370);
  tapInto(ns.v2, ns.t2, `${tag}T1`, `${overlay.t2}/24`, 1370);
});

test.after.always(async () => {
  for (const s of stops.reverse()) await s();
  for (const c of cleanups.reverse()) c();
});

/** v1's VTEP counters. */
async function vtepCounters(): Promise<Record<string, number>> {
  const [st] = await vale[0]!.stats('valeW');
  return st!.ports.find((p) => p.name === 'valeW:vx')!.driver!.counters;
}

test.serial('VXLAN in the clear from the underlay reaches the VTEP inside WireGuard until the guard drops whatever does not come out of wg0', async (t) => {
  t.timeout(60_000);
  const c = await untilAnswer(
    async () => {
      await injectVxlan(ns.v2, attacker, tun.v1, 77);
      return vtepCounters();
    },
    (c) => (c[`remote ${attacker} rxFrames`] ?? 0) >= 1,
  );
  const before = c[`remote ${attacker} rxFrames`]!;
  await installGuard(ns.v1, `${tag}w1`);
  await installGuard(ns.v2, `${tag}w2`);
  await injectVxlan(ns.v2, attacker, tun.v1, 77);
  await untilAnswer(() => guardDrops(ns.v1), (n) => n >= 1);
  t.is((await vtepCounters())[`remote ${attacker} rxFrames`], before, 'a plaintext datagram passed the guard');
});

test.serial('VXLAN over wireguard-go, behind the guard: ping and TCP across; the underlay carries none of the payload in the clear, the tunnel inside does', async (t) => {
  t.timeout(120_000);
  assertPingReplies(t, await inNs(ns.t1, ['ping', '-c', '3', '-A', '-w', '50', overlay.t2]), 3);
  assertPingReplies(t, await inNs(ns.t2, ['ping', '-c', '3', '-A', '-w', '50', overlay.t1]), 3);
  const stopOuter = await captureIn(stops, ns.v1, `${tag}a`, path.join(dir, 'underlay.pcap'), ['udp']);
  const stopInner = await captureIn(stops, ns.v1, `${tag}w1`, path.join(dir, 'tunnel.pcap'), ['udp']);
  const r = await tcpTransfer(ns.t1, ns.t2, overlay.t2, 5210, 1 << 20);
  const [outer, inner] = [await stopOuter(), await stopInner()];
  t.is(r.received.bytes, 1 << 20);
  t.is(r.received.sha256, r.sent.sha256);
  // at least half: tcpdump stopped by SIGINT loses what is still in its kernel ring, which on a
  // loaded machine was ~2% of the transfer (1026374 of >1 MiB captured)
  t.true(outer.length > 1 << 19, `the underlay capture is ${outer.length} bytes: the transfer did not cross it`);
  t.true(payloadChunksIn(inner) > 200, `the control failed: only ${payloadChunksIn(inner)} of 256 payload chunks seen inside the tunnel`);
  t.is(payloadChunksIn(outer), 0, 'payload in the clear on the underlay');
  // and the frames went through vale-ts's VTEP, not around it
  const [st] = await vale[0]!.stats('valeW');
  const c = st!.ports.find((p) => p.name === 'valeW:vx')!.driver!.counters;
  t.true(c[`remote ${tun.v2} txFrames`]! > 500, JSON.stringify(c));
});
