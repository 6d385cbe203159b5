import test from 'ava';
import {
  formatPortName,
  isPipeName,
  parsePortName,
  pipeKey,
  PortNameError,
  type ParsedPortName,
} from '../../src/netmap/name.js';

type Expect = Omit<ParsedPortName, 'spec'>;

/** Defaults for a plain netmap:PORT, overridden per case. */
function nm(port: string, over: Partial<Expect> = {}): Expect {
  return {
    subsystem: 'netmap',
    port,
    mode: 'all_nic',
    nrMode: 1,
    ringId: 0,
    flags: 0,
    flagLetters: '',
    memId: 0,
    conf: {},
    nrName: port,
    isVale: false,
    ...over,
  };
}

/** Defaults for a plain SWITCH:PORT, overridden per case. */
function vale(switchName: string, port: string, over: Partial<Expect> = {}): Expect {
  return {
    subsystem: 'vale',
    switchName,
    port,
    mode: 'all_nic',
    nrMode: 1,
    ringId: 0,
    flags: 0,
    flagLetters: '',
    memId: 0,
    conf: {},
    nrName: `${switchName}:${port}`,
    isVale: true,
    ...over,
  };
}

const long63 = 'a'.repeat(63);

const good: ReadonlyArray<readonly [string, Expect]> = [
  ['netmap:eth0', nm('eth0')],
  ['netmap:eth0^', nm('eth0', { mode: 'sw', nrMode: 2 })],
  ['netmap:eth0^1', nm('eth0', { mode: 'one_sw', nrMode: 8, ringId: 1 })],
  ['netmap:eth0^0', nm('eth0', { mode: 'one_sw', nrMode: 8, ringId: 0 })],
  ['netmap:eth0*', nm('eth0', { mode: 'nic_sw', nrMode: 3 })],
  ['netmap:eth0-2', nm('eth0', { mode: 'one_nic', nrMode: 4, ringId: 2 })],
  ['netmap:eth0-4094', nm('eth0', { mode: 'one_nic', nrMode: 4, ringId: 4094 })],
  ['netmap:eth0-2/T', nm('eth0', { mode: 'one_nic', nrMode: 4, ringId: 2, flags: 0x4000, flagLetters: 'T' })],
  ['netmap:eth0/rt', nm('eth0', { flags: 0x300, flagLetters: 'rt' })],
  ['netmap:eth0/x', nm('eth0', { flags: 0x800, flagLetters: 'x' })],
  ['netmap:eth0/z', nm('eth0', { flags: 0x400, flagLetters: 'z' })],
  ['netmap:eth0/R', nm('eth0', { flags: 0x2000, flagLetters: 'R' })],
  ['netmap:eth0*/xT', nm('eth0', { mode: 'nic_sw', nrMode: 3, flags: 0x4800, flagLetters: 'xT' })],
  ['netmap:eth0.100', nm('eth0.100')],
  ['vale0:01', vale('vale0', '01')],
  ['vale:a', vale('vale', 'a')],
  ['valeA:p1', vale('valeA', 'p1')],
  ['vale_x9:p_1', vale('vale_x9', 'p_1')],
  ['vale0:p{1', vale('vale0', 'p', { pipe: { role: 'master', id: '1' }, nrName: 'vale0:p{1' })],
  ['vale0:p}1', vale('vale0', 'p', { pipe: { role: 'slave', id: '1' }, nrName: 'vale0:p}1' })],
  ['netmap:eth0}3', nm('eth0', { pipe: { role: 'slave', id: '3' }, nrName: 'eth0}3' })],
  ['netmap:eth0{pa_1', nm('eth0', { pipe: { role: 'master', id: 'pa_1' }, nrName: 'eth0{pa_1' })],
  [
    'vale0:p{1-0/x',
    vale('vale0', 'p', {
      pipe: { role: 'master', id: '1' },
      nrName: 'vale0:p{1',
      mode: 'one_nic',
      nrMode: 4,
      flags: 0x800,
      flagLetters: 'x',
    }),
  ],
  ['netmap:eth0@2', nm('eth0', { memId: 2 })],
  ['netmap:eth0-1/x@3', nm('eth0', { mode: 'one_nic', nrMode: 4, ringId: 1, flags: 0x800, flagLetters: 'x', memId: 3 })],
  ['netmap:eth0@3/x', nm('eth0', { flags: 0x800, flagLetters: 'x', memId: 3 })],
  ['vale0:1@conf:rings=4,slots=1024', vale('vale0', '1', { conf: { rings: 4, slots: 1024 } })],
  ['vale0:1@conf:tx-rings=2,rx-slots=512', vale('vale0', '1', { conf: { txRings: 2, rxSlots: 512 } })],
  [
    'vale0:1@conf:host-rings=1,host-tx-rings=2,host-rx-rings=3,rx-rings=5,tx-slots=64,slots=128,rings=7',
    vale('vale0', '1', {
      conf: { rings: 7, rxRings: 5, hostRings: 1, hostTxRings: 2, hostRxRings: 3, slots: 128, txSlots: 64 },
    }),
  ],
  ['vale0:1@conf:tx_rings=3', vale('vale0', '1', { conf: { txRings: 3 } })],
  ['netmap:eth0@share=netmap:eth1', nm('eth0', { share: 'netmap:eth1' })],
  ['vale0:a@share:port=vale0:b', vale('vale0', 'a', { share: 'vale0:b' })],
  ['netmap:eth0@offset:initial=64,bits=8', nm('eth0', { offset: { initial: 64, bits: 8 } })],
  ['netmap:eth0@offset=16', nm('eth0', { offset: { initial: 16 } })],
  ['netmap:eth0@offset', nm('eth0', { offset: {} })],
  [
    'netmap:eth0@extmem:file=/dev/hugepages/x,if-num=2,buf-num=1000,buf-size=2048',
    nm('eth0', { extmem: { file: '/dev/hugepages/x', if_num: '2', buf_num: '1000', buf_size: '2048' } }),
  ],
  ['vale1:p@extmem=/tmp/m.bin', vale('vale1', 'p', { extmem: { file: '/tmp/m.bin' } })],
  [
    'vale0:1-0/T@4@conf:rings=2@share=vale0:2@offset:bits=12',
    vale('vale0', '1', {
      mode: 'one_nic',
      nrMode: 4,
      flags: 0x4000,
      flagLetters: 'T',
      memId: 4,
      conf: { rings: 2 },
      share: 'vale0:2',
      offset: { bits: 12 },
    }),
  ],
  [`netmap:${long63}`, nm(long63)],
];

