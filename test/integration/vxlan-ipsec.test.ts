/**
 * VXLAN over IPsec ESP: the secured underlay of README's "VXLAN" section,
 * with strongSwan's IKEv2 daemon (charon, PSK) in each of two namespaces.
 * This kernel has no ESP transform (`ip xfrm state add ... proto esp` answers
 * "Requested type not found"), so ESP runs in userspace: charon's
 * kernel-libipsec plugin routes the protected traffic into a TUN device
 * (ipsec0) and sends it ESP-in-UDP (RFC 3948, port 4500). The VTEPs' addresses
 * are the tunnel mode's traffic selectors; a namespace with a TAP port behind
 * each vale-ts. Ping and TCP both ways; a capture of the physical underlay
 * holds ESP and none of the inner frames (no VXLAN datagram, no payload chunk,
 * no inner Ethernet header), while a capture on ipsec0 (the control: same
 * traffic, same checks) holds them in the clear. First, though, the threat
 * IPsec alone leaves open: plaintext VXLAN sent to the VTEP's address from an
 * address on the underlay is delivered, until README's nft guard (VXLAN only
 * out of ipsec0) drops it; the rest then runs behind that guard.
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ValeClient } from '../../src/index.js';
import { inNs, ip, makeNs, tcpTransfer } from '../fixtures/netns.js';
import { ensurePackages } from '../fixtures/system-packages.js';
import { captureIn, daemonIn, packetsMatching, payloadChunksIn, saw, type Stops } from '../fixtures/underlay-capture.js';
import { startValeTsIn, tapInto } from '../fixtures/vale-ts-netns.js';
import { attackerOnUnderlay, guardDrops, injectVxlan, installGuard } from '../fixtures/vxlan-guard.js';
import { untilAnswer } from '../fixtures/wait.js';
import { assertPingReplies } from '../fixtures/ping-output.js';

const S = 100 + (process.pid % 100);
const tag = `es${process.pid}`;
const ns = { v1: `${tag}v1`, v2: `${tag}v2`, t1: `${tag}t1`, t2: `${tag}t2` };
const phys = [`10.${S}.20.1`, `10.${S}.20.2`] as const;
const vtep = [`10.${S}.21.1`, `10.${S}.21.2`] as const;
const overlay = { t1: `192.173.${S}.1`, t2: `192.173.${S}.2` };
// a third address on the underlay, in v2's namespace but routed around IPsec: an attacker on the wire
const attacker = `10.${S}.20.66`;
const dir = mkdtempSync(path.join(os.tmpdir(), `vxlan-esp-${process.pid}-`));
const cleanups: (() => void)[] = [() => rmSync(dir, { recursive: true, force: true })];
const stops: Stops = [];
let vale: ValeClient[] = [];

// Debian's path for the daemon (strongswan-charon); swanctl is on PATH
const CHARON = '/usr/lib/ipsec/charon';

/**
 * One strongswan.conf per side: only the plugins needed (IKEv2 with PSK,
 * MODP DH through gmp, AES-CBC/HMAC-SHA2 ESP in libipsec), its own vici
 * socket, a log on stderr. Worker threads: long-running jobs (libipsec's two,
 * the IKE socket's receiver, the fd watcher) each hold one for good; with 6,
 * none was left to answer vici and swanctl hung.
 */
function strongswanConf(side: number): string {
  return `charon {
  load = random nonce aes sha1 sha2 hmac kdf gmp kernel-libipsec kernel-netlink socket-default vici
  threads = 12
  plugins {
    vici { socket = unix://${dir}/vici${side} }
  }
  filelog {
    stderr { default = 1 }
  }
}
swanctl {
  load = random nonce aes sha1 sha2 hmac
}
`;
}

/** The IKE/ESP connection of one side, tunnel mode between the two VTEP addresses. */
function swanctlConf(side: number, psk: string): string {
  const [me, peer] = [side, 1 - side];
  return `connections {
  vxlan {
    version = 2
    local_addrs = ${phys[me]}
    remote_addrs = ${phys[peer]}
    proposals = aes128-sha256-modp2048
    local { auth = psk
      id = ${phys[me]} }
    remote { auth = psk
      id = ${phys[peer]} }
    children {
      vxlan {
        mode = tunnel
        local_ts = ${vtep[me]}/32
        remote_ts = ${vtep[peer]}/32
        esp_proposals = aes128-sha256
      }
    }
  }
}
secrets {
  ike-vxlan { id-1 = ${phys[0]}
    id-2 = ${phys[1]}
    secret = 0s${psk} }
}
`;
}

