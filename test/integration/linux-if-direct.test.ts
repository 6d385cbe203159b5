/**
 * The switch sending an in-line AF_PACKET port's frames straight from the
 * senders' slots (SwitchCore's DirectSink) when the kernel pushes back: the
 * frames it took go into the slots it kept for them in the port's rx ring,
 * and each frame is counted once, delivered or in one named drop. The
 * switch runs on this event loop ('loop' datapath), so counters read here
 * never straddle a round.
 */
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { open, Switch, ValeServer } from '../../src/index.js';
import { ensurePackages } from '../fixtures/system-packages.js';
import { makeNamespaces, must, run, type NsEnd } from '../fixtures/linux-if-netns.js';
import { ctl } from '../fixtures/vale-ctl-run.js';
import { until, untilAnswer } from '../fixtures/wait.js';

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

/** What a port's driver did with the frames the switch delivered to it: sent, or dropped and counted. */
const handled = (c: Record<string, number>): number => c['tx_frames']! + c['drop_tx_error']! + c['drop_tx_bad_slot']!;

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
  // its last act puts the indices back; an exit (a crash) ends the wait too
  const stopped = new Promise((r) => {
    flipper.once('message', r);
    flipper.once('exit', r);
  });
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

suite('packet, in-line: more frames for a direct send in one round than the port\'s rx ring holds, all pushed back by the kernel: the ring takes what fits, the rest waits or is counted, none vanishes', async (t) => {
  t.timeout(300_000, 'hang guard');
  const { sw, socket, ends } = await setup(t, 'x2r', 1, 242);
  const b = ends[0]!;
  // a netmap client with 8 tx rings whose frames carry the 10-byte virtio-net header b's port
  // declares: a full batch from each ring (8 x 512 = SWITCH_MAX_BATCH, 4096 frames) fills one
  // round, one more slot than b's rx ring (4096 slots) can hold
  const c = await open('vale0:x2c@conf:rings=8', { socket });
  t.teardown(() => c.close());
  const pc = sw.port('vale0:x2c')!;
  sw.setVnetHdrLen(pc.index, 10);
  const pb = sw.port(`vale0:${b.host}`)!;
  t.is(pb.geometry.rxSlots, 4096);
  await must('ip', '-n', b.ns, 'link', 'set', b.inner, 'down');
  // the receiver: every 0x88b5 frame's ring and number, until the sentinel (ring 255)
  const rx = spawn('ip', ['netns', 'exec', b.ns, 'python3', '-c', [
    'import socket',
    's = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88b5))',
    's.setsockopt(socket.SOL_SOCKET, 33, 32 << 20)',
    'print("ready", flush=True)',
    'seen = []',
    'while True:',
    '    f = s.recv(2048)',
    '    if f[14] == 255: break',
    '    seen.append("%d:%d" % (f[14], int.from_bytes(f[15:17], "big")))',
    'print(" ".join(seen), flush=True)',
  ].join('\n')], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => rx.kill());
  let out = '';
  rx.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const done = new Promise<number | null>((r) => rx.on('close', r));
  await until(() => out.startsWith('ready'));
  const dst = Buffer.from(b.mac.replaceAll(':', ''), 'hex');
  const frame = (ring: number, seq: number): Buffer => {
    const f = Buffer.alloc(10 + 60);
    dst.copy(f, 10);
    Buffer.from([2, 0, 0, 0, 0x2c, 0x01, 0x88, 0xb5, ring, seq >> 8, seq & 0xff]).copy(f, 16);
    return f;
  };
  const PER = 512;
  // all 8 rings filled and published before the switch's next round (it runs on this event loop)
  c.txRings.forEach((ring, r) => {
    for (let i = 0; i < PER; i++) {
      const s = ring.head;
      frame(r, i).copy(Buffer.from(ring.bytes.buffer, ring.bytes.byteOffset + ring.bufOffset(s)));
      ring.setLen(s, 70);
      ring.setFlags(s, 0);
      ring.advance(1);
    }
  });
  c.txsync();
  await until(() => sw.counters(pc.index)['rxFrames']! > 0);
  const d1 = await driverCounters(socket, `vale0:${b.host}`);
  const c1 = sw.counters(pb.index);
  // every frame counted delivered is in the ring or went to the driver: none overwritten
  t.is(c1['txFrames']!, sw.occupancy(pb.index).rxQueued + handled(d1), `b after the round: ${JSON.stringify(c1)}, driver ${JSON.stringify(d1)}`);
  t.true(sw.occupancy(pb.index).rxQueued <= 4095, 'no more than the ring holds');
  t.true(d1['tx_retries']! > 0, 'the kernel pushed back');
  // up again: what waits leaves, then the sentinel
  await must('ip', '-n', b.ns, 'link', 'set', b.inner, 'up');
  await until(() => sw.counters(pc.index)['rxFrames']! >= 8 * PER);
  await untilAnswer(
    () => driverCounters(socket, `vale0:${b.host}`),
    (d) => sw.occupancy(pb.index).rxQueued === 0 && handled(d) === sw.counters(pb.index)['txFrames'],
  );
  const s = c.txRings[0]!.head;
  frame(255, 0).copy(Buffer.from(c.txRings[0]!.bytes.buffer, c.txRings[0]!.bytes.byteOffset + c.txRings[0]!.bufOffset(s)));
  c.txRings[0]!.setLen(s, 70);
  c.txRings[0]!.advance(1);
  c.txsync();
  t.is(await done, 0);
  const seen = out.split('\n')[1]!.trim().split(' ').filter(Boolean);
  const cb = sw.counters(pb.index);
  t.is(seen.length, cb['txFrames']! - 1, `every frame delivered reached b's namespace: ${JSON.stringify(cb)}`);
  t.is(received(cb), 8 * PER + 1, 'each frame delivered or counted once');
  // per ring, in the order sent
  const last = new Map<string, number>();
  let inOrder = true;
  for (const e of seen) {
    const [r, n] = e.split(':') as [string, string];
    if ((last.get(r) ?? -1) >= Number(n)) inOrder = false;
    last.set(r, Number(n));
  }
  t.true(inOrder, 'each ring\'s frames in order');
});
