/**
 * A Linux interface as a vale-ts port (`vale-ctl-ts -a vale0:IFNAME`): the
 * native AF_PACKET driver (cpp/core/afpacket_driver.h) reads the interface
 * through a TPACKET_V2 ring (V3 on request) and sends with sendmmsg + PACKET_QDISC_BYPASS,
 * in a thread of its own (the `af-packet` kind) or in the switch's rounds
 * (`linux-if`'s default), as the client of an ordinary persistent port.
 *
 * Spec: `{ kind: 'af-packet', ifname: 'veth1', vnetHdr?: boolean }`.
 * `vnetHdr` (default true) asks the kernel for a virtio-net header per frame,
 * so GRO/TSO super-frames are segmented and partial checksums completed
 * before they reach the switch (counted as gso_frames / gso_segments /
 * csum_completed).
 *
 * `{ kind: 'linux-if', ifname, backend?: 'auto' | 'afxdp' | 'packet', inline?: boolean }` is
 * what `vale-ctl-ts -a` makes: AF_XDP (cpp/core/afxdp_driver.h) in zero-copy
 * mode where the addon, the kernel and the interface's driver allow it, else
 * the AF_PACKET driver ('auto'); or one of them ('afxdp' takes copy mode
 * where zero-copy is not possible), and an error when it is not possible. Served by AF_PACKET, the port declares a 10-byte
 * virtio-net header ({@link Switch.setVnetHdrLen}) and the kernel's header
 * crosses the switch: GRO/TSO frames reach header-aware ports (TAP with
 * vnet_hdr, vhost-user, another AF_PACKET interface) whole (`vnetPassed`),
 * and are segmented by the switch only for ports without a header
 * (`vnetSegmented`). AF_XDP carries no per-frame offload metadata, so an
 * AF_XDP port declares no header.
 *
 * `inline` (default: true, unless vale-ts's environment sets
 * `VALE_TS_LINUX_IF_INLINE=0`; `vale-ctl-ts -a --inline on|off` per port):
 * the port's datapath (AF_XDP or AF_PACKET) runs in the switch's own rounds
 * (cpp/core/switch_core.h `RoundHook`, as vhost-user's `inline`) instead of a
 * thread of its own: no doorbell, wakeup or context switch between the
 * driver and the switch per batch, and about 45% less of vale-ts's CPU per GB
 * of TCP (bench/RESULTS.md, session 12).
 */
import { nativeRaw } from '../netmap/addon.js';
import { inlineFromEnv, registerPortKind, type DriverSpec, type PortDriver } from './driver.js';
import type { Switch } from '../vale/switch.js';

/** What the AF_PACKET driver reports about itself. */
export interface AfPacketInfo {
  ifname: string;
  vnetHdr: boolean;
  /** frames cross the switch with their virtio-net header (the port declared 10 bytes) */
  passHdr: boolean;
  qdiscBypass: boolean;
  /** the receive ring's layout: TPACKET_V2 (a wakeup per frame) or TPACKET_V3 (blocks, retired when full or after 1 ms) */
  rxVersion: 2 | 3;
  /** behind the TPACKET_V2 ring, a TPACKET_V3 one that takes what it has no room for (a PACKET_FANOUT group with rollover) */
  overflowV3: boolean;
  /** the interface was down and the driver brought it up (it goes down again on close) */
  raisedUp: boolean;
  /** the interface was promiscuous already before the attach */
  wasPromisc: boolean;
  mtu: number;
  /** the datapath runs in the switch's rounds, not a thread of its own */
  inline: boolean;
  /** frames without GSO of up to 214 bytes are sent through a PACKET_TX_RING (one send() per batch), the rest with sendmmsg */
  txRing: boolean;
}

interface NativeAfPacketPort {
  counters(): Record<string, number>;
  info(): AfPacketInfo;
  close(): void;
}

type AfPacketCtor = new (regionFd: number, clientBell: number, switchBell: number, ifname: string, opts: { vnetHdr?: boolean; passHdr?: boolean; rxVersion?: 2 | 3; overflowV3?: boolean; switchPort?: number; txRing?: boolean }, core?: object) => NativeAfPacketPort;

const AfPacketPort = (nativeRaw as { AfPacketPort: AfPacketCtor }).AfPacketPort;

