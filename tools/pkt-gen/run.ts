/**
 * pkt-gen-ts: netmap's pkt-gen over this library's ports (vale-ts ports,
 * pipes, kernel netmap), with pkt-gen's flags, functions and output lines
 * (as pkt-gen.c of netmap 89607e1 has them). `runPktGen(argv)` is the whole
 * program; the bin (tools/pkt-gen-ts.ts) only calls it and exits with its
 * status.
 *
 * Shape, as in pkt-gen: main parses and prints the startup lines, opens the
 * port, starts the threads, then reports every -T ms until they are done and
 * prints the summary. Thread 0 runs on the main thread; with -p N the other
 * threads are worker_threads, each opening its own ring (`NAME-i`).
 *
 * Where pkt-gen-ts differs from pkt-gen, on purpose:
 * - every bad flag value is an error with a message and exit status 1;
 * - flags that cannot work on the chosen port are refused, never ignored:
 *   -I (indirect buffers), -H on userspace ports, -p > 1 on pipes (a pipe
 *   end can be opened only once, so threads cannot each register a ring),
 *   -p beyond the port's rings, tap/pcap/null ports;
 * - txseq and rxseq honour -n (pkt-gen ignores it in both; rxseq counts
 *   slots, as pkt-gen's rxseq does, so with -F it is slots there too);
 * - -z/-Z draw inside the -s/-d range when one is given (anywhere otherwise);
 * - with `-l max -l min` each frame gets its own random size (pkt-gen draws
 *   one per batch), and checksums are always kept right;
 * - -a pins each thread with sched_setaffinity (only the thread running the
 *   loop: Node's helper threads stay unpinned);
 * - ping prints one more line after pkt-gen's: `RTT percentiles: p50 p99 p99.9`;
 * - -p beyond the port's queues stops after pkt-gen's `bad nthreads` line
 *   (pkt-gen goes on and fails when the extra thread registers);
 * - a thread that fails while others run cancels them, so the run ends with
 *   status 1 rather than waiting on a receiver without -n.
 *
 * @module
 */
import { Worker } from 'node:worker_threads';
import { open, parsePortName, formatPortName, PortNameError, vnetHeader, abi, selectBackend, ValeClient, ValeControlError, type Port } from '../../src/index.js';
import type { ParsedPortName, PortConf } from '../../src/index.js';
import {
  functionKind,
  OPT,
  parsePktGenArgs,
  txRatePlan,
  unsupportedIfaceReason,
  usageText,
  UsageError,
  type PktGenOptions,
} from './options.js';
import {
  finalSummary,
  intervalPps,
  LINE,
  periodicReport,
  PpsWindow,
  rangeMessage,
  senderFrags,
  sendingEveryMessage,
  startupLines,
} from './report.js';
import { parseMac } from './net.js';
import { CTR, newCounters } from './native.js';
import { baseFrame, planTx, SetupError, sourceHwaddr } from './txplan.js';
import { D, now, PeerGoneError, runThread, threadPointer, type ThreadConfig } from './threads.js';

/** `__LINE__`s of main's own D() lines that report.ts does not list (approximate where not said). */
const MLINE = {
  C_DEPRECATED: 3117,
  /** exact, as the three below */
  BAD_NTHREADS: 3283,
  NIFP: 3301,
  TX_RING: 3306,
  RX_RING: 3311,
  SPECIAL_OPTIONS: 3322,
  VNET_GET_FAIL: 983,
  VNET_REQUIRED: 989,
  VNET_SET_FAIL: 1009,
  OUCH: 2752,
  PEER_GONE: 1782,
  PING_IPV6: 1530,
} as const;

const { NIF, RING, NR_REG_ONE_NIC, NR_REG_ONE_SW } = abi;

function fail(msg: string): number {
  process.stderr.write(`pkt-gen-ts: ${msg}\n`);
  return 1;
}

