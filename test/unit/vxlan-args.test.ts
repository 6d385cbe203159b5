/** `--vxlan` on the command line and the vxlan driver's settings: what reaches the native VTEP, and every refusal naming its fix. */
import test from 'ava';
import { parseCtlArgs, USAGE, UsageError } from '../../tools/vale-ctl/args.js';
import { parseLocal, vxlanOptions } from '../../src/ports/vxlan.js';
import { VXLAN_SETTING_NAMES } from '../../src/ports/vxlan-settings.js';

test('--vxlan becomes a vxlan driver spec: repeated remote= and fdb= collect, values go as text and the driver reads the numbers', (t) => {
  const spec = parseCtlArgs(['-n', 'vale0:vx0', '--vxlan', 'vni=42,local=10.0.0.1:4790,remote=10.0.0.2,remote=10.0.0.3,fdb=02:00:00:00:00:01@10.0.0.4,ageing=60']).driver!;
  t.deepEqual(spec, {
    kind: 'vxlan',
    vni: '42',
    local: '10.0.0.1:4790',
    remote: ['10.0.0.2', '10.0.0.3'],
    fdb: ['02:00:00:00:00:01@10.0.0.4'],
    ageing: '60',
  });
  t.like(vxlanOptions(spec), { vni: 42, local: '10.0.0.1', port: 4790, ageing: 60 });
  const spec7 = parseCtlArgs(['-n', 'vale0:vx0', '--vxlan', 'vni=7,group=ff05::7,dev=eth0,srcport=fixed']).driver!;
  t.deepEqual(spec7, { kind: 'vxlan', vni: '7', group: 'ff05::7', dev: 'eth0', srcport: 'fixed' });
  t.deepEqual(vxlanOptions(spec7), { vni: 7, group: 'ff05::7', dev: 'eth0', srcportFixed: true, inline: true });
});

test('--vxlan usage errors: no vni, not KEY=VALUE, unknown or repeated settings', (t) => {
  t.throws(() => parseCtlArgs(['-n', 'vale0:x', '--vxlan', 'local=10.0.0.1,remote=10.0.0.2']), { instanceOf: UsageError, message: /needs vni=N/ });
  t.throws(() => parseCtlArgs(['-n', 'vale0:x', '--vxlan', 'vni=1,10.0.0.2']), { instanceOf: UsageError, message: /not KEY=VALUE/ });
  t.throws(() => parseCtlArgs(['-n', 'vale0:x', '--vxlan', 'vni=1,remotes=10.0.0.2']), { instanceOf: UsageError, message: /unknown setting 'remotes'/ });
  t.throws(() => parseCtlArgs(['-n', 'vale0:x', '--vxlan', 'vni=1,vni=2,remote=10.0.0.2']), { instanceOf: UsageError, message: /'vni' is given twice/ });
  t.throws(() => parseCtlArgs(['-n', 'vale0:x', '--vxlan', 'vni=1', '--tap', 't0']), { instanceOf: UsageError, message: /one driver/ });
});

test('--vxlan takes every setting the driver takes (gso, rcvbuf, shortcuthandshakems, ...), and what it builds passes the driver\'s checks', (t) => {
  const base = 'vni=3,local=10.0.0.1,remote=10.0.0.2';
  const cli = (extra: string) => parseCtlArgs(['-n', 'vale0:vx0', '--vxlan', `${base},${extra}`]).driver!;
  const d = cli('gso=off,rcvbuf=65536,shortcuthandshakems=2000,dstport=4790,ttl=9,shortcut=off,shortcutdir=/srv/sc,srcport=fixed,ageing=30,fdb=02:00:00:00:00:01@10.0.0.9,inline=off');
  t.like(d, { gso: 'off', rcvbuf: '65536', shortcuthandshakems: '2000', dstport: '4790', ttl: '9' });
  t.like(vxlanOptions(d), { gso: false, rcvbuf: 65536, shortcutHandshakeMs: 2000, dstport: 4790, ttl: 9, shortcut: false, shortcutDir: '/srv/sc', srcportFixed: true, ageing: 30, inline: false });
  // one example value per setting of the driver's table: none is refused by the command line
  const example: Record<string, string> = {
    vni: '3', local: '10.0.0.1', remote: '10.0.0.2', group: '239.1.1.1', dev: 'eth0', fdb: '02:00:00:00:00:01@10.0.0.9', dstport: '4790',
    ageing: '30', srcport: 'fixed', ttl: '9', shortcut: 'off', shortcutdir: '/srv/sc', shortcuthandshakems: '2000', gso: 'on', rcvbuf: '65536', inline: 'on',
  };
  for (const k of VXLAN_SETTING_NAMES) {
    t.not(example[k], undefined, `no example for '${k}'`);
    const v = example[k]!;
    const spec = parseCtlArgs(['-n', 'vale0:vx0', '--vxlan', k === 'vni' ? 'vni=3' : `vni=3,${k}=${v}`]).driver!;
    t.deepEqual(spec[k], k === 'remote' || k === 'fdb' ? [v] : v, k);
  }
  // values are still vale-ts's to check, with the driver's wording
  t.throws(() => vxlanOptions(cli('rcvbuf=1')), { message: /'rcvbuf' must be an integer 2048\.\.1073741824/ });
  t.throws(() => vxlanOptions(cli('shortcuthandshakems=0')), { message: /'shortcuthandshakems' must be an integer 1\.\.3600000/ });
  t.throws(() => vxlanOptions(cli('gso=maybe')), { message: /gso "maybe" must be 'on' or 'off'/ });
  // a number too long to be exact stays text, named in the refusal (not a rounded number)
  t.is(cli('rcvbuf=99999999999999999999')['rcvbuf'], '99999999999999999999');
  t.throws(() => vxlanOptions(cli('rcvbuf=99999999999999999999')), { message: /'rcvbuf' must be an integer .*"99999999999999999999"/ });
  t.throws(() => cli('gso=on,gso=off'), { instanceOf: UsageError, message: /'gso' is given twice/ });
});

