/**
 * Kernel VALE control: netmap's `NIOCCTRL` control requests on
 * `/dev/netmap`, as valectl sends them — VALE_LIST, PORT_INFO_GET,
 * VALE_NEWIF / VALE_DELIF, VALE_ATTACH / VALE_DETACH, VALE_POLLING_ENABLE /
 * _DISABLE, PORT_HDR_SET / _GET.
 *
 * The request bodies are encoded and decoded by the addon from the structs of
 * cpp/abi/netmap_abi.h (cpp/napi/kernel_ctl.cc); nothing here knows an offset.
 *
 * @module
 */
import { nativeRaw } from '../../netmap/addon.js';
import {
  NETMAP_POLLING_MODE_SINGLE_CPU,
  NETMAP_REQ_PORT_HDR_GET,
  NETMAP_REQ_PORT_HDR_SET,
  NETMAP_REQ_PORT_INFO_GET,
  NETMAP_REQ_VALE_ATTACH,
  NETMAP_REQ_VALE_DELIF,
  NETMAP_REQ_VALE_DETACH,
  NETMAP_REQ_VALE_LIST,
  NETMAP_REQ_VALE_NEWIF,
  NETMAP_REQ_VALE_POLLING_DISABLE,
  NETMAP_REQ_VALE_POLLING_ENABLE,
} from '../../netmap/abi.js';
import type { ValePortConfig, ValePortIndex, ValePortInfo } from '../../control/client.js';
import type { Port } from '../../netmap/port.js';

/** Fields of a control request body, by the names the addon's encoder takes. */
export type CtlFields = Readonly<Record<string, number | boolean>>;

/** The part of the addon this module uses. */
interface KernelCtlNative {
  kernelAvailable(): boolean;
  kernelRequest(reqtype: number, name: string, body: Buffer, device?: string): { body: Buffer; name: string };
  kernelCtlEncode(reqtype: number, fields: CtlFields): Buffer;
  kernelCtlDecode(reqtype: number, body: Buffer): Record<string, number>;
}

const kn = nativeRaw as KernelCtlNative;

/**
 * One `NIOCCTRL` request: request type, `nmreq_header.nr_name` and the body
 * (updated in place by the kernel). Returns the body and `nr_name` as the
 * kernel left them. Errors carry `.code` (the errno name) and `.syscall`.
 */
export type KernelRequestFn = (reqtype: number, name: string, body: Buffer) => { body: Buffer; name: string };

/** True when `/dev/netmap` exists, i.e. the netmap kernel module is (most likely) loaded. */
export function kernelAvailable(): boolean {
  return kn.kernelAvailable();
}

/**
 * One raw `NIOCCTRL` control request on a fresh `/dev/netmap` fd (VALE_LIST,
 * VALE_ATTACH, VALE_DETACH, VALE_NEWIF, VALE_DELIF, PORT_INFO_GET,
 * PORT_HDR_SET/GET, VALE_POLLING_ENABLE/DISABLE, POOLS_INFO_GET). `body` must
 * be exactly the request's body size (see {@link encodeCtlBody}); the kernel
 * updates it in place and it is returned with `nmreq_header.nr_name` as the
 * kernel left it (VALE_LIST with an empty name answers with the name of the
 * next port there). Errors carry `.code` (`ENOENT` ends a VALE_LIST walk;
 * `ENODEV` means /dev/netmap is missing).
 */
export function kernelRequest(reqtype: number, name: string, body: Buffer, device?: string): { body: Buffer; name: string } {
  return device === undefined ? kn.kernelRequest(reqtype, name, body) : kn.kernelRequest(reqtype, name, body, device);
}

/**
 * The request body of `reqtype` with these fields, encoded by the addon from
 * netmap's struct (e.g. `nmreq_vale_newif` for NETMAP_REQ_VALE_NEWIF). Field
 * names: `bridgeIndex`, `portIndex` (VALE_LIST); `txSlots`, `rxSlots`,
 * `txRings`, `rxRings`, `memId` (NEWIF, ATTACH), `hostStack` (ATTACH);
 * `mode`, `firstCpu`, `numCpus` (POLLING); `hdrLen` (PORT_HDR). A number that
 * does not fit its field throws RangeError.
 */
export function encodeCtlBody(reqtype: number, fields: CtlFields = {}): Buffer {
  return kn.kernelCtlEncode(reqtype, fields);
}

/** The fields of a body the kernel returned, decoded by the addon (names as in {@link encodeCtlBody}). */
export function decodeCtlBody(reqtype: number, body: Buffer): Record<string, number> {
  return kn.kernelCtlDecode(reqtype, body);
}

