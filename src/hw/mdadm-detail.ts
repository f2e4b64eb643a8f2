import { HwError } from './errors';

/**
 * Parsers for `mdadm --detail /dev/mdX` (human form) and `mdadm --detail --export`
 * (KEY=VALUE form, what udev uses). Pure; tolerant of lost indentation and blank lines.
 */
export interface MdDetailMember {
  number: number | null;
  major: number;
  minor: number;
  raidDevice: number | null;
  state: string[]; // ["active", "sync"], ["spare", "rebuilding"], ["faulty", "spare"], ["removed"]
  device: string | null;
}

export interface MdDetail {
  device: string;
  fields: Record<string, string>;
  level: string | null;
  state: string[]; // "clean, degraded, recovering" -> ["clean", "degraded", "recovering"]
  raidDevices: number | null;
  totalDevices: number | null;
  activeDevices: number | null;
  workingDevices: number | null;
  failedDevices: number | null;
  spareDevices: number | null;
  arraySizeKiB: number | null;
  uuid: string | null;
  name: string | null;
  /** "Rebuild Status : 10% complete" and friends, keyed by what is running. */
  progress: { action: 'rebuild' | 'resync' | 'check' | 'reshape'; percent: number } | null;
  members: MdDetailMember[];
}

function fail(msg: string): HwError {
  return new HwError('CAIRN_HW_PARSE', msg);
}

function num(s: string | undefined): number | null {
  if (s === undefined) return null;
  const m = /^\s*(\d+)/.exec(s);
  return m ? Number(m[1]) : null;
}

export function parseMdadmDetail(text: string): MdDetail {
  if (typeof text !== 'string') throw fail('mdadm --detail output is not text');
  const lines = text.replace(/\r/g, '').split('\n');
  const first = lines.findIndex((l) => l.trim() !== '');
  const devM = first >= 0 ? /^\s*(\/dev\/\S+):\s*$/.exec(lines[first]) : null;
  if (!devM) {
    const msg = first >= 0 ? lines[first].trim() : '';
    throw fail(`not mdadm --detail output (expected "/dev/mdX:" first)${msg ? `: ${JSON.stringify(msg.slice(0, 100))}` : ''}`);
  }
  const fields: Record<string, string> = {};
  const members: MdDetailMember[] = [];
  let inTable = false;
  for (let i = first + 1; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line) continue;
    if (/^Number\s+Major\s+Minor\s+RaidDevice/.test(line)) {
      inTable = true;
      continue;
    }
    if (inTable) {
      members.push(parseRow(line));
      continue;
    }
    const kv = /^([A-Za-z][A-Za-z ]*?)\s*:\s*(.*)$/.exec(line);
    if (!kv) {
      // mdadm prints some values (e.g. long UUIDs of containers) on a continuation line
      continue;
    }
    fields[kv[1]] = kv[2].trim();
  }
  if (!('Raid Level' in fields) && !('State' in fields)) throw fail(`mdadm --detail output for ${devM[1]} has neither "Raid Level" nor "State"`);
  const progressKey = (['Rebuild Status', 'Resync Status', 'Check Status', 'Reshape Status'] as const).find((k) => k in fields);
  let progress: MdDetail['progress'] = null;
  if (progressKey) {
    const p = /^(\d+(?:\.\d+)?)%/.exec(fields[progressKey]);
    if (!p) throw fail(`cannot read "${progressKey} : ${fields[progressKey]}"`);
    const action = progressKey.split(' ')[0].toLowerCase() as 'rebuild' | 'resync' | 'check' | 'reshape';
    progress = { action, percent: Number(p[1]) };
  }
  return {
    device: devM[1],
    fields,
    level: fields['Raid Level'] ?? null,
    state: (fields['State'] ?? '').split(',').map((s) => s.trim()).filter(Boolean),
    raidDevices: num(fields['Raid Devices']),
    totalDevices: num(fields['Total Devices']),
    activeDevices: num(fields['Active Devices']),
    workingDevices: num(fields['Working Devices']),
    failedDevices: num(fields['Failed Devices']),
    spareDevices: num(fields['Spare Devices']),
    arraySizeKiB: num(fields['Array Size']),
    uuid: fields['UUID'] ?? null,
    name: fields['Name'] ? fields['Name'].replace(/\s+\(local to host .*\)$/, '') : null,
    progress,
    members,
  };
}

function parseRow(line: string): MdDetailMember {
  const t = line.split(/\s+/);
  if (t.length < 4) throw fail(`cannot read mdadm --detail device row ${JSON.stringify(line.slice(0, 80))}`);
  const idx = (s: string): number | null => (s === '-' ? null : /^\d+$/.test(s) ? Number(s) : NaN);
  const number = idx(t[0]);
  const raidDevice = idx(t[3]);
  const major = Number(t[1]);
  const minor = Number(t[2]);
  if (Number.isNaN(number) || Number.isNaN(raidDevice) || !Number.isInteger(major) || !Number.isInteger(minor)) {
    throw fail(`cannot read mdadm --detail device row ${JSON.stringify(line.slice(0, 80))}`);
  }
  const rest = t.slice(4);
  const device = rest.length > 0 && rest[rest.length - 1].startsWith('/dev/') ? rest.pop()! : null;
  return { number, major, minor, raidDevice, state: rest, device };
}

export interface MdExportMember {
  device: string;
  role: number | 'spare' | 'faulty' | 'journal' | string;
}

export interface MdExport {
  vars: Record<string, string>;
  level: string | null;
  devices: number | null;
  metadata: string | null;
  uuid: string | null;
  name: string | null;
  members: MdExportMember[];
}

/** `mdadm --detail --export` and `mdadm --examine --export`: MD_* variables, one per line. */
export function parseMdadmExport(text: string): MdExport {
  if (typeof text !== 'string') throw fail('mdadm --export output is not text');
  const vars: Record<string, string> = {};
  for (const raw of text.replace(/\r/g, '').split('\n')) {
    const line = raw.trim();
    if (!line) continue;
    const m = /^([A-Z][A-Z0-9_a-z]*)=(.*)$/.exec(line);
    if (!m) throw fail(`not mdadm --export output: ${JSON.stringify(line.slice(0, 100))}`);
    vars[m[1]] = m[2];
  }
  if (!Object.keys(vars).some((k) => k.startsWith('MD_'))) throw fail('mdadm --export output has no MD_ variables');
  const members: MdExportMember[] = [];
  for (const [k, v] of Object.entries(vars)) {
    const m = /^MD_DEVICE_(.+)_ROLE$/.exec(k);
    if (!m) continue;
    const dev = vars[`MD_DEVICE_${m[1]}_DEV`];
    if (!dev) throw fail(`mdadm --export names a role for ${m[1]} but no MD_DEVICE_${m[1]}_DEV`);
    members.push({ device: dev, role: /^\d+$/.test(v) ? Number(v) : v });
  }
  members.sort((a, b) => (typeof a.role === 'number' ? a.role : 1e9) - (typeof b.role === 'number' ? b.role : 1e9) || a.device.localeCompare(b.device));
  return {
    vars,
    level: vars.MD_LEVEL ?? null,
    devices: vars.MD_DEVICES !== undefined && /^\d+$/.test(vars.MD_DEVICES) ? Number(vars.MD_DEVICES) : null,
    metadata: vars.MD_METADATA ?? null,
    uuid: vars.MD_UUID ?? null,
    name: vars.MD_NAME ?? null,
    members,
  };
}
