/**
 * Soak: vale-ts under mixed honest and hostile traffic, with clients crashing
 * and reconnecting, for `--minutes N` (default 10; `--minutes 1` is the CI form).
 *
 *   node dist/bench/soak.js [--minutes N]
 *
 * Honest: lossless sender -> receiver pairs (unicast to a learned MAC).
 * Hostile: clients SIGKILLed mid-burst, garbage slots and heads, doorbell
 * floods, malformed control messages, register/close churn with large
 * regions, 10k-MAC floods, and a lossless flooder facing a port nobody drains.
 * Prints vale-ts's RSS over time, drops by reason, and the accounting: each
 * honest sender's frames were all taken and all received, each receiver got
 * exactly what the switch put in its ring. Exit 1 if vale-ts died or any of
 * that does not hold.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import { open, type Port } from '../src/index.js';
import { native } from '../src/netmap/addon.js';
import { ControlConnection, requestOnce } from '../src/control/client.js';
import { PROTOCOL_VERSION, type SwitchStats } from '../src/control/protocol.js';
import { fillTxTemplate } from '../test/fixtures/tx-template.js';

const self = fileURLToPath(import.meta.url);
const valeTs = path.join(path.dirname(self), '..', 'tools', 'vale-ts.js');
const PAIRS = 2;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const macOf = (n: number): number[] => [2, 0, 0, 0, (n >> 8) & 0xff, n & 0xff];

// ---- roles (child processes) ------------------------------------------------

let stopping = false;
let closing: () => void = () => {};
const closed = new Promise<void>((r) => (closing = r));
process.on('SIGTERM', () => (stopping = true));
process.on('SIGINT', () => closing());

/** Send until told to stop; then wait until the switch took everything. */
async function sender(p: Port, dst: number[], src: number[], paceEvery = 0): Promise<number> {
  fillTxTemplate(p, dst, src);
  const ring = p.txRings[0]!;
  let sent = 0;
  while (!stopping) {
    let room = ring.space();
    if (room === 0) {
      await p.poll({ tx: true, rx: false, timeoutMs: 100 });
      continue;
    }
    if (room > 256) room = 256;
    let h = ring.head;
    for (let i = 0; i < room; i++) {
      ring.setLen(h, 60);
      h = ring.next(h);
    }
    ring.head = ring.cur = h;
    sent += room;
    ring.sync();
    if (paceEvery && sent % paceEvery < room) await sleep(1);
    else await new Promise((r) => setImmediate(r));
  }
  while (ring.next(ring.tail) !== ring.head) {
    await p.poll({ tx: true, rx: false, timeoutMs: 100 });
    ring.sync();
  }
  return sent;
}

