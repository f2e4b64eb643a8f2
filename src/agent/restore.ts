import fs from 'node:fs';
import path from 'node:path';
import { CairnError, errnoCode, errorMessage } from '../core/errors';
import { openChunk } from '../core/chunk-codec';
import { ManifestEntry, ManifestHeader, readManifest } from '../core/manifest';
import { DataKeys } from '../core/keys';
import { CHUNK_ID_BYTES } from '../core/chunk-id';
import { MAX_FETCH_IDS, SnapshotInfo } from '../core/api';
import { BoxClient } from './box-client';
import { Semaphore } from '../core/semaphore';
import { RestorePool } from './restore-pool';
import { ExternalGarbage } from '../core/external-memory';

/**
 * Restore. Every chunk is authenticated and its id recomputed before a byte of it is written;
 * a file that meets a bad or missing chunk is removed and reported, and the rest goes on.
 *
 * Path safety: every manifest path is relative with no '..' (checked by the manifest
 * reader), every parent directory under the target is created or checked by lstat to be a
 * real directory (never a symlink), and files are created with O_EXCL|O_NOFOLLOW after any
 * existing non-directory entry at that name is unlinked, so nothing is written outside the
 * target or through an existing symlink.
 */
export interface RestoreOptions {
  target?: string;
  subpath?: string;
  /** fetch and check everything but write nothing */
  verifyOnly?: boolean;
  onProgress?: (p: RestoreProgress) => void;
}

export interface RestoreProgress {
  files: number;
  dirs: number;
  bytes: number;
  failed: number;
}

export interface RestoreResult extends RestoreProgress {
  snapshot: string;
  symlinks: number;
  hardlinks: number;
  duration_s: number;
  failures: { path: string; message: string }[];
}

/** a batch of fewer ids than this waits COALESCE_MS for more (see ChunkFetcher) */
const COALESCE_BELOW = 16;
const COALESCE_MS = 2;

interface Pending {
  id: Buffer;
  resolve: (b: Buffer) => void;
  reject: (e: unknown) => void;
}

/**
 * Fetches and opens chunks of one snapshot on the main thread: manifests, `ls`, volume
 * restores (a file restore's workers fetch their own chunks, see restore-worker.ts). Requests
 * wait in a queue and go out together as one batched fetch (up to MAX_FETCH_IDS ids): many
 * small chunks then cost one HTTPS request per batch instead of one per chunk (profiled:
 * request overhead on both sides dominated such restores). A full batch leaves at once, a
 * large one at the end of the turn, a small one after COALESCE_MS: when file restores still
 * fetched through here, small files reached the queue one per turn, and sending every turn's
 * queue made a restore of 1,220 files cost 1,165 requests; with the wait about 440, and 15-20%
 * less time. An id the box did not answer is fetched alone, which returns the box's own error
 * for it. A box without the batched endpoint gets single GETs.
 */
export class ChunkFetcher {
  /**
   * lz4-napi's outputs (version 1 chunks, opened here for manifests) are invisible to V8's heap
   * accounting: a collection runs every 16 MiB of them (see core/external-memory). The socket's
   * pieces of an answer are not counted: V8 sees their memory, and a full collection forced
   * every 16 MiB of them cost about 10% of a restore's agent CPU (3 alternating pairs, 1 GB:
   * 14.8 s against 13.1 s) for 2-8 MB less peak RSS.
   */
  private readonly garbage = new ExternalGarbage(16 * 1024 * 1024);
  private queue: Pending[] = [];
  private scheduled = false;
  private batched = true;

  constructor(private readonly client: BoxClient, private readonly keys: DataKeys, private readonly snapshot: string) {}

