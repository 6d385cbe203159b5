/**
 * README sections run as written, so that they cannot rot: the commands of
 * "Running the switch yourself", "Attaching Linux interfaces" with
 * "Capturing", "VXLAN", "Running vale-ts as the host's switch" and "Routing
 * and NAT" (as root where they say so) are typed into a shell one by one
 * (test/fixtures/readme-typist.ts), each one's status and output checked
 * against what the README says next to it. Only names that must be unique on
 * a shared machine (sockets, namespaces, interfaces, the host's addresses, a
 * TCP port, files) are replaced, or, for VXLAN, "this host" is a namespace of
 * the test's own; the commands stay.
 */
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ensurePackages } from '../fixtures/system-packages.js';
import { codeBlocks, commands, readmeSection, repoRoot, Typist, type Command } from '../fixtures/readme-typist.js';
import { afxdpBuiltIn } from '../../src/ports/linux-if.js';

const root = process.getuid?.() === 0;

function scratch(t: { teardown(fn: () => void): void }): string {
  const d = mkdtempSync(path.join(os.tmpdir(), `readme-${process.pid}-`));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

/** A free TCP port on 127.0.0.1. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

/** The command of `cmds` whose text starts with `start`; the test fails (throws) when the README lost it. */
function find(cmds: readonly Command[], start: string): Command {
  const c = cmds.find((x) => x.text.startsWith(start));
  if (!c) throw new Error(`README block has no command "${start}...": ${JSON.stringify(cmds.map((x) => x.text))}`);
  return c;
}

test.serial('README "Running the switch yourself": the switch, a receiver, a sender, the listing and --stats, then -p 4 on four rings', async (t) => {
  t.timeout(120_000, 'README switch section');
  const section = readmeSection('Running the switch yourself');
  const cmds = commands(codeBlocks(section)[0]!);
  t.deepEqual(
    cmds.map((c) => c.text),
    ['npx vale-ts', 'npx pkt-gen-ts -i vale0:02 -f rx', 'npx pkt-gen-ts -i vale0:01 -f tx -l 60', 'npx vale-ctl-ts', 'npx vale-ctl-ts --stats'],
  );
  const dir = scratch(t);
  const sh = new Typist({ cwd: dir, env: { VALE_TS_SOCKET: path.join(dir, 'vale-ts.sock') } });
  t.teardown(() => sh.close());
  // the first three run until Ctrl-C, each in a terminal of its own
  t.regex(await sh.background(cmds[0]!.text, /vale-ts: listening on \S+/), new RegExp(`listening on ${dir}/vale-ts.sock`));
  await sh.background(cmds[1]!.text, /Receiving from vale0:02/);
  const from = sh.output.length;
  await sh.background(cmds[2]!.text, /Sending on vale0:01/);
  // frames arrive: the receiver's report shows a rate above zero
  await sh.waitFor(/main_thread \[\d+\] (?:[1-9]|0\.\d*[1-9])[\d.]* [KMG]?pps/, from);
  const list = await sh.type(cmds[3]!.text);
  t.is(list.status, 1, `valectl's status after a listing: ${list.output}`);
  const shown = cmds[3]!.comment.replace(/ \.\.\.$/, '');
  t.is(shown, 'vale0:02 bridge_idx 0 port_idx 0');
  t.regex(list.output, new RegExp(`^${shown}$`, 'm'));
  t.regex(list.output, /^vale0:01 bridge_idx 0 port_idx 1$/m);
  const stats = await sh.type(cmds[4]!.text);
  t.is(stats.status, 0, stats.output);
  // "counters, drop reasons, MAC table"
  for (const re of [/^rxFrames +\d+ +[1-9]\d* +[1-9]\d*$/m, /^dropNoSpace /m, /^MAC table: \d+ entr(?:y|ies) /m]) t.regex(stats.output, re);

  // "Several threads on one port, one ring each": once the sender has stopped
  const p4 = /`(npx pkt-gen-ts -i vale0:01@conf:rings=4 -f tx -p 4)`/.exec(section)?.[1];
  t.truthy(p4, 'the section shows the -p 4 command');
  const before = sh.output.length;
  const stopped = await sh.type('kill -INT %3; wait %3');
  t.regex(stopped.output, /^Sent \d+ packets/m, 'the sender stopped with its summary (Ctrl-C)');
  // the switch has seen it go (vale-ts says so) before the port is opened again
  await sh.waitFor(/vale-ts: vale0:01 detached\n/, before);
  await sh.background(p4!, /Sending on vale0:01@conf:rings=4: 4 queues, 4 threads/);
  const rings = await sh.type('npx vale-ctl-ts -g vale0:01');
  t.regex(rings.output, /^tx_rings: +4$/m, rings.output);
});

/** ns1, veth1, 10.0.0.x ... of the README as names no other test or user has. */
function linuxIfNames(text: string): string {
  const p = `rm${process.pid % 100000}`;
  return text
    .replace(/\bveth1n\b/g, `${p}an`)
    .replace(/\bveth2n\b/g, `${p}bn`)
    .replace(/\bveth1\b/g, `${p}a`)
    .replace(/\bveth2\b/g, `${p}b`)
    .replace(/\bns([12])\b/g, `${p}n$1`)
    .replace(/\b10\.0\.0\./g, '10.251.0.');
}

(root ? test.serial : test.skip)('README "Attaching Linux interfaces" and "Capturing": two namespaces through vale0, the listing it shows, pings, captures read by tcpdump and tshark, detach', async (t) => {
  t.timeout(180_000, 'README linux-if section');
  if (!afxdpBuiltIn) {
    // the section attaches veth1 with --backend afxdp
    const why = 'the addon was built without AF_XDP (libxdp-dev/libbpf-dev absent at compile time): apt-get install libxdp-dev libbpf-dev pkg-config && npx node-gyp rebuild';
    if (process.env['CI'] === 'true') t.fail(why);
    else {
      // (CI set to anything else, e.g. 1, is no CI run: before, that case made no assertion and failed)
      t.log(`not run: ${why}`);
      t.pass();
    }
    return;
  }
  ensurePackages(['iproute2', 'iputils-ping', 'tshark', 'tcpdump', 'libpcap0.8']);
  const attach = commands(codeBlocks(readmeSection('Attaching Linux interfaces'))[0]!).map((c) => ({ ...c, text: linuxIfNames(c.text), comment: linuxIfNames(c.comment) }));
  const capture = commands(codeBlocks(readmeSection('Capturing'))[0]!).map((c) => ({ ...c, text: linuxIfNames(c.text), comment: linuxIfNames(c.comment) }));
  const dir = scratch(t);
  const sh = new Typist({ cwd: dir, env: { VALE_TS_SOCKET: path.join(dir, 'vale-ts.sock') } });
  const p = `rm${process.pid % 100000}`;
  t.teardown(async () => {
    await sh.close();
    // also on failure: the namespaces (and with them the veth pairs)
    const { spawnSync } = await import('node:child_process');
    for (const ns of [`${p}n1`, `${p}n2`]) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    for (const l of [`${p}a`, `${p}b`]) spawnSync('ip', ['link', 'del', l], { stdio: 'ignore' });
  });
  // "As root, with vale-ts running"
  await sh.background('vale-ts', /vale-ts: listening on/);
  const detach = attach.pop()!;
  t.regex(detach.text, /^vale-ctl-ts -d vale0:\S+; vale-ctl-ts -d vale0:\S+$/);
  for (const c of attach) {
    const r = await sh.type(c.text);
    if (c.text === 'vale-ctl-ts') {
      t.is(r.status, 1, `valectl's status after a listing: ${r.output}`);
      // the listing the README shows, line by line (a fresh switch: the same indices)
      const shown = c.comment.split('\n');
      t.is(shown.length, 3);
      for (const line of shown) t.true(r.output.split('\n').includes(line.trim()), `listing lacks "${line.trim()}":\n${r.output}`);
      continue;
    }
    t.is(r.status, 0, `${c.text}:\n${r.output}`);
    if (c.text.includes('ping -c 3')) t.regex(r.output, /3 packets transmitted, 3 received/, c.text);
    if (c.text === 'vale-ctl-ts --stats') {
      t.regex(r.output, /^MAC table: \d+ entr(?:y|ies) /m);
      // "every drop_*, the others once non-zero"
      t.regex(c.comment, /every drop_\*, the others once non-zero/);
      t.regex(r.output, /^driver of vale0:\S+: afxdp copy [\s\S]*?^ {2}drop_\w+ 0$/m);
      t.regex(r.output, /^driver of vale0:\S+: tpacket-v2 [\s\S]*?^ {2}rx_frames [1-9]/m);
      t.notRegex(r.output, /^ {2}(?!drop_)\w+ 0$/m, 'no zero counter but the drops');
    }
  }
  t.is(capture.length, 4);
  // "With the two namespaces above": two captures in the background, a ping, the file read back
  t.regex(capture[0]!.text, /&$/);
  await sh.background(capture[0]!.text.replace(/\s*&$/, ''), /vale-ctl-ts: capturing vale0:\S+\/rt\n/);
  const from = sh.output.length;
  t.regex(capture[1]!.text, / -c 12 .*&$/);
  await sh.background(capture[1]!.text.replace(/\s*&$/, ''), /vale-ctl-ts: capturing .*\(filter/);
  const ping = await sh.type(capture[2]!.text);
  t.regex(ping.output, /3 packets transmitted, 3 received/);
  // "the second capture then ends"
  await sh.waitFor(/vale-ctl-ts: 12 frames written \(\d+ seen, \d+ filtered out\)\n/, from);
  t.is((await sh.type('wait %3')).status, 0, 'the -c 12 capture exited 0');
  const tshark = await sh.type(capture[3]!.text);
  t.is(tshark.status, 0, tshark.output);
  const rows = tshark.output.split('\n').filter((l) => /^vale0:/.test(l));
  t.is(rows.length, 12, tshark.output);
  for (const dirn of [`vale0:${p}a/rx`, `vale0:${p}a/tx`, `vale0:${p}b/rx`, `vale0:${p}b/tx`]) {
    t.is(rows.filter((r) => r.startsWith(`${dirn}\t`)).length, 3, `3 frames on ${dirn}:\n${tshark.output}`);
  }
  t.regex(sh.output, /reading from file -, link-type EN10MB/, 'tcpdump reads the pcapng stream');
  const d = await sh.type(detach.text);
  t.is(d.status, 0, d.output);
  const left = await sh.type('vale-ctl-ts');
  t.is(left.output, '', 'no port left after -d (the host port vale0:veth2^ goes with its interface)');
});

test.serial('README "Running vale-ts as the host\'s switch": the file, --check-config, --config with --metrics, SIGHUP, the metric and --stats --json agree', async (t) => {
  t.timeout(120_000, 'README service section');
  ensurePackages(['curl']);
  const dir = scratch(t);
  const port = await freePort();
  const block = commands(codeBlocks(readmeSection("Running vale-ts as the host's switch"))[0]!);
  // a file of this test's own, and a free TCP port, instead of ./vale-ts.json and 9337
  const cmds = block.map((c) => ({ ...c, text: c.text.replaceAll('vale-ts.json', path.join(dir, 'vale-ts.json')).replaceAll('9337', String(port)) }));
  t.is(cmds.length, 6, JSON.stringify(block.map((c) => c.text)));
  const sh = new Typist({ cwd: repoRoot, env: { VALE_TS_SOCKET: path.join(dir, 'vale-ts.sock') } });
  t.teardown(() => sh.close());
  const file = find(cmds, 'cat > ');
  t.is((await sh.type(file.text)).status, 0);
  const check = await sh.type(find(cmds, 'node dist/tools/vale-ts.js --check-config').text);
  t.is(check.status, 0, check.output);
  t.regex(check.output, /valid \(1 switch, 2 ports\)/);
  const serve = find(cmds, 'node dist/tools/vale-ts.js --config');
  t.regex(serve.text, /&$/);
  await sh.background(serve.text.replace(/\s*&$/, ''), /vale-ts: listening on /);
  t.regex(sh.output, /loaded: added vale0:vm1, vale0:vm2/);
  const hup = find(cmds, 'kill -HUP');
  const from = sh.output.length;
  t.is((await sh.type(hup.text)).status, 0);
  // "re-read: only what changed is added/removed": nothing changed
  await sh.waitFor(/SIGHUP: \S+ reloaded: 2 unchanged/, from);
  const metric = await sh.type(find(cmds, 'curl ').text);
  t.is(metric.status, 0, metric.output);
  const series = [...metric.output.matchAll(/^vale_ts_port_frames_in_total\{switch="vale0",port="(vale0:vm[12])"\} (\d+)$/gm)].map((m) => [m[1], Number(m[2])]);
  t.deepEqual(series, [['vale0:vm1', 0], ['vale0:vm2', 0]], metric.output);
  const json = await sh.type(find(cmds, 'node dist/tools/vale-ctl-ts.js --stats --json').text);
  t.is(json.status, 0, json.output);
  const stats = JSON.parse(json.output) as { switches: { name: string; ports: { name: string; counters: Record<string, number> }[] }[] };
  // "the same numbers": frames_in is what the switch took from the port, rxFrames
  t.deepEqual(
    stats.switches.find((s) => s.name === 'vale0')!.ports.map((p) => [p.name, p.counters['rxFrames']]),
    series,
  );
});

(root ? test.serial : test.skip)('README "Routing and NAT": router.js between vale0 and vale1, two namespaces on TAP ports, ping at ttl 63, SIGUSR1; then nat.js as the paragraph after says', async (t) => {
  t.timeout(120_000, 'README routing section');
  ensurePackages(['iproute2', 'iputils-ping']);
  const p = `rm${process.pid % 100000}`;
  // the namespaces and TAPs r1, r2 under names of this test's own
  const unique = (s: string): string => s.replace(/\br([12])\b/g, `${p}r$1`);
  const section = readmeSection('Routing and NAT');
  const cmds = commands(codeBlocks(section)[0]!).map((c) => ({ ...c, text: unique(c.text) }));
  const dir = scratch(t);
  const sh = new Typist({ cwd: repoRoot, env: { VALE_TS_SOCKET: path.join(dir, 'vale-ts.sock') } });
  t.teardown(async () => {
    await sh.close();
    const { spawnSync } = await import('node:child_process');
    for (const ns of [`${p}r1`, `${p}r2`]) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  });
  // "As root, with vale-ts running"
  await sh.background('vale-ts', /vale-ts: listening on/);
  const router = find(cmds, 'node dist/examples/router.js & rpid=$!');
  let from = sh.output.length;
  t.is((await sh.type(router.text)).status, 0);
  await sh.waitFor(/router up: vale0:gw 10\.1\.0\.1[\s\S]*router up: vale1:gw 10\.2\.0\.1|router up: vale1:gw 10\.2\.0\.1[\s\S]*router up: vale0:gw 10\.1\.0\.1/, from);
  for (const c of cmds.slice(cmds.indexOf(router) + 1)) {
    from = sh.output.length;
    const r = await sh.type(c.text);
    t.is(r.status, 0, `${c.text}:\n${r.output}`);
    if (c.text.includes('ping -c 3')) t.regex(r.output, /^64 bytes from 10\.2\.0\.2: icmp_seq=3 ttl=63 /m, 'ttl=63: one router on the way');
    if (c.text.startsWith('kill -USR1')) {
      // "the router prints its counters and neighbours"
      const m = await sh.waitFor(/^stats (\{.*\})$/m, from);
      const s = JSON.parse(m[1]!) as { counters: Record<string, number>; neighbours: { iface: string; ip: string }[] };
      t.true(s.counters['forwarded']! >= 6, m[1]);
      t.deepEqual(s.neighbours.map((n) => `${n.iface} ${n.ip}`).sort(), ['vale0:gw 10.1.0.2', 'vale1:gw 10.2.0.2']);
    }
  }
  // "Run it instead of router.js; r2, outside, then needs an address in 192.0.2.0/24 (`...`), and `...` reaches it"
  const nat = /`(node dist\/examples\/nat\.js)` does the same as a NAT[\s\S]*?needs an address\s+in 192\.0\.2\.0\/24 \(`([^`]+)`\), and\s+`([^`]+)` reaches it/.exec(section);
  t.truthy(nat, 'the NAT paragraph names its commands');
  from = sh.output.length;
  t.is((await sh.type('kill $rpid; wait $rpid')).status, 0, 'router.js stops on SIGTERM');
  // the switch has seen its ports go (vale-ts says so) before nat.js opens vale0:gw again
  await sh.waitFor(/vale-ts: vale0:gw detached\n/, from);
  from = sh.output.length;
  t.is((await sh.type(`${nat![1]} &`)).status, 0);
  await sh.waitFor(/nat up: vale1:nat 192\.0\.2\.1 .* outside/, from);
  t.is((await sh.type(unique(nat![2]!))).status, 0);
  const ping = await sh.type(unique(nat![3]!));
  t.is(ping.status, 0, ping.output);
  t.regex(ping.output, /3 packets transmitted, 3 received/);
});

(root ? test.serial : test.skip)('README "VXLAN": this host\'s vale0 joined to a Linux VTEP in a namespace, ping over VNI 42, --stats shows the remote and the learned MAC', async (t) => {
  t.timeout(120_000, 'README VXLAN section');
  ensurePackages(['iproute2', 'iputils-ping', 'ethtool']);
  const { makeNs } = await import('../fixtures/netns.js');
  const p = `rm${process.pid % 100000}`;
  // "this host" is a namespace of the test's own: its addresses, UDP port 4789 and
  // interface names then meet nobody else's; the README's namespace vxl gets a unique name
  const host = `${p}h`;
  const vxl = `${p}vx`;
  const removeHost = makeNs(host);
  // registered before anything else can throw: the namespaces go also then
  let sh: Typist | undefined;
  t.teardown(async () => {
    await sh?.close();
    const { spawnSync } = await import('node:child_process');
    spawnSync('ip', ['netns', 'del', vxl], { stdio: 'ignore' });
    removeHost();
  });
  const dir = scratch(t);
  sh = new Typist({ cwd: dir, netns: host, env: { VALE_TS_SOCKET: path.join(dir, 'vale-ts.sock') } });
  const cmds = commands(codeBlocks(readmeSection('VXLAN'))[0]!).map((c) => ({ ...c, text: c.text.replace(/\bvxl\b/g, vxl) }));
  // "As root, with vale-ts running"
  await sh.background('vale-ts', /vale-ts: listening on/);
  for (const c of cmds) {
    const r = await sh.type(c.text);
    t.is(r.status, 0, `${c.text}:\n${r.output}`);
    if (c.text.startsWith('ping -c 3')) t.regex(r.output, /3 packets transmitted, 3 received/);
    if (c.text.startsWith('vale-ctl-ts --stats=vale0')) {
      // "remote 10.9.0.2 txFrames ..., fdb MAC -> 10.9.0.2 expiresInS ..."
      t.regex(c.comment, /^remote 10\.9\.0\.2 txFrames \.\.\., fdb MAC -> 10\.9\.0\.2 expiresInS \.\.\.$/);
      t.regex(r.output, /^ {2}remote 10\.9\.0\.2 txFrames [1-9]\d*$/m);
      t.regex(r.output, /^ {2}fdb [0-9a-f:]{17} -> 10\.9\.0\.2 expiresInS \d+$/m);
    }
  }
  t.true(cmds.some((c) => c.text.startsWith('vale-ctl-ts --stats=vale0')), 'the block ends with --stats');
});