async function role(kind: string, n: number): Promise<void> {
  const out = (o: object): void => void process.stdout.write(JSON.stringify(o) + '\n');
  if (kind === 'rx') {
    const p = await open(`vale0:r${n}`);
    p.inject(new Uint8Array([255, 255, 255, 255, 255, 255, ...macOf(0x100 + n), 0x88, 0xb5, ...new Array(46).fill(0)]));
    p.txsync();
    process.stderr.write('ready\n');
    let fromPeer = 0;
    let total = 0;
    const peer = 0x200 + n;
    let idleSince = 0;
    for (;;) {
      const ev = await p.poll({ rx: true, timeoutMs: 50 });
      if (ev.rx) {
        p.dispatch(1e9, (f) => {
          total++;
          if (f[6] === 2 && f[7] === 0 && f[8] === 0 && f[9] === 0 && f[10] === peer >> 8 && f[11] === (peer & 0xff)) fromPeer++;
        });
        p.rxsync();
        idleSince = 0;
      } else if (stopping) {
        if (++idleSince >= 10) break; // 500 ms with nothing after the stop
      }
    }
    out({ total, fromPeer });
    // the port stays until the parent has read its counters; a pending
    // promise and a signal listener do not keep node running, a timer does
    const alive = setInterval(() => {}, 1 << 30);
    await closed;
    clearInterval(alive);
    p.close();
    return;
  }
  if (kind === 'tx') {
    const p = await open(`vale0:s${n}`, { lossless: true });
    process.stderr.write('ready\n');
    out({ sent: await sender(p, macOf(0x100 + n), macOf(0x200 + n)) });
    p.close();
    return;
  }
  if (kind === 'crash') {
    // a burst, then death without a goodbye: the switch must clean up
    const p = await open(`vale0:c${n % 8}`);
    fillTxTemplate(p, [255, 255, 255, 255, 255, 255], macOf(0x300 + (n % 8)));
    const ring = p.txRings[0]!;
    let h = ring.head;
    for (let i = 0; i < 500 && ring.space() > 0; i++) {
      ring.setLen(h, 60);
      h = ring.next(h);
      ring.head = ring.cur = h;
    }
    ring.sync();
    process.kill(process.pid, 'SIGKILL');
    return;
  }
  if (kind === 'stall') {
    // a lossless flooder and a port that never drains: bounded by --stall-ms
    const idle = await open('vale0:idle', { slots: 64 });
    const p = await open('vale0:flood', { lossless: true });
    process.stderr.write('ready\n');
    const sent = await sender(p, [255, 255, 255, 255, 255, 255], macOf(0x400), 4096);
    out({ sent });
    p.close();
    idle.close();
    return;
  }
  if (kind === 'hostile') {
    process.stderr.write('ready\n');
    const socket = process.env['VALE_TS_SOCKET']!;
    let round = 0;
    while (!stopping) {
      round++;
      try {
        switch (round % 6) {
          case 0: {
            // garbage slots and impossible heads
            const p = await open('vale0:evil');
            const r = p.txRings[0]!;
            r.setBufIdx(0, 0x7fffffff);
            r.setLen(0, 60);
            r.setLen(1, 60000);
            r.head = r.cur = 2;
            p.backendObject.txsync(0);
            r.head = r.cur = 9999;
            p.backendObject.txsync(0);
            await sleep(5);
            p.close();
            break;
          }
          case 1: {
            // doorbell flood on a raw registration
            const c = ControlConnection.connect(socket);
            const { reply, fds } = await c.request({ v: PROTOCOL_VERSION, op: 'register', name: 'vale0:bell', nrMode: 1, ringId: 0, flags: 0, conf: {} });
            if (reply.ok) for (let i = 0; i < 50_000; i++) native.kick(fds[2]!);
            for (const f of fds) native.close(f);
            c.close();
            break;
          }
          case 2: {
            // malformed control messages
            const c = ControlConnection.connect(socket);
            native.sendMsg(c.fd, new TextEncoder().encode('{"v":1,"op":"register","name":"vale0:' + 'x'.repeat(500) + '"}'));
            await sleep(2);
            c.close();
            const d = ControlConnection.connect(socket);
            native.sendMsg(d.fd, new Uint8Array([0xff, 0xfe, 0x00]));
            await sleep(2);
            d.close();
            break;
          }
          case 3: {
            // a large region, registered and dropped
            const c = ControlConnection.connect(socket);
            const { fds } = await c.request({ v: PROTOCOL_VERSION, op: 'register', name: 'vale0:big', nrMode: 1, ringId: 0, flags: 0, conf: {}, extraBufs: 100_000 }, 30_000);
            for (const f of fds) native.close(f);
            c.close();
            break;
          }
          case 4: {
            // 2000 new source MACs, and a stats request for all of them
            const p = await open('vale0:macs');
            const f = new Uint8Array(60).fill(0xff, 0, 6);
            f[6] = 2;
            f[7] = 0x55; // never an honest MAC
            f[12] = 0x88;
            for (let i = 0; i < 2000; i++) {
              f[9] = round & 0xff;
              f[10] = i >> 8;
              f[11] = i & 0xff;
              if (!p.inject(f)) {
                p.txsync();
                await p.poll({ tx: true, rx: false, timeoutMs: 100 });
              }
            }
            p.txsync();
            await sleep(5);
            p.close();
            await requestOnce(socket, { v: PROTOCOL_VERSION, op: 'stats', macLimit: 1_000_000 });
            break;
          }
          case 5:
            await sleep(20);
            break;
        }
      } catch {
        // refusals (busy names, limits) are part of the game
      }
    }
    out({ rounds: round });
    return;
  }
  throw new Error(`unknown role ${kind}`);
}

