/**
 * Port-name parsing for netmap / VALE (the libnetmap `nmport_parse` grammar).
 *
 * ```
 * portspec  := subsystem ":" port [pipe] [ring] [/flags] [@N] (@option)*
 * subsystem := "netmap" | "vale" [A-Za-z0-9_]*
 * pipe      := "{" id | "}" id
 * ring      := "^" | "^" N | "*" | "-" N
 * option    := name | name "=" value | name ":" k=v{,k=v}
 * ```
 *
 * Errors are deliberately chatty: port names are typed by people, and the
 * classic traps (interface names with '-', bare `eth0`, `vale0` without a
 * port) deserve a message that says what to write instead.
 *
 * @module
 */
import {
  NETMAP_REQ_IFNAMSIZ,
  NETMAP_RING_MASK,
  NR_EXCLUSIVE,
  NR_MONITOR_RX,
  NR_MONITOR_TX,
  NR_REG_ALL_NIC,
  NR_REG_NIC_SW,
  NR_REG_ONE_NIC,
  NR_REG_ONE_SW,
  NR_REG_SW,
  NR_RX_RINGS_ONLY,
  NR_TX_RINGS_ONLY,
  NR_ZCOPY_MON,
} from './abi.js';

/** Which netmap subsystem a name addresses: a NIC/host stack or a VALE switch port. */
export type Subsystem = 'netmap' | 'vale';

/** Which rings a registration binds (the `NR_REG_*` modes expressible in a name). */
export type RegMode = 'all_nic' | 'sw' | 'nic_sw' | 'one_nic' | 'one_sw';

/** Ring/slot geometry requested with `@conf:` (only honoured for ports this open creates). */
export interface PortConf {
  /** `@conf:rings=`: tx and rx ring count alike */
  rings?: number;
  /** `@conf:tx_rings=` */
  txRings?: number;
  /** `@conf:rx_rings=` */
  rxRings?: number;
  /** `@conf:host_rings=`: host tx and rx ring count alike */
  hostRings?: number;
  /** `@conf:host_tx_rings=` */
  hostTxRings?: number;
  /** `@conf:host_rx_rings=` */
  hostRxRings?: number;
  /** `@conf:slots=`: tx and rx slots per ring alike */
  slots?: number;
  /** `@conf:tx_slots=` */
  txSlots?: number;
  /** `@conf:rx_slots=` */
  rxSlots?: number;
}

/** Everything a port name says, decoded into the values the kernel request needs. */
export interface ParsedPortName {
  /** the name exactly as given */
  readonly spec: string;
  /** 'vale' for a `valeX:` name, else 'netmap' */
  readonly subsystem: Subsystem;
  /** 'vale0', 'vale', 'valeA' for vale; undefined for netmap */
  readonly switchName?: string;
  /** the port / interface identifier: 'eth0', '01', 'x' (without pipe suffix) */
  readonly port: string;
  /** pipe end, if `{X` (master) or `}X` (slave) */
  readonly pipe?: { readonly role: 'master' | 'slave'; readonly id: string };
  /** which rings the name binds: all NIC rings, host rings (`^`), both (`*`), one NIC ring (`-N`), one host ring (`^N`) */
  readonly mode: RegMode;
  /** numeric nr_mode value (NR_REG_ALL_NIC=1, SW=2, NIC_SW=3, ONE_NIC=4, ONE_SW=8) */
  readonly nrMode: number;
  /** ring index for one_nic / one_sw, else 0 */
  readonly ringId: number;
  /** NR_* flags from the `/xztrRT` letters */
  readonly flags: number;
  /** the flag letters as written, e.g. 'xT' */
  readonly flagLetters: string;
  /** memory allocator id from `@N`, else 0 (= let the kernel choose) */
  readonly memId: number;
  /** from `@conf:...`, keys with '-' mapped to camelCase */
  readonly conf: Readonly<PortConf>;
  /** `@share=PORT`: open in the same memory region as PORT */
  readonly share?: string;
  /** `@extmem:file=...,...` raw key/values, keys '-' → '_' */
  readonly extmem?: Readonly<Record<string, string>>;
  /** `@offset:initial=...,bits=...` */
  readonly offset?: { readonly initial?: number; readonly bits?: number };
  /**
   * The name the kernel wants in nmreq_header.nr_name: `netmap:` stripped, everything
   * before the ring/flag/option suffixes, pipe suffix kept ('eth0{1', 'vale0:x}1').
   */
  readonly nrName: string;
  /** true when subsystem is vale */
  readonly isVale: boolean;
}

