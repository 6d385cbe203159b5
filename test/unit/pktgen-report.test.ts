import test from 'ava';
import { parseIpRange } from '../../tools/pkt-gen/net.js';
import {
  LINE,
  PpsWindow,
  RttStats,
  finalSummary,
  formatFixed,
  intervalPps,
  logLine,
  msb64,
  norm,
  periodicReport,
  pingCountMessage,
  pingFinalMessage,
  pingHistogramMessage,
  rangeMessage,
  rttPercentilesMessage,
  senderFrags,
  sendingEveryMessage,
  startupLines,
} from '../../tools/pkt-gen/report.js';

const REPORT_RE =
  /^\d{3}\.\d{6} main_thread \[\d+\] \d+\.\d{3} [KMGT]?pps \(\d+\.\d{3} [KMGT]?pkts \d+\.\d{3} [KMGT]?bps in \d+ usec\) \d+\.\d{2} avg_batch \d+ min_space$/;
const REPORT_RE_A =
  /^\d{3}\.\d{6} main_thread \[\d+\] \d+\.\d{3} [KMGT]?pps \[avg\/std \d+\.\d{3} [KMGT]?\/\d+\.\d{3} [KMGT]? pps\]\(\d+\.\d{3} [KMGT]?pkts \d+\.\d{3} [KMGT]?bps in \d+ usec\) \d+\.\d{2} avg_batch \d+ min_space$/;
const REPORT_RE_N =
  /^\d{3}\.\d{6} main_thread \[\d+\] \d+ pps \(\d+ pkts \d+ bps in \d+ usec\) \d+\.\d{2} avg_batch \d+ min_space$/;

/** One interval's figures as main_thread derives them (60-byte frames unless given). */
function fig(pkts: number, usec: number, events: number, minSpace: number, bytesPerPkt = 60, framing = 0) {
  return {
    pps: intervalPps(pkts, usec),
    pkts,
    bits: pkts * (bytesPerPkt * 8 + framing),
    usec,
    avgBatch: events ? pkts / events : 0,
    minSpace,
  };
}

// 1700000219.401550 s: tv_sec % 1000 = 219
const T0 = 1700000219401.55;

test('norm(): %.3f with K/M/G/T, or %.0f unnormalised, space before the unit', (t) => {
  t.is(norm(14880000), '14.880 M');
  t.is(`${norm(14880000)}pps`, '14.880 Mpps');
  t.is(norm(10), '10.000 ');
  t.is(`${norm(10)}pps`, '10.000 pps');
  t.is(norm(0), '0.000 ');
  t.is(norm(999), '999.000 ');
  t.is(norm(1000), '1.000 K');
  t.is(norm(999999.9), '1000.000 K', 'no unit bump after rounding, as in C');
  t.is(norm(1.313e12), '1.313 T');
  t.is(norm(1.5e15), '1500.000 T');
  t.is(norm(14880000, false), '14880000 ');
  t.is(`${norm(10, false)}pps`, '10 pps');
  t.is(norm(2.5, false), '2 ', 'ties to even like printf');
});

test('formatFixed matches glibc printf rounding', (t) => {
  t.is(formatFixed(0.0625, 3), '0.062');
  t.is(formatFixed(0.125, 2), '0.12');
  t.is(formatFixed(0.375, 2), '0.38');
  t.is(formatFixed(2.5, 0), '2');
  t.is(formatFixed(3.5, 0), '4');
  t.is(formatFixed(1.005, 2), '1.00', '1.005 is below the tie in binary');
  t.is(formatFixed(511.505, 2), '511.50');
  t.is(formatFixed(1e22, 0), '10000000000000000000000');
  t.is(formatFixed(-0.0001, 3), '-0.000');
  t.is(formatFixed(12.3456, 2), '12.35');
  t.is(formatFixed(Infinity, 2), 'inf');
  t.is(formatFixed(NaN, 3), '-nan');
});

