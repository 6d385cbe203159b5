/**
 * The logic of `vale-ctl-ts`: netmap's `vale-ctl` / FreeBSD's `valectl`
 * (same verbs, same getopt string, same output byte for byte) over either
 *
 * - the vale-ts control socket (the userspace switch), or
 * - the netmap kernel module, through `NIOCCTRL` requests on `/dev/netmap`
 *   (`kernelRequest` of src/backends/kernel/port.ts), when `/dev/netmap` exists
 *   and `NETMAP_BACKEND` is not `user` — the same choice `open()` makes —
 *   unless `--socket PATH` names a vale-ts explicitly.
 *
 * Listing every port (no argument) walks `NETMAP_REQ_VALE_LIST` with an
 * empty name as valectl does: the kernel answers with the next port's
 * (bridge, port) in the body and its name in `nmreq_header.nr_name`, until
 * ENOENT. The kernel path runs against a stand-in in the tests; this machine
 * has no `/dev/netmap`.
 *
 * Everything here is importable: {@link runValeCtl} takes argv and returns
 * the exit status, writing through an {@link CtlIo}.
 *
 * @module
 */
import { kernelAvailable, kernelRequestNamed } from '../../src/backends/kernel/port.js';
import { SwitchUnreachableError, requestOnce } from '../../src/control/client.js';
import {
  defaultSocketPath,
  PROTOCOL_VERSION,
  type ConfRequest,
  type PortGeometry,
  type PortListing,
  type Reply,
  type Request,
  type SwitchStats,
} from '../../src/control/protocol.js';
import { parsePortName } from '../../src/netmap/name.js';

// ---------------------------------------------------------------------------
// command line

/** What the main option asks for (the last one given wins, as in valectl). */
export type CtlVerb = 'listAll' | 'list' | 'info' | 'create' | 'remove' | 'attach' | 'attachHost' | 'detach' | 'pollOn' | 'pollOff' | 'stats';

/** A parsed command line. */
export interface CtlArgs {
  verb: CtlVerb;
  /** the main option's argument (absent for listAll and stats of every switch) */
  name?: string;
  /** `-C` */
  config?: string;
  /** `-m` */
  memId?: string;
  /** number of `-v` */
  verbose: number;
  /** `--json` */
  json: boolean;
  /** `--socket PATH` */
  socket?: string;
  /** `--help` */
  help: boolean;
}

/** A command line that cannot be run; the message goes before the usage text. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** The usage text (stderr on a usage error, stdout for `--help`). */
export const USAGE =
  'Usage:\n' +
  'vale-ctl-ts [arguments]\n' +
  '\t-g interface\tinterface name to get info\n' +
  '\t-d interface\tinterface name to be detached\n' +
  '\t-a interface\tinterface name to be attached\n' +
  '\t-h interface\tinterface name to be attached with the host stack\n' +
  '\t-n interface\tinterface name to be created (vale-ts: valeX:NAME)\n' +
  '\t-r interface\tinterface name to be deleted\n' +
  '\t-l vale-port\tshow bridge and port indices\n' +
  '\t-C string ring/slot setting of an interface creating by -n: tx_slots[,rx_slots[,tx_rings[,rx_rings]]]\n' +
  '\t-p interface start polling (kernel only). Additional -C x,y,z configures\n' +
  '\t\t x: 0 (single CPU) or 1 (one ring per CPU),\n' +
  '\t\t y: CPU core id for single CPU and first core/ring otherwise\n' +
  '\t\t z: (one ring per CPU only) num of total cores/rings\n' +
  '\t-P interface stop polling (kernel only)\n' +
  '\t-m memid to use when creating a new interface (digits, or netmap:PORT)\n' +
  '\t-v increase verbosity\n' +
  '\t--stats[=SWITCH]\tper-port counters (every drop reason) and MAC tables (vale-ts only)\n' +
  '\t--json\t\tmachine-readable output for the list, -l, -g, -n and --stats\n' +
  '\t--socket PATH\tvale-ts control socket (default: $VALE_TS_SOCKET, then the standard path);\n' +
  '\t\t\tgiving it always talks to vale-ts, even where /dev/netmap exists\n' +
  '\t--help\t\tthis text\n' +
  'with no arguments: list all existing vale ports\n';

const VERB_OF: Readonly<Record<string, CtlVerb>> = {
  d: 'detach',
  a: 'attach',
  h: 'attachHost',
  g: 'info',
  l: 'list',
  n: 'create',
  r: 'remove',
  p: 'pollOn',
  P: 'pollOff',
};
/** getopt's option string of valectl: every letter with ':' takes a value. */
const OPTSTRING = 'd:a:h:g:l:n:r:C:p:P:m:v';

function takesValue(ch: string): boolean | undefined {
  const i = OPTSTRING.indexOf(ch);
  if (i < 0 || ch === ':') return undefined;
  return OPTSTRING[i + 1] === ':';
}

