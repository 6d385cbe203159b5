/**
 * pkt-gen-ts end to end: the bin run as child processes over pipes and
 * through a vale-ts switch hosted in this process, its counts, rate limit,
 * sequence checks, ping/pong, output formats (docs/netmap-abi.md, section 7) and errors.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { writeFileSync, unlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { open, Switch, ValeServer, sumDrops } from '../../src/index.js';
import { departures, until, type Departures } from '../fixtures/wait.js';
import { buildFrame, frameLayout } from '../../tools/pkt-gen/frame.js';
import { verifyFrameChecksums } from '../fixtures/frame-check.js';
import { patternFrame, sendChain } from '../fixtures/chains.js';
import { epollWaitsToWrite, fullPipe } from '../fixtures/full-pipe.js';

const bin = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'tools', 'pkt-gen-ts.js');
let uniq = 0;
/** A pipe / port name nobody else uses. */
const uname = (tag: string): string => `pg${tag}${process.pid}x${uniq++}`;
const sockPath = (): string => path.join(os.tmpdir(), `pgt-${process.pid}-${uniq++}.sock`);

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}
interface Run {
  kill(sig: NodeJS.Signals): void;
  done: Promise<Result>;
  /** resolves when stderr has a line matching `re` */
  waitFor(re: RegExp): Promise<void>;
  /** resolves when `pred` holds for the stderr printed so far */
  waitUntil(pred: (stderr: string) => boolean): Promise<void>;
}

function run(args: string[], env: Record<string, string> = {}): Run {
  const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  const waiters: { pred: (s: string) => boolean; resolve: () => void }[] = [];
  child.stdout.on('data', (d: Buffer) => (stdout += d));
  child.stderr.on('data', (d: Buffer) => {
    stderr += d;
    for (const w of waiters.splice(0)) {
      if (w.pred(stderr)) w.resolve();
      else waiters.push(w);
    }
  });
  // 'close', not 'exit': only then has all of the child's output been read
  const done = new Promise<Result>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  const waitUntil = (pred: (s: string) => boolean, what = 'the awaited output'): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      if (pred(stderr)) return resolve();
      waiters.push({ pred, resolve });
      void done.then(() => reject(new Error(`exited before printing ${what}: ${stderr}`)));
    });
  return {
    kill: (sig) => child.kill(sig),
    done,
    waitFor: (re) => waitUntil((s) => re.test(s), String(re)),
    waitUntil,
  };
}

/**
 * Frames a receiver run with -N has counted so far: the sum of its periodic
 * reports, each giving the frames since the one before. Waiting for this to
 * reach what the switch delivered replaces -W's "1 s of silence ends the
 * run", which a sender stalled for a second on a busy machine would trip.
 */
