/**
 * Two network namespaces joined through vale-ts (their veth host ends
 * attached with `vale-ctl-ts -a --backend afxdp`, then `--backend packet`) versus through a Linux
 * bridge, in the same run (issue 12): 60-byte frames per second sent by
 * trafgen (netsniff-ng) and counted on the receiving veth, and TCP
 * throughput by iperf3. vale-ts runs as its own process (tools/vale-ts.js).
 * The 60 B figure is taken twice, with the same receiver for every row: into
 * a sink that counts and drops the frames at the receiving veth's ingress
 * (the target's figure: what the switch delivers), then into the receiving
 * namespace's IP stack (UDP to a closed port: the figure before session 9).
 *
 *   node dist/bench/linux-if.bench.js [--seconds 5] [--backends afxdp,afxdp-thread,packet,packet-thread,packet-v23,packet-v3] [--datapath loop|thread] [--tcp-only] [--repeat 5]
 *
 * `--repeat R` (default 5; 1: none): after the rows, the judged pair (the
 * bridge and `vale-ctl-ts -a`'s default) runs R more times, alternated
 * (bridge, vale-ts, vale-ts, bridge, ...), each run its 60 B flood into the
 * sink and its TCP transfer; the verdicts are on the medians of the paired
 * ratios. One run swings by more than the margin the 60 B target leaves on
 * a 2-vCPU machine (1.31-1.57 in six quiet runs, session 23).
 *
 * `packet` is AF_PACKET with its default TPACKET_V2 receive ring: what
 * `vale-ctl-ts -a` gives a veth (its `auto` takes AF_XDP only in zero-copy
 * mode, which a veth lacks), so `packet`'s row is the default's; `afxdp` is
 * `--backend afxdp`, copy mode on a veth. `packet-v3`
 * the same with a TPACKET_V3 ring (vale-ts started with VALE_TS_TPACKET_RX=3),
 * `packet-v23` the V2 ring with a V3 overflow ring (VALE_TS_TPACKET_RX=2+3).
 * A row without a suffix is what `vale-ctl-ts -a` gives: the ports'
 * datapath in the switch's rounds (in-line, the default since session 12).
 * A `-thread` suffix (afxdp-thread, packet-thread): a driver thread per port
 * (vale-ts started with VALE_TS_LINUX_IF_INLINE=0); `-inline` asks for
 * in-line explicitly (VALE_TS_LINUX_IF_INLINE=1). `--tcp-only`: the ping and
 * TCP figures only (their A/B runs), no 60 B figures.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startSwitch } from './lib.js';
import { ensurePackages } from '../test/fixtures/system-packages.js';
import { alternation, pairedRatios, parseRepeat, spread, unsteadyNote } from './repeat.js';
import { makeNamespaces, must, run, type NsEnd } from '../test/fixtures/linux-if-netns.js';
import { statCpuTicks } from '../test/fixtures/proc-stat.js';

/** clock ticks per second, the unit of /proc/PID/stat's times */
const clockTicks = Number((await run('getconf', ['CLK_TCK'])).stdout.trim()) || 100;

const ctlJs = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'tools', 'vale-ctl-ts.js');

async function rxPackets(e: NsEnd): Promise<number> {
  const j = JSON.parse(await must('ip', '-n', e.ns, '-s', '-j', 'link', 'show', e.inner)) as { stats64: { rx: { packets: number } } }[];
  return j[0]!.stats64.rx.packets;
}

/** CPU seconds (user + system, softirq work done in its context included) of a process and its threads so far. */
async function cpuSeconds(pid: number): Promise<number> {
  const r = await run('cat', [`/proc/${pid}/stat`]);
  return r.stdout ? statCpuTicks(r.stdout) / clockTicks : NaN;
}

/** Each thread's CPU seconds so far (schedstat's run time: softirq work done on its time included), by thread name and id. */
async function threadSeconds(pid: number): Promise<Map<string, number>> {
  const r = await run('bash', ['-c', `cd /proc/${pid}/task && for t in *; do echo "$t $(cat $t/comm) $(cut -d' ' -f1 $t/schedstat)"; done`]);
  const m = new Map<string, number>();
  for (const l of r.stdout.split('\n')) {
    const f = /^(\d+) (.*) (\d+)$/.exec(l);
    if (f) m.set(`${f[2]}/${f[1]}`, Number(f[3]) / 1e9);
  }
  return m;
}

