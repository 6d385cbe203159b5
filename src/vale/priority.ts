/**
 * vale-ts's scheduling priority (nice). A host's switch forwards other
 * processes' traffic: when it is runnable and waits behind CPU-bound tasks,
 * every port on it waits. Open vSwitch's ovs-ctl starts ovs-vswitchd at nice
 * -10 by default for the same reason; vale-ts does the same. The switch
 * sleeps when idle, so the priority costs nothing until frames flow.
 *
 * Linux keeps nice per thread and a new thread inherits its creator's:
 * set once at start, before the datapath thread and the ports' driver
 * threads exist, it covers every thread that forwards.
 *
 * @module
 */
import { getPriority, setPriority } from 'node:os';

/** The default nice of vale-ts (ovs-ctl's default for ovs-vswitchd). */
export const DEFAULT_SWITCH_NICE = -10;

/** What applying a requested nice did. */
export interface PriorityResult {
  /** the nice asked for */
  requested: number;
  /** the calling thread's nice afterwards */
  actual: number;
  /** why the request was not applied (absent when it was) */
  error?: string;
}

/** Check a nice value: an integer in -20..19, else a RangeError naming the fix. */
export function checkNice(n: number, what = 'priority'): number {
  if (!Number.isInteger(n) || n < -20 || n > 19) throw new RangeError(`${what} ${n} is invalid: expected an integer nice value in -20..19 (lower runs first; 0 leaves vale-ts at the default priority)`);
  return n;
}

/**
 * Set the calling thread's nice (and so that of every thread it creates
 * later). Lowering the nice below the current one needs CAP_SYS_NICE (root)
 * or an RLIMIT_NICE that allows it; where refused, the thread keeps its
 * nice and the result says why.
 */
export function applyPriority(nice: number): PriorityResult {
  checkNice(nice);
  try {
    setPriority(nice);
  } catch (e) {
    // os.setPriority throws ERR_SYSTEM_ERROR with the errno name in info.code
    const code = (e as { info?: { code?: string } }).info?.code ?? (e as NodeJS.ErrnoException).code ?? '';
    const why = code === 'EACCES' || code === 'EPERM' ? 'not permitted: raising the priority needs root, CAP_SYS_NICE or an RLIMIT_NICE (ulimit -e) that allows it' : (e as Error).message;
    return { requested: nice, actual: getPriority(), error: why };
  }
  return { requested: nice, actual: getPriority() };
}
