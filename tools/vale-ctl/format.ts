/**
 * vale-ctl-ts's output, byte for byte valectl's where valectl has it, and its
 * errors as valectl's strerror() words them.
 *
 * @module
 */
import type { SwitchStats, ValePortIndex, ValePortInfo } from '../../src/index.js';

/** bridge/port indices of one port; portIndex NM_BDG_NOPORT when the switch exists but the port does not. */
export type ListResult = ValePortIndex;
/** Port geometry as -g / -n report it. */
export type InfoResult = ValePortInfo;

const STRERROR: Readonly<Record<string, string>> = {
  EPERM: 'Operation not permitted',
  ENOENT: 'No such file or directory',
  EIO: 'Input/output error',
  ENXIO: 'No such device or address',
  EAGAIN: 'Resource temporarily unavailable',
  ENOMEM: 'Cannot allocate memory',
  EACCES: 'Permission denied',
  EBUSY: 'Device or resource busy',
  EEXIST: 'File exists',
  ENODEV: 'No such device',
  EINVAL: 'Invalid argument',
  ENOTTY: 'Inappropriate ioctl for device',
  ENOSPC: 'No space left on device',
  ENAMETOOLONG: 'File name too long',
  EPROTO: 'Protocol error',
  EOPNOTSUPP: 'Operation not supported',
  ECONNREFUSED: 'Connection refused',
  ETIMEDOUT: 'Connection timed out',
};

/** strerror() of an errno name as glibc words it (the name itself if unknown). */
export function strerror(code: string): string {
  return STRERROR[code] ?? code;
}

/** Whether {@link strerror} has glibc's words for this errno name. */
export function knownErrno(code: string): boolean {
  return STRERROR[code] !== undefined;
}

/** A request that failed: errno name plus, where there is one, the switch's explanation. */
export class CtlError extends Error {
  readonly code: string;
  readonly detail: string | undefined;
  constructor(code: string, detail?: string) {
    super(detail === undefined ? strerror(code) : `${strerror(code)}: ${detail}`);
    this.name = 'CtlError';
    this.code = code;
    this.detail = detail;
  }
}

/** One line of the full listing: `%s bridge_idx %u port_idx %u`. */
export function formatListLine(l: ListResult): string {
  // a driver port (an attached interface, a TAP...) says what serves it after valectl's fields
  const by = 'driver' in l && typeof l.driver === 'string' ? ` [${l.driver}]` : '';
  return `${l.name} bridge_idx ${l.bridgeIndex} port_idx ${l.portIndex}${by}\n`;
}

/** `-l` output. */
export function formatList(l: ListResult): string {
  return `bridge_idx: ${l.bridgeIndex}\nport_idx:   ${l.portIndex}\n`;
}

/** `-g` output (with valectl's `rx_rings` lacking its colon). */
export function formatInfo(g: InfoResult): string {
  return (
    `memsize:    ${g.memsize}\n` +
    `tx_slots:   ${g.txSlots}\n` +
    `rx_slots:   ${g.rxSlots}\n` +
    `tx_rings:   ${g.txRings}\n` +
    `rx_rings    ${g.rxRings}\n` +
    `mem_id:     ${g.memId}\n`
  );
}

/** `-n -v` output (with valectl's `rx_ring:`). */
export function formatNewIf(g: InfoResult): string {
  return `tx_slots:   ${g.txSlots}\nrx_slots:   ${g.rxSlots}\ntx_rings:   ${g.txRings}\nrx_ring:    ${g.rxRings}\nmem_id:     ${g.memId}\n`;
}

function table(rows: string[][], rightFrom = 1): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => (i < rightFrom ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')
    .concat('\n');
}

/** Columns of ports per block of the counters table. */
const PORTS_PER_BLOCK = 6;

/**
 * `--stats` as text: per switch, a counters table (counters down, ports
 * across, plus the switch total, which includes ports that have gone) and
 * the MAC table (MAC, port, age).
 */
