/**
 * The L3 modules on plain arrays: incremental checksum updates against a
 * full recomputation (random headers), ARP, forwarding with TTL and
 * checksum, ICMP time exceeded, and the source NAT (translation both ways
 * with every checksum recomputed from scratch by the test's own reference
 * sum, table bound, expiry driven by a manual clock).
 */
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { ManualClock, NatTable, Router, csumReplace16, csumReplace32, internetChecksum } from '../../src/index.js';

/** Reference one's-complement checksum, written independently of src/l3/checksum.ts. */
function refSum(bytes: number[]): number {
  let s = 0;
  for (let i = 0; i < bytes.length; i += 2) s += (bytes[i]! << 8) + (bytes[i + 1] ?? 0);
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return ~s & 0xffff;
}
const be16 = (b: Uint8Array, o: number): number => (b[o]! << 8) | b[o + 1]!;
const be32 = (b: Uint8Array, o: number): number => ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
const ip4 = (s: string): number[] => s.split('.').map(Number);
const macB = (s: string): number[] => s.split(':').map((h) => parseInt(h, 16));

/** IP header checksum recomputed from scratch. */
function ipCsumOk(f: Uint8Array): boolean {
  const h = [...f.subarray(14, 34)];
  h[10] = h[11] = 0;
  return refSum(h) === be16(f, 24);
}
/** Transport checksum recomputed from scratch (TCP/UDP with the pseudo-header, ICMP without). */
function l4Csum(f: Uint8Array): number {
  const total = be16(f, 16);
  const proto = f[23]!;
  const seg = [...f.subarray(34, 14 + total)];
  const at = proto === 6 ? 16 : proto === 17 ? 6 : 2;
  seg[at] = seg[at + 1] = 0;
  if (proto === 1) return refSum(seg);
  const len = total - 20;
  const c = refSum([...f.subarray(26, 34), 0, proto, len >> 8, len & 0xff, ...seg]);
  return proto === 17 && c === 0 ? 0xffff : c;
}
const l4CsumAt = (f: Uint8Array): number => 34 + (f[23] === 6 ? 16 : f[23] === 17 ? 6 : 2);

interface Pkt {
  dstMac: string;
  srcMac: string;
  src: string;
  dst: string;
  ttl?: number;
  proto: 'icmp' | 'tcp' | 'udp';
  sport?: number; // or echo id
  dport?: number;
  icmpType?: number;
  tcpFlags?: number;
  payload?: number;
}
/** A frame with every checksum computed by the reference sum. */
function frame(p: Pkt): Uint8Array {
  const pay = [...randomBytes(p.payload ?? 16)];
  let l4: number[];
  if (p.proto === 'icmp') l4 = [p.icmpType ?? 8, 0, 0, 0, (p.sport ?? 7) >> 8, (p.sport ?? 7) & 0xff, 0, 1, ...pay];
  else if (p.proto === 'udp') l4 = [p.sport! >> 8, p.sport! & 0xff, p.dport! >> 8, p.dport! & 0xff, 0, 8 + pay.length, 0, 0, ...pay];
  else l4 = [p.sport! >> 8, p.sport! & 0xff, p.dport! >> 8, p.dport! & 0xff, 1, 2, 3, 4, 0, 0, 0, 0, 0x50, p.tcpFlags ?? 0x02, 0xff, 0xff, 0, 0, 0, 0, ...pay];
  const proto = p.proto === 'icmp' ? 1 : p.proto === 'tcp' ? 6 : 17;
  const total = 20 + l4.length;
  const ip = [0x45, 0, total >> 8, total & 0xff, 0x12, 0x34, 0x40, 0, p.ttl ?? 64, proto, 0, 0, ...ip4(p.src), ...ip4(p.dst)];
  const ic = refSum(ip);
  ip[10] = ic >> 8;
  ip[11] = ic & 0xff;
  const f = Uint8Array.from([...macB(p.dstMac), ...macB(p.srcMac), 0x08, 0x00, ...ip, ...l4]);
  const c = l4Csum(f);
  f[l4CsumAt(f)] = c >> 8;
  f[l4CsumAt(f) + 1] = c & 0xff;
  return f;
}
function arp(op: 1 | 2, srcMac: string, spa: string, tpa: string, dstMac = 'ff:ff:ff:ff:ff:ff', tha = '00:00:00:00:00:00'): Uint8Array {
  return Uint8Array.from([...macB(dstMac), ...macB(srcMac), 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, op, ...macB(srcMac), ...ip4(spa), ...macB(tha), ...ip4(tpa), ...new Array(18).fill(0)]);
}

const A_MAC = '52:54:00:00:00:0a';
const B_MAC = '52:54:00:00:00:0b';
const GW0 = '02:00:0a:01:00:01';
const GW1 = '02:00:0a:02:00:01';

function rig(opts: { nat?: boolean; maxEntries?: number; maxEntriesPerHost?: number; clock?: ManualClock; rpFilter?: 'strict' | 'loose' | 'off'; routes?: { prefix: string; via: string }[] } = {}): { r: Router; out: { ifIndex: number; f: Uint8Array }[]; clock: ManualClock } {
  const clock = opts.clock ?? new ManualClock(1000);
  const table = { maxEntries: opts.maxEntries ?? 1024, timeouts: { udp: 30_000, icmp: 10_000 }, ...(opts.maxEntriesPerHost ? { maxEntriesPerHost: opts.maxEntriesPerHost } : {}) };
  const r = new Router({
    interfaces: [
      { name: 'in', address: '10.1.0.1/24' },
      { name: 'out', address: '10.2.0.1/24' },
    ],
    clock,
    ...(opts.nat ? { nat: { outside: 'out', table } } : {}),
    ...(opts.rpFilter ? { rpFilter: opts.rpFilter } : {}),
    ...(opts.routes ? { routes: opts.routes } : {}),
  });
  const out: { ifIndex: number; f: Uint8Array }[] = [];
  r.attach((ifIndex, f, len) => {
    out.push({ ifIndex, f: Uint8Array.from(f.subarray(0, len)) });
    return true;
  });
  return { r, out, clock };
}
/** Both hosts known to the router (they asked for their gateway). */
function learnHosts(r: Router, out: unknown[]): void {
  r.handle(0, arp(1, A_MAC, '10.1.0.2', '10.1.0.1'));
  r.handle(1, arp(1, B_MAC, '10.2.0.2', '10.2.0.1'));
  out.length = 0;
}

