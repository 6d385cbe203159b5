/**
 * vhost-user throughput: two dpdk-testpmd virtio-user front-ends (txonly ->
 * rxonly) through two vale-ts vhost-user ports, against the same two
 * front-ends through a dpdk-testpmd vhost-user io-forwarding switch
 * (net_vhost0/net_vhost1, --forward-mode=io: no learning, no lookup at all),
 * 60- and 1514-byte frames, in the same run. Rate: frames counted by the
 * rxonly testpmd over the measured interval.
 *   node dist/bench/vhost.bench.js [--seconds 3]
 * Needs the Debian packages of test/fixtures/testpmd.ts (installed as root).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ValeClient } from '../src/index.js';
import { ensureTestpmd, TestPmd } from '../test/fixtures/testpmd.js';
import { startSwitch } from './lib.js';

const { values } = parseArgs({ options: { seconds: { type: 'string', default: '3' } } });
const seconds = Number(values.seconds);
const SIZES = [60, 1514];

ensureTestpmd();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), `vhost-bench-${process.pid}-`));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs txonly -> rxonly front-ends on sockets a and b for each size; Mpps per size. */
async function measure(a: string, b: string, serverFronts: boolean): Promise<number[]> {
  const srv = serverFronts ? ',server=1' : '';
  // forwarding lcores on different cores: tx on 1, rx on 0 (its main lcore 1)
  const rx = await TestPmd.start({ vdevs: [`net_virtio_user0,path=${b},queues=1${srv}`], mode: 'rxonly', cores: '0,1', mainLcore: 1 });
  const tx = await TestPmd.start({ vdevs: [`net_virtio_user0,path=${a},queues=1${srv}`], mode: 'txonly', cores: '0,1' });
  const out: number[] = [];
  try {
    await rx.cmd('start');
    for (const size of SIZES) {
      await tx.cmd(`set txpkts ${size}`);
      await tx.cmd('start');
      await sleep(1000); // warm-up: rings filled, MAC learned
      const r0 = (await rx.portStats()).rxPackets;
      const t0 = process.hrtime.bigint();
      await sleep(seconds * 1000);
      const r1 = (await rx.portStats()).rxPackets;
      const t1 = process.hrtime.bigint();
      await tx.cmd('stop');
      out.push((r1 - r0) / (Number(t1 - t0) / 1e9) / 1e6);
    }
  } finally {
    await tx.quit();
    await rx.quit();
  }
  return out;
}

async function viaVale(): Promise<number[]> {
  const { proc, socket } = await startSwitch();
  try {
    const vale = new ValeClient({ socket });
    const a = path.join(dir, 'vale-a.sock'), b = path.join(dir, 'vale-b.sock');
    await vale.create('vale0:tx', {}, { driver: { kind: 'vhost-user', path: a } });
    await vale.create('vale0:rx', {}, { driver: { kind: 'vhost-user', path: b } });
    return await measure(a, b, false);
  } finally {
    proc.kill();
  }
}

async function viaTestpmd(): Promise<number[]> {
  const a = path.join(dir, 'pmd-a.sock'), b = path.join(dir, 'pmd-b.sock');
  const sw = await TestPmd.start({ vdevs: [`net_vhost0,iface=${a},queues=1`, `net_vhost1,iface=${b},queues=1`], mode: 'io', cores: '0,1' });
  try {
    await sw.cmd('start');
    return await measure(a, b, false);
  } finally {
    await sw.quit();
  }
}

const load = os.loadavg().map((x) => x.toFixed(2)).join(' ');
const vale = await viaVale();
const pmd = await viaTestpmd();
console.log(`vhost-user benchmark: testpmd txonly -> switch -> testpmd rxonly, ${seconds} s per size (load average before: ${load})`);
console.log(`load average after: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} (${os.cpus().length} CPUs)`);
SIZES.forEach((s, i) =>
  console.log(`${String(s).padStart(5)} B  vale-ts ${vale[i]!.toFixed(2)} Mpps   testpmd io-fwd ${pmd[i]!.toFixed(2)} Mpps   ratio ${(vale[i]! / pmd[i]!).toFixed(2)}`),
);
fs.rmSync(dir, { recursive: true, force: true });
