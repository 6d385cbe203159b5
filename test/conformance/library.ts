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
import { NIF, RING, NS_MOREFRAG } from '../../src/netmap/abi.js';

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

/** Open `name`, run `body`, close whatever opened: a failed check leaves no port registered. */
async function withPorts<T>(names: string[], body: (ps: Port[]) => Promise<T> | T, opts: Parameters<typeof open>[1] = {}): Promise<T> {
  const ps: Port[] = [];
  try {
    for (const n of names) ps.push(await open(n, opts));
    return await body(ps);
  } finally {
    for (const p of ps) p.close();
  }
}
/** The errno code `open(name)` fails with, or 'opened'. */
async function openError(name: string): Promise<string> {
  try {
    (await open(name)).close();
    return 'opened';
  } catch (e) {
    return String((e as { code?: unknown }).code);
  }
}

await check('lib-zcopy-swap-pipes', async () => {
  // Four ends of two kernel pipes on one parent share its memory: frames sent on zc{1
  // are moved to zc{2 by swapping buffer indices (NS_BUF_CHANGED), as netmap's bridge
  // does, and must arrive on zc}2 in the very buffers the forwarder took, intact.
  const ZN = 200;
  return withPorts(['netmap:zc{1', 'netmap:zc}1', 'netmap:zc{2', 'netmap:zc}2'], async ([a, b, c, d]) => {
    const ids = [a!, b!, c!, d!].map((p) => p.registration.memId);
    assert(ids.every((m) => m === ids[0]), `the pipe ends are in different regions (mem ids ${ids.join(',')})`);
    const r = b!.rxRings[0]!;
    const t = c!.txRings[0]!;
    const q = d!.rxRings[0]!;
    const moved: number[] = [];
    let sent = 0;
    let got = 0;
    for (let round = 0; got < ZN; round++) {
      assert(round < 10000, `stalled: sent ${sent}, forwarded ${moved.length}, received ${got}`);
      while (sent < ZN && a!.inject(frame(sent))) sent++;
      a!.txsync();
      b!.rxsync();
      c!.txsync();
      while (!r.empty() && !t.empty()) {
        const i = r.head;
        const j = t.head;
        const rb = r.bufIdx(i);
        const tb = t.bufIdx(j);
        t.setBufIdx(j, rb);
        t.setLen(j, r.len(i));
        r.setBufIdx(i, tb);
        moved.push(rb);
        r.advance(1);
        t.advance(1);
      }
      c!.txsync();
      d!.rxsync();
      while (!q.empty()) {
        const h = q.head;
        const f = q.frame(h);
        const seq = f.length === 60 ? new DataView(f.buffer, f.byteOffset).getUint32(42) : -1;
        assert(seq === got, `frame ${got} arrived as ${f.length} bytes with sequence ${seq}`);
        assert(q.bufIdx(h) === moved[got], `frame ${got} arrived in buffer ${q.bufIdx(h)}, the forwarder moved buffer ${moved[got]}: a copy, not a swap`);
        got++;
        q.advance(1);
      }
    }
    return `${got} frames moved zc}1 -> zc{2 by buffer swap, each received in the buffer it was swapped in (mem id ${ids[0]})`;
  });
});

await check('lib-extra-bufs', async () => {
  // open(..., { extraBufs }) is nr_extra_bufs: the kernel links that many spare buffers
  // from ni_bufs_head, each holding the next one's index, the last 0
  const XN = 8;
  return withPorts(['vale0:xb1'], ([p]) => {
    const mem = p!.memory;
    const dv = new DataView(mem);
    const ring = p!.rxRings[0]!;
    const inRings = new Set<number>();
    for (const rg of [...p!.txRings, ...p!.rxRings]) for (let i = 0; i < rg.numSlots; i++) inRings.add(rg.bufIdx(i));
    const seen: number[] = [];
    for (let idx = dv.getUint32(p!.nifpOffset + NIF.ni_bufs_head, true); idx !== 0; idx = dv.getUint32(ring.bufOffsetOf(idx), true)) {
      assert(idx >= 2 && idx < ring.bufLimit, `extra buffer ${seen.length}: index ${idx} outside the pool [2, ${ring.bufLimit})`);
      assert(!seen.includes(idx) && !inRings.has(idx), `extra buffer ${idx} listed twice or also in a ring (list so far ${seen.join(',')})`);
      seen.push(idx);
      assert(seen.length <= XN, `the ni_bufs_head list is longer than the ${XN} asked for`);
    }
    assert(seen.length === XN, `asked for ${XN} extra buffers, the kernel linked ${seen.length} from ni_bufs_head`);
    return `${XN} extra buffers linked from ni_bufs_head (${seen.join(',')})`;
  }, { extraBufs: XN });
});