/**
 * Parse argv (without node and the script) with POSIX getopt semantics for
 * `"d:a:h:g:l:n:r:C:p:P:m:v"` — values attached (`-lvale0:1`) or separate
 * (`-l vale0:1`), flags grouped (`-vn vale0:x`), `--` ends options — plus the
 * long options `--socket PATH|=PATH`, `--json`, `--stats[=SWITCH]`, `--help`.
 * Throws {@link UsageError} where valectl prints its usage.
 */
export function parseCtlArgs(argv: readonly string[]): CtlArgs {
  let verb: CtlVerb | undefined;
  let name: string | undefined;
  let stats: { name?: string } | undefined;
  const out: CtlArgs = { verb: 'listAll', verbose: 0, json: false, help: false };
  const positionals: string[] = [];
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      i++;
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const key = eq < 0 ? a.slice(2) : a.slice(2, eq);
      const val = eq < 0 ? undefined : a.slice(eq + 1);
      switch (key) {
        case 'socket': {
          const v = val ?? argv[++i];
          if (v === undefined || v === '') throw new UsageError("option '--socket' requires an argument (the control socket path)");
          out.socket = v;
          break;
        }
        case 'json':
          if (val !== undefined) throw new UsageError("option '--json' takes no argument");
          out.json = true;
          break;
        case 'stats':
          if (val === '') throw new UsageError("option '--stats=' needs a switch name (valeX), or use --stats alone");
          stats = val === undefined ? {} : { name: val };
          break;
        case 'help':
          out.help = true;
          break;
        default:
          throw new UsageError(`unrecognized option '${a}'`);
      }
      continue;
    }
    if (a.length < 2 || a[0] !== '-') {
      positionals.push(a);
      continue;
    }
    // a cluster of short options: -v, -vl NAME, -lNAME
    for (let j = 1; j < a.length; j++) {
      const ch = a[j]!;
      const tv = takesValue(ch);
      if (tv === undefined) throw new UsageError(`invalid option -- '${ch}'`);
      if (!tv) {
        out.verbose++;
        continue;
      }
      let v: string;
      if (j + 1 < a.length) {
        v = a.slice(j + 1);
      } else {
        const next = argv[i + 1];
        if (next === undefined) throw new UsageError(`option requires an argument -- '${ch}'`);
        v = next;
        i++;
      }
      if (ch === 'C') out.config = v;
      else if (ch === 'm') out.memId = v;
      else {
        if (ch === 'l' && !v.startsWith('vale')) throw new UsageError(`invalid vale port name: '${v}'`);
        verb = VERB_OF[ch];
        name = v;
      }
      break;
    }
  }
  positionals.push(...argv.slice(i));
  if (out.help) return out;
  if (positionals.length) throw new UsageError(`unexpected argument${positionals.length > 1 ? 's' : ''}: ${positionals.join(' ')}`);
  if (stats && verb) throw new UsageError(`--stats cannot be combined with -${Object.keys(VERB_OF).find((k) => VERB_OF[k] === verb) ?? '?'}`);
  if (stats) {
    out.verb = 'stats';
    if (stats.name !== undefined) out.name = stats.name;
    return out;
  }
  if (verb === undefined) {
    // valectl lists with no argument at all; -v, -C or -m alone is a usage error
    if (out.verbose || out.config !== undefined || out.memId !== undefined) {
      throw new UsageError('-v, -C and -m modify -n, -a, -h, -d, -p or -P: give one of those');
    }
    return out;
  }
  out.verb = verb;
  if (name !== undefined) out.name = name;
  return out;
}

/** C's atoi: leading blanks, a sign, digits; anything else ends it (0 if none). */
export function atoi(s: string): number {
  const m = /^[ \t\n\v\f\r]*([+-]?\d+)/.exec(s);
  if (!m) return 0;
  const n = Number.parseInt(m[1]!, 10);
  return Math.max(-2147483648, Math.min(2147483647, n));
}

/** strtok(s, ","): the non-empty comma-separated tokens. */
function tokens(s: string): string[] {
  return s.split(',').filter((t) => t.length > 0);
}

/** `-C x[,y[,z[,w]]]` for -n / -a / -h: 0 means "the default". */
export interface RingConfig {
  txSlots: number;
  rxSlots: number;
  txRings: number;
  rxRings: number;
  /** tokens after the fourth, which valectl ignores with a message */
  ignored: string[];
}

/**
 * Parse `-C`: tx_slots (both slot counts), then rx_slots, tx_rings (both ring
 * counts), rx_rings — each through atoi, as valectl does. One number sets
 * both slot counts; three set the slots and both ring counts.
 */
export function parseRingConfig(conf: string | undefined): RingConfig {
  const r: RingConfig = { txSlots: 0, rxSlots: 0, txRings: 0, rxRings: 0, ignored: [] };
  if (!conf) return r;
  tokens(conf).forEach((tok, i) => {
    const v = atoi(tok);
    if (i === 0) r.txSlots = r.rxSlots = v;
    else if (i === 1) r.rxSlots = v;
    else if (i === 2) r.txRings = r.rxRings = v;
    else if (i === 3) r.rxRings = v;
    else r.ignored.push(tok);
  });
  return r;
}

