/**
 * Client side of the vale-ts control socket: connect, send one request,
 * await its reply (with fds), without blocking the event loop; and
 * {@link ValeClient}, the public control API (valectl's verbs) over it.
 */
import { lstatSync } from 'node:fs';
import path from 'node:path';
import { native } from '../netmap/addon.js';
import { MAX_RINGS, MAX_SLOTS, MIN_SLOTS, NM_BDG_NOPORT } from '../netmap/abi.js';
import { parsePortName } from '../netmap/name.js';
import { SwitchGoneError } from '../netmap/errors.js';
import {
  decodeReply,
  defaultSocketPath,
  encodeMessage,
  MAX_MESSAGE,
  privateSocketDir,
  PROTOCOL_VERSION,
  type ByeMessage,
  type ConfRequest,
  type PortGeometry,
  type PortListing,
  type Reply,
  type Request,
  type CreateRequest,
  type DriverSpecRequest,
  type SwitchStats,
  type AttachBackend,
} from './protocol.js';

/** The process at the socket is not one this client trusts. */
export class UntrustedSwitchError extends Error {
  readonly code = 'EACCES';
  constructor(message: string) {
    super(message);
    this.name = 'UntrustedSwitchError';
  }
}

/** Options of {@link ControlConnection.connect}. */
export interface ConnectOptions {
  /**
   * uids trusted to run the switch besides root and our own (default: from
   * VALE_TS_TRUST_UID, a comma-separated list). A register request hands the
   * switch our traffic: a switch of another user could read or forge it.
   */
  trustUids?: readonly number[];
}

function trustedUids(opts: ConnectOptions): number[] {
  const me = process.getuid?.() ?? 0;
  const extra = opts.trustUids ?? (process.env['VALE_TS_TRUST_UID'] ?? '').split(',').filter((x) => x.trim() !== '').map((x) => Number(x));
  for (const u of extra) if (!Number.isInteger(u) || u < 0) throw new RangeError(`VALE_TS_TRUST_UID: '${u}' is not a uid (comma-separated numbers)`);
  return [0, me, ...extra];
}

/** The default private directory must be ours (or root's), not a symlink, not writable by others. */
function checkSocketDir(socketPath: string, trusted: readonly number[]): void {
  const dir = path.dirname(socketPath);
  if (dir !== privateSocketDir(process.getuid?.() ?? 0)) return;
  let st;
  try {
    st = lstatSync(dir);
  } catch {
    return; // absent: the connect fails with ENOENT and says so
  }
  if (st.isSymbolicLink() || !st.isDirectory() || !trusted.includes(st.uid) || (st.mode & 0o022) !== 0) {
    throw new UntrustedSwitchError(
      `refusing the vale-ts socket ${socketPath}: its directory ${dir} is not a private directory of yours ` +
        `(owner uid ${st.uid}, mode ${(st.mode & 0o777).toString(8)}${st.isSymbolicLink() ? ', a symbolic link' : ''}); another user may have planted it: remove it and restart vale-ts`,
    );
  }
}
/** No switch is listening where we looked. */
export class SwitchUnreachableError extends Error {
  readonly code: string;
  constructor(socketPath: string, code: string) {
    super(
      `user backend: vale-ts is not running at ${socketPath} (${code}): start the switch with \`vale-ts\` ` +
        `(or \`npx vale-ts --socket PATH\`), or point VALE_TS_SOCKET / the socket option at the one that runs`,
    );
    this.name = 'SwitchUnreachableError';
    this.code = code;
  }
}

/** Granularity of the reply timeout; see {@link ControlConnection.receive}. */
const RECEIVE_TICK_MS = 50;

/** A reply with the fds that came with it. */
export interface ReplyWithFds {
  reply: Reply;
  fds: number[];
}

/** An open control connection. */
export class ControlConnection {
  readonly fd: number;
  readonly socketPath: string;
  private closed = false;

  private constructor(fd: number, socketPath: string) {
    this.fd = fd;
    this.socketPath = socketPath;
  }

