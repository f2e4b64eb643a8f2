import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { ChunkKind } from '../core/chunk-codec';
import { DataKeys, dataKeysToJson } from '../core/keys';
import type { FileJob, WorkerInit, WorkerMessage } from './chunk-worker';
import type { VolumeDone, VolumeJob } from './volume/volume-job';
import { ThreadOutbox } from './thread-outbox';
import { createRing, RingReader } from './blob-ring';

/** each worker's blob ring (see blob-ring.ts): blobs of up to half of it are sealed into it */
const RING_BYTES = 8 * 1024 * 1024;

export interface ChunkOut {
  id: Buffer;
  size: number;
  blob: Buffer;
  /** where the blob lives in its worker's ring (given back by WorkerPool.release) */
  ring?: { worker: number; slot: { off: number; end: number; freed: boolean } };
}

export interface FileResult {
  bytes: number;
  mtimeNs: string;
  ctimeNs: string;
  error?: string;
  errno?: string;
}

interface Pending {
  onChunk: (c: ChunkOut) => void;
  resolve: (r: FileResult) => void;
  /** volume jobs: their result (resolve is then only used to report a failed worker) */
  onVolume?: (m: VolumeDone) => void;
  worker: number;
}

/**
 * A pool of chunk workers (one per core by default). Files are handed to the least busy
 * worker; chunks stream back through `onChunk` in file order. `release(bytes)` must be called
 * for every chunk once its blob is no longer needed (the back-pressure contract of chunk-worker).
 */
export class WorkerPool {
  private readonly workers: Worker[] = [];
  private readonly busy: number[] = [];
  private readonly pending = new Map<number, Pending>();
  private readonly inflight: Int32Array;
  private readonly rings: RingReader[] = [];
  private nextJob = 1;
  private failed: Error | undefined;
  /** jobs leave in one message per worker and event-loop turn */
  private readonly outbox: ThreadOutbox<FileJob | VolumeJob>;

  constructor(keys: DataKeys, opts: { threads?: number; inflightLimitBytes?: number } = {}) {
    const threads = opts.threads ?? Math.max(1, Math.min(os.availableParallelism(), 8));
    const sab = new SharedArrayBuffer(4);
    this.inflight = new Int32Array(sab);
    for (let i = 0; i < threads; i++) {
      const w = new Worker(path.join(__dirname, 'chunk-worker.js'));
      const ring = createRing(RING_BYTES);
      this.rings.push(new RingReader(ring));
      const init: WorkerInit = { keys: dataKeysToJson(keys), inflight: sab, limitBytes: opts.inflightLimitBytes ?? 16 * 1024 * 1024, ring };
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
      if (m.ring) {
        const { buf, slot } = this.rings[worker].seen(m.ring[0], m.ring[1]);
        c = { id, size: m.size, blob: buf, ring: { worker, slot } };
      } else c = { id, size: m.size, blob: Buffer.from(m.blob!) };
      if (p) p.onChunk(c);
      else this.release(c);
      return;
    }
    if (!p) return;
    if (m.type === 'volume-done') {
      this.pending.delete(m.jobId);
      this.busy[p.worker]--;
      p.onVolume?.(m);
    } else {
      this.pending.delete(m.jobId);
      this.busy[p.worker]--;
      p.resolve({ bytes: m.bytes, mtimeNs: m.mtimeNs, ctimeNs: m.ctimeNs, error: m.error, errno: m.errno });
    }
  }

  /** Chunks one file. Resolves when the worker has posted its last chunk. */
  chunkFile(filePath: Buffer, kind: ChunkKind, onChunk: (c: ChunkOut) => void): Promise<FileResult> {
    if (this.failed) return Promise.reject(this.failed);
    let w = 0;
    for (let i = 1; i < this.busy.length; i++) if (this.busy[i] < this.busy[w]) w = i;
    const jobId = this.nextJob++;
    this.busy[w]++;
    return new Promise<FileResult>((resolve) => {
      this.pending.set(jobId, { onChunk, resolve, worker: w });
      this.outbox.post(w, { type: 'file', jobId, path: filePath, kind });
    });
  }

  /** Reads, hashes, compares and seals a range of volume blocks (see volume/volume-job.ts); new blocks stream through `onChunk`. */
  volumeRange(job: Omit<VolumeJob, 'type' | 'jobId'>, onChunk: (c: ChunkOut) => void): Promise<VolumeDone> {
    if (this.failed) return Promise.reject(this.failed);
    let w = 0;
    for (let i = 1; i < this.busy.length; i++) if (this.busy[i] < this.busy[w]) w = i;
    const jobId = this.nextJob++;
    this.busy[w]++;
    return new Promise<VolumeDone>((resolve) => {
      const failed = (r: FileResult): void => resolve({ type: 'volume-done', jobId, bytes: 0, states: new Uint8Array(0), ids: new Uint8Array(0), error: r.error ?? 'chunk worker failed' });
      this.pending.set(jobId, { onChunk, resolve: failed, onVolume: resolve, worker: w });
      this.outbox.post(w, { type: 'volume', jobId, ...job });
    });
  }

  get queued(): number {
    return this.pending.size;
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
