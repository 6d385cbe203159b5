/**
 * The vale-ts control protocol: JSON messages over a SOCK_SEQPACKET unix
 * socket (one message per packet), fds carried with SCM_RIGHTS. Versioned;
 * documented in docs/control-protocol.md. Every incoming message is checked
 * here before anything acts on it.
 */
import path from 'node:path';
import { userInfo } from 'node:os';
import { MAX_BUF_SIZE, MAX_EXTRA_BUFS, MAX_RINGS, MAX_SLOTS, MIN_BUF_SIZE, MIN_SLOTS, NETMAP_REQ_IFNAMSIZ, NETMAP_RING_MASK, NR_REG_ONE_SW } from '../netmap/abi.js';

/** Protocol version spoken by this build. */
export const PROTOCOL_VERSION = 1;
/** Largest message either side accepts. */
export const MAX_MESSAGE = 65536;

/**
 * Where the control socket is: --socket, VALE_TS_SOCKET, then the default:
 * /run/vale-ts/ for root, $XDG_RUNTIME_DIR, else a private directory
 * /tmp/vale-ts-UID/ that the switch creates 0700 and both sides verify
 * (see {@link privateSocketDir}) — never a bare file in a world-writable
 * directory, where another user could listen first.
 */
export function defaultSocketPath(explicit?: string): string {
  if (explicit) return explicit;
  const env = process.env['VALE_TS_SOCKET'];
  if (env) return env;
  const uid = process.getuid?.() ?? userInfo().uid;
  if (uid === 0) return '/run/vale-ts/vale-ts.sock';
  const xdg = process.env['XDG_RUNTIME_DIR'];
  if (xdg) return path.join(xdg, 'vale-ts.sock');
  return path.join(privateSocketDir(uid), 'vale-ts.sock');
}

/** The private socket directory used without XDG_RUNTIME_DIR. */
export function privateSocketDir(uid: number): string {
  return path.join('/tmp', `vale-ts-${uid}`);
}

/** Ring/slot configuration asked for by a client (netmap's @conf:). */
export interface ConfRequest {
  txRings?: number;
  rxRings?: number;
  txSlots?: number;
  rxSlots?: number;
}

/** Register a port (netmap's NETMAP_REQ_REGISTER). Reply carries fds: region memfd, client doorbell, switch doorbell. */
export interface RegisterRequest {
  v: number;
  op: 'register';
  /** valeX:Y */
  name: string;
  nrMode: number;
  ringId: number;
  flags: number;
  conf: ConfRequest;
  bufSize?: number;
  extraBufs?: number;
  lossless?: boolean;
  /**
   * The virtio-net header length the port's frames carry (0, 10 or 12), as
   * NETMAP_REQ_PORT_HDR_SET sets it: for a port this creates, or a port
   * nobody holds; a held port with another length is refused (EBUSY).
   */
  vnetHdrLen?: 0 | 10 | 12;
}

/** List ports (valectl with no argument, or -l NAME). */
export interface ListRequest {
  v: number;
  op: 'list';
  name?: string;
  /** first port to return (default 0): a reply holds what fits one message, `portsTotal` says how many there are */
  offset?: number;
}

/** Port info (valectl -g). */
export interface InfoRequest {
  v: number;
  op: 'info';
  name: string;
}

/** Create a persistent port (valectl -n). */
export interface CreateRequest {
  v: number;
  op: 'create';
  name: string;
  conf: ConfRequest;
  bufSize?: number;
  /** The virtio-net header length the port's frames carry (0, 10 or 12). */
  vnetHdrLen?: 0 | 10 | 12;
  /**
   * A port served by a driver inside vale-ts (TAP, vhost-user, socket
   * netdev, Linux interface, VXLAN) rather than by a client program: its kind
   * and flat settings, validated by that kind's factory (src/ports/).
   */
  driver?: DriverSpecRequest;
}

/** A driver spec as sent: a kind and flat settings (strings, numbers, booleans, string lists). */
export interface DriverSpecRequest {
  kind: string;
  [setting: string]: string | number | boolean | string[];
}

/** Remove a persistent port (valectl -r). */
export interface RemoveRequest {
  v: number;
  op: 'remove';
  name: string;
}

