/**
 * The communication status block of a userspace region: per ring an
 * app-to-kernel record (head, cur, appl_need_kick) and a kernel-to-app record
 * (hwcur, hwtail, kern_need_kick), netmap's nm_csb_atok/nm_csb_ktoa. The
 * "kernel" is the switch for vale ports and the peer end for pipes. All
 * accesses are Atomics (sequentially consistent), which gives the release /
 * acquire ordering the protocol needs and the store-load fence of the
 * need-kick handshake.
 */
import { CSB_ATOK, CSB_ATOK_SIZE, CSB_KTOA, CSB_ENTRY_SIZE, REGION } from '../netmap/abi.js';
import { native } from '../netmap/addon.js';

/**
 * Waiting for the userspace backends (vale-ts ports, pipes): ask for kicks
 * through the CSB, sleep on our doorbell, withdraw the request on waking.
 */
export abstract class CsbDoorbell {
  protected abstract readonly csb: CsbView;
  abstract readonly waitFd: number;
  abstract readonly rxRingIds: readonly number[];
  abstract readonly txRingIds: readonly number[];

  armWait(rx: boolean, tx: boolean): number {
    // the other side reads these flags after publishing, and kicks our doorbell
    this.csb.armKicks(this.rxRingIds, this.txRingIds, rx, tx);
    return 1;
  }

  afterWait(): void {
    native.drain(this.waitFd);
    this.csb.clearKicks(this.rxRingIds, this.txRingIds);
  }
}

/** CSB records of one netmap_if (one port, or one pipe end). */
export class CsbView {
  private readonly i32: Int32Array;
  private readonly base: number;
  /** rings per netmap_if: tx rings first, then rx rings */
  readonly txRings: number;
  readonly rxRings: number;

  constructor(memory: ArrayBuffer, iface: number) {
    const dv = new DataView(memory);
    this.txRings = dv.getUint32(REGION.tx_rings, true);
    this.rxRings = dv.getUint32(REGION.rx_rings, true);
    const csb = Number(dv.getBigUint64(REGION.csb_ofs, true));
    const per = this.txRings + this.rxRings;
    const end = csb + (iface + 1) * per * CSB_ENTRY_SIZE;
    if (csb % 4 !== 0 || end > memory.byteLength) throw new RangeError('CSB lies outside the region');
    this.i32 = new Int32Array(memory, 0, memory.byteLength >>> 2);
    this.base = (csb + iface * per * CSB_ENTRY_SIZE) >>> 2;
  }

  private atok(k: number, field: number): number {
    return this.base + ((k * CSB_ENTRY_SIZE + field) >>> 2);
  }
  private ktoa(k: number, field: number): number {
    return this.base + ((k * CSB_ENTRY_SIZE + CSB_ATOK_SIZE + field) >>> 2);
  }

  /** Index k of tx ring r. */
  txKey(r: number): number {
    return r;
  }
  /** Index k of rx ring r. */
  rxKey(r: number): number {
    return this.txRings + r;
  }

  publish(k: number, head: number, cur: number): void {
    Atomics.store(this.i32, this.atok(k, CSB_ATOK.cur), cur);
    Atomics.store(this.i32, this.atok(k, CSB_ATOK.head), head);
  }
  hwtail(k: number): number {
    return Atomics.load(this.i32, this.ktoa(k, CSB_KTOA.hwtail)) >>> 0;
  }
  hwcur(k: number): number {
    return Atomics.load(this.i32, this.ktoa(k, CSB_KTOA.hwcur)) >>> 0;
  }
  kernNeedKick(k: number): boolean {
    return Atomics.load(this.i32, this.ktoa(k, CSB_KTOA.kern_need_kick)) !== 0;
  }
  setApplNeedKick(k: number, on: boolean): void {
    Atomics.store(this.i32, this.atok(k, CSB_ATOK.appl_need_kick), on ? 1 : 0);
  }

  /**
   * Ask the other side for a kick when frames arrive on these rx rings
   * (`rx`) or room frees up on these tx rings (`tx`), before sleeping.
   */
  armKicks(rxRings: readonly number[], txRings: readonly number[], rx: boolean, tx: boolean): void {
    if (rx) for (const r of rxRings) this.setApplNeedKick(this.rxKey(r), true);
    if (tx) for (const r of txRings) this.setApplNeedKick(this.txKey(r), true);
  }

  /** Withdraw every kick request of these rings (after waking up). */
  clearKicks(rxRings: readonly number[], txRings: readonly number[]): void {
    for (const r of rxRings) this.setApplNeedKick(this.rxKey(r), false);
    for (const r of txRings) this.setApplNeedKick(this.txKey(r), false);
  }
}
