/**
 * What a sender needs before it starts: the frame template (pkt-gen's
 * generated UDP frame, or the first packet of a `-P` pcap file) and the
 * options of the native generator — per-frame sequence numbers, address and
 * port walks, random addresses and sizes, fragments — checked against the
 * port the frames go to.
 *
 * @module
 */
import { randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  buildFrame,
  frameLayout,
  isRange,
  parseIpv4,
  parseIpv6,
  readFirstPcapPacket,
  withVnetHeader,
  type IpRange,
} from './frame.js';
import type { SideSpec, TxGenSpec } from './native.js';
import { OPT, type PktGenOptions } from './options.js';

/** A setup problem: printed as `pkt-gen-ts: <message>`, exit status 1. */
export class SetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SetupError';
  }
}

/** What the sender must know about the port. */
export interface PortFacts {
  /** Buffer size of the port's rings. */
  bufSize: number;
  /** Whether the port is a pipe end (its buffers circulate between the two ends). */
  pipe: boolean;
  /** virtio-net header bytes in front of every frame (kernel ports only). */
  hdrLen: number;
}

/** The template plus the generator options. */
export interface TxPlan {
  template: Uint8Array;
  spec: TxGenSpec;
  /** Frame length as sent (pkt-gen's pkt_size; the maximum with random sizes). */
  frameLen: number;
}

function word16(bytes: Uint8Array, group: number): number {
  return (bytes[2 * group]! << 8) | bytes[2 * group + 1]!;
}

/**
 * One side of the address walk. A range walks ports then addresses as
 * pkt-gen does; `-z`/`-Z` draw at random inside the range when `-s`/`-d`
 * gives one, and anywhere (any address, any port) when it names a single
 * address and port, as pkt-gen's `-z`/`-Z` do.
 */
function side(r: IpRange, random: boolean): SideSpec {
  let a0: number;
  let a1: number;
  if (r.af === 4) {
    a0 = parseIpv4(r.ipStart);
    a1 = parseIpv4(r.ipEnd);
  } else {
    const g = r.group ?? 7;
    a0 = word16(parseIpv6(r.ipStart), g);
    a1 = word16(parseIpv6(r.ipEnd), g);
  }
  if (a1 < a0) [a0, a1] = [a1, a0];
  if (random && !isRange(r)) {
    return { a0: 0, a1: r.af === 4 ? 0xffffffff : 0xffff, p0: 0, p1: 0xffff, random: true };
  }
  return { a0, a1, p0: r.portStart, p1: r.portEnd, random };
}

/** The frame to send: `-P`'s first packet, or pkt-gen's UDP frame built from the options. */
export function baseFrame(o: PktGenOptions, srcMac: Uint8Array): Uint8Array {
  if (o.pcapFile !== undefined) {
    try {
      return readFirstPcapPacket(o.pcapFile);
    } catch (e) {
      throw new SetupError(`-P: ${(e as Error).message}`);
    }
  }
  return buildFrame({
    srcMac,
    dstMac: o.dstMac,
    srcIp: o.src.ipStart,
    dstIp: o.dst.ipStart,
    srcPort: o.src.portStart,
    dstPort: o.dst.portStart,
    len: o.pktSize,
    af: o.af,
    indirect: o.indirect,
  });
}

/**
 * Build the template and generator options for tx/txseq on a port.
 *
 * @throws SetupError when the options cannot work on this port or frame.
 */
