/**
 * The forwarding decision of examples/custom-lookup.ts, in a module of its
 * own so a test (or a datapath thread) can import it: a static L3 forwarder
 * that picks the output port from the IPv4 destination's last octet and
 * drops everything that is not IPv4 — a filter and a router in a dozen lines.
 */
import { DEST_DROP, DEST_FLOOD, type BatchLookup } from '@x/netmap';

/** 10.0.0.N goes to the port opened N-th (index N-1); the rest is dropped. */
export const routed: BatchLookup = (buf, offsets, lens, count, srcPorts, dests) => {
  for (let i = 0; i < count; i++) {
    const o = offsets[i]!;
    if (lens[i]! < 34 || buf[o + 12] !== 0x08 || buf[o + 13] !== 0x00) {
      dests[i] = DEST_DROP; // not IPv4: filtered, counted as dropLookup
      continue;
    }
    const dst = (buf[o + 30]! << 24) | (buf[o + 31]! << 16) | (buf[o + 32]! << 8) | buf[o + 33]!;
    if (dst >>> 8 !== 0x0a0000) dests[i] = DEST_FLOOD; // outside 10.0.0.0/24: let everyone see it
    else dests[i] = (dst & 0xff) - 1 === srcPorts[i] ? DEST_DROP : (dst & 0xff) - 1;
  }
};
