/**
 * The lossless stall rule (both datapaths): a receiver whose full ring holds
 * back a lossless sender is waited for as long as it keeps up a rate, the
 * switch core's hold quantum (`holdQuantum` frames, bounded backpressure's
 * own rate) per stall bound. Any one frame taken is not progress: a receiver
 * taking a frame just before each bound would hold the sender, and every
 * flood it sends, at a frame per bound for ever.
 */
import { native } from '../netmap/addon.js';

export class StallWatch {
  /** receivers holding back a lossless sender: since when (ms) the clock runs, and what they had taken then */
  private readonly since = new Map<number, { at: number; delivered: number }>();

  constructor(private readonly stallMs: number) {}

  /**
   * A lossless sender waits on receiver `idx`, which has taken `delivered`
   * frames so far (its txFrames). True when it took fewer than a quantum in
   * the whole bound: declare it stalled (it is forgotten here).
   */
  blocked(idx: number, delivered: number, nowMs: number): boolean {
    const b = this.since.get(idx);
    if (b === undefined || delivered - b.delivered >= native.SwitchCore.holdQuantum) {
      this.since.set(idx, { at: nowMs, delivered });
      return false;
    }
    if (nowMs - b.at < this.stallMs) return false;
    this.since.delete(idx);
    return true;
  }

  /** No sender waits any more (or port `idx` went): forget it (all when no index). */
  clear(idx?: number): void {
    if (idx === undefined) this.since.clear();
    else this.since.delete(idx);
  }

  get size(): number {
    return this.since.size;
  }
}
