/**
 * vhost-user ports against DPDK's virtio-user front-end (dpdk-testpmd, the
 * real thing): txonly on one vale-ts vhost-user port, rxonly on another,
 * frames counted by testpmd on both sides and matching the switch's and the
 * drivers' counters; and reconnection: vale-ts in client mode, testpmd as
 * the server, vale-ts restarted while both testpmds keep running.
 */
import test, { type ExecutionContext } from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ValeClient, ValeServer, type SwitchStats } from '../../src/index.js';
import { ensureTestpmd, TestPmd } from '../fixtures/testpmd.js';
import { untilAnswer } from '../fixtures/wait.js';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), `vhost-dpdk-${process.pid}-`));
test.after.always(() => fs.rmSync(dir, { recursive: true, force: true }));

type Counters = Record<string, number>;
interface PortView {
  sw: Counters;
  drv: Counters;
  describe: string;
}

async function ports(vale: ValeClient): Promise<Record<string, PortView>> {
  const [sw]: SwitchStats[] = await vale.stats('vale0');
  const out: Record<string, PortView> = {};
  for (const p of sw?.ports ?? []) out[p.name] = { sw: p.counters, drv: p.driver?.counters ?? {}, describe: p.driver?.describe ?? '' };
  return out;
}

/** The switch's stats once they satisfy `ok` (the test's timeout is the hang guard). */
function until(vale: ValeClient, ok: (p: Record<string, PortView>) => boolean): Promise<Record<string, PortView>> {
  return untilAnswer(() => ports(vale), ok);
}

/** Resolves once each of `paths` exists: testpmd in server mode creates its socket when it listens. */
async function created(...paths: string[]): Promise<void> {
  const dirs = [...new Set(paths.map((p) => path.dirname(p)))];
  const watchers: fs.FSWatcher[] = [];
  try {
    await new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (paths.every((p) => fs.existsSync(p))) resolve();
      };
      // watch first, then look: a socket made in between is not missed
      for (const d of dirs) watchers.push(fs.watch(d, check).on('error', reject));
      check();
    });
  } finally {
    for (const w of watchers) w.close();
  }
}

const drops = (c: Counters): number => Object.entries(c).reduce((s, [k, v]) => (k.startsWith('drop') ? s + v : s), 0);

function cleanup(t: ExecutionContext, ...pmds: Array<() => TestPmd | undefined>): void {
  t.teardown(async () => {
    for (const p of pmds) await p()?.quit();
  });
}