/**
 * vale-ts's CPU µs per received frame by thread, the busiest first: the
 * driver threads are named afp:IFNAME / xdp:IFNAME, the switch runs on the
 * datapath thread dp:vale0, or on the main thread (node) with --datapath loop.
 */
function byThread(t0: Map<string, number>, t1: Map<string, number>, frames: number): string {
  const d = [...t1].map(([k, v]) => [k.replace(/\/\d+$/, ''), ((v - (t0.get(k) ?? 0)) / frames) * 1e6] as const).filter(([, us]) => us >= 0.05);
  return d
    .sort((a, b) => b[1] - a[1])
    .map(([k, us]) => `${k} ${us.toFixed(2)}`)
    .join(', ');
}

/** CPU time the hypervisor gave to others while this VM's CPUs wanted to run (/proc/stat's steal, all CPUs), in clock ticks. */
function stealTicks(): number {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/);
  return Number(f[8] ?? 0);
}

/** nft by its path: under npm, node_modules/.bin comes first on PATH and holds another `nft` (@vercel/nft). */
const NFT = '/usr/sbin/nft';

/**
 * The receiver of the 60 B flood. `sink`: an nftables rule at the receiving
 * veth's ingress hook (netdev family, before any protocol handler) counts
 * trafgen's frames and drops them, the tester's receive port of RFC 2544 /
 * testpmd's rxonly: it measures what the switch delivers, not what the
 * receiving namespace's IP stack makes of it. `stack`: no sink, the frames go
 * up the receiving namespace's IP and UDP input to a closed port (the
 * benchmark's receiver before session 9): each one also pays a route lookup
 * and a rate-limited ICMP port-unreachable attempt, and that work runs on
 * whoever hands the frame to the veth (trafgen's thread for the bridge,
 * vale-ts's delivering thread for vale-ts).
 */
type Receiver = 'sink' | 'stack';

const sinkTable = (e: NsEnd): string =>
  `table netdev vtbench_sink {\n chain in {\n  type filter hook ingress device "${e.inner}" priority -500; policy accept;\n  ether type ip udp dport 9 counter drop\n }\n}\n`;

async function sinkCount(e: NsEnd): Promise<number> {
  const j = JSON.parse(await must('ip', 'netns', 'exec', e.ns, NFT, '-j', 'list', 'table', 'netdev', 'vtbench_sink')) as { nftables: { rule?: { expr: { counter?: { packets: number } }[] } }[] };
  for (const o of j.nftables) for (const x of o.rule?.expr ?? []) if (x.counter) return x.counter.packets;
  throw new Error('vtbench_sink: no counter in the table');
}

/**
 * trafgen sends 60-byte UDP frames from a to b for `seconds`; frames/s that
 * reached b's interface, and CPU seconds per received frame of trafgen (the
 * sender and, for the bridge, all the forwarding and the receiver's work,
 * which run in its context) and of the switch process (`switchPid`).
 * With the `sink` receiver, every frame that reached b's interface must also
 * be in the sink's counter (checked: a frame is counted once, by both).
 */