  /**
   * Connect to the switch's control socket, and check who listens there
   * (SO_PEERCRED): root, our own uid, or a uid we were told to trust.
   */
  static connect(socketPath: string, opts: ConnectOptions = {}): ControlConnection {
    const trusted = trustedUids(opts);
    checkSocketDir(socketPath, trusted);
    let fd: number;
    try {
      fd = native.unixConnect(socketPath);
    } catch (e) {
      const code = (e as { code?: string }).code ?? 'EIO';
      if (code === 'ENOENT' || code === 'ECONNREFUSED') throw new SwitchUnreachableError(socketPath, code);
      throw e;
    }
    let uid: number;
    try {
      uid = native.peerCred(fd).uid;
    } catch (e) {
      native.close(fd);
      throw e;
    }
    if (!trusted.includes(uid)) {
      native.close(fd);
      throw new UntrustedSwitchError(
        `refusing the vale-ts at ${socketPath}: it runs as uid ${uid}, not root or you (uid ${trusted[1]}); ` +
          `another user may be listening there. If you trust it, set VALE_TS_TRUST_UID=${uid}`,
      );
    }
    return new ControlConnection(fd, socketPath);
  }

  /** Send a request and wait for its reply (timeout in ms). */
  async request(req: Request, timeoutMs = 5000): Promise<ReplyWithFds> {
    let sent: boolean;
    try {
      sent = native.sendMsg(this.fd, encodeMessage(req), []);
    } catch (e) {
      // refused at accept: the switch said why, then closed; read that
      const m = native.recvMsg(this.fd, MAX_MESSAGE);
      if (m && !m.eof) {
        const r = decodeReply(m.data);
        for (const f of m.fds) native.close(f);
        if ('ok' in r && !r.ok) return { reply: r, fds: [] };
      }
      throw e;
    }
    if (!sent) throw new Error('control socket is full');
    const msg = await this.receive(timeoutMs);
    if (!msg) throw new Error(`vale-ts at ${this.socketPath} did not answer '${req.op}' within ${timeoutMs} ms`);
    if ('op' in msg.reply && msg.reply.op === 'bye') throw new Error(`vale-ts is shutting down: ${(msg.reply as ByeMessage).reason}`);
    return { reply: msg.reply as Reply, fds: msg.fds };
  }