/** `NR_REG_*` values (netmap.h) for the modes a name can select. */
const NR_REG: Readonly<Record<RegMode, number>> = {
  all_nic: NR_REG_ALL_NIC,
  sw: NR_REG_SW,
  nic_sw: NR_REG_NIC_SW,
  one_nic: NR_REG_ONE_NIC,
  one_sw: NR_REG_ONE_SW,
};

/** Flag letter → `NR_*` bit, in the canonical order used when formatting from bits. */
const FLAG_BITS: ReadonlyArray<readonly [string, number]> = [
  ['x', NR_EXCLUSIVE],
  ['z', NR_ZCOPY_MON],
  ['t', NR_MONITOR_TX],
  ['r', NR_MONITOR_RX],
  ['R', NR_RX_RINGS_ONLY],
  ['T', NR_TX_RINGS_ONLY],
];
const FLAG_HELP =
  'valid flags are x (exclusive), z (zero-copy monitor), t (monitor tx), r (monitor rx), ' +
  'R (rx rings only), T (tx rings only), e.g. netmap:eth0/x';

/** NETMAP_REQ_IFNAMSIZ counts the terminating NUL. */
const MAX_NR_NAME = NETMAP_REQ_IFNAMSIZ - 1;
/** Ring indices travel in nr_ringid masked by NETMAP_RING_MASK; the mask itself is reserved. */
const MAX_RING = NETMAP_RING_MASK;
const U16_MAX = 0xffff;
const U32_MAX = 0xffffffff;

/** `@conf` keys (with '_' as libnetmap normalises them) → PortConf field and the width of its struct field. */
const CONF_KEYS: ReadonlyArray<readonly [string, keyof PortConf, number]> = [
  ['rings', 'rings', U16_MAX],
  ['tx_rings', 'txRings', U16_MAX],
  ['rx_rings', 'rxRings', U16_MAX],
  ['host_rings', 'hostRings', U16_MAX],
  ['host_tx_rings', 'hostTxRings', U16_MAX],
  ['host_rx_rings', 'hostRxRings', U16_MAX],
  ['slots', 'slots', U32_MAX],
  ['tx_slots', 'txSlots', U32_MAX],
  ['rx_slots', 'rxSlots', U32_MAX],
];
const EXTMEM_KEYS: readonly string[] = ['file', 'if_num', 'if_size', 'ring_num', 'ring_size', 'buf_num', 'buf_size'];
const OFFSET_KEYS: readonly string[] = ['initial', 'bits'];
const OPTION_NAMES: readonly string[] = ['conf', 'share', 'extmem', 'offset'];
const OPTION_HELP =
  'known options are @conf:KEY=N,..., @share=PORT, @extmem:file=PATH,..., @offset:initial=N,bits=N ' +
  '(a memory region id is written @N with N > 0)';

/** Characters that end the port identifier and start a suffix. */
const SUFFIX_START = '{}^*-/@';
const SUFFIX_HELP = 'after the port only {ID / }ID, ^, ^N, *, -N, /FLAGS, @N and @OPTION may follow, in that order';

/** Thrown for every malformed name; `position` is the 0-based index of the offending character. */
export class PortNameError extends Error {
  /** the port name that failed to parse */
  readonly spec: string;
  /** 0-based index into `spec` where the problem was found */
  readonly position: number;
  /** what is wrong (without the spec/position/hint decoration) */
  readonly problem: string;
  /** how to fix it */
  readonly hint: string;

  constructor(spec: string, position: number, problem: string, hint: string) {
    super(`invalid port name ${quote(spec)}: ${problem} at position ${position}; ${hint}`);
    this.name = 'PortNameError';
    this.spec = spec;
    this.position = position;
    this.problem = problem;
    this.hint = hint;
  }
}

