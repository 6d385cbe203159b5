/**
 * vale-ts's declarative configuration (`vale-ts --config FILE`): switches,
 * their persistent ports (geometry, lossless), lookup modules, driver ports
 * (TAP, vhost-user, ... as registered in src/ports), the access policy and
 * the counter retention. Checked whole, every error with its line
 * (`--check-config`); applied at start and again on SIGHUP, where only what
 * changed is added or removed: an unchanged port, its clients and its
 * counters are not touched. The format is documented in docs/configuration.md.
 */
import { existsSync, readFileSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { MAX_BUF_SIZE, MAX_RINGS, MAX_SLOTS, MIN_BUF_SIZE, MIN_SLOTS } from '../netmap/abi.js';
import { parsePortName } from '../netmap/name.js';
import { portKinds, type DriverSpec } from '../ports/index.js';
import { ConfigError, parseJsonc, type Node, type Pos } from './config-file.js';
import type { BatchLookup, SwitchOptions } from './switch.js';
import type { PeerPolicy } from './server.js';

export { ConfigError } from './config-file.js';

/** A persistent port as configured. */
export interface PortConfig {
  /** valeX:Y */
  name: string;
  /** tx rings (default: the switch's) */
  txRings?: number;
  /** rx rings */
  rxRings?: number;
  /** slots per tx ring */
  txSlots?: number;
  /** slots per rx ring */
  rxSlots?: number;
  /** bytes per buffer */
  bufSize?: number;
  /** backpressure instead of drops when a destination is full */
  lossless: boolean;
  /** bounded backpressure bound of this port's rx ring (µs; default: the switch's holdUs) */
  holdUs?: number;
  /** a driver port (TAP, vhost-user, ...): what serves its far side */
  driver?: DriverSpec;
  /** where the port is in the file */
  pos: Pos;
}

/** A switch as configured. */
export interface SwitchConfig {
  /** the switch's name (vale0) */
  name: string;
  /** module path (resolved against the file's directory) exporting `lookup` or a default BatchLookup */
  lookup?: string;
  /** the switch's options (batch, MAC table, stall bound, ...) */
  options: Omit<SwitchOptions, 'lookup' | 'clock'>;
  /** its persistent ports */
  ports: PortConfig[];
  /** where the switch is in the file */
  pos: Pos;
}

/** A whole configuration. */
export interface ValeConfig {
  /** the file it was read from */
  file: string;
  /** the switches it pins, with their ports */
  switches: SwitchConfig[];
  /** access policy; group resolved to its gid */
  access: PeerPolicy;
  /** `retainCounters`: seconds a departed port's counters are kept */
  retainCountersS?: number;
  /** `metrics`: [ADDR:]PORT of the Prometheus endpoint */
  metrics?: string;
  /** `socket`: the control socket's path */
  socket?: string;
  /** `priority`: vale-ts's nice, -20..19 (read at start) */
  priority?: number;
}

/**
 * Why `file` is not safe to take orders from, or undefined. Whoever can
 * write a configuration or a lookup module (or swap it in one of its
 * directories) decides what vale-ts runs and opens with its uid, root's for
 * the host's switch: the file and every directory above it must belong to
 * root or vale-ts's uid and be writable by no one else (a sticky directory,
 * as /tmp, protects what exists in it), as sshd's StrictModes asks.
 */
export function unsafePath(file: string): string | undefined {
  const me = process.getuid?.() ?? 0;
  const owner = (p: string, uid: number): string | undefined =>
    uid === 0 || uid === me ? undefined : `${p} belongs to uid ${uid}, not to root or vale-ts's uid ${me}: its owner would decide what vale-ts runs (chown it)`;
  const writable = (p: string, mode: number): string =>
    `${p} is writable by others than its owner (mode ${(mode & 0o7777).toString(8)}): any of them would decide what vale-ts runs (chmod go-w ${p})`;
  const given = path.resolve(file);
  let real = given;
  let exists = true;
  try {
    real = realpathSync(file);
    const st = statSync(real);
    const bad = owner(real, st.uid) ?? ((st.mode & 0o022) !== 0 ? writable(real, st.mode) : undefined);
    if (bad) return bad;
  } catch {
    // absent: its directories say who could create it (in a sticky one, anyone)
    exists = false;
  }
  // the directories of the name as given (a symbolic link in one is swapped as easily) and of what it leads to
  for (const start of new Set([path.dirname(given), path.dirname(real)])) {
    for (let dir = start; ; dir = path.dirname(dir)) {
      let st;
      try {
        st = statSync(dir);
      } catch {
        st = undefined;
      }
      if (st) {
        const bad = owner(dir, st.uid) ?? ((st.mode & 0o022) !== 0 && !(exists && st.mode & 0o1000) ? writable(dir, st.mode) : undefined);
        if (bad) return bad;
      }
      if (dir === path.dirname(dir)) break;
    }
  }
  return undefined;
}

/** Read and check a configuration file: every problem found, each at its line, or the configuration. */
export function loadConfig(file: string): { config?: ValeConfig; errors: ConfigError[] } {
  // a file that is not there is said so by the read below
  const unsafe = existsSync(file) ? unsafePath(file) : undefined;
  if (unsafe) return { errors: [new ConfigError({ line: 1, col: 1 }, `not read: ${unsafe}`)] };
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    return { errors: [new ConfigError({ line: 1, col: 1 }, `cannot read ${file}: ${(e as Error).message}`)] };
  }
  return checkConfig(text, file);
}

