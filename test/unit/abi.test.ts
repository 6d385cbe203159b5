import test from 'ava';
import { RING, SLOT, NIF, CSB_ATOK, CSB_KTOA, SIZES, C, OFFSETS, SLOT_SIZE } from '../../src/netmap/abi.js';
import { native } from '../../src/netmap/addon.js';

// The literal values of docs/netmap-abi.md (gcc, x86_64 Linux). TS takes
// its offsets from the compiled C++ structs; this checks both against the spec.
test('netmap_slot, netmap_ring, netmap_if: sizes and offsets', (t) => {
  t.is(SLOT_SIZE, 16);
  t.deepEqual({ ...SLOT }, { buf_idx: 0, len: 4, flags: 6, ptr: 8 });
  t.is(SIZES['netmap_ring'], 256);
  t.deepEqual(
    { ...RING },
    { buf_ofs: 0, num_slots: 8, nr_buf_size: 12, ringid: 16, dir: 18, head: 20, cur: 24, tail: 28, flags: 32, ts: 40, offset_mask: 56, buf_align: 64, sem: 128, slot: 256 },
  );
  t.is(SIZES['netmap_if'], 56);
  t.deepEqual(
    { ...NIF },
    { ni_name: 0, ni_version: 16, ni_flags: 20, ni_tx_rings: 24, ni_rx_rings: 28, ni_bufs_head: 32, ni_host_tx_rings: 36, ni_host_rx_rings: 40, ni_spare1: 44, ring_ofs: 56 },
  );
});

test('control structs: nmreq_header, nmreq_register, legacy nmreq, options, CSB', (t) => {
  t.is(SIZES['nmreq_header'], 88);
  t.deepEqual({ ...OFFSETS['nmreq_header'] }, { nr_version: 0, nr_reqtype: 2, nr_reserved: 4, nr_name: 8, nr_options: 72, nr_body: 80 });
  t.is(SIZES['nmreq_register'], 56);
  t.deepEqual(
    { ...OFFSETS['nmreq_register'] },
    { nr_offset: 0, nr_memsize: 8, nr_tx_slots: 16, nr_rx_slots: 20, nr_tx_rings: 24, nr_rx_rings: 26, nr_host_tx_rings: 28, nr_host_rx_rings: 30, nr_mem_id: 32, nr_ringid: 34, nr_mode: 36, nr_extra_bufs: 40, nr_flags: 48 },
  );
  t.is(SIZES['nmreq'], 60);
  t.deepEqual(
    { ...OFFSETS['nmreq'] },
    { nr_name: 0, nr_version: 16, nr_offset: 20, nr_memsize: 24, nr_tx_slots: 28, nr_rx_slots: 32, nr_tx_rings: 36, nr_rx_rings: 38, nr_ringid: 40, nr_cmd: 42, nr_arg1: 44, nr_arg2: 46, nr_arg3: 48, nr_flags: 52 },
  );
  t.is(SIZES['nmreq_port_info_get'], 32);
  t.is(SIZES['nmreq_vale_attach'], 64);
  t.is(SIZES['nmreq_vale_detach'], 8);
  t.is(SIZES['nmreq_vale_list'], 8);
  t.is(SIZES['nmreq_port_hdr'], 8);
  t.is(SIZES['nmreq_vale_newif'], 16);
  t.is(SIZES['nmreq_option'], 24);
  t.is(SIZES['nmreq_opt_csb'], 40);
  t.is(SIZES['nm_csb_atok'], 64);
  t.is(SIZES['nm_csb_ktoa'], 64);
  t.deepEqual({ ...CSB_ATOK }, { head: 0, cur: 4, appl_need_kick: 8, sync_flags: 12 });
  t.deepEqual({ ...CSB_KTOA }, { hwcur: 0, hwtail: 4, kern_need_kick: 8 });
});

test('flags, request types, modes and ioctl numbers', (t) => {
  const want: Record<string, number> = {
    NETMAP_API: 14, NETMAP_MIN_API: 14, NETMAP_MAX_API: 15, NM_CACHE_ALIGN: 128, NETMAP_REQ_IFNAMSIZ: 64, NETMAP_REQ_MAXSIZE: 4096,
    NS_BUF_CHANGED: 1, NS_REPORT: 2, NS_FORWARD: 4, NS_NO_LEARN: 8, NS_INDIRECT: 0x10, NS_MOREFRAG: 0x20, NS_TXMON: 0x40, NS_PORT_SHIFT: 8, NS_PORT_MASK: 0xff00,
    NR_TIMESTAMP: 2, NR_FORWARD: 4, NR_TX: 1, NR_RX: 0,
    NETMAP_REQ_REGISTER: 1, NETMAP_REQ_PORT_INFO_GET: 2, NETMAP_REQ_VALE_ATTACH: 3, NETMAP_REQ_VALE_DETACH: 4, NETMAP_REQ_VALE_LIST: 5,
    NETMAP_REQ_PORT_HDR_SET: 6, NETMAP_REQ_PORT_HDR_GET: 7, NETMAP_REQ_VALE_NEWIF: 8, NETMAP_REQ_VALE_DELIF: 9, NETMAP_REQ_POOLS_INFO_GET: 12, NETMAP_REQ_CSB_ENABLE: 15,
    NR_REG_ALL_NIC: 1, NR_REG_SW: 2, NR_REG_NIC_SW: 3, NR_REG_ONE_NIC: 4, NR_REG_PIPE_MASTER: 5, NR_REG_PIPE_SLAVE: 6, NR_REG_NULL: 7, NR_REG_ONE_SW: 8,
    NR_MONITOR_TX: 0x100, NR_MONITOR_RX: 0x200, NR_ZCOPY_MON: 0x400, NR_EXCLUSIVE: 0x800, NR_RX_RINGS_ONLY: 0x2000, NR_TX_RINGS_ONLY: 0x4000,
    NR_ACCEPT_VNET_HDR: 0x8000, NR_DO_RX_POLL: 0x10000, NR_NO_TX_POLL: 0x20000,
    NIOCGINFO: 0xc03c6991, NIOCREGIF: 0xc03c6992, NIOCTXSYNC: 0x6994, NIOCRXSYNC: 0x6995, NIOCCTRL: 0xc0586997,
  };
  for (const [k, v] of Object.entries(want)) t.is(C[k], v, k);
});

