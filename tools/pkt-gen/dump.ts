/**
 * pkt-gen's `-X` hex dump (`dump_payload`), printed to stdout for every
 * packet sent or received: a header line naming ring, slot, buffer, flags
 * and length, then 16 bytes per line as hex and printable characters.
 *
 * As in pkt-gen, a last line with fewer than 16 bytes shows only the hex
 * part (pkt-gen's buffer is cut by the NUL its last hex `sprintf` leaves).
 *
 * @module
 */

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/**
 * The dump of one slot, newline-terminated lines.
 *
 * @param ringPtr how the ring is named (pkt-gen prints its address)
 * @param cur slot index
 * @param bufIdx buffer index of the slot
 * @param flags slot flags
 * @param frame the slot's bytes (its `len` bytes)
 */
export function dumpPayload(ringPtr: string, cur: number, bufIdx: number, flags: number, frame: Uint8Array): string {
  const len = frame.length;
  let out =
    `ring ${ringPtr} cur ${String(cur).padStart(5)} [buf ${String(bufIdx).padStart(6)} ` +
    `flags 0x${flags.toString(16).padStart(4, '0')} len ${String(len).padStart(5)}]\n`;
  for (let i = 0; i < len; i += 16) {
    const n = Math.min(16, len - i);
    let line = `${String(i).padStart(5)}: `;
    for (let j = 0; j < n; j++) line += `${HEX[frame[i + j]!]} `;
    if (n === 16) {
      for (let j = 0; j < 16; j++) {
        const c = frame[i + j]!;
        line += c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : '.';
      }
    }
    out += line + '\n';
  }
  return out;
}

/** How the dump names a ring: a pointer-like hex number derived from its offset in the region. */
export function ringPointer(ringOffset: number): string {
  return `0x${ringOffset.toString(16)}`;
}
