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