function reported(stderr: string): number {
  let n = 0;
  for (const m of stderr.matchAll(/main_thread \[\d+\] \d+ pps \((\d+) pkts/g)) n += Number(m[1]);
  return n;
}

function count(out: string, what: 'Sent' | 'Received'): number {
  const m = new RegExp(`^${what} (\\d+) packets (\\d+) bytes`, 'm').exec(out);
  if (!m) throw new Error(`no "${what} N packets" line in:\n${out}`);
  return Number(m[1]);
}

// ---------------------------------------------------------------------------
// Output patterns, as pkt-gen prints them (docs/netmap-abi.md, section 7)

const NUM = String.raw`\d+\.\d{3} [KMGT]?`;
const RAW = String.raw`\d+ `;
const NAN_OR = String.raw`(\d+\.\d{3} [KMGT]?|-nan )`;
const D_LINE = /^(\d{3})\.(\d{6}) (\w+) \[(\d+)\] (.*)$/;
const D_MSGS: Record<string, RegExp[]> = {
  main: [
    /^interface is \S+$/,
    /^using default burst size: \d+$/,
    /^running on \d+ cpus \(have \d+\)$/,
    /^Sending \d+ packets every {2}\d+\.\d{9} s$/,
    /^WARNING: the 'C' option is deprecated, use the '\+conf:' libnetmap option instead$/,
    /^--- SPECIAL OPTIONS:( prefetch| access| memcpy| indirect| copy| rubbish )*$/,
    /^nifp at offset \d+ ntxqs \d+ nrxqs \d+ memid \d+$/,
    /^ {3}[TR]X\d+ at offset (0x[0-9a-f]+|\(nil\)) slots \d+$/,
    /^bad nthreads \d+, have \d+ queues$/,
  ],
  extract_ip_range: [/^range is \S+:\d+ to \S+:\d+$/],
  start_threads: [/^Wait \d+ secs for phy reset$/, /^Ready\.\.\.$/],
  sender_body: [/^start, fd \d+ main_fd \d+$/, /^frags \d+ frag_size \d+$/, /^flush tail \d+ head \d+ on thread 0x[0-9a-f]+$/],
  txseq_body: [/^start, fd \d+ main_fd \d+$/, /^flush tail \d+ head \d+ on thread 0x[0-9a-f]+$/],
  receiver_body: [/^reading from \S+ fd \d+ main_fd \d+$/, /^waiting for initial packets, poll returns 0 0$/],
  rxseq_body: [
    /^reading from \S+ fd \d+ main_fd \d+$/,
    /^waiting for initial packets, poll returns 0 0$/,
    /^Sequence (GAP|OUT OF ORDER): exp \d+ found \d+$/,
  ],
  main_thread: [
    // with -A and no traffic yet, pkt-gen's window mean is 0/0, printed by glibc as -nan
    new RegExp(String.raw`^${NUM}pps (\[avg/std ${NAN_OR}/${NAN_OR} pps\])?\(${NUM}pkts ${NUM}bps in \d+ usec\) \d+\.\d{2} avg_batch \d+ min_space$`),
    new RegExp(String.raw`^${RAW}pps (\[avg/std ${RAW}/${RAW} pps\])?\(${RAW}pkts ${RAW}bps in \d+ usec\) \d+\.\d{2} avg_batch \d+ min_space$`),
  ],
  sigint_h: [/^received control-C on thread 0x[0-9a-f]+$/],
  ping_body: [
    /^count \d+ RTT: min -?\d+ av \d+ ns$/,
    // 1 << k in C int arithmetic, as pkt-gen prints it: an RTT of 2^31 ns or more (a loaded
    // machine once gave one) prints the top bucket as -2147483648
    /^k: -?\d+ \.\. -?\d+$/,
    /^RTT over \d+ packets: min -?\d+ av \d+ ns$/,
    /^RTT percentiles: p50 \d+ p99 \d+ p99\.9 \d+ ns$/,
    /^ignored \d+ frames that were no reply \(too short, bad slot or a timestamp no ping wrote\)$/,
    /^poll error on queue \d+: timeout$/,
  ],
  pong_body: [
    /^poll error on queue \d+: timeout$/,
    /^did not echo \d+ frames: \d+ too long to echo whole, \d+ bad slots, \d+ from a group source MAC \(the echo would flood the switch\)$/,
  ],
};
const STDOUT_LINES = [
  /^(Sending on|Receiving from|Working on) \S+: \d+ queues, \d+ threads and \d+ cpus\.$/,
  /^\S+ -> \S+ \([0-9a-f]{2}(:[0-9a-f]{2}){5} -> [0-9a-f]{2}(:[0-9a-f]{2}){5}\)$/,
  /^(Sent|Received) \d+ packets \d+ bytes \d+ events \d+ bytes each in \d+\.\d{2} seconds\.$/,
  /^(Sent|Received) nothing\.$/,
  new RegExp(String.raw`^Speed: (${NUM}|${RAW})pps Bandwidth: (${NUM}|${RAW})bps \(raw (${NUM}|${RAW})bps\)\. Average batch: \d+\.\d{2} pkts$`),
  // -X
  /^ring 0x[0-9a-f]+ cur +\d+ \[buf +\d+ flags 0x[0-9a-f]{4} len +\d+\]$/,
  /^ {0,4}\d+: ([0-9a-f]{2} ){1,16}([\x20-\x7e]{16})?$/,
];

/** Every line of a run's output, checked against pkt-gen's formats; returns the offending lines. */
function badLines(r: Result): string[] {
  const bad: string[] = [];
  const err = r.stderr.split('\n');
  if (err[err.length - 1] === '') err.pop();
  let prev = '';
  for (const line of err) {
    const m = D_LINE.exec(line);
    if (m) {
      const pats = D_MSGS[m[3]!];
      if (!pats || !pats.some((p) => p.test(m[5]!))) bad.push(`stderr: ${line}`);
    } else if (line.startsWith('\t') && /k: -?\d+ \.\. -?\d+$/.test(prev)) {
      // the histogram's second line
      if (!/^\t( +\d+)*$/.test(line)) bad.push(`stderr: ${line}`);
    } else if (line === '' && /SPECIAL OPTIONS/.test(prev)) {
      // pkt-gen's format there ends in "\n" before D()'s own
    } else {
      bad.push(`stderr: ${line}`);
    }
    prev = line;
  }
  const out = r.stdout.split('\n');
  if (out[out.length - 1] === '') out.pop();
  for (const line of out) if (!STDOUT_LINES.some((p) => p.test(line))) bad.push(`stdout: ${line}`);
  return bad;
}

// ---------------------------------------------------------------------------


/**
 * Runs `fn` against a switch hosted in this process. vale0 is created up
 * front, so the totals of ports that leave are kept for the assertions;
 * `left` says when the server is done with a departed client.
 */
async function withVale0(fn: (env: Record<string, string>, sw: Switch, left: Departures) => Promise<void>): Promise<void> {
  const socket = sockPath();
  const sw = new Switch('vale0');
  const srv = await ValeServer.listen({ socket, switches: [sw] });
  try {
    await fn({ VALE_TS_SOCKET: socket }, sw, departures(srv));
  } finally {
    srv.close();
  }
}

/**
 * A receiver through the switch, run until it has counted every frame the
 * switch delivered to it once the sender(s) are gone, then stopped (SIGINT).
 */
async function receiveAll(rx: Run, sw: Switch, name: string): Promise<Result> {
  const delivered = sw.counters(sw.port(name)!.index)['txFrames']!;
  await rx.waitUntil((s) => reported(s) >= delivered);
  rx.kill('SIGINT');
  return rx.done;
}

test('pipe: tx -n 1000000 -> rx, Received equals Sent, every line in pkt-gen format', async (t) => {
  const name = `vale0:${uname('p')}`;
  // a pipe loses nothing: the receiver ends on the count, not on silence (-W)
  const rx = run(['-i', `${name}}0`, '-f', 'rx', '-n', '1000000']);
  await rx.waitFor(/reading from/);
  const tx = run(['-i', `${name}{0`, '-f', 'tx', '-n', '1000000']);
  const [rt, rr] = await Promise.all([tx.done, rx.done]);
  t.is(rt.code, 0, rt.stderr);
  t.is(rr.code, 0, rr.stderr);
  t.is(count(rt.stdout, 'Sent'), 1000000);
  t.is(count(rr.stdout, 'Received'), 1000000);
  t.regex(rt.stdout, /^Sending on vale0:\S+\{0: 1 queues, 1 threads and 1 cpus\.$/m);
  t.regex(rt.stdout, /^10\.0\.0\.1 -> 10\.1\.0\.1 \(00:00:00:00:00:00 -> ff:ff:ff:ff:ff:ff\)$/m);
  t.regex(rt.stdout, /^Sent 1000000 packets 60000000 bytes \d+ events 60 bytes each in \d+\.\d\d seconds\.$/m);
  t.regex(rr.stdout, /^Receiving from vale0:\S+\}0: 1 queues, 1 threads and 1 cpus\.$/m);
  t.regex(rt.stderr, /^\d{3}\.\d{6} main \[\d+\] using default burst size: 512$/m);
  t.regex(rt.stderr, /^\d{3}\.\d{6} main \[\d+\] Sending 512 packets every {2}0\.000000000 s$/m);
  // pkt-gen's sender_body lines, in its order
  t.regex(rt.stderr, /^\d{3}\.\d{6} sender_body \[1702\] start, fd \d+ main_fd \d+\n\d{3}\.\d{6} sender_body \[1760\] frags 1 frag_size 60$/m);
  t.regex(rt.stderr, /^\d{3}\.\d{6} sender_body \[1848\] flush tail \d+ head \d+ on thread 0x[0-9a-f]+$/m);
  t.deepEqual(badLines(rt), []);
  t.deepEqual(badLines(rr), []);
});

test('vale0 through the switch: Received = Sent - the drops the switch counted', async (t) => {
  await withVale0(async (env, sw, left) => {
    const a = `vale0:${uname('a')}`;
    const b = `vale0:${uname('b')}`;
    const rx = run(['-i', b, '-f', 'rx', '-N', '-T', '100'], env);
    await rx.waitFor(/reading from/);
    t.true(sw.ports().some((p) => p.name === b), 'the receiver is attached before the sender starts');
    const tx = run(['-i', a, '-f', 'tx', '-n', '1000000'], env);
    const rt = await tx.done;
    await left.of(a);
    const rr = await receiveAll(rx, sw, b);
    await left.of(b);
    t.is(rt.code, 0, rt.stderr);
    t.is(rr.code, 0, rr.stderr);
    const sent = count(rt.stdout, 'Sent');
    const received = count(rr.stdout, 'Received');
    const tot = sw.stats().totals;
    const drops = sumDrops(tot);
    t.is(sent, 1000000);
    t.is(tot['rxFrames'], sent, 'the switch took every frame sent');
    t.is(tot['txFrames'], received, 'the receiver counted every frame delivered');
    t.is(received, sent - drops, `received ${received}, sent ${sent}, drops ${JSON.stringify(tot)}`);
    t.deepEqual(badLines(rt), []);
    t.deepEqual(badLines(rr), []);
  });
});

test('-p 2 on a vale-ts port with two rings: one registration per ring, every frame accounted for', async (t) => {
  await withVale0(async (env, sw, left) => {
    const a = `vale0:${uname('pa')}`;
    const b = `vale0:${uname('pb')}`;
    const rx = run(['-i', b, '-f', 'rx', '-N', '-T', '100'], env);
    await rx.waitFor(/reading from/);
    const tx = run(['-i', `${a}@conf:rings=2`, '-f', 'tx', '-p', '2', '-n', '400000'], env);
    const rt = await tx.done;
    await left.of(a, a); // one registration per ring
    const rr = await receiveAll(rx, sw, b);
    await left.of(b);
    t.is(rt.code, 0, rt.stderr);
    t.is(rr.code, 0, rr.stderr);
    t.regex(rt.stdout, /Sending on .*: 2 queues, 2 threads/);
    t.is(rt.stderr.match(/ sender_body \[1848\] flush tail /g)?.length, 2, 'one flush line per thread');
    const sent = count(rt.stdout, 'Sent');
    const received = count(rr.stdout, 'Received');
    const tot = sw.stats().totals;
    const drops = sumDrops(tot);
    t.is(sent, 400000);
    t.is(received, sent - drops);
    t.deepEqual(badLines(rt), []);
  });
});

// How close to the asked rate it gets depends on the CPU it is given: that is
// measured in bench/fairness.bench.ts. What holds at any load: the pacer
// never sends faster than asked (its n-th burst waits for its n-th period),
// and every frame arrives.
test('-R 100000: never faster than asked, every frame arrives', async (t) => {
  const name = `vale0:${uname('r')}`;
  const want = 200000;
  const rx = run(['-i', `${name}}0`, '-f', 'rx', '-n', String(want)]);
  await rx.waitFor(/reading from/);
  const tx = run(['-i', `${name}{0`, '-f', 'tx', '-R', '100000', '-n', String(want)]);
  const [rt, rr] = await Promise.all([tx.done, rx.done]);
  t.is(rt.code, 0, rt.stderr);
  const m = /^Sent (\d+) packets \d+ bytes \d+ events \d+ bytes each in (\d+\.\d+) seconds\.$/m.exec(rt.stdout);
  t.truthy(m, rt.stdout);
  t.is(Number(m![1]), want);
  // the run takes at least want/rate seconds; the line rounds it to 0.01 s
  const bound = want / (want / 100000 - 0.005);
  const rate = want / Number(m![2]);
  t.true(rate <= bound, `rate ${rate} pps is above the asked 100000 (bound ${bound.toFixed(0)} for the rounding)`);
  const speed = /^Speed: (\d+\.\d+) Kpps/m.exec(rt.stdout);
  t.truthy(speed, rt.stdout);
  t.true(Number(speed![1]) <= 100.001, `Speed: ${speed![1]} Kpps is above the asked 100 Kpps`);
  t.regex(rt.stderr, /Sending 333 packets every {2}0\.003330000 s/);
  t.is(count(rr.stdout, 'Received'), want);
  t.deepEqual(badLines(rt), []);
});

test('SIGINT stops tx and rx with the summary; -A -N -B report formats', async (t) => {
  const name = `vale0:${uname('s')}`;
  const rx = run(['-i', `${name}}0`, '-f', 'rx', '-T', '300', '-A']);
  await rx.waitFor(/reading from/);
  const tx = run(['-i', `${name}{0`, '-f', 'tx', '-T', '300', '-N', '-B', '-l', '128']);
  // both have reported once, the sender with frames sent (-N: raw numbers)
  await tx.waitFor(/main_thread \[\d+\] \d+ pps \([1-9]\d* pkts/);
  await rx.waitFor(/main_thread \[\d+\] \S+ [KM]?pps \[avg\/std/);
  tx.kill('SIGINT');
  const rt = await tx.done;
  rx.kill('SIGINT');
  const rr = await rx.done;
  t.is(rt.code, 0, rt.stderr);
  t.is(rr.code, 0, rr.stderr);
  t.regex(rt.stderr, /^\d{3}\.\d{6} sigint_h \[574\] received control-C on thread 0x[0-9a-f]+$/m);
  t.regex(rr.stderr, /sigint_h \[574\] received control-C/);
  t.regex(rt.stderr, /main_thread \[\d+\] \d+ pps \(\d+ pkts \d+ bps in \d+ usec\)/, '-N prints raw numbers');
  t.regex(rr.stderr, /main_thread \[\d+\] \S+ [KM]?pps \[avg\/std \S+ [KM]?\/\S+ [KM]? pps\]\(/, '-A adds the window stats');
  const sent = count(rt.stdout, 'Sent');
  t.true(sent > 0);
  t.true(count(rr.stdout, 'Received') <= sent);
  // -B: raw = 8*bytes + 192 bits per packet; with -N the numbers are plain
  const sp = /^Speed: (\d+) pps Bandwidth: (\d+) bps \(raw (\d+) bps\)/m.exec(rt.stdout);
  t.truthy(sp, rt.stdout);
  const bw = Number(sp![2]);
  const raw = Number(sp![3]);
  t.true(Math.abs(raw / bw - (128 + 24) / 128) < 0.001, `raw/bw ${raw / bw}`);
  t.deepEqual(badLines(rt), []);
  t.deepEqual(badLines(rr), []);
});

test('txseq -> rxseq over a pipe: no gap', async (t) => {
  const name = `vale0:${uname('q')}`;
  const rx = run(['-i', `${name}}0`, '-f', 'rxseq', '-n', '300000']);
  await rx.waitFor(/reading from/);
  const tx = run(['-i', `${name}{0`, '-f', 'txseq', '-n', '300000', '-l', '64']);
  const [rt, rr] = await Promise.all([tx.done, rx.done]);
  t.is(rt.code, 0, rt.stderr);
  t.is(rr.code, 0, rr.stderr);
  t.is(count(rt.stdout, 'Sent'), 300000);
  t.is(count(rr.stdout, 'Received'), 300000);
  t.notRegex(rr.stderr, /Sequence/);
  t.regex(rt.stderr, /txseq_body \[\d+\] start, fd/);
  t.deepEqual(badLines(rr), []);
});

// pkt-gen.c rxseq_body counts every slot as a packet (`cur.pkts++` for each
// slot it walks, NS_MOREFRAG or not), as txseq_body counts what it sends
// (`sent` per slot): with -F 3, each 60-byte slot is a packet of 60 bytes on
// both sides. (rx's receive_packets counts complete packets; rxseq does not.)
// The receiver's -n 200 is met by either count within the 600 slots sent.
test('txseq -F 3 -> rxseq over a pipe: rxseq counts slots as packets, as pkt-gen does', async (t) => {
  const name = `vale0:${uname('qf')}`;
  const rx = run(['-i', `${name}}0`, '-f', 'rxseq', '-n', '200']);
  await rx.waitFor(/reading from/);
  const tx = run(['-i', `${name}{0`, '-f', 'txseq', '-F', '3', '-n', '600']);
  const [rt, rr] = await Promise.all([tx.done, rx.done]);
  t.is(rt.code, 0, rt.stderr);
  t.is(rr.code, 0, rr.stderr);
  t.regex(rt.stdout, /^Sent 600 packets 36000 bytes \d+ events 60 bytes each in /m);
  t.regex(rr.stdout, /^Received 200 packets 12000 bytes \d+ events 60 bytes each in /m);
  t.notRegex(rr.stderr, /Sequence|frags, expected/);
});

test('txseq -> rxseq through vale0 with a stopped receiver: the switch drops, rxseq reports the gap', async (t) => {
  await withVale0(async (env, sw) => {
    const a = `vale0:${uname('a')}`;
    const b = `vale0:${uname('b')}`;
    const rx = run(['-i', b, '-f', 'rxseq'], env);
    await rx.waitFor(/reading from/);
    // while the receiver is stopped its rx ring fills up and the switch drops the rest
    rx.kill('SIGSTOP');
    const tx = run(['-i', a, '-f', 'txseq'], env);
    await tx.waitFor(/txseq_body \[\d+\] start/);
    await until(() => (sw.counters(sw.port(b)!.index)['dropNoSpace'] ?? 0) > 0);
    rx.kill('SIGCONT');
    // it reads the full ring, then the first frame after the drops
    await rx.waitFor(/Sequence GAP/);
    tx.kill('SIGINT');
    const rt = await tx.done;
    rx.kill('SIGINT');
    const rr = await rx.done;
    t.is(rt.code, 0, rt.stderr);
    t.is(rr.code, 0, rr.stderr);
    const sent = count(rt.stdout, 'Sent');
    const received = count(rr.stdout, 'Received');
    const tot = sw.stats().totals;
    t.true(received < sent, `received ${received} of ${sent}`);
    t.true((tot['dropNoSpace'] ?? 0) > 0, 'the switch counted drops');
    t.regex(rr.stderr, /^\d{3}\.\d{6} rxseq_body \[\d+\] Sequence GAP: exp \d+ found \d+$/m);
    t.deepEqual(badLines(rr), []);
    t.deepEqual(badLines(rt), []);
  });
});

test('ping/pong over a pipe: RTT lines, histogram and percentiles', async (t) => {
  const name = `vale0:${uname('g')}`;
  const pong = run(['-i', `${name}}0`, '-f', 'pong']);
  await pong.waitFor(/Ready/);
  const ping = run(['-i', `${name}{0`, '-f', 'ping']);
  await ping.waitFor(/ping_body \[\d+\] k: /);
  ping.kill('SIGINT');
  const rp = await ping.done;
  pong.kill('SIGINT');
  const rq = await pong.done;
  t.is(rp.code, 0, rp.stderr);
  t.is(rq.code, 0, rq.stderr);
  t.regex(rp.stdout, /^Working on vale0:\S+\{0: 1 queues, 1 threads and 1 cpus\.$/m);
  t.regex(rp.stderr, /^\d{3}\.\d{6} ping_body \[\d+\] count \d+ RTT: min \d+ av \d+ ns$/m);
  t.regex(rp.stderr, /^\d{3}\.\d{6} ping_body \[\d+\] k: \d+ \.\. \d+\n\t( +\d+)+$/m);
  t.regex(rp.stderr, /^\d{3}\.\d{6} ping_body \[\d+\] RTT over \d+ packets: min \d+ av \d+ ns\n\d{3}\.\d{6} ping_body \[\d+\] RTT percentiles: p50 \d+ p99 \d+ p99\.9 \d+ ns$/m);
  t.notRegex(rp.stdout, /Sent|Received/, 'no tx/rx summary for ping');
  t.deepEqual(badLines(rp), []);
  t.deepEqual(badLines(rq), []);
});

// The conformance suite once saw pkt-gen-ts ping -n 200 count 199 round trips against
// netmap's C pong -n 200: that pong queues its last reply and exits without a sync. A
// pong -n N here must push all N out, and ping must count exactly the replies it saw
// (it prints that count, where pkt-gen prints its sent count), none lost at the end.
test('ping -n N against pong -n N over a pipe: exactly N round trips, the last reply too', async (t) => {
  const name = `vale0:${uname('q')}`;
  const pong = run(['-i', `${name}}0`, '-f', 'pong', '-n', '100']);
  await pong.waitFor(/Ready/);
  const ping = run(['-i', `${name}{0`, '-f', 'ping', '-n', '100']);
  const [rp, rq] = await Promise.all([ping.done, pong.done]);
  t.is(rp.code, 0, rp.stderr);
  t.is(rq.code, 0, rq.stderr);
  t.regex(rp.stderr, /ping_body \[\d+\] RTT over 100 packets: min \d+ av \d+ ns/);
  t.notRegex(rp.stderr, /timeout/, 'no reply waited for in vain');
  t.deepEqual(badLines(rp), []);
  t.deepEqual(badLines(rq), []);
});

// A pipe peer (or any client of the switch) answering ping with frames it
// forged: too short for a stamp, stamped in the future, nanoseconds past 1e9.
// ping timed each as a round trip (about 2^32 s for the last two), swamping
// the mean; now only the true replies are timed and the rest counted.
test('ping against a peer that forges replies: only true replies are timed, the rest counted', async (t) => {
  const name = `vale0:${uname('h')}`;
  const peer = await open(`${name}}0`);
  t.teardown(() => peer.close());
  const ping = run(['-i', `${name}{0`, '-f', 'ping', '-n', '3']);
  t.teardown(() => ping.kill('SIGKILL'));
  for (;;) {
    const ev = await peer.poll();
    const reqs: Uint8Array[] = [];
    peer.dispatch(64, (f) => {
      reqs.push(f.slice());
    });
    peer.rxsync();
    for (const q of reqs) {
      const future = q.slice();
      new DataView(future.buffer).setUint32(46, new DataView(q.buffer).getUint32(46, true) + 1000, true);
      const badNs = q.slice();
      new DataView(badNs.buffer).setUint32(50, 0xffffffff, true);
      // all in one sync, the true reply last: ping reads the four together
      for (const f of [q.subarray(0, 20), future, badNs, q]) t.true(peer.inject(f));
      peer.txsync();
    }
    if (!ev.rx && ev.hup) break;
  }
  const r = await ping.done;
  t.is(r.code, 0, r.stderr);
  const m = /ping_body \[\d+\] RTT over (\d+) packets: min (\d+) av (\d+) ns/.exec(r.stderr);
  t.truthy(m, r.stderr);
  t.is(Number(m![1]), 3, 'three round trips timed');
  t.true(Number(m![3]) < 60e9, `mean RTT ${m![3]} ns`);
  t.regex(r.stderr, /ping_body \[\d+\] ignored 9 frames that were no reply/);
  t.deepEqual(badLines(r), []);
});

test('ping/pong through vale0', async (t) => {
  const socket = sockPath();
  const srv = await ValeServer.listen({ socket });
  try {
    const env = { VALE_TS_SOCKET: socket };
    const pong = run(['-i', `vale0:${uname('o')}`, '-f', 'pong', '-n', '300'], env);
    await pong.waitFor(/Ready/);
    const ping = run(['-i', `vale0:${uname('i')}`, '-f', 'ping', '-n', '300'], env);
    const [rp, rq] = await Promise.all([ping.done, pong.done]);
    t.is(rp.code, 0, rp.stderr);
    t.is(rq.code, 0, rq.stderr);
    t.regex(rp.stderr, /ping_body \[\d+\] RTT over 300 packets: min \d+ av \d+ ns/);
    t.regex(rp.stderr, /RTT percentiles: p50 \d+ p99 \d+ p99\.9 \d+ ns/);
  } finally {
    srv.close();
  }
});

// Two pongs on a switch and one forged frame from a group source MAC: each
// echo went to that group, so the switch flooded it to the other pong, which
// echoed it back, for ever (and to every other port at each lap). Now pong
// does not echo such a frame, and says so when it ends.
test('two pongs on vale0 do not echo a frame from a group source MAC to each other', async (t) => {
  await withVale0(async (env, _sw, left) => {
    const names = [`vale0:${uname('pa')}`, `vale0:${uname('pb')}`];
    const pongs = names.map((n) => run(['-i', n, '-f', 'pong'], env));
    t.teardown(() => pongs.forEach((p) => p.kill('SIGKILL')));
    await Promise.all(pongs.map((p) => p.waitFor(/Ready/)));
    const me = `vale0:${uname('pm')}`;
    const port = await open(me, { socket: env['VALE_TS_SOCKET']! });
    t.teardown(() => port.close());
    const myMac = '02:00:00:00:00:07';
    const frame = (src: string): Uint8Array =>
      buildFrame({ srcMac: src, dstMac: 'ff:ff:ff:ff:ff:ff', srcIp: '10.0.0.7', dstIp: '10.0.0.8', srcPort: 9, dstPort: 9, len: 60 });
    // the forged frame first, then a ping from this port that both answer
    t.true(port.inject(frame('ff:ff:ff:ff:ff:ff')));
    t.true(port.inject(frame(myMac)));
    port.txsync();
    let answers = 0;
    const toGroup: string[] = [];
    while (answers < 2) {
      await port.poll();
      port.dispatch(64, (f) => {
        if (f[0]! & 1) toGroup.push(Buffer.from(f.subarray(0, 12)).toString('hex'));
        else answers++;
      });
      port.rxsync();
    }
    port.close();
    t.deepEqual(toGroup, [], 'no echo of the forged frame reached this port');
    pongs.forEach((p) => p.kill('SIGINT'));
    const rs = await Promise.all(pongs.map((p) => p.done));
    await Promise.all(names.map((n) => left.of(n)));
    for (const r of rs) {
      t.is(r.code, 0, r.stderr);
      t.regex(r.stderr, /pong_body \[\d+\] did not echo 1 frames: 0 too long to echo whole, 0 bad slots, 1 from a group source MAC/);
      t.deepEqual(badLines(r), []);
    }
  });
});

// A frame longer than a buffer travels as a chain of slots (NS_MOREFRAG on
// all but the last: a guest's jumbo frame, tx -F, a client's chain), and
// the switch delivers it so. pong echoed each slot as a frame of its own:
// the peer got its ping back cut at the buffer size, and the other slots as
// frames headed by payload bytes taken for MACs. Now the echo is the chain.
test('pong through vale-ts answers a frame spread over several slots with one whole frame', async (t) => {
  await withVale0(async (env) => {
    const pong = run(['-i', `vale0:${uname('lp')}`, '-f', 'pong'], env);
    t.teardown(() => pong.kill('SIGKILL'));
    await pong.waitFor(/Ready/);
    const peer = await open(`vale0:${uname('lq')}`, { socket: env['VALE_TS_SOCKET']! });
    t.teardown(() => peer.close());
    const echo = (f: Uint8Array): Buffer => {
      const e = Buffer.from(f);
      e.set(f.subarray(6, 12), 0);
      e.set(f.subarray(0, 6), 6);
      e.set(f.subarray(30, 34), 26);
      e.set(f.subarray(26, 30), 30);
      return e;
    };
    const bs = peer.bufSize;
    const long = patternFrame(2 * bs + 904);
    const short = patternFrame(60);
    // the long one in three slots, then the short one
    sendChain(peer, [long.subarray(0, bs), long.subarray(bs, 2 * bs), long.subarray(2 * bs)]);
    sendChain(peer, [short]);
    // the short one's echo comes after whatever the long one brought back
    const got: Buffer[] = [];
    while (!got.some((f) => f.length === 60)) {
      const ev = await peer.poll({ rx: true });
      t.false(ev.hup);
      peer.dispatch(64, (f) => got.push(Buffer.from(f)));
    }
    t.deepEqual(got.map((f) => f.length), [long.length, 60], 'one echo per frame, whole');
    t.deepEqual(got[0], echo(long), 'the long frame echoed byte for byte, MACs and addresses swapped');
    t.deepEqual(got[1], echo(short));
    pong.kill('SIGINT');
    const r = await pong.done;
    t.is(r.code, 0, r.stderr);
    t.notRegex(r.stderr, /did not echo/);
    t.deepEqual(badLines(r), []);
  });
});

// A pipe peer publishes a chain in two parts: pong must hold the first
// slots (poll wakes it for whole frames only) and echo the chain once its
// last slot came, never the parts as frames.
test('pong over a pipe holds a chain until its last slot comes, then echoes it whole', async (t) => {
  const name = `vale0:${uname('hc')}`;
  const peer = await open(`${name}{0`);
  t.teardown(() => peer.close());
  const pong = run(['-i', `${name}}0`, '-f', 'pong']);
  t.teardown(() => pong.kill('SIGKILL'));
  await pong.waitFor(/Ready/);
  const got: Buffer[] = [];
  const until = async (n: number): Promise<void> => {
    while (got.length < n) {
      const ev = await peer.poll({ rx: true });
      t.false(ev.hup);
      peer.dispatch(64, (f) => got.push(Buffer.from(f)));
    }
  };
  const bs = peer.bufSize;
  const first = patternFrame(60, 1);
  const long = patternFrame(2 * bs + 100, 2);
  const last = patternFrame(60, 3);
  // a frame, then two slots of the chain: pong echoes the frame and holds the slots
  sendChain(peer, [first]);
  sendChain(peer, [long.subarray(0, bs), long.subarray(bs, 2 * bs)], true);
  await until(1);
  // the chain's last slot, then a frame whose echo ends the wait
  sendChain(peer, [long.subarray(2 * bs)]);
  sendChain(peer, [last]);
  while (!got.some((f) => f.length === 60 && f[44] === last[44])) await until(got.length + 1);
  t.deepEqual(got.map((f) => f.length), [60, long.length, 60], 'three echoes: the chain as one frame');
  t.deepEqual(got[1]!.subarray(34), Buffer.from(long.subarray(34)), 'the chain\'s bytes past the fields pong swaps, as sent');
  pong.kill('SIGINT');
  const r = await pong.done;
  t.is(r.code, 0, r.stderr);
  t.notRegex(r.stderr, /did not echo/);
  t.deepEqual(badLines(r), []);
});

test('worker threads: the thread body in a worker gives the same counts', async (t) => {
  const name = `vale0:${uname('w')}`;
  const env = { PKTGEN_TS_WORKERS: '1' };
  const rx = run(['-i', `${name}}0`, '-f', 'rx', '-n', '200000'], env);
  await rx.waitFor(/reading from/);
  const tx = run(['-i', `${name}{0`, '-f', 'tx', '-n', '200000', '-l', '1514', '-a', '0'], env);
  const [rt, rr] = await Promise.all([tx.done, rx.done]);
  t.is(rt.code, 0, rt.stderr);
  t.is(rr.code, 0, rr.stderr);
  t.is(count(rt.stdout, 'Sent'), 200000);
  t.is(count(rr.stdout, 'Received'), 200000);
  t.regex(rr.stdout, /^Received 200000 packets 302800000 bytes/m);
});

test('-X dumps each packet; -C prints the deprecation and sizes the rings; -v lists them', async (t) => {
  const name = `vale0:${uname('x')}`;
  const rx = run(['-i', `${name}}0`, '-f', 'rx', '-n', '2', '-X', '-C', '256', '-v']);
  await rx.waitFor(/reading from/);
  const tx = run(['-i', `${name}{0`, '-f', 'tx', '-n', '2', '-X']);
  const [rt, rr] = await Promise.all([tx.done, rx.done]);
  t.is(rt.code, 0, rt.stderr);
  t.is(rr.code, 0, rr.stderr);
  t.regex(rr.stderr, /main \[\d+\] WARNING: the 'C' option is deprecated, use the '\+conf:' libnetmap option instead/);
  t.regex(rr.stderr, /main \[\d+\] {4}RX0 at offset 0x[0-9a-f]+ slots 256$/m);
  t.regex(rr.stderr, /main \[3301\] nifp at offset \d+ ntxqs 1 nrxqs 1 memid 0$/m, 'a userspace region has no kernel allocator id');
  t.is(rr.stderr.match(/main \[33(06|11)\]/g)?.length, 2, 'one TX and one RX ring: a pipe has no host rings');
  for (const r of [rt, rr]) {
    t.is(r.stdout.match(/^ring 0x[0-9a-f]+ cur +\d+ \[buf +\d+ flags 0x[0-9a-f]{4} len +60\]$/gm)?.length, 2, r.stdout);
    t.regex(r.stdout, /^ {4}0: ff ff ff ff ff ff 00 00 00 00 00 00 08 00 45 10 \.\.\.\.\.\.\.\.\.\.\.\.\.\.E\.$/m);
    t.regex(r.stdout, /^ {3}48: ([0-9a-f]{2} ){12}$/m, 'a short last line has no text column, as in pkt-gen');
  }
  t.deepEqual(badLines(rt), []);
  t.deepEqual(badLines(rr), []);
});

// `pkt-gen-ts ... 2>&1 | reader` with a reader that lags: node opens a
// stdout pipe non-blocking, so a line that finds no room is queued, and an
// exit at once dropped it. Now the exit waits until the pipe took it.
test('output into a full pipe is not dropped at the exit: it waits for room', async (t) => {
  t.timeout(60_000);
  const pipe = fullPipe(t);
  const p = spawn(process.execPath, [bin, '-i', 'vale0:x', '-f', 'bogus'], { stdio: ['ignore', pipe.wr, pipe.wr] });
  t.teardown(() => p.kill('SIGKILL'));
  pipe.closeWriter();
  let code: number | null | undefined;
  const exited = new Promise<void>((r) => p.on('exit', (c) => r(void (code = c))));
  // the error line is queued for room (or, as before, the process is gone)
  await until(() => code !== undefined || epollWaitsToWrite(p.pid!, 2));
  const [text] = await Promise.all([pipe.read().ended, exited]);
  t.is(code, 1);
  t.is(text.slice(0, pipe.filled), '.'.repeat(pipe.filled), 'what was in the pipe came first');
  t.is(text.slice(pipe.filled), "pkt-gen-ts: -f: unknown function 'bogus' (expected one of rx, tx, ping, pong, txseq, rxseq)\nRun 'pkt-gen-ts -h' for the list of options.\n");
});

test('bad flags and impossible combinations: a clear error on stderr, exit status 1', async (t) => {
  const socket = sockPath();
  const srv = await ValeServer.listen({ socket });
  try {
    const pipe = `vale0:${uname('e')}`;
    const cases: [string[], RegExp, Record<string, string>?][] = [
      [['-f', 'tx'], /missing -i/],
      [['-i', 'vale0:x', '-l', '10'], /-l: invalid packet length '10'/],
      [['-i', 'vale0:x', '-l', '60', '-l', '100'], /minimum packet length 100 is larger/],
      [['-i', 'vale0:x', '-f', 'bogus'], /-f: unknown function 'bogus'/],
      [['-i', 'vale0:x', '-b', '-1'], /-b: invalid burst/],
      [['-i', 'vale0:x', '-n', '-5'], /-n: invalid count/],
      [['-i', 'vale0:x', '-d', '10.0.0.300'], /-d: /],
      [['-i', 'vale0:x', '-s', '10.0.0.1:99999'], /-s: /],
      [['-i', 'vale0:x', '-D', 'zz:00:00:00:00:00'], /-D: /],
      [['-i', 'vale0:x', '-H', '5'], /-H: invalid virtio-net header length '5'/],
      [['-i', 'vale0:x', '-C', '1,x'], /-C: invalid ring configuration/],
      [['-i', 'vale0:x', '-p', '0'], /-p: invalid thread count/],
      [['-i', 'vale0:x', '-c', '999'], /-c: 999 cpus is too high/],
      [['-i', 'vale0:x', '-T', '0'], /-T: invalid report interval/],
      [['-i', 'vale0:x', '-Q'], /unknown option -Q/],
      [['-i', 'vale0:x', '-l'], /option -l requires an argument/],
      [['-i', 'vale0:x', 'extra'], /unexpected argument 'extra'/],
      [['-i', 'vale0:x', '-f', 'ping', '-p', '2'], /-p: ping runs on a single thread only/],
      [['-i', 'tap0', '-f', 'tx'], /tap ports/],
      [['-i', 'null', '-f', 'tx'], /null \(dummy send\) port is not supported/],
      [['-i', 'vale0:x', '-f', 'tx', '-I'], /-I: indirect buffers \(NS_INDIRECT\) are not supported/],
      [['-i', `${pipe}{0`, '-f', 'tx', '-H', '10'], /-H 10: virtio-net headers exist only on kernel netmap ports/],
      [['-i', `${pipe}{1`, '-f', 'tx', '-p', '2'], /-p 2: threads need a ring each/],
      [['-i', 'vale0:x', '-f', 'tx', '-p', '2'], /-p 2: vale0:x has only 1 tx rings \(give the port 2 rings: -i vale0:x@conf:rings=2/],
      [['-i', `${pipe}{2`, '-f', 'tx', '-l', '3000'], /-l 3000: 3000-byte frames do not fit the port's 2048-byte buffers/],
      [['-i', `${pipe}{3`, '-f', 'txseq', '-l', '44'], /too short for a sequence number/],
      [['-i', `${pipe}{4`, '-f', 'tx', '-l', '100', '-l', '30'], /random sizes start at 42 bytes/],
      [['-i', `${pipe}{5`, '-f', 'tx', '-P', '/nonexistent.pcap'], /-P: cannot read pcap file/],
      [['-i', 'vale0:x', '-f', 'tx', '-C', '64', '-i', 'vale0:y@conf:slots=128'], /-C and @conf: .* both give the ring configuration/],
      [['-i', 'eth0', '-f', 'tx'], /cannot open netmap:eth0: .*host interface/, { NETMAP_BACKEND: 'user' }],
      [['-i', 'vale0:x', '-f', 'tx'], /cannot open vale0:x: .*vale-ts is not running/, { VALE_TS_SOCKET: path.join(os.tmpdir(), `none-${process.pid}.sock`) }],
    ];
    // a few at a time: each is a Node process
    const results: Result[] = [];
    for (let i = 0; i < cases.length; i += 6) {
      results.push(...(await Promise.all(cases.slice(i, i + 6).map(([args, , env]) => run(args, { VALE_TS_SOCKET: socket, ...env }).done))));
    }
    cases.forEach(([args, re], i) => {
      const r = results[i]!;
      t.is(r.code, 1, `${args.join(' ')}: exit status`);
      t.regex(r.stderr, re, args.join(' '));
      t.regex(r.stderr, /^pkt-gen-ts: /m, `${args.join(' ')}: message prefixed`);
      t.notRegex(r.stderr, /^\s+at /m, `${args.join(' ')}: no stack trace`);
      t.is(r.stdout.match(/^(Sent|Received) \d+/m), null);
    });
  } finally {
    srv.close();
  }
});

// pkt-gen.c system_ncpus() is sysconf(_SC_NPROCESSORS_ONLN): the CPUs online,
// whatever the affinity mask. Under `taskset -c 0` pkt-gen still takes
// `-c <all of them>` and says `running on N cpus (have N)`; -c 0 means them all.
test('-c and "have N cpus" count the CPUs online, not the affinity mask, as pkt-gen', async (t) => {
  const online = os.cpus().length;
  const args = ['-i', 'vale0:x', '-f', 'tx', '-c', String(online)];
  const child = spawn('taskset', ['-c', '0', process.execPath, bin, ...args], {
    env: { ...process.env, VALE_TS_SOCKET: path.join(os.tmpdir(), `none-${process.pid}.sock`) },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  // it stops at the open (no vale-ts there), after the startup lines
  t.is(code, 1, stderr);
  t.notRegex(stderr, /too high/, stderr);
  t.regex(stderr, new RegExp(`main \\[\\d+\\] running on ${online} cpus \\(have ${online}\\)`), stderr);
});

/** Frames a pkt-gen-ts sender puts into a pipe, read back in this process. */
async function framesFrom(args: string[], want: number): Promise<{ frames: Uint8Array[]; result: Result }> {
  const name = `vale0:${uname('f')}`;
  const port = await open(`${name}}0`);
  const frames: Uint8Array[] = [];
  try {
    const tx = run(['-i', `${name}{0`, ...args, '-n', String(want)]);
    // until all came, or the sender closed its end with fewer (the test then says how many)
    while (frames.length < want) {
      const ev = await port.poll();
      port.dispatch(want - frames.length, (f) => {
        frames.push(f.slice());
      });
      port.rxsync();
      if (!ev.rx && ev.hup) break;
    }
    return { frames, result: await tx.done };
  } finally {
    port.close();
  }
}

const be16 = (f: Uint8Array, o: number): number => (f[o]! << 8) | f[o + 1]!;
const ip4 = (f: Uint8Array, o: number): string => `${f[o]}.${f[o + 1]}.${f[o + 2]}.${f[o + 3]}`;

test('-s/-d ranges: ports then addresses walk like an odometer, checksums stay right', async (t) => {
  const { frames, result } = await framesFrom(['-f', 'tx', '-s', '10.0.0.1:1000-10.0.0.2:1001', '-d', '10.1.0.5:7-10.1.0.6:8'], 40);
  t.is(result.code, 0, result.stderr);
  t.is(frames.length, 40);
  t.true(frames.every((f) => verifyFrameChecksums(f)), 'IPv4 header and UDP checksums');
  const walk = frames.slice(0, 17).map((f) => `${ip4(f, 26)}:${be16(f, 34)}>${ip4(f, 30)}:${be16(f, 36)}`);
  t.deepEqual(walk.slice(0, 5), [
    '10.0.0.1:1000>10.1.0.5:7',
    '10.0.0.1:1001>10.1.0.5:7',
    '10.0.0.2:1000>10.1.0.5:7',
    '10.0.0.2:1001>10.1.0.5:7',
    '10.0.0.1:1000>10.1.0.5:8',
  ]);
  t.is(walk[16], walk[0], 'the walk wraps after 2*2*2*2 frames');
  t.regex(result.stderr, /main \[\d+\] --- SPECIAL OPTIONS: copy\n\n/);
});

test('txseq with random sizes: lengths in [min, max), sequence numbers, checksums', async (t) => {
  const { frames, result } = await framesFrom(['-f', 'txseq', '-l', '200', '-l', '50'], 500);
  t.is(result.code, 0, result.stderr);
  t.is(frames.length, 500);
  t.true(frames.every((f) => f.length >= 50 && f.length < 200));
  t.true(new Set(frames.map((f) => f.length)).size > 50, 'sizes vary per frame');
  t.true(frames.every((f) => verifyFrameChecksums(f)));
  t.true(frames.every((f) => frameLayout(f).len === f.length), 'IP and UDP lengths follow the size');
  t.deepEqual(
    frames.map((f) => (be16(f, 42) << 16) | be16(f, 44)),
    frames.map((_, i) => i),
  );
});

test('-6 -z: IPv6 frames with random source address and port, checksums right', async (t) => {
  const { frames, result } = await framesFrom(['-f', 'tx', '-6', '-z', '-l', '100'], 64);
  t.is(result.code, 0, result.stderr);
  t.is(frames.length, 64);
  t.is(be16(frames[0]!, 12), 0x86dd);
  t.true(frames.every((f) => verifyFrameChecksums(f)));
  t.true(new Set(frames.map((f) => be16(f, 54))).size > 32, 'source ports vary');
  t.true(new Set(frames.map((f) => be16(f, 36))).size > 32, 'the varied address group changes');
});

test('-F: frames larger than a buffer go over several slots (NS_MOREFRAG) on a pipe; rx counts whole packets', async (t) => {
  const name = `vale0:${uname('m')}`;
  const rx = run(['-i', `${name}}0`, '-f', 'rx', '-n', '20000']);
  await rx.waitFor(/reading from/);
  const tx = run(['-i', `${name}{0`, '-f', 'tx', '-n', '20000', '-l', '5000', '-F', '2']);
  const [rt, rr] = await Promise.all([tx.done, rx.done]);
  t.is(rt.code, 0, rt.stderr);
  t.is(rr.code, 0, rr.stderr);
  t.regex(rt.stdout, /^Sent 20000 packets 100000000 bytes \d+ events 5000 bytes each/m);
  t.regex(rr.stdout, /^Received 20000 packets 100000000 bytes \d+ events 5000 bytes each/m);
});

test('-F through vale0: multi-slot frames cross the switch whole, counted once', async (t) => {
  await withVale0(async (env, sw, left) => {
    const a = `vale0:${uname('fa')}`;
    const b = `vale0:${uname('fb')}`;
    const rx = run(['-i', b, '-f', 'rx', '-N', '-T', '100'], env);
    await rx.waitFor(/reading from/);
    const tx = run(['-i', a, '-f', 'tx', '-n', '20000', '-l', '5000', '-F', '3', '-R', '20000'], env);
    const rt = await tx.done;
    await left.of(a);
    const rr = await receiveAll(rx, sw, b);
    await left.of(b);
    t.is(rt.code, 0, rt.stderr);
    t.is(rr.code, 0, rr.stderr);
    const tot = sw.stats().totals;
    t.is(tot['rxFrames'], 20000, 'the switch counts frames, not slots');
    t.is(tot['dropFrag'] ?? 0, 0);
    t.regex(rr.stdout, new RegExp(`^Received ${tot['txFrames']} packets ${tot['txBytes']} bytes \\d+ events 5000 bytes each`, 'm'));
  });
});

test('-P: the first packet of a pcap file is sent as is', async (t) => {
  const frame = buildFrame({ srcMac: '02:00:00:00:00:01', dstMac: '02:00:00:00:00:02', srcIp: '192.168.1.1', dstIp: '192.168.1.2', srcPort: 53, dstPort: 5353, len: 70 });
  const file = path.join(os.tmpdir(), `pgt-${process.pid}-${uniq++}.pcap`);
  const hdr = Buffer.alloc(24 + 16);
  hdr.writeUInt32LE(0xa1b2c3d4, 0);
  hdr.writeUInt16LE(2, 4);
  hdr.writeUInt16LE(4, 6);
  hdr.writeUInt32LE(65535, 16);
  hdr.writeUInt32LE(1, 20);
  hdr.writeUInt32LE(frame.length, 24 + 8);
  hdr.writeUInt32LE(frame.length, 24 + 12);
  writeFileSync(file, Buffer.concat([hdr, frame]));
  try {
    const { frames, result } = await framesFrom(['-f', 'tx', '-P', file], 5);
    t.is(result.code, 0, result.stderr);
    t.is(frames.length, 5);
    for (const f of frames) t.deepEqual([...f], [...frame]);
    t.regex(result.stdout, /^Sent 5 packets 350 bytes \d+ events 70 bytes each/m);
  } finally {
    unlinkSync(file);
  }
});

test('-h prints the usage and exits 0', async (t) => {
  const r = await run(['-h']).done;
  t.is(r.code, 0);
  t.regex(r.stderr, /^Usage:\npkt-gen-ts -i port \[options\]/);
});
