/**
 * Command-line parsing for pkt-gen-ts, flag-compatible with netmap's pkt-gen
 * (getopt string `46a:f:F:Nn:i:Il:d:s:D:S:b:c:o:p:T:w:WvR:XC:H:rP:zZAhBM:`).
 *
 * Unlike pkt-gen, which silently takes `atoi()` of anything, every bad value
 * raises {@link UsageError} naming the flag, the value and what is accepted.
 *
 * @module
 */

import { availableParallelism, cpus as osCpus } from 'node:os';
import {
  type AddressFamily,
  type IpRange,
  AddressError,
  DEFAULT_DST_IP4,
  DEFAULT_DST_IP6,
  DEFAULT_SRC_IP4,
  DEFAULT_SRC_IP6,
  isRange,
  parseIpRange,
  parseMac,
} from './net.js';

import { getopt, UsageError } from '../getopt.js';

export { getopt, UsageError, type GetoptItem, type GetoptResult } from '../getopt.js';

/** pkt-gen's getopt option string. */
export const PKTGEN_GETOPT = '46a:f:F:Nn:i:Il:d:s:D:S:b:c:o:p:T:w:WvR:XC:H:rP:zZAhBM:';

/** The functions `-f` selects (pkt-gen's `func[]`, `rx` first = default). */
export const PKTGEN_FUNCTIONS = ['rx', 'tx', 'ping', 'pong', 'txseq', 'rxseq'] as const;
/** One of pkt-gen's functions. */
export type PktGenFunction = (typeof PKTGEN_FUNCTIONS)[number];

/** How pkt-gen classifies a function (`TD_TYPE_*`): decides "Sent"/"Received" and startup wording. */
export type FunctionKind = 'sender' | 'receiver' | 'other';

/** Kind of each function, as in pkt-gen's `func[]` table. */
export function functionKind(f: PktGenFunction): FunctionKind {
  if (f === 'tx' || f === 'txseq') return 'sender';
  if (f === 'rx' || f === 'rxseq') return 'receiver';
  return 'other';
}

/** Default burst of each function (`func[].default_burst`). */
export function defaultBurst(f: PktGenFunction): number {
  return f === 'ping' || f === 'pong' ? 1 : 512;
}

/** `-o` bits (pkt-gen's OPT_*). */
export const OPT = {
  PREFETCH: 1,
  ACCESS: 2,
  COPY: 4,
  MEMCPY: 8,
  TS: 16,
  INDIRECT: 32,
  DUMP: 64,
  RUBBISH: 256,
  RANDOM_SRC: 512,
  RANDOM_DST: 1024,
  PPS_STATS: 2048,
  UPDATE_CSUM: 4096,
} as const;

/** Ring configuration from `-C tx_slots[,rx_slots[,tx_rings[,rx_rings]]]`; 0 = port default. */
export interface RingConf {
  txSlots: number;
  rxSlots: number;
  txRings: number;
  rxRings: number;
}