/** `nmreq_vale_polling.nr_mode`: one CPU polls every ring (`NETMAP_POLLING_MODE_SINGLE_CPU`). */
export const POLLING_MODE_SINGLE_CPU = 1;
/** `nmreq_vale_polling.nr_mode`: one ring per CPU (`NETMAP_POLLING_MODE_MULTI_CPU`). */
export const POLLING_MODE_MULTI_CPU = 2;

/** `-C x,y[,z]` for -p / -P. */
export interface PollConfig {
  mode: number;
  firstCpu: number;
  numCpus: number;
}

/**
 * Read the polling `-C` as valectl's parse_poll_config does: x (0 → one CPU
 * polls every ring, else one ring per CPU), y (first CPU / ring), z (CPUs,
 * one-ring-per-CPU mode only). valectl prints its complaint about a bad
 * string and sends the request anyway, with the numbers read before the bad
 * one (all 0 for a missing string): so this returns both.
 */
export function readPollConfig(conf: string | undefined): { config: PollConfig; complaint?: string } {
  const config: PollConfig = { mode: 0, firstCpu: 0, numCpus: 0 };
  if (!conf) return { config, complaint: 'invalid null/empty config' };
  const toks = tokens(conf);
  for (let i = 0; i < toks.length; i++) {
    const v = atoi(toks[i]!);
    if (i === 0) config.mode = v ? POLLING_MODE_MULTI_CPU : POLLING_MODE_SINGLE_CPU;
    else if (i === 1) config.firstCpu = v;
    else if (i === 2 && config.mode === POLLING_MODE_MULTI_CPU) config.numCpus = v;
    else return { config, complaint: `too many numbers in '${conf}'` };
  }
  return { config };
}

/**
 * Parse the polling `-C` strictly: as {@link readPollConfig}, but a bad
 * string throws with valectl's wording.
 */
export function parsePollConfig(conf: string | undefined): PollConfig {
  const r = readPollConfig(conf);
  if (r.complaint !== undefined) throw new Error(r.complaint);
  return r.config;
}

// ---------------------------------------------------------------------------
// errors

const STRERROR: Readonly<Record<string, string>> = {
  EPERM: 'Operation not permitted',
  ENOENT: 'No such file or directory',
  EIO: 'Input/output error',
  ENXIO: 'No such device or address',
  EAGAIN: 'Resource temporarily unavailable',
  ENOMEM: 'Cannot allocate memory',
  EACCES: 'Permission denied',
  EBUSY: 'Device or resource busy',
  EEXIST: 'File exists',
  ENODEV: 'No such device',
  EINVAL: 'Invalid argument',
  ENOTTY: 'Inappropriate ioctl for device',
  ENOSPC: 'No space left on device',
  ENAMETOOLONG: 'File name too long',
  EPROTO: 'Protocol error',
  EOPNOTSUPP: 'Operation not supported',
  ECONNREFUSED: 'Connection refused',
  ETIMEDOUT: 'Connection timed out',
};

/** strerror() of an errno name as glibc words it (the name itself if unknown). */
export function strerror(code: string): string {
  return STRERROR[code] ?? code;
}

/** A request that failed: errno name plus, where there is one, the switch's explanation. */
export class CtlError extends Error {
  readonly code: string;
  readonly detail: string | undefined;
  constructor(code: string, detail?: string) {
    super(detail === undefined ? strerror(code) : `${strerror(code)}: ${detail}`);
    this.name = 'CtlError';
    this.code = code;
    this.detail = detail;
  }
}

// ---------------------------------------------------------------------------
// backends

/** bridge/port indices of one port; portIndex 255 (`NM_BDG_NOPORT`) when the switch exists but the port does not. */
export interface ListResult {
  name: string;
  bridgeIndex: number;
  portIndex: number;
  persistent?: boolean;
  attached?: boolean;
  pid?: number;
}

/** Port geometry as -g / -n report it. */
export interface InfoResult {
  name: string;
  memsize: number;
  txSlots: number;
  rxSlots: number;
  txRings: number;
  rxRings: number;
  memId: number;
  bufSize?: number;
  nifpOffset?: number;
  portIndex?: number;
}

/** What vale-ctl-ts asks of whatever runs the switch. Failures throw {@link CtlError}. */
export interface CtlBackend {
  /** 'user' (vale-ts) or 'kernel' (/dev/netmap) */
  readonly kind: 'user' | 'kernel';
  listAll(): Promise<ListResult[]>;
  list(name: string): Promise<ListResult>;
  info(name: string): Promise<InfoResult>;
  /** mem_id of a port named for `-m netmap:PORT` */
  memIdOf(port: string): Promise<number>;
  create(name: string, conf: RingConfig, memId: number): Promise<InfoResult>;
  remove(name: string): Promise<void>;
  /** returns the port index */
  attach(name: string, hostStack: boolean, conf: RingConfig, memId: number): Promise<number>;
  /** returns the port index */
  detach(name: string): Promise<number>;
  /** start (`enable`) or stop kernel polling threads, with the `-C` numbers as read */
  polling(name: string, enable: boolean, conf: PollConfig): Promise<void>;
  stats(switchName?: string): Promise<SwitchStats[]>;
}

