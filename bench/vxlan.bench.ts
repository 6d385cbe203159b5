/**
 * Two namespaces joined over VXLAN, through two vale-ts versus through two
 * Linux vxlan devices, in the same run (issue 14): 60-byte frames per second
 * sent by trafgen and counted on the receiving namespace's interface, and
 * TCP throughput by iperf3.
 *
 *   end A --veth-- [host A] ==underlay veth, VXLAN vni 42== [host B] --veth-- end B
 *
 * Linux: in each host namespace a bridge enslaves the end's veth and a vxlan
 * device (remote = the other host). vale-ts: in each host namespace a vale-ts
 * process attaches the end's veth (`-a`, AF_PACKET) and has a VXLAN port
 * (`--vxlan`) to the other host. The ends' MTU is 1450 in both.
 *
 * The two vale-ts share a host, so they can also use the co-resident
 * shortcut (docs/vxlan-shortcut.md): measured twice, the VTEPs with
 * `shortcut=off` (VXLAN over the veth underlay) and with it on, once the
 * shortcut is up both ways ("shortcut vs VXLAN between the same two
 * vale-ts", target >= 5x).
 *
 *   node dist/bench/vxlan.bench.js [--seconds 5]
 */
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ensurePackages } from '../test/fixtures/system-packages.js';
import { must, run } from '../test/fixtures/linux-if-netns.js';
import { startValeTsIn, toolsDir } from '../test/fixtures/vale-ts-netns.js';

const tag = `vb${process.pid % 100000}`;
const ctlJs = path.join(toolsDir, 'vale-ctl-ts.js');
interface End { ns: string; host: string; hostIf: string; inner: string; ip: string; mac: string; under: string }

async function rxPackets(e: End): Promise<number> {
  const j = JSON.parse(await must('ip', '-n', e.ns, '-s', '-j', 'link', 'show', e.inner)) as { stats64: { rx: { packets: number } } }[];
  return j[0]!.stats64.rx.packets;
}

async function pps(a: End, b: End, seconds: number): Promise<{ sent: number; rxPps: number }> {
  const cfg = `{ eth(da=${b.mac}, sa=${a.mac}, type=0x0800), ipv4(saddr=${a.ip}, daddr=${b.ip}, ttl=64), udp(sp=9, dp=9), fill(0x00, 18) }`;
  const before = await rxPackets(b);
  const t0 = process.hrtime.bigint();
  const r = await run('timeout', ['-s', 'INT', String(seconds), 'ip', 'netns', 'exec', a.ns, 'trafgen', '--dev', a.inner, '--conf', '-', '--cpp', '-q', '--no-sock-mem'], { input: cfg });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  await new Promise((res) => setTimeout(res, 300));
  const got = (await rxPackets(b)) - before;
  const m = /(\d+)\s+packets outgoing/.exec(r.stdout + r.stderr);
  return { sent: m ? Number(m[1]) : NaN, rxPps: got / secs };
}

