import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { abi, open, Switch, ValeServer } from '../../src/index.js';
import { cli, ctl } from '../fixtures/vale-ctl-run.js';
import { departures, until } from '../fixtures/wait.js';
import { fullPipe, sleepsInPoll } from '../fixtures/full-pipe.js';
import { fakeKernel, reqType } from '../fixtures/fake-kernel.js';
import {
  atoi,
  CtlError,
  formatInfo,
  formatList,
  formatNewIf,
  KernelCtl,
  parseCtlArgs,
  parsePollConfig,
  readPollConfig,
  parseRingConfig,
  runValeCtl,
  UsageError,
  type CtlIo,
  type KernelRequestFn,
} from '../../tools/vale-ctl/vale-ctl.js';

let uniq = 0;
const sockPath = (): string => path.join(os.tmpdir(), `vctl-test-${process.pid}-${uniq++}.sock`);

async function withServer(fn: (socket: string, srv: ValeServer) => Promise<void>): Promise<void> {
  const socket = sockPath();
  const srv = await ValeServer.listen({ socket });
  try {
    await fn(socket, srv);
  } finally {
    srv.close();
  }
}

const LINE = /^\S+ bridge_idx \d+ port_idx \d+$/;

function frame(dst: number[], src: number[]): Uint8Array {
  const f = new Uint8Array(60);
  f.set(dst, 0);
  f.set(src, 6);
  f[12] = 0x08;
  return f;
}

// ---- the CLI against an in-process vale-ts -------------------------------

test('no argument lists every port, one valectl line each, and exits 1 as valectl does after every full listing', async (t) => {
  await withServer(async (socket) => {
    const empty = await ctl(socket);
    t.is(empty.code, 1);
    t.is(empty.stdout, '');
    const a = await open('vale0:01', { socket });
    const b = await open('vale0:02', { socket });
    const c = await open('vale1:x', { socket });
    try {
      const r = await ctl(socket);
      t.is(r.code, 1, "valectl's list_all returns 1 after a listing that worked too");
      t.is(r.stderr, '');
      t.true(r.stdout.endsWith('\n'));
      const lines = r.stdout.trimEnd().split('\n');
      t.is(lines.length, 3);
      for (const l of lines) t.regex(l, LINE);
      t.true(lines.includes('vale0:01 bridge_idx 0 port_idx 0'));
      t.true(lines.includes('vale0:02 bridge_idx 0 port_idx 1'));
      t.true(lines.includes('vale1:x bridge_idx 1 port_idx 0'));
    } finally {
      a.close();
      b.close();
      c.close();
    }
  });
});

test('-l prints bridge_idx / port_idx, attached or separate; a missing port on a live switch is port_idx 255', async (t) => {
  await withServer(async (socket) => {
    const a = await open('vale0:01', { socket });
    const b = await open('vale0:02', { socket });
    try {
      const sep = await ctl(socket, '-l', 'vale0:02');
      t.is(sep.code, 0, sep.stderr);
      t.is(sep.stdout, 'bridge_idx: 0\nport_idx:   1\n');
      const att = await ctl(socket, '-lvale0:02');
      t.is(att.stdout, sep.stdout);
      const missing = await ctl(socket, '-l', 'vale0:nope');
      t.is(missing.code, 0);
      t.is(missing.stdout, 'bridge_idx: 0\nport_idx:   255\n');
      const noSwitch = await ctl(socket, '-l', 'vale7:1');
      t.is(noSwitch.code, 1);
      t.is(noSwitch.stdout, '');
      t.regex(noSwitch.stderr, /^failed to list vale7:1: No such file or directory/);
      const notVale = await ctl(socket, '-l', 'eth0');
      t.is(notVale.code, 1);
      t.regex(notVale.stderr, /invalid vale port name: 'eth0'/);
      t.regex(notVale.stderr, /Usage:/);
    } finally {
      a.close();
      b.close();
    }
  });
});

