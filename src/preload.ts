/**
 * Where the preload library is: `libvale-ts-netmap.so`, which gives
 * unmodified netmap C programs `/dev/netmap` on vale-ts ports and pipes
 * (`LD_PRELOAD=$(vale-ctl-ts --preload-path) pkt-gen -i vale0:1 -f tx`).
 * It is built with the addon, by `node-gyp` (binding.gyp); a package
 * installed from prebuilt binaries carries it in
 * `prebuilds/<platform>-<arch>/` (scripts/prebuild-preload.mjs).
 *
 * @module
 */
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The library's file name. */
export const PRELOAD_LIBRARY = 'libvale-ts-netmap.so';

const here = path.dirname(fileURLToPath(import.meta.url));
// dist/src/preload.js -> the package root is two levels up
const root = path.resolve(here, '..', '..');

/**
 * Absolute path of the preload library: `$VALE_TS_PRELOAD` if set, else the
 * release build of the package (then the debug one), else its prebuilt copy
 * (`prebuilds/<platform>-<arch>/`). Throws, naming the paths tried and the
 * command that builds it, when there is none.
 *
 * @param packageRoot - the package to look in; this one by default.
 */
export function preloadLibraryPath(packageRoot: string = root): string {
  const env = process.env['VALE_TS_PRELOAD'];
  const tried = env
    ? [path.resolve(env)]
    : [
        path.join(packageRoot, 'build', 'Release', PRELOAD_LIBRARY),
        path.join(packageRoot, 'build', 'Debug', PRELOAD_LIBRARY),
        path.join(packageRoot, 'prebuilds', `${os.platform()}-${os.arch()}`, PRELOAD_LIBRARY),
      ];
  for (const p of tried) if (existsSync(p)) return p;
  throw new Error(
    `${PRELOAD_LIBRARY} is not built (looked at ${tried.join(', ')}): run \`npx node-gyp rebuild\` (or \`npm run build\`) in ${packageRoot}`,
  );
}
