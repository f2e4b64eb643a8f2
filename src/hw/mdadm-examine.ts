import { HwError } from './errors';

/**
 * Parser for `mdadm --examine <member>`: the superblock one disk carries. Used to recognise a
 * disk that belongs to an array the kernel has not assembled (a disk moved from another box,
 * a stopped array) so it is not offered as "free".
 */
export interface MdExamine {
  device: string;
  superblock: boolean;
  fields: Record<string, string>;
  arrayUuid: string | null;
  name: string | null;
  level: string | null;
  raidDevices: number | null;
  events: number | null;
  /** "Active device 2" -> 2; "spare"; "Replacement device 1" -> "replacement" */
  role: number | 'spare' | 'replacement' | string | null;
  /** "AAA." -> ['A','A','A','.'] */
  arrayState: string[] | null;
}

export function parseMdadmExamine(text: string): MdExamine {
  if (typeof text !== 'string') throw new HwError('CAIRN_HW_PARSE', 'mdadm --examine output is not text');
  const noSb = /^mdadm: No md superblock detected on (\S+?)\.?\s*$/m.exec(text);
  if (noSb) {
    return { device: noSb[1], superblock: false, fields: {}, arrayUuid: null, name: null, level: null, raidDevices: null, events: null, role: null, arrayState: null };
  }
  const lines = text.replace(/\r/g, '').split('\n');
  const first = lines.findIndex((l) => l.trim() !== '');
  const devM = first >= 0 ? /^\s*(\/dev\/\S+):\s*$/.exec(lines[first]) : null;
  if (!devM) {
    throw new HwError('CAIRN_HW_PARSE', `not mdadm --examine output (expected "/dev/X:" first): ${JSON.stringify((lines[first] ?? '').trim().slice(0, 100))}`);
  }
  const fields: Record<string, string> = {};
  for (const l of lines.slice(first + 1)) {
    const kv = /^\s*([A-Za-z][A-Za-z ]*?)\s*:\s*(.*)$/.exec(l);
    if (kv) fields[kv[1]] = kv[2].trim();
  }
  if (!fields['Magic']) throw new HwError('CAIRN_HW_PARSE', `mdadm --examine output for ${devM[1]} has no "Magic" line`);
  const roleText = fields['Device Role'];
  let role: MdExamine['role'] = null;
  if (roleText !== undefined) {
    const a = /^Active device (\d+)$/.exec(roleText);
    role = a ? Number(a[1]) : /^Replacement device/.test(roleText) ? 'replacement' : roleText.toLowerCase();
  }
  const stateM = fields['Array State'] ? /^([A-Za-z.]+)/.exec(fields['Array State']) : null;
  const events = fields['Events'] !== undefined && /^\d+$/.test(fields['Events']) ? Number(fields['Events']) : null;
  return {
    device: devM[1],
    superblock: true,
    fields,
    arrayUuid: fields['Array UUID'] ?? null,
    name: fields['Name'] ? fields['Name'].replace(/\s+\(local to host .*\)$/, '') : null,
    level: fields['Raid Level'] ?? null,
    raidDevices: fields['Raid Devices'] && /^\d+$/.test(fields['Raid Devices']) ? Number(fields['Raid Devices']) : null,
    events,
    role,
    arrayState: stateM ? stateM[1].split('') : null,
  };
}
