/**
 * A pcapng writer (the format `tcpdump -r`, `tshark -r` and Wireshark read):
 * one Section Header Block, one Interface Description Block per port and
 * direction (`vale0:01/rx`, `vale0:01/tx`), and an Enhanced Packet Block per
 * frame with its timestamp, direction flag and bytes. Blocks are encoded
 * little-endian and handed to a sink as they are made, so a capture can
 * stream into a pipe (`| tcpdump -r -`).
 *
 * Format: the pcapng specification (IETF draft-ietf-opsawg-pcapng); the
 * fields used are summarised in docs/capture.md.
 *
 * @module
 */

const SHB = 0x0a0d0d0a;
const IDB = 0x00000001;
const EPB = 0x00000006;
const BYTE_ORDER_MAGIC = 0x1a2b3c4d;
const LINKTYPE_ETHERNET = 1;
// option codes
const OPT_ENDOFOPT = 0;
const SHB_USERAPPL = 4;
const IF_NAME = 2;
const IF_DESCRIPTION = 3;
const IF_TSRESOL = 9;
const EPB_FLAGS = 2;
/** epb_flags bits 0-1: the frame's direction as the interface saw it. */
const EPB_INBOUND = 1;
const EPB_OUTBOUND = 2;

/** Largest snap length pcapng readers accept without complaint (libpcap's MAXIMUM_SNAPLEN). */
export const MAX_SNAPLEN = 262144;

/** Timestamp resolution of a capture: microseconds (tcpdump's default) or nanoseconds. */
export type TsResolution = 'us' | 'ns';

/** Where encoded blocks go: returns false when the consumer wants a pause (a Node Writable's `write`). */
export interface PcapngSink {
  write(chunk: Uint8Array): boolean;
}

/** An interface as declared in the capture. */
export interface PcapngInterface {
  /** its id, which packet blocks refer to (0, 1, ... in order of declaration) */
  readonly id: number;
  readonly name: string;
  /** the direction of its frames as the port sees them, written in each packet's epb_flags */
  readonly direction: 'in' | 'out' | undefined;
}

const enc = new TextEncoder();

const pad4 = (n: number): number => (n + 3) & ~3;

/** Options as (code, value) pairs, padded, ending with opt_endofopt. */
function encodeOptions(opts: ReadonlyArray<readonly [number, Uint8Array]>): Uint8Array {
  if (opts.length === 0) return new Uint8Array(0);
  let len = 4;
  for (const [, v] of opts) len += 4 + pad4(v.length);
  const out = new Uint8Array(len);
  const dv = new DataView(out.buffer);
  let o = 0;
  for (const [code, v] of opts) {
    if (v.length > 0xffff) throw new RangeError(`pcapng option ${code} is ${v.length} bytes, more than 65535`);
    dv.setUint16(o, code, true);
    dv.setUint16(o + 2, v.length, true);
    out.set(v, o + 4);
    o += 4 + pad4(v.length);
  }
  dv.setUint16(o, OPT_ENDOFOPT, true);
  dv.setUint16(o + 2, 0, true);
  return out;
}

/** A whole block: type, total length, body, options, total length again. */
function block(type: number, body: Uint8Array, options: Uint8Array): Uint8Array {
  const total = 12 + pad4(body.length) + options.length;
  const out = new Uint8Array(total);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, type, true);
  dv.setUint32(4, total, true);
  out.set(body, 8);
  out.set(options, 8 + pad4(body.length));
  dv.setUint32(total - 4, total, true);
  return out;
}

/** Options of a {@link PcapngWriter}. */
export interface PcapngWriterOptions {
  /** timestamp resolution of every interface (default 'us', what tcpdump writes) */
  tsResolution?: TsResolution;
  /** bytes kept of each frame, declared in each interface block (default 262144) */
  snaplen?: number;
  /** the shb_userappl string (default '@x/netmap vale-ts') */
  application?: string;
}

/**
 * Writes one pcapng section to a sink. Interfaces may be declared at any
 * time before their first packet (pcapng allows interface blocks anywhere
 * in a section).
 */
export class PcapngWriter {
  readonly tsResolution: TsResolution;
  readonly snaplen: number;
  private readonly sink: PcapngSink;
  private readonly ifaces: PcapngInterface[] = [];
  /** packets written */
  packets = 0;
  /** bytes handed to the sink */
  bytes = 0;

