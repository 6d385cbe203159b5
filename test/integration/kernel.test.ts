/**
 * The kernel backend. Without /dev/netmap (CI) this checks the request
 * encoding byte by byte, the errors, the ring-id rules, and drives the whole
 * register/mmap/check/sync path against a fake /dev/netmap: a regular file
 * plus an LD_PRELOAD ioctl shim compiled on the fly. On a netmap box it also
 * registers a real VALE port.
 */
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  boundRingIds,
  encodeLegacyRegister,
  encodeRegister,
  kernelAvailable,
  KernelBackend,
} from '../../src/backends/kernel/port.js';
import { kernelRequest as kernelRequestNamed } from '../../src/backends/kernel/control.js';

/** The raw NIOCCTRL request, body only. */
const kernelRequest = (reqtype: number, name: string, body: Buffer, device?: string): Buffer => kernelRequestNamed(reqtype, name, body, device).body;
import { C, NIF, OFFSETS, RING, SIZES, SLOT, SLOT_SIZE } from '../../src/netmap/abi.js';
import { parsePortName, type ParsedPortName } from '../../src/netmap/name.js';

// ---- offsets: the addon's table must agree with netmap-abi.md ---------------

/** struct nmreq_header offsets, netmap-abi.md §4. */
const HDR_DOC = { nr_version: 0, nr_reqtype: 2, nr_reserved: 4, nr_name: 8, nr_options: 72, nr_body: 80 } as const;
/** struct nmreq_register offsets, netmap-abi.md §4. */
const REG_DOC = {
  nr_offset: 0,
  nr_memsize: 8,
  nr_tx_slots: 16,
  nr_rx_slots: 20,
  nr_tx_rings: 24,
  nr_rx_rings: 26,
  nr_host_tx_rings: 28,
  nr_host_rx_rings: 30,
  nr_mem_id: 32,
  nr_ringid: 34,
  nr_mode: 36,
  nr_extra_bufs: 40,
  nr_flags: 48,
} as const;
/** legacy struct nmreq offsets, netmap-abi.md §5. */
const LEG_DOC = {
  nr_name: 0,
  nr_version: 16,
  nr_offset: 20,
  nr_memsize: 24,
  nr_tx_slots: 28,
  nr_rx_slots: 32,
  nr_tx_rings: 36,
  nr_rx_rings: 38,
  nr_ringid: 40,
  nr_cmd: 42,
  nr_arg1: 44,
  nr_arg2: 46,
  nr_arg3: 48,
  nr_flags: 52,
} as const;

function table(name: string): Readonly<Record<string, number>> {
  const t = OFFSETS[name];
  if (t === undefined) throw new Error(`no offsets table ${name}`);
  return t;
}

test('ioctl numbers and request sizes match netmap-abi.md §1', (t) => {
  t.is(C['NIOCCTRL'], 0xc0586997);
  t.is(C['NIOCREGIF'], 0xc03c6992);
  t.is(C['NIOCGINFO'], 0xc03c6991);
  t.is(C['NIOCTXSYNC'], 0x00006994);
  t.is(C['NIOCRXSYNC'], 0x00006995);
  t.is(C['NETMAP_API'], 14);
  t.is(C['NETMAP_REQ_REGISTER'], 1);
  t.is(SIZES['nmreq_header'], 88);
  t.is(SIZES['nmreq_register'], 56);
  t.is(SIZES['nmreq'], 60);
});

test('the addon offset tables agree with the literal offsets from the spec', (t) => {
  for (const [k, v] of Object.entries(HDR_DOC)) t.is(table('nmreq_header')[k], v, `nmreq_header.${k}`);
  for (const [k, v] of Object.entries(REG_DOC)) t.is(table('nmreq_register')[k], v, `nmreq_register.${k}`);
  for (const [k, v] of Object.entries(LEG_DOC)) t.is(table('nmreq')[k], v, `nmreq.${k}`);
});

// ---- new-API encoding -------------------------------------------------------

interface DecodedRegister {
  version: number;
  reqtype: number;
  reserved: number;
  name: string;
  options: bigint;
  body: bigint;
  txSlots: number;
  rxSlots: number;
  txRings: number;
  rxRings: number;
  hostTxRings: number;
  hostRxRings: number;
  memId: number;
  ringId: number;
  mode: number;
  extraBufs: number;
  flags: bigint;
  offset: bigint;
  memsize: bigint;
}

function cstr(b: Buffer, off: number, len: number): string {
  const s = b.subarray(off, off + len);
  const z = s.indexOf(0);
  return s.subarray(0, z < 0 ? len : z).toString('latin1');
}

/** Decode with the given offset tables (run once with the addon's, once with the spec's). */
function decodeRegister(
  header: Buffer,
  body: Buffer,
  H: Readonly<Record<keyof typeof HDR_DOC, number>>,
  R: Readonly<Record<keyof typeof REG_DOC, number>>,
): DecodedRegister {
  const h = new DataView(header.buffer, header.byteOffset, header.byteLength);
  const r = new DataView(body.buffer, body.byteOffset, body.byteLength);
  return {
    version: h.getUint16(H.nr_version, true),
    reqtype: h.getUint16(H.nr_reqtype, true),
    reserved: h.getUint32(H.nr_reserved, true),
    name: cstr(header, H.nr_name, 64),
    options: h.getBigUint64(H.nr_options, true),
    body: h.getBigUint64(H.nr_body, true),
    offset: r.getBigUint64(R.nr_offset, true),
    memsize: r.getBigUint64(R.nr_memsize, true),
    txSlots: r.getUint32(R.nr_tx_slots, true),
    rxSlots: r.getUint32(R.nr_rx_slots, true),
    txRings: r.getUint16(R.nr_tx_rings, true),
    rxRings: r.getUint16(R.nr_rx_rings, true),
    hostTxRings: r.getUint16(R.nr_host_tx_rings, true),
    hostRxRings: r.getUint16(R.nr_host_rx_rings, true),
    memId: r.getUint16(R.nr_mem_id, true),
    ringId: r.getUint16(R.nr_ringid, true),
    mode: r.getUint32(R.nr_mode, true),
    extraBufs: r.getUint32(R.nr_extra_bufs, true),
    flags: r.getBigUint64(R.nr_flags, true),
  };
}

const BASE: Omit<DecodedRegister, 'name' | 'mode'> = {
  version: 14,
  reqtype: 1,
  reserved: 0,
  options: 0n,
  body: 0n,
  offset: 0n,
  memsize: 0n,
  txSlots: 0,
  rxSlots: 0,
  txRings: 0,
  rxRings: 0,
  hostTxRings: 0,
  hostRxRings: 0,
  memId: 0,
  ringId: 0,
  extraBufs: 0,
  flags: 0n,
};

