/**
 * Two namespaces joined over VXLAN, through two vale-ts versus through two
 * Linux vxlan devices, in the same run (issue 14): 60-byte frames per second
 * sent by trafgen and counted on the receiving namespace's interface, and
 * TCP throughput by iperf3.
 *
 *   end A --veth-- [host A] ==underlay veth, VXLAN vni 42== [host B] --veth-- end B
 *
 * Linux: in each host namespace a bridge enslaves the end's veth and a vxlan
 * device (remote = the other host). vale-ts: in each host namespace a vale-ts
 * process attaches the end's veth (`-a`, AF_PACKET) and has a VXLAN port
 * (`--vxlan`) to the other host. The ends' MTU is 1450 in both.
 *
 * The two vale-ts share a host, so they can also use the co-resident
 * shortcut (docs/vxlan-shortcut.md): measured twice, the VTEPs with
 * `shortcut=off` (VXLAN over the veth underlay) and with it on, once the
 * shortcut is up.
 *
 * What each row measures:
 *   "... 60 B" and "TCP" rows: namespace to namespace, through the ends'
 *     veths and the AF_PACKET/AF_XDP ports (vale-ts) or the bridges (Linux):
 *     the issue's "vale-ts VXLAN vs Linux vxlan" (target pps >= 1.0). In the
 *     shortcut row the same veth ends bound both paths, so it says little
 *     about the path between the switches.
 *   "netmap ends" rows: pkt-gen-ts tx on a vale port of vale-ts A,
 *     pkt-gen-ts rx on a vale port of vale-ts B, no veth and no namespace
 *     stack at either end: exactly the path between the two switches, VXLAN
 *     (two UDP stacks and the underlay veth) vs the shortcut (one shared
 *     ring), same processes, same run. The issue's "the co-resident shortcut
 *     vs VXLAN between the same two vale-ts" (target >= 5x) is read from
 *     these rows: both sides are the same two switches with the same ends,
 *     only the transport between them differs. Each netmap row also gives
 *     the CPU time both vale-ts processes used per frame received (user +
 *     system, which includes the kernel's UDP and veth work done in their
 *     threads): a figure that survives a loaded machine better than pps.
 *   "vale-ts vxlan gso=off, netmap ends": the same with the VTEPs sending one
 *     datagram at a time, the before of UDP GSO in the same run.
 *   "round trip": `ping -A` between the namespace ends on each path (Linux
 *     vxlan, vale-ts VXLAN, the shortcut), one echo in flight: informative.
 * The Linux rows have transmit checksum offload off on the underlay veth
 * (Linux's vxlan needs it, docs/vxlan.md); the vale-ts rows have it back on,
 * as a veth has it by default (the kernel refuses UDP GSO without it).
 *
 *   node dist/bench/vxlan.bench.js [--seconds 5] [--only-netmap] [--only-shortcut] [--only-namespace] [--pin] [--repeat R]
 * --repeat R: issue 14's shortcut ratio, judged on R pairs: the netmap-ends
 * rows of VXLAN (gso=on) and the shortcut alone, R times each, alternated
 * (A B, B A, ...), fresh vale-ts for every run; prints each pair's ratio
 * and their median. One run's ratio swings with the host (on the 2-vCPU
 * machine 4.2-5.9 within minutes, bench/RESULTS.md session 27).
 * --pin: the netmap-ends rows with every busy process on a CPU chosen for it
 * (taskset, as netmap users place pkt-gen with -a): with 4 CPUs or more
 * pkt-gen-ts tx, vale-ts A, vale-ts B and pkt-gen-ts rx on CPUs 0-3; with 2,
 * tx and vale-ts A on CPU 0, vale-ts B and rx on CPU 1 (the chain cut in two
 * halves, one crossing between the CPUs). Left to the scheduler (the
 * default), the shortcut row on 2 CPUs lands either way and comes out
 * bimodal: ~4 Mpps with both switches on one CPU, ~8 with a switch on each
 * (bench/RESULTS.md, session 26). The same placement for every row; the
 * vale-ts processes stay on theirs for the namespace rows too.
 *
 * --only-shortcut: the shortcut's netmap row alone (for alternated runs).
 * --only-namespace: the two vale-ts namespace rows alone (VXLAN, shortcut),
 * each followed by the same accounting as the netmap rows (trafgen's frames
 * received at end B or counted: veths, the ports' kernel rings, switches,
 * drivers, UDP buffers).
 * Each netmap row is followed by its CPU per frame for each of the four
 * processes (tx, A, B, rx) and each busy vale-ts thread, and by where the
 * frames went: every frame sent is received or counted in a named drop
 * counter ("unaccounted" is what is not).
 *
 * SIGINT, SIGTERM or an error: the processes it started are killed and its
 * namespaces (with their links) removed before it exits.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ensurePackages } from '../test/fixtures/system-packages.js';
import { startValeTsIn, toolsDir } from '../test/fixtures/vale-ts-netns.js';
import { statCpuTicks } from '../test/fixtures/proc-stat.js';
import { alternation, pairedRatios, parseRepeat, spread, unsteadyNote } from './repeat.js';

const tag = `vb${process.pid % 100000}`;
const ctlJs = path.join(toolsDir, 'vale-ctl-ts.js');
const pktGenJs = path.join(toolsDir, 'pkt-gen-ts.js');
interface End { ns: string; host: string; hostIf: string; inner: string; ip: string; mac: string; under: string }

// Everything this run started, so that a signal or an error stops it all:
// child processes (trafgen, iperf3, pkt-gen-ts), the vale-ts processes and
// the namespaces (deleting one removes the links in it).
const children = new Set<ChildProcess>();

/** --pin: the CPU of each busy process of the netmap-ends rows. */
interface Pin { tx: number; a: number; b: number; rx: number }
let pin: Pin | undefined;
/** `file args` under `taskset -c cpu` when pinning (taskset execs it: the pid is the program's). */
const onCpu = (cpu: number | undefined, file: string, args: string[]): [string, string[]] => (cpu === undefined ? [file, args] : ['taskset', ['-c', String(cpu), file, ...args]]);
const valeTs = new Set<{ proc: ChildProcess; stop: () => Promise<void> }>();
const namespaces: string[] = [];

