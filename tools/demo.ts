#!/usr/bin/env node
/**
 * `npm start`: vale-ts with a live demonstration. A switch runs in this
 * process; pkt-gen-ts sends on vale0:tx and receives on vale0:rx as two
 * child processes; every second the rates and the port list with counters
 * are printed. Ctrl-C stops everything cleanly.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ValeServer } from '../src/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const pktgen = path.join(here, 'pkt-gen-ts.js');

function rate(n: number): string {
  if (n >= 1e6) return `${(n / 1e6).toFixed(3)} Mpps`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(3)} Kpps`;
  return `${n.toFixed(0)} pps`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string' },
      socket: { type: 'string' },
      len: { type: 'string' },
    },
  });
  const duration = values.duration ? Number(values.duration) : Infinity;
  if (!(duration > 0)) throw new Error(`--duration ${values.duration}: expected seconds > 0`);
  const len = values.len ?? '60';
  const socket = values.socket ?? path.join(os.tmpdir(), `vale-ts-demo-${process.pid}.sock`);
  const server = await ValeServer.listen({ socket });
  const out = process.stdout;
  out.write(`vale-ts demo: switch listening on ${server.socketPath} (userspace backend)\n`);
  out.write(`  sender:   pkt-gen-ts -i vale0:tx -f tx -l ${len}\n  receiver: pkt-gen-ts -i vale0:rx -f rx\n  Ctrl-C stops.\n\n`);
  const env = { ...process.env, VALE_TS_SOCKET: socket };
  const children: ChildProcess[] = [];
  const child = (args: string[], tag: string): ChildProcess => {
    const c = spawn(process.execPath, [pktgen, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const relay = (d: Buffer): void => {
      for (const line of d.toString().split('\n')) if (line.trim()) out.write(`  [${tag}] ${line}\n`);
    };
    c.stdout!.on('data', relay);
    c.stderr!.on('data', relay);
    children.push(c);
    return c;
  };
  child(['-i', 'vale0:rx', '-f', 'rx'], 'rx');
  // the receiver must be on the switch before the sender floods
  await new Promise<void>((resolve) => {
    const check = (): void => {
      if (server.switch('vale0')?.port('vale0:rx')?.attached) resolve();
      else setTimeout(check, 20);
    };
    check();
  });
  child(['-i', 'vale0:tx', '-f', 'tx', '-l', len], 'tx');

  let last = new Map<string, Record<string, number>>();
  let t0 = Date.now();
  const started = Date.now();
  const tick = setInterval(() => {
    const now = Date.now();
    const dt = (now - t0) / 1000;
    t0 = now;
    const sw = server.switch('vale0');
    if (!sw) return;
    const cur = new Map(sw.stats().ports.map((p) => [p.name, p.counters]));
    const d = (name: string, k: string): number => ((cur.get(name)?.[k] ?? 0) - (last.get(name)?.[k] ?? 0)) / dt;
    out.write(
      `[${Math.round((now - started) / 1000).toString().padStart(4)}s] vale0:tx -> vale0:rx   switched ${rate(d('vale0:tx', 'rxFrames'))}   ` +
        `delivered ${rate(d('vale0:rx', 'txFrames'))}   dropped (rx ring full) ${rate(d('vale0:rx', 'dropNoSpace'))}\n`,
    );
    for (const p of sw.stats().ports) {
      const c = p.counters;
      out.write(
        `        ${p.name.padEnd(10)} bridge_idx ${sw.bridgeIndex} port_idx ${p.portIndex}   from port ${c['rxFrames']} frames   to port ${c['txFrames']} frames   ` +
          `drops: no-space ${c['dropNoSpace']} invalid ${c['dropInvalid']} runt ${c['dropRunt']}\n`,
      );
    }
    last = cur;
    if (now - started >= duration * 1000) stop('duration reached');
  }, 1000);

  let stopping = false;
  const stop = (why: string): void => {
    if (stopping) return;
    stopping = true;
    clearInterval(tick);
    out.write(`\nvale-ts demo: ${why}, stopping\n`);
    for (const c of children) c.kill('SIGINT');
    const exited = children.map((c) => new Promise<void>((r) => (c.exitCode !== null ? r() : c.once('exit', () => r()))));
    void Promise.race([Promise.all(exited), new Promise((r) => setTimeout(r, 3000))]).then(() => {
      for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
      server.close('demo finished');
      process.exit(0);
    });
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((e: unknown) => {
  process.stderr.write(`vale-ts demo: ${(e as Error).message}\n`);
  process.exit(1);
});