test('-g prints the port_info block exactly (rx_rings without its colon)', async (t) => {
  await withServer(async (socket) => {
    const a = await open('vale0:01@conf:rings=2,slots=256', { socket });
    try {
      const r = await ctl(socket, '-g', 'vale0:01');
      t.is(r.code, 0, r.stderr);
      const m = /^memsize:    (\d+)\ntx_slots:   256\nrx_slots:   256\ntx_rings:   2\nrx_rings    2\nmem_id:     (\d+)\n$/.exec(r.stdout);
      t.truthy(m, r.stdout);
      t.true(Number(m![1]) > 0);
      const bad = await ctl(socket, '-g', 'vale0:none');
      t.is(bad.code, 1);
      t.regex(bad.stderr, /^failed to obtain info for vale0:none: /);
    } finally {
      a.close();
    }
  });
});

test('-n / -r: a persistent port is listed, survives a client, refuses removal while open, and goes with -r', async (t) => {
  await withServer(async (socket, srv) => {
    const left = departures(srv);
    const made = await ctl(socket, '-v', '-n', 'vale0:pers', '-C', '512,256,2');
    t.is(made.code, 0, made.stderr);
    t.is(made.stdout, 'tx_slots:   512\nrx_slots:   256\ntx_rings:   2\nrx_ring:    2\nmem_id:     ' + /mem_id: {5}(\d+)/.exec(made.stdout)![1] + '\n');
    const quiet = await ctl(socket, '-n', 'vale0:pers2');
    t.is(quiet.code, 0);
    t.is(quiet.stdout, '', 'without -v, -n prints nothing');
    t.true((await ctl(socket)).stdout.split('\n').includes('vale0:pers bridge_idx 0 port_idx 0'));
    const again = await ctl(socket, '-n', 'vale0:pers');
    t.is(again.code, 1);
    t.regex(again.stderr, /^failed to create vale0:pers: File exists/);

    const p = await open('vale0:pers', { socket });
    try {
      t.is(p.txRings.length, 2, 'the client gets the geometry -C asked for');
      const busy = await ctl(socket, '-r', 'vale0:pers');
      t.is(busy.code, 1);
      t.regex(busy.stderr, /^failed to remove vale0:pers: Device or resource busy/);
    } finally {
      p.close();
    }
    // closing the client leaves the persistent port in place
    await left.of('vale0:pers');
    const still = await ctl(socket, '-l', 'vale0:pers');
    t.is(still.stdout, 'bridge_idx: 0\nport_idx:   0\n');

    const gone = await ctl(socket, '-r', 'vale0:pers');
    t.is(gone.code, 0, gone.stderr);
    t.is(gone.stdout, '');
    const list = await ctl(socket);
    t.false(list.stdout.includes('vale0:pers '));
    t.true(list.stdout.includes('vale0:pers2 '));
    t.is((await ctl(socket, '-r', 'vale0:pers2')).code, 0);
    t.is((await ctl(socket)).code, 1, 'nothing left');
  });
});

test('-n --vhost-user PATH,inline makes an in-line vhost-user port; PATH,thread one a thread serves', async (t) => {
  await withServer(async (socket) => {
    const a = path.join(os.tmpdir(), `vctl-vhu-${process.pid}-a.sock`);
    const b = path.join(os.tmpdir(), `vctl-vhu-${process.pid}-b.sock`);
    t.is((await ctl(socket, '-n', 'vale0:vm1', '--vhost-user', `${a},inline`)).code, 0);
    t.is((await ctl(socket, '-n', 'vale0:vm2', '--vhost-user', `${b},thread`)).code, 0);
    const list = (await ctl(socket)).stdout;
    t.true(list.includes(`vale0:vm1 bridge_idx 0 port_idx 0 [vhost-user ${a} (server, in-line, waiting for a front-end)]`), list);
    t.true(list.includes(`vale0:vm2 bridge_idx 0 port_idx 1 [vhost-user ${b} (server, waiting for a front-end)]`), list);
    t.is((await ctl(socket, '-r', 'vale0:vm1')).code, 0);
    t.is((await ctl(socket, '-r', 'vale0:vm2')).code, 0);
  });
});

