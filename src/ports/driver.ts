/**
 * Ports whose far side lives inside vale-ts: a TAP device, a QEMU socket
 * netdev, a vhost-user guest, a Linux interface, a VXLAN uplink. Each is an
 * ordinary persistent switch port whose client is a *driver* in the vale-ts
 * process (native code on cpp/core/port_client.h) rather than another
 * program: the switch learns, forwards, counts and lists it like any port.
 *
 * A kind registers a factory here; `vale-ctl-ts -n vale0:vm1 --tap NAME`
 * (and the library's {@link ValeClient.create} with a driver spec) reach it
 * through the control protocol's `create` request.
 */
import type { Switch, SwitchPort } from '../vale/switch.js';

/**
 * What a driver is asked to be: its kind and flat, kind-specific settings
 * (`{ kind: 'tap', ifname: 'vmtap0', vnetHdr: true }`). Values come from a
 * control client: every factory validates them and names a bad one.
 */
export interface DriverSpec {
  kind: string;
  [setting: string]: string | number | boolean | string[];
}

/** A running driver of one port. */
export interface PortDriver {
  /** the spec's kind */
  readonly kind: string;
  /** one line for listings and --stats: what serves the port, e.g. "tap vmtap0 (vnet_hdr, 2 queues)" */
  describe(): string;
  /**
   * The driver's own counters (frames/bytes moved, kicks, and every drop by
   * reason: a drop counter's name starts with `drop`). The switch's port
   * counters are separate and still count what the switch did.
   */
  counters(): Record<string, number>;
  /** Stop moving frames and release what the driver holds (fds, guest memory, threads). Idempotent. */
  close(): Promise<void>;
}

/**
 * Builds a driver for a port that was just created for it (attached,
 * persistent). `holdAsked`: the port's creator gave it a bounded-backpressure
 * hold (`holdUs`), which the driver must leave as it is.
 */
export type DriverFactory = (ctx: { sw: Switch; port: SwitchPort; spec: DriverSpec; holdAsked: boolean }) => Promise<PortDriver>;

const factories = new Map<string, DriverFactory>();

/** Make a kind of driver available to `create` requests. */
export function registerPortKind(kind: string, factory: DriverFactory): void {
  if (factories.has(kind)) throw new Error(`port kind '${kind}' is registered twice`);
  factories.set(kind, factory);
}

/** The factory of a kind, or an error listing the known kinds. */
export function driverFactory(kind: string): DriverFactory {
  const f = factories.get(kind);
  if (!f) {
    const known = [...factories.keys()].sort().join(', ') || 'none';
    throw Object.assign(new Error(`unknown port kind '${kind}' (this vale-ts knows: ${known})`), { code: 'EINVAL' });
  }
  return f;
}

/** Kinds known to this process, sorted. */
export function portKinds(): string[] {
  return [...factories.keys()].sort();
}

/**
 * A port's `inline` setting (a boolean), else `variable` in vale-ts's
 * environment, else in-line exactly when the switch runs a datapath thread:
 * the rule TAP and QEMU socket netdev ports share. A value of another type
 * is refused, naming the kind and the choices.
 */
export function inlineSetting(spec: DriverSpec, switchThread: boolean, variable: string, usage: string): boolean {
  const v = spec['inline'] ?? inlineFromEnv(variable, switchThread, usage);
  if (typeof v !== 'boolean') throw Object.assign(new Error(`${spec.kind} setting 'inline' must be true (the switch's rounds) or false (a thread of its own)`), { code: 'EINVAL' });
  return v;
}

/**
 * An in-line default set in vale-ts's environment (`variable` '1': the
 * ports' datapath in the switch's rounds, '0': threads of their own),
 * `unset` where the variable is absent or empty. Anything else is refused,
 * naming the variable and `usage` (what each value does).
 */
export function inlineFromEnv(variable: string, unset: boolean, usage: string): boolean {
  const v = process.env[variable];
  if (v === undefined || v === '') return unset;
  if (v === '1') return true;
  if (v === '0') return false;
  throw Object.assign(new Error(`${variable}='${v}': ${usage}`), { code: 'EINVAL' });
}