async function pps(a: NsEnd, b: NsEnd, seconds: number, receiver: Receiver, switchPid?: number): Promise<{ sent: number; rxPps: number; senderUs: number; switchUs: number; threads: string }> {
  const cfg = `{ eth(da=${b.mac}, sa=${a.mac}, type=0x0800), ipv4(saddr=${a.ip}, daddr=${b.ip}, ttl=64), udp(sp=9, dp=9), fill(0x00, 18) }`;
  if (receiver === 'sink') {
    const r = await run('ip', ['netns', 'exec', b.ns, NFT, '-f', '-'], { input: sinkTable(b) });
    if (r.code !== 0) throw new Error(`nft (the receiving namespace's sink) exited ${r.code}: ${r.stderr.trim()}; it needs CONFIG_NF_TABLES_NETDEV`);
  }
  try {
    const before = await rxPackets(b);
    const sw0 = switchPid ? await cpuSeconds(switchPid) : 0;
    const th0 = switchPid ? await threadSeconds(switchPid) : new Map<string, number>();
    const t0 = process.hrtime.bigint();
    // bash's `times` prints its children's CPU time: timeout's, which includes trafgen's
    const r = await run('ip', ['netns', 'exec', a.ns, 'bash', '-c', `timeout -s INT ${seconds} trafgen --dev ${a.inner} --conf - --cpp -q --no-sock-mem; times`], { input: cfg });
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    // let the last frames drain through
    await new Promise((res) => setTimeout(res, 300));
    const got = (await rxPackets(b)) - before;
    if (receiver === 'sink') {
      const sunk = await sinkCount(b);
      // the sink sees what reached the interface, less what was in flight when it was read
      if (sunk < got * 0.999 || sunk > got) console.error(`linux-if benchmark: the sink counted ${sunk} frames where ${b.inner} received ${got}`);
    }
    const sw = switchPid ? (await cpuSeconds(switchPid)) - sw0 : 0;
    const threads = switchPid ? byThread(th0, await threadSeconds(switchPid), got) : '';
    const m = /(\d+)\s+packets outgoing/.exec(r.stdout + r.stderr);
    const t = /\n(\d+)m([\d.]+)s (\d+)m([\d.]+)s\s*$/.exec(r.stdout);
    const sender = t ? Number(t[1]) * 60 + Number(t[2]) + Number(t[3]) * 60 + Number(t[4]) : NaN;
    return { sent: m ? Number(m[1]) : NaN, rxPps: got / secs, senderUs: (sender / got) * 1e6, switchUs: (sw / got) * 1e6, threads };
  } finally {
    if (receiver === 'sink') await run('ip', ['netns', 'exec', b.ns, NFT, 'delete', 'table', 'netdev', 'vtbench_sink']);
  }
}

/**
 * iperf3 from a to b for `seconds`: Gbit/s received, the segments the sender
 * retransmitted (frames lost on the way), and CPU seconds per GB received of
 * the two iperf3 processes (their system time holds the TCP stacks and, for
 * the bridge, the forwarding) and of the switch process (`switchPid`).
 */
