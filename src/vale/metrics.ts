/**
 * The Prometheus endpoint of vale-ts (`--metrics [ADDR:]PORT`), in the text
 * exposition format written by prom-client. A scrape takes one snapshot of
 * every switch's counters ({@link ValeServer.allStats}: the same numbers
 * `vale-ctl-ts --stats --json` shows) and renders it; it never touches the
 * datapath's state beyond the counter reads a stats request makes.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Registry } from 'prom-client';
import type { SwitchStats } from '../control/protocol.js';
import type { ServerCounters, ValeServer } from './server.js';

/** Where to listen: `PORT`, `ADDR:PORT` or `[V6ADDR]:PORT`; loopback unless an address is given. */
export function parseListenAddress(spec: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]:|([^:[\]]+):)?(\d{1,5})$/.exec(spec);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new Error(`--metrics ${spec}: expected PORT, ADDR:PORT or [IPV6]:PORT (e.g. 9337, 127.0.0.1:9337, 0.0.0.0:9337), port 0..65535`);
  return { host: m[1] ?? m[2] ?? '127.0.0.1', port };
}

/** A drop counter's reason as a label value: dropNoSpace -> no_space. */
export function dropReason(counter: string): string {
  return counter
    .slice(4)
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase();
}

/** The metric prefix. */
const P = 'vale_ts_';

type Snapshot = { switches: SwitchStats[]; server: ServerCounters };

/** Per-port and per-switch counters named by their stats key, with the metric they become. */
const PORT_COUNTERS: readonly [key: string, metric: string, help: string][] = [
  ['rxFrames', 'port_frames_in_total', 'frames the switch took from the port (its tx rings)'],
  ['rxBytes', 'port_bytes_in_total', 'bytes the switch took from the port'],
  ['txFrames', 'port_frames_out_total', 'frames the switch delivered to the port (its rx rings)'],
  ['txBytes', 'port_bytes_out_total', 'bytes the switch delivered to the port'],
  ['flooded', 'port_flooded_total', 'frames from the port sent to every other port'],
  ['floodCopies', 'port_flood_copies_total', "copies made of the port's flooded frames, one per other port"],
  ['kicks', 'port_kicks_total', "doorbell writes to the port's client"],
  ['badHead', 'port_bad_head_total', 'impossible ring indices the client published'],
  ['bellStuck', 'port_bell_stuck_total', "client doorbells that stopped taking kicks (the client made one blocking and filled it)"],
  ['detachedUnread', 'port_detached_unread_total', "frames delivered to a persistent port that its client never read before it went away (also in frames_out)"],
  ['holdShortened', 'port_hold_shortened_total', 'times the port\'s hold (or lossless stall) bound was halved: it kept its senders waiting more than a quarter of the bound per 64 slots, or past it'],
];
const SWITCH_COUNTERS: readonly [key: string, metric: string, help: string][] = [
  ['rxFrames', 'switch_frames_in_total', 'frames the switch took from its ports, including ports that have gone'],
  ['rxBytes', 'switch_bytes_in_total', 'bytes the switch took from its ports'],
  ['txFrames', 'switch_frames_out_total', 'frames the switch delivered to its ports'],
  ['txBytes', 'switch_bytes_out_total', 'bytes the switch delivered to its ports'],
  ['flooded', 'switch_flooded_total', 'frames sent to every other port'],
  ['floodCopies', 'switch_flood_copies_total', 'copies made of flooded frames, one per other port'],
  ['kicks', 'switch_kicks_total', 'doorbell writes to clients'],
];
const SWITCH_WIDE: readonly [key: string, metric: string, help: string][] = [
  ['rounds', 'switch_rounds_total', 'rounds the switch ran (collect, decide, deliver), including those that found nothing'],
  ['wakeups', 'switch_wakeups_total', 'times a doorbell woke the sleeping switch'],
  ['spuriousWakeups', 'switch_spurious_wakeups_total', 'wakeups that found nothing to do'],
  ['doorbellBackoffs', 'switch_doorbell_backoffs_total', 'times a doorbell ringing for nothing was ignored for a while'],
  ['heldTimeouts', 'switch_held_timeouts_total', 'sleeps with frames held back for a full receiver that ended on the guard timer, not a kick'],
  ['heldRechecks', 'switch_held_rechecks_total', 'held-back sleeps not taken: the receiver had freed room meanwhile'],
  ['waitFdsQuieted', 'switch_wait_fds_quieted_total', 'times the streaming switch took its in-line packet sockets out of its epoll set until its next sleep'],
  ['stalls', 'switch_stalls_total', 'receivers declared stalled (lossless bound)'],
];
const MAC_EVENTS: readonly string[] = ['learned', 'aged', 'moved', 'tableFull'];

/**
 * The metrics of one server, in a prom-client registry of its own (no
 * process-global default registry, so several servers in one process, as in
 * tests, do not mix).
 */
