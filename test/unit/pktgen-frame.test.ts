import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DEFAULT_PAYLOAD,
  INDIRECT_PAYLOAD,
  AddressError,
  PcapError,
  buildFrame,
  formatIpv4,
  formatIpv6,
  formatMac,
  frameLayout,
  ipChecksum,
  onesSum,
  parseIpRange,
  parseIpv4,
  parseIpv6,
  parseMac,
  readFirstPcapPacket,
  udpChecksum,
  withVnetHeader,
} from '../../tools/pkt-gen/frame.js';
import { csumUpdate16, csumUpdate32, rewriteFrame, verifyFrameChecksums } from '../fixtures/frame-check.js';

const r16 = (b: Uint8Array, o: number) => (b[o]! << 8) | b[o + 1]!;

/** Deterministic PRNG for the randomised tests. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
}

/** Recompute both checksums from scratch (fields zeroed) and compare with the stored ones. */
function checkFromScratch(t: { is: (a: unknown, b: unknown, m?: string) => void }, frame: Uint8Array, len: number) {
  const f = frame.slice(0, len);
  const v6 = r16(f, 12) === 0x86dd;
  const l4 = v6 ? 54 : 34;
  if (!v6) {
    const stored = r16(f, 24);
    f[24] = 0;
    f[25] = 0;
    t.is(ipChecksum(f, 14, 20), stored, 'IPv4 header checksum');
    f[24] = stored >> 8;
    f[25] = stored & 0xff;
    t.is(ipChecksum(f, 14, 20), 0, 'IPv4 header verifies to 0');
  }
  const udpLen = r16(f, l4 + 4);
  t.is(udpLen, len - l4, 'UDP length');
  t.is(v6 ? r16(f, 18) : r16(f, 16), v6 ? len - 54 : len - 14, 'IP length');
  const src = v6 ? f.slice(22, 38) : f.slice(26, 30);
  const dst = v6 ? f.slice(38, 54) : f.slice(30, 34);
  const stored = r16(f, l4 + 6);
  f[l4 + 6] = 0;
  f[l4 + 7] = 0;
  let fresh = udpChecksum(f, l4, udpLen, src, dst);
  if (fresh === 0) fresh = 0xffff;
  t.is(stored, fresh, 'UDP checksum equals a fresh computation');
}

test('IPv4 frame: layout and header fields (pkt-gen.md §1)', (t) => {
  const f = buildFrame({
    srcMac: '00:00:00:00:00:00',
    dstMac: 'ff:ff:ff:ff:ff:ff',
    srcIp: '10.0.0.1',
    dstIp: '10.1.0.1',
    srcPort: 1234,
    dstPort: 1234,
    len: 60,
  });
  t.is(f.length, 60);
  t.deepEqual([...f.subarray(0, 6)], [255, 255, 255, 255, 255, 255]);
  t.deepEqual([...f.subarray(6, 12)], [0, 0, 0, 0, 0, 0]);
  t.is(r16(f, 12), 0x0800);
  t.is(f[14], 0x45);
  t.is(f[15], 0x10, 'TOS IPTOS_LOWDELAY');
  t.is(r16(f, 16), 46, 'ip_len = 60 - 14');
  t.is(r16(f, 18), 0, 'id 0');
  t.is(r16(f, 20), 0x4000, 'DF');
  t.is(f[22], 64, 'TTL');
  t.is(f[23], 17, 'UDP');
  t.is(formatIpv4(parseIpv4('10.0.0.1')), '10.0.0.1');
  t.deepEqual([...f.subarray(26, 30)], [10, 0, 0, 1]);
  t.deepEqual([...f.subarray(30, 34)], [10, 1, 0, 1]);
  t.is(r16(f, 34), 1234);
  t.is(r16(f, 36), 1234);
  t.is(r16(f, 38), 26, 'udp len = 60 - 34');
  t.is(ipChecksum(f, 14, 20), 0, 'header checksum verifies to 0');
  t.is(
    udpChecksum(f, 34, 26, f.subarray(26, 30), f.subarray(30, 34)),
    0,
    'UDP checksum verifies with the pseudo-header',
  );
  t.true(verifyFrameChecksums(f));
  checkFromScratch(t, f, 60);
  const payload = Buffer.from(f.subarray(42, 59)).toString('latin1');
  t.is(payload, DEFAULT_PAYLOAD.slice(0, 17));
  t.is(f[59], 0, 'last payload byte is NUL');
});

