import fs from 'node:fs';
import path from 'node:path';
import { CairnError, errorMessage } from '../../core/errors';
import { Logger } from '../../core/log';
import { CHUNK_ID_BYTES } from '../../core/chunk-id';
import type { StoreSpace } from '../store/space';
import { mergeRefs, sortedContains } from '../store/refs';
import { IdCollector } from '../../core/id-collector';

/**
 * Garbage collection: mark every chunk a snapshot references, sweep the rest.
 *
 * Safety with concurrent uploads and commits (uploads may run during GC):
 * - a chunk whose row was written or confirmed to an agent ("you have it") since the start
 *   of the oldest backup session still open, or within the grace period before GC started,
 *   is never deleted (seen_at): an agent relies on a chunk only between such a confirmation
 *   and its commit, which ends its session;
 * - each sweep batch runs under the store's commit lock, and first marks the refs of every
 *   snapshot committed since marking began; a commit checks its chunks under the same lock,
 *   so a commit either sees a chunk gone (and is refused, nothing lost) or GC sees its refs;
 * - rows are deleted before files: a crash leaves files without rows, which a later run
 *   removes once they are older than the grace period (as it does with stray refs files).
 * GC refuses to run when a snapshot's refs file is missing: it could not know what to keep.
 *
 * Memory: the mark set is 32 bytes per distinct referenced chunk (32 MB per million), the
 * unreferenced ids 32 bytes each, plus 64 KiB per refs file being merged.
 */
export interface GcOptions {
  /** chunks written or confirmed within this many ms before GC started are kept (default 6 h) */
  graceMs?: number;
  log?: Logger;
  now?: () => number;
  /** test hook: awaited between phases and sweep batches */
  onStep?: (step: string) => Promise<void> | void;
}

export interface GcReport {
  snapshots: number;
  chunks_before: number;
  chunks_marked: number;
  chunks_freed: number;
  bytes_freed: number;
  orphan_files_removed: number;
  orphan_refs_removed: number;
  /** pack files deleted (nothing in them referenced) and rewritten (mostly dead) */
  packs_removed: number;
  packs_compacted: number;
  pack_bytes_reclaimed: number;
  duration_s: number;
  peak_rss_mb: number;
}

export const DEFAULT_GC_GRACE_MS = 6 * 3600 * 1000;
const BATCH = 512;

export async function runGc(box: StoreSpace, opts: GcOptions = {}): Promise<GcReport> {
  const now = opts.now ?? Date.now;
  const started = now();
  const session = box.store.oldestOpenSession(started);
  const cutoff = Math.min(started - (opts.graceMs ?? DEFAULT_GC_GRACE_MS), session ?? Infinity);
  const { catalog, store, blobs } = box;
  const jobId = catalog.startJob('gc', started);
  let peak = process.memoryUsage().rss;
  const sample = (): void => {
    peak = Math.max(peak, process.memoryUsage().rss);
  };
  const step = async (s: string): Promise<void> => {
    sample();
    await opts.onStep?.(s);
  };
  try {
    // Mark.
    const marked = new Set(catalog.allSnapshotIds());
    const refFiles = [...marked].map((id) => store.refsPath(id));
    for (const f of refFiles) {
      if (!fs.existsSync(f)) {
        throw new CairnError('CAIRN_STORE_IO', `GC refused: the reference list ${path.basename(f)} of a listed snapshot is missing, so GC cannot know what to keep; run \`cairnd verify\` and restore the file or the snapshot`);
      }
    }
    let live = mergeRefs(refFiles);
    await step('marked');

    // Candidates: rows not in the mark set (walking both in id order).
    // Unreferenced ids, 32 bytes each in one buffer (no per-id object).
    const candidates = new IdCollector();
    let chunksBefore = 0;
    let after: Buffer | null = null;
    let m = 0;
    const liveCount = live.length / CHUNK_ID_BYTES;
    for (;;) {
      const rows = (after
        ? catalog.db.prepare('SELECT id FROM chunks WHERE id > ? ORDER BY id LIMIT 10000').raw().all(after)
        : catalog.db.prepare('SELECT id FROM chunks ORDER BY id LIMIT 10000').raw().all()) as [Buffer][];
      if (rows.length === 0) break;
      for (const [id] of rows) {
        chunksBefore++;
        while (m < liveCount && Buffer.compare(live.subarray(m * CHUNK_ID_BYTES, (m + 1) * CHUNK_ID_BYTES), id) < 0) m++;
        if (!(m < liveCount && live.subarray(m * CHUNK_ID_BYTES, (m + 1) * CHUNK_ID_BYTES).equals(id))) candidates.add(id);
      }
      after = rows[rows.length - 1][0];
      sample();
    }
    await step('candidates');

    // Sweep, batch by batch under the commit lock.
    const touchedPacks = new Set<string>();
    let freed = 0;
    let bytesFreed = 0;
    const cand = candidates.result;
    const candCount = cand.length / CHUNK_ID_BYTES;
    for (let i = 0; i < candCount; i += BATCH) {
      const deleted = await store.commitLock.run(async () => {
        const fresh = catalog.allSnapshotIds().filter((id) => !marked.has(id));
        if (fresh.length) {
          for (const id of fresh) marked.add(id);
          live = mergeRefsWith(live, fresh.map((id) => store.refsPath(id)));
        }
        const batch: Buffer[] = [];
        for (let k = i; k < Math.min(i + BATCH, candCount); k++) {
          const id = Buffer.from(cand.subarray(k * CHUNK_ID_BYTES, (k + 1) * CHUNK_ID_BYTES));
          if (!sortedContains(live, id)) batch.push(id);
        }
        const gone = catalog.deleteChunkRows(batch, cutoff);
        // Files go inside the lock too: an upload of the same id waits and then finds neither row nor file.
        await parallel(gone.filter((d) => d.pack === null), 16, (d) => blobs.remove(d.id));
        for (const d of gone) if (d.pack !== null) touchedPacks.add(d.pack);
        return gone;
      });
      for (const d of deleted) {
        freed++;
        bytesFreed += d.size;
      }
      await step('swept-batch');
    }

    // Leftovers of crashes: chunk files without rows, refs files without snapshots.
    const orphans: Buffer[] = [];
    for await (const id of blobs.list()) {
      if (catalog.hasChunk(id)) continue;
      try {
        if (fs.statSync(blobs.pathOf(id)).mtimeMs < cutoff) orphans.push(id);
      } catch {
        /* vanished meanwhile */
      }
    }
    let orphanFiles = 0;
    for (let i = 0; i < orphans.length; i += BATCH) {
      orphanFiles += await store.commitLock.run(async () => {
        let n = 0;
        const gone = orphans.slice(i, i + BATCH).filter((id) => !catalog.hasChunk(id)); // skip any published meanwhile
        await parallel(gone, 16, (id) => blobs.remove(id));
        n += gone.length;
        return n;
      });
    }
    // Packs: one no row points into any more is deleted; one mostly dead is rewritten with its
    // live blobs (under the commit lock, so no upload or commit interleaves).
    const packs = await sweepPacks(box, touchedPacks, cutoff);
    let orphanRefs = 0;
    const snaps = new Set(catalog.allSnapshotIds());
    for (const name of fs.readdirSync(store.refsDir)) {
      const m2 = /^(.+)\.ids$/.exec(name);
      if (!m2 || snaps.has(m2[1])) continue;
      const file = path.join(store.refsDir, name);
      if (fs.statSync(file).mtimeMs < cutoff) {
        fs.rmSync(file, { force: true });
        orphanRefs++;
      }
    }
    sample();
    const report: GcReport = {
      snapshots: marked.size,
      chunks_before: chunksBefore,
      chunks_marked: liveCount,
      chunks_freed: freed,
      bytes_freed: bytesFreed,
      orphan_files_removed: orphanFiles,
      orphan_refs_removed: orphanRefs,
      packs_removed: packs.removed,
      packs_compacted: packs.compacted,
      pack_bytes_reclaimed: packs.bytes,
      duration_s: (now() - started) / 1000,
      peak_rss_mb: Math.round(peak / 1e6),
    };
    catalog.finishJob(jobId, 'ok', { ...report });
    opts.log?.info('gc.finished', { ...report });
    return report;
  } catch (err) {
    catalog.finishJob(jobId, 'failed', {}, errorMessage(err));
    opts.log?.error('gc.failed', { err: errorMessage(err) });
    throw err;
  }
}

