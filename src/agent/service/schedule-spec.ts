import { CairnError } from '../../core/errors';
import { parseDuration } from '../../core/cli';

/**
 * When a source is backed up: every N (`--every 1h`) or a cron-like spec (`--cron "30 2 * * *"`,
 * five fields: minute hour day-of-month month day-of-week, in local time; `*`, lists `1,5`,
 * ranges `1-5`, steps `*\/15` and `1-30/5`, month and weekday names, `@hourly`, `@daily`,
 * `@weekly`, `@monthly`). As in Vixie cron, when both day fields are restricted a day matching
 * either one counts.
 */
export type ScheduleSpec = { every_ms: number } | { cron: string };

interface CronFields {
  minute: Set<number>;
  hour: Set<number>;
  dom: Set<number>;
  month: Set<number>;
  dow: Set<number>;
  domStar: boolean;
  dowStar: boolean;
}

const ALIASES: Record<string, string> = { '@hourly': '0 * * * *', '@daily': '0 0 * * *', '@midnight': '0 0 * * *', '@weekly': '0 0 * * 0', '@monthly': '0 0 1 * *' };
const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

function bad(spec: string, why: string): CairnError {
  return new CairnError('CAIRN_USAGE', `"${spec}" is not a schedule: ${why}. Use e.g. --every 1h or --cron "30 2 * * *" (minute hour day month weekday)`);
}

function parseField(spec: string, text: string, min: number, max: number, names?: string[]): { set: Set<number>; star: boolean } {
  const set = new Set<number>();
  const value = (v: string): number => {
    const lower = v.toLowerCase();
    const named = names ? names.indexOf(lower) : -1;
    if (named >= 0) return named + min;
    if (!/^\d+$/.test(v)) throw bad(spec, `"${v}" is not a number`);
    return Number(v);
  };
  for (const part of text.split(',')) {
    const m = /^(\*|[0-9a-zA-Z]+(?:-[0-9a-zA-Z]+)?)(?:\/(\d+))?$/.exec(part);
    if (!m) throw bad(spec, `cannot read "${part}"`);
    const step = m[2] === undefined ? 1 : Number(m[2]);
    if (step < 1) throw bad(spec, 'a step must be at least 1');
    let lo = min;
    let hi = max;
    if (m[1] !== '*') {
      const [a, b] = m[1].split('-');
      lo = value(a);
      hi = b === undefined ? (m[2] === undefined ? lo : max) : value(b);
    }
    if (lo < min || hi > max || lo > hi) throw bad(spec, `${part} is outside ${min}-${max}`);
    for (let v = lo; v <= hi; v += step) set.add(v);
  }
  return { set, star: text === '*' };
}

export function parseCron(spec: string): CronFields {
  const text = ALIASES[spec.trim().toLowerCase()] ?? spec.trim();
  const f = text.split(/\s+/);
  if (f.length !== 5) throw bad(spec, 'a cron spec has five fields');
  const dow = parseField(spec, f[4], 0, 7, DAYS);
  if (dow.set.has(7)) {
    dow.set.delete(7);
    dow.set.add(0);
  }
  const dom = parseField(spec, f[2], 1, 31);
  return {
    minute: parseField(spec, f[0], 0, 59).set,
    hour: parseField(spec, f[1], 0, 23).set,
    dom: dom.set,
    month: parseField(spec, f[3], 1, 12, MONTHS).set,
    dow: dow.set,
    domStar: dom.star,
    dowStar: dow.star,
  };
}

function dayMatches(c: CronFields, d: Date): boolean {
  const domOk = c.dom.has(d.getDate());
  const dowOk = c.dow.has(d.getDay());
  if (c.domStar || c.dowStar) return domOk && dowOk;
  return domOk || dowOk;
}

/** The first time strictly after `after` (ms) that the cron spec names, in local time. */
export function nextCron(spec: string, after: number): number {
  const c = parseCron(spec);
  const d = new Date(after);
  d.setSeconds(0, 0);
  d.setMinutes(d.getMinutes() + 1);
  const limit = after + 5 * 366 * 86_400_000;
  while (d.getTime() <= limit) {
    if (!c.month.has(d.getMonth() + 1)) {
      d.setMonth(d.getMonth() + 1, 1);
      d.setHours(0, 0, 0, 0);
      continue;
    }
    if (!dayMatches(c, d)) {
      d.setDate(d.getDate() + 1);
      d.setHours(0, 0, 0, 0);
      continue;
    }
    if (!c.hour.has(d.getHours())) {
      d.setHours(d.getHours() + 1, 0, 0, 0);
      continue;
    }
    if (!c.minute.has(d.getMinutes())) {
      d.setMinutes(d.getMinutes() + 1, 0, 0);
      continue;
    }
    return d.getTime();
  }
  throw bad(spec, 'it names no time in the next five years');
}

/** Validates `--every` / `--cron` into a spec (exactly one of them). */
export function scheduleSpecFrom(every: string | undefined, cron: string | undefined): ScheduleSpec {
  if ((every === undefined) === (cron === undefined)) throw new CairnError('CAIRN_USAGE', 'give exactly one of --every DURATION (e.g. 1h) or --cron "MIN HOUR DAY MONTH WEEKDAY"');
  if (every !== undefined) {
    const ms = parseDuration(every);
    if (ms < 60_000) throw new CairnError('CAIRN_USAGE', `--every ${every} is too often; the shortest interval is 1m`);
    return { every_ms: ms };
  }
  nextCron(cron!, Date.now()); // throws on a spec that never fires
  return { cron: cron!.trim() };
}

/** The next regular run after a run that started at `lastStart` (ms); `sinceAdded` when it never ran. */
export function nextRegular(spec: ScheduleSpec, lastStart: number | undefined, added: number): number {
  if ('every_ms' in spec) return lastStart === undefined ? added : lastStart + spec.every_ms;
  return nextCron(spec.cron, lastStart ?? added);
}

export function describeSpec(spec: ScheduleSpec): string {
  if ('cron' in spec) return `cron ${spec.cron}`;
  const ms = spec.every_ms;
  for (const [unit, n] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000]] as const) if (ms % n === 0) return `every ${ms / n}${unit}`;
  return `every ${ms / 1000}s`;
}