test.before(async () => {
  ensurePackages(['iproute2', 'iputils-ping', 'strongswan-charon', 'strongswan-swanctl', 'libcharon-extra-plugins', 'tcpdump', 'nftables']);
  for (const n of Object.values(ns)) cleanups.push(makeNs(n));
  ip('link', 'add', `${tag}a`, 'type', 'veth', 'peer', 'name', `${tag}b`);
  const psk = randomBytes(32).toString('base64');
  const sides = [
    { n: ns.v1, end: `${tag}a` },
    { n: ns.v2, end: `${tag}b` },
  ];
  await Promise.all(
    sides.map(async (s, i) => {
      ip('link', 'set', s.end, 'netns', s.n);
      ip('-n', s.n, 'addr', 'add', `${phys[i]}/24`, 'dev', s.end);
      ip('-n', s.n, 'link', 'set', s.end, 'up');
      // the VTEP's address: charon routes the peer's through ipsec0 from it
      ip('-n', s.n, 'addr', 'add', `${vtep[i]}/32`, 'dev', 'lo');
      const conf = path.join(dir, `strongswan${i}.conf`);
      const swanctl = path.join(dir, `swanctl${i}.conf`);
      writeFileSync(conf, strongswanConf(i));
      writeFileSync(swanctl, swanctlConf(i, psk), { mode: 0o600 });
      // charon's pid file is fixed (/run/charon.pid): each one gets a private
      // /run in the mount namespace `ip netns exec` made for it
      const charon = daemonIn(stops, s.n, ['sh', '-c', `mount -t tmpfs tmpfs /run && exec ${CHARON}`], { ...process.env, STRONGSWAN_CONF: conf });
      await saw(charon, 'worker threads');
      await inNs(s.n, ['env', `STRONGSWAN_CONF=${conf}`, 'swanctl', '--load-all', '--noprompt', '--file', swanctl, '--uri', `unix://${dir}/vici${i}`]);
    }),
  );
  // the attacker's datagrams leave on the underlay in the clear (a rule before charon's table 220)
  attackerOnUnderlay(ns.v2, `${tag}b`, attacker, vtep[0]);
  // returns once the CHILD_SA is up on both sides (the responder installs it before answering)
  const up = await inNs(ns.v1, ['env', `STRONGSWAN_CONF=${path.join(dir, 'strongswan0.conf')}`, 'swanctl', '--initiate', '--child', 'vxlan', '--uri', `unix://${dir}/vici0`]);
  if (!up.includes('initiate completed successfully')) throw new Error(`IKE negotiation failed:\n${up}`);
  const started = await Promise.allSettled([0, 1].map((i) => startValeTsIn(sides[i]!.n, path.join(dir, `vale${i}.sock`))));
  for (const r of started) if (r.status === 'fulfilled') stops.push(r.value.stop);
  for (const r of started) if (r.status === 'rejected') throw r.reason;
  vale = started.map((r) => (r as PromiseFulfilledResult<Awaited<ReturnType<typeof startValeTsIn>>>).value.client);
  for (const i of [0, 1]) {
    await vale[i]!.create('valeE:tap', {}, { driver: { kind: 'tap', ifname: `${tag}T${i}` } });
    // shortcut off: both vale-ts share this host, and the co-resident shortcut
    // would carry their frames past the tunnel under test
    await vale[i]!.create('valeE:vx', {}, { driver: { kind: 'vxlan', vni: 78, local: vtep[i], remote: [vtep[1 - i]!], shortcut: false } });
  }
  // ipsec0's MTU (kernel-libipsec's default, 1400; ESP-in-UDP adds at most 85 to it) less VXLAN's 50
  tapInto(ns.v1, ns.t1, `${tag}T0`, `${overlay.t1}/24`, 1350);
  tapInto(ns.v2, ns.t2, `${tag}T1`, `${overlay.t2}/24`, 1350);
});

test.after.always(async () => {
  for (const s of stops.reverse()) await s();
  for (const c of cleanups.reverse()) c();
});

/** v1's VTEP counters. */
async function vtepCounters(): Promise<Record<string, number>> {
  const [st] = await vale[0]!.stats('valeE');
  return st!.ports.find((p) => p.name === 'valeE:vx')!.driver!.counters;
}

