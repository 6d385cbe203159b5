/**
 * Counters that last (departed ports, gone switches) and the Prometheus
 * endpoint: a scrape, parsed by a strict text-format parser, says what
 * `vale-ctl-ts --stats --json` says.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import { open, ValeServer, type Port, type SwitchStats } from '../../src/index.js';
import { serveMetrics, dropReason, METRICS_MAX_CONNECTIONS } from '../../src/vale/metrics.js';
import net from 'node:net';
import { departures } from '../fixtures/wait.js';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const valeCtl = path.join(here, '..', '..', 'tools', 'vale-ctl-ts.js');
let uniq = 0;
const sockPath = (): string => path.join(os.tmpdir(), `vt-ops-${process.pid}-${uniq++}.sock`);

function frame(dst: number, src: number, len = 60): Uint8Array {
  const f = new Uint8Array(len);
  f.set([2, 0, 0, 0, 0, dst], 0);
  f.set([2, 0, 0, 0, 0, src], 6);
  f[12] = 0x08;
  return f;
}

/** Queue `n` frames and wait until the switch has taken every one. */
async function sendAll(p: Port, n: number, dst: number, src: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    while (!p.inject(frame(dst, src))) if (!(await p.flush())) throw new Error(`${p.name}: switch went away`);
  }
  if (!(await p.flush())) throw new Error(`${p.name}: switch went away`);
}

async function statsJson(socket: string): Promise<SwitchStats[]> {
  const { stdout } = await run(process.execPath, [valeCtl, '--socket', socket, '--stats', '--json']);
  return (JSON.parse(stdout) as { switches: SwitchStats[] }).switches;
}

test('counters stay after every port has left: departed ports and the gone switch, totals continued when it returns', async (t) => {
  const socket = sockPath();
  const srv = await ValeServer.listen({ socket });
  t.teardown(() => srv.close());
  const left = departures(srv);
  const a = await open('vale7:a', { socket });
  const b = await open('vale7:b', { socket });
  // b speaks first so the bridge learns it; a's 20 frames then go to b alone
  await sendAll(b, 1, 0xa, 0xb);
  await sendAll(a, 20, 0xb, 0xa);
  a.close();
  b.close();
  await left.of('vale7:a', 'vale7:b');
  t.is(srv.switch('vale7'), undefined, 'the switch went with its last port, as in netmap');

  const [sw] = (await statsJson(socket)).filter((s) => s.name === 'vale7');
  t.truthy(sw, 'the gone switch is still in --stats --json');
  t.true(sw!.gone);
  t.deepEqual(sw!.ports, []);
  t.is(sw!.totals['rxFrames'], 21);
  t.is(sw!.totals['txFrames'], 21, "b's first frame flooded to a, then a's 20 to b");
  t.is(sw!.totals['flooded'], 1);
  t.is(sw!.totals['dropNoPort'], 0);
  t.truthy(sw!.createdAt && sw!.lastActivityAt);
  t.true(Date.parse(sw!.lastActivityAt!) >= Date.parse(sw!.createdAt!));
  t.true((sw!.uptimeS ?? -1) >= 0);
  const dep = new Map((sw!.departedPorts ?? []).map((d) => [d.name, d]));
  t.is(dep.get('vale7:a')?.counters['rxFrames'], 20);
  t.is(dep.get('vale7:b')?.counters['txFrames'], 20);
  t.is(dep.get('vale7:b')?.counters['rxFrames'], 1);
  t.true(Date.parse(dep.get('vale7:a')!.expiresAt) - Date.parse(dep.get('vale7:a')!.departedAt) === 3600 * 1000, 'default retention: one hour');
  // the text view says so too
  const { stdout: text } = await run(process.execPath, [valeCtl, '--socket', socket, '--stats']);
  t.regex(text, /vale7: gone \(no ports\), its counters kept/);
  t.regex(text, /vale7:a \(gone\)/);

  // the switch comes back: its totals go on from where they were
  const c = await open('vale7:c', { socket });
  await sendAll(c, 5, 0xee, 0xc);
  const [back] = (await statsJson(socket)).filter((s) => s.name === 'vale7');
  t.falsy(back!.gone);
  t.is(back!.totals['rxFrames'], 26);
  t.is(back!.createdAt, sw!.createdAt, 'first creation kept');
  t.deepEqual(
    back!.departedPorts?.map((d) => d.name),
    ['vale7:a', 'vale7:b'],
  );
  // c is alone: its 5 frames go nowhere (dropNoPort)
  t.deepEqual(back!.conservation, { taken: 26, delivered: 21, dropped: 5, flooded: 1, copies: 26, inFlight: 0, rxQueued: 0 });
  // vale-ctl-ts -r forgets a departed port's counters
  await run(process.execPath, [valeCtl, '--socket', socket, '-r', 'vale7:a']);
  const [after] = (await statsJson(socket)).filter((s) => s.name === 'vale7');
  t.deepEqual(
    after!.departedPorts?.map((d) => d.name),
    ['vale7:b'],
  );
  const err = await run(process.execPath, [valeCtl, '--socket', socket, '-r', 'vale7:a']).catch((e: { stderr: string }) => e);
  t.regex((err as { stderr: string }).stderr, /No such device or address/, 'forgotten: nothing left to remove');
  c.close();
});