/**
 * The switch a vale-ts port would land on, when no such switch exists yet
 * (opening the port creates it: `vale:01` makes a switch named `vale`);
 * undefined when it exists, or the name is no vale-ts port, or the switch
 * cannot be asked (the open then says why).
 */
async function switchIsNew(p: ParsedPortName, socket: string | undefined): Promise<string | undefined> {
  if (!p.isVale || p.pipe || selectBackend() !== 'user') return undefined;
  const sw = p.nrName.slice(0, p.nrName.indexOf(':'));
  try {
    await new ValeClient(socket === undefined ? {} : { socket }).lookup(p.nrName);
    return undefined;
  } catch (e) {
    return e instanceof ValeControlError && e.code === 'ENOENT' ? sw : undefined;
  }
}

/**
 * A bad -i name, told in terms of what the user typed: pkt-gen prepends
 * `netmap:` to names that do not start with vale/netmap:/tap (they are
 * NICs), and the parser's position counts from that prefix.
 */
function ifaceNameProblem(o: PktGenOptions, e: PortNameError): string {
  const added = o.iface.length - o.ifaceArg.length;
  if (added <= 0 || !o.iface.endsWith(o.ifaceArg)) return e.message;
  const pos = e.position - added;
  if (pos < 0) return e.message;
  const vale = /^vale/i.test(o.ifaceArg)
    ? `; VALE port names start with lowercase 'vale' (vale0:01): '${o.ifaceArg}' was taken as a NIC name, netmap:${o.ifaceArg}`
    : `; a name not starting with vale, netmap: or tap is taken as a NIC name (netmap:${o.ifaceArg})`;
  return `invalid port name '${o.ifaceArg}': ${e.problem} at position ${pos}${vale}`;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The -C configuration as @conf: fields (0 = default, left out). */
function confOf(o: PktGenOptions): PortConf {
  const c = o.conf!;
  const conf: PortConf = {};
  if (c.txSlots) conf.txSlots = c.txSlots;
  if (c.rxSlots) conf.rxSlots = c.rxSlots;
  if (c.txRings) conf.txRings = c.txRings;
  if (c.rxRings) conf.rxRings = c.rxRings;
  return conf;
}

/**
 * The name thread i registers: with one thread the port as given; with more,
 * one ring each, as pkt-gen turns ALL_NIC into ONE_NIC (NIC_SW: NIC rings
 * first, then host rings; SW: ONE_SW).
 */
function threadPortName(p: ParsedPortName, i: number, nthreads: number, nicRings: number): string {
  if (nthreads === 1) return formatPortName(p);
  switch (p.mode) {
    case 'all_nic':
    case 'one_nic':
      return formatPortName({ ...p, mode: 'one_nic', nrMode: NR_REG_ONE_NIC, ringId: i });
    case 'sw':
    case 'one_sw':
      return formatPortName({ ...p, mode: 'one_sw', nrMode: NR_REG_ONE_SW, ringId: i });
    case 'nic_sw':
      return i < nicRings
        ? formatPortName({ ...p, mode: 'one_nic', nrMode: NR_REG_ONE_NIC, ringId: i })
        : formatPortName({ ...p, mode: 'one_sw', nrMode: NR_REG_ONE_SW, ringId: i - nicRings });
  }
}

/**
 * pkt-gen's -v dump of the registration. As pkt-gen, it walks the rings the
 * register reply counts (`nr_*_rings + nr_host_*_rings`: no placeholder host
 * ring) and prints each one's ring_ofs, `(nil)` for one this registration
 * did not bind, and the num_slots found there.
 */
function verboseLines(port: Port): void {
  const dv = new DataView(port.memory);
  const nifp = port.nifpOffset;
  const reg = port.registration;
  const nifTx = dv.getUint32(nifp + NIF.ni_tx_rings, true) + dv.getUint32(nifp + NIF.ni_host_tx_rings, true);
  D('main', MLINE.NIFP, `nifp at offset ${nifp} ntxqs ${reg.txRings} nrxqs ${reg.rxRings} memid ${reg.memId}`);
  const ringAt = (i: number): number => Number(dv.getBigInt64(nifp + NIF.ring_ofs + 8 * i, true));
  // NETMAP_TXRING(nifp, i) - nifp, printed with %p; an unbound ring's 0 reads the netmap_if itself
  const where = (ofs: number): string => (ofs === 0 ? '(nil)' : `0x${ofs.toString(16)}`);
  const slotsAt = (ofs: number): number => {
    const at = nifp + ofs + RING.num_slots;
    return at >= 0 && at + 4 <= port.memory.byteLength ? dv.getUint32(at, true) : 0;
  };
  for (let i = 0; i < reg.txRings + reg.hostTxRings; i++) {
    const ofs = ringAt(i);
    D('main', MLINE.TX_RING, `   TX${i} at offset ${where(ofs)} slots ${slotsAt(ofs)}`);
  }
  for (let i = 0; i < reg.rxRings + reg.hostRxRings; i++) {
    const ofs = ringAt(nifTx + i);
    D('main', MLINE.RX_RING, `   RX${i} at offset ${where(ofs)} slots ${slotsAt(ofs)}`);
  }
}

/** virtio-net header length on a kernel port: set it (-H) or ask the port (pkt-gen's set/get_vnet_hdr_len). */
function vnetHeaderLen(port: Port, want: number): number {
  if (want > 0) {
    try {
      vnetHeader(port, want);
    } catch {
      D('set_vnet_hdr_len', MLINE.VNET_SET_FAIL, `Unable to set virtio-net header length ${want}`);
    }
    return want;
  }
  try {
    const len = vnetHeader(port);
    if (len) D('get_vnet_hdr_len', MLINE.VNET_REQUIRED, `Port requires virtio-net header, length = ${len}`);
    return len;
  } catch {
    D('get_vnet_hdr_len', MLINE.VNET_GET_FAIL, 'Unable to get virtio-net header length');
    return 0;
  }
}

interface ThreadHandle {
  counters: Float64Array;
  /** resolves with an error message, or undefined on success */
  done: Promise<string | undefined>;
}

/** A worker thread (`-p N`, threads 1..N-1) in its two steps: open, then run. */
interface WorkerThread {
  /** resolves once the worker has registered its port: undefined, or why it could not */
  opened: Promise<string | undefined>;
  /** resolves when the worker has exited: undefined on success, else the error */
  done: Promise<string | undefined>;
  /** let it run (true) or tell it to close its port and end (false) */
  start(run: boolean): void;
}

function spawnWorker(cfg: ThreadConfig, counters: Float64Array, control: Int32Array): WorkerThread {
  const w = new Worker(new URL('./worker.js', import.meta.url), { workerData: { cfg, counters, control } });
  let openedResolve!: (e: string | undefined) => void;
  const opened = new Promise<string | undefined>((r) => (openedResolve = r));
  // settle on 'exit', once the worker has let go of everything
  const done = new Promise<string | undefined>((resolve) => {
    let result: string | undefined = 'worker ended without reporting';
    w.on('message', (m: { opened?: boolean; ok?: boolean; error?: string; note?: string }) => {
      if (m.opened) return openedResolve(undefined);
      if (m.note) D('main_thread', MLINE.PEER_GONE, m.note);
      result = m.error;
      if (m.error !== undefined) openedResolve(m.error);
    });
    w.on('error', (e) => {
      result = e.message;
      openedResolve(e.message);
    });
    w.on('exit', (code) => {
      const r = code === 0 || result !== undefined ? result : `worker exited with status ${code}`;
      openedResolve(r ?? 'worker ended before registering its port');
      resolve(r);
    });
  });
  return { opened, done, start: (run) => w.postMessage({ start: run }) };
}

function sumCounters(threads: readonly ThreadHandle[]): { pkts: number; bytes: number; events: number } {
  let pkts = 0;
  let bytes = 0;
  let events = 0;
  for (const t of threads) {
    pkts += t.counters[CTR.PKTS]!;
    bytes += t.counters[CTR.BYTES]!;
    events += t.counters[CTR.EVENTS]!;
  }
  return { pkts, bytes, events };
}

/** pkt-gen's main_thread: a report every -T ms until every thread is done. */
async function mainThread(o: PktGenOptions, threads: readonly ThreadHandle[], allDone: Promise<unknown>): Promise<void> {
  let done = false;
  void allDone.then(() => (done = true));
  const win = o.ppsStats ? new PpsWindow() : undefined;
  let prevT = now();
  let prev = { pkts: 0, bytes: 0, events: 0 };
  for (;;) {
    if (!done) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([new Promise<void>((r) => (timer = setTimeout(r, o.reportMs))), allDone]);
      clearTimeout(timer);
    }
    const t = now();
    const usec = Math.floor((t - prevT) * 1000);
    if (usec < 10000) {
      // too short to be meaningful
      if (done) break;
      continue;
    }
    const cur = sumCounters(threads);
    let minSpace = 0;
    for (const th of threads) {
      minSpace += th.counters[CTR.MIN_SPACE]!;
      th.counters[CTR.MIN_SPACE] = 99999;
    }
    const x = { pkts: cur.pkts - prev.pkts, bytes: cur.bytes - prev.bytes, events: cur.events - prev.events };
    const pps = intervalPps(x.pkts, usec);
    const line = periodicReport(
      {
        pps,
        ...(win ? { ppsAvgStd: win.push(pps) } : {}),
        pkts: x.pkts,
        bits: x.bytes * 8 + x.pkts * o.framing,
        usec,
        avgBatch: x.events > 0 ? x.pkts / x.events : 0,
        minSpace,
      },
      !o.noNormalize,
    );
    D('main_thread', LINE.MAIN_THREAD_REPORT, line);
    prev = cur;
    prevT = t;
    if (done) break;
  }
}

