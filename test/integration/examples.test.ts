import test from 'ava';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ex = (f: string): string => path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'examples', f);

test('examples/pipe-pair moves 100 frames through a pipe in order', async (t) => {
  const { stdout } = await run(process.execPath, [ex('pipe-pair.js')]);
  t.regex(stdout, /sent 100, received 100 in order/);
});

test('examples/poll-sync-worker: a worker sleeping in pollSync receives 1000 frames from the main thread', async (t) => {
  const { stdout } = await run(process.execPath, [ex('poll-sync-worker.js')], { timeout: 120_000 });
  t.regex(stdout, /sent 1000, the worker received 1000/);
});

test('examples/embed-switch serves clients and shows counters and the MAC table', async (t) => {
  const { stdout } = await run(process.execPath, [ex('embed-switch.js')]);
  t.regex(stdout, /b received 1 frame/);
  t.regex(stdout, /rxFrames: 1/);
  t.regex(stdout, /02:00:00:00:00:0a/);
});

test('examples/rx-typed-arrays receives 10000 frames through typed arrays, in order', async (t) => {
  const { stdout } = await run(process.execPath, [ex('rx-typed-arrays.js')], { timeout: 120_000 });
  t.regex(stdout, /received 10000 frames, 600000 bytes, in order/);
});

test('examples/vale-control creates, lists and removes ports through ValeClient', async (t) => {
  const { stdout } = await run(process.execPath, [ex('vale-control.js')], { timeout: 120_000 });
  t.regex(stdout, /created vale0:store: 512\/512 slots/);
  t.regex(stdout, /vale0:store bridge_idx 0 port_idx \d+ \(persistent\)/);
  t.regex(stdout, /vale0 has 2 ports/);
  t.regex(stdout, /after remove: vale0:user\n/);
});

test('examples/reconnect: a plain port fails with SwitchGoneError, a reconnecting one follows the restarted switch', async (t) => {
  const { stdout } = await run(process.execPath, [ex('reconnect.js')], { timeout: 120_000 });
  t.regex(stdout, /plain port: SwitchGoneError/);
  t.regex(stdout, /app reconnected \(1\), 3 queued frames lost in the gap/);
  t.regex(stdout, /reconnectLostTxFrames: 3/);
});

test('examples/qemu-stream-port: a frame in QEMU stream framing reaches another port', async (t) => {
  const { stdout } = await run(process.execPath, [ex('qemu-stream-port.js')], { timeout: 120_000 });
  t.regex(stdout, /-netdev stream,id=n0,server=off,addr\.type=unix,addr\.path=\//);
  t.regex(stdout, /vale0:peer received 60 bytes from 52:54:00:12:34:56/);
  t.regex(stdout, /stream server \/\S+: inFrames 1, dropTooLong 0/);
});

test('examples/host-switch configures a switch, keeps a departed port\'s counters and serves them as metrics', async (t) => {
  const { stdout } = await run(process.execPath, [ex('host-switch.js')], { timeout: 120_000 });
  t.regex(stdout, /configured: vale0:uplink/);
  t.regex(stdout, /departed: vale0:client rxFrames 10/);
  t.regex(stdout, /vale_ts_switch_frames_in_total\{switch="vale0"\} 10/);
});

test('examples/vhost-user-port makes vale-ts a vhost-user back-end and lists its drop reasons', async (t) => {
  const { stdout } = await run(process.execPath, [ex('vhost-user-port.js')], { timeout: 120_000 });
  t.regex(stdout, /vale0:vm1: vhost-user \/\S+ \(server, waiting for a front-end\)/);
  t.regex(stdout, /dropOutOfMemoryTable/);
});

test('examples/capture writes a /rt monitor\'s filtered frames as pcapng that tcpdump reads', async (t) => {
  const { ensurePackages } = await import('../fixtures/system-packages.js');
  ensurePackages(['tcpdump', 'libpcap0.8']);
  const { stdout, stderr } = await run(process.execPath, [ex('capture.js')], { timeout: 120_000, encoding: 'buffer' });
  t.regex(stderr.toString(), /captured 10 frames on vale0:b\/rx, vale0:b\/tx/);
  const { spawnSync } = await import('node:child_process');
  const td = spawnSync('tcpdump', ['-n', '-r', '-'], { input: stdout, encoding: 'utf8' });
  t.is(td.status, 0, td.stderr);
  // one line per frame (then tcpdump's hex dump of the unknown ethertype's payload)
  t.is(td.stdout.split('\n').filter((l) => /^\d.*02:00:00:00:00:0a > ff:ff:ff:ff:ff:ff, ethertype Unknown \(0x88b5\), length 60/.test(l)).length, 10);
});

(process.getuid?.() === 0 ? test : test.skip)('examples/attach-interface attaches a veth with AF_XDP or AF_PACKET, names the backend, detaches', async (t) => {
  const { stdout } = await run(process.execPath, [ex('attach-interface.js')], { timeout: 120_000 });
  t.regex(stdout, /^vale0:ex\d+: (afxdp (zero-copy|copy)|tpacket-v[23]) ex\d+ \(promisc/m);
  t.regex(stdout, /detached ex\d+/);
});

test('examples/vxlan-port: a VXLAN datagram reaches another port, the answer goes back as VXLAN to the learned VTEP', async (t) => {
  const { stdout } = await run(process.execPath, [ex('vxlan-port.js')], { timeout: 120_000 });
  t.regex(stdout, /vale0:peer received 60 bytes from 02:00:00:00:00:01/);
  t.regex(stdout, /remote VTEP received VXLAN: flags 0x8, VNI 42, inner frame to 02:00:00:00:00:01/);
  t.regex(stdout, /inFrames 1, outFrames 1, learned 1, remote 127\.0\.0\.1 txFrames 1/);
});