test('payload repeats the pkt-gen text and ends with NUL for many lengths', (t) => {
  for (const len of [43, 44, 60, 64, 113, 114, 115, 128, 512, 1000, 1514, 9000, 65535, 65536]) {
    const f = buildFrame({ srcMac: '0:1:2:3:4:5', dstMac: '6:7:8:9:a:b', srcIp: '1.2.3.4', dstIp: '5.6.7.8', srcPort: 1, dstPort: 65535, len });
    t.is(f.length, len);
    for (let i = 42; i < len - 1; i++) {
      if (f[i] !== DEFAULT_PAYLOAD.charCodeAt((i - 42) % DEFAULT_PAYLOAD.length)) {
        t.fail(`len ${len}: payload byte ${i}`);
        return;
      }
    }
    t.is(f[len - 1], 0);
    checkFromScratch(t, f, len);
    t.true(verifyFrameChecksums(f), `len ${len}`);
  }
});

test('indirect payload text with -I', (t) => {
  const f = buildFrame({ srcMac: '0:0:0:0:0:1', dstMac: '0:0:0:0:0:2', srcIp: 1, dstIp: 2, srcPort: 1, dstPort: 2, len: 200, indirect: true });
  t.is(Buffer.from(f.subarray(42, 42 + 20)).toString('latin1'), INDIRECT_PAYLOAD.slice(0, 20));
  t.true(verifyFrameChecksums(f));
});

test('frames shorter than the headers are truncated', (t) => {
  for (const len of [16, 20, 34, 41, 42]) {
    const f = buildFrame({ srcMac: '0:0:0:0:0:1', dstMac: '0:0:0:0:0:2', srcIp: '10.0.0.1', dstIp: '10.1.0.1', srcPort: 1, dstPort: 2, len });
    t.is(f.length, len);
    t.is(r16(f, 12), 0x0800);
  }
  t.throws(() => buildFrame({ srcMac: '0:0:0:0:0:1', dstMac: '0:0:0:0:0:2', srcIp: 1, dstIp: 2, srcPort: 1, dstPort: 2, len: 15 }), { instanceOf: RangeError });
  t.throws(() => buildFrame({ srcMac: '0:0:0:0:0:1', dstMac: '0:0:0:0:0:2', srcIp: 1, dstIp: 2, srcPort: 1, dstPort: 2, len: 65537 }), { instanceOf: RangeError });
  t.throws(() => buildFrame({ srcMac: 'x', dstMac: '0:0:0:0:0:2', srcIp: 1, dstIp: 2, srcPort: 1, dstPort: 2, len: 60 }), { instanceOf: AddressError });
});

test('IPv6 frame', (t) => {
  const f = buildFrame({ srcMac: '02:00:00:00:00:01', dstMac: '02:00:00:00:00:02', srcIp: 'fd00::1', dstIp: 'fd00::2', srcPort: 1234, dstPort: 4321, len: 100, af: 6 });
  t.is(f.length, 100);
  t.is(r16(f, 12), 0x86dd);
  t.is(f[14], 0x60);
  t.is(f[15], 0);
  t.is(r16(f, 16), 0, 'flow label 0');
  t.is(r16(f, 18), 46, 'payload length = 100 - 54');
  t.is(f[20], 17);
  t.is(f[21], 64);
  t.is(formatIpv6(f.subarray(22, 38)), 'fd00::1');
  t.is(formatIpv6(f.subarray(38, 54)), 'fd00::2');
  t.is(r16(f, 54), 1234);
  t.is(r16(f, 56), 4321);
  t.is(r16(f, 58), 46);
  t.is(udpChecksum(f, 54, 46, f.subarray(22, 38), f.subarray(38, 54)), 0);
  t.is(Buffer.from(f.subarray(62, 70)).toString('latin1'), DEFAULT_PAYLOAD.slice(0, 8));
  t.is(f[99], 0);
  checkFromScratch(t, f, 100);
  t.deepEqual(frameLayout(f), { af: 6, l3: 14, l4: 54, payload: 62, len: 100 });
});

