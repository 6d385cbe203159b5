/**
 * Loads the library's native addon (netmap.node: prebuilt, or built by
 * node-gyp on install) and describes its surface. Only this module touches
 * the raw binding.
 */
import { loadAddon } from './native-loader.js';

/** Layout numbers of a region, as the addon computed them. */
export interface NativeLayout {
  size: number;
  numBufs: number;
  bufPoolOffset: number;
  csbOffset: number;
  nifpOffsets: number[];
}

/** Parameters of a userspace region. */
export interface RegionParams {
  nIfs?: number;
  txRings?: number;
  rxRings?: number;
  txSlots?: number;
  rxSlots?: number;
  bufSize?: number;
  extraBufs?: number;
}

/** A uv_poll watcher on the Node loop. events: 1 readable, 2 writable. */
export interface NativeFdWatcher {
  start(events: number): void;
  stop(): void;
  /** do not keep the process alive for this watcher */
  unref(): void;
  close(): void;
}

/** The native pipe end (cpp/core/pipe.h, bound in cpp/napi/pipe.cc). */
export interface NativePipe {
  readonly memory: ArrayBuffer | null;
  readonly doorbellFd: number;
  readonly nifpOffset: number;
  readonly created: boolean;
  txsync(ring: number): number;
  rxsync(ring: number): number;
  peerState(): number;
  stats(): { txFrames: number; invalidSlots: number; peerErrors: number };
  close(): void;
}

/** The pipe end class. */
export interface NativePipeClass {
  new (path: string, end: number, params: { rings?: number; slots?: number; bufSize?: number; extraBufs?: number }, name: string): NativePipe;
  /** a pipe region file's name before its escaped pipe name (PIPE_FILE_PREFIX) */
  readonly filePrefix: string;
  /** {@link NativePipe.peerState}'s values: never came, open, died without closing, came and closed */
  readonly peerStates: { readonly never: number; readonly open: number; readonly dead: number; readonly left: number };
}

/** A port as the native switch core created it. */
export interface NativeSwitchPort {
  id: number;
  fd: number;
  switchBell: number;
  clientBell: number;
  size: number;
  nifpOffset: number;
  /** the geometry the core laid out (defaults applied), as its region header says */
  txRings: number;
  rxRings: number;
  txSlots: number;
  rxSlots: number;
  bufSize: number;
}

/** The switch datapath (cpp/core/switch_core.h, bound in cpp/napi/switch_core.cc). */
export interface NativeSwitchCore {
  /** the batch as the lookup sees it: arrays over the core's own memory */
  readonly headers: Uint8Array;
  readonly offsets: Uint32Array;
  readonly lens: Uint16Array;
  readonly sources: Uint8Array;
  readonly dests: Int16Array;
  /** bytes of each frame snapshotted for the lookup */
  readonly headerBytes: number;
  /** the epoll set of every switch doorbell */
  readonly waitFd: number;
  addPort(
    params: { txRings?: number; rxRings?: number; txSlots?: number; rxSlots?: number; bufSize?: number; extraBufs?: number },
    name: string,
    lossless: boolean,
    /** a region prepared off the loop by createRegionFdAsync; the core owns it from here */
    regionFd?: number,
  ): NativeSwitchPort;
  /** returns the port's final counters */
  removePort(id: number): Record<string, number>;
  /** a fresh region and doorbells for a port whose client left (its counters stay); what addPort returns */
  renewPort(id: number, name: string): NativeSwitchPort;
  setLossless(id: number, on: boolean): void;
  /** whether a client holds the port (lossless senders wait only for those) */
  setAttached(id: number, on: boolean): void;
  /** doorbells of further registrations sharing the port (kicked with the first) */
  setExtraBells(id: number, fds: number[]): void;
  /**
   * One round over every port: collect, call `lookup` (only for a non-empty
   * batch), deliver. Frames consumed; -(n+1) when lossless backpressure holds some.
   */
  round(lookup: (headers: Uint8Array, offsets: Uint32Array, lens: Uint16Array, count: number, sources: Uint8Array, dests: Int16Array) => void): number;
  /** a round decided by the C++ learning bridge (the benchmarks' baseline); same return as round() */
  roundNative(): number;
  /** the C++ learning bridge forgets a port */
  nativePortRemoved(id: number): void;
  /** ask every client for kicks; false (nothing armed) when frames arrived meanwhile */
  armAll(rxToo: boolean): boolean;
  /** withdraw every kick request and drain the doorbells that rang */
  disarmAll(): void;
  /** block this thread until a doorbell or notify() rings (datapath threads only): how many rang, 0 on timeout, -1 on error */
  wait(timeoutMs: number): number;
  /** wake wait() */
  notify(): void;
  /** a token another thread passes to SwitchCore.attach() to share this core */
  share(): number;
  /** withdraw a share() token nobody attached yet; true if there was one (no other thread holds the core) */
  unshare(): boolean;
  /** this thread is done with the core: its batch arrays become detached (empty) views */
  detach(): void;
  /** release every port, the batch arrays and the descriptors now; other threads must have detached */
  shutdown(): void;
  /** a receiver blocking lossless senders beyond the stall bound: drop its copies (dropStalled) until it has released 64 slots (the hold quantum) */
  setStalled(id: number, on: boolean): void;
  /** the stall rule halved port `id`'s stall bound (stall-watch.ts): count it in the port's holdShortened */
  countHoldShortened(id: number): void;
  /** bounded backpressure: how long (µs, 0..1e6) port `id`'s full rx ring may hold senders back without releasing 64 slots (SWITCH_HOLD_QUANTUM); 0: drop at once */
  setHoldUs(id: number, holdUs: number): void;
  /** the longest a flood waits for any one full receiver, µs (the switch's bound) */
  setFloodHoldUs(holdUs: number): void;
  /** make port `id` a monitor of port `watched` (rx: what it receives, ring 0; tx: what it sends, the next ring) */
  setMonitor(id: number, watched: number, rx: boolean, tx: boolean): void;
  /** the port whose full rx ring stopped a lossless sender in the last round, or -1 */
  blockedOn(): number;
  /** after the first round following a wakeup: did it find work (doorbell backoff for clients that ring for nothing) */
  noteWakeup(useful: boolean): void;
  /** before sleeping: re-listen to doorbells whose backoff is over; ms until the next is due, -1 if none */
  backoffDue(): number;
  /** ms (rounded up) until the hold bound of a ring held back in the last round runs out, -1 if none: the longest a blocked switch may sleep */
  heldDueMs(): number;
  /** an in-line round hook streams and will ask for a timed sleep: no busy poll before it */
  hooksBatching(): boolean;
  /** switch-wide counters kept by the core */
  switchCounters(): { rounds: number; wakeups: number; spuriousWakeups: number; doorbellBackoffs: number; heldTimeouts: number; heldRechecks: number; waitFdsQuieted: number };
  stats(id: number): Record<string, number>;
  /** frames waiting in a port's rings: published on tx and not taken, delivered on rx and not released */
  occupancy(id: number): { txQueued: number; rxQueued: number };
  /** the virtio-net header length a port's frames carry (0, 10 or 12); the switch converts between ports */
  setVnetHdrLen(id: number, len: number): void;
  vnetHdrLen(id: number): number;
}