test.serial('dpdk-testpmd txonly -> vale-ts vhost-user -> testpmd rxonly: counted alike on every side', async (t) => {
  t.timeout(60_000);
  ensureTestpmd();
  const socket = path.join(dir, 'ctl-a.sock');
  const srv = await ValeServer.listen({ socket });
  t.teardown(() => srv.close());
  const vale = new ValeClient({ socket });
  const A = path.join(dir, 'a.sock');
  const B = path.join(dir, 'b.sock');
  await vale.create('vale0:tx', {}, { driver: { kind: 'vhost-user', path: A } });
  await vale.create('vale0:rx', {}, { driver: { kind: 'vhost-user', path: B } });
  let rx: TestPmd | undefined;
  let tx: TestPmd | undefined;
  cleanup(t, () => tx, () => rx);
  rx = await TestPmd.start({ vdevs: [`net_virtio_user0,path=${B},queues=1`], mode: 'rxonly' });
  await rx.cmd('start');
  tx = await TestPmd.start({ vdevs: [`net_virtio_user0,path=${A},queues=1`], mode: 'txonly' });
  await until(vale, (p) => /connected, 2 queues running/.test(p['vale0:rx']!.describe) && /connected, 2 queues running/.test(p['vale0:tx']!.describe));
  await tx.cmd('start');
  await until(vale, (p) => (p['vale0:rx']!.drv['toGuestFrames'] ?? 0) >= 20_000);
  await tx.cmd('stop');
  const sent = (await tx.portStats()).txPackets;
  t.true(sent >= 20_000, `testpmd sent ${sent}`);
  // every frame testpmd handed over is taken by the driver, forwarded or counted by the switch,
  // and delivered to the guest or counted by the receiving driver
  const p = await until(vale, (q) => {
    const a = q['vale0:tx']!, b = q['vale0:rx']!;
    return (
      a.drv['fromGuestFrames'] === sent &&
      a.sw['rxFrames'] === sent &&
      (b.sw['txFrames'] ?? 0) + drops(b.sw) + drops(a.sw) === sent &&
      (b.drv['toGuestFrames'] ?? 0) + drops(b.drv) === b.sw['txFrames']
    );
  });
  const delivered = p['vale0:rx']!.drv['toGuestFrames']!;
  const got = await rx.statsUntil((s) => s.rxPackets >= delivered);
  t.is(got.rxPackets, delivered, 'testpmd rxonly counted exactly what the driver put in its RX queue');
  t.is(drops(p['vale0:tx']!.drv), 0, 'no drops on a well-behaved front-end');
  t.is(p['vale0:rx']!.drv['dropGuestNotReady'], 0);
  t.true(delivered > 0);
  t.log(`testpmd sent ${sent}, switch forwarded ${p['vale0:rx']!.sw['txFrames']} (dropped ${drops(p['vale0:rx']!.sw)}), testpmd received ${got.rxPackets}`);
  // removing a vhost-user port closes the front-end's connection and the socket path
  await vale.remove('vale0:tx');
  t.false(fs.existsSync(A), 'the server socket is removed with the port');
});

test.serial('client mode: testpmd servers keep running while vale-ts restarts; traffic resumes', async (t) => {
  t.timeout(60_000);
  ensureTestpmd();
  const A = path.join(dir, 'srv-a.sock');
  const B = path.join(dir, 'srv-b.sock');
  // testpmd in server mode waits in its start-up for the first back-end: start both, then vale-ts
  const rxP = TestPmd.start({ vdevs: [`net_virtio_user0,path=${B},queues=1,server=1`], mode: 'rxonly' });
  const txP = TestPmd.start({ vdevs: [`net_virtio_user0,path=${A},queues=1,server=1`], mode: 'txonly' });
  let rx: TestPmd | undefined;
  let tx: TestPmd | undefined;
  rxP.then((p) => (rx = p), () => undefined);
  txP.then((p) => (tx = p), () => undefined);
  cleanup(t, () => tx, () => rx);
  const up = async (n: number): Promise<{ srv: ValeServer; vale: ValeClient }> => {
    const socket = path.join(dir, `ctl-c${n}.sock`);
    const srv = await ValeServer.listen({ socket });
    const vale = new ValeClient({ socket });
    await vale.create('vale0:tx', {}, { driver: { kind: 'vhost-user', path: A, client: true } });
    await vale.create('vale0:rx', {}, { driver: { kind: 'vhost-user', path: B, client: true } });
    return { srv, vale };
  };
  // the sockets exist once testpmd listens
  await created(A, B);
  let v = await up(1);
  rx = await rxP;
  tx = await txP;
  await rx.cmd('start');
  await tx.cmd('start');
  await until(v.vale, (p) => (p['vale0:rx']!.drv['toGuestFrames'] ?? 0) >= 5000);
  const before = (await rx.portStats()).rxPackets;
  t.true(before > 0);
  // vale-ts goes away (its drivers close the connections) and comes back
  v.srv.close();
  await v.srv.driversClosed;
  v = await up(2);
  t.teardown(() => v.srv.close());
  const p = await until(v.vale, (q) => (q['vale0:rx']!.drv['toGuestFrames'] ?? 0) >= 5000);
  t.true(p['vale0:tx']!.drv['connects']! >= 1 && p['vale0:rx']!.drv['connects']! >= 1);
  const after = await rx.statsUntil((s) => s.rxPackets >= before + 5000);
  t.true(after.rxPackets >= before + 5000, 'testpmd receives again through the restarted vale-ts');
  t.is(p['vale0:tx']!.drv['dropBadIndex'], 0, 'the rings resumed from the used index in guest memory');
  await tx.cmd('stop');
});

