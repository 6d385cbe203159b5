/**
 * Two network namespaces joined through vale-ts (their veth host ends
 * attached with `vale-ctl-ts -a --backend afxdp`, then `--backend packet`) versus through a Linux
 * bridge, in the same run (issue 12): 60-byte frames per second sent by
 * trafgen (netsniff-ng) and counted on the receiving veth, and TCP
 * throughput by iperf3. vale-ts runs as its own process (tools/vale-ts.js).
 *
 *   node dist/bench/linux-if.bench.js [--seconds 5]
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startSwitch } from './lib.js';
import { ensurePackages } from '../test/fixtures/system-packages.js';
import { makeNamespaces, must, run, type NsEnd } from '../test/fixtures/linux-if-netns.js';

const ctlJs = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'tools', 'vale-ctl-ts.js');

async function rxPackets(e: NsEnd): Promise<number> {
  const j = JSON.parse(await must('ip', '-n', e.ns, '-s', '-j', 'link', 'show', e.inner)) as { stats64: { rx: { packets: number } } }[];
  return j[0]!.stats64.rx.packets;
}

/** trafgen sends 60-byte UDP frames from a to b for `seconds`; frames/s that reached b's interface. */
async function pps(a: NsEnd, b: NsEnd, seconds: number): Promise<{ sent: number; rxPps: number }> {
  const cfg = `{ eth(da=${b.mac}, sa=${a.mac}, type=0x0800), ipv4(saddr=${a.ip}, daddr=${b.ip}, ttl=64), udp(sp=9, dp=9), fill(0x00, 18) }`;
  const before = await rxPackets(b);
  const t0 = process.hrtime.bigint();
  const r = await run('timeout', ['-s', 'INT', String(seconds), 'ip', 'netns', 'exec', a.ns, 'trafgen', '--dev', a.inner, '--conf', '-', '--cpp', '-q', '--no-sock-mem'], { input: cfg });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  // let the last frames drain through
  await new Promise((res) => setTimeout(res, 300));
  const got = (await rxPackets(b)) - before;
  const m = /(\d+)\s+packets outgoing/.exec(r.stdout + r.stderr);
  return { sent: m ? Number(m[1]) : NaN, rxPps: got / secs };
}

/** iperf3 from a to b for `seconds`: Gbit/s received. */
async function tcp(a: NsEnd, b: NsEnd, seconds: number): Promise<number> {
  const srv = spawn('ip', ['netns', 'exec', b.ns, 'iperf3', '-s', '-1', '--forceflush', '-B', b.ip], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve) => srv.stdout!.on('data', (d: Buffer) => d.toString().includes('listening') && resolve()));
  const r = await run('ip', ['netns', 'exec', a.ns, 'iperf3', '-c', b.ip, '-t', String(seconds), '-J']);
  srv.kill();
  const j = JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } };
  return j.end.sum_received.bits_per_second / 1e9;
}

const t0 = Date.now();
const step = (what: string): void => console.error(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${what}`);

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: 'string' } } });
  const seconds = Number(values.seconds ?? 5);
  ensurePackages(['iproute2', 'netsniff-ng', 'iperf3']);
  const { ends, remove } = await makeNamespaces('bl', 2, 215);
  const [a, b] = ends as [NsEnd, NsEnd];
  const br = `br${process.pid % 100000}`;
  const res: Record<string, { rxPps: number; sent: number; gbps: number }> = {};
  // interrupted: remove the namespaces and the bridge all the same
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => void run('ip', ['link', 'del', br]).then(remove).then(() => process.exit(130)));
  }
  try {
    // the Linux bridge
    await must('ip', 'link', 'add', br, 'type', 'bridge');
    for (const e of ends) await must('ip', 'link', 'set', e.host, 'master', br, 'up');
    await must('ip', 'link', 'set', br, 'up');
    await must('ip', 'netns', 'exec', a.ns, 'ping', '-c', '2', '-i', '0.2', b.ip);
    step('linux bridge: trafgen');
    const bp = await pps(a, b, seconds);
    step('linux bridge: iperf3');
    res['linux bridge'] = { ...bp, gbps: await tcp(a, b, seconds) };
    await must('ip', 'link', 'del', br);
    for (const e of ends) await must('ip', 'link', 'set', e.host, 'down');

    // vale-ts in its own process
    step('vale-ts: start');
    // one vale-ts process per backend, the interfaces attached with --backend
    for (const backend of ['afxdp', 'packet'] as const) {
      const { proc, socket } = await startSwitch();
      try {
        for (const e of ends) await must(process.execPath, ctlJs, '--socket', socket, '-a', `vale0:${e.host}`, '--backend', backend);
        // (the listing exits 1 after the last port, as valectl does)
        const served = /\[([a-z0-9-]+(?: zero-copy| copy)?) /.exec((await run(process.execPath, [ctlJs, '--socket', socket])).stdout)?.[1] ?? backend;
        const key = `vale-ts ${served}`;
        step(`${key}: ping`);
        await must('ip', 'netns', 'exec', a.ns, 'ping', '-c', '2', '-i', '0.2', b.ip);
        step(`${key}: trafgen`);
        const vp = await pps(a, b, seconds);
        step(`${key}: iperf3`);
        res[key] = { ...vp, gbps: await tcp(a, b, seconds) };
        const st = await must(process.execPath, ctlJs, '--socket', socket, '--stats');
        console.error(st);
        for (const e of ends) await must(process.execPath, ctlJs, '--socket', socket, '-d', `vale0:${e.host}`);
      } finally {
        proc.kill('SIGTERM');
      }
    }
  } finally {
    await run('ip', ['link', 'del', br]);
    await remove();
  }
  console.log(`linux-if benchmark: 2 namespaces, veth, ${seconds} s per figure; load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  for (const [k, v] of Object.entries(res)) console.log(`  ${k.padEnd(18)} 60 B: sent ${(v.sent / seconds / 1e3).toFixed(0).padStart(6)} kpps, received ${(v.rxPps / 1e3).toFixed(0).padStart(6)} kpps   TCP ${v.gbps.toFixed(2)} Gbit/s`);
  const l = res['linux bridge']!;
  for (const [k, v] of Object.entries(res)) {
    if (k === 'linux bridge') continue;
    console.log(`  ratio ${k} / bridge: 60 B pps ${(v.rxPps / l.rxPps).toFixed(2)} (target 1.5)   TCP ${(v.gbps / l.gbps).toFixed(2)} (target 0.70)`);
  }
  console.log(`  uptime: ${(await run('uptime', [])).stdout.trim()}`);
}

await main();
