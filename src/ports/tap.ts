/**
 * TAP ports: `{ kind: 'tap', ifname: 'vmtap0', vnetHdr?: boolean, queues?: number, offload?: boolean }`.
 *
 * vale-ts opens (creating if needed) the TAP device and serves its file
 * side; the TAP's interface is the port's peer: the host stack, a namespace
 * the interface is moved into, or a Linux bridge. With `vnetHdr` the TAP
 * carries virtio-net headers and the kernel's checksum/TSO offloads are on;
 * the port declares its 10-byte header to the switch
 * ({@link Switch.setVnetHdrLen}) and frames cross it with their header,
 * GSO super-frames whole: the switch completes checksums and segments only
 * for ports that take no header (their counters `vnetCsumCompleted`,
 * `vnetSegmented`), and a TAP-to-TAP TCP flow keeps its 64 KiB frames end
 * to end (`vnetPassed`). Needs CAP_NET_ADMIN.
 */
import { registerPortKind } from './driver.js';
import { FdPortDriver, onlySettings, stringSetting } from './fd-driver.js';

const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;

registerPortKind('tap', ({ sw, port, spec }) => {
  onlySettings(spec, ['ifname', 'vnetHdr', 'queues', 'offload']);
  const ifname = stringSetting(spec, 'ifname', true);
  if (!IFNAME.test(ifname)) throw Object.assign(new Error(`TAP name '${ifname}' must be 1 to 15 letters, digits, '_', '.' or '-'`), { code: 'EINVAL' });
  const vnetHdr = spec['vnetHdr'] ?? false;
  const offload = spec['offload'] ?? true;
  const queues = spec['queues'] ?? 1;
  if (typeof vnetHdr !== 'boolean' || typeof offload !== 'boolean') throw Object.assign(new Error("tap settings 'vnetHdr' and 'offload' must be booleans"), { code: 'EINVAL' });
  if (typeof queues !== 'number' || !Number.isInteger(queues) || queues < 1 || queues > 16) throw Object.assign(new Error(`tap setting 'queues' must be an integer 1..16, not ${String(queues)}`), { code: 'EINVAL' });
  // the TAP's header size (TUNSETVNETHDRSZ) is 10; declared before any frame moves
  if (vnetHdr) sw.setVnetHdrLen(port.index, 10);
  const driver = new FdPortDriver('tap', 'tap', port, { ifname, vnetHdr, offload, queues, passHdr: vnetHdr }, (name) => {
    const extra = [vnetHdr ? `vnet_hdr${offload ? '+offloads' : ''}` : '', queues > 1 ? `${queues} queues` : ''].filter((s) => s).join(', ');
    return `tap ${name}${extra ? ` (${extra})` : ''}`;
  });
  return Promise.resolve(driver);
});