async function tcp(a: NsEnd, b: NsEnd, seconds: number, switchPid?: number): Promise<{ gbps: number; retransmits: number; iperfSPerGB: number; switchSPerGB: number }> {
  const srv = spawn('ip', ['netns', 'exec', b.ns, 'iperf3', '-s', '-1', '--forceflush', '-B', b.ip], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(srv);
  await new Promise<void>((resolve) => srv.stdout!.on('data', (d: Buffer) => d.toString().includes('listening') && resolve()));
  const sw0 = switchPid ? await cpuSeconds(switchPid) : 0;
  const r = await run('ip', ['netns', 'exec', a.ns, 'iperf3', '-c', b.ip, '-t', String(seconds), '-J']);
  const sw = switchPid ? (await cpuSeconds(switchPid)) - sw0 : 0;
  srv.kill();
  children.delete(srv);
  const j = JSON.parse(r.stdout) as {
    end: { sum_received: { bits_per_second: number; bytes: number; seconds: number }; sum_sent: { retransmits?: number }; cpu_utilization_percent: { host_total: number; remote_total: number } };
  };
  const e = j.end;
  const gb = e.sum_received.bytes / 1e9;
  // iperf3 reports each side's CPU (user + system) as a percentage of one CPU over the test
  const iperfS = ((e.cpu_utilization_percent.host_total + e.cpu_utilization_percent.remote_total) / 100) * e.sum_received.seconds;
  return { gbps: e.sum_received.bits_per_second / 1e9, retransmits: e.sum_sent.retransmits ?? NaN, iperfSPerGB: iperfS / gb, switchSPerGB: sw / gb };
}

/** The round trip of 200 pings from a to b, 5 ms apart, on an otherwise idle path: min and average µs. */
async function pingRtt(a: NsEnd, b: NsEnd): Promise<{ minUs: number; avgUs: number }> {
  const out = await must('ip', 'netns', 'exec', a.ns, 'ping', '-q', '-c', '200', '-i', '0.005', b.ip);
  const m = /= ([\d.]+)\/([\d.]+)\//.exec(out);
  return m ? { minUs: Number(m[1]) * 1e3, avgUs: Number(m[2]) * 1e3 } : { minUs: NaN, avgUs: NaN };
}

const t0 = Date.now();
const step = (what: string): void => console.error(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${what}`);

const ownId = process.pid % 100000;
/** Processes to stop on any way out: the vale-ts switches, the iperf3 server. */
const children = new Set<ChildProcess>();

/**
 * Remove this benchmark's namespaces, veths and bridges: this run's (`mine`)
 * or those of earlier runs that were killed outright (SIGKILL gives no chance
 * to clean up), whose names carry the pid of a process that is no longer a
 * linux-if benchmark.
 */
async function sweep(mine: boolean): Promise<void> {
  const live = new Set<number>();
  for (const pid of (await run('pgrep', ['-f', 'linux-if.bench'])).stdout.split('\n').filter(Boolean)) live.add(Number(pid) % 100000);
  const ours = (id: string): boolean => (mine ? Number(id) === ownId : !live.has(Number(id)));
  const swept = new Set<number>();
  for (const l of JSON.parse((await run('ip', ['-j', 'link', 'show'])).stdout || '[]') as { ifname: string }[]) {
    const m = /^(?:h\d+bl|brbl)(\d+)$/.exec(l.ifname);
    if (m && ours(m[1]!)) {
      await run('ip', ['link', 'del', l.ifname]);
      swept.add(Number(m[1]));
    }
  }
  for (const ns of (await run('ip', ['netns', 'list'])).stdout.split('\n')) {
    const m = /^(n\d+bl(\d+))\b/.exec(ns);
    if (m && ours(m[2]!)) {
      await run('ip', ['netns', 'del', m[1]!]);
      swept.add(Number(m[2]));
    }
  }
  if (mine) return;
  // the vale-ts processes such a run left behind (bench/lib.ts names their sockets vtbench-PID-)
  for (const line of (await run('pgrep', ['-af', 'vale-ts.js --socket .*vtbench-'])).stdout.split('\n')) {
    const m = /^(\d+) .*vtbench-(\d+)-/.exec(line);
    if (!m || !swept.has(Number(m[2]) % 100000)) continue;
    try {
      process.kill(Number(m[2]), 0);
    } catch {
      process.kill(Number(m[1]), 'SIGTERM');  // its benchmark is gone
    }
  }
}

let cleaning: Promise<void> | undefined;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    for (const p of children) p.kill('SIGTERM');
    await sweep(true);
  })();
  return cleaning;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: 'string' }, backends: { type: 'string' }, datapath: { type: 'string' }, 'tcp-only': { type: 'boolean' }, repeat: { type: 'string' } } });
  const repeat = parseRepeat(values.repeat, 5);
  // --tcp-only: ping and TCP only (A/B runs on the TCP path)
  const tcpOnly = values['tcp-only'] ?? false;
  const noPps = { sent: NaN, rxPps: NaN, senderUs: NaN, switchUs: NaN, threads: '' };
  // vale-ts's --datapath: the switch forwarding on a thread of its own (its default) or on the event loop
  const datapath = values.datapath ?? 'thread';
  if (datapath !== 'loop' && datapath !== 'thread') throw new Error(`--datapath: '${datapath}' is not loop or thread`);
  const seconds = Number(values.seconds ?? 5);
  const backends = (values.backends ?? 'afxdp,afxdp-thread,packet,packet-thread,packet-v23,packet-v3').split(',');
  const known = ['afxdp', 'packet', 'packet-v3', 'packet-v23'];
  for (const b of backends) if (!known.includes(b.replace(/-(inline|thread)$/, ''))) throw new Error(`--backends: '${b}' is not one of ${known.join(', ')}, each optionally with -thread or -inline`);
  ensurePackages(['iproute2', 'netsniff-ng', 'iperf3', 'procps']);
  await sweep(false);
  // a unique prefix (brbl) so that sweep() never takes another benchmark's bridge
  const br = `brbl${process.pid % 100000}`;
  const { ends } = await makeNamespaces('bl', 2, 215);
  const [a, b] = ends as [NsEnd, NsEnd];
  /** the row of `vale-ctl-ts -a` with no option (set when the `packet` row runs) */
  let defaultRow = '';
  const res: Record<
    string,
    {
      rxPps: number; sent: number; gbps: number; retransmits: number; senderUs: number; switchUs: number; threads: string; iperfSPerGB: number; switchSPerGB: number; minUs: number; avgUs: number;
      stack: Awaited<ReturnType<typeof pps>>;
    }
  > = {};
  /** the judged pair's repeated runs (--repeat): 60 B frames/s into the sink and TCP Gbit/s, per run */
  const judged = { bridge: { pps: [] as number[], gbps: [] as number[] }, vale: { pps: [] as number[], gbps: [] as number[] } };
  const bridgeOn = async (): Promise<void> => {
    await must('ip', 'link', 'add', br, 'type', 'bridge');
    for (const e of ends) await must('ip', 'link', 'set', e.host, 'master', br, 'up');
    await must('ip', 'link', 'set', br, 'up');
    await must('ip', 'netns', 'exec', a.ns, 'ping', '-c', '2', '-i', '0.2', b.ip);
  };
  const bridgeOff = async (): Promise<void> => {
    await must('ip', 'link', 'del', br);
    for (const e of ends) await must('ip', 'link', 'set', e.host, 'down');
  };
  try {
    // the Linux bridge
    await bridgeOn();
    step('linux bridge: ping');
    const bping = await pingRtt(a, b);
    step('linux bridge: trafgen into the sink');
    const bp = tcpOnly ? noPps : await pps(a, b, seconds, 'sink');
    step('linux bridge: trafgen into the stack');
    const bstack = tcpOnly ? noPps : await pps(a, b, seconds, 'stack');
    step('linux bridge: iperf3');
    res['linux bridge'] = { ...bp, ...bping, ...(await tcp(a, b, seconds)), stack: bstack };
    await bridgeOff();

    // vale-ts in its own process
    step('vale-ts: start');
    // one vale-ts process per backend, the interfaces attached with --backend
    for (const backend of backends) {
      // the receive ring's TPACKET version is vale-ts's environment (src/ports/linux-if.ts)
      if (backend.startsWith('packet-v3')) process.env['VALE_TS_TPACKET_RX'] = '3';
      else if (backend.startsWith('packet-v23')) process.env['VALE_TS_TPACKET_RX'] = '2+3';
      else delete process.env['VALE_TS_TPACKET_RX'];
      // so is whether the ports run in the switch's rounds (unset: the default, in-line)
      if (backend.endsWith('-inline')) process.env['VALE_TS_LINUX_IF_INLINE'] = '1';
      else if (backend.endsWith('-thread')) process.env['VALE_TS_LINUX_IF_INLINE'] = '0';
      else delete process.env['VALE_TS_LINUX_IF_INLINE'];
      const { proc, socket } = await startSwitch(['--datapath', datapath]);
      delete process.env['VALE_TS_TPACKET_RX'];
      delete process.env['VALE_TS_LINUX_IF_INLINE'];
      children.add(proc);
      try {
        // `packet` is attached as `-a` with no option: the default's row (AF_PACKET on a veth)
        const how = backend === 'packet' ? [] : ['--backend', backend.startsWith('afxdp') ? 'afxdp' : 'packet'];
        for (const e of ends) await must(process.execPath, ctlJs, '--socket', socket, '-a', `vale0:${e.host}`, ...how);
        // (the listing exits 1 after the last port, as valectl does)
        const listing = (await run(process.execPath, [ctlJs, '--socket', socket])).stdout;
        const served = /\[([a-z0-9+-]+(?: zero-copy| copy)?) /.exec(listing)?.[1] ?? backend;
        const key = `vale-ts ${served}${listing.includes('in-line') ? ' in-line' : ''}`;
        if (backend === 'packet') defaultRow = key;
        step(`${key}: ping`);
        await must('ip', 'netns', 'exec', a.ns, 'ping', '-c', '2', '-i', '0.2', b.ip);
        const vping = await pingRtt(a, b);
        step(`${key}: trafgen into the sink`);
        const vp = tcpOnly ? noPps : await pps(a, b, seconds, 'sink', proc.pid);
        step(`${key}: trafgen into the stack`);
        const vstack = tcpOnly ? noPps : await pps(a, b, seconds, 'stack', proc.pid);
        step(`${key}: iperf3`);
        res[key] = { ...vp, ...vping, ...(await tcp(a, b, seconds, proc.pid)), stack: vstack };
        const st = await must(process.execPath, ctlJs, '--socket', socket, '--stats');
        console.error(st);
        for (const e of ends) await must(process.execPath, ctlJs, '--socket', socket, '-d', `vale0:${e.host}`);
      } finally {
        proc.kill('SIGTERM');
        children.delete(proc);
      }
    }
    if (repeat > 1) {
      // the judged pair again, alternated: vale-ts as `vale-ctl-ts -a` makes it, one process, its ports attached for each of its runs
      delete process.env['VALE_TS_TPACKET_RX'];
      delete process.env['VALE_TS_LINUX_IF_INLINE'];
      const { proc, socket } = await startSwitch(['--datapath', datapath]);
      children.add(proc);
      try {
        for (const { repeat: r, variant } of alternation(['bridge', 'vale'] as const, repeat)) {
          step(`repeat ${r + 1}/${repeat}: ${variant === 'bridge' ? 'linux bridge' : 'vale-ts, -a default'}`);
          if (variant === 'bridge') await bridgeOn();
          else {
            for (const e of ends) await must(process.execPath, ctlJs, '--socket', socket, '-a', `vale0:${e.host}`);
            await must('ip', 'netns', 'exec', a.ns, 'ping', '-c', '2', '-i', '0.2', b.ip);
          }
          const pid = variant === 'vale' ? proc.pid : undefined;
          if (tcpOnly) judged[variant].pps.push(NaN);
          else {
            const st0 = stealTicks();
            const q = await pps(a, b, seconds, 'sink', pid);
            const stolen = (stealTicks() - st0) / clockTicks;
            judged[variant].pps.push(q.rxPps);
            // each run's rate and CPU per frame (stderr): which side bound it
            step(`  60 B: sent ${(q.sent / seconds / 1e3).toFixed(0)} kpps, received ${(q.rxPps / 1e3).toFixed(0)} kpps; CPU µs per frame: trafgen ${q.senderUs.toFixed(2)}${pid ? ` + vale-ts ${q.switchUs.toFixed(2)}${q.threads ? ` (${q.threads})` : ''}` : ''}; the hypervisor took ${stolen.toFixed(2)} CPU s (steal)`);
          }
          judged[variant].gbps.push((await tcp(a, b, seconds, pid)).gbps);
          if (variant === 'bridge') await bridgeOff();
          else for (const e of ends) await must(process.execPath, ctlJs, '--socket', socket, '-d', `vale0:${e.host}`);
        }
      } finally {
        proc.kill('SIGTERM');
        children.delete(proc);
      }
    }
  } finally {
    await cleanup();
  }
  console.log(`linux-if benchmark: 2 namespaces, veth, ${seconds} s per figure, vale-ts --datapath ${datapath}; load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  const us = (x: number): string => (Number.isFinite(x) ? x.toFixed(2) : '?').padStart(5);
  for (const [k, v] of Object.entries(res)) {
    if (tcpOnly) {
      console.log(
        `  ${k.padEnd(18)} TCP ${v.gbps.toFixed(2).padStart(5)} Gbit/s (${v.retransmits} retransmitted)   CPU s per GB: iperf3s ${us(v.iperfSPerGB)}` +
          (k === 'linux bridge' ? '' : ` + vale-ts ${us(v.switchSPerGB)}`) +
          `   ping RTT min ${v.minUs.toFixed(0)} µs avg ${v.avgUs.toFixed(0)} µs`,
      );
      continue;
    }
    console.log(
      `  ${k.padEnd(18)} 60 B: sent ${(v.sent / seconds / 1e3).toFixed(0).padStart(6)} kpps, received ${(v.rxPps / 1e3).toFixed(0).padStart(6)} kpps` +
        `   CPU µs per received frame: trafgen ${us(v.senderUs)}` + (k === 'linux bridge' ? '' : ` + vale-ts ${us(v.switchUs)}`),
    );
    if (v.threads) console.log(`  ${''.padEnd(18)} 60 B, vale-ts CPU µs per received frame by thread: ${v.threads}`);
    const st = v.stack;
    console.log(
      `  ${''.padEnd(18)} 60 B into the stack: sent ${(st.sent / seconds / 1e3).toFixed(0).padStart(6)} kpps, received ${(st.rxPps / 1e3).toFixed(0).padStart(6)} kpps` +
        `   CPU µs per received frame: trafgen ${us(st.senderUs)}` + (k === 'linux bridge' ? '' : ` + vale-ts ${us(st.switchUs)}`) + (st.threads ? ` (${st.threads})` : ''),
    );
    console.log(
      `  ${''.padEnd(18)} TCP ${v.gbps.toFixed(2).padStart(5)} Gbit/s (${v.retransmits} retransmitted)   CPU s per GB: iperf3s ${us(v.iperfSPerGB)}` +
        (k === 'linux bridge' ? '' : ` + vale-ts ${us(v.switchSPerGB)}`) +
        `   ping RTT min ${v.minUs.toFixed(0)} µs avg ${v.avgUs.toFixed(0)} µs`,
    );
  }
  const l = res['linux bridge']!;
  for (const [k, v] of Object.entries(res)) {
    if (k === 'linux bridge') continue;
    if (tcpOnly) {
      console.log(`  ratio ${k} / bridge: TCP ${(v.gbps / l.gbps).toFixed(2)} (target 0.70)${k === defaultRow ? '   <- vale-ctl-ts -a default' : ''}`);
      continue;
    }
    console.log(
      `  ratio ${k} / bridge: 60 B pps ${(v.rxPps / l.rxPps).toFixed(2)} (target 1.5; into the stack ${(v.stack.rxPps / l.stack.rxPps).toFixed(2)})   TCP ${(v.gbps / l.gbps).toFixed(2)} (target 0.70)${k === defaultRow ? '   <- vale-ctl-ts -a default' : ''}`,
    );
  }
  if (repeat > 1) {
    const list = (xs: number[]): string => xs.map((x) => x.toFixed(2)).join(' ');
    const verdict = (what: string, ratios: number[], target: number): void => {
      const m = spread(ratios).median;
      console.log(
        `  over ${repeat} alternated pairs, ${defaultRow || 'vale-ts -a default'} / bridge: ${what} ${m.toFixed(2)} median (${list(ratios)}; ${ratios.filter((x) => x >= target).length} of ${repeat} >= ${target}): ${m >= target ? 'met' : 'NOT met'} (target ${target})`,
      );
    };
    const kpps = (xs: number[]): string => { const q = spread(xs); return `${(q.median / 1e3).toFixed(0)} kpps [${(q.min / 1e3).toFixed(0)}-${(q.max / 1e3).toFixed(0)}]`; };
    if (!tcpOnly) {
      console.log(`  60 B into the sink, medians [range]: bridge ${kpps(judged.bridge.pps)}, vale-ts ${kpps(judged.vale.pps)}`);
      verdict('60 B pps', pairedRatios(judged.vale.pps, judged.bridge.pps), 1.5);
      const note = unsteadyNote([spread(judged.bridge.pps), spread(judged.vale.pps)]);
      if (note) console.log(note);
    }
    verdict('TCP', pairedRatios(judged.vale.gbps, judged.bridge.gbps), 0.7);
  }
  console.log(`  uptime: ${(await run('uptime', [])).stdout.trim()}`);
}

// interrupted (Ctrl-C, timeout, kill): remove what was made, then exit as the signal would
for (const [sig, no] of [['SIGINT', 2], ['SIGTERM', 15], ['SIGHUP', 1]] as const) {
  process.once(sig, () => {
    console.error(`linux-if benchmark: ${sig}: removing its namespaces, links and switches`);
    void cleanup().finally(() => process.exit(128 + no));
  });
}
try {
  await main();
} catch (e) {
  await cleanup();
  console.error(e);
  process.exitCode = 1;
}