const REGISTER_CASES: ReadonlyArray<readonly [string, Partial<DecodedRegister> & Pick<DecodedRegister, 'name' | 'mode'>]> = [
  ['netmap:eth0', { name: 'eth0', mode: 1 }],
  ['netmap:eth0-2/T', { name: 'eth0', mode: 4, ringId: 2, flags: 0x4000n }],
  ['netmap:eth0^', { name: 'eth0', mode: 2 }],
  ['netmap:eth0^1', { name: 'eth0', mode: 8, ringId: 1 }],
  ['netmap:eth0*', { name: 'eth0', mode: 3 }],
  ['vale0:1@conf:rings=4,slots=1024', { name: 'vale0:1', mode: 1, txRings: 4, rxRings: 4, txSlots: 1024, rxSlots: 1024 }],
  ['netmap:eth0@3', { name: 'eth0', mode: 1, memId: 3 }],
  ['netmap:eth0/xrR', { name: 'eth0', mode: 1, flags: 0x800n | 0x200n | 0x2000n }],
  ['vale0:p{1', { name: 'vale0:p{1', mode: 1 }],
  [
    'netmap:eth0*@conf:rings=4,tx-rings=2,host-rings=3,rx-slots=512,slots=256',
    { name: 'eth0', mode: 3, txRings: 2, rxRings: 4, hostTxRings: 3, hostRxRings: 3, txSlots: 256, rxSlots: 512 },
  ],
];

for (const [spec, want] of REGISTER_CASES) {
  test(`register request for ${spec}`, (t) => {
    const { header, body } = encodeRegister(parsePortName(spec));
    t.is(header.length, 88);
    t.is(body.length, 56);
    const expected = { ...BASE, ...want };
    t.deepEqual(decodeRegister(header, body, table('nmreq_header') as typeof HDR_DOC, table('nmreq_register') as typeof REG_DOC), expected);
    t.deepEqual(decodeRegister(header, body, HDR_DOC, REG_DOC), expected, 'decoded at the spec’s literal offsets');
    // the name is NUL-padded all the way
    t.true(header.subarray(8 + expected.name.length, 72).every((b) => b === 0));
  });
}

test('register request carries options: extra buffers, 64-bit flags, overrides', (t) => {
  const p = parsePortName('netmap:eth0-1/T@conf:rings=8');
  const { header, body } = encodeRegister(p, { extraBufs: 77, extraFlags: 2 ** 40 + 0x20000, rings: 2, slots: 64, memId: 9 });
  const d = decodeRegister(header, body, HDR_DOC, REG_DOC);
  t.is(d.extraBufs, 77);
  t.is(d.flags, (1n << 40n) | 0x20000n | 0x4000n);
  t.is(d.txRings, 2);
  t.is(d.rxRings, 2);
  t.is(d.txSlots, 64);
  t.is(d.memId, 9);
});

test('register request: a 64-byte nr_name is refused by the C++ encoder', (t) => {
  const p: ParsedPortName = { ...parsePortName('netmap:eth0'), nrName: 'x'.repeat(64) };
  const e = t.throws(() => encodeRegister(p));
  t.is((e as NodeJS.ErrnoException).code, 'ENAMETOOLONG');
  t.regex(e!.message, /at most 63/);
  const ok: ParsedPortName = { ...parsePortName('netmap:eth0'), nrName: 'y'.repeat(63) };
  t.is(cstr(encodeRegister(ok).header, 8, 64), 'y'.repeat(63));
});

// ---- legacy encoding ----------------------------------------------------------

interface DecodedLegacy {
  name: string;
  version: number;
  offset: number;
  memsize: number;
  txSlots: number;
  rxSlots: number;
  txRings: number;
  rxRings: number;
  ringId: number;
  cmd: number;
  arg1: number;
  arg2: number;
  arg3: number;
  flags: number;
  spare: number;
}

function decodeLegacy(b: Buffer, L: Readonly<Record<keyof typeof LEG_DOC, number>>): DecodedLegacy {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    name: cstr(b, L.nr_name, 16),
    version: v.getUint32(L.nr_version, true),
    offset: v.getUint32(L.nr_offset, true),
    memsize: v.getUint32(L.nr_memsize, true),
    txSlots: v.getUint32(L.nr_tx_slots, true),
    rxSlots: v.getUint32(L.nr_rx_slots, true),
    txRings: v.getUint16(L.nr_tx_rings, true),
    rxRings: v.getUint16(L.nr_rx_rings, true),
    ringId: v.getUint16(L.nr_ringid, true),
    cmd: v.getUint16(L.nr_cmd, true),
    arg1: v.getUint16(L.nr_arg1, true),
    arg2: v.getUint16(L.nr_arg2, true),
    arg3: v.getUint32(L.nr_arg3, true),
    flags: v.getUint32(L.nr_flags, true),
    spare: v.getUint32(56, true),
  };
}

const LBASE: Omit<DecodedLegacy, 'name' | 'flags'> = {
  version: 14,
  offset: 0,
  memsize: 0,
  txSlots: 0,
  rxSlots: 0,
  txRings: 0,
  rxRings: 0,
  ringId: 0,
  cmd: 0,
  arg1: 0,
  arg2: 0,
  arg3: 0,
  spare: 0,
};

const NETMAP_HW_RING = 0x4000;
const NETMAP_SW_RING = 0x2000;
const NETMAP_NO_TX_POLL = 0x1000;
const NETMAP_DO_RX_POLL = 0x8000;

const LEGACY_CASES: ReadonlyArray<readonly [string, Partial<DecodedLegacy> & Pick<DecodedLegacy, 'name' | 'flags'>]> = [
  ['netmap:eth0', { name: 'eth0', flags: 1 }],
  // low 4 bits of nr_flags = NR_REG_*; NR_TX_RINGS_ONLY passes through as is
  ['netmap:eth0-2/T', { name: 'eth0', flags: 4 | 0x4000, ringId: NETMAP_HW_RING | 2 }],
  ['netmap:eth0^', { name: 'eth0', flags: 2, ringId: NETMAP_SW_RING }],
  ['netmap:eth0^1', { name: 'eth0', flags: 8, ringId: NETMAP_SW_RING | 1 }],
  ['netmap:eth0*', { name: 'eth0', flags: 3 }],
  ['vale0:1@conf:rings=4,slots=1024', { name: 'vale0:1', flags: 1, txRings: 4, rxRings: 4, txSlots: 1024, rxSlots: 1024 }],
  ['netmap:eth0@3', { name: 'eth0', flags: 1, arg2: 3 }],
  ['netmap:eth0/xz', { name: 'eth0', flags: 1 | 0x800 | 0x400 }],
];

for (const [spec, want] of LEGACY_CASES) {
  test(`legacy NIOCREGIF request for ${spec}`, (t) => {
    const b = encodeLegacyRegister(parsePortName(spec));
    t.is(b.length, 60);
    const expected = { ...LBASE, ...want };
    t.deepEqual(decodeLegacy(b, table('nmreq') as typeof LEG_DOC), expected);
    t.deepEqual(decodeLegacy(b, LEG_DOC), expected, 'decoded at the spec’s literal offsets');
  });
}

test('legacy request: poll flags move into nr_ringid, extra buffers into nr_arg3', (t) => {
  const b = encodeLegacyRegister(parsePortName('netmap:eth0-3'), { extraFlags: 0x20000 | 0x10000, extraBufs: 12 });
  const d = decodeLegacy(b, LEG_DOC);
  t.is(d.ringId, NETMAP_HW_RING | NETMAP_NO_TX_POLL | NETMAP_DO_RX_POLL | 3);
  t.is(d.flags, 4, 'NR_NO_TX_POLL / NR_DO_RX_POLL are not left in nr_flags');
  t.is(d.arg3, 12);
});

