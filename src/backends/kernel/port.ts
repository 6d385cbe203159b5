/**
 * The kernel backend: a port registered with the netmap kernel module through
 * `/dev/netmap`, as libnetmap's `nmport_open` does it — `NIOCCTRL` with
 * `NETMAP_REQ_REGISTER` (falling back to the legacy `NIOCREGIF` on modules
 * that predate the control API), `mmap` of the region, `NIOCTXSYNC` /
 * `NIOCRXSYNC`, and `poll` on the netmap fd to sleep.
 *
 * Ring numbering follows {@link Backend}: tx ring ids index the netmap_if's
 * tx rings (`ring_ofs[id]`: NIC tx rings `0..ni_tx_rings-1`, then the host tx
 * rings), rx ring ids index its rx rings (`ring_ofs[ni_tx_rings +
 * ni_host_tx_rings + id]`: NIC rx rings `0..ni_rx_rings-1`, then the host rx
 * rings) — exactly `NETMAP_TXRING(nifp, id)` / `NETMAP_RXRING(nifp, id)`.
 *
 * @module
 */
import { nativeRaw } from '../../netmap/addon.js';
import {
  NIF,
  NR_REG_ALL_NIC,
  NR_REG_DEFAULT,
  NR_REG_NIC_SW,
  NR_REG_ONE_NIC,
  NR_REG_ONE_SW,
  NR_REG_SW,
  NR_RX_RINGS_ONLY,
  NR_TX_RINGS_ONLY,
} from '../../netmap/abi.js';
import { oneNicRings, parsePortName, type ParsedPortName } from '../../netmap/name.js';
import type { Backend, PortRegistration } from '../backend.js';
import { KernelValeControl } from './control.js';

export { kernelAvailable } from './control.js';

/**
 * A register request as the addon encodes it (the fields of
 * `struct nmreq_register` plus the header's `nr_name`); missing numbers are 0.
 */
export interface RegisterSpec {
  /** `nmreq_header.nr_name`: the port name without `netmap:` (`eth0`, `vale0:1`, `eth0{1`) */
  name: string;
  /** the name as the user wrote it, for error messages (default: `name`) */
  label?: string;
  /** device to open instead of `/dev/netmap` (tests only) */
  device?: string;
  /** `nr_mode` (`NR_REG_*`) */
  mode?: number;
  /** `nr_ringid`: the ring for `NR_REG_ONE_NIC` / `NR_REG_ONE_SW` */
  ringId?: number;
  /** `nr_flags` (`NR_*`, 64-bit in the ABI; only values below 2^53 are accepted) */
  flags?: number;
  /** `nr_tx_slots` (a hint; 0 = the port's default) */
  txSlots?: number;
  /** `nr_rx_slots` */
  rxSlots?: number;
  /** `nr_tx_rings` (only honoured for ports this request creates) */
  txRings?: number;
  /** `nr_rx_rings` */
  rxRings?: number;
  /** `nr_host_tx_rings` (new API only) */
  hostTxRings?: number;
  /** `nr_host_rx_rings` (new API only) */
  hostRxRings?: number;
  /** `nr_mem_id`: 0 lets the kernel choose */
  memId?: number;
  /** `nr_extra_bufs`: extra buffers linked from `ni_bufs_head` */
  extraBufs?: number;
}

/** The encoded new-API register request: `nr_body`/`nr_options` left 0 (the real call points `nr_body` at the body). */
export interface EncodedRegister {
  /** `struct nmreq_header`, 88 bytes */
  header: Buffer;
  /** `struct nmreq_register`, 56 bytes */
  body: Buffer;
}

/** How the netmap_if of a registered port is laid out, as the addon checked it. */
export interface KernelLayout {
  /** `ni_tx_rings` */
  txRings: number;
  /** `ni_rx_rings` */
  rxRings: number;
  /** `ni_host_tx_rings` (1 for adapters with no real host rings: netmap counts a placeholder) */
  hostTxRings: number;
  /** `ni_host_rx_rings` */
  hostRxRings: number;
  /** tx ring ids whose `ring_ofs` is set (bound by this registration) and whose ring lies inside the region */
  txPresent: number[];
  /** rx ring ids (rx numbering) whose `ring_ofs` is set and whose ring lies inside the region */
  rxPresent: number[];
}

