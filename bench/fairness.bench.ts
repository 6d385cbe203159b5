/**
 * Rate and fairness figures that used to be asserted in tests, where they
 * failed whenever the machine was busy. Here they are measured and reported:
 *   - fairness: three senders flood one slow receiver through a switch hosted
 *     in this process; each sender's share of what the receiver counted in a
 *     window that opens once all three are seen (a fair switch: ~1/3 each);
 *   - pacing: pkt-gen-ts -R 100000 over a pipe; the achieved rate against the
 *     asked one (within 2% on an idle machine).
 *   node dist/bench/fairness.bench.js [--rounds N] [--window-ms MS]
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ValeServer } from '../src/index.js';

const dir = path.dirname(fileURLToPath(import.meta.url));
// the tests' client process: its recv mode counts frames per source MAC
const valePeer = path.join(dir, '..', 'test', 'fixtures', 'vale-peer.js');
const pktgen = path.join(dir, '..', 'tools', 'pkt-gen-ts.js');
const MAC = { a: '02000000000a', b: '02000000000b', c: '02000000000c', d: '02000000000d' };

function proc(file: string, args: string[], env: Record<string, string> = {}): { kill: () => void; out: Promise<string>; said: (re: RegExp) => Promise<void> } {
  const c = spawn(process.execPath, [file, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  c.stdout.on('data', (d: Buffer) => (out += d));
  c.stderr.on('data', (d: Buffer) => (err += d));
  const said = (re: RegExp): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        if (re.test(err)) resolve();
      };
      c.stderr.on('data', check);
      c.on('close', () => reject(new Error(`${file} exited before printing ${re}: ${err}`)));
      check();
    });
  return { kill: () => c.kill('SIGKILL'), out: new Promise((r) => c.on('close', () => r(out))), said };
}

async function fairness(windowMs: number): Promise<number[]> {
  const socket = path.join(os.tmpdir(), `fairbench-${process.pid}-${Math.random().toString(36).slice(2)}.sock`);
  const srv = await ValeServer.listen({ socket });
  try {
    const env = { VALE_TS_SOCKET: socket, PEER_SLOW_US: '100' };
    const rx = spawn(process.execPath, [valePeer, 'recv', 'vale0:rx', MAC.a], {
      env: { ...process.env, ...env, PEER_WINDOW_MS: String(windowMs), PEER_SOURCES: '3' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    rx.stdout.on('data', (d: Buffer) => (out += d));
    const done = new Promise<void>((r) => rx.on('close', () => r()));
    await new Promise<void>((r) => rx.stderr.on('data', (d: Buffer) => (err += d).includes('hello') && r()));
    const senders = [MAC.b, MAC.c, MAC.d].map((m, i) => proc(valePeer, ['flood', `vale0:s${i}`, m, MAC.a], env));
    await done;
    for (const s of senders) s.kill();
    await Promise.all(senders.map((s) => s.out));
    const by = (JSON.parse(out) as { bySrc: Record<string, number> }).bySrc;
    const total = (by['b'] ?? 0) + (by['c'] ?? 0) + (by['d'] ?? 0);
    return ['b', 'c', 'd'].map((k) => (by[k] ?? 0) / (total || 1));
  } finally {
    srv.close();
  }
}

async function pacing(): Promise<number> {
  const name = `vale0:pace${process.pid}`;
  const rx = proc(pktgen, ['-i', `${name}}0`, '-f', 'rx', '-W']);
  // the receiver holds its end before the sender opens the other
  await rx.said(/reading from/);
  const tx = proc(pktgen, ['-i', `${name}{0`, '-f', 'tx', '-R', '100000', '-n', '300000']);
  const txOut = await tx.out;
  await rx.out;
  const m = /^Sent (\d+) packets \d+ bytes \d+ events \d+ bytes each in (\d+\.\d+) seconds\.$/m.exec(txOut);
  if (!m) throw new Error(`no Sent line in: ${txOut}`);
  return Number(m[1]) / Number(m[2]);
}

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, 'window-ms': { type: 'string', default: '1500' } } });
const rounds = Number(values.rounds);
console.log(`fairness: 3 flooding senders -> 1 slow receiver through vale-ts, ${values['window-ms']} ms window, ${rounds} rounds`);
for (let i = 0; i < rounds; i++) {
  const shares = await fairness(Number(values['window-ms']));
  console.log(`  round ${i + 1}: shares ${shares.map((s) => s.toFixed(3)).join(' ')}  (min/max ${(Math.min(...shares) / Math.max(...shares)).toFixed(2)})`);
}
console.log(`pacing: pkt-gen-ts -R 100000 -n 300000 over a pipe, ${rounds} rounds`);
for (let i = 0; i < rounds; i++) {
  const rate = await pacing();
  console.log(`  round ${i + 1}: ${rate.toFixed(0)} pps (${(((rate - 100000) / 100000) * 100).toFixed(2)}% off the asked rate)`);
}
