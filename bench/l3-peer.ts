/**
 * Sender and receiver of bench/l3.bench.ts: IPv4/UDP frames (a valid header
 * checksum, TTL 64) from 10.1.0.2 to 10.2.0.2, so a router forwards them.
 *   tx NAME SRCMAC DSTMAC LEN MS   send for MS ms; prints {"sent":N}
 *   rx NAME MAC IDLE_MS [GW]       announce MAC with an ARP request for GW (default 10.2.0.1) and
 *                                  answer ARP for 10.2.0.2; 'ready' on stderr once the gateway answered
 *                                  (or, without a router, once the announcement is taken); count IPv4
 *                                  frames (ttl histogram) until IDLE_MS without any, timed from the
 *                                  first batch (not counted)
 * MACs as 12 hex digits; the socket from VALE_TS_SOCKET.
 */
import { open, type Port } from '../src/index.js';

const mac = (s: string): number[] => Array.from({ length: 6 }, (_, i) => parseInt(s.slice(2 * i, 2 * i + 2), 16));
const SRC_IP = [10, 1, 0, 2];
const DST_IP = [10, 2, 0, 2];

function csum(b: Uint8Array, o: number, n: number): number {
  let s = 0;
  for (let i = 0; i < n; i += 2) s += (b[o + i]! << 8) | b[o + i + 1]!;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

function udpFrame(src: number[], dst: number[], len: number): Uint8Array {
  const f = new Uint8Array(len);
  f.set(dst, 0);
  f.set(src, 6);
  f.set([0x08, 0x00, 0x45, 0, (len - 14) >> 8, (len - 14) & 0xff, 0, 0, 0x40, 0, 64, 17, 0, 0, ...SRC_IP, ...DST_IP], 12);
  const c = csum(f, 14, 20);
  f[24] = c >> 8;
  f[25] = c & 0xff;
  f.set([0x13, 0x88, 0x13, 0x89, (len - 34) >> 8, (len - 34) & 0xff, 0, 0], 34); // UDP 5000 -> 5001, no checksum
  return f;
}

function arp(op: number, sha: number[], spa: number[], tha: number[], tpa: number[], dst: number[]): Uint8Array {
  return Uint8Array.from([...dst, ...sha, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, op, ...sha, ...spa, ...tha, ...tpa, ...new Array(18).fill(0)]);
}

async function tx(port: Port, src: string, dst: string, len: number, ms: number): Promise<void> {
  const ring = port.txRings[0]!;
  const f = udpFrame(mac(src), mac(dst), len);
  for (let i = 0; i < ring.numSlots; i++) ring.bytes.set(f, ring.bufOffsetOf(ring.bufIdx(i)));
  const until = Date.now() + ms;
  let sent = 0;
  while (Date.now() < until) {
    for (let k = 0; k < 64; k++) {
      let room = ring.space();
      if (room === 0) {
        const ev = await port.poll({ rx: false, tx: true, timeoutMs: 10 });
        if (ev.hup) throw new Error('the switch went away');
        break;
      }
      sent += room;
      let h = ring.head;
      while (room-- > 0) {
        ring.setLen(h, len);
        h = ring.next(h);
      }
      ring.head = ring.cur = h;
      ring.sync();
    }
  }
  process.stdout.write(JSON.stringify({ sent }) + '\n');
}

async function rx(port: Port, me: string, idle: number, gw: number[]): Promise<void> {
  const m = mac(me);
  const bcast = [255, 255, 255, 255, 255, 255];
  port.inject(arp(1, m, DST_IP, [0, 0, 0, 0, 0, 0], gw, bcast));
  await port.flush();
  const withRouter = gw.length === 4 && process.env['L3_ROUTER'] === '1';
  if (!withRouter) process.stderr.write('ready\n');
  let received = 0;
  let first = 0n;
  let last = 0n;
  let lastMs = Date.now();
  const ttl: Record<number, number> = {};
  for (;;) {
    const ev = await port.poll({ rx: true, timeoutMs: 50 });
    if (!ev.rx) {
      if (received > 0 ? Date.now() - lastMs > idle : Date.now() - lastMs > 60_000) break;
      continue;
    }
    lastMs = Date.now();
    let n = 0;
    const r = port.rxRings[0]!;
    const b = r.bytes;
    while (!r.empty()) {
      const o = r.bufOffset(r.head);
      if (b[o + 12] === 0x08 && b[o + 13] === 0x06) {
        // ARP: the gateway's reply means we are known; a request for us is answered
        const op = b[o + 21];
        if (op === 2) process.stderr.write('ready\n');
        else if (op === 1 && b[o + 38] === 10 && b[o + 39] === 2 && b[o + 40] === 0 && b[o + 41] === 2) {
          const sha = [...b.subarray(o + 22, o + 28)];
          port.inject(arp(2, m, DST_IP, sha, [...b.subarray(o + 28, o + 32)], sha));
        }
      } else if (b[o + 12] === 0x08 && b[o + 13] === 0x00) {
        n++;
        const t = b[o + 22]!;
        ttl[t] = (ttl[t] ?? 0) + 1;
      }
      r.advance(1);
    }
    port.txsync();
    if (n) {
      if (!first) first = process.hrtime.bigint();
      else received += n;
      last = process.hrtime.bigint();
    }
    r.sync();
  }
  process.stdout.write(JSON.stringify({ received, ns: Number(last - first), first: Number(first), last: Number(last), ttl63: ttl[63] ?? 0, ttl64: ttl[64] ?? 0 }) + '\n');
}

const [mode, name, a1, a2, a3, a4] = process.argv.slice(2) as [string, string, string, string, string, string | undefined];
const port = await open(name);
if (mode === 'tx') await tx(port, a1, a2, Number(a3), Number(a4));
else if (mode === 'rx') await rx(port, a1, Number(a2), (a3 ?? '10.2.0.1').split('.').map(Number));
else throw new Error(`l3-peer: unknown mode ${mode} (tx or rx)`);
port.close();
