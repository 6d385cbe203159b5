/**
 * Scheduling requests for threads that busy-poll netmap rings.
 *
 * A ring's two ends make progress only while both run. Beside CPU-bound
 * processes, an end that slept (ring empty or full) and is woken by its
 * peer's kick waits, under Linux's EEVDF scheduler, until the busy task on
 * its CPU has used up its slice (the default request: 1-3 ms, ended at a
 * timer tick, 4 ms at HZ 250) — long after the peer filled or drained the
 * ring and went to sleep itself. A
 * short request (EEVDF's per-task slice, `sched_attr.sched_runtime` of a
 * SCHED_OTHER thread, Linux >= 6.12) makes the woken end run at once. It
 * does not change the share: the weight (nice) stays, and EEVDF only lets
 * a task run early while it is owed time.
 *
 * @module
 */
import { native } from './addon.js';

/** The slice asked for, µs: the kernel's least (100 µs). */
export const SHORT_SLICE_US = 100;

/**
 * Ask for a short EEVDF slice for the calling thread (and the threads it
 * creates afterwards). `NETMAP_TS_SLICE_US` overrides the request (0: keep
 * the kernel's default). Returns the request in force, µs, or 0 where the
 * kernel refused it or the thread is not SCHED_OTHER (then nothing changed;
 * on kernels before 6.12 the call succeeds and has no effect).
 */
export function requestShortSlice(env: NodeJS.ProcessEnv = process.env): number {
  const v = env['NETMAP_TS_SLICE_US'];
  const us = v === undefined || v === '' ? SHORT_SLICE_US : Number(v);
  if (!Number.isInteger(us) || us < 0 || us > 100_000) throw new RangeError(`NETMAP_TS_SLICE_US=${v}: give whole microseconds, 0..100000 (0: the kernel's default slice)`);
  if (us === 0) return 0;
  return native.setSchedSlice(us) ? us : 0;
}