interface Run { code: number; stdout: string; stderr: string }
function run(file: string, args: readonly string[], opts: { input?: string } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      children.delete(child);
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
    children.add(child);
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}
async function must(file: string, ...args: string[]): Promise<string> {
  const r = await run(file, args);
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}
function spawnTracked(file: string, args: readonly string[]): ChildProcess {
  const c = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(c);
  c.once('exit', () => children.delete(c));
  return c;
}

// Cleanup never waits for a process to go before it removes the namespaces:
// a vale-ts stuck in a syscall (seen once, during a SIGINT to a stuck run)
// would otherwise keep them forever. SIGKILL everything, delete the
// namespaces (their links go with the last process in them), then give the
// vale-ts a few seconds to exit so that their socket files are removed.
let cleaning: Promise<void> | undefined;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const c of children) c.kill('SIGKILL');
    for (const s of valeTs) s.proc.kill('SIGKILL');
    for (const n of namespaces) await run('ip', ['netns', 'del', n]);
    const stops = Promise.all([...valeTs].map((s) => s.stop()));
    await Promise.race([stops, new Promise((r) => setTimeout(r, 3000).unref())]);
  })();
  return cleaning;
}
process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
process.once('SIGTERM', () => void cleanup().then(() => process.exit(143)));

async function rxPackets(e: End): Promise<number> {
  const j = JSON.parse(await must('ip', '-n', e.ns, '-s', '-j', 'link', 'show', e.inner)) as { stats64: { rx: { packets: number } } }[];
  return j[0]!.stats64.rx.packets;
}

async function pps(a: End, b: End, seconds: number): Promise<{ sent: number; rxPps: number; received: number }> {
  const cfg = `{ eth(da=${b.mac}, sa=${a.mac}, type=0x0800), ipv4(saddr=${a.ip}, daddr=${b.ip}, ttl=64), udp(sp=9, dp=9), fill(0x00, 18) }`;
  const before = await rxPackets(b);
  const t0 = process.hrtime.bigint();
  const r = await run('timeout', ['-s', 'INT', String(seconds), 'ip', 'netns', 'exec', a.ns, 'trafgen', '--dev', a.inner, '--conf', '-', '--cpp', '-q', '--no-sock-mem'], { input: cfg });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  // the chain drains for a while after trafgen stops (B's socket buffer, the
  // switches' rings): read once end B has received nothing for 300 ms, so
  // that what is counted received and what the counters read later agree
  let got = (await rxPackets(b)) - before;
  for (let i = 0; i < 50; i++) {
    await new Promise((res) => setTimeout(res, 300));
    const now = (await rxPackets(b)) - before;
    if (now === got) break;
    got = now;
  }
  const m = /(\d+)\s+packets outgoing/.exec(r.stdout + r.stderr);
  return { sent: m ? Number(m[1]) / seconds : NaN, rxPps: got / secs, received: got };
}

async function tcp(a: End, b: End, seconds: number): Promise<number> {
  const srv = spawnTracked('ip', ['netns', 'exec', b.ns, 'iperf3', '-s', '-1', '--forceflush', '-B', b.ip]);
  await new Promise<void>((resolve) => srv.stdout!.on('data', (d: Buffer) => d.toString().includes('listening') && resolve()));
  const r = await run('ip', ['netns', 'exec', a.ns, 'iperf3', '-c', b.ip, '-t', String(seconds), '-J']);
  srv.kill();
  const j = JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } };
  return j.end.sum_received.bits_per_second / 1e9;
}

/**
 * Round trips from end A to end B: `ping -A` (the next echo as soon as the
 * reply is in: one frame in flight, nothing queued), ROUND_TRIPS of them;
 * min, average and max in µs. Informative, no target: what each path adds to a frame's
 * trip when nothing else runs through it.
 */
const ROUND_TRIPS = 2000;
interface Rtt { min: number; avg: number; max: number }
async function rtt(a: End, b: End): Promise<Rtt> {
  const r = await run('ip', ['netns', 'exec', a.ns, 'ping', '-A', '-q', '-c', String(ROUND_TRIPS), '-W', '1', b.ip]);
  const m = /= ([\d.]+)\/([\d.]+)\/([\d.]+)\//.exec(r.stdout);
  if (!m) throw new Error(`ping gave no round-trip line: ${r.stdout}${r.stderr}`);
  return { min: Number(m[1]) * 1000, avg: Number(m[2]) * 1000, max: Number(m[3]) * 1000 };
}

const countOf = (out: string, what: 'Sent' | 'Received'): number => Number(new RegExp(`^${what} (\\d+) packets`, 'm').exec(out)?.[1] ?? 0);

/**
 * pkt-gen-ts tx on vale-ts A's port vale0:nt for `seconds`, pkt-gen-ts rx on
 * vale-ts B's port vale0:nr: 60-byte unicast frames (to a MAC neither switch
 * knows: A floods them to its one other port, the VXLAN port, whose VTEP
 * sends them to its one remote; B floods them to the receiver).
 */
/** CPU seconds (user + system) a process has used: /proc/PID/stat utime and stime. */
async function cpuSeconds(pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  return statCpuTicks(await readFile(`/proc/${pid}/stat`, 'utf8')) / 100; // USER_HZ (100)
}

/** CPU seconds (user + system) of each thread of a process: /proc/PID/task/TID/stat, by "comm tid". */
async function threadCpu(pid: number): Promise<Map<string, number>> {
  const { readdir, readFile } = await import('node:fs/promises');
  const m = new Map<string, number>();
  for (const tid of await readdir(`/proc/${pid}/task`).catch(() => [] as string[])) {
    const st = await readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8').catch(() => '');
    const close = st.lastIndexOf(') ');
    if (close < 0) continue;
    const comm = st.slice(st.indexOf('(') + 1, close);
    m.set(`${comm} ${tid}`, statCpuTicks(st) / 100);
  }
  return m;
}

/** What one netmap-ends row measured: rates, CPU per frame per process and per busy thread, where the frames went. */
interface NetmapRow extends Row { chainUsPerFrame: number; perProcess: string; threads: string; accounting: string }