export function planTx(o: PktGenOptions, port: PortFacts, srcMac: Uint8Array): TxPlan {
  const frame = baseFrame(o, srcMac);
  const hdr = port.hdrLen;
  const template = withVnetHeader(frame, hdr);
  const L = template.length;
  const seq = o.func === 'txseq';
  const walk = isRange(o.src) || isRange(o.dst) || o.randomSrc || o.randomDst;
  const randomLen = o.pktSizeMin !== undefined && o.pcapFile === undefined;
  if (o.pktSizeMin !== undefined && o.pcapFile !== undefined) {
    throw new SetupError('-l given twice (random sizes) with -P: the pcap packet has its own fixed length');
  }
  const perFrame = walk || seq || randomLen;
  const spec: TxGenSpec = {
    af: o.af,
    l3: 14 + hdr,
    l4: 0,
    lenMin: L,
    lenMax: L,
    seq,
    seqStart: 0,
    src: side(o.src, o.randomSrc),
    dst: side(o.dst, o.randomDst),
    group: o.src.group ?? 7,
    dstGroup: o.dst.group ?? 7,
    frags: 1,
    fragSize: 0,
    fragGroup: false,
    alwaysCopy: port.pipe || (o.optionMask & (OPT.COPY | OPT.MEMCPY)) !== 0,
    rubbish: o.rubbish,
    udpCsum: true,
    seed: randomInt(1, 0x7fffffff),
  };
  if (perFrame) {
    let lay;
    try {
      lay = frameLayout(frame);
    } catch (e) {
      const what = [seq ? 'txseq' : '', walk ? 'address ranges / -z / -Z' : '', randomLen ? 'random sizes' : ''].filter(Boolean).join(', ');
      throw new SetupError(`${what} need an Ethernet + IPv4/IPv6 + UDP frame to rewrite, and ${o.pcapFile ?? 'the frame'} is not one: ${(e as Error).message}`);
    }
    spec.af = lay.af;
    spec.l3 = lay.l3 + hdr;
    spec.l4 = lay.l4 + hdr;
    const csum = (frame[lay.l4 + 6]! << 8) | frame[lay.l4 + 7]!;
    spec.udpCsum = lay.af === 6 || csum !== 0;
    const payload = lay.payload;
    const need = payload + (seq ? 4 : 0);
    if (randomLen) {
      if (o.pktSizeMin! < need) {
        throw new SetupError(`-l ${o.pktSize} -l ${o.pktSizeMin}: random sizes start at ${need} bytes here, so the ${seq ? 'UDP header and sequence number fit' : 'UDP header fits'} (got a minimum of ${o.pktSizeMin})`);
      }
      spec.lenMin = o.pktSizeMin! + hdr;
      spec.lenMax = L;
    }
    if (lay.len < need) {
      throw new SetupError(`frames of ${frame.length} bytes are too short for ${seq ? 'a sequence number' : 'the UDP header'} (need ${need} bytes)`);
    }
  }
  if (o.frags > 1) {
    if (seq) {
      // pkt-gen's txseq -F: every slot a whole frame, NS_MOREFRAG groups them
      if (L > port.bufSize) throw new SetupError(`-l ${o.pktSize}: txseq puts a whole frame in each slot, and ${L} bytes exceed the port's ${port.bufSize}-byte buffers`);
      spec.frags = o.frags;
      spec.fragGroup = true;
    } else {
      if (randomLen) throw new SetupError('-F with random sizes (-l given twice) is not supported: fragments are cut from a fixed-size frame');
      const limit = Math.min(o.fragSize ?? port.bufSize, port.bufSize);
      let frags = o.frags;
      let fs = Math.floor(L / frags);
      if (fs > limit) {
        frags = Math.ceil(L / limit);
        fs = limit;
      }
      if (fs < 1) throw new SetupError(`-F ${o.frags}: a ${L}-byte frame cannot be cut into ${o.frags} fragments`);
      if (frags > 64) throw new SetupError(`-l ${o.pktSize}: ${frags} fragments of ${fs} bytes would be needed, more than 64`);
      if (perFrame && fs < spec.l4 + 8 + (seq ? 4 : 0)) {
        throw new SetupError(`-F ${o.frags}: fragments of ${fs} bytes would split the headers that change per frame (need at least ${spec.l4 + 8})`);
      }
      if (L - fs * (frags - 1) > port.bufSize) throw new SetupError(`-F ${o.frags}: the last fragment of a ${L}-byte frame would not fit a ${port.bufSize}-byte buffer; use more fragments`);
      spec.frags = frags;
      spec.fragSize = fs;
    }
  } else if (L > port.bufSize) {
    throw new SetupError(`-l ${o.pktSize}: ${L}-byte frames do not fit the port's ${port.bufSize}-byte buffers (use -F to spread a frame over several slots)`);
  }
  return { template, spec, frameLen: L };
}

/**
 * The MAC address of the interface a `netmap:` name names, from sysfs (what
 * pkt-gen's source_hwaddr finds with getifaddrs), or undefined.
 */
export function sourceHwaddr(iface: string): string | undefined {
  const m = /^(?:netmap:)?([A-Za-z0-9_.]+)/.exec(iface);
  if (!m || iface.startsWith('vale')) return undefined;
  try {
    const mac = readFileSync(`/sys/class/net/${m[1]}/address`, 'utf8').trim();
    return /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(mac) ? mac : undefined;
  } catch {
    return undefined;
  }
}