test('legacy request: names longer than 15 bytes are refused', (t) => {
  t.is(decodeLegacy(encodeLegacyRegister(parsePortName('netmap:abcdefghijklmno')), LEG_DOC).name, 'abcdefghijklmno');
  const e = t.throws(() => encodeLegacyRegister(parsePortName('netmap:abcdefghijklmnop')));
  t.is((e as NodeJS.ErrnoException).code, 'ENAMETOOLONG');
  t.regex(e!.message, /abcdefghijklmnop.*16 bytes.*at most 15/);
});

test('legacy request: what the legacy API cannot say is refused, not dropped', (t) => {
  const host = t.throws(() => encodeLegacyRegister(parsePortName('netmap:eth0*@conf:host-rings=2')));
  t.is((host as NodeJS.ErrnoException).code, 'EOPNOTSUPP');
  t.regex(host!.message, /host rings/);
  const flags = t.throws(() => encodeLegacyRegister(parsePortName('netmap:eth0'), { extraFlags: 2 ** 40 }));
  t.is((flags as NodeJS.ErrnoException).code, 'EOPNOTSUPP');
  t.regex(flags!.message, /0x10000000000/);
});

// ---- ring ids -------------------------------------------------------------------

test('bound ring ids follow nmport: NIC rings, then host rings, per direction', (t) => {
  const L = { txRings: 4, rxRings: 2, hostTxRings: 1, hostRxRings: 2 };
  t.deepEqual(boundRingIds(1, 0, 0, L), { tx: [0, 1, 2, 3], rx: [0, 1] }, 'ALL_NIC');
  // netmap_interp_ringid: a ring id past one direction's rings binds that direction's first ring
  t.deepEqual(boundRingIds(4, 3, 0, L), { tx: [3], rx: [0] }, 'ONE_NIC 3: rx ring 0, as there are only 2');
  t.deepEqual(boundRingIds(4, 1, 0, L), { tx: [1], rx: [1] }, 'ONE_NIC 1');
  t.deepEqual(boundRingIds(4, 4, 0, L), { tx: [], rx: [] }, 'ONE_NIC 4: no such ring either way (the kernel says EINVAL)');
  t.deepEqual(boundRingIds(2, 0, 0, L), { tx: [4], rx: [2, 3] }, 'SW: host rings after the NIC rings');
  t.deepEqual(boundRingIds(3, 0, 0, L), { tx: [0, 1, 2, 3, 4], rx: [0, 1, 2, 3] }, 'NIC_SW');
  t.deepEqual(boundRingIds(8, 1, 0, L), { tx: [4], rx: [3] }, 'ONE_SW 1: host tx ring 0, as there is only 1');
  t.deepEqual(boundRingIds(1, 0, 0x4000, L), { tx: [0, 1, 2, 3], rx: [] }, '/T');
  t.deepEqual(boundRingIds(1, 0, 0x2000, L), { tx: [], rx: [0, 1] }, '/R');
  t.deepEqual(boundRingIds(3, 0, 0, L, { tx: [0, 2], rx: [1, 3] }), { tx: [0, 2], rx: [1, 3] }, 'rings without ring_ofs dropped');
  t.throws(() => boundRingIds(5, 0, 0, L), { instanceOf: RangeError });
});

// ---- errors without a kernel -------------------------------------------------------

