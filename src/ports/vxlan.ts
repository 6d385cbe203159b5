/**
 * VXLAN ports (RFC 7348): the port is a VXLAN tunnel endpoint, and the frames
 * the switch sends it travel as UDP to other VTEPs — Linux `vxlan` devices,
 * Open vSwitch, another vale-ts — which send theirs back.
 *
 * ```
 * { kind: 'vxlan', vni: 42, local: '10.0.0.1', remote: ['10.0.0.2', '10.0.0.3'] }
 * { kind: 'vxlan', vni: 42, local: '10.0.0.1', group: '239.1.1.1', dev: 'eth0' }
 * ```
 *
 * Settings: `vni` (0..16777215), `local` (ADDR, ADDR:PORT or [ADDR6]:PORT;
 * the port is the UDP port listened on, 4789 by default), `remote` (static
 * VTEPs that get broadcast/unknown copies) or `group` (a multicast group,
 * joined on `dev`), `dev`, `fdb` (static entries `MAC@ADDR`), `dstport`
 * (default: the local port), `ageing` (seconds, 300), `srcport`
 * (`MIN-MAX`, default 32768-61000, or `fixed`: send from the bound port,
 * which needs no CAP_NET_RAW), `ttl`, `shortcut` (`on`, the default, or
 * `off`: the co-resident shortcut, HELLOs and frames to a vale-ts on this host through shared memory, docs/vxlan-shortcut.md),
 * `shortcutdir` (its rendezvous directory, default /run/vale-ts/shortcut),
 * `shortcuthandshakems` (how long a rendezvous connection may take to
 * map its ring, CLAIM, PROOF and CHANNEL through, 5000 ms by default,
 * checked once a second),
 * `gso` (`on`, the default: a run of datagrams to one remote from one
 * source port leaves in one UDP GSO send, and such runs are received whole
 * with UDP GRO; `off`: one datagram at a time), `rcvbuf` (the UDP socket's
 * receive buffer in bytes, default 4 MiB: what waits while the driver is
 * behind; past it the kernel drops, counted `dropKernelRx`), `inline` (`on`,
 * the default: the VTEP runs in the switch's own rounds, no thread, doorbell
 * or context switch between them; `off`: a thread of its own; the default
 * comes from VALE_TS_VXLAN_INLINE=1|0). The native VTEP is
 * cpp/core/vxlan_driver.h; docs/vxlan.md says how it forwards and counts.
 */
import { isIP } from 'node:net';
import { nativeRaw } from '../netmap/addon.js';
import type { SwitchPort } from '../vale/switch.js';
import { inlineFromEnv, registerPortKind, type DriverSpec, type PortDriver } from './driver.js';
import { onlySettings } from './fd-driver.js';
import { VXLAN_SETTING_NAMES } from './vxlan-settings.js';

/** The options the native VTEP takes (cpp/napi/port_drivers.cc, VxlanPortDriver). */
export interface VxlanNativeOptions {
  vni: number;
  local?: string;
  port?: number;
  dstport?: number;
  remote?: string[];
  group?: string;
  dev?: string;
  fdb?: string[];
  ageing?: number;
  srcportMin?: number;
  srcportMax?: number;
  srcportFixed?: boolean;
  ttl?: number;
  shortcut?: boolean;
  shortcutDir?: string;
  shortcutHandshakeMs?: number;
  gso?: boolean;
  rcvbuf?: number;
  /** Not the native option: the switch's core is passed beside them when true. */
  inline?: boolean;
}

interface NativeVxlan {
  counters(): Record<string, number>;
  close(): void;
  describe(): string;
}

const addon = nativeRaw as {
  VxlanPortDriver: new (fds: readonly number[], o: VxlanNativeOptions, label: string, core?: object, switchPort?: number) => NativeVxlan;
};

const MAC = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;
const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;

function bad(message: string): Error {
  return Object.assign(new Error(message), { code: 'EINVAL' });
}

function intSetting(spec: DriverSpec, key: string, min: number, max: number): number | undefined {
  const v = spec[key];
  if (v === undefined) return undefined;
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) throw bad(`vxlan setting '${key}' must be an integer ${min}..${max}, not ${JSON.stringify(v)}`);
  return n;
}

