/**
 * The router's side of the switch's lookup hook, for a switch embedded in
 * a program ({@link Switch} with `lookup`): frames for a gateway MAC go to
 * the router's port whatever the MAC table says (never flooded before the
 * router has spoken, never misdirected after an aged or poisoned entry),
 * and a frame from any other port that claims a gateway MAC as its source
 * is dropped (counted by the switch as `dropLookup`), so a host cannot
 * capture the gateway's traffic by spoofing its address. Every other
 * decision is left to the lookup it wraps (usually a {@link LearningBridge}'s).
 */
import { DEST_DROP, DEST_SAME_PORT, type BatchLookup } from '../vale/learning-bridge.js';
import { parseMac } from './addr.js';

/** The source port of frame `i`, whichever form the switch hands the lookup (one index per batch, or one per frame). */
function sourceOf(src: number | ArrayLike<number>, i: number): number {
  return typeof src === 'number' ? src : src[i]!;
}

/** Pins gateway MACs to the router's ports in a switch's lookup. */
export class GatewaySteering {
  /** MAC (as 48-bit number) → port index */
  private readonly pins = new Map<number, number>();
  /** frames from another port with a gateway's source MAC, dropped */
  spoofDrops = 0;
  /** The lookup to give the switch. */
  readonly lookup: BatchLookup;

  /** Wraps `next` (e.g. `new LearningBridge().lookupBatch`), which decides every frame first. */
  constructor(next: BatchLookup) {
    const pins = this.pins;
    this.lookup = ((...args: Parameters<BatchLookup>): void => {
      next(...args);
      if (pins.size === 0) return;
      const [buf, offsets, lens, count, src, dests] = args;
      const srcs = src as unknown as number | ArrayLike<number>;
      for (let i = 0; i < count; i++) {
        if (lens[i]! < 14) continue;
        const o = offsets[i]!;
        const s = pins.get(macAt(buf, o + 6));
        const from = sourceOf(srcs, i);
        if (s !== undefined && s !== from) {
          dests[i] = DEST_DROP;
          this.spoofDrops++;
          continue;
        }
        const d = pins.get(macAt(buf, o));
        if (d !== undefined) dests[i] = d === from ? DEST_SAME_PORT : d;
      }
    }) as BatchLookup;
  }

  /** Frames to `mac` go to port `portIndex` (the router port's {@link SwitchPort} index); frames from it elsewhere are dropped. */
  pin(mac: string, portIndex: number): void {
    if (!Number.isInteger(portIndex) || portIndex < 0) throw new RangeError(`port index ${portIndex} is not a switch port index`);
    this.pins.set(macNumber(parseMac(mac)), portIndex);
  }

  /** Lifts a pin (the router port went away). */
  unpin(mac: string): void {
    this.pins.delete(macNumber(parseMac(mac)));
  }
}

function macAt(b: Uint8Array, o: number): number {
  return (b[o]! * 2 ** 40) + (b[o + 1]! * 2 ** 32) + (((b[o + 2]! << 24) | (b[o + 3]! << 16) | (b[o + 4]! << 8) | b[o + 5]!) >>> 0);
}

function macNumber(m: Uint8Array): number {
  return macAt(m, 0);
}
