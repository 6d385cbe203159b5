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

/** A port as the native switch core created it. */
export interface NativeSwitchPort {
  id: number;
  fd: number;
  memory: ArrayBuffer;
  switchBell: number;
  clientBell: number;
  size: number;
  nifpOffset: number;
}

/** The switch datapath (cpp/napi/switch_core.cc). */
export interface NativeSwitchCore {
  addPort(
    params: { txRings?: number; rxRings?: number; txSlots?: number; rxSlots?: number; bufSize?: number; extraBufs?: number },
    name: string,
    lossless: boolean,
    /** a region prepared off the loop by createRegionFdAsync; the core owns it from here */
    regionFd?: number,
  ): NativeSwitchPort;
  /** returns the port's final counters */
  removePort(id: number): Record<string, number>;
  setLossless(id: number, on: boolean): void;
  /** whether a client holds the port (lossless senders wait only for those) */
  setAttached(id: number, on: boolean): void;
  /** doorbells of further registrations sharing the port (kicked with the first) */
  setExtraBells(id: number, fds: number[]): void;
  collect(id: number, ring: number, max: number): number;
  /** frames consumed; -(n+1) when lossless backpressure stopped after n */
  forward(): number;
  pending(id: number, ring: number): number;
  arm(id: number, on: boolean, rxToo: boolean): void;
  flushRx(): void;
  drainBell(id: number): void;
  /** a receiver blocking lossless senders beyond the stall bound: drop its copies (dropStalled) until it drains */
  setStalled(id: number, on: boolean): void;
  /** the port whose full rx ring stopped the last forward(), or -1 */
  blockedOn(): number;
  stats(id: number): Record<string, number>;
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
  drain(fd: number): number;
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
  SwitchCore: new (offsets: Uint32Array, lens: Uint16Array, dests: Int16Array) => NativeSwitchCore;
  Pipe: new (path: string, end: number, params: { rings?: number; slots?: number; bufSize?: number; extraBufs?: number }, name: string) => NativePipe;
}

/**
 * The raw binding; other modules narrow it to the parts they use.
 * NETMAP_ADDON_PATH loads a specific build (the sanitizer run in CI uses it).
 */
export const nativeRaw: unknown = loadAddon('netmap', 'NETMAP_ADDON_PATH');
/** The typed binding. */
export const native = nativeRaw as NativeAddon;
