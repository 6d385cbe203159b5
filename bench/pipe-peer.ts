/**
 * One side of the pipe benchmark, in its own process.
 *   node pipe-peer.js ts|cpp tx|rx NAME COUNT LEN BATCH
 * ts: the loop below, through the public Ring API (ring.sync() included).
 * cpp: the same work in C++ (the tools addon's pipeBenchLoop, which opens
 * the pipe end itself).
 * Prints {frames, errors, ns} as JSON.
 */
import { open } from '../src/netmap/open.js';
import { pipePath } from '../src/backends/pipe.js';
import { parsePortName } from '../src/netmap/name.js';
import { pipeBench } from '../tools/addon.js';
import type { PipeBackend } from '../src/backends/pipe.js';

async function main(): Promise<void> {
  const [impl, role, name, countS, lenS, batchS] = process.argv.slice(2) as [string, 'tx' | 'rx', string, string, string, string];
  const count = Number(countS);
  const len = Number(lenS);
  const batch = Number(batchS);
  if (impl === 'cpp') {
    const p = parsePortName(name);
    const r = pipeBench.pipeBenchLoop(pipePath(p), p.pipe?.role === 'master' ? 0 : 1, { slots: 1024 }, p.nrName, role, count, len, batch);
    process.stdout.write(JSON.stringify(r) + '\n');
    return;
  }
  const port = await open(name, { slots: 1024 });
  // wait for the peer, so both loops time the same traffic
  while (!port.hungUp && (port.backendObject as PipeBackend).peer() !== 'open') await new Promise((r) => setTimeout(r, 5));
  const t0 = process.hrtime.bigint();
  let done = 0;
  let errors = 0;
  if (role === 'tx') {
    const ring = port.txRings[0]!;
    const dv = new DataView(ring.bytes.buffer);
    while (done < count) {
      let room = ring.space();
      if (room > batch) room = batch;
      if (room > count - done) room = count - done;
      let h = ring.head;
      for (let i = 0; i < room; i++) {
        dv.setUint32(ring.bufOffset(h), done + i, true);
        ring.setLen(h, len);
        h = ring.next(h);
      }
      ring.head = ring.cur = h;
      done += room;
      ring.sync();
    }
    while (ring.next(ring.tail) !== ring.head) ring.sync();
  } else {
    const ring = port.rxRings[0]!;
    const dv = new DataView(ring.bytes.buffer);
    while (done < count) {
      ring.sync();
      let h = ring.head;
      const t = ring.tail;
      while (h !== t) {
        if (dv.getUint32(ring.bufOffset(h), true) !== (done >>> 0) || ring.len(h) !== len) errors++;
        done++;
        h = ring.next(h);
      }
      ring.head = ring.cur = h;
    }
    ring.sync();
  }
  const ns = Number(process.hrtime.bigint() - t0);
  process.stdout.write(JSON.stringify({ frames: done, errors, ns }) + '\n');
  port.close();
}

main().catch((e: unknown) => {
  process.stderr.write(String(e instanceof Error ? e.stack : e) + '\n');
  process.exit(1);
});