/** Attach / detach a host interface (valectl -a / -h / -d). */
export interface AttachRequest {
  v: number;
  op: 'attach' | 'detach';
  name: string;
  hostStack?: boolean;
  /**
   * What serves the interface (attach only): 'afxdp' (AF_XDP, zero-copy
   * or copy mode, whichever the driver allows), 'packet' (AF_PACKET
   * TPACKET_V2 rx ring), or 'auto' (the default: AF_XDP where possible, else
   * AF_PACKET).
   */
  backend?: AttachBackend;
  /**
   * Attach only: true runs the interface's datapath in the switch's own
   * rounds (no driver thread), false in a thread of its own; absent: vale-ts's
   * default (docs/linux-interfaces.md).
   */
  inline?: boolean;
}

/** The backends an attached interface can have; see {@link AttachRequest.backend}. */
export type AttachBackend = 'auto' | 'afxdp' | 'packet';
/** Every {@link AttachBackend}, for validation and usage texts. */
export const ATTACH_BACKENDS: readonly AttachBackend[] = ['auto', 'afxdp', 'packet'];

/**
 * Counters and MAC tables. A reply never exceeds {@link MAX_MESSAGE}: MAC
 * entries (then ports) beyond what fits are left out, and the totals say
 * how many there are, so a client pages with the offsets.
 */
export interface StatsRequest {
  v: number;
  op: 'stats';
  switch?: string;
  /** first MAC entry to return (default 0) */
  macOffset?: number;
  /** most MAC entries to return (default {@link DEFAULT_MAC_LIMIT}; 0: none) */
  macLimit?: number;
  /** first port to return (default 0) */
  portOffset?: number;
}

/** MAC entries in a stats reply unless the request says otherwise. */
export const DEFAULT_MAC_LIMIT = 256;

/** Any request. */
export type Request = RegisterRequest | ListRequest | InfoRequest | CreateRequest | RemoveRequest | AttachRequest | StatsRequest;

/** A port as listed. */
export interface PortListing {
  name: string;
  bridgeIndex: number;
  portIndex: number;
  persistent: boolean;
  attached: boolean;
  pid?: number;
  /** what serves a driver port, e.g. "tap vmtap0 (vnet_hdr)"; absent for client ports */
  driver?: string;
}

/** Port geometry (register reply, info). */
export interface PortGeometry {
  memsize: number;
  nifpOffset: number;
  txRings: number;
  rxRings: number;
  txSlots: number;
  rxSlots: number;
  bufSize: number;
  memId: number;
}

/** Per-port counters in a stats reply. */
export interface PortStats {
  /** the port's name (valeX:Y) */
  name: string;
  /** its index on the switch */
  portIndex: number;
  /** the switch's counters of the port (docs/counters.md) */
  counters: Record<string, number>;
  /** a driver port: what serves it and the driver's own counters */
  driver?: { describe: string; counters: Record<string, number> };
  /** frames in its rings now: published on tx and not yet taken (in flight), delivered on rx and not yet released */
  occupancy?: { txQueued: number; rxQueued: number };
}

/** The last counters of a port that has gone, kept under its name for a while. */
export interface DepartedPortStats {
  /** the name it had (valeX:Y) */
  name: string;
  /** the index it had on the switch */
  portIndex: number;
  /** its counters when it went */
  counters: Record<string, number>;
  /** when it went (ISO 8601) */
  departedAt: string;
  /** when its counters will be forgotten unless `vale-ctl-ts -r NAME` forgets them first (ISO 8601) */
  expiresAt: string;
}

/**
 * The terms of a switch's conservation identity, from its totals and its
 * rings at one instant: frames clients published = taken + inFlight, and
 * copies = delivered + dropped, where each unicast frame taken is one copy
 * and each flooded frame one copy per other port (see docs/counters.md).
 */
export interface Conservation {
  /** frames the switch took from tx rings (totals.rxFrames) */
  taken: number;
  /** copies put into rx rings (totals.txFrames, a segmented GSO copy once: - vnetSegments + vnetSegmented) */
  delivered: number;
  /** frames and copies counted under a drop reason (every drop* total) */
  dropped: number;
  /** frames sent to every other port (totals.flooded) */
  flooded: number;
  /**
   * copies the switch made: one per unicast frame taken, one per other port
   * for each flooded frame (taken - flooded + totals.floodCopies). Exact at
   * any instant: copies = delivered + dropped.
   */
  copies: number;
  /** frames published on tx rings and not yet taken */
  inFlight: number;
  /** delivered frames still in rx rings, not yet released by their clients */
  rxQueued: number;
}

