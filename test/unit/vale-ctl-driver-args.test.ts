/** vale-ctl-ts's --tap / --stream / --dgram: what they ask vale-ts for, and the usage errors. */
import test from 'ava';
import { parseCtlArgs, UsageError } from '../../tools/vale-ctl/args.js';

test('--tap with its options becomes a tap driver spec on -n', (t) => {
  t.deepEqual(parseCtlArgs(['-n', 'vale0:vm1', '--tap', 'vmtap0,vnet_hdr,queues=2']).driver, { kind: 'tap', ifname: 'vmtap0', vnetHdr: true, queues: 2 });
  t.deepEqual(parseCtlArgs(['--tap=vmtap0,vnet_hdr,no_offload', '-n', 'vale0:vm1']).driver, { kind: 'tap', ifname: 'vmtap0', vnetHdr: true, offload: false });
  t.deepEqual(parseCtlArgs(['-n', 'vale0:vm1', '--tap', 'vmtap0,inline']).driver, { kind: 'tap', ifname: 'vmtap0', inline: true });
  t.deepEqual(parseCtlArgs(['-n', 'vale0:vm1', '--tap', 'vmtap0,thread']).driver, { kind: 'tap', ifname: 'vmtap0', inline: false });
});

test('--stream and --dgram become socket netdev specs', (t) => {
  t.deepEqual(parseCtlArgs(['-n', 'vale0:vm1', '--stream', '/tmp/a.sock']).driver, { kind: 'stream', path: '/tmp/a.sock' });
  t.deepEqual(parseCtlArgs(['-n', 'vale0:vm1', '--stream', '/tmp/a.sock,client']).driver, { kind: 'stream', path: '/tmp/a.sock', mode: 'client' });
  t.deepEqual(parseCtlArgs(['-n', 'vale0:vm1', '--dgram', '/tmp/a.sock,peer=/tmp/q.sock']).driver, { kind: 'dgram', path: '/tmp/a.sock', peer: '/tmp/q.sock' });
});

test('driver options: unknown words, missing peer, two drivers, or no -n are usage errors', (t) => {
  t.throws(() => parseCtlArgs(['-n', 'vale0:x', '--tap', 'tap0,vnethdr']), { instanceOf: UsageError, message: /unknown option 'vnethdr'/ });
  t.throws(() => parseCtlArgs(['-n', 'vale0:x', '--dgram', '/tmp/a.sock']), { instanceOf: UsageError, message: /peer=PATH/ });
  t.throws(() => parseCtlArgs(['-n', 'vale0:x', '--tap', 't0', '--stream', '/tmp/s']), { instanceOf: UsageError, message: /one driver/ });
  t.throws(() => parseCtlArgs(['-a', 'vale0:x', '--tap', 't0']), { instanceOf: UsageError, message: /goes with -n/ });
  t.throws(() => parseCtlArgs(['--tap', 't0']), { instanceOf: UsageError, message: /goes with -n/ });
  t.throws(() => parseCtlArgs(['-n', 'vale0:x', '--tap', '']), { instanceOf: UsageError });
});

test('--backend afxdp|packet|auto goes with -a / -h only', (t) => {
  t.is(parseCtlArgs(['-a', 'vale0:eth1', '--backend', 'afxdp']).backend, 'afxdp');
  t.is(parseCtlArgs(['--backend=packet', '-h', 'vale0:eth1']).backend, 'packet');
  t.is(parseCtlArgs(['-a', 'vale0:eth1']).backend, undefined);
  t.throws(() => parseCtlArgs(['-a', 'vale0:eth1', '--backend', 'xdp']), { instanceOf: UsageError, message: /'xdp' is not afxdp, packet or auto/ });
  t.throws(() => parseCtlArgs(['-n', 'vale0:x', '--backend', 'afxdp']), { instanceOf: UsageError, message: /goes with -a or -h/ });
  t.throws(() => parseCtlArgs(['--backend', 'afxdp']), { instanceOf: UsageError, message: /goes with -a or -h/ });
});

test('--inline on|off goes with -a / -h only', (t) => {
  t.is(parseCtlArgs(['-a', 'vale0:eth1', '--inline', 'on']).inline, true);
  t.is(parseCtlArgs(['--inline=off', '-h', 'vale0:eth1']).inline, false);
  t.is(parseCtlArgs(['-a', 'vale0:eth1']).inline, undefined);
  t.throws(() => parseCtlArgs(['-a', 'vale0:eth1', '--inline', 'yes']), { instanceOf: UsageError, message: /'yes' is not on or off/ });
  t.throws(() => parseCtlArgs(['-n', 'vale0:x', '--inline', 'on']), { instanceOf: UsageError, message: /goes with -a or -h/ });
  t.throws(() => parseCtlArgs(['--inline', 'off']), { instanceOf: UsageError, message: /goes with -a or -h/ });
});
