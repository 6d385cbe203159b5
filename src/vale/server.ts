/**
 * The vale-ts control server: a unix SOCK_SEQPACKET socket where clients
 * register ports (receiving the region and doorbells as fds) and tools list,
 * create and remove ports. Hosts any number of switches, each created with
 * its first port. A client's port lives as long as its connection.
 */
import { EventEmitter } from 'node:events';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, readFileSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { native, type NativeFdWatcher } from '../netmap/addon.js';
import { NR_MONITOR_RX, NR_MONITOR_TX, NR_REG_ALL_NIC, NR_REG_ONE_NIC, NR_ZCOPY_MON } from '../netmap/abi.js';
import { oneNicRings, parsePortName, PortNameError, type ParsedPortName } from '../netmap/name.js';
import { Switch, monitorParams, type PortParams, type SwitchOptions, type SwitchPort, type VnetHdrLen } from './switch.js';
import { CounterRegistry } from './counters.js';
import { driverFactory, type DriverFactory, type DriverSpec, type PortDriver } from '../ports/index.js';
import { AF_PACKET_KIND, HOST_TAP_KIND, LINUX_IF_KIND, checkIfname } from '../ports/linux-if.js';
import {
  decodeRequest,
  defaultSocketPath,
  DEFAULT_MAC_LIMIT,
  encodeMessage,
  MAX_MESSAGE,
  privateSocketDir,
  PROTOCOL_VERSION,
  ProtocolError,
  type ConfRequest,
  type PortListing,
  type Reply,
  type Request,
  type StatsRequest,
  type SwitchStats,
} from '../control/protocol.js';

/**
 * Resource limits, each checked before anything is allocated; a request
 * over one is refused with a message naming the limit and its vale-ts
 * option, and counted.
 */
export interface ServerLimits {
  /** connections open at once (--max-conn) */
  maxConnections: number;
  /** connections of one uid (--max-conn-per-uid) */
  maxConnectionsPerUid: number;
  /** ports on all switches (--max-ports) */
  maxPorts: number;
  /** ports one uid holds or created, monitors it opened included (--max-ports-per-uid) */
  maxPortsPerUid: number;
  /** registrations one process holds (--max-ports-per-client) */
  maxPortsPerClient: number;
  /** ports on one switch, at most 254 as netmap's NM_BDG_MAXPORTS (--max-ports-per-switch) */
  maxPortsPerSwitch: number;
  /** bytes of one port's region (--max-port-memory) */
  maxPortMemory: number;
  /** bytes of all regions together (--max-memory) */
  maxMemory: number;
}

/** Defaults of {@link ServerLimits}. */
export const DEFAULT_LIMITS: Readonly<ServerLimits> = Object.freeze({
  maxConnections: 1024,
  maxConnectionsPerUid: 256,
  maxPorts: 1024,
  maxPortsPerUid: 256,
  maxPortsPerClient: 64,
  maxPortsPerSwitch: 254,
  maxPortMemory: 1024 * 1024 * 1024,
  maxMemory: 4 * 1024 * 1024 * 1024,
});

/**
 * Who may talk to the switch. Root and the switch's own uid always may;
 * anyone else only when named here. Everyone allowed may register ports, list
 * and read stats; creating and removing persistent ports is for the switch's
 * uid and root.
 */
export interface PeerPolicy {
  /** further uids allowed (--allow-uid) */
  allowUids?: number[];
  /** gids allowed, primary or supplementary (--allow-gid) */
  allowGids?: number[];
  /** --group: the socket (and its directory) become accessible to this group, whose members are allowed */
  group?: { name: string; gid: number };
  /** let registrations of different uids bind rings of one port (default false: a shared region is readable and writable by all of them) */
  shareRingsAcrossUids?: boolean;
}

/** Server-wide counters (in the stats reply as `server`). */
export interface ServerCounters {
  connections: number;
  ports: number;
  memoryBytes: number;
  refusedPeer: number;
  refusedConnLimit: number;
  refusedPortLimit: number;
  refusedMemoryLimit: number;
  acceptEmfile: number;
  acceptShed: number;
  callbackErrors: number;
  protocolErrors: number;
}

/** Options of {@link ValeServer.listen}. */
export interface ServerOptions {
  /** Control socket path (default: VALE_TS_SOCKET, then the standard path). */
  socket?: string;
  /** Options for switches created on demand. */
  switchOptions?: SwitchOptions;
  /** Switches to host from the start (e.g. one with a custom lookup). */
  switches?: Switch[];
  /** Create a switch when a client names one that does not exist (default true). */
  autoCreate?: boolean;
  /** Most switches hosted at once (default 64). */
  maxSwitches?: number;
  /** Resource limits (defaults: {@link DEFAULT_LIMITS}). */
  limits?: Partial<ServerLimits>;
  /** Who may connect (default: root and the switch's own uid). */
  policy?: PeerPolicy;
  /** Where log lines go (default stderr); repeated events are rate-limited. */
  log?: (line: string) => void;
  /** How long a departed client port's counters stay in stats, seconds (default 3600; 0: not kept). */
  retainCountersS?: number;
  /**
   * Bind the socket but accept no connection until {@link ValeServer.startAccepting}:
   * vale-ts applies its configuration first, so that no client can create a
   * configured switch on demand (without its lookup) or take a configured port's name.
   */
  acceptLater?: boolean;
}

/** One line per event kind at most every `everyMs`, with a count of what was held back. */
class RateLimitedLog {
  private readonly last = new Map<string, { at: number; held: number }>();
  constructor(
    private readonly write: (line: string) => void,
    private readonly everyMs = 10_000,
  ) {}
  log(kind: string, line: string): void {
    const now = performance.now();
    const l = this.last.get(kind);
    if (l && now - l.at < this.everyMs) {
      l.held++;
      return;
    }
    this.last.set(kind, { at: now, held: 0 });
    this.write(`vale-ts: ${line}${l?.held ? ` (${l.held} more like this not logged)` : ''}`);
  }
}

/** The owner of a port: who created it (counted against their limits). */
interface PortOwner {
  uid: number;
  pid: number;
}

interface Client {
  fd: number;
  watcher: NativeFdWatcher;
  pid: number;
  uid: number;
  gid: number;
  /** gone: a request still in flight must clean up after itself */
  dropped?: boolean;
  /** a request is being served asynchronously: read nothing more meanwhile */
  busy?: boolean;
  /** the port this connection registered, and the ring it bound (-1: all) */
  port?: { sw: Switch; port: SwitchPort; ring: number };
  /** this registration's own doorbell when it shares the port with others */
  bell?: number;
  /** the monitor (valeX:Y/r, /t, /rt) this connection opened */
  monitor?: { sw: Switch; index: number; watched: SwitchPort };
  /** told that the port its monitor watches went away (once) */
  toldGone?: boolean;
}

class RequestError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Whether `reply` encodes within one message (encodeMessage refuses a larger one). */
function fitsOneMessage(reply: Reply): boolean {
  try {
    encodeMessage(reply);
    return true;
  } catch {
    return false;
  }
}

/**
 * A running control server.
 *
 * Events: `'switch'` (sw) when a switch is added; `'attach'` (sw, port) for
 * each registration of a port; `'detach'` (sw, port) for each registration
 * that goes (its connection closed or died), emitted after the server has
 * acted on it: if it was the port's last holder, the port is removed (the
 * frames still queued on it forwarded or counted first) or, when persistent,
 * left unattended; otherwise `port.attached` stays true. Tests wait for it
 * instead of for time. `'close'` at shutdown.
 */