/** A switch in a stats reply. */
export interface SwitchStats {
  /** the switch's name (vale0) */
  name: string;
  /** its index among vale-ts's switches, as valectl shows bridge_idx */
  bridgeIndex: number;
  /** its ports now: a page from portsOffset (see portsTotal) */
  ports: PortStats[];
  /** a page of the table: macTableOffset.. (at most the limit asked for, and what fits) */
  macTable: { mac: string; port: string; ageMs: number }[];
  /** entries in the whole table */
  macTableTotal: number;
  /** where the page in macTable starts */
  macTableOffset: number;
  /** the MAC table's own counters (learned, moved, aged, tableFull) */
  macTableCounters: Record<string, number>;
  /** ports of the switch (`ports` is the page from portOffset that fits) */
  portsTotal: number;
  /** where the page in ports starts */
  portsOffset: number;
  /** switch-wide counters (wakeups, doorbell backoffs, stalls) */
  switchCounters?: Record<string, number>;
  /** counters summed over all ports, including ports that have gone (and earlier instances of the switch) */
  totals: Record<string, number>;
  /** the switch has no ports now: what it counted is kept while vale-ts lives */
  gone?: boolean;
  /** ports that have gone, with their last counters (the first ones by name that fit in the reply) */
  departedPorts?: DepartedPortStats[];
  /** ports that have gone whose counters are kept, all of them */
  departedPortsTotal?: number;
  /** when a switch of this name was first created in this vale-ts (ISO 8601) */
  createdAt?: string;
  /** last port event, or last stats read that saw frames move (ISO 8601) */
  lastActivityAt?: string;
  /** seconds since createdAt */
  uptimeS?: number;
  /** the frame conservation check over totals (copies = delivered + dropped) */
  conservation?: Conservation;
  /** open monitors (valeX:Y/r, /t, /rt): not ports, so outside the totals; txFrames are the copies they got, dropMonitor those lost to a full ring */
  monitors?: { name: string; watches: string; counters: Record<string, number> }[];
}

/** Replies. */
export type Reply =
  | { v: number; ok: false; code: string; error: string }
  | ({ v: number; ok: true; op: 'register'; switch: string; port: string; bridgeIndex: number; portIndex: number } & PortGeometry)
  | { v: number; ok: true; op: 'list'; ports: PortListing[]; portsTotal?: number; offset?: number }
  | ({ v: number; ok: true; op: 'info'; name: string } & PortGeometry)
  | ({ v: number; ok: true; op: 'create'; name: string; portIndex: number } & PortGeometry)
  | { v: number; ok: true; op: 'remove' | 'attach' | 'detach'; name: string; portIndex: number }
  | { v: number; ok: true; op: 'stats'; switches: SwitchStats[]; switchesTotal?: number; server?: Record<string, number> };

/** Sent by the switch before it closes a client's socket. */
export interface ByeMessage {
  v: number;
  op: 'bye';
  reason: string;
  /** set when the switch stays and only the port this connection's monitor watches went: its name (the connection stays open until the client closes it) */
  gone?: string;
}