test('a userspace region is laid out as NETMAP_TXRING/NETMAP_BUF compute it', (t) => {
  const r = native.createRegion({ txRings: 3, rxRings: 2, txSlots: 512, rxSlots: 256, bufSize: 1024, extraBufs: 5 }, ['vale0:l']);
  const dv = new DataView(r.memory);
  const nifp = r.layout.nifpOffsets[0]!;
  t.is(new TextDecoder().decode(new Uint8Array(r.memory, nifp, 7)), 'vale0:l');
  t.is(dv.getUint32(nifp + NIF.ni_tx_rings, true), 3);
  t.is(dv.getUint32(nifp + NIF.ni_rx_rings, true), 2);
  const seen = new Set<number>();
  for (let i = 0; i < 5; i++) {
    const ring = nifp + Number(dv.getBigInt64(nifp + NIF.ring_ofs + 8 * i, true));
    t.is(ring % 128, 0, 'rings are cache-aligned');
    const tx = i < 3;
    const n = dv.getUint32(ring + RING.num_slots, true);
    t.is(n, tx ? 512 : 256);
    t.is(dv.getUint32(ring + RING.nr_buf_size, true), 1024);
    t.is(dv.getUint16(ring + RING.dir, true), tx ? 1 : 0, 'dir as the kernel writes it: kring->tx');
    t.is(dv.getUint32(ring + RING.head, true), 0);
    t.is(dv.getUint32(ring + RING.tail, true), tx ? n - 1 : 0, 'netmap initial tail: tx num_slots-1, rx 0');
    const bufBase = ring + Number(dv.getBigInt64(ring + RING.buf_ofs, true));
    t.is(bufBase, r.layout.bufPoolOffset);
    for (let s = 0; s < n; s++) {
      const idx = dv.getUint32(ring + RING.slot + 16 * s, true);
      t.true(idx >= 2, 'buffers 0 and 1 are reserved');
      t.false(seen.has(idx));
      seen.add(idx);
      t.true(bufBase + (idx + 1) * 1024 <= r.memory.byteLength);
    }
  }
  // extra buffers are a list through ni_bufs_head
  let idx = dv.getUint32(nifp + NIF.ni_bufs_head, true);
  let extra = 0;
  while (idx !== 0) {
    t.false(seen.has(idx));
    seen.add(idx);
    extra++;
    idx = dv.getUint32(r.layout.bufPoolOffset + idx * 1024, true);
  }
  t.is(extra, 5);
  t.is(r.layout.numBufs, 2 + 3 * 512 + 2 * 256 + 5);
  native.close(r.fd);
});

test('region parameters outside netmap limits are refused with the accepted range', (t) => {
  t.throws(() => native.computeLayout({ txRings: 17 }), { message: /tx rings 17 is out of range: use 1..16/ });
  t.throws(() => native.computeLayout({ txSlots: 5000 }), { message: /tx slots 5000 .* 2..4096/ });
  t.throws(() => native.computeLayout({ bufSize: 100 }), { message: /not a multiple of 64/ });
  t.notThrows(() => native.computeLayout({ txRings: 16, rxRings: 16, txSlots: 4096, rxSlots: 4096 }));
  t.throws(() => native.computeLayout({ txRings: 16, rxRings: 16, txSlots: 4096, rxSlots: 4096, bufSize: 65536 }), { message: /exceeds 4 GiB/ });
});

test('a corrupted region header is refused by a peer', (t) => {
  const r = native.createRegion({}, ['x']);
  t.notThrows(() => native.validateRegion(r.memory));
  const dv = new DataView(r.memory);
  dv.setUint32(24, 99, true); // tx_slots
  t.throws(() => native.validateRegion(r.memory), { message: /invalid region/ });
  dv.setUint32(0, 0, true);
  t.throws(() => native.validateRegion(r.memory), { message: /bad magic/ });
  native.close(r.fd);
});
