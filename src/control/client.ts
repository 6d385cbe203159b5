/**
 * Client side of the vale-ts control socket: connect, send one request,
 * await its reply (with fds), without blocking the event loop.
 */
import { native } from '../netmap/addon.js';
import { decodeReply, encodeMessage, MAX_MESSAGE, type ByeMessage, type Reply, type Request } from './protocol.js';

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

  /** Connect to the switch's control socket. */
  static connect(socketPath: string): ControlConnection {
    try {
      return new ControlConnection(native.unixConnect(socketPath), socketPath);
    } catch (e) {
      const code = (e as { code?: string }).code ?? 'EIO';
      if (code === 'ENOENT' || code === 'ECONNREFUSED') throw new SwitchUnreachableError(socketPath, code);
      throw e;
    }
  }

  /** Send a request and wait for its reply (timeout in ms). */
  async request(req: Request, timeoutMs = 5000): Promise<ReplyWithFds> {
    if (!native.sendMsg(this.fd, encodeMessage(req), [])) throw new Error('control socket is full');
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
      if (m.eof) throw new Error(`vale-ts at ${this.socketPath} closed the connection`);
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
