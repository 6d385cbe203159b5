/**
 * test/system-packages.txt is installed up front (before the ava stage, and by
 * .ci/run beside npm install) so that on a clean machine no test spends its
 * own timeout in apt-get (a clean CI run once timed out installing DPDK inside
 * the first vhost-user test). This keeps the list whole: every package a test
 * or fixture asks for by name must be in it.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { repoRoot, tsFiles } from '../fixtures/source-files.js';

const root = repoRoot;

/** Package names in `ensurePackages([...])` calls and `*_PACKAGES = [...]` constants. */
function packagesAskedFor(source: string): string[] {
  const out: string[] = [];
  for (const m of source.matchAll(/(?:ensurePackages\(|_PACKAGES\s*=\s*)\[([^\]]*)\]/g)) {
    for (const s of m[1]!.matchAll(/'([^']+)'/g)) out.push(s[1]!);
  }
  return out;
}

const listed = new Set(
  readFileSync(path.join(root, 'test', 'system-packages.txt'), 'utf8')
    .split('\n')
    .map((l) => l.replace(/#.*/, '').trim())
    .filter(Boolean),
);

test('every Debian package a test asks for is installed up front (test/system-packages.txt)', (t) => {
  const missing: string[] = [];
  let asked = 0;
  const self = path.join(root, 'test', 'unit', 'system-packages.test.ts');
  for (const f of tsFiles(path.join(root, 'test'))) {
    if (f === self) continue; // its own examples below
    for (const p of packagesAskedFor(readFileSync(f, 'utf8'))) {
      asked++;
      if (!listed.has(p)) missing.push(`${p} (${path.relative(root, f)})`);
    }
  }
  // the scan must find the calls it is there for, or it checks nothing
  t.true(asked >= 20, `found only ${asked} package names in ensurePackages calls`);
  t.deepEqual(missing, [], 'add these to test/system-packages.txt');
});

test('the scan reads both forms and nothing else', (t) => {
  t.deepEqual(packagesAskedFor("ensurePackages(['a', 'b']); const X_PACKAGES = ['c'];"), ['a', 'b', 'c']);
  t.deepEqual(packagesAskedFor("sh('apt-get', ['update']);"), []);
});