  constructor(sink: PcapngSink, opts: PcapngWriterOptions = {}) {
    this.sink = sink;
    this.tsResolution = opts.tsResolution ?? 'us';
    if (this.tsResolution !== 'us' && this.tsResolution !== 'ns') throw new RangeError(`timestamp resolution '${String(this.tsResolution)}': use 'us' or 'ns'`);
    const snap = opts.snaplen ?? MAX_SNAPLEN;
    if (!Number.isInteger(snap) || snap < 1 || snap > MAX_SNAPLEN) throw new RangeError(`snaplen ${snap} out of range: use 1..${MAX_SNAPLEN}`);
    this.snaplen = snap;
    const body = new Uint8Array(16);
    const dv = new DataView(body.buffer);
    dv.setUint32(0, BYTE_ORDER_MAGIC, true);
    dv.setUint16(4, 1, true); // major version
    dv.setUint16(6, 0, true); // minor version
    // section length unknown (-1): the capture is a stream
    dv.setBigInt64(8, -1n, true);
    this.emit(block(SHB, body, encodeOptions([[SHB_USERAPPL, enc.encode(opts.application ?? '@x/netmap vale-ts')]])));
  }

  /** The interfaces declared so far. */
  interfaces(): readonly PcapngInterface[] {
    return this.ifaces;
  }

  /**
   * Declare an interface (one port and direction, e.g. `vale0:01/rx`).
   * Returns it; its id goes into {@link writePacket}.
   */
  addInterface(name: string, opts: { description?: string; direction?: 'in' | 'out' } = {}): PcapngInterface {
    const body = new Uint8Array(8);
    const dv = new DataView(body.buffer);
    dv.setUint16(0, LINKTYPE_ETHERNET, true);
    dv.setUint32(4, this.snaplen, true);
    const options: Array<readonly [number, Uint8Array]> = [[IF_NAME, enc.encode(name)]];
    if (opts.description !== undefined) options.push([IF_DESCRIPTION, enc.encode(opts.description)]);
    // if_tsresol: 10^-6 or 10^-9 seconds
    options.push([IF_TSRESOL, Uint8Array.of(this.tsResolution === 'us' ? 6 : 9)]);
    this.emit(block(IDB, body, encodeOptions(options)));
    const i: PcapngInterface = { id: this.ifaces.length, name, direction: opts.direction };
    this.ifaces.push(i);
    return i;
  }

  /**
   * One frame seen on interface `ifId` at `tsNs` (nanoseconds since the Unix
   * epoch; truncated to microseconds for a 'us' capture). Bytes beyond the
   * snap length are not written; the original length is kept.
   * Returns the sink's answer (false: wait for it to drain).
   */
  writePacket(ifId: number, tsNs: bigint, frame: Uint8Array): boolean {
    const iface = this.ifaces[ifId];
    if (!iface) throw new RangeError(`pcapng: no interface ${ifId} declared (${this.ifaces.length} so far)`);
    const cap = Math.min(frame.length, this.snaplen);
    const ts = this.tsResolution === 'us' ? tsNs / 1000n : tsNs;
    const flagsLen = iface.direction ? 12 : 0; // one 4-byte option + opt_endofopt
    const total = 12 + 20 + pad4(cap) + flagsLen;
    const out = new Uint8Array(total);
    const dv = new DataView(out.buffer);
    dv.setUint32(0, EPB, true);
    dv.setUint32(4, total, true);
    dv.setUint32(8, ifId, true);
    dv.setUint32(12, Number((ts >> 32n) & 0xffffffffn), true);
    dv.setUint32(16, Number(ts & 0xffffffffn), true);
    dv.setUint32(20, cap, true);
    dv.setUint32(24, frame.length, true);
    out.set(cap === frame.length ? frame : frame.subarray(0, cap), 28);
    if (iface.direction) {
      const o = 28 + pad4(cap);
      dv.setUint16(o, EPB_FLAGS, true);
      dv.setUint16(o + 2, 4, true);
      dv.setUint32(o + 4, iface.direction === 'in' ? EPB_INBOUND : EPB_OUTBOUND, true);
      // opt_endofopt: the 4 zero bytes already there
    }
    dv.setUint32(total - 4, total, true);
    this.packets++;
    return this.emit(out);
  }

  private emit(b: Uint8Array): boolean {
    this.bytes += b.length;
    return this.sink.write(b);
  }
}