  /**
   * Wait for the next message; null on timeout; throws on EOF. The timeout
   * counts only time this event loop was running: when the loop itself was
   * stalled (a busy machine, a long GC, a switch hosted in this very process
   * that has not had its turn yet) the reply and the timer are due together,
   * and the timer, run first, must not blame the switch for it.
   */
  receive(timeoutMs: number): Promise<{ reply: Reply | ByeMessage; fds: number[] } | null> {
    const tryRecv = (): { reply: Reply | ByeMessage; fds: number[] } | null => {
      const m = native.recvMsg(this.fd, MAX_MESSAGE);
      if (m === null) return null;
      if (m.eof) {
        throw new SwitchGoneError(
          `vale-ts at ${this.socketPath} closed the connection without answering: it exited or was killed, or refused ` +
            `this client (a switch out of file descriptors or over a limit does that; its log says which)`,
        );
      }
      if (m.truncated) {
        for (const f of m.fds) native.close(f);
        throw new Error('control message truncated');
      }
      return { reply: decodeReply(m.data), fds: m.fds };
    };
    const now = tryRecv();
    if (now) return Promise.resolve(now);
    return new Promise((resolve, reject) => {
      const w = new native.FdWatcher(this.fd, () => {
        try {
          const m = tryRecv();
          if (!m) return;
          clearInterval(timer);
          w.close();
          resolve(m);
        } catch (e) {
          clearInterval(timer);
          w.close();
          reject(e);
        }
      });
      let waited = 0;
      let last = Date.now();
      const timer = setInterval(() => {
        const now = Date.now();
        // a late tick counts as one tick: the rest was the loop's own stall
        waited += Math.min(now - last, RECEIVE_TICK_MS);
        last = now;
        if (waited < timeoutMs) return;
        clearInterval(timer);
        w.close();
        resolve(null);
      }, RECEIVE_TICK_MS);
      w.start(1);
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    native.close(this.fd);
  }
}

/** One request on a fresh connection, closed afterwards (vale-ctl-ts). */
export async function requestOnce(socketPath: string, req: Request, timeoutMs = 5000): Promise<Reply> {
  const c = ControlConnection.connect(socketPath);
  try {
    const { reply, fds } = await c.request(req, timeoutMs);
    for (const f of fds) native.close(f);
    return reply;
  } finally {
    c.close();
  }
}

/** A control request the switch (or the kernel) refused, or could not be asked. */
export class ValeControlError extends Error {
  /** errno name: ENOENT, EEXIST, EBUSY, EINVAL, EOPNOTSUPP, ECONNREFUSED... */
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = 'ValeControlError';
    this.code = code;
  }
}

/** A port's place on its switch, as valectl -l / the full listing show it. */
export interface ValePortIndex {
  /** the port name (valeX:Y) */
  name: string;
  /** the switch's index (valectl's bridge_idx) */
  bridgeIndex: number;
  /** {@link abi}'s NM_BDG_NOPORT when the switch exists but has no such port */
  portIndex: number;
  /** vale-ts: created with {@link ValeClient.create} (outlives its users) */
  persistent?: boolean;
  /** vale-ts: a client holds the port */
  attached?: boolean;
  /** vale-ts: pid of the process holding the port */
  pid?: number;
  /** vale-ts: what serves a driver port, e.g. "tap vmtap0 (vnet_hdr+offloads)" */
  driver?: string;
}

/** A port's geometry, as valectl -g / -n show it. */
export interface ValePortInfo {
  /** the port name (valeX:Y) */
  name: string;
  /** bytes of the port's memory region */
  memsize: number;
  /** slots per tx ring */
  txSlots: number;
  /** slots per rx ring */
  rxSlots: number;
  /** tx rings */
  txRings: number;
  /** rx rings */
  rxRings: number;
  /** the memory allocator's id (vale-ts: every port has its own region) */
  memId: number;
  /** bytes per buffer (vale-ts) */
  bufSize?: number;
  /** where the port's netmap_if lies in its region (vale-ts) */
  nifpOffset?: number;
  /** the port's index on its switch ({@link ValeClient.create} answers it) */
  portIndex?: number;
}

/** Rings and slots of a port {@link ValeClient.create} makes; missing or 0 means the default. */
export interface ValePortConfig {
  /** slots per tx ring */
  txSlots?: number;
  /** slots per rx ring */
  rxSlots?: number;
  /** tx rings */
  txRings?: number;
  /** rx rings */
  rxRings?: number;
}

/** Options of {@link ValeClient}. */
export interface ValeClientOptions {
  /** control socket (default: VALE_TS_SOCKET, then the standard path) */
  socket?: string;
  /** how long to wait for each reply (default 5000 ms) */
  timeoutMs?: number;
}

/**
 * Control of a running vale-ts switch, as netmap's valectl controls kernel
 * VALE (the kernel's counterpart is {@link KernelValeControl}): list ports,
 * port geometry, persistent ports, attach/detach, and counters with the MAC
 * table (vale-ts only). Every call is one request on a fresh connection.
 * Failures reject with {@link ValeControlError}, whose `code` is the errno
 * name netmap would give (`ENOENT` for no such switch, `ENXIO` for no such
 * port, `EEXIST`, `EBUSY`...).
 *
 * ```ts
 * const vale = new ValeClient();
 * await vale.create('vale0:p1', { txSlots: 512 });
 * for (const p of await vale.list()) console.log(p.name, p.portIndex);
 * const [sw] = await vale.stats('vale0');
 * ```
 */
export class ValeClient {
  /** The control socket this client talks to. */
  readonly socketPath: string;
  private readonly timeoutMs: number;

  constructor(opts: ValeClientOptions = {}) {
    this.socketPath = defaultSocketPath(opts.socket);
    this.timeoutMs = opts.timeoutMs ?? 5000;
  }

  private async ask(req: Request): Promise<Reply & { ok: true }> {
    let reply: Reply;
    try {
      reply = await requestOnce(this.socketPath, req, this.timeoutMs);
    } catch (e) {
      if (e instanceof SwitchUnreachableError) {
        throw new ValeControlError(
          e.code,
          `vale-ts is not running at ${this.socketPath}: start it with \`vale-ts --socket ${this.socketPath}\` ` +
            `(or plain \`vale-ts\` for the default socket), or point --socket / VALE_TS_SOCKET at the one that runs`,
        );
      }
      const code = (e as { code?: unknown }).code;
      throw new ValeControlError(typeof code === 'string' ? code : 'EIO', `vale-ts at ${this.socketPath}: ${(e as Error).message}`);
    }
    if (!reply.ok) throw new ValeControlError(reply.code, reply.error);
    return reply;
  }

