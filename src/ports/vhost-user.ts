/**
 * vhost-user ports: vale-ts is the vhost-user back-end of a guest's
 * virtio-net device (QEMU `-netdev vhost-user`, DPDK `net_virtio_user`).
 * The protocol and the datapath run natively (cpp/core/vhost_user.cc), as
 * the client of an ordinary switch port: one thread per port, woken by the
 * guest's kicks and the switch's doorbell, or in-line: the datapath
 * runs in the switch's own rounds instead (OVS-DPDK's PMD model: the guest's
 * queues drained just before the switch collects and filled just after it
 * forwards, the guest's kicks in the switch's epoll set) and the port's
 * thread only speaks the protocol. In-line is the default on a switch with a
 * datapath thread (`datapath: 'thread'`): there it costs ~320 ns of CPU
 * per frame against a thread per port's 650-1300 (no doorbell, no hand-off
 * between threads) and batches the guests' kicks in the switch's sleep. On
 * the event-loop datapath it measured 10-20x slower (the loop's timers have
 * 1 ms steps, so it cannot batch), and a thread per port stays the default
 * there (bench/RESULTS.md, sessions 7, 11-13).
 *
 * Spec settings: `path` (absolute unix socket path), `client` (connect to
 * `path` and reconnect, for QEMU `server=on`; default: listen on `path`),
 * `queuePairs` (1..8 offered with VHOST_USER_PROTOCOL_F_MQ, default 2),
 * `inline` (default: true on a switch with a datapath thread, false on the
 * event-loop datapath, unless vale-ts's environment sets
 * `VALE_TS_VHOST_INLINE=1` or `0`; `vale-ctl-ts --vhost-user PATH,inline`
 * or `PATH,thread` per port),
 * `busyPollUs` (without `inline`; 0..100000, default 0: after the
 * last frame the driver keeps polling this long with the guest's kicks off
 * before it sleeps; in-line, the switch's own busy poll decides),
 * `backlogPollUs` (without `inline`; 0..100000, default 0: while frames
 * wait for the guest's RX buffers, the driver polls the guest's RX queue
 * for freed entries this long after its last progress instead of asking
 * for a kick and sleeping; bench/RESULTS.md, session 9).
 *
 * The port declares a 10-byte virtio-net header to the switch
 * ({@link Switch.setVnetHdrLen}): a guest's checksum and TSO offloads pass
 * through, checked, to header-aware ports (TAP with vnet_hdr, another
 * vhost-user port: counted `vnetPassed` there) and are finished by the
 * switch only for ports without a header (`vnetCsumCompleted`,
 * `vnetSegmented`). The guest is offered GUEST_CSUM/GUEST_TSO4/6 and gets
 * GSO frames whole in its mergeable buffers; a guest that declines them gets
 * frames finished by the driver (`toGuestCsumCompleted`, `toGuestSegmented`).
 */
import { isAbsolute } from 'node:path';
import { nativeRaw } from '../netmap/addon.js';
import { inlineFromEnv, registerPortKind, type DriverSpec, type PortDriver } from './driver.js';

/**
 * How long (µs) an in-line port's full rx ring holds its senders back before
 * the switch sheds it (the switch's `holdUs` for this port, unless the port
 * or the switch was given one). A guest's RX queue fills while the guest is
 * off its CPU, for a scheduler's turn or several under load; held, the
 * senders' frames wait in their own queues (a guest's TX queue is its
 * buffer, as a NIC's is) and the switch sleeps until the guest takes frames
 * again (its RX kick). Shed after the switch's 2 ms, the in-line switch took
 * every frame from the sender only to drop it, never sleeping while it did,
 * and at its priority kept the receiver off the CPU it needed to drain
 * (bench/RESULTS.md, sessions 12-13; under other load a guest went 100 ms
 * without a turn). A guest that takes fewer than 64 frames in a second (the
 * longest hold the switch allows, SWITCH_HOLD_QUANTUM) is shed (dropNoSpace)
 * until it has taken 64; one that needs more than a quarter second per 64
 * has its bound halved, again and again (SWITCH_HOLD_SLOW_DIV), so a guest
 * paused for less than a second once still loses nothing, and one trickling
 * 64 a second does not hold its senders to that pace.
 * Only frames addressed to the guest wait that long: a flood waits for any
 * full receiver at most the switch's own bound (switch.ts, setFloodHoldUs),
 * so one paused guest does not stall every broadcast on the switch.
 */
export const VHOST_INLINE_HOLD_US = 1_000_000;

/** The settings of a vhost-user port, checked. */
export interface VhostUserSettings {
  path: string;
  client: boolean;
  queuePairs: number;
  busyPollUs: number;
  backlogPollUs: number;
  inline: boolean;
}

interface NativeVhostUser {
  counters(): Record<string, number>;
  info(): { connected: boolean; features: bigint; protocolFeatures: bigint; runningQueues: number; lastError: string; offeredFeatures: bigint };
  close(): void;
}
interface VhostAddon {
  VhostUser: new (regionFd: number, clientBell: number, switchBell: number, cfg: { path: string; client: boolean; queuePairs: number; busyPollUs: number; backlogPollUs: number }, core?: object) => NativeVhostUser;
}
const native = nativeRaw as VhostAddon;

/**
 * `inline`'s default where the spec does not say: VALE_TS_VHOST_INLINE in
 * vale-ts's environment ('1' in-line, '0' a thread per port), otherwise
 * in-line exactly when the switch runs a datapath thread.
 */