test('checksum helpers against a reference sum', (t) => {
  const next = rng(7);
  for (let iter = 0; iter < 200; iter++) {
    const n = 2 + (next() % 200);
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = next() & 0xff;
    // reference: plain 32-bit sum then fold
    let ref = 0;
    for (let i = 0; i < n; i += 2) ref += (b[i]! << 8) | (i + 1 < n ? b[i + 1]! : 0);
    while (ref > 0xffff) ref = (ref & 0xffff) + (ref >>> 16);
    t.is(onesSum(b, 0, n), ref);
    // incremental 16-bit update equals recomputation
    const even = n & ~1;
    b[0] = 0;
    b[1] = 0;
    const c0 = ipChecksum(b, 0, even);
    const w = 2 + 2 * (next() % ((even - 2) / 2 || 1));
    if (w + 1 < even) {
      const oldW = r16(b, w);
      const newW = next() & 0xffff;
      b[w] = newW >> 8;
      b[w + 1] = newW & 0xff;
      const inc = csumUpdate16(c0, oldW, newW);
      const full = ipChecksum(b, 0, even);
      t.is(inc % 0xffff, full % 0xffff, 'same ones-complement value (0 and 0xffff are equal)');
    }
  }
  t.is(csumUpdate32(0x1234, 0x0a000001, 0x0a000001), 0x1234);
});

test('rewriteFrame keeps checksums valid over many random rewrites (IPv4 and IPv6)', (t) => {
  const next = rng(12345);
  for (const af of [4, 6] as const) {
    const max = 1514;
    const f = buildFrame({
      srcMac: '02:00:00:00:00:01', dstMac: 'ff:ff:ff:ff:ff:ff',
      srcIp: af === 4 ? '10.0.0.1' : 'fd00::1', dstIp: af === 4 ? '10.1.0.1' : 'fd00::2',
      srcPort: 1234, dstPort: 1234, len: max, af,
    });
    const payload = f.slice(); // payload bytes must never move
    const l4 = af === 4 ? 34 : 54;
    let len = max;
    for (let i = 0; i < 1500; i++) {
      const ch: Parameters<typeof rewriteFrame>[1] = {};
      const which = next();
      if (which & 1) ch.srcIp = af === 4 ? next() : randomV6(next);
      if (which & 2) ch.dstIp = af === 4 ? next() : randomV6(next);
      if (which & 4) ch.srcPort = next() & 0xffff;
      if (which & 8) ch.dstPort = next() & 0xffff;
      if (which & 16) ch.len = l4 + 12 + (next() % (max - l4 - 12 + 1));
      if (which & 32) ch.seq = next();
      len = rewriteFrame(f, ch);
      if (ch.len !== undefined) t.is(len, ch.len);
      if (ch.srcPort !== undefined) t.is(r16(f, l4), ch.srcPort);
      if (ch.dstPort !== undefined) t.is(r16(f, l4 + 2), ch.dstPort);
      if (ch.seq !== undefined) t.is(((f[l4 + 8]! << 24) | (f[l4 + 9]! << 16) | (f[l4 + 10]! << 8) | f[l4 + 11]!) >>> 0, ch.seq >>> 0);
      if (ch.srcIp !== undefined) {
        if (af === 4) t.is(((f[26]! << 24) | (f[27]! << 16) | (f[28]! << 8) | f[29]!) >>> 0, ch.srcIp as number);
        else t.deepEqual([...f.subarray(22, 38)], [...(ch.srcIp as Uint8Array)]);
      }
      checkFromScratch(t, f, len);
      t.true(verifyFrameChecksums(f));
    }
    t.deepEqual([...f.subarray(l4 + 12)], [...payload.subarray(l4 + 12)], 'payload past the sequence number untouched');
  }
});

function randomV6(next: () => number): Uint8Array {
  const b = new Uint8Array(16);
  for (let i = 0; i < 16; i++) b[i] = next() & 0xff;
  return b;
}