/** The port kind's name in driver specs. */
export const AF_PACKET_KIND = 'af-packet';

/**
 * Linux accepts any name of 1..15 bytes without '/', ':' or whitespace;
 * vale names add '^' (the host port) and '@'/'{'/'}' meanings, kept out too.
 */
export function checkIfname(name: unknown): string {
  if (typeof name !== 'string' || !/^[^\s/:^@{}]{1,15}$/.test(name) || name === '.' || name === '..') {
    throw Object.assign(new Error(`interface name ${JSON.stringify(name)} is not a Linux interface name (1..15 characters, no '/', ':' or spaces)`), { code: 'EINVAL' });
  }
  return name;
}

/**
 * The counters/close pair both native drivers here share: counters read
 * live, and after close() the last values read, so `--stats` still shows
 * them.
 */
class NativeCounters {
  private closed = false;
  private last: Record<string, number> = {};
  constructor(private readonly nat: { counters(): Record<string, number>; close(): void }) {}
  counters(): Record<string, number> {
    if (!this.closed) this.last = this.nat.counters();
    return { ...this.last };
  }
  close(): void {
    if (!this.closed) {
      this.last = this.nat.counters();
      this.closed = true;
      this.nat.close();
    }
  }
}

/** What the AF_XDP driver reports about itself. */
export interface AfXdpInfo {
  ifname: string;
  /** bound XDP_ZEROCOPY (the NIC fills the UMEM) rather than XDP_COPY */
  zeroCopy: boolean;
  /** XDP sockets: one per receive queue */
  queues: number;
  raisedUp: boolean;
  wasPromisc: boolean;
  mtu: number;
  /** the datapath runs in the switch's rounds, not a thread of its own */
  inline: boolean;
}

interface NativeAfXdpPort {
  counters(): Record<string, number>;
  info(): AfXdpInfo;
  close(): void;
}
type AfXdpCtor = new (regionFd: number, clientBell: number, switchBell: number, ifname: string, opts: { mode?: 'auto' | 'zerocopy' | 'copy' }, core?: object) => NativeAfXdpPort;
const nativeLinux = nativeRaw as { AfXdpPort: AfXdpCtor; afxdpBuiltIn: boolean };

/** True when the addon was built with libxdp/libbpf (AF_XDP possible). */
export const afxdpBuiltIn: boolean = nativeLinux.afxdpBuiltIn === true;

/** The kind `vale-ctl-ts -a` makes: AF_XDP or AF_PACKET, as `backend` says. */
export const LINUX_IF_KIND = 'linux-if';

/** How an attached interface is served, as listings and `--stats` name it. */
export type LinuxIfBackend = 'afxdp zero-copy' | 'afxdp copy' | 'tpacket-v2' | 'tpacket-v2+v3' | 'tpacket-v3';

class AfXdpDriver implements PortDriver {
  readonly kind = LINUX_IF_KIND;
  readonly backend: LinuxIfBackend;
  private readonly info: AfXdpInfo;
  private readonly c: NativeCounters;
  constructor(nat: NativeAfXdpPort) {
    this.info = nat.info();
    this.c = new NativeCounters(nat);
    this.backend = this.info.zeroCopy ? 'afxdp zero-copy' : 'afxdp copy';
  }
  describe(): string {
    const i = this.info;
    return `${this.backend} ${i.ifname} (promisc, ${i.queues} queue${i.queues === 1 ? '' : 's'}, native XDP${i.inline ? ', in-line' : ''})`;
  }
  counters(): Record<string, number> {
    return this.c.counters();
  }
  close(): Promise<void> {
    this.c.close();
    return Promise.resolve();
  }
}

class AfPacketDriver implements PortDriver {
  readonly backend: LinuxIfBackend;
  constructor(
    nat: NativeAfPacketPort,
    readonly kind: string = AF_PACKET_KIND,
  ) {
    this.info = nat.info();
    this.c = new NativeCounters(nat);
    this.backend = this.info.rxVersion === 3 ? 'tpacket-v3' : this.info.overflowV3 ? 'tpacket-v2+v3' : 'tpacket-v2';
  }
  private readonly info: AfPacketInfo;
  private readonly c: NativeCounters;

