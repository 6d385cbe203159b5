/**
 * What vale-ctl-ts talks to: a vale-ts switch ({@link ValeClient}) or kernel
 * VALE ({@link KernelValeControl}), both from the library. This file only
 * maps valectl's arguments onto them and their errors onto valectl's.
 *
 * @module
 */
import {
  defaultSocketPath,
  kernelAvailable,
  KernelValeControl,
  parsePortName,
  ValeClient,
  ValeControlError,
  type KernelRequestFn,
  type AttachBackend,
  type SwitchStats,
  type ValePortConfig,
} from '../../src/index.js';
import { UsageError, type CtlArgs, type CtlDriverSpec, type PollConfig, type RingConfig } from './args.js';
import { CtlError, knownErrno, type InfoResult, type ListResult } from './format.js';

export type { KernelRequestFn };

/** What vale-ctl-ts asks of whatever runs the switch. Failures throw {@link CtlError}. */
export interface CtlBackend {
  /** 'user' (vale-ts) or 'kernel' (/dev/netmap) */
  readonly kind: 'user' | 'kernel';
  listAll(): Promise<ListResult[]>;
  list(name: string): Promise<ListResult>;
  info(name: string): Promise<InfoResult>;
  /** mem_id of a port named for `-m netmap:PORT` */
  memIdOf(port: string): Promise<number>;
  /** `driver`: vale-ts serves the port's far side (--tap, --stream, --dgram); user backend only */
  create(name: string, conf: RingConfig, memId: number, driver?: CtlDriverSpec): Promise<InfoResult>;
  remove(name: string): Promise<void>;
  /** returns the port index */
  /**
   * `backend`: what serves the interface; `inline`: its datapath in the
   * switch's rounds (true) or a thread (false). vale-ts only: the kernel has
   * its own drivers.
   */
  attach(name: string, hostStack: boolean, conf: RingConfig, memId: number, backend?: AttachBackend, inline?: boolean): Promise<number>;
  /** returns the port index */
  detach(name: string): Promise<number>;
  /** start (`enable`) or stop kernel polling threads, with the `-C` numbers as read */
  polling(name: string, enable: boolean, conf: PollConfig): Promise<void>;
  stats(switchName?: string): Promise<SwitchStats[]>;
}

/** vale-ts over its control socket. */
export class UserCtl implements CtlBackend {
  readonly kind = 'user' as const;
  readonly socketPath: string;
  private readonly client: ValeClient;

  constructor(socketPath: string, timeoutMs = 5000) {
    this.socketPath = socketPath;
    this.client = new ValeClient({ socket: socketPath, timeoutMs });
  }

  private async run<T>(f: (c: ValeClient) => Promise<T>): Promise<T> {
    try {
      return await f(this.client);
    } catch (e) {
      if (e instanceof ValeControlError) throw new CtlError(e.code, e.message);
      throw e;
    }
  }

  listAll(): Promise<ListResult[]> {
    return this.run((c) => c.list());
  }

  list(name: string): Promise<ListResult> {
    return this.run((c) => c.lookup(name));
  }

  info(name: string): Promise<InfoResult> {
    return this.run((c) => c.info(name));
  }

  async memIdOf(port: string): Promise<number> {
    return (await this.info(port)).memId;
  }

  create(name: string, conf: RingConfig, memId: number, driver?: CtlDriverSpec): Promise<InfoResult> {
    return this.run((c) => c.create(name, portConfig(conf), driver ? { memId, driver } : { memId }));
  }

  remove(name: string): Promise<void> {
    return this.run((c) => c.remove(name));
  }

  attach(name: string, hostStack: boolean, conf: RingConfig, memId: number, backend?: AttachBackend, inline?: boolean): Promise<number> {
    // valectl sends -C and -m in the attach's nmreq_register: the NIC's own
    // netmap rings and their allocator. vale-ts registers no netmap rings on
    // an interface (AF_XDP or AF_PACKET serve it), so it refuses them rather
    // than attach with the numbers dropped; 0 is valectl's "default".
    if (conf.txSlots || conf.rxSlots || conf.txRings || conf.rxRings) {
      return Promise.reject(
        new CtlError(
          'EOPNOTSUPP',
          '-C sizes the netmap rings of the interface being attached; vale-ts serves an interface through AF_XDP or ' +
            'AF_PACKET, sized by vale-ts itself, and registers no netmap rings on it (leave -C out, or give 0)',
        ),
      );
    }
    if (memId) {
      return Promise.reject(
        new CtlError(
          'EOPNOTSUPP',
          '-m picks the netmap memory allocator of the interface being attached; vale-ts serves an interface through ' +
            'AF_XDP or AF_PACKET and registers no netmap rings on it (leave -m out, or give 0)',
        ),
      );
    }
    return this.run((c) => c.attach(name, { hostStack, ...(backend ? { backend } : {}), ...(inline !== undefined ? { inline } : {}) }));
  }

  detach(name: string): Promise<number> {
    return this.run((c) => c.detach(name));
  }

  polling(): Promise<void> {
    return Promise.reject(
      new CtlError(
        'EOPNOTSUPP',
        'vale-ts moves frames from its own event loop and has no kernel polling threads to start or stop ' +
          '(polling applies to NICs attached to a kernel VALE switch)',
      ),
    );
  }

