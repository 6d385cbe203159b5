/**
 * vhost-user throughput: two dpdk-testpmd virtio-user front-ends (txonly ->
 * rxonly) through two vale-ts vhost-user ports, against the same two
 * front-ends through a dpdk-testpmd vhost-user io-forwarding switch
 * (net_vhost0/net_vhost1, --forward-mode=io: no learning, no lookup at all),
 * 60- and 1514-byte frames, in the same run. Rate: frames counted by the
 * rxonly testpmd over the measured interval.
 *   node dist/bench/vhost.bench.js [--seconds 3]
 * Rows: vale-ts with its ports as created without settings (the default:
 * in-line in the switch's rounds on vale-ts's datapath thread, a thread per
 * port on the event-loop datapath; the row says which), and the same ports
 * with `inline: false` (a thread per port: "vale-ts -thread"), each against
 * the testpmd io switch; --thread or --inline measure one of them only.
 * Needs the Debian packages of test/fixtures/testpmd.ts (installed as root).
 *
 * Both sides use the same two front-ends with 1024-entry virtqueues
 * (virtio_user queue_size=1024, as OVS-DPDK's docs have QEMU users set;
 * --queue-size N for another size). Per frame, vale-ts: the tx port's
 * driver thread walks txonly's descriptor chain (every index, address and
 * length checked against the memory table) and copies the frame into the
 * port's tx ring slot; the switch thread copies its headers (a snapshot for
 * the decision) and the frame into the rx port's ring after the TypeScript
 * learning-bridge decision (a flood here: rxonly sends
 * nothing, so its MAC is never learned; with two ports that is one copy);
 * the rx port's driver thread copies it into rxonly's RX buffer. In-line,
 * the same three copies and checks are made by the switch's one thread in
 * each round (no doorbell and no hand-off between threads). The testpmd
 * io switch: rte_vhost dequeues into an mbuf (one copy) and enqueues into
 * the other guest (a second copy), no lookup.
 *
 * Priority (printed with the rows): the testpmd io switch runs at the nice
 * value vale-ts ran at (vale-ts's own --priority, default -10 where vale-ts
 * has it, or --vale-nice), every thread of it reniced once it has started;
 * the two front-ends at 0. Like with like: each switch has the same weight
 * against the pinned front-ends it shares the CPUs with.
 *
 * Placement (printed with the rows): txonly's forwarding lcore on CPU 1,
 * rxonly's on CPU 0, the testpmd io switch's on CPU 1, vale-ts's threads
 * unpinned. DPDK's and OVS-DPDK's reports give the switch and each
 * front-end dedicated cores; this machine has 2 CPUs for 3 busy pollers, so
 * every pinning puts two pollers on one CPU. --split (the device under test
 * alone on CPU 0, both generators on CPU 1) is kept as a diagnostic, not the
 * rows: there the two generators take turns on CPU 1 in scheduler slices
 * and the rate is what the path buffers per slice (bench/RESULTS.md,
 * session 8), with vale-ts 70% idle on its CPU.
 *
 * Investigation (issue 11's "what bounds it"; none of these is the
 * benchmark's row): --probe prints, for each measured interval, every
 * thread's share of it on a CPU and runnable-but-waiting (schedstat) for
 * vale-ts and both testpmds, and the switch's and drivers' counters over it
 * (kicks, wakeups, drops); --vale-only skips the testpmd switch;
 * --inline runs only the row with the ports' datapath in-line in the
 * switch's rounds (the vhost-user setting `inline: true`, whatever the
 * switch's datapath; in-line batches the guests' kicks only on the datapath
 * thread, whose busy poll it then skips, bench/RESULTS.md sessions 11-12);
 * --busy-poll-us N sets those threads'
 * polling window; --switch-busy-poll-us N, --switch-datapath loop|thread
 * and --switch-hold-us N pass vale-ts's own; --queue-size N the
 * front-ends' virtqueue size (virtio_user queue_size); --split puts both
 * testpmd forwarding lcores on CPU 1 and vale-ts alone on CPU 0;
 * --port-slots N gives both vale-ts ports N-slot rings (default 1024);
 * --backlog-poll-us N sets the vhost-user setting backlogPollUs; --size N
 * measures one frame size only;
 * --vale-nice=N renices every vale-ts thread (an operator's priority);
 * --thread: only the thread-per-port row (`inline: false`);
 * --perf FILE records vale-ts (perf record -g) over the 60 B interval;
 * --syscalls counts its system calls and context switches per thread there
 * (perf stat), printed per delivered frame.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ValeClient } from '../src/index.js';
import { ensureTestpmd, TestPmd } from '../test/fixtures/testpmd.js';
import { statNice } from '../test/fixtures/proc-stat.js';
import { startSwitch } from './lib.js';

const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '3' }, probe: { type: 'boolean', default: false },
    'vale-only': { type: 'boolean', default: false },
    'busy-poll-us': { type: 'string' },
    inline: { type: 'boolean', default: false },
    thread: { type: 'boolean', default: false },
    'switch-busy-poll-us': { type: 'string' },
    'switch-datapath': { type: 'string' },
    'switch-hold-us': { type: 'string' },
    'queue-size': { type: 'string' },
    'port-slots': { type: 'string' },
    'backlog-poll-us': { type: 'string' },
    split: { type: 'boolean', default: false },
    'vale-nice': { type: 'string' },
    perf: { type: 'string' },
    syscalls: { type: 'boolean', default: false },
    size: { type: 'string' },
  },
});
const seconds = Number(values.seconds);
const probe = values.probe;
// diagnostics (not the benchmark's rows): the drivers' polling window, the
// front-ends' virtqueue size, and --split: both testpmd forwarding lcores on
// CPU 1 and vale-ts alone on CPU 0 (what vale-ts does with a CPU to itself)
const busyPollUs = values['busy-poll-us'] === undefined ? undefined : Number(values['busy-poll-us']);
// Both front-ends' virtqueues have QUEUE_SIZE entries on both sides of the
// comparison (the same testpmd front-ends face either switch): 1024, what
// OVS-DPDK's vhost-user documentation has users set (QEMU's rx_queue_size /
// tx_queue_size=1024, its maximum) against drops at DPDK's default of 256.
// --queue-size N overrides it (256: virtio-user's own default).
const QUEUE_SIZE = values['queue-size'] === undefined ? 1024 : Number(values['queue-size']);
if (!Number.isInteger(QUEUE_SIZE) || QUEUE_SIZE < 16 || QUEUE_SIZE > 32768 || (QUEUE_SIZE & (QUEUE_SIZE - 1)) !== 0)
  throw new Error(`--queue-size must be a power of two 16..32768 (got ${values['queue-size']})`);
const queueSize = `,queue_size=${QUEUE_SIZE}`;
const split = values.split;
// --port-slots N: both vale-ts ports' tx and rx rings get N slots (the
// switch's default 1024, at most netmap's 4096): what vale-ts can buffer
// between txonly's queue and rxonly's while rxonly is off its CPU
const portSlots = values['port-slots'] === undefined ? undefined : Number(values['port-slots']);
// --backlog-poll-us N: the vhost-user setting backlogPollUs (the rx driver
// polls the guest's RX queue instead of sleeping for its kick while frames wait)
const backlogPollUs = values['backlog-poll-us'] === undefined ? undefined : Number(values['backlog-poll-us']);
// --vale-nice N: every vale-ts thread reniced to N once its ports exist (an
// operator's priority for the switch over the guests, as OVS-DPDK's pinned
// PMD threads have): a diagnostic row, never the benchmark's
const valeNice = values['vale-nice'] === undefined ? undefined : Number(values['vale-nice']);
// the vale-ts rows: the ports as created without settings (whatever
// vale-ts's default is), and with inline: false; --inline / --thread: one
// row with the setting given
type Mode = 'default' | 'inline' | 'thread';
if (values.inline && values.thread) throw new Error('--inline and --thread: one or the other');
const MODES: Mode[] = values.inline ? ['inline'] : values.thread ? ['thread'] : ['default', 'thread'];
// --perf FILE: perf record -g of vale-ts over the 60 B interval (perf report -i FILE)
const perfOut = values.perf;
// --syscalls: perf stat of vale-ts's system calls and context switches per
// thread over the 60 B interval, printed per delivered frame (what the
// hand-offs between its threads and the guests cost, beside the copies)
const syscalls = values.syscalls;
// the switch's own polling window and datapath (vale-ts --busy-poll-us, --datapath)
const switchArgs = [
  ...(values['switch-busy-poll-us'] === undefined ? [] : ['--busy-poll-us', String(Number(values['switch-busy-poll-us']))]),
  ...(values['switch-datapath'] === undefined ? [] : ['--datapath', values['switch-datapath']]),
  ...(values['switch-hold-us'] === undefined ? [] : ['--hold-us', String(Number(values['switch-hold-us']))]),
];
// --size N: one frame size only (a diagnostic: quicker alternated runs)
const SIZES = values.size === undefined ? [60, 1514] : [Number(values.size)];
if (!SIZES.every((s) => Number.isInteger(s) && s >= 60 && s <= 1514)) throw new Error(`--size must be a frame size 60..1514 (got ${values.size})`);

ensureTestpmd();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), `vhost-bench-${process.pid}-`));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Per-thread schedstat (ns on a CPU, ns runnable but waiting, times scheduled in) of a process. */
type Sched = Map<string, { run: number; wait: number; slices: number }>;
function sched(pid: number, tag: string): Sched {
  const m: Sched = new Map();
  try {
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      try {
        const comm = fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
        const [run, wait, slices] = fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').trim().split(' ').map(Number);
        m.set(`${tag} ${comm}/${tid}`, { run: run!, wait: wait!, slices: slices! });
      } catch { /* thread gone */ }
    }
  } catch { /* process gone */ }
  return m;
}
/**
 * Prints the threads that ran during the interval: share of the interval on
 * a CPU and waiting for one, and CPU time per frame rxonly got; then
 * vale-ts's threads together per frame.
 */
