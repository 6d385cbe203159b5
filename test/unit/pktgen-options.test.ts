import test from 'ava';
import {
  OPT,
  UsageError,
  getopt,
  mapIfaceName,
  parsePktGenArgs,
  txRatePlan,
  unsupportedIfaceReason,
  usageText,
  PKTGEN_GETOPT,
} from '../../tools/pkt-gen/options.js';

const env = { systemCpus: 4 };
const parse = (...argv: string[]) => parsePktGenArgs(argv, env);

test('defaults with only -i', (t) => {
  const o = parse('-i', 'vale0:1');
  t.false(o.help);
  t.is(o.iface, 'vale0:1');
  t.is(o.func, 'rx');
  t.is(o.count, 0);
  t.is(o.pktSize, 60);
  t.is(o.pktSizeMin, undefined);
  t.is(o.burst, 512);
  t.false(o.burstGiven);
  t.is(o.af, 4);
  t.like(o.dst, { ipStart: '10.1.0.1', ipEnd: '10.1.0.1', portStart: 1234, portEnd: 1234, name: '10.1.0.1' });
  t.like(o.src, { ipStart: '10.0.0.1', ipEnd: '10.0.0.1', portStart: 1234, portEnd: 1234, name: '10.0.0.1' });
  t.deepEqual([...o.dstMac], [255, 255, 255, 255, 255, 255]);
  t.is(o.dstMacName, 'ff:ff:ff:ff:ff:ff');
  t.deepEqual([...o.srcMac], [0, 0, 0, 0, 0, 0]);
  t.is(o.srcMacName, '00:00:00:00:00:00');
  t.false(o.srcMacGiven);
  t.is(o.affinity, -1);
  t.is(o.cpus, 1);
  t.is(o.threads, 1);
  t.is(o.reportMs, 1000);
  t.is(o.waitLink, 0, 'vale ports do not wait for link');
  t.false(o.rxExitAfterIdle);
  t.is(o.rate, 0);
  t.false(o.dump);
  t.is(o.vnetHdr, 0);
  t.is(o.pcapFile, undefined);
  t.false(o.randomSrc);
  t.false(o.randomDst);
  t.false(o.noNormalize);
  t.is(o.frags, 1);
  t.is(o.fragSize, undefined);
  t.false(o.indirect);
  t.is(o.verbose, 0);
  t.false(o.rubbish);
  t.false(o.ppsStats);
  t.is(o.framing, 0);
  t.is(o.conf, undefined);
  t.is(o.oflags, 0);
  t.is(o.optionMask, 0);
});

test('attached values parse like separate ones (netmap guide forms)', (t) => {
  t.deepEqual(parse('-ivale0:01', '-ftx'), parse('-i', 'vale0:01', '-f', 'tx'));
  t.deepEqual(parse('-ivale0:02', '-frx'), parse('-i', 'vale0:02', '-f', 'rx'));
  const o = parse('-ieth0', '-ftx', '-d10.0.0.200:7777', '-D00:1b:21:0a:0b:0c');
  t.deepEqual(o, parse('-i', 'eth0', '-f', 'tx', '-d', '10.0.0.200:7777', '-D', '00:1b:21:0a:0b:0c'));
  t.is(o.iface, 'netmap:eth0');
  t.is(o.ifaceArg, 'eth0');
  t.is(o.waitLink, 2);
  t.is(o.func, 'tx');
  t.like(o.dst, { ipStart: '10.0.0.200', portStart: 7777, portEnd: 7777, name: '10.0.0.200:7777' });
  t.deepEqual([...o.dstMac], [0x00, 0x1b, 0x21, 0x0a, 0x0b, 0x0c]);
  t.is(o.dstMacName, '00:1b:21:0a:0b:0c');
});

test('grouped flags, counted -v, flag group ending in a valued option', (t) => {
  const o = parse('-zZ', '-Nv', '-vv', '-ivale0:1', '-XWIrAB');
  t.true(o.randomSrc);
  t.true(o.randomDst);
  t.true(o.noNormalize);
  t.is(o.verbose, 3);
  t.true(o.dump);
  t.true(o.rxExitAfterIdle);
  t.true(o.indirect);
  t.true(o.rubbish);
  t.true(o.ppsStats);
  t.is(o.framing, 192);
  t.is(o.optionMask, OPT.RANDOM_SRC | OPT.RANDOM_DST | OPT.DUMP | OPT.INDIRECT | OPT.RUBBISH | OPT.PPS_STATS);
  const p = parse('-Nftx', '-ivale0:1');
  t.true(p.noNormalize);
  t.is(p.func, 'tx');
  const q = parse('-zi', 'vale0:3');
  t.true(q.randomSrc);
  t.is(q.iface, 'vale0:3');
});

