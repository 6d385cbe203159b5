/**
 * Applying a checked configuration to a running server, at start and on
 * each reload: ports are compared by name and by what they ask of their
 * region and driver; only the differences are acted on. A port whose
 * configuration is unchanged keeps its region, its clients and its counters.
 */
import { pathToFileURL } from 'node:url';
import { loadLookup, portShape, switchShape, type PortConfig, type ValeConfig } from './config.js';
import { Switch, type SwitchOptions } from './switch.js';
import type { PeerPolicy, ValeServer } from './server.js';

/** What one application did, and what it could not do. */
export interface ApplyReport {
  /** ports created: new in the configuration */
  added: string[];
  /** ports removed: no longer in the configuration */
  removed: string[];
  /** re-created: their geometry or driver changed */
  recreated: string[];
  /** lossless mode switched in place */
  updated: string[];
  /** unchanged ports (not touched) */
  kept: string[];
  /** one line per thing that failed; the rest was applied */
  errors: string[];
}

/** Keeps what the configuration created, so a reload knows what to change. */
export class ConfigApplier {
  /** ports the configuration owns: name -> the configuration they were made from */
  private readonly ports = new Map<string, PortConfig>();
  /** switches the configuration owns: name -> their creation settings */
  private readonly switches = new Map<string, string>();

  constructor(
    private readonly server: ValeServer,
    private readonly defaults: SwitchOptions = {},
    /** the command line's access policy, to which the file's adds */
    private readonly basePolicy: PeerPolicy = {},
  ) {}

  /** Make the server match `cfg` (switches, ports, access policy). */
  async apply(cfg: ValeConfig): Promise<ApplyReport> {
    const r: ApplyReport = { added: [], removed: [], recreated: [], updated: [], kept: [], errors: [] };
    const b = this.basePolicy;
    const a = cfg.access;
    this.server.setPolicy({
      allowUids: [...new Set([...(b.allowUids ?? []), ...(a.allowUids ?? [])])],
      allowGids: [...new Set([...(b.allowGids ?? []), ...(a.allowGids ?? [])])],
      shareRingsAcrossUids: (b.shareRingsAcrossUids ?? false) || (a.shareRingsAcrossUids ?? false),
    });
    const want = new Map<string, PortConfig>();
    for (const sc of cfg.switches) for (const p of sc.ports) want.set(p.name, p);
    const changed = new Set<string>();
    // ports no longer configured, or configured differently: removed first (frees names and limits)
    for (const [name, had] of [...this.ports]) {
      const now = want.get(name);
      if (now && portShape(now) === portShape(had)) continue;
      try {
        await this.server.removePort(name);
        this.ports.delete(name);
        if (now) changed.add(name);
        else r.removed.push(name);
      } catch (e) {
        if ((e as { code?: string }).code === 'ENXIO') this.ports.delete(name);
        else r.errors.push(`${name}: not removed: ${(e as Error).message}`);
      }
    }
    // switches: created with their settings, kept while configured
    const swWant = new Set(cfg.switches.map((s) => s.name));
    for (const sc of cfg.switches) {
      const shape = switchShape(sc);
      const had = this.switches.get(sc.name);
      const live = this.server.switch(sc.name);
      if (had !== undefined && had !== shape) {
        r.errors.push(`${sc.name}: its lookup or options changed; they take effect when vale-ts restarts (a switch is not re-created under its ports)`);
        continue;
      }
      if (live) {
        if (had === undefined && shape !== switchShape({ ...sc, lookup: undefined, options: {} })) {
          r.errors.push(`${sc.name} already existed (created by a client): its configured lookup and options take effect when vale-ts restarts`);
        }
        this.server.hostSwitch(live);
        this.switches.set(sc.name, had ?? shape);
        continue;
      }
      try {
        const opts: SwitchOptions = { ...this.defaults, ...sc.options };
        if (sc.lookup) {
          // checked here, so a bad module is named in this report
          const lookup = await loadLookup(sc.lookup);
          // a datapath thread loads the module itself (a function cannot cross threads)
          if (opts.datapath === 'thread') {
            const mod = (await import(pathToFileURL(sc.lookup).href)) as { lookup?: unknown };
            opts.lookupModule = sc.lookup;
            opts.lookupExport = mod.lookup === lookup ? 'lookup' : 'default';
          }
          else opts.lookup = lookup;
        }
        this.server.hostSwitch(new Switch(sc.name, opts));
        this.switches.set(sc.name, shape);
      } catch (e) {
        r.errors.push(`${sc.name}: not created: ${(e as Error).message}`);
      }
    }
    for (const name of [...this.switches.keys()]) {
      if (swWant.has(name)) continue;
      this.switches.delete(name);
      this.server.unpinSwitch(name);
    }
    // ports: new or changed ones created, lossless and holdUs switched in place
    for (const [name, p] of want) {
      const had = this.ports.get(name);
      if (had) {
        if (had.lossless !== p.lossless || had.holdUs !== p.holdUs) {
          const sw = this.server.switch(name.slice(0, name.indexOf(':')));
          const port = sw?.port(name);
          if (sw && port) {
            if (had.lossless !== p.lossless) this.server.setPortLossless(sw, port, p.lossless);
            if (had.holdUs !== p.holdUs) sw.setHoldUs(port.index, p.holdUs ?? sw.defaultHoldUs);
            r.updated.push(name);
          }
        } else r.kept.push(name);
        this.ports.set(name, p);
        continue;
      }
      if (!this.switches.has(name.slice(0, name.indexOf(':')))) continue;
      try {
        const conf: { txRings?: number; rxRings?: number; txSlots?: number; rxSlots?: number } = {};
        if (p.txRings !== undefined) conf.txRings = p.txRings;
        if (p.rxRings !== undefined) conf.rxRings = p.rxRings;
        if (p.txSlots !== undefined) conf.txSlots = p.txSlots;
        if (p.rxSlots !== undefined) conf.rxSlots = p.rxSlots;
        const existing = this.server.switch(name.slice(0, name.indexOf(':')))?.port(name);
        if (existing) throw Object.assign(new Error(`${name} already exists (made by a client or vale-ctl-ts -n): remove it, or rename the configured port`), { code: 'EEXIST' });
        await this.server.createPort(name, { conf, lossless: p.lossless, ...(p.holdUs !== undefined ? { holdUs: p.holdUs } : {}), ...(p.bufSize !== undefined ? { bufSize: p.bufSize } : {}), ...(p.driver ? { driver: p.driver } : {}) });
        this.ports.set(name, p);
        (changed.has(name) ? r.recreated : r.added).push(name);
      } catch (e) {
        r.errors.push(`${name}: not created: ${(e as Error).message}`);
      }
    }
    return r;
  }
}