/** NM_BDG_NOPORT */
export const NM_BDG_NOPORT = 255;

/** vale-ts over its control socket. */
export class UserCtl implements CtlBackend {
  readonly kind = 'user' as const;
  readonly socketPath: string;
  private readonly timeoutMs: number;

  constructor(socketPath: string, timeoutMs = 5000) {
    this.socketPath = socketPath;
    this.timeoutMs = timeoutMs;
  }

  private async ask(req: Request): Promise<Reply & { ok: true }> {
    let reply: Reply;
    try {
      reply = await requestOnce(this.socketPath, req, this.timeoutMs);
    } catch (e) {
      if (e instanceof SwitchUnreachableError) {
        throw new CtlError(
          e.code,
          `vale-ts is not running at ${this.socketPath}: start it with \`vale-ts --socket ${this.socketPath}\` ` +
            `(or plain \`vale-ts\` for the default socket), or point --socket / VALE_TS_SOCKET at the one that runs`,
        );
      }
      const code = (e as { code?: unknown }).code;
      throw new CtlError(typeof code === 'string' ? code : 'EIO', `vale-ts at ${this.socketPath}: ${(e as Error).message}`);
    }
    if (!reply.ok) throw new CtlError(reply.code, reply.error);
    return reply;
  }

  private static unexpected(op: string, r: Reply): CtlError {
    return new CtlError('EPROTO', `vale-ts answered '${op}' with ${JSON.stringify(r).slice(0, 200)}`);
  }

  async listAll(): Promise<ListResult[]> {
    const r = await this.ask({ v: PROTOCOL_VERSION, op: 'list' });
    if (r.op !== 'list' || !Array.isArray(r.ports)) throw UserCtl.unexpected('list', r);
    return r.ports.map(listing);
  }

  async list(name: string): Promise<ListResult> {
    try {
      const r = await this.ask({ v: PROTOCOL_VERSION, op: 'list', name });
      if (r.op !== 'list' || !Array.isArray(r.ports) || !r.ports[0]) throw UserCtl.unexpected('list', r);
      return listing(r.ports[0]);
    } catch (e) {
      if (!(e instanceof CtlError) || e.code !== 'ENXIO') throw e;
      // netmap: a bridge that exists without the port gives port_idx
      // NM_BDG_NOPORT; a bridge that does not exist is ENOENT
      const sw = switchOf(name);
      if (sw === undefined) throw e;
      let stats: SwitchStats[];
      try {
        stats = await this.stats(sw);
      } catch (e2) {
        if (e2 instanceof CtlError && e2.code === 'ENXIO') throw new CtlError('ENOENT', `no switch ${sw} on this vale-ts`);
        throw e2;
      }
      const s = stats[0];
      if (!s) throw new CtlError('ENOENT', `no switch ${sw} on this vale-ts`);
      return { name, bridgeIndex: s.bridgeIndex, portIndex: NM_BDG_NOPORT };
    }
  }

  async info(name: string): Promise<InfoResult> {
    const r = await this.ask({ v: PROTOCOL_VERSION, op: 'info', name });
    if (r.op !== 'info') throw UserCtl.unexpected('info', r);
    return geometry(r.name, r);
  }

  async memIdOf(port: string): Promise<number> {
    return (await this.info(port)).memId;
  }

  async create(name: string, conf: RingConfig, memId: number): Promise<InfoResult> {
    const p = switchOf(name);
    if (p === undefined) {
      throw new CtlError(
        'EINVAL',
        `'${name}' is not a vale port name: vale-ts creates persistent ports on a switch, so name it valeX:Y ` +
          `(e.g. -n vale0:${name}); OS-visible interfaces need the netmap kernel module`,
      );
    }
    if (memId !== 0) {
      throw new CtlError(
        'EOPNOTSUPP',
        `mem_id ${memId} cannot be honoured: vale-ts gives every port its own memory region (leave out -m)`,
      );
    }
    const req: Request = { v: PROTOCOL_VERSION, op: 'create', name, conf: confRequest(conf) };
    const r = await this.ask(req);
    if (r.op !== 'create') throw UserCtl.unexpected('create', r);
    return { ...geometry(r.name, r), portIndex: r.portIndex };
  }

  async remove(name: string): Promise<void> {
    if (switchOf(name) === undefined) {
      throw new CtlError('EINVAL', `'${name}' is not a vale port name: vale-ts persistent ports are named valeX:Y (e.g. -r vale0:${name})`);
    }
    const r = await this.ask({ v: PROTOCOL_VERSION, op: 'remove', name });
    if (r.op !== 'remove') throw UserCtl.unexpected('remove', r);
  }

  async attach(name: string, hostStack: boolean): Promise<number> {
    const r = await this.ask({ v: PROTOCOL_VERSION, op: 'attach', name, hostStack });
    if (r.op !== 'attach') throw UserCtl.unexpected('attach', r);
    return r.portIndex;
  }