  describe(): string {
    const i = this.info;
    const flags = ['promisc', i.vnetHdr ? (i.passHdr ? 'vnet_hdr passed' : 'vnet_hdr') : '', i.qdiscBypass ? 'qdisc bypass' : '', i.inline ? 'in-line' : '', i.txRing ? 'tx ring' : ''].filter(Boolean).join(', ');
    return `${this.backend} ${i.ifname} (${flags})`;
  }

  counters(): Record<string, number> {
    return this.c.counters();
  }

  close(): Promise<void> {
    this.c.close();
    return Promise.resolve();
  }
}

/**
 * The receive ring's TPACKET version for attached interfaces: 2 (the
 * default: the kernel wakes the driver per frame, so a TCP ACK crosses at
 * once) or 3 when the environment of vale-ts sets `VALE_TS_TPACKET_RX=3`
 * (blocks handed over when full or after 1 ms: fewer wakeups for a flood of
 * small frames, up to 1 ms more per hop for sparse ones), or `2+3`: the V2
 * ring with a V3 ring behind it for what the V2 ring has no room for (the
 * kernel's fanout rollover). bench/linux-if compares them.
 */
function tpacketRx(): { rxVersion: 2 | 3; overflowV3: boolean } {
  const v = process.env['VALE_TS_TPACKET_RX'];
  if (v === undefined || v === '' || v === '2') return { rxVersion: 2, overflowV3: false };
  if (v === '3') return { rxVersion: 3, overflowV3: false };
  if (v === '2+3') return { rxVersion: 2, overflowV3: true };
  throw Object.assign(new Error(`VALE_TS_TPACKET_RX='${v}': the receive ring is TPACKET_V2 ('2', the default), TPACKET_V3 ('3') or V2 with a V3 overflow ring ('2+3')`), { code: 'EINVAL' });
}

registerPortKind(AF_PACKET_KIND, ({ port, spec }: { port: { fds: readonly [number, number, number] }; spec: DriverSpec }) => {
  const ifname = checkIfname(spec['ifname']);
  const v = spec['vnetHdr'];
  if (v !== undefined && typeof v !== 'boolean') throw Object.assign(new Error("setting 'vnetHdr' must be true or false"), { code: 'EINVAL' });
  const nat = new AfPacketPort(port.fds[0], port.fds[1], port.fds[2], ifname, { vnetHdr: v ?? true });
  return Promise.resolve(new AfPacketDriver(nat));
});

/**
 * VALE_TS_LINUX_IF_DIRECT in vale-ts's environment: '1' or unset, an in-line
 * AF_PACKET port takes the switch's frames straight from the senders'
 * buffers; '0', always through its rx ring (one more copy; for comparisons).
 */
const directDefault = (): boolean =>
  inlineFromEnv('VALE_TS_LINUX_IF_DIRECT', true, "'1' (the default) sends an in-line AF_PACKET port's frames straight from the senders' buffers, '0' through the port's rx ring");

/**
 * VALE_TS_LINUX_IF_TX_RING in vale-ts's environment: '1' or unset, an in-line
 * AF_PACKET port sends its small frames (no GSO, up to 214 bytes) through a
 * PACKET_TX_RING, one send() per batch; '0', every frame with sendmmsg (for
 * comparisons).
 */
const txRingDefault = (): boolean =>
  inlineFromEnv('VALE_TS_LINUX_IF_TX_RING', true, "'1' (the default) sends an in-line AF_PACKET port's small frames through a PACKET_TX_RING, '0' every frame with sendmmsg");

/** `inline`'s default: VALE_TS_LINUX_IF_INLINE in vale-ts's environment ('1' or unset on, '0' off). */
const inlineDefault = (): boolean =>
  inlineFromEnv('VALE_TS_LINUX_IF_INLINE', true, "'1' (the default) runs interface ports in the switch's rounds, '0' in threads of their own");

