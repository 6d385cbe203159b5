/**
 * Repeated, alternated comparisons for the benchmarks: one run of a 10-15%
 * target on a shared 2-vCPU machine swings with the scheduler by more than
 * the target (switch.bench's "TS decision costs" read 8.7%, 25.5% and 5.0%
 * in three single runs), so a comparison runs every variant once per
 * repeat and is judged on the medians.
 */

/** The median, smallest and largest of a non-empty list. */
export interface Spread {
  median: number;
  min: number;
  max: number;
}

/** Median, min and max of `xs` (the mean of the middle two for an even count). */
export function spread(xs: readonly number[]): Spread {
  if (xs.length === 0) throw new RangeError('spread of no values');
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return { median: s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2, min: s[0]!, max: s[s.length - 1]! };
}

/**
 * The order in which to run `variants` for `repeats` repeats: each repeat
 * runs every variant once, and every other repeat runs them in reverse
 * (A B, B A, A B ...; 2 16 64, 64 16 2 ...), so that load that rises or
 * falls through the run does not always land on the same variant.
 */
export function alternation<V>(variants: readonly V[], repeats: number): { repeat: number; variant: V }[] {
  const order: { repeat: number; variant: V }[] = [];
  for (let r = 0; r < repeats; r++) {
    const vs = r % 2 === 0 ? variants : [...variants].reverse();
    for (const variant of vs) order.push({ repeat: r, variant });
  }
  return order;
}

/** `a[i] / b[i]` for each repeat i (the paired ratios: both runs of a pair saw about the same load). */
export function pairedRatios(a: readonly number[], b: readonly number[]): number[] {
  if (a.length !== b.length) throw new RangeError(`paired ratios of ${a.length} and ${b.length} values`);
  return a.map((x, i) => x / b[i]!);
}

/**
 * `--repeat N`: a whole number of repeats, 1..100 (undefined: `def`).
 * Throws a message naming the option, the value and what it takes.
 */
export function parseRepeat(value: string | undefined, def: number): number {
  if (value === undefined) return def;
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isInteger(n) || n < 1 || n > 100) {
    throw new RangeError(`--repeat ${value}: give a whole number of repeats from 1 to 100 (default ${def}; 5 or more for a verdict on a 10-15% target)`);
  }
  return n;
}

/** `--seconds`-style option: a positive number of seconds up to an hour (undefined: `def`). */
export function parseSeconds(name: string, value: string | undefined, def: number): number {
  if (value === undefined) return def;
  const s = Number(value);
  if (value.trim() === '' || !Number.isFinite(s) || s <= 0 || s > 3600) {
    throw new RangeError(`--${name} ${value}: give a number of seconds above 0 and at most 3600 (default ${def})`);
  }
  return s;
}

/**
 * The largest max/min among `spreads` (rates, all positive), and a line
 * saying the comparison is unsteady when it is above `limit`: runs of one
 * variant that differ by more than that saw different loads (on a quiet
 * 2-vCPU machine 1->1 runs stay within ~1.2x), and a verdict on their
 * medians says little. Empty string when steady.
 */
export function unsteadyNote(spreads: readonly Spread[], limit = 1.5): string {
  const worst = Math.max(...spreads.map((s) => (s.min > 0 ? s.max / s.min : Infinity)));
  if (!(worst > limit)) return '';
  return (
    `  unsteady: one variant's runs differ by up to ${Number.isFinite(worst) ? worst.toFixed(1) + 'x' : 'a run with no frames'} (over ${limit}x): ` +
    'the load changed during the comparison; judge on a quiet machine or with a larger --repeat'
  );
}
