import test from 'ava';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ex = (f: string): string => path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'examples', f);

test('examples/pipe-pair moves 100 frames through a pipe in order', async (t) => {
  const { stdout } = await run(process.execPath, [ex('pipe-pair.js')]);
  t.regex(stdout, /sent 100, received 100 in order/);
});

test('examples/embed-switch serves clients and shows counters and the MAC table', async (t) => {
  const { stdout } = await run(process.execPath, [ex('embed-switch.js')]);
  t.regex(stdout, /b received 1 frame/);
  t.regex(stdout, /rxFrames: 1/);
  t.regex(stdout, /02:00:00:00:00:0a/);
});

test('examples/rx-typed-arrays receives 10000 frames through typed arrays, in order', async (t) => {
  const { stdout } = await run(process.execPath, [ex('rx-typed-arrays.js')], { timeout: 20_000 });
  t.regex(stdout, /received 10000 frames, 600000 bytes, in order/);
});

test('examples/vale-control creates, lists and removes ports through ValeClient', async (t) => {
  const { stdout } = await run(process.execPath, [ex('vale-control.js')], { timeout: 20_000 });
  t.regex(stdout, /created vale0:store: 512\/512 slots/);
  t.regex(stdout, /vale0:store bridge_idx 0 port_idx \d+ \(persistent\)/);
  t.regex(stdout, /vale0 has 2 ports/);
  t.regex(stdout, /after remove: vale0:user\n/);
});

test('examples/vhost-user-port makes vale-ts a vhost-user back-end and lists its drop reasons', async (t) => {
  const { stdout } = await run(process.execPath, [ex('vhost-user-port.js')], { timeout: 20_000 });
  t.regex(stdout, /vale0:vm1: vhost-user \/\S+ \(server, waiting for a front-end\)/);
  t.regex(stdout, /dropOutOfMemoryTable/);
});
