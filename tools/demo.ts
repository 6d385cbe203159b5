#!/usr/bin/env node
/**
 * `npm start`: vale-ts with a live demonstration. A switch runs in this
 * process; pkt-gen-ts floods vale0:tx and receives on vale0:rx as two child
 * processes; one compact view, refreshed every second, shows what moved:
 * in place on a terminal, one plain line per second when piped. Ctrl-C, a
 * closed pipe (`npm start | head`) or `--duration` stop it, and it leaves
 * nothing behind (its socket lives in a private temporary directory).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ValeServer, prestartDatapathThread, type SwitchStats } from '../src/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const pktgen = path.join(here, 'pkt-gen-ts.js');

const USAGE = `Usage: npm start -- [options]     (or: node dist/tools/demo.js [options])

A vale-ts switch in this process, pkt-gen-ts flooding vale0:tx -> vale0:rx,
and a live view of what the switch did with the frames.

  --duration SECS   stop after SECS seconds (default: until Ctrl-C)
  --len BYTES       frame length the sender uses (default 60)
  --socket PATH     control socket (default: a private temporary directory,
                    removed on exit); other tools reach the switch with
                    --socket PATH or VALE_TS_SOCKET=PATH
  --verbose         also show pkt-gen-ts's own output, prefixed [tx]/[rx]
  --help            this text
`;

/** Every drop reason the switch counts, in a few words, and why it happens (one line each). */
const DROP_REASONS: readonly (readonly [key: string, label: string, why: string])[] = [
  ['dropNoSpace', 'rx ring full', 'receiver slower than sender: normal here'],
  ['dropStalled', 'stalled', 'lossless receiver stuck for --stall-ms'],
  ['dropClosed', 'port closed', 'left in a tx ring when its port closed'],
  ['dropInvalid', 'bad slot', 'slot with a bad buffer index or length'],
  ['dropRunt', 'runt', 'shorter than an Ethernet header (14 B)'],
  ['dropOversize', 'oversize', "frame larger than the receiver's buffers"],
  ['dropSamePort', 'same port', 'destination was the source port'],
  ['dropLookup', 'lookup', 'the lookup function said drop'],
  ['dropNoPort', 'no port', 'destination port does not exist'],
  ['dropFrag', 'fragments', 'NS_MOREFRAG chain longer than 64 slots'],
];

/** 1234567 -> '1.23 M', aligned in 8 columns. */
function count(n: number): string {
  const s = n >= 1e9 ? `${(n / 1e9).toFixed(2)} G` : n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : n >= 1e4 ? `${(n / 1e3).toFixed(1)} k` : `${Math.round(n)}  `;
  return s.padStart(8);
}

/**
 * Printed when the demo ends as asked (Ctrl-C, --duration): where a newcomer goes next, the
 * same run with the switch as a process of its own. The README's section holds these commands
 * (test/integration/tools-reach.test.ts checks it).
 */
const NEXT_STEPS = `Next: the same with vale-ts as a process of its own (README "Running the switch yourself"):
  npx vale-ts                                   # listens on /run/vale-ts/vale-ts.sock (root) or $XDG_RUNTIME_DIR/vale-ts.sock
  npx pkt-gen-ts -i vale0:02 -f rx              # in another terminal
  npx pkt-gen-ts -i vale0:01 -f tx -l 60        # and another
  npx vale-ctl-ts --stats                       # counters, drop reasons, MAC table
`;

/** What pkt-gen-ts's sender has reported so far (`-N`: plain numbers). */
interface SenderReport {
  total: number;
}