test('repeated -l: the second is the minimum for random sizes', (t) => {
  const o = parse('-ivale0:1', '-l', '1000', '-l', '100');
  t.is(o.pktSize, 1000);
  t.is(o.pktSizeMin, 100);
  const p = parse('-ivale0:1', '-l1000', '-l1000');
  t.is(p.pktSize, 1000);
  t.is(p.pktSizeMin, undefined, 'equal min means fixed size');
  const q = parse('-ivale0:1', '-l', '65536');
  t.is(q.pktSize, 65536);
  t.is(parse('-ivale0:1', '-l16').pktSize, 16);
});

test('last occurrence wins for ordinary options; -4/-6 may follow -d', (t) => {
  const o = parse('-ivale0:1', '-ivale1:2', '-ftx', '-frx', '-n5', '-n', '7');
  t.is(o.iface, 'vale1:2');
  t.is(o.func, 'rx');
  t.is(o.count, 7);
  const v6 = parse('-ivale0:1', '-d', '[fd00::9]:99', '-6');
  t.is(v6.af, 6);
  t.like(v6.dst, { ipStart: 'fd00::9', portStart: 99, group: 7 });
  t.is(parse('-ivale0:1', '-6', '-4').af, 4);
});

test('-- ends options; operands are rejected', (t) => {
  t.is(parse('-i', 'vale0:1', '--').iface, 'vale0:1');
  const e = t.throws(() => parse('-i', 'vale0:1', '--', '-f', 'tx'), { instanceOf: UsageError });
  t.regex(e!.message, /unexpected argument '-f'/);
  const e2 = t.throws(() => parse('-i', 'vale0:1', 'tx'), { instanceOf: UsageError });
  t.regex(e2!.message, /unexpected argument 'tx'/);
});

test('getopt stops at the first non-option and treats - as an operand', (t) => {
  t.deepEqual(getopt(['-a', '1', 'x', '-b'], 'a:b'), { opts: [{ opt: 'a', value: '1' }], operands: ['x', '-b'] });
  t.deepEqual(getopt(['-b', '-', '-b'], 'a:b'), { opts: [{ opt: 'b' }], operands: ['-', '-b'] });
  t.deepEqual(getopt(['-a', '-b'], 'a:b'), { opts: [{ opt: 'a', value: '-b' }], operands: [] });
  t.deepEqual(getopt(['-ba--'], 'a:b'), { opts: [{ opt: 'b' }, { opt: 'a', value: '--' }], operands: [] });
  t.throws(() => getopt(['-:'], 'a:b'), { instanceOf: UsageError, message: /unknown option -:/ });
  t.true(PKTGEN_GETOPT.startsWith('46a:f:'));
});

test('burst defaults per function and -b overrides', (t) => {
  for (const f of ['tx', 'rx', 'txseq', 'rxseq']) t.is(parse('-ivale0:1', '-f', f).burst, 512, f);
  for (const f of ['ping', 'pong']) t.is(parse('-ivale0:1', '-f', f).burst, 1, f);
  const o = parse('-ivale0:1', '-fping', '-b', '8');
  t.is(o.burst, 8);
  t.true(o.burstGiven);
});

test('-w overrides the vale default; NIC names wait 2 s', (t) => {
  t.is(parse('-ivale0:1', '-w', '5').waitLink, 5);
  t.is(parse('-inetmap:eth1').waitLink, 2);
  t.is(parse('-ieth1', '-w0').waitLink, 0);
});

test('IPv6 defaults and forms', (t) => {
  const o = parse('-ivale0:1', '-6', '-ftx');
  t.like(o.src, { af: 6, ipStart: 'fd00::1', ipEnd: 'fd00::1', portStart: 1234, group: 7, endGroup: 7 });
  t.like(o.dst, { af: 6, ipStart: 'fd00::2', ipEnd: 'fd00::2', portStart: 1234 });
  const p = parse('-ivale0:1', '-6', '-d', '3@[2001:DB8::1]:80-[2001:db8::9]:90', '-s', '2001:db8::77');
  t.like(p.dst, { ipStart: '2001:db8::1', ipEnd: '2001:db8::9', portStart: 80, portEnd: 90, group: 3, endGroup: 3 });
  t.like(p.src, { ipStart: '2001:db8::77', portStart: 1234 });
  t.is(p.optionMask & OPT.COPY, OPT.COPY);
});

