/**
 * netmap's ABI numbers for TypeScript, read from the addon, which takes them
 * from the compiled structs (cpp/abi/netmap_abi.h, exported by cpp/napi/abi_export.cc): one source of truth.
 * No other TypeScript file types a netmap number (test/unit/abi-literals.test.ts
 * greps for the ones that were).
 *
 * @module
 */
import { native } from './addon.js';

const a = native.abi;

function pick<K extends string>(o: Record<string, number>, keys: readonly K[], what: string): Record<K, number> {
  const out = {} as Record<K, number>;
  for (const k of keys) {
    const v = o[k];
    if (typeof v !== 'number') throw new Error(`addon ABI table lacks ${what}.${k}: rebuild the addon (npm run build:native)`);
    out[k] = v;
  }
  return out;
}

/** struct netmap_slot field offsets. */
export const SLOT = pick(a.offsets.netmap_slot, ['buf_idx', 'len', 'flags', 'ptr'] as const, 'netmap_slot');
/** sizeof(struct netmap_slot). */
export const SLOT_SIZE = a.sizes.netmap_slot;
/** struct netmap_ring field offsets; `slot` is where slot[0] starts. */
export const RING = pick(
  a.offsets.netmap_ring,
  ['buf_ofs', 'num_slots', 'nr_buf_size', 'ringid', 'dir', 'head', 'cur', 'tail', 'flags', 'ts', 'offset_mask', 'buf_align', 'sem', 'slot'] as const,
  'netmap_ring',
);
/** struct netmap_if field offsets; `ring_ofs` is where the offsets array starts. */
export const NIF = pick(
  a.offsets.netmap_if,
  ['ni_name', 'ni_version', 'ni_flags', 'ni_tx_rings', 'ni_rx_rings', 'ni_bufs_head', 'ni_host_tx_rings', 'ni_host_rx_rings', 'ni_spare1', 'ring_ofs'] as const,
  'netmap_if',
);
/** CSB app-to-kernel record offsets. */
export const CSB_ATOK = pick(a.offsets.nm_csb_atok, ['head', 'cur', 'appl_need_kick', 'sync_flags'] as const, 'nm_csb_atok');
/** CSB kernel-to-app record offsets. */
export const CSB_KTOA = pick(a.offsets.nm_csb_ktoa, ['hwcur', 'hwtail', 'kern_need_kick'] as const, 'nm_csb_ktoa');
/** Userspace region header offsets (ours, not netmap's). */
export const REGION = pick(
  a.offsets.RegionHeader,
  ['magic', 'version', 'size', 'n_ifs', 'tx_rings', 'rx_rings', 'tx_slots', 'rx_slots', 'buf_size', 'extra_bufs', 'num_bufs', 'nifp_ofs', 'csb_ofs', 'buf_pool_ofs', 'end_state', 'generation'] as const,
  'RegionHeader',
);
function size(name: string): number {
  const v = a.sizes[name];
  if (typeof v !== 'number') throw new Error(`addon ABI table lacks sizeof(${name}): rebuild the addon (npm run build:native)`);
  return v;
}
/** sizeof(struct nm_csb_atok): a ring's CSB entry is this record, then its nm_csb_ktoa. */
export const CSB_ATOK_SIZE = size('nm_csb_atok');

/** All sizes, as compiled. */
export const SIZES: Readonly<Record<string, number>> = a.sizes;
/** All constants (flags, request types, limits), as compiled. */
export const C: Readonly<Record<string, number>> = a.constants;
/** All offsets tables, as compiled (nmreq_header, nmreq_register, nmreq, ...). */
export const OFFSETS: Readonly<Record<string, Readonly<Record<string, number>>>> = a.offsets;

function k(name: string): number {
  const v = a.constants[name];
  if (typeof v !== 'number') throw new Error(`addon ABI table lacks ${name}`);
  return v;
}

export const NS_BUF_CHANGED = k('NS_BUF_CHANGED');
export const NS_REPORT = k('NS_REPORT');
export const NS_FORWARD = k('NS_FORWARD');
export const NS_NO_LEARN = k('NS_NO_LEARN');
export const NS_INDIRECT = k('NS_INDIRECT');
export const NS_MOREFRAG = k('NS_MOREFRAG');
/** Most slots one multi-slot (NS_MOREFRAG) frame may span, as netmap's kernel and the switch bound it. */
export const NETMAP_MAX_FRAGS = k('NETMAP_MAX_FRAGS');
export const NS_PORT_SHIFT = k('NS_PORT_SHIFT');
export const NS_PORT_MASK = k('NS_PORT_MASK');
export const NR_TX = k('NR_TX');
export const NR_RX = k('NR_RX');
export const CSB_ENTRY_SIZE = k('CSB_ENTRY_SIZE');
export const MAX_RINGS = k('MAX_RINGS');
export const MAX_SLOTS = k('MAX_SLOTS');
export const MIN_SLOTS = k('MIN_SLOTS');
export const DEFAULT_SLOTS = k('DEFAULT_SLOTS');
export const DEFAULT_BUF_SIZE = k('DEFAULT_BUF_SIZE');
export const NETMAP_API = k('NETMAP_API');

