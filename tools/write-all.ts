/**
 * Blocking writes to a descriptor that may be non-blocking, for the tools'
 * last words before an exit.
 *
 * @module
 */
import { writeSync } from 'node:fs';
import { native } from '../src/netmap/addon.js';

/** native.waitFd's event bit for "writable" */
const WRITABLE = 2;

/**
 * Writes all of `s` to `fd` before returning, as a blocking descriptor would.
 * fd 1 and 2 may be non-blocking: node opens a stdout pipe so, and
 * `2>&1 | reader` makes fd 2 that same pipe; when a lagging reader left it
 * full, a write fails with EAGAIN (or is cut short): wait in poll(2) for room
 * and go on. Queued stream writes would be dropped by the process.exit that
 * follows.
 */
export function writeAllSync(fd: number, s: string): void {
  const b = Buffer.from(s);
  for (let off = 0; off < b.length; ) {
    try {
      off += writeSync(fd, b, off);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EAGAIN') throw e;
      native.waitFd(fd, WRITABLE, -1);
    }
  }
}
