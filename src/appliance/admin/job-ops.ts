import { CairnError } from '../../core/errors';
import { Box } from '../box';
import { applyRetention } from '../jobs/retention';
import type { AdminArgs, AdminOp } from './ops';

/** Admin operations for retention, GC, verify and the jobs history. */
function int(args: AdminArgs, key: string, min: number, max: number): number | undefined {
  const v = args[key];
  if (v === undefined || v === null) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) throw new CairnError('CAIRN_USAGE', `${key} must be a whole number from ${min} to ${max}`);
  return n;
}

function num(args: AdminArgs, key: string): number | undefined {
  const v = args[key];
  if (v === undefined || v === null) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new CairnError('CAIRN_USAGE', `${key} must be a non-negative number`);
  return n;
}

function sources(box: Box, args: AdminArgs) {
  const agentId = typeof args.agent === 'string' ? box.catalog.findAgent(args.agent).id : undefined;
  const source = typeof args.source === 'string' ? args.source : undefined;
  return box.catalog.listSources({ agentId, source });
}

export const jobOps: Record<string, AdminOp> = {
  'sources.list'(box, args) {
    return sources(box, args).map((s) => ({
      id: s.id,
      agent: s.agent_id,
      agent_name: s.agent_name,
      source: s.name,
      keep: s.keep,
      snapshots: s.snapshots,
      last_snapshot: s.last_snapshot === null ? null : new Date(s.last_snapshot).toISOString(),
    }));
  },

  /**
   * Sets how many versions a source keeps. With neither agent nor source it also becomes the
   * default for sources created later. Takes effect at each source's next commit.
   */
  'retention.set'(box, args) {
    const keep = int(args, 'keep', 1, 100_000);
    if (keep === undefined) throw new CairnError('CAIRN_USAGE', 'keep is required');
    const matched = sources(box, args);
    if ((args.agent || args.source) && matched.length === 0) throw new CairnError('CAIRN_USAGE', 'no source matches that agent/source');
    for (const s of matched) box.catalog.setKeep(s.id, keep);
    const isDefault = !args.agent && !args.source;
    if (isDefault) box.catalog.setSetting('retention_default', String(keep));
    box.catalog.event('retention.set', { keep, sources: matched.map((s) => s.id), default: isDefault });
    return { keep, sources: matched.map((s) => ({ agent: s.agent_id, source: s.name, snapshots: s.snapshots })), default: isDefault, applies: 'at the next backup of each source' };
  },

  /** Applies retention now to matching sources (the console's "prune now"). */
  'retention.apply'(box, args) {
    return box.store.commitLock.run(() => sources(box, args).map((s) => applyRetention(box.store, box.catalog, s.id)).filter((r) => r !== undefined));
  },

  'gc.run'(box, args) {
    return box.jobs.gc(num(args, 'grace_ms'));
  },
  'gc.start'(box, args) {
    return box.jobs.start('gc', num(args, 'grace_ms'));
  },
  'verify.run'(box, args) {
    return box.jobs.verify(num(args, 'subset'));
  },
  'verify.start'(box, args) {
    return box.jobs.start('verify', num(args, 'subset'));
  },
  'jobs.list'(box, args) {
    const kind = typeof args.kind === 'string' ? args.kind : undefined;
    return box.catalog.listJobs({ kind, limit: int(args, 'limit', 1, 10_000) ?? 100 }).map((j) => ({
      id: j.id,
      kind: j.kind,
      outcome: j.outcome,
      started: new Date(j.started_at).toISOString(),
      finished: j.finished_at === null ? null : new Date(j.finished_at).toISOString(),
      duration_s: j.finished_at === null ? null : (j.finished_at - j.started_at) / 1000,
      figures: j.figures,
      error: j.error,
      running: j.outcome === 'running' && box.jobs.current === j.kind,
    }));
  },
};
