#!/usr/bin/env node
// `prepare` and `prepack`: compile the TypeScript into dist/ only when some
// source is newer than its output, and never leave a module half-written for
// a process running from dist/ at that moment: tsc writes into a temporary
// directory beside dist/, and each file then replaces its old version with
// one rename(2) (atomic within a file system). A process may still pick up
// some modules from before and some from after an update; restart it.
//   node scripts/build-ts.mjs           (--force: compile even when up to date)
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');
const require = createRequire(import.meta.url);
/** The folders tsconfig.json includes (its "include"), relative to root. */
const SOURCES = ['src', 'tools', 'test', 'bench', 'examples'];

function* walk(dir) {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) yield* walk(p);
    else if (e.isFile()) yield p;
  }
}

/** The first source whose output is missing or older, or undefined when dist/ is up to date. */
function staleSource() {
  const config = Math.max(statSync(path.join(root, 'tsconfig.json')).mtimeMs, statSync(path.join(root, 'package.json')).mtimeMs);
  for (const top of SOURCES) {
    for (const file of walk(path.join(root, top))) {
      if (!file.endsWith('.ts') || file.endsWith('.d.ts')) continue;
      const out = path.join(dist, path.relative(root, file)).replace(/\.ts$/, '.js');
      let outTime;
      try {
        outTime = statSync(out).mtimeMs;
      } catch {
        return path.relative(root, file);
      }
      if (outTime < statSync(file).mtimeMs || outTime < config) return path.relative(root, file);
    }
  }
  return undefined;
}

const force = process.argv.includes('--force');
const stale = force || !existsSync(dist) ? 'forced' : staleSource();
if (stale === undefined) {
  console.error('build-ts: dist/ is up to date');
  process.exit(0);
}
console.error(`build-ts: compiling (${stale === 'forced' ? 'no dist/ yet, or --force' : `${stale} changed`})`);
const tmp = mkdtempSync(path.join(root, '.dist-build-'));
try {
  const tsc = require.resolve('typescript/bin/tsc');
  execFileSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.json'), '--outDir', tmp], { cwd: root, stdio: [0, 2, 2] });
  let n = 0;
  for (const file of walk(tmp)) {
    const dest = path.join(dist, path.relative(tmp, file));
    mkdirSync(path.dirname(dest), { recursive: true });
    renameSync(file, dest);
    n++;
  }
  console.error(`build-ts: ${n} files into dist/`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
