/** Shared pieces of the end-to-end benchmarks: child processes and a vale-ts to run them against. */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import { ValeClient } from '../src/control/client.js';

const dir = path.dirname(fileURLToPath(import.meta.url));
/** The sender / receiver / port-holder process of the benchmarks (shared with the switch tests). */
export const peerJs = path.join(dir, '..', 'test', 'fixtures', 'vale-peer.js');
const valeTs = path.join(dir, '..', 'tools', 'vale-ts.js');

/**
 * A child node process and its last JSON line. With `stderrLine`, its
 * stderr is passed through and `seen` resolves once it has written that
 * line (vale-peer's 'hello': the switch has taken its announcement), or
 * rejects if it exits first.
 */
export function child(
  args: string[],
  env: Record<string, string>,
  opts: { stderrLine?: string } = {},
): { c: ChildProcess; out: Promise<Record<string, number>>; seen: Promise<void> } {
  const line = opts.stderrLine;
  const c = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', line === undefined ? 'inherit' : 'pipe'] });
  let out = '';
  c.stdout!.on('data', (d: Buffer) => (out += d));
  const seen =
    line === undefined
      ? Promise.resolve()
      : new Promise<void>((resolve, reject) => {
          let err = '';
          c.stderr!.on('data', (d: Buffer) => {
            process.stderr.write(d);
            err += d;
            if (err.split('\n').includes(line)) resolve();
          });
          c.on('exit', (code, sig) => reject(new Error(`${args.join(' ')} exited (${code ?? sig}) before writing '${line}'`)));
        });
  return {
    c,
    out: new Promise((resolve, reject) =>
      c.on('exit', (code, sig) => (code === 0 || sig ? resolve(out ? (JSON.parse(out.trim().split('\n').pop()!) as Record<string, number>) : {}) : reject(new Error(`${args.join(' ')} exited ${code}`)))),
    ),
    seen,
  };
}

/** A fresh vale-ts (this tree's, or `script`: another tree's, for like-with-like A/B runs) on a private socket. */
export async function startSwitch(args: string[] = [], script = valeTs, prefix: string[] = []): Promise<{ proc: ChildProcess; socket: string }> {
  const socket = path.join(os.tmpdir(), `vtbench-${process.pid}-${Math.random().toString(36).slice(2)}.sock`);
  // prefix: a wrapper command (e.g. taskset -c 1) that execs node;
  // BENCH_SWITCH_ARGS: extra vale-ts options for an A/B of any bench (e.g. --priority=0)
  const extra = (process.env['BENCH_SWITCH_ARGS'] ?? '').split(' ').filter(Boolean);
  const cmd = [...prefix, process.execPath, script, '--socket', socket, ...args, ...extra];
  const proc = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    proc.stdout!.on('data', (d: Buffer) => d.toString().includes('listening') && resolve());
    proc.on('exit', (code) => reject(new Error(`vale-ts exited ${code}`)));
  });
  return { proc, socket };
}

/** MAC address n as 12 hex digits (locally administered). */
export function macN(n: number): string {
  return '0200' + n.toString(16).padStart(8, '0');
}

/** Mpps from a receiver's {received, ns}. */
export function mpps(r: Record<string, number>): number {
  return ((r['received'] ?? 0) / (r['ns'] || 1)) * 1e3;
}

/** Aggregate Mpps of several receivers: all frames over the union of their intervals. */
export function aggregateMpps(rs: Record<string, number>[]): number {
  const got = rs.filter((r) => (r['received'] ?? 0) > 0);
  if (!got.length) return 0;
  const first = Math.min(...got.map((r) => r['first']!));
  const last = Math.max(...got.map((r) => r['last']!));
  return (got.reduce((s, r) => s + r['received']!, 0) / (last - first)) * 1e3;
}

/** A switch's wakeup / hold counters and the drop counters that moved, on one line (the --verbose benches). */
export function switchLine(switchCounters: object, totals: Record<string, number>): string {
  const drops = Object.entries(totals).filter(([k, v]) => k.startsWith('drop') && v > 0);
  return `switch ${JSON.stringify(switchCounters)} drops ${JSON.stringify(Object.fromEntries(drops))}`;
}

/** {@link switchLine} of the vale-ts listening on `socket` (its first switch), asked over its control socket. */
export async function switchLineOf(socket: string): Promise<string> {
  const [st] = await new ValeClient({ socket }).stats();
  return switchLine(st?.switchCounters ?? {}, st?.totals ?? {});
}