test('--vxlan: an unknown setting is named with the list of known ones; prototype names are unknown too', (t) => {
  for (const k of ['remotes', 'rcvbuff', 'constructor', '__proto__', 'toString', 'kind']) {
    const e = t.throws(() => parseCtlArgs(['-n', 'vale0:x', '--vxlan', `vni=1,${k}=1`]), { instanceOf: UsageError });
    t.true(e.message.startsWith(`--vxlan: unknown setting '${k}' (known: `), e.message);
    for (const known of VXLAN_SETTING_NAMES) t.regex(e.message, new RegExp(`[ (]${known}[,)]`), known);
  }
});

test('the usage text and --vxlan\'s errors show every setting of the driver\'s table', (t) => {
  const line = USAGE.split('\n').find((l) => l.startsWith('\t--vxlan '));
  t.truthy(line);
  for (const k of VXLAN_SETTING_NAMES) t.true(line!.includes(`${k}=`), `usage lacks ${k}=: ${line!}`);
  t.true(line!.includes('[,gso=on|off]') && line!.includes('[,rcvbuf=BYTES]') && line!.includes('[,shortcuthandshakems=MS]'), line);
  const e = t.throws(() => parseCtlArgs(['-n', 'vale0:x', '--vxlan', 'vni=1,10.0.0.2']), { instanceOf: UsageError });
  for (const k of VXLAN_SETTING_NAMES) t.true(e.message.includes(`${k}=`), `${k}: ${e.message}`);
});

test('local= takes ADDR, ADDR:PORT, IPv6 and [IPv6]:PORT', (t) => {
  t.deepEqual(parseLocal('10.0.0.1'), { addr: '10.0.0.1' });
  t.deepEqual(parseLocal('10.0.0.1:4790'), { addr: '10.0.0.1', port: 4790 });
  t.deepEqual(parseLocal('fd00::1'), { addr: 'fd00::1' });
  t.deepEqual(parseLocal('[fd00::1]:4790'), { addr: 'fd00::1', port: 4790 });
  t.throws(() => parseLocal('10.0.0.1:0'), { message: /1\.\.65535/ });
  t.throws(() => parseLocal('host.example:4789'), { message: /not ADDR/ });
  t.throws(() => parseLocal('[10.0.0.1'), { message: /not ADDR/ });
});

