#!/usr/bin/env node
/**
 * vale-ts: the userspace VALE switch process. Listens on a unix control
 * socket; switches and ports appear as clients open valeX:Y.
 */
import { readFileSync } from 'node:fs';
import { writeAllSync } from './write-all.js';
import { parseArgs } from 'node:util';
import { DEFAULT_LIMITS, ValeServer, defaultSocketPath, prestartDatapathThread, type PeerPolicy, type ServerLimits } from '../src/index.js';
import { loadConfig, type ValeConfig } from '../src/vale/config.js';
import { ConfigApplier, type ApplyReport } from '../src/vale/config-apply.js';
import { DEFAULT_RETAIN_COUNTERS_S } from '../src/vale/counters.js';
import { serveMetrics } from '../src/vale/metrics.js';
import { requestShortSlice } from '../src/netmap/sched.js';
import { DEFAULT_SWITCH_NICE, applyPriority, checkNice } from '../src/vale/priority.js';

const MiB = 1024 * 1024;
const USAGE = `usage: vale-ts [options]

  --socket PATH      control socket (default: $VALE_TS_SOCKET, /run/vale-ts/vale-ts.sock as root,
                     else $XDG_RUNTIME_DIR/vale-ts.sock, else /tmp/vale-ts-UID/vale-ts.sock in a
                     private 0700 directory)
  --batch N          frames taken from one source ring per turn (1..4096, default 512)
  --busy-poll-us US  keep polling this long after the last frame before sleeping (default 50)
  --datapath MODE    thread: each switch forwards on a thread of its own that a doorbell wakes
                     directly (default); loop: on the event loop of the control server
  --native-bridge    decide in C++ instead of TypeScript (benchmark baseline; no MAC table in stats)
  --mac-age S        MAC table entry lifetime in seconds (default 300)
  --mac-table N      MAC table size bound (default 8192)
  --stall-ms MS      a receiver holding back a lossless sender and taking fewer than 64 frames in this
                     long is declared stalled and its copies dropped (dropStalled) until it drains
                     (default 1000)
  --priority NICE    vale-ts's nice, -20..19 (default ${DEFAULT_SWITCH_NICE}, as ovs-ctl runs ovs-vswitchd: the switch
                     runs before CPU-bound neighbours when frames flow; it sleeps when idle). Needs
                     root or CAP_SYS_NICE below the current nice; else vale-ts says so and runs on.
                     A negative value is given as --priority=-5
  --hold-us US       bounded backpressure: a full rx ring holds its senders' frames back (they wait
                     in their tx rings) while it releases 64 slots per US microseconds; past a bound
                     without them its copies are dropped (dropNoSpace) until it has released 64;
                     a hold needing over a quarter of the bound per 64 halves the port's next one
                     (holdShortened; one back per bound without), as for --stall-ms;
                     0 drops at once, as netmap's VALE (0..1000000, default 2000)

 who may connect (root and vale-ts's own uid always may):
  --group NAME       socket 0660 (directory 0710) for group NAME, whose members may connect
  --allow-uid UID    also serve this uid (repeatable, or comma-separated)
  --allow-gid GID    also serve processes with this primary or supplementary gid (repeatable)
  --share-rings-across-uids
                     let different uids bind rings of one port (each then maps the whole region)

 limits (a request over one is refused, saying which; counted in --stats):
  --max-conn N              connections at once (default ${DEFAULT_LIMITS.maxConnections})
  --max-conn-per-uid N      connections of one uid (default ${DEFAULT_LIMITS.maxConnectionsPerUid})
  --max-ports N             ports on all switches (default ${DEFAULT_LIMITS.maxPorts})
  --max-ports-per-uid N     ports one uid holds or created (default ${DEFAULT_LIMITS.maxPortsPerUid})
  --max-ports-per-client N  ports one process holds (default ${DEFAULT_LIMITS.maxPortsPerClient})
  --max-ports-per-switch N  ports on one switch, 1..254 (default ${DEFAULT_LIMITS.maxPortsPerSwitch})
  --max-port-memory MIB     one port's region (default ${DEFAULT_LIMITS.maxPortMemory / MiB})
  --max-memory MIB          all regions together (default ${DEFAULT_LIMITS.maxMemory / MiB})

 service (see README "Running vale-ts as the host's switch"):
  --config FILE      switches, persistent ports, lookups, driver ports and access from FILE (JSON with
                     comments, docs/configuration.md); SIGHUP re-reads it and changes only what changed
  --check-config FILE
                     check FILE, print every error with its line, and exit (0: valid)
  --metrics [ADDR:]PORT
                     serve Prometheus metrics at http://ADDR:PORT/metrics (ADDR default 127.0.0.1)
  --retain-counters S
                     keep a departed client port's counters this many seconds (default ${DEFAULT_RETAIN_COUNTERS_S};
                     0: forget at once); vale-ctl-ts -r NAME forgets them sooner
  -h, --help         this text
`;

