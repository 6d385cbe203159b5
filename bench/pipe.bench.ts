/**
 * Pipe benchmark: frames between two processes through a netmap pipe, from
 * TypeScript and, in the same run, from the C++ reference loop doing the
 * same work, so the result is a ratio. 60- and 1514-byte frames.
 *   node dist/bench/pipe.bench.js [--count N] [--rounds R]
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { parseArgs } from 'node:util';

/** the pipe end shared with the tests */
const peer = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'test', 'fixtures', 'pipe-peer.js');

interface Res {
  frames: number;
  errors: number;
  ns: number;
}

function side(args: string[]): Promise<Res> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [peer, 'bench', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d));
    c.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as Res) : reject(new Error(`pipe-peer ${args.join(' ')} exited ${code}`))));
  });
}

let uniq = 0;
async function run(impl: 'ts' | 'cpp', len: number, count: number, batch: number): Promise<number> {
  const name = `vale0:bench${process.pid}x${uniq++}`;
  const [rx] = await Promise.all([
    side([impl, 'rx', `${name}}0`, String(count), String(len), String(batch)]),
    side([impl, 'tx', `${name}{0`, String(count), String(len), String(batch)]),
  ]);
  if (rx.errors !== 0 || rx.frames !== count) throw new Error(`${impl} ${len}B: ${rx.errors} bad frames of ${rx.frames}`);
  return (rx.frames / rx.ns) * 1e3; // Mpps
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { count: { type: 'string' }, rounds: { type: 'string' }, batch: { type: 'string' } } });
  const rounds = Number(values.rounds ?? 3);
  const batch = Number(values.batch ?? 512);
  const rows: string[] = [];
  console.log(`pipe benchmark: tx process -> rx process, ${batch}-frame batches, 1024-slot rings, best of ${rounds} rounds`);
  for (const len of [60, 1514]) {
    const count = Number(values.count ?? (len === 60 ? 30_000_000 : 10_000_000));
    let best = { ts: 0, cpp: 0 };
    for (let r = 0; r < rounds; r++) {
      // alternate the order so neither implementation always runs on a warm machine
      const order: ('ts' | 'cpp')[] = r % 2 ? ['cpp', 'ts'] : ['ts', 'cpp'];
      for (const impl of order) best = { ...best, [impl]: Math.max(best[impl], await run(impl, len, count, batch)) };
    }
    const line = `${String(len).padStart(5)} B  TypeScript ${best.ts.toFixed(2).padStart(6)} Mpps   C++ reference ${best.cpp.toFixed(2).padStart(6)} Mpps   ratio ${(best.ts / best.cpp).toFixed(2)}`;
    console.log(line);
    rows.push(line);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
