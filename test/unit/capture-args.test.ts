/** `vale-ctl-ts --capture`'s command line. */
import test from 'ava';
import { parseCaptureArgs } from '../../tools/vale-ctl/capture.js';

test('a port watches both directions unless /r or /t says otherwise', (t) => {
  const a = parseCaptureArgs(['--capture', 'vale0:1,vale0:2/r', '--capture=vale1:x/t', '-w', '-', '--filter', 'icmp or port 53', '-c', '10', '--nano', '--snaplen', '128']);
  t.deepEqual(a, { monitors: ['vale0:1/rt', 'vale0:2/r', 'vale1:x/t'], out: '-', filter: 'icmp or port 53', count: 10, snaplen: 128, nano: true, socket: undefined });
  t.is(parseCaptureArgs(['--capture', 'vale0:1', '--help']), 'help');
});

test('bad arguments are usage errors that say what is wrong', (t) => {
  t.throws(() => parseCaptureArgs(['--capture', 'eth0']), { message: /--capture: invalid port name 'eth0'/ });
  t.throws(() => parseCaptureArgs(['--capture', 'netmap:eth0']), { message: /'netmap:eth0' is not a vale port/ });
  t.throws(() => parseCaptureArgs(['--capture', 'vale0:1/x']), { message: /only \/r, \/t or \/rt|flag/ });
  t.throws(() => parseCaptureArgs(['--capture', 'vale0:1', '-c', '0']), { message: /-c '0': give a whole number/ });
  t.throws(() => parseCaptureArgs(['--capture', 'vale0:1', '--snaplen', '300000']), { message: /--snaplen '300000'/ });
  t.throws(() => parseCaptureArgs(['--capture', 'vale0:1,vale0:1']), { message: /named twice/ });
  t.throws(() => parseCaptureArgs(['--capture', 'vale0:1', 'extra']), { message: /unexpected argument: extra/ });
});
