/**
 * Captures of real traffic: two namespaces behind TAP ports of vale-ts ping
 * each other through the switch (the Linux stack on both ends), while
 * - `vale-ctl-ts --capture` writes pcapng that tshark reads back: the right
 *   frames, addresses, directions and interface names; `--filter icmp`
 *   (compiled by libpcap) keeps only ICMP, ARP left out;
 * - the same output streamed to stdout is read by `tcpdump -r -`;
 * - a monitor `vale0:b/rt` opened through the library receives exactly what
 *   the port sent and received: per direction, the same frame count and
 *   bytes as the switch's counters for the port.
 * IPv6 is off in the namespaces so that nothing but the pings (and their
 * ARP) crosses the switch.
 */
import test, { type ExecutionContext } from 'ava';
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { open, ValeClient, ValeServer, type Port } from '../../src/index.js';
import { inNs, ip, makeNs } from '../fixtures/netns.js';
import { ensurePackages } from '../fixtures/system-packages.js';
import { assertPingReplies } from '../fixtures/ping-output.js';
import { cli as CTL, spawnCapture } from '../fixtures/vale-ctl-run.js';

const tag = `cap${process.pid}`;
const nsA = `${tag}a`;
const nsB = `${tag}b`;
const socket = path.join(os.tmpdir(), `capture-${process.pid}.sock`);
const dir = mkdtempSync(path.join(os.tmpdir(), `capture-it-${process.pid}-`));
const cleanups: (() => void)[] = [];
const execFileP = promisify(execFile);
let srv: ValeServer;
let vale: ValeClient;

/** Moves the TAP into its namespace with IPv6 off (no router solicitations, no DAD: only the test's traffic). */
function plug(ns: string, ifname: string, cidr: string): void {
  ip('link', 'set', ifname, 'netns', ns);
  spawnSync('ip', ['netns', 'exec', ns, 'sysctl', '-qw', `net.ipv6.conf.${ifname}.disable_ipv6=1`, 'net.ipv6.conf.all.disable_ipv6=1']);
  ip('-n', ns, 'addr', 'add', cidr, 'dev', ifname);
  ip('-n', ns, 'link', 'set', ifname, 'up');
}

test.before(async () => {
  ensurePackages(['iproute2', 'iputils-ping', 'tshark', 'tcpdump', 'libpcap0.8', 'procps']);
  srv = await ValeServer.listen({ socket });
  vale = new ValeClient({ socket });
  cleanups.push(makeNs(nsA), makeNs(nsB));
  await vale.create('vale0:a', {}, { driver: { kind: 'tap', ifname: nsA } });
  await vale.create('vale0:b', {}, { driver: { kind: 'tap', ifname: nsB } });
  plug(nsA, nsA, '10.213.0.1/24');
  plug(nsB, nsB, '10.213.0.2/24');
});

test.after.always(() => {
  srv?.close();
  for (const c of cleanups) c();
  rmSync(dir, { recursive: true, force: true });
});

/** Starts `vale-ctl-ts --capture ...`; resolves once it is capturing, with its exit. */
async function startCapture(t: ExecutionContext, args: string[]): Promise<{ done: Promise<{ code: number | null; stderr: string; stdout: Buffer }> }> {
  const c = spawnCapture(t, process.execPath, [CTL, '--capture', ...args, '--socket', socket], 'collect');
  await c.capturing;
  return { done: c.exited.then(([code]) => ({ code, stderr: c.stderr(), stdout: c.stdout() })) };
}

// -A: the next request only once the last one is answered, so a slow machine
// (replies late) still sees exactly n requests and n replies; -w: a hang guard
const ping = (from: string, to: string, n: number): Promise<string> => inNs(from, ['ping', '-c', String(n), '-A', '-w', '50', to]);

test.serial('vale-ctl-ts --capture --filter icmp: tshark reads the ping exchange, by port direction', async (t) => {
  t.timeout(90_000);
  const file = path.join(dir, 'ping.pcapng');
  const cap = await startCapture(t, ['vale0:a', '--filter', 'icmp', '-c', '6', '-w', file, '--nano']);
  assertPingReplies(t, await ping(nsA, '10.213.0.2', 3), 3);
  const r = await cap.done;
  t.is(r.code, 0, r.stderr);
  t.regex(r.stderr, /6 frames written/);
  const tshark = spawnSync('tshark', ['-r', file, '-T', 'fields', '-E', 'separator=|', '-e', 'frame.interface_name', '-e', 'frame.packet_flags_direction', '-e', 'ip.src', '-e', 'ip.dst', '-e', 'icmp.type', '-e', 'eth.type'], { encoding: 'utf8' });
  t.is(tshark.status, 0, tshark.stderr);
  const rows = tshark.stdout.trim().split('\n').map((l) => l.split('|'));
  t.is(rows.length, 6);
  // what A's port sent (tx, outbound) are the requests; what it received (rx, inbound) the replies
  const tx = rows.filter((row) => row[0] === 'vale0:a/tx');
  const rx = rows.filter((row) => row[0] === 'vale0:a/rx');
  t.is(tx.length, 3);
  t.is(rx.length, 3);
  for (const row of tx) t.deepEqual([Number(row[1]), row[2], row[3], row[4]], [2, '10.213.0.1', '10.213.0.2', '8']);
  for (const row of rx) t.deepEqual([Number(row[1]), row[2], row[3], row[4]], [1, '10.213.0.2', '10.213.0.1', '0']);
  // the filter left ARP out (the ping needed it: A had never talked to B)
  t.true(rows.every((row) => row[5] === '0x0800'), JSON.stringify(rows));
});

