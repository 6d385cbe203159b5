/**
 * netmap's own pkt-gen and valectl, built from the source snapshot in the
 * netmap-lab kit (docs/conformance.md) and run unmodified under the preload:
 * C pkt-gen to pkt-gen-ts and back over pipes and through vale-ts, ping /
 * pong, -p 2 on a two-ring port, and valectl's listing, create and remove
 * as vale-ctl-ts sees them. Without the snapshot these tests say so and are
 * skipped, except in CI (CI=true), where that is a failure.
 */
import anyTest, { type TestFn } from 'ava';
import {
  count,
  netmapApps,
  repoRoot,
  netmapSourceMissing,
  pktgenTs,
  preloadEnv,
  run,
  uname,
  valeCtlTs,
  withVale0,
} from '../fixtures/preload/apps.js';
import { sumDrops } from '../../src/index.js';
import { chmodSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const test = anyTest as TestFn;
const PRE = { LD_PRELOAD: preloadEnv };
const N = 300000;

// register the tests, or say why they cannot run
const missing = netmapSourceMissing;
const maybe = (missing ? test.skip : test) as unknown as typeof test;
// the tests that host vale0 in this process run one at a time
const maybeSerial = (missing ? test.serial.skip : test.serial) as unknown as typeof test;
if (missing) {
  if (process.env['CI'] === 'true') test('netmap source snapshot present (required in CI)', (t) => t.fail(missing));
  else test.skip(`netmap's apps: ${missing}`, () => {});
} else {
  test.before(async () => {
    await netmapApps(); // once, before the tests race to it
  });
}

maybe('pipe: C pkt-gen tx -> pkt-gen-ts rx, every frame', async (t) => {
  const { pktgen } = await netmapApps();
  const name = `vale0:${uname('a')}`;
  const rx = pktgenTs(['-i', `${name}}0`, '-f', 'rx', '-n', String(N)]);
  await rx.waitFor(/reading from/);
  const tx = run(pktgen, ['-i', `${name}{0`, '-f', 'tx', '-n', String(N)], PRE);
  const [rt, rr] = await Promise.all([tx.done, rx.done]);
  t.is(rt.code, 0, rt.stderr);
  t.is(rr.code, 0, rr.stderr);
  t.is(count(rt.stdout, 'Sent'), N);
  t.is(count(rr.stdout, 'Received'), N);
  t.regex(rt.stdout, /^Sending on vale0:\S+\{0: 1 queues, 1 threads and 1 cpus\.$/m);
});

maybe('pipe: pkt-gen-ts tx -> C pkt-gen rx, every frame', async (t) => {
  const { pktgen } = await netmapApps();
  const name = `vale0:${uname('b')}`;
  const rx = run(pktgen, ['-i', `${name}}0`, '-f', 'rx', '-n', String(N)], PRE);
  await rx.waitFor(/receiver_body .* reading from/);
  const tx = pktgenTs(['-i', `${name}{0`, '-f', 'tx', '-n', String(N)]);
  const [rt, rr] = await Promise.all([tx.done, rx.done]);
  t.is(rt.code, 0, rt.stderr);
  t.is(rr.code, 0, rr.stderr);
  t.is(count(rt.stdout, 'Sent'), N);
  t.is(count(rr.stdout, 'Received'), N);
});

maybeSerial('vale-ts: C pkt-gen tx (lossless) -> pkt-gen-ts rx, every frame, no drop', async (t) => {
  const { pktgen } = await netmapApps();
  await withVale0(async (env, sw) => {
    const a = `vale0:${uname('c')}`;
    const b = `vale0:${uname('d')}`;
    const rx = pktgenTs(['-i', b, '-f', 'rx', '-n', String(N)], env);
    await rx.waitFor(/reading from/);
    const tx = run(pktgen, ['-i', a, '-f', 'tx', '-n', String(N)], { ...PRE, ...env, VALE_TS_LOSSLESS: '1' });
    const [rt, rr] = await Promise.all([tx.done, rx.done]);
    t.is(rt.code, 0, rt.stderr);
    t.is(rr.code, 0, rr.stderr);
    t.is(count(rt.stdout, 'Sent'), N);
    t.is(count(rr.stdout, 'Received'), N);
    const tot = sw.stats().totals;
    t.is(tot['rxFrames'], N);
    t.is(sumDrops(tot), 0, JSON.stringify(tot));
  });
});

maybeSerial('vale-ts: pkt-gen-ts tx -> C pkt-gen rx: received = sent - the drops the switch counted', async (t) => {
  const { pktgen } = await netmapApps();
  await withVale0(async (env, sw) => {
    const a = `vale0:${uname('e')}`;
    const b = `vale0:${uname('f')}`;
    const rx = run(pktgen, ['-i', b, '-f', 'rx', '-n', String(N)], { ...PRE, ...env });
    await rx.waitFor(/receiver_body .* reading from/);
    // lossless sender port: every frame arrives, so rx -n N ends
    const port = sw.addPort(a, {}, { persistent: true, lossless: true });
    const tx = pktgenTs(['-i', a, '-f', 'tx', '-n', String(N)], env);
    const [rt, rr] = await Promise.all([tx.done, rx.done]);
    sw.removePort(port.index);
    t.is(rt.code, 0, rt.stderr);
    t.is(rr.code, 0, rr.stderr);
    const sent = count(rt.stdout, 'Sent');
    t.is(sent, N);
    t.is(count(rr.stdout, 'Received'), sent - sumDrops(sw.stats().totals));
    t.is(count(rr.stdout, 'Received'), N);
  });
});

maybeSerial('vale-ts: C pkt-gen ping <-> pkt-gen-ts pong; pipe: pkt-gen-ts ping <-> C pkt-gen pong', async (t) => {
  const { pktgen } = await netmapApps();
  await withVale0(async (env) => {
    const pong = pktgenTs(['-i', `vale0:${uname('g')}`, '-f', 'pong', '-n', '500'], env);
    await pong.waitFor(/reading from|pong_body/);
    const ping = run(pktgen, ['-i', `vale0:${uname('h')}`, '-f', 'ping', '-n', '500'], { ...PRE, ...env });
    const [pi, po] = await Promise.all([ping.done, pong.done]);
    t.is(pi.code, 0, pi.stderr);
    // pong -n 500 ends only after answering 500 pings (ping's RTT figures
    // are summed per second, so a sub-second run prints none)
    t.is(po.code, 0, po.stderr);
    t.regex(pi.stderr, /ping_body \[\d+\] RTT over 500 packets/);
  });
  // pkt-gen's pong queues its last reply and exits without a sync: run it
  // until ping has all its answers, then stop it as a user would
  const name = `vale0:${uname('i')}`;
  const pong = run(pktgen, ['-i', `${name}}0`, '-f', 'pong'], PRE);
  await pong.waitFor(/start_threads \[\d+\] Ready/);
  const ping = pktgenTs(['-i', `${name}{0`, '-f', 'ping', '-n', '500']);
  const pi = await ping.done;
  pong.kill('SIGINT');
  const po = await pong.done;
  t.is(pi.code, 0, pi.stderr);
  t.is(po.code, 0, po.stderr);
  t.regex(pi.stderr, /RTT over 500 packets/);
  t.notRegex(pi.stderr, /timeout/);
});

maybeSerial('vale-ts: C pkt-gen -p 2 on a two-ring port, one registration per ring, every frame', async (t) => {
  const { pktgen } = await netmapApps();
  await withVale0(async (env, sw) => {
    const a = `vale0:${uname('j')}`;
    const b = `vale0:${uname('k')}`;
    const rx = pktgenTs(['-i', b, '-f', 'rx', '-n', String(N)], env);
    await rx.waitFor(/reading from/);
    const tx = run(pktgen, ['-i', `${a}@conf:rings=2`, '-f', 'tx', '-p', '2', '-n', String(N)], { ...PRE, ...env, VALE_TS_LOSSLESS: '1' });
    const [rt, rr] = await Promise.all([tx.done, rx.done]);
    t.is(rt.code, 0, rt.stderr);
    t.regex(rt.stdout, /Sending on .*: 2 queues, 2 threads/);
    t.is((rt.stderr.match(/sender_body \[\d+\] start, fd/g) ?? []).length, 2);
    t.is(count(rt.stdout, 'Sent'), N);
    t.is(rr.code, 0, rr.stderr);
    t.is(count(rr.stdout, 'Received'), N);
    t.is(sumDrops(sw.stats().totals), 0);
  });
});

maybeSerial('valectl: create, list, -l, -g and remove are what vale-ctl-ts sees', async (t) => {
  const { valectl } = await netmapApps();
  await withVale0(async (env) => {
    const e = { ...PRE, ...env };
    const p0 = `vale0:${uname('l')}`;
    const p1 = `vale0:${uname('m')}`;
    t.is((await run(valectl, ['-n', p0], e).done).code, 0);
    const made = await run(valectl, ['-n', p1, '-C', '512,512,2,2', '-v'], e).done;
    t.is(made.code, 0, made.stderr);
    t.regex(made.stdout, /^tx_slots: +512\nrx_slots: +512\ntx_rings: +2\nrx_ring: +2\nmem_id: +\d+$/m);
    const listed = await run(valectl, [], e).done;
    const ts = await valeCtlTs([], env).done;
    t.is(listed.stdout, ts.stdout, 'valectl lists what vale-ctl-ts lists');
    t.regex(listed.stdout, new RegExp(`^${p0} bridge_idx 0 port_idx \\d+\\n${p1} bridge_idx 0 port_idx \\d+$`, 'm'));
    const l = await run(valectl, ['-l', p1], e).done;
    const lts = await valeCtlTs(['-l', p1], env).done;
    t.is(l.stdout, lts.stdout);
    const noport = await run(valectl, ['-l', 'vale0:nosuchport'], e).done;
    t.regex(noport.stdout, /^port_idx: +255$/m);
    const g = await run(valectl, ['-g', p1], e).done;
    t.regex(g.stdout, /^tx_slots: +512\nrx_slots: +512\ntx_rings: +2\nrx_rings +2\n/m);
    t.is((await run(valectl, ['-r', p0], e).done).code, 0);
    const after = await valeCtlTs([], env).done;
    t.false(after.stdout.includes(p0), after.stdout);
    t.true(after.stdout.includes(p1), after.stdout);
    const again = await run(valectl, ['-r', p0], e).done;
    t.is(again.code, 1);
    t.regex(again.stderr, new RegExp(`failed to remove ${p0}: No such device or address`));
    // -a reaches vale-ts, which attaches Linux interfaces: a missing one is ENXIO
    const nosuch = `vale0:nosuch${process.pid % 100000}`;
    const attach = await run(valectl, ['-a', nosuch], e).done;
    t.is(attach.code, 1);
    t.regex(attach.stderr, new RegExp(`failed to attach ${nosuch}: No such device or address`));
    t.is((await run(valectl, ['-r', p1], e).done).code, 0);
  });
});

maybeSerial('README "Running netmap\'s own C programs on vale-ts": its commands run as shown', async (t) => {
  const { pktgen, valectl } = await netmapApps();
  const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  const section = readme.split(/^## /m).find((s) => s.startsWith("Running netmap's own C programs on vale-ts"));
  t.truthy(section, 'the README has the section');
  const block = /```sh\n([\s\S]*?)```/.exec(section!)?.[1];
  t.truthy(block, 'the section has a sh block');
  // the commands as a user with netmap's apps on PATH and this package installed has them
  const bin = mkdtempSync(path.join(os.tmpdir(), 'vale-ts-readme-'));
  try {
    symlinkSync(pktgen, path.join(bin, 'pkt-gen'));
    symlinkSync(valectl, path.join(bin, 'valectl'));
    for (const tool of ['vale-ctl-ts', 'pkt-gen-ts', 'vale-ts']) {
      const f = path.join(bin, tool);
      writeFileSync(f, `#!/bin/sh\nexec "${process.execPath}" "${path.join(repoRoot, 'dist', 'tools', tool + '.js')}" "$@"\n`);
      chmodSync(f, 0o755);
    }
    // npx runs the package's own bins (here: the wrappers above); no -e:
    // valectl exits 1 after a listing, as it always does
    const script = `set -uo pipefail\nnpx() { "$@"; }\n${block!
      .replace(/'vale0:x([{}])1'/g, (_m, brace: string) => `'vale0:rd${process.pid}${brace}1'`)
      // what is preloaded already (the sanitizer runtimes of test/asan/run.sh) stays first
      .replace('export LD_PRELOAD=$(', 'export LD_PRELOAD=${LD_PRELOAD:+$LD_PRELOAD:}$(')}`;
    await withVale0(async (env) => {
      const r = await run('bash', ['-c', script], { ...env, PATH: `${bin}:${process.env['PATH']}` }).done;
      t.is(r.code, 0, r.stdout + r.stderr);
      t.regex(r.stdout, /^Sent 1000000 packets/m);
      t.regex(r.stdout, /^Received 1000000 packets/m);
      const listings = r.stdout.match(/^vale0:p1 bridge_idx 0 port_idx \d+$/gm) ?? [];
      t.is(listings.length, 2, 'valectl and vale-ctl-ts list the port alike');
      t.is((await valeCtlTs([], env).done).stdout, '', 'valectl -r removed it');
    });
  } finally {
    rmSync(bin, { recursive: true, force: true });
  }
});
