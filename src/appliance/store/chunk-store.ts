import fs from 'node:fs';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { CairnError, errorMessage } from '../../core/errors';
import { ChunkScratch, openChunk, parseChunkHeader } from '../../core/chunk-codec';

/** checks keep no plaintext: one scratch for the thread (openChunk is synchronous) */
const checkScratch = new ChunkScratch();
import { DataKeys } from '../../core/keys';
import { LocalBlobStore, StagedBlob, StagedPack } from './blob-store';
import { Catalog, ChunkLocation } from './catalog';
import { fsyncDirAsync, ioError } from './durable';
import { CHUNK_ID_BYTES } from '../../core/chunk-id';
import type { BackupStats, ManifestRef, SnapshotInfo } from '../../core/api';
import { Mutex } from './mutex';
import { sortedContains } from './refs';

/**
 * Blobs smaller than this share pack files (see blob-store.ts): every chunk-sized blob, so an
 * upload of two or more new blobs becomes one pack file, and only a blob uploaded alone is a
 * file of its own. Until 0.1 only blobs under 512 KiB were packed: a 1 GB first backup wrote
 * 475 loose files and 93 packs, each file a create, an fsync, a link and a directory fsync on
 * the data disk. With every blob in packs (about 200 files), 3 alternating pairs of first
 * backups on ext4 took 10.1 s against 11.3 s, cairnd's CPU 5.2 s against 5.7 s. A pack keeps
 * its dead blobs until it is emptied or less than half of it is live (GC then rewrites it);
 * an upload's blobs mostly come from the same files and die together.
 */
export const PACK_MAX_BLOB = 16 * 1024 * 1024;
/** a fetch answer frame's head: chunk id and u32 LE blob length (see encodeUploadBatch) */
const FRAME_HEAD = CHUNK_ID_BYTES + 4;
/** buffers one preadv may fill (Linux IOV_MAX is 1024) */
const MAX_READV = 512;

/** Blobs of one upload, written under tmp/ and not yet published. */
interface StagedJob {
  staged: StagedBlob[];
  pack?: StagedPack;
  /** hex id -> blob size */
  size: Map<string, number>;
  /** hex id -> sha256 of the blob (keyless secondary) */
  sums?: Map<string, Buffer>;
  owner?: string;
}

export interface SnapshotCommitInput {
  agentId: string;
  source: string;
  host: string;
  manifest: ManifestRef[];
  refs: Buffer;
  stats: BackupStats;
}

/**
 * Chunk store: the blob store plus the catalog, with verification.
 *
 * Checked on sharing (catalog v5). A chunk's content is checked by opening it with the box's
 * keys and recomputing its id. A chunk an agent uploads is stored after a header check and
 * recorded with that agent as its owner, unchecked: until another party relies on it, a wrong
 * one could only spoil its own uploader's backups, which that agent could do anyway. It is
 * checked before anyone else may rely on it: when another agent asks whether the box has it
 * (a bad one is quarantined and reported missing, so that agent uploads a good copy), when a
 * snapshot of another agent references it, or when a replicated snapshot does. In idle time
 * the box checks the rest (checkUnchecked). So one agent can still never plant bytes under an
 * id that another agent's content would dedup against. Uploads without an owner (replication,
 * recovery) are checked before they are stored, as every upload was before v5. Profiled: the
 * check on upload was the largest single cost of the box during a first backup.
 *
 * Commit invariant: a snapshot row is written only after its refs file is durable and after
 * every referenced id was found in the catalog (whose rows follow durable blobs).
 */
