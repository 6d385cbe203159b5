/**
 * open(): a port by its netmap name, served by the backend the name, the
 * options and NETMAP_BACKEND select.
 */
import { existsSync } from 'node:fs';
import { parsePortName } from './name.js';
import { Port } from './port.js';
import type { RingOptions } from './ring.js';
import { PipeBackend } from '../backends/pipe.js';
import { ValeClientBackend } from '../backends/vale-client.js';
import { KernelBackend, type KernelRegisterOptions } from '../backends/kernel/port.js';
import type { Backend } from '../backends/backend.js';
import type { SwitchGoneError } from './errors.js';

/** Options of {@link open}. */
export interface OpenOptions {
  /**
   * 'kernel': /dev/netmap; 'user': pipes in shared memory and vale ports via
   * the vale-ts switch; 'auto' (default, or NETMAP_BACKEND): kernel where
   * /dev/netmap exists, else user.
   */
  backend?: 'auto' | 'user' | 'kernel';
  /** vale-ts control socket (default: VALE_TS_SOCKET, then the standard path). */
  socket?: string;
  /** Ring count for ports this open creates (like @conf:rings=). */
  rings?: number;
  /** Slots per ring for ports this open creates (like @conf:slots=; a pipe defaults to 4096 with 2 KiB buffers: pipeDefaultSlots in backends/pipe.ts). */
  slots?: number;
  /** Buffer size of regions this open creates (user backend). */
  bufSize?: number;
  /** Extra buffers (nr_extra_bufs), linked from ni_bufs_head. */
  extraBufs?: number;
  /** vale-ts: keep frames in this port's tx ring when a destination is full (backpressure) instead of dropping. */
  lossless?: boolean;
  /**
   * vale-ts: the virtio-net header length this port's frames carry, both
   * ways (0, 10 or 12; NETMAP_REQ_PORT_HDR_SET): the switch converts copies
   * to and from ports with other lengths (docs/vnet-header.md).
   */
  vnetHdrLen?: 0 | 10 | 12;
  /**
   * Check every slot handed back at each sync, as a debugging aid (see
   * {@link RingOptions.checkSlots}; off by default: the other side validates).
   */
  checkSlots?: boolean;
  /**
   * vale-ts ports: when the switch goes away, re-create the port (same name,
   * same options) on the switch that comes back at the same socket, instead
   * of failing with {@link SwitchGoneError}. Meanwhile syncs move nothing
   * and `poll` waits; afterwards `txRings`, `rxRings` and `memory` are new,
   * and {@link Port.counters} counts `reconnects` and the frames lost across
   * each gap (`reconnectLostTxFrames`: queued on tx, never taken by the old
   * switch; `reconnectLostRxFrames`: delivered to rx, not yet read).
   */
  reconnect?: boolean;
}

/** The error thrown when no backend can serve a name. */
export class BackendError extends Error {
  /** errno-style name of the reason (`ENODEV` when no backend serves the name) */
  readonly code: string;
  constructor(message: string, code = 'ENODEV') {
    super(message);
    this.name = 'BackendError';
    this.code = code;
  }
}

/** Which backend `open` would use for these options in this environment. */
export function selectBackend(opt?: OpenOptions['backend']): 'user' | 'kernel' {
  const env = process.env['NETMAP_BACKEND'];
  const choice = opt && opt !== 'auto' ? opt : env && env !== 'auto' ? env : 'auto';
  if (choice === 'user' || choice === 'kernel') return choice;
  if (choice !== 'auto') {
    throw new BackendError(`NETMAP_BACKEND=${choice} is not a backend: use user, kernel or auto`, 'EINVAL');
  }
  return existsSync('/dev/netmap') ? 'kernel' : 'user';
}

/**
 * Open a port by its netmap name: `vale0:01`, `vale0:x{1`, `netmap:eth0-2`...
 * Rejects with an error naming the backend and the reason when it can't.
 */
export async function open(name: string, opts: OpenOptions = {}): Promise<Port> {
  const p = parsePortName(name);
  const which = selectBackend(opts.backend);
  let be: Backend;
  let reopen: (() => Promise<Backend>) | undefined;
  if (which === 'kernel') {
    // the options that are nmreq_register fields go to the kernel as such
    const ko: KernelRegisterOptions = {};
    if (opts.rings !== undefined) ko.rings = opts.rings;
    if (opts.slots !== undefined) ko.slots = opts.slots;
    if (opts.extraBufs !== undefined) ko.extraBufs = opts.extraBufs;
    be = KernelBackend.open(p, ko);
  } else if (p.pipe) {
    const po: { rings?: number; slots?: number; bufSize?: number; extraBufs?: number } = {};
    if (opts.rings !== undefined) po.rings = opts.rings;
    if (opts.slots !== undefined) po.slots = opts.slots;
    if (opts.bufSize !== undefined) po.bufSize = opts.bufSize;
    if (opts.extraBufs !== undefined) po.extraBufs = opts.extraBufs;
    be = PipeBackend.open(p, po);
  } else if (p.isVale) {
    be = await ValeClientBackend.open(p, opts);
    if (opts.reconnect) reopen = () => ValeClientBackend.open(p, opts);
  } else {
    throw new BackendError(
      `user backend: cannot open ${name}: ${p.port} is a host interface, and without /dev/netmap (the netmap ` +
        `kernel module) only vale ports (valeX:Y, served by vale-ts) and pipes (NAME{ID / NAME}ID) exist; ` +
        `load netmap for direct NIC access, or attach the interface to a vale-ts switch and open a vale port`,
    );
  }
  try {
    if (opts.reconnect && !reopen) {
      throw new BackendError(`${name}: { reconnect: true } follows a restarting vale-ts switch; this port is served by ${be.kind}`, 'EINVAL');
    }
    return new Port(p, be, opts.checkSlots === undefined ? {} : { checkSlots: opts.checkSlots }, reopen);
  } catch (e) {
    be.close();
    throw e;
  }
}