test.serial('VXLAN in the clear from the underlay reaches the VTEP (VXLAN authenticates nothing) until the guard drops whatever does not come out of ipsec0', async (t) => {
  t.timeout(60_000);
  // the threat: Linux delivers a datagram for the VTEP's address from any interface
  const c = await untilAnswer(
    async () => {
      await injectVxlan(ns.v2, attacker, vtep[0], 78);
      return vtepCounters();
    },
    (c) => (c[`remote ${attacker} rxFrames`] ?? 0) >= 1,
  );
  const before = c[`remote ${attacker} rxFrames`]!;
  for (const n of [ns.v1, ns.v2]) await installGuard(n, 'ipsec0');
  await injectVxlan(ns.v2, attacker, vtep[0], 78);
  await untilAnswer(() => guardDrops(ns.v1), (n) => n >= 1);
  t.is((await vtepCounters())[`remote ${attacker} rxFrames`], before, 'a plaintext datagram passed the guard');
});

/** An interface's MAC address as 6 bytes. */
function macOf(n: string, ifname: string): Buffer {
  const [link] = JSON.parse(ip('-n', n, '-j', 'link', 'show', 'dev', ifname)) as { address: string }[];
  return Buffer.from(link!.address.replaceAll(':', ''), 'hex');
}

test.serial('VXLAN over IPsec (strongSwan, userspace ESP), behind the guard: ping and TCP both ways; the underlay carries ESP and no inner frame, ipsec0 carries them in the clear', async (t) => {
  t.timeout(120_000);
  assertPingReplies(t, await inNs(ns.t1, ['ping', '-c', '3', '-A', '-w', '50', overlay.t2]), 3);
  assertPingReplies(t, await inNs(ns.t2, ['ping', '-c', '3', '-A', '-w', '50', overlay.t1]), 3);
  const files = { outer: path.join(dir, 'underlay.pcap'), inner: path.join(dir, 'ipsec0.pcap') };
  const stopOuter = await captureIn(stops, ns.v1, `${tag}a`, files.outer);
  const stopInner = await captureIn(stops, ns.v1, 'ipsec0', files.inner);
  const there = await tcpTransfer(ns.t1, ns.t2, overlay.t2, 5310, 1 << 20);
  const back = await tcpTransfer(ns.t2, ns.t1, overlay.t1, 5311, 1 << 20);
  const [outer, inner] = [await stopOuter(), await stopInner()];
  for (const r of [there, back]) {
    t.is(r.received.bytes, 1 << 20);
    t.is(r.received.sha256, r.sent.sha256);
  }
  // at least half of the 2 MiB: tcpdump stopped by SIGINT loses what is still in its kernel ring
  t.true(outer.length > 1 << 20, `the underlay capture is ${outer.length} bytes: the transfers did not cross it`);
  // ESP (RFC 3948 UDP encapsulation; proto 50 should a later libipsec send it raw), and no VXLAN in the clear
  const esp = packetsMatching(files.outer, 'udp port 4500 or ip proto 50');
  t.true(esp > 1000, `only ${esp} ESP packets on the underlay: the transfers did not go through IPsec`);
  t.is(packetsMatching(files.outer, 'udp port 4789'), 0, 'VXLAN datagrams in the clear on the underlay');
  t.true(packetsMatching(files.inner, 'udp port 4789') > 1000, 'the control failed: no VXLAN datagrams seen on ipsec0');
  // the payload, and the inner Ethernet header of a frame t1 -> t2 (destination then source MAC)
  const eth = Buffer.concat([macOf(ns.t2, `${tag}T1`), macOf(ns.t1, `${tag}T0`)]);
  t.true(payloadChunksIn(inner) > 200, `the control failed: only ${payloadChunksIn(inner)} of 256 payload chunks seen on ipsec0`);
  t.true(inner.includes(eth), 'the control failed: no inner Ethernet header seen on ipsec0');
  t.is(payloadChunksIn(outer), 0, 'payload in the clear on the underlay');
  t.false(outer.includes(eth), 'an inner Ethernet header in the clear on the underlay');
  // and the frames went through vale-ts's VTEPs, not around them
  for (const [i, v] of vale.entries()) {
    const [st] = await v.stats('valeE');
    const c = st!.ports.find((p) => p.name === 'valeE:vx')!.driver!.counters;
    t.true(c[`remote ${vtep[1 - i]} txFrames`]! > 500, JSON.stringify(c));
  }
});