/** Single-quote a fragment for an error message, escaping anything unprintable. */
function quote(s: string): string {
  const esc = s.replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return `'${esc}'`;
}

const isIdent = (c: string | undefined): boolean => c !== undefined && /^[A-Za-z0-9_]$/.test(c);
const isPortChar = (c: string | undefined): boolean => c !== undefined && /^[A-Za-z0-9_.]$/.test(c);
const isDigit = (c: string | undefined): boolean => c !== undefined && c >= '0' && c <= '9';

interface KeyValue {
  /** key with '-' mapped to '_' */
  readonly key: string;
  /** key as written, for messages */
  readonly rawKey: string;
  readonly value: string;
  readonly keyPos: number;
  readonly valuePos: number;
}

/**
 * Parse a netmap port name (`netmap:eth0-2/T`, `vale0:p{1`, `vale0:1@conf:rings=4`, ...).
 *
 * @throws PortNameError naming the bad part, its position and the fix.
 */
export function parsePortName(spec: string): ParsedPortName {
  if (typeof spec !== 'string') {
    throw new TypeError(`port name must be a string, got ${typeof spec}`);
  }
  const fail = (pos: number, problem: string, hint: string): never => {
    throw new PortNameError(spec, pos, problem, hint);
  };
  const len = spec.length;
  if (len === 0) {
    fail(0, 'the name is empty', 'write netmap:IFNAME (e.g. netmap:eth0) or valeX:PORT (e.g. vale0:01)');
  }

  // ---- subsystem -------------------------------------------------------
  let i = 0;
  while (isIdent(spec[i])) i++;
  const head = spec.slice(0, i);
  if (spec[i] !== ':') {
    if (head.startsWith('vale')) {
      if (i === len) {
        fail(i, `${quote(head)} is a VALE switch name, not a port`, `a port on it is named ${head}:PORT, e.g. ${head}:01`);
      }
      fail(
        i,
        `invalid character ${quote(spec[i] ?? '')} in the VALE switch name`,
        `a switch name is 'vale' followed by letters, digits or '_' and then ':PORT', e.g. vale0:01`,
      );
    }
    if (!spec.includes(':') || SUFFIX_START.includes(spec[i] ?? '') || spec[i] === '.') {
      fail(
        0,
        `no subsystem in ${quote(spec)}`,
        `write netmap:${spec} for a NIC (or valeX:PORT for a VALE port); tools such as pkt-gen -i map bare names themselves`,
      );
    }
    fail(i, `invalid character ${quote(spec[i] ?? '')} in the subsystem`, "the subsystem is 'netmap:' or 'vale' + [A-Za-z0-9_]* + ':'");
  }
  let subsystem: Subsystem;
  let switchName: string | undefined;
  if (head === 'netmap') {
    subsystem = 'netmap';
  } else if (head.startsWith('vale')) {
    subsystem = 'vale';
    switchName = head;
  } else if (head === '') {
    return fail(0, "missing subsystem before ':'", 'write netmap:IFNAME or valeX:PORT, e.g. netmap:eth0 or vale0:01');
  } else {
    return fail(
      0,
      `unknown subsystem ${quote(head + ':')}`,
      "use 'netmap:' for NICs and the host stack or 'valeX:' for VALE ports (tap:/pcap: are pkt-gen prefixes, not netmap ones)",
    );
  }
  const isVale = subsystem === 'vale';
  const prefix = `${head}:`;
  /** nr_name starts after 'netmap:' but includes 'valeX:'. */
  const nrNameStart = isVale ? 0 : prefix.length;
  i++;

  // ---- port ------------------------------------------------------------
  const portStart = i;
  while (isPortChar(spec[i])) i++;
  const port = spec.slice(portStart, i);
  if (i < len && !SUFFIX_START.includes(spec[i] ?? '')) {
    const c = spec[i] ?? '';
    if (c === ':' && !isVale && port.startsWith('vale')) {
      fail(i, `${quote(':')} inside the port name ${quote(spec.slice(portStart))}`, `VALE ports are named without the netmap: prefix, e.g. ${spec.slice(portStart)}`);
    }
    fail(i, `invalid character ${quote(c)} in the port name`, "port names may contain only letters, digits, '_' and '.'");
  }
  if (port === '') {
    fail(
      portStart,
      `empty port name after ${quote(prefix)}`,
      isVale ? `name the port, e.g. ${prefix}01` : `name the interface, e.g. ${prefix}eth0`,
    );
  }
  if (port === '.' || port === '..') {
    // a name that reads as a path component is nobody's port (and would be a
    // path in anything that builds file names from port names)
    fail(portStart, `${quote(port)} is not a port name`, `name the port with letters, digits, '_' or '.', e.g. ${prefix}01`);
  }

  // ---- pipe ------------------------------------------------------------
  let pipe: { role: 'master' | 'slave'; id: string } | undefined;
  let pipeText = '';
  if (spec[i] === '{' || spec[i] === '}') {
    const brace = spec[i] ?? '';
    const role = brace === '{' ? 'master' : 'slave';
    const idStart = i + 1;
    let j = idStart;
    while (isIdent(spec[j])) j++;
    const id = spec.slice(idStart, j);
    if (id === '') {
      fail(
        idStart,
        `pipe suffix ${quote(brace)} without a pipe id`,
        `write ${prefix}${port}${brace}ID with an identifier, e.g. ${prefix}${port}${brace}1`,
      );
    }
    if (spec[j] === '{' || spec[j] === '}') {
      fail(j, `second pipe suffix ${quote(spec.slice(j))}`, 'a name can have only one pipe end, {ID (master) or }ID (slave)');
    }
    pipe = { role, id };
    pipeText = brace + id;
    i = j;
  }

  const nrName = (isVale ? prefix : '') + port + pipeText;
  if (nrName.length > MAX_NR_NAME) {
    fail(
      nrNameStart + MAX_NR_NAME,
      `kernel name ${quote(nrName)} is ${nrName.length} characters long`,
      `nr_name holds at most ${MAX_NR_NAME} characters (NETMAP_REQ_IFNAMSIZ 64 incl. NUL); use a shorter port name`,
    );
  }

  // ---- ring mode ---------------------------------------------------------
  let mode: RegMode = 'all_nic';
  let ringId = 0;
  const modePos = i;
  const readRing = (what: string): number => {
    const numStart = i;
    while (isDigit(spec[i])) i++;
    const digits = spec.slice(numStart, i);
    const n = Number(digits);
    if (n >= MAX_RING) {
      fail(numStart, `${what} ${digits} out of range`, `ring numbers are 0..${MAX_RING - 1} (NETMAP_RING_MASK)`);
    }
    return n;
  };
  const ringChar = spec[i];
  if (ringChar === '^') {
    i++;
    if (isDigit(spec[i])) {
      mode = 'one_sw';
      ringId = readRing('host ring number');
    } else {
      mode = 'sw';
    }
  } else if (ringChar === '*') {
    i++;
    mode = 'nic_sw';
  } else if (ringChar === '-') {
    i++;
    if (!isDigit(spec[i])) {
      if (i === len) {
        fail(i - 1, `${quote('-')} at the end without a ring number`, `'-' selects one NIC ring pair and needs a number, e.g. ${spec}0`);
      }
      // Most likely an interface name such as br-lan: collect the rest of it for the message.
      let j = i;
      while (isPortChar(spec[j]) || spec[j] === '-') j++;
      const rest = spec.slice(i, j);
      if (rest === '') {
        fail(i, `${quote('-')} followed by ${quote(spec[i] ?? '')} instead of a ring number`, `'-' selects one NIC ring pair and needs a number, e.g. ${prefix}${port}${pipeText}-0`);
      }
      const ifname = `${port}-${rest}`;
      fail(
        i - 1,
        `${quote('-' + rest)}: '-' starts a NIC ring number (-N) but is followed by ${quote(rest[0] ?? '')}`,
        `if ${quote(ifname)} is an interface name: netmap cannot address interface names containing '-', ` +
          `rename it (e.g. ip link set ${ifname} name ${ifname.replace(/-/g, '_')}); otherwise write a ring number, e.g. ${prefix}${port}-0`,
      );
    }
    mode = 'one_nic';
    ringId = readRing('NIC ring number');
  }
  const modeText = spec.slice(modePos, i);
  if (pipe !== undefined && mode !== 'all_nic' && mode !== 'one_nic') {
    fail(
      modePos,
      `pipe ${quote(pipeText)} cannot be combined with ${quote(modeText)}`,
      `pipes have no host rings: use the plain form or a -N ring, e.g. ${prefix}${port}${pipeText} or ${prefix}${port}${pipeText}-0`,
    );
  }
  if (spec[i] === '{' || spec[i] === '}') {
    let j = i + 1;
    while (isIdent(spec[j])) j++;
    const late = spec.slice(i, j).length > 1 ? spec.slice(i, j) : `${spec[i]}1`;
    fail(
      i,
      `pipe suffix ${quote(spec.slice(i))} after the ring suffix ${quote(modeText)}`,
      `the pipe suffix goes right after the port name and pipes allow only no ring suffix or -N, e.g. ${prefix}${port}${late} or ${prefix}${port}${late}-0`,
    );
  }
  if (modeText !== '' && (spec[i] === '^' || spec[i] === '*' || spec[i] === '-')) {
    fail(i, `second ring suffix ${quote(spec.slice(i))}`, 'give only one of ^, ^N, * or -N');
  }

  // ---- flags and mem id (in either order, each once) -----------------------
  let flags = 0;
  let flagLetters = '';
  let sawFlags = false;
  let memId = 0;
  let sawMemId = false;
  for (;;) {
    if (spec[i] === '/') {
      if (sawFlags) fail(i, `second flag group ${quote(spec.slice(i))}`, 'put all flag letters after one /, e.g. /xT');
      sawFlags = true;
      const start = i + 1;
      let j = start;
      while (j < len && !SUFFIX_START.includes(spec[j] ?? '')) j++;
      if (j === start) fail(start, `${quote('/')} without flag letters`, FLAG_HELP);
      for (let k = start; k < j; k++) {
        const letter = spec[k] ?? '';
        const entry = FLAG_BITS.find(([l]) => l === letter);
        if (entry === undefined) return fail(k, `unknown flag ${quote(letter)}`, FLAG_HELP);
        flags |= entry[1];
      }
      flagLetters = spec.slice(start, j);
      i = j;
    } else if (spec[i] === '@' && isDigit(spec[i + 1])) {
      if (sawMemId) fail(i, `second memory id ${quote(spec.slice(i))}`, 'give @N only once');
      sawMemId = true;
      const start = i + 1;
      let j = start;
      while (isDigit(spec[j])) j++;
      const digits = spec.slice(start, j);
      const n = Number(digits);
      if (n === 0 || n > U16_MAX) {
        fail(start, `memory region id ${quote('@' + digits)} out of range`, `mem ids are 1..${U16_MAX} (omit @N to let the kernel choose)`);
      }
      memId = n;
      i = j;
    } else {
      break;
    }
  }
  if (spec[i] === '^' || spec[i] === '*' || spec[i] === '-') {
    fail(i, `ring suffix ${quote(spec.slice(i))} after /FLAGS or @N`, `write the ring suffix first, e.g. ${prefix}${port}-0/x`);
  }
  if (spec[i] === '{' || spec[i] === '}') {
    fail(i, `pipe suffix ${quote(spec.slice(i))} after other suffixes`, `the pipe suffix goes right after the port name, e.g. ${prefix}${port}${spec[i]}1`);
  }
  if (i < len && spec[i] !== '@') {
    const rest = spec.slice(i);
    let hint = SUFFIX_HELP;
    if (mode === 'one_nic' && isPortChar(spec[i])) {
      const ifname = `${port}${spec.slice(modePos, i)}${rest}`;
      hint +=
        `; if ${quote(ifname)} is an interface name: netmap cannot address interface names containing '-', ` +
        `rename it (e.g. ip link set ${ifname} name ${ifname.replace(/-/g, '_')})`;
    }
    fail(i, `unexpected ${quote(rest)}`, hint);
  }

  // ---- options -------------------------------------------------------------
  let conf: PortConf = {};
  let share: string | undefined;
  let extmem: Record<string, string> | undefined;
  let offset: { initial?: number; bits?: number } | undefined;
  const seen = new Set<string>();
  while (i < len) {
    // spec[i] === '@' here: every option runs up to the next '@' or the end.
    const at = i;
    if (isDigit(spec[at + 1])) {
      fail(at, `memory region id ${quote(spec.slice(at).split('@', 2).join('@'))} after an option`, 'put @N before the first @option');
    }
    const nameStart = at + 1;
    let j = nameStart;
    while (isIdent(spec[j]) || spec[j] === '-') j++;
    const name = spec.slice(nameStart, j);
    if (name === '') {
      fail(nameStart, `${quote('@')} without an option name or memory id`, OPTION_HELP);
    }
    if (!OPTION_NAMES.includes(name)) {
      fail(nameStart, `unknown option ${quote('@' + name)}`, OPTION_HELP);
    }
    if (seen.has(name)) fail(at, `option ${quote('@' + name)} given twice`, 'give each option once');
    seen.add(name);
    let end = spec.indexOf('@', j);
    if (end < 0) end = len;
    const sep = j < end ? spec[j] : undefined;
    if (sep !== undefined && sep !== '=' && sep !== ':') {
      fail(j, `unexpected ${quote(spec.slice(j, end))} after option ${quote('@' + name)}`, "write @NAME=VALUE or @NAME:KEY=VALUE,KEY=VALUE");
    }
    const argStart = j + 1;
    const argText = spec.slice(argStart, end);
    if (sep !== undefined && argText === '') {
      fail(argStart, `option ${quote('@' + name)} has an empty value after ${quote(sep)}`, `give a value or drop the ${quote(sep)}`);
    }
    const kvs = sep === ':' ? splitKeyValues(argText, argStart, name, fail) : undefined;

    switch (name) {
      case 'conf': {
        if (kvs === undefined) {
          fail(j, `@conf needs KEY=VALUE pairs`, 'write e.g. @conf:rings=4,slots=1024');
        }
        conf = parseConf(kvs ?? [], fail);
        break;
      }
      case 'share': {
        let target: string;
        let targetPos: number;
        if (sep === '=') {
          target = argText;
          targetPos = argStart;
        } else if (kvs !== undefined) {
          const bad = kvs.find((kv) => kv.key !== 'port');
          if (bad !== undefined) fail(bad.keyPos, `unknown @share key ${quote(bad.rawKey)}`, 'the only key is port, e.g. @share=netmap:eth1');
          if (kvs.length !== 1) fail(argStart, '@share:port= given more than once', 'give one port, e.g. @share=netmap:eth1');
          target = kvs[0]?.value ?? '';
          targetPos = kvs[0]?.valuePos ?? argStart;
        } else {
          return fail(j, '@share without a port', 'write @share=PORT, e.g. @share=netmap:eth1');
        }
        try {
          parsePortName(target);
        } catch (e) {
          if (e instanceof PortNameError) {
            fail(targetPos + e.position, `@share port ${quote(target)} is invalid: ${e.problem}`, e.hint);
          }
          throw e;
        }
        share = target;
        break;
      }
      case 'extmem': {
        let pairs: KeyValue[];
        if (sep === '=') {
          pairs = [{ key: 'file', rawKey: 'file', value: argText, keyPos: argStart, valuePos: argStart }];
        } else if (kvs !== undefined) {
          pairs = kvs;
        } else {
          return fail(j, '@extmem without a file', 'write @extmem:file=PATH[,if-num=N,...] or @extmem=PATH');
        }
        extmem = parseExtmem(pairs, j, fail);
        break;
      }
      case 'offset': {
        let pairs: KeyValue[] = [];
        if (sep === '=') {
          pairs = [{ key: 'initial', rawKey: 'initial', value: argText, keyPos: argStart, valuePos: argStart }];
        } else if (kvs !== undefined) {
          pairs = kvs;
        }
        offset = parseOffset(pairs, fail);
        break;
      }
    }
    i = end;
  }

  const result: ParsedPortName = {
    spec,
    subsystem,
    ...(switchName !== undefined ? { switchName } : {}),
    port,
    ...(pipe !== undefined ? { pipe: Object.freeze(pipe) } : {}),
    mode,
    nrMode: NR_REG[mode],
    ringId,
    flags,
    flagLetters,
    memId,
    conf: Object.freeze(conf),
    ...(share !== undefined ? { share } : {}),
    ...(extmem !== undefined ? { extmem: Object.freeze(extmem) } : {}),
    ...(offset !== undefined ? { offset: Object.freeze(offset) } : {}),
    nrName,
    isVale,
  };
  return Object.freeze(result);
}