  async detach(name: string): Promise<number> {
    const r = await this.ask({ v: PROTOCOL_VERSION, op: 'detach', name });
    if (r.op !== 'detach') throw UserCtl.unexpected('detach', r);
    return r.portIndex;
  }

  polling(): Promise<void> {
    return Promise.reject(
      new CtlError(
        'EOPNOTSUPP',
        'vale-ts moves frames from its own event loop and has no kernel polling threads to start or stop ' +
          '(polling applies to NICs attached to a kernel VALE switch)',
      ),
    );
  }

  async stats(switchName?: string): Promise<SwitchStats[]> {
    const req: Request = switchName === undefined ? { v: PROTOCOL_VERSION, op: 'stats' } : { v: PROTOCOL_VERSION, op: 'stats', switch: switchName };
    const r = await this.ask(req);
    if (r.op !== 'stats' || !Array.isArray(r.switches)) throw UserCtl.unexpected('stats', r);
    return r.switches;
  }
}

function listing(l: PortListing): ListResult {
  const r: ListResult = { name: l.name, bridgeIndex: l.bridgeIndex, portIndex: l.portIndex, persistent: l.persistent, attached: l.attached };
  if (l.pid !== undefined) r.pid = l.pid;
  return r;
}

function geometry(name: string, g: PortGeometry): InfoResult {
  return {
    name,
    memsize: g.memsize,
    txSlots: g.txSlots,
    rxSlots: g.rxSlots,
    txRings: g.txRings,
    rxRings: g.rxRings,
    memId: g.memId,
    bufSize: g.bufSize,
    nifpOffset: g.nifpOffset,
  };
}

/** The switch of a valeX:Y name, or undefined when it is not one. */
function switchOf(name: string): string | undefined {
  try {
    const p = parsePortName(name);
    return p.isVale && p.switchName !== undefined && !p.pipe ? p.switchName : undefined;
  } catch {
    return undefined;
  }
}

/** vale-ts bounds (NM_BDG_MAXSLOTS / NM_BDG_MAXRINGS); 0 means the default and is left out. */
function confRequest(c: RingConfig): ConfRequest {
  const out: ConfRequest = {};
  const check = (what: string, v: number, lo: number, hi: number): number | undefined => {
    if (v === 0) return undefined;
    if (v < lo || v > hi) throw new CtlError('EINVAL', `${what} ${v} is out of range: use ${lo}..${hi} (0 for the default)`);
    return v;
  };
  const ts = check('tx_slots', c.txSlots, 2, 4096);
  const rs = check('rx_slots', c.rxSlots, 2, 4096);
  const tr = check('tx_rings', c.txRings, 1, 16);
  const rr = check('rx_rings', c.rxRings, 1, 16);
  if (ts !== undefined) out.txSlots = ts;
  if (rs !== undefined) out.rxSlots = rs;
  if (tr !== undefined) out.txRings = tr;
  if (rr !== undefined) out.rxRings = rr;
  return out;
}

/** The `NETMAP_REQ_*` numbers this tool sends (netmap.h). */
const REQ = {
  PORT_INFO_GET: 2,
  VALE_ATTACH: 3,
  VALE_DETACH: 4,
  VALE_LIST: 5,
  VALE_NEWIF: 8,
  VALE_DELIF: 9,
  VALE_POLLING_ENABLE: 10,
  VALE_POLLING_DISABLE: 11,
} as const;
/** `NR_REG_ALL_NIC` / `NR_REG_NIC_SW` */
const NR_REG_ALL_NIC = 1;
const NR_REG_NIC_SW = 3;

/** The request function the kernel backend needs: `kernelRequestNamed` of src/backends/kernel/port.ts, or a stand-in. */
export type KernelRequestFn = (reqtype: number, name: string, body: Buffer) => { body: Buffer; name: string };

/**
 * The netmap kernel module through `NIOCCTRL`. Bodies are laid out as in
 * netmap.h (little-endian): `nmreq_vale_list` {u16 bridge, u16 pad, u32 port},
 * `nmreq_port_info_get` {u64 memsize, u32 tx/rx slots, u16 tx/rx rings,
 * u16 host tx/rx rings, u16 mem_id}, `nmreq_vale_newif` {u32 tx/rx slots,
 * u16 tx/rx rings, u16 mem_id}, `nmreq_vale_attach` {nmreq_register (56),
 * u32 port_index}, `nmreq_vale_detach` {u32 port_index},
 * `nmreq_vale_polling` {u32 mode, u32 first_cpu, u32 num_cpus}.
 */
export class KernelCtl implements CtlBackend {
  readonly kind = 'kernel' as const;
  private readonly req: KernelRequestFn;

  constructor(req: KernelRequestFn = (t, n, b) => kernelRequestNamed(t, n, b)) {
    this.req = req;
  }

  private call(reqtype: number, name: string, body: Buffer): Buffer {
    return this.callNamed(reqtype, name, body).body;
  }