export class ChunkStore {
  private readonly refsCache = new Map<string, Buffer>();
  /** Held by snapshot commits and by each GC sweep batch: they never interleave. */
  readonly commitLock = new Mutex();
  /** Backup sessions in progress: agent id -> when it started and when it was last heard. */
  private readonly sessions = new Map<string, { start: number; last: number }>();
  static readonly SESSION_IDLE_MS = 15 * 60 * 1000;
  /** How many bytes of uploads may be written but not yet recorded (see writeBehind). */
  static WRITE_BEHIND_BYTES = 64 * 1024 * 1024;
  /** Ids written behind and not yet recorded -> the uploading agent. */
  private readonly behind = new Map<string, string | undefined>();
  private behindBytes = 0;
  private behindFailed = 0;
  private readonly tasks = new Set<Promise<void>>();
  private roomWaiters: (() => void)[] = [];
  /** writes behind waiting for the next round of recordBehind */
  private behindQueue: { job: StagedJob; resolve: () => void; reject: (err: unknown) => void }[] = [];
  private recording = false;
  /** callers of settle waiting: rounds start at once */
  private hurry = 0;
  /** ends the pause before the next round */
  private wake: (() => void) | undefined;
  /** Least time between the starts of two rounds of recordBehind. */
  static ROUND_MS = 250;
  /** Told when a write behind fails: its chunks have no rows, so the next commit that needs them is refused as incomplete. */
  onWriteBehindError: ((err: unknown, chunks: number) => void) | undefined;

  /**
   * An agent asking about or uploading chunks is in a backup session until it commits (or is
   * silent for SESSION_IDLE_MS). GC spares every chunk written or confirmed since the start of
   * the oldest open session, however long that backup runs.
   */
  touchSession(agentId: string, now = Date.now()): void {
    const s = this.sessions.get(agentId);
    if (s && now - s.last < ChunkStore.SESSION_IDLE_MS) s.last = now;
    else this.sessions.set(agentId, { start: now, last: now });
  }

  endSession(agentId: string): void {
    this.sessions.delete(agentId);
  }

  oldestOpenSession(now = Date.now()): number | undefined {
    let oldest: number | undefined;
    for (const [id, s] of this.sessions) {
      if (now - s.last >= ChunkStore.SESSION_IDLE_MS) this.sessions.delete(id);
      else if (oldest === undefined || s.start < oldest) oldest = s.start;
    }
    return oldest;
  }

  /** Moves a chunk that failed its check aside (verify's quarantine); without it the row is only dropped. */
  quarantine: ((id: Buffer, reason: string) => Promise<void>) | undefined;
  /** when an agent last asked or uploaded (the idle-time checker waits for quiet) */
  lastAgentActivity = 0;

  /** Hook run after every commit, inside the commit lock (retention). */
  afterCommit: ((info: SnapshotInfo) => void) | undefined;

  constructor(
    readonly blobs: LocalBlobStore,
    readonly catalog: Catalog,
    /** null on a secondary: it holds ciphertext only and checks blobs by structure and checksum */
    private readonly keys: DataKeys | null,
    readonly refsDir: string,
    private readonly tmpDir: string,
  ) {
    fs.mkdirSync(refsDir, { recursive: true, mode: 0o700 });
  }

  /**
   * The ids the store lacks. With keys, chunks another agent uploaded and the box has not
   * checked yet are checked first; bad ones are quarantined and reported missing.
   */
  async missing(ids: Buffer[], asker: string | null = null): Promise<Buffer[]> {
    const lacking = await this.lacking(ids, asker);
    // A chunk written behind counts as stored for its uploader.
    return this.behind.size ? lacking.filter((id) => !this.behind.has(id.toString('hex'))) : lacking;
  }

  /**
   * For an agent's upload: the hex ids of `ids` the box does not hold, after another agent's
   * unchecked copies among them were checked (a bad one is quarantined, so it is not held) and
   * the held ones marked as seen, as `missing` does for the question before an upload.
   */
  private async heldForUpload(ids: Buffer[], uploader: string): Promise<Set<string>> {
    return new Set((await this.lacking(ids, uploader)).map((id) => id.toString('hex')));
  }

  /**
   * The ids without a row, and those another agent uploaded that fail their check now (then
   * quarantined); the rows found are marked seen (GC spares them a while). Another agent's
   * writes behind of any of them are waited for first, so their rows are checked too (a
   * keyless secondary checks nothing).
   */
  private async lacking(ids: Buffer[], asker: string | null): Promise<Buffer[]> {
    if (this.behind.size) {
      let foreign = false;
      for (const id of ids) {
        const owner = this.behind.get(id.toString('hex'));
        if (owner !== undefined && owner !== asker) foreign = true;
      }
      if (foreign) await this.settle();
    }
    const r = this.catalog.missingOrUnchecked(ids, asker);
    if (this.keys && r.unchecked.length) r.missing.push(...(await this.check(r.unchecked)));
    return r.missing;
  }

