/**
 * The switch's busy poll (both datapaths): after a round that found nothing
 * it yields the CPU and polls again until its window ends, then sleeps until
 * a kick. A yield that comes back late means another runnable thread had
 * this CPU (a busy neighbour, or a client sharing the core): polling on would
 * only cost time slices the clients need, so the switch sleeps at once.
 */
import { native } from '../netmap/addon.js';

/** A sched_yield that comes back later than this gave the CPU away (ns). */
const YIELD_LATE_NS = 30_000n;

/** sched_yield; false when it came back late (the CPU is contended: sleep rather than poll on). */
export function yieldInTime(): boolean {
  const t = process.hrtime.bigint();
  native.SwitchCore.yieldCpu();
  return process.hrtime.bigint() - t < YIELD_LATE_NS;
}
