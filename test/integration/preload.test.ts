/**
 * The preload library with the project's own C program (nm-frames.cc,
 * written against netmap's user API): frames exchanged with pkt-gen-ts in
 * both directions over pipes and through vale-ts, counts and every frame's
 * contents checked; poll, select, epoll and NIOC*SYNC waiting; one thread
 * per ring; valectl's requests from C; programs that never open /dev/netmap
 * run unchanged.
 */
import test, { type ExecutionContext } from 'ava';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { count, frames, nmFrames, pktgenTs, preloadEnv, preloadLib, repoRoot, run, uname, valeCtlTs, withVale0 } from '../fixtures/preload/apps.js';
import { sumDrops } from '../../src/index.js';

const PRE = { LD_PRELOAD: preloadEnv };
const N = 100000;

test.before(async () => {
  await nmFrames(); // built once, before the tests race to it
});

test('vale-ctl-ts --preload-path prints the built library', async (t) => {
  const r = await valeCtlTs(['--preload-path']).done;
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout.trim(), preloadLib);
  t.true(existsSync(r.stdout.trim()));
});

test('pipe: the C program sends, pkt-gen-ts rxseq receives every frame in order', async (t) => {
  const nf = await nmFrames();
  const name = `vale0:${uname('a')}`;
  const rx = pktgenTs(['-i', `${name}}0`, '-f', 'rxseq', '-n', String(N)]);
  await rx.waitFor(/reading from/);
  const tx = run(nf, ['tx', `${name}{0`, String(N), '60'], PRE);
  const [rt, rr] = await Promise.all([tx.done, rx.done]);
  t.is(rt.code, 0, rt.stdout + rt.stderr);
  t.deepEqual(frames(rt.stdout), { frames: N, errors: 0 });
  t.is(rr.code, 0, rr.stderr);
  t.is(count(rr.stdout, 'Received'), N);
  t.notRegex(rr.stderr, /Sequence|out of order|gap/i);
});

test('pipe: pkt-gen-ts txseq sends, the C program checks every frame (poll)', async (t) => {
  const nf = await nmFrames();
  const name = `vale0:${uname('b')}`;
  const rx = run(nf, ['rx', `${name}}0`, String(N), '64', 'poll'], PRE);
  await rx.waitFor(/registered/);
  const tx = pktgenTs(['-i', `${name}{0`, '-f', 'txseq', '-n', String(N), '-l', '64']);
  const [rt, rr] = await Promise.all([tx.done, rx.done]);
  t.is(rt.code, 0, rt.stderr);
  t.is(count(rt.stdout, 'Sent'), N);
  t.is(rr.code, 0, rr.stdout + rr.stderr);
  t.deepEqual(frames(rr.stdout), { frames: N, errors: 0 });
});

for (const [txWait, rxWait] of [
  ['select', 'epoll'],
  ['epoll', 'select'],
  ['ioctl', 'ioctl'],
] as const) {
  test(`pipe: C to C, tx waits with ${txWait}, rx with ${rxWait}, every payload byte checked`, async (t) => {
    const nf = await nmFrames();
    const name = `vale0:${uname('c')}`;
    const rx = run(nf, ['rx', `${name}}0`, String(N), '200', rxWait], { ...PRE, NMF_OURS: '1' });
    await rx.waitFor(/registered/);
    const tx = run(nf, ['tx', `${name}{0`, String(N), '200', txWait], PRE);
    const [rt, rr] = await Promise.all([tx.done, rx.done]);
    t.is(rt.code, 0, rt.stdout + rt.stderr);
    t.is(rr.code, 0, rr.stdout + rr.stderr);
    t.deepEqual(frames(rr.stdout), { frames: N, errors: 0 });
  });
}

/** nm-frames sends n frames over a fresh pipe to pkt-gen-ts rxseq, which gets them all in order; its stderr. */
async function cToPktgenTs(t: ExecutionContext, tag: string, n: number, env: Record<string, string>): Promise<string> {
  const nf = await nmFrames();
  const name = `vale0:${uname(tag)}`;
  const rx = pktgenTs(['-i', `${name}}0`, '-f', 'rxseq', '-n', String(n)]);
  await rx.waitFor(/reading from/);
  const tx = run(nf, ['tx', `${name}{0`, String(n), '60'], { ...PRE, ...env });
  const [rt, rr] = await Promise.all([tx.done, rx.done]);
  t.is(rt.code, 0, rt.stdout + rt.stderr);
  t.deepEqual(frames(rt.stdout), { frames: n, errors: 0 });
  t.is(rr.code, 0, rr.stderr);
  t.is(count(rr.stdout, 'Received'), n);
  return rt.stderr;
}