test('IPv4 ranges, swaps and OPT_COPY', (t) => {
  const o = parse('-ivale0:1', '-d', '10.0.0.9:2000-10.0.0.1:1000', '-s', '192.168.1.1:0x10');
  t.like(o.dst, { ipStart: '10.0.0.1', ipEnd: '10.0.0.9', portStart: 1000, portEnd: 2000 });
  t.like(o.src, { ipStart: '192.168.1.1', portStart: 16, portEnd: 16 });
  t.is(o.optionMask, OPT.COPY);
  const p = parse('-ivale0:1', '-d', '10.0.0.1-10.0.0.4');
  t.like(p.dst, { portStart: 1234, portEnd: 1234, ipEnd: '10.0.0.4' });
});

test('numeric options', (t) => {
  const o = parse(
    '-ivale0:1', '-n', '1000000', '-a', '2', '-c', '0', '-p', '2', '-T', '250', '-R', '1000', '-H', '12',
    '-F', '63', '-M', '2048', '-o', '64', '-P', '/tmp/x.pcap', '-S', 'a:b:c:d:e:f',
  );
  t.is(o.count, 1000000);
  t.is(o.affinity, 2);
  t.is(o.cpusRequested, 0);
  t.is(o.cpus, 4);
  t.is(o.threads, 2);
  t.is(o.reportMs, 250);
  t.is(o.rate, 1000);
  t.is(o.vnetHdr, 12);
  t.is(o.frags, 63);
  t.is(o.fragSize, 2048);
  t.is(o.oflags, 64);
  t.true(o.dump, '-o 64 is OPT_DUMP');
  t.is(o.pcapFile, '/tmp/x.pcap');
  t.deepEqual([...o.srcMac], [10, 11, 12, 13, 14, 15]);
  t.true(o.srcMacGiven);
  t.is(o.srcMacName, 'a:b:c:d:e:f');
  t.is(parse('-ivale0:1', '-H0').vnetHdr, 0);
  t.is(parse('-ivale0:1', '-H10').vnetHdr, 10);
  t.is(parse('-ivale0:1', '-a', '-1').affinity, -1);
});

test('-C ring configuration', (t) => {
  t.deepEqual(parse('-ivale0:1', '-C', '1024').conf, { txSlots: 1024, rxSlots: 1024, txRings: 0, rxRings: 0 });
  t.deepEqual(parse('-ivale0:1', '-C1024,512').conf, { txSlots: 1024, rxSlots: 512, txRings: 0, rxRings: 0 });
  t.deepEqual(parse('-ivale0:1', '-C', '1024,512,4').conf, { txSlots: 1024, rxSlots: 512, txRings: 4, rxRings: 4 });
  t.deepEqual(parse('-ivale0:1', '-C', '1,2,3,4').conf, { txSlots: 1, rxSlots: 2, txRings: 3, rxRings: 4 });
});

test('-h short-circuits validation', (t) => {
  t.true(parse('-h').help);
  t.true(parse('-l', '5', '-h').help);
  t.throws(() => parse('-e', '-h'), { instanceOf: UsageError });
});