function list(spec: DriverSpec, key: string): string[] {
  const v = spec[key];
  if (v === undefined) return [];
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) return v;
  throw bad(`vxlan setting '${key}' must be an address or a list of addresses`);
}

function str(spec: DriverSpec, key: string): string | undefined {
  const v = spec[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v === '') throw bad(`vxlan setting '${key}' must be a non-empty string`);
  return v;
}

/** `ADDR`, `ADDR:PORT`, `[ADDR6]` or `[ADDR6]:PORT`. */
export function parseLocal(text: string): { addr: string; port?: number } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text) ?? (isIP(text) === 6 ? [text, text] : /^([^:]+)(?::(\d+))?$/.exec(text));
  const addr = m?.[1];
  if (!m || addr === undefined || isIP(addr) === 0) throw bad(`vxlan local '${text}' is not ADDR, ADDR:PORT or [IPv6]:PORT`);
  if (m[2] === undefined) return { addr };
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw bad(`vxlan local port in '${text}' must be 1..65535`);
  return { addr, port };
}

const inlineDefault = (): boolean =>
  inlineFromEnv('VALE_TS_VXLAN_INLINE', true, "'1' (the default) runs VXLAN ports in the switch's rounds, '0' in threads of their own");

/**
 * VALE_TS_VXLAN_DIRECT in vale-ts's environment: '1' or unset, the switch
 * copies frames for an in-line VTEP's shortcut rings from the senders'
 * buffers straight into the ring; '0', through the port's rx ring (one
 * more copy; for comparisons).
 */
const directDefault = (): boolean =>
  inlineFromEnv('VALE_TS_VXLAN_DIRECT', true, "'1' (the default) copies an in-line VTEP's shortcut frames from the senders' buffers straight into the ring, '0' through the port's rx ring");

