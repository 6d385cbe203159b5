/**
 * Runs a {@link Router} between switches: one vale-ts port per router
 * interface (e.g. `vale0:gw` and `vale1:gw`), opened as an ordinary client
 * through {@link open}. Received frames are read in place from the rx ring
 * (zero-copy views, rewritten where they lie), and what the router sends is
 * copied once into the destination port's tx ring. The switches see the
 * router as one more host on each: they learn its MACs from its frames, so
 * plain learning bridges steer traffic for the gateway to it.
 */
import { open, type OpenOptions } from '../netmap/open.js';
import type { Port } from '../netmap/port.js';
import type { Router } from './router.js';

/** Options of {@link RouterPorts.start}. */
export interface RouterPortsOptions {
  /** the vale-ts port of each router interface, in the router's interface order (e.g. ['vale0:gw', 'vale1:gw']) */
  ports: readonly string[];
  /** the switch's control socket (default: as {@link open}) */
  socket?: string;
  /** frames taken from a port per pass (default 256) */
  batch?: number;
  /** interval of the router's housekeeping, ARP retries and ageing (ms, default 250) */
  tickMs?: number;
}

/** A router running on switch ports. Create with {@link RouterPorts.start}; stop with {@link RouterPorts.close}. */
export class RouterPorts {
  /** the open ports, in interface order */
  readonly ports: readonly Port[];
  private readonly router: Router;
  private readonly batch: number;
  private readonly dirty: boolean[];
  private readonly timer: NodeJS.Timeout;
  private readonly loops: Promise<void>[];
  private closed = false;
  private failure: unknown;

  private constructor(router: Router, ports: Port[], opts: RouterPortsOptions) {
    this.router = router;
    this.ports = ports;
    this.batch = opts.batch ?? 256;
    this.dirty = ports.map(() => false);
    const maxFrame = Math.min(...ports.map((p) => p.bufSize));
    router.attach((ifIndex, frame, len) => {
      const p = this.ports[ifIndex]!;
      this.dirty[ifIndex] = true;
      if (p.inject(frame, len)) return true;
      // full: push what is queued and look again, once
      p.txsync();
      return p.inject(frame, len);
    }, maxFrame);
    this.timer = setInterval(() => {
      router.tick();
      this.flush();
    }, opts.tickMs ?? 250);
    this.loops = ports.map((_, i) => this.run(i));
    router.announce();
    this.flush();
  }

  /** Opens one port per router interface and starts forwarding. */
  static async start(router: Router, opts: RouterPortsOptions): Promise<RouterPorts> {
    const n = router.interfaces.length;
    if (opts.ports.length !== n) throw new RangeError(`the router has ${n} interfaces, ${opts.ports.length} ports were given`);
    if (opts.batch !== undefined && (!Number.isInteger(opts.batch) || opts.batch < 1)) throw new RangeError(`batch ${opts.batch} is not a positive integer`);
    const o: OpenOptions = { backend: 'user' };
    if (opts.socket !== undefined) o.socket = opts.socket;
    const ports: Port[] = [];
    try {
      for (const name of opts.ports) ports.push(await open(name, o));
    } catch (e) {
      for (const p of ports) p.close();
      throw e;
    }
    return new RouterPorts(router, ports, opts);
  }

  /** Resolves when forwarding stops: after {@link RouterPorts.close}, or rejects when a port fails (its switch went away). */
  async done(): Promise<void> {
    await Promise.all(this.loops);
    if (this.failure) throw this.failure;
  }

  /** Stops forwarding and closes the ports. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    for (const p of this.ports) p.close();
  }

  private flush(): void {
    if (this.closed) return;
    this.dirty.forEach((d, i) => {
      if (d) {
        this.dirty[i] = false;
        this.ports[i]!.txsync();
      }
    });
  }

  private async run(i: number): Promise<void> {
    const port = this.ports[i]!;
    const offs = new Uint32Array(this.batch);
    const lens = new Uint16Array(this.batch);
    try {
      while (!this.closed) {
        const ev = await port.poll({ rx: true });
        if (this.closed) return;
        if (ev.hup && !ev.rx) throw new Error(`${port.name}: the switch went away`);
        const bytes = new Uint8Array(port.memory);
        for (let n; (n = port.receive(offs, lens)) > 0; ) {
          for (let k = 0; k < n; k++) this.router.handle(i, bytes.subarray(offs[k]!, offs[k]! + lens[k]!));
          this.flush();
          port.rxsync();
        }
      }
    } catch (e) {
      if (this.closed) return;
      this.failure = e;
      this.close();
    }
  }
}
