/**
 * The switch's busy poll (both datapaths): after a round that found nothing
 * it yields the CPU and polls again until its window ends, then sleeps until
 * a kick. A yield that comes back late means another runnable thread had
 * this CPU (a busy neighbour, or a client sharing the core): polling on would
 * only cost time slices the clients need, so the switch sleeps at once.
 */
import { native } from '../netmap/addon.js';

/** A sched_yield that comes back later than this gave the CPU away (ms). */
const YIELD_LATE_MS = 0.03;

/**
 * sched_yield; false when it came back late (the CPU is contended: sleep
 * rather than poll on). Timed with performance.now(), a double: an empty
 * polling round allocates nothing (hrtime.bigint() allocates a BigInt).
 */
export function yieldInTime(): boolean {
  const t = performance.now();
  native.SwitchCore.yieldCpu();
  return performance.now() - t < YIELD_LATE_MS;
}
