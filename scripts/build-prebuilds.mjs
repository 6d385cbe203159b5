#!/usr/bin/env node
// Builds both addons from source and stores them as the package's prebuilt
// binaries: prebuilds/<platform>-<arch>/{netmap,netmap_tools}.napi.node,
// where src/netmap/native-loader.ts looks for them (and node-gyp-build, run
// at install, finds them and skips the source build). N-API builds, so one
// binary serves every Node version from 20 on. prebuildify is not used: it
// packs the first .node file of a build and this package has two.
//   npm run build:prebuilds      (run by prepack, so the published package has them)
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
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
execFileSync(process.execPath, [nodeGyp, 'rebuild'], { cwd: root, stdio: 'inherit' });
const dest = path.join(root, 'prebuilds', `${os.platform()}-${os.arch()}`);
mkdirSync(dest, { recursive: true });
for (const name of ['netmap', 'netmap_tools']) {
  const out = path.join(dest, `${name}.napi.node`);
  copyFileSync(path.join(root, 'build', 'Release', `${name}.node`), out);
  execFileSync('strip', ['--strip-unneeded', out], { stdio: 'inherit' });
  console.log(`build-prebuilds: ${path.relative(root, out)}`);
}
