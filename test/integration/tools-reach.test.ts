/**
 * The tools as a newcomer meets them: every tool takes --help and --socket;
 * pkt-gen-ts's -i errors name what was typed, it says when a port lands on a
 * new switch, its -W help tells the truth; the demo (`npm start`) under
 * `| head` and in an 80-column tmux pane, and what it says to run next;
 * test/conformance/run.sh refusing a CONFORMANCE_JOBS name that is no job.
 */
import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, watch, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import { open, ValeServer } from '../../src/index.js';
import { ensurePackages } from '../fixtures/system-packages.js';

const tools = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'tools');
let uniq = 0;
const sockPath = (): string => path.join(os.tmpdir(), `reach-${process.pid}-${uniq++}.sock`);

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function env(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, NETMAP_BACKEND: 'user', ...extra };
  delete e['VALE_TS_SOCKET'];
  return e;
}

/** Run a tool (asynchronously: an in-process switch must keep answering). */
function tool(name: string, args: string[], e: NodeJS.ProcessEnv = env()): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(tools, `${name}.js`), ...args], { env: e }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout: String(stdout), stderr: String(stderr) }),
    );
  });
}

test('every tool takes --help (exit 0) and documents --socket', async (t) => {
  for (const name of ['vale-ts', 'vale-ctl-ts', 'pkt-gen-ts', 'demo']) {
    const r = await tool(name, ['--help']);
    t.is(r.code, 0, `${name}: ${r.stderr}`);
    t.regex(r.stdout + r.stderr, /--socket PATH/, `${name} --help names --socket PATH`);
  }
});

test('pkt-gen-ts --socket PATH reaches that switch (both spellings), and a wrong path is named', async (t) => {
  const socket = sockPath();
  const srv = await ValeServer.listen({ socket });
  t.teardown(() => srv.close('test done'));
  for (const args of [['--socket', socket], [`--socket=${socket}`]]) {
    const r = await tool('pkt-gen-ts', [...args, '-i', 'vale0:1', '-f', 'tx', '-n', '100']);
    t.is(r.code, 0, r.stderr);
    t.regex(r.stdout, /^Sent 100 packets/m);
  }
  const bad = await tool('pkt-gen-ts', ['--socket', `${socket}.nope`, '-i', 'vale0:1', '-f', 'tx', '-n', '1']);
  t.is(bad.code, 1);
  t.true(bad.stderr.includes(`${socket}.nope`), bad.stderr);
  const unknown = await tool('pkt-gen-ts', ['--sockt', socket, '-i', 'vale0:1']);
  t.is(unknown.code, 1);
  t.regex(unknown.stderr, /unknown option --sockt .*--socket PATH and --help/);
  // `-i --help` is a (bad) port name, not a request for help
  const asValue = await tool('pkt-gen-ts', ['-i', '--help']);
  t.is(asValue.code, 1);
});

test('pkt-gen-ts: -i errors name what was typed; a port on a new switch is noted; -W help tells the truth', async (t) => {
  const r = await tool('pkt-gen-ts', ['-i', 'VALE0:01', '-f', 'tx']);
  t.is(r.code, 1);
  t.regex(r.stderr, /invalid port name 'VALE0:01': .* at position 5/);
  t.false(r.stderr.includes("'netmap:VALE0:01'"), 'no name the user never typed is quoted as theirs');
  t.regex(r.stderr, /lowercase 'vale'/);

  const socket = sockPath();
  const srv = await ValeServer.listen({ socket });
  t.teardown(() => srv.close('test done'));
  const first = await tool('pkt-gen-ts', ['--socket', socket, '-i', 'vale:01', '-f', 'tx', '-n', '10']);
  t.is(first.code, 0, first.stderr);
  t.regex(first.stderr, /note: vale:01 is the first port of a new switch 'vale'/);
  // a port joining a switch that exists: no note
  const keep = await open('vale0:keep', { socket, backend: 'user' });
  t.teardown(() => keep.close());
  const joined = await tool('pkt-gen-ts', ['--socket', socket, '-i', 'vale0:02', '-f', 'tx', '-n', '10']);
  t.is(joined.code, 0, joined.stderr);
  t.false(joined.stderr.includes('new switch'), joined.stderr);

  const h = await tool('pkt-gen-ts', ['-h']);
  t.regex(h.stderr, /-W +rx: stop once no frame has come for one second\. The\s+wait for the first frame is not limited\./);
});

