/**
 * netmap's ABI numbers for TypeScript, read from the addon, which takes them
 * from the compiled structs (cpp/abi/netmap_abi.h, exported by cpp/napi/abi_export.cc): one source of truth.
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
