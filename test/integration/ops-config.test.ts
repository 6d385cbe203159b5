/**
 * vale-ts --config: loaded at start, reloaded on SIGHUP changing only what
 * changed (other ports, their clients and counters untouched),
 * --check-config naming every error's line; and the systemd unit, checked by
 * systemd-analyze verify.
 */
import test from 'ava';
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import { open, ValeClient, type Port, type SwitchStats } from '../../src/index.js';
import { ensurePackages } from '../fixtures/system-packages.js';
import { ControlConnection } from '../../src/control/client.js';
import { PROTOCOL_VERSION } from '../../src/control/protocol.js';
import { native } from '../../src/netmap/addon.js';
import { until } from '../fixtures/wait.js';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.join(here, '..', '..', '..');
const valeTs = path.join(here, '..', '..', 'tools', 'vale-ts.js');

function tmpDir(t: { teardown(fn: () => void): void }): string {
  const d = mkdtempSync(path.join(os.tmpdir(), `vt-cfg-${process.pid}-`));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** vale-ts running with a configuration; `line(re)` resolves at the first stdout line (from now on) matching. */
interface Running {
  child: ChildProcess;
  line(re: RegExp): Promise<string>;
  stderr(): string;
}
function start(args: string[]): Running {
  const child = spawn(process.execPath, [valeTs, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const waiters: { re: RegExp; from: number; res: (l: string) => void }[] = [];
  const check = (): void => {
    for (const w of [...waiters]) {
      const lines = out.slice(w.from).split('\n');
      const hit = lines.slice(0, -1).find((l) => w.re.test(l));
      if (hit !== undefined) {
        waiters.splice(waiters.indexOf(w), 1);
        w.res(hit);
      }
    }
  };
  child.stdout!.on('data', (d: Buffer) => {
    out += d;
    check();
  });
  child.stderr!.on('data', (d: Buffer) => (err += d));
  child.on('exit', (code) => {
    for (const w of waiters) w.res(`exited ${code}: ${err}`);
  });
  return {
    child,
    line: (re) =>
      new Promise((res) => {
        waiters.push({ re, from: out.length, res });
        check();
      }),
    stderr: () => err,
  };
}

function frame(dst: number, src: number): Uint8Array {
  const f = new Uint8Array(60);
  f.set([2, 0, 0, 0, 0, dst], 0);
  f.set([2, 0, 0, 0, 0, src], 6);
  f[12] = 0x08;
  return f;
}
async function sendAll(p: Port, n: number, dst: number, src: number): Promise<void> {
  for (let i = 0; i < n; i++) if (!p.inject(frame(dst, src))) throw new Error('tx ring full');
  if (!(await p.flush())) throw new Error(`${p.name}: switch went away`);
}

const CONFIG_1 = `// the host's switch
{
  "switches": {
    "vale0": {
      "macAge": 60, // seconds
      "ports": {
        "a": { "txSlots": 256, "rxSlots": 256, "lossless": true },
        "b": {},
      },
    },
    /* a switch of its own, with a lookup module */
    "vale5": { "lookup": "./drop-all.mjs", "ports": { "in": {} } },
  },
  "retainCounters": 60,
}
`;
// b goes, c comes, a is unchanged; vale5 is no longer configured
const CONFIG_2 = `{
  "switches": {
    "vale0": {
      "macAge": 60,
      "ports": {
        "a": { "txSlots": 256, "rxSlots": 256, "lossless": true },
        "c": { "rxRings": 2 },
      },
    },
  },
  "retainCounters": 60,
}
`;

test('a configuration is loaded at start and SIGHUP changes only what changed: other ports, clients and counters untouched', async (t) => {
  const dir = tmpDir(t);
  const socket = path.join(dir, 'vale-ts.sock');
  const file = path.join(dir, 'vale-ts.json');
  writeFileSync(file, CONFIG_1);
  // a lookup module, as an operator writes one: every frame dropped (dropLookup)
  writeFileSync(path.join(dir, 'drop-all.mjs'), 'export const lookup = (buf, offsets, lens, count, src, dests) => { for (let i = 0; i < count; i++) dests[i] = -1; };\n');
  const vt = start(['--socket', socket, '--config', file]);
  t.teardown(() => void vt.child.kill('SIGTERM'));
  t.regex(await vt.line(/loaded|exited/), /loaded: added vale0:a, vale0:b, vale5:in; 0 unchanged/);
  const ctl = new ValeClient({ socket });
  const g = await ctl.info('vale0:a');
  t.is(g.txSlots, 256, 'geometry from the file');
  t.is(g.rxSlots, 256);

  // a client on a, and traffic through the switch
  const a = await open('vale0:a', { socket });
  await sendAll(a, 5, 0x77, 0xa);
  const inp = await open('vale5:in', { socket });
  const other = await open('vale5:other', { socket });
  await sendAll(inp, 3, 0x99, 0x5);
  const before = await ctl.stats('vale0');
  const aBefore = before[0]!.ports.find((p) => p.name === 'vale0:a')!;
  t.is(aBefore.counters['rxFrames'], 5);
  const v5 = (await ctl.stats('vale5'))[0]!;
  t.is(v5.totals['dropLookup'], 3, "the lookup module decided: vale5's frames dropped");
  t.is(v5.totals['txFrames'], 0);

  // reload: b removed, c added, a untouched (its client keeps the port)
  writeFileSync(file, CONFIG_2);
  const reloaded = vt.line(/SIGHUP/);
  vt.child.kill('SIGHUP');
  t.regex(await reloaded, /reloaded: added vale0:c; removed vale0:b; 1 unchanged/);
  const after = (await ctl.stats('vale0'))[0]!;
  t.deepEqual(
    after.ports.map((p) => p.name),
    ['vale0:a', 'vale0:c'],
  );
  const aAfter = after.ports.find((p) => p.name === 'vale0:a')!;
  t.is(aAfter.portIndex, aBefore.portIndex, 'a is the same port');
  t.deepEqual(aAfter.counters, aBefore.counters, "a's counters untouched");
  t.deepEqual(after.departedPorts ?? [], [], 'a port removed by the configuration is forgotten, not kept as departed');
  t.is((await ctl.info('vale0:c')).rxRings, 2);
  // a's client was not disturbed: it goes on sending on the same region
  await sendAll(a, 2, 0x77, 0xa);
  t.is((await ctl.stats('vale0'))[0]!.ports.find((p) => p.name === 'vale0:a')!.counters['rxFrames'], 7);
  // vale5 is no longer configured, but a client holds vale5:in: refused, said, and retried at the next reload
  await until(() => /vale5:in: not removed: vale5:in is in use by pid \d+/.test(vt.stderr()));
  t.truthy((await ctl.stats('vale5'))[0]);

  // a reload with errors changes nothing
  writeFileSync(file, CONFIG_2.replace('"rxRings": 2', '"rxRings": 99'));
  const refused = new Promise<void>((res) => {
    const onErr = (d: Buffer): void => {
      if (String(d).includes('configuration unchanged')) {
        vt.child.stderr!.off('data', onErr);
        res();
      }
    };
    vt.child.stderr!.on('data', onErr);
  });
  vt.child.kill('SIGHUP');
  await refused;
  t.regex(vt.stderr(), new RegExp(`${file.replace(/[.]/g, '\\.')}:7:27: "rxRings" of vale0:c must be an integer in 1\\.\\.`));
  t.is((await ctl.info('vale0:c')).rxRings, 2, 'still the configuration before');
  a.close();
  inp.close();
  other.close();
});

test('--check-config reports every error with its line and column, and exits 1; a valid file exits 0', async (t) => {
  const dir = tmpDir(t);
  const bad = path.join(dir, 'bad.json');
  writeFileSync(
    bad,
    [
      '{', //                                                   1
      '  // comments are fine', //                              2
      '  "switches": {', //                                     3
      '    "vale0": {', //                                      4
      '      "ports": {', //                                    5
      '        "a": { "txSlots": 99999 },', //                  6
      '        "b-c": {},', //                                  7
      '        "d": { "driver": { "kind": "no-such-kind" } },', // 8
      '        "e": { "lossless": "yes" },', //                 9
      '      },', //                                            10
      '      "bogus": 1,', //                                   11
      '    },', //                                              12
      '    "notvale": {},', //                                  13
      '  },', //                                                14
      '  "access": { "group": "no-such-group-vt", "allowUids": ["x"] },', // 15
      '  "metrics": "localhost:99999",', //                     16
      '  "priority": -30,', //                                  17
      '}', //                                                   18
    ].join('\n') + '\n',
  );
  const r = await run(process.execPath, [valeTs, '--check-config', bad]).catch((e: { code: number; stderr: string }) => e);
  t.is((r as { code: number }).code, 1);
  const lines = (r as { stderr: string }).stderr.trim().split('\n');
  const at = lines.filter((l) => l.startsWith(`${bad}:`)).map((l) => Number(l.slice(bad.length + 1).split(':')[0]));
  t.deepEqual(at, [6, 7, 8, 9, 11, 13, 15, 15, 16, 17], lines.join('\n'));
  t.regex(lines.join('\n'), /:6:\d+: "txSlots" of vale0:a must be an integer in/);
  t.regex(lines.join('\n'), /:8:\d+: unknown port kind "no-such-kind"/);
  t.regex(lines.join('\n'), /:17:\d+: "priority" \(a nice value: lower runs first\) must be an integer in -20\.\.19/);
  t.regex(lines.at(-1)!, /10 errors/);
  // a syntax error: where it is
  const syn = path.join(dir, 'syn.json');
  writeFileSync(syn, '{\n  "switches": {\n    "vale0": { "ports": { "a": {} } }\n  \n');
  const s = await run(process.execPath, [valeTs, '--check-config', syn]).catch((e: { code: number; stderr: string }) => e);
  t.is((s as { code: number }).code, 1);
  t.regex((s as { stderr: string }).stderr, new RegExp(`${syn.replace(/[.]/g, '\\.')}:5:1: expected , or } after the value of "vale0"`));
  const good = path.join(dir, 'good.json');
  writeFileSync(good, CONFIG_2);
  const ok = await run(process.execPath, [valeTs, '--check-config', good]);
  t.regex(ok.stdout, /valid \(1 switch, 2 ports\)/);
});

test('the systemd unit passes systemd-analyze verify and bounds the service', async (t) => {
  await ensurePackages(['systemd']);
  const unit = readFileSync(path.join(repo, 'systemd', 'vale-ts.service'), 'utf8');
  for (const d of ['RuntimeDirectory=vale-ts', 'NoNewPrivileges=yes', 'ProtectSystem=strict', 'CapabilityBoundingSet=\n', '--socket /run/vale-ts/vale-ts.sock', 'ExecReload=/bin/kill -HUP $MAINPID', 'Nice=-10']) {
    t.true(unit.includes(d), d);
  }
  // verify checks that ExecStart exists: point it at this checkout's vale-ts
  const dir = tmpDir(t);
  const bin = path.join(dir, 'vale-ts');
  writeFileSync(bin, `#!/bin/sh\nexec ${process.execPath} ${valeTs} "$@"\n`);
  chmodSync(bin, 0o755);
  const u = path.join(dir, 'vale-ts.service');
  writeFileSync(u, unit.replaceAll('/usr/local/bin/vale-ts', bin));
  const r = await run('systemd-analyze', ['verify', u]).catch((e: { code: number; stderr: string }) => e);
  t.is((r as { stderr: string }).stderr, '', 'no warnings');
  t.falsy((r as { code?: number }).code);
  // and verify does catch a broken unit
  writeFileSync(u, unit.replaceAll('/usr/local/bin/vale-ts', bin).replace('ProtectSystem=strict', 'ProtectSystem=stricter'));
  const bad = await run('systemd-analyze', ['verify', u]).catch((e: { stderr: string }) => e);
  t.regex((bad as { stderr: string }).stderr, /vale-ts\.service:\d+: Failed to parse protect system value/);
});

test('a hostile configuration (nesting 100 000 deep) is an error at its line, at --check-config and on SIGHUP, where vale-ts keeps running', async (t) => {
  const dir = tmpDir(t);
  const socket = path.join(dir, 'vale-ts-x3.sock');
  const file = path.join(dir, 'vale-ts.json');
  const deep = `{\n  "switches": ${'['.repeat(100_000)}\n`;
  writeFileSync(file, deep);
  const r = await run(process.execPath, [valeTs, '--check-config', file]).catch((e: { code: number; stderr: string }) => e);
  t.is((r as { code: number }).code, 1);
  t.regex((r as { stderr: string }).stderr, new RegExp(`${file.replace(/[.]/g, '\\.')}:2:\\d+: nested more than \\d+ levels deep`));
  t.notRegex((r as { stderr: string }).stderr, /Maximum call stack|RangeError/);
  writeFileSync(file, CONFIG_2);
  const vt = start(['--socket', socket, '--config', file]);
  t.teardown(() => void vt.child.kill('SIGTERM'));
  t.regex(await vt.line(/loaded|exited/), /loaded: added vale0:a, vale0:c/);
  writeFileSync(file, deep);
  const refused = new Promise<void>((res) => {
    const onErr = (): void => {
      if (vt.stderr().includes('configuration unchanged')) {
        vt.child.stderr!.off('data', onErr);
        res();
      }
    };
    vt.child.stderr!.on('data', onErr);
    vt.child.on('exit', () => res());
  });
  vt.child.kill('SIGHUP');
  await refused;
  t.is(vt.child.exitCode, null, `vale-ts exited: ${vt.stderr()}`);
  t.regex(vt.stderr(), /nested more than \d+ levels deep/);
  t.is((await new ValeClient({ socket }).info('vale0:c')).rxRings, 2, 'the running configuration stays');
});

test('a SIGHUP as soon as vale-ts says anything (its metrics line, before the configuration is applied) is a reload after the first apply, never SIGHUP\'s default action (exit)', async (t) => {
  const dir = tmpDir(t);
  const socket = path.join(dir, 'vale-ts-hup.sock');
  const file = path.join(dir, 'vale-ts.json');
  writeFileSync(file, CONFIG_2);
  const vt = start(['--socket', socket, '--config', file, '--metrics', '0']);
  t.teardown(() => void vt.child.kill('SIGTERM'));
  // every wait from the start: "loaded" may come in the same read as the metrics line
  const metrics = vt.line(/metrics at|exited/);
  const loaded = vt.line(/ loaded:|exited/);
  const reloaded = vt.line(/SIGHUP: .* reloaded:|exited/);
  t.regex(await metrics, /metrics at/);
  vt.child.kill('SIGHUP');
  t.regex(await loaded, / loaded:/);
  t.regex(await reloaded, /reloaded:/, `vale-ts: ${vt.stderr()}`);
  t.is(vt.child.signalCode, null);
  t.is((await new ValeClient({ socket }).info('vale0:c')).rxRings, 2, 'the configuration is in place');
});

test('a configuration or lookup module that others can write (or own, or swap in its directory) is refused: it would run code as vale-ts', async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, 'vale-ts.json');
  writeFileSync(path.join(dir, 'drop-all.mjs'), 'export const lookup = () => {};\n');
  writeFileSync(file, '{\n  "switches": {\n    "vale5": { "lookup": "./drop-all.mjs", "ports": {} },\n  },\n}\n');
  const check = async (): Promise<{ code: number; out: string }> => {
    const r = await run(process.execPath, [valeTs, '--check-config', file]).then(
      (o) => ({ code: 0, out: o.stdout }),
      (e: { code: number; stderr: string }) => ({ code: e.code, out: e.stderr }),
    );
    return r;
  };
  t.is((await check()).code, 0, 'owner-only files in an owner-only directory are fine');
  chmodSync(file, 0o666);
  let r = await check();
  t.is(r.code, 1, r.out);
  t.regex(r.out, new RegExp(`${file.replace(/[.]/g, '\\.')}:1:1: not read: ${file.replace(/[.]/g, '\\.')} is writable by others than its owner \\(mode 666\\).*chmod go-w`));
  chmodSync(file, 0o644);
  chmodSync(path.join(dir, 'drop-all.mjs'), 0o646);
  r = await check();
  t.is(r.code, 1, r.out);
  t.regex(r.out, /:3:26: "lookup" not loaded: .*drop-all\.mjs is writable by others than its owner \(mode 646\)/);
  chmodSync(path.join(dir, 'drop-all.mjs'), 0o644);
  // a directory others may write: they could put another file in its place
  chmodSync(dir, 0o777);
  r = await check();
  t.is(r.code, 1, r.out);
  t.regex(r.out, /not read: .* is writable by others than its owner \(mode 777\)/);
  chmodSync(dir, 0o700);
  if (process.getuid?.() === 0) {
    chownSync(file, 65534, 65534);
    r = await check();
    t.is(r.code, 1, r.out);
    t.regex(r.out, /belongs to uid 65534, not to root or vale-ts's uid 0/);
  }
});

test('a client connecting while vale-ts applies its configuration at start waits for it: it cannot create a configured switch first (without its lookup)', async (t) => {
  const dir = tmpDir(t);
  const socket = path.join(dir, 'vale-ts-x3.sock');
  const file = path.join(dir, 'vale-ts.json');
  const fifo = path.join(dir, 'go');
  execFileSync('mkfifo', [fifo]);
  // the lookup's import waits for the test's word (a FIFO opened off the loop): the apply is under way meanwhile
  writeFileSync(
    path.join(dir, 'drop-all.mjs'),
    // (once: the datapath thread imports the module again, and does not wait)
    `import { readFile } from 'node:fs/promises';\nimport { isMainThread } from 'node:worker_threads';\n` +
      `if (isMainThread) {\n  process.stdout.write('x3: lookup importing\\n');\n  await readFile(${JSON.stringify(fifo)});\n}\n` +
      'export const lookup = (buf, offsets, lens, count, src, dests) => { for (let i = 0; i < count; i++) dests[i] = -1; };\n',
  );
  writeFileSync(file, '{ "switches": { "vale5": { "lookup": "./drop-all.mjs", "ports": {} } } }\n');
  const vt = start(['--socket', socket, '--config', file]);
  t.teardown(() => void vt.child.kill('SIGTERM'));
  t.regex(await vt.line(/lookup importing|exited/), /lookup importing/);
  // a client (an honest one restarting with the switch will do) asks for a port on the
  // configured switch now: connect and send are synchronous, so it is there before the word
  const conn = ControlConnection.connect(socket);
  t.teardown(() => conn.close());
  const asked = conn.request({ v: PROTOCOL_VERSION, op: 'register', name: 'vale5:x3', nrMode: 1, ringId: 0, flags: 0, conf: {} }, 60_000);
  writeFileSync(fifo, 'go');
  t.regex(await vt.line(/loaded|exited/), /loaded/);
  const { reply, fds } = await asked;
  t.teardown(() => fds.forEach((f) => native.close(f)));
  t.true(reply.ok, JSON.stringify(reply));
  const p = await open('vale5:x3b', { socket });
  t.teardown(() => p.close());
  await sendAll(p, 3, 0x99, 0x5);
  const st = (await new ValeClient({ socket }).stats('vale5'))[0]!;
  t.is(st.totals['dropLookup'], 3, "the configured lookup decides for the client's port");
});
