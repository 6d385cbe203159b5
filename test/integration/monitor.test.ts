/**
 * Monitor ports in the switch core, with clients of the library: a monitor
 * that never reads fills its ring and drops the rest into its own
 * dropMonitor, while a lossless sender to the watched port goes on at full
 * pace (the monitor is never waited for); a monitor gets copies, not the
 * port's buffers; the decision cannot name a monitor; a monitor outlives
 * the port it watched and sees nothing more.
 */
import test, { type ExecutionContext } from 'ava';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, constants, mkdtempSync, openSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { open, capture, monitorRings, CaptureFilter, PcapngWriter, Switch, ValeServer, type Port, type SwitchOptions } from '../../src/index.js';
import { sendChain } from '../fixtures/chains.js';
import { cli as CTL, spawnCapture } from '../fixtures/vale-ctl-run.js';

let n = 0;
/** A server for switch vale0 (made with `opts`), closed when the test ends. */
async function setup(t: ExecutionContext, opts: SwitchOptions = {}): Promise<{ sw: Switch; socket: string }> {
  const socket = path.join(os.tmpdir(), `monitor-${process.pid}-${n++}.sock`);
  const sw = new Switch('vale0', opts);
  const srv = await ValeServer.listen({ socket, switches: [sw] });
  t.teardown(() => srv.close());
  return { sw, socket };
}

/** A server (as {@link setup}) with port vale0:a and a monitor of what it sends (vale0:a/t), closed when the test ends. */
async function watchedPort(t: ExecutionContext): Promise<{ a: Port; mon: Port }> {
  const { socket } = await setup(t);
  const a = await open('vale0:a', { socket });
  const mon = await open('vale0:a/t', { socket });
  t.teardown(() => [a, mon].forEach((p) => p.close()));
  return { a, mon };
}

function frame(src: number, dst: number[], seq: number): Uint8Array {
  const f = new Uint8Array(60);
  f.set(dst, 0);
  f.set([2, 0, 0, 0, 0, src, 0x88, 0xb5], 6);
  new DataView(f.buffer).setUint32(14, seq);
  return f;
}

/** Reads everything in `port`'s rx rings; returns the sequence numbers. */
function take(port: Port): number[] {
  port.rxsync();
  const seqs: number[] = [];
  for (const ring of port.rxRings) {
    let k = 0;
    for (let i = ring.head; i !== ring.tail; i = ring.next(i), k++) seqs.push(new DataView(ring.bytes.buffer, ring.bytes.byteOffset + ring.bufOffset(i)).getUint32(14));
    ring.advance(k);
  }
  port.rxsync();
  return seqs;
}

test('a monitor that never reads drops into dropMonitor; a lossless sender to the watched port is never held back', async (t) => {
  t.timeout(60_000);
  const { sw, socket } = await setup(t);
  const a = await open('vale0:a', { socket, lossless: true });
  const b = await open('vale0:b', { socket });
  const mon = await open('vale0:b/r', { socket });
  t.teardown(() => [a, b, mon].forEach((p) => p.close()));
  const monSlots = mon.rxRings[0]!.numSlots;
  const total = 3 * monSlots;
  const got: number[] = [];
  let sent = 0;
  // b is told a's frames are broadcast (no learning needed) and drains as they come
  while (got.length < total) {
    while (sent < total && a.inject(frame(0xa, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], sent))) sent++;
    a.txsync();
    await b.poll({ rx: true, timeoutMs: 1000 });
    got.push(...take(b));
  }
  t.deepEqual(got, Array.from({ length: total }, (_, i) => i));
  const m = sw.monitors()[0]!;
  // a full ring holds numSlots - 1 frames: those are the first ones, the rest were dropped
  t.is(m.counters['txFrames'], monSlots - 1);
  t.is(m.counters['dropMonitor'], total - (monSlots - 1));
  t.deepEqual(take(mon), Array.from({ length: monSlots - 1 }, (_, i) => i));
  // the watched port's own counters know nothing of the monitor
  const bc = sw.counters(sw.port('vale0:b')!.index);
  t.is(bc['txFrames'], total);
  t.is(bc['dropNoSpace'], 0);
  t.is(bc['dropMonitor'], 0);
});

