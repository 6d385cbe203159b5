import test from 'ava';
import { checkConfig } from '../../src/vale/config.js';

test('config: holdUs for a switch and a port; out-of-range values are errors naming the key', (t) => {
  const ok = checkConfig('{ "switches": { "vale0": { "holdUs": 0, "ports": { "a": { "holdUs": 5000 }, "b": {} } } } }', 'x.json');
  t.deepEqual(ok.errors, []);
  const sw = ok.config!.switches[0]!;
  t.is(sw.options.holdUs, 0);
  t.is(sw.ports.find((p) => p.name === 'vale0:a')!.holdUs, 5000);
  t.is(sw.ports.find((p) => p.name === 'vale0:b')!.holdUs, undefined, 'absent: the switch default');
  const bad = checkConfig('{ "switches": { "vale0": { "holdUs": -1, "ports": { "a": { "holdUs": 2000000 } } } } }', 'x.json');
  t.is(bad.errors.length, 2);
  t.regex(bad.errors[0]!.message, /"holdUs" \(µs\)/);
  t.regex(bad.errors[1]!.message, /"holdUs" \(µs\) of vale0:a/);
});