test('rewriteFrame with text addresses and a frame built from scratch agree', (t) => {
  const base = { srcMac: '0:0:0:0:0:1', dstMac: '0:0:0:0:0:2', srcPort: 5, dstPort: 6, len: 60 };
  const a = buildFrame({ ...base, srcIp: '10.0.0.1', dstIp: '10.1.0.1' });
  rewriteFrame(a, { srcIp: '192.168.7.9', dstIp: '172.16.0.1', srcPort: 4000, dstPort: 5000 });
  const b = buildFrame({ ...base, srcIp: '192.168.7.9', dstIp: '172.16.0.1', srcPort: 4000, dstPort: 5000 });
  t.deepEqual([...a], [...b]);
});

test('rewriteFrame leaves a zero (absent) IPv4 UDP checksum alone, rejects bad input', (t) => {
  const f = buildFrame({ srcMac: '0:0:0:0:0:1', dstMac: '0:0:0:0:0:2', srcIp: 1, dstIp: 2, srcPort: 1, dstPort: 2, len: 80 });
  f[40] = 0;
  f[41] = 0;
  rewriteFrame(f, { srcIp: 99, srcPort: 7, seq: 5 });
  t.is(r16(f, 40), 0);
  t.is(ipChecksum(f, 14, 20), 0);
  t.true(verifyFrameChecksums(f));
  t.throws(() => rewriteFrame(f, { len: 81 }), { instanceOf: RangeError });
  t.throws(() => rewriteFrame(f, { len: 41 }), { instanceOf: RangeError });
  t.throws(() => rewriteFrame(f, { srcPort: 70000 }), { instanceOf: RangeError });
  const arp = new Uint8Array(60);
  arp[12] = 0x08;
  arp[13] = 0x06;
  t.throws(() => rewriteFrame(arp, { seq: 1 }), { instanceOf: RangeError, message: /ethertype 0x0806/ });
});

test('withVnetHeader', (t) => {
  const f = Uint8Array.of(1, 2, 3);
  t.is(withVnetHeader(f, 0), f);
  t.deepEqual([...withVnetHeader(f, 10)], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]);
  t.is(withVnetHeader(f, 12).length, 15);
  t.throws(() => withVnetHeader(f, 11), { instanceOf: RangeError });
});

test('MAC parsing and formatting', (t) => {
  t.deepEqual([...parseMac('00:1B:21:0a:b:c')], [0, 0x1b, 0x21, 0x0a, 0x0b, 0x0c]);
  t.is(formatMac(parseMac('0:1B:21:a:b:c')), '00:1b:21:0a:0b:0c');
  for (const bad of ['', '00:11:22:33:44', '00:11:22:33:44:55:66', '00-11-22-33-44-55', '001:1:2:3:4:5', 'g0:1:2:3:4:5']) {
    t.throws(() => parseMac(bad), { instanceOf: AddressError }, bad);
  }
});

test('IP parsing and inet_ntop-style formatting', (t) => {
  t.is(parseIpv4('255.255.255.255'), 0xffffffff);
  for (const bad of ['1.2.3', '1.2.3.4.5', '256.0.0.1', '01.2.3.4', '1.2.3.x', '']) t.throws(() => parseIpv4(bad), { instanceOf: AddressError }, bad);
  const cases: Array<[string, string]> = [
    ['::', '::'],
    ['::1', '::1'],
    ['fd00::1', 'fd00::1'],
    ['2001:DB8:0:0:0:0:0:1', '2001:db8::1'],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
    ['1:0:0:2:0:0:3:4', '1::2:0:0:3:4'],
    ['fe80::', 'fe80::'],
    ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
    ['1:2:3:4:5:6:7::', '1:2:3:4:5:6:7:0'],
    ['::ffff:1.2.3.4', '::ffff:1.2.3.4'],
    ['::ffff:0102:0304', '::ffff:1.2.3.4'],
    ['64:ff9b::10.0.0.1', '64:ff9b::a00:1'],
    ['1:2:3:4:5:6:1.2.3.4', '1:2:3:4:5:6:102:304'],
  ];
  for (const [inp, out] of cases) t.is(formatIpv6(parseIpv6(inp)), out, inp);
  for (const bad of ['', '1', ':1::2', '1::2::3', '1:2:3:4:5:6:7:8:9', '12345::', 'g::1', '::1.2.3', '1:2:3:4:5:6:7:8::']) {
    t.throws(() => parseIpv6(bad), { instanceOf: AddressError }, bad);
  }
});

