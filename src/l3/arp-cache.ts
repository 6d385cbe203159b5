/**
 * The neighbour table of one router interface: IPv4 address to MAC, learned
 * from ARP, with an age limit and a bound; and the frames waiting for an
 * address to resolve (a few per address, a bounded number of addresses),
 * dropped and counted when no answer comes in time.
 */

/** Limits of a {@link ArpCache}. */
export interface ArpLimits {
  /** how long a learned address is trusted without being refreshed (ms, default 300 000) */
  entryTtlMs: number;
  /** most learned addresses per interface (default 1024) */
  maxEntries: number;
  /** frames held per unresolved address (default 8) */
  pendingFrames: number;
  /** most unresolved addresses at once per interface (default 64) */
  maxPending: number;
  /**
   * most frames from one IPv4 source waiting for ARP at once per interface
   * (default 16): one sender addressing many unresolved hosts takes at most
   * this many of the `maxPending` addresses, the rest stay for the others
   */
  pendingPerSource: number;
  /** how long frames wait for an ARP reply before they are dropped (ms, default 3000) */
  pendingTimeoutMs: number;
  /** interval between repeated ARP requests for one address (ms, default 1000) */
  retryMs: number;
}

export const DEFAULT_ARP_LIMITS: Readonly<ArpLimits> = Object.freeze({
  entryTtlMs: 300_000,
  maxEntries: 1024,
  pendingFrames: 8,
  maxPending: 64,
  pendingPerSource: 16,
  pendingTimeoutMs: 3000,
  retryMs: 1000,
});

interface Entry {
  mac: Uint8Array;
  expiresAt: number;
}

/** @internal frames held until an address resolves */
export interface Pending {
  frames: Uint8Array[];
  /** the IPv4 source each frame came from (as received, before any NAT), for {@link ArpCache.heldBySource} */
  sources: number[];
  since: number;
  lastRequest: number;
}

export class ArpCache {
  private readonly entries = new Map<number, Entry>();
  readonly pending = new Map<number, Pending>();
  /** frames held per IPv4 source (only sources with some) */
  private readonly heldBySource = new Map<number, number>();

  constructor(private readonly limits: ArpLimits) {}

  /** The MAC of `ip`, if known and fresh. */
  lookup(ip: number, now: number): Uint8Array | undefined {
    const e = this.entries.get(ip);
    if (!e) return undefined;
    if (e.expiresAt <= now) {
      this.entries.delete(ip);
      return undefined;
    }
    return e.mac;
  }

  /** True when `ip` has an entry (fresh or not): ARP from it then refreshes it, as Linux does. */
  has(ip: number): boolean {
    return this.entries.has(ip);
  }

  /**
   * Records `ip` at `mac`. The table is kept in refresh order (so also in
   * expiry order); when it is full, the least recently refreshed entry
   * makes room: one host claiming many addresses cannot keep every new
   * neighbour out for the entry lifetime, and an evicted neighbour is only
   * asked again when next needed. Returns whether an entry was evicted.
   */
  learn(ip: number, mac: Uint8Array, now: number): 'learned' | 'evicted' {
    const e = this.entries.get(ip);
    if (e) {
      e.mac.set(mac);
      e.expiresAt = now + this.limits.entryTtlMs;
      this.entries.delete(ip);
      this.entries.set(ip, e);
      return 'learned';
    }
    let evicted = false;
    if (this.entries.size >= this.limits.maxEntries) {
      this.expire(now);
      if (this.entries.size >= this.limits.maxEntries) {
        const [oldest] = this.entries.keys();
        this.entries.delete(oldest!);
        evicted = true;
      }
    }
    this.entries.set(ip, { mac: Uint8Array.from(mac), expiresAt: now + this.limits.entryTtlMs });
    return evicted ? 'evicted' : 'learned';
  }

  /**
   * Holds a copy of `frame` (from IPv4 source `src`) for `ip`. Returns 'new'
   * when this is the first frame waiting for `ip` (send a request), 'queued'
   * when others wait already, 'sourceFull' when `src` has
   * `pendingPerSource` frames waiting already, or 'full' when the queue or
   * the pending table is at its bound.
   */
  hold(ip: number, src: number, frame: Uint8Array, now: number): 'new' | 'queued' | 'sourceFull' | 'full' {
    const held = this.heldBySource.get(src) ?? 0;
    if (held >= this.limits.pendingPerSource) return 'sourceFull';
    let p = this.pending.get(ip);
    const fresh = !p;
    if (!p) {
      if (this.pending.size >= this.limits.maxPending) return 'full';
      p = { frames: [], sources: [], since: now, lastRequest: now };
      this.pending.set(ip, p);
    } else if (p.frames.length >= this.limits.pendingFrames) {
      return 'full';
    }
    p.frames.push(Uint8Array.from(frame));
    p.sources.push(src);
    this.heldBySource.set(src, held + 1);
    return fresh ? 'new' : 'queued';
  }

  /** Takes the frames waiting for `ip` (now resolved, or given up). */
  release(ip: number): Uint8Array[] {
    const p = this.pending.get(ip);
    if (!p) return [];
    this.pending.delete(ip);
    for (const src of p.sources) {
      const n = this.heldBySource.get(src)! - 1;
      if (n > 0) this.heldBySource.set(src, n);
      else this.heldBySource.delete(src);
    }
    return p.frames;
  }

  /** Forgets stale entries: the first ones, the table being in expiry order. */
  expire(now: number): void {
    for (const [ip, e] of this.entries) {
      if (e.expiresAt > now) return;
      this.entries.delete(ip);
    }
  }

  /** Learned entries, for listing. */
  list(now: number): { ip: number; mac: Uint8Array; expiresInMs: number }[] {
    const out: { ip: number; mac: Uint8Array; expiresInMs: number }[] = [];
    for (const [ip, e] of this.entries) if (e.expiresAt > now) out.push({ ip, mac: e.mac, expiresInMs: e.expiresAt - now });
    return out;
  }
}
