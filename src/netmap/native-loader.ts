/**
 * Finds and loads one of the package's native addons by name: `netmap`
 * (the library) or `netmap_tools` (pkt-gen-ts and the benchmarks only).
 * node-gyp-build picks the first `.node` file of a build folder, which is
 * ambiguous with two addons, so the lookup is done here, in node-gyp-build's
 * order: an explicit path from the environment, a source build
 * (build/Release, build/Debug), then the prebuilt binary shipped in the
 * package (prebuilds/<platform>-<arch>/<name>.napi.node, see
 * scripts/build-prebuilds.mjs).
 *
 * @module
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';

const require = createRequire(import.meta.url);
/** The package root: this file is dist/src/netmap/native-loader.js. */
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** The candidate paths of addon `name`, in the order they are tried. */
export function addonCandidates(name: string): string[] {
  return [
    path.join(root, 'build', 'Release', `${name}.node`),
    path.join(root, 'build', 'Debug', `${name}.node`),
    path.join(root, 'prebuilds', `${os.platform()}-${os.arch()}`, `${name}.napi.node`),
  ];
}

/**
 * Loads addon `name`. When the environment variable `envVar` is set, that
 * file and no other (the sanitizer run uses it).
 */
export function loadAddon(name: string, envVar: string): unknown {
  const forced = process.env[envVar];
  if (forced) return require(path.resolve(forced));
  const tried = addonCandidates(name);
  const found = tried.find((p) => existsSync(p));
  if (!found) {
    throw new Error(
      `the native addon ${name}.node was not found (looked for ${tried.join(', ')}): ` +
        `build it with \`npm run build:native\` (needs a C++20 compiler and node-gyp), or set ${envVar} to its path`,
    );
  }
  return require(found);
}
