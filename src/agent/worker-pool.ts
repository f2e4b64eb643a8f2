import { Worker } from 'node:worker_threads';
import { ChunkKind } from '../core/chunk-codec';
import { DataKeys, dataKeysToJson } from '../core/keys';
import type { BundleJob, BundlePart, FileJob, WorkerInit, WorkerMessage } from './chunk-worker';
import type { VolumeDone, VolumeJob } from './volume/volume-job';
import { ThreadOutbox } from './thread-outbox';
import { createRing, RingReader } from './blob-ring';
import { defaultChunkThreads, takeWorker } from './prewarm';
import { KnownIds } from './known-ids';

/**
 * Each worker's blob ring (see blob-ring.ts): blobs of up to half of it are sealed into it.
 * 16 MiB, and 32 MiB of sealed blobs in flight (INFLIGHT_BYTES), with five uploads on the wire
 * (uploader.ts): once small files were bundled, the large incompressible files left the machine
 * 20-40% idle, workers waiting for room while cairnd wrote the last uploads. 1 GB first backups
 * 3.60-3.98 s (median 3.79, 7 runs) against 3.93-4.18 s (median 4.05, 8 runs) with 8 MiB, 16 MiB
 * and three; the agent's peak RSS 174-177 MB against 153-156. Either change alone gained about
 * half as much.
 */
const RING_BYTES = 16 * 1024 * 1024;
const INFLIGHT_BYTES = 32 * 1024 * 1024;

export interface ChunkOut {
  id: Buffer;
  size: number;
  blob: Buffer;
  /** where the blob lives in its worker's ring (given back by WorkerPool.release) */
  ring?: { worker: number; slot: { off: number; end: number; freed: boolean } };
  /** not sealed: its id was in the run's known-ids table (`blob` is empty; nothing to release) */
  known?: boolean;
}

const NO_BLOB = Buffer.alloc(0);

export interface FileResult {
  bytes: number;
  mtimeNs: string;
  ctimeNs: string;
  error?: string;
  errno?: string;
}

interface Pending {
  /** what the job weighs in its worker's queue (see pick) */
  weight: number;
  onChunk: (c: ChunkOut) => void;
  resolve: (r: FileResult) => void;
  /** volume jobs: their result (resolve is then only used to report a failed worker) */
  onVolume?: (m: VolumeDone) => void;
  /** bundles: each file's place in the stream */
  onPart?: (m: BundlePart) => void;
  worker: number;
}

/** a job's fixed cost in queued bytes (open, stat, close, messages): a tree of empty files still spreads */
const JOB_COST_BYTES = 64 * 1024;
/** file jobs of this size and more leave at once, not at the end of the turn */
const POST_NOW_BYTES = 1024 * 1024;
/** what each further file of a bundle adds (open, stat, close: no message of its own) */
const BUNDLE_FILE_COST_BYTES = 16 * 1024;

/**
 * A pool of chunk workers (one per core by default). Each job goes to the worker with the
 * fewest bytes queued; chunks stream back through `onChunk` in file order. `release(bytes)` must be called
 * for every chunk once its blob is no longer needed (the back-pressure contract of chunk-worker).
 */
export class WorkerPool {
  private readonly workers: Worker[] = [];
  /** bytes queued on each worker (jobs' weights), so a large file does not hold up the small ones queued behind it */
  private readonly busy: number[] = [];
  private readonly pending = new Map<number, Pending>();
  private readonly inflight: Int32Array;
  private readonly rings: RingReader[] = [];
  /** ids the workers need not seal in this run (see known-ids.ts) */
  readonly known = new KnownIds();
  private nextJob = 1;
  private failed: Error | undefined;
  /** jobs leave in one message per worker and event-loop turn */
  private readonly outbox: ThreadOutbox<FileJob | BundleJob | VolumeJob>;

  constructor(keys: DataKeys, opts: { threads?: number; inflightLimitBytes?: number } = {}) {
    const threads = opts.threads ?? defaultChunkThreads();
    const sab = new SharedArrayBuffer(4);
    this.inflight = new Int32Array(sab);
    for (let i = 0; i < threads; i++) {
      const w = takeWorker('chunk-worker.js');
      const ring = createRing(RING_BYTES);
      this.rings.push(new RingReader(ring));
      const init: WorkerInit = { keys: dataKeysToJson(keys), inflight: sab, limitBytes: opts.inflightLimitBytes ?? INFLIGHT_BYTES, ring, known: this.known.shared };
      w.postMessage([{ type: 'init', init }]);
      w.on('message', (batch: WorkerMessage[]) => batch.forEach((m) => this.onMessage(m, i)));
      w.on('error', (err) => this.fail(err));
      w.on('exit', (code) => {
        if (code !== 0) this.fail(new Error(`chunk worker exited with code ${code}`));
      });
      this.workers.push(w);
      this.busy.push(0);
    }
    this.outbox = new ThreadOutbox(this.workers);
  }

  private fail(err: Error): void {
    this.failed = err;
    for (const [id, p] of this.pending) {
      p.resolve({ bytes: 0, mtimeNs: '0', ctimeNs: '0', error: `chunk worker failed: ${err.message}` });
      this.pending.delete(id);
    }
  }