type Fail = (pos: number, problem: string, hint: string) => never;

/** Split `k=v,k=v` (starting at `base` in the spec) into pairs, with '-' in keys mapped to '_' like libnetmap. */
function splitKeyValues(text: string, base: number, option: string, fail: Fail): KeyValue[] {
  const out: KeyValue[] = [];
  let pos = base;
  for (const item of text.split(',')) {
    const eq = item.indexOf('=');
    if (item === '') fail(pos, `empty item in ${quote('@' + option)}`, 'separate KEY=VALUE pairs with single commas and no trailing comma');
    if (eq < 0) fail(pos, `${quote(item)} in ${quote('@' + option)} has no value`, `write ${item}=VALUE`);
    const rawKey = item.slice(0, eq);
    const value = item.slice(eq + 1);
    if (rawKey === '') fail(pos, `missing key before ${quote(item)} in ${quote('@' + option)}`, 'write KEY=VALUE');
    if (value === '') fail(pos + eq + 1, `empty value for ${quote(rawKey)} in ${quote('@' + option)}`, `write ${rawKey}=VALUE`);
    out.push({ key: rawKey.replace(/-/g, '_'), rawKey, value, keyPos: pos, valuePos: pos + eq + 1 });
    pos += item.length + 1;
  }
  const keys = new Set<string>();
  for (const kv of out) {
    if (keys.has(kv.key)) fail(kv.keyPos, `key ${quote(kv.rawKey)} given twice in ${quote('@' + option)}`, 'give each key once');
    keys.add(kv.key);
  }
  return out;
}