/** The counters of a switch that the accounting needs (totals over all ports, the VXLAN port and its driver). */
async function snapshot(c: ValeClientLike): Promise<Record<string, number>> {
  const [st] = await c.stats('vale0');
  const vx = st!.ports.find((p) => p.name === 'vale0:vx');
  const r: Record<string, number> = {};
  for (const [k, v] of Object.entries(st!.totals)) r[`total ${k}`] = v;
  for (const [k, v] of Object.entries(st!.switchCounters ?? {})) r[`switch ${k}`] = v;
  // kicks to the other port (the netmap end's client): its doorbell, written by the switch
  const other = st!.ports.find((p) => p.name !== 'vale0:vx') ?? st!.departedPorts?.find((p) => p.name !== 'vale0:vx');
  if (other) r['other kicks'] = other.counters['kicks'] ?? 0;
  for (const [k, v] of Object.entries(vx?.counters ?? {})) r[`vx ${k}`] = v;
  for (const [k, v] of Object.entries(vx?.driver?.counters ?? {})) r[`drv ${k.replace(/^remote \S+ /, 'remote ')}`] = v;
  // the namespace end's port (AF_XDP/AF_PACKET on the host's veth), when attached
  const end = st!.ports.find((p) => p.name !== 'vale0:vx' && p.driver !== undefined);
  for (const [k, v] of Object.entries(end?.driver?.counters ?? {})) r[`end ${k}`] = v;
  return r;
}
type ValeClientLike = Awaited<ReturnType<typeof startValeTsIn>>['client'];

/**
 * The kernel's per-CPU backlog drops (/proc/net/softnet_stat, second column,
 * hex), summed: one counter for the whole kernel, every namespace and every
 * other user of the machine, per packet (a GSO run counts once).
 */
async function softnetDrops(): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  return (await readFile('/proc/net/softnet_stat', 'utf8')).trim().split('\n').reduce((n, l) => n + parseInt(l.split(/\s+/)[1] ?? '0', 16), 0);
}

/**
 * Where the kernel counts drops between A's and B's VXLAN sockets: B's socket
 * (its dropKernelRx), the two underlay veths' rx/tx drops (before and after:
 * host A's end, then host B's) and the softnet backlog (kernel-wide).
 */
function kernelDropSites(
  dropKernelRx: number,
  a: [LinkDrops, LinkDrops],
  b: [LinkDrops, LinkDrops],
  softnet: number,
): { what: string; packets: number }[] {
  return [
    { what: "B's socket (dropKernelRx)", packets: dropKernelRx },
    { what: 'underlay veth host A tx dropped', packets: a[1].txDrop - a[0].txDrop },
    { what: 'underlay veth host A rx dropped', packets: a[1].rxDrop - a[0].rxDrop },
    { what: 'underlay veth host B rx dropped', packets: b[1].rxDrop - b[0].rxDrop },
    { what: 'underlay veth host B tx dropped', packets: b[1].txDrop - b[0].txDrop },
    { what: 'softnet backlog (whole kernel)', packets: softnet },
  ];
}
type LinkDrops = { rxDrop: number; txDrop: number };

/**
 * The frames lost between A's VXLAN socket and B's: A's datagrams to B less
 * B's from A. The kernel counts packets where it drops them (B's socket:
 * dropKernelRx; the underlay veths; the CPU backlog), and a UDP GSO/GRO run
 * of up to 64 datagrams is one packet there, so the frames are the
 * difference, and they are accounted for when the kernel counted between
 * 1 and 64 frames per packet it says it dropped (otherwise unaccounted).
 */
function betweenSockets(frames: number, kernel: { what: string; packets: number }[]): { accounted: number; text: string } {
  const packets = kernel.reduce((n, k) => n + k.packets, 0);
  const where = kernel.filter((k) => k.packets > 0).map((k) => `${k.what} ${k.packets}`).join(', ') || 'none';
  const ok = frames > 0 && packets > 0 && frames >= packets && frames <= 64 * packets;
  return { accounted: ok ? frames : 0, text: frames === 0 ? '' : `between the VXLAN sockets ${frames} frames (A's datagrams to B less B's from A), packets the kernel counted dropped: ${where}${ok ? '' : ' (does not account for them)'}` };
}

/** The UDP counters of a host namespace's /proc/net/snmp, by name. */
async function udpSnap(e: End): Promise<Map<string, number>> {
  const lines = (await must('ip', 'netns', 'exec', e.host, 'cat', '/proc/net/snmp')).split('\n').filter((l) => l.startsWith('Udp:'));
  const names = lines[0]!.split(/\s+/).slice(1), vals = lines[1]!.split(/\s+/).slice(1).map(Number);
  return new Map(names.map((n, i) => [n, vals[i]!]));
}

