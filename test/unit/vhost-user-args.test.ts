/** `vale-ctl-ts --vhost-user` parsing and the vhost-user driver spec's checks. */
import test from 'ava';
import { parseCtlArgs, UsageError } from '../../tools/vale-ctl/args.js';
import { vhostInlineDefault, vhostUserSettings } from '../../src/ports/vhost-user.js';

test('--vhost-user PATH[,client][,queues=N] with -n makes a vhost-user driver spec', (t) => {
  t.deepEqual(parseCtlArgs(['-n', 'vale0:vm1', '--vhost-user', '/tmp/vm1.sock']).driver, { kind: 'vhost-user', path: '/tmp/vm1.sock' });
  t.deepEqual(parseCtlArgs(['-n', 'vale0:vm1', '--vhost-user=/tmp/vm1.sock,client,queues=4']).driver, {
    kind: 'vhost-user',
    path: '/tmp/vm1.sock',
    client: true,
    queuePairs: 4,
  });
  t.deepEqual(parseCtlArgs(['-n', 'vale0:vm1', '-C', '4096', '--vhost-user', '/tmp/vm1.sock,backlog-poll=200']).driver, { kind: 'vhost-user', path: '/tmp/vm1.sock', backlogPollUs: 200 });
  t.deepEqual(parseCtlArgs(['-n', 'vale0:vm1', '--vhost-user', '/tmp/vm1.sock,client,inline']).driver, { kind: 'vhost-user', path: '/tmp/vm1.sock', client: true, inline: true });
  t.deepEqual(parseCtlArgs(['-n', 'vale0:vm1', '--vhost-user', '/tmp/vm1.sock,thread']).driver, { kind: 'vhost-user', path: '/tmp/vm1.sock', inline: false });
  t.is(parseCtlArgs(['-n', 'vale0:vm1', '--vhost-user', 'rel.sock']).driver!['path'], `${process.cwd()}/rel.sock`, 'sent absolute');
  t.throws(() => parseCtlArgs(['-n', 'vale0:vm1', '--vhost-user', '/tmp/x.sock,bogus']), { instanceOf: UsageError, message: /unknown option 'bogus'/ });
  t.throws(() => parseCtlArgs(['-r', 'vale0:vm1', '--vhost-user', '/tmp/x.sock']), { instanceOf: UsageError, message: /goes with -n/ });
});

test('vhost-user settings: every bad one named', (t) => {
  t.deepEqual(vhostUserSettings({ kind: 'vhost-user', path: '/tmp/a.sock' }), { path: '/tmp/a.sock', client: false, queuePairs: 2, busyPollUs: 0, backlogPollUs: 0, inline: false });
  t.is(vhostUserSettings({ kind: 'vhost-user', path: '/tmp/a.sock', inline: true }).inline, true);
  t.throws(() => vhostUserSettings({ kind: 'vhost-user', path: '/tmp/a.sock', inline: 'yes' }), { message: /'inline' must be a boolean/ });
  t.is(vhostUserSettings({ kind: 'vhost-user', path: '/tmp/a.sock', busyPollUs: 50 }).busyPollUs, 50);
  t.throws(() => vhostUserSettings({ kind: 'vhost-user', path: '/tmp/a.sock', busyPollUs: -1 }), { message: /'busyPollUs' must be an integer 0..100000/ });
  t.throws(() => vhostUserSettings({ kind: 'vhost-user', path: '/tmp/a.sock', busyPollUs: 1.5 }), { message: /'busyPollUs' must be an integer 0..100000/ });
  t.is(vhostUserSettings({ kind: 'vhost-user', path: '/tmp/a.sock', backlogPollUs: 200 }).backlogPollUs, 200);
  t.throws(() => vhostUserSettings({ kind: 'vhost-user', path: '/tmp/a.sock', backlogPollUs: 100001 }), { message: /'backlogPollUs' must be an integer 0..100000/ });
  t.throws(() => vhostUserSettings({ kind: 'vhost-user', path: '/tmp/a.sock', backlogPollUs: '200' }), { message: /'backlogPollUs' must be an integer 0..100000/ });
  t.throws(() => vhostUserSettings({ kind: 'vhost-user', path: 'a.sock' }), { message: /absolute socket path/ });
  t.throws(() => vhostUserSettings({ kind: 'vhost-user', path: `/tmp/${'x'.repeat(120)}` }), { message: /longer than a unix socket path/ });
  t.throws(() => vhostUserSettings({ kind: 'vhost-user', path: '/tmp/a.sock', queuePairs: 9 }), { message: /queuePairs' must be an integer 1..8/ });
  t.throws(() => vhostUserSettings({ kind: 'vhost-user', path: '/tmp/a.sock', client: 'yes' }), { message: /'client' must be a boolean/ });
  t.throws(() => vhostUserSettings({ kind: 'vhost-user', path: '/tmp/a.sock', mode: 'x' }), { message: /unknown vhost-user setting 'mode'/ });
});

test('vhost-user inline: the default follows the switch\'s datapath, VALE_TS_VHOST_INLINE and the spec override it', (t) => {
  const saved = process.env['VALE_TS_VHOST_INLINE'];
  try {
    delete process.env['VALE_TS_VHOST_INLINE'];
    t.true(vhostUserSettings({ kind: 'vhost-user', path: '/tmp/a.sock' }, true).inline, 'a datapath thread: in-line');
    t.false(vhostUserSettings({ kind: 'vhost-user', path: '/tmp/a.sock' }, false).inline, 'the event-loop datapath: a thread per port');
    t.false(vhostUserSettings({ kind: 'vhost-user', path: '/tmp/a.sock', inline: false }, true).inline);
    t.true(vhostUserSettings({ kind: 'vhost-user', path: '/tmp/a.sock', inline: true }, false).inline);
    process.env['VALE_TS_VHOST_INLINE'] = '0';
    t.false(vhostInlineDefault(true));
    t.false(vhostUserSettings({ kind: 'vhost-user', path: '/tmp/a.sock' }, true).inline);
    t.true(vhostUserSettings({ kind: 'vhost-user', path: '/tmp/a.sock', inline: true }, true).inline, 'the spec over the environment');
    process.env['VALE_TS_VHOST_INLINE'] = '1';
    t.true(vhostInlineDefault(false));
    t.false(vhostUserSettings({ kind: 'vhost-user', path: '/tmp/a.sock', inline: false }, false).inline);
    process.env['VALE_TS_VHOST_INLINE'] = 'yes';
    t.throws(() => vhostUserSettings({ kind: 'vhost-user', path: '/tmp/a.sock' }, true), { message: /VALE_TS_VHOST_INLINE='yes'/ });
  } finally {
    if (saved === undefined) delete process.env['VALE_TS_VHOST_INLINE'];
    else process.env['VALE_TS_VHOST_INLINE'] = saved;
  }
});