test('-n --vxlan with gso=, rcvbuf= and shortcuthandshakems=: the settings reach vale-ts, which makes the port or names the bad value', async (t) => {
  await withServer(async (socket) => {
    // a loopback address of this test's own: no other VTEP binds it, no raw socket (srcport=fixed), no HELLOs (shortcut=off)
    const local = `127.6.${(process.pid % 250) + 1}.1`;
    const bad = await ctl(socket, '-n', 'vale0:vxbad', '--vxlan', `vni=5,local=${local},remote=127.0.0.2,rcvbuf=1`);
    t.is(bad.code, 1);
    t.regex(bad.stderr, /^failed to create vale0:vxbad: Invalid argument: .*vxlan setting 'rcvbuf' must be an integer 2048\.\.1073741824, not "1"$/m);
    const made = await ctl(socket, '-n', 'vale0:vx', '--vxlan', `vni=5,local=${local},remote=127.0.0.2,srcport=fixed,shortcut=off,gso=off,rcvbuf=65536,shortcuthandshakems=2000`);
    t.is(made.code, 0, made.stderr);
    const list = (await ctl(socket)).stdout;
    t.true(list.includes(`vale0:vx bridge_idx 0 port_idx 0 [vxlan vni 5 ${local}:4789 -> 127.0.0.2 (srcport fixed) in-line]`), list);
    t.is((await ctl(socket, '-r', 'vale0:vx')).code, 0);
  });
});

test('-n with a bare name explains that vale-ts ports are valeX:NAME', async (t) => {
  await withServer(async (socket) => {
    const r = await ctl(socket, '-n', 'myport');
    t.is(r.code, 1);
    t.regex(r.stderr, /^failed to create myport: Invalid argument: .*-n vale0:myport/);
    const slots = await ctl(socket, '-n', 'vale0:x', '-C', '100000');
    t.is(slots.code, 1);
    t.regex(slots.stderr, /^failed to create vale0:x: Invalid argument: tx_slots 100000 is out of range/);
    const mem = await ctl(socket, '-n', 'vale0:x', '-m', 'eth0');
    t.is(mem.code, 1);
    t.is(mem.stderr, "invalid format in '-m eth0' (missing 'netmap:'?)\n");
  });
});

test('-a / -h / -d of a missing interface: the reason in valectl\'s error line, exit 1', async (t) => {
  await withServer(async (socket) => {
    const name = `vale0:nosuch${process.pid % 100000}`;
    for (const [opt, action, reason] of [
      ['-a', 'attach', 'No such device or address'],
      ['-h', 'attach', 'No such device or address'],
      ['-d', 'detach', 'No such device or address'],
    ] as const) {
      const r = await ctl(socket, opt, name);
      t.is(r.code, 1);
      t.is(r.stdout, '');
      t.regex(r.stderr, new RegExp(`^failed to ${action} ${name}: ${reason}: .+\\n$`));
    }
  });
});

// valectl puts -C and -m into the attach request's nmreq_register
// (nr_tx_slots.., nr_mem_id: vale-ctl.c bdg_ctl, NETMAP_REQ_VALE_ATTACH): the
// NIC's netmap rings. vale-ts attaches an interface through AF_XDP or
// AF_PACKET and registers no netmap rings on it, so it refuses them rather
// than attach with the numbers dropped. 0 is valectl's "default" and passes.
test('-a / -h with -C or -m: refused by vale-ts, which has no netmap rings on an attached interface', async (t) => {
  await withServer(async (socket) => {
    const name = `vale0:nosuch${process.pid % 100000}`;
    for (const [args, what] of [
      [['-a', name, '-C', '1024'], '-C'],
      [['-h', name, '-C', '0,0,2'], '-C'],
      [['-a', name, '-m', '2'], '-m'],
    ] as const) {
      const r = await ctl(socket, ...args);
      t.is(r.code, 1, args.join(' '));
      t.is(r.stdout, '');
      t.regex(r.stderr, new RegExp(`^failed to attach ${name}: Operation not supported: ${what} `), args.join(' '));
    }
    // -C 0 / -m 0 ask for the defaults: the request goes on (and fails only for the missing interface)
    const r = await ctl(socket, '-a', name, '-C', '0', '-m', '0');
    t.regex(r.stderr, /^failed to attach .*: No such device or address: /);
  });
});