export class ValeServer extends EventEmitter {
  /** The control socket this server listens on. */
  readonly socketPath: string;
  private readonly listenFd: number;
  private readonly listenWatcher: NativeFdWatcher;
  private readonly switches = new Map<string, Switch>();
  private readonly clients = new Set<Client>();
  /** connections holding each port: several only when each binds its own ring (-N) */
  private readonly holders = new Map<SwitchPort, Set<Client>>();
  /**
   * A persistent port's own lossless mode (its creation's or the
   * configuration's): a client's request lasts while it holds the port, and
   * the next client, maybe of another uid, starts from this again.
   */
  private readonly ownLossless = new WeakMap<SwitchPort, boolean>();
  private readonly opts: ServerOptions;
  private readonly limits: ServerLimits;
  private readonly policy: PeerPolicy;
  private readonly uid: number;
  private readonly logger: RateLimitedLog;
  private readonly owners = new WeakMap<SwitchPort, PortOwner>();
  /** ports whose region is being prepared off the loop: name -> owner and size */
  private readonly pending = new Map<string, PortOwner & { size: number; sw: string }>();
  private readonly connsByUid = new Map<number, number>();
  private readonly counters = { refusedPeer: 0, refusedConnLimit: 0, refusedPortLimit: 0, refusedMemoryLimit: 0, acceptEmfile: 0, callbackErrors: 0, protocolErrors: 0 };
  private acceptBackoff: NodeJS.Timeout | undefined;
  private accepting = false;
  /** refused connections waiting for their first request before being closed */
  private readonly lingering = new Set<() => void>();
  private closed = false;
  /** ports served by a driver inside this process (TAP, vhost-user, ...), by port */
  private readonly drivers = new Map<SwitchPort, PortDriver>();
  /** Settles when every driver stopped by {@link close} has released what it held. */
  driversClosed: Promise<void> = Promise.resolve();
  /** switches hosted without ports too (configured ones) */
  private readonly pinned = new Set<Switch>();
  /** Counters kept beyond ports and switches (departed ports, totals of gone switches, timestamps). */
  readonly counterRegistry: CounterRegistry;

  private constructor(socketPath: string, fd: number, opts: ServerOptions) {
    super();
    this.socketPath = socketPath;
    this.listenFd = fd;
    this.opts = opts;
    this.limits = { ...DEFAULT_LIMITS, ...opts.limits };
    if (this.limits.maxPortsPerSwitch > 254) throw new RangeError(`maxPortsPerSwitch ${this.limits.maxPortsPerSwitch} exceeds 254 (NM_BDG_MAXPORTS)`);
    // a copy: a configuration reload replaces its lists
    this.policy = { ...opts.policy };
    this.uid = process.getuid?.() ?? 0;
    this.logger = new RateLimitedLog(opts.log ?? ((l) => process.stderr.write(l + '\n')));
    this.counterRegistry = new CounterRegistry(opts.retainCountersS !== undefined ? { retainMs: opts.retainCountersS * 1000 } : {});
    for (const sw of opts.switches ?? []) this.addSwitch(sw);
    this.listenWatcher = new native.FdWatcher(fd, () => this.guard('accept', () => this.acceptAll()));
    if (!opts.acceptLater) this.startAccepting();
  }

  /** Start accepting connections (once; see {@link ServerOptions.acceptLater}). */
  startAccepting(): void {
    if (this.accepting || this.closed) return;
    this.accepting = true;
    this.listenWatcher.start(1);
  }

  /**
   * Listen on the control socket; fails if another vale-ts owns it, or if
   * its private directory is not ours alone.
   */
  static async listen(opts: ServerOptions = {}): Promise<ValeServer> {
    const socketPath = defaultSocketPath(opts.socket);
    const dir = path.dirname(socketPath);
    const uid = process.getuid?.() ?? 0;
    const gid = opts.policy?.group?.gid;
    const own = dir === privateSocketDir(uid) || dir === '/run/vale-ts';
    if (own) ensurePrivateDir(dir, uid, gid);
    else if (!existsSync(dir)) {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      if (gid !== undefined) ensurePrivateDir(dir, uid, gid);
    }
    if (existsSync(socketPath)) {
      const st = lstatSync(socketPath);
      if (!st.isSocket()) throw Object.assign(new Error(`${socketPath} exists and is not a socket: remove it, or use --socket PATH`), { code: 'EEXIST' });
      if (st.uid !== uid && uid !== 0) throw Object.assign(new Error(`${socketPath} belongs to uid ${st.uid}, not to you (uid ${uid}): remove it, or use --socket PATH`), { code: 'EACCES' });
      let live = false;
      try {
        const fd = native.unixConnect(socketPath);
        native.close(fd);
        live = true;
      } catch {
        // nobody listens: a stale file from a crashed switch
      }
      if (live) throw Object.assign(new Error(`another vale-ts is already listening at ${socketPath}: stop it, or use --socket PATH`), { code: 'EADDRINUSE' });
      unlinkSync(socketPath);
    }
    const fd = native.unixListen(socketPath);
    try {
      // the socket is for its owner (and the --group), whatever the umask
      if (gid !== undefined) chownSync(socketPath, uid, gid);
      chmodSync(socketPath, gid !== undefined ? 0o660 : 0o600);
    } catch (e) {
      native.close(fd);
      throw e;
    }
    return new ValeServer(socketPath, fd, opts);
  }

  /** Server-wide counters. */
  serverCounters(): ServerCounters {
    let ports = 0;
    for (const sw of this.switches.values()) ports += sw.ports().length;
    return {
      connections: this.clients.size,
      ports,
      memoryBytes: this.memoryInUse(),
      ...this.counters,
      acceptShed: native.acceptShed(),
      callbackErrors: this.counters.callbackErrors + native.callbackErrors(),
    };
  }

  /** Run a callback from the event loop: an exception is counted and logged, never fatal. */
  private guard(what: string, fn: () => void, c?: Client): void {
    try {
      fn();
    } catch (e) {
      this.counters.callbackErrors++;
      this.logger.log(`cb-${what}`, `error while serving ${what}${c ? ` (pid ${c.pid}, uid ${c.uid})` : ''}: ${(e as Error).message}; connection dropped, switch kept running`);
      if (c) this.drop(c);
    }
  }

  /** Host a switch (its bridge index is assigned here). */
  addSwitch(sw: Switch): void {
    if (this.switches.has(sw.name)) throw new Error(`switch ${sw.name} is already hosted`);
    const used = new Set([...this.switches.values()].map((s) => s.bridgeIndex));
    let idx = 0;
    while (used.has(idx)) idx++;
    sw.bridgeIndex = idx;
    this.switches.set(sw.name, sw);
    this.counterRegistry.switchAdded(sw);
    sw.on('portRemoved', (p: SwitchPort) => this.tellMonitorsOf(sw, p));
    this.emit('switch', sw);
  }

  /**
   * A watched port has gone: each of its monitors' clients is told so (a
   * 'bye' naming the port), and a capture ends as tcpdump does when its
   * interface goes, instead of watching nothing for ever. The connection is
   * not dropped here: the monitor's region stays mapped by its client, and
   * counted against its opener's limits, until the client closes it. A port
   * renewed for its next client is not removed and keeps its monitors.
   */
  private tellMonitorsOf(sw: Switch, p: SwitchPort): void {
    for (const c of this.clients) {
      const m = c.monitor;
      // (a closing switch has removed its monitors before its ports)
      if (!m || m.sw !== sw || m.watched !== p || c.toldGone || !sw.monitorPorts().some((mp) => mp.index === m.index)) continue;
      c.toldGone = true;
      const name = sw.monitors().find((x) => x.index === m.index)?.name ?? `${p.name}'s monitor`;
      this.bye(c, `${p.name}, the port ${name} watches, went away`, p.name);
    }
  }

  /**
   * Tell client `c` why its connection is about to close, or (with `gone`)
   * that the port it watched went (best effort: it may be gone already).
   */
  private bye(c: Client, reason: string, gone?: string): void {
    try {
      native.sendMsg(c.fd, encodeMessage({ v: PROTOCOL_VERSION, op: 'bye', reason, ...(gone !== undefined ? { gone } : {}) }), []);
    } catch {
      // the client is gone already
    }
  }

  /** Hosted switches. */
  list(): Switch[] {
    return [...this.switches.values()].sort((a, b) => a.bridgeIndex - b.bridgeIndex);
  }