async function tcp(a: End, b: End, seconds: number): Promise<number> {
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
  const ends: End[] = [0, 1].map((i) => ({
    ns: `${tag}e${i}`, host: `${tag}h${i}`, hostIf: `${tag}p${i}`, inner: `${tag}i${i}`,
    ip: `192.168.77.${i + 1}`, mac: `02:00:00:77:00:0${i + 1}`, under: `10.77.0.${i + 1}`,
  }));
  const nss = ends.flatMap((e) => [e.ns, e.host]);
  const remove = async (): Promise<void> => {
    for (const n of nss) await run('ip', ['netns', 'del', n]);
  };
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => void remove().then(() => process.exit(130)));
  const res: Record<string, { rxPps: number; sent: number; gbps: number }> = {};
  try {
    for (const n of nss) {
      await must('ip', 'netns', 'add', n);
      await must('ip', '-n', n, 'link', 'set', 'lo', 'up');
    }
    await must('ip', 'link', 'add', `${tag}u0`, 'netns', ends[0]!.host, 'type', 'veth', 'peer', 'name', `${tag}u1`, 'netns', ends[1]!.host);
    for (const [i, e] of ends.entries()) {
      await must('ip', '-n', e.host, 'addr', 'add', `${e.under}/24`, 'dev', `${tag}u${i}`);
      await must('ip', '-n', e.host, 'link', 'set', `${tag}u${i}`, 'up');
      await must('ip', 'link', 'add', e.inner, 'netns', e.ns, 'address', e.mac, 'mtu', '1450', 'type', 'veth', 'peer', 'name', e.hostIf, 'netns', e.host);
      await must('ip', '-n', e.ns, 'addr', 'add', `${e.ip}/24`, 'dev', e.inner);
      await must('ip', '-n', e.ns, 'link', 'set', e.inner, 'up');
      await must('ip', '-n', e.host, 'link', 'set', e.hostIf, 'mtu', '1450', 'up');
      // Linux's vxlan leaves inner checksums to the NIC; a veth underlay has none (see docs/vxlan.md)
      await must('ip', 'netns', 'exec', e.host, 'ethtool', '-K', `${tag}u${i}`, 'tx', 'off');
    }
    const [a, b] = ends as [End, End];
    // Linux: bridge + vxlan in each host namespace
    for (const [i, e] of ends.entries()) {
      const other = ends[1 - i]!;
      await must('ip', '-n', e.host, 'link', 'add', 'vx42', 'type', 'vxlan', 'id', '42', 'dstport', '4789', 'local', e.under, 'remote', other.under);
      await must('ip', '-n', e.host, 'link', 'add', 'br0', 'type', 'bridge');
      for (const d of ['vx42', e.hostIf]) await must('ip', '-n', e.host, 'link', 'set', d, 'master', 'br0', 'up');
      await must('ip', '-n', e.host, 'link', 'set', 'br0', 'up');
    }
    await must('ip', 'netns', 'exec', a.ns, 'ping', '-c', '2', '-i', '0.2', b.ip);
    step('linux vxlan: trafgen');
    const lp = await pps(a, b, seconds);
    step('linux vxlan: iperf3');
    res['linux vxlan'] = { ...lp, gbps: await tcp(a, b, seconds) };
    for (const e of ends) {
      await must('ip', '-n', e.host, 'link', 'del', 'br0');
      await must('ip', '-n', e.host, 'link', 'del', 'vx42');
    }
    // vale-ts: one process per host namespace, VXLAN only, then with the shortcut
    for (const shortcut of ['off', 'on'] as const) {
      const name = shortcut === 'off' ? 'vale-ts vxlan' : 'vale-ts shortcut';
      step(`${name}: start`);
      const sw = await Promise.all(ends.map((e) => startValeTsIn(e.host, path.join(os.tmpdir(), `${tag}-${e.host}.sock`))));
      try {
        for (const [i, e] of ends.entries()) {
          const socket = path.join(os.tmpdir(), `${tag}-${e.host}.sock`);
          await must('ip', 'netns', 'exec', e.host, process.execPath, ctlJs, '--socket', socket, '-a', `vale0:${e.hostIf}`);
          await must('ip', 'netns', 'exec', e.host, process.execPath, ctlJs, '--socket', socket, '-n', 'vale0:vx', '--vxlan', `vni=42,local=${e.under},remote=${ends[1 - i]!.under},shortcut=${shortcut}`);
        }
        await must('ip', 'netns', 'exec', a.ns, 'ping', '-c', '2', '-i', '0.2', b.ip);
        if (shortcut === 'on') {
          // up both ways: each VTEP's frames to the other go through the ring
          for (;;) {
            const up = await Promise.all(sw.map(async (s, i) => {
              const [st] = await s.client.stats('vale0');
              return st!.ports.find((p) => p.name === 'vale0:vx')?.driver?.counters[`remote ${ends[1 - i]!.under} shortcut`] === 2;
            }));
            if (up.every(Boolean)) break;
            await must('ip', 'netns', 'exec', a.ns, 'ping', '-c', '1', '-W', '1', b.ip);
          }
        }
        step(`${name}: trafgen`);
        const vp = await pps(a, b, seconds);
        step(`${name}: iperf3`);
        res[name] = { ...vp, gbps: await tcp(a, b, seconds) };
        console.error(await must('ip', 'netns', 'exec', a.host, process.execPath, ctlJs, '--socket', path.join(os.tmpdir(), `${tag}-${a.host}.sock`), '--stats'));
      } finally {
        for (const s of sw) await s.stop();
      }
    }
  } finally {
    await remove();
  }
  console.log(`vxlan benchmark: 2 namespaces, 2 hosts (namespaces), veth underlay, ${seconds} s per figure; load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  for (const [k, v] of Object.entries(res)) console.log(`  ${k.padEnd(16)} 60 B: sent ${(v.sent / seconds / 1e3).toFixed(0).padStart(6)} kpps, received ${(v.rxPps / 1e3).toFixed(0).padStart(6)} kpps   TCP ${v.gbps.toFixed(2)} Gbit/s`);
  const l = res['linux vxlan']!, v = res['vale-ts vxlan']!;
  const sc = res['vale-ts shortcut']!;
  console.log(`  ratio vale-ts / linux: 60 B pps ${(v.rxPps / l.rxPps).toFixed(2)} (target 1.0)   TCP ${(v.gbps / l.gbps).toFixed(2)}`);
  console.log(`  ratio shortcut / vale-ts vxlan: 60 B pps ${(sc.rxPps / v.rxPps).toFixed(2)} (target 5.0)   TCP ${(sc.gbps / v.gbps).toFixed(2)}`);
}

await main();
