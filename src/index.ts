/**
 * @x/netmap: netmap ports and rings from TypeScript, over kernel netmap or
 * the userspace backend (vale-ts switch, pipes).
 *
 * @packageDocumentation
 */
import { registerOpeners } from './open.js';
import { KernelBackend } from './backends/kernel.js';
import { UserBackend } from './backends/user.js';

registerOpeners(
  (p, o) => UserBackend.open(p, o),
  (p) => KernelBackend.open(p),
);

export { open, selectBackend, BackendError, type OpenOptions } from './open.js';
export { Port, type PollOptions, type FrameBatch } from './port.js';
export { Ring, RingError } from './ring.js';
export type { PollEvents, BackendKind } from './backends/backend.js';
export { parsePortName, formatPortName, PortNameError, type ParsedPortName } from './name.js';
export { Switch, sumDrops, DEST_DROP, DEST_FLOOD, DEST_SAME_PORT, type SwitchOptions, type SwitchPort, type BatchLookup } from './switch/switch.js';
export { ValeServer, type ServerOptions } from './switch/server.js';
export { defaultSocketPath, PROTOCOL_VERSION } from './switch/protocol.js';
export { LearningBridge } from './switch/learning-bridge.js';
export { ManualClock, systemClock, type Clock } from './switch/clock.js';
export * as abi from './abi.js';
