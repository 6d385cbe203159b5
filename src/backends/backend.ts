/**
 * What a port needs from whatever serves it (kernel netmap, the vale-ts
 * switch, a pipe): memory laid out as netmap lays it out, per-ring sync, and
 * a file descriptor to sleep on. Ring and Port are written once against this.
 */

/** Which backend serves a port. */
export type BackendKind = 'user' | 'kernel' | 'pipe';

/** Readiness reported by a poll. */
export interface PollEvents {
  /** some rx ring has frames */
  rx: boolean;
  /** some tx ring has room */
  tx: boolean;
  /** the other side went away (switch gone, pipe peer closed or died) */
  hup: boolean;
}

/**
 * What a registration reports about the port, as the kernel's reply to
 * NETMAP_REQ_REGISTER does (nmreq_register's out fields).
 */
export interface PortRegistration {
  /** `nr_tx_rings`: NIC (hardware) tx rings of the port */
  readonly txRings: number;
  /** `nr_rx_rings`: NIC rx rings */
  readonly rxRings: number;
  /**
   * `nr_host_tx_rings`: real host tx rings, 0 where the port has none (VALE
   * ports, pipes). The netmap_if's `ni_host_tx_rings` says at least 1 because
   * netmap always lays out a placeholder host ring; this count does not.
   */
  readonly hostTxRings: number;
  /** `nr_host_rx_rings`, as hostTxRings */
  readonly hostRxRings: number;
  /** `nr_mem_id`: the memory allocator the port lives in (0: not a kernel allocator) */
  readonly memId: number;
}

/** The contract each backend fulfils. */
export interface Backend {
  readonly kind: BackendKind;
  /**
   * The register reply's counts where they differ from the netmap_if's
   * (kernel netmap); absent where the netmap_if says it all (userspace
   * regions lay out no placeholder rings and have no allocator id).
   */
  readonly registration?: PortRegistration;
  /** The whole mapped region (kernel: the mmap of /dev/netmap). */
  readonly memory: ArrayBuffer;
  /** Offset of this port's netmap_if inside `memory`. */
  readonly nifpOffset: number;
  /** Indices (0-based, within the netmap_if's tx rings) bound by this registration. */
  readonly txRingIds: readonly number[];
  /** Indices (0-based, within the netmap_if's rx rings) bound by this registration. */
  readonly rxRingIds: readonly number[];
  /** One txsync/rxsync covers every bound ring (kernel netmap: one ioctl). */
  readonly syncsAllRings: boolean;
  /** Fd to watch while sleeping (a doorbell, or the netmap fd). */
  readonly waitFd: number;
  /** Push the user's [old head, head) of tx ring `ring` and update its tail. Throws on failure. */
  txsync(ring: number): void;
  /** Release [old head, head) of rx ring `ring` and pick up new frames. Throws on failure. */
  rxsync(ring: number): void;
  /**
   * Prepare to sleep: ask the other side for a kick when rx frames arrive
   * (`rx`) or tx room frees up (`tx`). Returns the libuv events to wait for
   * on `waitFd` (1 readable, 2 writable).
   */
  armWait(rx: boolean, tx: boolean): number;
  /** Called after waking up (drains a doorbell, clears requests). */
  afterWait(): void;
  /** True once the other side is gone for good. */
  hungUp(): boolean;
  /** Release everything; the memory stays mapped until JS drops its views. */
  close(): void;
}