  /** The switch called `name`, if hosted. */
  switch(name: string): Switch | undefined {
    return this.switches.get(name);
  }

  private acceptAll(): void {
    for (;;) {
      if (this.closed) return;
      const fd = native.accept(this.listenFd, OUT_OF_FDS);
      if (fd === -1) return;
      if (fd === -2) {
        // out of descriptors: the pending peer was told and closed; stop
        // accepting for a moment (a level-triggered listener would spin)
        this.counters.acceptEmfile++;
        this.logger.log('emfile', `out of file descriptors (EMFILE/ENFILE): refusing new connections for ${ACCEPT_BACKOFF_MS} ms; raise the fd limit (ulimit -n) or lower --max-conn`);
        this.listenWatcher.stop();
        this.acceptBackoff = setTimeout(() => {
          this.acceptBackoff = undefined;
          if (!this.closed) this.listenWatcher.start(1);
        }, ACCEPT_BACKOFF_MS);
        return;
      }
      let cred = { pid: 0, uid: -1, gid: -1 };
      try {
        cred = native.peerCred(fd);
      } catch {
        // no credentials: refused below as an unknown uid
      }
      const refusal = this.admit(cred);
      if (refusal) {
        this.refuse(fd, refusal);
        continue;
      }
      const client: Client = {
        fd,
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
        watcher: new native.FdWatcher(fd, () => this.guard('a request', () => this.onReadable(client), client)),
      };
      this.clients.add(client);
      this.connsByUid.set(cred.uid, (this.connsByUid.get(cred.uid) ?? 0) + 1);
      client.watcher.start(1);
    }
  }

  /**
   * Tell a refused peer why, and close once its first request is read:
   * closing with that request unread would reset the connection, and the
   * peer would see ECONNRESET instead of the reason. A few at a time.
   */
  private refuse(fd: number, r: { code: string; error: string }): void {
    try {
      native.sendMsg(fd, encodeMessage({ v: PROTOCOL_VERSION, ok: false, code: r.code, error: r.error }), []);
    } catch {
      native.close(fd);
      return;
    }
    if (this.lingering.size >= MAX_LINGERING) {
      const [oldest] = this.lingering;
      oldest!();
    }
    const w = new native.FdWatcher(fd, () => {
      const m = native.recvMsg(fd, MAX_MESSAGE);
      if (m === null) return;
      if (!m.eof) for (const f of m.fds) native.close(f);
      done();
    });
    const done = (): void => {
      if (!this.lingering.delete(done)) return;
      w.close();
      native.close(fd);
    };
    this.lingering.add(done);
    w.start(1);
  }

  /** Why a new peer is refused, or undefined. */
  private admit(cred: { pid: number; uid: number; gid: number }): { code: string; error: string } | undefined {
    if (!this.peerAllowed(cred)) {
      this.counters.refusedPeer++;
      this.logger.log('peer', `refused a connection from uid ${cred.uid} gid ${cred.gid} (pid ${cred.pid}): not allowed by the peer policy`);
      return {
        code: 'EACCES',
        error:
          `vale-ts at ${this.socketPath} (uid ${this.uid}) does not serve uid ${cred.uid}: only root, uid ${this.uid}` +
          `${this.policy.allowUids?.length ? `, uids ${this.policy.allowUids.join(',')}` : ''} and the allowed groups may connect; ` +
          `start vale-ts with --allow-uid ${cred.uid} or --group NAME to let others in`,
      };
    }
    const L = this.limits;
    if (this.clients.size >= L.maxConnections) {
      this.counters.refusedConnLimit++;
      this.logger.log('conn-limit', `refused a connection from uid ${cred.uid} (pid ${cred.pid}): ${this.clients.size} connections open (--max-conn ${L.maxConnections})`);
      return { code: 'EUSERS', error: `vale-ts has ${this.clients.size} connections open, its limit (raise it with vale-ts --max-conn N)` };
    }
    const mine = this.connsByUid.get(cred.uid) ?? 0;
    if (mine >= L.maxConnectionsPerUid) {
      this.counters.refusedConnLimit++;
      this.logger.log('conn-uid-limit', `refused a connection from uid ${cred.uid} (pid ${cred.pid}): it has ${mine} open (--max-conn-per-uid ${L.maxConnectionsPerUid})`);
      return { code: 'EUSERS', error: `uid ${cred.uid} has ${mine} connections to vale-ts open, its limit (raise it with vale-ts --max-conn-per-uid N)` };
    }
    return undefined;
  }

  private peerAllowed(cred: { pid: number; uid: number; gid: number }): boolean {
    if (cred.uid < 0) return false;
    if (cred.uid === 0 || cred.uid === this.uid) return true;
    const p = this.policy;
    if (p.allowUids?.includes(cred.uid)) return true;
    const gids = [...(p.allowGids ?? []), ...(p.group ? [p.group.gid] : [])];
    if (!gids.length) return false;
    if (gids.includes(cred.gid)) return true;
    return supplementaryGroups(cred.pid).some((g) => gids.includes(g));
  }

  private onReadable(c: Client): void {
    for (let served = 0; !c.busy && !c.dropped; served++) {
      // a client that keeps its socket full would hold the loop for good: the
      // rest of its requests wait for the next turn (the watcher is level-triggered)
      if (served === REQUESTS_PER_TURN) return;
      let m;
      try {
        m = native.recvMsg(c.fd, MAX_MESSAGE);
      } catch {
        this.drop(c);
        return;
      }
      if (m === null) return;
      if (m.eof) {
        this.drop(c);
        return;
      }
      for (const f of m.fds) native.close(f); // clients never send fds
      let req: Request;
      try {
        if (m.fdsTruncated || m.fds.length) throw new ProtocolError(`message carried file descriptors (${m.fdsTruncated ? 'more than 8' : m.fds.length}): clients send none`);
        if (m.truncated) throw new ProtocolError(`message longer than ${MAX_MESSAGE} bytes`);
        req = decodeRequest(m.data);
      } catch (e) {
        this.counters.protocolErrors++;
        this.send(c, { v: PROTOCOL_VERSION, ok: false, code: 'EPROTO', error: `malformed request: ${(e as Error).message}` });
        this.drop(c);
        return;
      }
      const fail = (e: unknown): void => {
        const code = e instanceof RequestError ? e.code : ((e as { code?: string }).code ?? 'EINVAL');
        this.send(c, { v: PROTOCOL_VERSION, ok: false, code, error: (e as Error).message });
      };
      try {
        const r = this.handle(c, req);
        if (r instanceof Promise) {
          // served off the loop (a region being prepared): one request at a time per connection
          c.busy = true;
          c.watcher.stop();
          r.then(
            ({ reply, fds }) => {
              if (!c.dropped) this.send(c, reply, fds);
            },
            (e: unknown) => {
              if (!c.dropped) fail(e);
            },
          ).finally(() => {
            c.busy = false;
            if (c.dropped) return;
            c.watcher.start(1);
            this.guard('a request', () => this.onReadable(c), c);
          });
          return;
        }
        this.send(c, r.reply, r.fds);
      } catch (e) {
        fail(e);
      }
    }
  }

  private send(c: Client, reply: Reply, fds: readonly number[] = []): void {
    let sent: boolean;
    try {
      sent = native.sendMsg(c.fd, encodeMessage(reply), [...fds]);
    } catch {
      this.drop(c);
      return;
    }
    if (!sent) {
      // EAGAIN: a socket buffer of replies unread, so not one request at a time
      // as the protocol asks; its replies would be lost (a register's fds too)
      this.counters.protocolErrors++;
      this.logger.log('unread', `dropped a connection of pid ${c.pid} (uid ${c.uid}): it does not read its replies`);
      this.drop(c);
    }
  }

  private checkAdmin(c: Client, what: string): void {
    if (c.uid === 0 || c.uid === this.uid) return;
    throw new RequestError('EPERM', `only root and vale-ts's own uid (${this.uid}) may ${what} persistent ports; uid ${c.uid} may open, list and read stats`);
  }