test('RFC 1624 incremental updates equal a full recomputation, on random IPv4 headers', (t) => {
  for (let n = 0; n < 2000; n++) {
    const h = [...randomBytes(20)];
    h[0] = 0x45;
    h[10] = h[11] = 0;
    const cs = refSum(h);
    // a 16-bit word (TTL/protocol) and a 32-bit one (an address) change
    const w = (h[8]! << 8) | h[9]!;
    const w2 = randomBytes(2).readUInt16BE();
    const a = ((h[12]! << 24) | (h[13]! << 16) | (h[14]! << 8) | h[15]!) >>> 0;
    const a2 = randomBytes(4).readUInt32BE();
    const h2 = [...h];
    h2[8] = w2 >> 8;
    h2[9] = w2 & 0xff;
    h2[12] = a2 >>> 24;
    h2[13] = (a2 >>> 16) & 0xff;
    h2[14] = (a2 >>> 8) & 0xff;
    h2[15] = a2 & 0xff;
    t.is(csumReplace32(csumReplace16(cs, w, w2), a, a2), refSum(h2));
    t.is(internetChecksum(Uint8Array.from(h2), 0, 20), refSum(h2));
  }
});

test('ARP: the gateway address is answered, other addresses and poisoning attempts are not', (t) => {
  const { r, out } = rig();
  r.handle(0, arp(1, A_MAC, '10.1.0.2', '10.1.0.1'));
  t.is(out.length, 1);
  const rep = out[0]!.f;
  t.is(out[0]!.ifIndex, 0);
  t.deepEqual([...rep.subarray(0, 6)], macB(A_MAC));
  t.is(be16(rep, 12), 0x0806);
  t.is(be16(rep, 20), 2); // reply
  t.deepEqual([...rep.subarray(22, 28)], macB(GW0));
  t.deepEqual([...rep.subarray(28, 32)], ip4('10.1.0.1'));
  t.deepEqual([...rep.subarray(32, 38)], macB(A_MAC));
  t.deepEqual([...rep.subarray(38, 42)], ip4('10.1.0.2'));
  t.deepEqual(r.neighbours().map((n) => [n.iface, n.ip, n.mac]), [['in', '10.1.0.2', A_MAC]]);
  r.handle(0, arp(1, A_MAC, '10.1.0.2', '10.1.0.77')); // someone else's address
  const group = arp(1, '01:00:5e:00:00:01', '10.1.0.3', '10.1.0.1'); // group MAC as sender (from a unicast Ethernet source)
  group.set(macB(B_MAC), 6);
  r.handle(0, group);
  r.handle(0, arp(1, B_MAC, '10.1.0.1', '10.1.0.1')); // claims the router's address
  r.handle(0, arp(1, B_MAC, '10.9.0.9', '10.1.0.1')); // off the subnet
  t.is(out.length, 1);
  const c = r.counters();
  t.is(c.arpRepliesSent, 1);
  t.is(c.ignoredArp, 1);
  t.is(c.dropBadArp, 3);
});

test('forwarding: the frame waits for ARP, then leaves with new MACs, TTL - 1 and a correct checksum', (t) => {
  const { r, out } = rig();
  r.handle(0, arp(1, A_MAC, '10.1.0.2', '10.1.0.1'));
  out.length = 0;
  const f = frame({ dstMac: GW0, srcMac: A_MAC, src: '10.1.0.2', dst: '10.2.0.2', proto: 'udp', sport: 5000, dport: 53, ttl: 9 });
  const orig = Uint8Array.from(f);
  r.handle(0, f);
  // B is unknown: an ARP request goes out on interface 1, the frame is held
  t.is(out.length, 1);
  t.is(out[0]!.ifIndex, 1);
  t.is(be16(out[0]!.f, 20), 1);
  t.deepEqual([...out[0]!.f.subarray(38, 42)], ip4('10.2.0.2'));
  r.handle(1, arp(2, B_MAC, '10.2.0.2', '10.2.0.1', GW1, GW1));
  t.is(out.length, 2);
  const fw = out[1]!;
  t.is(fw.ifIndex, 1);
  t.deepEqual([...fw.f.subarray(0, 6)], macB(B_MAC));
  t.deepEqual([...fw.f.subarray(6, 12)], macB(GW1));
  t.is(fw.f[22], 8);
  t.true(ipCsumOk(fw.f));
  t.is(be16(fw.f, l4CsumAt(fw.f)), be16(orig, l4CsumAt(orig))); // addresses unchanged: the UDP checksum too
  t.deepEqual([...fw.f.subarray(34)], [...orig.subarray(34)]);
  t.is(r.counters().forwarded, 1);
});

test('TTL 1: dropped, counted, and answered with ICMP time exceeded quoting the header', (t) => {
  const { r, out } = rig();
  learnHosts(r, out);
  const f = frame({ dstMac: GW0, srcMac: A_MAC, src: '10.1.0.2', dst: '10.2.0.2', proto: 'tcp', sport: 40000, dport: 80, ttl: 1 });
  const orig = Uint8Array.from(f);
  r.handle(0, f);
  t.is(out.length, 1);
  const e = out[0]!.f;
  t.is(out[0]!.ifIndex, 0);
  t.deepEqual([...e.subarray(0, 6)], macB(A_MAC));
  t.deepEqual([...e.subarray(26, 30)], ip4('10.1.0.1'));
  t.deepEqual([...e.subarray(30, 34)], ip4('10.1.0.2'));
  t.true(ipCsumOk(e));
  t.is(e[34], 11);
  t.is(e[35], 0);
  t.is(be16(e, 36), l4Csum(e));
  t.deepEqual([...e.subarray(42, 42 + 28)], [...orig.subarray(14, 14 + 28)]);
  const c = r.counters();
  t.is(c.dropTtlExceeded, 1);
  t.is(c.icmpTimeExceededSent, 1);
  t.is(c.forwarded, 0);
});