/** Check configuration text (as read from `file`, for relative paths). */
export function checkConfig(text: string, file: string): { config?: ValeConfig; errors: ConfigError[] } {
  let root: Node;
  try {
    root = parseJsonc(text);
  } catch (e) {
    if (e instanceof ConfigError) return { errors: [e] };
    throw e;
  }
  const errors: ConfigError[] = [];
  const err = (at: Pos, msg: string): void => void errors.push(new ConfigError(at, msg));
  const cfg: ValeConfig = { file: path.resolve(file), switches: [], access: {} };
  const obj = (n: Node, what: string, known: readonly string[]): Map<string, { keyPos: Pos; value: Node }> | undefined => {
    if (n.kind !== 'object') {
      err(n.pos, `${what} must be an object { ... }`);
      return undefined;
    }
    for (const [k, e] of n.entries) if (!known.includes(k)) err(e.keyPos, `unknown setting "${k}" in ${what} (known: ${known.join(', ')})`);
    return n.entries;
  };
  const int = (n: Node, what: string, lo: number, hi: number): number | undefined => {
    if (n.kind !== 'number' || !Number.isInteger(n.value) || n.value < lo || n.value > hi) {
      err(n.pos, `${what} must be an integer in ${lo}..${hi}`);
      return undefined;
    }
    return n.value;
  };
  const num = (n: Node, what: string, lo: number, hi: number): number | undefined => {
    if (n.kind !== 'number' || n.value < lo || n.value > hi) {
      err(n.pos, `${what} must be a number in ${lo}..${hi}`);
      return undefined;
    }
    return n.value;
  };
  const bool = (n: Node, what: string): boolean | undefined => {
    if (n.kind !== 'boolean') {
      err(n.pos, `${what} must be true or false`);
      return undefined;
    }
    return n.value;
  };
  const string = (n: Node, what: string): string | undefined => {
    if (n.kind !== 'string' || n.value === '') {
      err(n.pos, `${what} must be a non-empty string`);
      return undefined;
    }
    return n.value;
  };
  const ids = (n: Node, what: string): number[] => {
    if (n.kind !== 'array') {
      err(n.pos, `${what} must be a list of numbers, e.g. [1000, 1001]`);
      return [];
    }
    return n.items.map((x) => int(x, `each of ${what}`, 0, 2 ** 32 - 2)).filter((x): x is number => x !== undefined);
  };

  const top = obj(root, 'the configuration', ['switches', 'access', 'retainCounters', 'metrics', 'socket', 'priority']);
  if (!top) return { errors };
  const acc = top.get('access');
  if (acc) {
    const a = obj(acc.value, '"access"', ['group', 'allowUids', 'allowGids', 'shareRingsAcrossUids']);
    if (a) {
      const g = a.get('group');
      if (g) {
        const name = string(g.value, '"group"');
        if (name !== undefined) {
          const gid = groupGid(name);
          if (gid === undefined) err(g.value.pos, `group "${name}" does not exist (not in /etc/group): create it, or name an existing group`);
          else cfg.access.group = { name, gid };
        }
      }
      const u = a.get('allowUids');
      if (u) cfg.access.allowUids = ids(u.value, '"allowUids"');
      const gi = a.get('allowGids');
      if (gi) cfg.access.allowGids = ids(gi.value, '"allowGids"');
      const s = a.get('shareRingsAcrossUids');
      if (s) {
        const b = bool(s.value, '"shareRingsAcrossUids"');
        if (b) cfg.access.shareRingsAcrossUids = true;
      }
    }
  }
  const rc = top.get('retainCounters');
  if (rc) {
    const v = num(rc.value, '"retainCounters" (seconds)', 0, 1e9);
    if (v !== undefined) cfg.retainCountersS = v;
  }
  const me = top.get('metrics');
  if (me) {
    const v = string(me.value, '"metrics" ([ADDR:]PORT)');
    if (v !== undefined) {
      if (!/^(?:\[[0-9A-Fa-f:.]+\]:|[^:[\]]+:)?\d{1,5}$/.test(v) || Number(/\d+$/.exec(v)![0]) > 65535) err(me.value.pos, `"metrics" "${v}" must be PORT, ADDR:PORT or [IPV6]:PORT`);
      else cfg.metrics = v;
    }
  }
  const pr = top.get('priority');
  if (pr) {
    const v = int(pr.value, '"priority" (a nice value: lower runs first)', -20, 19);
    if (v !== undefined) cfg.priority = v;
  }
  const so = top.get('socket');
  if (so) {
    const v = string(so.value, '"socket"');
    if (v !== undefined) {
      if (!path.isAbsolute(v)) err(so.value.pos, `"socket" must be an absolute path (e.g. /run/vale-ts/vale-ts.sock)`);
      else cfg.socket = v;
    }
  }
  const sws = top.get('switches');
  const portNames = new Set<string>();
  if (sws) {
    const all = obj(sws.value, '"switches"', [...(sws.value.kind === 'object' ? sws.value.entries.keys() : [])]);
    for (const [swName, { keyPos, value }] of all ?? []) {
      if (!/^vale[A-Za-z0-9_]*$/.test(swName) || swName.length > 15) {
        err(keyPos, `switch name "${swName}" is invalid: a switch is named vale followed by letters, digits or _ (vale0, valeA)`);
        continue;
      }
      const s = obj(value, `switch "${swName}"`, ['lookup', 'batch', 'busyPollUs', 'macAge', 'macTable', 'stallMs', 'holdUs', 'ports']);
      if (!s) continue;
      const sc: SwitchConfig = { name: swName, options: {}, ports: [], pos: keyPos };
      const opt = <K extends keyof SwitchConfig['options']>(k: string, key: K, f: (n: Node) => SwitchConfig['options'][K] | undefined): void => {
        const e = s.get(k);
        if (!e) return;
        const v = f(e.value);
        if (v !== undefined) sc.options[key] = v;
      };
      opt('batch', 'batch', (n) => int(n, '"batch"', 1, 4096));
      opt('busyPollUs', 'busyPollUs', (n) => num(n, '"busyPollUs"', 0, 1e7));
      opt('macAge', 'macAgeMs', (n) => {
        const v = num(n, '"macAge" (seconds)', 0.001, 1e9);
        return v === undefined ? undefined : v * 1000;
      });
      opt('macTable', 'macTableSize', (n) => int(n, '"macTable"', 1, 1 << 24));
      opt('stallMs', 'stallMs', (n) => num(n, '"stallMs"', 1, 1e9));
      opt('holdUs', 'holdUs', (n) => int(n, '"holdUs" (µs)', 0, 1_000_000));
      const lk = s.get('lookup');
      if (lk) {
        const v = string(lk.value, '"lookup" (a module path)');
        if (v !== undefined) {
          sc.lookup = path.resolve(path.dirname(cfg.file), v);
          // a lookup module is code vale-ts runs
          const unsafe = unsafePath(sc.lookup);
          if (unsafe) err(lk.value.pos, `"lookup" not loaded: ${unsafe}`);
        }
      }
      const ports = s.get('ports');
      if (ports && ports.value.kind === 'object') {
        for (const [pName, pe] of ports.value.entries) {
          const full = `${swName}:${pName}`;
          try {
            const parsed = parsePortName(full);
            if (!parsed.isVale || parsed.port !== pName || parsed.pipe) throw new Error(`"${pName}" is not a plain port name`);
          } catch (e) {
            err(pe.keyPos, `port name "${pName}" is invalid: ${(e as Error).message}; use letters, digits and _ (e.g. "vm1")`);
            continue;
          }
          if (portNames.has(full)) err(pe.keyPos, `port ${full} is configured twice`);
          portNames.add(full);
          const p = obj(pe.value, `port "${full}"`, ['txRings', 'rxRings', 'txSlots', 'rxSlots', 'bufSize', 'lossless', 'holdUs', 'driver']);
          if (!p) continue;
          const pc: PortConfig = { name: full, lossless: false, pos: pe.keyPos };
          const g = (k: 'txRings' | 'rxRings' | 'txSlots' | 'rxSlots' | 'bufSize', lo: number, hi: number): void => {
            const e = p.get(k);
            if (!e) return;
            const v = int(e.value, `"${k}" of ${full}`, lo, hi);
            if (v !== undefined) pc[k] = v;
          };
          g('txRings', 1, MAX_RINGS);
          g('rxRings', 1, MAX_RINGS);
          g('txSlots', MIN_SLOTS, MAX_SLOTS);
          g('rxSlots', MIN_SLOTS, MAX_SLOTS);
          g('bufSize', MIN_BUF_SIZE, MAX_BUF_SIZE);
          const ll = p.get('lossless');
          if (ll) pc.lossless = bool(ll.value, `"lossless" of ${full}`) ?? false;
          const hu = p.get('holdUs');
          if (hu) {
            const v = int(hu.value, `"holdUs" (µs) of ${full}`, 0, 1_000_000);
            if (v !== undefined) pc.holdUs = v;
          }
          const d = p.get('driver');
          if (d) {
            const spec = driverSpec(d.value, full, err);
            if (spec) pc.driver = spec;
          }
          sc.ports.push(pc);
        }
      } else if (ports) {
        err(ports.value.pos, `"ports" of switch "${swName}" must be an object { "name": { ... } }`);
      }
      cfg.switches.push(sc);
    }
  }
  errors.sort((a, b) => a.pos.line - b.pos.line || a.pos.col - b.pos.col);
  return errors.length ? { errors } : { config: cfg, errors };
}