async function netmapPps(sockA: string, sockB: string, seconds: number, sw: Awaited<ReturnType<typeof startValeTsIn>>[], hosts: End[]): Promise<NetmapRow> {
  const pids = sw.map((s) => s.proc.pid!);
  // stopped by the bench once B has delivered nothing more for 300 ms (not
  // -W: at load 15 a one-second gap stopped it while tx still sent)
  const rx = spawnTracked(...onCpu(pin?.rx, process.execPath, [pktGenJs, '--socket', sockB, '-i', 'vale0:nr', '-f', 'rx']));
  let rxOut = '';
  rx.stdout!.on('data', (d: Buffer) => (rxOut += d));
  const rxDone = new Promise<void>((r) => rx.once('close', () => r()));
  await new Promise<void>((resolve) => {
    let err = '';
    rx.stderr!.on('data', (d: Buffer) => {
      err += d;
      if (/reading from/.test(err)) resolve();
    });
    rx.once('close', () => resolve());
  });
  const snap0 = await Promise.all(sw.map((s) => snapshot(s.client)));
  const udp0 = await Promise.all(hosts.map(udpSnap));
  const under0 = await Promise.all(hosts.map((e, i) => linkStats(e.host, `${tag}u${i}`)));
  const softnet0 = await softnetDrops();
  const cpu0 = await Promise.all([...pids, rx.pid!].map(cpuSeconds));
  const thr0 = await Promise.all(pids.map(threadCpu));
  const t0 = process.hrtime.bigint();
  // spawned directly (not under timeout(1)) so that its CPU time can be read before it ends
  const tx = spawnTracked(...onCpu(pin?.tx, process.execPath, [pktGenJs, '--socket', sockA, '-i', 'vale0:nt', '-f', 'tx', '-n', '0', '-l', '60', '-S', '02:00:00:78:00:01', '-D', '02:00:00:78:00:02']));
  let txOut = '', txErr = '';
  tx.stdout!.on('data', (d: Buffer) => (txOut += d));
  tx.stderr!.on('data', (d: Buffer) => (txErr += d));
  const txDone = new Promise<void>((r) => tx.once('close', () => r()));
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const txCpu = await cpuSeconds(tx.pid!).catch(() => NaN);
  const cpu1 = await Promise.all(pids.map(cpuSeconds));
  const thr1 = await Promise.all(pids.map(threadCpu));
  tx.kill('SIGINT');
  await txDone;
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  // the chain drains (A's ring, the ring or B's socket, B's ring): wait until
  // B's switch has delivered nothing more to rx's port for 300 ms
  const deliveredToRx = async (): Promise<number> => {
    const [st] = await sw[1]!.client.stats('vale0');
    return st!.ports.find((p) => p.name === 'vale0:nr')?.counters['txFrames'] ?? -1;
  };
  for (let last = await deliveredToRx(), i = 0; i < 50; i++) {
    await new Promise((r) => setTimeout(r, 300));
    const now = await deliveredToRx();
    if (now === last) break;
    last = now;
  }
  const rxCpu = await cpuSeconds(rx.pid!).catch(() => NaN);
  rx.kill('SIGINT');
  await rxDone;
  const sent = countOf(txOut, 'Sent'), received = countOf(rxOut, 'Received');
  if (!sent) throw new Error(`pkt-gen-ts tx sent nothing:\n${txOut}\n${txErr}`);
  const snap1 = await Promise.all(sw.map((s) => snapshot(s.client)));
  const udp1 = await Promise.all(hosts.map(udpSnap));
  const under1 = await Promise.all(hosts.map((e, i) => linkStats(e.host, `${tag}u${i}`)));
  const softnet1 = await softnetDrops();
  const d = (i: number, k: string): number => (snap1[i]![k] ?? 0) - (snap0[i]![k] ?? 0);
  const us = (c: number): string => (received ? ((c * 1e6) / received).toFixed(2) : 'NaN');
  const cpuA = cpu1[0]! - cpu0[0]!, cpuB = cpu1[1]! - cpu0[1]!;
  const perProcess = `CPU µs per frame received: tx ${us(txCpu)}, vale-ts A ${us(cpuA)}, vale-ts B ${us(cpuB)}, rx ${us(rxCpu - cpu0[2]!)}`;
  const threads = [0, 1].map((i) => {
    const busy = [...thr1[i]!].map(([k, v]) => [k, v - (thr0[i]!.get(k) ?? 0)] as const).filter(([, v]) => v > 0.02).sort((x, y) => y[1] - x[1]);
    // the switch forwards on dp:vale0 (vale-ts's default datapath thread; the main thread, tid = pid, with --datapath loop); the others are port drivers and Node's own
    return `vale-ts ${'AB'[i]}: ${busy.map(([k, v]) => `${k.endsWith(` ${pids[i]}`) ? 'main' : k} ${us(v)}`).join(', ')}`;
  }).join('; ');
  // every frame sent is received or counted under a named drop: A's switch
  // hands it to the VXLAN port or drops it (dropNoSpace: the port's rx ring
  // full, its driver behind; dropClosed: left in pkt-gen-ts's tx ring when it
  // was stopped); A's driver puts it in the ring or a datagram (or counts a
  // drop); B's driver takes it from the ring or the socket; B's switch
  // delivers it to the receiver or drops it (dropNoSpace: the receiver
  // behind). With VXLAN, datagrams the kernel dropped are in the UDP counters.
  const ring = d(0, 'drv remote shortcutTxFrames'), ringIn = d(1, 'drv remote shortcutRxFrames');
  // every named drop counter of both switches (all ports) and both drivers that moved
  const drops: string[] = [];
  let dropped = 0;
  // (dropKernelRx is the kernel's, in packets: below, with the frames it stands for)
  for (const i of [0, 1])
    for (const k of Object.keys(snap1[i]!))
      if (/^(total|drv) drop/.test(k) && k !== 'drv dropKernelRx' && d(i, k) > 0) {
        drops.push(`${'AB'[i]} ${k.replace(/^total /, 'switch ').replace(/^drv /, 'driver ')} ${d(i, k)}`);
        dropped += d(i, k);
      }
  // VXLAN: frames the kernel dropped between the two sockets, by the packets it counted
  const between = betweenSockets(
    d(0, 'drv remote txFrames') - d(1, 'drv remote rxFrames'),
    kernelDropSites(d(1, 'drv dropKernelRx'), [under0[0]!, under1[0]!], [under0[1]!, under1[1]!], softnet1 - softnet0),
  );
  if (between.accounted) {
    drops.push(`kernel between the VXLAN sockets ${between.accounted}`);
    dropped += between.accounted;
  }
  const udpErr = (['SndbufErrors', 'RcvbufErrors'] as const).map((k, i) => `host ${'AB'[i]} ${k} ${udp1[i]!.get(k)! - udp0[i]!.get(k)!}`).join(', ');
  const accounting = `sent ${sent} = received ${received} + dropped ${dropped} (${drops.join(', ') || 'none'}) + unaccounted ${sent - received - dropped}; ` +
    (between.text ? `${between.text}; kernel Udp (per packet, the whole namespace): ${udpErr}; ` : '') +
    `A's switch to its VXLAN port ${d(0, 'vx txFrames')}; A's driver out ${d(0, 'drv outFrames')} (ring ${ring}, of which straight from the senders' buffers ${d(0, 'drv shortcutTxDirect')}, datagrams ${d(0, 'drv remote txFrames')}); ` +
    `B's driver in ${d(1, 'drv inFrames')} (ring ${ringIn}, datagrams ${d(1, 'drv remote rxFrames')}); ` +
    `ring: ${d(0, 'drv shortcutTxBatches')} batches in, ${d(1, 'drv shortcutRxBatches')} out, ` +
    `full ${d(0, 'drv shortcutRingFull')}, kicks ${d(0, 'drv shortcutKicks')} A->B ${d(1, 'drv shortcutKicks')} B->A, ` +
    `1 ms waits ${d(0, 'drv shortcutFullTimeouts')} (with room: kick late ${d(0, 'drv shortcutFullTimeoutsRoom')}), driver wakeups A ${d(0, 'drv wakeups')} B ${d(1, 'drv wakeups')}`;
  // the switch passes' rhythm: frames per wakeup of each switch, and its
  // eventfd writes to the VXLAN port's thread and to the netmap end's client
  // per 1000 frames (each a syscall and a wakeup, on the switch's thread)
  const perK = (n: number): string => (received ? ((n * 1000) / received).toFixed(2) : 'NaN');
  const rhythm = [0, 1].map((i) => `switch ${'AB'[i]}: ${d(i, 'switch wakeups') ? (received / d(i, 'switch wakeups')).toFixed(0) : 'NaN'} frames per wakeup, kicks per 1000 frames to the VXLAN port ${perK(d(i, 'vx kicks'))}, to the ${i ? 'rx' : 'tx'} client ${perK(d(i, 'other kicks'))}`).join('; ');
  // the whole chain (both ends too): on an idle machine the row cannot pass
  // (CPUs / this) frames per second, whatever it waits on
  const chainUsPerFrame = received ? ((txCpu + cpuA + cpuB + rxCpu - cpu0[2]!) * 1e6) / received : NaN;
  return { sent: sent / secs, rxPps: received / secs, cpuUsPerFrame: received ? ((cpuA + cpuB) * 1e6) / received : NaN, chainUsPerFrame, perProcess, threads: `${threads}\n    rounds: ${rhythm}`, accounting };
}

