/**
 * TAP ports: two network namespaces, each behind a TAP port of one vale-ts,
 * with the TAP's driver in the switch's rounds (in-line, the default on
 * vale-ts's datapath thread) and in a thread of its own
 * (VALE_TS_TAP_INLINE=0), and in the same run the same two namespaces
 * joined by a Linux bridge over veth pairs: the baseline.
 *   node dist/bench/tap.bench.js [--count N] [--seconds S] [--repeat R] [--plain]
 * The TAPs carry virtio-net headers (`--tap NAME,vnet_hdr`: the kernel's
 * TSO frames cross the switch whole, as a VM's would); `--plain`: none, every
 * TCP segment a frame of its own.
 * Per row: `ping -A` from one end to the other (the next echo as soon as the
 * reply is in: one frame in flight), N round trips (default 5000), average
 * and percentiles of ping's own per-echo times; then TCP by iperf3 for S
 * seconds (default 3). R sittings (default 3), the rows in a rotated order
 * each sitting; medians are printed with every sitting's figure.
 * Per frame, vale-ts: the kernel queues it on the sending end's TAP; the
 * driver read()s it into a tx slot of its port (a copy), the switch decides
 * and copies it into the other port's rx ring, or in-line hands it over
 * from the sender's slot, and the other driver writev()s it into its TAP
 * (a copy into an skb), whose kernel stack takes it. Thread: each driver
 * is a thread woken by an eventfd from the switch (and the switch by one
 * from the driver); in-line: the switch's thread does the read and the
 * writev itself, between its rounds. Linux bridge: veth -> bridge -> veth,
 * all in the sender's softirq; no process runs.
 * Informative (no target in an issue): what the in-line TAP driver gains.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ensurePackages } from '../test/fixtures/system-packages.js';
import { startValeTs, toolsDir } from '../test/fixtures/vale-ts-process.js';

const tag = `tb${process.pid % 100000}`;
const ctlJs = path.join(toolsDir, 'vale-ctl-ts.js');

interface Run { code: number; stdout: string; stderr: string }
function run(file: string, args: readonly string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(file, args, { maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}
async function must(file: string, ...args: string[]): Promise<string> {
  const r = await run(file, args);
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

const namespaces = new Set<string>();
const children = new Set<ChildProcess>();
async function cleanup(): Promise<void> {
  for (const c of children) c.kill('SIGKILL');
  for (const n of namespaces) await run('ip', ['netns', 'del', n]);
  namespaces.clear();
}
async function makeNs(n: string): Promise<void> {
  await must('ip', 'netns', 'add', n);
  namespaces.add(n);
  await must('ip', '-n', n, 'link', 'set', 'lo', 'up');
  // no IPv6 chatter (router solicitations, MLD): the measured frames only
  await must('ip', 'netns', 'exec', n, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1');
  await must('ip', 'netns', 'exec', n, 'sysctl', '-qw', 'net.ipv6.conf.default.disable_ipv6=1');
}
async function addr(ns: string, ifname: string, cidr: string): Promise<void> {
  await must('ip', '-n', ns, 'addr', 'add', cidr, 'dev', ifname);
  await must('ip', '-n', ns, 'link', 'set', ifname, 'up');
}

interface Rtt { avg: number; p50: number; p99: number; max: number; lost: number }
async function rtt(from: string, to: string, count: number): Promise<Rtt> {
  const r = await run('ip', ['netns', 'exec', from, 'ping', '-A', '-c', String(count), '-W', '1', to]);
  const t = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]) * 1000).sort((a, b) => a - b);
  // a lost echo (ping waits 1 s, then sends the next) is shown, not averaged
  if (t.length < count * 0.99) throw new Error(`ping: ${t.length} of ${count} answered: ${r.stdout.slice(-300)}${r.stderr}`);
  const at = (q: number): number => t[Math.min(t.length - 1, Math.floor(t.length * q))]!;
  return { avg: t.reduce((a, b) => a + b, 0) / t.length, p50: at(0.5), p99: at(0.99), max: t[t.length - 1]!, lost: count - t.length };
}

async function tcp(from: string, to: string, toIp: string, seconds: number): Promise<number> {
  const srv = spawn('ip', ['netns', 'exec', to, 'iperf3', '-s', '-1', '--forceflush', '-B', toIp], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(srv);
  srv.once('exit', () => children.delete(srv));
  await new Promise<void>((resolve) => srv.stdout.on('data', (d: Buffer) => d.toString().includes('listening') && resolve()));
  const r = await run('ip', ['netns', 'exec', from, 'iperf3', '-c', toIp, '-t', String(seconds), '-J']);
  srv.kill();
  const j = JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } };
  return j.end.sum_received.bits_per_second / 1e9;
}

interface Row { rtt: Rtt; gbps: number }
type Kind = 'linux bridge (veth)' | 'vale-ts tap, thread' | 'vale-ts tap, in-line';

async function measure(kind: Kind, n: number, count: number, seconds: number, vnetHdr: boolean): Promise<Row> {
  const a = `${tag}a${n}`, b = `${tag}b${n}`;
  await makeNs(a);
  await makeNs(b);
  let stop: (() => Promise<void>) | undefined;
  try {
    if (kind === 'linux bridge (veth)') {
      const h = `${tag}h${n}`;
      await makeNs(h);
      await must('ip', '-n', h, 'link', 'add', 'br0', 'type', 'bridge');
      await must('ip', '-n', h, 'link', 'set', 'br0', 'up');
      for (const [i, e] of [a, b].entries()) {
        await must('ip', 'link', 'add', `${tag}e${i}`, 'netns', e, 'type', 'veth', 'peer', 'name', `${tag}p${i}`, 'netns', h);
        await must('ip', '-n', h, 'link', 'set', `${tag}p${i}`, 'master', 'br0', 'up');
        await addr(e, `${tag}e${i}`, `10.215.0.${i + 1}/24`);
      }
    } else {
      const socket = path.join(os.tmpdir(), `${tag}-${n}.sock`);
      const p = await startValeTs(socket, { env: { VALE_TS_TAP_INLINE: kind === 'vale-ts tap, in-line' ? '1' : '0' } });
      stop = p.stop;
      for (const [i, e] of [a, b].entries()) {
        const t = `${tag}t${i}`;
        await must(process.execPath, ctlJs, '--socket', socket, '-n', `vale0:${t}`, '--tap', vnetHdr ? `${t},vnet_hdr` : t);
        await must('ip', 'link', 'set', t, 'netns', e);
        await addr(e, t, `10.215.0.${i + 1}/24`);
      }
      // (valectl's listing exits 1, as netmap's does)
      const list = (await run(process.execPath, [ctlJs, '--socket', socket])).stdout;
      if (list.includes('in-line') !== (kind === 'vale-ts tap, in-line')) throw new Error(`${kind}: vale-ts lists ${list}`);
    }
    await must('ip', 'netns', 'exec', a, 'ping', '-c', '2', '-i', '0.2', '10.215.0.2');
    return { rtt: await rtt(a, '10.215.0.2', count), gbps: await tcp(a, b, '10.215.0.2', seconds) };
  } finally {
    if (stop) await stop();
    await cleanup();
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { count: { type: 'string' }, seconds: { type: 'string' }, repeat: { type: 'string' }, plain: { type: 'boolean' } } });
  const vnetHdr = !(values.plain ?? false);
  const count = Number(values.count ?? 5000), seconds = Number(values.seconds ?? 3), repeat = Number(values.repeat ?? 3);
  for (const [k, v] of [['--count', count], ['--seconds', seconds], ['--repeat', repeat]] as const)
    if (!Number.isInteger(v) || v < 1) throw new Error(`${k} must be a positive integer`);
  ensurePackages(['iproute2', 'iputils-ping', 'iperf3']);
  const kinds: Kind[] = ['linux bridge (veth)', 'vale-ts tap, thread', 'vale-ts tap, in-line'];
  const rows = new Map<Kind, Row[]>(kinds.map((k) => [k, []]));
  console.log(`tap benchmark: 2 namespaces, TAPs ${vnetHdr ? 'with vnet_hdr (TSO frames cross whole)' : 'plain (--plain)'}, ping -A ${count} round trips and iperf3 TCP ${seconds} s per row, ${repeat} sittings; load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  for (let s = 0, n = 0; s < repeat; s++) {
    // rotated: no row always runs first, after the same one
    for (let i = 0; i < kinds.length; i++) {
      const k = kinds[(i + s) % kinds.length]!;
      rows.get(k)!.push(await measure(k, n++, count, seconds, vnetHdr));
    }
  }
  const bridge = median(rows.get('linux bridge (veth)')!.map((r) => r.rtt.avg));
  const thread = median(rows.get('vale-ts tap, thread')!.map((r) => r.rtt.avg));
  for (const k of kinds) {
    const rs = rows.get(k)!;
    const f = (g: (r: Row) => number, d = 0): string => `${median(rs.map(g)).toFixed(d)} (${rs.map((r) => g(r).toFixed(d)).join(', ')})`;
    console.log(`  ${k.padEnd(22)} round trip µs: avg ${f((r) => r.rtt.avg)} p50 ${f((r) => r.rtt.p50)} p99 ${f((r) => r.rtt.p99)} max ${f((r) => r.rtt.max)} lost ${rs.map((r) => r.rtt.lost).join('+')};  TCP Gbit/s ${f((r) => r.gbps, 2)}`);
  }
  const inl = median(rows.get('vale-ts tap, in-line')!.map((r) => r.rtt.avg));
  console.log(`  ratios (medians of avg round trip): in-line / thread ${(inl / thread).toFixed(2)}, in-line / bridge ${(inl / bridge).toFixed(2)}, thread / bridge ${(thread / bridge).toFixed(2)}`);
}

process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));
main().catch(async (e: unknown) => {
  await cleanup();
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
