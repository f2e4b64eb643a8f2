import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { CairnError, CairnErrorCode } from '../core/errors';
import { DataKeys, dataKeysToJson } from '../core/keys';
import type { RestoreWorkerReply, RestoreWorkerRequest } from './restore-worker';
import { ThreadOutbox } from './thread-outbox';
import { BufferPool } from './buffer-pool';

/** File metadata applied when a restored file is complete. */
export interface FileMeta {
  mode: number;
  uid: number;
  gid: number;
  /** seconds, already adjusted for libuv's truncation (see nsToSeconds) */
  atime: number;
  mtime: number;
}

/** One file being restored by a worker. */
export class RestoringFile {
  /** set as soon as the worker reports a failure: callers stop fetching its chunks */
  failure: CairnError | undefined;
  private settle: { resolve: () => void; reject: (e: CairnError) => void } | undefined;
  private readonly settled: Promise<void>;

  constructor(private readonly pool: RestorePool, readonly id: number, private readonly worker: number) {
    this.settled = new Promise<void>((resolve, reject) => (this.settle = { resolve, reject }));
    this.settled.catch(() => undefined); // observed through finish()
  }

  /**
   * Hands a sealed chunk to the worker: `framed` is its 32-byte id followed by the blob, as
   * ChunkFetcher.getSealed returns it. Its memory is transferred, not copied, when the buffer
   * owns the whole of it (a pooled or shared one is copied first).
   */
  write(offset: number, size: number, framed: Buffer): void {
    let data = framed;
    const whole = framed.byteOffset === 0 && framed.buffer instanceof ArrayBuffer && (framed.byteLength === framed.buffer.byteLength || this.pool.buffers.owns(framed.buffer));
    if (!whole) {
      data = Buffer.allocUnsafeSlow(framed.length);
      framed.copy(data);
    }
    const ab = data.buffer as ArrayBuffer;
    this.pool.post(this.worker, { type: 'chunk', file: this.id, offset, size, data: ab, length: data.length }, [ab]);
  }

  /** Applies owner, mode and times and closes the file; rejects with the file's failure. */
  finish(meta: FileMeta): Promise<void> {
    this.pool.post(this.worker, { type: 'finish', file: this.id, ...meta });
    return this.settled;
  }

  /** Gives up on the file: the worker closes and removes it. */
  abort(): void {
    this.pool.post(this.worker, { type: 'abort', file: this.id });
    this.pool.forget(this.id);
  }

  /** @internal */
  reply(m: RestoreWorkerReply): void {
    if (m.type === 'done') this.settle?.resolve();
    else if (m.type === 'failed' && !this.failure) {
      const code = m.code && /^CAIRN_[A-Z_]+$/.test(m.code) ? (m.code as CairnErrorCode) : 'CAIRN_RESTORE_FAILED';
      this.failure = new CairnError(code, m.message);
      this.settle?.reject(this.failure);
    }
  }
}

/**
 * Restore workers (see restore-worker.ts). Each file goes to the worker with the fewest open
 * files; `onAck(bytes)` reports every chunk a worker has finished with, so the caller can
 * bound what is in flight.
 */
export class RestorePool {
  private readonly workers: Worker[] = [];
  private readonly load: number[] = [];
  private readonly files = new Map<number, { file: RestoringFile; worker: number }>();
  /** requests leave in one message per worker and event-loop turn */
  private readonly outbox: ThreadOutbox<RestoreWorkerRequest>;
  private nextId = 1;
  /** chunk buffers: lent to the workers with each chunk, given back with its acknowledgement */
  readonly buffers = new BufferPool(16 * 1024 * 1024);
  private failed: Error | undefined;

  constructor(keys: DataKeys, private readonly onAck: (bytes: number) => void, opts: { threads?: number } = {}) {
    // One worker per core (at least two: file creation is mostly kernel time and can wait on directory locks).
    const threads = opts.threads ?? Math.max(2, Math.min(os.availableParallelism(), 4));
    const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
    for (let i = 0; i < threads; i++) {
      const w = new Worker(path.join(__dirname, 'restore-worker.js'));
      const init: RestoreWorkerRequest[] = [{ type: 'init', keys: dataKeysToJson(keys), isRoot }];
      w.postMessage(init);
      w.on('message', (replies: RestoreWorkerReply[]) => replies.forEach((m) => this.onMessage(m)));
      w.on('error', (err) => this.fail(err));
      w.on('exit', (code) => {
        if (code !== 0) this.fail(new Error(`restore worker exited with code ${code}`));
      });
      this.workers.push(w);
      this.load.push(0);
    }
    this.outbox = new ThreadOutbox(this.workers);
  }

  private fail(err: Error): void {
    this.failed ??= err;
    for (const { file } of this.files.values()) file.reply({ type: 'failed', file: file.id, code: 'CAIRN_RESTORE_FAILED', message: `restore worker failed: ${err.message}` });
    this.files.clear();
  }

  private onMessage(m: RestoreWorkerReply): void {
    if (m.type === 'ack') {
      for (const ab of m.buffers) this.buffers.give(ab);
      return this.onAck(m.bytes);
    }
    const entry = this.files.get(m.file);
    if (!entry) return;
    entry.file.reply(m);
    this.files.delete(m.file);
    this.load[entry.worker]--;
  }

  /** @internal */
  forget(id: number): void {
    const entry = this.files.get(id);
    if (!entry) return;
    this.files.delete(id);
    this.load[entry.worker]--;
  }

  /** @internal */
  post(worker: number, m: RestoreWorkerRequest, transfer?: ArrayBuffer[]): void {
    this.outbox.post(worker, m, transfer);
  }

  /**
   * Starts a file: the worker removes what is at `abs` when `clear` (never a directory) and
   * creates it. `dirKey` (the parent directory) pins small files to one worker per directory:
   * creating files in one directory from several threads made them spin on the directory's
   * lock in the kernel (profiled: open() took 70% of every worker). Large files, whose create
   * is a small part of their cost, go to the least busy worker.
   */
  open(abs: Buffer, clear: boolean, verifyOnly: boolean, dirKey?: Buffer): RestoringFile {
    if (this.failed) throw new CairnError('CAIRN_RESTORE_FAILED', `restore worker failed: ${this.failed.message}`);
    let w = 0;
    if (dirKey) {
      let h = 0x811c9dc5;
      for (let i = 0; i < dirKey.length; i++) h = Math.imul(h ^ dirKey[i], 0x01000193);
      w = (h >>> 0) % this.workers.length;
    } else {
      for (let i = 1; i < this.load.length; i++) if (this.load[i] < this.load[w]) w = i;
    }
    const id = this.nextId++;
    const file = new RestoringFile(this, id, w);
    this.files.set(id, { file, worker: w });
    this.load[w]++;
    this.post(w, { type: 'open', file: id, abs: abs.toString('latin1'), clear, verifyOnly });
    return file;
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