for (const how of ['dup', 'dup2', 'fcntl'] as const) {
  test(`pipe: a ${how} of the fd shares the registration; closing the original keeps it`, async (t) => {
    const stderr = await cToPktgenTs(t, 'u', 20000, { NMF_DUP: how });
    t.regex(stderr, new RegExp(`going on with fd \\d+ \\(${how}\\), the original closed`));
  });
}

test('pipe: a fork child cannot use the parent\'s registration (ENXIO, says why) and its close leaves the parent\'s end open', async (t) => {
  const stderr = await cToPktgenTs(t, 'k', 20000, { NMF_FORK: '1' });
  t.regex(stderr, /was registered before fork\(\): the registration stays with the parent/);
  t.regex(stderr, /is already open in another process/); // the child's second registration
  t.regex(stderr, /fork child: ok/);
});

test('pipe with 2 rings: one thread and one NR_REG_ONE_NIC registration per ring on each side', async (t) => {
  const nf = await nmFrames();
  const name = `vale0:${uname('d')}`;
  const env = { ...PRE, NMF_RINGS: '2', NMF_OURS: '1' };
  const rx = run(nf, ['rx', `${name}}0`, String(N), '60', 'poll', '2'], env);
  await rx.waitFor(/registered.*\n.*registered/);
  const tx = run(nf, ['tx', `${name}{0`, String(N), '60', 'poll', '2'], env);
  const [rt, rr] = await Promise.all([tx.done, rx.done]);
  t.is(rt.code, 0, rt.stdout + rt.stderr);
  t.is(rr.code, 0, rr.stdout + rr.stderr);
  t.deepEqual(frames(rr.stdout), { frames: N, errors: 0 });
  t.regex(rr.stderr, /ring 0 of 2/);
  t.regex(rr.stderr, /ring 1 of 2/);
});

test.serial('vale-ts: the C program sends (lossless), pkt-gen-ts rxseq receives every frame in order', async (t) => {
  const nf = await nmFrames();
  await withVale0(async (env, sw) => {
    const a = `vale0:${uname('e')}`;
    const b = `vale0:${uname('f')}`;
    const rx = pktgenTs(['-i', b, '-f', 'rxseq', '-n', String(N)], env);
    await rx.waitFor(/reading from/);
    const tx = run(nf, ['tx', a, String(N), '60'], { ...PRE, ...env, VALE_TS_LOSSLESS: '1' });
    const [rt, rr] = await Promise.all([tx.done, rx.done]);
    t.is(rt.code, 0, rt.stdout + rt.stderr);
    t.is(rr.code, 0, rr.stderr);
    t.is(count(rr.stdout, 'Received'), N);
    t.notRegex(rr.stderr, /Sequence|out of order|gap/i);
    const tot = sw.stats().totals;
    t.is(tot['rxFrames'], N);
    t.is(sumDrops(tot), 0, JSON.stringify(tot));
  });
});

test.serial('vale-ts: pkt-gen-ts txseq sends (lossless port), the C program checks every frame (epoll)', async (t) => {
  const nf = await nmFrames();
  await withVale0(async (env, sw) => {
    const a = `vale0:${uname('g')}`;
    const b = `vale0:${uname('h')}`;
    const rx = run(nf, ['rx', b, String(N), '64', 'epoll'], { ...PRE, ...env });
    await rx.waitFor(/registered/);
    // the sender's port, persistent and lossless, so nothing is dropped
    const port = sw.addPort(a, {}, { persistent: true, lossless: true });
    const tx = pktgenTs(['-i', a, '-f', 'txseq', '-n', String(N), '-l', '64'], env);
    const [rt, rr] = await Promise.all([tx.done, rx.done]);
    sw.removePort(port.index);
    t.is(rt.code, 0, rt.stderr);
    t.is(rr.code, 0, rr.stdout + rr.stderr);
    t.deepEqual(frames(rr.stdout), { frames: N, errors: 0 });
    t.is(sumDrops(sw.stats().totals), 0);
  });
});

test.serial('vale-ts: C to C, select and poll, every payload byte checked', async (t) => {
  const nf = await nmFrames();
  await withVale0(async (env) => {
    const a = `vale0:${uname('i')}`;
    const b = `vale0:${uname('j')}`;
    const rx = run(nf, ['rx', b, String(N), '1000', 'select'], { ...PRE, ...env, NMF_OURS: '1' });
    await rx.waitFor(/registered/);
    const tx = run(nf, ['tx', a, String(N), '1000', 'poll'], { ...PRE, ...env, VALE_TS_LOSSLESS: '1' });
    const [rt, rr] = await Promise.all([tx.done, rx.done]);
    t.is(rt.code, 0, rt.stdout + rt.stderr);
    t.is(rr.code, 0, rr.stdout + rr.stderr);
    t.deepEqual(frames(rr.stdout), { frames: N, errors: 0 });
  });
});

