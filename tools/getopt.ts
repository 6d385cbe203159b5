/**
 * The command-line parsing shared by the tools: one getopt, one UsageError.
 *
 * Two dialects, as the C tools they mirror were built:
 * - 'posix' (pkt-gen): parsing stops at the first operand;
 * - 'gnu' (valectl, linked with glibc): operands anywhere are collected and
 *   options after them still parsed, long options (`--name`, `--name=value`,
 *   `--name value`) are recognised, and errors read as glibc's getopt words
 *   them.
 * Both: a letter followed by `:` in the option string takes a value, attached
 * (`-ifoo`) or separate (`-i foo`); valueless letters group (`-zZ`); `--` ends
 * the options; a lone `-` is an operand.
 *
 * @module
 */

/** A command line that cannot be run; the tool prints the message (and its usage) and exits 1. */
export class UsageError extends Error {
  /** The offending flag, e.g. `-l` or `--socket`, when there is one. */
  readonly flag: string | undefined;
  constructor(message: string, flag?: string) {
    super(message);
    this.name = 'UsageError';
    this.flag = flag;
  }
}

/** One option occurrence, in command-line order. */
export interface GetoptItem {
  /** the letter, or the long option's name (without `--`) */
  opt: string;
  value?: string;
  /** true for a long option */
  long?: boolean;
}

/** Result of {@link getopt}. */
export interface GetoptResult {
  opts: GetoptItem[];
  /** Operands: 'posix', from the first non-option (or after `--`); 'gnu', every non-option, in order. */
  operands: string[];
}

/** A long option: whether it takes a value, and what that value is (for the error when it is missing). */
export interface LongOption {
  arg: 'none' | 'required' | 'optional';
  /** e.g. 'the control socket path', appended to "requires an argument" */
  what?: string;
}

/** How {@link getopt} parses. */
export interface GetoptOptions {
  /** 'posix' (default) or 'gnu' (operand permutation, long options, glibc's wording) */
  dialect?: 'posix' | 'gnu';
  /** long options ('gnu' only) */
  long?: Readonly<Record<string, LongOption>>;
}

/**
 * Parse `argv` (without node and the script) against the option string
 * `spec`.
 *
 * @throws UsageError for an unknown option, a missing value, or a value given
 *   to a long option that takes none.
 */
export function getopt(argv: readonly string[], spec: string, o: GetoptOptions = {}): GetoptResult {
  const gnu = o.dialect === 'gnu';
  const takes = new Map<string, boolean>();
  for (let i = 0; i < spec.length; i++) {
    const c = spec[i]!;
    if (c === ':') continue;
    takes.set(c, spec[i + 1] === ':');
  }
  const unknown = (c: string): UsageError =>
    new UsageError(gnu ? `invalid option -- '${c}'` : `unknown option -${c} (see -h for the list of options)`, `-${c}`);
  const missing = (c: string): UsageError =>
    new UsageError(gnu ? `option requires an argument -- '${c}'` : `option -${c} requires an argument`, `-${c}`);
  const opts: GetoptItem[] = [];
  const operands: string[] = [];
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      i++;
      break;
    }
    if (gnu && a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      const inline = eq < 0 ? undefined : a.slice(eq + 1);
      const lo = o.long?.[name];
      if (!lo) throw new UsageError(`unrecognized option '${a}'`, `--${name}`);
      if (lo.arg === 'none') {
        if (inline !== undefined) throw new UsageError(`option '--${name}' takes no argument`, `--${name}`);
        opts.push({ opt: name, long: true });
      } else if (lo.arg === 'optional') {
        opts.push(inline === undefined ? { opt: name, long: true } : { opt: name, value: inline, long: true });
      } else {
        const v = inline ?? argv[++i];
        if (v === undefined || v === '') {
          throw new UsageError(`option '--${name}' requires an argument${lo.what ? ` (${lo.what})` : ''}`, `--${name}`);
        }
        opts.push({ opt: name, value: v, long: true });
      }
      continue;
    }
    if (a.length < 2 || a[0] !== '-') {
      if (!gnu) break;
      operands.push(a);
      continue;
    }
    for (let j = 1; j < a.length; j++) {
      const c = a[j]!;
      const t = c === ':' ? undefined : takes.get(c);
      if (t === undefined) throw unknown(c);
      if (!t) {
        opts.push({ opt: c });
        continue;
      }
      let value: string;
      if (j + 1 < a.length) value = a.slice(j + 1);
      else if (i + 1 < argv.length) value = argv[++i]!;
      else throw missing(c);
      opts.push({ opt: c, value });
      break;
    }
  }
  operands.push(...argv.slice(i));
  return { opts, operands };
}
