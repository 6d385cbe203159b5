/**
 * Minimal reader for pkt-gen's `-P file`: returns the first packet of a
 * classic pcap file (either byte order, microsecond or nanosecond magic) or of
 * a pcapng file (first Enhanced or Simple Packet Block). The link type must be
 * Ethernet (LINKTYPE_ETHERNET = 1).
 *
 * @module
 */

import { readFileSync } from 'node:fs';

/** Raised for files that cannot be used with `-P`; the message names the file and the problem. */
export class PcapError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PcapError';
  }
}

const LINKTYPE_ETHERNET = 1;
const PCAP_MAGIC_US = 0xa1b2c3d4;
const PCAP_MAGIC_NS = 0xa1b23c4d;
const PCAPNG_SHB = 0x0a0d0d0a;
const PCAPNG_BOM = 0x1a2b3c4d;
const PCAPNG_IDB = 0x00000001;
const PCAPNG_PB_OBSOLETE = 0x00000002;
const PCAPNG_SPB = 0x00000003;
const PCAPNG_EPB = 0x00000006;
/** Largest packet pkt-gen can send. */
const MAX_PACKET = 65536;
const ETH_HLEN = 14;

/**
 * Read the first packet of a pcap or pcapng file (captured bytes only).
 *
 * @throws PcapError when the file is missing or unreadable, too short, not a
 *         pcap/pcapng file, truncated, holds no packet, has a link type other
 *         than Ethernet, or its first packet is shorter than an Ethernet
 *         header or longer than 65536 bytes.
 */
export function readFirstPcapPacket(path: string): Uint8Array {
  let data: Buffer;
  try {
    data = readFileSync(path);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new PcapError(`cannot read pcap file '${path}': ${err.code ?? ''} ${err.message}`.replace(/ {2,}/g, ' '));
  }
  const buf = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (buf.length < 4) throw new PcapError(`'${path}' is too short (${buf.length} bytes) to be a pcap file`);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const be = dv.getUint32(0, false);
  const le = dv.getUint32(0, true);
  let pkt: Uint8Array;
  if (be === PCAP_MAGIC_US || be === PCAP_MAGIC_NS) pkt = readClassic(path, buf, dv, false);
  else if (le === PCAP_MAGIC_US || le === PCAP_MAGIC_NS) pkt = readClassic(path, buf, dv, true);
  else if (be === PCAPNG_SHB) pkt = readNg(path, buf, dv);
  else {
    throw new PcapError(
      `'${path}' is not a pcap or pcapng file (magic 0x${be.toString(16).padStart(8, '0')})`,
    );
  }
  if (pkt.length < ETH_HLEN) {
    throw new PcapError(`first packet in '${path}' is ${pkt.length} bytes, shorter than an Ethernet header`);
  }
  if (pkt.length > MAX_PACKET) {
    throw new PcapError(`first packet in '${path}' is ${pkt.length} bytes, more than ${MAX_PACKET}`);
  }
  return pkt;
}

function linktypeCheck(path: string, lt: number): void {
  if (lt !== LINKTYPE_ETHERNET) {
    throw new PcapError(`'${path}' has link type ${lt}; only Ethernet (1) is supported`);
  }
}

function readClassic(path: string, buf: Uint8Array, dv: DataView, little: boolean): Uint8Array {
  if (buf.length < 24) throw new PcapError(`'${path}' is truncated: pcap file header needs 24 bytes, file has ${buf.length}`);
  linktypeCheck(path, dv.getUint32(20, little) & 0xffff);
  if (buf.length === 24) throw new PcapError(`'${path}' contains no packets`);
  if (buf.length < 40) throw new PcapError(`'${path}' is truncated inside the first packet record header`);
  const incl = dv.getUint32(32, little);
  if (40 + incl > buf.length) {
    throw new PcapError(`'${path}' is truncated: first packet claims ${incl} bytes, ${buf.length - 40} present`);
  }
  return buf.slice(40, 40 + incl);
}

function readNg(path: string, buf: Uint8Array, dv: DataView): Uint8Array {
  let off = 0;
  let little = true;
  let linktypes: number[] = [];
  let snaplens: number[] = [];
  for (;;) {
    if (off === buf.length) throw new PcapError(`'${path}' contains no packets`);
    if (off + 12 > buf.length) throw new PcapError(`'${path}' is truncated at offset ${off} (incomplete pcapng block)`);
    const typeBE = dv.getUint32(off, false);
    if (typeBE === PCAPNG_SHB) {
      const bom = dv.getUint32(off + 8, true);
      if (bom === PCAPNG_BOM) little = true;
      else if (dv.getUint32(off + 8, false) === PCAPNG_BOM) little = false;
      else throw new PcapError(`'${path}' has a pcapng section header with a bad byte-order magic`);
      linktypes = [];
      snaplens = [];
    }
    const type = dv.getUint32(off, little);
    const total = dv.getUint32(off + 4, little);
    if (total < 12 || total % 4 !== 0 || off + total > buf.length) {
      throw new PcapError(`'${path}' is truncated or corrupt: pcapng block at offset ${off} has length ${total}`);
    }
    const body = off + 8;
    const bodyLen = total - 12;
    if (type === PCAPNG_IDB) {
      if (bodyLen < 8) throw new PcapError(`'${path}': short pcapng interface block at offset ${off}`);
      linktypes.push(dv.getUint16(body, little));
      snaplens.push(dv.getUint32(body + 4, little));
    } else if (type === PCAPNG_EPB || type === PCAPNG_PB_OBSOLETE) {
      const hdr = 20;
      if (bodyLen < hdr) throw new PcapError(`'${path}': short pcapng packet block at offset ${off}`);
      const ifid = type === PCAPNG_EPB ? dv.getUint32(body, little) : dv.getUint16(body, little);
      const lt = linktypes[ifid];
      if (lt === undefined) throw new PcapError(`'${path}': packet refers to undeclared interface ${ifid}`);
      linktypeCheck(path, lt);
      const cap = dv.getUint32(body + 12, little);
      if (hdr + cap > bodyLen) throw new PcapError(`'${path}' is truncated: first packet claims ${cap} bytes`);
      return buf.slice(body + hdr, body + hdr + cap);
    } else if (type === PCAPNG_SPB) {
      const lt = linktypes[0];
      if (lt === undefined) throw new PcapError(`'${path}': simple packet block before any interface block`);
      linktypeCheck(path, lt);
      const orig = dv.getUint32(body, little);
      const snap = snaplens[0] ?? 0;
      let cap = snap > 0 ? Math.min(orig, snap) : orig;
      cap = Math.min(cap, bodyLen - 4);
      return buf.slice(body + 4, body + 4 + cap);
    }
    off += total;
  }
}