/** Parsed, validated and defaulted pkt-gen options. */
export interface PktGenOptions {
  /** `-h` was given: print {@link usageText} and exit 0; other fields are then defaults. */
  help: boolean;
  /** `-i` after {@link mapIfaceName} (e.g. `netmap:eth0`, `vale0:1`). */
  iface: string;
  /** `--socket PATH` (pkt-gen-ts only): the vale-ts control socket; default VALE_TS_SOCKET, then the standard path. */
  socket?: string;
  /** `-i` as given. */
  ifaceArg: string;
  /** `-f`, default `rx`. */
  func: PktGenFunction;
  /** `-n`: packets (tx/rx) or transactions (ping/pong); 0 = forever. */
  count: number;
  /** `-l` (first): frame length without CRC, 16..65536; default 60. */
  pktSize: number;
  /**
   * `-l` (second): minimum for random sizes in [pktSizeMin, pktSize).
   * Left undefined when 0 or equal to `pktSize` (fixed size).
   */
  pktSizeMin?: number;
  /** `-b`, or the function's default (512; 1 for ping/pong) when `-b` is absent or 0. */
  burst: number;
  /** Whether `-b` was given, other than 0. */
  burstGiven: boolean;
  /** `-4` / `-6` (last wins), default 4. */
  af: AddressFamily;
  /** `-d`: destination range; default 10.1.0.1:1234 (IPv6: [fd00::2]:1234). */
  dst: IpRange;
  /** `-s`: source range; default 10.0.0.1:1234 (IPv6: [fd00::1]:1234). */
  src: IpRange;
  /** `-D` bytes, default broadcast. */
  dstMac: Uint8Array;
  /** `-D` text as given (printed on the startup line), default `ff:ff:ff:ff:ff:ff`. */
  dstMacName: string;
  /** `-S` bytes, default all-zero. */
  srcMac: Uint8Array;
  /** `-S` text as given, default `00:00:00:00:00:00`. */
  srcMacName: string;
  /** Whether `-S` was given (if not, the port's own MAC may replace the default). */
  srcMacGiven: boolean;
  /** `-a`: first CPU to pin to, -1 = no pinning. */
  affinity: number;
  /** `-c` as given (0 = all CPUs); default 1. */
  cpusRequested: number;
  /** CPUs to use: `-c`, with 0 replaced by the system's CPU count. */
  cpus: number;
  /** CPUs the system has (as used for the `-c` check). */
  systemCpus: number;
  /** `-p`: threads, default 1. */
  threads: number;
  /** `-T`: report interval in ms, default 1000. */
  reportMs: number;
  /** `-w`: seconds to wait for link; default 2, or 0 for `vale*` ports. */
  waitLink: number;
  /** `-W`: rx exits after 1 s without traffic, counted from the first frame (it waits for that as long as it takes). */
  rxExitAfterIdle: boolean;
  /** `-R`: packets per second, 0 = unlimited. */
  rate: number;
  /** `-X` (or `-o 64`): hex-dump every packet. */
  dump: boolean;
  /** `-H`: virtio-net header length 0/10/12 (0 = none / auto-detect). */
  vnetHdr: 0 | 10 | 12;
  /** `-P`: pcap file whose first packet is sent. */
  pcapFile?: string;
  /** `-z` (or `-o 512`): random source address and port. */
  randomSrc: boolean;
  /** `-Z` (or `-o 1024`): random destination address and port. */
  randomDst: boolean;
  /** `-N`: print raw numbers instead of K/M/G/T. */
  noNormalize: boolean;
  /** `-F`: slots per packet, 1..63. */
  frags: number;
  /** `-M`: fragment size; undefined = netmap buffer size. */
  fragSize?: number;
  /** `-I` (or `-o 32`): indirect buffers. */
  indirect: boolean;
  /** `-v` count. */
  verbose: number;
  /** `-r` (or `-o 256`): send buffers without initialising them. */
  rubbish: boolean;
  /** `-A` (or `-o 2048`): sliding-window pps mean/std in reports. */
  ppsStats: boolean;
  /** `-B`: 192 bits (24 bytes: CRC + preamble + IFG) per packet added for "raw" bandwidth, else 0. */
  framing: 0 | 192;
  /** `-C` ring configuration (deprecated in pkt-gen). */
  conf?: RingConf;
  /** `-o` values ORed together (each `-o` adds bits, as in pkt-gen), default 0. */
  oflags: number;
  /** Effective OPT_* mask: `-o` | bits from -I -X -r -z -Z -A | OPT_COPY when -s/-d is a range. */
  optionMask: number;
}

/** Environment facts the parser needs; injectable for tests. */
export interface ParseEnv {
  /** CPUs on the system (default {@link onlineCpus}). */
  systemCpus?: number;
}

/** Longest `-i` pkt-gen accepts (MAX_IFNAMELEN - 8). */
export const MAX_IFACE_LEN = 504;

/**
 * pkt-gen's `-i` name mapping: `null`, `tap:…`, `pcap:…`, names starting with
 * `tap`, `vale` or `netmap:` are returned unchanged; any other name is a NIC
 * and gets `netmap:` prepended (`eth0` → `netmap:eth0`).
 */
