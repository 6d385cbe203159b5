/**
 * The public control API: ValeClient against a real in-process vale-ts,
 * KernelValeControl against a stand-in kernel whose request bodies are read
 * at the offsets the addon reports from its compiled structs.
 */
import test from 'ava';
import os from 'node:os';
import path from 'node:path';
import {
  abi,
  decodeCtlBody,
  encodeCtlBody,
  KernelValeControl,
  open,
  ValeClient,
  ValeControlError,
  ValeServer,
  vnetHeader,
  type KernelRequestFn,
} from '../../src/index.js';
import { CANNED, fakeKernel, reqType } from '../fixtures/fake-kernel.js';

let uniq = 0;
const sockPath = (): string => path.join(os.tmpdir(), `ctlapi-${process.pid}-${uniq++}.sock`);

const OFF = abi.OFFSETS;
const req = reqType;

async function withServer<T>(fn: (client: ValeClient, socket: string) => Promise<T>): Promise<T> {
  const socket = sockPath();
  const srv = await ValeServer.listen({ socket });
  try {
    return await fn(new ValeClient({ socket }), socket);
  } finally {
    srv.close();
  }
}

test('ValeClient: create, list, lookup, info, stats, remove on a running vale-ts', async (t) => {
  await withServer(async (vale, socket) => {
    const made = await vale.create('vale0:pers', { txSlots: 512, rxSlots: 256, txRings: 2, rxRings: 2 });
    t.like(made, { name: 'vale0:pers', txSlots: 512, rxSlots: 256, txRings: 2, rxRings: 2 });
    const p = await open('vale0:user', { socket });
    const all = await vale.list();
    t.deepEqual(all.map((x) => x.name).sort(), ['vale0:pers', 'vale0:user']);
    t.true(all.find((x) => x.name === 'vale0:pers')!.persistent);
    const l = await vale.lookup('vale0:user');
    t.is(l.bridgeIndex, 0);
    t.is((await vale.lookup('vale0:nothere')).portIndex, abi.NM_BDG_NOPORT, 'a switch without the port answers NM_BDG_NOPORT');
    await t.throwsAsync(vale.lookup('vale9:x'), { instanceOf: ValeControlError, code: 'ENOENT' });
    const g = await vale.info('vale0:pers');
    t.is(g.memsize > 0, true);
    t.is(g.bufSize, abi.DEFAULT_BUF_SIZE, 'the geometry is the region the addon laid out');
    t.not(g.memId, (await vale.info('vale0:user')).memId, 'each port has a region of its own');
    const [sw] = await vale.stats('vale0');
    t.is(sw!.name, 'vale0');
    t.is(sw!.ports.length, 2);
    await t.throwsAsync(vale.create('vale0:pers'), { code: 'EEXIST' });
    await t.throwsAsync(vale.create('vale0:big', { txSlots: abi.MAX_SLOTS + 1 }), { code: 'EINVAL', message: /out of range/ });
    await t.throwsAsync(vale.create('plainname'), { code: 'EINVAL', message: /not a vale port name/ });
    await vale.remove('vale0:pers');
    t.deepEqual((await vale.list()).map((x) => x.name), ['vale0:user']);
    p.close();
  });
});

test('ValeClient: no switch at the socket is ECONNREFUSED/ENOENT with the way to start one', async (t) => {
  const vale = new ValeClient({ socket: sockPath() });
  const e = await t.throwsAsync(vale.list(), { instanceOf: ValeControlError });
  t.true(e!.code === 'ENOENT' || e!.code === 'ECONNREFUSED');
  t.regex(e!.message, /vale-ts is not running at .*vale-ts --socket/);
});