/** A private TMPDIR: the demo's socket directory goes there, so "nothing left behind" can be checked. */
function privateTmp(t: { teardown(fn: () => void): void }): string {
  const d = mkdtempSync(path.join(os.tmpdir(), `demo-tmp-${process.pid}-`));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

test('npm start | head: the demo ends quietly on the closed pipe, exit 0, and leaves nothing behind', async (t) => {
  const tmp = privateTmp(t);
  const demo = path.join(tools, 'demo.js');
  const r = await new Promise<Run>((resolve) => {
    execFile('bash', ['-c', `set -o pipefail; "${process.execPath}" "${demo}" | head -n 6`], { env: env({ TMPDIR: tmp }) }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout: String(stdout), stderr: String(stderr) }),
    );
  });
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout.split('\n').filter((l) => l !== '').length, 6);
  t.regex(r.stdout, /sent .*\/s {2}switched .*\/s {2}delivered .*\/s {2}dropped .*\/s {2}mac \d+/);
  t.false(/Error|EPIPE|at .*\.js:\d+/.test(r.stderr), `no stack trace: ${r.stderr}`);
  t.deepEqual(readdirSync(tmp), [], 'no socket (or its directory) left behind');
});

test('the demo, ended by --duration, says what to run next: the README\'s "Running the switch yourself" commands', async (t) => {
  const tmp = privateTmp(t);
  const r = await tool('demo', ['--duration', '1'], env({ TMPDIR: tmp }));
  t.is(r.code, 0, r.stderr);
  const next = r.stderr.slice(r.stderr.indexOf('Next:'));
  t.regex(next, /^Next: .*README "Running the switch yourself"/, r.stderr);
  const readme = readFileSync(path.join(tools, '..', '..', 'README.md'), 'utf8');
  const section = readme.split(/^## /m).find((s) => s.startsWith('Running the switch yourself'));
  t.truthy(section, 'the README has the section the demo names');
  const commands = next.split('\n').slice(1).filter((l) => l.trim() !== '');
  t.true(commands.length >= 3, next);
  // the demo's lines are the README's, comments and all, so neither changes alone
  for (const c of commands) t.true(section!.includes(`\n${c.trim()}\n`), `README's section lacks: ${c.trim()}`);
  t.deepEqual(readdirSync(tmp), [], 'no socket (or its directory) left behind');
});

test('the demo in an 80-column tmux pane: fits, updates in place, shows every field; Ctrl-C cleans up', async (t) => {
  t.timeout(90_000, 'tmux demo');
  ensurePackages(['tmux']);
  const tmp = privateTmp(t);
  const server = `netmap-demo-${process.pid}`;
  const tmux = (...args: string[]): Promise<Run> =>
    new Promise((resolve) =>
      execFile('tmux', ['-L', server, ...args], { env: env({ TMPDIR: tmp }) }, (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout: String(stdout), stderr: String(stderr) }),
      ),
    );
  t.teardown(() => void spawn('tmux', ['-L', server, 'kill-server'], { stdio: 'ignore' }));
  const demo = path.join(tools, 'demo.js');
  const started = await tmux('new-session', '-d', '-s', 'demo', '-x', '80', '-y', '30', `"${process.execPath}" "${demo}"; echo DEMO-EXIT=$?; sleep 600`);
  t.is(started.code, 0, started.stderr);
  const capture = async (): Promise<string> => (await tmux('capture-pane', '-p', '-t', 'demo')).stdout;
  // tmux has no "screen changed" event, but pipe-pane copies what the program writes to a
  // file, and tmux has put those bytes on the screen before it copies them: the pane is
  // captured again when that file changes, i.e. when the demo has drawn something new
  const out = path.join(mkdtempSync(path.join(os.tmpdir(), `demo-out-${process.pid}-`)), 'pane');
  t.teardown(() => rmSync(path.dirname(out), { recursive: true, force: true }));
  writeFileSync(out, '');
  let writes = 0;
  let wake: (() => void) | undefined;
  const watcher = watch(out, () => {
    writes++;
    wake?.();
  });
  t.teardown(() => watcher.close());
  const piped = await tmux('pipe-pane', '-t', 'demo', `cat >> '${out}'`);
  t.is(piped.code, 0, piped.stderr);
  const writtenSince = (n: number): Promise<void> =>
    writes !== n ? Promise.resolve() : new Promise<void>((resolve) => (wake = () => ((wake = undefined), resolve())));
  const waitFor = async (re: RegExp): Promise<string> => {
    for (;;) {
      const n = writes;
      const s = await capture();
      if (re.test(s)) return s;
      await writtenSince(n);
    }
  };
  // the view with traffic in it: something delivered and the MAC table populated
  const view = await waitFor(/delivered +[1-9][\d.]* ?[kMG]? +[1-9][\s\S]*MAC table +[1-9]/);
  for (const line of view.split('\n')) t.true(line.length <= 80, `fits 80 columns: ${JSON.stringify(line)}`);
  for (const field of [/^vale-ts demo .* \d+s$/m, /^sender +\S/m, /^switch took +\S/m, /^delivered +\S/m, /^dropped +\S/m, /^MAC table +\d+ +entries/m, /per s +total/]) {
    t.regex(view, field);
  }
  // a drop reason, when there is one, comes with its explanation on the same line
  for (const line of view.split('\n').filter((l) => /^ {2}\S/.test(l) && !l.startsWith('  pkt-gen') && !l.startsWith('  (--'))) {
    t.regex(line, /^ {2}[a-z ]+ +\S+.* {2}\S.{8,}/, `reason explained: ${line}`);
  }
  // updated in place: one view on the screen, not one per second
  const later = await waitFor(/ ([2-9]|\d\d+)s\n/);
  t.is(later.match(/^MAC table/gm)?.length, 1, 'one view, redrawn');
  await tmux('send-keys', '-t', 'demo', 'C-c');
  const end = await waitFor(/DEMO-EXIT=\d+/);
  t.regex(end, /DEMO-EXIT=0/);
  t.regex(end, /^Next: /m, 'after Ctrl-C it says what to run next');
  t.false(/Error|at .*\.js:\d+/.test(end), 'no stack trace');
  t.deepEqual(readdirSync(tmp).filter((f) => f.startsWith('vale-ts-demo-')), [], 'no socket left behind');
});

test('test/conformance/run.sh: a CONFORMANCE_JOBS name that is no job fails at once, listing the jobs', async (t) => {
  const script = path.join(tools, '..', '..', 'test', 'conformance', 'run.sh');
  // no kit: without the check, the run would end in a skip (exit 0) instead
  const e = env({ CONFORMANCE_JOBS: 'vale 50-valectl', NETMAP_LAB_KIT: path.join(os.tmpdir(), `no-kit-${process.pid}`), CI: 'false' });
  const r = await new Promise<Run>((resolve) => {
    execFile('bash', [script], { env: e }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout: String(stdout), stderr: String(stderr) }),
    );
  });
  t.is(r.code, 1, r.stdout + r.stderr);
  t.regex(r.stdout, /^FAIL setup: CONFORMANCE_JOBS names 'vale', which is no job; the jobs: 10-vale .*50-valectl/m);
  t.regex(r.stdout, /^0 passed, 1 failed$/m);
});
