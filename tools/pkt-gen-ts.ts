#!/usr/bin/env node
/**
 * pkt-gen-ts: netmap's pkt-gen (tx, rx, txseq, rxseq, ping, pong) over vale-ts
 * ports, pipes and kernel netmap, with pkt-gen's flags and output lines.
 *   pkt-gen-ts -i vale0:1 -f tx        pkt-gen-ts -i vale0:2 -f rx
 * See tools/pkt-gen/run.ts.
 */
import { runPktGen } from './pkt-gen/run.js';

runPktGen(process.argv.slice(2)).then(
  (status) => process.exit(status),
  (e: unknown) => {
    process.stderr.write(`pkt-gen-ts: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
