import { BoxClient } from './box-client';
import { WorkerPool, ChunkOut } from './worker-pool';
import { encodeUploadBatch, MAX_MISSING_QUERY, UploadResult } from '../core/api';

/**
 * Batches sealed chunks, asks the box which of them it lacks, and uploads only those.
 * At most `maxActive` batches are on the wire; a batch leaves when it is full or when the wire
 * is idle, so small backups do not wait and large ones travel in large requests.
 *
 * Once the box has answered that it lacks every id of batches worth `skipAfter` bytes in a row
 * (new data, as in a first backup), the next UNASKED_BATCHES batches go up without asking: the
 * box keeps one copy of what it held and says which ids those were. The first answer that names
 * a held id goes back to asking, and doubles the evidence needed next time, since each wrong
 * guess re-sends up to the batches on the wire. In a 1 GB first backup the question took 8.5 ms
 * a batch at the median, in series before each upload (223 of them). A changed file of an
 * incremental backup is mostly held chunks, which its first batches show.
 * Every chunk's bytes are released to the worker pool once it is uploaded or known to be stored.
 */
export interface UploadStats {
  bytes_new: number;
  bytes_uploaded: number;
  chunks_new: number;
  chunks_seen: number;
  /** chunks not sealed because the run's known-ids table had them (see known-ids.ts) */
  chunks_known: number;
}

const BATCH_BYTES = 4 * 1024 * 1024;
const BATCH_COUNT = 512;
const KNOWN_LIMIT = 500_000;
/**
 * 1 GB first backups on a fresh ext4, 9 alternating runs each: three batches on the wire and
 * uploads without asking, median 5.48 s (5.15-5.89) against 5.50 s (5.33-6.72) with two and
 * asking each time; about the noise here. With 24 MiB in flight and 12 MiB rings as well,
 * 5.29 s (5 runs) and 10 MB more agent RSS, so those stayed at 16 and 8 MiB. Once small files
 * were bundled, five on the wire with 32 MiB in flight and 16 MiB rings gained about 6% (see
 * RING_BYTES in worker-pool.ts).
 */
const MAX_ACTIVE = 5;
const UNASKED_BATCHES = 16;
const SKIP_AFTER_BYTES = 4 * BATCH_BYTES;
const SKIP_AFTER_MAX = 64 * BATCH_BYTES;

export class Uploader {
  readonly stats: UploadStats = { bytes_new: 0, bytes_uploaded: 0, chunks_new: 0, chunks_seen: 0, chunks_known: 0 };
  private pending: ChunkOut[] = [];
  private pendingBytes = 0;
  private active = 0;
  private readonly known = new Map<string, true>();
  /** ids in a batch on the wire: another batch holding the same id leaves it to that one */
  private readonly onWire = new Set<string>();
  private error: Error | undefined;
  /** batches still to upload without asking which ids the box lacks */
  private unasked = 0;
  /** bytes of the batches in a row the box lacked entirely, and how many it takes to stop asking */
  private lackedRun = 0;
  private skipAfter: number;
  private idleWaiters: (() => void)[] = [];

  private readonly maxActive: number;

  constructor(private readonly client: BoxClient, private readonly pool: WorkerPool, opts: { maxActive?: number; skipAfterBytes?: number } = {}) {
    this.maxActive = opts.maxActive ?? MAX_ACTIVE;
    this.skipAfter = opts.skipAfterBytes ?? SKIP_AFTER_BYTES;
  }

  add(c: ChunkOut): void {
    this.stats.chunks_seen++;
    if (c.known) {
      // Sealed and handed in by whoever met it first, or held by the box (see known-ids.ts).
      this.stats.chunks_known++;
      return;
    }
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
      if (this.unasked > 0) {
        this.unasked--;
        const r = uploadResult(await this.client.call('POST', '/v1/chunks', encodeUploadBatch(fresh)));
        const held = new Set(r.existed_ids ?? []);
        if (r.existed !== 0) {
          this.unasked = 0;
          this.lackedRun = 0;
          this.skipAfter = Math.min(this.skipAfter * 2, SKIP_AFTER_MAX);
        }
        for (const c of fresh) {
          this.stats.bytes_uploaded += c.blob.length;
          // An older box says how many it held, not which: those count as new (as does all of
          // an answer that cannot be read, which also sends the uploader back to asking).
          if (held.has(c.id.toString('hex'))) continue;
          this.stats.bytes_new += c.size;
          this.stats.chunks_new++;
        }
        for (const c of fresh) this.remember(c.id.toString('hex'));
        return;
      }
      const missingSet = new Set<string>();
      for (let i = 0; i < fresh.length; i += MAX_MISSING_QUERY) {
        const ids = Buffer.concat(fresh.slice(i, i + MAX_MISSING_QUERY).map((c) => c.id));
        const body = await this.client.call('POST', '/v1/chunks/missing', ids);
        for (let off = 0; off + 32 <= body.length; off += 32) missingSet.add(body.subarray(off, off + 32).toString('hex'));
      }
      const toSend = fresh.filter((c) => missingSet.has(c.id.toString('hex')));
      if (toSend.length < fresh.length) this.lackedRun = 0;
      else {
        for (const c of fresh) this.lackedRun += c.blob.length;
        if (this.lackedRun >= this.skipAfter) {
          this.unasked = UNASKED_BATCHES;
          this.lackedRun = 0;
        }
      }
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

/**
 * The box's answer to an upload (HTTP 200, so the chunks are stored or held). `existed` is
 * -1 when the answer cannot be read; ids that are not 64 hex characters are dropped.
 */
function uploadResult(body: Buffer): { existed: number; existed_ids?: string[] } {
  let r: Partial<UploadResult>;
  try {
    r = JSON.parse(body.toString('utf8')) as Partial<UploadResult>;
  } catch {
    return { existed: -1 };
  }
  if (typeof r !== 'object' || r === null || typeof r.existed !== 'number') return { existed: -1 };
  const ids = Array.isArray(r.existed_ids) ? r.existed_ids.filter((x): x is string => typeof x === 'string' && /^[0-9a-f]{64}$/.test(x)) : undefined;
  return { existed: r.existed, existed_ids: ids };
}