for (const [spec, expected] of good) {
  test(`parses ${spec}`, (t) => {
    const p = parsePortName(spec);
    t.deepEqual(p, { spec, ...expected });
    t.true(Object.isFrozen(p));
  });
}

test('round-trip: parse(format(p)) equals p (modulo spec) for every good name', (t) => {
  for (const [spec] of good) {
    const p = parsePortName(spec);
    const text = formatPortName(p);
    const q = parsePortName(text);
    t.deepEqual({ ...q, spec }, p, `${spec} -> ${text}`);
    t.is(formatPortName(q), text, `format is stable for ${spec}`);
  }
});

test('format is canonical', (t) => {
  t.is(formatPortName(parsePortName('netmap:eth0@3/x')), 'netmap:eth0/x@3');
  t.is(formatPortName(parsePortName('vale0:1@conf:slots=8,tx_rings=2')), 'vale0:1@conf:tx-rings=2,slots=8');
  t.is(formatPortName(parsePortName('vale1:p@extmem=/tmp/m')), 'vale1:p@extmem:file=/tmp/m');
  t.is(formatPortName(parsePortName('vale0:p{1')), 'vale0:p{1');
});

/** [spec, fragment the message must contain, expected position (optional)] */
const bad: ReadonlyArray<readonly [string, string, number?]> = [
  ['vale0', 'vale0:01', 5],
  ['netmap:br-lan', 'br-lan', 9],
  ['eth0', 'netmap:eth0', 0],
  ['netmap:', 'netmap:', 7],
  ['vale0:', 'vale0:', 6],
  ['netmap:eth0-', "'-'", 11],
  ['netmap:eth0-x', "'-x'", 11],
  ['netmap:eth0/q', "'q'", 12],
  ['netmap:eth0/', "'/'", 12],
  ['netmap:eth0^1{2', '{2', 13],
  ['vale0:1@conf:bogus=1', 'bogus', 13],
  ['vale0:1@conf:rings=0', 'rings=0', 19],
  ['vale0:1@conf:rings=x', 'rings=x'],
  ['vale0:1@conf', '@conf'],
  ['vale0:1@bogus', 'bogus', 8],
  ['netmap:eth0-5000', '5000', 12],
  ['netmap:eth0-4095', '4095', 12],
  ['netmap:eth0^4095', '4095', 12],
  [`netmap:${'a'.repeat(64)}`, '64 characters', 70],
  [`vale0:${'b'.repeat(64)}`, '70 characters', 63],
  ['vale0:p{', "'{'", 8],
  ['vale0:p{1}2', '}2', 9],
  ['vale0:p{1^', '{1', 9],
  ['vale0:p{1*', "'*'", 9],
  ['netmap:eth0@0', '@0', 12],
  ['netmap:eth0@1@2', '@2', 13],
  ['netmap:eth0@conf:rings=1@2', '@2', 24],
  ['netmap:eth0-1-2', '-2', 13],
  ['netmap:eth0/x-1', '-1', 13],
  ['netmap:eth0-2x', "'x'", 13],
  ['netmap:eth0 ', "' '", 11],
  ['netmap:eth0#', "'#'", 11],
  ['foo:eth0', 'foo:', 0],
  [':eth0', 'subsystem', 0],
  ['vale-1:x', "'-'", 4],
  ['netmap:vale0:1', 'vale0:1', 12],
  ['netmap:eth0@share=eth1', 'eth1'],
  ['netmap:eth0@share', '@share'],
  ['netmap:eth0@extmem:if-num=2', 'file'],
  ['netmap:eth0@extmem:file=/x,colour=3', 'colour'],
  ['netmap:eth0@offset:bits=65', 'bits=65'],
  ['netmap:eth0@offset:start=1', 'start'],
  ['vale0:1@conf:rings=1,rings=2', 'rings'],
  ['vale0:1@conf:rings=1,', 'empty item'],
  ['vale0:1@conf:rings', "'rings'"],
  ['vale0:1@conf:rings=1@conf:slots=2', '@conf'],
  ['netmap:eth0@', "'@'", 12],
  ['', 'empty', 0],
];

