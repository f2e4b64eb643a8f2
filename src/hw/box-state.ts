import { Clock } from './clock';
import { DiskInfo, Disks } from './disks';
import { LedPattern, Leds } from './leds';
import { Raid, RaidStatus } from './raid';

/**
 * The box's hardware status in one place: array state, disk health, running jobs and errors
 * reported by the daemon become one verdict -- healthy, attention or error -- with the
 * reasons a person reads on the console, and the LED pattern that shows it on the front.
 *
 *   error      an array has failed or is not running, or the daemon reported an error
 *   attention  an array is degraded, rebuilding or reshaping; a disk is failing or
 *              warning; no data array exists; RAID is unavailable
 *   healthy    anything else (a resync or a scheduled check is fine)
 *
 * LEDs: error -> 'error', attention -> 'attention', healthy -> 'backup' while a backup job
 * runs, else 'idle'. identify() overlays that for a while (front-panel button, console).
 */
export type BoxHealth = 'healthy' | 'attention' | 'error';

export interface BoxJob {
  id: string;
  kind: string; // 'backup', 'restore', 'verify', 'gc', 'replication'...
  since: string;
}

export interface BoxError {
  source: string;
  message: string;
  at: string;
}

export interface BoxHwStatus {
  state: BoxHealth;
  summary: string;
  reasons: string[];
  profile: string;
  led: { driver: string; pattern: LedPattern; showing: LedPattern };
  raid: RaidStatus;
  disks: DiskInfo[];
  jobs: BoxJob[];
  errors: BoxError[];
  checkedAt: string;
}

/** Pure: the verdict and its reasons. */
export function assessBox(input: { raid: RaidStatus; disks: DiskInfo[]; errors: BoxError[] }): { state: BoxHealth; reasons: string[] } {
  const errors: string[] = [];
  const attention: string[] = [];
  for (const e of input.errors) errors.push(`${e.source}: ${e.message}`);
  if (!input.raid.available) attention.push(input.raid.note ?? 'RAID status unavailable');
  else if (input.raid.arrays.length === 0) attention.push(input.raid.note ? `no data array: ${input.raid.note}` : 'no data array set up yet: create one from the console');
  for (const a of input.raid.arrays) {
    const failed = a.members.filter((m) => m.state === 'faulty').map((m) => m.device);
    const failedText = failed.length > 0 ? ` (failed: ${failed.join(', ')})` : '';
    switch (a.state) {
      case 'failed':
        errors.push(`array ${a.name} has FAILED: more disks are missing than ${a.level ?? 'it'} can survive${failedText}`);
        break;
      case 'inactive':
        errors.push(`array ${a.name} is not running (inactive): the data is offline`);
        break;
      case 'recovering':
        attention.push(`array ${a.name} is rebuilding${a.sync ? ` (${a.sync.percent}%${a.sync.finishMinutes !== null ? `, about ${Math.ceil(a.sync.finishMinutes)} min left` : ''})` : ''}${failedText}`);
        break;
      case 'degraded':
        attention.push(`array ${a.name} is degraded: ${a.workingDisks ?? '?'} of ${a.raidDisks ?? '?'} disks working${failedText}; replace the failed disk`);
        break;
      case 'reshaping':
        attention.push(`array ${a.name} is reshaping${a.sync ? ` (${a.sync.percent}%)` : ''}`);
        break;
      default:
        if (a.degraded) attention.push(`array ${a.name} is degraded${failedText}`);
    }
  }
  for (const d of input.disks) {
    if (d.health.health === 'failing') attention.push(`disk ${d.name}${d.serial ? ` (${d.serial})` : ''} is failing: ${d.health.reasons.join('; ')}`);
    else if (d.health.health === 'warning') attention.push(`disk ${d.name}: ${d.health.reasons.join('; ')}`);
  }
  if (errors.length > 0) return { state: 'error', reasons: [...errors, ...attention] };
  if (attention.length > 0) return { state: 'attention', reasons: attention };
  return { state: 'healthy', reasons: [] };
}

export function patternFor(state: BoxHealth, jobs: BoxJob[]): LedPattern {
  if (state === 'error') return 'error';
  if (state === 'attention') return 'attention';
  return jobs.some((j) => j.kind === 'backup' || j.kind === 'restore') ? 'backup' : 'idle';
}

export class BoxState {
  private jobs = new Map<string, BoxJob>();
  private errors = new Map<string, BoxError>();

  constructor(
    private readonly opts: { raid: Raid; disks: Disks; leds: Leds; clock: Clock; profile: string },
  ) {}

  jobStarted(id: string, kind: string): void {
    this.jobs.set(id, { id, kind, since: new Date(this.opts.clock.now()).toISOString() });
    this.applyLeds();
  }

  jobFinished(id: string): void {
    this.jobs.delete(id);
    this.applyLeds();
  }

  reportError(source: string, message: string): void {
    this.errors.set(source, { source, message, at: new Date(this.opts.clock.now()).toISOString() });
    this.applyLeds();
  }

  clearError(source: string): void {
    this.errors.delete(source);
    this.applyLeds();
  }

  private lastHardwareState: BoxHealth = 'healthy';

  /** Re-applies the LEDs after a job or error change, with the last hardware verdict. */
  private applyLeds(): void {
    const state: BoxHealth = this.errors.size > 0 ? 'error' : this.lastHardwareState;
    this.opts.leds.set(patternFor(state, [...this.jobs.values()]));
  }

  /** Reads RAID and disks, decides, drives the LEDs, returns the status. Never throws. */
  async refresh(): Promise<BoxHwStatus> {
    const raid = await this.opts.raid.status().catch((err: unknown): RaidStatus => ({ available: false, note: `RAID status failed: ${(err as Error).message}`, arrays: [] }));
    let disks: DiskInfo[] = [];
    try {
      disks = await this.opts.disks.list();
      this.errors.delete('disks');
    } catch (err) {
      this.errors.set('disks', { source: 'disks', message: `disk inventory failed: ${(err as Error).message}`, at: new Date(this.opts.clock.now()).toISOString() });
    }
    const errors = [...this.errors.values()];
    const { state, reasons } = assessBox({ raid, disks, errors });
    this.lastHardwareState = assessBox({ raid, disks, errors: [] }).state;
    const jobs = [...this.jobs.values()];
    this.opts.leds.set(patternFor(state, jobs));
    const summary =
      state === 'healthy'
        ? `healthy${jobs.length > 0 ? `, ${jobs.map((j) => j.kind).join(', ')} running` : ''}`
        : `${state}: ${reasons[0]}${reasons.length > 1 ? ` (+${reasons.length - 1} more)` : ''}`;
    return {
      state,
      summary,
      reasons,
      profile: this.opts.profile,
      led: { driver: this.opts.leds.kind, pattern: this.opts.leds.pattern, showing: this.opts.leds.showing },
      raid,
      disks,
      jobs,
      errors,
      checkedAt: new Date(this.opts.clock.now()).toISOString(),
    };
  }
}