/** What the kernel answered to the registration. */
export interface KernelRegisterInfo {
  /** `nr_tx_slots`: slots per tx ring */
  txSlots: number;
  /** `nr_rx_slots`: slots per rx ring */
  rxSlots: number;
  /** `nr_tx_rings`: NIC tx rings of the adapter */
  txRings: number;
  /** `nr_rx_rings`: NIC rx rings of the adapter */
  rxRings: number;
  /** `nr_host_tx_rings` (legacy registrations: `ni_host_tx_rings`, as the legacy reply lacks it) */
  hostTxRings: number;
  /** `nr_host_rx_rings` (legacy registrations: `ni_host_rx_rings`) */
  hostRxRings: number;
  /** `nr_mem_id`: the memory region (allocator) the port lives in */
  memId: number;
  /** bytes mapped */
  memSize: number;
  /** true when the module did not take NIOCCTRL and the legacy NIOCREGIF registered the port */
  usedLegacy: boolean;
  /** `nr_mode` as the kernel returned it */
  mode: number;
  /** `nr_ringid` as the kernel returned it */
  ringId: number;
  /** `nr_flags` as the kernel returned it */
  flags: number;
  /** extra buffers actually allocated */
  extraBufs: number;
  /** the netmap_if, checked */
  layout: KernelLayout;
}

/** The native `KernelPort` (cpp/core/kernel_port.h, bound in cpp/napi/kernel_port.cc). */
export interface NativeKernelPort {
  /** the mapped region, or null if it could not be exposed */
  readonly memory: ArrayBuffer | null;
  /** `nr_offset`: the netmap_if's offset in `memory` */
  readonly nifpOffset: number;
  /** the netmap fd, -1 once closed */
  readonly fd: number;
  /** the registration as the kernel answered it */
  readonly info: KernelRegisterInfo;
  /** NIOCTXSYNC; throws an errno error */
  txsync(): void;
  /** NIOCRXSYNC; throws an errno error */
  rxsync(): void;
  /** unregister now (the region reads as zeros afterwards) and close the fd */
  close(): void;
}

/** The part of the addon this module uses. */
interface KernelNative {
  encodeRegisterRequest(spec: RegisterSpec): EncodedRegister;
  encodeLegacyRegisterRequest(spec: RegisterSpec): Buffer;
  KernelPort: new (spec: RegisterSpec) => NativeKernelPort;
}

const kn = nativeRaw as KernelNative;

/** Options for {@link encodeRegister} and {@link KernelBackend.open}. */
export interface KernelRegisterOptions {
  /** `nr_extra_bufs` */
  extraBufs?: number;
  /** more `NR_*` flags OR-ed into those the name gives (e.g. `NR_NO_TX_POLL` 0x20000) */
  extraFlags?: number;
  /** ring pairs to ask for (tx and rx), overriding `@conf:` */
  rings?: number;
  /** slots per ring to ask for (tx and rx), overriding `@conf:` */
  slots?: number;
  /** `nr_mem_id`, overriding `@N` (e.g. resolved from `@share=`) */
  memId?: number;
  /** device to open instead of `/dev/netmap` (tests only) */
  device?: string;
}


/**
 * The register request a parsed name stands for, as libnetmap's
 * `nmport_parse` builds it: `nr_name`, `nr_mode`, `nr_ringid`, `nr_flags`,
 * `nr_mem_id` and the `@conf:` counts (`rings`/`host-rings`/`slots` set both
 * directions, the specific keys override them).
 */
export function registerSpec(p: ParsedPortName, opts: KernelRegisterOptions = {}): RegisterSpec {
  const c = p.conf;
  const spec: RegisterSpec = {
    name: p.nrName,
    label: p.spec,
    mode: p.nrMode,
    ringId: p.ringId,
    flags: orFlags(p.flags, opts.extraFlags ?? 0),
    txRings: opts.rings ?? c.txRings ?? c.rings ?? 0,
    rxRings: opts.rings ?? c.rxRings ?? c.rings ?? 0,
    hostTxRings: c.hostTxRings ?? c.hostRings ?? 0,
    hostRxRings: c.hostRxRings ?? c.hostRings ?? 0,
    txSlots: opts.slots ?? c.txSlots ?? c.slots ?? 0,
    rxSlots: opts.slots ?? c.rxSlots ?? c.slots ?? 0,
    memId: opts.memId ?? p.memId,
    extraBufs: opts.extraBufs ?? 0,
  };
  if (opts.device !== undefined) spec.device = opts.device;
  return spec;
}

/** OR of two flag words that may exceed 32 bits (JS `|` would truncate them). */
function orFlags(a: number, b: number): number {
  return Number(BigInt(a) | BigInt(b));
}

/**
 * Encode the `NIOCCTRL` register request for a parsed name with the addon's
 * C++ structs. Pure: `@share=` is not resolved here (that needs the kernel;
 * {@link KernelBackend.open} does it).
 */
export function encodeRegister(p: ParsedPortName, opts?: KernelRegisterOptions): EncodedRegister {
  return kn.encodeRegisterRequest(registerSpec(p, opts));
}

/**
 * Encode the legacy `NIOCREGIF` request (60-byte `struct nmreq`) for a parsed
 * name. Throws (code `ENAMETOOLONG`) for names over 15 bytes and (code
 * `EOPNOTSUPP`) for host-ring counts or flags the legacy API cannot carry.
 */