/** Kernel polling threads (`nmreq_vale_polling`), as valectl's `-C x,y,z` gives them. */
export interface PollingConfig {
  /**
   * `abi.NETMAP_POLLING_MODE_SINGLE_CPU` (one CPU polls every ring) or
   * `abi.NETMAP_POLLING_MODE_MULTI_CPU` (one ring per CPU)
   */
  mode: number;
  /** first CPU core (and ring, in multi-CPU mode) */
  firstCpu: number;
  /** CPUs to use (multi-CPU mode) */
  numCpus: number;
}

/** Options of {@link KernelValeControl}. */
export interface KernelValeControlOptions {
  /** device to open instead of `/dev/netmap` (tests) */
  device?: string;
  /** send requests through this function instead of the addon's ioctl (tests) */
  request?: KernelRequestFn;
}

/**
 * Kernel VALE switches through `/dev/netmap`, as valectl drives them. Each
 * call is one `NIOCCTRL` on a fresh fd; errors are the ioctl's, with `.code`
 * set to the errno name (`ENOENT` for no such switch or port, `EBUSY`,
 * `ENXIO`...) and `.syscall` 'ioctl' (or 'open' when /dev/netmap is missing:
 * code `ENODEV`, with the userspace alternative named).
 *
 * ```ts
 * const k = new KernelValeControl();
 * await k.create('v0', { txSlots: 1024 });
 * const idx = await k.attach('vale0:v0');
 * ```
 */
export class KernelValeControl {
  private readonly req: KernelRequestFn;

  constructor(opts: KernelValeControlOptions = {}) {
    const dev = opts.device;
    this.req = opts.request ?? ((t, n, b) => kernelRequest(t, n, b, dev));
  }

  private call(reqtype: number, name: string, fields?: CtlFields): { body: Buffer; name: string } {
    return this.req(reqtype, name, encodeCtlBody(reqtype, fields));
  }

  /**
   * Every port of every kernel VALE switch: NETMAP_REQ_VALE_LIST with an
   * empty name, walked as valectl walks it (the kernel answers with the next
   * port at or after the indices asked for, and its name, until ENOENT).
   */
  async list(): Promise<ValePortIndex[]> {
    const out: ValePortIndex[] = [];
    let bridge = 0;
    let port = 0;
    for (;;) {
      let r: { body: Buffer; name: string };
      try {
        r = this.call(NETMAP_REQ_VALE_LIST, '', { bridgeIndex: bridge, portIndex: port });
      } catch (e) {
        if ((e as { code?: unknown }).code === 'ENOENT') break;
        throw e;
      }
      const d = decodeCtlBody(NETMAP_REQ_VALE_LIST, r.body);
      const nb = d['bridgeIndex']!;
      const np = d['portIndex']!;
      // the kernel answers with the next port at or after the one asked
      // for; anything else would loop forever
      if (nb < bridge || (nb === bridge && np < port)) break;
      bridge = nb;
      port = np;
      out.push({ name: r.name, bridgeIndex: bridge, portIndex: port });
      port++;
    }
    return out;
  }

  /** One port's indices (valectl -l): portIndex is NM_BDG_NOPORT when the switch lacks it. */
  async lookup(name: string): Promise<ValePortIndex> {
    const d = decodeCtlBody(NETMAP_REQ_VALE_LIST, this.call(NETMAP_REQ_VALE_LIST, name).body);
    return { name, bridgeIndex: d['bridgeIndex']!, portIndex: d['portIndex']! };
  }

  /** A port's geometry and memory region (NETMAP_REQ_PORT_INFO_GET, valectl -g). */
  async info(name: string): Promise<ValePortInfo & { hostTxRings: number; hostRxRings: number }> {
    return this.infoSync(name);
  }

  /** {@link KernelValeControl.info}, synchronously (the ioctl does not block). */
  infoSync(name: string): ValePortInfo & { hostTxRings: number; hostRxRings: number } {
    const d = decodeCtlBody(NETMAP_REQ_PORT_INFO_GET, this.call(NETMAP_REQ_PORT_INFO_GET, name).body);
    return {
      name,
      memsize: d['memsize']!,
      txSlots: d['txSlots']!,
      rxSlots: d['rxSlots']!,
      txRings: d['txRings']!,
      rxRings: d['rxRings']!,
      hostTxRings: d['hostTxRings']!,
      hostRxRings: d['hostRxRings']!,
      memId: d['memId']!,
    };
  }