  stats(switchName?: string): Promise<SwitchStats[]> {
    return this.run((c) => c.stats(switchName));
  }
}

/** valectl's `-C` numbers as vale-ts takes them (0: the default). */
function portConfig(c: RingConfig): ValePortConfig {
  return { txSlots: c.txSlots, rxSlots: c.rxSlots, txRings: c.txRings, rxRings: c.rxRings };
}

/**
 * valectl's `-C` numbers as the kernel struct fields receive them: C's
 * conversion of an int to the field's unsigned width (atoi's -1 is
 * 0xffffffff in a u32 field, 0xffff in a u16 one).
 */
function kernelConfig(c: RingConfig): ValePortConfig {
  return { txSlots: c.txSlots >>> 0, rxSlots: c.rxSlots >>> 0, txRings: c.txRings & 0xffff, rxRings: c.rxRings & 0xffff };
}

/** The netmap kernel module through `NIOCCTRL` ({@link KernelValeControl}). */
export class KernelCtl implements CtlBackend {
  readonly kind = 'kernel' as const;
  private readonly k: KernelValeControl;

  /** @param req a stand-in for the ioctl (tests) */
  constructor(req?: KernelRequestFn) {
    this.k = new KernelValeControl(req ? { request: req } : {});
  }

  private async run<T>(f: (k: KernelValeControl) => T | Promise<T>): Promise<T> {
    try {
      return await f(this.k);
    } catch (e) {
      if (!(e instanceof Error)) throw e;
      const code = (e as { code?: unknown }).code;
      const c = typeof code === 'string' ? code : 'EIO';
      // a failed ioctl reads as valectl's strerror(errno); anything else
      // (no /dev/netmap, no permission) keeps the addon's explanation
      const syscall = (e as { syscall?: unknown }).syscall;
      if (syscall === 'ioctl' && knownErrno(c)) throw new CtlError(c);
      throw new CtlError(c, e.message);
    }
  }

  listAll(): Promise<ListResult[]> {
    return this.run((k) => k.list());
  }

  list(name: string): Promise<ListResult> {
    return this.run((k) => k.lookup(name));
  }

  async info(name: string): Promise<InfoResult> {
    const g = await this.run((k) => k.infoSync(name));
    return { name, memsize: g.memsize, txSlots: g.txSlots, rxSlots: g.rxSlots, txRings: g.txRings, rxRings: g.rxRings, memId: g.memId };
  }

  async memIdOf(port: string): Promise<number> {
    return (await this.info(parsePortName(port).nrName)).memId;
  }

  create(name: string, c: RingConfig, memId: number, driver?: CtlDriverSpec): Promise<InfoResult> {
    if (driver) return Promise.reject(Object.assign(new Error(`--${driver.kind} ports live in vale-ts; the kernel's netmap has none (use --socket or start vale-ts)`), { code: 'EOPNOTSUPP' }));
    return this.run((k) => k.create(name, kernelConfig(c), memId & 0xffff));
  }

  remove(name: string): Promise<void> {
    return this.run((k) => k.remove(name));
  }

  attach(name: string, hostStack: boolean, c: RingConfig, memId: number, backend?: AttachBackend, inline?: boolean): Promise<number> {
    if (backend || inline !== undefined) {
      const opt = backend ? '--backend' : '--inline';
      return Promise.reject(Object.assign(new Error(`${opt} picks how vale-ts reaches an interface: the kernel VALE switch attaches NICs itself (give --socket to talk to vale-ts)`), { code: 'EINVAL' }));
    }
    return this.run((k) => k.attach(name, { hostStack, conf: kernelConfig(c), memId: memId & 0xffff }));
  }

  detach(name: string): Promise<number> {
    return this.run((k) => k.detach(name));
  }

  polling(name: string, enable: boolean, conf: PollConfig): Promise<void> {
    // valectl fills nmreq_vale_polling from -C for both requests
    const p = { mode: conf.mode >>> 0, firstCpu: conf.firstCpu >>> 0, numCpus: conf.numCpus >>> 0 };
    return this.run((k) => (enable ? k.pollingOn(name, p) : k.pollingOff(name, p)));
  }

  stats(): Promise<SwitchStats[]> {
    return Promise.reject(
      new CtlError(
        'EOPNOTSUPP',
        'the netmap kernel module has no per-port counters or MAC table dump through NIOCCTRL; --stats needs vale-ts (give --socket PATH)',
      ),
    );
  }
}

/**
 * The backend for these arguments: vale-ts when `--socket` is given or
 * `NETMAP_BACKEND=user`; the kernel when `NETMAP_BACKEND=kernel`, or `auto`
 * / unset and `/dev/netmap` exists; else vale-ts.
 */
export function chooseBackend(args: CtlArgs, env: Readonly<Record<string, string | undefined>>): CtlBackend {
  const user = (): UserCtl => new UserCtl(defaultSocketPath(args.socket ?? (env['VALE_TS_SOCKET'] || undefined)));
  if (args.socket !== undefined) return user();
  const choice = env['NETMAP_BACKEND'] || 'auto';
  if (choice === 'user') return user();
  if (choice === 'kernel') return new KernelCtl();
  if (choice !== 'auto') throw new UsageError(`NETMAP_BACKEND=${choice} is not a backend: use user, kernel or auto`);
  return kernelAvailable() ? new KernelCtl() : user();
}
