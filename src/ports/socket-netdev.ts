/**
 * QEMU socket netdev ports, rootless:
 *
 * - `{ kind: 'stream', path, mode?: 'server' | 'client' }`: QEMU's
 *   `-netdev stream,server=off,addr.type=unix,addr.path=PATH` reaches a
 *   vale-ts listening on PATH (mode 'server', the default); with QEMU's
 *   `server=on`, vale-ts connects (mode 'client') and reconnects every second
 *   while the socket is not there. Each frame: a 4-byte big-endian length,
 *   then the frame.
 * - `{ kind: 'dgram', path, peer }`: QEMU's `-netdev dgram,local.type=unix,
 *   local.path=PEER,remote.type=unix,remote.path=PATH`: vale-ts binds PATH
 *   and sends to PEER, one frame per datagram; it takes datagrams only from
 *   the socket bound at PEER (others: `dropForeignSender`). PEER's directory
 *   must exist when the port is configured; QEMU may spell PEER otherwise
 *   (a symlinked directory, a doubled slash), not relatively
 *   (docs/vm-ports.md).
 *
 * Frames longer than the port's buffer are dropped and counted
 * (`dropTooLong`), never truncated; a stream length of 0 or beyond what QEMU
 * can send closes the connection (`dropBadLength`, and a log line), and a
 * frame the end of the stream cuts short is counted (`dropTruncated`). A
 * failed write to a stream peer ends only the sending side: what it sent
 * before is delivered up to its end of stream (docs/vm-ports.md).
 */
import type { Switch } from '../vale/switch.js';
import { inlineSetting, registerPortKind, type DriverSpec } from './driver.js';
import { FdPortDriver, onlySettings, socketPath, type FdDriverInLine } from './fd-driver.js';

/**
 * Where a socket netdev's driver runs: `inline` in the spec, else
 * VALE_TS_SOCKET_NETDEV_INLINE in vale-ts's environment ('1' in-line, '0' a
 * thread per port), else in-line exactly when the switch runs a datapath
 * thread (as TAP and vhost-user ports). In-line, frames always cross the
 * port's rx ring (no direct hand-over: a stream's partial writes keep a
 * frame's tail between rounds).
 */
function inLineOf(sw: Switch, spec: DriverSpec): FdDriverInLine | undefined {
  const v = inlineSetting(spec, sw.datapath === 'thread', 'VALE_TS_SOCKET_NETDEV_INLINE', "'1' runs QEMU socket netdev ports in the switch's rounds, '0' in threads of their own (unset: in-line on a switch with a datapath thread)");
  return v ? { core: sw.inlineDriverCore(), direct: false } : undefined;
}

registerPortKind('stream', ({ sw, port, spec }) => {
  onlySettings(spec, ['path', 'mode', 'inline']);
  const path = socketPath(spec, 'path', true);
  const mode = spec['mode'] ?? 'server';
  if (mode !== 'server' && mode !== 'client') throw Object.assign(new Error(`stream setting 'mode' must be 'server' or 'client', not ${JSON.stringify(mode)}`), { code: 'EINVAL' });
  const inLine = inLineOf(sw, spec);
  const d = new FdPortDriver('stream', mode === 'server' ? 'stream-server' : 'stream-client', port, { path }, () => `stream ${mode} ${path}${inLine ? ' (in-line)' : ''}`, inLine);
  return Promise.resolve(d);
});

registerPortKind('dgram', ({ sw, port, spec }) => {
  onlySettings(spec, ['path', 'peer', 'inline']);
  const path = socketPath(spec, 'path', true);
  const peer = socketPath(spec, 'peer', true);
  const inLine = inLineOf(sw, spec);
  return Promise.resolve(new FdPortDriver('dgram', 'dgram', port, { path, peer }, () => `dgram ${path} -> ${peer}${inLine ? ' (in-line)' : ''}`, inLine));
});