/**
 * Run pkt-gen-ts with `argv` (without the program name). Prints as pkt-gen
 * does and resolves with the exit status.
 */
export async function runPktGen(argv: readonly string[]): Promise<number> {
  let o: PktGenOptions;
  try {
    o = parsePktGenArgs(argv);
  } catch (e) {
    if (e instanceof UsageError) return fail(`${e.message}\nRun 'pkt-gen-ts -h' for the list of options.`);
    throw e;
  }
  if (o.help) {
    process.stderr.write(usageText());
    return 0;
  }
  D('main', LINE.MAIN_INTERFACE, `interface is ${o.ifaceArg}`);
  if (o.conf) D('main', MLINE.C_DEPRECATED, "WARNING: the 'C' option is deprecated, use the '+conf:' libnetmap option instead");
  const unsupported = unsupportedIfaceReason(o.iface);
  if (unsupported) return fail(`-i ${o.ifaceArg}: ${unsupported}`);
  if (o.indirect) {
    return fail(
      '-I: indirect buffers (NS_INDIRECT) are not supported by pkt-gen-ts: vale-ts copies each frame from the ' +
        "slot's own buffer and pipes swap buffers, so a pointer in slot.ptr would never be followed",
    );
  }
  const kind = functionKind(o.func);
  if (!o.burstGiven) D('main', LINE.MAIN_DEFAULT_BURST, `using default burst size: ${o.burst}`);
  D('main', LINE.MAIN_RUNNING_ON, `running on ${o.cpusRequested} cpus (have ${o.systemCpus})`);
  D('extract_ip_range', LINE.EXTRACT_IP_RANGE, rangeMessage(o.src));
  D('extract_ip_range', LINE.EXTRACT_IP_RANGE, rangeMessage(o.dst));

  let parsed: ParsedPortName;
  try {
    parsed = parsePortName(o.iface);
  } catch (e) {
    if (e instanceof PortNameError) return fail(`-i ${o.ifaceArg}: ${ifaceNameProblem(o, e)}`);
    throw e;
  }
  if (o.conf) {
    if (Object.keys(parsed.conf).length > 0) return fail(`-C and @conf: in ${o.ifaceArg} both give the ring configuration: use one of them`);
    parsed = { ...parsed, conf: confOf(o) };
  }
  const nthreads = o.threads;
  const forceWorkers = process.env['PKTGEN_TS_WORKERS'] === '1';
  const name0 = nthreads === 1 && !o.conf ? o.iface : threadPortName(parsed, 0, nthreads, Infinity);
  const openOpts: ThreadConfig['openOpts'] = {};
  if (o.socket !== undefined) openOpts.socket = o.socket;
  const newSwitch = await switchIsNew(parsed, o.socket);
  let port0: Port;
  try {
    port0 = await open(name0, openOpts);
  } catch (e) {
    return fail(`cannot open ${name0}: ${(e as Error).message}`);
  }
  if (newSwitch && port0.transport === 'vale-ts') {
    process.stderr.write(`pkt-gen-ts: note: ${parsed.nrName} is the first port of a new switch '${newSwitch}' (vale-ts created it; ports of other switches do not reach it)\n`);
  }
  let inlinePort: Port | undefined = port0;
  const closeAll = (): void => inlinePort?.close();
  try {
    const reg = port0.registration;
    if (nthreads > 1 && port0.transport === 'pipe') {
      return fail(
        `-p ${nthreads}: threads need a ring each, registered separately (${parsed.nrName}-0, -1, ...), and ` +
          `a pipe end can be opened only once; use -p 1 here, or a vale-ts or kernel netmap port for multi-threaded runs`,
      );
    }
    if (o.vnetHdr > 0 && port0.transport !== 'kernel') {
      return fail(
        `-H ${o.vnetHdr}: virtio-net headers exist only on kernel netmap ports; ` +
          `${port0.transport === 'pipe' ? 'pipes' : 'vale-ts ports'} carry plain Ethernet frames`,
      );
    }
    const hdrLen = port0.transport === 'kernel' ? vnetHeaderLen(port0, o.vnetHdr) : 0;
    // as pkt-gen: the register reply's counts (a VALE port's or pipe's
    // placeholder host ring is in the netmap_if, not here)
    const devqueues = kind === 'sender' ? reg.txRings + reg.hostTxRings : reg.rxRings + reg.hostRxRings;
    if (nthreads > devqueues) {
      // pkt-gen goes on and fails when thread `devqueues` registers; this stops here
      D('main', MLINE.BAD_NTHREADS, `bad nthreads ${nthreads}, have ${devqueues} queues`);
      const hint = port0.transport === 'kernel' ? '' : ` (give the port ${nthreads} rings: -i ${parsed.nrName}@conf:rings=${nthreads}, or -C)`;
      return fail(`-p ${nthreads}: ${o.iface} has only ${devqueues} ${kind === 'sender' ? 'tx' : 'rx'} rings${hint}`);
    }
    if (o.verbose > 0) verboseLines(port0);

    let srcMac = o.srcMac;
    let srcMacName = o.srcMacName;
    if (!o.srcMacGiven) {
      const hw = sourceHwaddr(o.iface);
      if (hw) {
        srcMacName = hw;
        srcMac = parseMac(hw);
      }
    }
    const plan = txRatePlan(o.rate, o.burst);
    // what the threads send
    let template: Uint8Array = new Uint8Array(0);
    let txSpec: ThreadConfig['tx'];
    let fragsLine: ThreadConfig['fragsLine'];
    try {
      if (kind === 'sender') {
        const tp = planTx(o, { bufSize: port0.bufSize, pipe: port0.parsed.pipe !== undefined, hdrLen }, srcMac);
        template = tp.template;
        txSpec = tp.spec;
        // pkt-gen's pkt_size: the frame without the virtio-net header
        fragsLine = senderFrags(tp.frameLen - hdrLen, o.frags, o.fragSize, port0.bufSize);
      } else if (o.func === 'ping') {
        if (o.af === 6) D('ping_body', MLINE.PING_IPV6, 'Warning: ping-pong with IPv6 not supported');
        const f = baseFrame(o, srcMac);
        template = new Uint8Array(hdrLen + f.length);
        template.set(f, hdrLen);
        if (template.length < hdrLen + 54) {
          throw new SetupError(`-l ${o.pktSize}: ping carries a sequence number and a timestamp at bytes 42..53, so frames need at least 54 bytes`);
        }
        if (template.length > port0.bufSize) throw new SetupError(`-l ${o.pktSize}: frames do not fit the port's ${port0.bufSize}-byte buffers`);
      }
    } catch (e) {
      if (e instanceof SetupError || e instanceof RangeError) return fail(e.message);
      throw e;
    }
    if (txSpec && txSpec.frags > 1) {
      const slots = port0.txRings[0]?.numSlots ?? 0;
      if (txSpec.frags >= slots) return fail(`-F ${o.frags}: a frame of ${txSpec.frags} slots does not fit a ${slots}-slot tx ring`);
      if (txSpec.fragGroup && (plan.burst < txSpec.frags || o.count % txSpec.frags !== 0)) {
        return fail(
          `-F ${txSpec.frags}: txseq sends ${txSpec.frags} slots per packet, so the burst (${plan.burst}) must be at least ` +
            `${txSpec.frags} and -n (${o.count}) a multiple of it`,
        );
      }
    }

    for (const line of startupLines({
      func: o.func,
      iface: o.iface,
      queues: devqueues,
      threads: nthreads,
      cpus: o.cpus,
      srcName: o.src.name,
      dstName: o.dst.name,
      srcMacName,
      dstMacName: o.dstMacName,
    })) {
      process.stdout.write(line + '\n');
    }
    if (o.optionMask) {
      const m = o.optionMask;
      const flags =
        (m & OPT.PREFETCH ? ' prefetch' : '') +
        (m & OPT.ACCESS ? ' access' : '') +
        (m & OPT.MEMCPY ? ' memcpy' : '') +
        (m & OPT.INDIRECT ? ' indirect' : '') +
        (m & OPT.COPY ? ' copy' : '') +
        (m & OPT.RUBBISH ? ' rubbish ' : '');
      D('main', MLINE.SPECIAL_OPTIONS, `--- SPECIAL OPTIONS:${flags}\n`);
    }
    if (kind === 'sender') D('main', LINE.MAIN_SENDING_EVERY, sendingEveryMessage(plan.burst, plan.periodNs));

    const control = new Int32Array(new SharedArrayBuffer(4));
    const onSigint = (): void => {
      D('sigint_h', LINE.SIGINT_H, `received control-C on thread ${threadPointer(0)}`);
      Atomics.store(control, 0, 1);
    };
    process.on('SIGINT', onSigint);
    try {
      const mainFd = port0.fd;
      const cfgFor = (i: number): ThreadConfig => {
        const cfg: ThreadConfig = {
          index: i,
          nthreads,
          func: o.func,
          portName: i === 0 ? name0 : threadPortName(parsed, i, nthreads, kind === 'receiver' ? reg.rxRings : reg.txRings),
          iface: o.iface,
          mainFd,
          count: Math.floor(o.count / nthreads),
          burst: plan.burst,
          rate: o.rate,
          periodNs: plan.periodNs,
          forever: !o.rxExitAfterIdle,
          dump: o.dump,
          cpu: o.affinity >= 0 ? (o.affinity + i) % o.cpus : -1,
          template,
          hdrLen,
          openOpts,
        };
        if (txSpec) cfg.tx = { ...txSpec, seed: (txSpec.seed + i * 0x9e3779b1) >>> 0 || 1 };
        if (fragsLine) cfg.fragsLine = fragsLine;
        return cfg;
      };
      if (forceWorkers) {
        port0.close();
        inlinePort = undefined;
      }
      const counters = Array.from({ length: nthreads }, () => newCounters());
      // pkt-gen's start_threads: every thread's port is registered before any
      // thread runs, and one that cannot be ends the program with status 1
      const workers = new Map<number, WorkerThread>();
      for (let i = 0; i < nthreads; i++) {
        if (i === 0 && inlinePort) continue;
        workers.set(i, spawnWorker(cfgFor(i), counters[i]!, control));
      }
      const opened = await Promise.all([...workers].map(async ([i, w]) => ({ i, error: await w.opened })));
      const failed = opened.filter((r) => r.error !== undefined);
      if (failed.length > 0) {
        for (const w of workers.values()) w.start(false);
        await Promise.all([...workers.values()].map((w) => w.done));
        for (const f of failed) process.stderr.write(`pkt-gen-ts: thread ${f.i}: ${f.error}\n`);
        return 1;
      }

      D('start_threads', LINE.START_THREADS_WAIT, `Wait ${o.waitLink} secs for phy reset`);
      if (o.waitLink > 0) {
        const end = Date.now() + o.waitLink * 1000;
        while (Date.now() < end && Atomics.load(control, 0) === 0) await sleep(Math.min(100, end - Date.now()));
      }
      D('start_threads', LINE.START_THREADS_READY, 'Ready...');

      const threads: ThreadHandle[] = [];
      for (let i = 0; i < nthreads; i++) {
        const ctr = counters[i]!;
        let done: Promise<string | undefined>;
        const w = workers.get(i);
        if (w) {
          w.start(true);
          done = w.done;
        } else {
          done = runThread(cfgFor(i), inlinePort!, { counters: ctr, control }).then(
            () => undefined,
            (e: unknown) => {
              if (e instanceof PeerGoneError) {
                D('main_thread', MLINE.PEER_GONE, e.message);
                ctr[CTR.COMPLETED] = 1;
                return undefined;
              }
              return e instanceof Error ? e.message : String(e);
            },
          );
        }
        // a thread that fails ends the run: the others are cancelled rather
        // than left running (a receiver without -n would never stop)
        done = done.then((err) => {
          if (err !== undefined) Atomics.store(control, 0, 1);
          return err;
        });
        threads.push({ counters: ctr, done });
      }
      const results = Promise.all(threads.map((t) => t.done));
      await mainThread(o, threads, results);
      const errors = await results;
      let status = 0;
      errors.forEach((err, i) => {
        if (err === undefined) return;
        status = 1;
        process.stderr.write(`pkt-gen-ts: thread ${i}: ${err}\n`);
        D('main_thread', MLINE.OUCH, `ouch, thread ${i} exited with error`);
      });
      if (kind !== 'other') {
        const tot = sumCounters(threads);
        let tic = 0;
        let toc = 0;
        for (const t of threads) {
          tic = Math.max(tic, t.counters[CTR.TIC]!);
          toc = Math.max(toc, t.counters[CTR.TOC]!);
        }
        const seconds = Math.max(0, Math.round((toc - tic) * 1000)) / 1e6;
        const lines = finalSummary(
          { kind: kind === 'sender' ? 'Sent' : 'Received', pkts: tot.pkts, bytes: tot.bytes, events: tot.events, seconds, framingBits: o.framing },
          !o.noNormalize,
        );
        process.stdout.write(lines.join('\n') + '\n');
      }
      return status;
    } finally {
      process.off('SIGINT', onSigint);
    }
  } finally {
    closeAll();
  }
}