test('logLine: SSS.UUUUUU func [line] msg', (t) => {
  t.is(logLine('main', LINE.MAIN_INTERFACE, 'interface is vale0:01', T0), '219.401550 main [3036] interface is vale0:01');
  t.is(logLine('main', 3159, 'using default burst size: 512', new Date(1700000219406)), '219.406000 main [3159] using default burst size: 512');
  t.is(logLine('f', 1, 'x', 1700000005000.25), '005.000250 f [1] x');
  t.is(logLine('f', 1, 'x', 1700000000999.9999), '001.000000 f [1] x', 'rounding carries into seconds');
  t.regex(logLine('sigint_h', LINE.SIGINT_H, 'received control-C on thread 0x1'), /^\d{3}\.\d{6} sigint_h \[574\] received control-C on thread 0x1$/);
});

test('line numbers from the literal examples', (t) => {
  t.is(LINE.MAIN_THREAD_REPORT, 2781);
  t.is(LINE.SENDER_START, 1702);
  t.is(LINE.RECEIVER_WAITING, 1954);
  t.is(LINE.MAIN_INTERFACE, 3036);
  t.is(LINE.MAIN_DEFAULT_BURST, 3159);
  t.is(LINE.MAIN_RUNNING_ON, 3167);
  t.is(LINE.MAIN_SENDING_EVERY, 3369);
  t.is(LINE.START_THREADS_WAIT, 2695);
  t.is(LINE.START_THREADS_READY, 2697);
  t.is(LINE.EXTRACT_IP_RANGE, 477);
  t.is(LINE.SIGINT_H, 574);
});

test('intervalPps rounds like pkt-gen', (t) => {
  t.is(intervalPps(1086462, 1008845), 1076936, "integer division truncates 1076936.997");
  t.is(intervalPps(1, 2000000), 1, '0.5 rounds up');
  t.is(intervalPps(1, 3000000), 0);
  t.is(intervalPps(5, 0), 0);
  t.is(intervalPps(33, 1001053), 33);
});

test('periodic report reproduces the literal examples', (t) => {
  const tx = logLine('main_thread', LINE.MAIN_THREAD_REPORT, periodicReport(fig(1086462, 1008845, 2122, 99999)), 1700000221943.035);
  t.is(tx, '221.943035 main_thread [2781] 1.077 Mpps (1.086 Mpkts 516.930 Mbps in 1008845 usec) 512.00 avg_batch 99999 min_space');
  t.regex(tx, REPORT_RE);
  t.is(
    periodicReport(fig(429277, 1026435, 839, 1)),
    '418.221 Kpps (429.277 Kpkts 200.746 Mbps in 1026435 usec) 511.65 avg_batch 1 min_space',
  );
  t.is(
    periodicReport(fig(26307600, 1001078, 51431, 99999)),
    '26.279 Mpps (26.308 Mpkts 12.614 Gbps in 1001078 usec) 511.51 avg_batch 99999 min_space',
  );
  // netmap pipe, 2048-byte frames: Tbps
  const pipe = periodicReport(fig(80203000, 1001040, 156807, 1, 2048));
  t.regex(pipe, /^80\.1\d\d Mpps \(80\.203 Mpkts 1\.31\d Tbps in 1001040 usec\) 511\.\d\d avg_batch 1 min_space$/);
});