test('pings to the router are answered; bad headers and checksums are counted drops', (t) => {
  const { r, out } = rig();
  learnHosts(r, out);
  r.handle(0, frame({ dstMac: GW0, srcMac: A_MAC, src: '10.1.0.2', dst: '10.1.0.1', proto: 'icmp', sport: 99 }));
  t.is(out.length, 1);
  const e = out[0]!.f;
  t.is(e[34], 0);
  t.deepEqual([...e.subarray(26, 30)], ip4('10.1.0.1'));
  t.true(ipCsumOk(e));
  t.is(be16(e, 36), l4Csum(e));
  const bad = frame({ dstMac: GW0, srcMac: A_MAC, src: '10.1.0.2', dst: '10.2.0.2', proto: 'udp', sport: 1, dport: 2 });
  bad[24]! ^= 0x10;
  r.handle(0, bad);
  const trunc = frame({ dstMac: GW0, srcMac: A_MAC, src: '10.1.0.2', dst: '10.2.0.2', proto: 'udp', sport: 1, dport: 2 });
  r.handle(0, trunc.subarray(0, 40));
  r.handle(0, frame({ dstMac: GW0, srcMac: A_MAC, src: '10.1.0.2', dst: '172.16.0.1', proto: 'udp', sport: 1, dport: 2 }));
  r.handle(0, frame({ dstMac: B_MAC, srcMac: A_MAC, src: '10.1.0.2', dst: '10.1.0.3', proto: 'udp', sport: 1, dport: 2 }));
  const c = r.counters();
  t.is(c.echoRepliesSent, 1);
  t.is(c.dropBadIpChecksum, 1);
  t.is(c.dropBadIpHeader, 1);
  t.is(c.dropNoRoute, 1);
  t.is(c.ignoredNotForUs, 1);
  t.is(out.length, 1);
});

test('NAT: TCP, UDP and ICMP echo leave with the outside address and a new port, and replies come back restored, every checksum valid', (t) => {
  const { r, out } = rig({ nat: true, maxEntriesPerHost: 1024 }); // one host's 300 flows
  learnHosts(r, out);
  for (let n = 0; n < 300; n++) {
    const proto = (['tcp', 'udp', 'icmp'] as const)[n % 3]!;
    const sport = 1 + (randomBytes(2).readUInt16BE() % 65535);
    const dport = 1 + (randomBytes(2).readUInt16BE() % 65535);
    const f = frame({ dstMac: GW0, srcMac: A_MAC, src: '10.1.0.2', dst: '10.2.0.2', proto, sport, dport, payload: n % 41, tcpFlags: 0x02 });
    const orig = Uint8Array.from(f);
    r.handle(0, f);
    const o = out.pop()!;
    t.is(o.ifIndex, 1);
    t.deepEqual([...o.f.subarray(26, 30)], ip4('10.2.0.1'));
    t.true(ipCsumOk(o.f));
    t.is(be16(o.f, l4CsumAt(o.f)), l4Csum(o.f), `${proto} checksum after translation`);
    const mapped = be16(o.f, proto === 'icmp' ? 38 : 34);
    const entry = r.natEntries().find((e) => e.protocol === proto && e.outsidePort === mapped);
    t.truthy(entry);
    t.is(entry!.insidePort, sport);
    // the reply from B to the outside address and the mapped port
    const rep = frame({ dstMac: GW1, srcMac: B_MAC, src: '10.2.0.2', dst: '10.2.0.1', proto, sport: proto === 'icmp' ? mapped : dport, dport: mapped, icmpType: 0, payload: 7, tcpFlags: 0x12 });
    r.handle(1, rep);
    const back = out.pop()!;
    t.is(back.ifIndex, 0);
    t.deepEqual([...back.f.subarray(30, 34)], ip4('10.1.0.2'));
    t.is(be16(back.f, proto === 'icmp' ? 38 : 36), sport);
    t.true(ipCsumOk(back.f));
    t.is(be16(back.f, l4CsumAt(back.f)), l4Csum(back.f), `${proto} checksum of the reply`);
    t.is(orig[22]! - 1, o.f[22]);
  }
  const c = r.counters();
  t.is(c.natTranslatedOut, 300);
  t.is(c.natTranslatedIn, 300);
});

test('NAT: strangers get nothing through a mapping, and the outside cannot reach inside addresses', (t) => {
  const { r, out } = rig({ nat: true });
  learnHosts(r, out);
  r.handle(0, frame({ dstMac: GW0, srcMac: A_MAC, src: '10.1.0.2', dst: '10.2.0.2', proto: 'udp', sport: 5353, dport: 53 }));
  out.length = 0;
  // same outside port, another remote port
  r.handle(1, frame({ dstMac: GW1, srcMac: B_MAC, src: '10.2.0.2', dst: '10.2.0.1', proto: 'udp', sport: 54, dport: 5353 }));
  // no mapping at all
  r.handle(1, frame({ dstMac: GW1, srcMac: B_MAC, src: '10.2.0.2', dst: '10.2.0.1', proto: 'tcp', sport: 80, dport: 1234 }));
  // straight to an inside address
  r.handle(1, frame({ dstMac: GW1, srcMac: B_MAC, src: '10.2.0.2', dst: '10.1.0.2', proto: 'udp', sport: 53, dport: 5353 }));
  t.is(out.length, 0);
  const c = r.counters();
  t.is(c.dropNatNoMapping, 2);
  t.is(c.dropOutsideToInside, 1);
});

test('NAT: an inside host cannot send as the router (source = one of its addresses): not forwarded untranslated into another host\'s mapping, counted dropNotRoutable', (t) => {
  const { r, out } = rig({ nat: true });
  learnHosts(r, out);
  // A's flow to B:53 takes outside port 5353 (kept: it was free)
  r.handle(0, frame({ dstMac: GW0, srcMac: A_MAC, src: '10.1.0.2', dst: '10.2.0.2', proto: 'udp', sport: 5353, dport: 53 }));
  t.is(out.length, 1);
  t.is(be16(out[0]!.f, 34), 5353);
  out.length = 0;
  // another inside host writes the NAT's outside address and that port as
  // its source: let through as it is, B's answers (an RST, an ICMP error)
  // would come back into A's mapping
  r.handle(0, frame({ dstMac: GW0, srcMac: A_MAC, src: '10.2.0.1', dst: '10.2.0.2', proto: 'udp', sport: 5353, dport: 53 }));
  r.handle(0, frame({ dstMac: GW0, srcMac: A_MAC, src: '10.2.0.1', dst: '10.2.0.2', proto: 'tcp', sport: 40000, dport: 80, tcpFlags: 0x04 }));
  // the router's inside address as the source, from inside or outside
  r.handle(0, frame({ dstMac: GW0, srcMac: A_MAC, src: '10.1.0.1', dst: '10.2.0.2', proto: 'udp', sport: 1, dport: 53 }));
  r.handle(1, frame({ dstMac: GW1, srcMac: B_MAC, src: '10.2.0.1', dst: '10.2.0.1', proto: 'icmp', icmpType: 8 }));
  t.deepEqual(out, []);
  t.is(r.counters().dropNotRoutable, 4);
});