  /**
   * Create a persistent VALE interface (NETMAP_REQ_VALE_NEWIF, valectl -n):
   * a bare name (`v0`), later attached with {@link KernelValeControl.attach}.
   * 0 or missing counts take the kernel's defaults; `memId` 0 lets it choose.
   * Resolves with what the kernel made (memsize is not reported: 0).
   */
  async create(name: string, conf: ValePortConfig = {}, memId = 0): Promise<ValePortInfo> {
    const d = decodeCtlBody(NETMAP_REQ_VALE_NEWIF, this.call(NETMAP_REQ_VALE_NEWIF, name, { ...conf, memId }).body);
    return { name, memsize: 0, txSlots: d['txSlots']!, rxSlots: d['rxSlots']!, txRings: d['txRings']!, rxRings: d['rxRings']!, memId: d['memId']! };
  }

  /** Delete a persistent VALE interface (NETMAP_REQ_VALE_DELIF, valectl -r). */
  async remove(name: string): Promise<void> {
    this.call(NETMAP_REQ_VALE_DELIF, name);
  }

  /**
   * Attach an interface to a switch (NETMAP_REQ_VALE_ATTACH, `valeX:IFNAME`;
   * valectl -a, or -h with `hostStack`: its host rings too). Resolves with
   * the port index.
   */
  async attach(name: string, opts: { hostStack?: boolean; conf?: ValePortConfig; memId?: number } = {}): Promise<number> {
    const fields = { ...(opts.conf ?? {}), memId: opts.memId ?? 0, hostStack: opts.hostStack ?? false };
    return decodeCtlBody(NETMAP_REQ_VALE_ATTACH, this.call(NETMAP_REQ_VALE_ATTACH, name, fields).body)['portIndex']!;
  }

  /** Detach an interface (NETMAP_REQ_VALE_DETACH, valectl -d); resolves with its former port index. */
  async detach(name: string): Promise<number> {
    return decodeCtlBody(NETMAP_REQ_VALE_DETACH, this.call(NETMAP_REQ_VALE_DETACH, name).body)['portIndex']!;
  }

  /**
   * Start kernel polling threads for an attached NIC
   * (NETMAP_REQ_VALE_POLLING_ENABLE, valectl -p). Default: one CPU, core 0.
   */
  async pollingOn(name: string, conf: PollingConfig = { mode: NETMAP_POLLING_MODE_SINGLE_CPU, firstCpu: 0, numCpus: 1 }): Promise<void> {
    this.call(NETMAP_REQ_VALE_POLLING_ENABLE, name, { mode: conf.mode, firstCpu: conf.firstCpu, numCpus: conf.numCpus });
  }

  /** Stop them (NETMAP_REQ_VALE_POLLING_DISABLE, valectl -P, which sends its -C numbers too). */
  async pollingOff(name: string, conf?: PollingConfig): Promise<void> {
    this.call(NETMAP_REQ_VALE_POLLING_DISABLE, name, conf ? { mode: conf.mode, firstCpu: conf.firstCpu, numCpus: conf.numCpus } : {});
  }

  /**
   * The virtio-net header length of a port (NETMAP_REQ_PORT_HDR_GET): 0, 10
   * or 12 bytes in front of every frame. See {@link vnetHeader}.
   */
  getHeaderLength(name: string): number {
    return decodeCtlBody(NETMAP_REQ_PORT_HDR_GET, this.call(NETMAP_REQ_PORT_HDR_GET, name).body)['hdrLen']!;
  }

  /** Set it (NETMAP_REQ_PORT_HDR_SET); the kernel refuses lengths other than 0, 10 and 12 with EINVAL. */
  setHeaderLength(name: string, hdrLen: number): void {
    this.call(NETMAP_REQ_PORT_HDR_SET, name, { hdrLen });
  }
}

/**
 * The virtio-net header length of a port, as pkt-gen's `-H` handles it: with
 * `set` (0, 10 or 12), NETMAP_REQ_PORT_HDR_SET first; then
 * NETMAP_REQ_PORT_HDR_GET. Takes an open {@link Port} or a kernel port name
 * as `nmreq_header.nr_name` has it (`vale0:1`, `eth0`: without `netmap:`).
 * Ports served in userspace (vale-ts, pipes) carry no virtio-net header:
 * they answer 0, and asking them for one throws (code `EOPNOTSUPP`).
 * Kernel errors carry the ioctl's `.code`.
 */
export function vnetHeader(port: Port | string, set?: number, ctl: KernelValeControl = new KernelValeControl()): number {
  if (typeof port !== 'string' && port.transport !== 'kernel') {
    if (set) {
      throw Object.assign(new Error(`${port.name}: ${port.transport} ports carry no virtio-net header (only kernel netmap ports do)`), {
        code: 'EOPNOTSUPP',
      });
    }
    return 0;
  }
  const name = typeof port === 'string' ? port : port.parsed.nrName;
  if (set !== undefined) ctl.setHeaderLength(name, set);
  return ctl.getHeaderLength(name);
}