test('-p / -P: polling does not apply to vale-ts', async (t) => {
  await withServer(async (socket) => {
    const on = await ctl(socket, '-p', 'vale0:1', '-C', '0,1');
    t.is(on.code, 1);
    t.regex(on.stderr, /^failed to enable polling on vale0:1: Operation not supported: /);
    const off = await ctl(socket, '-P', 'vale0:1');
    t.is(off.code, 1);
    t.regex(off.stderr, /^invalid null\/empty config\nfailed to disable polling on vale0:1: /, 'valectl complains about the missing -C first');
  });
});

test('bad usage exits 1 with the usage text', async (t) => {
  const socket = sockPath(); // no switch needed: usage is checked first
  for (const args of [['extra'], ['-v'], ['-C', '1,2'], ['-m', '1'], ['-x'], ['-l'], ['-l', 'vale0:1', 'more'], ['--bogus'], ['--stats', '-l', 'vale0:1']]) {
    const r = await ctl(socket, ...args);
    t.is(r.code, 1, args.join(' '));
    t.is(r.stdout, '', args.join(' '));
    t.regex(r.stderr, /Usage:\nvale-ctl-ts \[arguments\]\n/, args.join(' '));
  }
  const help = await ctl(undefined, '--help');
  t.is(help.code, 0);
  t.regex(help.stdout, /^Usage:/);
});

test('vale-ts not running: the error names the socket and how to start the switch', async (t) => {
  const socket = sockPath();
  const r = await ctl(socket);
  t.is(r.code, 1);
  t.is(r.stdout, '');
  t.true(r.stderr.startsWith('failed to list all: '), r.stderr);
  t.true(r.stderr.includes(socket));
  t.regex(r.stderr, /vale-ts --socket/);
  const l = await ctl(socket, '-l', 'vale0:1');
  t.regex(l.stderr, /^failed to list vale0:1: .*not running/);
});

test('--capture with stderr on a full non-blocking pipe (2>&1 into a reader that lags): its lines wait for room, none is lost', async (t) => {
  t.timeout(60_000);
  const socket = sockPath();
  const sw = new Switch('vale0');
  const srv = await ValeServer.listen({ socket, switches: [sw] });
  t.teardown(() => srv.close());
  const a = await open('vale0:a', { socket });
  t.teardown(() => a.close());
  const dir = mkdtempSync(path.join(os.tmpdir(), `vctl-cap-${process.pid}-`));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  // stdout and stderr one pipe, full before vale-ctl-ts writes a byte: node
  // opens its stdout pipe non-blocking, and so fd 2 is too
  const pipe = fullPipe(t);
  const p = spawn(process.execPath, [cli, '--capture', 'vale0:a', '-c', '1', '-w', path.join(dir, 'a.pcapng'), '--socket', socket], { stdio: ['ignore', pipe.wr, pipe.wr] });
  t.teardown(() => p.kill('SIGKILL'));
  pipe.closeWriter();
  let code: number | null | undefined;
  const exited = new Promise<void>((r) => p.on('exit', (c) => r(void (code = c))));
  // attached, and its first line found no room: it waits in poll(2) for some
  // (before, it died of EAGAIN)
  await until(() => code !== undefined || (sw.monitors().length > 0 && sleepsInPoll(p.pid!)));
  const out = pipe.read();
  await until(() => code !== undefined || out.text().includes('capturing'));
  a.inject(frame([0xff, 0xff, 0xff, 0xff, 0xff, 0xff], [2, 0, 0, 0, 0, 0xa]));
  a.txsync();
  const [text] = await Promise.all([out.ended, exited]);
  t.is(code, 0, text.slice(pipe.filled));
  t.is(text.slice(0, pipe.filled), '.'.repeat(pipe.filled), 'what was in the pipe came first');
  t.is(text.slice(pipe.filled), 'vale-ctl-ts: capturing vale0:a/rt\nvale-ctl-ts: 1 frames written (1 seen, 0 filtered out)\n');
});

