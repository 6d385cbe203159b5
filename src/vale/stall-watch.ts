/**
 * The lossless stall rule (both datapaths): a receiver whose full ring holds
 * back a lossless sender is waited for as long as it keeps up a rate, the
 * switch core's hold quantum (`holdQuantum` frames, bounded backpressure's
 * own rate) per stall bound. Any one frame taken is not progress: a receiver
 * taking a frame just before each bound would hold the sender, and every
 * flood it sends, at a frame per bound for ever.
 *
 * The bound adapts as bounded backpressure's does (SWITCH_HOLD_SLOW_DIV in
 * cpp/core/switch_core.h): a wait whose quantum took more than
 * 1/`holdSlowDiv` of the stall bound, or a stall, halves this receiver's
 * next bound, down to 0 (stalled at once) after `holdLevels` halvings; each
 * stall bound of time without another gives one halving back. Else a
 * receiver taking exactly a quantum just inside each bound would hold the
 * sender (all its frames, head-of-line) to a quantum per bound for ever.
 */
import { native } from '../netmap/addon.js';

export class StallWatch {
  /**
   * receivers holding back a lossless sender: since when (ms) the clock
   * runs, what they had taken then, when one last waited on them, and since
   * when with no gap of a quarter bound between (what a slow wait is
   * measured from: the rounds not running is not the receiver's slowness)
   */
  private readonly since = new Map<number, { at: number; delivered: number; seen: number; from: number }>();
  /** when the rounds stopped waiting on anyone (undefined: the last round waited) */
  private freeSince: number | undefined;
  /** receivers whose bound is shortened: halvings, and when (ms) the last was */
  private readonly levels = new Map<number, { level: number; at: number }>();

  /** `shortened(idx)`: receiver idx's bound was just halved (the caller counts it) */
  constructor(
    private readonly stallMs: number,
    private readonly shortened: (idx: number) => void = () => {},
  ) {}

  /**
   * A lossless sender waits on receiver `idx`, which has taken `delivered`
   * frames so far (its txFrames). True when it took fewer than a quantum in
   * the whole bound: declare it stalled (it is forgotten here).
   */
  blocked(idx: number, delivered: number, nowMs: number): boolean {
    this.freeSince = undefined;
    const b = this.since.get(idx);
    if (b === undefined || delivered - b.delivered >= native.SwitchCore.holdQuantum) {
      const quarter = this.stallMs / native.SwitchCore.holdSlowDiv;
      if (b !== undefined && nowMs - b.seen <= quarter && nowMs - b.from > quarter) this.shorten(idx, nowMs);
      this.since.set(idx, { at: nowMs, delivered, seen: nowMs, from: nowMs });
      return false;
    }
    if (nowMs - b.seen > this.stallMs / native.SwitchCore.holdSlowDiv) b.from = nowMs;
    b.seen = nowMs;
    if (nowMs - b.at < this.bound(idx, nowMs)) return false;
    this.since.delete(idx);
    this.shorten(idx, nowMs);
    return true;
  }

  /** Receiver idx's bound now (ms), with the halvings it has earned back by `nowMs`. */
  private bound(idx: number, nowMs: number): number {
    const l = this.levels.get(idx);
    if (l === undefined) return this.stallMs;
    const back = Math.floor((nowMs - l.at) / this.stallMs);
    if (back >= l.level) {
      this.levels.delete(idx);
      return this.stallMs;
    }
    l.level -= back;
    l.at += back * this.stallMs;
    return l.level >= native.SwitchCore.holdLevels ? 0 : this.stallMs / 2 ** l.level;
  }

  private shorten(idx: number, nowMs: number): void {
    this.bound(idx, nowMs);
    const l = this.levels.get(idx) ?? { level: 0, at: nowMs };
    if (l.level >= native.SwitchCore.holdLevels) return;
    l.level++;
    l.at = nowMs;
    this.levels.set(idx, l);
    this.shortened(idx);
  }

  /**
   * A round in which no lossless sender waited. The waits are over once
   * that has lasted a quarter of the bound (a shortened bound stays, given
   * back by time): not at the first such round, which a receiver taking a
   * quantum brings about (the sender's ring goes on for what fits, its
   * frames for others with them) and which used to restart its clock, so
   * one taking a slot per bound held a sender of mixed traffic for ever.
   */
  unblocked(nowMs: number): void {
    if (this.since.size === 0) return;
    if (this.freeSince === undefined) this.freeSince = nowMs;
    else if (nowMs - this.freeSince >= this.stallMs / native.SwitchCore.holdSlowDiv) this.since.clear();
  }

  /** Port `idx` went or has a new client: forget it. */
  clear(idx: number): void {
    this.since.delete(idx);
    this.levels.delete(idx);
  }

  get size(): number {
    return this.since.size;
  }
}
