/**
 * The vale-ts control server: a unix SOCK_SEQPACKET socket where clients
 * register ports (receiving the region and doorbells as fds) and tools list,
 * create and remove ports. Hosts any number of switches, each created with
 * its first port. A client's port lives as long as its connection.
 */
import { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { native, type NativeFdWatcher } from '../netmap/addon.js';
import { NR_REG_ONE_NIC } from '../netmap/abi.js';
import { parsePortName, PortNameError } from '../netmap/name.js';
import { Switch, type PortParams, type SwitchOptions, type SwitchPort } from './switch.js';
import {
  decodeRequest,
  defaultSocketPath,
  encodeMessage,
  MAX_MESSAGE,
  PROTOCOL_VERSION,
  ProtocolError,
  type ConfRequest,
  type PortListing,
  type Reply,
  type Request,
} from '../control/protocol.js';

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
}

interface Client {
  fd: number;
  watcher: NativeFdWatcher;
  pid: number;
  /** the port this connection registered, and the ring it bound (-1: all) */
  port?: { sw: Switch; port: SwitchPort; ring: number };
  /** this registration's own doorbell when it shares the port with others */
  bell?: number;
}

class RequestError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** A running control server. */
export class ValeServer extends EventEmitter {
  readonly socketPath: string;
  private readonly listenFd: number;
  private readonly listenWatcher: NativeFdWatcher;
  private readonly switches = new Map<string, Switch>();
  private readonly clients = new Set<Client>();
  /** connections holding each port: several only when each binds its own ring (-N) */
  private readonly holders = new Map<SwitchPort, Set<Client>>();
  private readonly opts: ServerOptions;
  private closed = false;

  private constructor(socketPath: string, fd: number, opts: ServerOptions) {
    super();
    this.socketPath = socketPath;
    this.listenFd = fd;
    this.opts = opts;
    for (const sw of opts.switches ?? []) this.addSwitch(sw);
    this.listenWatcher = new native.FdWatcher(fd, () => this.acceptAll());
    this.listenWatcher.start(1);
  }

  /** Listen on the control socket; fails if another vale-ts owns it. */
  static async listen(opts: ServerOptions = {}): Promise<ValeServer> {
    const socketPath = defaultSocketPath(opts.socket);
    mkdirSync(path.dirname(socketPath), { recursive: true });
    if (existsSync(socketPath)) {
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
    return new ValeServer(socketPath, fd, opts);
  }

  /** Host a switch (its bridge index is assigned here). */
  addSwitch(sw: Switch): void {
    if (this.switches.has(sw.name)) throw new Error(`switch ${sw.name} is already hosted`);
    const used = new Set([...this.switches.values()].map((s) => s.bridgeIndex));
    let idx = 0;
    while (used.has(idx)) idx++;
    sw.bridgeIndex = idx;
    this.switches.set(sw.name, sw);
    this.emit('switch', sw);
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
      const fd = native.accept(this.listenFd);
      if (fd < 0) return;
      let pid = 0;
      try {
        pid = native.peerCred(fd).pid;
      } catch {
        // not fatal: pid is informational
      }
      const client: Client = { fd, pid, watcher: new native.FdWatcher(fd, () => this.onReadable(client)) };
      this.clients.add(client);
      client.watcher.start(1);
    }
  }