test('--json output parses for the list, -l, -g, -n and --stats', async (t) => {
  await withServer(async (socket) => {
    const emptyList = await ctl(socket, '--json');
    t.is(emptyList.code, 0);
    t.deepEqual(JSON.parse(emptyList.stdout), { ports: [] });
    const a = await open('vale0:01', { socket });
    try {
      const list = JSON.parse((await ctl(socket, '--json')).stdout) as { ports: { name: string; bridgeIndex: number; portIndex: number; attached: boolean }[] };
      t.is(list.ports.length, 1);
      t.like(list.ports[0], { name: 'vale0:01', bridgeIndex: 0, portIndex: 0, attached: true });
      t.like(JSON.parse((await ctl(socket, '--json', '-l', 'vale0:01')).stdout), { name: 'vale0:01', bridgeIndex: 0, portIndex: 0, found: true });
      t.like(JSON.parse((await ctl(socket, '-l', 'vale0:zz', '--json')).stdout), { portIndex: 255, found: false });
      const g = JSON.parse((await ctl(socket, '--json', '-g', 'vale0:01')).stdout) as Record<string, number>;
      t.like(g, { txSlots: 1024, rxSlots: 1024, txRings: 1, rxRings: 1 });
      t.true(g['memsize']! > 0);
      const n = JSON.parse((await ctl(socket, '--json', '-n', 'vale0:p', '-C', '64')).stdout) as Record<string, number>;
      t.like(n, { name: 'vale0:p', txSlots: 64, rxSlots: 64 });
      const s = JSON.parse((await ctl(socket, '--json', '--stats')).stdout) as { switches: { name: string; ports: unknown[] }[] };
      t.is(s.switches.length, 1);
      t.is(s.switches[0]!.name, 'vale0');
      t.is(s.switches[0]!.ports.length, 2);
    } finally {
      a.close();
    }
  });
});

test('--stats shows every counter and the MAC table after traffic', async (t) => {
  await withServer(async (socket) => {
    const a = await open('vale0:a', { socket });
    const b = await open('vale0:b', { socket });
    try {
      const macA = [0x02, 0, 0, 0, 0, 0x0a];
      const macB = [0x02, 0, 0, 0, 0, 0x0b];
      t.true(a.inject(frame(macB, macA)));
      a.txsync();
      const ev = await b.poll();
      t.true(ev.rx, 'the frame crossed the switch');
      let got = 0;
      b.dispatch(16, () => got++);
      b.rxsync();
      t.is(got, 1);

      const r = await ctl(socket, '--stats');
      t.is(r.code, 0, r.stderr);
      const lines = r.stdout.split('\n');
      t.is(lines[0], 'vale0 bridge_idx 0: 2 ports');
      t.regex(lines[1]!, /^counter\s+vale0:a \(0\)\s+vale0:b \(1\)\s+total$/);
      const row = (k: string): number[] => {
        const l = lines.find((x) => x.startsWith(k + ' '));
        t.truthy(l, `row ${k}`);
        return l!.trim().split(/\s+/).slice(1).map(Number);
      };
      t.deepEqual(row('rxFrames'), [1, 0, 1]);
      t.deepEqual(row('txFrames'), [0, 1, 1]);
      t.deepEqual(row('flooded'), [1, 0, 1]);
      for (const k of ['dropNoSpace', 'dropInvalid', 'dropRunt', 'dropSamePort', 'dropLookup', 'dropNoPort', 'dropOversize', 'dropFrag', 'dropClosed']) {
        t.deepEqual(row(k), [0, 0, 0], k);
      }
      t.regex(r.stdout, /^MAC table: 1 entry \(.*learned 1.*\)$/m);
      t.regex(r.stdout, /^mac\s+port\s+age$/m);
      t.regex(r.stdout, /^02:00:00:00:00:0a\s+vale0:a\s+\d+\.\ds$/m);

      const one = await ctl(socket, '--stats=vale0');
      t.is(one.code, 0);
      const none = await ctl(socket, '--stats=vale9');
      t.is(none.code, 1);
      t.regex(none.stderr, /^failed to obtain stats for vale9: /);
    } finally {
      a.close();
      b.close();
    }
  });
});

// ---- the logic, in-process -----------------------------------------------