  private switchFor(name: string, create: boolean): Switch {
    let sw = this.switches.get(name);
    if (sw) return sw;
    if (!create) throw new RequestError('ENXIO', `no switch ${name} on this vale-ts`);
    this.checkNewSwitch(name);
    sw = new Switch(name, this.opts.switchOptions);
    this.addSwitch(sw);
    return sw;
  }

  /**
   * A port name in a request: valeX:Y. For register and create, `@conf:` in
   * the name is applied (as netmap does); everything else a name can carry
   * (-N, /flags, @N, @share...) has its own request field and is refused here
   * rather than silently ignored.
   */
  private parseVale(name: string, allowConf = false): { sw: string; port: string; full: string; spec: ParsedPortName } {
    let p;
    try {
      p = parsePortName(name);
    } catch (e) {
      if (e instanceof PortNameError) throw new RequestError('EINVAL', e.message);
      throw e;
    }
    if (!p.isVale || !p.switchName) throw new RequestError('EINVAL', `${name} is not a vale port name (valeX:Y)`);
    if (p.pipe) throw new RequestError('EINVAL', `${name} is a pipe: pipes need no switch, open them directly`);
    const full = `${p.switchName}:${p.port}`;
    const hasConf = Object.keys(p.conf).length > 0;
    if (p.mode !== 'all_nic' || p.flags !== 0 || p.memId !== 0 || p.share !== undefined || p.extmem !== undefined || p.offset !== undefined || (hasConf && !allowConf)) {
      throw new RequestError(
        'EINVAL',
        `${name}: the control protocol takes the plain port name (${full}); ` +
          `rings go in nrMode/ringId, geometry in conf${allowConf ? ' (or @conf: in the name)' : ''}, and vale-ts has no flags, mem ids, @share, @extmem or @offset`,
      );
    }
    return { sw: p.switchName, port: p.port, full, spec: p };
  }

  /** The geometry asked for: the request's conf, plus @conf: in the name (they must agree). */
  private confOf(req: { name: string; conf: ConfRequest }, spec: ParsedPortName): ConfRequest {
    const out: ConfRequest = { ...req.conf };
    const c = spec.conf;
    if (c.hostRings !== undefined || c.hostTxRings !== undefined || c.hostRxRings !== undefined) {
      throw new RequestError('EINVAL', `${req.name}: vale-ts ports have no host rings (@conf:host-*)`);
    }
    const want: ConfRequest = {};
    if (c.txRings ?? c.rings) want.txRings = (c.txRings ?? c.rings)!;
    if (c.rxRings ?? c.rings) want.rxRings = (c.rxRings ?? c.rings)!;
    if (c.txSlots ?? c.slots) want.txSlots = (c.txSlots ?? c.slots)!;
    if (c.rxSlots ?? c.slots) want.rxSlots = (c.rxSlots ?? c.slots)!;
    for (const [k, v] of Object.entries(want) as [keyof ConfRequest, number][]) {
      if (out[k] !== undefined && out[k] !== v) throw new RequestError('EINVAL', `${req.name}: @conf says ${k} ${v} but the request's conf says ${out[k]}`);
      const [lo, hi] = k.endsWith('Rings') ? [1, 16] : [2, 4096];
      if (v < lo || v > hi) throw new RequestError('EINVAL', `${req.name}: @conf ${k} ${v} is out of range: vale-ts takes ${lo}..${hi}`);
      out[k] = v;
    }
    return out;
  }

  /** Bytes of every region, hosted and being prepared. */
  private memoryInUse(): number {
    let m = 0;
    for (const sw of this.switches.values()) for (const p of [...sw.ports(), ...sw.monitorPorts()]) m += p.geometry.memsize;
    for (const p of this.pending.values()) m += p.size;
    return m;
  }

  /** Refuse a new port (of `size` bytes, for `owner`, on switch `swName`) over any limit. */
  private checkNewPort(full: string, swName: string, size: number, owner: PortOwner): void {
    const L = this.limits;
    let total = 0;
    let byUid = 0;
    let onSwitch = 0;
    // a monitor is a region and a slot of its switch as a port is
    for (const sw of this.switches.values()) {
      for (const p of [...sw.ports(), ...sw.monitorPorts()]) {
        total++;
        if (this.owners.get(p)?.uid === owner.uid) byUid++;
        if (sw.name === swName) onSwitch++;
      }
    }
    for (const p of this.pending.values()) {
      total++;
      if (p.uid === owner.uid) byUid++;
      if (p.sw === swName) onSwitch++;
    }
    let byClient = 0;
    for (const c of this.clients) if ((c.port || c.monitor) && c.pid === owner.pid) byClient++;
    const refuse = (what: string, n: number, limit: number, opt: string, code = 'ENOSPC'): never => {
      if (code === 'ENOMEM') this.counters.refusedMemoryLimit++;
      else this.counters.refusedPortLimit++;
      this.logger.log(`limit-${opt}`, `refused ${full} for uid ${owner.uid} (pid ${owner.pid}): ${what} ${n} (${opt} ${limit})`);
      throw new RequestError(code, `${full} refused: ${what} ${n}, the limit (raise it with vale-ts ${opt} N)`);
    };
    if (total >= L.maxPorts) refuse('vale-ts hosts ports:', total, L.maxPorts, '--max-ports');
    if (onSwitch >= L.maxPortsPerSwitch) refuse(`switch ${swName} has ports:`, onSwitch, L.maxPortsPerSwitch, '--max-ports-per-switch');
    if (byUid >= L.maxPortsPerUid) refuse(`uid ${owner.uid} has ports:`, byUid, L.maxPortsPerUid, '--max-ports-per-uid');
    if (owner.pid && byClient >= L.maxPortsPerClient) refuse(`pid ${owner.pid} holds ports:`, byClient, L.maxPortsPerClient, '--max-ports-per-client');
    if (size > L.maxPortMemory) refuse('its region would take bytes:', size, L.maxPortMemory, '--max-port-memory', 'ENOMEM');
    const used = this.memoryInUse();
    if (used + size > L.maxMemory) refuse(`regions would take bytes: ${used} in use +`, size, L.maxMemory, '--max-memory', 'ENOMEM');
  }

  /** Geometry checked and sized before any allocation. */
  private sizeOf(params: PortParams): number {
    try {
      return native.computeLayout(params).size;
    } catch (e) {
      throw new RequestError('EINVAL', (e as Error).message);
    }
  }

  /**
   * A new port's region, written on a worker thread so that forwarding never
   * waits for it; the port joins its switch when it is ready. Counted against
   * the limits from the moment it is asked for.
   */
  private async newPort(c: Client | undefined, n: { sw: string; full: string }, params: PortParams, opts: { persistent?: boolean; lossless?: boolean; holdUs?: number; vnetHdrLen?: VnetHdrLen }): Promise<{ sw: Switch; port: SwitchPort }> {
    if (this.pending.has(n.full)) throw new RequestError('EBUSY', `${n.full} is being created by another request`);
    const size = this.sizeOf(params);
    const owner: PortOwner = { uid: c?.uid ?? this.uid, pid: c?.pid ?? 0 };
    this.checkNewPort(n.full, n.sw, size, owner);
    if (!this.switches.has(n.sw)) this.checkNewSwitch(n.sw);
    this.pending.set(n.full, { ...owner, size, sw: n.sw });
    let fd: number;
    try {
      fd = await native.createRegionFdAsync(params, n.full);
    } finally {
      this.pending.delete(n.full);
    }
    try {
      if (this.closed || c?.dropped) throw new RequestError('ECONNRESET', `${n.full}: the requester went away`);
      const sw = this.switchFor(n.sw, true);
      if (sw.port(n.full)) throw new RequestError('EEXIST', `${n.full} already exists`);
      const port = sw.addPort(n.full, params, { ...opts, regionFd: fd });
      this.owners.set(port, owner);
      this.ownLossless.set(port, port.lossless);
      return { sw, port };
    } finally {
      native.close(fd);
    }
  }

