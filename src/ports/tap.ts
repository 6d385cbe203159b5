/**
 * TAP ports: `{ kind: 'tap', ifname: 'vmtap0', vnetHdr?: boolean, queues?: number, offload?: boolean, inline?: boolean }`.
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
 * to end (`vnetPassed`). `inline` (default: true on a switch with a
 * datapath thread, false on the event-loop datapath; VALE_TS_TAP_INLINE
 * changes it): the port's reads and writes run in the switch's own rounds,
 * the TAP's fds waiting in the switch's epoll set, with no thread or
 * doorbell between them; the switch then writes frames for the TAP from the
 * senders' buffers. `false`: a thread of its own. Needs CAP_NET_ADMIN.
 */
import { inlineFromEnv, inlineSetting, registerPortKind } from './driver.js';
import { FdPortDriver, onlySettings, stringSetting } from './fd-driver.js';

const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;

/**
 * VALE_TS_TAP_DIRECT: '1' or unset, an in-line TAP port writes the switch's
 * frames from the senders' buffers; '0', through the port's rx ring (one
 * more copy; for comparisons).
 */
const directDefault = (): boolean =>
  inlineFromEnv('VALE_TS_TAP_DIRECT', true, "'1' (the default) writes an in-line TAP port's frames from the senders' buffers, '0' through the port's rx ring");

registerPortKind('tap', ({ sw, port, spec }) => {
  onlySettings(spec, ['ifname', 'vnetHdr', 'queues', 'offload', 'inline']);
  const ifname = stringSetting(spec, 'ifname', true);
  if (!IFNAME.test(ifname)) throw Object.assign(new Error(`TAP name '${ifname}' must be 1 to 15 letters, digits, '_', '.' or '-'`), { code: 'EINVAL' });
  const vnetHdr = spec['vnetHdr'] ?? false;
  const offload = spec['offload'] ?? true;
  const queues = spec['queues'] ?? 1;
  if (typeof vnetHdr !== 'boolean' || typeof offload !== 'boolean') throw Object.assign(new Error("tap settings 'vnetHdr' and 'offload' must be booleans"), { code: 'EINVAL' });
  if (typeof queues !== 'number' || !Number.isInteger(queues) || queues < 1 || queues > 16) throw Object.assign(new Error(`tap setting 'queues' must be an integer 1..16, not ${String(queues)}`), { code: 'EINVAL' });
  // in-line exactly on a datapath thread unless the spec or VALE_TS_TAP_INLINE says
  const inline = inlineSetting(spec, sw.datapath === 'thread', 'VALE_TS_TAP_INLINE', "'1' runs TAP ports in the switch's rounds, '0' in threads of their own (unset: in-line on a switch with a datapath thread)");
  // the TAP's header size (TUNSETVNETHDRSZ) is 10; declared before any frame moves
  if (vnetHdr) sw.setVnetHdrLen(port.index, 10);
  const inLine = inline ? { core: sw.inlineDriverCore(), direct: directDefault() } : undefined;
  const driver = new FdPortDriver('tap', 'tap', port, { ifname, vnetHdr, offload, queues, passHdr: vnetHdr }, (name) => {
    const extra = [vnetHdr ? `vnet_hdr${offload ? '+offloads' : ''}` : '', queues > 1 ? `${queues} queues` : '', inline ? 'in-line' : ''].filter((s) => s).join(', ');
    return `tap ${name}${extra ? ` (${extra})` : ''}`;
  }, inLine);
  return Promise.resolve(driver);
});
