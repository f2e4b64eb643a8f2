import fs from 'node:fs';
import { CHUNK_ID_BYTES } from '../../core/chunk-id';
import {
  CHUNK_REF_BYTES, encodeVolumeDataRun, encodeVolumeHeader, encodeVolumeZeroRun, VOLUME_DATA_RUN, VolumeManifestHeader, VolumeRun,
} from '../../core/manifest';

/**
 * Block maps on the agent, in bounded memory whatever the volume size:
 * - BlockMapWriter spools the new map to a file as it is built (runs of up to VOLUME_DATA_RUN
 *   refs in memory), and fills in the header's counts at the end (the header is fixed-length).
 * - PrevMapCursor streams the parent snapshot's map in block order: the backup asks for the
 *   parent ids of each range just before handing it to a worker, so the parent map is never
 *   held whole (stream-compare; no per-block state beyond the range being read).
 */
export class BlockMapWriter {
  private readonly fd: number;
  private pos = 0;
  private zeroRun = 0;
  private dataRefs = Buffer.allocUnsafe(VOLUME_DATA_RUN * CHUNK_REF_BYTES);
  private dataCount = 0;
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;

  constructor(readonly file: string, placeholder: VolumeManifestHeader) {
    this.fd = fs.openSync(file, 'wx', 0o600);
    this.write(encodeVolumeHeader(placeholder));
  }

  private write(b: Buffer): void {
    this.buffered.push(b);
    this.bufferedBytes += b.length;
    if (this.bufferedBytes >= 1024 * 1024) this.flushBuffer();
  }

  private flushBuffer(): void {
    if (!this.bufferedBytes) return;
    const all = Buffer.concat(this.buffered);
    let off = 0;
    while (off < all.length) off += fs.writeSync(this.fd, all, off, all.length - off, this.pos + off);
    this.pos += all.length;
    this.buffered = [];
    this.bufferedBytes = 0;
  }

  private flushZero(): void {
    if (this.zeroRun) this.write(encodeVolumeZeroRun(this.zeroRun));
    this.zeroRun = 0;
  }

  private flushData(): void {
    if (this.dataCount) this.write(encodeVolumeDataRun(Buffer.from(this.dataRefs.subarray(0, this.dataCount * CHUNK_REF_BYTES))));
    this.dataCount = 0;
  }

  addZero(): void {
    this.flushData();
    this.zeroRun++;
  }

  addData(id: Uint8Array, length: number): void {
    this.flushZero();
    const off = this.dataCount * CHUNK_REF_BYTES;
    this.dataRefs.set(id, off);
    this.dataRefs.writeUInt32LE(length, off + CHUNK_ID_BYTES);
    if (++this.dataCount === VOLUME_DATA_RUN) this.flushData();
  }

  /** Writes the last run and the final header, fsyncs and closes. */
  finish(header: VolumeManifestHeader): void {
    this.flushZero();
    this.flushData();
    this.flushBuffer();
    const h = encodeVolumeHeader(header);
    fs.writeSync(this.fd, h, 0, h.length, 0);
    fs.fsyncSync(this.fd);
    this.close();
  }

  close(): void {
    try {
      fs.closeSync(this.fd);
    } catch {
      /* already closed */
    }
  }
}

const NO_ID = Buffer.alloc(CHUNK_ID_BYTES);

/** Hands out the parent's ids block by block; all zero for holes and for blocks past its end. */
export class PrevMapCursor {
  private run: VolumeRun | undefined;
  private next = 0;
  private done = false;
  /** why the parent map stopped early, if it did */
  error: unknown;

  constructor(private readonly runs: AsyncIterator<VolumeRun>) {}

  /** The parent ids of the next `n` blocks, 32 bytes each. */
  async take(n: number): Promise<Buffer> {
    const out = Buffer.alloc(n * CHUNK_ID_BYTES);
    for (let i = 0; i < n; i++) {
      while (!this.done && (!this.run || this.next >= this.run.first + this.run.count)) {
        let r: IteratorResult<VolumeRun>;
        try {
          r = await this.runs.next();
        } catch (err) {
          // A parent map that cannot be read is no reason to fail this backup: every block then
          // compares as changed, is sealed, and the box is asked whether it already holds it.
          this.error = err;
          this.run = undefined;
          this.done = true;
          break;
        }
        if (r.done) this.done = true;
        else this.run = r.value;
      }
      const run = this.run;
      if (!this.done && run && !run.zero) {
        const k = this.next - run.first;
        run.refs.copy(out, i * CHUNK_ID_BYTES, k * CHUNK_REF_BYTES, k * CHUNK_REF_BYTES + CHUNK_ID_BYTES);
      }
      this.next++;
    }
    return out;
  }
}

export function isNoId(id: Buffer): boolean {
  return id.equals(NO_ID);
}