test('copies, not shared buffers; the decision cannot send to a monitor; a monitor outlives its port', async (t) => {
  t.timeout(60_000);
  let monitorIndex = -1;
  const { sw, socket } = await setup(t, {
    // everything to the monitor's index, if the test has learned it (else flood)
    lookup: (_mem, _offs, _lens, count, _src, dests) => {
      for (let i = 0; i < count; i++) dests[i] = monitorIndex >= 0 ? monitorIndex : -2;
    },
  });
  const a = await open('vale0:a', { socket });
  const b = await open('vale0:b', { socket });
  const mon = await open('vale0:a/t', { socket });
  t.teardown(() => [a, b, mon].forEach((p) => p.close()));
  a.inject(frame(0xa, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 7));
  a.txsync();
  await mon.poll({ rx: true, timeoutMs: 10_000 });
  t.deepEqual(take(mon), [7]);
  await b.poll({ rx: true, timeoutMs: 10_000 });
  t.deepEqual(take(b), [7]);
  // a region of its own: the monitor's memory is not a's
  t.not(mon.memory, a.memory);
  t.not(mon.memory.byteLength, 0);
  // a lookup that names the monitor gets dropNoPort, and the monitor still sees the frame a sent
  monitorIndex = sw.monitors().find((x) => x.name === 'vale0:a/t')!.index;
  a.inject(frame(0xa, [2, 0, 0, 0, 0, 0xb], 8));
  a.txsync();
  await mon.poll({ rx: true, timeoutMs: 10_000 });
  t.deepEqual(take(mon), [8]);
  t.is(sw.counters(sw.port('vale0:a')!.index)['dropNoPort'], 1);
  // a goes; its monitor stays open and sees nothing more
  a.close();
  while (sw.port('vale0:a')) await once(sw, 'portRemoved');
  t.is(sw.monitors()[0]!.name, 'vale0:a/t');
});

/** The Enhanced Packet Blocks of a little-endian pcapng stream: interface id and captured bytes. */
function packets(chunks: Uint8Array[]): { ifId: number; data: Buffer; origLen: number }[] {
  const b = Buffer.concat(chunks);
  const out: { ifId: number; data: Buffer; origLen: number }[] = [];
  for (let o = 0; o < b.length; ) {
    const type = b.readUInt32LE(o);
    const total = b.readUInt32LE(o + 4);
    if (type === 6) out.push({ ifId: b.readUInt32LE(o + 8), data: b.subarray(o + 28, o + 28 + b.readUInt32LE(o + 20)), origLen: b.readUInt32LE(o + 24) });
    o += total;
  }
  return out;
}