export class ValeMetrics {
  /** this server's prom-client registry (what GET /metrics renders) */
  readonly registry = new Registry();
  private snap: Snapshot = { switches: [], server: {} as ServerCounters };
  /** scrape connections closed on arrival because the endpoint had {@link METRICS_MAX_CONNECTIONS} open */
  readonly refusedConnections: Counter<string>;

  constructor(private readonly server: ValeServer) {
    const r = this.registry;
    const snap = (): Snapshot => this.snap;
    const counter = (name: string, help: string, labelNames: string[], fill: (m: Counter<string>, s: Snapshot) => void): void => {
      new Counter({
        name: P + name,
        help,
        labelNames,
        registers: [r],
        collect(this: Counter<string>) {
          this.reset();
          fill(this, snap());
        },
      });
    };
    const gauge = (name: string, help: string, labelNames: string[], fill: (m: Gauge<string>, s: Snapshot) => void): void => {
      new Gauge({
        name: P + name,
        help,
        labelNames,
        registers: [r],
        collect(this: Gauge<string>) {
          this.reset();
          fill(this, snap());
        },
      });
    };
    // every port, live or departed (its last counters, until forgotten)
    const ports = function* (s: Snapshot): Generator<{ sw: SwitchStats; name: string; c: Record<string, number>; live: boolean; occ?: { txQueued: number; rxQueued: number } }> {
      for (const sw of s.switches) {
        for (const p of sw.ports) yield { sw, name: p.name, c: p.counters, live: true, ...(p.occupancy ? { occ: p.occupancy } : {}) };
        for (const d of sw.departedPorts ?? []) yield { sw, name: d.name, c: d.counters, live: false };
      }
    };
    for (const [key, metric, help] of PORT_COUNTERS) {
      counter(metric, help, ['switch', 'port'], (m, s) => {
        for (const p of ports(s)) m.inc({ switch: p.sw.name, port: p.name }, p.c[key] ?? 0);
      });
    }
    counter('port_drops_total', 'frames or copies counted at the port under a drop reason', ['switch', 'port', 'reason'], (m, s) => {
      for (const p of ports(s)) for (const [k, v] of Object.entries(p.c)) if (k.startsWith('drop')) m.inc({ switch: p.sw.name, port: p.name, reason: dropReason(k) }, v);
    });
    gauge('port_up', '1 while the port exists, 0 for a port that has gone (its last counters are kept)', ['switch', 'port'], (m, s) => {
      for (const p of ports(s)) m.set({ switch: p.sw.name, port: p.name }, p.live ? 1 : 0);
    });
    gauge('port_tx_ring_queued_frames', 'frames the client published on its tx rings that the switch has not taken yet (in flight)', ['switch', 'port'], (m, s) => {
      for (const p of ports(s)) if (p.occ) m.set({ switch: p.sw.name, port: p.name }, p.occ.txQueued);
    });
    gauge('port_rx_ring_queued_frames', 'frames delivered to the rx rings that the client has not released yet', ['switch', 'port'], (m, s) => {
      for (const p of ports(s)) if (p.occ) m.set({ switch: p.sw.name, port: p.name }, p.occ.rxQueued);
    });
    for (const [key, metric, help] of SWITCH_COUNTERS) {
      counter(metric, help, ['switch'], (m, s) => {
        for (const sw of s.switches) m.inc({ switch: sw.name }, sw.totals[key] ?? 0);
      });
    }
    counter('switch_drops_total', 'frames or copies counted under a drop reason, including ports that have gone', ['switch', 'reason'], (m, s) => {
      for (const sw of s.switches) for (const [k, v] of Object.entries(sw.totals)) if (k.startsWith('drop')) m.inc({ switch: sw.name, reason: dropReason(k) }, v);
    });
    for (const [key, metric, help] of SWITCH_WIDE) {
      counter(metric, help, ['switch'], (m, s) => {
        for (const sw of s.switches) m.inc({ switch: sw.name }, sw.switchCounters?.[key] ?? 0);
      });
    }
    counter('mac_table_events_total', 'MAC table events: learned, aged, moved, table_full (a MAC that did not fit)', ['switch', 'event'], (m, s) => {
      for (const sw of s.switches) for (const e of MAC_EVENTS) if (sw.macTableCounters[e] !== undefined) m.inc({ switch: sw.name, event: dropReason('drop' + e[0]!.toUpperCase() + e.slice(1)) }, sw.macTableCounters[e]!);
    });
    gauge('mac_table_entries', 'entries in the MAC table', ['switch'], (m, s) => {
      for (const sw of s.switches) if (sw.macTableCounters['size'] !== undefined) m.set({ switch: sw.name }, sw.macTableCounters['size']);
    });
    gauge('switch_up', '1 while the switch has ports, 0 once it has gone (its totals are kept)', ['switch'], (m, s) => {
      for (const sw of s.switches) m.set({ switch: sw.name }, sw.gone ? 0 : 1);
    });
    gauge('switch_ports', 'ports on the switch', ['switch'], (m, s) => {
      for (const sw of s.switches) m.set({ switch: sw.name }, sw.portsTotal);
    });
    gauge('switch_in_flight_frames', 'frames published on tx rings and not yet taken by the switch', ['switch'], (m, s) => {
      for (const sw of s.switches) m.set({ switch: sw.name }, sw.conservation?.inFlight ?? 0);
    });
    gauge('switch_rx_queued_frames', 'delivered frames still in rx rings, not yet released by their clients', ['switch'], (m, s) => {
      for (const sw of s.switches) m.set({ switch: sw.name }, sw.conservation?.rxQueued ?? 0);
    });
    gauge('switch_created_timestamp_seconds', 'when a switch of this name was first created in this vale-ts', ['switch'], (m, s) => {
      for (const sw of s.switches) if (sw.createdAt) m.set({ switch: sw.name }, Date.parse(sw.createdAt) / 1000);
    });
    gauge('switch_last_activity_timestamp_seconds', 'last port event, or last read that saw frames move', ['switch'], (m, s) => {
      for (const sw of s.switches) if (sw.lastActivityAt) m.set({ switch: sw.name }, Date.parse(sw.lastActivityAt) / 1000);
    });
    const serverGauge = (key: keyof ServerCounters, name: string, help: string): void =>
      gauge(name, help, [], (m, s) => {
        if (s.server[key] !== undefined) m.set(s.server[key]);
      });
    serverGauge('connections', 'server_connections', 'control connections open');
    serverGauge('ports', 'server_ports', 'ports on all switches');
    serverGauge('memoryBytes', 'server_memory_bytes', 'bytes of every port region');
    const serverCounter = (key: keyof ServerCounters, name: string, help: string): void =>
      counter(name, help, [], (m, s) => {
        if (s.server[key] !== undefined) m.inc(s.server[key]);
      });
    serverCounter('refusedPeer', 'server_refused_peer_total', 'connections refused by the peer policy');
    serverCounter('refusedConnLimit', 'server_refused_conn_limit_total', 'connections refused by a connection limit');
    serverCounter('refusedPortLimit', 'server_refused_port_limit_total', 'ports refused by a port limit');
    serverCounter('refusedMemoryLimit', 'server_refused_memory_limit_total', 'ports refused by a memory limit');
    serverCounter('protocolErrors', 'server_protocol_errors_total', 'malformed requests');
    this.refusedConnections = new Counter({
      name: P + 'metrics_refused_connections_total',
      help: 'scrape connections closed on arrival: the endpoint had its maximum open',
      registers: [r],
    });
    serverCounter('callbackErrors', 'server_callback_errors_total', 'errors caught while serving (connection dropped, switch kept)');
  }

