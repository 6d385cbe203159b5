/**
 * `vale-ctl-ts --capture PORT[,PORT...] [-w FILE|-] [--filter EXPR] [-c COUNT]
 * [--snaplen N] [--nano] [--socket PATH]`: watch vale-ts ports through
 * netmap-style monitors (`PORT/rt`, or `PORT/r` / `PORT/t` when given so)
 * and write pcapng: to FILE, or to stdout (`-w -`, the default when stdout
 * is not a terminal) for `| tcpdump -r -`. Status lines go to stderr.
 *
 * @module
 */
import { closeSync, constants, createWriteStream, fstatSync, openSync, statSync } from 'node:fs';
import { Socket } from 'node:net';
import type { Writable } from 'node:stream';
import { once } from 'node:events';
import { open, type Port } from '../../src/index.js';
import { parsePortName } from '../../src/netmap/name.js';
import { NR_MONITOR_RX, NR_MONITOR_TX } from '../../src/netmap/abi.js';
import { capture, monitorRings, CaptureFilter, PcapngWriter, MAX_SNAPLEN, type CaptureSource } from '../../src/capture/index.js';
import { getopt, UsageError } from '../getopt.js';

/** Usage of the capture mode. */
export const CAPTURE_USAGE =
  'vale-ctl-ts --capture PORT[,PORT...] [-w FILE|-] [--filter EXPR] [-c COUNT] [--snaplen N] [--nano] [--socket PATH]\n' +
  '\tPORT\t\tvaleX:Y (both directions), valeX:Y/r (what it receives) or valeX:Y/t (what it sends)\n' +
  '\t-w FILE|-\tpcapng output file, or - for stdout (default - unless stdout is a terminal)\n' +
  "\t--filter EXPR\ttcpdump filter ('icmp or port 53', at most 2048 bytes), compiled by libpcap (Debian: libpcap0.8)\n" +
  '\t-c COUNT\tstop after COUNT frames (default: until interrupted)\n' +
  '\t--snaplen N\tbytes kept of each frame (default 262144)\n' +
  '\t--nano\t\tnanosecond timestamps (default: microseconds)\n';

/** Parsed capture arguments. */
export interface CaptureArgs {
  /** monitor names to open (valeX:Y/rt, /r or /t) */
  monitors: string[];
  out: string | undefined;
  filter: string | undefined;
  count: number | undefined;
  snaplen: number;
  nano: boolean;
  socket: string | undefined;
}

const LONG = {
  capture: { arg: 'required', what: 'the ports to watch' },
  filter: { arg: 'required', what: 'a tcpdump filter expression' },
  snaplen: { arg: 'required', what: 'bytes per frame' },
  nano: { arg: 'none' },
  socket: { arg: 'required', what: 'the control socket path' },
  help: { arg: 'none' },
} as const;

/** The monitor name for a PORT argument: `valeX:Y` watches both ways (`/rt`). */
export function monitorName(arg: string): string {
  let p;
  try {
    p = parsePortName(arg);
  } catch (e) {
    throw new UsageError(`--capture: ${(e as Error).message}`, '--capture');
  }
  if (!p.isVale) throw new UsageError(`--capture: '${arg}' is not a vale port (valeX:Y)`, '--capture');
  const mon = p.flags & (NR_MONITOR_RX | NR_MONITOR_TX);
  if (p.flags & ~mon) throw new UsageError(`--capture: '${arg}': only /r, /t or /rt may follow the port name`, '--capture');
  return mon ? arg : `${arg}/rt`;
}

/** Parse the capture mode's argv (the whole vale-ctl-ts argv). */
export function parseCaptureArgs(argv: readonly string[]): CaptureArgs | 'help' {
  const { opts, operands } = getopt(argv, 'w:c:', { dialect: 'gnu', long: LONG });
  const a: CaptureArgs = { monitors: [], out: undefined, filter: undefined, count: undefined, snaplen: MAX_SNAPLEN, nano: false, socket: undefined };
  for (const { opt, value } of opts) {
    if (opt === 'help') return 'help';
    if (opt === 'capture') {
      for (const n of value!.split(',')) if (n) a.monitors.push(monitorName(n));
    } else if (opt === 'w') a.out = value!;
    else if (opt === 'filter') a.filter = value!;
    else if (opt === 'nano') a.nano = true;
    else if (opt === 'socket') a.socket = value!;
    else if (opt === 'c' || opt === 'snaplen') {
      const v = Number(value);
      const max = opt === 'c' ? Number.MAX_SAFE_INTEGER : MAX_SNAPLEN;
      if (!/^\d+$/.test(value!) || v < 1 || v > max) throw new UsageError(`${opt === 'c' ? '-c' : '--snaplen'} '${value!}': give a whole number 1..${max}`, opt);
      if (opt === 'c') a.count = v;
      else a.snaplen = v;
    }
  }
  if (operands.length) throw new UsageError(`unexpected argument${operands.length > 1 ? 's' : ''}: ${operands.join(' ')}`);
  if (!a.monitors.length) throw new UsageError('--capture needs a port (valeX:Y)', '--capture');
  if (new Set(a.monitors).size !== a.monitors.length) throw new UsageError('--capture: a port is named twice', '--capture');
  return a;
}