/** Decimal integer in [min, max]; digits only so '0x10', '+4' and '1e3' are rejected. */
function parseUint(kv: KeyValue, min: number, max: number, fail: Fail): number {
  const n = /^[0-9]+$/.test(kv.value) ? Number(kv.value) : NaN;
  if (!(n >= min && n <= max)) {
    fail(kv.valuePos, `${quote(kv.rawKey + '=' + kv.value)} is not an integer in ${min}..${max}`, `write ${kv.rawKey}=N with a decimal N`);
  }
  return n;
}

function parseConf(kvs: readonly KeyValue[], fail: Fail): PortConf {
  const valid = CONF_KEYS.map(([k]) => k.replace(/_/g, '-')).join(', ');
  const got = new Map<string, number>();
  for (const kv of kvs) {
    const def = CONF_KEYS.find(([k]) => k === kv.key);
    if (def === undefined) return fail(kv.keyPos, `unknown @conf key ${quote(kv.rawKey)}`, `valid keys are ${valid}`);
    got.set(kv.key, parseUint(kv, 1, def[2], fail));
  }
  // Canonical field order, so equal confs compare equal however they were written.
  const conf: PortConf = {};
  for (const [key, field] of CONF_KEYS) {
    const v = got.get(key);
    if (v !== undefined) conf[field] = v;
  }
  return conf;
}

