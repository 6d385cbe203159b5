/**
 * The vale-ts configuration file: JSON with `//` and `/* *\/` comments and
 * trailing commas allowed, parsed with the line and column of every value so
 * that each error names where it is. Reading and checking only; applying a
 * configuration to a running server is src/vale/config.ts.
 */

/** Where a value starts in the file (1-based). */
export interface Pos {
  line: number;
  col: number;
}

/** A parsed JSON value with positions. */
export type Node =
  | { kind: 'object'; pos: Pos; entries: Map<string, { keyPos: Pos; value: Node }> }
  | { kind: 'array'; pos: Pos; items: Node[] }
  | { kind: 'string'; pos: Pos; value: string }
  | { kind: 'number'; pos: Pos; value: number }
  | { kind: 'boolean'; pos: Pos; value: boolean }
  | { kind: 'null'; pos: Pos };

/** A problem in a configuration file, at a line and column. */
export class ConfigError extends Error {
  constructor(
    /** where in the file (line and column, 1-based) */
    readonly pos: Pos,
    /** what is wrong there, without the position */
    readonly problem: string,
  ) {
    super(`${pos.line}:${pos.col}: ${problem}`);
    this.name = 'ConfigError';
  }
}

/** Deepest nesting of objects and lists a configuration file may have. */
const MAX_DEPTH = 64;

/** Parse JSON with comments and trailing commas; a syntax error is thrown as a {@link ConfigError} at its position. */
export function parseJsonc(text: string): Node {
  let i = 0;
  let line = 1;
  let lineStart = 0;
  const pos = (): Pos => ({ line, col: i - lineStart + 1 });
  const fail = (msg: string, at: Pos = pos()): never => {
    throw new ConfigError(at, msg);
  };
  const skip = (): void => {
    for (;;) {
      const c = text[i];
      if (c === '\n') {
        i++;
        line++;
        lineStart = i;
      } else if (c === ' ' || c === '\t' || c === '\r') i++;
      else if (c === '/' && text[i + 1] === '/') {
        while (i < text.length && text[i] !== '\n') i++;
      } else if (c === '/' && text[i + 1] === '*') {
        const start = pos();
        i += 2;
        for (;;) {
          if (i >= text.length) fail('comment not closed (a /* needs its */)', start);
          if (text[i] === '*' && text[i + 1] === '/') {
            i += 2;
            break;
          }
          if (text[i] === '\n') {
            line++;
            lineStart = i + 1;
          }
          i++;
        }
      } else return;
    }
  };
  const describe = (): string => (i >= text.length ? 'the end of the file' : `'${text[i]}'`);
  const str = (): string => {
    const start = pos();
    i++;
    let out = '';
    for (;;) {
      const c = text[i];
      if (c === undefined || c === '\n') fail('string not closed on its line (missing ")', start);
      if (c === '"') {
        i++;
        return out;
      }
      if (c === '\\') {
        const e = text[i + 1];
        const map: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
        if (e !== undefined && map[e] !== undefined) {
          out += map[e];
          i += 2;
        } else if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) {
          out += String.fromCharCode(parseInt(text.slice(i + 2, i + 6), 16));
          i += 6;
        } else fail(`bad escape \\${e ?? ''} in a string`);
      } else if (c < ' ') {
        fail('control character in a string: escape it');
      } else {
        out += c;
        i++;
      }
    }
  };
  // the parser recurses once per level: a hostile file nested deeper than any
  // configuration needs would overflow the stack (and kill a reloading vale-ts)
  let depth = 0;
  const nest = (at: Pos): void => {
    if (++depth > MAX_DEPTH) fail(`nested more than ${MAX_DEPTH} levels deep (a configuration needs a handful)`, at);
  };
  const value = (): Node => {
    skip();
    const p = pos();
    const c = text[i];
    if (c === '{' || c === '[') nest(p);
    if (c === '{') {
      i++;
      const entries = new Map<string, { keyPos: Pos; value: Node }>();
      for (;;) {
        skip();
        if (text[i] === '}') {
          i++;
          depth--;
          return { kind: 'object', pos: p, entries };
        }
        if (text[i] !== '"') fail(`expected a "key" or } but found ${describe()}`);
        const keyPos = pos();
        const key = str();
        if (entries.has(key)) fail(`"${key}" appears twice in this object`, keyPos);
        skip();
        if (text[i] !== ':') fail(`expected : after "${key}" but found ${describe()}`);
        i++;
        entries.set(key, { keyPos, value: value() });
        skip();
        if (text[i] === ',') i++;
        else if (text[i] !== '}') fail(`expected , or } after the value of "${key}" but found ${describe()}`);
      }
    }
    if (c === '[') {
      i++;
      const items: Node[] = [];
      for (;;) {
        skip();
        if (text[i] === ']') {
          i++;
          depth--;
          return { kind: 'array', pos: p, items };
        }
        items.push(value());
        skip();
        if (text[i] === ',') i++;
        else if (text[i] !== ']') fail(`expected , or ] in a list but found ${describe()}`);
      }
    }
    if (c === '"') return { kind: 'string', pos: p, value: str() };
    const m = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/.exec(text.slice(i, i + 64));
    if (m) {
      i += m[0].length;
      return { kind: 'number', pos: p, value: Number(m[0]) };
    }
    for (const [w, n] of [
      ['true', { kind: 'boolean', pos: p, value: true }],
      ['false', { kind: 'boolean', pos: p, value: false }],
      ['null', { kind: 'null', pos: p }],
    ] as const) {
      if (text.startsWith(w, i)) {
        i += w.length;
        return n;
      }
    }
    return fail(`expected a value but found ${describe()}`);
  };
  const root = value();
  skip();
  if (i < text.length) fail(`unexpected ${describe()} after the end of the configuration`);
  return root;
}