/** Print a configuration's errors, each as FILE:LINE:COL: problem. */
function printConfigErrors(file: string, errors: readonly { message: string }[]): void {
  // printed right before an exit: written at once (see die)
  for (const e of errors) writeAllSync(2, `${file}:${e.message}\n`);
}

/** Says why on stderr, written whole even into a full pipe, and exits 1. */
function die(message: string): never {
  writeAllSync(2, message);
  process.exit(1);
}

function reportLine(r: ApplyReport): string {
  const part = (what: string, l: string[]): string => (l.length ? ` ${what} ${l.join(', ')};` : '');
  return `${part('added', r.added)}${part('removed', r.removed)}${part('re-created', r.recreated)}${part('lossless changed', r.updated)} ${r.kept.length} unchanged`;
}

/** The gid of group `name` (numeric names are taken as gids). */
function groupGid(name: string): number {
  if (/^\d+$/.test(name)) return Number(name);
  for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f[2] !== undefined) return Number(f[2]);
  }
  die(`vale-ts: --group ${name}: no such group in /etc/group\n`);
}

function ids(opt: string, vals: string[] | undefined): number[] {
  const out: number[] = [];
  for (const v of vals ?? []) {
    for (const x of v.split(',')) {
      const n = Number(x);
      if (!/^\d+$/.test(x) || !Number.isSafeInteger(n)) {
        die(`vale-ts: --${opt} ${x} is invalid: expected a number (uid/gid)\n`);
      }
      out.push(n);
    }
  }
  return out;
}