const bad: Array<[string[], string, string]> = [
  [['-ivale0:1', '-n', 'abc'], '-n', 'abc'],
  [['-ivale0:1', '-n', '-1'], '-n', '-1'],
  [['-ivale0:1', '-n', '12x'], '-n', '12x'],
  [['-ivale0:1', '-l', '15'], '-l', '15'],
  [['-ivale0:1', '-l', '65537'], '-l', '65537'],
  [['-ivale0:1', '-l', 'big'], '-l', 'big'],
  [['-ivale0:1', '-l', '60', '-l', '100'], '-l', '100'],
  [['-ivale0:1', '-l', '60', '-l', '8'], '-l', '8'],
  [['-ivale0:1', '-b', '-1'], '-b', '-1'],
  [['-ivale0:1', '-b', 'x'], '-b', 'x'],
  [['-ivale0:1', '-D', 'zz:zz:zz:zz:zz:zz'], '-D', 'zz:zz:zz:zz:zz:zz'],
  [['-ivale0:1', '-S', '00:11:22:33:44'], '-S', '00:11:22:33:44'],
  [['-ivale0:1', '-S', '00:11:22:33:44:555'], '-S', '00:11:22:33:44:555'],
  [['-ivale0:1', '-d', '10.0.0.256'], '-d', '10.0.0.256'],
  [['-ivale0:1', '-d', '10.0.0.1:70000'], '-d', '70000'],
  [['-ivale0:1', '-d', '10.0.0.1:12ab'], '-d', '12ab'],
  [['-ivale0:1', '-d', '10.0.0.1:5-'], '-d', '10.0.0.1:5-'],
  [['-ivale0:1', '-s', '1.2.3'], '-s', '1.2.3'],
  [['-ivale0:1', '-6', '-d', 'fd00::zz'], '-d', 'fd00::zz'],
  [['-ivale0:1', '-6', '-s', '9@fd00::1'], '-s', '9'],
  [['-ivale0:1', '-6', '-s', '[fd00::1'], '-s', '[fd00::1'],
  [['-ivale0:1', '-f', 'bogus'], '-f', 'bogus'],
  [['-ivale0:1', '-e'], '-e', '-e'],
  [['-ivale0:1', '-m', '1'], '-m', '-m'],
  [['-ivale0:1', '-t', 'x'], '-t', '-t'],
  [['-ftx'], '-i', '-i'],
  [['-i'], '-i', '-i'],
  [['-ivale0:1', '-F', '0'], '-F', '0'],
  [['-ivale0:1', '-F', '64'], '-F', '64'],
  [['-ivale0:1', '-H', '11'], '-H', '11'],
  [['-ivale0:1', '-H', '13'], '-H', '13'],
  [['-ivale0:1', '-C', 'a,b'], '-C', 'a,b'],
  [['-ivale0:1', '-C', '1,2,3,4,5'], '-C', '1,2,3,4,5'],
  [['-ivale0:1', '-C', '1,,2'], '-C', '1,,2'],
  [['-ivale0:1', '-C', ''], '-C', 'empty'],
  [['-ivale0:1', '-p', '0'], '-p', '0'],
  [['-ivale0:1', '-fping', '-p', '2'], '-p', 'ping'],
  [['-ivale0:1', '-T', '0'], '-T', '0'],
  [['-ivale0:1', '-c', '99'], '-c', '99'],
  [['-ivale0:1', '-c', '-2'], '-c', '-2'],
  [['-ivale0:1', '-a', '-5'], '-a', '-5'],
  [['-ivale0:1', '-w', 'soon'], '-w', 'soon'],
  [['-ivale0:1', '-R', '1.5'], '-R', '1.5'],
  [['-ivale0:1', '-M', '0'], '-M', '0'],
  [['-ivale0:1', '-o', 'copy'], '-o', 'copy'],
  [['-i', 'x'.repeat(505)], '-i', '505'],
];

for (const [argv, flag, needle] of bad) {
  test(`bad value: ${argv.join(' ').slice(0, 60)}`, (t) => {
    const e = t.throws(() => parsePktGenArgs(argv, env), { instanceOf: UsageError });
    t.true(e!.message.includes(flag), `message names ${flag}: ${e!.message}`);
    t.true(e!.message.includes(needle), `message quotes ${needle}: ${e!.message}`);
    t.is(e!.flag, flag);
  });
}

test('error messages say what is accepted', (t) => {
  t.regex(t.throws(() => parse('-ivale0:1', '-l', '10'))!.message, /16\.\.65536/);
  t.regex(t.throws(() => parse('-ivale0:1', '-f', 'x'))!.message, /tx, rx|rx, tx/);
  t.regex(t.throws(() => parse('-ivale0:1', '-H', '3'))!.message, /0, 10 or 12/);
  t.regex(t.throws(() => parse('-ivale0:1', '-F', '99'))!.message, /1\.\.63/);
  t.regex(t.throws(() => parse('-ivale0:1', '-b', '-1'))!.message, />= 0/);
  t.regex(t.throws(() => parse('-ivale0:1', '-D', 'nope'))!.message, /hex/);
  t.regex(t.throws(() => parse('-ivale0:1', '-d', 'nope'))!.message, /ip\[:port\]/);
  t.regex(t.throws(() => parse('-ivale0:1', '-C', 'x'))!.message, /tx_slots/);
});