  private callNamed(reqtype: number, name: string, body: Buffer): { body: Buffer; name: string } {
    try {
      return this.req(reqtype, name, body);
    } catch (e) {
      const code = (e as { code?: unknown }).code;
      const c = typeof code === 'string' ? code : 'EIO';
      // a failed ioctl reads as valectl's strerror(errno); anything else
      // (no /dev/netmap, no permission) keeps the addon's explanation
      const syscall = (e as { syscall?: unknown }).syscall;
      if (syscall === 'ioctl' && STRERROR[c] !== undefined) throw new CtlError(c);
      throw new CtlError(c, (e as Error).message);
    }
  }

  async listAll(): Promise<ListResult[]> {
    const out: ListResult[] = [];
    let bridge = 0;
    let port = 0;
    for (let guard = 0; guard < 65536; guard++) {
      const b = Buffer.alloc(8);
      b.writeUInt16LE(bridge, 0);
      b.writeUInt32LE(port, 4);
      let r: { body: Buffer; name: string };
      try {
        r = this.callNamed(REQ.VALE_LIST, '', b);
      } catch (e) {
        if (e instanceof CtlError && e.code === 'ENOENT') break;
        throw e;
      }
      const nb = r.body.readUInt16LE(0);
      const np = r.body.readUInt32LE(4);
      // the kernel answers with the next port at or after the one asked for;
      // anything else would loop forever
      if (nb < bridge || (nb === bridge && np < port)) break;
      bridge = nb;
      port = np;
      out.push({ name: r.name, bridgeIndex: bridge, portIndex: port });
      port++;
    }
    return out;
  }

  async list(name: string): Promise<ListResult> {
    const b = this.call(REQ.VALE_LIST, name, Buffer.alloc(8));
    return { name, bridgeIndex: b.readUInt16LE(0), portIndex: b.readUInt32LE(4) };
  }

  async info(name: string): Promise<InfoResult> {
    const b = this.call(REQ.PORT_INFO_GET, name, Buffer.alloc(32));
    return {
      name,
      memsize: Number(b.readBigUInt64LE(0)),
      txSlots: b.readUInt32LE(8),
      rxSlots: b.readUInt32LE(12),
      txRings: b.readUInt16LE(16),
      rxRings: b.readUInt16LE(18),
      memId: b.readUInt16LE(24),
    };
  }

  async memIdOf(port: string): Promise<number> {
    return (await this.info(parsePortName(port).nrName)).memId;
  }

  async create(name: string, c: RingConfig, memId: number): Promise<InfoResult> {
    const b = Buffer.alloc(16);
    b.writeUInt32LE(c.txSlots >>> 0, 0);
    b.writeUInt32LE(c.rxSlots >>> 0, 4);
    b.writeUInt16LE(c.txRings & 0xffff, 8);
    b.writeUInt16LE(c.rxRings & 0xffff, 10);
    b.writeUInt16LE(memId & 0xffff, 12);
    const r = this.call(REQ.VALE_NEWIF, name, b);
    return {
      name,
      memsize: 0,
      txSlots: r.readUInt32LE(0),
      rxSlots: r.readUInt32LE(4),
      txRings: r.readUInt16LE(8),
      rxRings: r.readUInt16LE(10),
      memId: r.readUInt16LE(12),
    };
  }

  async remove(name: string): Promise<void> {
    this.call(REQ.VALE_DELIF, name, Buffer.alloc(0));
  }

  async attach(name: string, hostStack: boolean, c: RingConfig, memId: number): Promise<number> {
    const b = Buffer.alloc(64);
    b.writeUInt32LE(c.txSlots >>> 0, 16);
    b.writeUInt32LE(c.rxSlots >>> 0, 20);
    b.writeUInt16LE(c.txRings & 0xffff, 24);
    b.writeUInt16LE(c.rxRings & 0xffff, 26);
    b.writeUInt16LE(memId & 0xffff, 32);
    b.writeUInt32LE(hostStack ? NR_REG_NIC_SW : NR_REG_ALL_NIC, 36);
    return this.call(REQ.VALE_ATTACH, name, b).readUInt32LE(56);
  }

  async detach(name: string): Promise<number> {
    return this.call(REQ.VALE_DETACH, name, Buffer.alloc(8)).readUInt32LE(0);
  }

  async polling(name: string, enable: boolean, conf: PollConfig): Promise<void> {
    // valectl fills nmreq_vale_polling from -C for both requests
    const b = Buffer.alloc(16);
    b.writeUInt32LE(conf.mode >>> 0, 0);
    b.writeUInt32LE(conf.firstCpu >>> 0, 4);
    b.writeUInt32LE(conf.numCpus >>> 0, 8);
    this.call(enable ? REQ.VALE_POLLING_ENABLE : REQ.VALE_POLLING_DISABLE, name, b);
  }

  stats(): Promise<SwitchStats[]> {
    return Promise.reject(
      new CtlError(
        'EOPNOTSUPP',
        'the netmap kernel module has no per-port counters or MAC table dump through NIOCCTRL; --stats needs vale-ts (give --socket PATH)',
      ),
    );
  }
}

