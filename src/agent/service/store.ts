import fs from 'node:fs';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { CairnError, errnoCode } from '../../core/errors';
import { isValidSourceName } from '../../core/api';
import { AgentHome } from '../state';
import { ScheduleSpec } from './schedule-spec';

/**
 * The agent service's files in $CAIRN_HOME:
 *   schedule.json              what to back up and when (written by `cairn schedule`)
 *   service/<key>.state.json   per source: last run, its outcome, pending retry (written only
 *                              under that source's lock, so processes never race on it)
 *   service/<key>.lock         held while a backup of the source runs (any process)
 *   service/agent.lock         held by the running `cairn agent run`
 *   service/service.json       pid and start of the running service (for `cairn status`)
 * <key> is a hash of the source name (names hold slashes and spaces).
 */
export interface ScheduleEntry {
  source: string;
  paths: string[];
  spec: ScheduleSpec;
  added: string;
}

interface ScheduleFile {
  format: 1;
  entries: ScheduleEntry[];
}

export type Outcome = 'ok' | 'warnings' | 'failed' | 'unreachable' | 'refused' | 'interrupted';

export interface SourceState {
  source: string;
  /** start of the latest attempt */
  last_started?: string;
  last_finished?: string;
  last_outcome?: Outcome;
  last_error?: { code: string; message: string };
  last_snapshot?: string;
  /** where the last good backup went: the box, or its secondary while the box was down */
  last_target?: 'box' | 'secondary';
  last_ok?: string;
  last_stats?: { files: number; bytes_scanned: number; bytes_uploaded: number; duration_s: number; warnings: number };
  /** start of the first attempt of the current run (retries keep it) */
  cycle_started?: string;
  /** consecutive unreachable attempts in the current run */
  attempt: number;
  retry_at?: string;
  running?: { pid: number; started: string };
}

export interface ServiceInfo {
  pid: number;
  started: string;
}

function writeJsonAtomic(file: string, value: unknown): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = fs.openSync(tmp, 'wx', 0o600);
  try {
    fs.writeFileSync(fd, JSON.stringify(value, null, 2) + '\n');
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

function readJson<T>(file: string): T | undefined {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new CairnError('CAIRN_USAGE', `${file} is not valid JSON; fix or remove it`);
  }
}

export function sourceKey(source: string): string {
  return createHash('sha256').update(source).digest('hex').slice(0, 20);
}

export class ServiceStore {
  constructor(readonly home: AgentHome) {}

  get scheduleFile(): string { return path.join(this.home.root, 'schedule.json'); }
  get dir(): string { return path.join(this.home.root, 'service'); }
  get agentLock(): string { return path.join(this.dir, 'agent.lock'); }
  get serviceInfoFile(): string { return path.join(this.dir, 'service.json'); }
  stateFile(source: string): string { return path.join(this.dir, `${sourceKey(source)}.state.json`); }
  lockFile(source: string): string { return path.join(this.dir, `${sourceKey(source)}.lock`); }

  schedules(): ScheduleEntry[] {
    const f = readJson<ScheduleFile>(this.scheduleFile);
    if (!f) return [];
    if (f.format !== 1 || !Array.isArray(f.entries)) throw new CairnError('CAIRN_USAGE', `${this.scheduleFile} has an unknown format`);
    return f.entries.filter((e) => typeof e.source === 'string' && isValidSourceName(e.source) && Array.isArray(e.paths) && e.paths.length > 0 && e.spec);
  }

  /** Adds or replaces the schedule of `entry.source`. */
  putSchedule(entry: ScheduleEntry): void {
    const entries = this.schedules().filter((e) => e.source !== entry.source);
    entries.push(entry);
    this.home.ensure();
    writeJsonAtomic(this.scheduleFile, { format: 1, entries } satisfies ScheduleFile);
  }

  removeSchedule(source: string): boolean {
    const all = this.schedules();
    const entries = all.filter((e) => e.source !== source);
    if (entries.length === all.length) return false;
    writeJsonAtomic(this.scheduleFile, { format: 1, entries } satisfies ScheduleFile);
    fs.rmSync(this.stateFile(source), { force: true });
    return true;
  }

  state(source: string): SourceState {
    const s = readJson<SourceState>(this.stateFile(source));
    return s && s.source === source ? { ...s, attempt: Number.isInteger(s.attempt) ? s.attempt : 0 } : { source, attempt: 0 };
  }

  /** Call only while holding the source's lock. */
  saveState(s: SourceState): void {
    writeJsonAtomic(this.stateFile(s.source), s);
  }

  serviceInfo(): ServiceInfo | undefined {
    return readJson<ServiceInfo>(this.serviceInfoFile);
  }

  saveServiceInfo(info: ServiceInfo | undefined): void {
    if (info) writeJsonAtomic(this.serviceInfoFile, info);
    else fs.rmSync(this.serviceInfoFile, { force: true });
  }
}
