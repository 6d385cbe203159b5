/**
 * The logic of `vale-ctl-ts`: netmap's `vale-ctl` / FreeBSD's `valectl`
 * (same verbs, same getopt string, same output byte for byte) over either
 *
 * - the vale-ts control socket (the userspace switch): the library's
 *   `ValeClient`, or
 * - the netmap kernel module, through `NIOCCTRL` requests on `/dev/netmap`:
 *   the library's `KernelValeControl`, when `/dev/netmap` exists and
 *   `NETMAP_BACKEND` is not `user` — the same choice `open()` makes — unless
 *   `--socket PATH` names a vale-ts explicitly.
 *
 * The tool itself is arguments (./args.ts), output (./format.ts) and the
 * mapping onto those two (./backends.ts). Everything is importable:
 * {@link runValeCtl} takes argv and returns the exit status, writing through
 * a {@link CtlIo}.
 *
 * @module
 */
import { abi } from '../../src/index.js';
import { atoi, parseCtlArgs, parseRingConfig, readPollConfig, USAGE, UsageError, type CtlArgs, type CtlVerb, type RingConfig } from './args.js';
import { chooseBackend, type CtlBackend } from './backends.js';
import { CtlError, formatInfo, formatList, formatListLine, formatNewIf, formatStats } from './format.js';

export * from './args.js';
export * from './format.js';
export * from './backends.js';

// ---------------------------------------------------------------------------
// running

/** Where output goes, and the environment consulted. */
export interface CtlIo {
  stdout(s: string): void;
  stderr(s: string): void;
  env: Readonly<Record<string, string | undefined>>;
}

/** Options of {@link runValeCtl}. */
export interface RunOptions {
  io?: CtlIo;
  /** use this backend instead of choosing one (tests) */
  backend?: CtlBackend;
}

const defaultIo: CtlIo = {
  stdout: (s) => void process.stdout.write(s),
  stderr: (s) => void process.stderr.write(s),
  env: process.env,
};

/** valectl's action words for the `failed to %s %s: %s` line. */
const ACTION: Readonly<Record<CtlVerb, string>> = {
  listAll: 'list',
  list: 'list',
  info: 'obtain info for',
  create: 'create',
  remove: 'remove',
  attach: 'attach',
  attachHost: 'attach',
  detach: 'detach',
  pollOn: 'enable polling on',
  pollOff: 'disable polling on',
  stats: 'obtain stats for',
};

function json(v: unknown): string {
  return JSON.stringify(v, null, 2) + '\n';
}

/**
 * Run vale-ctl-ts with `argv` (the arguments after the script). Returns the
 * exit status: 0 on success, 1 on a failed request or bad usage — and 1
 * after every full listing (no argument), as valectl.
 */
export async function runValeCtl(argv: readonly string[], opts: RunOptions = {}): Promise<number> {
  const io = opts.io ?? defaultIo;
  let args: CtlArgs;
  try {
    args = parseCtlArgs(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    io.stderr(`vale-ctl-ts: ${e.message}\n${USAGE}`);
    return 1;
  }
  if (args.help) {
    io.stdout(USAGE);
    return 0;
  }
  let be: CtlBackend;
  try {
    be = opts.backend ?? chooseBackend(args, io.env);
  } catch (e) {
    io.stderr(`vale-ctl-ts: ${(e as Error).message}\n`);
    return 1;
  }
  const name = args.name ?? '';
  const fail = (e: unknown): number => {
    if (!(e instanceof Error)) throw e;
    const code = (e as { code?: unknown }).code;
    const err = e instanceof CtlError ? e : new CtlError(typeof code === 'string' ? code : 'EINVAL', e.message);
    const target = args.verb === 'listAll' ? 'all' : args.verb === 'stats' ? (args.name ?? 'all switches') : name;
    io.stderr(`failed to ${ACTION[args.verb]} ${target}: ${err.message}\n`);
    return 1;
  };
  const memId = async (): Promise<number> => {
    const m = args.memId;
    if (m === undefined) return 0;
    if (/^\d/.test(m)) return atoi(m);
    if (!m.startsWith('netmap:')) throw new UsageError(`invalid format in '-m ${m}' (missing 'netmap:'?)`);
    return be.memIdOf(m.slice('netmap:'.length));
  };
  const ringConfig = (): RingConfig => {
    const c = parseRingConfig(args.config);
    for (const t of c.ignored) io.stderr(`ignored config: ${t}\n`);
    return c;
  };
  try {
    switch (args.verb) {
      case 'listAll': {
        const ports = await be.listAll();
        if (args.json) {
          io.stdout(json({ ports }));
          return 0;
        }
        for (const p of ports) io.stdout(formatListLine(p));
        // valectl's list_all returns 1 whatever it found (--json is ours: 0)
        return 1;
      }
      case 'list': {
        const l = await be.list(name);
        io.stdout(args.json ? json({ ...l, found: l.portIndex !== abi.NM_BDG_NOPORT }) : formatList(l));
        return 0;
      }
      case 'info': {
        const g = await be.info(name);
        io.stdout(args.json ? json(g) : formatInfo(g));
        return 0;
      }
      case 'create': {
        const c = ringConfig();
        const g = await be.create(name, c, await memId(), args.driver);
        if (args.json) io.stdout(json(g));
        else if (args.verbose) io.stdout(formatNewIf(g));
        return 0;
      }
      case 'remove':
        await be.remove(name);
        return 0;
      case 'attach':
      case 'attachHost': {
        const c = ringConfig();
        const idx = await be.attach(name, args.verb === 'attachHost', c, await memId(), args.backend, args.inline);
        if (args.verbose) io.stdout(`port_index: ${idx}\n`);
        return 0;
      }
      case 'detach': {
        const idx = await be.detach(name);
        if (args.verbose) io.stdout(`port_index: ${idx}\n`);
        return 0;
      }
      case 'pollOn':
      case 'pollOff': {
        // valectl complains about a missing or bad -C and still sends the request
        const { config, complaint } = readPollConfig(args.config);
        if (complaint !== undefined) io.stderr(`${complaint}\n`);
        await be.polling(name, args.verb === 'pollOn', config);
        return 0;
      }
      case 'stats': {
        const s = await be.stats(args.name);
        io.stdout(args.json ? json({ switches: s }) : formatStats(s));
        return 0;
      }
    }
  } catch (e) {
    if (e instanceof UsageError) {
      // a bad -m value: valectl says so, without the usage text
      io.stderr(`${e.message}\n`);
      return 1;
    }
    return fail(e);
  }
}
