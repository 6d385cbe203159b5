/**
 * Where the preload library is: `libvale-ts-netmap.so`, which gives
 * unmodified netmap C programs `/dev/netmap` on vale-ts ports and pipes
 * (`LD_PRELOAD=$(vale-ctl-ts --preload-path) pkt-gen -i vale0:1 -f tx`).
 * It is built with the addon, by `node-gyp` (binding.gyp).
 *
 * @module
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The library's file name. */
export const PRELOAD_LIBRARY = 'libvale-ts-netmap.so';

const here = path.dirname(fileURLToPath(import.meta.url));
// dist/src/preload.js -> the package root is two levels up
const root = path.resolve(here, '..', '..');

/**
 * Absolute path of the preload library: `$VALE_TS_PRELOAD` if set, else the
 * release build of this package (then the debug one). Throws, naming the
 * paths tried and the command that builds it, when there is none.
 */
export function preloadLibraryPath(): string {
  const env = process.env['VALE_TS_PRELOAD'];
  const tried = env ? [path.resolve(env)] : [path.join(root, 'build', 'Release', PRELOAD_LIBRARY), path.join(root, 'build', 'Debug', PRELOAD_LIBRARY)];
  for (const p of tried) if (existsSync(p)) return p;
  throw new Error(`${PRELOAD_LIBRARY} is not built (looked at ${tried.join(', ')}): run \`npx node-gyp rebuild\` (or \`npm run build\`) in ${root}`);
}
