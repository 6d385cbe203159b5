/**
 * Client side of the vale-ts control socket: connect, send one request,
 * await its reply (with fds), without blocking the event loop.
 */
import { lstatSync } from 'node:fs';
import path from 'node:path';
import { native } from '../netmap/addon.js';
import { decodeReply, encodeMessage, MAX_MESSAGE, privateSocketDir, type ByeMessage, type Reply, type Request } from './protocol.js';

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
      if (m.eof) throw new Error(`vale-ts at ${this.socketPath} closed the connection (a switch out of file descriptors or over a limit does that; its log says which)`);
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