test('getopt: attached and separate values, grouped flags, last main option wins, -- ends options', (t) => {
  t.like(parseCtlArgs(['-lvale0:1']), { verb: 'list', name: 'vale0:1' });
  t.like(parseCtlArgs(['-l', 'vale0:1']), { verb: 'list', name: 'vale0:1' });
  t.like(parseCtlArgs(['-vnvale0:x', '-C1024,1024,2', '-m', '0']), { verb: 'create', name: 'vale0:x', verbose: 1, config: '1024,1024,2', memId: '0' });
  t.like(parseCtlArgs(['-vv', '-n', 'vale0:x']), { verbose: 2 });
  t.like(parseCtlArgs(['-g', 'vale0:1', '-r', 'vale0:2']), { verb: 'remove', name: 'vale0:2' });
  t.like(parseCtlArgs(['-h', 'vale0:eth0']), { verb: 'attachHost', name: 'vale0:eth0' });
  t.like(parseCtlArgs(['-g', '-v']), { verb: 'info', name: '-v', verbose: 0 }, 'getopt takes the next word as the value, dash or not');
  t.like(parseCtlArgs([]), { verb: 'listAll', json: false });
  t.like(parseCtlArgs(['--socket=/x', '--json']), { verb: 'listAll', socket: '/x', json: true });
  t.like(parseCtlArgs(['--socket', '/x', '--stats=vale1']), { verb: 'stats', name: 'vale1', socket: '/x' });
  t.throws(() => parseCtlArgs(['--', '-l', 'vale0:1']), { instanceOf: UsageError });
  t.throws(() => parseCtlArgs(['-v']), { instanceOf: UsageError });
  t.throws(() => parseCtlArgs(['-l']), { instanceOf: UsageError, message: "option requires an argument -- 'l'" });
  t.throws(() => parseCtlArgs(['-q']), { instanceOf: UsageError, message: "invalid option -- 'q'" });
  t.throws(() => parseCtlArgs(['-l', 'foo']), { instanceOf: UsageError, message: "invalid vale port name: 'foo'" });
  t.throws(() => parseCtlArgs(['--socket']), { instanceOf: UsageError });
});

test('-C parsing follows valectl: atoi, one number sets both slot counts, three set both ring counts', (t) => {
  t.like(parseRingConfig('1024'), { txSlots: 1024, rxSlots: 1024, txRings: 0, rxRings: 0 });
  t.like(parseRingConfig('1024,512,4'), { txSlots: 1024, rxSlots: 512, txRings: 4, rxRings: 4 });
  t.like(parseRingConfig('1024,512,4,2'), { txRings: 4, rxRings: 2 });
  t.like(parseRingConfig('1,,2'), { txSlots: 1, rxSlots: 2 }, 'strtok skips empty fields');
  t.deepEqual(parseRingConfig('1,2,3,4,5').ignored, ['5']);
  t.like(parseRingConfig(undefined), { txSlots: 0, rxSlots: 0, txRings: 0, rxRings: 0 });
  t.is(atoi(' 42abc'), 42);
  t.is(atoi('x'), 0);
  t.is(atoi('-3'), -3);
  t.deepEqual(parsePollConfig('0,3'), { mode: 1, firstCpu: 3, numCpus: 0 });
  t.deepEqual(parsePollConfig('1,2,4'), { mode: 2, firstCpu: 2, numCpus: 4 });
  t.throws(() => parsePollConfig('0,1,2'), { message: "too many numbers in '0,1,2'" });
  t.throws(() => parsePollConfig(''), { message: 'invalid null/empty config' });
  t.deepEqual(readPollConfig(undefined), { config: { mode: 0, firstCpu: 0, numCpus: 0 }, complaint: 'invalid null/empty config' });
  t.deepEqual(readPollConfig('0,1,2'), { config: { mode: 1, firstCpu: 1, numCpus: 0 }, complaint: "too many numbers in '0,1,2'" });
  t.deepEqual(readPollConfig('1,2,4,8'), { config: { mode: 2, firstCpu: 2, numCpus: 4 }, complaint: "too many numbers in '1,2,4,8'" });
  t.deepEqual(readPollConfig('1,2,4'), { config: { mode: 2, firstCpu: 2, numCpus: 4 } });
});

