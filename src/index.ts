/**
 * @x/netmap: netmap ports and rings from TypeScript, over kernel netmap or
 * the userspace backend (vale-ts switch, pipes).
 *
 * @packageDocumentation
 */
import { registerOpeners } from './netmap/open.js';
import { KernelBackend } from './backends/kernel/port.js';
import { UserBackend } from './backends/vale-client.js';

registerOpeners(
  (p, o) => UserBackend.open(p, o),
  (p) => KernelBackend.open(p),
);

export { open, selectBackend, BackendError, type OpenOptions } from './netmap/open.js';
export { Port, type PollOptions, type FrameBatch } from './netmap/port.js';
export { Ring, RingError } from './netmap/ring.js';
export type { PollEvents, BackendKind, PortRegistration } from './backends/backend.js';
export { parsePortName, formatPortName, PortNameError, type ParsedPortName } from './netmap/name.js';
export { Switch, sumDrops, DEST_DROP, DEST_FLOOD, DEST_SAME_PORT, type SwitchOptions, type SwitchPort, type BatchLookup } from './vale/switch.js';
export { ValeServer, type ServerOptions } from './vale/server.js';
export { defaultSocketPath, PROTOCOL_VERSION } from './control/protocol.js';
export { LearningBridge } from './vale/learning-bridge.js';
export { ManualClock, systemClock, type Clock } from './vale/clock.js';
export * as abi from './netmap/abi.js';
export { preloadLibraryPath, PRELOAD_LIBRARY } from './preload.js';
