/**
 * Loads the tools addon (netmap_tools.node, built from cpp/tools): the
 * native loops of pkt-gen-ts and the C++ reference loops of the benchmarks.
 * Library code never loads it. NETMAP_TOOLS_ADDON_PATH loads a specific
 * build (the sanitizer run uses it).
 *
 * @module
 */
import { loadAddon } from '../src/netmap/native-loader.js';

/** Result of a benchmark reference loop. */
export interface PipeBenchResult {
  frames: number;
  errors: number;
  ns: number;
}

/** The pipe benchmark's C++ reference loop (cpp/tools/pipe_bench.cc). */
export interface NativePipeBench {
  /**
   * Opens end `end` of the pipe region at `path` itself, waits for the peer
   * end, then sends (tx: sequence-numbered frames of `len` bytes, `batch` per
   * sync) or receives and checks `count` frames.
   */
  pipeBenchLoop(
    path: string,
    end: 0 | 1,
    params: { rings?: number; slots?: number; bufSize?: number; extraBufs?: number },
    name: string,
    role: 'tx' | 'rx',
    count: number,
    len: number,
    batch: number,
  ): PipeBenchResult;
}

/** The raw binding; tools/pkt-gen/native.ts narrows it to pkt-gen's part. */
export const toolsRaw: unknown = loadAddon('netmap_tools', 'NETMAP_TOOLS_ADDON_PATH');
/** The pipe benchmark part. */
export const pipeBench = toolsRaw as NativePipeBench;
