/**
 * Entry of a pkt-gen-ts worker thread (`-p N`): opens its own ring of the
 * port (`NAME-i`, NR_REG_ONE_NIC) and runs one thread body, reporting
 * through the shared counters.
 *
 * As pkt-gen's start_threads registers every thread's port before any thread
 * runs, a worker first opens its port and posts `{ opened: true }` (or
 * `{ error }`), then waits for `{ start: true }` (run) or
 * `{ start: false }` (another thread failed: close and end). Posts
 * `{ ok: true }` or `{ error }` when done.
 *
 * @module
 */
import { parentPort, workerData } from 'node:worker_threads';
import { open } from '../../src/index.js';
import { PeerGoneError, runThread, type ThreadConfig } from './threads.js';

interface WorkerInput {
  cfg: ThreadConfig;
  counters: Float64Array;
  control: Int32Array;
}

async function main(): Promise<void> {
  const { cfg, counters, control } = workerData as WorkerInput;
  const parent = parentPort!;
  const go = new Promise<boolean>((resolve) => parent.once('message', (m: { start?: boolean }) => resolve(m.start === true)));
  let port;
  try {
    port = await open(cfg.portName, cfg.openOpts);
  } catch (e) {
    // the main thread answers every worker with a start message, which ends this one
    parent.postMessage({ error: `cannot open ${cfg.portName}: ${(e as Error).message}` });
    return;
  }
  parent.postMessage({ opened: true });
  if (!(await go)) {
    port.close();
    return;
  }
  let result: { ok?: boolean; error?: string; note?: string };
  try {
    await runThread(cfg, port, { counters, control });
    result = { ok: true };
  } catch (e) {
    result = e instanceof PeerGoneError ? { ok: true, note: e.message } : { error: (e as Error).message };
  }
  // close before reporting: the main thread exits the process soon after
  port.close();
  parent.postMessage(result);
}

void main();
