/**
 * The userspace vale backend, client side: `open('vale0:01')` registers with
 * the vale-ts switch over its control socket, receives the port's region and
 * two eventfds, and syncs through the CSB in shared memory, in JS. A syscall
 * happens only to kick the switch, and only when it asked for a kick.
 */
import { native, type NativeFdWatcher } from '../netmap/addon.js';
import { NIF, RING } from '../netmap/abi.js';
import { oneNicRings, type ParsedPortName } from '../netmap/name.js';
import type { OpenOptions } from '../netmap/open.js';
import type { Backend } from './backend.js';
import { CsbDoorbell, CsbView } from './csb.js';
import { ControlConnection } from '../control/client.js';
import { decodeReply, defaultSocketPath, PROTOCOL_VERSION, type RegisterRequest } from '../control/protocol.js';
import { SwitchGoneError } from '../netmap/errors.js';

/** Options of a vale port opened through vale-ts: those of {@link OpenOptions} that reach the switch. */
export type UserOpenOptions = Pick<OpenOptions, 'socket' | 'rings' | 'slots' | 'bufSize' | 'extraBufs' | 'lossless' | 'vnetHdrLen'>;

interface RingWords {
  head: number;
  cur: number;
  tail: number;
  n: number;
}

/** A vale port served by vale-ts. */
export class ValeClientBackend extends CsbDoorbell implements Backend {
  readonly kind = 'vale-ts' as const;
  readonly syncsAllRings = false;
  readonly memory: ArrayBuffer;
  readonly nifpOffset: number;
  readonly txRingIds: readonly number[];
  readonly rxRingIds: readonly number[];
  readonly waitFd: number;
  /** Bridge and port index the switch gave this port. */
  readonly bridgeIndex: number;
  readonly portIndex: number;
  private readonly conn: ControlConnection;
  private readonly switchBell: number;
  private readonly memfd: number;
  protected readonly csb: CsbView;
  private readonly u32: Uint32Array;
  private readonly tx: RingWords[] = [];
  private readonly rx: RingWords[] = [];
  private readonly hupWatch: NativeFdWatcher;
  private hung = false;
  /** the switch's reason when it hung up because a port went, not itself (a monitor's watched port) */
  private portGone: string | undefined;
  private closed = false;
  private readonly spec: string;
  /**
   * After a hang-up, let txsync/rxsync return without moving anything
   * instead of throwing {@link SwitchGoneError}: set by a Port that
   * reconnects, which swaps in a new backend and counts what was lost.
   */
  holdOnHangup = false;
  /** Called once when the switch goes away (a reconnecting Port starts there). */
  onHangup: (() => void) | undefined;

  private constructor(conn: ControlConnection, fds: number[], geo: { memsize: number; nifpOffset: number; bridgeIndex: number; portIndex: number }, p: ParsedPortName) {
    super();
    this.conn = conn;
    this.spec = p.spec;
    const [memfd, clientBell, switchBell] = fds as [number, number, number];
    this.memfd = memfd;
    this.waitFd = clientBell;
    this.switchBell = switchBell;
    this.bridgeIndex = geo.bridgeIndex;
    this.portIndex = geo.portIndex;
    const size = native.fdSize(memfd);
    if (size < geo.memsize) throw new Error(`vale-ts sent a region of ${size} bytes, smaller than the ${geo.memsize} it announced`);
    this.memory = native.mapFd(memfd, geo.memsize);
    const layout = native.validateRegion(this.memory);
    this.nifpOffset = layout.nifpOffsets[0]!;
    this.csb = new CsbView(this.memory, 0);
    this.u32 = new Uint32Array(this.memory, 0, this.memory.byteLength >>> 2);
    const dv = new DataView(this.memory);
    const nif = this.nifpOffset;
    const nTx = dv.getUint32(nif + NIF.ni_tx_rings, true);
    const nRx = dv.getUint32(nif + NIF.ni_rx_rings, true);
    const words = (i: number): RingWords => {
      const off = nif + Number(dv.getBigInt64(nif + NIF.ring_ofs + 8 * i, true));
      return { head: (off + RING.head) >>> 2, cur: (off + RING.cur) >>> 2, tail: (off + RING.tail) >>> 2, n: dv.getUint32(off + RING.num_slots, true) };
    };
    for (let i = 0; i < nTx; i++) this.tx.push(words(i));
    for (let i = 0; i < nRx; i++) this.rx.push(words(nTx + i));
    const all = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
    if (p.mode === 'one_nic') {
      const one = oneNicRings(p.ringId, nTx, nRx);
      if (!one) throw new RangeError(`${p.spec}: ring ${p.ringId} does not exist (the port has ${nTx} tx / ${nRx} rx rings)`);
      this.txRingIds = [one.tx];
      this.rxRingIds = [one.rx];
    } else {
      this.txRingIds = all(nTx);
      this.rxRingIds = all(nRx);
    }
    // the switch going away shows as EOF (or a 'bye') on the control socket
    this.hupWatch = new native.FdWatcher(conn.fd, () => this.onControl());
    this.hupWatch.unref();
    this.hupWatch.start(1);
  }