await check('lib-open-options-rings-slots', async () => {
  // open()'s rings/slots options mean @conf:rings=/slots= for a port the open creates
  return withPorts(['vale0:ros1'], ([p]) => {
    const d = `${p!.txRings.length}+${p!.rxRings.length} rings of ${p!.txRings[0]?.numSlots} slots`;
    assert(p!.txRings.length === 2 && p!.rxRings.length === 2 && p!.txRings.every((r) => r.numSlots === 128), `${d}: want 2+2 of 128`);
    return d;
  }, { rings: 2, slots: 128 });
});

await check('lib-one-nic-and-direction', async () => {
  // vale0:one-1 binds ring 1 only (NR_REG_ONE_NIC), /R its rx side only, /T its tx side only:
  // the rings the library picks are the ones the kernel wrote ringid 1 into
  return withPorts(['vale0:one@conf:rings=2', 'vale0:one-1', 'vale0:one-1/R', 'vale0:one-0/T'], ([, one, rOnly, tOnly]) => {
    const desc = (p: Port): string =>
      ['tx', 'rx']
        .map((d) => `${d}[${(d === 'tx' ? p.txRings : p.rxRings).map((r) => `${r.index}:${new DataView(p.memory).getUint16(r.offset + RING.ringid, true)}`).join(',')}]`)
        .join(' ');
    const got = [one!, rOnly!, tOnly!].map(desc).join(' | ');
    // index:ringid for each bound ring
    assert(got === 'tx[1:1] rx[1:1] | tx[] rx[1:1] | tx[0:0] rx[]', `bound rings (index:kernel ringid) ${got}`);
    return got;
  });
});

await check('lib-one-nic-beyond-rx-rings', async () => {
  // netmap_interp_ringid: ONE_NIC N on a port with fewer rx than tx rings binds rx ring 0
  // where N is past the rx rings ("if not enough rings, use the first one"). The library
  // must read the rx ring the kernel bound: C pkt-gen's frames to the port arrive there.
  const AN = 20;
  return withPorts(['vale0:asym-1@conf:tx-rings=2,rx-rings=1'], async ([p]) => {
    const desc = `tx [${p!.txRings.map((r) => r.index).join(',')}] rx [${p!.rxRings.map((r) => r.index).join(',')}]`;
    assert(desc === 'tx [1] rx [0]', `vale0:asym-1 (2 tx, 1 rx ring) bound ${desc}; the kernel binds tx ring 1 and rx ring 0`);
    const tx = pktgen(['-i', 'vale0:asymtx', '-f', 'tx', '-n', String(AN), '-w', '0']);
    const code = await tx.exit;
    assert(code === 0, `C pkt-gen tx exited ${code}:\n${tx.out()}`);
    p!.rxsync();
    const got = p!.dispatch(1024, () => {});
    assert(got === AN, `received ${got} of the ${AN} frames C pkt-gen sent`);
    return `${desc}, received ${got} of ${AN}`;
  });
});

await check('lib-share-memory', async () => {
  // @share=PORT registers in PORT's memory region (its nr_mem_id, from PORT_INFO_GET):
  // one buffer pool, mapped twice, so bytes written through one port's region are
  // read through the other's
  return withPorts(['vale0:sh1', 'vale1:sh2@share=vale0:sh1'], ([a, b]) => {
    const ma = a!.registration.memId;
    const mb = b!.registration.memId;
    assert(ma !== 0 && ma === mb, `mem ids ${ma} and ${mb}: want the same region`);
    const ra = a!.txRings[0]!;
    const rb = b!.txRings[0]!;
    const idx = ra.bufIdx(ra.head);
    new DataView(a!.memory).setUint32(ra.bufOffsetOf(idx), 0x5eedf00d);
    const seen = new DataView(b!.memory).getUint32(rb.bufOffsetOf(idx));
    assert(seen === 0x5eedf00d, `buffer ${idx} reads 0x${seen.toString(16)} through vale1:sh2's region, want 0x5eedf00d`);
    return `both in mem id ${ma}; buffer ${idx} written through one region, read through the other`;
  });
});