test('output formats are byte for byte valectl\'s', (t) => {
  const g = { name: 'vale0:1', memsize: 34603008, txSlots: 1024, rxSlots: 1024, txRings: 1, rxRings: 1, memId: 3 };
  t.is(formatInfo(g), 'memsize:    34603008\ntx_slots:   1024\nrx_slots:   1024\ntx_rings:   1\nrx_rings    1\nmem_id:     3\n');
  t.is(formatNewIf(g), 'tx_slots:   1024\nrx_slots:   1024\ntx_rings:   1\nrx_ring:    1\nmem_id:     3\n');
  t.is(formatList({ name: 'vale0:01', bridgeIndex: 0, portIndex: 1 }), 'bridge_idx: 0\nport_idx:   1\n');
});

/** Request types and body offsets as the addon compiled them from netmap's structs (not the tool's numbers). */
const REQ = reqType;
const LIST = abi.OFFSETS['nmreq_vale_list']!;
const NEWIF = abi.OFFSETS['nmreq_vale_newif']!;
const ATTACH = abi.OFFSETS['nmreq_vale_attach']!;
const REG = abi.OFFSETS['nmreq_register']!;
const POLL = abi.OFFSETS['nmreq_vale_polling']!;

function capture(): CtlIo & { out: string; err: string } {
  const io = {
    out: '',
    err: '',
    env: {},
    stdout(s: string) {
      io.out += s;
    },
    stderr(s: string) {
      io.err += s;
    },
  };
  return io;
}

test('kernel backend: listing walks NETMAP_REQ_VALE_LIST from (0,0) until ENOENT, names from nr_name', async (t) => {
  const ports = [
    { b: 0, p: 0, name: 'vale0:eth4' },
    { b: 0, p: 1, name: 'vale0:eth5' },
    { b: 1, p: 3, name: 'vale1:x' },
  ];
  const fake: KernelRequestFn = (type, name, body) => {
    t.is(type, REQ('NETMAP_REQ_VALE_LIST'));
    t.is(name, '', 'list walk uses an empty name');
    const b = body.readUInt16LE(LIST['nr_bridge_idx']!);
    const p = body.readUInt32LE(LIST['nr_port_idx']!);
    const next = ports.find((x) => x.b > b || (x.b === b && x.p >= p));
    if (!next) throw Object.assign(new Error('No such file or directory'), { code: 'ENOENT', syscall: 'ioctl' });
    body.writeUInt16LE(next.b, LIST['nr_bridge_idx']!);
    body.writeUInt32LE(next.p, LIST['nr_port_idx']!);
    return { body, name: next.name };
  };
  const io = capture();
  t.is(await runValeCtl([], { io, backend: new KernelCtl(fake) }), 1, 'exit 1 after a full listing, as valectl');
  t.is(io.out, 'vale0:eth4 bridge_idx 0 port_idx 0\nvale0:eth5 bridge_idx 0 port_idx 1\nvale1:x bridge_idx 1 port_idx 3\n');
  t.is(io.err, '');
  const js = capture();
  t.is(await runValeCtl(['--json'], { io: js, backend: new KernelCtl(fake) }), 0, '--json (ours) exits 0');
  t.is((JSON.parse(js.out) as { ports: unknown[] }).ports.length, 3);
});

