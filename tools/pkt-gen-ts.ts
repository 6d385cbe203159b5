#!/usr/bin/env node
/**
 * pkt-gen-ts: netmap's pkt-gen (tx, rx, txseq, rxseq, ping, pong) over vale-ts
 * ports, pipes and kernel netmap, with pkt-gen's flags and output lines.
 *   pkt-gen-ts -i vale0:1 -f tx        pkt-gen-ts -i vale0:2 -f rx
 * See tools/pkt-gen/run.ts.
 */
import { runPktGen } from './pkt-gen/run.js';

/**
 * Exit once stdout and stderr have taken what was written to them. Into a
 * pipe a reader lags on (node opens a stdout pipe non-blocking), a write that
 * finds no room is queued, and process.exit would drop it: the summary or
 * the error line lost. An empty write's callback runs after those before it.
 */
function exitAfterOutput(status: number): void {
  let left = 2;
  const done = (): void => {
    if (--left === 0) process.exit(status);
  };
  process.stdout.write('', done);
  process.stderr.write('', done);
}

runPktGen(process.argv.slice(2)).then(exitAfterOutput, (e: unknown) => {
  process.stderr.write(`pkt-gen-ts: ${e instanceof Error ? e.message : String(e)}\n`);
  exitAfterOutput(1);
});