test('parseIpRange', (t) => {
  t.deepEqual(parseIpRange('10.0.0.1'), { name: '10.0.0.1', af: 4, ipStart: '10.0.0.1', ipEnd: '10.0.0.1', portStart: 1234, portEnd: 1234 });
  t.like(parseIpRange('10.0.0.1:80-10.0.0.9'), { ipEnd: '10.0.0.9', portStart: 80, portEnd: 80 });
  t.like(parseIpRange('10.0.0.9:90-10.0.0.1:80'), { ipStart: '10.0.0.1', ipEnd: '10.0.0.9', portStart: 80, portEnd: 90 });
  t.like(parseIpRange('10.0.0.1:010'), { portStart: 8 });
  t.like(parseIpRange('[fd00::5]:80', 6), { ipStart: 'fd00::5', portStart: 80, group: 7, endGroup: 7 });
  t.like(parseIpRange('2@fd00::5-4@[fd00::1:9]:99', 6), { ipStart: 'fd00::5', ipEnd: 'fd00::1:9', portStart: 99, portEnd: 1234, group: 2, endGroup: 4 });
  t.throws(() => parseIpRange('[fd00::5]x', 6), { instanceOf: AddressError });
  t.throws(() => parseIpRange('fd00::5', 4), { instanceOf: AddressError });
});

// ---------------------------------------------------------------------------
// pcap

const ETH_FRAME = buildFrame({ srcMac: '02:00:00:00:00:01', dstMac: '02:00:00:00:00:02', srcIp: '10.0.0.1', dstIp: '10.0.0.2', srcPort: 9, dstPort: 9, len: 74 });

function classicPcap(opts: { little: boolean; nano?: boolean; linktype?: number; packets?: Uint8Array[]; truncate?: number }): Buffer {
  const le = opts.little;
  const hdr = Buffer.alloc(24);
  const u32 = (b: Buffer, v: number, o: number) => (le ? b.writeUInt32LE(v, o) : b.writeUInt32BE(v, o));
  const u16 = (b: Buffer, v: number, o: number) => (le ? b.writeUInt16LE(v, o) : b.writeUInt16BE(v, o));
  u32(hdr, opts.nano ? 0xa1b23c4d : 0xa1b2c3d4, 0);
  u16(hdr, 2, 4);
  u16(hdr, 4, 6);
  u32(hdr, 65535, 16);
  u32(hdr, opts.linktype ?? 1, 20);
  const parts: Buffer[] = [hdr];
  for (const p of opts.packets ?? [ETH_FRAME]) {
    const rec = Buffer.alloc(16);
    u32(rec, 1700000000, 0);
    u32(rec, 5, 4);
    u32(rec, p.length, 8);
    u32(rec, p.length, 12);
    parts.push(rec, Buffer.from(p));
  }
  const all = Buffer.concat(parts);
  return opts.truncate !== undefined ? all.subarray(0, opts.truncate) : all;
}

function ngBlock(le: boolean, type: number, body: Buffer): Buffer {
  const pad = (4 - (body.length % 4)) % 4;
  const total = 12 + body.length + pad;
  const b = Buffer.alloc(total);
  const u32 = (v: number, o: number) => (le ? b.writeUInt32LE(v, o) : b.writeUInt32BE(v, o));
  u32(type, 0);
  u32(total, 4);
  body.copy(b, 8);
  u32(total, total - 4);
  return b;
}

