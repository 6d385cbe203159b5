/**
 * Switch benchmark: frames per second at the receivers through vale-ts, and
 * in the same run the same traffic through a Linux bridge between veth pairs
 * driven by trafgen (PACKET_MMAP), so the result is a ratio. Also the
 * per-frame cost of 1->1 with 2, 16 and 64 ports attached (the extra ports
 * idle: attached, their rings walked every round, nothing sent), and the
 * TypeScript decision against a learning bridge in C++ on the same switch
 * core (vale-ts --native-bridge), same traffic.
 *   node dist/bench/switch.bench.js [--seconds S] [--no-bridge] [--cpu] [--only 1->1|2->1|1->flood]
 *     [--len 60|1514] [--vale PATH] [--peer PATH] [--switch-arg ARG]...
 * --cpu adds each stage's CPU time per frame received (vale-ts, the
 * senders, the receivers: schedstat of every thread), the measure that a
 * busy machine disturbs least; --only runs one row (--len bytes, default
 * 60) for A/B runs; --vale and --peer take the vale-ts.js and the peer
 * (tx/rx) script from another build, e.g. the first release's tree, so the
 * switch and the fixtures can be swapped one at a time; --switch-arg passes
 * ARG to vale-ts (e.g. --switch-arg=--hold-us=0).
 * Per frame, vale-ts: the sender's pkt-gen-style loop fills a slot, the
 * switch (vale-ts's default datapath, its thread dp:vale0) validates the slot, copies the header bytes
 * the lookup reads, runs the lookup (TypeScript, once per round for the whole
 * batch; or C++), and copies the frame into the receiver's rx ring; the
 * receiver counts it. The Linux bridge: trafgen writes frames into a
 * PACKET_MMAP ring, the kernel carries each as an skb veth -> bridge -> veth,
 * counted in the receiving veth's statistics (no userspace receiver).
 * Needs root for the Linux bridge part (network namespace, veth, bridge);
 * installs netsniff-ng (trafgen) with apt-get if it is missing.
 */
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, writeFileSync, rmSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { child, peerJs as defaultPeerJs, startSwitch, aggregateMpps } from './lib.js';

const MAC = { a: '02000000000a', b: '02000000000b', c: '02000000000c', d: '02000000000d' };

interface Scenario {
  name: string;
  senders: { port: string; src: string; dst: string }[];
  receivers: string[];
}

const scenarios: Scenario[] = [
  { name: '1->1', senders: [{ port: 'a', src: MAC.a, dst: MAC.b }], receivers: ['b'] },
  {
    name: '2->1',
    senders: [
      { port: 'a', src: MAC.a, dst: MAC.b },
      { port: 'c', src: MAC.c, dst: MAC.b },
    ],
    receivers: ['b'],
  },
  { name: '1->flood(4 ports)', senders: [{ port: 'a', src: MAC.a, dst: 'bcast' }], receivers: ['b', 'c', 'd'] },
];

/** CPU time of every thread of process `pid` so far (ns, from schedstat); 0 once it is gone. */
function cpuNs(pid: number | undefined): number {
  let t = 0;
  try {
    for (const k of readdirSync(`/proc/${pid}/task`)) t += Number(readFileSync(`/proc/${pid}/task/${k}/schedstat`, 'utf8').split(' ')[0]);
  } catch {
    return 0;
  }
  return t;
}

/** The switch and the peer script the runs use (--vale, --peer). */
let valeScript: string | undefined;
let peerJs = defaultPeerJs;

/** CPU ns per frame received, per process kind, of the last valeRun (--cpu). */
let lastCpu = '';

