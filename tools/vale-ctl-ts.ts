#!/usr/bin/env node
/**
 * vale-ctl-ts: netmap's vale-ctl (FreeBSD's valectl) for the vale-ts
 * userspace switch — same options, same output — plus `--stats` and
 * `--json`. Talks to the netmap kernel module instead where `/dev/netmap`
 * exists and NETMAP_BACKEND is not `user` (see ./vale-ctl.ts for the
 * details and the one limit of that path).
 *
 * `vale-ctl-ts --capture vale0:01 -w -` writes pcapng of a port's traffic
 * (./vale-ctl/capture.ts).
 *
 * `vale-ctl-ts --preload-path` prints where the preload library is, for
 * `LD_PRELOAD=$(vale-ctl-ts --preload-path) pkt-gen -i vale0:1 ...`.
 *
 * @module
 */
import { runValeCtl } from './vale-ctl/vale-ctl.js';
import { preloadLibraryPath } from '../src/preload.js';
import { writeAllSync } from './write-all.js';
import { runCapture } from './vale-ctl/capture.js';

const writeStderr = (s: string): void => writeAllSync(2, s);

const argv = process.argv.slice(2);
if (argv.length === 1 && argv[0] === '--preload-path') {
  try {
    process.stdout.write(preloadLibraryPath() + '\n');
    process.exitCode = 0;
  } catch (e) {
    process.stderr.write(`vale-ctl-ts: ${(e as Error).message}\n`);
    process.exitCode = 1;
  }
} else if (argv.some((a) => a === '--capture' || a.startsWith('--capture='))) {
  // capture mode has options of its own (-w, -c, --filter): see ./vale-ctl/capture.ts
  const ac = new AbortController();
  process.once('SIGINT', () => ac.abort());
  process.once('SIGTERM', () => ac.abort());
  // a reader that goes away (tcpdump -c N exits: EPIPE) ends the capture
  // quietly; any other write error (a full disk under `> file`) is the
  // capture failing: the frames counted as written never got anywhere
  let outFailed = false;
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE' && !outFailed) {
      outFailed = true;
      writeStderr(`vale-ctl-ts: writing pcapng to stdout failed: ${e.message}\n`);
      process.exitCode = 1;
    }
    ac.abort();
  });
  // stderr written at once (as tcpdump's): its last line, the count, is
  // written just before a stop that may not wait for pending writes
  const code = await runCapture(argv, { stderr: writeStderr, stdout: process.stdout, signal: ac.signal });
  process.exitCode = outFailed ? 1 : code;
  // stopped (Ctrl-C, SIGTERM, a reader gone), during the capture or after
  // it ended with output pending (-c COUNT reached, a reader that stopped
  // reading): what that reader never took is not waited for (stdout cannot
  // be closed, and its pending writes, or a FIFO's write blocked in libuv's
  // thread pool, would hold the process until a second signal)
  const leave = (): never => process.exit();
  if (ac.signal.aborted) leave();
  else ac.signal.addEventListener('abort', leave, { once: true });
} else {
  process.exitCode = await runValeCtl(argv);
}