  /** The chunk's plaintext, authenticated and checked against its id. */
  get(id: Buffer): Promise<Buffer> {
    if (!this.batched) return this.getOne(id);
    return new Promise<Buffer>((resolve, reject) => {
      this.queue.push({ id, resolve, reject });
      if (this.queue.length >= MAX_FETCH_IDS) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        if (this.queue.length < COALESCE_BELOW) setTimeout(() => this.flush(), COALESCE_MS);
        else setImmediate(() => this.flush());
      }
    });
  }

  private open(id: Buffer, blob: Buffer): Buffer {
    const plain = openChunk(this.keys, id, blob);
    this.garbage.note(blob.length + plain.length);
    return plain;
  }

  private async getOne(id: Buffer): Promise<Buffer> {
    return this.open(id, await this.client.call('GET', `/v1/snapshots/${this.snapshot}/chunks/${id.toString('hex')}`));
  }

  private flush(): void {
    this.scheduled = false;
    while (this.queue.length) {
      const batch = this.queue.splice(0, MAX_FETCH_IDS);
      void this.fetchBatch(batch);
    }
  }

  private async fetchBatch(batch: Pending[]): Promise<void> {
    const alone = (p: Pending): void => {
      this.getOne(p.id).then(p.resolve, p.reject);
    };
    if (batch.length === 1) return alone(batch[0]);
    let handed = 0;
    let answered: number | 'unsupported';
    try {
      answered = await this.client.fetchChunks(this.snapshot, batch.map((p) => p.id), (i, blob) => {
        handed = i + 1;
        const p = batch[i];
        if (blob.length === 0) return alone(p);
        try {
          p.resolve(this.open(p.id, blob));
        } catch (err) {
          p.reject(err);
        }
      });
    } catch (err) {
      for (let i = handed; i < batch.length; i++) batch[i].reject(err);
      return;
    }
    if (answered === 'unsupported') {
      this.batched = false; // an older box
      batch.forEach(alone);
      return;
    }
    if (answered < batch.length) {
      // The answer stopped early (size cap): ask again for the rest.
      this.queue.push(...batch.slice(answered));
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => this.flush());
      }
    }
  }
}

/** Streams the decrypted manifest of a snapshot (one chunk prefetched). */
export async function openManifest(fetcher: ChunkFetcher, snap: SnapshotInfo): Promise<{ header: ManifestHeader; entries: AsyncGenerator<ManifestEntry> }> {
  async function* bytes(): AsyncGenerator<Buffer> {
    let next: Promise<Buffer> | undefined;
    for (let i = 0; i < snap.manifest.length; i++) {
      const cur = next ?? fetcher.get(Buffer.from(snap.manifest[i].id, 'hex'));
      next = i + 1 < snap.manifest.length ? fetcher.get(Buffer.from(snap.manifest[i + 1].id, 'hex')) : undefined;
      next?.catch(() => undefined);
      yield await cur;
    }
  }
  return readManifest(bytes());
}

export function matchesSubpath(p: Buffer, sub: Buffer | undefined): boolean {
  if (!sub) return true;
  return p.equals(sub) || (p.length > sub.length && p[sub.length] === 0x2f && p.subarray(0, sub.length).equals(sub));
}


class TargetTree {
  private readonly verified = new Set<string>();
  /** directories this restore created: nothing else can be in them, so no lstat before a create */
  private readonly fresh = new Set<string>();
  constructor(readonly root: string, rootIsFresh: boolean) {
    if (rootIsFresh) this.fresh.add('');
  }

  abs(rel: Buffer): Buffer {
    return Buffer.concat([Buffer.from(this.root), Buffer.from('/'), rel]);
  }

  /**
   * Makes sure every directory from the root down to `rel` is a real directory (created 0700
   * when absent). Synchronous calls: one directory costs a few of them, and a thread-pool hop
   * each cost more than the call (as in the backup's scan). Under a directory this restore
   * created nothing else can be, so mkdir goes first there; anywhere else lstat goes first.
   * Whichever way, an entry that was there already is lstat'ed and must be a real directory.
   */
  ensureDir(rel: Buffer): void {
    let i = 0;
    let parentFresh = this.fresh.has('');
    while (i <= rel.length) {
      let j = rel.indexOf(0x2f, i);
      if (j < 0) j = rel.length;
      const prefix = rel.subarray(0, j);
      const key = prefix.toString('latin1');
      if (!this.verified.has(key)) {
        const abs = this.abs(prefix);
        let st: fs.Stats | undefined;
        if (!parentFresh) {
          try {
            st = fs.lstatSync(abs);
          } catch (err) {
            if (errnoCode(err) !== 'ENOENT') throw err;
          }
        }
        if (!st) {
          try {
            fs.mkdirSync(abs, { mode: 0o700 });
            this.fresh.add(key);
          } catch (err) {
            if (errnoCode(err) !== 'EEXIST') throw err;
            if (!fs.lstatSync(abs).isDirectory()) throw unsafe(prefix);
          }
        } else if (!st.isDirectory()) {
          throw unsafe(prefix);
        }
        this.verified.add(key);
      }
      parentFresh = this.fresh.has(key);
      i = j + 1;
    }
  }

