/**
 * The forwarding loop of a switch on a thread of its own (a worker_thread),
 * so a wakeup reaches it directly: it blocks in epoll_wait on the switch's
 * doorbell set (inside the native core, not on an event loop), forwards,
 * busy-polls for a short window while traffic flows — yielding the CPU
 * whenever a poll finds nothing — and sleeps again. The control server stays
 * on the main thread; ports are added and removed there, in the shared
 * native core. The decision (learning bridge, or a lookup module) runs here.
 *
 * A thread outlives its switch: when the switch closes, the thread posts
 * 'stopped' and waits for the next switch (a worker costs tens of ms and
 * some MB to start, and on-demand switches come and go with their ports;
 * see the pool in switch.ts).
 *
 * Messages from the main thread:
 *   parentPort: { op: 'serve', init }  forward for a switch (the first comes
 *                                      as workerData, or none: a pooled spare)
 *   init.control (a MessagePort):
 *     { op: 'portRemoved', index }     the MAC table forgets the port
 *     { op: 'stop' }                   leave the loop, post 'stopped'
 * Messages to it (parentPort), each with the switch's token: { op: 'ready' }, { op: 'mac', entries,
 * counters, size } about once a second and after a port went, { op:
 * 'lookupError', message } (once per distinct message), { op: 'failed',
 * message } when the switch cannot start (then 'stopped'), { op: 'stalled',
 * index } when a receiver is declared stalled (lossless stall bound), {
 * op: 'stopped' } after the last message for that switch; { op: 'spare' }
 * once loaded, from a thread started with no switch.
 */
