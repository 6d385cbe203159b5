import test from 'ava';
import { getopt, UsageError } from '../../tools/getopt.js';

const LONG = { socket: { arg: 'required', what: 'the control socket path' }, json: { arg: 'none' }, stats: { arg: 'optional' } } as const;

test('posix: stops at the first operand, - is an operand, -- ends options', (t) => {
  t.deepEqual(getopt(['-a', '1', 'x', '-b'], 'a:b'), { opts: [{ opt: 'a', value: '1' }], operands: ['x', '-b'] });
  t.deepEqual(getopt(['-ba--', '--', '-b'], 'a:b'), { opts: [{ opt: 'b' }, { opt: 'a', value: '--' }], operands: ['-b'] });
  t.throws(() => getopt(['-q'], 'a:b'), { instanceOf: UsageError, message: 'unknown option -q (see -h for the list of options)' });
  t.throws(() => getopt(['-a'], 'a:b'), { instanceOf: UsageError, message: 'option -a requires an argument' });
});

test('gnu: operands anywhere, long options in three forms, glibc wording', (t) => {
  t.deepEqual(getopt(['x', '-v', '--socket', '/s', 'y', '-lvale0:1', '--stats=vale0', '--json', '--', '-v'], 'l:v', { dialect: 'gnu', long: LONG }), {
    opts: [
      { opt: 'v' },
      { opt: 'socket', value: '/s', long: true },
      { opt: 'l', value: 'vale0:1' },
      { opt: 'stats', value: 'vale0', long: true },
      { opt: 'json', long: true },
    ],
    operands: ['x', 'y', '-v'],
  });
  t.deepEqual(getopt(['--socket=/t', '--stats'], '', { dialect: 'gnu', long: LONG }).opts, [
    { opt: 'socket', value: '/t', long: true },
    { opt: 'stats', long: true },
  ]);
  const g = { dialect: 'gnu', long: LONG } as const;
  t.throws(() => getopt(['-q'], 'l:v', g), { message: "invalid option -- 'q'" });
  t.throws(() => getopt(['-l'], 'l:v', g), { message: "option requires an argument -- 'l'" });
  t.throws(() => getopt(['--nope'], 'l:v', g), { message: "unrecognized option '--nope'" });
  t.throws(() => getopt(['--json=1'], 'l:v', g), { message: "option '--json' takes no argument" });
  t.throws(() => getopt(['--socket'], 'l:v', g), { message: "option '--socket' requires an argument (the control socket path)" });
  t.throws(() => getopt(['--socket='], 'l:v', g), { message: /requires an argument/ });
  t.throws(() => getopt(['--json'], 'l:v'), { message: /unknown option --/ }, 'posix has no long options');
});