const tmp = mkdtempSync(path.join(os.tmpdir(), 'netmap-kt-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

test('a missing device gives ENODEV and points to the userspace backend', (t) => {
  const dev = path.join(tmp, 'no-such-netmap');
  const e = t.throws(() => KernelBackend.open(parsePortName('netmap:eth0'), { device: dev }));
  t.is((e as NodeJS.ErrnoException).code, 'ENODEV');
  t.regex(e!.message, /netmap:eth0/);
  t.regex(e!.message, /is missing/);
  t.regex(e!.message, /NETMAP_BACKEND=user/);
  t.regex(e!.message, /vale-ts/);
  const r = t.throws(() => kernelRequest(5, '', Buffer.alloc(8), dev));
  t.is((r as NodeJS.ErrnoException).code, 'ENODEV');
});

test('kernelAvailable / open on this machine', (t) => {
  if (kernelAvailable()) {
    t.log('branch: /dev/netmap exists, registering a real VALE port vale9:kt');
    const be = KernelBackend.open(parsePortName('vale9:kt'));
    try {
      t.is(be.kind, 'kernel');
      t.false(be.info.usedLegacy);
      t.is(be.memory.byteLength, be.info.memSize);
      t.true(be.nifpOffset + 56 <= be.memory.byteLength);
      t.deepEqual(be.txRingIds, [0]);
      t.deepEqual(be.rxRingIds, [0]);
      const dv = new DataView(be.memory);
      const nif = be.nifpOffset;
      t.is(dv.getUint32(nif + NIF.ni_tx_rings, true), 1);
      const ring = nif + Number(dv.getBigInt64(nif + NIF.ring_ofs, true));
      t.is(dv.getUint16(ring + RING.dir, true), 1, 'the kernel writes dir = kring->tx: 1 on a tx ring');
      t.true(dv.getUint32(ring + RING.num_slots, true) > 0);
      be.txsync(0);
      be.rxsync(0);
      t.true(be.waitFd >= 0);
    } finally {
      be.close();
    }
    return;
  }
  t.log('branch: no /dev/netmap here (netmap kernel module not loaded): checking the error path');
  const e = t.throws(() => KernelBackend.open(parsePortName('netmap:eth0')));
  t.is((e as NodeJS.ErrnoException).code, 'ENODEV');
  t.regex(e!.message, /\/dev\/netmap is missing/);
  t.regex(e!.message, /the netmap kernel module is not loaded; use the userspace backend \(NETMAP_BACKEND=user, start vale-ts\)/);
});

test('a device that rejects the ioctls: NIOCCTRL fails, the legacy fallback is tried and reported', (t) => {
  const dev = path.join(tmp, 'plain-file');
  writeFileSync(dev, Buffer.alloc(4096));
  const e = t.throws(() => KernelBackend.open(parsePortName('netmap:eth0-1'), { device: dev }));
  t.is((e as NodeJS.ErrnoException).code, 'ENOTTY');
  t.regex(e!.message, /cannot register netmap port 'netmap:eth0-1' \(nr_name 'eth0'/);
  t.regex(e!.message, /legacy NIOCREGIF fallback failed too/);
  const long = t.throws(() => KernelBackend.open(parsePortName('vale0:a_long_port_name'), { device: dev }));
  t.is((long as NodeJS.ErrnoException).code, 'ENOTTY');
  t.regex(long!.message, /fallback was not tried: .*at most 15/);
});

test('kernelRequest checks the body size and the request type before any ioctl', (t) => {
  const dev = path.join(tmp, 'plain-file-2');
  writeFileSync(dev, Buffer.alloc(16));
  const size = t.throws(() => kernelRequest(5, '', Buffer.alloc(4), dev));
  t.is((size as NodeJS.ErrnoException).code, 'EINVAL');
  t.regex(size!.message, /8-byte body, got 4/);
  const reg = t.throws(() => kernelRequest(1, 'eth0', Buffer.alloc(56), dev));
  t.is((reg as NodeJS.ErrnoException).code, 'EINVAL');
  const tty = t.throws(() => kernelRequest(5, '', Buffer.alloc(8), dev));
  t.is((tty as NodeJS.ErrnoException).code, 'ENOTTY');
  t.regex(tty!.message, /NIOCCTRL request 5/);
});

// ---- a fake kernel: regular file + LD_PRELOAD ioctl shim ----------------------------

/**
 * Emulates the three netmap ioctls on one file (FAKE_NM_DEV): NIOCCTRL
 * REGISTER and NIOCREGIF answer from FAKE_NM_* variables, *SYNC are counted;
 * every request is logged as hex to FAKE_NM_LOG. Everything else goes to libc.
 * FAKE_NM_MODE=legacy plays a module that predates NIOCCTRL (every NIOCCTRL
 * fails with FAKE_NM_CTRL_ERRNO, default ENOTTY; EOPNOTSUPP is what netmap's
 * ioctl switch answers); FAKE_NM_KVER makes NIOCREGIF a version mismatch.
 */
const SHIM_C = String.raw`
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int (*real_ioctl)(int, unsigned long, ...);
static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);

static long envl(const char *k, long d) {
  const char *v = getenv(k);
  return v ? strtol(v, 0, 0) : d;
}
static int is_fake(int fd) {
  const char *p = getenv("FAKE_NM_DEV");
  struct stat a, b;
  if (!p || fstat(fd, &a) != 0 || stat(p, &b) != 0) return 0;
  return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}
static void logit(const char *tag, const unsigned char *p, size_t n) {
  const char *path = getenv("FAKE_NM_LOG");
  if (!path) return;
  FILE *f = fopen(path, "a");
  if (!f) return;
  fprintf(f, "%s ", tag);
  for (size_t i = 0; i < n; i++) fprintf(f, "%02x", p[i]);
  fprintf(f, "\n");
  fclose(f);
}
static void put16(unsigned char *p, long v) { uint16_t x = (uint16_t)v; memcpy(p, &x, 2); }
static void put32(unsigned char *p, long v) { uint32_t x = (uint32_t)v; memcpy(p, &x, 4); }
static void put64(unsigned char *p, long v) { uint64_t x = (uint64_t)v; memcpy(p, &x, 8); }

/* FAKE_NM_REDIRECT: opening /dev/netmap opens FAKE_NM_DEV (for programs that take no device path) */
static const char *redirect(const char *p) {
  const char *dev = getenv("FAKE_NM_DEV");
  return dev && getenv("FAKE_NM_REDIRECT") && strcmp(p, "/dev/netmap") == 0 ? dev : p;
}
static mode_t mode_arg(int flags, va_list ap) {
  return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}
int open(const char *p, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t m = mode_arg(flags, ap);
  va_end(ap);
  if (!real_open) real_open = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
  return real_open(redirect(p), flags, m);
}
int open64(const char *p, int flags, ...) {
  va_list ap;
  va_start(ap, flags);
  mode_t m = mode_arg(flags, ap);
  va_end(ap);
  if (!real_open64) real_open64 = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open64");
  return real_open64(redirect(p), flags, m);
}

int ioctl(int fd, unsigned long req, ...) {
  va_list ap;
  va_start(ap, req);
  void *arg = va_arg(ap, void *);
  va_end(ap);
  if (!real_ioctl) real_ioctl = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
  if (!is_fake(fd)) return real_ioctl(fd, req, arg);
  const char *mode = getenv("FAKE_NM_MODE");
  if (!mode) mode = "ctrl";
  long fail = envl("FAKE_NM_ERRNO", 0);
  if (req == 0xc0586997UL) {
    unsigned char *h = arg;
    uint64_t bp;
    memcpy(&bp, h + 80, 8);
    unsigned char *b = (unsigned char *)(uintptr_t)bp;
    uint16_t reqtype;
    memcpy(&reqtype, h + 2, 2);
    /* a module that predates NIOCCTRL answers every NIOCCTRL the same way */
    if (strcmp(mode, "legacy") == 0) { logit(reqtype ? "ctrl-hdr" : "probe", h, 88); errno = (int)envl("FAKE_NM_CTRL_ERRNO", ENOTTY); return -1; }
    /* PORT_HDR_GET: no virtio-net header */
    if (reqtype == 7 && b) { logit("hdr-get", h, 88); put32(b, 0); return 0; }
    /* one that speaks it refuses an unknown request type with EINVAL */
    if (reqtype != 1) { logit("probe", h, 88); errno = EINVAL; return -1; }
    logit("ctrl-hdr", h, 88);
    if (b) logit("ctrl-body", b, 56);
    if (fail) { errno = (int)fail; return -1; }
    /* FAKE_NM_BUSY_RING: registering that one NIC ring (NR_REG_ONE_NIC) fails with EBUSY */
    uint16_t ringid;
    uint32_t nrmode;
    memcpy(&ringid, b + 34, 2);
    memcpy(&nrmode, b + 36, 4);
    if (nrmode == 4 && (long)ringid == envl("FAKE_NM_BUSY_RING", -1)) { errno = EBUSY; return -1; }
    put64(b + 0, envl("FAKE_NM_OFFSET", 0));
    put64(b + 8, envl("FAKE_NM_MEMSIZE", 0));
    put32(b + 16, envl("FAKE_NM_SLOTS", 0));
    put32(b + 20, envl("FAKE_NM_SLOTS", 0));
    put16(b + 24, envl("FAKE_NM_RINGS", 0));
    put16(b + 26, envl("FAKE_NM_RINGS", 0));
    put16(b + 28, envl("FAKE_NM_HOST", 0));
    put16(b + 30, envl("FAKE_NM_HOST", 0));
    put16(b + 32, envl("FAKE_NM_MEMID", 0));
    return 0;
  }
  if (req == 0xc03c6992UL) {
    unsigned char *r = arg;
    logit("legacy", r, 60);
    long v = envl("FAKE_NM_KVER", 0);
    if (strcmp(mode, "legacy") != 0 || v) {
      /* an old module writes its own API version back on a mismatch */
      if (v) put32(r + 16, v);
      errno = v ? EINVAL : fail ? (int)fail : ENOTTY;
      return -1;
    }
    put32(r + 20, envl("FAKE_NM_OFFSET", 0));
    put32(r + 24, envl("FAKE_NM_MEMSIZE", 0));
    put32(r + 28, envl("FAKE_NM_SLOTS", 0));
    put32(r + 32, envl("FAKE_NM_SLOTS", 0));
    put16(r + 36, envl("FAKE_NM_RINGS", 0));
    put16(r + 38, envl("FAKE_NM_RINGS", 0));
    put16(r + 46, envl("FAKE_NM_MEMID", 0));
    return 0;
  }
  if (req == 0x6994UL) { logit("txsync", 0, 0); return 0; }
  if (req == 0x6995UL) { logit("rxsync", 0, 0); return 0; }
  errno = ENOTTY;
  return -1;
}
`;

/** Compile the shim once; undefined (with the reason) where no C compiler works. */
function buildShim(): { so?: string; why?: string } {
  const src = path.join(tmp, 'fake-netmap.c');
  const so = path.join(tmp, 'fake-netmap.so');
  writeFileSync(src, SHIM_C);
  for (const cc of [process.env['CC'], 'cc', 'gcc', 'clang']) {
    if (!cc) continue;
    const r = spawnSync(cc, ['-shared', '-fPIC', '-O1', '-o', so, src, '-ldl'], { encoding: 'utf8' });
    if (r.status === 0 && existsSync(so)) return { so };
  }
  return { why: 'no working C compiler (cc/gcc/clang) to build the LD_PRELOAD shim' };
}
let shim: { so?: string; why?: string } | undefined;

const MEMSIZE = 65536;
const NIFP = 4096;
const RINGS_AT = 8192;
const RING_BYTES = 1024;
const NSLOTS = 16;
const BUFS_AT = 32768;
const BUF_SIZE = 2048;
/** The fake kernel's answers that match the region fakeRegion lays out (its environment). */
const FAKE_GEOMETRY = {
  FAKE_NM_OFFSET: String(NIFP),
  FAKE_NM_MEMSIZE: String(MEMSIZE),
  FAKE_NM_SLOTS: String(NSLOTS),
  FAKE_NM_RINGS: '2',
  FAKE_NM_HOST: '1',
  FAKE_NM_MEMID: '5',
};

/**
 * A netmap region as the kernel would lay it out for a port with 2 NIC ring
 * pairs and 1 host ring pair; only the rings in `bound` get a ring_ofs.
 */
function fakeRegion(bound: { tx: number[]; rx: number[] }, tweak?: (dv: DataView) => void): Buffer {
  const buf = Buffer.alloc(MEMSIZE);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  buf.write('eth0', NIFP + NIF.ni_name, 'latin1');
  dv.setUint32(NIFP + NIF.ni_tx_rings, 2, true);
  dv.setUint32(NIFP + NIF.ni_rx_rings, 2, true);
  dv.setUint32(NIFP + NIF.ni_host_tx_rings, 1, true);
  dv.setUint32(NIFP + NIF.ni_host_rx_rings, 1, true);
  for (let i = 0; i < 6; i++) {
    const tx = i < 3;
    const id = tx ? i : i - 3;
    const ring = RINGS_AT + i * RING_BYTES;
    if ((tx ? bound.tx : bound.rx).includes(id)) dv.setBigInt64(NIFP + NIF.ring_ofs + 8 * i, BigInt(ring - NIFP), true);
    dv.setBigInt64(ring + RING.buf_ofs, BigInt(BUFS_AT - ring), true);
    dv.setUint32(ring + RING.num_slots, NSLOTS, true);
    dv.setUint32(ring + RING.nr_buf_size, BUF_SIZE, true);
    dv.setUint16(ring + RING.ringid, id, true);
    // as netmap_mem2.c writes it: ring->dir = kring->tx (NR_TX = 1, NR_RX = 0)
    dv.setUint16(ring + RING.dir, tx ? 1 : 0, true);
    dv.setUint32(ring + RING.tail, tx ? NSLOTS - 1 : 0, true);
    for (let s = 0; s < NSLOTS; s++) {
      dv.setUint32(ring + RING.slot + s * SLOT_SIZE + SLOT.buf_idx, s, true);
      dv.setUint16(ring + RING.slot + s * SLOT_SIZE + SLOT.len, BUF_SIZE, true);
    }
  }
  tweak?.(dv);
  return buf;
}

interface FakeResult {
  error?: { message: string; code?: string };
  kind?: string;
  info?: { usedLegacy: boolean; memSize: number; memId: number; txRings: number; hostTxRings: number; layout: { txPresent: number[]; rxPresent: number[] } };
  tx?: number[];
  rx?: number[];
  nifpOffset?: number;
  byteLength?: number;
  portTx?: number;
  portRx?: number;
  portBufSize?: number;
  labels?: string[];
  txPrologue?: string;
  ifName?: string;
  fdOk?: boolean;
  wait?: number;
  afterClose?: number;
  log?: string[];
  fileIntact?: boolean;
}

const here = path.dirname(fileURLToPath(import.meta.url));
const distSrc = path.resolve(here, '..', '..', 'src');

/** Open `spec` in a child process whose ioctls go through the shim. */
function runFake(t: { log: (...s: string[]) => void }, name: string, spec: string, region: Buffer, env: Record<string, string>): FakeResult | undefined {
  shim ??= buildShim();
  if (!shim.so) {
    t.log(`skipped: ${shim.why}`);
    return undefined;
  }
  const dev = path.join(tmp, `dev-${name}`);
  const log = path.join(tmp, `log-${name}`);
  writeFileSync(dev, region);
  writeFileSync(log, '');
  const script = `
    import { readFileSync } from 'node:fs';
    const { KernelBackend } = await import(${JSON.stringify(path.join(distSrc, 'backends', 'kernel', 'port.js'))});
    const { parsePortName } = await import(${JSON.stringify(path.join(distSrc, 'netmap', 'name.js'))});
    const { Port } = await import(${JSON.stringify(path.join(distSrc, 'netmap', 'port.js'))});
    const out = {};
    try {
      const p = parsePortName(process.env.SPEC);
      const be = KernelBackend.open(p, { device: process.env.FAKE_NM_DEV, extraBufs: 3 });
      out.kind = be.kind;
      out.info = be.info;
      out.tx = [...be.txRingIds];
      out.rx = [...be.rxRingIds];
      out.nifpOffset = be.nifpOffset;
      out.byteLength = be.memory.byteLength;
      out.fdOk = be.waitFd >= 0;
      out.wait = be.armWait(true, true);
      // checkSlots: the per-slot walk of the prologue is opt-in
      const port = new Port(p, be, { checkSlots: true });
      out.portTx = port.txRings.length;
      out.portRx = port.rxRings.length;
      out.portBufSize = port.bufSize;
      out.labels = [...port.txRings, ...port.rxRings].map((r) => r.label);
      const tx0 = port.txRings[0];
      if (tx0 && tx0.index === 0) {
        // slot 0 of the fake tx ring 0 holds buffer 0, which a tx ring may not
        // hand over: the prologue must apply tx rules to it
        tx0.advance(1);
        try { tx0.prologue(); out.txPrologue = 'accepted'; } catch (e) { out.txPrologue = e.message; }
      }
      out.ifName = Buffer.from(be.memory, be.nifpOffset, 4).toString('latin1');
      be.txsync(0);
      be.rxsync(0);
      const view = new DataView(be.memory);
      port.close();
      out.afterClose = view.getUint32(be.nifpOffset + 24, true);
      out.fileIntact = readFileSync(process.env.FAKE_NM_DEV).readUInt32LE(be.nifpOffset + 24) === 2;
    } catch (e) {
      out.error = { message: e.message, code: e.code };
    }
    out.log = readFileSync(process.env.FAKE_NM_LOG, 'utf8').split('\\n').filter(Boolean);
    console.log(JSON.stringify(out));
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    env: {
      ...process.env,
      // after any preload already there (e.g. a sanitizer runtime, which must come first)
      LD_PRELOAD: [process.env['LD_PRELOAD'], shim.so].filter((x) => x).join(':'),
      FAKE_NM_DEV: dev,
      FAKE_NM_LOG: log,
      ...FAKE_GEOMETRY,
      SPEC: spec,
      ...env,
    },
  });
  if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
  const lastLine = r.stdout.trim().split('\n').pop() ?? '{}';
  return JSON.parse(lastLine) as FakeResult;
}

function logged(res: FakeResult, tag: string): Buffer[] {
  return (res.log ?? []).filter((l) => l.startsWith(tag + ' ')).map((l) => Buffer.from(l.slice(tag.length + 1), 'hex'));
}

test('fake kernel: NIOCCTRL register, mmap, checks, ring ids, sync, close', (t) => {
  const res = runFake(t, 'ctrl', 'netmap:eth0', fakeRegion({ tx: [0, 1], rx: [0, 1] }), {});
  if (!res) return t.pass();
  t.is(res.error, undefined, res.error?.message);
  t.is(res.kind, 'kernel');
  t.false(res.info!.usedLegacy);
  t.is(res.info!.memSize, MEMSIZE);
  t.is(res.info!.memId, 5);
  t.is(res.byteLength, MEMSIZE);
  t.is(res.nifpOffset, NIFP);
  t.deepEqual(res.tx, [0, 1]);
  t.deepEqual(res.rx, [0, 1]);
  t.deepEqual(res.info!.layout.txPresent, [0, 1]);
  t.true(res.fdOk);
  t.is(res.wait, 3);
  t.is(res.portTx, 2);
  t.is(res.portRx, 2);
  t.is(res.portBufSize, BUF_SIZE);
  t.is(res.ifName, 'eth0');
  t.is(res.afterClose, 0, 'after close the region no longer shows the kernel pages');
  t.true(res.fileIntact, 'close did not write into the device memory');
  // what went to the "kernel"
  const [hdr] = logged(res, 'ctrl-hdr');
  const [body] = logged(res, 'ctrl-body');
  t.truthy(hdr);
  const d = decodeRegister(hdr!, body!, HDR_DOC, REG_DOC);
  t.is(d.version, 14);
  t.is(d.reqtype, 1);
  t.is(d.name, 'eth0');
  t.is(d.mode, 1);
  t.is(d.extraBufs, 3);
  t.not(d.body, 0n, 'nr_body points at the body in the real call');
  t.is(logged(res, 'legacy').length, 0);
  t.is(logged(res, 'txsync').length, 1);
  t.is(logged(res, 'rxsync').length, 1);
});

test('fake kernel: tx rings carry dir 1 as the real kernel writes, and a ring is tx or rx by its place in ring_ofs[]', (t) => {
  const res = runFake(t, 'dir', 'netmap:eth0', fakeRegion({ tx: [0, 1], rx: [0, 1] }), {});
  if (!res) return t.pass();
  t.is(res.error, undefined, res.error?.message);
  t.deepEqual(res.labels, ['netmap:eth0 tx ring 0', 'netmap:eth0 tx ring 1', 'netmap:eth0 rx ring 0', 'netmap:eth0 rx ring 1']);
  t.regex(res.txPrologue ?? '', /tx ring 0: slot 0 has buffer index 0, outside the pool/);
  // dir is informational: whatever a module writes there, the position decides
  const swapped = runFake(
    t,
    'dir-swapped',
    'netmap:eth0',
    fakeRegion({ tx: [0, 1], rx: [0, 1] }, (dv) => {
      for (let i = 0; i < 6; i++) dv.setUint16(RINGS_AT + i * RING_BYTES + RING.dir, i < 3 ? 0 : 1, true);
    }),
    {},
  );
  t.is(swapped!.error, undefined, swapped!.error?.message);
  t.deepEqual(swapped!.labels, res.labels);
  t.is(swapped!.txPrologue, res.txPrologue);
});

test('fake kernel: host rings (^) bind the rings after the NIC rings', (t) => {
  const res = runFake(t, 'sw', 'netmap:eth0^', fakeRegion({ tx: [2], rx: [2] }), {});
  if (!res) return t.pass();
  t.is(res.error, undefined, res.error?.message);
  t.deepEqual(res.tx, [2]);
  t.deepEqual(res.rx, [2]);
  t.is(res.portTx, 1);
});

test('fake kernel: without NIOCCTRL the legacy NIOCREGIF registers the port', (t) => {
  const res = runFake(t, 'legacy', 'netmap:eth0-1/T', fakeRegion({ tx: [1], rx: [1] }), { FAKE_NM_MODE: 'legacy' });
  if (!res) return t.pass();
  t.is(res.error, undefined, res.error?.message);
  t.true(res.info!.usedLegacy);
  t.is(res.info!.hostTxRings, 1, 'host ring count taken from the netmap_if');
  t.deepEqual(res.tx, [1]);
  t.deepEqual(res.rx, [], '/T binds no rx ring');
  t.deepEqual(res.labels, ['netmap:eth0-1/T tx ring 1'], 'the legacy path reads the same layout: tx ring 1 (dir 1) is a tx ring');
  t.is(logged(res, 'probe').length, 0, 'ENOTTY already says NIOCCTRL is unknown');
  const [l] = logged(res, 'legacy');
  t.truthy(l);
  const d = decodeLegacy(l!, LEG_DOC);
  t.is(d.name, 'eth0');
  t.is(d.version, 14);
  t.is(d.flags, 4 | 0x4000);
  t.is(d.ringId, NETMAP_HW_RING | 1);
  t.is(d.arg3, 3);
});

test('fake kernel: EBUSY is reported with the port and no legacy retry', (t) => {
  const res = runFake(t, 'busy', 'netmap:eth0/x', fakeRegion({ tx: [0, 1], rx: [0, 1] }), { FAKE_NM_ERRNO: '16' });
  if (!res) return t.pass();
  t.is(res.error?.code, 'EBUSY');
  t.regex(res.error!.message, /'netmap:eth0\/x'.*port busy/);
  t.is(logged(res, 'legacy').length, 0);
});

test('fake kernel: a module older than NIOCCTRL (EOPNOTSUPP, as netmap answers unknown ioctls) is registered through NIOCREGIF', (t) => {
  const res = runFake(t, 'old', 'netmap:eth0', fakeRegion({ tx: [0, 1], rx: [0, 1] }), { FAKE_NM_MODE: 'legacy', FAKE_NM_CTRL_ERRNO: '95' });
  if (!res) return t.pass();
  t.is(res.error, undefined, res.error?.message);
  t.true(res.info!.usedLegacy);
  t.is(logged(res, 'probe').length, 1, 'EOPNOTSUPP is ambiguous: one probe asked whether NIOCCTRL is known');
  t.is(logged(res, 'legacy').length, 1);
  t.deepEqual(res.labels, ['netmap:eth0 tx ring 0', 'netmap:eth0 tx ring 1', 'netmap:eth0 rx ring 0', 'netmap:eth0 rx ring 1']);
});

test('fake kernel: an API mismatch names both versions', (t) => {
  // what an API 11 module does: NIOCCTRL unknown, NIOCREGIF refused with its own version written back
  const res = runFake(t, 'api', 'netmap:eth0', fakeRegion({ tx: [0, 1], rx: [0, 1] }), {
    FAKE_NM_MODE: 'legacy',
    FAKE_NM_CTRL_ERRNO: '95',
    FAKE_NM_KVER: '11',
  });
  if (!res) return t.pass();
  t.is(res.error?.code, 'EINVAL', "the module's answer to the registration: NIOCREGIF's errno");
  t.regex(res.error!.message, /NIOCCTRL REGISTER\): Operation not supported \(EOPNOTSUPP\): the module does not know NIOCCTRL/);
  t.regex(res.error!.message, /legacy NIOCREGIF fallback failed too: Invalid argument \(EINVAL\)/);
  t.regex(res.error!.message, /speaks netmap API 11, this library speaks 14/);
});

test('fake kernel: EINVAL from a module that speaks NIOCCTRL is reported once, with no legacy retry', (t) => {
  const res = runFake(t, 'einval', 'netmap:eth0-7', fakeRegion({ tx: [0, 1], rx: [0, 1] }), { FAKE_NM_ERRNO: '22' });
  if (!res) return t.pass();
  t.is(res.error?.code, 'EINVAL');
  t.is(logged(res, 'legacy').length, 0, 'no NIOCREGIF: the module would turn it into the same NIOCCTRL request');
  t.is(logged(res, 'probe').length, 0);
  t.regex(res.error!.message, /^cannot register netmap port 'netmap:eth0-7' \(nr_name 'eth0', NIOCCTRL REGISTER\): Invalid argument \(EINVAL\): invalid request/);
  t.is(res.error!.message.split('Invalid argument').length, 2, 'the errno text appears once');
  t.notRegex(res.error!.message, /legacy/);
});

test('fake kernel: EOPNOTSUPP from a module that speaks NIOCCTRL is the answer, not a reason to retry', (t) => {
  const res = runFake(t, 'eopnotsupp', 'netmap:eth0^', fakeRegion({ tx: [2], rx: [2] }), { FAKE_NM_ERRNO: '95' });
  if (!res) return t.pass();
  t.is(res.error?.code, 'EOPNOTSUPP');
  t.is(logged(res, 'probe').length, 1, 'the probe was answered EINVAL: NIOCCTRL is known');
  t.is(logged(res, 'legacy').length, 0);
  t.regex(res.error!.message, /Operation not supported \(EOPNOTSUPP\): not supported by this port or kernel/);
});

test('fake kernel: implausible replies and corrupt regions are refused', (t) => {
  const off = runFake(t, 'offset', 'netmap:eth0', fakeRegion({ tx: [0], rx: [0] }), { FAKE_NM_OFFSET: String(MEMSIZE) });
  if (!off) return t.pass();
  t.is(off.error?.code, 'EIO');
  t.regex(off.error!.message, /nr_offset 65536 outside/);
  const zero = runFake(t, 'zero', 'netmap:eth0', fakeRegion({ tx: [0], rx: [0] }), { FAKE_NM_MEMSIZE: '0' });
  t.regex(zero!.error!.message, /implausible nr_memsize 0/);
  const outside = runFake(
    t,
    'outside',
    'netmap:eth0',
    fakeRegion({ tx: [0], rx: [0] }, (dv) => dv.setBigInt64(NIFP + NIF.ring_ofs, -(1n << 40n), true)),
    {},
  );
  t.is(outside!.error?.code, 'EIO');
  t.regex(outside!.error!.message, /tx ring 0: ring_ofs -1099511627776 points outside the region/);
  const past = runFake(
    t,
    'past',
    'netmap:eth0',
    fakeRegion({ tx: [0], rx: [0] }, (dv) => dv.setBigInt64(NIFP + NIF.ring_ofs + 8 * 3, BigInt(MEMSIZE - NIFP - 8), true)),
    {},
  );
  t.regex(past!.error!.message, /rx ring 0: ring header runs past the region/);
  const slots = runFake(
    t,
    'slots',
    'netmap:eth0',
    fakeRegion({ tx: [0], rx: [0] }, (dv) => dv.setUint32(RINGS_AT + RING.num_slots, 100000, true)),
    {},
  );
  t.regex(slots!.error!.message, /tx ring 0: 100000 slots run past the end/);
  const bufs = runFake(
    t,
    'bufs',
    'netmap:eth0',
    fakeRegion({ tx: [0], rx: [0] }, (dv) => dv.setBigInt64(RINGS_AT + RING.buf_ofs, BigInt(MEMSIZE), true)),
    {},
  );
  t.regex(bufs!.error!.message, /tx ring 0: buf_ofs 65536 points outside the region/);
  const counts = runFake(
    t,
    'counts',
    'netmap:eth0',
    fakeRegion({ tx: [0], rx: [0] }, (dv) => dv.setUint32(NIFP + NIF.ni_rx_rings, 0x7fffffff, true)),
    {},
  );
  t.regex(counts!.error!.message, /ring counts out of range/);
});

test('fake kernel: a name whose rings the kernel did not bind is an error, not an empty port', (t) => {
  const res = runFake(t, 'unbound', 'netmap:eth0-1', fakeRegion({ tx: [0], rx: [0] }), {});
  if (!res) return t.pass();
  t.is(res.error?.code, 'EINVAL');
  t.regex(res.error!.message, /bound no ring this name selects/);
});

test("fake kernel: open()'s extraBufs, rings and slots reach nmreq_register (they were dropped on the kernel backend)", (t) => {
  shim ??= buildShim();
  if (!shim.so) return t.pass(`skipped: ${shim.why}`);
  const dev = path.join(tmp, 'dev-openopts');
  const log = path.join(tmp, 'log-openopts');
  writeFileSync(dev, fakeRegion({ tx: [0, 1], rx: [0, 1] }));
  writeFileSync(log, '');
  const script = `
    const { open } = await import(${JSON.stringify(path.join(distSrc, 'netmap', 'open.js'))});
    const p = await open('netmap:eth0', { backend: 'kernel', extraBufs: 5, rings: 2, slots: 64 });
    p.close();
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    encoding: 'utf8',
    env: {
      ...process.env,
      LD_PRELOAD: [process.env['LD_PRELOAD'], shim.so].filter((x) => x).join(':'),
      FAKE_NM_DEV: dev,
      FAKE_NM_REDIRECT: '1',
      FAKE_NM_LOG: log,
      ...FAKE_GEOMETRY,
    },
  });
  t.is(r.status, 0, r.stderr);
  const res: FakeResult = { log: readFileSync(log, 'utf8').split('\n').filter(Boolean) };
  const [hdr] = logged(res, 'ctrl-hdr');
  const [body] = logged(res, 'ctrl-body');
  t.truthy(body, 'no register request reached the fake kernel');
  const d = decodeRegister(hdr!, body!, HDR_DOC, REG_DOC);
  t.deepEqual(
    { extraBufs: d.extraBufs, txRings: d.txRings, rxRings: d.rxRings, txSlots: d.txSlots, rxSlots: d.rxSlots },
    { extraBufs: 5, txRings: 2, rxRings: 2, txSlots: 64, rxSlots: 64 },
  );
});