  private onMessage(m: WorkerMessage, worker: number): void {
    const p = this.pending.get(m.jobId);
    if (m.type === 'chunk') {
      const id = Buffer.from(m.id.buffer, m.id.byteOffset, m.id.byteLength);
      // Every ring blob is recorded in the order the worker placed it, even one nobody waits
      // for any more (freed at once): the ring's bookkeeping depends on seeing all of them.
      let c: ChunkOut;
      if (m.known) {
        if (p) p.onChunk({ id, size: m.size, blob: NO_BLOB, known: true });
        return;
      }
      if (m.ring) {
        const { buf, slot } = this.rings[worker].seen(m.ring[0], m.ring[1]);
        c = { id, size: m.size, blob: buf, ring: { worker, slot } };
      } else c = { id, size: m.size, blob: Buffer.from(m.blob!) };
      if (p) p.onChunk(c);
      else this.release(c);
      return;
    }
    if (!p) return;
    if (m.type === 'part') {
      p.onPart?.(m);
      return;
    }
    if (m.type === 'volume-done') {
      this.pending.delete(m.jobId);
      this.busy[p.worker] -= p.weight;
      p.onVolume?.(m);
    } else {
      this.pending.delete(m.jobId);
      this.busy[p.worker] -= p.weight;
      p.resolve({ bytes: m.bytes, mtimeNs: m.mtimeNs, ctimeNs: m.ctimeNs, error: m.error, errno: m.errno });
    }
  }

  /**
   * The worker for a job of `bytes`: the one with the fewest bytes queued. Jobs were once
   * spread by count: a worker given a 74 MB file then still got every other small file, which
   * queued behind it while the other worker ran dry (profiled on the bench corpus: one worker
   * idle 51% of a first backup, the other 12%).
   */
  private pick(bytes: number): { worker: number; weight: number } {
    let w = 0;
    for (let i = 1; i < this.busy.length; i++) if (this.busy[i] < this.busy[w]) w = i;
    const weight = JOB_COST_BYTES + Math.max(0, bytes);
    this.busy[w] += weight;
    return { worker: w, weight };
  }

  /** Chunks one file (`sizeHint`: its size when listed, for spreading the load). Resolves when the worker has posted its last chunk. */
  chunkFile(filePath: Buffer, kind: ChunkKind, onChunk: (c: ChunkOut) => void, sizeHint = 0): Promise<FileResult> {
    if (this.failed) return Promise.reject(this.failed);
    const { worker: w, weight } = this.pick(sizeHint);
    const jobId = this.nextJob++;
    return new Promise<FileResult>((resolve) => {
      this.pending.set(jobId, { weight, onChunk, resolve, worker: w });
      // A large file is worth a message of its own at once (see ThreadOutbox.postNow).
      if (sizeHint >= POST_NOW_BYTES) this.outbox.postNow(w, { type: 'file', jobId, path: filePath, kind });
      else this.outbox.post(w, { type: 'file', jobId, path: filePath, kind });
    });
  }

  /**
   * Chunks small files as one stream (see BundleJob in chunk-worker): `onPart` hears where each
   * file's bytes lie in it, `onChunk` gets the stream's chunks in order. Resolves after the last
   * chunk; `error` is set only when the stream itself failed (a file's failure is its part's).
   */
  chunkBundle(paths: Buffer[], onChunk: (c: ChunkOut) => void, onPart: (m: BundlePart) => void, sizeHint = 0): Promise<FileResult> {
    if (this.failed) return Promise.reject(this.failed);
    const { worker: w, weight } = this.pick(sizeHint + (paths.length - 1) * BUNDLE_FILE_COST_BYTES);
    const jobId = this.nextJob++;
    return new Promise<FileResult>((resolve) => {
      this.pending.set(jobId, { weight, onChunk, resolve, onPart, worker: w });
      this.outbox.postNow(w, { type: 'bundle', jobId, paths });
    });
  }

  /** Reads, hashes, compares and seals a range of volume blocks (see volume/volume-job.ts); new blocks stream through `onChunk`. */
  volumeRange(job: Omit<VolumeJob, 'type' | 'jobId'>, onChunk: (c: ChunkOut) => void): Promise<VolumeDone> {
    if (this.failed) return Promise.reject(this.failed);
    const { worker: w, weight } = this.pick(job.length);
    const jobId = this.nextJob++;
    return new Promise<VolumeDone>((resolve) => {
      const failed = (r: FileResult): void => resolve({ type: 'volume-done', jobId, bytes: 0, states: new Uint8Array(0), ids: new Uint8Array(0), error: r.error ?? 'chunk worker failed' });
      this.pending.set(jobId, { weight, onChunk, resolve: failed, onVolume: resolve, worker: w });
      this.outbox.post(w, { type: 'volume', jobId, ...job });
    });
  }

  get queued(): number {
    return this.pending.size;
  }

  /** bytes queued on each worker (what the next job is spread by) */
  get queuedBytes(): readonly number[] {
    return this.busy.slice();
  }

  /** A chunk's blob is no longer needed (uploaded, known to the box, or the run failed): its bytes and its ring space are freed. */
  release(c: ChunkOut): void {
    Atomics.sub(this.inflight, 0, c.blob.length);
    Atomics.notify(this.inflight, 0);
    if (c.ring) this.rings[c.ring.worker].free(c.ring.slot);
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