test.serial('--capture -w - streams pcapng into tcpdump -r -', async (t) => {
  t.timeout(90_000);
  const cap = await startCapture(t, ['vale0:b/r', '--filter', 'icmp', '-c', '2', '-w', '-']);
  assertPingReplies(t, await ping(nsA, '10.213.0.2', 2), 2);
  const r = await cap.done;
  t.is(r.code, 0, r.stderr);
  const td = spawnSync('tcpdump', ['-n', '-r', '-'], { input: r.stdout, encoding: 'utf8' });
  t.is(td.status, 0, td.stderr);
  const lines = td.stdout.trim().split('\n');
  t.is(lines.length, 2);
  // /r: what B received: A's echo requests
  for (const l of lines) t.regex(l, /IP 10\.213\.0\.1 > 10\.213\.0\.2: ICMP echo request/);
});

/** Frames and bytes waiting in rx ring `r` of `port`, taken (released) as they are counted. */
function drain(port: Port, r: number, acc: { frames: number; bytes: number }): void {
  port.rxsync();
  const ring = port.rxRings[r]!;
  let n = 0;
  for (let i = ring.head; i !== ring.tail; i = ring.next(i), n++) acc.bytes += ring.len(i);
  acc.frames += n;
  ring.advance(n);
  port.rxsync();
}

test.serial('a /rt monitor receives exactly what the port sent and received', async (t) => {
  t.timeout(90_000);
  const sw = srv.switch('vale0')!;
  const b = sw.port('vale0:b')!;
  const mon = await open('vale0:b/rt', { socket });
  t.teardown(() => mon.close());
  t.is(mon.rxRings.length, 2);
  // The switch runs on this thread's event loop and makes each copy in the
  // round that counts the frame, so between two rounds the monitor's rings
  // hold exactly what was counted since the last look. Base: the counters
  // now, with whatever the monitor got before now taken out.
  const scratch = { frames: 0, bytes: 0 };
  drain(mon, 0, scratch);
  drain(mon, 1, scratch);
  const before = sw.counters(b.index);
  const got = [{ frames: 0, bytes: 0 }, { frames: 0, bytes: 0 }];
  assertPingReplies(t, await ping(nsB, '10.213.0.1', 4), 4);
  assertPingReplies(t, await ping(nsA, '10.213.0.2', 3), 3);
  drain(mon, 0, got[0]!);
  drain(mon, 1, got[1]!);
  const after = sw.counters(b.index);
  const want = [
    { frames: after['txFrames']! - before['txFrames']!, bytes: after['txBytes']! - before['txBytes']! },
    { frames: after['rxFrames']! - before['rxFrames']!, bytes: after['rxBytes']! - before['rxBytes']! },
  ];
  // received: 4 replies and 3 requests at least; sent: the same
  t.true(want[0]!.frames >= 7 && want[1]!.frames >= 7, JSON.stringify(want));
  t.deepEqual(got, want);
  const m = sw.monitors().find((x) => x.name === 'vale0:b/rt')!;
  t.is(m.watches, 'vale0:b');
  t.is(m.counters['dropMonitor'], 0);
  // vale-ctl-ts --stats shows it (async: the switch serving it runs in this process)
  const { stdout } = await execFileP(process.execPath, [CTL, '--stats=vale0', '--socket', socket], { encoding: 'utf8' });
  // (the namespaces' own frames, IPv6 neighbour discovery among them, may add
  // copies between the read above and this listing: at least as many)
  const listed = new RegExp('monitor vale0:b/rt of vale0:b: copies (\\d+), dropMonitor 0').exec(stdout);
  t.truthy(listed, stdout);
  t.true(Number(listed![1]) >= m.counters['txFrames']!, stdout);
  // a monitor is not a port: not listed, not in the switch's ports
  t.falsy((await vale.list()).find((p) => p.name.includes('/')));
  t.falsy(sw.ports().find((p) => p.name.includes('/')));
});

test.serial('monitors: a missing port, a zero-copy monitor and a second register are refused with the reason', async (t) => {
  await t.throwsAsync(open('vale0:nosuch/r', { socket }), { message: /no port vale0:nosuch to monitor/ });
  await t.throwsAsync(open('vale0:b/rz', { socket }), { message: /copy monitors only/ });
  const m = await open('vale0:a/t', { socket });
  t.is(m.rxRings.length, 1);
  t.truthy(srv.switch('vale0')!.monitors().find((x) => x.name === 'vale0:a/t'));
  m.close();
  // the monitor goes with its connection (when the server sees the hang-up)
  const sw0 = srv.switch('vale0')!;
  while (sw0.monitors().find((x) => x.name === 'vale0:a/t')) await once(sw0, 'monitorRemoved');
  t.pass();
});