  /** Opens and checks chunks with the box's keys; marks the good ones checked, quarantines the others. Returns the bad ids. */
  async check(ids: Buffer[]): Promise<Buffer[]> {
    const keys = this.keys;
    if (!keys || ids.length === 0) return [];
    const good: Buffer[] = [];
    const bad: { id: Buffer; reason: string }[] = [];
    for (const id of ids) {
      try {
        const blob = await this.getBlob(id);
        openChunk(keys, id, blob, checkScratch);
        good.push(id);
      } catch (err) {
        if (this.catalog.chunkOwner(id) === undefined) continue; // freed by GC meanwhile
        bad.push({ id, reason: errorMessage(err) });
      }
    }
    this.catalog.markChecked(good);
    for (const b of bad) {
      if (this.quarantine) await this.quarantine(b.id, b.reason);
      else this.catalog.quarantineChunk(b.id, b.reason, '');
    }
    return bad.map((b) => b.id);
  }

  /** Checks up to `limit` unchecked chunks (idle-time work); returns how many were checked. */
  async checkUnchecked(limit = 64): Promise<{ checked: number; bad: number; bytes: number }> {
    const ids = this.catalog.uncheckedChunks(limit);
    let bytes = 0;
    for (const id of ids) bytes += this.catalog.chunkLocation(id)?.size ?? 0;
    const bad = await this.check(ids);
    return { checked: ids.length, bad: bad.length, bytes };
  }

  /** Before a commit: the refs that others uploaded unchecked are checked; bad ones make the commit incomplete. */
  private async checkForeignRefs(refs: Buffer, committer: string): Promise<void> {
    // Usually nobody else has unchecked uploads: then there is nothing to look up per ref.
    if (!this.keys || !this.catalog.hasUncheckedFrom(committer)) return;
    const ids: Buffer[] = [];
    for (let off = 0; off + CHUNK_ID_BYTES <= refs.length; off += CHUNK_ID_BYTES) ids.push(refs.subarray(off, off + CHUNK_ID_BYTES));
    const owners = this.catalog.chunkOwners(ids);
    const foreign = ids.filter((_, i) => owners[i] && owners[i] !== committer);
    const bad = await this.check(foreign);
    if (bad.length) {
      throw new CairnError('CAIRN_SNAPSHOT_INCOMPLETE', `snapshot refused: ${bad.length} referenced chunks were damaged and are quarantined; upload them and commit again`, { missing: bad.map((b) => b.toString('hex')) });
    }
  }