export function vhostInlineDefault(switchThread: boolean): boolean {
  return inlineFromEnv('VALE_TS_VHOST_INLINE', switchThread, "'1' runs vhost-user ports in the switch's rounds, '0' in threads of their own (unset: in-line on a switch with a datapath thread)");
}

/**
 * Checks a driver spec of kind 'vhost-user' and names the bad setting.
 * `switchThread`: the port's switch runs a datapath thread (`inline`'s
 * default, see {@link vhostInlineDefault}).
 */
export function vhostUserSettings(spec: DriverSpec, switchThread = false): VhostUserSettings {
  for (const k of Object.keys(spec)) {
    if (!['kind', 'path', 'client', 'queuePairs', 'busyPollUs', 'backlogPollUs', 'inline'].includes(k)) throw Object.assign(new Error(`unknown vhost-user setting '${k}' (known: path, client, queuePairs, busyPollUs, backlogPollUs, inline)`), { code: 'EINVAL' });
  }
  const { path, client = false, queuePairs = 2, busyPollUs = 0, backlogPollUs = 0, inline = vhostInlineDefault(switchThread) } = spec;
  if (typeof path !== 'string' || !isAbsolute(path)) throw Object.assign(new Error(`vhost-user 'path' must be an absolute socket path (got ${JSON.stringify(path)})`), { code: 'EINVAL' });
  if (Buffer.byteLength(path) > 107) throw Object.assign(new Error(`vhost-user path ${path} is longer than a unix socket path may be (107 bytes)`), { code: 'ENAMETOOLONG' });
  if (typeof client !== 'boolean') throw Object.assign(new Error("vhost-user 'client' must be a boolean"), { code: 'EINVAL' });
  if (typeof queuePairs !== 'number' || !Number.isInteger(queuePairs) || queuePairs < 1 || queuePairs > 8) {
    throw Object.assign(new Error(`vhost-user 'queuePairs' must be an integer 1..8 (got ${String(queuePairs)})`), { code: 'EINVAL' });
  }
  const busy = windowUs('busyPollUs', busyPollUs);
  const backlog = windowUs('backlogPollUs', backlogPollUs);
  if (typeof inline !== 'boolean') throw Object.assign(new Error("vhost-user 'inline' must be a boolean"), { code: 'EINVAL' });
  return { path, client, queuePairs, busyPollUs: busy, backlogPollUs: backlog, inline };
}

/** A polling window setting, whole µs 0..100000, or the error that names it. */
function windowUs(name: string, us: unknown): number {
  if (typeof us !== 'number' || !Number.isInteger(us) || us < 0 || us > 100000) {
    throw Object.assign(new Error(`vhost-user '${name}' must be an integer 0..100000 µs (got ${String(us)})`), { code: 'EINVAL' });
  }
  return us;
}

/** Names of the negotiated virtio features worth showing. */
function featureNames(f: bigint): string[] {
  const names: Array<[number, string]> = [[0, 'csum'], [11, 'host_tso4'], [12, 'host_tso6'], [1, 'guest_csum'], [7, 'guest_tso4'], [8, 'guest_tso6'], [32, 'version_1'], [15, 'mrg_rxbuf'], [29, 'event_idx'], [28, 'indirect'], [22, 'mq']];
  return names.filter(([b]) => (f >> BigInt(b)) & 1n).map(([, n]) => n);
}

class VhostUserDriver implements PortDriver {
  readonly kind = 'vhost-user';
  private closed = false;
  constructor(
    private readonly n: NativeVhostUser,
    readonly settings: VhostUserSettings,
  ) {}

  describe(): string {
    const s = this.settings;
    const i = this.n.info();
    const state = i.connected ? `connected, ${i.runningQueues} queues running, ${featureNames(i.features).join(' ') || 'no features'}` : s.client ? 'connecting' : 'waiting for a front-end';
    // a failed connect's error stays until something replaces it: once connected it is history,
    // and "connected ...; last error: ... (retrying every second)" read as if it were not
    const error = i.connected && i.lastError.endsWith(' (retrying every second)') ? '' : i.lastError;
    return `vhost-user ${s.path} (${s.client ? 'client' : 'server'}${s.inline ? ', in-line' : ''}, ${state})${error ? `; last error: ${error}` : ''}`;
  }

  counters(): Record<string, number> {
    return this.n.counters();
  }

  /** The native state: connection, negotiated features, last protocol error. */
  info(): ReturnType<NativeVhostUser['info']> {
    return this.n.info();
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.n.close();
    }
    return Promise.resolve();
  }
}

registerPortKind('vhost-user', ({ sw, port, spec, holdAsked }) => {
  const settings = vhostUserSettings(spec, sw.datapath === 'thread');
  // Frames cross the port with a 10-byte virtio-net header, whatever the
  // guest negotiates (10 or 12 bytes: the driver converts at the guest's
  // edge): the length must hold before the first frame and stay put while
  // frames sit in the rings, and num_buffers means nothing past the guest.
  sw.setVnetHdrLen(port.index, 10);
  const [region, clientBell, switchBell] = port.fds;
  const { inline, ...cfg } = settings;
  const core = inline ? sw.inlineDriverCore() : undefined;
  const drv = new VhostUserDriver(new native.VhostUser(region, clientBell, switchBell, cfg, core), settings);
  // in-line: hold senders for a guest off its CPU rather than shed (see
  // VHOST_INLINE_HOLD_US), unless a hold was asked for the port or the switch
  if (inline && !holdAsked && !sw.holdUsGiven) sw.setHoldUs(port.index, VHOST_INLINE_HOLD_US);
  return Promise.resolve(drv);
});
