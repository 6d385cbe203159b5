/**
 * What examples/router.ts and examples/nat.ts share: their `NAME=VALUE`
 * arguments and how they run (counters on SIGUSR1, and every --stats-ms; a
 * last print and a clean stop on SIGINT/SIGTERM). Not an example by itself.
 */
import type { RouterPorts } from '@x/netmap';

/** `--rp-filter` as the router takes it (Linux's rp_filter 1, 2, 0). */
export function rpFilterOf(v: string): 'strict' | 'loose' | 'off' {
  if (v === 'strict' || v === 'loose' || v === 'off') return v;
  throw new Error(`--rp-filter ${v}: expected strict (the source must route back out of the interface it came in on), loose (out of any interface) or off`);
}

/** `NAME=VALUE` split at the last '=' (an address or a next hop never holds one; a port name may). */
export function nameValue(s: string, option: string, example: string): [string, string] {
  const i = s.lastIndexOf('=');
  if (i < 0) throw new Error(`--${option} ${s}: expected NAME=VALUE (e.g. ${example})`);
  return [s.slice(0, i), s.slice(i + 1)];
}

/**
 * Serves until the ports end: prints `stats()` on SIGUSR1 and every `statsMs`
 * (when given), prints it once more and stops on SIGINT or SIGTERM. A
 * failure of the ports is printed as `<label> stopped: why`, exit code 1.
 */
export async function serve(run: RouterPorts, label: string, stats: () => void, statsMs?: string): Promise<void> {
  process.on('SIGUSR1', stats);
  if (statsMs) setInterval(stats, Number(statsMs)).unref();
  const stop = (): void => {
    stats();
    run.close();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  await run.done().catch((e: unknown) => {
    console.error(`${label} stopped: ${(e as Error).message}`);
    process.exitCode = 1;
  });
}
