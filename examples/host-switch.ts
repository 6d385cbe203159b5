/**
 * vale-ts as a library, run as the host's switch: a configuration (switches
 * and persistent ports), counters that outlive their ports, and a Prometheus
 * endpoint on loopback. What `vale-ts --config FILE --metrics PORT` does.
 *   node dist/examples/host-switch.js [--socket PATH]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ConfigApplier, loadConfig, open, serveMetrics, ValeServer } from '@x/netmap';

const dir = mkdtempSync(path.join(os.tmpdir(), 'host-switch-'));
// the example's configuration file and socket go with it, also if a step throws
try {
  const file = path.join(dir, 'vale-ts.json');
  writeFileSync(file, '{ "switches": { "vale0": { "ports": { "uplink": { "lossless": true } } } } }\n');
  const { config, errors } = loadConfig(file);
  if (!config) throw new Error(errors.map((e) => e.message).join('\n'));

  const socket = process.argv.includes('--socket') ? process.argv[process.argv.indexOf('--socket') + 1] : path.join(dir, 'vale-ts.sock');
  const server = await ValeServer.listen({ socket, retainCountersS: 600 });
  const report = await new ConfigApplier(server).apply(config);
  console.log(`configured: ${report.added.join(', ')}`);
  const metrics = await serveMetrics(server, '0');

  // a client comes, sends 10 frames, and goes: its counters stay
  const port = await open('vale0:client', { socket });
  const f = new Uint8Array(60);
  f.set([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2, 8, 0]);
  for (let i = 0; i < 10; i++) port.inject(f);
  await port.flush();
  port.close();
  await new Promise((r) => server.once('detach', r));

  const [sw] = server.allStats().switches;
  console.log(`departed: ${sw?.departedPorts?.map((d) => `${d.name} rxFrames ${d.counters['rxFrames']}`).join(', ')}`);
  const scrape = await (await fetch(metrics.url)).text();
  console.log(scrape.split('\n').filter((l) => l.startsWith('vale_ts_switch_frames_in_total')).join('\n'));
  await metrics.close();
  server.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