// ---- pkt-gen-ts on the fake kernel ------------------------------------------

interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Run pkt-gen-ts on the fake kernel (/dev/netmap opened as the fake device).
 * With `interruptOn`, send SIGINT once stderr matches it, as a user's ^C.
 */
async function pktgenFake(
  t: { log: (...s: string[]) => void },
  name: string,
  args: string[],
  region: Buffer,
  env: Record<string, string>,
  interruptOn?: RegExp,
): Promise<CliResult | undefined> {
  shim ??= buildShim();
  if (!shim.so) {
    t.log(`skipped: ${shim.why}`);
    return undefined;
  }
  const dev = path.join(tmp, `dev-${name}`);
  const log = path.join(tmp, `log-${name}`);
  writeFileSync(dev, region);
  writeFileSync(log, '');
  const child = spawn(process.execPath, [path.resolve(here, '..', '..', 'tools', 'pkt-gen-ts.js'), ...args], {
    env: {
      ...process.env,
      LD_PRELOAD: [process.env['LD_PRELOAD'], shim.so].filter((x) => x).join(':'),
      NETMAP_BACKEND: 'kernel',
      FAKE_NM_DEV: dev,
      FAKE_NM_REDIRECT: '1',
      FAKE_NM_LOG: log,
      ...FAKE_GEOMETRY,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let sent = false;
  child.stdout.on('data', (d: Buffer) => (stdout += d));
  child.stderr.on('data', (d: Buffer) => {
    stderr += d;
    if (interruptOn && !sent && interruptOn.test(stderr)) {
      sent = true;
      child.kill('SIGINT');
    }
  });
  const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
  return { code, stdout, stderr };
}

/**
 * A region a pkt-gen can run on: every slot points at a real buffer (2..15)
 * and rx ring 0 holds 4 frames of 60 bytes (tail 4), so an rx run with
 * -n 4 finishes without sleeping (poll does not work on the fake device).
 */
function runnable(bound: { tx: number[]; rx: number[] }): Buffer {
  return fakeRegion(bound, (dv) => {
    for (let i = 0; i < 6; i++) {
      const ring = RINGS_AT + i * RING_BYTES;
      for (let s = 0; s < NSLOTS; s++) {
        dv.setUint32(ring + RING.slot + s * SLOT_SIZE + SLOT.buf_idx, 2 + (s % 14), true);
        dv.setUint16(ring + RING.slot + s * SLOT_SIZE + SLOT.len, 60, true);
      }
    }
    dv.setUint32(RINGS_AT + 3 * RING_BYTES + RING.tail, 4, true);
  });
}

// what a VALE port or pipe looks like: the netmap_if counts a placeholder host
// ring pair, the register reply says there are no host rings
const VALE_LIKE = { FAKE_NM_HOST: '0' };

test('pkt-gen-ts on the fake kernel: queues counted from the register reply, -v lists the real rings and the memid', async (t) => {
  const r = await pktgenFake(t, 'pg-v', ['-i', 'vale9:fk', '-f', 'rx', '-n', '4', '-v'], runnable({ tx: [0, 1], rx: [0, 1] }), VALE_LIKE);
  if (!r) return t.pass();
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^Received 4 packets 240 bytes/m);
  t.regex(r.stdout, /^Receiving from vale9:fk: 2 queues, 1 threads and \d+ cpus\.$/m, 'the placeholder host ring is no queue');
  t.regex(r.stderr, /main \[3301\] nifp at offset 4096 ntxqs 2 nrxqs 2 memid 5$/m);
  const rings = r.stderr.split('\n').filter((l) => /main \[33(06|11)\]/.test(l));
  t.deepEqual(
    rings.map((l) => l.replace(/^.*\] {4}/, '')),
    [`TX0 at offset 0x${(RINGS_AT - NIFP).toString(16)} slots ${NSLOTS}`, `TX1 at offset 0x${(RINGS_AT + RING_BYTES - NIFP).toString(16)} slots ${NSLOTS}`,
      `RX0 at offset 0x${(RINGS_AT + 3 * RING_BYTES - NIFP).toString(16)} slots ${NSLOTS}`, `RX1 at offset 0x${(RINGS_AT + 4 * RING_BYTES - NIFP).toString(16)} slots ${NSLOTS}`],
  );
  // a NIC with a real host ring pair: it counts, as in pkt-gen
  const nic = await pktgenFake(t, 'pg-nic', ['-i', 'netmap:eth0*', '-f', 'rx', '-n', '4'], runnable({ tx: [0, 1, 2], rx: [0, 1, 2] }), {});
  t.is(nic!.code, 0, nic!.stderr);
  t.regex(nic!.stdout, /^Receiving from netmap:eth0\*: 3 queues, 1 threads/m);
});

test('pkt-gen-ts on the fake kernel: -p beyond the real queues is refused with pkt-gen\'s message', async (t) => {
  const r = await pktgenFake(t, 'pg-p', ['-i', 'vale9:fk', '-f', 'rx', '-p', '3'], fakeRegion({ tx: [0, 1], rx: [0, 1] }), VALE_LIKE);
  if (!r) return t.pass();
  t.is(r.code, 1);
  t.regex(r.stderr, /main \[3283\] bad nthreads 3, have 2 queues$/m);
  t.regex(r.stderr, /pkt-gen-ts: -p 3: vale9:fk has only 2 rx rings/);
  t.notRegex(r.stderr, /Ready/);
});

test('pkt-gen-ts on the fake kernel: a thread whose ring cannot be registered ends the run with status 1', async (t) => {
  const region = runnable({ tx: [0, 1], rx: [0, 1] });
  // rx without -n would run forever: the failing thread must end it
  const r = await pktgenFake(t, 'pg-busy', ['-i', 'vale9:fk', '-f', 'rx', '-p', '2'], region, { ...VALE_LIKE, FAKE_NM_BUSY_RING: '1' });
  if (!r) return t.pass();
  t.is(r.code, 1, r.stderr);
  t.regex(r.stderr, /pkt-gen-ts: thread 1: cannot open vale9:fk-1: .*Device or resource busy \(EBUSY\)/);
  t.notRegex(r.stderr, /Ready/, 'as pkt-gen: every thread registers before any starts');
  t.notRegex(r.stdout, /Received/);
  // the same with every thread a worker
  const w = await pktgenFake(t, 'pg-busy-w', ['-i', 'vale9:fk', '-f', 'tx', '-p', '2'], region, { ...VALE_LIKE, FAKE_NM_BUSY_RING: '1', PKTGEN_TS_WORKERS: '1' });
  t.is(w!.code, 1, w!.stderr);
  t.regex(w!.stderr, /thread 1: cannot open vale9:fk-1/);
});

test('pkt-gen-ts on the fake kernel: sender_body prints frags and flush lines as pkt-gen, the first report 0 min_space', async (t) => {
  // the fake kernel never completes a transmission: tx queues 10 frames,
  // flushes, then waits for them to leave until ^C, sent on the first report
  const r = await pktgenFake(
    t,
    'pg-tx',
    ['-i', 'vale9:fk', '-f', 'tx', '-n', '10', '-T', '100'],
    runnable({ tx: [0, 1], rx: [0, 1] }),
    VALE_LIKE,
    / main_thread \[2781\] /,
  );
  if (!r) return t.pass();
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /sender_body \[1760\] frags 1 frag_size 60$/m);
  t.regex(r.stderr, /sender_body \[1848\] flush tail 15 head 10 on thread 0x[0-9a-f]+$/m);
  const order = ['start, fd', 'frags 1', 'flush tail'].map((s) => r.stderr.indexOf(s));
  t.true(order[0]! >= 0 && order[0]! < order[1]! && order[1]! < order[2]!, 'start, then frags, then flush');
  const firstReport = r.stderr.split('\n').find((l) => / main_thread \[2781\] /.test(l));
  t.regex(firstReport ?? '', / 0 min_space$/, "pkt-gen's counters start at 0; 99999 only after a report");
});
