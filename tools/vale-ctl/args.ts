/**
 * vale-ctl-ts's command line: valectl's options (GNU getopt, as valectl is
 * linked on Linux) plus vale-ts's long options, and valectl's readings of
 * `-C` (ring config for -n/-a/-h, polling config for -p/-P).
 *
 * @module
 */
import { abi } from '../../src/index.js';
import { resolve } from 'node:path';
import { getopt, UsageError } from '../getopt.js';
import { VXLAN_SETTINGS, VXLAN_SETTING_NAMES } from '../../src/ports/vxlan-settings.js';

export { UsageError };

const { NETMAP_POLLING_MODE_MULTI_CPU, NETMAP_POLLING_MODE_SINGLE_CPU } = abi;

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
  /** `--tap`, `--stream`, `--dgram` with -n: vale-ts itself serves the new port's far side */
  driver?: CtlDriverSpec;
  /** `--backend afxdp|packet|auto` with -a / -h: what serves the attached interface (vale-ts) */
  backend?: 'auto' | 'afxdp' | 'packet';
  /** `--inline on|off` with -a / -h: the interface's datapath in the switch's rounds, or a thread of its own (vale-ts) */
  inline?: boolean;
}

/** A driver spec from the command line, as the control protocol's `create` takes it. */
export interface CtlDriverSpec {
  kind: string;
  [setting: string]: string | number | boolean | string[];
}

/**
 * `--vxlan`'s argument form, from the driver's own table of settings (so a
 * setting the driver takes is never missing here): the required shape, then
 * every other setting as `[,KEY=VALUE]` (`...` where it repeats).
 */
const VXLAN_FORM = ((): string => {
  const kv = (k: keyof typeof VXLAN_SETTINGS): string => `${k}=${VXLAN_SETTINGS[k].value}`;
  const head = `${kv('vni')},${kv('local')},${kv('remote')}[,${kv('remote')}...]|${kv('group')}`;
  const shown: readonly string[] = ['vni', 'local', 'remote', 'group'];
  const rest = VXLAN_SETTING_NAMES.filter((k) => !shown.includes(k));
  return head + rest.map((k) => `[,${kv(k)}${'repeats' in VXLAN_SETTINGS[k] ? '...' : ''}]`).join('');
})();

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
  '\t--preload-path\tprint the path of libvale-ts-netmap.so (LD_PRELOAD it to run netmap C programs) and exit\n' +
  '\t--help\t\tthis text\n' +
  '\t--capture PORT [-w FILE|-] [--filter EXPR] [-c N]\twrite pcapng of a port\'s traffic (see --capture --help)\n' +
  '\t--tap NAME[,vnet_hdr][,queues=N][,no_offload][,inline|,thread]\twith -n: vale-ts serves the port with a TAP device\n' +
  '\t--stream PATH[,client][,inline|,thread]\twith -n: a QEMU -netdev stream over a unix socket (vale-ts listens; client: connects)\n' +
  '\t--dgram PATH,peer=QEMU_PATH[,inline|,thread]\twith -n: a QEMU -netdev dgram over unix sockets\n' +
  '\t\t(--tap, --stream, --dgram: inline runs the port in the switch\'s rounds, the default with vale-ts --datapath thread; thread: a thread of its own)\n' +
  '\t--vhost-user PATH[,client][,queues=N][,backlog-poll=US][,inline|,thread]\twith -n: vale-ts is the vhost-user back-end on PATH (listens; client: connects and reconnects;\n' +
  '\t\tbacklog-poll: while frames wait for guest RX buffers, poll its queue US µs instead of waiting for a kick (thread only); inline: the port\'s datapath in the\n' +
  '\t\tswitch\'s rounds (the default with vale-ts --datapath thread); thread: in a thread of its own (the default with --datapath loop);\n' +
  '\t\tdocs/vhost-user.md; -C N sets the port ring slots)\n' +
  '\t--backend afxdp|packet|auto\twith -a/-h: AF_XDP, AF_PACKET (TPACKET_V2 rx ring), or AF_XDP where possible else AF_PACKET (default)\n' +
  '\t--inline on|off\twith -a/-h: on: the interface\'s datapath runs in the switch\'s rounds; off: in a thread of its own (default: vale-ts\'s, docs/linux-interfaces.md)\n' +
  `\t--vxlan ${VXLAN_FORM}\n` +
  '\t\t\twith -n: the port is a VXLAN tunnel endpoint (docs/vxlan.md)\n' +
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