export function mapIfaceName(name: string): string {
  if (
    name === 'null' ||
    name.startsWith('tap') ||
    name.startsWith('pcap:') ||
    name.startsWith('netmap:') ||
    name.startsWith('vale')
  ) {
    return name;
  }
  return `netmap:${name}`;
}

/**
 * Why pkt-gen-ts cannot use an `-i` name that pkt-gen would accept (tap,
 * pcap and null ports), or undefined when the name is a netmap/VALE port.
 */
export function unsupportedIfaceReason(name: string): string | undefined {
  if (name === 'null') {
    return "the null (dummy send) port is not supported by pkt-gen-ts; use a netmap or vale port";
  }
  if (name.startsWith('pcap:')) {
    return 'pcap: ports are not supported by pkt-gen-ts; use a netmap or vale port';
  }
  if (name.startsWith('tap')) {
    return `tap ports ('${name}') are not supported by pkt-gen-ts; use a netmap or vale port`;
  }
  return undefined;
}

function intArg(flag: string, value: string, what: string, min: number, max: number, accepted?: string): number {
  const ok = /^[+-]?[0-9]+$/.test(value);
  const v = ok ? Number(value) : NaN;
  if (!ok || !Number.isSafeInteger(v) || v < min || v > max) {
    const range = accepted ?? (max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer in ${min}..${max}`);
    throw new UsageError(`${flag}: invalid ${what} '${value}' (expected ${range})`, flag);
  }
  return v;
}

function parseConf(value: string): RingConf {
  const parts = value.split(',');
  const bad = (why: string): UsageError =>
    new UsageError(
      `-C: invalid ring configuration '${value}': ${why} (expected tx_slots[,rx_slots[,tx_rings[,rx_rings]]], non-negative integers, 0 = default)`,
      '-C',
    );
  if (parts.length > 4) throw bad('more than 4 numbers');
  const nums = parts.map((p) => {
    if (!/^[0-9]+$/.test(p)) throw bad(p === '' ? 'empty field' : `'${p}' is not a number`);
    const n = Number(p);
    if (n > 0xffffffff) throw bad(`'${p}' is too large`);
    return n;
  });
  const conf: RingConf = { txSlots: 0, rxSlots: 0, txRings: 0, rxRings: 0 };
  nums.forEach((n, i) => {
    if (i === 0) conf.txSlots = conf.rxSlots = n;
    else if (i === 1) conf.rxSlots = n;
    else if (i === 2) conf.txRings = conf.rxRings = n;
    else conf.rxRings = n;
  });
  return conf;
}

function rangeArg(flag: string, text: string, af: AddressFamily): IpRange {
  try {
    return parseIpRange(text, af);
  } catch (e) {
    if (e instanceof AddressError) {
      const form = af === 4 ? 'ip[:port][-ip[:port]]' : '[g@][addr][:port][-[g@][addr][:port]] or g@addr';
      throw new UsageError(`${flag}: ${e.message}; accepted form: ${form}`, flag);
    }
    throw e;
  }
}

function macArg(flag: string, text: string): Uint8Array {
  try {
    return parseMac(text);
  } catch (e) {
    if (e instanceof AddressError) throw new UsageError(`${flag}: ${e.message}`, flag);
    throw e;
  }
}

/**
 * The CPUs online, as pkt-gen's system_ncpus() (`sysconf(_SC_NPROCESSORS_ONLN)`)
 * counts them: not the affinity mask, so `taskset -c 0 pkt-gen-ts -c 2` works
 * as it does with pkt-gen. `os.cpus()` lists the online CPUs; where it lists
 * none (no /proc/stat), the affinity mask is all there is to go by.
 */
export function onlineCpus(): number {
  return osCpus().length || availableParallelism();
}

/** Function-independent defaults; {@link parsePktGenArgs} starts from these. */
function defaults(systemCpus: number): PktGenOptions {
  return {
    help: false,
    iface: '',
    ifaceArg: '',
    func: 'rx',
    count: 0,
    pktSize: 60,
    burst: 512,
    burstGiven: false,
    af: 4,
    dst: parseIpRange(DEFAULT_DST_IP4, 4),
    src: parseIpRange(DEFAULT_SRC_IP4, 4),
    dstMac: Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
    dstMacName: 'ff:ff:ff:ff:ff:ff',
    srcMac: new Uint8Array(6),
    srcMacName: '00:00:00:00:00:00',
    srcMacGiven: false,
    affinity: -1,
    cpusRequested: 1,
    cpus: 1,
    systemCpus,
    threads: 1,
    reportMs: 1000,
    waitLink: 2,
    rxExitAfterIdle: false,
    rate: 0,
    dump: false,
    vnetHdr: 0,
    randomSrc: false,
    randomDst: false,
    noNormalize: false,
    frags: 1,
    indirect: false,
    verbose: 0,
    rubbish: false,
    ppsStats: false,
    framing: 0,
    oflags: 0,
    optionMask: 0,
  };
}

/**
 * pkt-gen-ts's own long options, which pkt-gen (plain POSIX getopt) lacks
 * and the other tools share: `--socket PATH` (or `--socket=PATH`) and
 * `--help`. Taken out of argv wherever they appear before `--`, except as
 * the value of a flag that takes one (`-i --help` names a port `--help`).
 */
function takeLongOptions(argv: readonly string[]): { rest: string[]; socket?: string; help: boolean } {
  const rest: string[] = [];
  let socket: string | undefined;
  let help = false;
  const takesValue = new Set<string>();
  for (let i = 0; i < PKTGEN_GETOPT.length; i++) if (PKTGEN_GETOPT[i + 1] === ':') takesValue.add(PKTGEN_GETOPT[i]!);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      rest.push(...argv.slice(i));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      if (name === 'help' && eq < 0) {
        help = true;
        continue;
      }
      if (name === 'socket') {
        const v = eq < 0 ? argv[++i] : a.slice(eq + 1);
        if (v === undefined || v === '') throw new UsageError("option '--socket' requires an argument (the vale-ts control socket path)", '--socket');
        socket = v;
        continue;
      }
      throw new UsageError(`unknown option ${a} (pkt-gen-ts's long options are --socket PATH and --help; see -h)`, a);
    }
    rest.push(a);
    // a flag whose value is the next word: keep that word as it is
    if (a.length < 2 || a[0] !== '-') continue;
    for (let j = 1; j < a.length; j++) {
      if (!takesValue.has(a[j]!)) continue;
      if (j === a.length - 1 && i + 1 < argv.length) rest.push(argv[++i]!);
      break;
    }
  }
  return socket === undefined ? { rest, help } : { rest, socket, help };
}

/**
 * Parse pkt-gen's argv (without the program name) into {@link PktGenOptions}.
 *
 * Options are applied in order (the last of a repeated option wins, except
 * `-l`, whose second occurrence sets the minimum for random sizes, `-v`,
 * which counts, and `-o`, whose masks are ORed). Addresses are parsed after all options, so `-6` may follow
 * `-d`. If `-h` appears, nothing else is validated and `help` is true.
 *
 * @throws UsageError for unknown options, missing values, bad values,
 *         a missing `-i`, or left-over arguments.
 */
export function parsePktGenArgs(argv: readonly string[], env: ParseEnv = {}): PktGenOptions {
  const systemCpus = env.systemCpus ?? onlineCpus();
  const long = takeLongOptions(argv);
  const { opts, operands } = getopt(long.rest, PKTGEN_GETOPT);
  const o = defaults(systemCpus);
  if (long.socket !== undefined) o.socket = long.socket;
  if (long.help || opts.some((x) => x.opt === 'h')) {
    o.help = true;
    return o;
  }
  if (operands.length > 0) {
    throw new UsageError(`unexpected argument '${operands[0]}' (pkt-gen takes options only; values follow their flag)`);
  }

  let sizeSeen = false;
  let waitGiven = false;
  let dstText: string | undefined;
  let srcText: string | undefined;
  let ifaceSeen = false;
  let cpusRequested = 1;
  let pktSizeMin: number | undefined;

  for (const { opt, value: raw } of opts) {
    const flag = `-${opt}`;
    const value = raw ?? '';
    switch (opt) {
      case '4':
        o.af = 4;
        break;
      case '6':
        o.af = 6;
        break;
      case 'N':
        o.noNormalize = true;
        break;
      case 'n':
        o.count = intArg(flag, value, 'count', 0, Number.MAX_SAFE_INTEGER, 'a non-negative integer, 0 = forever');
        break;
      case 'F':
        o.frags = intArg(flag, value, 'number of fragments', 1, 63);
        break;
      case 'M':
        o.fragSize = intArg(flag, value, 'fragment size', 1, 65536);
        break;
      case 'f': {
        const f = PKTGEN_FUNCTIONS.find((k) => k === value);
        if (f === undefined) {
          throw new UsageError(`-f: unknown function '${value}' (expected one of ${PKTGEN_FUNCTIONS.join(', ')})`, flag);
        }
        o.func = f;
        break;
      }
      case 'o':
        // as pkt-gen's `g.options |= atoi(optarg)`: each -o adds its bits
        o.oflags |= intArg(flag, value, 'option mask', 0, 0x7fffffff, 'a non-negative integer bitmask, see -h');
        break;
      case 'a':
        o.affinity = intArg(flag, value, 'CPU', -1, 0x7fffffff, 'a CPU number >= 0, or -1 for none');
        break;
      case 'i':
        if (value === '') throw new UsageError('-i: empty interface name (expected e.g. vale0:1, netmap:eth0 or eth0)', flag);
        if (value.length > MAX_IFACE_LEN) {
          throw new UsageError(`-i: interface name '${value.slice(0, 32)}...' is ${value.length} characters (at most ${MAX_IFACE_LEN})`, flag);
        }
        o.ifaceArg = value;
        o.iface = mapIfaceName(value);
        ifaceSeen = true;
        break;
      case 'I':
        o.indirect = true;
        break;
      case 'l':
        if (sizeSeen) {
          // 0, as in pkt-gen, is no minimum: the size stays fixed
          const min = intArg(flag, value, 'minimum packet length', 0, 65536, '0, or an integer in 16..65536 at most the first -l');
          if (min > 0 && min < 16) {
            throw new UsageError(`${flag}: invalid minimum packet length '${value}' (expected 0, or an integer in 16..65536 at most the first -l)`, flag);
          }
          pktSizeMin = min === 0 ? undefined : min;
        } else {
          o.pktSize = intArg(flag, value, 'packet length', 16, 65536);
          sizeSeen = true;
        }
        break;
      case 'd':
        dstText = value;
        break;
      case 's':
        srcText = value;
        break;
      case 'T':
        o.reportMs = intArg(flag, value, 'report interval', 1, 0x7fffffff, 'a positive number of milliseconds');
        break;
      case 'w':
        o.waitLink = intArg(flag, value, 'link wait', 0, 0x7fffffff, 'a non-negative number of seconds');
        waitGiven = true;
        break;
      case 'W':
        o.rxExitAfterIdle = true;
        break;
      case 'b':
        // 0 is pkt-gen's "not given": the function's default burst
        o.burst = intArg(flag, value, 'burst', 0, 0x7fffffff, 'an integer >= 0, 0 = the default');
        o.burstGiven = o.burst !== 0;
        break;
      case 'c':
        cpusRequested = intArg(flag, value, 'CPU count', 0, 0x7fffffff, 'an integer >= 0, 0 = all');
        break;
      case 'p':
        o.threads = intArg(flag, value, 'thread count', 1, 0x7fffffff, 'an integer >= 1');
        break;
      case 'D':
        o.dstMac = macArg(flag, value);
        o.dstMacName = value;
        break;
      case 'S':
        o.srcMac = macArg(flag, value);
        o.srcMacName = value;
        o.srcMacGiven = true;
        break;
      case 'v':
        o.verbose++;
        break;
      case 'R':
        o.rate = intArg(flag, value, 'rate', 0, 0x7fffffff, 'packets per second, an integer >= 0 (0 = unlimited)');
        break;
      case 'X':
        o.dump = true;
        break;
      case 'C':
        o.conf = parseConf(value);
        break;
      case 'H': {
        const h = intArg(flag, value, 'virtio-net header length', 0, 12, '0, 10 or 12');
        if (h !== 0 && h !== 10 && h !== 12) {
          throw new UsageError(`-H: invalid virtio-net header length '${value}' (expected 0, 10 or 12)`, flag);
        }
        o.vnetHdr = h;
        break;
      }
      case 'P':
        if (value === '') throw new UsageError('-P: empty file name (expected a pcap or pcapng file)', flag);
        o.pcapFile = value;
        break;
      case 'r':
        o.rubbish = true;
        break;
      case 'z':
        o.randomSrc = true;
        break;
      case 'Z':
        o.randomDst = true;
        break;
      case 'A':
        o.ppsStats = true;
        break;
      case 'B':
        o.framing = 192;
        break;
      default:
        throw new UsageError(`unknown option ${flag}`, flag);
    }
  }

  if (!ifaceSeen) throw new UsageError('missing -i interface (e.g. -i vale0:1, -i netmap:eth0 or -i eth0)', '-i');

  if (!o.burstGiven) o.burst = defaultBurst(o.func);

  if (cpusRequested > systemCpus) {
    throw new UsageError(`-c: ${cpusRequested} cpus is too high, have only ${systemCpus} cpus (expected 0..${systemCpus})`, '-c');
  }
  o.cpusRequested = cpusRequested;
  o.cpus = cpusRequested === 0 ? systemCpus : cpusRequested;

  if (!waitGiven && o.iface.startsWith('vale')) o.waitLink = 0;

  if (pktSizeMin !== undefined) {
    if (pktSizeMin > o.pktSize) {
      throw new UsageError(
        `-l: minimum packet length ${pktSizeMin} is larger than the packet length ${o.pktSize} (expected 16..${o.pktSize})`,
        '-l',
      );
    }
    if (pktSizeMin < o.pktSize) o.pktSizeMin = pktSizeMin;
  }

  if (o.threads > 1 && (o.func === 'ping' || o.func === 'pong' || o.func === 'txseq')) {
    throw new UsageError(`-p: ${o.func} runs on a single thread only (got -p ${o.threads})`, '-p');
  }

  o.dst = rangeArg('-d', dstText ?? (o.af === 4 ? DEFAULT_DST_IP4 : DEFAULT_DST_IP6), o.af);
  o.src = rangeArg('-s', srcText ?? (o.af === 4 ? DEFAULT_SRC_IP4 : DEFAULT_SRC_IP6), o.af);

  // -o bits and the dedicated flags are the same thing in pkt-gen.
  const m = o.oflags;
  o.indirect ||= (m & OPT.INDIRECT) !== 0;
  o.dump ||= (m & OPT.DUMP) !== 0;
  o.rubbish ||= (m & OPT.RUBBISH) !== 0;
  o.randomSrc ||= (m & OPT.RANDOM_SRC) !== 0;
  o.randomDst ||= (m & OPT.RANDOM_DST) !== 0;
  o.ppsStats ||= (m & OPT.PPS_STATS) !== 0;
  let mask = m;
  if (o.indirect) mask |= OPT.INDIRECT;
  if (o.dump) mask |= OPT.DUMP;
  if (o.rubbish) mask |= OPT.RUBBISH;
  if (o.randomSrc) mask |= OPT.RANDOM_SRC;
  if (o.randomDst) mask |= OPT.RANDOM_DST;
  if (o.ppsStats) mask |= OPT.PPS_STATS;
  if (isRange(o.src) || isRange(o.dst)) mask |= OPT.COPY;
  o.optionMask = mask;
  return o;
}

/** Result of {@link txRatePlan}. */
export interface TxRatePlan {
  /** Packets per batch after the `-R` reduction. */
  burst: number;
  /** Time between batches, ns (0 = unlimited). */
  periodNs: number;
}

/**
 * pkt-gen's `-R` arithmetic: the burst is cut to at most rate/300 (but at
 * least 1) and a batch is sent every burst/rate seconds.
 */
export function txRatePlan(rate: number, burst: number): TxRatePlan {
  if (rate <= 0) return { burst, periodNs: 0 };
  let b = Math.min(burst, Math.floor(rate / 300));
  if (b === 0) b = 1;
  return { burst: b, periodNs: Number((1_000_000_000n * BigInt(b)) / BigInt(rate)) };
}

/** Usage text for `-h` (modelled on pkt-gen's, in our own words). */
export function usageText(cmd = 'pkt-gen-ts'): string {
  return `Usage:
${cmd} -i port [options]

  -h, --help         Print this help and exit.
  --socket PATH      vale-ts control socket (default: $VALE_TS_SOCKET, then
                     the standard path); not a pkt-gen option.
  -i port            Port to use: a VALE port (vale0:1), a netmap port
                     (netmap:eth0, netmap:pipe{0, netmap:pipe}0) or a NIC name
                     (eth0 means netmap:eth0). Required.
  -f function        tx, rx (default), ping, pong, txseq or rxseq.
  -n count           Packets to send/receive (ping/pong: round trips;
                     txseq/rxseq with -F: slots, as they count them);
                     0 = run until interrupted. Split evenly across threads.
  -l len             Frame length without CRC, 16..65536 (default 60). Give it
                     twice for random sizes: the second value is the minimum
                     (0: none, the size stays fixed).
  -b burst           Packets per batch (default, or 0: 512; 1 for ping and
                     pong).
  -4 | -6            Build IPv4 (default) or IPv6 frames.
  -d ip[:port][-ip[:port]]
                     Destination address/port or range (default 10.1.0.1:1234;
                     IPv6: [fd00::2]:1234, written [addr]:port, g@addr picks the
                     16-bit group a range walks).
  -s ip[:port][-ip[:port]]
                     Source address/port or range (default 10.0.0.1:1234;
                     IPv6: [fd00::1]:1234).
  -D mac             Destination MAC (default ff:ff:ff:ff:ff:ff).
  -S mac             Source MAC (default the port's, else 00:00:00:00:00:00).
  -a cpu             Pin thread i to CPU (cpu + i) modulo the CPUs in use.
  -c cpus            CPUs to use, 0 = all (default 1).
  -p threads         Threads (default 1); with more than one, each thread
                     serves one ring.
  -T ms              Milliseconds between reports (default 1000).
  -w secs            Seconds to wait for the link before starting (default 2,
                     0 for vale ports).
  -W                 rx: stop once no frame has come for one second. The
                     wait for the first frame is not limited.
  -R pps             Limit tx to this many packets per second.
  -X                 Hex-dump every packet sent or received.
  -H len             virtio-net header length: 0, 10 or 12.
  -P file            Send the first packet of this pcap/pcapng file.
  -z | -Z            Random source | destination address and port.
  -N                 Print plain numbers (pps, bps) instead of K/M/G/T.
  -F frags           Slots per packet, 1..63 (multi-slot, NS_MOREFRAG).
  -M size            Fragment size for multi-slot packets.
  -I                 Indirect buffers (NS_INDIRECT; VALE tx only).
  -v                 More verbose (repeatable).
  -r                 tx: send buffers as they are, without building frames.
  -A                 Add a sliding-window pps mean/std to the reports.
  -B                 Count 24 bytes of CRC, preamble and gap per packet in the
                     raw bandwidth.
  -C tx_slots[,rx_slots[,tx_rings[,rx_rings]]]
                     Ring sizes for ports created on the fly (deprecated in
                     pkt-gen, which prefers the @conf: port option). One number
                     sets both slot counts; a third without a fourth sets both
                     ring counts; 0 keeps the default.
  -o mask            Generation options, OR of: 1 prefetch, 2 access, 4 copy,
                     8 memcpy, 16 timestamp, 32 indirect, 64 dump,
                     256 rubbish, 512 random src, 1024 random dst,
                     2048 pps stats. Several -o add their bits together.
`;
}