function driverSpec(n: Node, port: string, err: (at: Pos, msg: string) => void): DriverSpec | undefined {
  if (n.kind !== 'object') {
    err(n.pos, `"driver" of ${port} must be an object { "kind": "tap", ... }`);
    return undefined;
  }
  const k = n.entries.get('kind');
  if (!k || k.value.kind !== 'string') {
    err(k?.value.pos ?? n.pos, `"driver" of ${port} needs a "kind" (this vale-ts knows: ${portKinds().join(', ') || 'none'})`);
    return undefined;
  }
  const kind = k.value.value;
  if (!portKinds().includes(kind)) {
    err(k.value.pos, `unknown port kind "${kind}" for ${port} (this vale-ts knows: ${portKinds().join(', ') || 'none'})`);
    return undefined;
  }
  const spec: DriverSpec = { kind };
  for (const [key, e] of n.entries) {
    if (key === 'kind') continue;
    const v = e.value;
    if (!/^[A-Za-z][A-Za-z0-9]{0,31}$/.test(key)) err(e.keyPos, `driver setting "${key}" of ${port} is not a plain identifier`);
    else if (v.kind === 'string' || v.kind === 'number' || v.kind === 'boolean') spec[key] = v.value;
    else if (v.kind === 'array' && v.items.every((x) => x.kind === 'string')) spec[key] = v.items.map((x) => (x as { value: string }).value);
    else err(v.pos, `driver setting "${key}" of ${port} must be a string, a number, a boolean or a list of strings`);
  }
  return spec;
}