test('a persistent port keeps its counters after its client detaches; frames in flight show in the stats', async (t) => {
  const socket = sockPath();
  // no stall bound within the test: a full receiver holds the lossless sender back
  const srv = await ValeServer.listen({ socket, retainCountersS: 0, switchOptions: { stallMs: 1e9 } });
  t.teardown(() => srv.close());
  const left = departures(srv);
  await srv.createPort('vale8:p');
  const p = await open('vale8:p', { socket });
  await sendAll(p, 7, 0xee, 0x1);
  p.close();
  await left.of('vale8:p');
  const sw = srv.switch('vale8')!;
  t.is(sw.port('vale8:p')?.attached, false, 'detached');
  const st = (await statsJson(socket)).find((s) => s.name === 'vale8')!;
  const ps = st.ports.find((x) => x.name === 'vale8:p');
  t.truthy(ps, 'the persistent port is still there');
  t.is(ps!.counters['rxFrames'], 7, 'its counters kept after detach');

  // r never reads: its 64-slot rx ring fills (63 frames) and the lossless
  // sender's other frames wait, published and not taken, on its tx ring
  const r = await open("vale8:r@conf:rx_slots=64", { socket });
  await sendAll(r, 1, 0xee, 0x2);
  const s = await open('vale8:s', { socket, lossless: true });
  for (let i = 0; i < 100; i++) if (!s.inject(frame(0x2, 0x3))) throw new Error('tx ring full');
  s.txsync();
  const rIdx = sw.port('vale8:r')!.index;
  while ((sw.counters(rIdx)['txFrames'] ?? 0) < 63) await new Promise((res) => setImmediate(res));
  const busy = (await statsJson(socket)).find((x) => x.name === 'vale8')!;
  const sp = busy.ports.find((x) => x.name === 'vale8:s')!;
  const rp = busy.ports.find((x) => x.name === 'vale8:r')!;
  t.is(rp.occupancy?.rxQueued, 63, "r's rx ring is full");
  t.is(sp.occupancy?.txQueued, 100 - 63, 'the rest is in flight');
  t.is(sp.counters['rxFrames']! + sp.occupancy!.txQueued, 100, 'published = taken + in flight');
  const k = busy.conservation!;
  t.is(k.inFlight, 37);
  // r's first frame was flooded to the one other port then, the unattended p, where it waits
  t.is(k.rxQueued, 63 + 1);
  t.is(k.flooded, 1);
  t.is(k.copies, k.delivered + k.dropped, 'copies = delivered + dropped (the one flood had one copy)');
  s.close();
  r.close();
  await left.of('vale8:s', 'vale8:r');
  const st2 = (await statsJson(socket)).find((x) => x.name === 'vale8')!;
  t.deepEqual(st2.departedPorts ?? [], [], '--retain-counters 0: a departed client port is not kept');
  t.is(st2.totals['rxFrames'], 7 + 1 + 100, "s's frames in flight were taken when it went (delivered or counted dropClosed)");
});

