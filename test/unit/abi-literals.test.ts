/**
 * One source for every netmap number: src/netmap/abi.ts reads them from the
 * addon. This greps src/ and tools/ for the ways they used to be retyped, so
 * that none comes back.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot, tsFiles } from '../fixtures/source-files.js';

const root = repoRoot;

/** The file that may (and must) name the numbers. */
const ABI = path.join('src', 'netmap', 'abi.ts');

const PATTERNS: readonly (readonly [RegExp, string])[] = [
  [/\b(?:NR_REG_\w+|NR_[A-Z_]+_ONLY|NR_MONITOR_\w+|NR_EXCLUSIVE|NR_ZCOPY_MON|NETMAP_REQ_\w+|NM_BDG_\w+|\w*POLLING_MODE_\w+|NS_[A-Z_]+|NETMAP_RING_MASK)\s*[=:]\s*(?:0x[0-9a-f]+|\d)/i, 'a netmap constant given a literal value'],
  [/\b(?:PORT_INFO_GET|VALE_LIST|VALE_ATTACH|VALE_DETACH|VALE_NEWIF|VALE_DELIF|PORT_HDR_[SG]ET)\s*:\s*\d/, 'a request-type table with literal numbers'],
  [/\bnrMode\s*:\s*\d/, 'nr_mode as a literal'],
  [/\bnifp\b[^;\n]*\+\s*\d+\s*,\s*true\)/, 'a netmap_if / ring field read at a literal offset'],
  [/\+\s*ofs\s*\+\s*\d+\s*,\s*true\)/, 'a ring field read at a literal offset'],
  [/CSB_ENTRY_SIZE\s*\+\s*\d+/, 'a CSB record at a literal offset'],
  [/,\s*(?:1,\s*16|2,\s*4096)\)/, 'a ring or slot limit typed as a number (MAX_RINGS / MIN_SLOTS..MAX_SLOTS)'],
  [/memId\s*:\s*np\.id/, 'a mem_id invented from the port number'],
  [/\b(?:read|write)(?:Big)?U?Int(?:8|16|32|64)LE\((?:[^()]*,\s*)?(?:[1-9]\d*)\)/, 'a request body field at a literal offset'],
  [/\['[xztrRT]',\s*0x[0-9a-f]+\]/, 'a port-name flag bit typed as a number'],
  [/['"`]netmap-pipe-/, "a pipe region file's prefix typed again (the addon's Pipe.filePrefix is the core's and the preload's)"],
];

/** Files that lay out packets (not netmap structs) with byte offsets of their own. */
const PACKET_CODE = /tools[\\/]pkt-gen[\\/](?:frame|net|pcap|dump)\.ts$/;

test('no netmap constant, offset or limit is typed outside src/netmap/abi.ts', (t) => {
  const files = [...tsFiles(path.join(root, 'src')), ...tsFiles(path.join(root, 'tools'))];
  t.true(files.length > 20, 'found the sources');
  const hits: string[] = [];
  for (const f of files) {
    const rel = path.relative(root, f);
    if (rel === ABI) continue;
    readFileSync(f, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        if (/^\s*(?:\/\/|\*|\/\*\*)/.test(line)) return; // comments may cite netmap's values
        for (const [re, what] of PATTERNS) {
          if (re.source.includes('Int(?:8') && PACKET_CODE.test(rel)) continue;
          if (re.test(line)) hits.push(`${rel}:${i + 1}: ${what}: ${line.trim()}`);
        }
      });
  }
  t.deepEqual(hits, []);
});

test('the grep catches each of the retypings it is there for', (t) => {
  const old = [
    'const txRings = dv.getUint32(nifp + 24, true);',
    'const NR_REG_ONE_NIC = 4;',
    'const NETMAP_REQ_PORT_HDR_SET = 6;',
    "  PORT_INFO_GET: 2,",
    'return ((k * CSB_ENTRY_SIZE + 64 + field) >>> 2);',
    "const txRings = optInt(r, 'txRings', 1, 16);",
    "const ts = check('tx_slots', c.txSlots, 2, 4096);",
    'memId: np.id + 2,',
    'return this.call(REQ.VALE_ATTACH, name, b).readUInt32LE(56);',
    'b.writeUInt16LE(memId & 0xffff, 12);',
    "formatPortName({ ...p, mode: 'one_nic', nrMode: 4, ringId: i })",
    'const slotsAt = (ofs: number): number => dv.getUint32(k.nifp + ofs + 8, true);',
    "  ['x', 0x800],",
    "return path.join(pipeDir(), 'netmap-pipe-' + key);",
    'export const NM_BDG_NOPORT = 255;',
  ];
  for (const line of old) t.true(PATTERNS.some(([re]) => re.test(line)), line);
  // and what replaced them passes
  for (const line of ['dv.getUint32(nifp + NIF.ni_tx_rings, true)', "optInt(r, 'txRings', 1, MAX_RINGS)", 'b.readUInt32LE(0)']) {
    t.false(PATTERNS.some(([re]) => re.test(line)), line);
  }
});