registerPortKind(LINUX_IF_KIND, ({ sw, port, spec }: { sw: Switch; port: { index: number; fds: readonly [number, number, number] }; spec: DriverSpec }) => {
  const ifname = checkIfname(spec['ifname']);
  const backend = spec['backend'] ?? 'auto';
  if (backend !== 'auto' && backend !== 'afxdp' && backend !== 'packet') {
    throw Object.assign(new Error("setting 'backend' must be 'auto', 'afxdp' or 'packet'"), { code: 'EINVAL' });
  }
  const inl = spec['inline'] ?? inlineDefault();
  if (typeof inl !== 'boolean') throw Object.assign(new Error("setting 'inline' must be true or false"), { code: 'EINVAL' });
  const fds = port.fds;
  if (backend !== 'packet') {
    try {
      // auto takes AF_XDP only in zero-copy mode: in copy mode (veth, and
      // NICs whose driver has no XSK zero-copy) it copies as AF_PACKET does
      // and loses what AF_PACKET keeps, GSO/TSO frames whole and partial
      // checksums, so TCP through it ran at 0.13-0.30 of a Linux bridge
      // against AF_PACKET's 0.5-0.7, and 60 B frames no faster either
      // (bench/RESULTS.md, sessions 10-12). --backend afxdp asks for copy mode too.
      const mode = backend === 'auto' ? 'zerocopy' : 'auto';
      return Promise.resolve(new AfXdpDriver(new nativeLinux.AfXdpPort(fds[0], fds[1], fds[2], ifname, { mode }, inl ? sw.inlineDriverCore() : undefined)));
    } catch (e) {
      // no such interface: no other backend will find it either
      if (backend === 'afxdp' || (e as { code?: string }).code === 'ENXIO') throw e;
      // auto: say why AF_XDP was not used, then serve it with AF_PACKET
      console.error(`vale-ts: ${ifname}: AF_XDP zero-copy not possible (${(e as Error).message}); served by AF_PACKET, which carries GSO/TSO frames whole (--backend afxdp for AF_XDP in copy mode)`);
    }
  }
  // PACKET_VNET_HDR both ways: the kernel's header crosses the switch (GRO/TSO
  // frames whole to header-aware ports, finished by the switch for the rest).
  // Declared before the first frame moves; AF_XDP carries no such header.
  sw.setVnetHdrLen(port.index, 10);
  try {
    // in-line, the switch sends frames for this port straight from the
    // senders' buffers while its rx ring is empty (one copy fewer per frame)
    const direct = inl && directDefault() ? { switchPort: port.index } : {};
    const txRing = inl && txRingDefault() ? { txRing: true } : {};
    return Promise.resolve(new AfPacketDriver(new AfPacketPort(fds[0], fds[1], fds[2], ifname, { vnetHdr: true, passHdr: true, ...tpacketRx(), ...direct, ...txRing }, inl ? sw.inlineDriverCore() : undefined), LINUX_IF_KIND));
  } catch (e) {
    sw.setVnetHdrLen(port.index, 0);
    throw e;
  }
});

interface NativeTapTwinPort {
  counters(): Record<string, number>;
  close(): void;
}
type TapTwinCtor = new (regionFd: number, clientBell: number, switchBell: number, tapname: string) => NativeTapTwinPort;
const TapTwinPort = (nativeRaw as { TapTwinPort: TapTwinCtor }).TapTwinPort;

/** The host stack port's kind: a TAP twin named IFNAME^ (cpp/core/tap_twin.h). */
export const HOST_TAP_KIND = 'host-tap';

class TapTwinDriver implements PortDriver {
  readonly kind = HOST_TAP_KIND;
  private readonly c: NativeCounters;
  constructor(
    nat: NativeTapTwinPort,
    private readonly tapname: string,
  ) {
    this.c = new NativeCounters(nat);
  }
  describe(): string {
    return `host stack: tap ${this.tapname} (the stack's side of the interface)`;
  }
  counters(): Record<string, number> {
    return this.c.counters();
  }
  close(): Promise<void> {
    this.c.close();
    return Promise.resolve();
  }
}

registerPortKind(HOST_TAP_KIND, ({ port, spec }: { port: { fds: readonly [number, number, number] }; spec: DriverSpec }) => {
  const ifname = checkIfname(spec['ifname']);
  const tapname = `${ifname}^`;
  if (tapname.length > 15) throw Object.assign(new Error(`the host port's TAP would be ${tapname}, longer than Linux's 15 characters: use a shorter interface name`), { code: 'EINVAL' });
  return Promise.resolve(new TapTwinDriver(new TapTwinPort(port.fds[0], port.fds[1], port.fds[2], tapname), tapname));
});