// ---- the run ------------------------------------------------------------------

interface Kid {
  c: ChildProcess;
  ready: Promise<void>;
  /** its first JSON line */
  line: Promise<Record<string, number>>;
  out: Promise<Record<string, number>>;
}

function kid(kind: string, n: number, socket: string): Kid {
  const c = spawn(process.execPath, [self, '--role', kind, String(n)], { env: { ...process.env, VALE_TS_SOCKET: socket }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  let first: (o: Record<string, number>) => void = () => {};
  const line = new Promise<Record<string, number>>((r) => (first = r));
  c.stdout!.on('data', (d: Buffer) => {
    out += d;
    if (out.includes('\n')) first(JSON.parse(out.split('\n')[0]!) as Record<string, number>);
  });
  const ready = new Promise<void>((res) => c.stderr!.on('data', (d: Buffer) => ((err += d), err.includes('ready') && res())));
  return {
    c,
    ready,
    line,
    out: new Promise((res) => c.on('exit', () => res(out.trim() ? (JSON.parse(out.trim().split('\n').pop()!) as Record<string, number>) : {}))),
  };
}

/** VmRSS and RssAnon (kB): the regions in use come and go with the clients; the rest is the switch's own */
function rssKb(pid: number): [number, number] {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? NaN);
  return [kb('VmRSS'), kb('RssAnon')];
}

async function main(): Promise<void> {
  const i = process.argv.indexOf('--minutes');
  const minutes = i > 0 ? Number(process.argv[i + 1]) : 10;
  if (!(minutes > 0)) throw new Error('--minutes N: a positive number');
  const socket = path.join(os.tmpdir(), `soak-${process.pid}.sock`);
  const sw = spawn(process.execPath, [valeTs, '--socket', socket, '--stall-ms', '1000'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let swLog = '';
  sw.stderr!.on('data', (d: Buffer) => (swLog += d));
  await new Promise<void>((res, rej) => {
    sw.stdout!.on('data', (d: Buffer) => d.toString().includes('listening') && res());
    sw.on('exit', (c) => rej(new Error(`vale-ts exited ${c}: ${swLog}`)));
  });
  // a persistent port keeps vale0 (and the totals of every port that went) to the end
  await requestOnce(socket, { v: PROTOCOL_VERSION, op: 'create', name: 'vale0:anchor', conf: {} });
  let swDied = false;
  sw.on('exit', () => (swDied = true));
  const rx = Array.from({ length: PAIRS }, (_, n) => kid('rx', n, socket));
  await Promise.all(rx.map((k) => k.ready));
  const tx = Array.from({ length: PAIRS }, (_, n) => kid('tx', n, socket));
  const others = [kid('stall', 0, socket), kid('hostile', 0, socket)];
  await Promise.all([...tx, ...others].map((k) => k.ready));
  const t0 = Date.now();
  const end = t0 + minutes * 60_000;
  const every = minutes <= 1 ? 5_000 : 30_000;
  const rss: [number, number, number][] = [];
  let crashes = 0;
  let nextSample = t0;
  process.stdout.write(`soak: ${minutes} min, ${PAIRS} honest lossless pairs, a crasher every 500 ms, hostile client, lossless flooder vs an idle port\n`);
  while (Date.now() < end && !swDied) {
    const k = kid('crash', crashes++, socket);
    await Promise.race([k.out, sleep(2000)]);
    if (Date.now() >= nextSample) {
      const s = Math.round((Date.now() - t0) / 1000);
      rss.push([s, ...rssKb(sw.pid!)]);
      const now = await requestOnce(socket, { v: PROTOCOL_VERSION, op: 'stats', macLimit: 0 }).catch(() => undefined);
      const regions = now?.ok && now.op === 'stats' ? `${((now.server?.['memoryBytes'] ?? 0) / 2 ** 20).toFixed(1)} MiB of regions in ${now.server?.['ports']} ports` : '?';
      process.stdout.write(`  t=${String(s).padStart(4)} s  vale-ts RSS ${(rss.at(-1)![1] / 1024).toFixed(1)} MiB (anon ${(rss.at(-1)![2] / 1024).toFixed(1)} MiB; ${regions})\n`);
      nextSample += every;
    }
    await sleep(500);
  }
  for (const k of [...tx, ...others]) k.c.kill('SIGTERM');
  const txOut = await Promise.all(tx.map((k) => k.out));
  await Promise.all(others.map((k) => k.out));
  for (const k of rx) k.c.kill('SIGTERM');
  const rxOut = await Promise.all(rx.map((k) => k.line));
  let ok = !swDied;
  if (swDied) process.stdout.write(`FAIL: vale-ts died: ${swLog}\n`);
  const st = swDied ? undefined : await requestOnce(socket, { v: PROTOCOL_VERSION, op: 'stats', macLimit: 0 });
  for (const k of rx) k.c.kill('SIGINT');
  await Promise.all(rx.map((k) => k.out));
  if (st?.ok && st.op === 'stats') {
    const s = st.switches.find((x) => x.name === 'vale0') as SwitchStats;
    const drops = Object.entries(s.totals).filter(([k, v]) => k.startsWith('drop') && v > 0);
    process.stdout.write(`switch totals: taken ${s.totals['rxFrames']}, copies delivered ${s.totals['txFrames']}, flooded ${s.totals['flooded']}, badHead ${s.totals['badHead']}\n`);
    process.stdout.write(`drops by reason: ${drops.map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}\n`);
    process.stdout.write(`switch: ${JSON.stringify(s.switchCounters)}; server: ${JSON.stringify(st.server)}\n`);
    for (let n = 0; n < PAIRS; n++) {
      const sent = txOut[n]!['sent'] ?? -1;
      const r = rxOut[n]!;
      const c = s.ports.find((p) => p.name === `vale0:r${n}`)?.counters ?? {};
      // a lossless sender loses frames only to a receiver declared stalled;
      // the receiver saw exactly what the switch put in its ring
      const lost = sent - (r['fromPeer'] ?? 0);
      const line =
        `pair ${n}: sent ${sent}, received ${r['fromPeer']}, lost ${lost} (receiver port: dropStalled ${c['dropStalled']}, dropNoSpace ${c['dropNoSpace']}); ` +
        `receiver saw ${r['total']} frames, the switch delivered ${c['txFrames']}`;
      const good = sent > 0 && lost >= 0 && lost <= (c['dropStalled'] ?? 0) && r['total'] === c['txFrames'];
      ok &&= good;
      process.stdout.write(`${good ? 'ok  ' : 'FAIL'} ${line}\n`);
    }
  } else {
    ok = false;
  }
  const warm = rss.filter(([s]) => s >= Math.min(60, minutes * 20));
  if (warm.length >= 2) {
    const mib = (v: number): string => (v / 1024).toFixed(1);
    const range = (k: 1 | 2): string => `${mib(Math.min(...warm.map((w) => w[k])))}..${mib(Math.max(...warm.map((w) => w[k])))}`;
    process.stdout.write(`after warm-up (${warm.length} samples): RSS ${range(1)} MiB, anon ${range(2)} MiB; ${crashes} clients crashed and were cleaned up\n`);
  }
  sw.kill('SIGTERM');
  rmSync(socket, { force: true });
  process.stdout.write(ok ? 'soak: ok\n' : 'soak: FAILED\n');
  process.exitCode = ok ? 0 : 1;
}

if (process.argv[2] === '--role') void role(process.argv[3]!, Number(process.argv[4]));
else void main();
