import { BoxClient } from './box-client';
import { WorkerPool, ChunkOut } from './worker-pool';
import { encodeUploadBatch, MAX_MISSING_QUERY } from '../core/api';

/**
 * Batches sealed chunks, asks the box which of them it lacks, and uploads only those.
 * At most `maxActive` batches are on the wire; a batch leaves when it is full or when the wire
 * is idle, so small backups do not wait and large ones travel in large requests.
 * Every chunk's bytes are released to the worker pool once it is uploaded or known to be stored.
 */
export interface UploadStats {
  bytes_new: number;
  bytes_uploaded: number;
  chunks_new: number;
  chunks_seen: number;
}

const BATCH_BYTES = 4 * 1024 * 1024;
const BATCH_COUNT = 512;
const KNOWN_LIMIT = 500_000;

export class Uploader {
  readonly stats: UploadStats = { bytes_new: 0, bytes_uploaded: 0, chunks_new: 0, chunks_seen: 0 };
  private pending: ChunkOut[] = [];
  private pendingBytes = 0;
  private active = 0;
  private readonly known = new Map<string, true>();
  /** ids in a batch on the wire: another batch holding the same id leaves it to that one */
  private readonly onWire = new Set<string>();
  private error: Error | undefined;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly client: BoxClient, private readonly pool: WorkerPool, private readonly maxActive = 2) {}

  add(c: ChunkOut): void {
    this.stats.chunks_seen++;
    if (this.error) {
      this.pool.release(c);
      return;
    }
    this.pending.push(c);
    this.pendingBytes += c.blob.length;
    this.maybeDispatch();
  }

  private remember(hex: string): void {
    this.known.set(hex, true);
    if (this.known.size > KNOWN_LIMIT) this.known.delete(this.known.keys().next().value as string);
  }

  private maybeDispatch(): void {
    while (this.pending.length && this.active < this.maxActive && (this.active === 0 || this.pendingBytes >= BATCH_BYTES || this.pending.length >= BATCH_COUNT)) {
      let take = 0;
      let bytes = 0;
      while (take < this.pending.length && take < BATCH_COUNT && (take === 0 || bytes + this.pending[take].blob.length <= BATCH_BYTES)) {
        bytes += this.pending[take].blob.length;
        take++;
      }
      const batch = this.pending.splice(0, take);
      this.pendingBytes -= bytes;
      this.active++;
      this.send(batch).then(
        () => this.finish(),
        (err: Error) => {
          this.error ??= err;
          this.finish();
        },
      );
    }
  }

  private finish(): void {
    this.active--;
    if (this.error) {
      for (const c of this.pending) this.pool.release(c);
      this.pending = [];
      this.pendingBytes = 0;
    }
    this.maybeDispatch();
    if (this.active === 0 && this.pending.length === 0) {
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const f of w) f();
    }
  }

  private async send(batch: ChunkOut[]): Promise<void> {
    const fresh: ChunkOut[] = [];
    try {
      for (const c of batch) {
        const hex = c.id.toString('hex');
        if (this.known.has(hex) || this.onWire.has(hex)) {
          // Stored already, or travelling in another batch (whose failure fails the whole run).
          this.pool.release(c);
          continue;
        }
        this.onWire.add(hex);
        fresh.push(c);
      }
      if (fresh.length === 0) return;
      const missingSet = new Set<string>();
      for (let i = 0; i < fresh.length; i += MAX_MISSING_QUERY) {
        const ids = Buffer.concat(fresh.slice(i, i + MAX_MISSING_QUERY).map((c) => c.id));
        const body = await this.client.call('POST', '/v1/chunks/missing', ids);
        for (let off = 0; off + 32 <= body.length; off += 32) missingSet.add(body.subarray(off, off + 32).toString('hex'));
      }
      const toSend = fresh.filter((c) => missingSet.has(c.id.toString('hex')));
      if (toSend.length) {
        await this.client.call('POST', '/v1/chunks', encodeUploadBatch(toSend));
        for (const c of toSend) {
          this.stats.bytes_new += c.size;
          this.stats.bytes_uploaded += c.blob.length;
          this.stats.chunks_new++;
        }
      }
      for (const c of fresh) this.remember(c.id.toString('hex'));
    } finally {
      for (const c of fresh) {
        this.onWire.delete(c.id.toString('hex'));
        this.pool.release(c);
      }
    }
  }

  /** Throws the first upload error, so a run stops early when the box went away. */
  check(): void {
    if (this.error) throw this.error;
  }

  /** Waits until every chunk handed in so far is stored on the box; throws the first upload error. */
  async drain(): Promise<void> {
    this.maybeDispatch();
    if (this.active > 0 || this.pending.length > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    if (this.error) throw this.error;
  }
}
