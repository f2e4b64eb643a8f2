import { Clock } from './clock';
import { Raid, RaidArray, RaidStatus } from './raid';

/**
 * Watches RAID state by polling (mdadm --monitor would need root and a mail/program hook;
 * polling /proc/mdstat is unprivileged and what the LEDs need). Each poll is compared with
 * the previous one and the differences come out as events.
 */
export type RaidEvent =
  | { type: 'array-appeared'; array: string }
  | { type: 'array-gone'; array: string }
  | { type: 'degraded'; array: string }
  | { type: 'member-failed'; array: string; device: string }
  | { type: 'rebuild-started'; array: string; device: string | null }
  | { type: 'rebuild-progress'; array: string; percent: number }
  | { type: 'rebuilt'; array: string }
  | { type: 'array-failed'; array: string }
  | { type: 'state-changed'; array: string; from: string; to: string };

export function diffRaid(prev: RaidStatus | null, next: RaidStatus): RaidEvent[] {
  const events: RaidEvent[] = [];
  const before = new Map((prev?.arrays ?? []).map((a) => [a.name, a]));
  const after = new Map(next.arrays.map((a) => [a.name, a]));
  for (const [name] of before) if (!after.has(name)) events.push({ type: 'array-gone', array: name });
  for (const [name, a] of after) {
    const b = before.get(name);
    if (!b) {
      if (prev) events.push({ type: 'array-appeared', array: name });
      if (a.state === 'failed') events.push({ type: 'array-failed', array: name });
      else if (a.degraded) events.push({ type: 'degraded', array: name });
      continue;
    }
    events.push(...diffArray(b, a));
  }
  return events;
}

function diffArray(b: RaidArray, a: RaidArray): RaidEvent[] {
  const out: RaidEvent[] = [];
  const name = a.name;
  for (const m of a.members) {
    const old = b.members.find((x) => x.device === m.device);
    if (m.state === 'faulty' && old?.state !== 'faulty') out.push({ type: 'member-failed', array: name, device: m.device });
  }
  if (a.state !== b.state) out.push({ type: 'state-changed', array: name, from: b.state, to: a.state });
  if (a.state === 'failed' && b.state !== 'failed') out.push({ type: 'array-failed', array: name });
  if (a.degraded && !b.degraded) out.push({ type: 'degraded', array: name });
  const rebuilding = a.sync?.action === 'recovery';
  const wasRebuilding = b.sync?.action === 'recovery';
  if (rebuilding && !wasRebuilding) out.push({ type: 'rebuild-started', array: name, device: a.members.find((m) => m.state === 'rebuilding')?.device ?? null });
  if (rebuilding && wasRebuilding && Math.floor(a.sync!.percent) !== Math.floor(b.sync!.percent)) out.push({ type: 'rebuild-progress', array: name, percent: a.sync!.percent });
  if (!rebuilding && wasRebuilding && !a.degraded) out.push({ type: 'rebuilt', array: name });
  return out;
}

export interface RaidWatch {
  stop(): void;
  /** Poll now (also what the timer calls); resolves with the events of this poll. */
  poll(): Promise<RaidEvent[]>;
}

export function watchRaid(
  raid: Raid,
  opts: { clock: Clock; intervalMs?: number; onChange: (status: RaidStatus, events: RaidEvent[]) => void; onError?: (err: unknown) => void },
): RaidWatch {
  let last: RaidStatus | null = null;
  let busy = false;
  const poll = async (): Promise<RaidEvent[]> => {
    if (busy) return [];
    busy = true;
    try {
      const next = await raid.status();
      const events = diffRaid(last, next);
      const first = last === null;
      last = next;
      if (first || events.length > 0) opts.onChange(next, events);
      return events;
    } catch (err) {
      opts.onError?.(err);
      return [];
    } finally {
      busy = false;
    }
  };
  const handle = opts.clock.setInterval(() => void poll(), opts.intervalMs ?? 5000);
  return {
    poll,
    stop: () => opts.clock.clearInterval(handle),
  };
}
