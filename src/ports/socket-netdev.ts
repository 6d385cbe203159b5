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
import { registerPortKind } from './driver.js';
import { FdPortDriver, onlySettings, socketPath } from './fd-driver.js';

registerPortKind('stream', ({ port, spec }) => {
  onlySettings(spec, ['path', 'mode']);
  const path = socketPath(spec, 'path', true);
  const mode = spec['mode'] ?? 'server';
  if (mode !== 'server' && mode !== 'client') throw Object.assign(new Error(`stream setting 'mode' must be 'server' or 'client', not ${JSON.stringify(mode)}`), { code: 'EINVAL' });
  const d = new FdPortDriver('stream', mode === 'server' ? 'stream-server' : 'stream-client', port, { path }, () => `stream ${mode} ${path}`);
  return Promise.resolve(d);
});

registerPortKind('dgram', ({ port, spec }) => {
  onlySettings(spec, ['path', 'peer']);
  const path = socketPath(spec, 'path', true);
  const peer = socketPath(spec, 'peer', true);
  return Promise.resolve(new FdPortDriver('dgram', 'dgram', port, { path, peer }, () => `dgram ${path} -> ${peer}`));
});
