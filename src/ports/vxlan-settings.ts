/**
 * The settings of a vxlan port and the form of each value: the one list that
 * the driver checks specs against (./vxlan.ts) and vale-ctl-ts's `--vxlan`
 * parses and prints in its usage. No addon here, so the CLI can read it
 * without loading the driver.
 *
 * @module
 */

/** A vxlan setting: its value's form (usage text) and whether it repeats (the driver reads numbers from text itself). */
export interface VxlanSettingForm {
  readonly value: string;
  readonly repeats?: true;
}

/** Every vxlan setting, in the order the usage text gives them (docs/vxlan.md says what each does). */
export const VXLAN_SETTINGS = {
  vni: { value: 'N' },
  local: { value: 'ADDR[:PORT]' },
  remote: { value: 'ADDR', repeats: true },
  group: { value: 'MCAST' },
  dev: { value: 'IF' },
  fdb: { value: 'MAC@ADDR', repeats: true },
  dstport: { value: 'P' },
  ageing: { value: 'S' },
  srcport: { value: 'MIN-MAX|fixed' },
  ttl: { value: 'N' },
  shortcut: { value: 'on|off' },
  shortcutdir: { value: 'DIR' },
  shortcuthandshakems: { value: 'MS' },
  inline: { value: 'on|off' },
  gso: { value: 'on|off' },
  rcvbuf: { value: 'BYTES' },
} as const satisfies Record<string, VxlanSettingForm>;

/** A vxlan setting's name. */
export type VxlanSetting = keyof typeof VXLAN_SETTINGS;

/** The setting names, in table order. */
export const VXLAN_SETTING_NAMES = Object.keys(VXLAN_SETTINGS) as readonly VxlanSetting[];