/** `main_thread [2781] 320383 pps (321833 pkts 153783814 bps in 1004526 usec) ...` */
const REPORT = /main_thread \[\d+\] ([\d.]+) pps \(([\d.]+) pkts /;

interface Row {
  label: string;
  rate: number;
  total: number;
  note: string;
}

/** The view: rows of label, per second, total, explanation; each line at most 80 columns. */
function render(elapsed: number, rows: readonly Row[], mac: number): string[] {
  const head = `vale-ts demo  vale0:tx -> switch vale0 -> vale0:rx`;
  const lines = [`${head}${`${elapsed}s`.padStart(80 - head.length - 1)}`];
  lines.push(`${''.padEnd(18)}${'per s'.padStart(8)}  ${'total'.padStart(8)}`);
  for (const r of rows) lines.push(`${r.label.padEnd(18)}${count(r.rate)}  ${count(r.total)}  ${r.note}`.slice(0, 80).trimEnd());
  lines.push(`${'MAC table'.padEnd(18)}${String(mac).padStart(6)}    entries (source MACs learned)`);
  return lines;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      duration: { type: 'string' },
      socket: { type: 'string' },
      len: { type: 'string' },
      verbose: { type: 'boolean', short: 'v' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const duration = values.duration ? Number(values.duration) : Infinity;
  if (!(duration > 0)) throw new Error(`--duration ${values.duration}: expected seconds > 0`);
  const len = values.len ?? '60';
  if (!/^\d+$/.test(len)) throw new Error(`--len ${len}: expected a frame length in bytes (e.g. 60)`);
  const out = process.stdout;
  const tty = out.isTTY === true;
  const ownDir = values.socket ? undefined : mkdtempSync(path.join(os.tmpdir(), 'vale-ts-demo-'));
  const socket = values.socket ?? path.join(ownDir!, 'vale-ts.sock');
  const removeOwnDir = (): void => {
    if (ownDir) rmSync(ownDir, { recursive: true, force: true });
  };
  let server: ValeServer;
  try {
    // forwarding as vale-ts does by default: each switch on a datapath thread of its own
    await prestartDatapathThread();
    server = await ValeServer.listen({ socket, switchOptions: { datapath: 'thread' } });
  } catch (e) {
    removeOwnDir();
    throw e;
  }

  let stopping = false;
  const children: ChildProcess[] = [];
  let tick: NodeJS.Timeout | undefined;
  /** Stop the senders, the switch, remove the socket; exit 0 (1 if something failed); `next`: then say where to go on. */
  const stop = (why: string | undefined, status = 0, next = false): void => {
    if (stopping) return;
    stopping = true;
    clearInterval(tick);
    if (why) process.stderr.write(`vale-ts demo: ${why}, stopping\n`);
    for (const c of children) if (c.exitCode === null) c.kill('SIGINT');
    const exited = children.map((c) => new Promise<void>((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r()))));
    const grace = setTimeout(() => {
      for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    }, 3000);
    void Promise.all(exited).then(() => {
      clearTimeout(grace);
      server.close('demo finished');
      removeOwnDir();
      // last, below whatever the senders printed as they stopped
      if (next) process.stderr.write(NEXT_STEPS);
      process.exit(status);
    });
  };
  // a closed pipe (`npm start | head`) ends the demo quietly
  out.on('error', (e: NodeJS.ErrnoException) => stop(e.code === 'EPIPE' ? undefined : `stdout: ${e.message}`));
  process.on('SIGINT', () => stop('Ctrl-C', 0, true));
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGHUP', () => stop('terminal closed'));

  const write = (s: string): void => {
    if (!stopping && out.writable) out.write(s);
  };
  write(`vale-ts demo: switch on ${server.socketPath}; Ctrl-C stops\n`);
  write(`  pkt-gen-ts -i vale0:tx -f tx -l ${len}  ->  pkt-gen-ts -i vale0:rx -f rx\n`);
  if (!values.verbose) write(`  (--verbose adds pkt-gen-ts's own output)\n`);

  const env = { ...process.env, VALE_TS_SOCKET: socket };
  const sender: SenderReport = { total: 0 };
  const child = (args: string[], tag: 'tx' | 'rx'): void => {
    // a process group of its own: a terminal's Ctrl-C reaches the demo only, which stops the
    // senders itself (were they to see it first, their exit would read as a failure)
    const c = spawn(process.execPath, [pktgen, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let partial = '';
    const relay = (d: Buffer): void => {
      const text = partial + d.toString();
      const lines = text.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        const m = tag === 'tx' ? REPORT.exec(line) : null;
        if (m) sender.total += Number(m[2]);
        if (values.verbose && line.trim()) write(`[${tag}] ${line}\n`);
      }
    };
    c.stdout!.on('data', relay);
    c.stderr!.on('data', relay);
    c.on('exit', (code, sig) => {
      if (!stopping) stop(`pkt-gen-ts -f ${tag} ended (${sig ?? `status ${code}`})`, 1);
    });
    children.push(c);
  };
  child(['-i', 'vale0:rx', '-f', 'rx', '-N'], 'rx');
  // the receiver must be on the switch before the sender floods
  await new Promise<void>((resolve) => {
    const check = (): void => {
      if (stopping || server.switch('vale0')?.port('vale0:rx')?.attached) resolve();
      else setTimeout(check, 20);
    };
    check();
  });
  if (stopping) return;
  // reports every 200 ms, so its count is at most that far behind the switch's
  child(['-i', 'vale0:tx', '-f', 'tx', '-l', len, '-N', '-T', '200'], 'tx');

  let last: SwitchStats['totals'] = {};
  let t0 = Date.now();
  const started = Date.now();
  let drawn = 0;
  let lastSent = 0;
  const explained = new Set<string>();
  tick = setInterval(() => {
    const now = Date.now();
    const dt = (now - t0) / 1000;
    t0 = now;
    const sw = server.switch('vale0')?.stats();
    // one snapshot of the switch for every switch row: same window, so they add up
    const tot = sw?.totals ?? {};
    const per = (k: string): number => ((tot[k] ?? 0) - (last[k] ?? 0)) / dt;
    const drops = DROP_REASONS.map(([k, label, why]) => ({ k, label, why, total: tot[k] ?? 0, rate: per(k) }));
    const dropped = drops.reduce((s, d) => s + d.total, 0);
    const sent = (sender.total - lastSent) / dt;
    lastSent = sender.total;
    const took = per('rxFrames');
    const delivered = per('txFrames');
    last = { ...tot };
    const rows: Row[] = [
      { label: 'sender', rate: sent, total: sender.total, note: "pkt-gen-ts's count (<= 0.2 s old)" },
      { label: 'switch took', rate: took, total: tot['rxFrames'] ?? 0, note: 'frames taken from tx rings' },
      { label: 'delivered', rate: delivered, total: tot['txFrames'] ?? 0, note: 'into the receiver' + "'s rx ring" },
      { label: 'dropped', rate: drops.reduce((s, d) => s + d.rate, 0), total: dropped, note: dropped ? 'by reason:' : 'none' },
    ];
    for (const d of drops) if (d.total > 0) rows.push({ label: `  ${d.label}`, rate: d.rate, total: d.total, note: d.why });
    const elapsed = Math.round((now - started) / 1000);
    const mac = sw?.macTableTotal ?? 0;
    if (tty) {
      const lines = render(elapsed, rows, mac);
      // redraw in place: back to the first line of the last view, rewrite, clear what is left
      let s = drawn > 0 ? `\x1b[${drawn}F` : '';
      for (const l of lines) s += `\x1b[2K${l}\n`;
      s += '\x1b[J';
      drawn = lines.length;
      write(s);
    } else {
      const c = (n: number): string => count(n).trim().replace(' ', '');
      write(
        `${String(elapsed).padStart(4)}s  sent ${c(sent)}/s  switched ${c(took)}/s  ` +
          `delivered ${c(delivered)}/s  dropped ${c(rows[3]!.rate)}/s  mac ${mac}\n`,
      );
      // each drop reason explained once, when it first shows up
      for (const d of drops) {
        if (d.total > 0 && !explained.has(d.k)) {
          explained.add(d.k);
          write(`      dropped = ${d.label}: ${d.why}\n`);
        }
      }
    }
    if (now - started >= duration * 1000) stop('duration reached', 0, true);
  }, 1000);
}

main().catch((e: unknown) => {
  process.stderr.write(`vale-ts demo: ${(e as Error).message}\n`);
  process.exit(1);
});
