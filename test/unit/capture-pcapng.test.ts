/**
 * The pcapng writer and the libpcap-compiled filters, checked by the real
 * readers: files written here are read back by tshark and tcpdump (Debian's,
 * installed by the test), which must agree on frame count, interface names,
 * directions, addresses, lengths and timestamps; filters are compiled by
 * libpcap and must keep exactly what tcpdump's own reading with the same
 * expression keeps.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CaptureFilter, FilterError, PcapngWriter } from '../../src/capture/index.js';
import { ensurePackages } from '../fixtures/system-packages.js';

const dir = mkdtempSync(join(tmpdir(), `capture-${process.pid}-`));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

test.before(() => {
  ensurePackages(['tshark', 'tcpdump', 'libpcap0.8']);
});

const MAC_A = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B = [0x02, 0, 0, 0, 0, 0x0b];

/** Ethernet + IPv4 header + payload (checksums left 0: readers decode them anyway). */
function ipv4(src: string, dst: string, proto: number, l4: number[], from = MAC_A, to = MAC_B): Uint8Array {
  const ip = (s: string): number[] => s.split('.').map(Number);
  const total = 20 + l4.length;
  return Uint8Array.from([
    ...to, ...from, 0x08, 0x00,
    0x45, 0, total >> 8, total & 0xff, 0, 1, 0, 0, 64, proto, 0, 0, ...ip(src), ...ip(dst),
    ...l4,
  ]);
}
const icmpEcho = (type: number, seq: number): number[] => [type, 0, 0, 0, 0, 7, 0, seq, ...Array<number>(32).fill(0x61)];
const udp = (sport: number, dport: number, payload: number[]): number[] => [sport >> 8, sport & 0xff, dport >> 8, dport & 0xff, 0, 8 + payload.length, 0, 0, ...payload];

const frames = [
  { iface: 0, frame: ipv4('10.0.0.1', '10.0.0.2', 1, icmpEcho(8, 1)) },
  { iface: 1, frame: ipv4('10.0.0.2', '10.0.0.1', 1, icmpEcho(0, 1), MAC_B, MAC_A) },
  { iface: 0, frame: ipv4('10.0.0.1', '10.0.0.53', 17, udp(40000, 53, Array<number>(20).fill(0))) },
  { iface: 1, frame: ipv4('10.0.0.1', '10.0.0.9', 17, udp(40000, 9999, Array<number>(20).fill(0))) },
  // ARP: neither icmp nor port 53
  { iface: 0, frame: Uint8Array.from([...Array<number>(6).fill(0xff), ...MAC_A, 0x08, 0x06, ...Array<number>(28).fill(0)]) },
];

function writeCapture(path: string, tsResolution: 'us' | 'ns', snaplen?: number): bigint[] {
  const chunks: Uint8Array[] = [];
  const w = new PcapngWriter({ write: (c) => (chunks.push(c), true) }, { tsResolution, ...(snaplen ? { snaplen } : {}) });
  w.addInterface('vale0:01/rx', { direction: 'in' });
  w.addInterface('vale0:01/tx', { direction: 'out' });
  const base = 1_700_000_000_123_456_789n;
  const stamps = frames.map((_, i) => base + BigInt(i) * 1_000_001n);
  frames.forEach((f, i) => w.writePacket(f.iface, stamps[i]!, f.frame));
  writeFileSync(path, Buffer.concat(chunks));
  return stamps;
}