function parseExtmem(kvs: readonly KeyValue[], optPos: number, fail: Fail): Record<string, string> {
  const valid = EXTMEM_KEYS.map((k) => k.replace(/_/g, '-')).join(', ');
  const got = new Map<string, string>();
  for (const kv of kvs) {
    if (!EXTMEM_KEYS.includes(kv.key)) return fail(kv.keyPos, `unknown @extmem key ${quote(kv.rawKey)}`, `valid keys are ${valid}`);
    if (kv.key !== 'file') parseUint(kv, 0, Number.MAX_SAFE_INTEGER, fail);
    got.set(kv.key, kv.value);
  }
  if (!got.has('file')) fail(optPos, '@extmem without file=', 'the memory comes from a file: write @extmem:file=PATH[,...]');
  const out: Record<string, string> = {};
  for (const k of EXTMEM_KEYS) {
    const v = got.get(k);
    if (v !== undefined) out[k] = v;
  }
  return out;
}

function parseOffset(kvs: readonly KeyValue[], fail: Fail): { initial?: number; bits?: number } {
  let initial: number | undefined;
  let bits: number | undefined;
  for (const kv of kvs) {
    if (kv.key === 'initial') initial = parseUint(kv, 0, Number.MAX_SAFE_INTEGER, fail);
    else if (kv.key === 'bits') bits = parseUint(kv, 0, 64, fail);
    else return fail(kv.keyPos, `unknown @offset key ${quote(kv.rawKey)}`, `valid keys are ${OFFSET_KEYS.join(', ')}`);
  }
  return { ...(initial !== undefined ? { initial } : {}), ...(bits !== undefined ? { bits } : {}) };
}

