/**
 * The library against the real netmap module, run in the netmap-lab guest by
 * test/conformance/guest/40-library.sh (not an ava test: it needs
 * /dev/netmap and netmap's C pkt-gen, whose path is in PKTGEN, and valectl
 * in VALECTL). Prints `PASS name` / `FAIL name: why` lines, as the guest
 * helpers do, and exits 0: the host counts the lines.
 *
 * @module
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { open, type Port } from '../../src/index.js';

const PKTGEN = process.env['PKTGEN'] ?? 'pkt-gen';
const VALECTL = process.env['VALECTL'] ?? 'valectl';
const N = 300;
/** More than a pipe ring holds (1024 slots): the sender waits on the receiver's releases. */
const PIPE_N = 5000;

let failed = 0;
function pass(name: string, detail = ''): void {
  console.log(`PASS ${name}${detail ? ': ' + detail : ''}`);
}
function fail(name: string, why: string): void {
  failed++;
  console.log(`FAIL ${name}: ${why}`);
}
async function check(name: string, body: () => Promise<string | void>): Promise<void> {
  try {
    const detail = await body();
    pass(name, detail ?? '');
  } catch (e) {
    fail(name, e instanceof Error ? e.message : String(e));
  }
}
function assert(cond: boolean, why: string): asserts cond {
  if (!cond) throw new Error(why);
}