/** Mpps summed over the receivers, through vale-ts (started with switchArgs). */
async function valeRun(sc: Scenario, len: number, ms: number, idlePorts = 0, switchArgs: string[] = []): Promise<number> {
  const { proc: sw, socket } = await startSwitch(switchArgs, valeScript);
  const env = { VALE_TS_SOCKET: socket };
  try {
    let holder: ReturnType<typeof child> | undefined;
    if (idlePorts > 0) {
      holder = child([peerJs, 'hold', 'vale0:idle', String(idlePorts)], env);
      await new Promise((r) => setTimeout(r, 300 + idlePorts * 10));
    }
    // receivers announce their MAC so unicast is learned, not flooded
    const rx = sc.receivers.map((r) => child([peerJs, 'rx', `vale0:${r}`, '400', (MAC as Record<string, string>)[r]!], env));
    await new Promise((r) => setTimeout(r, 400));
    const tx = sc.senders.map((s) => child([peerJs, 'tx', `vale0:${s.port}`, s.src, s.dst, String(len), String(ms)], env));
    // each process's CPU time over the run, sampled until it exits (the
    // load-insensitive measure: what a frame costs each stage)
    const procs = { switch: [sw.pid], tx: tx.map((t) => t.c.pid), rx: rx.map((r) => r.c.pid) };
    const start = Object.fromEntries(Object.entries(procs).map(([k, ps]) => [k, ps.map(cpuNs)]));
    const last = Object.fromEntries(Object.entries(procs).map(([k, ps]) => [k, ps.map(cpuNs)]));
    const sample = (): void => {
      for (const [k, ps] of Object.entries(procs)) ps.forEach((p, i) => (last[k]![i] = cpuNs(p) || last[k]![i]!));
    };
    const timer = setInterval(sample, 50);
    await Promise.all(tx.map((t) => t.out));
    sample();
    const swEnd = last['switch']![0]!;
    const res = await Promise.all(rx.map((r) => r.out));
    clearInterval(timer);
    holder?.c.kill('SIGKILL');
    const got = res.reduce((n, r) => n + (r['received'] ?? 0), 0);
    const per = (k: string, end?: number): string => {
      const used = (end !== undefined ? end - start[k]![0]! : last[k]!.reduce((n, v, i) => n + v - start[k]![i]!, 0)) / (got || 1);
      return `${k} ${used.toFixed(1)}`;
    };
    lastCpu = `CPU ns per frame received: ${per('switch', swEnd)}  ${per('tx')}  ${per('rx')}`;
    return aggregateMpps(res);
  } finally {
    sw.kill('SIGTERM');
  }
}

function sh(cmd: string[]): string {
  return execFileSync(cmd[0]!, cmd.slice(1), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

let nsSeq = 0;
/** The same traffic through a Linux bridge between veth pairs, sent by trafgen. */
async function bridgeRun(sc: Scenario, len: number, ms: number): Promise<number> {
  const ns = `vtb${process.pid % 100000}n${nsSeq++}`;
  const nsx = (c: string[]): string => sh(['ip', 'netns', 'exec', ns, ...c]);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'vtb-'));
  sh(['ip', 'netns', 'add', ns]);
  try {
    nsx(['ip', 'link', 'add', 'br0', 'type', 'bridge']);
    nsx(['ip', 'link', 'set', 'br0', 'up']);
    const ifs = ['a', 'b', 'c', 'd'];
    for (const i of ifs) {
      nsx(['ip', 'link', 'add', `${i}0`, 'address', (MAC as Record<string, string>)[i]!.replace(/(..)(?!$)/g, '$1:'), 'type', 'veth', 'peer', 'name', `${i}0p`]);
      nsx(['ip', 'link', 'set', `${i}0p`, 'master', 'br0']);
      nsx(['ip', 'link', 'set', `${i}0p`, 'up']);
      nsx(['ip', 'link', 'set', `${i}0`, 'up']);
      nsx(['bridge', 'fdb', 'replace', (MAC as Record<string, string>)[i]!.replace(/(..)(?!$)/g, '$1:'), 'dev', `${i}0p`, 'master', 'static']);
    }
    const rxCount = (): number => sc.receivers.reduce((s, r) => s + Number(nsx(['cat', `/sys/class/net/${r}0/statistics/rx_packets`])), 0);
    const procs = sc.senders.map((s, k) => {
      const bytes = [...(s.dst === 'bcast' ? [255, 255, 255, 255, 255, 255] : hex(s.dst)), ...hex(s.src), 0x88, 0xb5];
      const cfg = path.join(tmp, `p${k}.cfg`);
      writeFileSync(cfg, `{ ${bytes.map((b) => '0x' + b.toString(16)).join(', ')}, fill(0x00, ${len - 14}) }\n`);
      // its own process group, so the worker it forks can be killed with it
      const p = spawn('ip', ['netns', 'exec', ns, 'trafgen', '-o', `${s.port}0`, '-i', cfg, '-P', '1'], { stdio: ['ignore', 'ignore', 'ignore'], detached: true });
      return { p, exited: new Promise((r) => p.on('exit', r)) };
    });
    await new Promise((r) => setTimeout(r, 500));
    const c0 = rxCount();
    const t0 = process.hrtime.bigint();
    await new Promise((r) => setTimeout(r, ms));
    const c1 = rxCount();
    const t1 = process.hrtime.bigint();
    // trafgen ignores SIGINT when started from node; its counters are read
    // already, so kill its whole process group (it forks a worker per CPU)
    for (const p of procs) process.kill(-p.p.pid!, 'SIGKILL');
    await Promise.all(procs.map((p) => p.exited));
    return ((c1 - c0) / Number(t1 - t0)) * 1e3;
  } finally {
    sh(['ip', 'netns', 'del', ns]);
    rmSync(tmp, { recursive: true, force: true });
  }
}

