import fs from 'node:fs';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { errorMessage } from '../../core/errors';
import { Logger } from '../../core/log';
import { ChunkScratch, openChunk } from '../../core/chunk-codec';
import { chunkRefs, readManifest } from '../../core/manifest';
import type { StoreSpace } from '../store/space';
import { sortedContains } from '../store/refs';

/**
 * Verify: re-reads stored chunks and checks header, tag and id with the box's keys. A bad
 * chunk is moved aside into quarantine/ (never deleted) and its catalog row removed, so the
 * next backup that has that content uploads a good copy again; the report names the snapshots
 * and files that reference it, so a user knows what cannot be restored until then.
 */
export interface VerifyOptions {
  /** percentage of chunks to check, 0 < p <= 100; a random slice of the id space each run */
  subsetPercent?: number;
  log?: Logger;
}

export interface BadChunk {
  id: string;
  reason: string;
  quarantined_to: string;
  snapshots: { id: string; agent: string; source: string; files: string[]; manifest_damaged: boolean }[];
}

export interface VerifyReport {
  chunks_checked: number;
  bytes_checked: number;
  bad: BadChunk[];
  subset_percent: number;
  duration_s: number;
  mb_per_s: number;
}

export async function runVerify(box: StoreSpace, opts: VerifyOptions = {}): Promise<VerifyReport> {
  const started = Date.now();
  const pct = opts.subsetPercent ?? 100;
  const { catalog } = box;
  const jobId = catalog.startJob('verify', started);
  try {
    const span = Math.floor((pct / 100) * 2 ** 32);
    const offset = pct >= 100 ? 0 : randomBytes(4).readUInt32BE(0);
    const inSubset = (id: Buffer): boolean => pct >= 100 || (id.readUInt32BE(0) - offset) >>> 0 < span;
    let checked = 0;
    let bytes = 0;
    const badIds: { id: Buffer; reason: string }[] = [];
    const scratch = new ChunkScratch();
    let after: Buffer | null = null;
    for (;;) {
      const rows = (after
        ? catalog.db.prepare('SELECT id FROM chunks WHERE id > ? ORDER BY id LIMIT 1000').raw().all(after)
        : catalog.db.prepare('SELECT id FROM chunks ORDER BY id LIMIT 1000').raw().all()) as [Buffer][];
      if (rows.length === 0) break;
      after = rows[rows.length - 1][0];
      const ids = rows.map((r) => r[0]).filter(inSubset);
      // Reads run a few files ahead of the (synchronous) checks.
      const reads: Promise<Buffer | Error>[] = [];
      const read = (i: number): void => {
        if (i < ids.length) reads[i] = box.store.getBlob(ids[i]).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
      };
      for (let i = 0; i < 4; i++) read(i);
      for (let i = 0; i < ids.length; i++) {
        const id = ids[i];
        const blob = await reads[i];
        read(i + 4);
        delete reads[i];
        if (blob instanceof Error) {
          if (!catalog.hasChunk(id)) continue; // freed by GC meanwhile
          badIds.push({ id, reason: `unreadable: ${blob.message}` });
          continue;
        }
        checked++;
        bytes += blob.length;
        try {
          if (box.keys) openChunk(box.keys, id, blob, scratch);
          else {
            // A secondary has no keys: the blob must still hash to what it was when stored.
            const want = catalog.chunkSha256(id);
            if (want && !createHash('sha256').update(blob).digest().equals(want)) throw new Error('blob checksum does not match the one recorded when it was stored');
          }
        } catch (err) {
          badIds.push({ id, reason: errorMessage(err) });
        }
      }
    }
    const bad: BadChunk[] = [];
    for (const b of badIds) bad.push(await quarantine(box, b.id, b.reason));
    const secs = (Date.now() - started) / 1000;
    const report: VerifyReport = { chunks_checked: checked, bytes_checked: bytes, bad, subset_percent: pct, duration_s: secs, mb_per_s: Math.round((bytes / 1e6 / Math.max(secs, 0.001)) * 10) / 10 };
    catalog.finishJob(jobId, bad.length ? 'failed' : 'ok', { chunks_checked: checked, bytes_checked: bytes, bad: bad.length, mb_per_s: report.mb_per_s }, bad.length ? `${bad.length} bad chunks quarantined` : undefined);
    if (bad.length) opts.log?.error('verify.bad_chunks', { bad: bad.map((x) => ({ id: x.id, reason: x.reason, snapshots: x.snapshots.map((s) => s.id) })) });
    opts.log?.info('verify.finished', { chunks_checked: checked, bytes_checked: bytes, bad: bad.length, mb_per_s: report.mb_per_s });
    return report;
  } catch (err) {
    catalog.finishJob(jobId, 'failed', {}, errorMessage(err));
    throw err;
  }
}