await check('lib-morefrag-vale', async () => {
  // a 3-slot frame (NS_MOREFRAG on all but the last) crosses a kernel VALE switch as one
  // frame: the receiver gets 3 slots, the same lengths and bytes, NS_MOREFRAG on the first
  // two and the fragment count in the high byte (NS_RFRAGS)
  return withPorts(['vale5:mf1', 'vale5:mf2'], async ([s, r]) => {
    const lens = [60, 100, 40];
    const t = s!.txRings[0]!;
    assert(t.space() >= 3, `tx ring has ${t.space()} free slots`);
    const whole = new Uint8Array(200);
    whole.set(frame(7));
    for (let i = 60; i < 200; i++) whole[i] = i & 0xff;
    let off = 0;
    for (let k = 0; k < 3; k++) {
      const h = t.head;
      t.bytes.set(whole.subarray(off, off + lens[k]!), t.bufOffset(h));
      t.setLen(h, lens[k]!);
      t.setFlags(h, k < 2 ? NS_MOREFRAG : 0);
      t.advance(1);
      off += lens[k]!;
    }
    s!.txsync();
    r!.rxsync();
    const q = r!.rxRings[0]!;
    const seen: string[] = [];
    const bytes: number[] = [];
    while (!q.empty()) {
      const h = q.head;
      seen.push(`${q.len(h)}/0x${q.flags(h).toString(16)}`);
      bytes.push(...q.frame(h));
      q.advance(1);
    }
    const want = `60/0x${((3 << 8) | NS_MOREFRAG).toString(16)} 100/0x${((3 << 8) | NS_MOREFRAG).toString(16)} 40/0x300`;
    assert(seen.join(' ') === want, `received slots (len/flags) ${seen.join(' ') || 'none'}, want ${want}`);
    assert(Buffer.from(bytes).equals(Buffer.from(whole)), 'the fragments\' bytes differ from what was sent');
    return `received ${seen.join(' ')}`;
  });
});

await check('lib-monitor-rx-vale', async () => {
  // vale0:mon/r is a copy monitor of vale0:mon's rx rings: every frame the port receives
  // (from C pkt-gen on another port of vale0) shows up on the monitor too
  const MN = 50;
  return withPorts(['vale0:mon', 'vale0:mon/r'], async ([p, m]) => {
    const tx = pktgen(['-i', 'vale0:montx', '-f', 'tx', '-n', String(MN), '-w', '0']);
    const code = await tx.exit;
    assert(code === 0 && new RegExp(`Sent ${MN} packets`).test(tx.out()), `C pkt-gen tx exited ${code}:\n${tx.out()}`);
    let got = 0;
    let mon = 0;
    let monBad = '';
    for (let round = 0; (got < MN || mon < MN) && round < 1000; round++) {
      p!.rxsync();
      got += p!.dispatch(1024, () => {});
      p!.rxsync();
      m!.rxsync();
      mon += m!.dispatch(1024, (f) => {
        if (!monBad && (f.length !== 60 || f[30] !== 10 || f[31] !== 1)) monBad = Buffer.from(f.subarray(0, 34)).toString('hex');
      });
      if (got < MN || mon < MN) await p!.poll({ rx: true, timeoutMs: 100 });
    }
    assert(got === MN, `the port received ${got} of ${MN}`);
    assert(mon === MN, `the /r monitor saw ${mon} of the ${MN} frames the port received`);
    assert(!monBad, `the monitor saw a frame that is not pkt-gen's: ${monBad}`);
    return `port received ${got}, monitor saw ${mon}`;
  });
});

await check('lib-errors-match-kernel', async () => {
  // the errno of a failed register is the kernel's, as .code
  const nosuch = await openError('netmap:nosuch9');
  const busy = await withPorts(['vale0:ex1/x'], () => openError('vale0:ex1'));
  const busy2 = await withPorts(['vale0:ex2'], () => openError('vale0:ex2/x'));
  const got = `netmap:nosuch9 ${nosuch}, vale0:ex1 while open /x ${busy}, vale0:ex2/x while open ${busy2}`;
  assert(nosuch === 'ENXIO' && busy === 'EBUSY' && busy2 === 'EBUSY', `${got}: want ENXIO, EBUSY, EBUSY`);
  return got;
});

console.log(`  library: ${failed} failed`);
