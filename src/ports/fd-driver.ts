/**
 * The TypeScript side of the drivers that move a port's frames to and from
 * file descriptors in a native thread (cpp/core/port_pump.h): TAP devices
 * and QEMU socket netdevs. Starting one hands the native side dups of the
 * port's three fds; the switch keeps its own.
 */
import { nativeRaw } from '../netmap/addon.js';
import type { SwitchPort } from '../vale/switch.js';
import type { DriverSpec, PortDriver } from './driver.js';

/** Which native driver: a TAP, or a QEMU socket netdev in one of its modes. */
export type FdDriverKind = 'tap' | 'stream-server' | 'stream-client' | 'dgram';

interface NativeFdPortDriver {
  counters(): Record<string, number>;
  close(): void;
  ifname(): string;
}

interface FdDriverAddon {
  FdPortDriver: new (kind: FdDriverKind, fds: readonly number[], options: Record<string, string | number | boolean>, label: string, core?: object, switchPort?: number) => NativeFdPortDriver;
}

const addon = nativeRaw as FdDriverAddon;

/**
 * Where a native fd driver runs: in its switch's rounds (`core`: the
 * switch's, from `Switch.inlineDriverCore()`; `direct`: the switch hands it
 * frames from the senders' buffers), or, without one, in a thread of its own.
 */
export interface FdDriverInLine {
  core: object;
  direct: boolean;
}

/** A running native fd driver as a {@link PortDriver}. */
export class FdPortDriver implements PortDriver {
  private readonly native: NativeFdPortDriver;
  private closed = false;

  constructor(
    readonly kind: string,
    native: FdDriverKind,
    port: SwitchPort,
    options: Record<string, string | number | boolean>,
    private readonly description: (ifname: string) => string,
    inLine?: FdDriverInLine,
  ) {
    this.native = new addon.FdPortDriver(native, port.fds, options, port.name, inLine?.core, inLine?.direct ? port.index : undefined);
  }

  describe(): string {
    return this.description(this.native.ifname());
  }

  counters(): Record<string, number> {
    return this.native.counters();
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.native.close();
    }
    return Promise.resolve();
  }
}

/** A spec setting that must be a string, or an error naming it. */
export function stringSetting(spec: DriverSpec, key: string, required: true): string;
export function stringSetting(spec: DriverSpec, key: string, required: false): string | undefined;
export function stringSetting(spec: DriverSpec, key: string, required: boolean): string | undefined {
  const v = spec[key];
  if (v === undefined) {
    if (required) throw Object.assign(new Error(`${spec.kind} port needs the setting '${key}'`), { code: 'EINVAL' });
    return undefined;
  }
  if (typeof v !== 'string' || v.length === 0) throw Object.assign(new Error(`${spec.kind} setting '${key}' must be a non-empty string`), { code: 'EINVAL' });
  return v;
}

/** Rejects settings a kind does not know (a typo must not be ignored). */
export function onlySettings(spec: DriverSpec, known: readonly string[]): void {
  for (const k of Object.keys(spec)) {
    if (k !== 'kind' && !known.includes(k)) {
      throw Object.assign(new Error(`${spec.kind} port has no setting '${k}' (known: ${known.join(', ')})`), { code: 'EINVAL' });
    }
  }
}

/** A unix socket path: absolute (vale-ts's cwd is not the client's) and short enough for sockaddr_un. */
export function socketPath(spec: DriverSpec, key: string, required: true): string;
export function socketPath(spec: DriverSpec, key: string, required: false): string | undefined;
export function socketPath(spec: DriverSpec, key: string, required: boolean): string | undefined {
  const p = required ? stringSetting(spec, key, true) : stringSetting(spec, key, false);
  if (p === undefined) return undefined;
  if (!p.startsWith('/')) throw Object.assign(new Error(`${spec.kind} setting '${key}' must be an absolute path, not '${p}'`), { code: 'EINVAL' });
  if (Buffer.byteLength(p) > 107) throw Object.assign(new Error(`${spec.kind} setting '${key}' is longer than a unix socket path may be (107 bytes)`), { code: 'ENAMETOOLONG' });
  return p;
}