/** The long options of vale-ctl-ts (valectl has none). */
const LONG = {
  socket: { arg: 'required', what: 'the control socket path' },
  json: { arg: 'none' },
  stats: { arg: 'optional' },
  help: { arg: 'none' },
  tap: { arg: 'required', what: 'NAME[,vnet_hdr][,queues=N][,no_offload][,inline|,thread]' },
  stream: { arg: 'required', what: 'PATH[,client][,inline|,thread]' },
  dgram: { arg: 'required', what: 'PATH,peer=QEMU_PATH[,inline|,thread]' },
  'vhost-user': { arg: 'required', what: 'PATH[,client][,queues=N][,backlog-poll=US][,inline|,thread]' },
  backend: { arg: 'required', what: 'afxdp|packet|auto' },
  inline: { arg: 'required', what: 'on|off' },
  vxlan: { arg: 'required', what: VXLAN_FORM },
} as const;

/**
 * `--vxlan KEY=VALUE,...`: the settings of the driver's table (src/ports/vxlan-settings.ts),
 * repeatable ones collected into lists, the rest once each, all as text; vale-ts checks the values.
 */
export function parseVxlanOption(value: string): CtlDriverSpec {
  const spec: CtlDriverSpec = { kind: 'vxlan' };
  const lists = new Map<string, string[]>();
  for (const w of value.split(',')) {
    const eq = w.indexOf('=');
    const k = w.slice(0, eq), v = w.slice(eq + 1);
    if (eq <= 0 || v === '') throw new UsageError(`--vxlan: '${w}' is not KEY=VALUE (${VXLAN_FORM})`, '--vxlan');
    // own keys only: 'constructor=1' or '__proto__=1' must not find Object.prototype's
    const form = Object.hasOwn(VXLAN_SETTINGS, k) ? VXLAN_SETTINGS[k as keyof typeof VXLAN_SETTINGS] : undefined;
    if (form === undefined) throw new UsageError(`--vxlan: unknown setting '${k}' (known: ${VXLAN_SETTING_NAMES.join(', ')})`, '--vxlan');
    if ('repeats' in form) {
      const l = lists.get(k);
      if (l) l.push(v);
      else lists.set(k, [v]);
    } else {
      if (spec[k] !== undefined) throw new UsageError(`--vxlan: '${k}' is given twice`, '--vxlan');
      // as text: the driver reads numbers (src/ports/vxlan.ts intSetting) and names the key and its range in a refusal
      spec[k] = v;
    }
  }
  for (const [k, l] of lists) spec[k] = l;
  if (spec['vni'] === undefined) throw new UsageError('--vxlan needs vni=N', '--vxlan');
  return spec;
}

/**
 * `--tap NAME[,vnet_hdr][,queues=N][,no_offload][,inline|,thread]`, `--stream PATH[,client][,inline|,thread]`,
 * `--dgram PATH,peer=PATH[,inline|,thread]`: the port's driver. Options after the first
 * comma are QEMU-style words; an unknown one is a usage error.
 */
export function parseDriverOption(opt: 'tap' | 'stream' | 'dgram' | 'vhost-user', value: string): CtlDriverSpec {
  const [first, ...rest] = value.split(',');
  if (!first) throw new UsageError(`--${opt} needs a ${opt === 'tap' ? 'TAP name' : 'socket path'}`, `--${opt}`);
  const bad = (w: string): never => {
    throw new UsageError(`--${opt}: unknown option '${w}' (${LONG[opt].what})`, `--${opt}`);
  };
  if (opt === 'tap') {
    const spec: CtlDriverSpec = { kind: 'tap', ifname: first };
    for (const w of rest) {
      if (w === 'vnet_hdr') spec['vnetHdr'] = true;
      else if (w === 'no_offload') spec['offload'] = false;
      else if (/^queues=\d+$/.test(w)) spec['queues'] = Number(w.slice('queues='.length));
      else if (w === 'inline') spec['inline'] = true;
      else if (w === 'thread') spec['inline'] = false;
      else bad(w);
    }
    return spec;
  }
  if (opt === 'stream') {
    const spec: CtlDriverSpec = { kind: 'stream', path: first };
    for (const w of rest) {
      if (w === 'client') spec['mode'] = 'client';
      else if (w === 'server') spec['mode'] = 'server';
      else if (w === 'inline') spec['inline'] = true;
      else if (w === 'thread') spec['inline'] = false;
      else bad(w);
    }
    return spec;
  }
  if (opt === 'vhost-user') {
    // the socket path travels absolute: vale-ts resolves nothing against its own cwd
    const spec: CtlDriverSpec = { kind: 'vhost-user', path: resolve(first) };
    for (const w of rest) {
      if (w === 'client') spec['client'] = true;
      else if (w === 'server') spec['client'] = false;
      else if (/^queues=\d+$/.test(w)) spec['queuePairs'] = Number(w.slice('queues='.length));
      else if (/^backlog-poll=\d+$/.test(w)) spec['backlogPollUs'] = Number(w.slice('backlog-poll='.length));
      else if (w === 'inline') spec['inline'] = true;
      else if (w === 'thread') spec['inline'] = false;
      else bad(w);
    }
    return spec;
  }
  const spec: CtlDriverSpec = { kind: 'dgram', path: first };
  for (const w of rest) {
    if (w.startsWith('peer=') && w.length > 5) spec['peer'] = w.slice(5);
    else if (w === 'inline') spec['inline'] = true;
    else if (w === 'thread') spec['inline'] = false;
    else bad(w);
  }
  if (spec['peer'] === undefined) throw new UsageError('--dgram needs peer=PATH (the socket QEMU binds: its local.path)', '--dgram');
  return spec;
}