test('a capture writes a multi-slot frame as ONE packet: a forged frame inside a chain neither passes the filter nor shows up', async (t) => {
  t.timeout(60_000);
  const { a, mon } = await watchedPort(t);
  const bs = a.txRings[0]!.bufSize;
  // the sender's jumbo frame from 02:00:00:00:00:0a, its second slot laid out as a
  // frame of its own from 02:00:00:00:00:66 (an address that never sent anything)
  const big = (len: number): Uint8Array => {
    const f = new Uint8Array(len);
    f.fill(0xff, 0, 6);
    f.set([2, 0, 0, 0, 0, 0xa, 0x88, 0xb5], 6);
    for (let i = 14; i < len; i++) f[i] = (i * 7) & 0xff;
    return f;
  };
  const forged = (f: Uint8Array, at: number): void => f.set([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 0x66, 0x88, 0xb5], at);
  // full first slot: the chain's buffers are adjacent in the monitor (one span)
  const f1 = big(bs + 900);
  forged(f1, bs);
  // short slots: buffers not one span (the capture must join them)
  const f2 = big(3000);
  forged(f2, 1000);
  forged(f2, 2000);
  const chunks: Uint8Array[] = [];
  const writer = new PcapngWriter({ write: (c) => (chunks.push(c.slice()), true) });
  const filter = new CaptureFilter('not ether src 02:00:00:00:00:66');
  const running = capture([{ port: mon, rings: monitorRings('vale0:a', false, true) }], writer, { filter, count: 3 });
  sendChain(a, [f1.subarray(0, bs), f1.subarray(bs)]);
  sendChain(a, [f2.subarray(0, 1000), f2.subarray(1000, 2000), f2.subarray(2000)]);
  a.inject(frame(0xa, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 9));
  a.txsync();
  const res = await running;
  const got = packets(chunks);
  t.is(got.length, 3);
  t.deepEqual(got.map((p) => p.origLen), [f1.length, f2.length, 60]);
  t.true(got[0]!.data.equals(f1));
  t.true(got[1]!.data.equals(f2));
  t.is(got[2]!.data.readUInt32BE(14), 9);
  t.deepEqual(res, { seen: 3, written: 3, filtered: 0 });
});

test('a capture waiting for a sink that never drains stops when aborted', async (t) => {
  t.timeout(60_000);
  const { a, mon } = await watchedPort(t);
  // a reader that never reads: every write asks for a pause, and the drain never comes
  const writer = new PcapngWriter({ write: () => false });
  let waiting: () => void = () => {};
  const blocked = new Promise<void>((r) => (waiting = r));
  const ac = new AbortController();
  const running = capture([{ port: mon, rings: monitorRings('vale0:a', false, true) }], writer, {
    signal: ac.signal,
    drained: () => (waiting(), new Promise<void>(() => {})),
  });
  a.inject(frame(0xa, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 1));
  a.txsync();
  await blocked;
  ac.abort();
  t.deepEqual(await running, { seen: 1, written: 1, filtered: 0 });
});