test('KernelValeControl: request bodies are netmap structs, at the offsets the addon reports', async (t) => {
  const NEWIF = OFF['nmreq_vale_newif']!;
  const ATT = OFF['nmreq_vale_attach']!;
  const REG = OFF['nmreq_register']!;
  const POLL = OFF['nmreq_vale_polling']!;
  const HDR = OFF['nmreq_port_hdr']!;
  const k = fakeKernel();
  const ctl = new KernelValeControl({ request: k.fn });

  t.like(await ctl.info('vale0:x'), CANNED.info);
  t.is(k.calls.at(-1)!.body.length, abi.SIZES['nmreq_port_info_get']);
  t.deepEqual(await ctl.lookup('vale0:x'), { name: 'vale0:x', ...CANNED.list });

  await ctl.create('v0', { txSlots: 2048, rxSlots: 1024, txRings: 4, rxRings: 2 }, 1);
  let c = k.calls.at(-1)!;
  t.is(c.type, req('NETMAP_REQ_VALE_NEWIF'));
  t.is(c.body.length, abi.SIZES['nmreq_vale_newif']);
  t.deepEqual(
    [c.body.readUInt32LE(NEWIF['nr_tx_slots']!), c.body.readUInt32LE(NEWIF['nr_rx_slots']!), c.body.readUInt16LE(NEWIF['nr_tx_rings']!), c.body.readUInt16LE(NEWIF['nr_rx_rings']!), c.body.readUInt16LE(NEWIF['nr_mem_id']!)],
    [2048, 1024, 4, 2, 1],
  );

  t.is(await ctl.attach('vale0:eth0', { hostStack: true, conf: { txSlots: 256 }, memId: 3 }), 5);
  c = k.calls.at(-1)!;
  t.is(c.body.length, abi.SIZES['nmreq_vale_attach']);
  const reg = ATT['reg']!;
  t.is(c.body.readUInt32LE(reg + REG['nr_mode']!), abi.NR_REG_NIC_SW);
  t.is(c.body.readUInt32LE(reg + REG['nr_tx_slots']!), 256);
  t.is(c.body.readUInt16LE(reg + REG['nr_mem_id']!), 3);
  await ctl.attach('vale0:eth1');
  t.is(k.calls.at(-1)!.body.readUInt32LE(reg + REG['nr_mode']!), abi.NR_REG_ALL_NIC);

  t.is(await ctl.detach('vale0:eth0'), 6);
  await ctl.pollingOn('vale0:eth0', { mode: abi.NETMAP_POLLING_MODE_MULTI_CPU, firstCpu: 2, numCpus: 4 });
  c = k.calls.at(-1)!;
  t.is(c.type, req('NETMAP_REQ_VALE_POLLING_ENABLE'));
  t.deepEqual(
    [c.body.readUInt32LE(POLL['nr_mode']!), c.body.readUInt32LE(POLL['nr_first_cpu_id']!), c.body.readUInt32LE(POLL['nr_num_polling_cpus']!)],
    [abi.NETMAP_POLLING_MODE_MULTI_CPU, 2, 4],
  );
  await ctl.pollingOff('vale0:eth0');
  t.is(k.calls.at(-1)!.type, req('NETMAP_REQ_VALE_POLLING_DISABLE'));
  await ctl.remove('v0');
  t.is(k.calls.at(-1)!.type, req('NETMAP_REQ_VALE_DELIF'));
  t.is(k.calls.at(-1)!.body.length, 0);

  t.is(vnetHeader('vale0:x', 12, ctl), 12);
  const set = k.calls.at(-2)!;
  t.is(set.type, req('NETMAP_REQ_PORT_HDR_SET'));
  t.is(set.body.readUInt32LE(HDR['nr_hdr_len']!), 12);
  t.is(k.calls.at(-1)!.type, req('NETMAP_REQ_PORT_HDR_GET'));
});

test('KernelValeControl: the full listing walks VALE_LIST from (0,0) until ENOENT', async (t) => {
  const ports = [
    { b: 0, p: 0, name: 'vale0:eth4' },
    { b: 1, p: 3, name: 'vale1:x' },
  ];
  const LIST = OFF['nmreq_vale_list']!;
  const fn: KernelRequestFn = (type, name, body) => {
    t.is(type, req('NETMAP_REQ_VALE_LIST'));
    t.is(name, '');
    const b = body.readUInt16LE(LIST['nr_bridge_idx']!);
    const p = body.readUInt32LE(LIST['nr_port_idx']!);
    const next = ports.find((x) => x.b > b || (x.b === b && x.p >= p));
    if (!next) throw Object.assign(new Error('No such file or directory'), { code: 'ENOENT', syscall: 'ioctl' });
    body.writeUInt16LE(next.b, LIST['nr_bridge_idx']!);
    body.writeUInt32LE(next.p, LIST['nr_port_idx']!);
    return { body, name: next.name };
  };
  t.deepEqual(await new KernelValeControl({ request: fn }).list(), [
    { name: 'vale0:eth4', bridgeIndex: 0, portIndex: 0 },
    { name: 'vale1:x', bridgeIndex: 1, portIndex: 3 },
  ]);
});

test('encodeCtlBody refuses numbers that do not fit their struct field, and unknown requests', (t) => {
  t.throws(() => encodeCtlBody(req('NETMAP_REQ_VALE_NEWIF'), { txRings: 0x10000 }), { instanceOf: RangeError, message: /txRings must be an integer in 0\.\.65535/ });
  t.throws(() => encodeCtlBody(req('NETMAP_REQ_VALE_NEWIF'), { txSlots: -1 }), { instanceOf: RangeError });
  t.throws(() => encodeCtlBody(req('NETMAP_REQ_REGISTER')), { message: /not a VALE control request/ });
  t.throws(() => decodeCtlBody(req('NETMAP_REQ_VALE_LIST'), Buffer.alloc(4)), { message: /nmreq_vale_list body is 8 bytes, got 4/ });
});

test('vnetHeader: userspace ports carry none', async (t) => {
  const base = `vale0:vh${process.pid}`;
  const a = await open(`${base}{1`, { backend: 'user' });
  t.is(vnetHeader(a), 0);
  t.throws(() => vnetHeader(a, 10), { code: 'EOPNOTSUPP', message: /carry no virtio-net header/ });
  a.close();
});