for (const [spec, fragment, position] of bad) {
  test(`rejects ${JSON.stringify(spec)}`, (t) => {
    const err = t.throws(() => parsePortName(spec), { instanceOf: PortNameError });
    if (err === undefined) return;
    t.is(err.spec, spec);
    t.true(err.message.startsWith(`invalid port name '${spec}': `), err.message);
    t.true(err.message.includes(fragment), `${err.message} should mention ${fragment}`);
    t.regex(err.message, / at position \d+; ./);
    if (position !== undefined) t.is(err.position, position, err.message);
  });
}

test('br-lan error explains the dash trap and suggests renaming', (t) => {
  const err = t.throws(() => parsePortName('netmap:br-lan'), { instanceOf: PortNameError });
  t.regex(err?.message ?? '', /ring number/);
  t.regex(err?.message ?? '', /ip link set br-lan name br_lan/);
});

test('bare vale switch name suggests a port', (t) => {
  const err = t.throws(() => parsePortName('vale0'), { instanceOf: PortNameError });
  t.regex(err?.message ?? '', /switch name/);
});

test('share errors point into the share value', (t) => {
  const spec = 'netmap:eth0@share=netmap:br-lan';
  const err = t.throws(() => parsePortName(spec), { instanceOf: PortNameError });
  t.is(err?.position, spec.indexOf('-'));
});

test('isPipeName', (t) => {
  t.true(isPipeName('vale0:x{1'));
  t.true(isPipeName('netmap:eth0}3'));
  t.false(isPipeName('netmap:eth0'));
  t.false(isPipeName('vale0:x{'));
  t.false(isPipeName('garbage'));
});

test('pipeKey pairs master and slave ends', (t) => {
  const m = parsePortName('vale0:x{1');
  const s = parsePortName('vale0:x}1-0');
  t.is(pipeKey(m), 'vale0:x|1');
  t.is(pipeKey(m), pipeKey(s));
  t.is(pipeKey(parsePortName('netmap:eth0{a')), 'eth0|a');
  t.not(pipeKey(parsePortName('netmap:eth0{a')), pipeKey(parsePortName('netmap:eth1{a')));
  t.not(pipeKey(parsePortName('vale0:x{1')), pipeKey(parsePortName('vale0:x{2')));
  t.is(pipeKey(parsePortName('vale0:x')), undefined);
});

test('formatPortName derives flag letters from bits when letters are absent', (t) => {
  const p: ParsedPortName = { ...parsePortName('netmap:eth0'), flags: 0x800 | 0x4000, flagLetters: '' };
  t.is(formatPortName(p), 'netmap:eth0/xT');
});