  private checkNewSwitch(name: string): void {
    if (this.opts.autoCreate === false) throw new RequestError('ENXIO', `no switch ${name} on this vale-ts`);
    if (this.switches.size >= (this.opts.maxSwitches ?? 64)) throw new RequestError('ENOSPC', `vale-ts hosts ${this.switches.size} switches already (limit ${this.opts.maxSwitches ?? 64})`);
  }

  private handle(c: Client, req: Request): Served | Promise<Served> {
    const v = PROTOCOL_VERSION;
    switch (req.op) {
      case 'register': {
        if (c.port || c.monitor) throw new RequestError('EBUSY', 'this connection already holds a port: open one port per connection');
        const n = this.parseVale(req.name, true);
        if (req.flags & (NR_MONITOR_RX | NR_MONITOR_TX | NR_ZCOPY_MON)) return this.openMonitor(c, n, req.flags);
        const conf = this.confOf(req, n.spec);
        const ring = req.nrMode === NR_REG_ONE_NIC ? req.ringId : -1;
        if (req.nrMode !== NR_REG_ONE_NIC && req.nrMode !== NR_REG_ALL_NIC) {
          throw new RequestError('EINVAL', `${n.full}: nrMode ${req.nrMode} is not served by vale-ts (ports have no host rings): use 1 (all rings) or 4 (one ring, -N)`);
        }
        const existing = this.switches.get(n.sw)?.port(n.full);
        if (existing) return this.attach(c, this.switches.get(n.sw)!, existing, n, ring, req.lossless, false, req.vnetHdrLen);
        const params = paramsOf(conf, req.bufSize, req.extraBufs);
        const txRings = params.txRings ?? 1;
        const rxRings = params.rxRings ?? 1;
        if (ring >= 0 && !oneNicRings(ring, txRings, rxRings)) {
          throw new RequestError('EINVAL', `${n.full} would have ${txRings} tx / ${rxRings} rx rings: there is no ring ${ring}`);
        }
        const portOpts: { lossless: boolean; vnetHdrLen?: VnetHdrLen } = { lossless: req.lossless ?? false };
        if (req.vnetHdrLen !== undefined) portOpts.vnetHdrLen = req.vnetHdrLen;
        return this.newPort(c, n, params, portOpts).then(({ sw, port }) => this.attach(c, sw, port, n, ring, req.lossless, true));
      }
      case 'list': {
        const all: PortListing[] = [];
        for (const sw of this.list()) {
          for (const p of sw.ports()) {
            const l: PortListing = { name: p.name, bridgeIndex: sw.bridgeIndex, portIndex: p.index, persistent: p.persistent, attached: p.attached };
            if (p.pid) l.pid = p.pid;
            const d = this.drivers.get(p);
            if (d) l.driver = d.describe();
            all.push(l);
          }
        }
        if (req.name !== undefined) {
          const n = this.parseVale(req.name);
          const found = all.filter((l) => l.name === n.full);
          if (!found.length) throw new RequestError('ENXIO', `no port ${n.full}`);
          return { reply: { v, ok: true, op: 'list', ports: found } };
        }
        // a reply fits one message: ~400 long-named ports do not, so a page
        // from the offset, as many as fit; the total lets a client page on
        const offset = req.offset ?? 0;
        for (let count = Math.max(all.length - offset, 0); ; count >>= 1) {
          const reply: Reply = { v, ok: true, op: 'list', ports: all.slice(offset, offset + count), portsTotal: all.length, offset };
          if (fitsOneMessage(reply)) return { reply };
          if (count === 0) throw new RequestError('EMSGSIZE', 'an empty listing does not fit in a message (should not happen)');
        }
      }
      case 'info': {
        const n = this.parseVale(req.name);
        const port = this.switches.get(n.sw)?.port(n.full);
        if (!port) throw new RequestError('ENXIO', `no port ${n.full}`);
        return { reply: { v, ok: true, op: 'info', name: port.name, ...port.geometry } };
      }
      case 'create': {
        this.checkAdmin(c, 'create');
        const n = this.parseVale(req.name, true);
        if (this.switches.get(n.sw)?.port(n.full)) throw new RequestError('EEXIST', `${n.full} already exists`);
        const spec = req.driver;
        // resolve the kind before any region is made: an unknown kind costs nothing
        const factory = spec ? driverFactory(spec.kind) : undefined;
        return this.newPort(c, n, paramsOf(this.confOf(req, n.spec), req.bufSize, undefined), { persistent: true, ...(req.vnetHdrLen !== undefined ? { vnetHdrLen: req.vnetHdrLen } : {}) }).then(async ({ sw, port }) => {
          if (factory && spec) await this.startDriver(sw, port, spec, factory);
          return { reply: { v, ok: true, op: 'create', name: port.name, portIndex: port.index, ...port.geometry } };
        });
      }
      case 'remove': {
        this.checkAdmin(c, 'remove');
        const n = this.parseVale(req.name);
        const sw = this.switches.get(n.sw);
        const port = sw?.port(n.full);
        if (!sw || !port) {
          // a port that has gone: removing it forgets the counters kept under its name
          const was = this.counterRegistry.forget(n.full);
          if (was !== undefined) return { reply: { v, ok: true, op: 'remove', name: n.full, portIndex: was } };
          throw new RequestError('ENXIO', `no port ${n.full}`);
        }
        if (!port.persistent) throw new RequestError('EINVAL', `${n.full} is not persistent: it goes away when its process closes it`);
        const driver = this.drivers.get(port);
        if (driver) {
          // a driver port: stop the driver (it is the port's client), then the port goes
          this.drivers.delete(port);
          return driver.close().then(() => {
            sw.setAttached(port.index, false);
            this.counterRegistry.removingOnRequest(port.name);
            sw.removePort(port.index);
            this.maybeDropSwitch(sw);
            return { reply: { v, ok: true, op: 'remove', name: n.full, portIndex: port.index } } as Served;
          });
        }
        if (port.attached) throw new RequestError('EBUSY', `${n.full} is in use${port.pid ? ` by pid ${port.pid}` : ''}`);
        this.counterRegistry.removingOnRequest(port.name);
        sw.removePort(port.index);
        this.maybeDropSwitch(sw);
        return { reply: { v, ok: true, op: 'remove', name: n.full, portIndex: port.index } };
      }
      case 'attach': {
        this.checkAdmin(c, 'attach');
        const n = this.parseVale(req.name);
        let ifname: string;
        try {
          ifname = checkIfname(n.port);
        } catch (e) {
          throw new RequestError('EINVAL', `${n.full}: ${(e as Error).message}`);
        }
        for (const name of req.hostStack ? [n.full, `${n.full}^`] : [n.full]) {
          if (this.switches.get(n.sw)?.port(name)) throw new RequestError('EEXIST', `${name} already exists (detach it first: vale-ctl-ts -d ${n.full})`);
        }
        // one ring each way: the driver's thread serves ring 0. A GSO super-frame
        // takes 33 slots, so a 1024-slot rx ring held only 31 of them: a TCP burst
        // overflowed it (dropNoSpace, thousands of retransmits per second in
        // bench/linux-if). The rx ring, where the switch drops, gets 4096 slots
        // (8 MiB: a TCP window, as a bridge's queues hold); the tx ring stays at
        // 1024: when it is full the driver leaves frames in the kernel's ring,
        // nothing is lost, and fewer buffers cycling cost less cache per frame
        // (bench/RESULTS.md, issue 12)
        const params: PortParams = { txRings: 1, rxRings: 1, txSlots: 1024, rxSlots: 4096 };
        return this.newPort(c, n, params, { persistent: true }).then(async ({ sw, port }) => {
          // AF_XDP where possible (or as req.backend says), else AF_PACKET: src/ports/linux-if.ts
          await this.startDriver(sw, port, { kind: LINUX_IF_KIND, ifname, backend: req.backend ?? 'auto', ...(req.inline !== undefined ? { inline: req.inline } : {}) }, driverFactory(LINUX_IF_KIND));
          if (req.hostStack) {
            // IFNAME^: the interface's stack, as a TAP twin of the same name
            try {
              const h = await this.newPort(c, { sw: n.sw, full: `${n.full}^` }, params, { persistent: true });
              await this.startDriver(h.sw, h.port, { kind: HOST_TAP_KIND, ifname }, driverFactory(HOST_TAP_KIND));
            } catch (e) {
              await this.detachPorts(sw, port);
              throw e;
            }
          }
          return { reply: { v, ok: true, op: 'attach', name: port.name, portIndex: port.index } } as Served;
        });
      }
      case 'detach': {
        this.checkAdmin(c, 'detach');
        const n = this.parseVale(req.name);
        const sw = this.switches.get(n.sw);
        const port = sw?.port(n.full);
        if (!sw || !port) throw new RequestError('ENXIO', `no port ${n.full}`);
        const driver = this.drivers.get(port);
        if (!driver || (driver.kind !== LINUX_IF_KIND && driver.kind !== AF_PACKET_KIND)) {
          throw new RequestError('EINVAL', `${n.full} is not an attached interface${driver ? ` (a ${driver.kind} port: remove it with -r)` : ' (remove ports with -r)'}`);
        }
        return this.detachPorts(sw, port).then(() => ({ reply: { v, ok: true, op: 'detach', name: n.full, portIndex: port.index } }) as Served);
      }
      case 'stats':
        return this.statsReply(req);
    }
  }