export function encodeLegacyRegister(p: ParsedPortName, opts?: KernelRegisterOptions): Buffer {
  return kn.encodeLegacyRegisterRequest(registerSpec(p, opts));
}

/**
 * The tx and rx ring ids a registration binds, as libnetmap's `nmport`
 * computes `first/last_{tx,rx}_ring`: ALL_NIC → the NIC rings; ONE_NIC N →
 * [N]; SW → the host rings (after the NIC rings in each direction's
 * numbering); NIC_SW → both; ONE_SW N → [NIC rings + N]. As the kernel
 * (netmap_interp_ringid), a direction with no ring N binds its ring 0 instead
 * (ONE_NIC 3 on 4 tx and 2 rx rings: tx ring 3 and rx ring 0). `/T` drops the rx
 * side, `/R` the tx side. When `present` is given (ring ids whose `ring_ofs`
 * the kernel set), ids without a ring are dropped, as nmport skips rings
 * whose offset is 0.
 */
export function boundRingIds(
  nrMode: number,
  ringId: number,
  flags: number,
  layout: Pick<KernelLayout, 'txRings' | 'rxRings' | 'hostTxRings' | 'hostRxRings'>,
  present?: { tx: readonly number[]; rx: readonly number[] },
): { tx: number[]; rx: number[] } {
  const range = (from: number, n: number): number[] => Array.from({ length: Math.max(0, n) }, (_, i) => from + i);
  const { txRings, rxRings, hostTxRings, hostRxRings } = layout;
  let tx: number[];
  let rx: number[];
  switch (nrMode) {
    case NR_REG_DEFAULT:
    case NR_REG_ALL_NIC:
      tx = range(0, txRings);
      rx = range(0, rxRings);
      break;
    // netmap_interp_ringid: a ring id past one direction's rings binds that
    // direction's first ring; past both, the kernel refuses it (EINVAL)
    case NR_REG_ONE_NIC: {
      const o = oneNicRings(ringId, txRings, rxRings);
      tx = o ? [o.tx] : [];
      rx = o ? [o.rx] : [];
      break;
    }
    case NR_REG_SW:
      tx = range(txRings, hostTxRings);
      rx = range(rxRings, hostRxRings);
      break;
    case NR_REG_NIC_SW:
      tx = range(0, txRings + hostTxRings);
      rx = range(0, rxRings + hostRxRings);
      break;
    case NR_REG_ONE_SW: {
      const o = oneNicRings(ringId, hostTxRings, hostRxRings);
      tx = o ? [txRings + o.tx] : [];
      rx = o ? [rxRings + o.rx] : [];
      break;
    }
    default:
      throw new RangeError(`kernel backend: register mode ${nrMode} is not one a port name can select`);
  }
  // the excluded direction (netmap_interp_ringid): /T binds no rx ring, /R no tx ring
  if (flags & NR_TX_RINGS_ONLY) rx = [];
  if (flags & NR_RX_RINGS_ONLY) tx = [];
  if (present) {
    const ptx = new Set(present.tx);
    const prx = new Set(present.rx);
    tx = tx.filter((i) => ptx.has(i));
    rx = rx.filter((i) => prx.has(i));
  }
  return { tx, rx };
}

/**
 * A port served by kernel netmap. Ring ids: see the module comment — tx ids
 * index the netmap_if's tx rings (NIC, then host), rx ids its rx rings.
 *
 * `txsync(ring)` / `rxsync(ring)` are `NIOCTXSYNC` / `NIOCRXSYNC` on the
 * port's fd: the kernel syncs every ring this registration bound, not only
 * `ring` (netmap has no per-ring sync ioctl), which is what a per-ring caller
 * wants anyway, at the cost of repeated work when it loops over rings.
 * Sleeping is `poll` on the netmap fd: netmap's poll syncs the rings itself
 * (and pushes pending tx unless `NR_NO_TX_POLL`).
 */
export class KernelBackend implements Backend {
  /** Always 'kernel'. */
  readonly kind = 'kernel' as const;
  readonly syncsAllRings = true;
  /** The mmapped netmap region (`nr_memsize` bytes). */
  readonly memory: ArrayBuffer;
  /** `nr_offset`: where this port's netmap_if lies in {@link KernelBackend.memory}. */
  readonly nifpOffset: number;
  /** Bound tx rings: indices into the netmap_if's tx rings (NIC rings first, then host rings). */
  readonly txRingIds: readonly number[];
  /** Bound rx rings: indices into the netmap_if's rx rings (NIC rings first, then host rings). */
  readonly rxRingIds: readonly number[];
  /** The netmap fd: readable when rx rings have frames, writable when tx rings have room. */
  readonly waitFd: number;
  /** The registration as the kernel answered it. */
  readonly info: KernelRegisterInfo;
  /** The register reply's ring counts and allocator id. */
  readonly registration: PortRegistration;
  /** The name as opened. */
  readonly spec: string;
  private readonly port: NativeKernelPort;
  private closed = false;