/** testpmd's per-queue packet counts (`show port xstats`): virtio names them [rt]x_qN_good_packets. */
async function queuePackets(pmd: TestPmd, dir: 'rx' | 'tx'): Promise<number[]> {
  const s = await pmd.cmd('show port xstats 0');
  const out: number[] = [];
  for (const m of s.matchAll(new RegExp(`${dir}_q(\\d+)_(?:good_)?packets:\\s*(\\d+)`, 'g'))) out[Number(m[1])] = Number(m[2]);
  return out;
}

test.serial('multiqueue: 2 queue pairs negotiated with testpmd (queues=2); both transmit queues carry frames', async (t) => {
  t.timeout(60_000);
  ensureTestpmd();
  const socket = path.join(dir, 'ctl-mq.sock');
  const srv = await ValeServer.listen({ socket });
  t.teardown(() => srv.close());
  const vale = new ValeClient({ socket });
  const A = path.join(dir, 'mq-a.sock');
  const B = path.join(dir, 'mq-b.sock');
  // the datapath in-line in the switch's rounds (the other tests: a thread per port)
  await vale.create('vale0:tx', {}, { driver: { kind: 'vhost-user', path: A, queuePairs: 2, inline: true } });
  await vale.create('vale0:rx', {}, { driver: { kind: 'vhost-user', path: B, queuePairs: 2, inline: true } });
  let rx: TestPmd | undefined;
  let tx: TestPmd | undefined;
  cleanup(t, () => tx, () => rx);
  const mq = ['--rxq=2', '--txq=2'];
  rx = await TestPmd.start({ vdevs: [`net_virtio_user0,path=${B},queues=2`], mode: 'rxonly', extra: mq });
  await rx.cmd('start');
  tx = await TestPmd.start({ vdevs: [`net_virtio_user0,path=${A},queues=2`], mode: 'txonly', extra: mq });
  // VHOST_USER_PROTOCOL_F_MQ and VIRTIO_NET_F_MQ negotiated, all four virtqueues started and enabled
  await until(vale, (p) => /connected, 4 queues running, .*\bmq\b/.test(p['vale0:rx']!.describe) && /connected, 4 queues running, .*\bmq\b/.test(p['vale0:tx']!.describe));
  await tx.cmd('start');
  await until(vale, (p) => (p['vale0:rx']!.drv['toGuestFrames'] ?? 0) >= 20_000);
  await tx.cmd('stop');
  const sent = (await tx.portStats()).txPackets;
  const perQueue = await queuePackets(tx, 'tx');
  t.is(perQueue.length, 2, `testpmd's tx queues: ${JSON.stringify(perQueue)}`);
  t.true(perQueue[0]! > 0 && perQueue[1]! > 0, `both transmit queues used: ${JSON.stringify(perQueue)}`);
  t.is(perQueue[0]! + perQueue[1]!, sent);
  // the driver read every frame from both queues; the switch forwarded or counted each
  const p = await until(vale, (q) => {
    const a = q['vale0:tx']!, b = q['vale0:rx']!;
    return a.drv['fromGuestFrames'] === sent && (b.sw['txFrames'] ?? 0) + drops(b.sw) + drops(a.sw) === sent && (b.drv['toGuestFrames'] ?? 0) + drops(b.drv) === b.sw['txFrames'];
  });
  const delivered = p['vale0:rx']!.drv['toGuestFrames']!;
  const got = await rx.statsUntil((s) => s.rxPackets >= delivered);
  t.is(got.rxPackets, delivered);
  t.is(drops(p['vale0:tx']!.drv), 0);
  t.log(`sent ${sent} (queue 0: ${perQueue[0]}, queue 1: ${perQueue[1]}), delivered ${delivered}`);
});
