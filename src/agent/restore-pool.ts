import { Worker } from 'node:worker_threads';
import { CairnError, CairnErrorCode } from '../core/errors';
import { DataKeys, dataKeysToJson } from '../core/keys';
import type { RestoreWorkerReply, RestoreWorkerRequest } from './restore-worker';
import { ThreadOutbox } from './thread-outbox';
import type { BoxClient } from './box-client';
import { defaultRestoreThreads, takeWorker } from './prewarm';

/** One regular file to restore. */
export interface FileJob {
  /** absolute path (empty when verifying only) */
  abs: Buffer;
  /** the manifest entry's chunk refs (36 bytes each) */
  refs: Buffer;
  /** bytes of the first chunk before the file's own (bundled small files, manifest version 2) */
  skip: number;
  /** the file's length (its chunks may hold more: see skip) */
  size: number;
  /** an entry may already exist at abs (its parent was not created by this restore) */
  clear: boolean;
  verifyOnly: boolean;
  mode: number;
  uid: number;
  gid: number;
  /** seconds, already adjusted for libuv's truncation (see nsToSeconds) */
  atime: number;
  mtime: number;
}

/**
 * Which restore worker gets a file. Files go to the worker with the fewest bytes in progress,
 * except that a directory's small files (those given a `dir`) stay on one worker while any of
 * them is in progress: creating files in one directory from several threads made them spin on
 * the directory's lock in the kernel (profiled: open() took 70% of every worker).
 *
 * Weighed in bytes, not files: with files counted and every directory hashed to a fixed
 * worker, one worker of a 1 GB restore used 5.2 s of CPU and the other 3.1 s, idle while the
 * first finished.
 */
export class FileSpread {
  /** plaintext bytes given to each worker and not yet done */
  readonly load: number[];
  /** the worker each directory's small files go to, while some are in progress */
  private readonly dirs = new Map<string, { worker: number; files: number }>();

  constructor(workers: number) {
    this.load = new Array<number>(workers).fill(0);
  }

  choose(bytes: number, dir?: string): number {
    let d = dir === undefined ? undefined : this.dirs.get(dir);
    let w = 0;
    if (d) w = d.worker;
    else {
      for (let i = 1; i < this.load.length; i++) if (this.load[i] < this.load[w]) w = i;
      if (dir !== undefined) this.dirs.set(dir, (d = { worker: w, files: 0 }));
    }
    if (d) d.files++;
    this.load[w] += bytes;
    return w;
  }

  /** A file chosen with these arguments is done (or failed). */
  done(worker: number, bytes: number, dir?: string): void {
    this.load[worker] -= bytes;
    if (dir === undefined) return;
    const d = this.dirs.get(dir);
    if (d && --d.files === 0) this.dirs.delete(dir);
  }
}

/**
 * Restore workers (see restore-worker.ts): each fetches, checks and writes the files given to
 * it over its own connections to the box. `onBytes(n)` reports plaintext bytes checked.
 */
export class RestorePool {
  private readonly workers: Worker[] = [];
  private readonly spread: FileSpread;
  private readonly files = new Map<number, { resolve: () => void; reject: (e: CairnError) => void; worker: number; bytes: number; dir?: string }>();
  /** requests leave in one message per worker and event-loop turn */
  private readonly outbox: ThreadOutbox<RestoreWorkerRequest>;
  private nextId = 1;
  private failed: Error | undefined;

  constructor(client: BoxClient, snapshot: string, keys: DataKeys, private readonly onBytes: (bytes: number) => void, opts: { threads?: number } = {}) {
    const threads = opts.threads ?? defaultRestoreThreads();
    const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
    for (let i = 0; i < threads; i++) {
      const w = takeWorker('restore-worker.js');
      const init: RestoreWorkerRequest[] = [{ type: 'init', keys: dataKeysToJson(keys), isRoot, box: client.spec, snapshot, umask: process.umask() }];
      w.postMessage(init);
      w.on('message', (replies: RestoreWorkerReply[]) => replies.forEach((m) => this.onMessage(m)));
      w.on('error', (err) => this.fail(err));
      w.on('exit', (code) => {
        if (code !== 0) this.fail(new Error(`restore worker exited with code ${code}`));
      });
      this.workers.push(w);
    }
    this.spread = new FileSpread(threads);
    this.outbox = new ThreadOutbox(this.workers);
  }

  private fail(err: Error): void {
    this.failed ??= err;
    const e = new CairnError('CAIRN_RESTORE_FAILED', `restore worker failed: ${err.message}`);
    for (const f of this.files.values()) f.reject(e);
    this.files.clear();
  }

  private onMessage(m: RestoreWorkerReply): void {
    if (m.type === 'bytes') return this.onBytes(m.bytes);
    const f = this.files.get(m.file);
    if (!f) return;
    this.files.delete(m.file);
    this.spread.done(f.worker, f.bytes, f.dir);
    if (m.type === 'done') f.resolve();
    else {
      const code = m.code && /^CAIRN_[A-Z_]+$/.test(m.code) ? (m.code as CairnErrorCode) : 'CAIRN_RESTORE_FAILED';
      f.reject(new CairnError(code, m.message));
    }
  }

  /** Restores one file of `bytes` plaintext bytes; settles when it is written and closed (or removed after a failure). See FileSpread for `dirKey`. */
  restore(job: FileJob, bytes: number, dirKey?: Buffer): Promise<void> {
    if (this.failed) return Promise.reject(new CairnError('CAIRN_RESTORE_FAILED', `restore worker failed: ${this.failed.message}`));
    const dir = dirKey?.toString('latin1');
    const w = this.spread.choose(bytes, dir);
    const file = this.nextId++;
    const { abs, refs, ...rest } = job;
    this.outbox.post(w, { type: 'file', file, abs: abs.toString('latin1'), refs: refs.toString('latin1'), ...rest });
    return new Promise<void>((resolve, reject) => this.files.set(file, { resolve, reject, worker: w, bytes, dir }));
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
