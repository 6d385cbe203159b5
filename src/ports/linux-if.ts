/**
 * A Linux interface as a vale-ts port (`vale-ctl-ts -a vale0:IFNAME`): the
 * native AF_PACKET driver (cpp/core/afpacket_driver.h) reads the interface
 * through a TPACKET_V3 ring and sends with sendmmsg + PACKET_QDISC_BYPASS,
 * in a thread of its own, as the client of an ordinary persistent port.
 *
 * Spec: `{ kind: 'af-packet', ifname: 'veth1', vnetHdr?: boolean }`.
 * `vnetHdr` (default true) asks the kernel for a virtio-net header per frame,
 * so GRO/TSO super-frames are segmented and partial checksums completed
 * before they reach the switch (counted as gso_frames / gso_segments /
 * csum_completed).
 */
import { nativeRaw } from '../netmap/addon.js';
import { registerPortKind, type DriverSpec, type PortDriver } from './driver.js';

/** What the AF_PACKET driver reports about itself. */
export interface AfPacketInfo {
  ifname: string;
  vnetHdr: boolean;
  qdiscBypass: boolean;
  /** the interface was down and the driver brought it up (it goes down again on close) */
  raisedUp: boolean;
  /** the interface was promiscuous already before the attach */
  wasPromisc: boolean;
  mtu: number;
}

interface NativeAfPacketPort {
  counters(): Record<string, number>;
  info(): AfPacketInfo;
  close(): void;
}

type AfPacketCtor = new (regionFd: number, clientBell: number, switchBell: number, ifname: string, opts: { vnetHdr?: boolean }) => NativeAfPacketPort;

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

class AfPacketDriver implements PortDriver {
  readonly kind = AF_PACKET_KIND;
  private readonly info: AfPacketInfo;
  private readonly c: NativeCounters;

  constructor(nat: NativeAfPacketPort) {
    this.info = nat.info();
    this.c = new NativeCounters(nat);
  }

  describe(): string {
    const i = this.info;
    const flags = ['promisc', i.vnetHdr ? 'vnet_hdr' : '', i.qdiscBypass ? 'qdisc bypass' : ''].filter(Boolean).join(', ');
    return `af_packet tpacket_v3 ${i.ifname} (${flags})`;
  }

  counters(): Record<string, number> {
    return this.c.counters();
  }

  close(): Promise<void> {
    this.c.close();
    return Promise.resolve();
  }
}

registerPortKind(AF_PACKET_KIND, ({ port, spec }: { port: { fds: readonly [number, number, number] }; spec: DriverSpec }) => {
  const ifname = checkIfname(spec['ifname']);
  const v = spec['vnetHdr'];
  if (v !== undefined && typeof v !== 'boolean') throw Object.assign(new Error("setting 'vnetHdr' must be true or false"), { code: 'EINVAL' });
  const nat = new AfPacketPort(port.fds[0], port.fds[1], port.fds[2], ifname, { vnetHdr: v ?? true });
  return Promise.resolve(new AfPacketDriver(nat));
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