function printSched(a: Sched, b: Sched, ns: number, frames: number): void {
  let vale = 0;
  for (const [k, v] of b) {
    const o = a.get(k) ?? { run: 0, wait: 0, slices: 0 };
    const run = v.run - o.run, wait = v.wait - o.wait, sl = v.slices - o.slices;
    if (k.startsWith('vale-ts ')) vale += run;
    if (run < ns / 200) continue;
    const per = frames > 0 ? `  ${(run / frames).toFixed(0).padStart(6)} ns/frame` : '';
    console.log(`    ${k.padEnd(34)} on-cpu ${((run / ns) * 100).toFixed(1).padStart(5)}%  runnable-waiting ${((wait / ns) * 100).toFixed(1).padStart(5)}%  slices ${String(sl).padStart(6)}${per}`);
  }
  if (frames > 0) console.log(`    vale-ts, all threads: ${(vale / frames).toFixed(0)} ns of CPU per delivered frame (${((vale / ns) * 100).toFixed(1)}% of a CPU)`);
  // rxonly's forwarding lcore is its busiest thread: the frames it got per
  // time it was scheduled in are what the path had buffered for it per turn
  let rxBusy = { run: 0, slices: 0 };
  for (const [k, v] of b) {
    if (!k.startsWith('rxonly ')) continue;
    const o = a.get(k) ?? { run: 0, wait: 0, slices: 0 };
    if (v.run - o.run > rxBusy.run) rxBusy = { run: v.run - o.run, slices: v.slices - o.slices };
  }
  if (rxBusy.slices > 0) console.log(`    frames per rxonly turn: ${(frames / rxBusy.slices).toFixed(0)} (${rxBusy.slices} turns, ${(rxBusy.run / rxBusy.slices / 1e3).toFixed(0)} µs on a CPU each)`);
}
/** perf stat -x , --per-thread lines (thread-tid,count,,event,...): each thread's syscalls and context switches per frame. */
function printSyscalls(csv: string, frames: number): void {
  const per = new Map<string, Record<string, number>>();
  for (const line of csv.split('\n')) {
    const f = line.split(',');
    if (f.length < 4 || !/^\d+$/.test(f[1] ?? '')) continue;
    const ev = f[3]!.includes('sys_enter') ? 'syscalls' : 'switches';
    const t = per.get(f[0]!) ?? {};
    t[ev] = (t[ev] ?? 0) + Number(f[1]);
    per.set(f[0]!, t);
  }
  let sc = 0, sw = 0;
  for (const [t, v] of per) {
    sc += v.syscalls ?? 0;
    sw += v.switches ?? 0;
    if ((v.syscalls ?? 0) + (v.switches ?? 0) > 0) console.log(`    vale-ts ${t.padEnd(24)} syscalls ${String(v.syscalls ?? 0).padStart(8)}  context switches ${String(v.switches ?? 0).padStart(7)}`);
  }
  if (frames > 0) console.log(`    vale-ts per delivered frame: ${(sc / frames).toFixed(3)} syscalls, ${(sw / frames).toFixed(3)} context switches`);
}
let probeTarget: { pids: Array<[number, string]>; counters: () => Promise<Record<string, number>>; describe: () => Promise<string[]> } | null = null;