  /**
   * Detach an interface: stop its driver (closing the packet socket, so the
   * kernel drops the promiscuity reference) and its host port's, then remove
   * both ports.
   */
  private async detachPorts(sw: Switch, port: SwitchPort): Promise<void> {
    const host = sw.port(`${port.name}^`);
    for (const p of host && this.drivers.get(host)?.kind === HOST_TAP_KIND ? [port, host] : [port]) {
      const d = this.drivers.get(p);
      this.drivers.delete(p);
      if (d) await d.close();
      if (sw.port(p.name) === p) {
        sw.setAttached(p.index, false);
        sw.removePort(p.index);
      }
    }
    this.maybeDropSwitch(sw);
  }

  /**
   * A monitor of an existing port (valeX:Y/r, /t, /rt) for connection `c`.
   * Watching a port shows every frame it exchanges: only root, vale-ts's
   * uid, and the uid that created the port may.
   */
  private openMonitor(c: Client, n: { sw: string; port: string; full: string }, flags: number): Served {
    if (flags & NR_ZCOPY_MON) {
      throw new RequestError('EOPNOTSUPP', `${n.full}/z: vale-ts has copy monitors only (/r, /t, /rt): a zero-copy monitor would share the port's buffers`);
    }
    const sw = this.switches.get(n.sw);
    const port = sw?.port(n.full);
    if (!sw || !port) throw new RequestError('ENXIO', `no port ${n.full} to monitor (a monitor watches a port that exists)`);
    const owner = this.owners.get(port)?.uid;
    const admin = c.uid === 0 || c.uid === this.uid;
    if (!(admin || (owner !== undefined && owner === c.uid))) {
      throw new RequestError('EACCES', `uid ${c.uid} may not monitor ${n.full}: only root, vale-ts's uid (${this.uid}) and the uid that created the port may watch its traffic`);
    }
    const rx = (flags & NR_MONITOR_RX) !== 0, tx = (flags & NR_MONITOR_TX) !== 0;
    // counted against the opener's limits like a port (it outlives the port it watches)
    const opener: PortOwner = { uid: c.uid, pid: c.pid };
    this.checkNewPort(`${n.full}/${rx ? 'r' : ''}${tx ? 't' : ''}`, n.sw, this.sizeOf(monitorParams(port, rx, tx)), opener);
    let mon: SwitchPort;
    try {
      // a port's owner filling its monitor slots would keep the operator from watching it
      mon = sw.addMonitor(port, rx, tx, { reserve: admin ? 0 : ADMIN_MONITORS });
    } catch (e) {
      const err = e as Error & { code?: string };
      throw new RequestError(err.code ?? 'EINVAL', err.message);
    }
    this.owners.set(mon, opener);
    c.monitor = { sw, index: mon.index, watched: port };
    return {
      reply: { v: PROTOCOL_VERSION, ok: true, op: 'register', switch: sw.name, port: n.port, bridgeIndex: sw.bridgeIndex, portIndex: mon.index, ...mon.geometry },
      fds: mon.fds,
    };
  }

  /** Give `port` to connection `c` (a new port, or a ring of a shared one). */
  private attach(c: Client, sw: Switch, port: SwitchPort, n: { full: string; port: string }, ring: number, lossless: boolean | undefined, fresh = false, vnetHdrLen?: VnetHdrLen): Served {
    const v = PROTOCOL_VERSION;
    const held = [...(this.holders.get(port) ?? [])];
    if (held.length === 0 && !port.persistent && !fresh) throw new RequestError('EBUSY', `${n.full} is busy`);
    // attached with no client connection: a driver inside vale-ts serves it (or is starting
    // to). Its region would hand this client the driver's frames and a ring to race it for.
    if (held.length === 0 && port.attached && !fresh) {
      const d = this.drivers.get(port);
      throw new RequestError('EBUSY', `${n.full} is served by vale-ts itself (${d ? d.describe() : 'its driver is starting'}): it has no rings for a client; open another port of ${n.full.slice(0, n.full.indexOf(':'))}`);
    }
    // as in netmap, registrations may share a port when each binds a ring of
    // its own (vale0:x-0, vale0:x-1, ...); all rings is exclusive. A ring
    // past the end of one direction binds that direction's ring 0 (netmap's
    // rule), which then is another holder's too if it binds ring 0.
    const one = ring >= 0 ? oneNicRings(ring, port.txRings, port.rxRings) : undefined;
    if (ring >= 0 && !one) throw new RequestError('EINVAL', `${n.full} has ${port.txRings} tx / ${port.rxRings} rx rings: there is no ring ${ring}`);
    const shares = (h: Client): boolean => {
      if (!one || h.port!.ring < 0) return true;
      const o = oneNicRings(h.port!.ring, port.txRings, port.rxRings)!;
      return o.tx === one.tx || o.rx === one.rx;
    };
    const clash = held.find(shares);
    if (clash) {
      const c = clash.port!.ring;
      const what = !one || c < 0 ? `${n.full} is busy` : c === ring ? `ring ${ring} of ${n.full} is bound` : `ring ${ring} of ${n.full} binds tx ring ${one.tx} and rx ring ${one.rx} (ring 0 where a direction has no ring ${ring}), and ring ${c} bound already shares one of them`;
      throw new RequestError('EBUSY', `${what}: another process has it open${clash.pid ? ` (pid ${clash.pid})` : ''}`);
    }
    // binding one ring maps the whole region: every frame of every ring.
    // Only the same uid may share it, unless the operator said otherwise.
    const foreign = held.find((h) => h.uid !== c.uid);
    if (foreign && !this.policy.shareRingsAcrossUids) {
      throw new RequestError(
        'EACCES',
        `${n.full} is held by uid ${foreign.uid}: binding another of its rings would map its whole region (every ring's frames); ` +
          `only the same uid may share a port (vale-ts --share-rings-across-uids allows it)`,
      );
    }
    if (vnetHdrLen !== undefined && vnetHdrLen !== port.vnetHdrLen) {
      // as netmap: the header length of a port in use does not change under its users
      if (held.length > 0) throw new RequestError('EBUSY', `${n.full} carries ${port.vnetHdrLen}-byte virtio-net headers and is in use: its header length cannot change now`);
      sw.setVnetHdrLen(port.index, vnetHdrLen);
    }
    if (lossless !== undefined && lossless !== port.lossless) sw.setLossless(port.index, lossless);
    port.attached = true;
    sw.setAttached(port.index, true);
    port.pid = c.pid;
    c.port = { sw, port, ring };
    let set = this.holders.get(port);
    if (!set) this.holders.set(port, (set = new Set()));
    set.add(c);
    let fds: readonly number[] = port.fds;
    if (set.size > 1) {
      // a second holder gets a doorbell of its own, kicked with the port's
      c.bell = native.eventfd();
      fds = [port.fds[0], c.bell, port.fds[2]];
      this.updateBells(sw, port);
    }
    this.emit('attach', sw, port);
    return {
      reply: { v, ok: true, op: 'register', switch: sw.name, port: n.port, bridgeIndex: sw.bridgeIndex, portIndex: port.index, ...port.geometry },
      fds,
    };
  }