  /** One scrape: a snapshot of every switch, rendered. */
  async render(): Promise<string> {
    this.snap = this.server.allStats();
    return this.registry.metrics();
  }
}

/** A running metrics endpoint. */
export interface MetricsEndpoint {
  /** the address actually bound (port 0 resolved) */
  readonly host: string;
  /** the TCP port actually bound */
  readonly port: number;
  /** http://HOST:PORT/metrics */
  readonly url: string;
  /** Stop listening; resolves once the HTTP server has closed. */
  close(): Promise<void>;
}

/** Connections the metrics endpoint serves at once; more are closed on arrival. */
export const METRICS_MAX_CONNECTIONS = 64;
/** A metrics connection with no traffic for this long is closed (ms). */
export const METRICS_IDLE_MS = 5_000;

/** Serve `GET /metrics` for `server` at `spec` ([ADDR:]PORT). */
export async function serveMetrics(server: ValeServer, spec: string): Promise<MetricsEndpoint> {
  const { host, port } = parseListenAddress(spec);
  const metrics = new ValeMetrics(server);
  const httpServer = http.createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('only GET /metrics\n');
      return;
    }
    if (url !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('vale-ts serves metrics at /metrics\n');
      return;
    }
    metrics.render().then(
      (body) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(req.method === 'HEAD' ? undefined : body),
      (e: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${(e as Error).message}\n`),
    );
  });
  // A slow or idle scraper cannot hold connections for long, nor many of
  // them: each is a descriptor of the process that also holds every port's.
  // headersTimeout alone does not close a connection that never sends a
  // byte (Node starts that clock at the first byte), so idle sockets get a
  // timeout of their own; past the cap Node closes new connections at once
  // ('drop', counted).
  httpServer.requestTimeout = 10_000;
  httpServer.headersTimeout = 5_000;
  httpServer.keepAliveTimeout = 5_000;
  httpServer.timeout = METRICS_IDLE_MS;
  httpServer.maxConnections = METRICS_MAX_CONNECTIONS;
  httpServer.on('drop', () => metrics.refusedConnections.inc());
  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(port, host, () => {
      httpServer.off('error', reject);
      resolve();
    });
  });
  const a = httpServer.address() as AddressInfo;
  const h = a.family === 'IPv6' ? `[${a.address}]` : a.address;
  server.once('close', () => httpServer.close());
  return {
    host: a.address,
    port: a.port,
    url: `http://${h}:${a.port}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        httpServer.closeAllConnections();
        httpServer.close(() => resolve());
      }),
  };
}