  private constructor(port: NativeKernelPort, p: ParsedPortName) {
    this.port = port;
    this.spec = p.spec;
    const mem = port.memory;
    if (mem === null) throw new Error(`${p.spec}: the netmap region is not mapped`);
    this.memory = mem;
    this.nifpOffset = port.nifpOffset;
    this.waitFd = port.fd;
    this.info = port.info;
    this.registration = Object.freeze({
      txRings: this.info.txRings,
      rxRings: this.info.rxRings,
      hostTxRings: this.info.hostTxRings,
      hostRxRings: this.info.hostRxRings,
      memId: this.info.memId,
    });
    const layout = this.info.layout;
    // the addon checked the netmap_if; make sure JS reads the same numbers
    const dv = new DataView(mem);
    const nif = this.nifpOffset;
    const seen = {
      txRings: dv.getUint32(nif + NIF.ni_tx_rings, true),
      rxRings: dv.getUint32(nif + NIF.ni_rx_rings, true),
      hostTxRings: dv.getUint32(nif + NIF.ni_host_tx_rings, true),
      hostRxRings: dv.getUint32(nif + NIF.ni_host_rx_rings, true),
    };
    if (
      seen.txRings !== layout.txRings ||
      seen.rxRings !== layout.rxRings ||
      seen.hostTxRings !== layout.hostTxRings ||
      seen.hostRxRings !== layout.hostRxRings
    ) {
      throw new Error(`${p.spec}: the netmap_if changed under the registration`);
    }
    const ids = boundRingIds(p.nrMode, p.ringId, p.flags, layout, { tx: layout.txPresent, rx: layout.rxPresent });
    if (ids.tx.length === 0 && ids.rx.length === 0) {
      throw Object.assign(
        new Error(
          `${p.spec}: the registration bound no ring this name selects (kernel reported tx rings ` +
            `[${layout.txPresent.join(',')}], rx rings [${layout.rxPresent.join(',')}])`,
        ),
        { code: 'EINVAL' },
      );
    }
    this.txRingIds = Object.freeze(ids.tx);
    this.rxRingIds = Object.freeze(ids.rx);
  }

  /**
   * Register `p` with the kernel and map its region. Throws with `.code`:
   * `ENODEV` when /dev/netmap is missing (the message points to the
   * userspace backend), the register ioctl's errno (`EBUSY`, `ENXIO`,
   * `EINVAL`...) with the port named, `EOPNOTSUPP` for options the kernel
   * backend does not implement (`@extmem`, `@offset`).
   */
  static open(p: ParsedPortName, opts: KernelRegisterOptions = {}): KernelBackend {
    if (p.extmem !== undefined || p.offset !== undefined) {
      const which = p.extmem !== undefined ? '@extmem' : '@offset';
      throw Object.assign(new Error(`${p.spec}: the kernel backend does not support ${which} yet`), { code: 'EOPNOTSUPP' });
    }
    const o: KernelRegisterOptions = { ...opts };
    if (o.memId === undefined && p.share !== undefined && p.memId === 0) {
      o.memId = sharedMemId(p.share, opts.device);
    }
    const port = new kn.KernelPort(registerSpec(p, o));
    try {
      return new KernelBackend(port, p);
    } catch (e) {
      port.close();
      throw e;
    }
  }

  /** NIOCTXSYNC (syncs every tx ring the port bound; `ring` only names the caller's interest). */
  txsync(_ring: number): void {
    this.port.txsync();
  }

  /** NIOCRXSYNC (syncs every rx ring the port bound). */
  rxsync(_ring: number): void {
    this.port.rxsync();
  }

  /** Poll the netmap fd for readable (`rx`) / writable (`tx`); netmap's poll does the syncs. */
  armWait(rx: boolean, tx: boolean): number {
    return (rx ? 1 : 0) | (tx ? 2 : 0);
  }

  /** Nothing to drain: the netmap fd carries no doorbell. */
  afterWait(): void {}

  /** A kernel port never loses its other side while registered. */
  hungUp(): boolean {
    return false;
  }

  /** Unregister and close the fd; views of {@link KernelBackend.memory} read zeros from now on. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.port.close();
  }
}

/** `@share=PORT`: the mem id PORT uses (PORT_INFO_GET), as libnetmap's share option resolves it. */
function sharedMemId(share: string, device: string | undefined): number {
  const target = parsePortName(share);
  try {
    return new KernelValeControl(device === undefined ? {} : { device }).infoSync(target.nrName).memId;
  } catch (e) {
    if (e instanceof Error) e.message = `@share=${share}: cannot look up its memory region: ${e.message}`;
    throw e;
  }
}
