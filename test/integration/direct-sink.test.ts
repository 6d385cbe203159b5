// An in-line VTEP or AF_PACKET port is its switch port's DirectSink: the
// switch hands it the frames for that port from the senders' buffers. The
// port index comes from JS; the native side checks it against the region
// the driver maps, so a wrong one cannot hand the driver another port's
// frames.
import { execFileSync } from 'node:child_process';
import test from 'ava';
import { nativeRaw } from '../../src/netmap/addon.js';
import { Switch } from '../../src/vale/switch.js';

interface NativeVxlan {
  describe(): string;
  close(): void;
}
type VxlanCtor = new (fds: readonly number[], o: object, label: string, core?: object, switchPort?: number) => NativeVxlan;
const { VxlanPortDriver } = nativeRaw as { VxlanPortDriver: VxlanCtor };

test('an in-line VTEP takes frames straight from the senders only for its own port: another port\'s index is refused with the fix, its own is taken', (t) => {
  const sw = new Switch('valeVxd');
  t.teardown(() => sw.close());
  const vx = sw.addPort('valeVxd:vx', {});
  const other = sw.addPort('valeVxd:other', {});
  // a loopback VTEP that never sends: no shortcut, a port of its own
  const port = 20000 + Math.floor(Math.random() * 30000);
  const opts = { vni: 5, local: '127.0.0.1', port, remote: ['127.0.0.1'], shortcut: false };
  const core = sw.inlineDriverCore();
  t.throws(() => new VxlanPortDriver(vx.fds, opts, 'valeVxd:vx', core, other.index), { message: /switch port \d+ is not the port this driver serves .*pass the driver's own port index/ });
  t.throws(() => new VxlanPortDriver(vx.fds, opts, 'valeVxd:vx', core, 1.5), { message: /switchPort must be a port index/ });
  const d = new VxlanPortDriver(vx.fds, opts, 'valeVxd:vx', core, vx.index);
  t.teardown(() => d.close());
  t.regex(d.describe(), / in-line$/);
});

interface NativeAfPacket {
  close(): void;
}
type AfPacketCtor = new (regionFd: number, clientBell: number, switchBell: number, ifname: string, opts: object, core?: object) => NativeAfPacket;
const { AfPacketPort } = nativeRaw as { AfPacketPort: AfPacketCtor };

test('an in-line AF_PACKET port likewise: another port\'s index is refused with the fix, its own is taken', (t) => {
  // a veth pair of our own (unique names: tests run in parallel), removed after
  const ifname = `vxd${process.pid % 100000}`;
  execFileSync('ip', ['link', 'add', ifname, 'type', 'veth', 'peer', 'name', `${ifname}p`]);
  t.teardown(() => execFileSync('ip', ['link', 'del', ifname]));
  const sw = new Switch('valeVxd1');
  t.teardown(() => sw.close());
  const p = sw.addPort('valeVxd1:eth', {});
  const other = sw.addPort('valeVxd1:other', {});
  sw.setVnetHdrLen(p.index, 12);
  const core = sw.inlineDriverCore();
  const opts = (switchPort: number): object => ({ vnetHdr: true, passHdr: true, switchPort });
  t.throws(() => new AfPacketPort(p.fds[0], p.fds[1], p.fds[2], ifname, opts(other.index), core), { message: /switch port \d+ is not the port this driver serves/ });
  const d = new AfPacketPort(p.fds[0], p.fds[1], p.fds[2], ifname, opts(p.index), core);
  t.teardown(() => d.close());
  t.pass();
});