  /** A stats reply that fits one message: MAC entries, then ports, then switches are cut to fit. */
  private statsReply(req: StatsRequest): Served {
    const v = PROTOCOL_VERSION;
    // live switches, then (for all switches) those that have gone, with what they counted
    const sws: (Switch | string)[] = req.switch !== undefined ? [this.switches.get(req.switch)].filter((s): s is Switch => !!s) : [...this.list(), ...this.counterRegistry.goneSwitches()];
    if (req.switch !== undefined && !sws.length) {
      const gone = this.counterRegistry.goneStats(req.switch) ? ` (it has no ports now; what it counted is in the stats of all switches)` : '';
      throw new RequestError('ENXIO', `no switch ${req.switch}${gone}`);
    }
    let macLimit = req.macLimit ?? DEFAULT_MAC_LIMIT;
    let portLimit = Infinity;
    let departedLimit = Infinity;
    let nsw = sws.length;
    const server = { ...this.serverCounters() };
    for (;;) {
      const switches: SwitchStats[] = sws.slice(0, nsw).map((s) => this.switchStats(s, { macOffset: req.macOffset ?? 0, macLimit, portOffset: req.portOffset ?? 0, portLimit }, departedLimit));
      const reply: Reply = { v, ok: true, op: 'stats', switches, switchesTotal: sws.length, server };
      if (fitsOneMessage(reply)) return { reply };
      // too big: halve what varies most, in order
      if (macLimit > 0) macLimit = macLimit > 8 ? macLimit >> 1 : 0;
      // departed ports' counters (the metrics endpoint has all of them)
      else if (departedLimit > 0) departedLimit = departedLimit === Infinity ? 128 : departedLimit >> 1;
      else if (portLimit > 1) portLimit = portLimit === Infinity ? 128 : portLimit >> 1;
      else if (nsw > 1) nsw = nsw >> 1;
      else throw new RequestError('EMSGSIZE', 'stats of one port do not fit in a message (should not happen)');
    }
  }

  /** One switch's stats page, live (with what lasts beyond its ports) or gone. */
  private switchStats(s: Switch | string, page: { macOffset: number; macLimit: number; portOffset: number; portLimit: number }, departedLimit = Infinity): SwitchStats {
    if (typeof s === 'string') return this.counterRegistry.goneStats(s, departedLimit) ?? { name: s, bridgeIndex: -1, gone: true, ports: [], portsTotal: 0, portsOffset: 0, macTable: [], macTableTotal: 0, macTableOffset: 0, macTableCounters: {}, totals: {} };
    return this.counterRegistry.complete(s, this.withDrivers(s, s.stats(page)), departedLimit);
  }

  /**
   * Stats of every switch, live and gone, all ports and no MAC entries: what
   * a metrics scrape reads (counter snapshots only).
   */
  allStats(): { switches: SwitchStats[]; server: ServerCounters } {
    const page = { macOffset: 0, macLimit: 0, portOffset: 0, portLimit: Infinity };
    return { switches: [...this.list(), ...this.counterRegistry.goneSwitches()].map((s) => this.switchStats(s, page)), server: this.serverCounters() };
  }

  /** Driver ports in a stats page: what serves them and the drivers' own counters. */
  private withDrivers(sw: Switch, st: SwitchStats): SwitchStats {
    for (const ps of st.ports) {
      const p = sw.port(ps.name);
      const d = p && this.drivers.get(p);
      if (d) ps.driver = { describe: d.describe(), counters: d.counters() };
    }
    return st;
  }

  /**
   * Start the driver of a port just created for it. The driver is the port's
   * client: the port is attached while it runs. If it cannot start, the port
   * goes again and the request fails with the driver's reason.
   */
  private async startDriver(sw: Switch, port: SwitchPort, spec: DriverSpec, factory: DriverFactory, holdAsked = false): Promise<void> {
    sw.setAttached(port.index, true);
    port.attached = true;
    let driver: PortDriver;
    try {
      driver = await factory({ sw, port, spec, holdAsked });
    } catch (e) {
      port.attached = false;
      if (sw.port(port.name) === port) {
        sw.setAttached(port.index, false);
        // it never served: nothing to keep
        this.counterRegistry.removingOnRequest(port.name);
        sw.removePort(port.index);
        this.maybeDropSwitch(sw);
      }
      const err = e as Error & { code?: string };
      throw new RequestError(err.code && /^E[A-Z]+$/.test(err.code) ? err.code : 'EINVAL', `${port.name}: ${spec.kind} port: ${err.message}`);
    }
    if (this.closed || sw.port(port.name) !== port) {
      await driver.close();
      throw new RequestError('ECONNRESET', `${port.name}: the switch went away while the ${spec.kind} driver started`);
    }
    this.drivers.set(port, driver);
    this.emit('driver', sw, port, driver);
  }

  /**
   * A persistent port's last client has gone. It may keep the region mapped
   * and the bells open (a forked child, or on purpose): the next client,
   * maybe of another uid, gets new ones (Switch.renewPort). The persistent
   * ports vale-ts creates have no extra buffers, so a region costs only its
   * rings' initialisation here. If none can be made (out of memory or
   * descriptors), the port goes: left as it is, the client that went would
   * keep sending and receiving as the port without holding it.
   */
  private renew(sw: Switch, port: SwitchPort): void {
    try {
      sw.renewPort(port.index);
    } catch (e) {
      this.logger.log('renew', `${port.name} removed: it cannot get a fresh region after its client left (${(e as Error).message}), and that client may still hold the old one`);
      sw.removePort(port.index);
      this.maybeDropSwitch(sw);
    }
  }

  private updateBells(sw: Switch, port: SwitchPort): void {
    const bells: number[] = [];
    for (const h of this.holders.get(port) ?? []) if (h.bell !== undefined) bells.push(h.bell);
    sw.setExtraBells(port.index, bells);
  }

  /**
   * Host a switch that stays without ports (a configured one, or one with
   * its own lookup), until {@link unpinSwitch}.
   */
  hostSwitch(sw: Switch): void {
    if (this.switches.get(sw.name) !== sw) this.addSwitch(sw);
    this.pinned.add(sw);
  }

  /** A switch no longer configured: it goes with its last port, as one created on demand. */
  unpinSwitch(name: string): void {
    const sw = this.switches.get(name);
    if (!sw || !this.pinned.delete(sw)) return;
    this.maybeDropSwitch(sw);
  }

  /**
   * Set a port's own lossless mode (the configuration's), in force at once
   * and again for each next client of a persistent port.
   */
  setPortLossless(sw: Switch, port: SwitchPort, on: boolean): void {
    this.ownLossless.set(port, on);
    sw.setLossless(port.index, on);
  }

  /**
   * Create a persistent port from inside the process (the configuration),
   * as a `create` request from vale-ts's own uid would, plus its lossless
   * mode. A driver spec starts the port's driver.
   */
  async createPort(name: string, opts: { conf?: ConfRequest; bufSize?: number; lossless?: boolean; holdUs?: number; driver?: DriverSpec } = {}): Promise<SwitchPort> {
    const n = this.parseVale(name);
    if (this.switches.get(n.sw)?.port(n.full)) throw new RequestError('EEXIST', `${n.full} already exists`);
    const factory = opts.driver ? driverFactory(opts.driver.kind) : undefined;
    const { sw, port } = await this.newPort(undefined, n, paramsOf(opts.conf ?? {}, opts.bufSize, undefined), { persistent: true, lossless: opts.lossless ?? false, ...(opts.holdUs !== undefined ? { holdUs: opts.holdUs } : {}) });
    if (factory && opts.driver) await this.startDriver(sw, port, opts.driver, factory, opts.holdUs !== undefined);
    return port;
  }