test('settings reach the native VTEP checked: family agreement, one flood mode, MAC and range syntax', (t) => {
  t.deepEqual(vxlanOptions({ kind: 'vxlan', vni: 5, local: '[fd00::1]:4790', remote: 'fd00::2', srcport: '40000-50000', ttl: 8 }), {
    vni: 5, local: 'fd00::1', port: 4790, remote: ['fd00::2'], srcportMin: 40000, srcportMax: 50000, ttl: 8, inline: true,
  });
  t.deepEqual(vxlanOptions({ kind: 'vxlan', vni: '9', group: '239.1.1.1', dev: 'eth0' }), { vni: 9, group: '239.1.1.1', dev: 'eth0', inline: true });
  const refuse = (spec: Record<string, string | number | string[]>, msg: RegExp): void => {
    t.throws(() => vxlanOptions({ kind: 'vxlan', ...spec }), { message: msg });
  };
  refuse({ vni: -1, local: '10.0.0.1', remote: ['10.0.0.2'] }, /0\.\.16777215/);
  refuse({ vni: 1.5, local: '10.0.0.1', remote: ['10.0.0.2'] }, /0\.\.16777215/);
  refuse({ vni: 1, remote: ['10.0.0.2'] }, /needs local=ADDR/);
  refuse({ vni: 1, local: '10.0.0.1', remote: ['10.0.0.2', 'nope'] }, /remote 'nope' is not an IPv4 or IPv6 address/);
  refuse({ vni: 1, local: '10.0.0.1', group: 'ff05::1' }, /IPv6 but the port is IPv4/);
  refuse({ vni: 1, local: '10.0.0.1', remote: ['10.0.0.2'], dev: 'a/b' }, /not an interface name/);
  refuse({ vni: 1, local: '10.0.0.1', fdb: ['02:00:00:00:00:01'] }, /UNICAST_MAC@ADDR/);
  refuse({ vni: 1, local: '10.0.0.1', fdb: ['02:00:00:00:00:01@fd00::1'] }, /IPv6 but the port is IPv4/);
  refuse({ vni: 1, local: '10.0.0.1', remote: ['10.0.0.2'], srcport: '1000' }, /MIN-MAX/);
  refuse({ vni: 1, local: '10.0.0.1', remote: ['10.0.0.2'], ageing: 0 }, /'ageing' must be an integer 1\.\.1000000/);
  refuse({ vni: 1, local: '10.0.0.1', remote: ['10.0.0.2'], typo: 1 }, /no setting 'typo'/);
  refuse({ vni: 1, local: '10.0.0.1', remote: ['10.0.0.2'], shortcut: 'yes' }, /shortcut "yes" must be 'on' or 'off'/);
});

test('the co-resident shortcut is on unless shortcut=off', (t) => {
  const base = { kind: 'vxlan', vni: 3, local: '10.0.0.1', remote: '10.0.0.2' };
  t.is(vxlanOptions(base).shortcut, undefined); // the native default: on
  t.is(vxlanOptions({ ...base, shortcut: 'off' }).shortcut, false);
  t.is(vxlanOptions({ ...base, shortcut: 'on' }).shortcut, true);
  t.is(vxlanOptions({ ...base, shortcut: false }).shortcut, false);
  const cli = parseCtlArgs(['-n', 'vale0:vx0', '--vxlan', 'vni=3,local=10.0.0.1,remote=10.0.0.2,shortcut=off']).driver!;
  t.is(cli['shortcut'], 'off');
  t.is(vxlanOptions(cli).shortcut, false);
  t.is(vxlanOptions({ ...base, shortcutdir: '/run/x/shortcut' }).shortcutDir, '/run/x/shortcut');
  t.throws(() => vxlanOptions({ ...base, shortcutdir: 'rel/dir' }), { message: /shortcutdir 'rel\/dir' must be an absolute path/ });
  t.is(parseCtlArgs(['-n', 'vale0:vx0', '--vxlan', 'vni=3,local=10.0.0.1,remote=10.0.0.2,shortcutdir=/srv/sc']).driver!['shortcutdir'], '/srv/sc');
});

test('a VTEP runs in-line in the switch\'s rounds unless inline=off or VALE_TS_VXLAN_INLINE=0; other values are refused with the choices', (t) => {
  const spec = { kind: 'vxlan', vni: 1, local: '10.0.0.1', remote: '10.0.0.2' };
  t.is(vxlanOptions(spec).inline, true);
  t.is(vxlanOptions({ ...spec, inline: 'off' }).inline, false);
  t.is(vxlanOptions({ ...spec, inline: true }).inline, true);
  t.throws(() => vxlanOptions({ ...spec, inline: 'maybe' }), { message: /inline "maybe" must be 'on' .* or 'off'/ });
  const was = process.env['VALE_TS_VXLAN_INLINE'];
  try {
    process.env['VALE_TS_VXLAN_INLINE'] = '0';
    t.is(vxlanOptions(spec).inline, false);
    t.is(vxlanOptions({ ...spec, inline: 'on' }).inline, true);  // the setting wins over the environment
    process.env['VALE_TS_VXLAN_INLINE'] = 'yes';
    t.throws(() => vxlanOptions(spec), { message: /VALE_TS_VXLAN_INLINE='yes'.*'1'.*'0'/ });
  } finally {
    if (was === undefined) delete process.env['VALE_TS_VXLAN_INLINE'];
    else process.env['VALE_TS_VXLAN_INLINE'] = was;
  }
});