/** Runs txonly -> rxonly front-ends on sockets a and b for each size; Mpps per size. */
async function measure(a: string, b: string, serverFronts: boolean): Promise<number[]> {
  const srv = serverFronts ? ',server=1' : '';
  // forwarding lcores on different cores: tx on 1, rx on 0 (its main lcore 1)
  const rx = await TestPmd.start({ vdevs: [`net_virtio_user0,path=${b},queues=1${srv}${queueSize}`], mode: 'rxonly', cores: '0,1', mainLcore: split ? 0 : 1 });
  const tx = await TestPmd.start({ vdevs: [`net_virtio_user0,path=${a},queues=1${srv}${queueSize}`], mode: 'txonly', cores: '0,1' });
  const out: number[] = [];
  try {
    await rx.cmd('start');
    for (const size of SIZES) {
      await tx.cmd(`set txpkts ${size}`);
      await tx.cmd('start');
      await sleep(1000); // warm-up: rings filled, MAC learned
      const pids: Array<[number, string]> = [...(probeTarget?.pids ?? []), [tx.proc.pid!, 'txonly'], [rx.proc.pid!, 'rxonly']];
      const snap = (): Sched => new Map(pids.flatMap(([p, t]) => [...sched(p, t)]));
      const c0 = probe && probeTarget ? await probeTarget.counters() : {};
      const txs0 = probe ? await tx.portStats() : null;
      const s0 = probe ? snap() : new Map();
      const r0 = (await rx.portStats()).rxPackets;
      const t0 = process.hrtime.bigint();
      const vpid = probeTarget?.pids[0]?.[0];
      let statOut = '';
      if (perfOut && size === SIZES[0] && vpid)
        execFileSync('perf', ['record', '-q', '-g', '-F', '2000', '-o', perfOut, '-p', String(vpid), '--', 'sleep', String(seconds)], { stdio: 'ignore' });
      else if (syscalls && size === SIZES[0] && vpid)
      {
        const f = path.join(dir, 'perf-stat.csv');
        execFileSync('perf', ['stat', '-x', ',', '--per-thread', '-o', f, '-e', 'raw_syscalls:sys_enter,sched:sched_switch', '-p', String(vpid), '--', 'sleep', String(seconds)], { stdio: 'ignore' });
        statOut = fs.readFileSync(f, 'utf8');
      }
      else await sleep(seconds * 1000);
      const r1 = (await rx.portStats()).rxPackets;
      const t1 = process.hrtime.bigint();
      if (probe) {
        const s1 = snap();
        const txs1 = await tx.portStats();
        const ns = Number(t1 - t0);
        const frames = r1 - r0;
        console.log(`  ${size} B: rxonly got ${frames} frames in ${(ns / 1e9).toFixed(2)} s (${(frames / ns * 1e3).toFixed(3)} Mpps); txonly sent ${txs1.txPackets - txs0!.txPackets}, tx-errors ${txs1.txErrors - txs0!.txErrors}`);
        printSched(s0, s1, ns, frames);
        if (statOut) printSyscalls(statOut, frames);
        if (probeTarget) {
          const c1 = await probeTarget.counters();
          const d = Object.fromEntries(Object.entries(c1).map(([k, v]) => [k, v - (c0[k] ?? 0)]).filter(([, v]) => v !== 0));
          console.log(`    counters over the interval: ${JSON.stringify(d)}`);
          if (size === SIZES[0]) for (const sw of await probeTarget.describe()) console.log(`    ${sw}`);
        }
      }
      await tx.cmd('stop');
      out.push((r1 - r0) / (Number(t1 - t0) / 1e9) / 1e6);
    }
  } finally {
    await tx.quit();
    await rx.quit();
  }
  return out;
}

