import { HwError } from './errors';

/**
 * Parser for `smartctl -j` (smartmontools' JSON output) and the health verdict Cairn draws
 * from it. smartctl's exit status is a bit mask (bit 0: bad command line, bit 1: device could
 * not be opened, bit 3: SMART says the disk is failing, ...); the JSON carries it too, so the
 * parser reads everything from the text.
 */
export type DiskHealth = 'ok' | 'warning' | 'failing' | 'unknown';

export interface SmartReport {
  device: string | null;
  model: string | null;
  serial: string | null;
  /** SMART data could be read at all (false for loop devices, virtio disks, some USB bridges). */
  available: boolean;
  passed: boolean | null;
  temperatureC: number | null;
  reallocatedSectors: number | null;
  pendingSectors: number | null;
  offlineUncorrectable: number | null;
  mediaErrors: number | null; // NVMe
  criticalWarning: number | null; // NVMe
  powerOnHours: number | null;
  exitStatus: number | null;
  messages: string[];
  health: DiskHealth;
  reasons: string[];
}

type Json = Record<string, unknown>;

function obj(v: unknown): Json | null {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : null;
}

function numOrNull(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

function strOrNull(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

export interface SmartThresholds {
  /** Reallocated sectors at or above this count make the disk "failing"; fewer, a warning. */
  reallocatedFailing: number;
  /** Degrees Celsius at or above which the disk gets a warning. */
  hotC: number;
}

export const DEFAULT_SMART_THRESHOLDS: SmartThresholds = { reallocatedFailing: 100, hotC: 55 };

export function parseSmartctlJson(text: string, thresholds: SmartThresholds = DEFAULT_SMART_THRESHOLDS): SmartReport {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new HwError('CAIRN_HW_PARSE', `smartctl output is not JSON (was smartctl run with -j?): ${(err as Error).message}`);
  }
  const root = obj(doc);
  const smartctl = root ? obj(root.smartctl) : null;
  if (!root || (!smartctl && !root.json_format_version)) {
    throw new HwError('CAIRN_HW_PARSE', 'JSON is not smartctl output (no "smartctl" section)');
  }
  const messages = Array.isArray(smartctl?.messages)
    ? (smartctl!.messages as unknown[]).map((m) => strOrNull(obj(m)?.string)).filter((s): s is string => s !== null)
    : [];
  const device = obj(root.device);
  const status = obj(root.smart_status);
  const nvme = obj(root.nvme_smart_health_information_log);
  const table = obj(root.ata_smart_attributes)?.table;
  const attr = (id: number): number | null => {
    if (!Array.isArray(table)) return null;
    const row = (table as unknown[]).map(obj).find((r) => r?.id === id);
    return row ? numOrNull(obj(row.raw)?.value) : null;
  };
  let temperatureC = numOrNull(obj(root.temperature)?.current) ?? numOrNull(nvme?.temperature);
  if (temperatureC === null && attr(194) !== null) temperatureC = (attr(194) as number) & 0xff; // raw packs min/max above the low byte
  const report: SmartReport = {
    device: strOrNull(device?.name),
    model: strOrNull(root.model_name),
    serial: strOrNull(root.serial_number),
    available: status !== null || Array.isArray(table) || nvme !== null,
    passed: typeof status?.passed === 'boolean' ? status.passed : null,
    temperatureC,
    reallocatedSectors: attr(5),
    pendingSectors: attr(197),
    offlineUncorrectable: attr(198),
    mediaErrors: numOrNull(nvme?.media_errors),
    criticalWarning: numOrNull(nvme?.critical_warning),
    powerOnHours: numOrNull(obj(root.power_on_time)?.hours) ?? numOrNull(nvme?.power_on_hours) ?? attr(9),
    exitStatus: numOrNull(smartctl?.exit_status),
    messages,
    health: 'unknown',
    reasons: [],
  };
  assess(report, thresholds);
  return report;
}

function assess(r: SmartReport, t: SmartThresholds): void {
  const failing: string[] = [];
  const warning: string[] = [];
  if (r.passed === false) failing.push('SMART overall health check FAILED');
  if ((r.pendingSectors ?? 0) > 0) failing.push(`${r.pendingSectors} sectors pending reallocation`);
  if ((r.offlineUncorrectable ?? 0) > 0) failing.push(`${r.offlineUncorrectable} uncorrectable sectors`);
  if ((r.mediaErrors ?? 0) > 0) failing.push(`${r.mediaErrors} media errors`);
  if ((r.criticalWarning ?? 0) !== 0) failing.push(`NVMe critical warning 0x${(r.criticalWarning ?? 0).toString(16)}`);
  const realloc = r.reallocatedSectors ?? 0;
  if (realloc >= t.reallocatedFailing) failing.push(`${realloc} reallocated sectors`);
  else if (realloc > 0) warning.push(`${realloc} reallocated sectors`);
  if (r.temperatureC !== null && r.temperatureC >= t.hotC) warning.push(`running hot (${r.temperatureC} °C)`);
  if (failing.length > 0) {
    r.health = 'failing';
    r.reasons = [...failing, ...warning];
  } else if (warning.length > 0) {
    r.health = 'warning';
    r.reasons = warning;
  } else if (r.available && r.passed !== null) {
    r.health = 'ok';
  } else {
    r.health = 'unknown';
    r.reasons = r.messages.length > 0 ? r.messages : ['no SMART data'];
  }
}
