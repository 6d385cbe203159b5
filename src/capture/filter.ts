/**
 * Capture filters in tcpdump's syntax (`'icmp or port 53'`, man
 * pcap-filter), compiled by the system's libpcap and run natively over a
 * batch of frames in a port's memory: one call per batch, no copy.
 *
 * libpcap is loaded when the first filter is compiled, not when the addon
 * builds or loads: without Debian's `libpcap0.8` everything else works and
 * compiling a filter fails with an error that names the package.
 *
 * @module
 */
import { nativeRaw } from '../netmap/addon.js';
import { MAX_SNAPLEN } from './pcapng.js';

interface NativePcapFilter {
  match(frame: Uint8Array, wireLen?: number): boolean;
  matchBatch(memory: Uint8Array | ArrayBuffer, offsets: Uint32Array, lens: Uint32Array, count: number, keep: Uint8Array): number;
  readonly instructions: number;
}
interface CaptureAddon {
  PcapFilter: new (expression: string, snaplen: number) => NativePcapFilter;
  pcapAvailable(): string | null;
}
const addon = nativeRaw as CaptureAddon;

/** A filter that could not be compiled: libpcap is missing (code ENOENT) or the expression is wrong (EINVAL). */
export class FilterError extends Error {
  readonly code: string;
  constructor(message: string, code: string) {
    super(message);
    this.name = 'FilterError';
    this.code = code;
  }
}

/** Null when libpcap can be loaded here, else why not (with the package to install). */
export function filterUnavailableReason(): string | null {
  const why = addon.pcapAvailable();
  return why === null ? null : `${why}: install Debian's libpcap0.8 package (apt-get install libpcap0.8)`;
}

/** A compiled tcpdump filter for Ethernet frames. */
export class CaptureFilter {
  /** the expression as given */
  readonly expression: string;
  private readonly f: NativePcapFilter;

  /**
   * Compile `expression` with libpcap (optimised, netmask unknown: as
   * `tcpdump` does for an interface without an IPv4 address).
   *
   * @throws FilterError naming libpcap's complaint, or the missing package;
   *   EINVAL for an expression over 2048 bytes (libpcap's compile time
   *   grows with about the cube of its length, and cannot be interrupted).
   */
  constructor(expression: string, snaplen = MAX_SNAPLEN) {
    this.expression = expression;
    try {
      this.f = new addon.PcapFilter(expression, snaplen);
    } catch (e) {
      const err = e as Error & { code?: string };
      throw new FilterError(err.message, err.code ?? 'EINVAL');
    }
  }

  /** BPF instructions libpcap produced. */
  get instructions(): number {
    return this.f.instructions;
  }

  /** Whether one frame passes. */
  match(frame: Uint8Array): boolean {
    return this.f.match(frame);
  }

  /**
   * The filter over `count` frames of `memory` (frame i: `lens[i]` bytes at
   * `offsets[i]`): sets `keep[i]` to 1 or 0, returns how many passed. A
   * frame that does not lie inside `memory` never passes.
   */
  matchBatch(memory: Uint8Array | ArrayBuffer, offsets: Uint32Array, lens: Uint32Array, count: number, keep: Uint8Array): number {
    return this.f.matchBatch(memory, offsets, lens, count, keep);
  }
}
