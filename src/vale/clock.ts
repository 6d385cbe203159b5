/**
 * Time source for the switch (MAC aging, periodic sweeps).
 *
 * The switch reads the clock once per batch, never per frame, so the cost of a
 * call does not matter much; what matters is that time never goes backwards.
 */
export interface Clock {
  /** Milliseconds from an arbitrary origin; non-decreasing. */
  nowMs(): number;
}

/** Monotonic clock based on `performance.now()` (not affected by wall-clock changes). */
export const systemClock: Clock = Object.freeze({
  nowMs(): number {
    return performance.now();
  },
});

/** A clock that only moves when told to; for tests. */
export class ManualClock implements Clock {
  private t: number;

  constructor(startMs = 0) {
    if (!Number.isFinite(startMs)) throw new RangeError(`ManualClock: bad start time ${startMs}`);
    this.t = startMs;
  }

  nowMs(): number {
    return this.t;
  }

  /** Move forward by `ms` (must be >= 0). */
  advance(ms: number): void {
    if (!(ms >= 0) || !Number.isFinite(ms)) throw new RangeError(`ManualClock.advance: bad step ${ms}`);
    this.t += ms;
  }

  /** Jump to an absolute time (must not go backwards). */
  set(ms: number): void {
    if (!Number.isFinite(ms) || ms < this.t) {
      throw new RangeError(`ManualClock.set: ${ms} is not finite or is before the current time ${this.t}`);
    }
    this.t = ms;
  }
}