/** Where the capture's text goes. */
export interface CaptureIo {
  stderr(s: string): void;
  /** stdout as a stream (pcapng goes there with -w -) */
  stdout: Writable & { isTTY?: boolean };
  signal?: AbortSignal;
}

/**
 * -w FILE opened for writing (created 0600: another user's frames, as a
 * monitor is for the port's owner and root, are not for every local user to
 * read). A FIFO (wireshark -k -i FIFO) is written as a pipe, its writes
 * waiting in the event loop: a file stream writes in libuv's thread pool,
 * where a write to a reader that stopped reading blocks for good, and the
 * process's exit waits for that thread (no stop ends it). O_NONBLOCK makes a
 * FIFO no reader has opened an error at once, not an open() blocked there
 * too; a regular file ignores it.
 */
function openOutput(file: string): { out: Writable; fifo: boolean } {
  let fd: number;
  try {
    fd = openSync(file, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NONBLOCK, 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENXIO' && statSync(file, { throwIfNoEntry: false })?.isFIFO()) throw new Error(`${file} is a FIFO no reader has opened: start its reader first (wireshark -k -i ${file})`);
    throw e;
  }
  let fifo: boolean;
  try {
    fifo = fstatSync(fd).isFIFO();
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  return { out: fifo ? new Socket({ fd, readable: false, writable: true }) : createWriteStream(file, { fd }), fifo };
}

/** Run the capture mode. Returns the exit status. */
export async function runCapture(argv: readonly string[], io: CaptureIo): Promise<number> {
  let a: CaptureArgs | 'help';
  try {
    a = parseCaptureArgs(argv);
  } catch (e) {
    io.stderr(`vale-ctl-ts: ${(e as Error).message}\n${CAPTURE_USAGE}`);
    return 1;
  }
  if (a === 'help') {
    io.stderr(CAPTURE_USAGE);
    return 0;
  }
  const toStdout = a.out === undefined || a.out === '-';
  if (toStdout && io.stdout.isTTY) {
    io.stderr('vale-ctl-ts: pcapng is binary: give -w FILE, or pipe stdout into tcpdump -r - (or use -w - to insist)\n');
    if (a.out === undefined) return 1;
  }
  // a stop (Ctrl-C) ends the capture whenever it comes: also while the
  // monitors open (before the capture runs), and while a FIFO's reader does
  // not read what is pending (-c COUNT reached)
  const stopped = new Promise<'stopped'>((resolve) => {
    if (io.signal?.aborted) resolve('stopped');
    else io.signal?.addEventListener('abort', () => resolve('stopped'), { once: true });
  });
  let filter: CaptureFilter | undefined;
  const ports: Port[] = [];
  try {
    if (a.filter !== undefined) filter = new CaptureFilter(a.filter, a.snaplen);
    const sources: CaptureSource[] = [];
    for (const m of a.monitors) {
      const port = await open(m, { backend: 'user', ...(a.socket !== undefined ? { socket: a.socket } : {}) });
      ports.push(port);
      const p = parsePortName(m);
      const base = m.slice(0, m.lastIndexOf('/'));
      sources.push({ port, rings: monitorRings(base, (p.flags & NR_MONITOR_RX) !== 0, (p.flags & NR_MONITOR_TX) !== 0) });
    }
    const ac = new AbortController();
    void stopped.then(() => ac.abort());
    const { out, fifo } = toStdout ? { out: io.stdout, fifo: false } : openOutput(a.out!);
    // a FIFO's reader gone (EPIPE) ends the capture quietly, as stdout's does; any other write error fails it
    let outErr: NodeJS.ErrnoException | undefined;
    if (!toStdout) {
      out.on('error', (e: NodeJS.ErrnoException) => {
        outErr ??= e;
        ac.abort();
      });
    }
    const writer = new PcapngWriter(out, { tsResolution: a.nano ? 'ns' : 'us', snaplen: a.snaplen });
    io.stderr(`vale-ctl-ts: capturing ${a.monitors.join(', ')}${filter ? ` (filter '${filter.expression}', ${filter.instructions} BPF instructions)` : ''}\n`);
    const drained = (): Promise<void> => once(out, 'drain').then(() => undefined);
    const res = await capture(sources, writer, { signal: ac.signal, drained, ...(filter ? { filter } : {}), ...(a.count !== undefined ? { count: a.count } : {}) });
    if (outErr && outErr.code !== 'EPIPE') throw outErr;
    if (!toStdout && !outErr) {
      out.end();
      // a file is flushed (a Ctrl-C keeps what was captured); a FIFO's reader that does not read is not waited for once stopped
      if (fifo) await Promise.race([once(out, 'finish'), stopped]);
      else await once(out, 'finish');
    }
    if (res.hungUp) io.stderr(`vale-ctl-ts: ${res.hungUp}\n`);
    io.stderr(`vale-ctl-ts: ${res.written} frames written (${res.seen} seen, ${res.filtered} filtered out)\n`);
    // as tcpdump when its interface disappears: what was captured is kept, the status says it ended early
    return res.hungUp ? 1 : 0;
  } catch (e) {
    io.stderr(`vale-ctl-ts: capture failed: ${(e as Error).message}\n`);
    return 1;
  } finally {
    for (const p of ports) p.close();
  }
}