export function formatStats(switches: readonly SwitchStats[]): string {
  if (!switches.length) return 'no switches: vale-ts hosts no ports\n';
  const blocks: string[] = [];
  for (const s of switches) {
    const out: string[] = [];
    const np = s.portsTotal ?? s.ports.length;
    const head = s.gone ? `${s.name}: gone (no ports), its counters kept` : `${s.name} bridge_idx ${s.bridgeIndex}: ${np} port${np === 1 ? '' : 's'}${np > s.ports.length ? ` (counters of the first ${s.ports.length})` : ''}`;
    out.push(`${head}\n`);
    const names: string[] = [];
    for (const p of s.ports) for (const k of Object.keys(p.counters)) if (!names.includes(k)) names.push(k);
    for (const k of Object.keys(s.totals)) if (!names.includes(k)) names.push(k);
    const cols: { head: string; c: Record<string, number> }[] = s.ports.map((p) => ({
      head: `${p.name} (${p.portIndex})`,
      c: p.occupancy ? { ...p.counters, inFlight: p.occupancy.txQueued, rxQueued: p.occupancy.rxQueued } : p.counters,
    }));
    // ports that have gone, with their last counters (until retention or vale-ctl-ts -r NAME)
    for (const d of s.departedPorts ?? []) cols.push({ head: `${d.name} (gone)`, c: d.counters });
    if (cols.some((c) => c.c['inFlight'] !== undefined)) names.push('inFlight', 'rxQueued');
    // ports in blocks, the total after the last block
    for (let b = 0; b === 0 || b < cols.length; b += PORTS_PER_BLOCK) {
      const block = cols.slice(b, b + PORTS_PER_BLOCK);
      if (b + PORTS_PER_BLOCK >= cols.length) block.push({ head: 'total', c: s.conservation ? { ...s.totals, inFlight: s.conservation.inFlight, rxQueued: s.conservation.rxQueued } : s.totals });
      const rows = [['counter', ...block.map((x) => x.head)]];
      for (const k of names) rows.push([k, ...block.map((x) => String(x.c[k] ?? 0))]);
      out.push(table(rows));
    }
    // driver ports (TAP, socket netdevs, ...): what serves them and the driver's own counters
    for (const p of s.ports) {
      if (!p.driver) continue;
      const cs = Object.entries(p.driver.counters).filter(([k, v]) => v !== 0 || k.startsWith('drop'));
      out.push(`driver of ${p.name}: ${p.driver.describe}\n${cs.map(([k, v]) => `  ${k} ${v}`).join('\n')}\n`);
    }
    for (const m of s.monitors ?? []) out.push(`monitor ${m.name} of ${m.watches}: copies ${m.counters['txFrames'] ?? 0}, dropMonitor ${m.counters['dropMonitor'] ?? 0}\n`);
    if (s.createdAt) out.push(`created ${s.createdAt}, up ${Math.round(s.uptimeS ?? 0)} s, last activity ${s.lastActivityAt}\n`);
    const k = s.conservation;
    if (k) {
      // each unicast frame taken is one copy, each flooded frame one per other port; every copy is delivered or dropped
      const eq = k.copies === k.delivered + k.dropped ? ' (copies = delivered + dropped)' : ' (copies != delivered + dropped: a frame is unaccounted for)';
      out.push(
        `frames: taken ${k.taken}, flooded ${k.flooded}, copies ${k.copies}, delivered ${k.delivered}, dropped ${k.dropped}${eq}; ` +
          `in flight ${k.inFlight} (published, not yet taken); ${k.rxQueued} delivered, not yet read\n`,
      );
    }
    const mc = Object.entries(s.macTableCounters)
      .filter(([k]) => k !== 'size')
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
    const n = s.macTable.length;
    // the switch sends the first entries only (a table may hold millions)
    const total = s.macTableTotal ?? n;
    const shown = total > n ? `, showing the first ${n}` : '';
    out.push(`MAC table: ${total} entr${total === 1 ? 'y' : 'ies'}${shown}${mc ? ` (${mc})` : ''}\n`);
    if (n) {
      const rows = [['mac', 'port', 'age']];
      for (const e of [...s.macTable].sort((x, y) => x.port.localeCompare(y.port) || x.mac.localeCompare(y.mac))) {
        rows.push([e.mac, e.port, `${(e.ageMs / 1000).toFixed(1)}s`]);
      }
      out.push(table(rows, 2));
    }
    blocks.push(out.join(''));
  }
  return blocks.join('\n');
}