function hex(m: string): number[] {
  return Array.from({ length: 6 }, (_, i) => parseInt(m.slice(2 * i, 2 * i + 2), 16));
}

function ensureTrafgen(): boolean {
  if (existsSync('/usr/sbin/trafgen')) return true;
  try {
    console.log('installing netsniff-ng (trafgen) for the Linux bridge baseline...');
    execFileSync('apt-get', ['install', '-y', '-q', 'netsniff-ng'], { stdio: 'ignore', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    return existsSync('/usr/sbin/trafgen');
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seconds: { type: 'string' },
      'no-bridge': { type: 'boolean' },
      cpu: { type: 'boolean' },
      only: { type: 'string' },
      len: { type: 'string' },
      vale: { type: 'string' },
      peer: { type: 'string' },
      'switch-arg': { type: 'string', multiple: true },
    },
  });
  valeScript = values.vale;
  if (values.peer !== undefined) peerJs = values.peer;
  const ms = Number(values.seconds ?? 3) * 1000;
  const cpu = values.cpu === true;
  if (values.only !== undefined) {
    // --only 1->1|2->1|flood [--len N] [--cpu]: one row, for A/B runs
    const sc = scenarios.find((x) => x.name.startsWith(values.only!));
    if (!sc) throw new Error(`--only ${values.only}: use 1->1, 2->1 or 1->flood`);
    const len = Number(values.len ?? 60);
    if (!(len >= 60 && len <= 1514)) throw new Error(`--len ${values.len}: 60..1514`);
    const v = await valeRun(sc, len, ms, 0, values['switch-arg'] ?? []);
    console.log(`${String(len).padStart(5)}  ${sc.name.padEnd(18)} ${v.toFixed(3).padStart(8)} Mpps   ${lastCpu}   load ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`);
    return;
  }
  let bridge = !values['no-bridge'];
  if (bridge && process.getuid?.() !== 0) {
    console.log('Linux bridge baseline skipped: it needs root (network namespace, veth, bridge)');
    bridge = false;
  }
  if (bridge && !ensureTrafgen()) {
    console.log('Linux bridge baseline skipped: trafgen (netsniff-ng) could not be installed');
    bridge = false;
  }
  console.log(`switch benchmark: ${ms / 1000} s per run, Mpps summed at the receivers (${os.cpus().length} CPUs)`);
  console.log('frame  scenario            vale-ts      Linux bridge   ratio');
  let oneToOne60 = NaN;
  for (const len of [60, 1514]) {
    for (const sc of scenarios) {
      const v = await valeRun(sc, len, ms);
      if (len === 60 && sc === scenarios[0]) oneToOne60 = v;
      const b = bridge ? await bridgeRun(sc, len, ms) : NaN;
      console.log(
        `${String(len).padStart(5)}  ${sc.name.padEnd(18)} ${v.toFixed(3).padStart(8)} Mpps ${bridge ? b.toFixed(3).padStart(8) + ' Mpps' : '      n/a    '}   ${bridge ? (v / b).toFixed(1) + 'x' : ''}`,
      );
      if (cpu) console.log(`                             ${lastCpu}`);
    }
  }
  console.log(`  1->1 60 B through vale-ts: ${oneToOne60.toFixed(3)} Mpps (target >= 10 Mpps on a quiet machine)`);
  console.log('\nthe decision: TypeScript lookup vs a C++ learning bridge on the same switch core (1->1, 60 B)');
  const ts = await valeRun(scenarios[0]!, 60, ms);
  const cxx = await valeRun(scenarios[0]!, 60, ms, 0, ['--native-bridge']);
  console.log(`  TypeScript learning bridge ${ts.toFixed(3)} Mpps  C++ learning bridge ${cxx.toFixed(3)} Mpps  TS decision costs ${(100 * (1 - ts / cxx)).toFixed(1)}% (target <= 15%)`);
  console.log('\nper-frame cost against attached ports (1->1, 60 B, the other ports attached and idle; target: 64 within 10% of 2)');
  const base = await valeRun(scenarios[0]!, 60, ms, 0);
  for (const extra of [0, 14, 62]) {
    const v = extra === 0 ? base : await valeRun(scenarios[0]!, 60, ms, extra);
    console.log(`  ${String(extra + 2).padStart(3)} ports  ${v.toFixed(3)} Mpps  ${(1000 / v).toFixed(1)} ns/frame  ${(v / base).toFixed(2)} of 2 ports`);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
