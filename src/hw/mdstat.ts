import { HwError } from './errors';

/**
 * Parser for /proc/mdstat (the format md.c's md_seq_show writes). Pure: text in, a typed
 * view out. It reads each array as one block -- its header line plus every line up to the
 * next array -- joined by spaces, so lines wrapped or un-indented by a mail client or a web
 * page (see test/fixtures/hw) parse the same as the kernel's own output. Text that is not
 * mdstat, or an array block that cannot be read, is a CAIRN_HW_PARSE error naming the array.
 */
export type MdSyncAction = 'resync' | 'recovery' | 'reshape' | 'check' | 'repair';

export type MdArrayState = 'clean' | 'degraded' | 'resyncing' | 'recovering' | 'checking' | 'reshaping' | 'inactive' | 'failed';

export interface MdMember {
  name: string; // kernel name: sdb1, nvme0n1p2, loop3
  slot: number; // the [n] after the name: descriptor index, not the array position
  faulty: boolean; // (F)
  spare: boolean; // (S)
  writeMostly: boolean; // (W)
  replacement: boolean; // (R)
  journal: boolean; // (J)
}

export interface MdSyncProgress {
  action: MdSyncAction;
  percent: number;
  doneKiB: number | null;
  totalKiB: number | null;
  finishMinutes: number | null;
  speedKiBps: number | null;
}

export interface MdArrayStat {
  name: string;
  active: boolean;
  readOnly: 'auto-read-only' | 'read-only' | null;
  level: string | null;
  members: MdMember[];
  sizeKiB: number;
  metadata: string | null; // "1.2", "external:imsm"; null when the kernel prints none (0.90)
  chunkKiB: number | null;
  raidDisks: number | null; // [n/m]: n
  workingDisks: number | null; // [n/m]: m
  memberStatus: string | null; // "U_UU"
  sync: MdSyncProgress | null;
  syncPending: string | null; // "resync=DELAYED", "resync=PENDING"
  bitmap: { pages: number; totalPages: number; chunkKiB: number } | null;
  state: MdArrayState;
  degraded: boolean;
}

export interface MdStat {
  personalities: string[];
  arrays: MdArrayStat[];
}

const HEADER = /^(md[A-Za-z0-9_]*\d)\s*:\s*(.*)$/;
const MEMBER = /^([A-Za-z0-9_.:!-]+)\[(\d+)\]((?:\([A-Za-z]\))*)$/;
const LEVEL = /^(raid\d+|linear|multipath|faulty)$/;
const SYNC = /\b(resync|recovery|reshape|check|repair)\s*=\s*([0-9.]+)%(?:\s*\((\d+)\/(\d+)\))?(?:\s*finish=([0-9.]+)min)?(?:\s*speed=(\d+)K\/sec)?/;

function parseError(msg: string, details?: Record<string, unknown>): HwError {
  return new HwError('CAIRN_HW_PARSE', msg, details);
}

export function parseMdstat(text: string): MdStat {
  if (typeof text !== 'string') throw parseError('mdstat input is not text');
  const lines = text.replace(/\r/g, '').split('\n');
  const preamble: string[] = [];
  const blocks: { name: string; lines: string[] }[] = [];
  let sawUnused = false;
  for (const raw of lines) {
    const line = raw.replace(/\s+$/, '');
    if (/^unused devices\s*:/.test(line)) {
      sawUnused = true;
      continue;
    }
    if (sawUnused) continue;
    const h = HEADER.exec(line);
    if (h) {
      blocks.push({ name: h[1], lines: [h[2]] });
      continue;
    }
    if (blocks.length === 0) preamble.push(line);
    else blocks[blocks.length - 1].lines.push(line);
  }
  const pre = preamble.join(' ');
  const hasPersonalities = /Personalities\s*:/.test(pre);
  if (!hasPersonalities && blocks.length === 0) {
    if (text.trim() === '') throw parseError('mdstat is empty: expected a "Personalities :" line (is the md driver loaded?)');
    throw parseError(`this does not look like /proc/mdstat (no "Personalities" line and no mdN array): ${JSON.stringify(text.slice(0, 60))}`);
  }
  if (!hasPersonalities && pre.trim() !== '') {
    throw parseError(`unexpected text before the first array in mdstat: ${JSON.stringify(pre.trim().slice(0, 60))}`);
  }
  const personalities = hasPersonalities ? [...pre.replace(/^.*?Personalities\s*:/, '').matchAll(/\[([^\]]+)\]/g)].map((m) => m[1]) : [];
  const arrays = blocks.map((b) => parseBlock(b.name, b.lines.join(' ').replace(/\s+/g, ' ').trim()));
  return { personalities, arrays };
}

