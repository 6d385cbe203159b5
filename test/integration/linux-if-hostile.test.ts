/**
 * Attached Linux interfaces against frames someone else shapes: a netmap
 * client of the switch whose multi-slot frames (NS_MOREFRAG chains) leave
 * through an interface. What each test checks is what reaches
 * the other side, byte for byte, or the counter that says why nothing did.
 */
import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import { open, ValeClient, ValeServer, type Port } from '../../src/index.js';
import { afxdpBuiltIn } from '../../src/ports/linux-if.js';
import { ensurePackages } from '../fixtures/system-packages.js';
import { makeNamespaces, must, run, type NsEnd, type Run } from '../fixtures/linux-if-netns.js';
import { untilAnswer } from '../fixtures/wait.js';

const cli = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'tools', 'vale-ctl-ts.js');
const root = process.getuid?.() === 0;
const suite = root ? test.serial : test.serial.skip;
const NS_MOREFRAG = 0x20;
const SRC_P = [2, 0, 0, 0, 0x71, 0x01]; // the netmap client's MAC
const SMUGGLED_SRC = 'de00000071ee'; // the source MAC of a frame hidden inside another

function ctl(socket: string, ...args: string[]): Promise<Run> {
  const env: NodeJS.ProcessEnv = { ...process.env, NETMAP_BACKEND: 'user' };
  delete env['VALE_TS_SOCKET'];
  return new Promise((resolve) => {
    execFile(process.execPath, [cli, '--socket', socket, ...args], { env }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

async function driverCounters(socket: string, port: string): Promise<Record<string, number>> {
  const st = await ctl(socket, '--stats', '--json');
  const ports = (JSON.parse(st.stdout) as { switches: { ports: { name: string; driver?: { counters: Record<string, number> } }[] }[] }).switches[0]!.ports;
  return ports.find((q) => q.name === port)!.driver!.counters;
}

/** One frame over as many slots as `parts` (NS_MOREFRAG on all but the last). */
function sendChain(p: Port, parts: Buffer[]): void {
  const ring = p.txRings[0]!;
  if (ring.space() < parts.length) throw new Error('tx ring full');
  parts.forEach((part, i) => {
    const s = ring.head;
    ring.bytes.set(part, ring.bufOffset(s));
    ring.setLen(s, part.length);
    ring.setFlags(s, i + 1 < parts.length ? NS_MOREFRAG : 0);
    ring.advance(1);
  });
  p.txsync();
}

/** An Ethernet frame of the local experimental ethertype 0x88b5, `len` bytes, `marker` after the header. */
function exp(dst: string, src: string, marker: string, len: number): Buffer {
  const f = Buffer.alloc(len, 0x5a);
  Buffer.from(dst + src + '88b5', 'hex').copy(f, 0);
  f.write(marker, 14, 'latin1');
  return f;
}

/**
 * A raw packet socket in `end`'s namespace that prints (hex) every 0x88b5
 * frame the namespace's end of the veth receives, until one carrying
 * `SENTINEL`. Resolves once it is bound; `frames` once the sentinel came.
 */
async function capture(end: NsEnd): Promise<{ frames: Promise<string[]>; kill: () => void }> {
  const py = [
    'import socket, sys',
    's = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88b5))',
    's.bind((sys.argv[1], 0))',
    'print("ready", flush=True)',
    'while True:',
    '    f = s.recv(65536)',
    '    print(f.hex(), flush=True)',
    '    if b"SENTINEL" in f: break',
  ].join('\n');
  const child = spawn('ip', ['netns', 'exec', end.ns, 'python3', '-c', py, end.inner], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const frames = new Promise<string[]>((resolve, reject) => {
    child.on('close', (code) => (code === 0 ? resolve(out.split('\n').slice(1).filter(Boolean)) : reject(new Error(`capture in ${end.ns} exited ${code}: ${err}`))));
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.startsWith('ready\n')) resolve();
    });
    child.on('close', () => reject(new Error(`capture in ${end.ns} ended before it was ready: ${err}`)));
  });
  return { frames, kill: () => child.kill() };
}

const afxdpMissing = afxdpBuiltIn ? undefined : 'the addon was built without AF_XDP (libxdp-dev/libbpf-dev absent at compile time)';

// Each variant: how the interface is attached, and the counter a chain too long for it lands in.
const chainVariants = [
  { name: 'afxdp', args: ['--backend', 'afxdp'], tag: 'x1x', subnet: 231, tooBig: 'drop_too_big' },
  { name: 'afxdp, threaded', args: ['--backend', 'afxdp', '--inline', 'off'], tag: 'x1y', subnet: 232, tooBig: 'drop_too_big' },
  { name: 'packet', args: ['--backend', 'packet'], tag: 'x1z', subnet: 233, tooBig: 'drop_tx_error' },
  // the af-packet kind: no header passed, frames sent with a zero one
  { name: 'af-packet kind', args: [], tag: 'x1k', subnet: 235, tooBig: 'drop_tx_error' },
] as const;

for (const v of chainVariants) {
  suite(`${v.name}: a multi-slot frame from a netmap port leaves the interface as one frame or not at all, never as one frame per slot`, async (t) => {
    t.timeout(120_000, 'hang guard');
    if (v.name.startsWith('afxdp') && afxdpMissing) {
      if (process.env['CI'] === 'true') t.fail(afxdpMissing);
      else t.pass(`AF_XDP not tested: ${afxdpMissing}`);
      return;
    }
    ensurePackages(['iproute2', 'python3']);
    const { ends, remove } = await makeNamespaces(v.tag, 1, v.subnet);
    t.teardown(remove);
    const a = ends[0]!;
    const socket = path.join(os.tmpdir(), `linux-if-hostile-${v.tag}-${process.pid}.sock`);
    const srv = await ValeServer.listen({ socket });
    t.teardown(() => srv.close());
    if (v.args.length > 0) {
      const r = await ctl(socket, '-a', `vale0:${a.host}`, ...v.args);
      t.is(r.code, 0, r.stderr);
    } else {
      await new ValeClient({ socket }).create(`vale0:${a.host}`, {}, { driver: { kind: 'af-packet', ifname: a.host } });
      await must('ip', 'link', 'set', a.host, 'up');
    }
    const p = await open('vale0:x1p', { socket });
    t.teardown(() => p.close());
    const cap = await capture(a);
    t.teardown(cap.kill);
    const dst = a.mac.replaceAll(':', '');
    const src = Buffer.from(SRC_P).toString('hex');
    const c0 = await driverCounters(socket, `vale0:${a.host}`);
    // a 300-byte frame in three slots; its second slot, alone, would be a
    // complete frame from another MAC (what the lookup never saw)
    const small = [exp(dst, src, 'SMALL', 100), exp('ffffffffffff', SMUGGLED_SRC, 'HIDDEN1', 100), Buffer.alloc(100, 0x33)];
    sendChain(p, small);
    // a frame larger than the interface's MTU, its second slot a frame of its own
    sendChain(p, [exp(dst, src, 'LARGE', 1500), exp('ffffffffffff', SMUGGLED_SRC, 'HIDDEN2', 900)]);
    sendChain(p, [exp(dst, src, 'SENTINEL', 60)]);
    const frames = await cap.frames;
    t.deepEqual(
      frames.filter((f) => f.slice(12, 24) === SMUGGLED_SRC),
      [],
      'no slot of a chain left as a frame of its own',
    );
    t.deepEqual(frames, [Buffer.concat(small).toString('hex'), exp(dst, src, 'SENTINEL', 60).toString('hex')], 'the small chain left whole, the large one not at all');
    const c1 = await untilAnswer(
      () => driverCounters(socket, `vale0:${a.host}`),
      (c) => c[v.tooBig]! > c0[v.tooBig]!,
    );
    t.is(c1[v.tooBig]! - c0[v.tooBig]!, 1, `the large chain is counted: ${JSON.stringify(c1)}`);
  });
}
