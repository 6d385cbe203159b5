import test from 'ava';
import { alternation, pairedRatios, parseRepeat, parseSeconds, spread, unsteadyNote } from '../../bench/repeat.js';

test('spread: median of an odd and an even count, min and max, input left unsorted', (t) => {
  const xs = [5, 1, 4];
  t.deepEqual(spread(xs), { median: 4, min: 1, max: 5 });
  t.deepEqual(xs, [5, 1, 4]);
  t.deepEqual(spread([3, 1, 10, 2]), { median: 2.5, min: 1, max: 10 });
  t.deepEqual(spread([7]), { median: 7, min: 7, max: 7 });
  t.throws(() => spread([]), { instanceOf: RangeError });
});

test('alternation: every variant once per repeat, reversed every other repeat', (t) => {
  t.deepEqual(
    alternation(['ts', 'cxx'], 3).map((o) => `${o.repeat}${o.variant}`),
    ['0ts', '0cxx', '1cxx', '1ts', '2ts', '2cxx'],
  );
  t.deepEqual(
    alternation([2, 16, 64], 2).map((o) => o.variant),
    [2, 16, 64, 64, 16, 2],
  );
  t.deepEqual(alternation([1, 2], 0), []);
});

test('pairedRatios: per repeat, equal lengths only', (t) => {
  t.deepEqual(pairedRatios([2, 9], [4, 3]), [0.5, 3]);
  t.throws(() => pairedRatios([1], [1, 2]), { instanceOf: RangeError });
});

test('parseRepeat: the default, whole numbers 1..100, a message naming the value otherwise', (t) => {
  t.is(parseRepeat(undefined, 5), 5);
  t.is(parseRepeat('1', 5), 1);
  t.is(parseRepeat('100', 5), 100);
  for (const bad of ['0', '101', '2.5', '-3', '', 'five', '1e1']) {
    t.throws(() => parseRepeat(bad, 5), { instanceOf: RangeError, message: new RegExp(`^--repeat ${bad}: give a whole number of repeats from 1 to 100`) }, bad);
  }
});

test('parseSeconds: the default, positive numbers, a message naming the option otherwise', (t) => {
  t.is(parseSeconds('compare-seconds', undefined, 2), 2);
  t.is(parseSeconds('compare-seconds', '0.5', 2), 0.5);
  for (const bad of ['0', '-1', 'x', '', '3601']) {
    t.throws(() => parseSeconds('compare-seconds', bad, 2), { instanceOf: RangeError, message: new RegExp(`^--compare-seconds ${bad}: give a number of seconds`) }, bad);
  }
});

test('unsteadyNote: silent while every variant stays within the limit, names the worst spread otherwise', (t) => {
  t.is(unsteadyNote([spread([18.6, 21.9]), spread([19, 20])]), '');
  const note = unsteadyNote([spread([5, 6]), spread([5.2, 20.6])]);
  t.regex(note, /^ {2}unsteady: one variant's runs differ by up to 4\.0x \(over 1\.5x\)/);
  t.regex(unsteadyNote([spread([0, 5])]), /a run with no frames/);
  t.is(unsteadyNote([spread([1, 1.4])], 1.5), '');
  t.not(unsteadyNote([spread([1, 1.4])], 1.3), '');
});
