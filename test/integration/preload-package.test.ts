/**
 * The preload library in a package installed from prebuilt binaries:
 * scripts/prebuild-preload.mjs puts it in prebuilds/<platform>-<arch>/,
 * `npm pack` packs it from there, and preloadLibraryPath finds it in a
 * package root that has no build/ at all; the stripped copy still works.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { PRELOAD_LIBRARY, preloadLibraryPath } from '../../src/index.js';
import { nmFrames, repoRoot, run } from '../fixtures/preload/apps.js';

const exec = promisify(execFile);
const platformDir = `${os.platform()}-${os.arch()}`;

test('a prebuilds-only package: the script copies the library there, npm pack packs it, preloadLibraryPath finds it, it works', async (t) => {
  const root = mkdtempSync(path.join(os.tmpdir(), `vale-ts-preload-pkg-${process.pid}-`));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  // the package as prepack leaves it: package.json, and the library just built
  copyFileSync(path.join(repoRoot, 'package.json'), path.join(root, 'package.json'));
  mkdirSync(path.join(root, 'build', 'Release'), { recursive: true });
  copyFileSync(path.join(repoRoot, 'build', 'Release', PRELOAD_LIBRARY), path.join(root, 'build', 'Release', PRELOAD_LIBRARY));
  const script = await exec(process.execPath, [path.join(repoRoot, 'scripts', 'prebuild-preload.mjs'), root]);
  t.regex(script.stdout, new RegExp(`prebuilds/${platformDir}/${PRELOAD_LIBRARY}`));

  const packed = await exec('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: root });
  const files = (JSON.parse(packed.stdout) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map((f) => f.path);
  t.true(files.includes(`prebuilds/${platformDir}/${PRELOAD_LIBRARY}`), files.join('\n'));

  // an installed package has no build/: the prebuilt copy is the one found
  rmSync(path.join(root, 'build'), { recursive: true });
  const env = process.env['VALE_TS_PRELOAD'];
  delete process.env['VALE_TS_PRELOAD'];
  let found: string;
  try {
    found = preloadLibraryPath(root);
  } finally {
    if (env !== undefined) process.env['VALE_TS_PRELOAD'] = env;
  }
  t.is(found, path.join(root, 'prebuilds', platformDir, PRELOAD_LIBRARY));
  t.throws(() => preloadLibraryPath(path.join(root, 'nowhere')), { message: /is not built \(looked at .*prebuilds/ });

  // the stripped copy still serves /dev/netmap (it answers for vale0:x)
  const nf = await nmFrames();
  const down = await run(nf, ['rx', 'vale0:x', '1', '60'], {
    LD_PRELOAD: [process.env['LD_PRELOAD'], found].filter(Boolean).join(':'),
    VALE_TS_SOCKET: `/nonexistent-${process.pid}/vale-ts.sock`,
  }).done;
  t.is(down.code, 1);
  t.regex(down.stderr, /vale-ts-netmap: cannot register vale0:x: vale-ts is not running/);
});
