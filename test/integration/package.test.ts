/**
 * The packed package, as a user gets it: `npm pack` (its prepack stores the
 * prebuilt addons), then installed into a fresh project whose PATH holds no
 * compiler (only node, npm and sh), offline, and its tools run from there
 * against each other.
 */
import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import { untilListening } from '../fixtures/vale-ts-process.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv }): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** Where a program is found on the machine's own PATH. */
function which(name: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(':')) {
    const p = path.join(dir, name);
    if (dir && existsSync(p)) return realpathSync(p);
  }
  return undefined;
}

/** The runtime dependencies (and theirs) as tarballs packed from this clone's node_modules: the install needs no registry. */
const DEPS = ['node-addon-api', 'node-gyp-build', 'prom-client', '@opentelemetry/api', 'tdigest', 'bintrees'];

test('npm pack carries prebuilt addons; the tarball installs and runs with no compiler on PATH', async (t) => {
  t.timeout(480_000, 'pack + offline install + tools (a hang guard: ~20 s on an idle machine)');
  const work = mkdtempSync(path.join(os.tmpdir(), `netmap-pack-${process.pid}-`));
  t.teardown(() => rmSync(work, { recursive: true, force: true }));
  const tarballs = path.join(work, 'tarballs');
  mkdirSync(tarballs);

  const pack = await run('npm', ['pack', '--json', '--pack-destination', tarballs], { cwd: root });
  t.is(pack.code, 0, pack.stderr);
  // the JSON report follows whatever the prepack scripts printed
  const info = JSON.parse(pack.stdout.slice(pack.stdout.search(/^\[/m))) as { filename: string; files: { path: string }[] }[];
  const files = info[0]!.files.map((f) => f.path);
  for (const f of ['prebuilds/linux-x64/netmap.napi.node', 'prebuilds/linux-x64/netmap_tools.napi.node', 'prebuilds/linux-x64/libvale-ts-netmap.so', 'dist/tools/vale-ts.js', 'dist/tools/pkt-gen-ts.js', 'dist/src/index.js', 'binding.gyp']) {
    t.true(files.includes(f), `${f} is in the tarball`);
  }
  t.false(files.some((f) => f.startsWith('dist/test/')), 'no tests in the tarball');
  const ours = path.join(tarballs, info[0]!.filename);

  const packed = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tarballs, ...DEPS.map((d) => path.join(root, 'node_modules', d))], { cwd: work });
  t.is(packed.code, 0, packed.stderr);
  const deps = (JSON.parse(packed.stdout) as { filename: string }[]).map((p) => path.join(tarballs, p.filename));
  t.is(deps.length, DEPS.length);

  // a PATH with node, npm and sh only: no gcc, g++, make, python3
  const bin = path.join(work, 'bin');
  mkdirSync(bin);
  for (const p of ['node', 'npm', 'sh']) {
    const real = p === 'node' ? process.execPath : which(p);
    if (!real) return t.fail(`${p} is not on PATH`);
    symlinkSync(real, path.join(bin, p));
  }
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: bin };
  delete env['VALE_TS_SOCKET'];
  delete env['npm_config_prefix'];
  for (const c of ['gcc', 'g++', 'cc', 'c++', 'make']) t.false(readdirSync(bin).includes(c), `${c} not reachable`);

  const app = path.join(work, 'app');
  mkdirSync(app);
  writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }));
  const inst = await run('npm', ['install', '--offline', '--no-audit', '--no-fund', ours, ...deps], { cwd: app, env });
  t.is(inst.code, 0, `${inst.stdout}\n${inst.stderr}`);
  const pkg = path.join(app, 'node_modules', '@x', 'netmap');
  t.false(existsSync(path.join(pkg, 'build')), 'nothing was compiled at install: the prebuilt addons serve');

  const tools = path.join(app, 'node_modules', '.bin');
  for (const tool of ['vale-ts', 'vale-ctl-ts', 'pkt-gen-ts']) {
    const h = await run(path.join(tools, tool), ['--help'], { cwd: app, env });
    t.is(h.code, 0, `${tool} --help: ${h.stderr}`);
    t.regex(h.stdout + h.stderr, /--socket/, `${tool} --help names --socket`);
  }

  // the tools of the installed package against each other
  const socket = path.join(work, 'sw.sock');
  const sw = spawn(path.join(tools, 'vale-ts'), ['--socket', socket], { cwd: app, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((r) => sw.once('exit', () => r()));
  t.teardown(async () => {
    if (sw.exitCode === null && sw.signalCode === null) sw.kill('SIGKILL');
    await exited;
  });
  await untilListening(sw, 'the installed vale-ts');
  const tx = await run(path.join(tools, 'pkt-gen-ts'), ['--socket', socket, '-i', 'vale0:1', '-f', 'tx', '-n', '1000'], { cwd: app, env });
  t.is(tx.code, 0, tx.stderr);
  t.regex(tx.stdout, /^Sent 1000 packets/m);
  const st = await run(path.join(tools, 'vale-ctl-ts'), ['--socket', socket, '--stats', '--json'], { cwd: app, env });
  t.is(st.code, 0, st.stderr);
  t.truthy(JSON.parse(st.stdout), 'stats parse as JSON');
  sw.kill('SIGTERM');
  await exited;
});