test('periodic report shapes: many magnitudes, -A and -N', (t) => {
  const w = new PpsWindow();
  for (const [pkts, usec, events] of [
    [0, 1000000, 0],
    [5, 1000123, 5],
    [33000, 1001053, 11000],
    [26308000, 1001078, 51431],
    [80203000, 1001040, 156807],
  ] as const) {
    const f = fig(pkts, usec, events, 99999);
    t.regex(logLine('main_thread', LINE.MAIN_THREAD_REPORT, periodicReport(f)), REPORT_RE);
    t.regex(logLine('main_thread', LINE.MAIN_THREAD_REPORT, periodicReport(f, false)), REPORT_RE_N);
    if (pkts > 0) {
      const line = logLine('main_thread', LINE.MAIN_THREAD_REPORT, periodicReport({ ...f, ppsAvgStd: w.push(f.pps) }));
      t.regex(line, REPORT_RE_A);
    }
  }
  t.is(
    periodicReport(fig(1086462, 1008845, 2122, 99999), false),
    '1076936 pps (1086462 pkts 516929518 bps in 1008845 usec) 512.00 avg_batch 99999 min_space',
  );
  t.is(
    periodicReport({ ...fig(1000, 1000000, 10, 5), ppsAvgStd: { avg: 1500, std: 500 } }),
    '1.000 Kpps [avg/std 1.500 K/500.000  pps](1.000 Kpkts 480.000 Kbps in 1000000 usec) 100.00 avg_batch 5 min_space',
  );
  // -B adds 24 bytes per packet to the bit rate
  t.regex(periodicReport(fig(1000000, 1000000, 1000, 1, 60, 192)), /\(1\.000 Mpkts 672\.000 Mbps in/);
});

test('PpsWindow: mean/std over the non-zero samples of the last 15', (t) => {
  const w = new PpsWindow();
  t.deepEqual(w.push(100), { avg: 100, std: 0 });
  t.deepEqual(w.push(0), { avg: 100, std: 0 });
  t.deepEqual(w.push(200), { avg: 150, std: 50 });
  for (let i = 0; i < 15; i++) w.push(1000);
  t.deepEqual(w.push(1000), { avg: 1000, std: 0 }, 'old samples fall out of the window');
  const z = new PpsWindow().push(0);
  t.true(Number.isNaN(z.avg), 'no samples: 0/0 like pkt-gen');
});

test('final summary reproduces the literal examples exactly', (t) => {
  t.deepEqual(
    finalSummary({ kind: 'Sent', pkts: 11593728, bytes: 695623680, events: 22644, seconds: 9.393877, framingBits: 0 }),
    [
      'Sent 11593728 packets 695623680 bytes 22644 events 60 bytes each in 9.39 seconds.',
      'Speed: 1.234 Mpps Bandwidth: 592.406 Mbps (raw 592.406 Mbps). Average batch: 512.00 pkts',
    ],
  );
  t.deepEqual(
    finalSummary({ kind: 'Received', pkts: 7155382, bytes: 429322920, events: 13978, seconds: 10.382518, framingBits: 0 }),
    [
      'Received 7155382 packets 429322920 bytes 13978 events 60 bytes each in 10.38 seconds.',
      'Speed: 689.176 Kpps Bandwidth: 330.804 Mbps (raw 330.804 Mbps). Average batch: 511.90 pkts',
    ],
  );
  t.deepEqual(
    finalSummary({ kind: 'Sent', pkts: 989478415, bytes: 2026451793920, events: 1934463, seconds: 12.383185, framingBits: 0 }),
    [
      'Sent 989478415 packets 2026451793920 bytes 1934463 events 2048 bytes each in 12.38 seconds.',
      'Speed: 79.905 Mpps Bandwidth: 1.309 Tbps (raw 1.309 Tbps). Average batch: 511.50 pkts',
    ],
  );
  // -B: raw adds 24 bytes per packet (#536 shape)
  t.is(
    finalSummary({ kind: 'Sent', pkts: 143070000, bytes: 143070000 * 60, events: 667210, seconds: 10, framingBits: 192 })[1],
    'Speed: 14.307 Mpps Bandwidth: 6.867 Gbps (raw 9.614 Gbps). Average batch: 214.43 pkts',
  );
});

test('final summary: nothing, -N, zero seconds', (t) => {
  t.deepEqual(finalSummary({ kind: 'Sent', pkts: 0, bytes: 0, events: 0, seconds: 3, framingBits: 0 }), ['Sent nothing.']);
  t.deepEqual(finalSummary({ kind: 'Received', pkts: 0, bytes: 0, events: 0, seconds: 0, framingBits: 0 }), ['Received nothing.']);
  t.is(
    finalSummary({ kind: 'Sent', pkts: 11593728, bytes: 695623680, events: 22644, seconds: 9.393877, framingBits: 0 }, false)[1],
    'Speed: 1234179 pps Bandwidth: 592406036 bps (raw 592406036 bps). Average batch: 512.00 pkts',
  );
  const z = finalSummary({ kind: 'Sent', pkts: 10, bytes: 600, events: 1, seconds: 0, framingBits: 0 });
  t.is(z[0], 'Sent 10 packets 600 bytes 1 events 60 bytes each in 0.00 seconds.');
  t.is(z[1], 'Speed: 10.000 Mpps Bandwidth: 4.800 Gbps (raw 4.800 Gbps). Average batch: 10.00 pkts');
});

test('startup lines', (t) => {
  t.deepEqual(
    startupLines({ func: 'tx', iface: 'vale0:01', queues: 1, threads: 1, cpus: 1, srcName: '10.0.0.1', dstName: '10.1.0.1', srcMacName: '00:00:00:00:00:00', dstMacName: 'ff:ff:ff:ff:ff:ff' }),
    ['Sending on vale0:01: 1 queues, 1 threads and 1 cpus.', '10.0.0.1 -> 10.1.0.1 (00:00:00:00:00:00 -> ff:ff:ff:ff:ff:ff)'],
  );
  t.deepEqual(startupLines({ func: 'rx', iface: 'vale0:02', queues: 1, threads: 1, cpus: 1 }), [
    'Receiving from vale0:02: 1 queues, 1 threads and 1 cpus.',
  ]);
  t.deepEqual(startupLines({ func: 'rxseq', iface: 'netmap:eth0', queues: 4, threads: 2, cpus: 2 }), [
    'Receiving from netmap:eth0: 4 queues, 2 threads and 2 cpus.',
  ]);
  t.deepEqual(startupLines({ func: 'ping', iface: 'vale0:1', queues: 1, threads: 1, cpus: 1 }), ['Working on vale0:1: 1 queues, 1 threads and 1 cpus.']);
  t.deepEqual(startupLines({ func: 'pong', iface: 'vale0:1', queues: 1, threads: 1, cpus: 1 }), ['Working on vale0:1: 1 queues, 1 threads and 1 cpus.']);
  t.is(startupLines({ func: 'txseq', iface: 'v', queues: 1, threads: 1, cpus: 1, srcName: '10.0.0.1:5-10.0.0.9', dstName: '10.1.0.1', srcMacName: 'a:b:c:d:e:f', dstMacName: 'ff:ff:ff:ff:ff:ff' })[1], '10.0.0.1:5-10.0.0.9 -> 10.1.0.1 (a:b:c:d:e:f -> ff:ff:ff:ff:ff:ff)');
});

test('other startup D() lines reproduce the tx example', (t) => {
  t.is(logLine('extract_ip_range', LINE.EXTRACT_IP_RANGE, rangeMessage(parseIpRange('10.0.0.1')), 1700000219428.071), '219.428071 extract_ip_range [477] range is 10.0.0.1:1234 to 10.0.0.1:1234');
  t.is(rangeMessage(parseIpRange('10.1.0.1')), 'range is 10.1.0.1:1234 to 10.1.0.1:1234');
  t.is(rangeMessage(parseIpRange('3@[fd00::1]:5-[fd00::9]:9', 6)), 'range is 3@[fd00::1]:5 to 3@[fd00::9]:9');
  t.is(logLine('main', LINE.MAIN_SENDING_EVERY, sendingEveryMessage(512, 0), 1700000219907.484), '219.907484 main [3369] Sending 512 packets every  0.000000000 s');
  t.is(sendingEveryMessage(3, 3_000_000), 'Sending 3 packets every  0.003000000 s');
  t.is(sendingEveryMessage(1, 1_500_000_000), 'Sending 1 packets every  1.500000000 s');
  t.is(logLine('start_threads', LINE.START_THREADS_WAIT, 'Wait 0 secs for phy reset', 1700000219915.417), '219.915417 start_threads [2695] Wait 0 secs for phy reset');
  t.is(logLine('start_threads', LINE.START_THREADS_READY, 'Ready...', 1700000219919.447), '219.919447 start_threads [2697] Ready...');
  t.is(logLine('sender_body', LINE.SENDER_START, 'start, fd 3 main_fd 3', 1700000219928.583), '219.928583 sender_body [1702] start, fd 3 main_fd 3');
  t.is(logLine('receiver_body', LINE.RECEIVER_WAITING, 'waiting for initial packets, poll returns 0 0', 1700000219888.129), '219.888129 receiver_body [1954] waiting for initial packets, poll returns 0 0');
});

test('ping messages', (t) => {
  t.is(pingCountMessage(4, 1500, 4150), 'count 4 RTT: min 1500 av 4150 ns');
  const b = new Array<number>(64).fill(0);
  b[10] = 1;
  b[11] = 2;
  b[13] = 1;
  t.is(pingHistogramMessage(b), 'k: 1024 .. 8192\n\t     1     2     0     1');
  const one = new Array<number>(64).fill(0);
  one[0] = 123456;
  t.is(pingHistogramMessage(one), 'k: 1 .. 1\n\t 123456');
  t.is(pingHistogramMessage(new Array<number>(64).fill(0)), 'k: 0 .. 0\n\t');
  t.is(pingFinalMessage(1000, 1200, 3456), 'RTT over 1000 packets: min 1200 av 3456 ns');
  t.is(rttPercentilesMessage(1000, 5000, 9000), 'RTT percentiles: p50 1000 p99 5000 p99.9 9000 ns');
  t.is(logLine('ping_body', LINE.PING_COUNT, pingCountMessage(1, 2, 3), T0), `219.401550 ping_body [${LINE.PING_COUNT}] count 1 RTT: min 2 av 3 ns`);
});

test('msb64', (t) => {
  t.is(msb64(0), 0);
  t.is(msb64(1), 0);
  t.is(msb64(1023), 9);
  t.is(msb64(1024), 10);
  t.is(msb64(2 ** 32), 32);
  t.is(msb64(2 ** 33 - 1), 32);
  t.is(msb64(2 ** 40 + 5), 40);
});

test('RttStats: intervals, totals, histogram and percentiles', (t) => {
  const s = new RttStats();
  for (const v of [1500, 3000, 3100, 9000]) s.record(v);
  t.is(s.intervalCount, 4);
  t.deepEqual(s.intervalMessages(), ['count 4 RTT: min 1500 av 4150 ns', 'k: 1024 .. 8192\n\t     1     2     0     1']);
  t.is(s.intervalCount, 0);
  t.deepEqual(s.intervalMessages(), ['count 0 RTT: min -1 av 0 ns', 'k: 0 .. 0\n\t']);
  s.record(1000);
  t.is(s.count, 5);
  t.is(s.min, 1000);
  t.is(s.finalMessage(), 'RTT over 5 packets: min 1000 av 3520 ns');

  const p = new RttStats();
  for (let i = 1000; i >= 1; i--) p.record(i);
  t.is(p.percentile(50), 500);
  t.is(p.percentile(99), 990);
  t.is(p.percentile(99.9), 999);
  t.is(p.percentile(100), 1000);
  t.is(p.percentilesMessage(), 'RTT percentiles: p50 500 p99 990 p99.9 999 ns');
  t.is(new RttStats().percentilesMessage(), 'RTT percentiles: p50 0 p99 0 p99.9 0 ns');
  t.is(new RttStats().finalMessage(), 'RTT over 0 packets: min -1 av 0 ns');
});

test('RttStats reservoir stays bounded and representative', (t) => {
  const s = new RttStats(1000, 42);
  for (let i = 1; i <= 200000; i++) s.record(i);
  t.is(s.count, 200000);
  const p50 = s.percentile(50);
  t.true(p50 > 85000 && p50 < 115000, `p50 ${p50}`);
  const p99 = s.percentile(99);
  t.true(p99 > 190000, `p99 ${p99}`);
  t.throws(() => new RttStats(0), { instanceOf: RangeError });
});

test("senderFrags: sender_body's frags / frag_size as pkt-gen computes them", (t) => {
  t.deepEqual(senderFrags(60, 1, undefined, 2048), { frags: 1, fragSize: 60 });
  t.deepEqual(senderFrags(60, 4, undefined, 2048), { frags: 4, fragSize: 15 }, '-F 4: pkt_size / frags');
  t.deepEqual(senderFrags(3000, 1, undefined, 2048), { frags: 2, fragSize: 2048 }, 'over a buffer: buffer-sized fragments');
  t.deepEqual(senderFrags(1514, 1, 512, 2048), { frags: 3, fragSize: 512 }, '-M 512: rounded up to whole fragments');
  t.deepEqual(senderFrags(1024, 1, 512, 2048), { frags: 2, fragSize: 512 });
  t.deepEqual(senderFrags(60, 1, 4096, 2048), { frags: 1, fragSize: 60 }, '-M above the buffer size is capped by it');
});