  private static unexpected(op: string, r: Reply): ValeControlError {
    return new ValeControlError('EPROTO', `vale-ts answered '${op}' with ${JSON.stringify(r).slice(0, 200)}`);
  }

  /** Every port of every switch (asked for in pages when they do not fit one message). */
  async list(): Promise<ValePortIndex[]> {
    const out: ValePortIndex[] = [];
    for (;;) {
      const r = await this.ask(out.length ? { v: PROTOCOL_VERSION, op: 'list', offset: out.length } : { v: PROTOCOL_VERSION, op: 'list' });
      if (r.op !== 'list' || !Array.isArray(r.ports)) throw ValeClient.unexpected('list', r);
      out.push(...r.ports.map(listing));
      // an older vale-ts sends no total: everything came at once
      if (r.portsTotal === undefined || r.ports.length === 0 || out.length >= r.portsTotal) return out;
    }
  }

  /**
   * One port's indices (valectl -l). As in netmap, a switch that exists
   * without the port answers portIndex NM_BDG_NOPORT; a switch that does not
   * exist rejects with ENOENT.
   */
  async lookup(name: string): Promise<ValePortIndex> {
    try {
      const r = await this.ask({ v: PROTOCOL_VERSION, op: 'list', name });
      if (r.op !== 'list' || !Array.isArray(r.ports) || !r.ports[0]) throw ValeClient.unexpected('list', r);
      return listing(r.ports[0]);
    } catch (e) {
      if (!(e instanceof ValeControlError) || e.code !== 'ENXIO') throw e;
      const sw = switchOf(name);
      if (sw === undefined) throw e;
      let stats: SwitchStats[];
      try {
        stats = await this.stats(sw);
      } catch (e2) {
        if (e2 instanceof ValeControlError && e2.code === 'ENXIO') throw new ValeControlError('ENOENT', `no switch ${sw} on this vale-ts`);
        throw e2;
      }
      const s = stats[0];
      if (!s) throw new ValeControlError('ENOENT', `no switch ${sw} on this vale-ts`);
      return { name, bridgeIndex: s.bridgeIndex, portIndex: NM_BDG_NOPORT };
    }
  }

  /** A port's geometry (valectl -g). */
  async info(name: string): Promise<ValePortInfo> {
    const r = await this.ask({ v: PROTOCOL_VERSION, op: 'info', name });
    if (r.op !== 'info') throw ValeClient.unexpected('info', r);
    return geometry(r.name, r);
  }

  /**
   * Create a persistent port valeX:Y (valectl -n): it lives until
   * {@link ValeClient.remove}, whoever opens and closes it meanwhile. Ring
   * and slot counts outside netmap's VALE limits reject with EINVAL; a
   * `memId` other than 0 with EOPNOTSUPP (every vale-ts port has a region of
   * its own).
   */
  async create(name: string, conf: ValePortConfig = {}, opts: { memId?: number; driver?: DriverSpecRequest; vnetHdrLen?: 0 | 10 | 12 } = {}): Promise<ValePortInfo> {
    if (switchOf(name) === undefined) {
      throw new ValeControlError(
        'EINVAL',
        `'${name}' is not a vale port name: vale-ts creates persistent ports on a switch, so name it valeX:Y ` +
          `(e.g. -n vale0:${name}); OS-visible interfaces need the netmap kernel module`,
      );
    }
    if (opts.memId !== undefined && opts.memId !== 0) {
      throw new ValeControlError(
        'EOPNOTSUPP',
        `mem_id ${opts.memId} cannot be honoured: vale-ts gives every port its own memory region (leave out -m)`,
      );
    }
    const req: CreateRequest = { v: PROTOCOL_VERSION, op: 'create', name, conf: confRequest(conf) };
    // a driver port (TAP, vhost-user, ...): vale-ts itself serves the port's far side
    if (opts.driver) req.driver = opts.driver;
    if (opts.vnetHdrLen !== undefined) req.vnetHdrLen = opts.vnetHdrLen;
    const r = await this.ask(req);
    if (r.op !== 'create') throw ValeClient.unexpected('create', r);
    return { ...geometry(r.name, r), portIndex: r.portIndex };
  }

