/**
 * Runs every benchmark, one after the other, and prints their summaries.
 *   node dist/bench/run-all.js [--full]
 * By default each runs with short options (a few seconds each), enough to
 * see the ratios; --full uses each benchmark's own defaults (the figures in
 * bench/RESULTS.md). Benchmarks that need root (the Linux bridge and ping
 * baselines) say so and skip that part themselves. Exits non-zero if any
 * benchmark failed, after running the rest.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { parseArgs } from 'node:util';

const dir = path.dirname(fileURLToPath(import.meta.url));

interface Bench {
  file: string;
  quick: string[];
  full: string[];
}

const BENCHES: Bench[] = [
  { file: 'mac-table.bench.js', quick: ['--quick'], full: [] },
  { file: 'pipe.bench.js', quick: ['--count', '2000000', '--rounds', '1'], full: [] },
  { file: 'pktgen.bench.js', quick: ['--count', '2000000', '--rounds', '1', '--vale-count', '1000000'], full: [] },
  { file: 'switch.bench.js', quick: ['--seconds', '1', '--no-bridge', '--repeat', '1', '--compare-seconds', '1'], full: [] },
  { file: 'scale.bench.js', quick: ['--seconds', '1', '--pairs', '1,2'], full: [] },
  { file: 'rtt.bench.js', quick: ['--count', '200'], full: [] },
  { file: 'idle.bench.js', quick: ['--seconds', '3'], full: [] },
  { file: 'fairness.bench.js', quick: ['--rounds', '1'], full: [] },
  { file: 'preload.bench.js', quick: ['--count', '500000', '--rounds', '1'], full: [] },
  { file: 'churn.bench.js', quick: ['--cycles', '2000', '--every', '500'], full: [] },
  { file: 'soak.js', quick: ['--minutes', '1'], full: [] },
];

interface Outcome {
  name: string;
  code: number | null;
  seconds: number;
  out: string;
}

/** Runs one benchmark with its output shown live and kept for the summary. */
function run(b: Bench, full: boolean): Promise<Outcome> {
  const args = [path.join(dir, b.file), ...(full ? b.full : b.quick)];
  console.log(`\n=== ${b.file} ${args.slice(1).join(' ')}`);
  const t0 = process.hrtime.bigint();
  return new Promise((resolve) => {
    const c = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => {
      out += d;
      process.stdout.write(d);
    });
    c.on('error', (e) => {
      out += `cannot start: ${e.message}\n`;
    });
    c.on('close', (code) => resolve({ name: b.file.replace(/\.bench\.js$/, ''), code, seconds: Number(process.hrtime.bigint() - t0) / 1e9, out }));
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { full: { type: 'boolean' } } });
  const full = values.full ?? false;
  const outcomes: Outcome[] = [];
  for (const b of BENCHES) outcomes.push(await run(b, full));
  console.log(`\n=== summary (${full ? 'full' : 'quick'} options; the lead's figures and commands are in bench/RESULTS.md)`);
  for (const o of outcomes) {
    const status = o.code === 0 ? 'ok' : `FAILED (exit ${o.code})`;
    console.log(`\n${o.name}: ${status}, ${o.seconds.toFixed(1)} s`);
    // the result lines: figures, ratios and what was skipped
    const lines = o.out.split('\n').filter((l) => /\d|skipped/i.test(l) && l.trim() !== '');
    for (const l of lines.slice(-12)) console.log(`  ${l.trim()}`);
  }
  if (outcomes.some((o) => o.code !== 0)) process.exitCode = 1;
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