test.serial('vale-ts: 2 threads on a 2-ring port (NAME-0, NAME-1) send to pkt-gen-ts', async (t) => {
  const nf = await nmFrames();
  await withVale0(async (env, sw) => {
    const a = `vale0:${uname('k')}`;
    const b = `vale0:${uname('l')}`;
    const rx = pktgenTs(['-i', b, '-f', 'rx', '-n', String(N)], env);
    await rx.waitFor(/reading from/);
    const tx = run(nf, ['tx', a, String(N), '60', 'poll', '2'], { ...PRE, ...env, NMF_RINGS: '2', VALE_TS_LOSSLESS: '1' });
    const [rt, rr] = await Promise.all([tx.done, rx.done]);
    t.is(rt.code, 0, rt.stdout + rt.stderr);
    t.regex(rt.stderr, /registered .*-0: ring 0 of 2/);
    t.regex(rt.stderr, /registered .*-1: ring 1 of 2/);
    t.is(rr.code, 0, rr.stderr);
    t.is(count(rr.stdout, 'Received'), N);
    t.is(sumDrops(sw.stats().totals), 0);
  });
});

test.serial('valectl-style requests from C (newif, list, info, delif) are what vale-ctl-ts sees', async (t) => {
  const nf = await nmFrames();
  await withVale0(async (env) => {
    const e = { ...PRE, ...env };
    const p = `vale0:${uname('m')}`;
    const made = await run(nf, ['newif', p], e).done;
    t.is(made.code, 0, made.stderr);
    t.regex(made.stdout, /^tx_rings 2 rx_rings 2 tx_slots 1024$/m);
    const ts = await valeCtlTs([], env).done;
    t.regex(ts.stdout, new RegExp(`^${p} bridge_idx 0 port_idx \\d+$`, 'm'));
    const listed = await run(nf, ['list'], e).done;
    t.is(listed.code, 0, listed.stderr);
    t.is(listed.stdout, ts.stdout, 'the C listing is vale-ctl-ts listing');
    const info = await run(nf, ['info', p], e).done;
    t.regex(info.stdout, /^tx_rings 2 rx_rings 2 tx_slots 1024 rx_slots 1024$/m);
    const again = await run(nf, ['newif', p], e).done;
    t.is(again.code, 1);
    t.regex(again.stderr, /newif: File exists/);
    const del = await run(nf, ['delif', p], e).done;
    t.is(del.code, 0, del.stderr);
    const after = await valeCtlTs([], env).done;
    t.false(after.stdout.includes(p), after.stdout);
    const gone = await run(nf, ['delif', p], e).done;
    t.is(gone.code, 1);
    t.regex(gone.stderr, /vale-ts-netmap: failed to remove .*: no port/);
  });
});

test('names the preload does not serve fail with ENXIO and say why; vale-ts not running says how to start it', async (t) => {
  const nf = await nmFrames();
  const nic = await run(nf, ['rx', 'eth0', '1', '60'], PRE).done;
  t.is(nic.code, 1);
  // this machine has no netmap module: the one-line reason, then the program's own error
  if (!existsSync('/dev/netmap')) {
    t.regex(nic.stderr, /^vale-ts-netmap: eth0: not a VALE port \(valeX:Y\) or pipe .* no netmap kernel module/m);
    t.regex(nic.stderr, /register eth0: No such device or address/);
  }
  const down = await run(nf, ['rx', 'vale0:x', '1', '60'], { ...PRE, VALE_TS_SOCKET: '/nonexistent/vale-ts.sock' }).done;
  t.is(down.code, 1);
  t.regex(down.stderr, /vale-ts-netmap: cannot register vale0:x: vale-ts is not running at \/nonexistent\/vale-ts.sock .*start it with `vale-ts`/);
});

test('programs that never open /dev/netmap run unchanged under the preload', async (t) => {
  const plain = await run('ls', ['-la', path.join(repoRoot, 'cpp')]).done;
  const pre = await run('ls', ['-la', path.join(repoRoot, 'cpp')], PRE).done;
  t.is(pre.code, 0);
  t.is(pre.stdout, plain.stdout);
  const node = await run(process.execPath, ['-e', 'const fs=require("fs");fs.writeFileSync(1, String(6*7)+"\\n")'], PRE).done;
  t.is(node.code, 0, node.stderr);
  t.is(node.stdout, '42\n');
  t.is(node.stderr, '');
});