  /** Remove a persistent port (valectl -r); EBUSY while a client holds it. */
  async remove(name: string): Promise<void> {
    if (switchOf(name) === undefined) {
      throw new ValeControlError('EINVAL', `'${name}' is not a vale port name: vale-ts persistent ports are named valeX:Y (e.g. -r vale0:${name})`);
    }
    const r = await this.ask({ v: PROTOCOL_VERSION, op: 'remove', name });
    if (r.op !== 'remove') throw ValeClient.unexpected('remove', r);
  }

  /**
   * Attach a host interface to a switch (valectl -a, or -h with
   * `hostStack`). Resolves with the port index; vale-ts rejects with
   * EOPNOTSUPP and says why where it cannot reach host interfaces.
   */
  async attach(name: string, opts: { hostStack?: boolean; backend?: AttachBackend; inline?: boolean } = {}): Promise<number> {
    const r = await this.ask({
      v: PROTOCOL_VERSION, op: 'attach', name, hostStack: opts.hostStack ?? false,
      ...(opts.backend ? { backend: opts.backend } : {}), ...(opts.inline !== undefined ? { inline: opts.inline } : {}),
    });
    if (r.op !== 'attach') throw ValeClient.unexpected('attach', r);
    return r.portIndex;
  }

  /** Detach a host interface (valectl -d); resolves with its port index. */
  async detach(name: string): Promise<number> {
    const r = await this.ask({ v: PROTOCOL_VERSION, op: 'detach', name });
    if (r.op !== 'detach') throw ValeClient.unexpected('detach', r);
    return r.portIndex;
  }

  /** Per-port counters (every drop reason), totals and MAC table of every switch, or of one. */
  async stats(switchName?: string): Promise<SwitchStats[]> {
    const req: Request = switchName === undefined ? { v: PROTOCOL_VERSION, op: 'stats' } : { v: PROTOCOL_VERSION, op: 'stats', switch: switchName };
    const r = await this.ask(req);
    if (r.op !== 'stats' || !Array.isArray(r.switches)) throw ValeClient.unexpected('stats', r);
    return r.switches;
  }
}

function listing(l: PortListing): ValePortIndex {
  const r: ValePortIndex = { name: l.name, bridgeIndex: l.bridgeIndex, portIndex: l.portIndex, persistent: l.persistent, attached: l.attached };
  if (l.pid !== undefined) r.pid = l.pid;
  if (l.driver !== undefined) r.driver = l.driver;
  return r;
}

function geometry(name: string, g: PortGeometry): ValePortInfo {
  return {
    name,
    memsize: g.memsize,
    txSlots: g.txSlots,
    rxSlots: g.rxSlots,
    txRings: g.txRings,
    rxRings: g.rxRings,
    memId: g.memId,
    bufSize: g.bufSize,
    nifpOffset: g.nifpOffset,
  };
}

/** The switch of a valeX:Y name, or undefined when it is not one. */
function switchOf(name: string): string | undefined {
  try {
    const p = parsePortName(name);
    return p.isVale && p.switchName !== undefined && !p.pipe ? p.switchName : undefined;
  } catch {
    return undefined;
  }
}

/** Check a port config against netmap's VALE bounds (NM_BDG_MAXSLOTS / NM_BDG_MAXRINGS); 0 means the default and is left out. */
function confRequest(c: ValePortConfig): ConfRequest {
  const out: ConfRequest = {};
  const check = (what: string, v: number | undefined, lo: number, hi: number): number | undefined => {
    if (v === undefined || v === 0) return undefined;
    if (!Number.isInteger(v) || v < lo || v > hi) throw new ValeControlError('EINVAL', `${what} ${v} is out of range: use ${lo}..${hi} (0 for the default)`);
    return v;
  };
  const ts = check('tx_slots', c.txSlots, MIN_SLOTS, MAX_SLOTS);
  const rs = check('rx_slots', c.rxSlots, MIN_SLOTS, MAX_SLOTS);
  const tr = check('tx_rings', c.txRings, 1, MAX_RINGS);
  const rr = check('rx_rings', c.rxRings, 1, MAX_RINGS);
  if (ts !== undefined) out.txSlots = ts;
  if (rs !== undefined) out.rxSlots = rs;
  if (tr !== undefined) out.txRings = tr;
  if (rr !== undefined) out.rxRings = rr;
  return out;
}