  /**
   * Verifies every blob of a batch first (a single bad frame rejects the batch and stores
   * nothing), then stores each durably, then records them in one catalog transaction.
   *
   * With `writeBehind` (an agent's upload during a backup) it returns once the new blobs are
   * written under tmp/, and fsyncs, publishes and records them in the background (see
   * writeBehind below). Otherwise they are durable and recorded on return.
   */
  async putBatch(items: { id: Buffer; blob: Buffer }[], opts: { owner?: string; writeBehind?: boolean } = {}): Promise<{ stored: number; existed: number; existedIds?: Buffer[] }> {
    // An agent's upload is checked on sharing (see above); anything else is checked now.
    const owner = this.keys && opts.owner ? opts.owner : undefined;
    for (const it of items) {
      if (it.id.length !== CHUNK_ID_BYTES) throw new CairnError('CAIRN_CHUNK_ID_INVALID', 'chunk id must be 32 bytes');
      parseChunkHeader(it.blob);
      if (this.keys && !owner) openChunk(this.keys, it.id, it.blob, checkScratch);
    }
    if (opts.writeBehind) await this.roomBehind();
    // An agent may upload without asking which chunks the box lacks (the uploader's guess once
    // several batches were all new). What that question does is done here for the ids it holds:
    // they count as seen (GC spares them until the agent's commit), and another agent's
    // unchecked copy is checked now, so a forged one is quarantined and this upload's stored.
    const absent = owner ? await this.heldForUpload(items.map((it) => it.id), owner) : undefined;
    let existed = 0;
    const existedIds: Buffer[] = [];
    const fresh: { id: Buffer; blob: Buffer }[] = [];
    const seen = new Set<string>();
    for (const it of items) {
      const hex = it.id.toString('hex');
      if (seen.has(hex) || this.behind.has(hex) || (absent ? !absent.has(hex) : this.catalog.hasChunk(it.id))) {
        existed++;
        existedIds.push(it.id);
      }
      else {
        seen.add(hex);
        // Written behind, the id outlives the request: copied, so it does not hold the whole body.
        fresh.push(opts.writeBehind ? { id: Buffer.from(it.id), blob: it.blob } : it);
      }
    }
    // Write (and fsync) outside the lock (the slow part), then publish and record under it, so GC
    // never deletes a file between our link and our row. Small blobs go into one pack file.
    const small = fresh.filter((f) => f.blob.length < PACK_MAX_BLOB);
    const packed = small.length >= 2 ? small : [];
    const loose = packed.length ? fresh.filter((f) => f.blob.length >= PACK_MAX_BLOB) : fresh;
    const sync = !opts.writeBehind;
    const staged: StagedBlob[] = [];
    let pack: StagedPack | undefined;
    try {
      const queue = loose.slice();
      let failedWrite = false;
      const worker = async (): Promise<void> => {
        try {
          for (let it = queue.shift(); it && !failedWrite; it = queue.shift()) staged.push(await this.blobs.stage(it.id, it.blob, sync));
        } catch (err) {
          failedWrite = true;
          throw err;
        }
      };
      const packing = packed.length ? this.blobs.stagePack(packed, sync).then((p) => (pack = p)) : undefined;
      // Every write settles before a failure is thrown, so the cleanup below sees all of them
      // (with Promise.all, a write still running when another failed left its temp file behind).
      const settled = await Promise.allSettled([...Array.from({ length: Math.min(8, loose.length) }, worker), packing]);
      const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed) throw failed.reason;
    } catch (err) {
      await this.cleanup(staged, pack);
      throw err;
    }
    const job: StagedJob = {
      staged,
      pack,
      size: new Map(fresh.map((f) => [f.id.toString('hex'), f.blob.length])),
      // Keyless (secondary): remember each blob's checksum so verify can find rot without keys.
      sums: this.keys ? undefined : new Map(fresh.map((f) => [f.id.toString('hex'), createHash('sha256').update(f.blob).digest()])),
      owner,
    };
    if (!sync) {
      this.writeBehind(fresh, job);
      return existedIds.length ? { stored: fresh.length, existed, existedIds } : { stored: fresh.length, existed };
    }
    try {
      const { stored, existed: already } = await this.commitLock.run(async () => this.publishAndRecord([job]));
      return { stored, existed: existed + already };
    } finally {
      await this.cleanup(job.staged, job.pack);
    }
  }

  /** Removes what is left of an upload's temp files (all of them after a failure, none after publishing). */
  private async cleanup(staged: StagedBlob[], pack?: StagedPack): Promise<void> {
    await this.blobs.discard(staged);
    if (pack) await fs.promises.rm(pack.tmp, { force: true }).catch(() => undefined);
  }

  /**
   * Publishes staged jobs (their blobs durable already) and records their rows in one
   * transaction. Call under commitLock, so GC never deletes a file between its link and its row.
   * A blob another upload recorded meanwhile is left out and counted as existing.
   */
  private async publishAndRecord(jobs: StagedJob[]): Promise<{ stored: number; existed: number }> {
    const todo: StagedBlob[] = [];
    const rows: Parameters<Catalog['addChunks']>[0] = [];
    const packs: StagedPack[] = [];
    let existed = 0;
    for (const j of jobs) {
      for (const st of j.staged) {
        if (this.catalog.hasChunk(st.id)) existed++;
        else {
          todo.push(st);
          const hex = st.id.toString('hex');
          rows.push({ id: st.id, size: j.size.get(hex)!, sha256: j.sums?.get(hex), owner: j.owner });
        }
      }
      if (!j.pack) continue;
      const before = rows.length;
      for (const e of j.pack.entries) {
        if (this.catalog.hasChunk(e.id)) existed++;
        else rows.push({ id: e.id, size: e.size, sha256: j.sums?.get(e.id.toString('hex')), pack: j.pack.name, offset: e.offset, owner: j.owner });
      }
      if (rows.length > before) packs.push(j.pack);
    }
    await this.blobs.publish(todo, true);
    await Promise.all(packs.map((pk) => this.blobs.publishPack(pk)));
    this.catalog.addChunks(rows);
    return { stored: rows.length, existed };
  }

  /**
   * Write-behind (an agent's uploads). Profiled: each backup worker of an agent waited about a
   * quarter of a first backup for its uploads to be answered, and the answer waited for the
   * fsyncs of the upload's files and directories; answered once the blobs are written, a 1 GB
   * first backup took 8.0-8.8 s instead of 10.6-12.3 s (2 alternating pairs, no fsync at all).
   *
   * Why no durability is lost: a chunk row is still written only after its blob is fsynced and
   * linked into place (the catalog invariant is unchanged), and nothing but the uploading
   * session relies on a chunk before its row exists:
   * - until then its id is in `behind`: another upload of it counts as existing, and `missing`
   *   does not report it missing to its uploader (another agent asking waits for it first, so
   *   that agent's answer still comes from a checked row);
   * - every snapshot commit first waits for all writes behind (settle), then checks that every
   *   referenced id has a row, as before: a write that failed leaves no row, so the commit is
   *   refused as incomplete and the agent uploads again;
   * - after a crash, unpublished blobs are only files under tmp/, removed at start-up; their
   *   rows never existed, so the agent's next commit finds them missing and it uploads again
   *   (an agent records nothing in its files cache before a commit).
   * At most WRITE_BEHIND_BYTES are behind at once: an upload beyond that waits (roomBehind).
   *
   * Uploads are recorded in rounds (recordBehind): each round fsyncs, publishes and records
   * every upload that arrived while the last one ran, with one transaction and one fsync per
   * directory; a failure fails the round's uploads together. One transaction per upload cost
   * 1.2 s of cairnd's main thread in a 1 GB first backup (223 of them, 5.4 ms each: random ids
   * touch a leaf page each, and every page goes to the WAL again in each transaction).
   */
  private writeBehind(fresh: { id: Buffer; blob: Buffer }[], job: StagedJob): void {
    if (fresh.length === 0) return;
    const hexes = fresh.map((f) => f.id.toString('hex'));
    let bytes = 0;
    for (const f of fresh) bytes += f.blob.length;
    for (const h of hexes) this.behind.set(h, job.owner);
    this.behindBytes += bytes;
    const task: Promise<void> = new Promise<void>((resolve, reject) => {
      this.behindQueue.push({ job, resolve, reject });
      if (!this.recording) void this.recordBehind();
    }).then(
      () => undefined,
      (err: unknown) => {
        this.behindFailed += hexes.length;
        this.onWriteBehindError?.(err, hexes.length);
      },
    ).finally(() => {
      for (const h of hexes) this.behind.delete(h);
      this.behindBytes -= bytes;
      this.tasks.delete(task);
      for (const w of this.roomWaiters.splice(0)) w();
    });
    this.tasks.add(task);
  }

  /** Records the queued writes behind, a round at a time, until none are queued. */
  private async recordBehind(): Promise<void> {
    this.recording = true;
    try {
      let started = 0;
      while (this.behindQueue.length) {
        await this.pauseBeforeRound(started);
        started = Date.now();
        const round = this.behindQueue.splice(0);
        const jobs = round.map((r) => r.job);
        let failure: { err: unknown } | undefined;
        try {
          await this.blobs.syncStaged(jobs.flatMap((j) => [...j.staged.map((st) => st.tmp), ...(j.pack ? [j.pack.tmp] : [])]));
          await this.commitLock.run(async () => this.publishAndRecord(jobs));
          this.catalog.syncWalBehind();
        } catch (err) {
          failure = { err };
        }
        // Temp files go before the uploads settle: whoever waits on them finds tmp/ clean.
        for (const j of jobs) await this.cleanup(j.staged, j.pack);
        for (const r of round) {
          if (failure) r.reject(failure.err);
          else r.resolve();
        }
      }
    } finally {
      this.recording = false;
    }
  }

  /**
   * Rounds start at least ROUND_MS apart, unless someone waits for them (settle, or an upload
   * waiting for room): fewer, larger transactions write fewer WAL pages.
   */
  private async pauseBeforeRound(lastStart: number): Promise<void> {
    const wait = ChunkStore.ROUND_MS - (Date.now() - lastStart);
    if (wait <= 0 || this.hurry > 0 || this.roomWaiters.length > 0) return;
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, wait);
      this.wake = done;
    });
  }

  private async roomBehind(): Promise<void> {
    while (this.behindBytes >= ChunkStore.WRITE_BEHIND_BYTES) {
      const room = new Promise<void>((resolve) => this.roomWaiters.push(resolve));
      this.wake?.();
      await room;
    }
  }

  /** Waits until every write behind that has started is published and recorded (or has failed). */
  async settle(): Promise<void> {
    this.hurry++;
    try {
      this.wake?.();
      await Promise.all([...this.tasks]);
    } finally {
      this.hurry--;
    }
  }

  /** Figures of the write-behind (for tests). */
  behindFigures(): { ids: number; bytes: number; failed: number } {
    return { ids: this.behind.size, bytes: this.behindBytes, failed: this.behindFailed };
  }

  /** A stored blob, from its own file or from its pack. */
  async getBlob(id: Buffer): Promise<Buffer> {
    const read = async (): Promise<Buffer> => {
      const loc = this.catalog.chunkLocation(id);
      if (loc && loc.pack !== null && loc.offset !== null) return this.blobs.getPacked(loc.pack, loc.offset, loc.size);
      return this.blobs.get(id, loc?.size);
    };
    try {
      try {
        return await read();
      } catch {
        // GC may have just rewritten the pack it was in (compaction): look it up once more.
        return await read();
      }
    } catch {
      throw new CairnError('CAIRN_CHUNK_MISSING', `chunk ${id.toString('hex').slice(0, 16)}… is not in the store`);
    }
  }

  /**
   * A fetch answer for a prefix of `ids` (stopping once `maxBytes` of blobs are in, at least
   * one), framed as encodeUploadBatch frames (id | u32 LE length | blob) in one buffer; an id
   * not `allowed` or not in the store gets an empty frame. Every blob is read straight into its
   * place, neighbours in one pack with one preadv, so the answer goes to the socket in slices
   * of one buffer: sent as many small parts, the TLS layer gathered each group of them into a
   * buffer of its own first (the largest copy in cairnd's restore profile). `answer` is null
   * when a read fails (GC may have rewritten a pack meanwhile): the caller then looks each of
   * the `count` blobs up again on its own (getBlob).
   */
  async getFramed(ids: Buffer[], allowed: boolean[], maxBytes: number, alloc: (n: number) => Buffer = Buffer.allocUnsafeSlow): Promise<{ answer: Buffer | null; count: number }> {
    const locs: (ChunkLocation | undefined)[] = [];
    let bytes = 0;
    let total = 0;
    for (let i = 0; i < ids.length && (i === 0 || bytes < maxBytes); i++) {
      const loc = allowed[i] ? this.catalog.chunkLocation(ids[i]) : undefined;
      locs.push(loc);
      bytes += loc?.size ?? 0;
      total += FRAME_HEAD + (loc?.size ?? 0);
    }
    const answer = alloc(total);
    const reads: Promise<void>[] = [];
    let at = 0;
    /** writes frame k's head and returns the view its blob goes into */
    const frame = (k: number): Buffer => {
      const size = locs[k]?.size ?? 0;
      ids[k].copy(answer, at);
      answer.writeUInt32LE(size, at + CHUNK_ID_BYTES);
      at += FRAME_HEAD + size;
      return answer.subarray(at - size, at);
    };
    for (let i = 0; i < locs.length; ) {
      const loc = locs[i];
      const view = frame(i);
      if (!loc) {
        i++;
      } else if (loc.pack === null || loc.offset === null) {
        reads.push(this.blobs.readInto(ids[i], view));
        i++;
      } else {
        // neighbours in the same pack, back to back (a restore asks in upload order, which is pack order): one read
        const views = [view];
        let end = loc.offset + loc.size;
        let j = i + 1;
        for (; j < locs.length && views.length < MAX_READV; j++) {
          const next = locs[j];
          if (!next || next.pack !== loc.pack || next.offset !== end) break;
          views.push(frame(j));
          end += next.size;
        }
        reads.push(this.blobs.readPackedInto(loc.pack, loc.offset, views));
        i = j;
      }
    }
    try {
      await Promise.all(reads);
    } catch {
      return { answer: null, count: locs.length };
    }
    return { answer, count: locs.length };
  }

  refsPath(snapshotId: string): string {
    return path.join(this.refsDir, `${snapshotId}.ids`);
  }

  /** Commits a snapshot. `refs` must be sorted and unique. */
  async commitSnapshot(c: SnapshotCommitInput): Promise<SnapshotInfo> {
    await this.settle();
    await this.checkForeignRefs(c.refs, c.agentId);
    return this.commitLock.run(() => this.commitLocked(c));
  }

  /**
   * Takes a snapshot made elsewhere (replication, flow-back, recovery) under its own id and
   * time. Idempotent: a snapshot already present is returned as is.
   */
  async importSnapshot(c: SnapshotCommitInput & { id: string; createdAt: number }): Promise<SnapshotInfo> {
    await this.settle();
    await this.checkForeignRefs(c.refs, c.agentId);
    return this.commitLock.run(async () => this.catalog.getSnapshot(c.id) ?? this.commitLocked(c));
  }

  private async commitLocked(c: SnapshotCommitInput & { id?: string; createdAt?: number }): Promise<SnapshotInfo> {
    const n = c.refs.length / CHUNK_ID_BYTES;
    const ids: Buffer[] = [];
    for (let i = 0; i < n; i++) ids.push(c.refs.subarray(i * CHUNK_ID_BYTES, (i + 1) * CHUNK_ID_BYTES));
    // Absent, or uploaded unchecked by another agent since checkForeignRefs ran (a race): upload and commit again.
    const missing = this.catalog.unusableRefs(ids, c.agentId, !!this.keys, 1000).map((id) => id.toString('hex'));
    for (const m of c.manifest) {
      if (!sortedContains(c.refs, Buffer.from(m.id, 'hex'))) missing.push(m.id);
    }
    if (missing.length) {
      throw new CairnError('CAIRN_SNAPSHOT_INCOMPLETE', `snapshot refused: ${missing.length}${missing.length >= 1000 ? '+' : ''} referenced chunks are not stored on the box; upload them and commit again`, { missing });
    }
    const id = c.id ?? `${Date.now().toString(36)}${randomBytes(5).toString('hex')}`;
    if (!/^[0-9a-z]{1,40}$/.test(id)) throw new CairnError('CAIRN_API_BAD_REQUEST', 'snapshot id must be 1-40 lowercase letters and digits');
    const file = this.refsPath(id);
    const tmp = path.join(this.tmpDir, `refs-${id}`);
    try {
      const fh = await fs.promises.open(tmp, 'wx', 0o600);
      try {
        await fh.writeFile(c.refs);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fs.promises.rename(tmp, file);
      await fsyncDirAsync(this.refsDir);
    } catch (err) {
      await fs.promises.rm(tmp, { force: true }).catch(() => undefined);
      throw ioError(`writing the reference list of a new snapshot`, err);
    }
    const createdAt = c.createdAt ?? Date.now();
    this.catalog.insertSnapshot({ id, agentId: c.agentId, source: c.source, host: c.host, createdAt, manifest: c.manifest, chunkCount: n, stats: c.stats });
    const info = this.catalog.getSnapshot(id)!;
    this.afterCommit?.(info);
    return info;
  }

  /** Whether snapshot `snapshotId` references chunk `id` (binary search in its sorted refs file). */
  async snapshotReferences(snapshotId: string, id: Buffer): Promise<boolean> {
    let refs = this.refsCache.get(snapshotId);
    if (!refs) {
      refs = await fs.promises.readFile(this.refsPath(snapshotId));
      this.refsCache.set(snapshotId, refs);
      // Bounded: a few recent snapshots (a restore reads one at a time).
      while (this.refsCache.size > 4) this.refsCache.delete(this.refsCache.keys().next().value as string);
    }
    return sortedContains(refs, id);
  }

  forgetRefs(snapshotId: string): void {
    this.refsCache.delete(snapshotId);
  }
}