/** The gid of a group name (numeric names are gids), from /etc/group. */
export function groupGid(name: string): number | undefined {
  if (/^\d+$/.test(name)) return Number(name);
  try {
    for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
      const f = line.split(':');
      if (f[0] === name && f[2] !== undefined) return Number(f[2]);
    }
  } catch {
    // no /etc/group: no such group
  }
  return undefined;
}

/** Import a lookup module: its `lookup` export, or its default export. */
export async function loadLookup(file: string): Promise<BatchLookup> {
  const mod = (await import(pathToFileURL(file).href)) as { lookup?: unknown; default?: unknown };
  const f = mod.lookup ?? mod.default;
  if (typeof f !== 'function') throw new Error(`${file} exports no lookup function (export const lookup: BatchLookup = ..., or a default export)`);
  return f as BatchLookup;
}

/** What a port's configuration asks of its region and driver: a change here means re-creating it. */
export function portShape(p: PortConfig): string {
  const { txRings, rxRings, txSlots, rxSlots, bufSize, driver } = p;
  const d = driver ? Object.fromEntries(Object.entries(driver).sort(([a], [b]) => a.localeCompare(b))) : null;
  return JSON.stringify([txRings ?? null, rxRings ?? null, txSlots ?? null, rxSlots ?? null, bufSize ?? null, d]);
}

/** What a switch's configuration asks at creation: a change needs the switch re-created (a restart). */
export function switchShape(s: SwitchConfig): string {
  const o = s.options;
  return JSON.stringify([s.lookup ?? null, o.batch ?? null, o.busyPollUs ?? null, o.macAgeMs ?? null, o.macTableSize ?? null, o.stallMs ?? null, o.holdUs ?? null]);
}