/** A veth end's packet and drop counters (`ip -s -j link`). */
async function linkStats(ns: string, ifname: string): Promise<{ rx: number; tx: number; rxDrop: number; txDrop: number }> {
  const j = JSON.parse(await must('ip', '-n', ns, '-s', '-j', 'link', 'show', ifname)) as { stats64: { rx: { packets: number; dropped: number }; tx: { packets: number; dropped: number } } }[];
  const st = j[0]!.stats64;
  return { rx: st.rx.packets, tx: st.tx.packets, rxDrop: st.rx.dropped, txDrop: st.tx.dropped };
}

/** What one namespace-ends row measured besides the rates: CPU per frame of each vale-ts and its busy threads, where the frames went. */
interface NamespaceDetail { perProcess: string; threads: string; accounting: string }

/**
 * The namespace-ends 60 B row (trafgen in end A to end B's interface) with
 * the same accounting as the netmap rows: every frame trafgen sent is
 * received at end B or counted in a named drop counter on its way, the
 * veths' own drop counters (both pairs), the kernel's AF_XDP/AF_PACKET ring
 * drops at A's port (`end drop_kernel_*`), every `drop*` of both switches
 * and both VXLAN drivers, and the hosts' UDP buffer errors.
 */
async function namespacePps(a: End, b: End, seconds: number, sw: Awaited<ReturnType<typeof startValeTsIn>>[], hosts: End[]): Promise<Row & NamespaceDetail> {
  const pids = sw.map((s) => s.proc.pid!);
  const links = [[a.ns, a.inner], [a.host, a.hostIf], [b.host, b.hostIf], [b.ns, b.inner], [a.host, `${tag}u0`], [b.host, `${tag}u1`]] as const;
  const snap0 = await Promise.all(sw.map((s) => snapshot(s.client)));
  const udp0 = await Promise.all(hosts.map(udpSnap));
  const link0 = await Promise.all(links.map(([n, i]) => linkStats(n, i)));
  const softnet0 = await softnetDrops();
  const cpu0 = await Promise.all(pids.map(cpuSeconds));
  const thr0 = await Promise.all(pids.map(threadCpu));
  const r = await pps(a, b, seconds);
  const cpu1 = await Promise.all(pids.map(cpuSeconds));
  const thr1 = await Promise.all(pids.map(threadCpu));
  const snap1 = await Promise.all(sw.map((s) => snapshot(s.client)));
  const udp1 = await Promise.all(hosts.map(udpSnap));
  const link1 = await Promise.all(links.map(([n, i]) => linkStats(n, i)));
  const softnet1 = await softnetDrops();
  const sent = Math.round(r.sent * seconds), received = Math.round(r.received);
  const d = (i: number, k: string): number => (snap1[i]![k] ?? 0) - (snap0[i]![k] ?? 0);
  const us = (c: number): string => (received ? ((c * 1e6) / received).toFixed(2) : 'NaN');
  const cpuA = cpu1[0]! - cpu0[0]!, cpuB = cpu1[1]! - cpu0[1]!;
  const perProcess = `CPU µs per frame received: vale-ts A ${us(cpuA)}, vale-ts B ${us(cpuB)}`;
  const threads = [0, 1].map((i) => {
    const busy = [...thr1[i]!].map(([k, v]) => [k, v - (thr0[i]!.get(k) ?? 0)] as const).filter(([, v]) => v > 0.02).sort((x, y) => y[1] - x[1]);
    return `vale-ts ${'AB'[i]}: ${busy.map(([k, v]) => `${k.endsWith(` ${pids[i]}`) ? 'main' : k} ${us(v)}`).join(', ')}`;
  }).join('; ');
  const drops: string[] = [];
  let dropped = 0;
  const add = (what: string, n: number): void => {
    if (n > 0) {
      drops.push(`${what} ${n}`);
      dropped += n;
    }
  };
  const names = ['end A', 'host A', 'host B', 'end B'];
  for (const i of [0, 1, 2, 3]) {
    add(`veth ${names[i]} rx dropped`, link1[i]!.rxDrop - link0[i]!.rxDrop);
    add(`veth ${names[i]} tx dropped`, link1[i]!.txDrop - link0[i]!.txDrop);
  }
  // AF_XDP on a veth: a frame its XDP ring had no room for is counted by
  // the veth too (rx dropped, the XDP redirect failed): shown, not added twice
  const xdpRing = d(0, 'end drop_kernel_rx');
  for (const i of [0, 1])
    for (const k of Object.keys(snap1[i]!))
      if (/^(total|drv|end) drop/.test(k) && k !== 'end drop_kernel_rx' && k !== 'drv dropKernelRx') add(`${'AB'[i]} ${k.replace(/^total /, 'switch ').replace(/^drv /, 'vxlan driver ').replace(/^end /, 'end port ')}`, d(i, k));
  // the underlay's packets (VXLAN datagrams, GSO runs) and the frames they held: by the datagram counts
  const between = betweenSockets(
    d(0, 'drv remote txFrames') - d(1, 'drv remote rxFrames'),
    kernelDropSites(d(1, 'drv dropKernelRx'), [link0[4]!, link1[4]!], [link0[5]!, link1[5]!], softnet1 - softnet0),
  );
  add('kernel between the VXLAN sockets', between.accounted);
  const udpErr = (['SndbufErrors', 'RcvbufErrors'] as const).map((k, i) => `host ${'AB'[i]} ${k} ${udp1[i]!.get(k)! - udp0[i]!.get(k)!}`).join(', ');
  const accounting = `sent ${sent} = received ${received} + dropped ${dropped} (${drops.join(', ') || 'none'}) + unaccounted ${sent - received - dropped}; ` +
    (between.text ? `${between.text}; kernel Udp (per packet, the whole namespace): ${udpErr}; ` : '') +
    `A's end port's XDP ring full ${xdpRing} (in the veth's rx dropped); into A's switch ${d(0, 'end rx_frames')} (veth host A rx ${link1[1]!.rx - link0[1]!.rx}); A's switch to its VXLAN port ${d(0, 'vx txFrames')}; ` +
    `A's driver out ${d(0, 'drv outFrames')} (ring ${d(0, 'drv remote shortcutTxFrames')}); B's driver in ${d(1, 'drv inFrames')}; B's end port out ${d(1, 'end tx_frames')}; ` +
    `ring: full ${d(0, 'drv shortcutRingFull')}, 1 ms waits ${d(0, 'drv shortcutFullTimeouts')} (with room ${d(0, 'drv shortcutFullTimeoutsRoom')}); ` +
    `wakeups: A end port ${d(0, 'end wakeups')}, A driver ${d(0, 'drv wakeups')}, B driver ${d(1, 'drv wakeups')}, B end port ${d(1, 'end wakeups')} (tx kicks ${d(1, 'end tx_kicks')})`;
  return { sent: r.sent, rxPps: r.rxPps, cpuUsPerFrame: received ? ((cpuA + cpuB) * 1e6) / received : NaN, perProcess, threads, accounting };
}

