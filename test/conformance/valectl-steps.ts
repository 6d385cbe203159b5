/**
 * Runs the valectl ↔ vale-ctl-ts steps of test/conformance/guest/50-valectl.sh
 * in one node process, in the netmap-lab guest. A node start costs seconds in
 * the emulated guest and that job has some thirty vale-ctl-ts commands, so
 * they run in-process through {@link runValeCtl} (the whole of vale-ctl-ts but
 * its few-line entry script, whose exit status and output the `tsproc` steps
 * check as a real process), interleaved in order with netmap's C valectl and
 * shell commands. The job's shell then judges the outputs.
 *
 *   node valectl-steps.js STEPS DIR
 *
 * STEPS has one step a line, `NAME TOOL ARG...` (arguments split on spaces;
 * none needs quoting here), TOOL one of
 * - `c`: $VALECTL ARG...
 * - `ts`: vale-ctl-ts ARG..., in this process
 * - `tsproc`: `node $VALECTL_TS ARG...`, a process of its own
 * - `sh`: `sh -c 'ARG...'`
 *
 * and each step leaves DIR/NAME.TOOL.out, .err and .rc (for `tsproc`:
 * NAME.ts.*, so that it compares with `c` as `ts` does).
 *
 * @module
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runValeCtl } from '../../tools/vale-ctl/vale-ctl.js';

const [stepsFile, dir] = process.argv.slice(2);
const VALECTL = process.env['VALECTL'];
const VALECTL_TS = process.env['VALECTL_TS'];
if (!stepsFile || !dir || !VALECTL || !VALECTL_TS) {
  process.stderr.write('usage: VALECTL=... VALECTL_TS=.../vale-ctl-ts.js node valectl-steps.js STEPS DIR\n');
  process.exit(2);
}

function save(name: string, tool: string, out: string, err: string, rc: number): void {
  writeFileSync(join(dir, `${name}.${tool}.out`), out);
  writeFileSync(join(dir, `${name}.${tool}.err`), err);
  writeFileSync(join(dir, `${name}.${tool}.rc`), `${rc}\n`);
}

/** A process, bounded (a hung request must not hang the job): its output and status. */
function proc(cmd: string, args: string[]): { out: string; err: string; rc: number } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 60_000, killSignal: 'SIGKILL' });
  const rc = r.status ?? (r.signal ? 128 + 9 : 127);
  return { out: r.stdout ?? '', err: (r.stderr ?? '') + (r.error ? `${r.error.message}\n` : ''), rc };
}

for (const line of readFileSync(stepsFile, 'utf8').split('\n')) {
  if (!line.trim()) continue;
  const [name, tool, ...args] = line.trim().split(/ +/);
  if (!name || !tool) continue;
  switch (tool) {
    case 'c': {
      const r = proc(VALECTL, args);
      save(name, 'c', r.out, r.err, r.rc);
      break;
    }
    case 'ts': {
      let out = '';
      let err = '';
      let rc: number;
      try {
        rc = await runValeCtl(args, { io: { stdout: (s) => void (out += s), stderr: (s) => void (err += s), env: process.env } });
      } catch (e) {
        // what the entry script would do: an uncaught error, exit 1
        err += `uncaught: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`;
        rc = 1;
      }
      save(name, 'ts', out, err, rc);
      break;
    }
    case 'tsproc': {
      const r = proc(process.execPath, [VALECTL_TS, ...args]);
      save(name, 'ts', r.out, r.err, r.rc);
      break;
    }
    case 'sh': {
      const r = proc('sh', ['-c', args.join(' ')]);
      save(name, 'sh', r.out, r.err, r.rc);
      break;
    }
    default:
      save(name, tool, '', `unknown tool '${tool}'\n`, 2);
  }
}
