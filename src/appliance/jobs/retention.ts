import fs from 'node:fs';
import { Catalog } from '../store/catalog';
import { ChunkStore } from '../store/chunk-store';
import { Logger } from '../../core/log';

/**
 * Retention ("synthesis"). Every snapshot is a full view over shared chunks, so merging the
 * oldest increment into the next one is dropping the oldest snapshot record; the chunks only
 * it used become garbage for GC. Runs after each commit, inside the commit lock.
 *
 * Order: the catalog row goes first (one transaction), then the refs file. A crash in
 * between leaves a refs file without a row, which GC removes once it is older than its grace.
 */
export interface RetentionResult {
  source: string;
  agent: string;
  keep: number;
  dropped: string[];
}

export function applyRetention(store: ChunkStore, catalog: Catalog, sourceId: number, log?: Logger): RetentionResult | undefined {
  const src = catalog.listSources().find((s) => s.id === sourceId);
  if (!src) return undefined;
  const ids = catalog.sourceSnapshotIds(sourceId);
  if (ids.length <= src.keep) return undefined;
  const started = Date.now();
  const drop = ids.slice(0, ids.length - src.keep);
  // With a secondary linked, each drop leaves a tombstone in the same transaction: replication
  // then drops the snapshot there too, and flow-back never brings it back.
  const mirrored = catalog.getSetting('secondary_linked') === '1';
  for (let i = 0; i < drop.length; i++) {
    const mergedInto = ids[i + 1];
    catalog.db.transaction(() => {
      catalog.deleteSnapshotRow(drop[i]);
      if (mirrored) catalog.addTombstone(drop[i]);
      catalog.event('retention.synthesis', { source: src.name, agent: src.agent_id, dropped: drop[i], merged_into: mergedInto, keep: src.keep });
    })();
    store.forgetRefs(drop[i]);
    fs.rmSync(store.refsPath(drop[i]), { force: true });
    log?.info('retention.synthesis', { source: src.name, agent: src.agent_id, dropped: drop[i], merged_into: mergedInto, keep: src.keep });
  }
  const result = { source: src.name, agent: src.agent_id, keep: src.keep, dropped: drop };
  catalog.recordJob('retention', started, 'ok', { ...result });
  return result;
}