test('kernel backend: NIOCCTRL bodies are laid out as netmap.h, errors read as strerror', async (t) => {
  const { fn: fake, calls } = fakeKernel(['vale0:missing']);
  const be = new KernelCtl(fake);
  let io = capture();
  t.is(await runValeCtl(['-l', 'vale0:x'], { io, backend: be }), 0);
  t.is(io.out, 'bridge_idx: 2\nport_idx:   7\n');
  t.is(calls.at(-1)!.type, REQ('NETMAP_REQ_VALE_LIST'));

  io = capture();
  t.is(await runValeCtl(['-gvale0:x'], { io, backend: be }), 0);
  t.is(io.out, 'memsize:    123456\ntx_slots:   1024\nrx_slots:   512\ntx_rings:   2\nrx_rings    3\nmem_id:     9\n');

  io = capture();
  t.is(await runValeCtl(['-n', 'v0', '-C', '2048,1024,4,2', '-m', '1', '-v'], { io, backend: be }), 0);
  const nb = calls.at(-1)!;
  t.is(nb.type, REQ('NETMAP_REQ_VALE_NEWIF'));
  t.is(nb.name, 'v0', 'the kernel takes bare persistent-port names');
  t.deepEqual(
    [
      nb.body.readUInt32LE(NEWIF['nr_tx_slots']!),
      nb.body.readUInt32LE(NEWIF['nr_rx_slots']!),
      nb.body.readUInt16LE(NEWIF['nr_tx_rings']!),
      nb.body.readUInt16LE(NEWIF['nr_rx_rings']!),
      nb.body.readUInt16LE(NEWIF['nr_mem_id']!),
    ],
    [2048, 1024, 4, 2, 1],
  );
  t.is(io.out, 'tx_slots:   2048\nrx_slots:   1024\ntx_rings:   4\nrx_ring:    2\nmem_id:     1\n');

  io = capture();
  t.is(await runValeCtl(['-h', 'vale0:eth0', '-v'], { io, backend: be }), 0);
  const ab = calls.at(-1)!;
  t.is(ab.type, REQ('NETMAP_REQ_VALE_ATTACH'));
  t.is(ab.body.length, abi.SIZES['nmreq_vale_attach']);
  t.is(ab.body.readUInt32LE(ATTACH['reg']! + REG['nr_mode']!), abi.NR_REG_NIC_SW, 'NR_REG_NIC_SW');
  t.is(io.out, 'port_index: 5\n');

  io = capture();
  t.is(await runValeCtl(['-p', 'vale0:eth0', '-C', '1,2,4'], { io, backend: be }), 0);
  const pb = calls.at(-1)!;
  t.is(pb.type, REQ('NETMAP_REQ_VALE_POLLING_ENABLE'));
  const pollFields = (b: Buffer): number[] => [b.readUInt32LE(POLL['nr_mode']!), b.readUInt32LE(POLL['nr_first_cpu_id']!), b.readUInt32LE(POLL['nr_num_polling_cpus']!)];
  t.deepEqual(pollFields(pb.body), [abi.NETMAP_POLLING_MODE_MULTI_CPU, 2, 4]);

  // -p / -P without -C: valectl's complaint, then the request anyway, with a zeroed body
  for (const [opt, type] of [
    ['-p', REQ('NETMAP_REQ_VALE_POLLING_ENABLE')],
    ['-P', REQ('NETMAP_REQ_VALE_POLLING_DISABLE')],
  ] as const) {
    io = capture();
    t.is(await runValeCtl([opt, 'vale0:eth0'], { io, backend: be }), 0, opt);
    t.is(io.err, 'invalid null/empty config\n', opt);
    t.is(calls.at(-1)!.type, type, `${opt}: sent anyway`);
    t.deepEqual([...calls.at(-1)!.body], new Array(abi.SIZES['nmreq_vale_polling']).fill(0), opt);
  }
  // a bad -C: the numbers read before the bad one go out, as valectl
  io = capture();
  t.is(await runValeCtl(['-P', 'vale0:eth0', '-C', '0,3,9'], { io, backend: be }), 0);
  t.is(io.err, "too many numbers in '0,3,9'\n");
  t.deepEqual(pollFields(calls.at(-1)!.body), [abi.NETMAP_POLLING_MODE_SINGLE_CPU, 3, 0]);
  // and the kernel's answer is reported as valectl does
  const enxio: KernelRequestFn = () => {
    throw Object.assign(new Error('NIOCCTRL request 10 failed: No such device or address (ENXIO)'), { code: 'ENXIO', syscall: 'ioctl' });
  };
  io = capture();
  t.is(await runValeCtl(['-p', 'vale0:eth0'], { io, backend: new KernelCtl(enxio) }), 1);
  t.is(io.err, 'invalid null/empty config\nfailed to enable polling on vale0:eth0: No such device or address\n');

  io = capture();
  t.is(await runValeCtl(['-r', 'v0'], { io, backend: be }), 0);
  t.is(calls.at(-1)!.type, REQ('NETMAP_REQ_VALE_DELIF'));
  t.is(calls.at(-1)!.body.length, 0);

  io = capture();
  t.is(await runValeCtl(['-l', 'vale0:missing'], { io, backend: be }), 1);
  t.is(io.err, 'failed to list vale0:missing: No such file or directory\n');

  t.true(new CtlError('EBUSY').message === 'Device or resource busy');
});