/** The switch core's constructor and statics. */
export interface NativeSwitchCoreClass {
  new (opts: { batch?: number; headerBytes?: number }): NativeSwitchCore;
  attach(token: number): NativeSwitchCore;
  /** sched_yield() */
  yieldCpu(): void;
  readonly counterNames: readonly string[];
  readonly maxBatch: number;
  readonly defaultHeaderBytes: number;
  readonly maxHeaderBytes: number;
  /** slots a full receiver must release per hold bound to keep its senders waiting (SWITCH_HOLD_QUANTUM) */
  readonly holdQuantum: number;
  /** a hold (or a lossless stall wait) whose quantum took more than 1/holdSlowDiv of the configured bound halves the next bound (SWITCH_HOLD_SLOW_DIV) */
  readonly holdSlowDiv: number;
  /** halvings down to a bound of 0: drop at once (SWITCH_HOLD_LEVELS) */
  readonly holdLevels: number;
}

/** Message received on a unix socket. */
export type RecvResult = { eof: true } | { eof?: undefined; data: Buffer; fds: number[]; truncated: boolean; fdsTruncated: boolean };

/** ABI numbers exported from the compiled C++ structs. */
export interface NativeAbi {
  constants: Record<string, number>;
  sizes: Record<string, number>;
  offsets: Record<string, Record<string, number>>;
}

/** The addon's functions used across the library. */
export interface NativeAddon {
  abi: NativeAbi;
  eventfd(): number;
  kick(fd: number): void;
  /** sched_yield(): a polling loop that found nothing lets other runnable threads have the CPU */
  schedYield(): void;
  /** the calling thread's EEVDF slice request, µs (0: the kernel's default), nice kept; false where the kernel refused (see sched.ts) */
  setSchedSlice(us: number): boolean;
  /** the calling thread's name (comm, cut to 15 bytes); false where the kernel refused */
  setThreadName(name: string): boolean;
  drain(fd: number): number;
  /** block this thread in poll(2) on fd (events 1 readable, 2 writable) up to timeoutMs (<0: forever); what fired (1, 2, 4 hang-up), 0 on timeout */
  waitFd(fd: number, events: number, timeoutMs: number): number;
  close(fd: number): void;
  fdSize(fd: number): number;
  mapFd(fd: number, size: number): ArrayBuffer;
  unixListen(path: string): number;
  unixConnect(path: string): number;
  /** the new fd; -1: nothing pending; -2: out of fds (a pending peer was sent `refusal` and closed) */
  accept(fd: number, refusal?: Uint8Array): number;
  /** connections accepted-and-closed at EMFILE/ENFILE */
  acceptShed(): number;
  /** exceptions thrown by FdWatcher callbacks (counted and logged, never fatal) */
  callbackErrors(): number;
  /** release a mapping now (detaches the ArrayBuffer); false if already released */
  unmap(memory: ArrayBuffer): boolean;
  /** mappings not released yet */
  liveMappings(): { count: number; bytes: number };
  /** a sealed memfd holding a fresh port region, written on a worker thread */
  createRegionFdAsync(p: RegionParams, name: string): Promise<number>;
  sendMsg(fd: number, data: Uint8Array, fds?: number[]): boolean;
  recvMsg(fd: number, maxLen: number): RecvResult | null;
  peerCred(fd: number): { pid: number; uid: number; gid: number };
  FdWatcher: new (fd: number, cb: (status: number, events: number) => void) => NativeFdWatcher;
  computeLayout(p: RegionParams): NativeLayout;
  createRegion(p: RegionParams, names: string[]): { fd: number; memory: ArrayBuffer; layout: NativeLayout };
  validateRegion(memory: ArrayBuffer): NativeLayout;
  SwitchCore: NativeSwitchCoreClass;
  Pipe: NativePipeClass;
}

/**
 * The raw binding; other modules narrow it to the parts they use.
 * NETMAP_ADDON_PATH loads a specific build (the sanitizer run in CI uses it).
 */
export const nativeRaw: unknown = loadAddon('netmap', 'NETMAP_ADDON_PATH');
/** The typed binding. */
export const native = nativeRaw as NativeAddon;