  /** Whether rel's directory was created by this restore (so nothing can be at rel yet). */
  parentIsFresh(rel: Buffer): boolean {
    const k = rel.lastIndexOf(0x2f);
    return this.fresh.has(k < 0 ? '' : rel.subarray(0, k).toString('latin1'));
  }

  ensureParent(rel: Buffer): void {
    const k = rel.lastIndexOf(0x2f);
    if (k > 0) this.ensureDir(rel.subarray(0, k));
  }

  /** Removes an existing non-directory at rel (a symlink there is removed, never followed). */
  async clear(rel: Buffer): Promise<void> {
    if (this.parentIsFresh(rel)) return;
    const abs = this.abs(rel);
    let st: fs.Stats;
    try {
      st = await fs.promises.lstat(abs);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return;
      throw err;
    }
    if (st.isDirectory()) throw new CairnError('CAIRN_RESTORE_FAILED', `${abs.toString()} is an existing directory; not replacing it with a file`);
    await fs.promises.unlink(abs);
  }
}

function unsafe(rel: Buffer): CairnError {
  return new CairnError('CAIRN_RESTORE_UNSAFE_PATH', `refusing to restore under ${rel.toString()}: it exists in the target and is not a real directory (a symlink or a file)`);
}

/** files handed to the workers and not yet done: enough to fill their batched fetches with small files */
const MAX_FILES = 256;
/** files below this size go to their directory's worker (see RestorePool.open) */
const SMALL_FILE = 1024 * 1024;

const EMPTY = Buffer.alloc(0);

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

/**
 * Seconds for fs.utimes. libuv turns the double into a timespec and truncates to whole
 * microseconds; at today's epoch a double is only good to about 0.24 us, so plain
 * `us / 1e6` lands 1 us early about half the time (and a millisecond-aligned mtime then
 * reads back as the previous millisecond). Aiming at the middle of the microsecond makes the
 * truncation exact. Sub-microsecond digits are lost: Node cannot set them.
 */
export function nsToSeconds(ns: bigint): number {
  const us = ns / 1000n;
  const whole = us / 1000000n;
  let frac = us % 1000000n;
  let sec = whole;
  if (frac < 0n) {
    frac += 1000000n;
    sec -= 1n;
  }
  return Number(sec) + (Number(frac) + 0.5) / 1e6;
}

