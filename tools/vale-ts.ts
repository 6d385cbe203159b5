#!/usr/bin/env node
/**
 * vale-ts: the userspace VALE switch process. Listens on a unix control
 * socket; switches and ports appear as clients open valeX:Y.
 */
import { parseArgs } from 'node:util';
import { ValeServer } from '../src/vale/server.js';
import { defaultSocketPath } from '../src/control/protocol.js';

const USAGE = `usage: vale-ts [--socket PATH] [--batch N] [--busy-poll-us US] [--datapath thread|loop] [--native-bridge] [--mac-age S] [--mac-table N]

  --socket PATH      control socket (default: $VALE_TS_SOCKET, /run/vale-ts/vale-ts.sock as root,
                     else $XDG_RUNTIME_DIR/vale-ts.sock)
  --batch N          frames taken from one source ring per turn (1..4096, default 512)
  --busy-poll-us US  keep polling this long after the last frame before sleeping (default 50)
  --datapath MODE    thread: each switch forwards on a thread of its own that a doorbell wakes
                     directly (default); loop: on the event loop of the control server
  --native-bridge    decide in C++ instead of TypeScript (benchmark baseline; no MAC table in stats)
  --mac-age S        MAC table entry lifetime in seconds (default 300)
  --mac-table N      MAC table size bound (default 8192)
  -h, --help         this text
`;

function num(name: string, v: string | undefined, lo: number, hi: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < lo || n > hi) {
    process.stderr.write(`vale-ts: --${name} ${v} is invalid: expected a number in ${lo}..${hi}\n`);
    process.exit(1);
  }
  return n;
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        socket: { type: 'string' },
        batch: { type: 'string' },
        'busy-poll-us': { type: 'string' },
        datapath: { type: 'string' },
        'native-bridge': { type: 'boolean' },
        'mac-age': { type: 'string' },
        'mac-table': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    process.stderr.write(`vale-ts: ${(e as Error).message}\n${USAGE}`);
    process.exit(1);
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const batch = num('batch', values.batch, 1, 4096);
  const busy = num('busy-poll-us', values['busy-poll-us'], 0, 1e7);
  const age = num('mac-age', values['mac-age'], 0.001, 1e9);
  const table = num('mac-table', values['mac-table'], 1, 1 << 24);
  const datapath = values.datapath ?? 'thread';
  if (datapath !== 'thread' && datapath !== 'loop') {
    process.stderr.write(`vale-ts: --datapath ${datapath} is invalid: expected thread or loop\n`);
    process.exit(1);
  }
  const switchOptions: import('../src/vale/switch.js').SwitchOptions = { datapath };
  if (values['native-bridge']) switchOptions.nativeBridge = true;
  if (batch !== undefined) switchOptions.batch = Math.floor(batch);
  if (busy !== undefined) switchOptions.busyPollUs = busy;
  if (age !== undefined) switchOptions.macAgeMs = age * 1000;
  if (table !== undefined) switchOptions.macTableSize = Math.floor(table);
  const socket = defaultSocketPath(values.socket);
  let server: ValeServer;
  try {
    server = await ValeServer.listen({ socket, switchOptions });
  } catch (e) {
    process.stderr.write(`vale-ts: cannot listen on ${socket}: ${(e as Error).message}\n`);
    process.exit(1);
  }
  const stop = (sig: string): void => {
    process.stdout.write(`vale-ts: ${sig}, shutting down\n`);
    server.close(`vale-ts received ${sig}`);
    process.exit(0);
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.stdout.write(`vale-ts: listening on ${server.socketPath} (userspace backend, protocol v1); open valeX:Y ports to create switches and ports\n`);
  server.on('attach', (sw, p) => process.stdout.write(`vale-ts: ${p.name} attached (bridge ${sw.bridgeIndex} port ${p.index}${p.pid ? `, pid ${p.pid}` : ''})\n`));
  server.on('detach', (_sw, p) => process.stdout.write(`vale-ts: ${p.name} detached\n`));
}

void main();