export async function quarantine(box: StoreSpace, id: Buffer, reason: string): Promise<BadChunk> {
  const hex = id.toString('hex');
  const qdir = box.quarantineDir;
  fs.mkdirSync(qdir, { recursive: true, mode: 0o700 });
  const dest = path.join(qdir, `${hex}.${Date.now()}`);
  await box.store.commitLock.run(async () => {
    try {
      const loc = box.catalog.chunkLocation(id);
      if (loc && loc.pack !== null && loc.offset !== null) {
        // A packed blob is copied out (the pack holds other, good blobs); its row goes below.
        await fs.promises.writeFile(dest, await box.blobs.getPacked(loc.pack, loc.offset, loc.size), { mode: 0o600 });
      } else await fs.promises.rename(box.blobs.pathOf(id), dest);
    } catch {
      /* unreadable or gone: still drop the row so a good copy can be uploaded */
    }
    box.catalog.quarantineChunk(id, reason, dest);
  });
  return { id: hex, reason, quarantined_to: dest, snapshots: await affected(box, id) };
}

/** Snapshots whose refs contain the id, and for each the files whose chunk lists use it. */
async function affected(box: StoreSpace, id: Buffer): Promise<BadChunk['snapshots']> {
  const out: BadChunk['snapshots'] = [];
  for (const s of box.catalog.listSnapshots()) {
    let refs: Buffer;
    try {
      refs = await fs.promises.readFile(box.store.refsPath(s.id));
    } catch {
      continue;
    }
    if (!sortedContains(refs, id)) continue;
    const hex = id.toString('hex');
    const keys = box.keys;
    if (!keys) {
      // Without keys the manifest cannot be read: the snapshot is named, its files are not.
      out.push({ id: s.id, agent: s.agent, source: s.source, files: [], manifest_damaged: s.manifest.some((m) => m.id === hex) });
      continue;
    }
    if (s.manifest.some((m) => m.id === hex)) {
      out.push({ id: s.id, agent: s.agent, source: s.source, files: [], manifest_damaged: true });
      continue;
    }
    const files: string[] = [];
    try {
      async function* manifestBytes(): AsyncGenerator<Buffer> {
        for (const m of s.manifest) {
          const mid = Buffer.from(m.id, 'hex');
          yield openChunk(keys!, mid, await box.store.getBlob(mid));
        }
      }
      const { entries } = await readManifest(manifestBytes());
      for await (const e of entries) {
        if (!e.chunks) continue;
        for (const r of chunkRefs(e.chunks)) {
          if (r.id.equals(id)) {
            if (files.length < 1000) files.push(e.path.toString());
            break;
          }
        }
      }
    } catch {
      /* manifest unreadable: reported as damaged below */
      out.push({ id: s.id, agent: s.agent, source: s.source, files, manifest_damaged: true });
      continue;
    }
    out.push({ id: s.id, agent: s.agent, source: s.source, files, manifest_damaged: false });
  }
  return out;
}