/** A pack is compacted when less than this fraction of it is still referenced. */
const COMPACT_BELOW = 0.5;

async function sweepPacks(box: StoreSpace, touched: Set<string>, cutoff: number): Promise<{ removed: number; compacted: number; bytes: number }> {
  const { catalog, store, blobs } = box;
  let removed = 0;
  let compacted = 0;
  let bytes = 0;
  for (const name of blobs.listPacks()) {
    let st: fs.Stats;
    try {
      st = fs.statSync(blobs.packPath(name));
    } catch {
      continue;
    }
    await store.commitLock.run(async () => {
      const live = catalog.packEntries(name);
      if (live.length === 0) {
        // Emptied by this sweep, or a crash leftover (published, never recorded) old enough.
        if (touched.has(name) || st.mtimeMs < cutoff) {
          await blobs.removePack(name);
          removed++;
          bytes += st.size;
        }
        return;
      }
      const liveBytes = live.reduce((n, r) => n + r.size, 0);
      if (!touched.has(name) || liveBytes >= COMPACT_BELOW * st.size) return;
      const items: { id: Buffer; blob: Buffer }[] = [];
      for (const r of live) items.push({ id: r.id, blob: await blobs.getPacked(name, r.offset, r.size) });
      const fresh = await blobs.stagePack(items);
      try {
        await blobs.publishPack(fresh);
        catalog.movePackEntries(name, fresh.name, fresh.entries);
      } finally {
        await fs.promises.rm(fresh.tmp, { force: true }).catch(() => undefined);
      }
      await blobs.removePack(name);
      compacted++;
      bytes += st.size - liveBytes;
    });
  }
  return { removed, compacted, bytes };
}

async function parallel<T>(items: T[], width: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
}

function mergeRefsWith(live: Buffer, files: string[]): Buffer {
  const extra = mergeRefs(files.filter((f) => fs.existsSync(f)));
  if (extra.length === 0) return live;
  // Both sorted: a plain merge keeps the result sorted and unique.
  const out = Buffer.allocUnsafe(live.length + extra.length);
  let a = 0;
  let b = 0;
  let n = 0;
  while (a < live.length || b < extra.length) {
    let take: Buffer;
    if (b >= extra.length) take = live.subarray(a, (a += CHUNK_ID_BYTES));
    else if (a >= live.length) take = extra.subarray(b, (b += CHUNK_ID_BYTES));
    else {
      const c = Buffer.compare(live.subarray(a, a + CHUNK_ID_BYTES), extra.subarray(b, b + CHUNK_ID_BYTES));
      if (c <= 0) {
        take = live.subarray(a, (a += CHUNK_ID_BYTES));
        if (c === 0) b += CHUNK_ID_BYTES;
      } else take = extra.subarray(b, (b += CHUNK_ID_BYTES));
    }
    take.copy(out, n);
    n += CHUNK_ID_BYTES;
  }
  return out.subarray(0, n);
}