function tshark(path: string, fields: string[], filter?: string): string[][] {
  const args = ['-r', path, '-T', 'fields', '-E', 'separator=|', ...fields.flatMap((f) => ['-e', f])];
  if (filter) args.push('-Y', filter);
  const r = spawnSync('tshark', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tshark failed (${r.status}): ${r.stderr}`);
  return r.stdout.trim().split('\n').filter((l) => l).map((l) => l.split('|'));
}

test('tshark reads interfaces, directions, addresses, lengths and ns timestamps', (t) => {
  const path = join(dir, 'ns.pcapng');
  const stamps = writeCapture(path, 'ns');
  const rows = tshark(path, ['frame.interface_name', 'frame.packet_flags_direction', 'eth.src', 'ip.src', 'ip.dst', 'frame.len', 'frame.time_epoch']);
  t.is(rows.length, frames.length);
  rows.forEach((r, i) => {
    const f = frames[i]!;
    t.is(r[0], f.iface === 0 ? 'vale0:01/rx' : 'vale0:01/tx');
    // epb_flags direction: 1 inbound, 2 outbound (tshark prints it in hex)
    t.is(Number(r[1]), f.iface === 0 ? 1 : 2);
    t.is(r[2], Array.from(f.frame.subarray(6, 12), (b) => b.toString(16).padStart(2, '0')).join(':'));
    t.is(Number(r[5]), f.frame.length);
    const ns = stamps[i]!;
    t.is(r[6], `${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, '0')}`);
  });
  t.deepEqual(rows.slice(0, 2).map((r) => [r[3], r[4]]), [['10.0.0.1', '10.0.0.2'], ['10.0.0.2', '10.0.0.1']]);
});

test('microsecond captures and snaplen: tcpdump -r reads them, truncated frames keep their wire length', (t) => {
  const path = join(dir, 'us.pcapng');
  const stamps = writeCapture(path, 'us', 40);
  const r = spawnSync('tcpdump', ['-r', path, '-n', '-tt', '-e'], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  t.is(lines.length, frames.length);
  // tcpdump -tt prints seconds.microseconds: the ns stamp truncated
  t.true(lines[0]!.startsWith(`${stamps[0]! / 1_000_000_000n}.${String((stamps[0]! % 1_000_000_000n) / 1000n).padStart(6, '0')} `), lines[0]);
  const rows = tshark(path, ['frame.len', 'frame.cap_len']);
  rows.forEach((row, i) => t.deepEqual(row.map(Number), [frames[i]!.frame.length, Math.min(40, frames[i]!.frame.length)]));
});

test('a stream read from stdin by tcpdump -r -', (t) => {
  const path = join(dir, 'pipe.pcapng');
  writeCapture(path, 'us');
  const r = spawnSync('tcpdump', ['-r', '-', '-n'], { input: readFileSync(path), encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  t.is(r.stdout.trim().split('\n').length, frames.length);
});

test('libpcap filter over a batch keeps what tcpdump keeps with the same expression', (t) => {
  const path = join(dir, 'filter.pcapng');
  writeCapture(path, 'us');
  for (const expr of ['icmp', 'icmp or port 53', 'udp and not port 53', 'arp', 'ether src 02:00:00:00:00:0b']) {
    const f = new CaptureFilter(expr);
    // the frames laid out in one memory, as in a port's buffer pool
    const mem = new Uint8Array(frames.length * 2048);
    const offsets = new Uint32Array(frames.length);
    const lens = new Uint32Array(frames.length);
    frames.forEach((fr, i) => {
      offsets[i] = i * 2048;
      lens[i] = fr.frame.length;
      mem.set(fr.frame, i * 2048);
    });
    const keep = new Uint8Array(frames.length);
    const kept = f.matchBatch(mem, offsets, lens, frames.length, keep);
    const r = spawnSync('tcpdump', ['-r', path, '-n', '-c', '100', expr], { encoding: 'utf8' });
    t.is(r.status, 0, r.stderr);
    const want = r.stdout.trim() ? r.stdout.trim().split('\n').length : 0;
    t.is(kept, want, expr);
    // one frame at a time agrees with the batch
    t.deepEqual([...keep], frames.map((fr) => (f.match(fr.frame) ? 1 : 0)), expr);
  }
});

test('a frame outside the memory never passes; a short frame is safe', (t) => {
  const f = new CaptureFilter('icmp');
  const mem = new Uint8Array(100);
  const keep = new Uint8Array(2).fill(7);
  t.is(f.matchBatch(mem, Uint32Array.of(90, 0), Uint32Array.of(20, 3), 2, keep), 0);
  t.deepEqual([...keep], [0, 0]);
  t.throws(() => f.matchBatch(mem, Uint32Array.of(0), Uint32Array.of(0), 5, keep), { message: /count is larger/ });
});

test('a bad expression names libpcap\'s complaint', (t) => {
  const e = t.throws(() => new CaptureFilter('icmp or prot 53'), { instanceOf: FilterError });
  t.is(e.code, 'EINVAL');
  t.regex(e.message, /bad filter 'icmp or prot 53': .*syntax|bad filter/);
  t.regex(e.message, /pcap-filter/);
});

test('a filter longer than 2048 bytes is refused before libpcap compiles it, naming the limit', (t) => {
  // pcap_compile grows with about the cube of the expression ('port 1 or port 2 or ...': 4.7 KB
  // took 77 s): a long one would hold the capture for days before it starts. Padding makes one
  // that old code compiled at once, so the check is the length itself.
  const at = 'icmp' + ' '.repeat(2048 - 4);
  t.is(new CaptureFilter(at).expression.length, 2048, 'the limit itself compiles');
  const e = t.throws(() => new CaptureFilter(at + ' '), { instanceOf: FilterError });
  t.is(e.code, 'EINVAL');
  t.regex(e.message, /2049 bytes, more than the limit of 2048/);
  // bytes, not UTF-16 units: 683 three-byte characters are 2049 bytes
  t.throws(() => new CaptureFilter('\u2603'.repeat(683)), { instanceOf: FilterError, message: /2049 bytes/ });
});

test('interface names are the caller\'s bytes: framing holds (tshark reads them back), an oversized one is refused before anything is written', (t) => {
  const chunks: Uint8Array[] = [];
  const w = new PcapngWriter({ write: (c) => (chunks.push(c), true) });
  // odd lengths, a NUL, CR LF, a block-type magic in the text and multi-byte UTF-8
  const names = ['a', 'vale0:x\u0000y/rx', 'b\r\n\n\r\u000a\u000d\u000d\u000a', 'é☃\u{1f600}'];
  for (const n of names) w.addInterface(n, { direction: 'in' });
  const before = w.bytes;
  t.throws(() => w.addInterface('x'.repeat(65536)), { instanceOf: RangeError });
  t.is(w.bytes, before, 'nothing emitted for the refused interface');
  names.forEach((_, i) => w.writePacket(i, 1_000_000_000n, ipv4('10.0.0.1', '10.0.0.2', 17, [0, 1, 0, 2, 0, 8, 0, 0])));
  const file = join(dir, 'names.pcapng');
  writeFileSync(file, Buffer.concat(chunks));
  const r = spawnSync('tshark', ['-r', file, '-T', 'fields', '-e', 'frame.interface_id'], { encoding: 'utf8' });
  t.is(r.status, 0, r.stderr);
  t.deepEqual(r.stdout.trim().split('\n'), ['0', '1', '2', '3']);
});