  /** Register `p` with vale-ts and map its region. */
  static async open(p: ParsedPortName, opts: UserOpenOptions = {}): Promise<ValeClientBackend> {
    if (p.mode !== 'all_nic' && p.mode !== 'one_nic') {
      throw new Error(`user backend: ${p.spec}: vale ports have no host rings (^, *, ^N): open ${p.nrName} or ${p.nrName}-N`);
    }
    const socketPath = defaultSocketPath(opts.socket);
    const conn = ControlConnection.connect(socketPath);
    try {
      const c = p.conf;
      const conf: RegisterRequest['conf'] = {};
      const rings = opts.rings ?? c.rings;
      const slots = opts.slots ?? c.slots;
      const txRings = c.txRings ?? rings;
      const rxRings = c.rxRings ?? rings;
      const txSlots = c.txSlots ?? slots;
      const rxSlots = c.rxSlots ?? slots;
      if (txRings !== undefined) conf.txRings = txRings;
      if (rxRings !== undefined) conf.rxRings = rxRings;
      if (txSlots !== undefined) conf.txSlots = txSlots;
      if (rxSlots !== undefined) conf.rxSlots = rxSlots;
      const req: RegisterRequest = { v: PROTOCOL_VERSION, op: 'register', name: p.nrName, nrMode: p.nrMode, ringId: p.ringId, flags: p.flags, conf };
      if (opts.bufSize !== undefined) req.bufSize = opts.bufSize;
      if (opts.extraBufs !== undefined) req.extraBufs = opts.extraBufs;
      if (opts.lossless !== undefined) req.lossless = opts.lossless;
      if (opts.vnetHdrLen !== undefined) req.vnetHdrLen = opts.vnetHdrLen;
      const { reply, fds } = await conn.request(req);
      if (!reply.ok) {
        for (const f of fds) native.close(f);
        const err = new Error(`user backend: vale-ts refused ${p.spec}: ${reply.error}`) as Error & { code: string };
        err.code = reply.code;
        throw err;
      }
      if (reply.op !== 'register' || fds.length !== 3) {
        for (const f of fds) native.close(f);
        throw new Error(`user backend: malformed register reply from vale-ts (${fds.length} fds)`);
      }
      try {
        return new ValeClientBackend(conn, fds, reply, p);
      } catch (e) {
        for (const f of fds) native.close(f);
        throw e;
      }
    } catch (e) {
      conn.close();
      throw e;
    }
  }

  private onControl(): void {
    const m = native.recvMsg(this.conn.fd, 65536);
    if (m === null) return;
    // EOF, 'bye', or anything unexpected: the switch is gone for this port
    for (const f of m.eof ? [] : m.fds) native.close(f);
    if (!m.eof) this.portGone = goneOf(m.data);
    this.hung = true;
    this.hupWatch.stop();
    native.kick(this.waitFd); // wake a sleeping poll so it sees the hang-up
    this.onHangup?.();
  }

  /**
   * Frames queued on the bound tx rings that the switch has not taken: from
   * the switch's last published tail (still readable in the region after it
   * died) up to the application's head. Meant for after a hang-up.
   */
  untakenTxFrames(): number {
    const u = this.u32;
    let n = 0;
    for (const id of this.txRingIds) {
      const w = this.tx[id]!;
      const t = this.csb.hwtail(this.csb.txKey(id));
      const h = u[w.head]!;
      if (t >= w.n || h >= w.n) continue; // nothing sane to count from
      n += (h - t - 1 + 2 * w.n) % w.n;
    }
    return n;
  }

  private gone(): SwitchGoneError {
    const lost = this.untakenTxFrames();
    if (this.portGone !== undefined)
      return new SwitchGoneError(`${this.spec}: hung up by the vale-ts switch at ${this.conn.socketPath}: ${this.portGone}; close the port`, lost);
    return new SwitchGoneError(
      `${this.spec}: the vale-ts switch at ${this.conn.socketPath} went away` +
        (lost > 0 ? ` with ${lost} frame${lost === 1 ? '' : 's'} queued on tx that it never took` : '') +
        `; close the port (open with { reconnect: true } to follow a restarted switch)`,
      lost,
    );
  }

  private syncWords(w: RingWords, key: number, tx: boolean): void {
    const u = this.u32;
    const head = u[w.head]!;
    this.csb.publish(key, head, u[w.cur]!);
    // as netmap's guest txsync: kick a sleeping switch only when there is
    // something for it (frames it has not taken), so an idle client that
    // keeps polling does not keep waking it
    if (this.csb.kernNeedKick(key) && (!tx || head !== this.csb.hwcur(key))) native.kick(this.switchBell);
    const t = this.csb.hwtail(key);
    if (t < w.n) u[w.tail] = t;
  }

  txsync(ring: number): void {
    const w = this.tx[ring];
    if (!w) throw new RangeError(`tx ring ${ring} does not exist`);
    if (this.hung) {
      if (this.holdOnHangup) return;
      throw this.gone();
    }
    this.syncWords(w, this.csb.txKey(ring), true);
  }

  rxsync(ring: number): void {
    const w = this.rx[ring];
    if (!w) throw new RangeError(`rx ring ${ring} does not exist`);
    if (this.hung) {
      if (this.holdOnHangup) return;
      throw this.gone();
    }
    this.syncWords(w, this.csb.rxKey(ring), false);
  }

  hungUp(): boolean {
    return this.hung;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.hupWatch.close();
    this.conn.close(); // the switch sees EOF and removes the port
    native.close(this.memfd);
    native.close(this.waitFd);
    native.close(this.switchBell);
  }
}

/** The reason of a 'bye' that names a port that went (not the switch), else undefined. */
function goneOf(data: Uint8Array): string | undefined {
  try {
    const m = decodeReply(data);
    return 'op' in m && m.op === 'bye' && typeof m.gone === 'string' && typeof m.reason === 'string' ? m.reason : undefined;
  } catch {
    return undefined; // a malformed message: the switch is gone all the same
  }
}