/** A malformed message: the text says what is wrong. */
export class ProtocolError extends Error {
  readonly code = 'EPROTO';
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

/** Serialise a message. */
export function encodeMessage(m: Request | Reply | ByeMessage): Uint8Array {
  const b = enc.encode(JSON.stringify(m));
  if (b.length > MAX_MESSAGE) throw new ProtocolError(`message of ${b.length} bytes exceeds ${MAX_MESSAGE}`);
  return b;
}

function obj(data: Uint8Array): Record<string, unknown> {
  let text: string;
  try {
    text = dec.decode(data);
  } catch {
    throw new ProtocolError('message is not valid UTF-8');
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new ProtocolError('message is not valid JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ProtocolError('message is not a JSON object');
  return v as Record<string, unknown>;
}

/** Longest port name: what fits nmreq_header.nr_name with its NUL. */
const MAX_NAME = NETMAP_REQ_IFNAMSIZ - 1;

function str(o: Record<string, unknown>, k: string, max = MAX_NAME): string {
  const v = o[k];
  if (typeof v !== 'string' || v.length === 0 || v.length > max) throw new ProtocolError(`field '${k}' must be a string of 1..${max} characters`);
  return v;
}

function int(o: Record<string, unknown>, k: string, lo: number, hi: number, dflt?: number): number {
  const v = o[k];
  if (v === undefined && dflt !== undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) throw new ProtocolError(`field '${k}' must be an integer in ${lo}..${hi}`);
  return v;
}

function optInt(o: Record<string, unknown>, k: string, lo: number, hi: number): number | undefined {
  return o[k] === undefined ? undefined : int(o, k, lo, hi);
}

function optVnetHdrLen(o: Record<string, unknown>): 0 | 10 | 12 | undefined {
  const h = o['vnetHdrLen'];
  if (h === undefined) return undefined;
  if (h !== 0 && h !== 10 && h !== 12) throw new ProtocolError("field 'vnetHdrLen' must be 0, 10 or 12 (a virtio-net header's lengths)");
  return h;
}

function conf(o: Record<string, unknown>): ConfRequest {
  const c = o['conf'] ?? {};
  if (typeof c !== 'object' || c === null || Array.isArray(c)) throw new ProtocolError("field 'conf' must be an object");
  const r = c as Record<string, unknown>;
  const out: ConfRequest = {};
  const txRings = optInt(r, 'txRings', 1, MAX_RINGS);
  const rxRings = optInt(r, 'rxRings', 1, MAX_RINGS);
  const txSlots = optInt(r, 'txSlots', MIN_SLOTS, MAX_SLOTS);
  const rxSlots = optInt(r, 'rxSlots', MIN_SLOTS, MAX_SLOTS);
  if (txRings !== undefined) out.txRings = txRings;
  if (rxRings !== undefined) out.rxRings = rxRings;
  if (txSlots !== undefined) out.txSlots = txSlots;
  if (rxSlots !== undefined) out.rxSlots = rxSlots;
  return out;
}

/** Settings in one driver spec, and the longest string in it (paths, lists of addresses). */
const MAX_DRIVER_SETTINGS = 32;
const MAX_DRIVER_STRING = 4096;

function driverSpec(d: unknown): DriverSpecRequest {
  if (typeof d !== 'object' || d === null || Array.isArray(d)) throw new ProtocolError("field 'driver' must be an object");
  const r = d as Record<string, unknown>;
  const kind = r['kind'];
  if (typeof kind !== 'string' || !/^[a-z][a-z0-9-]{0,31}$/.test(kind)) throw new ProtocolError("field 'driver.kind' must be a lowercase name such as 'tap'");
  const keys = Object.keys(r);
  if (keys.length > MAX_DRIVER_SETTINGS) throw new ProtocolError(`field 'driver' has ${keys.length} settings (at most ${MAX_DRIVER_SETTINGS})`);
  const out: DriverSpecRequest = { kind };
  for (const k of keys) {
    if (k === 'kind') continue;
    if (!/^[A-Za-z][A-Za-z0-9]{0,31}$/.test(k)) throw new ProtocolError(`driver setting name ${JSON.stringify(k.slice(0, 40))} is not a plain identifier`);
    const v = r[k];
    const okString = (x: unknown): x is string => typeof x === 'string' && x.length <= MAX_DRIVER_STRING;
    if (okString(v) || typeof v === 'boolean' || (typeof v === 'number' && Number.isFinite(v))) out[k] = v;
    else if (Array.isArray(v) && v.length <= MAX_DRIVER_SETTINGS && v.every(okString)) out[k] = v as string[];
    else throw new ProtocolError(`driver setting '${k}' must be a string (≤ ${MAX_DRIVER_STRING}), a finite number, a boolean or a list of strings`);
  }
  return out;
}

function version(o: Record<string, unknown>): number {
  const v = o['v'];
  if (v !== PROTOCOL_VERSION) {
    throw new ProtocolError(`protocol version ${String(v)} is not supported (this side speaks ${PROTOCOL_VERSION}): use matching @x/netmap versions`);
  }
  return v;
}

/** Parse and check a request (switch side). */
export function decodeRequest(data: Uint8Array): Request {
  const o = obj(data);
  const v = version(o);
  const op = o['op'];
  switch (op) {
    case 'register': {
      const r: RegisterRequest = {
        v,
        op,
        name: str(o, 'name'),
        nrMode: int(o, 'nrMode', 0, NR_REG_ONE_SW, 1),
        ringId: int(o, 'ringId', 0, NETMAP_RING_MASK, 0),
        flags: int(o, 'flags', 0, 2 ** 32 - 1, 0),
        conf: conf(o),
      };
      const bufSize = optInt(o, 'bufSize', MIN_BUF_SIZE, MAX_BUF_SIZE);
      const extraBufs = optInt(o, 'extraBufs', 0, MAX_EXTRA_BUFS);
      if (bufSize !== undefined) r.bufSize = bufSize;
      if (extraBufs !== undefined) r.extraBufs = extraBufs;
      const hdr = optVnetHdrLen(o);
      if (hdr !== undefined) r.vnetHdrLen = hdr;
      if (o['lossless'] !== undefined) {
        if (typeof o['lossless'] !== 'boolean') throw new ProtocolError("field 'lossless' must be a boolean");
        r.lossless = o['lossless'];
      }
      return r;
    }
    case 'list': {
      const r: ListRequest = o['name'] === undefined ? { v, op } : { v, op, name: str(o, 'name') };
      const offset = optInt(o, 'offset', 0, 2 ** 20);
      if (offset !== undefined) r.offset = offset;
      return r;
    }
    case 'info':
    case 'remove':
      return { v, op, name: str(o, 'name') };
    case 'create': {
      const r: CreateRequest = { v, op, name: str(o, 'name'), conf: conf(o) };
      const bufSize = optInt(o, 'bufSize', MIN_BUF_SIZE, MAX_BUF_SIZE);
      if (bufSize !== undefined) r.bufSize = bufSize;
      const hdr = optVnetHdrLen(o);
      if (hdr !== undefined) r.vnetHdrLen = hdr;
      if (o['driver'] !== undefined) r.driver = driverSpec(o['driver']);
      return r;
    }
    case 'attach':
    case 'detach': {
      const r: AttachRequest = { v, op, name: str(o, 'name'), hostStack: o['hostStack'] === true };
      const b = o['backend'];
      if (b !== undefined) {
        if (op !== 'attach' || typeof b !== 'string' || !(ATTACH_BACKENDS as readonly string[]).includes(b)) {
          throw new ProtocolError(`'backend' must be one of ${ATTACH_BACKENDS.join(', ')}, on attach only`);
        }
        r.backend = b as AttachBackend;
      }
      const il = o['inline'];
      if (il !== undefined) {
        if (op !== 'attach' || typeof il !== 'boolean') throw new ProtocolError("'inline' must be true or false, on attach only");
        r.inline = il;
      }
      return r;
    }
    case 'stats': {
      const r: StatsRequest = { v, op };
      if (o['switch'] !== undefined) r.switch = str(o, 'switch');
      const macOffset = optInt(o, 'macOffset', 0, 2 ** 31);
      const macLimit = optInt(o, 'macLimit', 0, 2 ** 31);
      const portOffset = optInt(o, 'portOffset', 0, 4096);
      if (macOffset !== undefined) r.macOffset = macOffset;
      if (macLimit !== undefined) r.macLimit = macLimit;
      if (portOffset !== undefined) r.portOffset = portOffset;
      return r;
    }
    default:
      throw new ProtocolError(`unknown op ${JSON.stringify(op)}: expected register, list, info, create, remove, attach, detach or stats`);
  }
}

/** Parse a reply or bye (client side). Shape checks are the caller's, per op. */
export function decodeReply(data: Uint8Array): Reply | ByeMessage {
  const o = obj(data);
  version(o);
  if (o['op'] === 'bye') return o as unknown as ByeMessage;
  if (typeof o['ok'] !== 'boolean') throw new ProtocolError("reply lacks 'ok'");
  if (o['ok'] === false && (typeof o['code'] !== 'string' || typeof o['error'] !== 'string')) throw new ProtocolError('error reply lacks code/error');
  return o as unknown as Reply;
}
