/**
 * A sender, receiver or idle-port holder for the switch benchmark.
 *   tx NAME SRC DST LEN MS      send LEN-byte frames SRC->DST for MS ms (DST 'bcast' floods)
 *   rx NAME IDLE_MS [MAC]       count frames until IDLE_MS without any (announcing MAC first)
 *   hold PREFIX N               open N idle ports PREFIX0..PREFIXn-1 until killed
 * Prints one JSON line. VALE_TS_SOCKET selects the switch.
 */
import { open, type Port } from '../src/index.js';

const mac = (s: string): number[] => (s === 'bcast' ? [255, 255, 255, 255, 255, 255] : Array.from({ length: 6 }, (_, i) => parseInt(s.slice(2 * i, 2 * i + 2), 16)));

async function main(): Promise<void> {
  const [mode, name, a1, a2, a3, a4] = process.argv.slice(2) as [string, string, string, string, string, string];
  if (mode === 'hold') {
    const ports: Port[] = [];
    for (let i = 0; i < Number(a1); i++) ports.push(await open(`${name}${i}`));
    process.stdout.write(JSON.stringify({ held: ports.length }) + '\n');
    // idle: keep the process (and the ports) alive until killed
    setInterval(() => undefined, 1 << 30);
    return;
  }
  const port = await open(name);
  if (mode === 'tx') {
    const [src, dst, len, ms] = [mac(a1), mac(a2), Number(a3), Number(a4)];
    const ring = port.txRings[0]!;
    for (let i = 0; i < ring.numSlots; i++) {
      const o = ring.bufOffsetOf(ring.bufIdx(i));
      ring.bytes.set(dst, o);
      ring.bytes.set(src, o + 6);
      // IEEE local experimental ethertype: a Linux bridge with br_netfilter
      // would drop a zero-filled "IPv4" frame, this one it forwards as is
      ring.bytes[o + 12] = 0x88;
      ring.bytes[o + 13] = 0xb5;
    }
    const end = Date.now() + ms;
    let sent = 0;
    while (Date.now() < end) {
      for (let k = 0; k < 64; k++) {
        let room = ring.space();
        if (room === 0) {
          await port.poll({ rx: false, tx: true, timeoutMs: 10 });
          break;
        }
        let h = ring.head;
        sent += room;
        while (room-- > 0) {
          ring.setLen(h, len);
          h = ring.next(h);
        }
        ring.head = ring.cur = h;
        ring.sync();
      }
    }
    process.stdout.write(JSON.stringify({ sent }) + '\n');
    port.close();
    return;
  }
  const idle = Number(a1);
  if (a2) {
    // announce our MAC (a2) so the switch learns where we are
    const hello = new Uint8Array(60);
    hello.fill(0xff, 0, 6);
    hello.set(mac(a2), 6);
    port.inject(hello);
    port.txsync();
  }
  let received = 0;
  let first = 0n;
  let last = 0n;
  let lastMs = Date.now();
  for (;;) {
    const ev = await port.poll({ rx: true, timeoutMs: 50 });
    if (!ev.rx) {
      if (received > 0 ? Date.now() - lastMs > idle : Date.now() - lastMs > 30_000) break;
      continue;
    }
    lastMs = Date.now();
    for (const ring of port.rxRings) {
      const n = ring.space();
      if (n === 0) continue;
      // the clock starts after the first batch, which is not counted
      if (!first) first = process.hrtime.bigint();
      else received += n;
      ring.advance(n);
      ring.sync();
    }
    last = process.hrtime.bigint();
  }
  // first/last are CLOCK_MONOTONIC ns, comparable across processes
  process.stdout.write(JSON.stringify({ received, ns: Number(last - first), first: Number(first), last: Number(last) }) + '\n');
  port.close();
}

main().catch((e: unknown) => {
  process.stderr.write(String(e instanceof Error ? e.stack : e) + '\n');
  process.exit(1);
});
