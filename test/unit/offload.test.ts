/**
 * cpp/core/offload (checksum completion, GSO segmentation) through its small
 * N-API export, checked against an Internet checksum written here from RFC
 * 1071 and against the invariants of segmentation: payload preserved in
 * order, sequence numbers advancing by gso_size, IP lengths and ids, flags
 * only where they belong. (tap-port.test.ts has the Linux stack check the
 * same code's output for real.)
 */
import test from 'ava';
import { nativeRaw } from '../../src/netmap/addon.js';

interface OffloadAddon {
  offloadCompleteCsum(hdr: Buffer, frame: Buffer): string;
  offloadSegment(hdr: Buffer, frame: Buffer, maxFrame: number, maxSegments?: number): { error: string; segments: Buffer[]; count: number };
}
const addon = nativeRaw as OffloadAddon;

function hdr(o: { flags?: number; gsoType?: number; hdrLen?: number; gsoSize?: number; csumStart?: number; csumOffset?: number }): Buffer {
  const b = Buffer.alloc(10);
  b[0] = o.flags ?? 0;
  b[1] = o.gsoType ?? 0;
  b.writeUInt16LE(o.hdrLen ?? 0, 2);
  b.writeUInt16LE(o.gsoSize ?? 0, 4);
  b.writeUInt16LE(o.csumStart ?? 0, 6);
  b.writeUInt16LE(o.csumOffset ?? 0, 8);
  return b;
}