// ---------------------------------------------------------------------------
// output

/** One line of the full listing: `%s bridge_idx %u port_idx %u`. */
export function formatListLine(l: ListResult): string {
  return `${l.name} bridge_idx ${l.bridgeIndex} port_idx ${l.portIndex}\n`;
}

/** `-l` output. */
export function formatList(l: ListResult): string {
  return `bridge_idx: ${l.bridgeIndex}\nport_idx:   ${l.portIndex}\n`;
}

/** `-g` output (with valectl's `rx_rings` lacking its colon). */
export function formatInfo(g: InfoResult): string {
  return (
    `memsize:    ${g.memsize}\n` +
    `tx_slots:   ${g.txSlots}\n` +
    `rx_slots:   ${g.rxSlots}\n` +
    `tx_rings:   ${g.txRings}\n` +
    `rx_rings    ${g.rxRings}\n` +
    `mem_id:     ${g.memId}\n`
  );
}

/** `-n -v` output (with valectl's `rx_ring:`). */
export function formatNewIf(g: InfoResult): string {
  return `tx_slots:   ${g.txSlots}\nrx_slots:   ${g.rxSlots}\ntx_rings:   ${g.txRings}\nrx_ring:    ${g.rxRings}\nmem_id:     ${g.memId}\n`;
}

function table(rows: string[][], rightFrom = 1): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => (i < rightFrom ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')
    .concat('\n');
}

/** Columns of ports per block of the counters table. */
const PORTS_PER_BLOCK = 6;

/**
 * `--stats` as text: per switch, a counters table (counters down, ports
 * across, plus the switch total, which includes ports that have gone) and
 * the MAC table (MAC, port, age).
 */
export function formatStats(switches: readonly SwitchStats[]): string {
  if (!switches.length) return 'no switches: vale-ts hosts no ports\n';
  const blocks: string[] = [];
  for (const s of switches) {
    const out: string[] = [];
    const np = s.portsTotal ?? s.ports.length;
    out.push(`${s.name} bridge_idx ${s.bridgeIndex}: ${np} port${np === 1 ? '' : 's'}${np > s.ports.length ? ` (counters of the first ${s.ports.length})` : ''}\n`);
    const names: string[] = [];
    for (const p of s.ports) for (const k of Object.keys(p.counters)) if (!names.includes(k)) names.push(k);
    for (const k of Object.keys(s.totals)) if (!names.includes(k)) names.push(k);
    const cols: { head: string; c: Record<string, number> }[] = s.ports.map((p) => ({ head: `${p.name} (${p.portIndex})`, c: p.counters }));
    // ports in blocks, the total after the last block
    for (let b = 0; b === 0 || b < cols.length; b += PORTS_PER_BLOCK) {
      const block = cols.slice(b, b + PORTS_PER_BLOCK);
      if (b + PORTS_PER_BLOCK >= cols.length) block.push({ head: 'total', c: s.totals });
      const rows = [['counter', ...block.map((x) => x.head)]];
      for (const k of names) rows.push([k, ...block.map((x) => String(x.c[k] ?? 0))]);
      out.push(table(rows));
    }
    const mc = Object.entries(s.macTableCounters)
      .filter(([k]) => k !== 'size')
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
    const n = s.macTable.length;
    // the switch sends the first entries only (a table may hold millions)
    const total = s.macTableTotal ?? n;
    const shown = total > n ? `, showing the first ${n}` : '';
    out.push(`MAC table: ${total} entr${total === 1 ? 'y' : 'ies'}${shown}${mc ? ` (${mc})` : ''}\n`);
    if (n) {
      const rows = [['mac', 'port', 'age']];
      for (const e of [...s.macTable].sort((x, y) => x.port.localeCompare(y.port) || x.mac.localeCompare(y.mac))) {
        rows.push([e.mac, e.port, `${(e.ageMs / 1000).toFixed(1)}s`]);
      }
      out.push(table(rows, 2));
    }
    blocks.push(out.join(''));
  }
  return blocks.join('\n');
}

// ---------------------------------------------------------------------------
// running

/** Where output goes, and the environment consulted. */
export interface CtlIo {
  stdout(s: string): void;
  stderr(s: string): void;
  env: Readonly<Record<string, string | undefined>>;
}

/** Options of {@link runValeCtl}. */
export interface RunOptions {
  io?: CtlIo;
  /** use this backend instead of choosing one (tests) */
  backend?: CtlBackend;
}

const defaultIo: CtlIo = {
  stdout: (s) => void process.stdout.write(s),
  stderr: (s) => void process.stderr.write(s),
  env: process.env,
};

/**
 * The backend for these arguments: vale-ts when `--socket` is given or
 * `NETMAP_BACKEND=user`; the kernel when `NETMAP_BACKEND=kernel`, or `auto`
 * / unset and `/dev/netmap` exists; else vale-ts.
 */
