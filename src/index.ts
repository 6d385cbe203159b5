/**
 * @x/netmap: netmap ports and rings from TypeScript, over kernel netmap or
 * the userspace backend (vale-ts switch, pipes).
 *
 * @packageDocumentation
 */
export { open, selectBackend, BackendError, type OpenOptions } from './netmap/open.js';
export { Port, type PollOptions, type FrameBatch, type ReconnectEvent } from './netmap/port.js';
export { SwitchGoneError } from './netmap/errors.js';
export { Ring, RingError, type RingOptions } from './netmap/ring.js';
export type { PollEvents, BackendKind, PortRegistration } from './backends/backend.js';
export { parsePortName, formatPortName, PortNameError, type ParsedPortName, type PortConf } from './netmap/name.js';
export { Switch, prestartDatapathThread, sumDrops, DEST_DROP, DEST_FLOOD, DEST_SAME_PORT, type SwitchOptions, type SwitchPort, type VnetHdrLen, type BatchLookup } from './vale/switch.js';
export { ValeServer, DEFAULT_LIMITS, type ServerOptions, type ServerLimits, type PeerPolicy } from './vale/server.js';
export { defaultSocketPath, PROTOCOL_VERSION, ATTACH_BACKENDS, type AttachBackend, type SwitchStats, type PortStats, type DepartedPortStats, type Conservation } from './control/protocol.js';
export {
  ValeClient,
  ValeControlError,
  type ValeClientOptions,
  type ValePortIndex,
  type ValePortInfo,
  type ValePortConfig,
} from './control/client.js';
export {
  KernelValeControl,
  kernelAvailable,
  vnetHeader,
  encodeCtlBody,
  decodeCtlBody,
  type KernelValeControlOptions,
  type KernelRequestFn,
  type PollingConfig,
  type CtlFields,
} from './backends/kernel/control.js';
export { LearningBridge } from './vale/learning-bridge.js';
export { serveMetrics, ValeMetrics, type MetricsEndpoint } from './vale/metrics.js';
export { loadConfig, checkConfig, ConfigError, type ValeConfig, type SwitchConfig, type PortConfig } from './vale/config.js';
export { ConfigApplier, type ApplyReport } from './vale/config-apply.js';
export { CounterRegistry, DEFAULT_RETAIN_COUNTERS_S, type RingOccupancy } from './vale/counters.js';
export { ManualClock, systemClock, type Clock } from './vale/clock.js';
export * as abi from './netmap/abi.js';
export { preloadLibraryPath, PRELOAD_LIBRARY } from './preload.js';
export {
  PcapngWriter,
  CaptureFilter,
  FilterError,
  filterUnavailableReason,
  capture,
  monitorRings,
  MAX_SNAPLEN,
  type PcapngSink,
  type PcapngInterface,
  type PcapngWriterOptions,
  type TsResolution,
  type CaptureRing,
  type CaptureSource,
  type CaptureOptions,
  type CaptureResult,
} from './capture/index.js';
export {
  Router,
  type RouterOptions,
  type RouterInterfaceConfig,
  type RouterInterface,
  type RouterCounters,
  type StaticRoute,
  type NatConfig,
  type FrameSink,
} from './l3/router.js';
export { RouterPorts, type RouterPortsOptions } from './l3/router-ports.js';
export { GatewaySteering } from './l3/gateway-steering.js';
export { NatTable, DEFAULT_NAT_TIMEOUTS, type NatTableOptions, type NatTimeouts, type NatEntry, type NatProtocol, type NatTableCounters, type NatRefusal } from './l3/nat-table.js';
export { DEFAULT_ARP_LIMITS, type ArpLimits } from './l3/arp-cache.js';
export { internetChecksum, csumReplace16, csumReplace32 } from './l3/checksum.js';