test('mapIfaceName follows pkt-gen', (t) => {
  t.is(mapIfaceName('eth0'), 'netmap:eth0');
  t.is(mapIfaceName('eth0{1'), 'netmap:eth0{1');
  t.is(mapIfaceName('netmap:eth0'), 'netmap:eth0');
  t.is(mapIfaceName('netmap:pipe{0'), 'netmap:pipe{0');
  t.is(mapIfaceName('vale0:1'), 'vale0:1');
  t.is(mapIfaceName('valeA:b'), 'valeA:b');
  t.is(mapIfaceName('tap:foo'), 'tap:foo');
  t.is(mapIfaceName('tap0'), 'tap0');
  t.is(mapIfaceName('pcap:eth0'), 'pcap:eth0');
  t.is(mapIfaceName('null'), 'null');
});

test('unsupportedIfaceReason', (t) => {
  t.is(unsupportedIfaceReason('vale0:1'), undefined);
  t.is(unsupportedIfaceReason('netmap:eth0'), undefined);
  t.is(
    unsupportedIfaceReason('pcap:eth0'),
    'pcap: ports are not supported by pkt-gen-ts; use a netmap or vale port',
  );
  t.regex(unsupportedIfaceReason('tap:x')!, /tap .*not supported.*netmap or vale/);
  t.regex(unsupportedIfaceReason('tap0')!, /tap/);
  t.regex(unsupportedIfaceReason('null')!, /null.*not supported/);
  t.is(parse('-i', 'pcap:eth0').iface, 'pcap:eth0', 'parsing leaves the rejection to the CLI');
});

test('txRatePlan', (t) => {
  t.deepEqual(txRatePlan(0, 512), { burst: 512, periodNs: 0 });
  t.deepEqual(txRatePlan(1000, 512), { burst: 3, periodNs: 3_000_000 });
  t.deepEqual(txRatePlan(100, 512), { burst: 1, periodNs: 10_000_000 });
  t.deepEqual(txRatePlan(14_880_000, 512), { burst: 512, periodNs: 34408 });
  t.deepEqual(txRatePlan(3, 512), { burst: 1, periodNs: 333_333_333 });
});

test('usageText mentions every option', (t) => {
  const u = usageText();
  t.true(u.startsWith('Usage:'));
  for (const c of '46afFNniIldsDSbcopTwWvRXCHrPzZAhBM') t.true(u.includes(`-${c}`), `-${c} documented`);
});

// pkt-gen.c main(): `case 'o': g.options |= atoi(optarg);` - every -o adds
// its bits, as -z, -Z, -X ... do; a script splitting its mask over several
// -o gets them all.
test('-o given twice ORs the masks, as pkt-gen does', (t) => {
  const o = parse('-ivale0:1', '-o', '512', '-o', '1024');
  t.is(o.oflags, 512 | 1024);
  t.true(o.randomSrc);
  t.true(o.randomDst);
  t.is(parse('-ivale0:1', '-o64', '-o', '0').oflags, 64, '-o 0 adds nothing and takes nothing away');
});

// pkt-gen.c main(): `if (g.burst == 0) { g.burst = fn->default_burst;
// D("using default burst size: %d", g.burst); }` - -b 0 asks for the default.
test('-b 0 means the function\'s default burst, as in pkt-gen', (t) => {
  const o = parse('-ivale0:1', '-b', '0');
  t.is(o.burst, 512);
  t.false(o.burstGiven, 'so the "using default burst size" line is printed');
  t.is(parse('-ivale0:1', '-fping', '-b0').burst, 1);
  t.is(parse('-ivale0:1', '-b', '8', '-b', '0').burst, 512, 'the last -b wins, 0 included');
});

// pkt-gen.c main(): `if (g.pkt_min_size > 0 && (g.pkt_min_size < 16 || ...))`
// - a second -l of 0 leaves the size fixed.
test('a second -l 0 keeps the size fixed, as in pkt-gen', (t) => {
  const o = parse('-ivale0:1', '-l', '100', '-l', '0');
  t.is(o.pktSize, 100);
  t.is(o.pktSizeMin, undefined);
  t.throws(() => parse('-ivale0:1', '-l', '100', '-l', '15'), { instanceOf: UsageError, message: /-l/ });
});
