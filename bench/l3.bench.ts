/**
 * Routed mode: 60-byte IPv4/UDP frames from a sender on vale0 through the
 * router (examples/router.js, a separate process on vale0:gw and vale1:gw)
 * to a receiver on vale1, against the same sender and receiver on one
 * plain switch, in the same run. Mpps at the receiver; the routed frames
 * are checked to arrive with TTL 63.
 *   node dist/bench/l3.bench.js [--seconds S] [--rounds N]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startSwitch, mpps } from './lib.js';

const dir = path.dirname(fileURLToPath(import.meta.url));
const peer = path.join(dir, 'l3-peer.js');
const routerJs = path.join(dir, '..', 'examples', 'router.js');
const A = '02000000000a';
const B = '02000000000b';
const GW0 = '02000a010001';

/** A child whose stderr/stdout line matching `re` resolves `seen`, and whose last stdout JSON line is `out`. */
function proc(args: string[], env: Record<string, string>, re: RegExp): { c: ChildProcess; seen: Promise<void>; out: Promise<Record<string, number>> } {
  const c = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  let resolveSeen!: () => void;
  const seen = new Promise<void>((r) => (resolveSeen = r));
  const check = (): void => {
    if (re.test(out) || re.test(err)) resolveSeen();
  };
  c.stdout!.on('data', (d: Buffer) => ((out += d), check()));
  c.stderr!.on('data', (d: Buffer) => ((err += d), check()));
  return {
    c,
    seen,
    out: new Promise((resolve, reject) =>
      c.on('exit', (code, sig) => (code === 0 || sig ? resolve(JSON.parse(out.trim().split('\n').filter((l) => l.startsWith('{')).pop() ?? '{}') as Record<string, number>) : reject(new Error(`${args.join(' ')} exited ${code}: ${err}`)))),
    ),
  };
}

async function run(routed: boolean, ms: number): Promise<Record<string, number>> {
  const { proc: sw, socket } = await startSwitch();
  const env = { VALE_TS_SOCKET: socket, L3_ROUTER: routed ? '1' : '0' };
  let router: ReturnType<typeof proc> | undefined;
  try {
    if (routed) {
      router = proc([routerJs, '--socket', socket], env, /router up: vale1:gw/);
      await router.seen;
    }
    const rx = proc([peer, 'rx', routed ? 'vale1:b' : 'vale0:b', B, '400'], env, /ready/);
    await rx.seen;
    const tx = proc([peer, 'tx', 'vale0:a', A, routed ? GW0 : B, '60', String(ms)], env, /^$/);
    const sent = (await tx.out)['sent']!;
    const r = await rx.out;
    return { ...r, sent, mpps: mpps(r) };
  } finally {
    if (router) {
      // the router first: it reports a switch that goes away under it as a failure
      router.c.kill('SIGTERM');
      await router.out;
    }
    sw.kill('SIGTERM');
  }
}

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '3' }, rounds: { type: 'string', default: '3' } } });
const ms = Number(values.seconds) * 1000;
console.log(`routed-mode benchmark: 60 B IPv4/UDP, ${values.seconds} s per run, best of ${values.rounds} rounds (${os.cpus().length} CPUs)`);
console.log(`load average at start: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
let plain = 0;
let routed = 0;
let ttlOk = true;
for (let i = 0; i < Number(values.rounds); i++) {
  const p = await run(false, ms);
  const r = await run(true, ms);
  plain = Math.max(plain, p['mpps']!);
  routed = Math.max(routed, r['mpps']!);
  if (r['ttl64'] !== 0 || r['ttl63'] === 0) ttlOk = false;
  console.log(`round ${i + 1}: plain switch ${p['mpps']!.toFixed(3)} Mpps (${p['received']} frames), via router ${r['mpps']!.toFixed(3)} Mpps (${r['received']} frames, ttl 63: ${r['ttl63']}, ttl 64: ${r['ttl64']})`);
}
console.log(`vale0 a -> b, one switch      ${plain.toFixed(3)} Mpps`);
console.log(`vale0 a -> router -> vale1 b  ${routed.toFixed(3)} Mpps   ratio ${(routed / plain).toFixed(3)}${ttlOk ? '' : '   (TTL NOT 63 on some routed frames)'}`);
console.log(`load average at end: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