function parseBlock(name: string, text: string): MdArrayStat {
  const tokens = text.split(' ');
  let i = 0;
  const activity = tokens[i++];
  if (activity !== 'active' && activity !== 'inactive') {
    throw parseError(`array ${name}: expected "active" or "inactive", found ${JSON.stringify(activity ?? '')}`, { array: name });
  }
  let readOnly: MdArrayStat['readOnly'] = null;
  if (tokens[i] === '(auto-read-only)' || tokens[i] === '(read-only)') {
    readOnly = tokens[i] === '(auto-read-only)' ? 'auto-read-only' : 'read-only';
    i++;
  }
  let level: string | null = null;
  if (tokens[i] !== undefined && LEVEL.test(tokens[i])) level = tokens[i++];
  const members: MdMember[] = [];
  while (i < tokens.length && !(/^\d+$/.test(tokens[i]) && tokens[i + 1] === 'blocks')) {
    const tok = tokens[i++];
    const m = MEMBER.exec(tok);
    if (!m) throw parseError(`array ${name}: cannot read member ${JSON.stringify(tok.slice(0, 40))} (expected name[slot] with optional (F)/(S)/(W)/(R)/(J))`, { array: name });
    const flags = [...m[3].matchAll(/\(([A-Za-z])\)/g)].map((f) => f[1]);
    for (const f of flags) {
      if (!'FSWRJ'.includes(f)) throw parseError(`array ${name}: member ${m[1]} has an unknown state flag (${f})`, { array: name });
    }
    members.push({
      name: m[1],
      slot: Number(m[2]),
      faulty: flags.includes('F'),
      spare: flags.includes('S'),
      writeMostly: flags.includes('W'),
      replacement: flags.includes('R'),
      journal: flags.includes('J'),
    });
  }
  if (i >= tokens.length) throw parseError(`array ${name}: no "<n> blocks" size line`, { array: name });
  const sizeKiB = Number(tokens[i]);
  const rest = tokens.slice(i + 2).join(' ');

  const superM = /\bsuper (\S+)/.exec(rest);
  const chunkM = /\b(\d+)[kK] chunks?\b/.exec(rest);
  const statusM = /\[(\d+)\/(\d+)\]\s*\[([U_]*)\]/.exec(rest);
  let raidDisks: number | null = null;
  let workingDisks: number | null = null;
  let memberStatus: string | null = null;
  if (statusM) {
    raidDisks = Number(statusM[1]);
    workingDisks = Number(statusM[2]);
    memberStatus = statusM[3];
    if (memberStatus.length !== raidDisks || workingDisks > raidDisks) {
      throw parseError(`array ${name}: inconsistent member status [${raidDisks}/${workingDisks}] [${memberStatus}]`, { array: name });
    }
  }
  let sync: MdSyncProgress | null = null;
  const syncM = SYNC.exec(rest);
  if (syncM) {
    const pct = Number(syncM[2]);
    if (!Number.isFinite(pct) || pct < 0 || pct > 100) throw parseError(`array ${name}: ${syncM[1]} percentage ${syncM[2]} is out of range`, { array: name });
    sync = {
      action: syncM[1] as MdSyncAction,
      percent: pct,
      doneKiB: syncM[3] !== undefined ? Number(syncM[3]) : null,
      totalKiB: syncM[4] !== undefined ? Number(syncM[4]) : null,
      finishMinutes: syncM[5] !== undefined ? Number(syncM[5]) : null,
      speedKiBps: syncM[6] !== undefined ? Number(syncM[6]) : null,
    };
  } else if (/\b(resync|recovery|reshape|check|repair)\s+=/.test(rest)) {
    throw parseError(`array ${name}: cannot read the progress line ${JSON.stringify(rest.slice(0, 80))}`, { array: name });
  }
  const pendingM = /\b(resync|recovery|reshape)=(DELAYED|PENDING|REMOTE)\b/.exec(rest);
  const bitmapM = /bitmap: (\d+)\/(\d+) pages \[\d+KB\], (\d+)KB chunk/.exec(rest);

  const active = activity === 'active';
  const degraded = active && raidDisks !== null && workingDisks !== null && workingDisks < raidDisks;
  const arr: MdArrayStat = {
    name,
    active,
    readOnly,
    level,
    members,
    sizeKiB,
    metadata: superM ? superM[1] : null,
    chunkKiB: chunkM ? Number(chunkM[1]) : null,
    raidDisks,
    workingDisks,
    memberStatus,
    sync,
    syncPending: pendingM ? `${pendingM[1]}=${pendingM[2]}` : null,
    bitmap: bitmapM ? { pages: Number(bitmapM[1]), totalPages: Number(bitmapM[2]), chunkKiB: Number(bitmapM[3]) } : null,
    state: 'clean',
    degraded,
  };
  arr.state = deriveState(arr);
  return arr;
}

/** How many members a level can lose and keep the data. */
export function redundancyOf(level: string | null, raidDisks: number): number {
  switch (level) {
    case 'raid1':
      return Math.max(0, raidDisks - 1);
    case 'raid4':
    case 'raid5':
      return 1;
    case 'raid6':
      return 2;
    case 'raid10':
      // near=2: one loss is always survivable; up to half can be, if no two are copies of
      // each other. mdstat does not say which, so only more than half is certainly fatal.
      return Math.floor(raidDisks / 2);
    default:
      return 0; // raid0, linear, unknown
  }
}

function deriveState(a: MdArrayStat): MdArrayState {
  if (!a.active) return 'inactive';
  if (a.raidDisks !== null && a.workingDisks !== null && a.raidDisks - a.workingDisks > redundancyOf(a.level, a.raidDisks)) return 'failed';
  if (a.sync) {
    switch (a.sync.action) {
      case 'recovery':
        return 'recovering';
      case 'resync':
        return 'resyncing';
      case 'reshape':
        return 'reshaping';
      default:
        return a.degraded ? 'degraded' : 'checking';
    }
  }
  return a.degraded ? 'degraded' : 'clean';
}