/** The vale-ts rows: Mpps per size, and whether the ports ran in-line. */
async function viaVale(mode: Mode): Promise<{ mpps: number[]; inline: boolean }> {
  const { proc, socket } = await startSwitch(switchArgs);
  try {
    const vale = new ValeClient({ socket });
    const a = path.join(dir, 'vale-a.sock'), b = path.join(dir, 'vale-b.sock');
    if (split) execFileSync('taskset', ['-a', '-p', '-c', '0', String(proc.pid)], { stdio: 'ignore' });
    const poll: Record<string, number | boolean> = { ...(busyPollUs === undefined ? {} : { busyPollUs }), ...(backlogPollUs === undefined ? {} : { backlogPollUs }), ...(mode === 'default' ? {} : { inline: mode === 'inline' }) };
    const rings = portSlots === undefined ? {} : { txSlots: portSlots, rxSlots: portSlots };
    await vale.create('vale0:tx', rings, { driver: { kind: 'vhost-user', path: a, ...poll } });
    await vale.create('vale0:rx', rings, { driver: { kind: 'vhost-user', path: b, ...poll } });
    if (valeNice !== undefined)
      for (const tid of fs.readdirSync(`/proc/${proc.pid}/task`)) execFileSync('renice', ['-n', String(valeNice), '-p', tid], { stdio: 'ignore' });
    valeRanAt = niceOf(proc.pid!);
    probeTarget = {
      pids: [[proc.pid!, 'vale-ts']],
      counters: async () => {
        const out: Record<string, number> = {};
        for (const sw of await vale.stats('vale0')) {
          for (const [k, v] of Object.entries(sw.switchCounters ?? {})) out[`sw.${k}`] = v;
          for (const p of sw.ports) {
            const n = p.name.split(':')[1];
            for (const [k, v] of Object.entries(p.counters)) out[`${n}.${k}`] = v;
            for (const [k, v] of Object.entries(p.driver?.counters ?? {})) out[`${n}.drv.${k}`] = v;
          }
        }
        return out;
      },
      describe: async () => (await vale.stats('vale0')).flatMap((sw) => sw.ports.map((p) => `${p.name}: ${p.driver?.describe ?? ''}`)),
    };
    // what the ports run as (their listing says ', in-line')
    const inl = (await vale.stats('vale0')).every((sw) => sw.ports.every((p) => p.driver?.describe.includes(', in-line') ?? false));
    try {
      return { mpps: await measure(a, b, false), inline: inl };
    } finally {
      probeTarget = null;
    }
  } finally {
    proc.kill();
  }
}

