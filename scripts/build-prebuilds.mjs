#!/usr/bin/env node
// Stores both addons as the package's prebuilt binaries:
// prebuilds/<platform>-<arch>/{netmap,netmap_tools}.napi.node, where
// src/netmap/native-loader.ts looks for them, and where node-gyp-build, run
// at install, finds them and skips the source build (it falls back to
// compiling where none fits this platform). N-API builds, so one binary
// serves every Node version from 20 on. prebuildify is not used: it packs the
// first .node file of a build and this package has two.
// The build in build/Release is reused when it is newer than every source
// of the addons (cpp/, binding.gyp); otherwise (or with --rebuild) both are
// rebuilt first. Whatever else prebuilds/ holds (the LD_PRELOAD library) is
// packed as it is. Fails unless every binary is there at the end.
//   npm run build:prebuilds      (run by prepack, so the published package has them)
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
if (os.platform() !== 'linux') {
  console.error(`build-prebuilds: netmap is Linux-only; this is ${os.platform()}`);
  process.exit(1);
}
const nodeGyp = path.join(path.dirname(require.resolve('node-gyp/package.json')), 'bin', 'node-gyp.js');
const ADDONS = ['netmap', 'netmap_tools'];
const built = (name) => path.join(root, 'build', 'Release', `${name}.node`);

/** Newest modification time of the addons' sources. */
function newestSource() {
  let t = statSync(path.join(root, 'binding.gyp')).mtimeMs;
  const walk = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else t = Math.max(t, statSync(p).mtimeMs);
    }
  };
  walk(path.join(root, 'cpp'));
  return t;
}

const src = newestSource();
const fresh = ADDONS.every((n) => existsSync(built(n)) && statSync(built(n)).mtimeMs >= src);
if (fresh && !process.argv.includes('--rebuild')) {
  console.error('build-prebuilds: build/Release is newer than cpp/ and binding.gyp: packing it');
} else {
  execFileSync(process.execPath, [nodeGyp, 'rebuild'], { cwd: root, stdio: [0, 2, 2] });
}
const dest = path.join(root, 'prebuilds', `${os.platform()}-${os.arch()}`);
mkdirSync(dest, { recursive: true });
for (const name of ADDONS) {
  const out = path.join(dest, `${name}.napi.node`);
  // a new file renamed over the old: a process that has the old one loaded keeps its mapping intact
  const tmp = `${out}.tmp-${process.pid}`;
  copyFileSync(built(name), tmp);
  execFileSync('strip', ['--strip-unneeded', tmp], { stdio: [0, 2, 2] });
  renameSync(tmp, out);
  console.error(`build-prebuilds: ${path.relative(root, out)}`);
}
const missing = ADDONS.map((n) => path.join(dest, `${n}.napi.node`)).filter((p) => !existsSync(p));
if (missing.length > 0) {
  console.error(`build-prebuilds: missing after the build: ${missing.join(', ')}`);
  process.exit(1);
}