function num(name: string, v: string | undefined, lo: number, hi: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < lo || n > hi) {
    die(`vale-ts: --${name} ${v} is invalid: expected a number in ${lo}..${hi}\n`);
  }
  return n;
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        socket: { type: 'string' },
        batch: { type: 'string' },
        'busy-poll-us': { type: 'string' },
        datapath: { type: 'string' },
        'native-bridge': { type: 'boolean' },
        'mac-age': { type: 'string' },
        'mac-table': { type: 'string' },
        'stall-ms': { type: 'string' },
        'hold-us': { type: 'string' },
        priority: { type: 'string' },
        group: { type: 'string' },
        'allow-uid': { type: 'string', multiple: true },
        'allow-gid': { type: 'string', multiple: true },
        'share-rings-across-uids': { type: 'boolean' },
        'max-conn': { type: 'string' },
        'max-conn-per-uid': { type: 'string' },
        'max-ports': { type: 'string' },
        'max-ports-per-uid': { type: 'string' },
        'max-ports-per-client': { type: 'string' },
        'max-ports-per-switch': { type: 'string' },
        'max-port-memory': { type: 'string' },
        'max-memory': { type: 'string' },
        config: { type: 'string' },
        'check-config': { type: 'string' },
        metrics: { type: 'string' },
        'retain-counters': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    die(`vale-ts: ${(e as Error).message}\n${USAGE}`);
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const checkFile = values['check-config'];
  if (checkFile !== undefined) {
    const { config, errors } = loadConfig(checkFile);
    if (!config) {
      printConfigErrors(checkFile, errors);
      die(`vale-ts: ${checkFile}: ${errors.length} error${errors.length === 1 ? '' : 's'}\n`);
    }
    const ports = config.switches.reduce((n, s) => n + s.ports.length, 0);
    process.stdout.write(`vale-ts: ${checkFile}: valid (${config.switches.length} switch${config.switches.length === 1 ? '' : 'es'}, ${ports} port${ports === 1 ? '' : 's'})\n`);
    return;
  }
  let config: ValeConfig | undefined;
  const configFile = values.config;
  if (configFile !== undefined) {
    const r = loadConfig(configFile);
    if (!r.config) {
      printConfigErrors(configFile, r.errors);
      die(`vale-ts: ${configFile}: ${r.errors.length} error${r.errors.length === 1 ? '' : 's'}: not started (vale-ts --check-config ${configFile} checks it)\n`);
    }
    config = r.config;
  }
  const retain = num('retain-counters', values['retain-counters'], 0, 1e9) ?? config?.retainCountersS;
  const batch = num('batch', values.batch, 1, 4096);
  const busy = num('busy-poll-us', values['busy-poll-us'], 0, 1e7);
  const age = num('mac-age', values['mac-age'], 0.001, 1e9);
  const table = num('mac-table', values['mac-table'], 1, 1 << 24);
  // a thread per switch by default: a kick wakes the forwarding loop itself,
  // not an event loop that also serves the control socket (README, "datapath")
  const datapath = values.datapath ?? 'thread';
  if (datapath !== 'thread' && datapath !== 'loop') {
    die(`vale-ts: --datapath ${datapath} is invalid: expected thread or loop\n`);
  }
  const switchOptions: import('../src/vale/switch.js').SwitchOptions = { datapath };
  if (values['native-bridge']) switchOptions.nativeBridge = true;
  const stall = num('stall-ms', values['stall-ms'], 1, 1e9);
  const hold = num('hold-us', values['hold-us'], 0, 1e6);
  const limits: Partial<ServerLimits> = {};
  const lim = (opt: string, key: keyof ServerLimits, hi: number, scale = 1): void => {
    const v = num(opt, (values as Record<string, string | undefined>)[opt], 1, hi);
    if (v !== undefined) limits[key] = Math.floor(v * scale);
  };
  lim('max-conn', 'maxConnections', 1 << 20);
  lim('max-conn-per-uid', 'maxConnectionsPerUid', 1 << 20);
  lim('max-ports', 'maxPorts', 1 << 20);
  lim('max-ports-per-uid', 'maxPortsPerUid', 1 << 20);
  lim('max-ports-per-client', 'maxPortsPerClient', 1 << 20);
  lim('max-ports-per-switch', 'maxPortsPerSwitch', 254);
  lim('max-port-memory', 'maxPortMemory', 4096, MiB);
  lim('max-memory', 'maxMemory', 1 << 24, MiB);
  const policy: PeerPolicy = { allowUids: ids('allow-uid', values['allow-uid']), allowGids: ids('allow-gid', values['allow-gid']) };
  if (values.group !== undefined) policy.group = { name: values.group, gid: groupGid(values.group) };
  else if (config?.access.group) policy.group = config.access.group;
  if (values['share-rings-across-uids']) policy.shareRingsAcrossUids = true;
  if (batch !== undefined) switchOptions.batch = Math.floor(batch);
  if (busy !== undefined) switchOptions.busyPollUs = busy;
  if (age !== undefined) switchOptions.macAgeMs = age * 1000;
  if (table !== undefined) switchOptions.macTableSize = Math.floor(table);
  if (stall !== undefined) switchOptions.stallMs = stall;
  if (hold !== undefined) switchOptions.holdUs = Math.floor(hold);
  const nice = num('priority', values.priority, -20, 19) ?? config?.priority ?? DEFAULT_SWITCH_NICE;
  try {
    checkNice(nice, '--priority');
  } catch (e) {
    die(`vale-ts: ${(e as Error).message}\n`);
  }
  // before any thread that forwards exists: they inherit it (src/vale/priority.ts)
  const prio = applyPriority(nice);
  if (prio.error) process.stderr.write(`vale-ts: priority ${nice}: ${prio.error}; running at nice ${prio.actual} (give --priority ${prio.actual} to start without this message)\n`);
  const socket = defaultSocketPath(values.socket ?? config?.socket);
  let server: ValeServer;
  try {
    // with a configuration, connections wait in the backlog until it is applied
    server = await ValeServer.listen({ socket, switchOptions, limits, policy, acceptLater: config !== undefined, ...(retain !== undefined ? { retainCountersS: retain } : {}) });
  } catch (e) {
    die(`vale-ts: cannot listen on ${socket}: ${(e as Error).message}\n`);
  }
  // every signal handler before anything says vale-ts is up ("loaded",
  // "listening"): a signal sent on that word must find it, not the default
  // action (exit), even when this thread was preempted right after the write
  const stop = (sig: string): void => {
    process.stdout.write(`vale-ts: ${sig}, shutting down\n`);
    server.close(`vale-ts received ${sig}`);
    process.exit(0);
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  // what SIGHUP does: set below, in the same synchronous run as the first
  // line printed after this (a signal's callback never interrupts it)
  let onHup = (): void => void process.stdout.write('vale-ts: SIGHUP ignored: no --config FILE to reload\n');
  process.on('SIGHUP', () => onHup());
  const metricsAt = values.metrics ?? config?.metrics;
  if (metricsAt !== undefined) {
    try {
      const m = await serveMetrics(server, metricsAt);
      process.stdout.write(`vale-ts: metrics at ${m.url}\n`);
    } catch (e) {
      server.close('vale-ts could not start');
      die(`vale-ts: --metrics ${metricsAt}: ${(e as Error).message}\n`);
    }
  }
  if (config && configFile !== undefined) {
    const applier = new ConfigApplier(server, switchOptions, policy);
    // reloads one at a time, in order, the first after the initial apply; a bad file changes nothing
    let reloading: Promise<void> = Promise.resolve();
    const reload = async (): Promise<void> => {
      const r = loadConfig(configFile);
      if (!r.config) {
        printConfigErrors(configFile, r.errors);
        process.stderr.write(`vale-ts: SIGHUP: ${configFile} has ${r.errors.length} error${r.errors.length === 1 ? '' : 's'}: configuration unchanged\n`);
        return;
      }
      if (values.priority === undefined && (r.config.priority ?? DEFAULT_SWITCH_NICE) !== nice) {
        process.stderr.write(`vale-ts: SIGHUP: ${configFile}: a change of "priority" takes effect at restart (threads take it when they are made)\n`);
      }
      if ((r.config.access.group?.gid ?? -1) !== (policy.group?.gid ?? -1) && values.group === undefined) {
        process.stderr.write(`vale-ts: SIGHUP: ${configFile}: a change of "group" takes effect at restart (the socket's group is set when it is made)\n`);
      }
      const rep = await applier.apply(r.config);
      for (const e of rep.errors) process.stderr.write(`vale-ts: SIGHUP: ${configFile}: ${e}\n`);
      process.stdout.write(`vale-ts: SIGHUP: ${configFile} reloaded:${reportLine(rep)}\n`);
    };
    onHup = () => {
      // a reload that throws is logged: never an unhandled rejection, which would stop the switch
      reloading = reloading.then(reload).catch((e: unknown) => {
        process.stderr.write(`vale-ts: SIGHUP: ${configFile}: reload failed: ${(e as Error).message}; what was applied before the failure stays\n`);
      });
    };
    const firstApply = applier.apply(config);
    reloading = firstApply.then(
      () => undefined,
      () => undefined,
    );
    const first = await firstApply;
    for (const e of first.errors) process.stderr.write(`vale-ts: ${configFile}: ${e}\n`);
    process.stdout.write(`vale-ts: ${configFile} loaded:${reportLine(first)}\n`);
    server.startAccepting();
  }
  // a switch woken beside CPU-bound processes forwards at once rather than
  // after their slice (src/netmap/sched.ts); threads started later inherit it
  requestShortSlice();
  // the first switch's datapath thread, started before clients come: the
  // first register does not wait for it, nor pay its start-up CPU
  if (datapath === 'thread') await prestartDatapathThread();
  process.stdout.write(`vale-ts: listening on ${server.socketPath} (userspace backend, protocol v1, nice ${prio.actual}); open valeX:Y ports to create switches and ports\n`);
  server.on('attach', (sw, p) => process.stdout.write(`vale-ts: ${p.name} attached (bridge ${sw.bridgeIndex} port ${p.index}${p.pid ? `, pid ${p.pid}` : ''})\n`));
  server.on('detach', (_sw, p) => process.stdout.write(`vale-ts: ${p.name} detached\n`));
}

void main();