test('NAT table: at its bound (every flow answered) a new flow is a counted drop; entries expire by the (manual) clock and make room', (t) => {
  const clock = new ManualClock(0);
  const { r, out } = rig({ nat: true, maxEntries: 2, maxEntriesPerHost: 2, clock }); // the table's bound alone
  learnHosts(r, out);
  const udp = (sport: number): Uint8Array => frame({ dstMac: GW0, srcMac: A_MAC, src: '10.1.0.2', dst: '10.2.0.2', proto: 'udp', sport, dport: 53 });
  r.handle(0, udp(2000));
  r.handle(0, udp(2001));
  // answered: not given up for a new flow (an unanswered one would be, see 'NAT table full of one host...')
  for (const p of [2000, 2001]) r.handle(1, frame({ dstMac: GW1, srcMac: B_MAC, src: '10.2.0.2', dst: '10.2.0.1', proto: 'udp', sport: 53, dport: p }));
  t.is(out.length, 4);
  r.handle(0, udp(2002));
  t.is(out.length, 4);
  t.is(r.counters().dropNatTableFull, 1);
  t.deepEqual(r.natEntries().map((e) => [e.protocol, e.insideAddr, e.insidePort, e.remoteAddr, e.remotePort, e.state]), [
    ['udp', '10.1.0.2', 2000, '10.2.0.2', 53, 'established'],
    ['udp', '10.1.0.2', 2001, '10.2.0.2', 53, 'established'],
  ]);
  clock.advance(29_999); // udp timeout 30 s in this rig
  t.is(r.natEntries().length, 2);
  r.handle(0, udp(2000)); // traffic refreshes its entry
  clock.advance(2);
  t.deepEqual(r.natEntries().map((e) => e.insidePort), [2000]);
  r.handle(0, udp(2002)); // room again
  t.is(out.length, 6);
  clock.advance(30_000);
  r.tick();
  t.is(r.natEntries().length, 0);
  const c = r.counters();
  t.is(c.natEntriesCreated, 3);
  t.is(c.natEntriesExpired, 3);
  t.is(c.natEntries, 0);
});

test('NAT table: TCP flows move to established on a reply and to closing on FIN, with their timeouts; ports are kept when free', (t) => {
  const clock = new ManualClock(0);
  const nat = new NatTable({ clock, maxEntries: 8, portRange: [2000, 2001] });
  const A = 0x0a010002;
  const B = 0x0a020002;
  const f1 = nat.outbound('tcp', A, 2000, B, 80, 0x02);
  t.true(typeof f1 !== 'string' && f1.outsidePort === 2000);
  const f2 = nat.outbound('tcp', 0x0a010003, 2000, B, 80, 0x02); // same inside port, other host: next free port
  t.true(typeof f2 !== 'string' && f2.outsidePort === 2001);
  t.is(nat.outbound('tcp', 0x0a010004, 2000, B, 80, 0x02), 'dropPortsExhausted');
  t.truthy(nat.inbound('tcp', 2000, B, 80, 0x12));
  t.is(nat.entries().find((e) => e.outsidePort === 2000)!.state, 'established');
  t.is(nat.entries().find((e) => e.outsidePort === 2000)!.expiresInMs, nat.timeouts.tcpEstablished);
  nat.outbound('tcp', A, 2000, B, 80, 0x11); // FIN
  t.is(nat.entries().find((e) => e.outsidePort === 2000)!.state, 'closing');
  clock.advance(nat.timeouts.tcpTransitory);
  t.is(nat.size, 0);
  t.is(nat.counters().dropPortsExhausted, 1);
  t.throws(() => new NatTable({ maxEntries: 0 }), { message: /maxEntries 0/ });
  t.throws(() => new NatTable({ portRange: [10, 5] }), { message: /portRange/ });
});

