/**
 * The switch sending an in-line AF_PACKET port's frames straight from the
 * senders' slots (SwitchCore's DirectSink) when the kernel pushes back: the
 * frames it took go into the slots it kept for them in the port's rx ring,
 * and each frame is counted once, delivered or in one named drop. The
 * switch runs on this event loop ('loop' datapath), so counters read here
 * never straddle a round.
 */
import test, { type ExecutionContext } from 'ava';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { Switch, ValeServer } from '../../src/index.js';
import { ensurePackages } from '../fixtures/system-packages.js';
import { makeNamespaces, must, run, type NsEnd } from '../fixtures/linux-if-netns.js';
import { ctl } from '../fixtures/vale-ctl-run.js';
import { until } from '../fixtures/wait.js';

const root = process.getuid?.() === 0;
const suite = root ? test.serial : test.serial.skip;

/** An in-process switch on the event loop, its control socket, and namespaces; all removed at teardown. */
async function setup(t: ExecutionContext, tag: string, count: number, subnet: number): Promise<{ sw: Switch; socket: string; ends: NsEnd[] }> {
  ensurePackages(['iproute2', 'iputils-ping', 'python3']);
  const { ends, remove } = await makeNamespaces(tag, count, subnet);
  t.teardown(remove);
  const sw = new Switch('vale0', { datapath: 'loop' });
  await sw.whenReady();
  const socket = path.join(os.tmpdir(), `linux-if-direct-${tag}-${process.pid}.sock`);
  const srv = await ValeServer.listen({ socket, switches: [sw], log: () => {} });
  t.teardown(async () => {
    srv.close();
    sw.close();
    await sw.stopped();
  });
  for (const e of ends) t.is((await ctl(socket, '-a', `vale0:${e.host}`, '--backend', 'packet')).code, 0);
  return { sw, socket, ends };
}

/** The driver counters of one port, from `vale-ctl-ts --stats --json`. */
async function driverCounters(socket: string, port: string): Promise<Record<string, number>> {
  const st = await ctl(socket, '--stats', '--json');
  const ports = (JSON.parse(st.stdout) as { switches: { ports: { name: string; driver?: { counters: Record<string, number> } }[] }[] }).switches[0]!.ports;
  return ports.find((q) => q.name === port)!.driver!.counters;
}

/** Copies to port `c` as a receiver: delivered, or dropped in one of the receiver's named drops. */
const received = (c: Record<string, number>): number =>
  c['txFrames']! + c['dropNoSpace']! + c['dropInvalid']! + c['dropOversize']! + c['dropStalled']! + c['dropBadVnetHdr']!;

/** Frames port `c` sent that went on to another port (every frame taken, less those the switch dropped at the sender). */
const forwarded = (c: Record<string, number>): number => c['rxFrames']! - c['dropRunt']! - c['dropSamePort']! - c['dropLookup']! - c['dropNoPort']!;

suite('packet, in-line: a frame taken for a direct send and pushed back by the kernel, whose kept rx slot the port\'s client breaks before it is put there, is counted once (dropInvalid, not also txFrames)', async (t) => {
  t.timeout(300_000, 'hang guard');
  const { sw, socket, ends } = await setup(t, 'x2k', 2, 241);
  const [a, b] = ends as [NsEnd, NsEnd];
  // both MACs learned: a's frames to b are unicast to b's port
  for (const [x, y] of [[a, b], [b, a]] as const) {
    const r = await run('ip', ['netns', 'exec', x.ns, 'ping', '-c', '1', '-W', '5', y.ip]);
    t.is(r.code, 0, r.stderr);
  }
  const pa = sw.port(`vale0:${a.host}`)!;
  const pb = sw.port(`vale0:${b.host}`)!;
  // a second writer of b's region (as a client process sharing it could be) keeps
  // breaking and mending every rx slot's buffer index
  const control = new SharedArrayBuffer(8);
  const ctlw = new Int32Array(control);
  const flipper = new Worker(new URL('../fixtures/rx-slot-flipper.js', import.meta.url), {
    workerData: { fd: pb.fds[0], size: pb.geometry.memsize, control },
  });
  const stopped = new Promise((r) => flipper.once('message', r));
  t.teardown(async () => {
    Atomics.store(ctlw, 0, 1);
    await stopped;
    await flipper.terminate();
  });
  await until(() => Atomics.load(ctlw, 1) > 0);
  const send = [
    'import socket, sys',
    's = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)',
    's.bind((sys.argv[1], 0))',
    'h = bytes.fromhex(sys.argv[2])',
    'for i in range(int(sys.argv[3])): s.send(h + i.to_bytes(2, "big") + bytes(44))',
  ].join('\n');
  const head = `${b.mac}${a.mac}`.replaceAll(':', '') + '88b5';
  const d0 = await driverCounters(socket, `vale0:${b.host}`);
  // each cycle: b's end down (veth drops what b.host sends: sendmmsg says ENOBUFS), a burst
  // from a, whose first frames the switch takes for a direct send from a's slots while b's
  // rx ring is empty and puts back into it when the kernel refuses them; then b up, so the
  // ring drains and the next cycle starts empty again
  const CYCLES = 40;
  const M = 32;
  for (let i = 0; i < CYCLES; i++) {
    await must('ip', '-n', b.ns, 'link', 'set', b.inner, 'down');
    const before = sw.counters(pa.index)['rxFrames']!;
    const tx = await run('ip', ['netns', 'exec', a.ns, 'python3', '-c', send, a.inner, head, String(M)]);
    t.is(tx.code, 0, tx.stderr);
    await until(() => sw.counters(pa.index)['rxFrames']! - before >= M);
    await must('ip', '-n', b.ns, 'link', 'set', b.inner, 'up');
    await until(() => sw.occupancy(pb.index).rxQueued === 0);
    const ca = sw.counters(pa.index);
    const cb = sw.counters(pb.index);
    if (!t.is(received(cb), forwarded(ca), `cycle ${i}: each frame a sent to b counted once at b: ${JSON.stringify(cb)}`)) break;
  }
  const d1 = await driverCounters(socket, `vale0:${b.host}`);
  const cb = sw.counters(pb.index);
  t.log(`b: ${JSON.stringify(cb)}; driver ${JSON.stringify(d1)}; flipper passes ${Atomics.load(ctlw, 1)}`);
  t.true(d1['tx_direct']! > d0['tx_direct']! || d1['tx_retries']! > d0['tx_retries']!, 'frames were taken for direct sends and pushed back');
  t.true(cb['dropInvalid']! > 0, 'the broken slots were seen');
});
