/** `vale-ctl-ts --vhost-user` parsing and the vhost-user driver spec's checks. */
import test from 'ava';
import { parseCtlArgs, UsageError } from '../../tools/vale-ctl/args.js';
import { vhostUserSettings } from '../../src/ports/vhost-user.js';

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