/**
 * Parse argv (without node and the script) as glibc's getopt parses valectl's
 * `"d:a:h:g:l:n:r:C:p:P:m:v"` — values attached (`-lvale0:1`) or separate
 * (`-l vale0:1`), flags grouped (`-vn vale0:x`), operands collected from
 * anywhere, `--` ends options — plus the long options `--socket PATH|=PATH`,
 * `--json`, `--stats[=SWITCH]`, `--help`. Throws {@link UsageError} where
 * valectl prints its usage.
 */
export function parseCtlArgs(argv: readonly string[]): CtlArgs {
  let verb: CtlVerb | undefined;
  let name: string | undefined;
  let stats: { name?: string } | undefined;
  const out: CtlArgs = { verb: 'listAll', verbose: 0, json: false, help: false };
  const { opts, operands } = getopt(argv, OPTSTRING, { dialect: 'gnu', long: LONG });
  for (const { opt, value, long } of opts) {
    if (long) {
      if (opt === 'socket') out.socket = value!;
      else if (opt === 'json') out.json = true;
      else if (opt === 'help') out.help = true;
      else if (opt === 'backend') {
        if (value !== 'afxdp' && value !== 'packet' && value !== 'auto') throw new UsageError(`--backend: '${value!}' is not afxdp, packet or auto`, '--backend');
        out.backend = value;
      }
      else if (opt === 'inline') {
        if (value !== 'on' && value !== 'off') throw new UsageError(`--inline: '${value!}' is not on or off`, '--inline');
        out.inline = value === 'on';
      }
      else if (opt === 'tap' || opt === 'stream' || opt === 'dgram' || opt === 'vhost-user' || opt === 'vxlan') {
        if (out.driver) throw new UsageError(`--${opt}: a port has one driver (--tap, --stream, --dgram, --vhost-user or --vxlan, once)`, `--${opt}`);
        out.driver = opt === 'vxlan' ? parseVxlanOption(value!) : parseDriverOption(opt, value!);
      }
      else if (opt === 'stats') {
        if (value === '') throw new UsageError("option '--stats=' needs a switch name (valeX), or use --stats alone", '--stats');
        stats = value === undefined ? {} : { name: value };
      }
      continue;
    }
    if (opt === 'v') out.verbose++;
    else if (opt === 'C') out.config = value!;
    else if (opt === 'm') out.memId = value!;
    else {
      if (opt === 'l' && !value!.startsWith('vale')) throw new UsageError(`invalid vale port name: '${value!}'`, '-l');
      verb = VERB_OF[opt];
      name = value!;
    }
  }
  if (out.help) return out;
  if (operands.length) throw new UsageError(`unexpected argument${operands.length > 1 ? 's' : ''}: ${operands.join(' ')}`);
  if (stats && verb) throw new UsageError(`--stats cannot be combined with -${Object.keys(VERB_OF).find((k) => VERB_OF[k] === verb) ?? '?'}`);
  if (stats) {
    out.verb = 'stats';
    if (stats.name !== undefined) out.name = stats.name;
    return out;
  }
  if (verb === undefined) {
    if (out.driver) throw new UsageError(`--${out.driver.kind} goes with -n valeX:NAME`);
    if (out.backend) throw new UsageError('--backend goes with -a or -h valeX:IFNAME', '--backend');
    if (out.inline !== undefined) throw new UsageError('--inline goes with -a or -h valeX:IFNAME', '--inline');
    // valectl lists with no argument at all; -v, -C or -m alone is a usage error
    if (out.verbose || out.config !== undefined || out.memId !== undefined) {
      throw new UsageError('-v, -C and -m modify -n, -a, -h, -d, -p or -P: give one of those');
    }
    return out;
  }
  if (out.driver && verb !== 'create') throw new UsageError(`--${out.driver.kind} goes with -n (it says what serves the port being created)`);
  if (out.backend && verb !== 'attach' && verb !== 'attachHost') throw new UsageError('--backend goes with -a or -h (it says what serves the interface being attached)', '--backend');
  if (out.inline !== undefined && verb !== 'attach' && verb !== 'attachHost') throw new UsageError('--inline goes with -a or -h (it says where the attached interface\'s datapath runs)', '--inline');
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
    if (i === 0) config.mode = v ? NETMAP_POLLING_MODE_MULTI_CPU : NETMAP_POLLING_MODE_SINGLE_CPU;
    else if (i === 1) config.firstCpu = v;
    else if (i === 2 && config.mode === NETMAP_POLLING_MODE_MULTI_CPU) config.numCpus = v;
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