/** A C pkt-gen run: its output so far, and its end. */
interface CRun {
  proc: ChildProcess;
  out: () => string;
  exit: Promise<number | null>;
}
function pktgen(args: string[]): CRun {
  const proc = spawn(PKTGEN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout?.on('data', (b: Buffer) => (out += b.toString()));
  proc.stderr?.on('data', (b: Buffer) => (out += b.toString()));
  const exit = new Promise<number | null>((resolve) => proc.on('close', (code) => resolve(code)));
  return { proc, out: () => out, exit };
}
/** Resolves when the run's output matches `re`; rejects if it exits first. */
function waitFor(run: CRun, re: RegExp): Promise<void> {
  return new Promise((resolve, reject) => {
    const test = (): boolean => re.test(run.out());
    if (test()) return resolve();
    const onData = (): void => {
      if (test()) {
        done();
        resolve();
      }
    };
    const onClose = (): void => {
      done();
      if (test()) resolve();
      else reject(new Error(`pkt-gen exited before printing ${re}:\n${run.out()}`));
    };
    const done = (): void => {
      run.proc.stdout?.off('data', onData);
      run.proc.stderr?.off('data', onData);
      run.proc.off('close', onClose);
    };
    run.proc.stdout?.on('data', onData);
    run.proc.stderr?.on('data', onData);
    run.proc.on('close', onClose);
  });
}
function valectlListing(): string {
  const r = spawnSync(VALECTL, [], { encoding: 'utf8' });
  return r.stdout;
}
function listed(listing: string, name: string): boolean {
  return listing.split('\n').some((l) => l.split(/\s+/)[0] === name);
}

/** A 60-byte IPv4/UDP broadcast frame carrying `seq` in its payload. */
function frame(seq: number): Uint8Array {
  const f = new Uint8Array(60);
  f.fill(0xff, 0, 6); // dst: broadcast
  f.set([0x02, 0, 0, 0, 0, 1], 6); // src: locally administered
  f.set([0x08, 0x00], 12);
  f.set([0x45, 0, 0, 46, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 1, 0, 1], 14);
  new DataView(f.buffer).setUint32(42, seq);
  return f;
}

let p1: Port | undefined;

await check('lib-open-vale-kernel', async () => {
  p1 = await open('vale0:lib1');
  assert(p1.backend === 'kernel', `backend is '${p1.backend}', want 'kernel'`);
  assert(p1.transport === 'kernel', `transport is '${p1.transport}', want 'kernel'`);
  assert(p1.txRings.length === 1 && p1.rxRings.length === 1, `${p1.txRings.length} tx / ${p1.rxRings.length} rx rings, want 1 / 1`);
  assert(listed(valectlListing(), 'vale0:lib1'), `valectl does not list vale0:lib1 while it is open:\n${valectlListing()}`);
  return `backend ${p1.backend}, transport ${p1.transport}, ${p1.txRings[0]!.numSlots} slots`;
});

await check('lib-rx-from-c-pkt-gen', async () => {
  assert(p1 !== undefined, 'vale0:lib1 did not open');
  const tx = pktgen(['-i', 'vale0:libtx', '-f', 'tx', '-n', String(N), '-w', '0']);
  let got = 0;
  let bad = '';
  const txExit = tx.exit.then((code) => ({ code }));
  let txDone: { code: number | null } | undefined;
  void txExit.then((d) => (txDone = d));
  // VALE forwards inside the sender's txsync: once C pkt-gen has exited, every
  // frame it sent is already in our ring, so a last non-blocking poll is final
  for (;;) {
    const ev = await p1.poll({ rx: true, timeoutMs: txDone ? 0 : 1000 });
    if (ev.rx) {
      p1.dispatch(1024, (f) => {
        got++;
        if (!bad && (f.length !== 60 || f[0] !== 0xff || f[12] !== 0x08 || f[13] !== 0x00 || f[30] !== 10 || f[31] !== 1 || f[32] !== 0 || f[33] !== 1))
          bad = `frame ${got}: length ${f.length}, bytes ${Buffer.from(f.subarray(0, 34)).toString('hex')}`;
      });
      p1.rxsync();
    } else if (txDone) break;
  }
  assert(txDone?.code === 0, `C pkt-gen tx exited ${txDone?.code}:\n${tx.out()}`);
  assert(/Sent 300 packets/.test(tx.out()), `C pkt-gen did not send ${N}:\n${tx.out()}`);
  assert(!bad, `not pkt-gen's frame: ${bad}`);
  assert(got === N, `received ${got} frames, want ${N}`);
  return `${got} frames from C pkt-gen, all 60-byte UDP to 10.1.0.1`;
});

await check('lib-tx-to-c-pkt-gen', async () => {
  assert(p1 !== undefined, 'vale0:lib1 did not open');
  // -n: C pkt-gen ends at its count (VALE forwards in our txsync, nothing waits on its releases)
  const rx = pktgen(['-i', 'vale0:librx', '-f', 'rx', '-n', String(N), '-w', '0']);
  await waitFor(rx, /reading from/);
  let sent = 0;
  while (sent < N) {
    while (sent < N && p1.inject(frame(sent))) sent++;
    const flushed = await p1.flush(30000);
    assert(flushed, `tx ring not drained after ${sent} frames`);
  }
  const code = await rx.exit;
  const m = /Received (\d+) packets/.exec(rx.out());
  assert(code === 0, `C pkt-gen rx exited ${code}:\n${rx.out()}`);
  assert(m?.[1] === String(N), `C pkt-gen received ${m?.[1]}, want ${N}:\n${rx.out()}`);
  return `C pkt-gen received ${m[1]}`;
});

await check('lib-close-unregisters', async () => {
  assert(p1 !== undefined, 'vale0:lib1 did not open');
  p1.close();
  const after = valectlListing();
  assert(!listed(after, 'vale0:lib1'), `valectl still lists vale0:lib1 right after close():\n${after}`);
  const again = await open('vale0:lib1');
  again.close();
  return 'gone from valectl at once; re-open succeeds';
});

await check('lib-conf-rings-slots', async () => {
  const p = await open('vale0:lib2@conf:rings=3,slots=256');
  try {
    const t = p.txRings.map((r) => r.numSlots).join(',');
    const r = p.rxRings.map((r) => r.numSlots).join(',');
    assert(t === '256,256,256' && r === '256,256,256', `tx slots ${t}, rx slots ${r}: want three rings of 256 each way`);
    return `3+3 rings of 256 slots`;
  } finally {
    p.close();
  }
});

await check('lib-pipe-to-c-pkt-gen', async () => {
  // no -n: C pkt-gen with a count exits without handing its last slots back, and a
  // pipe's sender sees its tx ring drained only once the peer has released them. So it
  // runs until flush() says every frame was taken (released after being counted), and
  // is then interrupted: it prints its totals on SIGINT.
  const rx = pktgen(['-i', 'netmap:pipe}9', '-f', 'rx', '-w', '0']);
  await waitFor(rx, /reading from/);
  const p = await open('netmap:pipe{9');
  try {
    assert(p.backend === 'kernel' && p.transport === 'kernel', `backend ${p.backend}, transport ${p.transport}: want kernel, kernel`);
    let sent = 0;
    while (sent < PIPE_N) {
      while (sent < PIPE_N && p.inject(frame(sent))) sent++;
      assert(await p.flush(60000), `pipe tx ring not drained after ${sent} frames`);
    }
  } finally {
    p.close();
    rx.proc.kill('SIGINT');
  }
  const code = await rx.exit;
  const m = /Received (\d+) packets/.exec(rx.out());
  assert(code === 0, `C pkt-gen rx exited ${code}:\n${rx.out()}`);
  assert(m?.[1] === String(PIPE_N), `C pkt-gen received ${m?.[1]} of ${PIPE_N} over the pipe:\n${rx.out()}`);
  return `all ${PIPE_N} frames over a kernel pipe`;
});

console.log(`  library: ${failed} failed`);