export async function restoreSnapshot(client: BoxClient, keys: DataKeys, snap: SnapshotInfo, opts: RestoreOptions): Promise<RestoreResult> {
  const started = Date.now();
  const fetcher = new ChunkFetcher(client, keys, snap.id);
  const sub = opts.subpath ? Buffer.from(opts.subpath) : undefined;
  const verifyOnly = !!opts.verifyOnly;
  if (!verifyOnly && !opts.target) throw new CairnError('CAIRN_USAGE', 'restore needs --target DIR');
  const target = verifyOnly ? '' : path.resolve(opts.target!);
  const targetExisted = !verifyOnly && fs.existsSync(target);
  if (!verifyOnly) fs.mkdirSync(target, { recursive: true, mode: 0o700 });
  const tree = new TargetTree(target, !verifyOnly && !targetExisted);
  const r: RestoreResult = { snapshot: snap.id, files: 0, dirs: 0, bytes: 0, failed: 0, symlinks: 0, hardlinks: 0, duration_s: 0, failures: [] };
  const dirs: ManifestEntry[] = [];
  const linkTargets = new Map<string, Promise<boolean>>();
  const pool = new RestorePool(client, snap.id, keys, (bytes) => (r.bytes += bytes));
  // Files in progress: at most MAX_FILES (a counting semaphore; Promise.race over the set per file cost O(n) handlers each time).
  const fileSlots = new Semaphore(MAX_FILES);
  const inflightFiles = new Set<Promise<void>>();
  const fail = (e: ManifestEntry, err: unknown): void => {
    r.failed++;
    if (r.failures.length < 1000) r.failures.push({ path: e.path.toString(), message: errorMessage(err) });
  };
  const progressTimer = opts.onProgress ? setInterval(() => opts.onProgress!({ files: r.files, dirs: r.dirs, bytes: r.bytes, failed: r.failed }), 250) : undefined;

  const restoreFile = async (e: ManifestEntry, created: (ok: boolean) => void): Promise<void> => {
    try {
      let clear = false;
      if (!verifyOnly) {
        tree.ensureParent(e.path);
        clear = !tree.parentIsFresh(e.path);
      }
      const slash = e.path.lastIndexOf(0x2f);
      const times = nsToSeconds(e.mtimeNs);
      const refs = e.chunks ?? EMPTY;
      // A small file goes to the worker of its directory, or when its bytes share a chunk with
      // others (bundled: manifest version 2) to the worker of that chunk, which then fetches
      // and opens it once for all of them (see FileSpread).
      const shared = refs.length > 0 && (e.skip !== undefined || refs.readUInt32LE(CHUNK_ID_BYTES) !== e.size);
      await pool.restore(
        { abs: verifyOnly ? EMPTY : tree.abs(e.path), refs, skip: e.skip ?? 0, size: e.size, clear, verifyOnly, mode: e.mode, uid: e.uid, gid: e.gid, atime: times, mtime: times },
        e.size,
        e.size >= SMALL_FILE ? undefined : shared ? refs.subarray(0, CHUNK_ID_BYTES) : e.path.subarray(0, Math.max(slash, 0)),
      );
      r.files++;
      created(true);
    } catch (err) {
      created(false);
      if (!verifyOnly && CairnError.is(err) && err.code.startsWith('CAIRN_CHUNK')) {
        err = new CairnError('CAIRN_RESTORE_FAILED', `not restored: ${errorMessage(err)}`);
      }
      fail(e, err);
    }
  };

  try {
    const { entries } = await openManifest(fetcher, snap);
    for await (const e of entries) {
      if (!matchesSubpath(e.path, sub)) continue;
      try {
        if (e.type === 'dir') {
          if (!verifyOnly) tree.ensureDir(e.path);
          dirs.push(e);
          r.dirs++;
        } else if (e.type === 'symlink') {
          if (!verifyOnly) {
            tree.ensureParent(e.path);
            await tree.clear(e.path);
            const abs = tree.abs(e.path);
            await fs.promises.symlink(e.target!, abs);
            if (isRoot) await fs.promises.lchown(abs, e.uid, e.gid).catch(() => undefined);
            await fs.promises.lutimes(abs, nsToSeconds(e.mtimeNs), nsToSeconds(e.mtimeNs));
          }
          r.symlinks++;
        } else if (e.type === 'hardlink' && !verifyOnly && linkTargets.has(e.target!.toString('latin1')) && (await linkTargets.get(e.target!.toString('latin1')))) {
          tree.ensureParent(e.path);
          await tree.clear(e.path);
          await fs.promises.link(tree.abs(e.target!), tree.abs(e.path));
          r.hardlinks++;
        } else {
          let created: (ok: boolean) => void = () => undefined;
          // Only files that other entries hard-link to need remembering.
          if (e.linked) linkTargets.set(e.path.toString('latin1'), new Promise<boolean>((res) => (created = res)));
          await fileSlots.acquire();
          const p: Promise<void> = restoreFile(e, created).finally(() => {
            inflightFiles.delete(p);
            fileSlots.release();
          });
          inflightFiles.add(p);
        }
      } catch (err) {
        fail(e, err);
      }
    }
    await Promise.all(inflightFiles);
    if (!verifyOnly) {
      // Directory modes and times last, deepest first, so restoring children did not disturb them.
      for (let i = dirs.length - 1; i >= 0; i--) {
        const d = dirs[i];
        const abs = tree.abs(d.path);
        try {
          // Synchronous, as in ensureDir: a thread-pool hop per call cost more than the call.
          if (isRoot) {
            try {
              fs.lchownSync(abs, d.uid, d.gid);
            } catch {
              /* an id this system cannot take: the mode and times still apply */
            }
          }
          fs.chmodSync(abs, d.mode);
          fs.utimesSync(abs, nsToSeconds(d.mtimeNs), nsToSeconds(d.mtimeNs));
        } catch (err) {
          fail(d, err);
        }
      }
    }
  } finally {
    if (progressTimer) clearInterval(progressTimer);
    await pool.close();
  }
  r.duration_s = (Date.now() - started) / 1000;
  return r;
}