/** A process's nice value. */
function niceOf(pid: number): number {
  return statNice(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
}

// the nice value vale-ts ran at (its own --priority, or --vale-nice): the
// testpmd io switch gets the same, so that both switches face the two
// pinned front-ends with the same weight
let valeRanAt = 0;

async function viaTestpmd(): Promise<number[]> {
  const a = path.join(dir, 'pmd-a.sock'), b = path.join(dir, 'pmd-b.sock');
  // --split: its forwarding lcore alone on CPU 0 (main lcore 1), as vale-ts
  const sw = await TestPmd.start({ vdevs: [`net_vhost0,iface=${a},queues=1`, `net_vhost1,iface=${b},queues=1`], mode: 'io', cores: '0,1', ...(split ? { mainLcore: 1 } : {}) });
  try {
    if (valeRanAt !== 0)
      for (const tid of fs.readdirSync(`/proc/${sw.proc.pid}/task`)) execFileSync('renice', ['-n', String(valeRanAt), '-p', tid], { stdio: 'ignore' });
    await sw.cmd('start');
    return await measure(a, b, false);
  } finally {
    await sw.quit();
  }
}

const load = os.loadavg().map((x) => x.toFixed(2)).join(' ');
const rows: Array<{ mode: Mode; mpps: number[]; inline: boolean }> = [];
for (const mode of MODES) {
  if (probe) console.log(`vale-ts, ports ${mode === 'default' ? 'as created without settings' : `inline: ${mode === 'inline'}`}:`);
  rows.push({ mode, ...(await viaVale(mode)) });
}
const vale = rows[0]!.mpps;
const pmd = values['vale-only'] ? SIZES.map(() => NaN) : await viaTestpmd();
console.log(`vhost-user benchmark: testpmd txonly -> switch -> testpmd rxonly, ${seconds} s per size (load average before: ${load})`);
const diag = [switchArgs.length > 0 && `vale-ts ${switchArgs.join(' ')}`, busyPollUs !== undefined && `busyPollUs ${busyPollUs}`, backlogPollUs !== undefined && `backlogPollUs ${backlogPollUs}`, portSlots !== undefined && `vale-ts port rings ${portSlots} slots`, values['queue-size'] !== undefined && `virtio-user${queueSize}`, split && 'split: testpmds on CPU 1, vale-ts on CPU 0', valeNice !== undefined && `vale-ts threads at nice ${valeNice}`].filter(Boolean);
// where everything ran: a reader compares the rows only knowing who shared a CPU with whom
console.log(split
  ? 'placement (--split, diagnostic): txonly and rxonly lcores both on CPU 1; vale-ts pinned to CPU 0; the testpmd io switch\'s lcore alone on CPU 0'
  : 'placement: txonly lcore on CPU 1, rxonly lcore on CPU 0 (DPDK lcores are pinned); the testpmd io switch\'s lcore on CPU 1; vale-ts\'s threads unpinned');
console.log(`virtqueues: ${QUEUE_SIZE} entries on both front-ends, for both switches`);
console.log(`priority: vale-ts ran at nice ${valeRanAt}${values['vale-only'] ? '' : `, the testpmd io switch at the same`}; the front-ends at 0`);
if (diag.length) console.log(`diagnostic settings: ${diag.join(', ')}`);
console.log(`load average after: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} (${os.cpus().length} CPUs)`);
// each row says what its ports ran as: in-line in the switch's rounds, or a thread per port
for (const r of rows) {
  const what = r.mode === 'default' ? `the default: ${r.inline ? 'in-line' : 'a thread per port'}` : r.inline ? 'in-line (inline: true)' : 'a thread per port (inline: false)';
  console.log(`vale-ts${r.mode === 'thread' ? ' -thread' : r.mode === 'inline' ? ' -inline' : ''}: ports ${what}`);
}
SIZES.forEach((s, i) => {
  for (const r of rows) {
    const name = `vale-ts${r.mode === 'thread' ? ' -thread' : r.mode === 'inline' ? ' -inline' : ''}`;
    console.log(`${String(s).padStart(5)} B  ${name} ${r.mpps[i]!.toFixed(2)} Mpps   testpmd io-fwd ${pmd[i]!.toFixed(2)} Mpps   ratio ${(r.mpps[i]! / pmd[i]!).toFixed(2)}`);
  }
});
// issue 11's target: >= 50% of testpmd's io switch at both sizes, >= 2 Mpps at 60 B
// (the first row's: vale-ts's default, unless --inline or --thread chose one)
const ratioOk = SIZES.every((_, i) => vale[i]! >= 0.5 * pmd[i]!);
console.log(
  `target: vale-ts >= 50% of testpmd io-fwd ${values['vale-only'] ? 'not measured (--vale-only)' : ratioOk ? 'met' : 'NOT met'}; >= 2 Mpps at 60 B ${SIZES[0] !== 60 ? 'not measured (--size)' : vale[0]! >= 2 ? 'met' : `NOT met (${vale[0]!.toFixed(2)})`}`,
);
fs.rmSync(dir, { recursive: true, force: true });