test('router configuration errors name the problem', (t) => {
  t.throws(() => new Router({ interfaces: [{ name: 'a', address: '10.1.0.1' }] }), { message: /no prefix length/ });
  t.throws(() => new Router({ interfaces: [{ name: 'a', address: '10.1.0.0/24' }] }), { message: /network or broadcast/ });
  t.throws(() => new Router({ interfaces: [{ name: 'a', address: '10.1.0.1/24' }], routes: [{ prefix: '0.0.0.0/0', via: '192.0.2.1' }] }), { message: /on none of the router's subnets/ });
  t.throws(() => new Router({ interfaces: [{ name: 'a', address: '10.1.0.1/24' }], nat: { outside: 'b' } }), { message: /NAT outside interface 'b'/ });
  t.throws(() => new Router({ interfaces: [{ name: 'a', address: '10.1.0.1/24' }], rpFilter: 'on' as 'strict' }), { message: /rpFilter 'on'/ });
  t.throws(() => new Router({ interfaces: [{ name: 'a', address: '10.1.0.1/24' }], nat: { outside: 'a', table: { maxEntriesPerHost: 0 } } }), { message: /maxEntriesPerHost 0/ });
  t.throws(() => new Router({ interfaces: [{ name: 'a', address: '10.1.0.1/24' }], arp: { pendingPerSource: 0 } }), { message: /pendingPerSource 0/ });
});

test('ARP: a gratuitous announcement per interface; frames for an unanswered next hop are held, retried, then dropped and counted', (t) => {
  const { r, out, clock } = rig();
  r.announce();
  t.deepEqual(out.map((o) => [o.ifIndex, be16(o.f, 20), [...o.f.subarray(6, 12)].join(), [...o.f.subarray(28, 32)].join('.'), [...o.f.subarray(38, 42)].join('.')]), [
    [0, 1, macB(GW0).join(), '10.1.0.1', '10.1.0.1'],
    [1, 1, macB(GW1).join(), '10.2.0.1', '10.2.0.1'],
  ]);
  out.length = 0;
  r.handle(0, arp(1, A_MAC, '10.1.0.2', '10.1.0.1'));
  out.length = 0;
  for (let n = 0; n < 10; n++) r.handle(0, frame({ dstMac: GW0, srcMac: A_MAC, src: '10.1.0.2', dst: '10.2.0.9', proto: 'udp', sport: 1, dport: 2 }));
  t.is(out.length, 1, 'one ARP request for the ten frames');
  t.is(r.counters().dropArpQueueFull, 2, 'eight are held');
  clock.advance(1000);
  r.tick();
  t.is(out.length, 2, 'the request is repeated after a second');
  clock.advance(2000);
  r.tick();
  t.is(r.counters().dropArpUnresolved, 8);
  t.is(r.counters().forwarded, 0);
});

test('NAT: ICMP errors from outside about a flow are translated back, quote and checksums included', (t) => {
  const { r, out } = rig({ nat: true });
  learnHosts(r, out);
  for (const proto of ['udp', 'tcp', 'icmp'] as const) {
    const sport = proto === 'icmp' ? 777 : 3000 + out.length;
    const sent = frame({ dstMac: GW0, srcMac: A_MAC, src: '10.1.0.2', dst: '10.2.0.2', proto, sport, dport: 9, payload: 30 });
    const f = Uint8Array.from(sent); // handle() rewrites its frame in place
    r.handle(0, sent);
    const left = out.pop()!.f;
    // B answers with "port unreachable" (3/3) or "time exceeded" (11/0), quoting what it got as Linux does (here: all of it)
    const quote = [...left.subarray(14)];
    const icmp = [proto === 'tcp' ? 11 : 3, proto === 'tcp' ? 0 : 3, 0, 0, 0, 0, 0, 0, ...quote];
    const c = refSum(icmp);
    icmp[2] = c >> 8;
    icmp[3] = c & 0xff;
    const total = 20 + icmp.length;
    const ip = [0x45, 0, total >> 8, total & 0xff, 0, 0, 0, 0, 64, 1, 0, 0, ...ip4('10.2.0.2'), ...ip4('10.2.0.1')];
    const ic = refSum(ip);
    ip[10] = ic >> 8;
    ip[11] = ic & 0xff;
    r.handle(1, Uint8Array.from([...macB(GW1), ...macB(B_MAC), 8, 0, ...ip, ...icmp]));
    const back = out.pop();
    t.truthy(back, `${proto}: the error was forwarded`);
    const e = back!.f;
    t.is(back!.ifIndex, 0);
    t.deepEqual([...e.subarray(30, 34)], ip4('10.1.0.2'));
    t.true(ipCsumOk(e));
    t.is(be16(e, 36), l4Csum(e), `${proto}: ICMP checksum over the translated quote`);
    // the quote is now the packet as the inside host sent it, but for its TTL and IP checksum
    const q = e.subarray(42);
    t.deepEqual([...q.subarray(12, 20)], [...f.subarray(26, 34)]);
    t.deepEqual([...q.subarray(20)], [...f.subarray(34)], `${proto}: quoted transport header and payload restored`);
    const qh = [...q.subarray(0, 20)];
    const qc = (qh[10]! << 8) | qh[11]!;
    qh[10] = qh[11] = 0;
    t.is(refSum(qh), qc, `${proto}: quoted header checksum`);
  }
  t.is(r.counters().dropNatNoMapping, 0);
});

/** `f` with a 4-byte IP option (three NOPs and the end of the list) after its 20-byte header: IHL 6, total length and header checksum fixed. */
function withIpOption(f: Uint8Array): Uint8Array {
  const g = Uint8Array.from([...f.subarray(0, 34), 1, 1, 1, 0, ...f.subarray(34)]);
  g[14] = 0x46;
  const total = be16(g, 16) + 4;
  g[16] = total >> 8;
  g[17] = total & 0xff;
  g[24] = g[25] = 0;
  const c = refSum([...g.subarray(14, 38)]);
  g[24] = c >> 8;
  g[25] = c & 0xff;
  return g;
}

test('NAT: a packet from outside that the router drops (IP options, no route to the inside address) is not translated, moves no flow on and is counted once', (t) => {
  // no reverse-path filter: it would drop the flow below from an inside source with no route back before it is NATed
  const { r, out, clock } = rig({ nat: true, rpFilter: 'off' });
  learnHosts(r, out);
  // A's TCP connection to B:80, answered once: established
  r.handle(0, frame({ dstMac: GW0, srcMac: A_MAC, src: '10.1.0.2', dst: '10.2.0.2', proto: 'tcp', sport: 40000, dport: 80, tcpFlags: 0x02 }));
  const tcpPort = be16(out.pop()!.f, 34);
  r.handle(1, frame({ dstMac: GW1, srcMac: B_MAC, src: '10.2.0.2', dst: '10.2.0.1', proto: 'tcp', sport: 80, dport: tcpPort, tcpFlags: 0x12 }));
  t.is(out.pop()?.ifIndex, 0, 'the SYN-ACK came through');
  // a flow from an inside source no route leads back to (10.1.9.9 is on none of the router's subnets)
  r.handle(0, frame({ dstMac: GW0, srcMac: A_MAC, src: '10.1.9.9', dst: '10.2.0.2', proto: 'udp', sport: 5000, dport: 53 }));
  const udpPort = be16(out.pop()!.f, 34);
  clock.advance(1000);
  const flows = r.natEntries();
  t.deepEqual(flows.map((e) => [e.protocol, e.state, e.packetsIn]), [['tcp', 'established', 1], ['udp', 'new', 0]]);
  const before = r.counters();
  // an RST for A's connection with an IP option on it, and an ICMP error about it with one
  r.handle(1, withIpOption(frame({ dstMac: GW1, srcMac: B_MAC, src: '10.2.0.2', dst: '10.2.0.1', proto: 'tcp', sport: 80, dport: tcpPort, tcpFlags: 0x04 })));
  const quote = frame({ dstMac: GW0, srcMac: A_MAC, src: '10.2.0.1', dst: '10.2.0.2', proto: 'tcp', sport: tcpPort, dport: 80 }).subarray(14, 42);
  const icmp = [3, 3, 0, 0, 0, 0, 0, 0, ...quote];
  const ic = refSum(icmp);
  icmp[2] = ic >> 8;
  icmp[3] = ic & 0xff;
  const ipTotal = 20 + icmp.length;
  const ip = [0x45, 0, ipTotal >> 8, ipTotal & 0xff, 0, 0, 0, 0, 64, 1, 0, 0, ...ip4('10.2.0.2'), ...ip4('10.2.0.1')];
  const hc = refSum(ip);
  ip[10] = hc >> 8;
  ip[11] = hc & 0xff;
  r.handle(1, withIpOption(Uint8Array.from([...macB(GW1), ...macB(B_MAC), 8, 0, ...ip, ...icmp])));
  // the answer to the flow with no way back
  r.handle(1, frame({ dstMac: GW1, srcMac: B_MAC, src: '10.2.0.2', dst: '10.2.0.1', proto: 'udp', sport: 53, dport: udpPort }));
  t.deepEqual(out, []);
  t.deepEqual(r.natEntries(), flows, 'each flow as it was: state, packets in, time left');
  const c = r.counters();
  t.is(c.dropIpOptions - before.dropIpOptions, 2);
  t.is(c.dropNoRoute - before.dropNoRoute, 1);
  t.is(c.natTranslatedIn, before.natTranslatedIn, 'nothing dropped was counted as translated');
});

test('a group or zero source MAC is dropped and counted: a ping or an expiring TTL from ff:ff:ff:ff:ff:ff would be answered to every port of the switch', (t) => {
  const { r, out } = rig();
  learnHosts(r, out);
  const before = r.counters();
  for (const srcMac of ['ff:ff:ff:ff:ff:ff', '01:00:5e:00:00:01', '00:00:00:00:00:00']) {
    r.handle(0, frame({ dstMac: GW0, srcMac, src: '10.1.0.2', dst: '10.1.0.1', proto: 'icmp', sport: 99 }));
    r.handle(0, frame({ dstMac: GW0, srcMac, src: '10.1.0.2', dst: '10.2.0.2', proto: 'udp', sport: 1, dport: 2, ttl: 1 }));
    r.handle(0, arp(1, srcMac, '10.1.0.9', '10.1.0.1'));
  }
  t.deepEqual(out.map((o) => [...o.f.subarray(0, 6)].map((b) => b.toString(16)).join(':')), [], 'nothing sent');
  const c = r.counters();
  t.is(c.dropBadSrcMac, 9);
  t.is(c.echoRepliesSent + c.icmpTimeExceededSent + c.arpRepliesSent, before.echoRepliesSent + before.icmpTimeExceededSent + before.arpRepliesSent);
});

test('a source that is the broadcast address of any of the router\'s subnets is not routed: its answers would go to a whole subnet', (t) => {
  const { r, out } = rig();
  learnHosts(r, out);
  // from inside, as the outside subnet's broadcast: B's echo reply would go to every host of 10.2.0.0/24
  r.handle(0, frame({ dstMac: GW0, srcMac: A_MAC, src: '10.2.0.255', dst: '10.2.0.2', proto: 'icmp', sport: 5 }));
  r.handle(1, frame({ dstMac: GW1, srcMac: B_MAC, src: '10.1.0.255', dst: '10.1.0.2', proto: 'icmp', sport: 5 }));
  t.is(out.length, 0);
  const c = r.counters();
  t.is(c.dropNotRoutable, 2);
  t.is(c.forwarded, 0);
});

test('NAT table full of one host\'s unanswered flows: another host\'s new flow still gets in (the oldest unanswered entry is evicted, counted); answered flows are never evicted', (t) => {
  const clock = new ManualClock(0);
  const { r, out } = rig({ nat: true, maxEntries: 4, maxEntriesPerHost: 4, clock }); // the table's bound alone
  learnHosts(r, out);
  r.handle(0, arp(1, '52:54:00:00:00:0c', '10.1.0.3', '10.1.0.1'));
  out.length = 0;
  // A sprays new flows that nobody answers: the whole table, for the UDP timeout
  for (let p = 2000; p < 2010; p++) r.handle(0, frame({ dstMac: GW0, srcMac: A_MAC, src: '10.1.0.2', dst: '10.2.0.2', proto: 'udp', sport: p, dport: 9 }));
  t.is(r.natEntries().length, 4);
  // C's new flow is not refused for the next 30 s
  const sent = out.length;
  r.handle(0, frame({ dstMac: GW0, srcMac: '52:54:00:00:00:0c', src: '10.1.0.3', dst: '10.2.0.2', proto: 'udp', sport: 5353, dport: 53 }));
  t.is(out.length, sent + 1);
  const c1 = out.at(-1)!;
  t.is(c1.ifIndex, 1, "C's flow left");
  t.deepEqual([...c1.f.subarray(26, 30)], ip4('10.2.0.1'));
  t.true(r.natEntries().some((e) => e.insideAddr === '10.1.0.3'));
  const tc = r.counters();
  t.is(tc.dropNatTableFull, 0);
  t.is(tc.natEntriesEvicted, 7, "A's oldest unanswered entries made room, each counted");
  // answered, C's flow stays whatever A sends
  const reply = frame({ dstMac: GW1, srcMac: B_MAC, src: '10.2.0.2', dst: '10.2.0.1', proto: 'udp', sport: 53, dport: be16(c1.f, 34) });
  r.handle(1, reply);
  for (let p = 3000; p < 3010; p++) r.handle(0, frame({ dstMac: GW0, srcMac: A_MAC, src: '10.1.0.2', dst: '10.2.0.2', proto: 'udp', sport: p, dport: 9 }));
  t.deepEqual(r.natEntries().filter((e) => e.insideAddr === '10.1.0.3').map((e) => e.state), ['established']);
});

test('ARP table filled by one host claiming many addresses: a new neighbour is still learned (the least recently refreshed entry is evicted, counted) and reached', (t) => {
  const r = new Router({ interfaces: [{ name: 'in', address: '10.1.0.1/24' }, { name: 'out', address: '10.2.0.1/24' }], clock: new ManualClock(1000), arp: { maxEntries: 8 } });
  const out: { ifIndex: number; f: Uint8Array }[] = [];
  r.attach((ifIndex, f, len) => {
    out.push({ ifIndex, f: Uint8Array.from(f.subarray(0, len)) });
    return true;
  });
  r.handle(1, arp(1, B_MAC, '10.2.0.2', '10.2.0.1'));
  // one host asks for the gateway from 8 addresses of the subnet: the table is full, for 300 s
  for (let k = 0; k < 8; k++) r.handle(0, arp(1, '52:54:00:00:01:01', `10.1.0.${100 + k}`, '10.1.0.1'));
  r.handle(0, arp(1, A_MAC, '10.1.0.2', '10.1.0.1'));
  t.true(r.neighbours().some((n) => n.ip === '10.1.0.2' && n.mac === A_MAC), 'A learned');
  t.is(r.neighbours().filter((n) => n.iface === 'in').length, 8, 'still at most 8');
  out.length = 0;
  r.handle(1, frame({ dstMac: GW1, srcMac: B_MAC, src: '10.2.0.2', dst: '10.1.0.2', proto: 'udp', sport: 53, dport: 5353 }));
  t.is(out.length, 1);
  t.is(out[0]!.ifIndex, 0);
  t.deepEqual([...out[0]!.f.subarray(0, 6)], macB(A_MAC), 'B reaches A at once');
  t.is(r.counters().arpEvicted, 1);
});

const C_MAC = '52:54:00:00:00:0c';

test('NAT: one inside host flooding new flows (answered or not) cannot evict another host\'s live translation nor keep its new flows out: it is held to maxEntriesPerHost, counted', (t) => {
  const { r, out } = rig({ nat: true, maxEntries: 16 }); // a quarter of the table per host by default: 4
  learnHosts(r, out);
  r.handle(0, arp(1, C_MAC, '10.1.0.3', '10.1.0.1'));
  out.length = 0;
  // C opens a TCP connection: its SYN leaves, the SYN-ACK is not back yet (the entry is unanswered)
  r.handle(0, frame({ dstMac: GW0, srcMac: C_MAC, src: '10.1.0.3', dst: '10.2.0.2', proto: 'tcp', sport: 40000, dport: 443, tcpFlags: 0x02 }));
  const syn = out.pop()!;
  t.is(syn.ifIndex, 1);
  const cPort = be16(syn.f, 34);
  // A sprays new flows nobody answers, from every source port to random destination ports
  for (let n = 0; n < 200; n++) {
    r.handle(0, frame({ dstMac: GW0, srcMac: A_MAC, src: '10.1.0.2', dst: '10.2.0.2', proto: 'udp', sport: 1024 + n, dport: 1 + (randomBytes(2).readUInt16BE() % 65535) }));
  }
  out.length = 0;
  // the SYN-ACK finds C's entry and reaches C
  r.handle(1, frame({ dstMac: GW1, srcMac: B_MAC, src: '10.2.0.2', dst: '10.2.0.1', proto: 'tcp', sport: 443, dport: cPort, tcpFlags: 0x12 }));
  t.is(out.length, 1, `the SYN-ACK reached C: ${JSON.stringify(r.counters())}`);
  t.is(r.natEntries().filter((e) => e.insideAddr === '10.1.0.2').length, 4, 'A holds its share, no more');
  t.is(out[0]!.ifIndex, 0);
  t.deepEqual([...out[0]!.f.subarray(0, 6)], macB(C_MAC));
  t.is(be16(out[0]!.f, 36), 40000);
  t.is(r.counters().dropNatNoMapping, 0);
  t.is(r.counters().natEntriesEvicted, 196, "A's own oldest unanswered flows made room for its new ones");
  // now a server outside answers each of A's flows at once: A's answered flows are kept, its new ones beyond its share refused
  out.length = 0;
  for (let n = 0; n < 30; n++) {
    r.handle(0, frame({ dstMac: GW0, srcMac: A_MAC, src: '10.1.0.2', dst: '10.2.0.2', proto: 'udp', sport: 3000 + n, dport: 53 }));
    const o = out.pop();
    if (o?.ifIndex === 1) r.handle(1, frame({ dstMac: GW1, srcMac: B_MAC, src: '10.2.0.2', dst: '10.2.0.1', proto: 'udp', sport: 53, dport: be16(o.f, 34) }));
  }
  const c = r.counters();
  t.is(c.dropNatHostLimit, 26, JSON.stringify(c));
  t.is(c.dropNatTableFull, 0);
  t.deepEqual(r.natEntries().filter((e) => e.insideAddr === '10.1.0.2').map((e) => e.state), ['established', 'established', 'established', 'established']);
  // C's connection goes on, and C opens new ones
  out.length = 0;
  r.handle(0, frame({ dstMac: GW0, srcMac: C_MAC, src: '10.1.0.3', dst: '10.2.0.2', proto: 'tcp', sport: 40000, dport: 443, tcpFlags: 0x10 }));
  r.handle(0, frame({ dstMac: GW0, srcMac: C_MAC, src: '10.1.0.3', dst: '10.2.0.2', proto: 'tcp', sport: 40001, dport: 443, tcpFlags: 0x02 }));
  t.deepEqual(out.map((o) => [o.ifIndex, be16(o.f, 36)]), [[1, 443], [1, 443]]);
  t.is(be16(out[0]!.f, 34), cPort, 'the same translation');
  t.deepEqual(r.natEntries().filter((e) => e.insideAddr === '10.1.0.3').map((e) => [e.insidePort, e.state]), [[40000, 'established'], [40001, 'new']]);
});

test('NAT table at its bound: a new flow takes the place of an unanswered flow of the host holding the most entries, never of a host holding fewer than the new flow\'s own', (t) => {
  const clock = new ManualClock(0);
  const nat = new NatTable({ clock, maxEntries: 8, maxEntriesPerHost: 8 }); // the table's rule alone
  const [A, X, Y, B] = [0x0a010002, 0x0a010003, 0x0a010004, 0x0a020002];
  const hostsOf = (): Record<string, number> => {
    const n: Record<string, number> = {};
    for (const e of nat.entries()) n[e.insideAddr] = (n[e.insideAddr] ?? 0) + 1;
    return n;
  };
  // X has two flows waiting for their first reply (a TCP handshake, a DNS query): the oldest unanswered in the table
  t.not(typeof nat.outbound('tcp', X, 40000, B, 443, 0x02), 'string');
  t.not(typeof nat.outbound('udp', X, 5353, B, 53), 'string');
  // A sprays new flows: once the table is full A holds the most and gives up its own oldest
  for (let p = 0; p < 50; p++) t.not(typeof nat.outbound('udp', A, 2000 + p, B, 9), 'string');
  t.deepEqual(hostsOf(), { '10.1.0.2': 6, '10.1.0.3': 2 });
  // Y, with none, gets in at the expense of A (which holds the most), not X
  t.not(typeof nat.outbound('udp', Y, 1000, B, 53), 'string');
  t.deepEqual(hostsOf(), { '10.1.0.2': 5, '10.1.0.3': 2, '10.1.0.4': 1 });
  // A's flows all answered: nothing of A's can go, so Y's next flow takes Y's own unanswered one, and A's next flow is refused
  for (const e of nat.entries().filter((x) => x.insideAddr === '10.1.0.2')) t.truthy(nat.inbound('udp', e.outsidePort, B, 9));
  t.not(typeof nat.outbound('udp', Y, 1001, B, 53), 'string');
  t.is(nat.outbound('udp', A, 3000, B, 9), 'dropTableFull');
  t.deepEqual(nat.entries().filter((e) => e.insideAddr !== '10.1.0.2').map((e) => [e.insideAddr, e.insidePort]), [['10.1.0.3', 40000], ['10.1.0.3', 5353], ['10.1.0.4', 1001]]);
  const c = nat.counters();
  t.is(c.entriesEvicted, 44 + 1 + 1);
  t.is(c.dropTableFull, 1);
  t.is(nat.maxEntriesPerHost, 8);
  t.is(new NatTable({ maxEntries: 4096 }).maxEntriesPerHost, 1024, 'a quarter of the table by default');
});

test('ARP pending: one source addressing many unresolved hosts holds at most arp.pendingPerSource frames (dropArpSourceLimit); another source\'s frame still waits and leaves once resolved', (t) => {
  for (const nat of [false, true]) {
    const { r, out, clock } = rig({ nat });
    learnHosts(r, out);
    // A sends to 64 unresolved addresses of the outside subnet: the whole pending table by default
    for (let k = 0; k < 64; k++) r.handle(0, frame({ dstMac: GW0, srcMac: A_MAC, src: '10.1.0.2', dst: `10.2.0.${100 + k}`, proto: 'udp', sport: 1000 + k, dport: 2 }));
    const requests = out.length;
    // C's frame for D (10.2.0.3, not resolved yet) is held, asked for, and leaves when D answers
    out.length = 0;
    r.handle(0, frame({ dstMac: GW0, srcMac: C_MAC, src: '10.1.0.3', dst: '10.2.0.3', proto: 'udp', sport: 7, dport: 8 }));
    t.is(out.length, 1, `nat ${nat}: C's frame held and asked for: ${JSON.stringify(r.counters())}`);
    t.deepEqual([...out[0]!.f.subarray(38, 42)], ip4('10.2.0.3'), 'an ARP request for D');
    r.handle(1, arp(2, '52:54:00:00:00:0d', '10.2.0.3', '10.2.0.1', GW1, GW1));
    t.is(out.length, 2);
    t.is(out[1]!.ifIndex, 1);
    t.deepEqual([...out[1]!.f.subarray(0, 6)], macB('52:54:00:00:00:0d'), "C's frame reached D");
    const c = r.counters();
    t.is(c.dropArpQueueFull, 0);
    t.is(c.forwarded, 1);
    t.is(c.dropArpSourceLimit, 48);
    t.is(requests, 16, 'A got 16 addresses asked for');
    // A's frames give up after 3 s; its share is free again
    clock.advance(3000);
    r.tick();
    t.is(r.counters().dropArpUnresolved, 16);
    out.length = 0;
    r.handle(0, frame({ dstMac: GW0, srcMac: A_MAC, src: '10.1.0.2', dst: '10.2.0.200', proto: 'udp', sport: 1, dport: 2 }));
    t.is(out.length, 1, 'held and asked for');
    t.is(r.counters().dropArpSourceLimit, 48);
  }
});

test('reverse-path filter (strict by default): a source from another subnet is dropped and counted, not routed, NATed or answered; the legitimate ones pass', (t) => {
  for (const nat of [false, true]) {
    const { r, out } = rig({ nat, routes: [{ prefix: '172.16.0.0/16', via: '10.1.0.254' }] });
    learnHosts(r, out);
    const R_MAC = '52:54:00:00:00:fe'; // the inside router in front of 172.16.0.0/16
    r.handle(0, arp(1, R_MAC, '10.1.0.254', '10.1.0.1'));
    out.length = 0;
    // from inside: B's subnet, an address no route leads to, and a ping to the router from B's subnet
    r.handle(0, frame({ dstMac: GW0, srcMac: A_MAC, src: '10.2.0.7', dst: '10.2.0.2', proto: 'udp', sport: 1, dport: 53 }));
    r.handle(0, frame({ dstMac: GW0, srcMac: A_MAC, src: '192.168.9.9', dst: '10.2.0.2', proto: 'tcp', sport: 40000, dport: 80 }));
    r.handle(0, frame({ dstMac: GW0, srcMac: A_MAC, src: '10.2.0.7', dst: '10.1.0.1', proto: 'icmp', sport: 5 }));
    // from outside: an inside address, and the prefix routed inside
    r.handle(1, frame({ dstMac: GW1, srcMac: B_MAC, src: '10.1.0.3', dst: nat ? '10.2.0.1' : '10.1.0.2', proto: 'udp', sport: 53, dport: 5353 }));
    r.handle(1, frame({ dstMac: GW1, srcMac: B_MAC, src: '172.16.0.9', dst: nat ? '10.2.0.1' : '10.1.0.2', proto: 'icmp', sport: 5 }));
    t.deepEqual(out, [], `nat ${nat}`);
    let c = r.counters();
    t.is(c.dropRpFilter, 5);
    t.is(c.natEntries + c.forwarded + c.echoRepliesSent, 0);
    // legitimate: A to B, a host behind the inside router to B, A pings the router
    r.handle(0, frame({ dstMac: GW0, srcMac: A_MAC, src: '10.1.0.2', dst: '10.2.0.2', proto: 'udp', sport: 1, dport: 53 }));
    r.handle(0, frame({ dstMac: GW0, srcMac: R_MAC, src: '172.16.0.9', dst: '10.2.0.2', proto: 'udp', sport: 1, dport: 53 }));
    r.handle(0, frame({ dstMac: GW0, srcMac: A_MAC, src: '10.1.0.2', dst: '10.1.0.1', proto: 'icmp', sport: 5 }));
    t.deepEqual(out.map((o) => o.ifIndex), [1, 1, 0]);
    c = r.counters();
    t.is(c.forwarded, 2);
    t.is(c.echoRepliesSent, 1);
    t.is(c.dropRpFilter, 5);
  }
});

test('reverse-path filter loose: any route back will do; off: nothing is checked', (t) => {
  const loose = rig({ rpFilter: 'loose' });
  learnHosts(loose.r, loose.out);
  loose.r.handle(0, frame({ dstMac: GW0, srcMac: A_MAC, src: '10.2.0.7', dst: '10.2.0.2', proto: 'udp', sport: 1, dport: 53 }));
  loose.r.handle(0, frame({ dstMac: GW0, srcMac: A_MAC, src: '192.168.9.9', dst: '10.2.0.2', proto: 'udp', sport: 1, dport: 53 }));
  t.deepEqual(loose.out.map((o) => [o.ifIndex, [...o.f.subarray(26, 30)].join('.')]), [[1, '10.2.0.7']]);
  t.is(loose.r.counters().dropRpFilter, 1);
  const off = rig({ rpFilter: 'off' });
  learnHosts(off.r, off.out);
  off.r.handle(0, frame({ dstMac: GW0, srcMac: A_MAC, src: '192.168.9.9', dst: '10.2.0.2', proto: 'udp', sport: 1, dport: 53 }));
  t.is(off.out.length, 1);
  t.is(off.r.counters().dropRpFilter, 0);
});