/** Checks a vxlan spec and turns it into the native options; every error names the setting and the fix. */
export function vxlanOptions(spec: DriverSpec): VxlanNativeOptions {
  onlySettings(spec, VXLAN_SETTING_NAMES);
  const vni = intSetting(spec, 'vni', 0, 0xffffff);
  if (vni === undefined) throw bad('a vxlan port needs vni=N (0..16777215), the same as the other VTEPs\'');
  const o: VxlanNativeOptions = { vni };
  const local = str(spec, 'local');
  let family = 0;
  if (local !== undefined) {
    const l = parseLocal(local);
    o.local = l.addr;
    if (l.port !== undefined) o.port = l.port;
    family = isIP(l.addr);
  }
  const agree = (what: string, a: string): void => {
    const f = isIP(a);
    if (f === 0) throw bad(`vxlan ${what} '${a}' is not an IPv4 or IPv6 address`);
    if (family !== 0 && f !== family) throw bad(`vxlan ${what} '${a}' is IPv${f} but the port is IPv${family}: one underlay family per port`);
    family = f;
  };
  const remotes = list(spec, 'remote');
  for (const r of remotes) agree('remote', r);
  if (remotes.length) o.remote = remotes;
  const group = str(spec, 'group');
  if (group !== undefined) {
    if (remotes.length) throw bad('a vxlan port floods to remote=... or to group=..., not both');
    agree('group', group);
    o.group = group;
  }
  const dev = str(spec, 'dev');
  if (dev !== undefined) {
    if (!IFNAME.test(dev)) throw bad(`vxlan dev '${dev}' is not an interface name`);
    o.dev = dev;
  }
  const fdb = list(spec, 'fdb');
  for (const e of fdb) {
    const at = e.indexOf('@');
    const mac = e.slice(0, at);
    if (at < 0 || !MAC.test(mac) || (parseInt(mac.slice(0, 2), 16) & 1) !== 0) throw bad(`vxlan fdb entry '${e}' must be UNICAST_MAC@ADDR, e.g. 02:00:00:00:00:01@10.0.0.2`);
    agree('fdb address', e.slice(at + 1));
  }
  if (fdb.length) o.fdb = fdb.map((e) => e.toLowerCase());
  if (!remotes.length && group === undefined && !fdb.length) throw bad('a vxlan port needs remote=ADDR (one per remote VTEP), group=MCAST[,dev=IF] or fdb=MAC@ADDR');
  if (local === undefined && group === undefined) throw bad('a vxlan port with static remotes needs local=ADDR (the address it sends from)');
  const dstport = intSetting(spec, 'dstport', 1, 65535);
  if (dstport !== undefined) o.dstport = dstport;
  const ageing = intSetting(spec, 'ageing', 1, 1000000);
  if (ageing !== undefined) o.ageing = ageing;
  const ttl = intSetting(spec, 'ttl', 1, 255);
  if (ttl !== undefined) o.ttl = ttl;
  const sp = str(spec, 'srcport');
  if (sp === 'fixed') o.srcportFixed = true;
  else if (sp !== undefined) {
    const m = /^(\d+)-(\d+)$/.exec(sp);
    const lo = Number(m?.[1]), hi = Number(m?.[2]);
    if (!m || lo < 1 || hi > 65535 || hi <= lo) throw bad(`vxlan srcport '${sp}' must be MIN-MAX (1 <= MIN < MAX <= 65535, MAX excluded) or 'fixed'`);
    o.srcportMin = lo;
    o.srcportMax = hi;
  }
  const sc = spec['shortcut'];
  if (sc !== undefined) {
    if (sc === 'on' || sc === true) o.shortcut = true;
    else if (sc === 'off' || sc === false) o.shortcut = false;
    else throw bad(`vxlan shortcut ${JSON.stringify(sc)} must be 'on' or 'off' (the co-resident shortcut's HELLOs to static remotes, docs/vxlan-shortcut.md)`);
  }
  const gso = spec['gso'];
  if (gso !== undefined) {
    if (gso === 'on' || gso === true) o.gso = true;
    else if (gso === 'off' || gso === false) o.gso = false;
    else throw bad(`vxlan gso ${JSON.stringify(gso)} must be 'on' or 'off' (UDP GSO for runs of datagrams to one remote)`);
  }
  const rcvbuf = intSetting(spec, 'rcvbuf', 2048, 1 << 30);
  if (rcvbuf !== undefined) o.rcvbuf = rcvbuf;
  const inl = spec['inline'];
  if (inl === undefined) o.inline = inlineDefault();
  else if (inl === 'on' || inl === true) o.inline = true;
  else if (inl === 'off' || inl === false) o.inline = false;
  else throw bad(`vxlan inline ${JSON.stringify(inl)} must be 'on' (in the switch's rounds) or 'off' (a thread of its own)`);
  const handshakeMs = intSetting(spec, 'shortcuthandshakems', 1, 3600000);
  if (handshakeMs !== undefined) o.shortcutHandshakeMs = handshakeMs;
  const dir = str(spec, 'shortcutdir');
  if (dir !== undefined) {
    if (!dir.startsWith('/')) throw bad(`vxlan shortcutdir '${dir}' must be an absolute path (a directory both vale-ts reach, mode 0700)`);
    o.shortcutDir = dir;
  }
  return o;
}

/** A running VTEP as a {@link PortDriver}. */
export class VxlanPortDriver implements PortDriver {
  readonly kind = 'vxlan';
  private readonly native: NativeVxlan;
  private closed = false;

  /** `core`: the switch's, for an in-line VTEP (`options.inline`). */
  constructor(port: SwitchPort, options: VxlanNativeOptions, core?: object) {
    const { inline, ...native } = options;
    const inl = inline === true && core !== undefined;
    this.native = new addon.VxlanPortDriver(port.fds, native, port.name, inl ? core : undefined, inl && directDefault() ? port.index : undefined);
  }

  describe(): string {
    return this.native.describe();
  }

  /** Frames, drops by reason, table activity, per-remote counters (`remote ADDR txFrames`) and the FDB (`fdb MAC -> ADDR expiresInS`). */
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

registerPortKind('vxlan', ({ sw, port, spec }) => Promise.resolve(new VxlanPortDriver(port, vxlanOptions(spec), sw.inlineDriverCore())));