export function chooseBackend(args: CtlArgs, env: CtlIo['env']): CtlBackend {
  const user = (): UserCtl => new UserCtl(defaultSocketPath(args.socket ?? (env['VALE_TS_SOCKET'] || undefined)));
  if (args.socket !== undefined) return user();
  const choice = env['NETMAP_BACKEND'] || 'auto';
  if (choice === 'user') return user();
  if (choice === 'kernel') return new KernelCtl();
  if (choice !== 'auto') throw new UsageError(`NETMAP_BACKEND=${choice} is not a backend: use user, kernel or auto`);
  return kernelAvailable() ? new KernelCtl() : user();
}

/** valectl's action words for the `failed to %s %s: %s` line. */
const ACTION: Readonly<Record<CtlVerb, string>> = {
  listAll: 'list',
  list: 'list',
  info: 'obtain info for',
  create: 'create',
  remove: 'remove',
  attach: 'attach',
  attachHost: 'attach',
  detach: 'detach',
  pollOn: 'enable polling on',
  pollOff: 'disable polling on',
  stats: 'obtain stats for',
};

function json(v: unknown): string {
  return JSON.stringify(v, null, 2) + '\n';
}

/**
 * Run vale-ctl-ts with `argv` (the arguments after the script). Returns the
 * exit status: 0 on success, 1 on a failed request or bad usage — and 1
 * after every full listing (no argument), as valectl.
 */
export async function runValeCtl(argv: readonly string[], opts: RunOptions = {}): Promise<number> {
  const io = opts.io ?? defaultIo;
  let args: CtlArgs;
  try {
    args = parseCtlArgs(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    io.stderr(`vale-ctl-ts: ${e.message}\n${USAGE}`);
    return 1;
  }
  if (args.help) {
    io.stdout(USAGE);
    return 0;
  }
  let be: CtlBackend;
  try {
    be = opts.backend ?? chooseBackend(args, io.env);
  } catch (e) {
    io.stderr(`vale-ctl-ts: ${(e as Error).message}\n`);
    return 1;
  }
  const name = args.name ?? '';
  const fail = (e: unknown): number => {
    if (!(e instanceof Error)) throw e;
    const code = (e as { code?: unknown }).code;
    const err = e instanceof CtlError ? e : new CtlError(typeof code === 'string' ? code : 'EINVAL', e.message);
    const target = args.verb === 'listAll' ? 'all' : args.verb === 'stats' ? (args.name ?? 'all switches') : name;
    io.stderr(`failed to ${ACTION[args.verb]} ${target}: ${err.message}\n`);
    return 1;
  };
  const memId = async (): Promise<number> => {
    const m = args.memId;
    if (m === undefined) return 0;
    if (/^\d/.test(m)) return atoi(m);
    if (!m.startsWith('netmap:')) throw new UsageError(`invalid format in '-m ${m}' (missing 'netmap:'?)`);
    return be.memIdOf(m.slice('netmap:'.length));
  };
  const ringConfig = (): RingConfig => {
    const c = parseRingConfig(args.config);
    for (const t of c.ignored) io.stderr(`ignored config: ${t}\n`);
    return c;
  };
  try {
    switch (args.verb) {
      case 'listAll': {
        const ports = await be.listAll();
        if (args.json) {
          io.stdout(json({ ports }));
          return 0;
        }
        for (const p of ports) io.stdout(formatListLine(p));
        // valectl's list_all returns 1 whatever it found (--json is ours: 0)
        return 1;
      }
      case 'list': {
        const l = await be.list(name);
        io.stdout(args.json ? json({ ...l, found: l.portIndex !== NM_BDG_NOPORT }) : formatList(l));
        return 0;
      }
      case 'info': {
        const g = await be.info(name);
        io.stdout(args.json ? json(g) : formatInfo(g));
        return 0;
      }
      case 'create': {
        const c = ringConfig();
        const g = await be.create(name, c, await memId());
        if (args.json) io.stdout(json(g));
        else if (args.verbose) io.stdout(formatNewIf(g));
        return 0;
      }
      case 'remove':
        await be.remove(name);
        return 0;
      case 'attach':
      case 'attachHost': {
        const c = ringConfig();
        const idx = await be.attach(name, args.verb === 'attachHost', c, await memId());
        if (args.verbose) io.stdout(`port_index: ${idx}\n`);
        return 0;
      }
      case 'detach': {
        const idx = await be.detach(name);
        if (args.verbose) io.stdout(`port_index: ${idx}\n`);
        return 0;
      }
      case 'pollOn':
      case 'pollOff': {
        // valectl complains about a missing or bad -C and still sends the request
        const { config, complaint } = readPollConfig(args.config);
        if (complaint !== undefined) io.stderr(`${complaint}\n`);
        await be.polling(name, args.verb === 'pollOn', config);
        return 0;
      }
      case 'stats': {
        const s = await be.stats(args.name);
        io.stdout(args.json ? json({ switches: s }) : formatStats(s));
        return 0;
      }
    }
  } catch (e) {
    if (e instanceof UsageError) {
      // a bad -m value: valectl says so, without the usage text
      io.stderr(`${e.message}\n`);
      return 1;
    }
    return fail(e);
  }
}