function pcapng(le: boolean, opts: { linktype?: number; skipIdb?: boolean; spb?: boolean } = {}): Buffer {
  const w32 = (v: number) => {
    const b = Buffer.alloc(4);
    if (le) b.writeUInt32LE(v);
    else b.writeUInt32BE(v);
    return b;
  };
  const w16 = (v: number) => {
    const b = Buffer.alloc(2);
    if (le) b.writeUInt16LE(v);
    else b.writeUInt16BE(v);
    return b;
  };
  const shb = ngBlock(le, 0x0a0d0d0a, Buffer.concat([w32(0x1a2b3c4d), w16(1), w16(0), Buffer.alloc(8, 0xff)]));
  const idb = ngBlock(le, 1, Buffer.concat([w16(opts.linktype ?? 1), w16(0), w32(0)]));
  const other = ngBlock(le, 5, Buffer.alloc(8)); // interface statistics block: skipped
  const pkt = opts.spb
    ? ngBlock(le, 3, Buffer.concat([w32(ETH_FRAME.length), Buffer.from(ETH_FRAME)]))
    : ngBlock(le, 6, Buffer.concat([w32(0), w32(0), w32(0), w32(ETH_FRAME.length), w32(ETH_FRAME.length), Buffer.from(ETH_FRAME)]));
  return Buffer.concat(opts.skipIdb ? [shb, pkt] : [shb, idb, other, pkt]);
}

test('readFirstPcapPacket: classic pcap, both byte orders, µs and ns magic', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pktgen-pcap-'));
  try {
    const second = buildFrame({ srcMac: '0:0:0:0:0:1', dstMac: '0:0:0:0:0:2', srcIp: 1, dstIp: 2, srcPort: 1, dstPort: 2, len: 60 });
    for (const little of [true, false]) {
      for (const nano of [false, true]) {
        const p = join(dir, `c-${little}-${nano}.pcap`);
        writeFileSync(p, classicPcap({ little, nano, packets: [ETH_FRAME, second] }));
        t.deepEqual([...readFirstPcapPacket(p)], [...ETH_FRAME], `${little} ${nano}`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('readFirstPcapPacket: pcapng (EPB and SPB, both byte orders)', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pktgen-pcapng-'));
  try {
    for (const le of [true, false]) {
      for (const spb of [false, true]) {
        const p = join(dir, `n-${le}-${spb}.pcapng`);
        writeFileSync(p, pcapng(le, { spb }));
        t.deepEqual([...readFirstPcapPacket(p)], [...ETH_FRAME], `${le} ${spb}`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('readFirstPcapPacket: clear errors', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pktgen-pcaperr-'));
  try {
    const w = (name: string, data: Uint8Array | string) => {
      const p = join(dir, name);
      writeFileSync(p, data);
      return p;
    };
    const expectErr = (p: string, re: RegExp) => {
      const e = t.throws(() => readFirstPcapPacket(p), { instanceOf: PcapError });
      t.regex(e!.message, re);
      t.true(e!.message.includes(p), 'names the file');
    };
    expectErr(join(dir, 'missing.pcap'), /cannot read pcap file.*ENOENT/);
    expectErr(w('short.pcap', Uint8Array.of(0xd4, 0xc3)), /too short/);
    expectErr(w('text.pcap', 'hello, not a capture file\n'), /not a pcap or pcapng file/);
    expectErr(w('hdr.pcap', classicPcap({ little: true, truncate: 20 })), /truncated/);
    expectErr(w('empty.pcap', classicPcap({ little: true, packets: [] })), /no packets/);
    expectErr(w('cut.pcap', classicPcap({ little: false, truncate: 24 + 16 + 10 })), /truncated/);
    expectErr(w('cutrec.pcap', classicPcap({ little: false, truncate: 24 + 8 })), /truncated/);
    expectErr(w('raw.pcap', classicPcap({ little: true, linktype: 101 })), /link type 101.*Ethernet/);
    expectErr(w('tiny.pcap', classicPcap({ little: true, packets: [Uint8Array.of(1, 2, 3)] })), /shorter than an Ethernet header/);
    expectErr(w('raw.pcapng', pcapng(true, { linktype: 113 })), /link type 113/);
    expectErr(w('noidb.pcapng', pcapng(false, { skipIdb: true })), /undeclared interface 0/);
    const ng = pcapng(true);
    expectErr(w('cut.pcapng', ng.subarray(0, ng.length - 8)), /truncated|corrupt/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