/** One sample of a scrape. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * A strict parser of the Prometheus text exposition format (0.0.4): HELP
 * and TYPE before a family's samples, valid names, quoted and escaped label
 * values, no duplicate series. Throws on anything else.
 */
function parseExposition(text: string): { samples: Sample[]; types: Map<string, string> } {
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const samples: Sample[] = [];
  const seen = new Set<string>();
  const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
  if (!text.endsWith('\n')) throw new Error('exposition must end with a newline');
  for (const [i, line] of text.slice(0, -1).split('\n').entries()) {
    const where = `line ${i + 1}: ${line}`;
    if (line.startsWith('# HELP ')) {
      const m = /^# HELP (\S+) (.*)$/.exec(line);
      if (!m || !NAME.test(m[1]!)) throw new Error(`bad HELP, ${where}`);
      if (helps.has(m[1]!)) throw new Error(`HELP twice, ${where}`);
      helps.add(m[1]!);
      continue;
    }
    if (line.startsWith('# TYPE ')) {
      const m = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line);
      if (!m || !NAME.test(m[1]!)) throw new Error(`bad TYPE, ${where}`);
      if (types.has(m[1]!)) throw new Error(`TYPE twice, ${where}`);
      types.set(m[1]!, m[2]!);
      continue;
    }
    if (line === "") continue; // the format ignores empty lines
    if (line.startsWith("#")) throw new Error(`unexpected line, ${where}`);
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`bad sample, ${where}`);
    const labels: Record<string, string> = {};
    let rest = m[3] ?? '';
    while (rest.length) {
      const lm = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/.exec(rest);
      if (!lm) throw new Error(`bad labels, ${where}`);
      if (labels[lm[1]!] !== undefined) throw new Error(`label twice, ${where}`);
      labels[lm[1]!] = lm[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
      rest = rest.slice(lm[0].length);
    }
    const v = m[4]!;
    const value = v === '+Inf' ? Infinity : v === '-Inf' ? -Infinity : v === 'NaN' ? NaN : Number(v);
    if (!/^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$|^[-+]Inf$|^NaN$/.test(v)) throw new Error(`bad value, ${where}`);
    if (!types.has(m[1]!)) throw new Error(`sample before its TYPE, ${where}`);
    const key = `${m[1]}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seen.has(key)) throw new Error(`duplicate series, ${where}`);
    seen.add(key);
    samples.push({ name: m[1]!, labels, value });
  }
  return { samples, types };
}

test('a metrics scrape, parsed strictly, equals vale-ctl-ts --stats --json', async (t) => {
  const socket = sockPath();
  const srv = await ValeServer.listen({ socket });
  t.teardown(() => srv.close());
  const left = departures(srv);
  const m = await serveMetrics(srv, '0');
  t.is(m.host, '127.0.0.1', 'loopback unless told otherwise');
  // traffic on two switches, one of which then goes, with a departed port on the other
  const a = await open('vale9:a', { socket });
  const b = await open('vale9:b', { socket });
  const gone = await open('vale9:gone', { socket });
  const x = await open('vale10:x', { socket });
  await sendAll(b, 1, 0xa, 0xb);
  await sendAll(a, 50, 0xb, 0xa);
  await sendAll(a, 3, 0xcc, 0xa); // unknown destination: flooded
  await sendAll(gone, 2, 0xb, 0xd);
  await sendAll(x, 4, 0xb, 0xe);
  gone.close();
  x.close();
  await left.of('vale9:gone', 'vale10:x');
  // b reads nothing: its rx ring holds what it was given (occupancy)
  const res = await fetch(m.url);
  t.is(res.status, 200);
  t.regex(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  const body = await res.text();
  const stats = await statsJson(socket);
  const { samples, types } = parseExposition(body);
  const get = (name: string, labels: Record<string, string>): number | undefined =>
    samples.find((s) => s.name === name && Object.keys(labels).length === Object.keys(s.labels).length && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
  t.is(types.get('vale_ts_port_frames_in_total'), 'counter');
  t.is(types.get('vale_ts_mac_table_entries'), 'gauge');
  let checked = 0;
  const eq = (name: string, labels: Record<string, string>, want: number | undefined): void => {
    t.is(get(name, labels), want, `${name}${JSON.stringify(labels)}`);
    checked++;
  };
  t.deepEqual(stats.map((s) => s.name).sort(), ['vale10', 'vale9']);
  for (const sw of stats) {
    const S = { switch: sw.name };
    eq('vale_ts_switch_up', S, sw.gone ? 0 : 1);
    eq('vale_ts_switch_ports', S, sw.portsTotal);
    eq('vale_ts_switch_frames_in_total', S, sw.totals['rxFrames']);
    eq('vale_ts_switch_frames_out_total', S, sw.totals['txFrames']);
    eq('vale_ts_switch_bytes_in_total', S, sw.totals['rxBytes']);
    eq('vale_ts_switch_bytes_out_total', S, sw.totals['txBytes']);
    eq('vale_ts_switch_flooded_total', S, sw.totals['flooded']);
    eq('vale_ts_switch_flood_copies_total', S, sw.totals['floodCopies']);
    eq('vale_ts_switch_kicks_total', S, sw.totals['kicks']);
    for (const [k, v] of Object.entries(sw.totals)) if (k.startsWith('drop')) eq('vale_ts_switch_drops_total', { ...S, reason: dropReason(k) }, v);
    for (const [k, metric] of [
      ['wakeups', 'vale_ts_switch_wakeups_total'],
      ['spuriousWakeups', 'vale_ts_switch_spurious_wakeups_total'],
      ['doorbellBackoffs', 'vale_ts_switch_doorbell_backoffs_total'],
      ['stalls', 'vale_ts_switch_stalls_total'],
    ] as const) {
      // switch-wide counters move on their own (wakeups): equal unless the switch woke between the two reads
      t.true(get(metric, S)! <= sw.switchCounters![k]!, metric);
    }
    eq('vale_ts_mac_table_entries', S, sw.macTableCounters['size']);
    eq('vale_ts_mac_table_events_total', { ...S, event: 'learned' }, sw.macTableCounters['learned']);
    eq('vale_ts_mac_table_events_total', { ...S, event: 'aged' }, sw.macTableCounters['aged']);
    eq('vale_ts_mac_table_events_total', { ...S, event: 'moved' }, sw.macTableCounters['moved']);
    eq('vale_ts_mac_table_events_total', { ...S, event: 'table_full' }, sw.macTableCounters['tableFull']);
    eq('vale_ts_switch_in_flight_frames', S, sw.conservation!.inFlight);
    eq('vale_ts_switch_rx_queued_frames', S, sw.conservation!.rxQueued);
    eq('vale_ts_switch_created_timestamp_seconds', S, Date.parse(sw.createdAt!) / 1000);
    const ports = [...sw.ports.map((p) => ({ name: p.name, c: p.counters, up: 1, occ: p.occupancy })), ...(sw.departedPorts ?? []).map((d) => ({ name: d.name, c: d.counters, up: 0, occ: undefined }))];
    for (const p of ports) {
      const L = { switch: sw.name, port: p.name };
      eq('vale_ts_port_up', L, p.up);
      eq('vale_ts_port_frames_in_total', L, p.c['rxFrames']);
      eq('vale_ts_port_frames_out_total', L, p.c['txFrames']);
      eq('vale_ts_port_bytes_in_total', L, p.c['rxBytes']);
      eq('vale_ts_port_bytes_out_total', L, p.c['txBytes']);
      eq('vale_ts_port_kicks_total', L, p.c['kicks']);
      for (const [k, v] of Object.entries(p.c)) if (k.startsWith('drop')) eq('vale_ts_port_drops_total', { ...L, reason: dropReason(k) }, v);
      eq('vale_ts_port_rx_ring_queued_frames', L, p.occ?.rxQueued);
      eq('vale_ts_port_tx_ring_queued_frames', L, p.occ?.txQueued);
    }
  }
  // what the traffic should have made, so the comparison is not of two empty sets
  const v9 = stats.find((s) => s.name === 'vale9')!;
  t.is(v9.ports.find((p) => p.name === 'vale9:b')?.counters['txFrames'], 50 + 3 + 2);
  t.is(v9.ports.find((p) => p.name === 'vale9:b')?.occupancy?.rxQueued, 50 + 3 + 2, "b's rx ring holds what it has not read");
  t.is(v9.totals['flooded'], 1 + 3, "b's first frame and a's three to an unknown MAC");
  // each flood reached the two other ports of the three: 4 floods, 8 copies
  t.is(v9.totals['floodCopies'], 8);
  const k9 = v9.conservation!;
  t.is(k9.copies, k9.taken - 4 + 8);
  t.is(k9.copies, k9.delivered + k9.dropped, 'copies = delivered + dropped, floods included');
  t.is(get('vale_ts_port_frames_in_total', { switch: 'vale9', port: 'vale9:gone' }), 2, 'a departed port is scraped with its last counters');
  t.is(get('vale_ts_switch_up', { switch: 'vale10' }), 0, 'a gone switch is scraped');
  t.is(get('vale_ts_switch_frames_in_total', { switch: 'vale10' }), 4);
  t.true(checked > 80, `${checked} values compared`);
  // anything but /metrics is refused
  t.is((await fetch(m.url.replace('/metrics', '/'))).status, 404);
  a.close();
  b.close();
  await m.close();
});

test('the metrics endpoint serves a bounded number of connections and closes idle ones: scrapers cannot pile up descriptors in vale-ts', async (t) => {
  const srv = await ValeServer.listen({ socket: sockPath() });
  t.teardown(() => srv.close());
  const m = await serveMetrics(srv, '127.0.0.1:0');
  t.teardown(() => m.close());
  const connect = (): Promise<net.Socket> =>
    new Promise((resolve, reject) => {
      const c = net.connect(m.port, '127.0.0.1', () => resolve(c));
      c.once('error', reject);
    });
  // connections that never send a byte (headersTimeout alone never closes them)
  const idle: net.Socket[] = [];
  t.teardown(() => idle.forEach((c) => c.destroy()));
  for (let i = 0; i < METRICS_MAX_CONNECTIONS; i++) idle.push(await connect());
  const closed = Promise.all(idle.map((c) => new Promise((resolve) => c.once('close', resolve))));
  // one more, asking for the metrics: closed unanswered
  const extra = await connect();
  t.teardown(() => extra.destroy());
  const answer = await new Promise<string>((resolve) => {
    let got = '';
    extra.on('data', (d: Buffer) => (got += d.toString()));
    extra.once('close', () => resolve(got));
    extra.on('error', () => undefined);
    extra.write(`GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
  });
  t.is(answer, '', 'a connection past the cap is closed without an answer');
  // the idle ones are closed by the endpoint (waited for, however long the timeout takes here)
  await closed;
  const body = await (await fetch(m.url)).text();
  t.regex(body, /^vale_ts_metrics_refused_connections_total 1$/m, 'the refused connection is counted');
});

test('many departed ports (names are the clients\' to choose) never make --stats fail: the reply keeps what fits and says how many there are', async (t) => {
  const socket = sockPath();
  const srv = await ValeServer.listen({ socket });
  t.teardown(() => srv.close());
  const left = departures(srv);
  const keep = await open('vale11:keep', { socket });
  const N = 400;
  for (let i = 0; i < N; i++) {
    const p = await open(`vale11:churn${i}`, { socket });
    p.close();
    await left.of(`vale11:churn${i}`);
  }
  const [sw] = await statsJson(socket);
  t.is(sw!.departedPortsTotal, N);
  t.true(sw!.departedPorts!.length > 0 && sw!.departedPorts!.length < N, `${sw!.departedPorts!.length} of ${N} in one message`);
  t.is(srv.allStats().switches[0]!.departedPorts!.length, N, 'the metrics snapshot has all of them');
  keep.close();
});
