#!/usr/bin/env node
// Puts the preload library beside the prebuilt addons, where
// src/preload.ts finds it in an installed package that was not built from
// source: prebuilds/<platform>-<arch>/libvale-ts-netmap.so. Runs after
// `npm run build:prebuilds` (npm's post-script, so prepack packs it too).
//   node scripts/prebuild-preload.mjs [ROOT]   (ROOT: the package root, default this one)
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(process.argv[2] ?? path.join(path.dirname(fileURLToPath(import.meta.url)), '..'));
const lib = 'libvale-ts-netmap.so';
const built = path.join(root, 'build', 'Release', lib);
if (!existsSync(built)) {
  console.error(`prebuild-preload: ${built} is missing: run \`npx node-gyp rebuild\` in ${root} first`);
  process.exit(1);
}
const dest = path.join(root, 'prebuilds', `${os.platform()}-${os.arch()}`);
mkdirSync(dest, { recursive: true });
const out = path.join(dest, lib);
copyFileSync(built, out);
// its exported symbols (the libc calls it replaces) stay: only debug info goes
execFileSync('strip', ['--strip-unneeded', out], { stdio: 'inherit' });
console.log(`prebuild-preload: ${path.relative(root, out)}`);