test('vale-ctl-ts --capture -w FILE: the capture file is readable by its owner only, whatever the umask', async (t) => {
  t.timeout(60_000);
  const { socket } = await setup(t);
  const a = await open('vale0:a', { socket });
  t.teardown(() => a.close());
  const dir = mkdtempSync(path.join(os.tmpdir(), `monitor-cap-${process.pid}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'a.pcapng');
  // the frames of a port only its owner and root may watch: not for every local user to read
  const cap = spawnCapture(t, 'sh', ['-c', `umask 022; exec "${process.execPath}" "${CTL}" --capture vale0:a -c 1 -w "${file}" --socket "${socket}"`], 'ignore');
  await cap.capturing;
  a.inject(frame(0xa, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 1));
  a.txsync();
  t.is((await cap.exited)[0], 0, cap.stderr());
  t.is(statSync(file).mode & 0o777, 0o600);
});

/**
 * Full-size broadcasts from `a` until the capture has stopped taking them:
 * its monitor ring is full and drops (its output is full and writes wait).
 */
async function floodUntilMonitorDrops(sw: Switch, a: Port): Promise<void> {
  const big = new Uint8Array(1514);
  big.set(frame(0xa, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 0));
  const dropped = (): number => sw.monitors()[0]?.counters['dropMonitor'] ?? 0;
  while (dropped() < 4096) {
    while (a.inject(big));
    a.txsync();
    await a.poll({ tx: true, rx: false, timeoutMs: 100 });
  }
}

/** One SIGINT ends the capture through its own handler, with status 0. */
async function endsAtFirstSigint(t: ExecutionContext, p: ChildProcess, exited: Promise<[number | null, NodeJS.Signals | null]>, stderr: () => string): Promise<void> {
  p.kill('SIGINT');
  const [code, signal] = await exited;
  t.is(signal, null, `ended by its own handler, not killed: ${stderr()}`);
  t.is(code, 0);
}

test('vale-ctl-ts --capture -w - into a pipe nobody reads ends at the first SIGINT', async (t) => {
  t.timeout(120_000);
  const { sw, socket } = await setup(t);
  const a = await open('vale0:a', { socket });
  t.teardown(() => a.close());
  const { p, capturing, exited, stderr } = spawnCapture(t, process.execPath, [CTL, '--capture', 'vale0:a', '-w', '-', '--socket', socket], 'pipe');
  p.stdout!.pause(); // never read: the pipe fills, and the capture's writes wait
  await capturing;
  // full-size broadcasts until the capture has stopped taking them: its
  // monitor ring is full and drops (the pipe is full and writes are pending)
  await floodUntilMonitorDrops(sw, a);
  await endsAtFirstSigint(t, p, exited, stderr);
  t.regex(stderr(), /frames written \(\d+ seen/, 'its count, on stderr, came before it stopped');
});

test('vale-ctl-ts --capture -c N -w - into a pipe nobody reads: done with output pending, it ends at the first SIGINT', async (t) => {
  t.timeout(120_000);
  const { socket } = await setup(t);
  const a = await open('vale0:a', { socket });
  t.teardown(() => a.close());
  const { p, capturing, exited, stderr } = spawnCapture(t, process.execPath, [CTL, '--capture', 'vale0:a/t', '-c', '300', '-w', '-', '--socket', socket], 'pipe');
  p.stdout!.pause(); // never read
  await capturing;
  // 300 full-size frames in one round: one batch of the capture, which writes them all (450 KB, far
  // more than the pipe and the paused stream's buffer take: with 100, 150 KB, all of it could go, the
  // process then ended by itself and the test's SIGINT could reach it exiting, with no handler left)
  const big = new Uint8Array(1514);
  for (let i = 0; i < 300; i++) {
    big.set(frame(0xa, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff], i));
    t.true(a.inject(big));
  }
  a.txsync();
  while (!/300 frames written/.test(stderr())) await once(p.stderr!, 'data');
  // the reader never reads: without its own stop the process waits for it for ever, and one
  // Ctrl-C must be enough (the old code ignored the first)
  p.kill('SIGINT');
  const [code, signal] = await exited;
  t.is(signal, null, `ended by its own handler, not killed (${signal}): ${stderr()}`);
  t.is(code, 0);
});

test('vale-ctl-ts --capture -w - onto a full disk fails with the write error, not a success count', async (t) => {
  t.timeout(60_000);
  const { socket } = await setup(t);
  const a = await open('vale0:a', { socket });
  t.teardown(() => a.close());
  // stdout on a device that takes nothing (ENOSPC): the pcapng written went nowhere
  const cap = spawnCapture(t, 'sh', ['-c', `exec "${process.execPath}" "${CTL}" --capture vale0:a -w - --socket "${socket}" > /dev/full`], 'ignore');
  const [code] = await cap.exited;
  t.is(code, 1, cap.stderr());
  t.regex(cap.stderr(), /writing pcapng to stdout failed: .*ENOSPC/);
});

/** A FIFO in a fresh directory, removed when the test ends. */
function fifo(t: ExecutionContext): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), `monitor-fifo-${process.pid}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'cap.fifo');
  const r = spawnSync('mkfifo', [file]);
  if (r.status !== 0) throw new Error(`mkfifo: ${String(r.stderr)}`);
  return file;
}

test('vale-ctl-ts --capture -w FIFO whose reader never reads ends at the first SIGINT', async (t) => {
  t.timeout(120_000);
  const { sw, socket } = await setup(t);
  const a = await open('vale0:a', { socket });
  t.teardown(() => a.close());
  const file = fifo(t);
  // a reader (wireshark -k -i FIFO) that opens it and never reads: the capture's file writes block
  const reader = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  t.teardown(() => closeSync(reader));
  const { p, capturing, exited, stderr } = spawnCapture(t, process.execPath, [CTL, '--capture', 'vale0:a', '-w', file, '--socket', socket], 'ignore');
  await capturing;
  await floodUntilMonitorDrops(sw, a);
  await endsAtFirstSigint(t, p, exited, stderr);
  t.regex(stderr(), /frames written \(\d+ seen/);
});

test('vale-ctl-ts --capture -w FIFO that no reader opened fails at once, naming the cause', async (t) => {
  t.timeout(60_000);
  const { socket } = await setup(t);
  const a = await open('vale0:a', { socket });
  t.teardown(() => a.close());
  const file = fifo(t);
  // open() of a FIFO without a reader blocks (in libuv's thread pool, which the exit waits for):
  // no stop ended it
  const { capturing, exited, stderr } = spawnCapture(t, process.execPath, [CTL, '--capture', 'vale0:a', '-w', file, '--socket', socket], 'ignore');
  capturing.catch(() => {}); // it never captures
  const [code, signal] = await exited;
  t.deepEqual([code, signal], [1, null], stderr());
  t.regex(stderr(), /is a FIFO no reader has opened: start its reader first/);
});

test("a monitor keeps counting against its opener's limits when the port it watched was its switch's last", async (t) => {
  t.timeout(60_000);
  const socket = path.join(os.tmpdir(), `monitor-${process.pid}-${n++}.sock`);
  // a switch made on demand: it goes with its last port
  const srv = await ValeServer.listen({ socket, limits: { maxPortsPerUid: 2 }, log: () => {} });
  t.teardown(() => srv.close());
  const p = await open('vale7:p', { socket });
  const mon = await open('vale7:p/rt', { socket });
  t.teardown(() => mon.close());
  const sw = srv.list().find((x) => x.name === 'vale7')!;
  p.close();
  // the switch's region (written by vale-ts, up to 2 rings of the port's buffers) stays mapped by the
  // monitor's client: vale-ts must go on counting it, so the uid has one port left, not two
  while (sw.port('vale7:p')) await once(sw, 'portRemoved');
  const q = await open('vale7:q', { socket });
  t.teardown(() => q.close());
  const e = await open('vale7:r', { socket }).then(
    (x) => (x.close(), undefined),
    (x: Error & { code?: string }) => x,
  );
  t.is(e?.code, 'ENOSPC', 'the monitor no longer counted against maxPortsPerUid');
  t.true(srv.list().includes(sw));
  t.is(sw.monitors()[0]?.name, 'vale7:p/rt');
});

test('a monitor is told when the port it watches goes; vale-ctl-ts --capture then ends, saying why', async (t) => {
  t.timeout(120_000);
  const { sw, socket } = await setup(t);
  // the library: a monitor's poll reports the hang-up
  const a = await open('vale0:a', { socket });
  const mon = await open('vale0:a/t', { socket });
  t.teardown(() => mon.close());
  a.close();
  const err = await t.throwsAsync(async () => {
    for (;;) await mon.poll({ rx: true, timeoutMs: 1000 });
  });
  t.regex(err?.message ?? '', /vale0:a\/t: hung up by the vale-ts switch at .*: vale0:a, the port vale0:a\/t watches, went away; close the port/);
  // counted until its client lets the region go
  t.is(sw.monitors().length, 1);
  mon.close();
  while (sw.monitors().length > 0) await once(sw, 'monitorRemoved');
  // the tool: a capture of a port that goes ends by itself, its count written
  const b = await open('vale0:b', { socket });
  const { capturing, exited, stderr } = spawnCapture(t, process.execPath, [CTL, '--capture', 'vale0:b', '-w', '-', '--socket', socket], 'collect');
  await capturing;
  b.close();
  const [code, signal] = await exited;
  t.is(signal, null);
  t.is(code, 1, stderr());
  t.regex(stderr(), /vale-ctl-ts: vale0:b\/rt: hung up by the vale-ts switch at .*: vale0:b, the port vale0:b\/rt watches, went away; close the port\nvale-ctl-ts: 0 frames written/);
});