/**
 * Format a parsed name back into a canonical spec (ring, flags, @N, then options in a
 * fixed order), so `parsePortName(formatPortName(p))` equals `p` except for `spec`.
 */
export function formatPortName(p: ParsedPortName): string {
  let s = p.subsystem === 'netmap' ? 'netmap:' : `${p.switchName ?? 'vale'}:`;
  s += p.port;
  if (p.pipe !== undefined) s += (p.pipe.role === 'master' ? '{' : '}') + p.pipe.id;
  switch (p.mode) {
    case 'all_nic':
      break;
    case 'sw':
      s += '^';
      break;
    case 'one_sw':
      s += `^${p.ringId}`;
      break;
    case 'nic_sw':
      s += '*';
      break;
    case 'one_nic':
      s += `-${p.ringId}`;
      break;
  }
  const letters =
    p.flagLetters !== '' ? p.flagLetters : FLAG_BITS.filter(([, bit]) => (p.flags & bit) !== 0).map(([l]) => l).join('');
  if (letters !== '') s += `/${letters}`;
  if (p.memId > 0) s += `@${p.memId}`;
  const confItems: string[] = [];
  for (const [key, field] of CONF_KEYS) {
    const v = p.conf[field];
    if (v !== undefined) confItems.push(`${key.replace(/_/g, '-')}=${v}`);
  }
  if (confItems.length > 0) s += `@conf:${confItems.join(',')}`;
  if (p.share !== undefined) s += `@share=${p.share}`;
  if (p.extmem !== undefined) {
    const items = Object.entries(p.extmem).map(([k, v]) => `${k.replace(/_/g, '-')}=${v}`);
    s += `@extmem:${items.join(',')}`;
  }
  if (p.offset !== undefined) {
    const items: string[] = [];
    if (p.offset.initial !== undefined) items.push(`initial=${p.offset.initial}`);
    if (p.offset.bits !== undefined) items.push(`bits=${p.offset.bits}`);
    s += items.length > 0 ? `@offset:${items.join(',')}` : '@offset';
  }
  return s;
}