import { parentPort, workerData, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';
import { native } from '../netmap/addon.js';
import { LearningBridge, type BatchLookup } from './learning-bridge.js';
import { yieldInTime } from './busy-poll.js';
import { StallWatch } from './stall-watch.js';

/** What the main thread hands the datapath thread. */
export interface DatapathInit {
  token: number;
  /** the switch's name: the thread is called dp:NAME while it forwards for it (top -H, perf) */
  name: string;
  busyPollUs: number;
  control: MessagePort;
  /** lossless stall bound (ms, by the monotonic clock) */
  stallMs: number;
  /** module (path or URL) exporting the lookup; absent: the learning bridge */
  lookupModule?: string;
  lookupExport?: string;
  macTableSize?: number;
  macAgeMs?: number;
  /** decide with the C++ learning bridge (benchmark baseline) */
  nativeBridge?: boolean;
}

/** A message from the main thread. */
export type DatapathCommand = { op: 'portRemoved'; index: number } | { op: 'stop' };

/** A message to the thread on parentPort. */
export interface DatapathServe {
  op: 'serve';
  init: DatapathInit;
}

/** Forwards for one switch until it is told to stop. */
async function serve(init: DatapathInit): Promise<void> {
  // every message names the switch (its core's token): the thread may already
  // be promised to the next switch while this one winds down
  const post = (m: Record<string, unknown>): void => parentPort!.postMessage({ ...m, token: init.token });
  const core = native.SwitchCore.attach(init.token);
  native.setThreadName(`dp:${init.name}`);
  const bridge = init.lookupModule || init.nativeBridge ? undefined : takeBridge(init);
  const lookup: BatchLookup | undefined = bridge ? bridge.lookupBatch : init.lookupModule ? await loadLookup(init) : undefined;

  // the clock is performance.now() (ms, a double): a polling round allocates
  // nothing (hrtime.bigint() allocates a BigInt per call)
  const busyMs = init.busyPollUs / 1000;
  const EXPIRE_MS = 1000;
  let nextExpire = performance.now() + EXPIRE_MS;
  const reported = new Set<string>();
  /** frames moved since the MAC table was last published (else it is unchanged but for age) */
  let movedSincePublish = true;

  function publishMac(): void {
    if (!bridge) return;
    movedSincePublish = false;
    const entries = [...bridge.table.entries()].map((e) => ({ mac: e.mac, port: e.port, ageMs: e.ageMs }));
    post({ op: 'mac', entries, counters: { ...bridge.table.counters }, size: bridge.table.size });
  }

  /** Handles pending commands; false once told to stop. */
  function commands(): boolean {
    for (;;) {
      const m = receiveMessageOnPort(init.control);
      if (!m) return true;
      const c = m.message as DatapathCommand;
      if (c.op === 'stop') return false;
      if (c.op === 'portRemoved') {
        stallWatch.clear(c.index);
        bridge?.portRemoved(c.index);
        if (init.nativeBridge) core.nativePortRemoved(c.index);
        publishMac();
      }
    }
  }

  /** receivers holding back a lossless sender */
  const stallWatch = new StallWatch(init.stallMs, (idx) => core.countHoldShortened(idx));

  /** A lossless sender waits on idx: declare the receiver stalled by the stall rule (as Switch.noteBlocked). */
  function noteBlocked(idx: number): void {
    if (idx < 0) return;
    if (!stallWatch.blocked(idx, core.stats(idx)['txFrames'] ?? 0, performance.now())) return;
    core.setStalled(idx, true);
    post({ op: 'stalled', index: idx });
  }

  function round(): number {
    try {
      return lookup ? core.round(lookup) : core.roundNative();
    } catch (e) {
      const msg = (e as Error)?.message ?? String(e);
      if (!reported.has(msg) && reported.size < 16) {
        reported.add(msg);
        post({ op: 'lookupError', message: msg });
      }
      return 1;
    }
  }

  post({ op: 'ready' });
  let last = performance.now();
  let blocked = false;
  /** the next round is the first after a doorbell woke the thread */
  let woken = false;
  for (let n = 0; ; n++) {
    const done = round();
    blocked = done < 0;
    if (blocked) {
      try {
        noteBlocked(core.blockedOn());
      } catch {
        // the port went meanwhile: nothing to account
      }
    } else if (stallWatch.size) stallWatch.unblocked(performance.now());
    const now = performance.now();
    let idle = false;
    if (woken) {
      woken = false;
      const useful = done !== 0;
      core.noteWakeup(useful);
      // a doorbell rang for nothing: sleep again at once, no busy poll
      idle = !useful;
    }
    // a blocked round that moved nothing is no progress: the busy poll runs
    // out and the thread sleeps until the receiver frees room (its kick) or
    // the hold bound (heldDueMs) instead of spinning on the held frames
    if (done > 0 || done < -1) {
      last = now;
      movedSincePublish = true;
    }
    if (now >= nextExpire) {
      if (bridge && bridge.table.size > 0) bridge.expire();
      if (movedSincePublish) publishMac();
      nextExpire = now + EXPIRE_MS;
    }
    if ((n & 63) === 0 && !commands()) break;
    if (done > 0) continue;
    // an in-line hook batching its source's kicks polls in its timed sleep
    if (!idle && now - last < busyMs && !core.hooksBatching()) {
      // nothing came: let other runnable threads (perhaps the client we wait
      // for) have the CPU rather than spin out the time slice; if one took
      // it, the CPU is contended: sleep until a kick rather than poll on
      if (yieldInTime()) continue;
    }
    if (!core.armAll(blocked)) continue;
    // backpressured frames wait for a receiver's kick; a bounded sleep guards
    // against a receiver that never asks; aging (and publishing a changed MAC
    // table) needs a turn once a second; an idle switch with nothing to age
    // sleeps until a doorbell rings
    const timed = movedSincePublish || (bridge !== undefined && bridge.table.size > 0);
    const untilExpire = timed ? Math.floor(nextExpire - now) + 1 : -1;
    let timeout = blocked ? (untilExpire < 0 ? 10 : Math.min(10, untilExpire)) : untilExpire;
    // a doorbell in backoff is listened to again when it ends, and the thread
    // looks once for what its port sent meanwhile
    const due = core.backoffDue();
    if (due >= 0) timeout = timeout < 0 ? due : Math.min(timeout, due);
    const held = blocked ? core.heldDueMs() : -1;
    if (held >= 0) timeout = timeout < 0 ? held : Math.min(timeout, held);
    const rang = core.wait(timeout);
    core.disarmAll();
    woken = rang > 0;
    if (!commands()) break;
    // busy-poll after a doorbell (traffic); after a timeout (aging) just look once
    last = rang > 0 ? performance.now() : 0;
  }
  init.control.close();
  if (bridge) keptBridge = { key: bridgeKey(init), bridge };
  // done with the core: the main thread frees it when 'stopped' arrives
  core.detach();
  post({ op: 'stopped' });
}

/**
 * The last switch's learning bridge, kept for the next switch with the same
 * table size: its 256 KiB table (default size) is reused, not allocated per
 * switch and left to a GC that an idle thread may not run for a long time.
 */
let keptBridge: { key: string; bridge: LearningBridge } | undefined;
const bridgeKey = (init: DatapathInit): string => `${init.macTableSize ?? ''}/${init.macAgeMs ?? ''}`;
function takeBridge(init: DatapathInit): LearningBridge {
  const kept = keptBridge;
  keptBridge = undefined;
  if (kept && kept.key === bridgeKey(init)) {
    kept.bridge.reset();
    return kept.bridge;
  }
  return new LearningBridge({ maxEntries: init.macTableSize, ageMs: init.macAgeMs });
}

/** The lookup a module exports (modules are imported once per thread and cached). */
async function loadLookup(init: DatapathInit): Promise<BatchLookup> {
  const spec = /^[a-z]+:/.test(init.lookupModule!) ? init.lookupModule! : pathToFileURL(init.lookupModule!).href;
  const mod = (await import(spec)) as Record<string, unknown>;
  const fn = mod[init.lookupExport ?? 'lookup'];
  if (typeof fn !== 'function') throw new Error(`${init.lookupModule} exports no function '${init.lookupExport ?? 'lookup'}' to use as the switch's lookup`);
  return fn as BatchLookup;
}

// one switch at a time. A switch that cannot start (its lookup module fails
// to load) is told so, and the thread stays usable for the next one.
let serving: Promise<void> = Promise.resolve();
function serveNext(init: DatapathInit): void {
  serving = serving
    .then(() => serve(init))
    .catch((e: unknown) => {
      init.control.close();
      parentPort!.postMessage({ op: 'failed', token: init.token, message: (e as Error)?.message ?? String(e) });
      parentPort!.postMessage({ op: 'stopped', token: init.token });
    })
    .finally(() => void native.setThreadName(SPARE_NAME));
}
/** a thread waiting for its next switch */
const SPARE_NAME = 'dp:spare';
native.setThreadName(SPARE_NAME);
const first = workerData as DatapathInit | undefined;
if (first) serveNext(first);
// a spare started ahead of need says it has loaded
else parentPort!.postMessage({ op: 'spare' });
parentPort!.on('message', (m: DatapathServe) => {
  if (m?.op === 'serve') serveNext(m.init);
});