  private onReadable(c: Client): void {
    for (;;) {
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
        if (m.truncated) throw new ProtocolError(`message longer than ${MAX_MESSAGE} bytes`);
        req = decodeRequest(m.data);
      } catch (e) {
        this.send(c, { v: PROTOCOL_VERSION, ok: false, code: 'EPROTO', error: `malformed request: ${(e as Error).message}` });
        this.drop(c);
        return;
      }
      try {
        const { reply, fds } = this.handle(c, req);
        this.send(c, reply, fds);
      } catch (e) {
        const code = e instanceof RequestError ? e.code : ((e as { code?: string }).code ?? 'EINVAL');
        this.send(c, { v: PROTOCOL_VERSION, ok: false, code, error: (e as Error).message });
      }
    }
  }

  private send(c: Client, reply: Reply, fds: readonly number[] = []): void {
    try {
      native.sendMsg(c.fd, encodeMessage(reply), [...fds]);
    } catch {
      this.drop(c);
    }
  }

  private switchFor(name: string, create: boolean): Switch {
    let sw = this.switches.get(name);
    if (sw) return sw;
    if (!create || this.opts.autoCreate === false) throw new RequestError('ENXIO', `no switch ${name} on this vale-ts`);
    if (this.switches.size >= (this.opts.maxSwitches ?? 64)) throw new RequestError('ENOSPC', `vale-ts hosts ${this.switches.size} switches already (limit ${this.opts.maxSwitches ?? 64})`);
    sw = new Switch(name, this.opts.switchOptions);
    this.addSwitch(sw);
    return sw;
  }

  private parseVale(name: string): { sw: string; port: string; full: string; spec: ReturnType<typeof parsePortName> } {
    let p;
    try {
      p = parsePortName(name);
    } catch (e) {
      if (e instanceof PortNameError) throw new RequestError('EINVAL', e.message);
      throw e;
    }
    if (!p.isVale || !p.switchName) throw new RequestError('EINVAL', `${name} is not a vale port name (valeX:Y)`);
    if (p.pipe) throw new RequestError('EINVAL', `${name} is a pipe: pipes need no switch, open them directly`);
    return { sw: p.switchName, port: p.port, full: `${p.switchName}:${p.port}`, spec: p };
  }

  private handle(c: Client, req: Request): { reply: Reply; fds?: readonly number[] } {
    const v = PROTOCOL_VERSION;
    switch (req.op) {
      case 'register': {
        if (c.port) throw new RequestError('EBUSY', 'this connection already holds a port: open one port per connection');
        const n = this.parseVale(req.name);
        const sw = this.switchFor(n.sw, true);
        const ring = req.nrMode === NR_REG_ONE_NIC ? req.ringId : -1;
        let port = sw.port(n.full);
        if (port) {
          const held = [...(this.holders.get(port) ?? [])];
          if (held.length === 0 && !port.persistent) {
            throw new RequestError('EBUSY', `${n.full} is busy`);
          }
          // as in netmap, registrations may share a port when each binds a
          // ring of its own (vale0:x-0, vale0:x-1, ...); all rings is exclusive
          const clash = held.find((h) => ring < 0 || h.port!.ring < 0 || h.port!.ring === ring);
          if (clash) {
            const what = ring >= 0 && clash.port!.ring === ring ? `ring ${ring} of ${n.full} is bound` : `${n.full} is busy`;
            throw new RequestError('EBUSY', `${what}: another process has it open${clash.pid ? ` (pid ${clash.pid})` : ''}`);
          }
        } else {
          port = sw.addPort(n.full, paramsOf(req.conf, req.bufSize, req.extraBufs), { lossless: req.lossless ?? false });
        }
        if (ring >= 0 && (ring >= port.txRings || ring >= port.rxRings)) {
          if (!this.holders.get(port)?.size && !port.persistent) {
            sw.removePort(port.index);
            this.maybeDropSwitch(sw);
          }
          throw new RequestError('EINVAL', `${n.full} has ${port.txRings} tx / ${port.rxRings} rx rings: there is no ring ${ring}`);
        }
        if (req.lossless !== undefined && req.lossless !== port.lossless) sw.setLossless(port.index, req.lossless);
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
      case 'list': {
        const all: PortListing[] = [];
        for (const sw of this.list()) {
          for (const p of sw.ports()) {
            const l: PortListing = { name: p.name, bridgeIndex: sw.bridgeIndex, portIndex: p.index, persistent: p.persistent, attached: p.attached };
            if (p.pid) l.pid = p.pid;
            all.push(l);
          }
        }
        if (req.name !== undefined) {
          const n = this.parseVale(req.name);
          const found = all.filter((l) => l.name === n.full);
          if (!found.length) throw new RequestError('ENXIO', `no port ${n.full}`);
          return { reply: { v, ok: true, op: 'list', ports: found } };
        }
        return { reply: { v, ok: true, op: 'list', ports: all } };
      }
      case 'info': {
        const n = this.parseVale(req.name);
        const port = this.switches.get(n.sw)?.port(n.full);
        if (!port) throw new RequestError('ENXIO', `no port ${n.full}`);
        return { reply: { v, ok: true, op: 'info', name: port.name, ...port.geometry } };
      }
      case 'create': {
        const n = this.parseVale(req.name);
        const sw = this.switchFor(n.sw, true);
        if (sw.port(n.full)) throw new RequestError('EEXIST', `${n.full} already exists`);
        const port = sw.addPort(n.full, paramsOf(req.conf, req.bufSize, undefined), { persistent: true });
        return { reply: { v, ok: true, op: 'create', name: port.name, portIndex: port.index, ...port.geometry } };
      }
      case 'remove': {
        const n = this.parseVale(req.name);
        const sw = this.switches.get(n.sw);
        const port = sw?.port(n.full);
        if (!sw || !port) throw new RequestError('ENXIO', `no port ${n.full}`);
        if (!port.persistent) throw new RequestError('EINVAL', `${n.full} is not persistent: it goes away when its process closes it`);
        if (port.attached) throw new RequestError('EBUSY', `${n.full} is in use${port.pid ? ` by pid ${port.pid}` : ''}`);
        sw.removePort(port.index);
        this.maybeDropSwitch(sw);
        return { reply: { v, ok: true, op: 'remove', name: n.full, portIndex: port.index } };
      }
      case 'attach':
      case 'detach':
        throw new RequestError(
          'EOPNOTSUPP',
          `${req.op === 'attach' ? 'attaching' : 'detaching'} host interfaces (${req.name}) is not supported yet by vale-ts: ` +
            `Linux interfaces, TAPs and VXLAN uplinks come with the host-port backend`,
        );
      case 'stats': {
        const sws = req.switch !== undefined ? [this.switches.get(req.switch)].filter((s): s is Switch => !!s) : this.list();
        if (req.switch !== undefined && !sws.length) throw new RequestError('ENXIO', `no switch ${req.switch}`);
        return { reply: { v, ok: true, op: 'stats', switches: sws.map((s) => s.stats()) } };
      }
    }
  }

  private updateBells(sw: Switch, port: SwitchPort): void {
    const bells: number[] = [];
    for (const h of this.holders.get(port) ?? []) if (h.bell !== undefined) bells.push(h.bell);
    sw.setExtraBells(port.index, bells);
  }

  private maybeDropSwitch(sw: Switch): void {
    // a switch created on demand goes with its last port, as in netmap
    if (sw.ports().length === 0 && !(this.opts.switches ?? []).includes(sw)) {
      sw.close();
      this.switches.delete(sw.name);
    }
  }

  private drop(c: Client): void {
    if (!this.clients.delete(c)) return;
    c.watcher.close();
    native.close(c.fd);
    const held = c.port;
    if (held) {
      const set = this.holders.get(held.port);
      set?.delete(c);
      if (c.bell !== undefined) {
        this.updateBells(held.sw, held.port);
        native.close(c.bell);
      }
      if (set && set.size > 0) return; // other connections still hold rings of it
      this.holders.delete(held.port);
      delete held.port.pid;
      held.port.attached = false;
      if (held.port.persistent) held.sw.setAttached(held.port.index, false);
      else {
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
    this.listenWatcher.close();
    native.close(this.listenFd);
    try {
      unlinkSync(this.socketPath);
    } catch {
      // already gone
    }
    for (const c of [...this.clients]) {
      try {
        native.sendMsg(c.fd, encodeMessage({ v: PROTOCOL_VERSION, op: 'bye', reason }), []);
      } catch {
        // the client is gone already
      }
      this.drop(c);
    }
    for (const sw of this.switches.values()) sw.close();
    this.switches.clear();
    this.emit('close');
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