  /**
   * Remove a persistent port from inside the process: its driver stops
   * first; a port a client holds is refused (EBUSY) and stays. Its counters
   * are forgotten, as for `vale-ctl-ts -r`.
   */
  async removePort(name: string): Promise<void> {
    const n = this.parseVale(name);
    const sw = this.switches.get(n.sw);
    const port = sw?.port(n.full);
    if (!sw || !port) throw new RequestError('ENXIO', `no port ${n.full}`);
    if (!port.persistent) throw new RequestError('EINVAL', `${n.full} is not persistent: it goes away when its process closes it`);
    const driver = this.drivers.get(port);
    if (driver) {
      this.drivers.delete(port);
      await driver.close();
      sw.setAttached(port.index, false);
    } else if (port.attached) throw new RequestError('EBUSY', `${n.full} is in use${port.pid ? ` by pid ${port.pid}` : ''}: it is removed when the configuration is reloaded after its client has closed it`);
    if (sw.port(n.full) !== port) return;
    this.counterRegistry.removingOnRequest(port.name);
    sw.removePort(port.index);
    this.maybeDropSwitch(sw);
  }

  /** Replace the access policy for connections from now on (open connections keep what they hold). */
  setPolicy(p: PeerPolicy): void {
    this.policy.allowUids = p.allowUids ?? [];
    this.policy.allowGids = p.allowGids ?? [];
    this.policy.shareRingsAcrossUids = p.shareRingsAcrossUids ?? false;
  }

  private maybeDropSwitch(sw: Switch): void {
    // a switch created on demand goes with its last port, as in netmap, and
    // its last monitor: closing it would take a monitor's region out of the
    // limits while its client still maps it
    if (this.switches.get(sw.name) !== sw) return;
    if (sw.ports().length === 0 && sw.monitorPorts().length === 0 && !(this.opts.switches ?? []).includes(sw) && !this.pinned.has(sw)) {
      sw.close();
      this.switches.delete(sw.name);
      // its counters stay visible while vale-ts lives
      this.counterRegistry.switchClosed(sw);
    }
  }

  private drop(c: Client): void {
    if (!this.clients.delete(c)) return;
    c.dropped = true;
    const n = (this.connsByUid.get(c.uid) ?? 1) - 1;
    if (n > 0) this.connsByUid.set(c.uid, n);
    else this.connsByUid.delete(c.uid);
    c.watcher.close();
    native.close(c.fd);
    if (c.monitor) {
      c.monitor.sw.removeMonitor(c.monitor.index);
      this.maybeDropSwitch(c.monitor.sw);
    }
    const held = c.port;
    if (held) {
      const set = this.holders.get(held.port);
      set?.delete(c);
      if (c.bell !== undefined) {
        this.updateBells(held.sw, held.port);
        native.close(c.bell);
      }
      if (set && set.size > 0) {
        // other connections still hold rings of it
        this.emit('detach', held.sw, held.port);
        return;
      }
      this.holders.delete(held.port);
      delete held.port.pid;
      held.port.attached = false;
      if (held.port.persistent) {
        held.sw.setAttached(held.port.index, false);
        const own = this.ownLossless.get(held.port) ?? false;
        if (held.port.lossless !== own) held.sw.setLossless(held.port.index, own);
        if (!this.closed) this.renew(held.sw, held.port);
      } else {
        held.sw.removePort(held.port.index);
        this.maybeDropSwitch(held.sw);
      }
      this.emit('detach', held.sw, held.port);
    }
  }

  /** Tell clients, release every port and the socket file. */
  close(reason = 'vale-ts is shutting down'): void {
    if (this.closed) return;
    this.closed = true;
    if (this.acceptBackoff) clearTimeout(this.acceptBackoff);
    for (const done of [...this.lingering]) done();
    this.listenWatcher.close();
    native.close(this.listenFd);
    try {
      unlinkSync(this.socketPath);
    } catch {
      // already gone
    }
    for (const c of [...this.clients]) {
      this.bye(c, reason);
      this.drop(c);
    }
    // drivers first: each is a port's client and may have a thread on its rings
    const stopping = [...this.drivers.values()].map((d) => d.close().catch(() => undefined));
    this.drivers.clear();
    for (const sw of this.switches.values()) sw.close();
    this.switches.clear();
    this.driversClosed = Promise.all(stopping).then(() => undefined);
    this.emit('close');
  }
}

/** A reply and the fds that go with it. */
type Served = { reply: Reply; fds?: readonly number[] };

/** Monitors of each port (of the switch's 8) that only root and vale-ts's uid may open. */
const ADMIN_MONITORS = 2;
const ACCEPT_BACKOFF_MS = 100;
/** Requests of one connection served in one turn of the event loop. */
const REQUESTS_PER_TURN = 16;
/** Refused connections kept open at once until their request is read. */
const MAX_LINGERING = 64;
/** Told to a peer accepted only to be closed at EMFILE. */
const OUT_OF_FDS = encodeMessage({
  v: PROTOCOL_VERSION,
  ok: false,
  code: 'EMFILE',
  error: 'vale-ts is out of file descriptors and cannot take this connection now: retry later (the operator can raise ulimit -n or lower --max-conn)',
});

/**
 * The private socket directory: ours, a real directory, closed to others
 * (0700, or 0710 for a --group). Made if missing; anything else is refused
 * with what to do, since someone else's directory could hold their socket.
 */
export function ensurePrivateDir(dir: string, uid: number, gid?: number): void {
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (e) {
    if ((e as { code?: string }).code !== 'EEXIST') throw e;
  }
  const st = lstatSync(dir);
  const fix = `remove it (rm -r ${dir}) or use --socket PATH`;
  if (st.isSymbolicLink()) throw Object.assign(new Error(`socket directory ${dir} is a symbolic link: ${fix}`), { code: 'EACCES' });
  if (!st.isDirectory()) throw Object.assign(new Error(`socket directory ${dir} is not a directory: ${fix}`), { code: 'EACCES' });
  if (st.uid !== uid) throw Object.assign(new Error(`socket directory ${dir} belongs to uid ${st.uid}, not to vale-ts's uid ${uid}: ${fix}`), { code: 'EACCES' });
  if (gid !== undefined) {
    chownSync(dir, uid, gid);
    chmodSync(dir, 0o710);
  } else if ((st.mode & 0o077) !== 0) {
    throw Object.assign(new Error(`socket directory ${dir} is open to others (mode ${(st.mode & 0o777).toString(8)}): chmod 700 ${dir}, or ${fix}`), { code: 'EACCES' });
  }
}

/** Supplementary groups of a process (SO_PEERCRED carries only the primary gid). */
function supplementaryGroups(pid: number): number[] {
  if (!pid) return [];
  try {
    const m = /^Groups:\s*(.*)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? m[1]!.trim().split(/\s+/).filter(Boolean).map(Number) : [];
  } catch {
    return [];
  }
}

function paramsOf(conf: ConfRequest, bufSize: number | undefined, extraBufs: number | undefined): PortParams {
  const p: PortParams = {};
  if (conf.txRings !== undefined) p.txRings = conf.txRings;
  if (conf.rxRings !== undefined) p.rxRings = conf.rxRings;
  if (conf.txSlots !== undefined) p.txSlots = conf.txSlots;
  if (conf.rxSlots !== undefined) p.rxSlots = conf.rxSlots;
  if (bufSize !== undefined) p.bufSize = bufSize;
  if (extraBufs !== undefined) p.extraBufs = extraBufs;
  return p;
}