/** True when `spec` is a valid name that opens one end of a netmap pipe (`{X` or `}X`). */
export function isPipeName(spec: string): boolean {
  try {
    return parsePortName(spec).pipe !== undefined;
  } catch (e) {
    if (e instanceof PortNameError) return false;
    throw e;
  }
}

/**
 * A key both ends of a pipe share (`vale0:x{1` and `vale0:x}1` → `vale0:x|1`), for pairing
 * master and slave; undefined when `p` is not a pipe end.
 */
export function pipeKey(p: ParsedPortName): string | undefined {
  if (p.pipe === undefined) return undefined;
  const parent = p.nrName.slice(0, p.nrName.length - p.pipe.id.length - 1);
  return `${parent}|${p.pipe.id}`;
}

/**
 * The tx and rx ring an NR_REG_ONE_NIC registration of ring `ring` binds on
 * a port with `nTx` tx and `nRx` rx rings, as netmap decides it: a ring that
 * exists in one direction only binds ring 0 of the other (netmap.c: "if not
 * enough rings, use the first one"); undefined when neither has it (EINVAL).
 */
export function oneNicRings(ring: number, nTx: number, nRx: number): { tx: number; rx: number } | undefined {
  if (ring >= nTx && ring >= nRx) return undefined;
  return { tx: ring < nTx ? ring : 0, rx: ring < nRx ? ring : 0 };
}