/** Smallest and largest buffer size of a userspace region. */
export const MIN_BUF_SIZE = k('MIN_BUF_SIZE');
export const MAX_BUF_SIZE = k('MAX_BUF_SIZE');
/** Most extra buffers (nr_extra_bufs) a userspace region links. */
export const MAX_EXTRA_BUFS = k('MAX_EXTRA_BUFS');
/** Length of nmreq_header.nr_name, the terminating NUL included. */
export const NETMAP_REQ_IFNAMSIZ = k('NETMAP_REQ_IFNAMSIZ');

/** nr_mode values (NR_REG_*): which rings a registration binds. */
export const NR_REG_DEFAULT = k('NR_REG_DEFAULT');
export const NR_REG_ALL_NIC = k('NR_REG_ALL_NIC');
export const NR_REG_SW = k('NR_REG_SW');
export const NR_REG_NIC_SW = k('NR_REG_NIC_SW');
export const NR_REG_ONE_NIC = k('NR_REG_ONE_NIC');
export const NR_REG_PIPE_MASTER = k('NR_REG_PIPE_MASTER');
export const NR_REG_PIPE_SLAVE = k('NR_REG_PIPE_SLAVE');
export const NR_REG_NULL = k('NR_REG_NULL');
export const NR_REG_ONE_SW = k('NR_REG_ONE_SW');
/** Largest nr_ringid ring number (the legacy API's NETMAP_RING_MASK). */
export const NETMAP_RING_MASK = k('NETMAP_RING_MASK');
/** nr_flags (64-bit in the ABI; these all fit 32 bits). */
export const NR_MONITOR_TX = k('NR_MONITOR_TX');
export const NR_MONITOR_RX = k('NR_MONITOR_RX');
export const NR_ZCOPY_MON = k('NR_ZCOPY_MON');
export const NR_EXCLUSIVE = k('NR_EXCLUSIVE');
export const NR_RX_RINGS_ONLY = k('NR_RX_RINGS_ONLY');
export const NR_TX_RINGS_ONLY = k('NR_TX_RINGS_ONLY');
export const NR_NO_TX_POLL = k('NR_NO_TX_POLL');
export const NR_DO_RX_POLL = k('NR_DO_RX_POLL');

/** NIOCCTRL request types (nmreq_header.nr_reqtype). */
export const NETMAP_REQ_REGISTER = k('NETMAP_REQ_REGISTER');
export const NETMAP_REQ_PORT_INFO_GET = k('NETMAP_REQ_PORT_INFO_GET');
export const NETMAP_REQ_VALE_ATTACH = k('NETMAP_REQ_VALE_ATTACH');
export const NETMAP_REQ_VALE_DETACH = k('NETMAP_REQ_VALE_DETACH');
export const NETMAP_REQ_VALE_LIST = k('NETMAP_REQ_VALE_LIST');
export const NETMAP_REQ_PORT_HDR_SET = k('NETMAP_REQ_PORT_HDR_SET');
export const NETMAP_REQ_PORT_HDR_GET = k('NETMAP_REQ_PORT_HDR_GET');
export const NETMAP_REQ_VALE_NEWIF = k('NETMAP_REQ_VALE_NEWIF');
export const NETMAP_REQ_VALE_DELIF = k('NETMAP_REQ_VALE_DELIF');
export const NETMAP_REQ_VALE_POLLING_ENABLE = k('NETMAP_REQ_VALE_POLLING_ENABLE');
export const NETMAP_REQ_VALE_POLLING_DISABLE = k('NETMAP_REQ_VALE_POLLING_DISABLE');
/** nmreq_vale_polling.nr_mode: one CPU polls every ring, or one ring per CPU. */
export const NETMAP_POLLING_MODE_SINGLE_CPU = k('NETMAP_POLLING_MODE_SINGLE_CPU');
export const NETMAP_POLLING_MODE_MULTI_CPU = k('NETMAP_POLLING_MODE_MULTI_CPU');
/** Ports per VALE switch, and the port index VALE_LIST answers for a switch without the port. */
export const NM_BDG_MAXPORTS = k('NM_BDG_MAXPORTS');
export const NM_BDG_NOPORT = k('NM_BDG_NOPORT');