async function stats(e: End): Promise<string> {
  return must('ip', 'netns', 'exec', e.host, process.execPath, ctlJs, '--socket', path.join(os.tmpdir(), `${tag}-${e.host}.sock`), '--stats');
}

/** The UDP counters of a host namespace's /proc/net/snmp that say where datagrams went, since the last call for it. */
const udpLast = new Map<string, Map<string, number>>();
async function udpDrops(e: End): Promise<string> {
  const lines = (await must('ip', 'netns', 'exec', e.host, 'cat', '/proc/net/snmp')).split('\n').filter((l) => l.startsWith('Udp:'));
  const names = lines[0]!.split(/\s+/).slice(1), vals = lines[1]!.split(/\s+/).slice(1).map(Number);
  const now = new Map(names.map((n, i) => [n, vals[i]!]));
  const last = udpLast.get(e.host);
  udpLast.set(e.host, now);
  return ['InDatagrams', 'RcvbufErrors', 'InErrors', 'NoPorts', 'OutDatagrams', 'SndbufErrors'].map((n) => `${n} ${now.get(n)! - (last?.get(n) ?? 0)}`).join(', ');
}

const t0 = Date.now();
const step = (what: string): void => console.error(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${what}`);

interface Row { rxPps: number; sent: number; gbps?: number; cpuUsPerFrame?: number; rttUs?: Rtt }

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: 'string' }, 'only-netmap': { type: 'boolean' }, 'only-shortcut': { type: 'boolean' }, 'only-namespace': { type: 'boolean' }, pin: { type: 'boolean' }, repeat: { type: 'string' } } });
  const repeats = values.repeat === undefined ? 0 : parseRepeat(values.repeat, 5);
  if (values.pin) pin = os.cpus().length >= 4 ? { tx: 0, a: 1, b: 2, rx: 3 } : { tx: 0, a: 0, b: 1, rx: 1 };
  const seconds = Number(values.seconds ?? 5);
  const onlyShortcut = values['only-shortcut'] ?? false;
  const onlyNetmap = (values['only-netmap'] ?? false) || onlyShortcut || repeats > 0;
  const onlyNamespace = (values['only-namespace'] ?? false) && !onlyNetmap;
  // per row, its last run's detail (a row runs --repeat times)
  const detail = new Map<string, string>();
  ensurePackages(['iproute2', 'netsniff-ng', 'iperf3']);
  const ends: End[] = [0, 1].map((i) => ({
    ns: `${tag}e${i}`, host: `${tag}h${i}`, hostIf: `${tag}p${i}`, inner: `${tag}i${i}`,
    ip: `192.168.77.${i + 1}`, mac: `02:00:00:77:00:0${i + 1}`, under: `10.77.0.${i + 1}`,
  }));
  const res: Record<string, Row> = {};
  for (const e of ends) {
    for (const n of [e.ns, e.host]) {
      namespaces.push(n);
      await must('ip', 'netns', 'add', n);
      await must('ip', '-n', n, 'link', 'set', 'lo', 'up');
    }
  }
  await must('ip', 'link', 'add', `${tag}u0`, 'netns', ends[0]!.host, 'type', 'veth', 'peer', 'name', `${tag}u1`, 'netns', ends[1]!.host);
  for (const [i, e] of ends.entries()) {
    await must('ip', '-n', e.host, 'addr', 'add', `${e.under}/24`, 'dev', `${tag}u${i}`);
    await must('ip', '-n', e.host, 'link', 'set', `${tag}u${i}`, 'up');
    await must('ip', 'link', 'add', e.inner, 'netns', e.ns, 'address', e.mac, 'mtu', '1450', 'type', 'veth', 'peer', 'name', e.hostIf, 'netns', e.host);
    await must('ip', '-n', e.ns, 'addr', 'add', `${e.ip}/24`, 'dev', e.inner);
    await must('ip', '-n', e.ns, 'link', 'set', e.inner, 'up');
    await must('ip', '-n', e.host, 'link', 'set', e.hostIf, 'mtu', '1450', 'up');
    // Linux's vxlan leaves inner checksums to the NIC; a veth underlay has none (see docs/vxlan.md)
    await must('ip', 'netns', 'exec', e.host, 'ethtool', '-K', `${tag}u${i}`, 'tx', 'off');
  }
  const [a, b] = ends as [End, End];
  if (!onlyNetmap && !onlyNamespace) {
    // Linux: bridge + vxlan in each host namespace
    for (const [i, e] of ends.entries()) {
      const other = ends[1 - i]!;
      await must('ip', '-n', e.host, 'link', 'add', 'vx42', 'type', 'vxlan', 'id', '42', 'dstport', '4789', 'local', e.under, 'remote', other.under);
      await must('ip', '-n', e.host, 'link', 'add', 'br0', 'type', 'bridge');
      for (const d of ['vx42', e.hostIf]) await must('ip', '-n', e.host, 'link', 'set', d, 'master', 'br0', 'up');
      await must('ip', '-n', e.host, 'link', 'set', 'br0', 'up');
    }
    await must('ip', 'netns', 'exec', a.ns, 'ping', '-c', '2', '-i', '0.2', b.ip);
    step('linux vxlan: ping -A');
    const lr = await rtt(a, b);
    step('linux vxlan: trafgen');
    const lp = await pps(a, b, seconds);
    step('linux vxlan: iperf3');
    res['linux vxlan'] = { ...lp, gbps: await tcp(a, b, seconds), rttUs: lr };
    for (const e of ends) {
      await must('ip', '-n', e.host, 'link', 'del', 'br0');
      await must('ip', '-n', e.host, 'link', 'del', 'vx42');
    }
  }
  // vale-ts computes inner checksums itself; checksum offload back on the
  // underlay, as a veth has it by default (UDP GSO needs it: the kernel
  // refuses a GSO send on a route without it, and the VTEP then sends one by one)
  for (const [i, e] of ends.entries()) await must('ip', 'netns', 'exec', e.host, 'ethtool', '-K', `${tag}u${i}`, 'tx', 'on');
  // vale-ts: one process per host namespace, VXLAN only, then with the shortcut
  // gso=off first, netmap ends only: the same run's before/after of UDP GSO
  type Config = { readonly shortcut: 'on' | 'off'; readonly gso: 'on' | 'off' };
  const configs: readonly Config[] = [{ shortcut: 'off', gso: 'off' }, { shortcut: 'off', gso: 'on' }, { shortcut: 'on', gso: 'on' }];
  // --repeat: the two rows of the ratio, alternated; the received pps of each run, by row
  const order: { repeat: number; variant: Config }[] = repeats > 0 ? alternation(configs.slice(1), repeats) : configs.map((variant) => ({ repeat: 0, variant }));
  const repeated: Record<string, number[]> = {};
  for (const { shortcut, gso } of order.map((o) => o.variant)) {
    if (onlyShortcut && shortcut === 'off') continue;
    if (onlyNamespace && gso === 'off') continue;
    const name = shortcut === 'on' ? 'vale-ts shortcut' : gso === 'off' ? 'vale-ts vxlan gso=off' : 'vale-ts vxlan';
    step(`${name}: start`);
    const socks = ends.map((e) => path.join(os.tmpdir(), `${tag}-${e.host}.sock`));
    const sw = await Promise.all(ends.map(async (e, i) => {
      const s = await startValeTsIn(e.host, socks[i]!);
      valeTs.add(s);
      // every thread it has (threads made later inherit it)
      if (pin) await must('taskset', '-a', '-p', '-c', String(i === 0 ? pin.a : pin.b), String(s.proc.pid));
      return s;
    }));
    const remoteCtr = async (i: number, what: string): Promise<number | undefined> => {
      const [st] = await sw[i]!.client.stats('vale0');
      return st!.ports.find((p) => p.name === 'vale0:vx')?.driver?.counters[`remote ${ends[1 - i]!.under} ${what}`];
    };
    try {
      for (const [i, e] of ends.entries()) {
        await must('ip', 'netns', 'exec', e.host, process.execPath, ctlJs, '--socket', socks[i]!, '-n', 'vale0:vx', '--vxlan', `vni=42,local=${e.under},remote=${ends[1 - i]!.under},shortcut=${shortcut},gso=${gso}`);
      }
      // netmap ends first, before the veths are attached (so nothing else floods)
      if (shortcut === 'on' && !onlyNamespace) {
        // A -> B through the ring: a short burst, until A's frames to B go there
        while ((await remoteCtr(0, 'shortcut')) !== 2)
          await must(process.execPath, pktGenJs, '--socket', socks[0]!, '-i', 'vale0:nt', '-f', 'tx', '-n', '1000', '-R', '10000', '-S', '02:00:00:78:00:01', '-D', '02:00:00:78:00:02');
      }
      for (const e of ends) await udpDrops(e);
      if (!onlyNamespace) {
        step(`${name}, netmap ends: pkt-gen-ts`);
        const nr = await netmapPps(socks[0]!, socks[1]!, seconds, sw, ends);
        res[`${name}, netmap ends`] = nr;
        (repeated[name] ??= []).push(nr.rxPps);
        detail.set(`${name}, netmap ends`, `  ${name}, netmap ends:\n    ${nr.perProcess}\n    by thread (µs/frame): ${nr.threads}\n    frames: ${nr.accounting}`);
        console.error(`UDP in host A: ${await udpDrops(a)}\nUDP in host B: ${await udpDrops(b)}`);
        console.error(`--- vale-ts A (sender)\n${await stats(a)}\n--- vale-ts B (receiver)\n${await stats(b)}`);
      }
      if (!onlyNetmap && gso === 'on') {
        for (const [i, e] of ends.entries()) await must('ip', 'netns', 'exec', e.host, process.execPath, ctlJs, '--socket', socks[i]!, '-a', `vale0:${e.hostIf}`);
        await must('ip', 'netns', 'exec', a.ns, 'ping', '-c', '2', '-i', '0.2', b.ip);
        if (shortcut === 'on') {
          // up both ways: each VTEP's frames to the other go through the ring
          while (!(await Promise.all([0, 1].map(async (i) => (await remoteCtr(i, 'shortcut')) === 2))).every(Boolean))
            await must('ip', 'netns', 'exec', a.ns, 'ping', '-c', '1', '-W', '1', b.ip);
        }
        step(`${name}: ping -A`);
        const vr = await rtt(a, b);
        step(`${name}: trafgen`);
        const vp = await namespacePps(a, b, seconds, sw, ends);
        detail.set(`${name} (namespace ends)`, `  ${name} (namespace ends):\n    ${vp.perProcess}\n    by thread (µs/frame): ${vp.threads}\n    frames: ${vp.accounting}`);
        console.error(`UDP in host A: ${await udpDrops(a)}\nUDP in host B: ${await udpDrops(b)}`);
        console.error(`--- vale-ts A (sender)\n${await stats(a)}\n--- vale-ts B (receiver)\n${await stats(b)}`);
        step(`${name}: iperf3`);
        res[name] = { sent: vp.sent, rxPps: vp.rxPps, cpuUsPerFrame: vp.cpuUsPerFrame, gbps: await tcp(a, b, seconds), rttUs: vr };
      }
    } finally {
      for (const s of sw) {
        await s.stop();
        valeTs.delete(s);
      }
    }
  }
  console.log(`vxlan benchmark: 2 namespaces, 2 hosts (namespaces), veth underlay, ${seconds} s per figure; load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}${pin ? `; pinned (netmap ends): tx CPU ${pin.tx}, vale-ts A ${pin.a}, vale-ts B ${pin.b}, rx ${pin.rx}` : ''}`);
  for (const [k, v] of Object.entries(res))
    console.log(`  ${k.padEnd(29)} 60 B: sent ${(v.sent / 1e3).toFixed(0).padStart(6)} kpps, received ${(v.rxPps / 1e3).toFixed(0).padStart(6)} kpps${v.gbps === undefined ? '' : `   TCP ${v.gbps.toFixed(2)} Gbit/s`}${v.cpuUsPerFrame === undefined ? '' : `   both vale-ts ${v.cpuUsPerFrame.toFixed(2)} CPU µs/frame received`}`);
  const l = res['linux vxlan'], v = res['vale-ts vxlan'], sc = res['vale-ts shortcut'];
  if (l && v) console.log(`  ratio vale-ts / linux (namespace ends): 60 B pps ${(v.rxPps / l.rxPps).toFixed(2)} (target 1.0)   TCP ${(v.gbps! / l.gbps!).toFixed(2)}`);
  if (v && sc) console.log(`  ratio shortcut / vale-ts vxlan (namespace ends, bounded by the veth ends): 60 B pps ${(sc.rxPps / v.rxPps).toFixed(2)}   TCP ${(sc.gbps! / v.gbps!).toFixed(2)}`);
  const rtts = Object.entries(res).filter(([, r]) => r.rttUs !== undefined);
  if (rtts.length) {
    const base = l?.rttUs;
    console.log(`  round trip, namespace ends (ping -A, ${ROUND_TRIPS}): ${rtts.map(([k, r]) => `${k} avg ${r.rttUs!.avg.toFixed(0)} µs${base && r !== l ? ` (${(r.rttUs!.avg / base.avg).toFixed(2)}x linux)` : ''} min ${r.rttUs!.min.toFixed(0)} max ${r.rttUs!.max.toFixed(0)}`).join('; ')}`);
  }
  const nv = res['vale-ts vxlan, netmap ends'] as NetmapRow | undefined, ns = res['vale-ts shortcut, netmap ends'] as NetmapRow | undefined;
  const ng = res['vale-ts vxlan gso=off, netmap ends'];
  if (nv && ns) console.log(`  ratio shortcut / vale-ts vxlan (netmap ends: the path between the two switches): 60 B pps ${(ns.rxPps / nv.rxPps).toFixed(2)} (target 5.0)   CPU/frame ${(nv.cpuUsPerFrame! / ns.cpuUsPerFrame!).toFixed(2)}x less`);
  if (nv && ns) {
    // what the same rows would reach if nothing but CPU bounded them (the load-insensitive figure)
    const cpus = os.cpus().length, ceil = (r: NetmapRow): string => `${r.chainUsPerFrame.toFixed(2)} µs/frame (${(cpus / r.chainUsPerFrame).toFixed(2)} Mpps)`;
    console.log(`  CPU ceiling, whole chain (tx + vale-ts A + vale-ts B + rx, netmap ends, ${cpus} CPUs): vale-ts vxlan ${ceil(nv)}, shortcut ${ceil(ns)}, ratio ${(nv.chainUsPerFrame / ns.chainUsPerFrame).toFixed(2)}`);
  }
  if (nv && ng) console.log(`  UDP GSO (netmap ends, vale-ts vxlan gso=on / gso=off): 60 B pps ${(nv.rxPps / ng.rxPps).toFixed(2)}   CPU/frame ${(ng.cpuUsPerFrame! / nv.cpuUsPerFrame!).toFixed(2)}x less`);
  const rv = repeated['vale-ts vxlan'], rs = repeated['vale-ts shortcut'];
  if (repeats > 0 && rv && rs) {
    // (the last run of each row is the one printed above, with its detail)
    const ratios = pairedRatios(rs, rv), r = spread(ratios), sv = spread(rv), ss = spread(rs);
    console.log(`  --repeat ${repeats}, alternated (received kpps at 60 B, netmap ends): vale-ts vxlan ${rv.map((x) => (x / 1e3).toFixed(0)).join(' ')}; shortcut ${rs.map((x) => (x / 1e3).toFixed(0)).join(' ')}`);
    console.log(`  ratio shortcut / vale-ts vxlan per pair: ${ratios.map((x) => x.toFixed(2)).join(' ')}; median ${r.median.toFixed(2)} (min ${r.min.toFixed(2)}, max ${r.max.toFixed(2)}; target 5.0)`);
    const note = unsteadyNote([sv, ss]);
    if (note) console.log(note);
  }
  for (const l of detail.values()) console.log(l);
}

try {
  await main();
} catch (e) {
  console.error(e);
  process.exitCode = 1;
} finally {
  await cleanup();
}