function sum16(b: Uint8Array, start = 0, end = b.length, init = 0): number {
  let s = init;
  for (let i = start; i < end; i += 2) s += (b[i]! << 8) | (i + 1 < end ? b[i + 1]! : 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

/** a TCP/IPv4 or /IPv6 frame with `payload` bytes; L4 checksum left as Linux leaves it for offload (pseudo-header sum) */
function tcpFrame(v6: boolean, payload: number, flags = 0x18): Buffer {
  const l3 = 14;
  const iphl = v6 ? 40 : 20;
  const l4 = l3 + iphl;
  const f = Buffer.alloc(l4 + 20 + payload);
  f.fill(0x02, 0, 12);
  f.writeUInt16BE(v6 ? 0x86dd : 0x0800, 12);
  if (v6) {
    f[l3] = 0x60;
    f.writeUInt16BE(20 + payload, l3 + 4);
    f[l3 + 6] = 6;
    f[l3 + 7] = 64;
    f[l3 + 8 + 15] = 1;
    f[l3 + 24 + 15] = 2;
  } else {
    f[l3] = 0x45;
    f.writeUInt16BE(iphl + 20 + payload, l3 + 2);
    f.writeUInt16BE(1000, l3 + 4);
    f[l3 + 8] = 64;
    f[l3 + 9] = 6;
    f.set([10, 0, 0, 1, 10, 0, 0, 2], l3 + 12);
  }
  f.writeUInt16BE(40000, l4);
  f.writeUInt16BE(5201, l4 + 2);
  f.writeUInt32BE(0xfffff000, l4 + 4); // wraps during segmentation
  f[l4 + 12] = 5 << 4;
  f[l4 + 13] = flags;
  for (let i = 0; i < payload; i++) f[l4 + 20 + i] = (i * 7 + 3) & 0xff;
  return f;
}

/** the TCP checksum verifies: pseudo-header + segment sums to 0xffff */
function tcpOk(f: Buffer, v6: boolean): boolean {
  const l3 = 14;
  const l4 = l3 + (v6 ? 40 : 20);
  const len = f.length - l4;
  let s = v6 ? sum16(f, l3 + 8, l3 + 40) : sum16(f, l3 + 12, l3 + 20);
  s = sum16(Buffer.from([0, 6, len >> 8, len & 0xff]), 0, 4, s);
  return sum16(f, l4, f.length, s) === 0xffff;
}

test('NEEDS_CSUM: the checksum lands at csum_start + csum_offset and verifies', (t) => {
  const f = tcpFrame(false, 333);
  const l4 = 34;
  // Linux leaves the pseudo-header sum in the field
  const len = f.length - l4;
  const pseudo = sum16(Buffer.from([10, 0, 0, 1, 10, 0, 0, 2, 0, 6, len >> 8, len & 0xff]));
  f.writeUInt16BE(pseudo, l4 + 16);
  t.is(addon.offloadCompleteCsum(hdr({ flags: 1, csumStart: l4, csumOffset: 16 }), f), 'none');
  t.true(tcpOk(f, false));
});

test('NEEDS_CSUM with offsets outside the frame is refused, frame untouched', (t) => {
  const f = tcpFrame(false, 10);
  const copy = Buffer.from(f);
  t.is(addon.offloadCompleteCsum(hdr({ flags: 1, csumStart: f.length - 1, csumOffset: 0 }), f), 'badCsumOffsets');
  t.is(addon.offloadCompleteCsum(hdr({ flags: 1, csumStart: 60000, csumOffset: 16 }), f), 'badCsumOffsets');
  t.is(addon.offloadCompleteCsum(hdr({ flags: 1, csumStart: 34, csumOffset: 65535 }), f), 'badCsumOffsets');
  t.deepEqual(f, copy);
});

// The switch completes the checksum after the lookup decided: a header that
// points it at the Ethernet/VLAN/IP headers or an L4 port would let the
// sender set those 2 bytes to anything behind the lookup's back.
test('NEEDS_CSUM pointing into the headers or the L4 ports is refused, frame untouched; a deeper start (an encapsulated packet) is taken', (t) => {
  const f = tcpFrame(false, 40);
  const copy = Buffer.from(f);
  const l4 = 34;
  for (const [csumStart, csumOffset] of [[0, 0], [0, 6], [12, 0], [14, 12], [14, 16], [l4, 0], [l4, 2], [l4 + 4, 0], [l4 - 2, 18]] as const) {
    t.is(addon.offloadCompleteCsum(hdr({ flags: 1, csumStart, csumOffset }), f), 'badCsumOffsets', `csum_start ${csumStart} csum_offset ${csumOffset}`);
  }
  t.deepEqual(f, copy);
  // past the TCP header (20 bytes here): a tunnelled packet's own checksum
  t.is(addon.offloadCompleteCsum(hdr({ flags: 1, csumStart: l4 + 20, csumOffset: 6 }), f), 'none');
  // UDP: its checksum field (offset 6) only, never its ports
  const udp = Buffer.from(copy);
  udp[14 + 9] = 17;
  t.is(addon.offloadCompleteCsum(hdr({ flags: 1, csumStart: l4, csumOffset: 2 }), udp), 'badCsumOffsets');
  t.is(addon.offloadCompleteCsum(hdr({ flags: 1, csumStart: l4, csumOffset: 6 }), udp), 'none');
  // not an IP frame: no checksum to complete
  const arp = Buffer.from(copy);
  arp.writeUInt16BE(0x0806, 12);
  t.is(addon.offloadCompleteCsum(hdr({ flags: 1, csumStart: l4, csumOffset: 16 }), arp), 'badCsumOffsets');
});

for (const v6 of [false, true]) {
  test(`GSO TCPv${v6 ? 6 : 4}: segments of gso_size, payload in order, headers and checksums right`, (t) => {
    const mss = 1448;
    const payload = 10 * mss + 100;
    const f = tcpFrame(v6, payload, 0x18 | 0x01 | 0x80); // PSH FIN CWR
    const l4 = 14 + (v6 ? 40 : 20);
    const r = addon.offloadSegment(hdr({ flags: 1, gsoType: v6 ? 4 : 1, hdrLen: l4 + 20, gsoSize: mss, csumStart: l4, csumOffset: 16 }), f, 2048);
    t.is(r.error, 'none');
    t.is(r.segments.length, 11);
    t.is(r.count, 11);
    const joined: Buffer[] = [];
    r.segments.forEach((s, i) => {
      const last = i === r.segments.length - 1;
      t.is(s.length, l4 + 20 + (last ? 100 : mss));
      t.true(tcpOk(s, v6), `segment ${i} TCP checksum`);
      if (v6) t.is(s.readUInt16BE(14 + 4), s.length - l4);
      else {
        t.is(s.readUInt16BE(14 + 2), s.length - 14);
        t.is(s.readUInt16BE(14 + 4), 1000 + i);
        t.is(sum16(s, 14, 34), 0xffff, `segment ${i} IPv4 header checksum`);
      }
      t.is(s.readUInt32BE(l4 + 4), (0xfffff000 + i * mss) >>> 0);
      const fl = s[l4 + 13]!;
      t.is((fl & 0x01) !== 0, last, 'FIN on the last only');
      t.is((fl & 0x08) !== 0, last, 'PSH on the last only');
      t.is((fl & 0x80) !== 0, i === 0, 'CWR on the first only');
      joined.push(s.subarray(l4 + 20));
    });
    t.deepEqual(Buffer.concat(joined), f.subarray(l4 + 20));
  });
}

test('GSO: what cannot be segmented is refused with its reason', (t) => {
  const f = tcpFrame(false, 5000);
  t.is(addon.offloadSegment(hdr({ gsoType: 1, gsoSize: 0 }), f, 2048).error, 'badGsoSize');
  t.is(addon.offloadSegment(hdr({ gsoType: 3, gsoSize: 1000 }), f, 2048).error, 'badGsoType');
  t.is(addon.offloadSegment(hdr({ gsoType: 4, gsoSize: 1000 }), f, 2048).error, 'badHeaders', 'TCPv6 GSO on an IPv4 frame');
  t.is(addon.offloadSegment(hdr({ gsoType: 1, gsoSize: 4000 }), f, 2048).error, 'segmentTooLong');
  t.is(addon.offloadSegment(hdr({ gsoType: 1, gsoSize: 1000 }), f.subarray(0, 40), 2048).error, 'badHeaders', 'truncated headers');
  const bad = Buffer.from(f);
  bad[14 + 20 + 12] = 15 << 4; // TCP header longer than the frame's headers allow? (60 bytes: fits) then ihl beyond
  bad[14] = 0x4f;
  t.is(addon.offloadSegment(hdr({ gsoType: 1, gsoSize: 1000 }), bad.subarray(0, 80), 2048).error, 'badHeaders', 'IP header longer than the frame');
  const partial = addon.offloadSegment(hdr({ gsoType: 1, gsoSize: 1000 }), f, 2048, 2);
  t.is(partial.error, 'noRoom');
  t.is(partial.segments.length, 2);
});

test('GSO UDP_L4: datagrams of gso_size with lengths and checksums', (t) => {
  const payload = 3000;
  const f = Buffer.alloc(14 + 20 + 8 + payload);
  f.writeUInt16BE(0x0800, 12);
  f[14] = 0x45;
  f[14 + 9] = 17;
  f.set([10, 0, 0, 1, 10, 0, 0, 2], 26);
  for (let i = 0; i < payload; i++) f[42 + i] = i & 0xff;
  const r = addon.offloadSegment(hdr({ gsoType: 5, gsoSize: 1200 }), f, 2048);
  t.is(r.error, 'none');
  t.deepEqual(r.segments.map((s) => s.length - 42), [1200, 1200, 600]);
  for (const s of r.segments) {
    const len = s.length - 34;
    t.is(s.readUInt16BE(38), len);
    const ps = sum16(Buffer.from([10, 0, 0, 1, 10, 0, 0, 2, 0, 17, len >> 8, len & 0xff]));
    t.is(sum16(s, 34, s.length, ps), 0xffff);
  }
});

test('GSO behind two VLAN tags (802.1ad outside 802.1Q): segments keep both tags, checksums right; a cut tag is refused', (t) => {
  const plain = tcpFrame(false, 3000);
  // the two tags go after the MAC addresses
  const f = Buffer.concat([plain.subarray(0, 12), Buffer.from('88a8000a8100a064', 'hex'), plain.subarray(12)]);
  const l4 = 14 + 8 + 20;
  const r = addon.offloadSegment(hdr({ flags: 1, gsoType: 1, hdrLen: l4 + 20, gsoSize: 1000, csumStart: l4, csumOffset: 16 }), f, 2048);
  t.is(r.error, 'none');
  t.is(r.segments.length, 3);
  r.segments.forEach((s, i) => {
    t.is(s.subarray(12, 22).toString('hex'), '88a8000a8100a0640800', `segment ${i} tags`);
    t.is(sum16(s, 22, l4), 0xffff, `segment ${i} IPv4 header checksum`);
    t.true(tcpOk(Buffer.concat([s.subarray(0, 12), s.subarray(20)]), false), `segment ${i} TCP checksum`);
  });
  t.is(addon.offloadSegment(hdr({ gsoType: 1, gsoSize: 1000 }), f.subarray(0, 20), 2048).error, 'badHeaders', 'the frame ends inside the second tag');
});
