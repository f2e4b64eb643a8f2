import fs from 'node:fs';
import { chunkId, CHUNK_ID_BYTES } from '../../core/chunk-id';
import { sealChunk } from '../../core/chunk-codec';
import { DataKeys } from '../../core/keys';
import { errnoCode, errorMessage } from '../../core/errors';
import { ExternalGarbage } from '../../core/external-memory';
import type { WorkerMessage } from '../chunk-worker';

/**
 * The 'volume' job of the chunk workers: read a range of whole blocks of a device or image
 * with one large positioned read, and for each block decide
 *   zero  every byte is 0: a hole, nothing is hashed or stored
 *   same  its keyed id equals the parent snapshot's id for that block: not sealed, not sent
 *   new   anything else: sealed and posted as a 'chunk' message (uploaded if the box lacks it)
 * then post one 'volume-done' message with the state and id of every block of the range.
 * Blocks are independent, so ranges can go to any worker; the main thread reassembles them in
 * order. The back-pressure contract of chunk-worker (reserve before posting a blob) applies.
 */
export const BLOCK_ZERO = 0;
export const BLOCK_SAME = 1;
export const BLOCK_NEW = 2;

export interface VolumeJob {
  type: 'volume';
  jobId: number;
  path: Uint8Array;
  /** byte offset of the range's first block */
  offset: number;
  /** bytes to read: whole blocks, the volume's last block may be short; at most VOLUME_JOB_BYTES */
  length: number;
  blockSize: number;
  /** one 32-byte id per block: the parent snapshot's id, all zero for a hole or no parent */
  prev: Uint8Array;
}

export interface VolumeDone {
  type: 'volume-done';
  jobId: number;
  bytes: number;
  /** one BLOCK_* per block */
  states: Uint8Array;
  /** 32 bytes per block: its id (all zero for a zero block) */
  ids: Uint8Array;
  error?: string;
  errno?: string;
}

/** A job's range never exceeds the worker's read buffer (chunk-worker's BUF_SIZE). */
export const VOLUME_JOB_BYTES = 8 * 1024 * 1024;

export interface VolumeWorkerContext {
  keys: DataKeys;
  buf: Buffer;
  reserve: (bytes: number) => void;
  garbage: ExternalGarbage;
  post: (msg: WorkerMessage | VolumeDone, transfer?: ArrayBuffer[]) => void;
}

let zeros = Buffer.alloc(0);

export function isZeroBlock(b: Buffer): boolean {
  if (zeros.length < b.length) zeros = Buffer.alloc(b.length);
  return b.equals(zeros.subarray(0, b.length));
}

export async function processVolumeJob(ctx: VolumeWorkerContext, job: VolumeJob): Promise<void> {
  const n = Math.ceil(job.length / job.blockSize);
  const states = new Uint8Array(n);
  const ids = new Uint8Array(n * CHUNK_ID_BYTES);
  let fd: number | undefined;
  let bytes = 0;
  try {
    if (job.length > ctx.buf.length || job.prev.length !== n * CHUNK_ID_BYTES) throw new Error('malformed volume job');
    fd = fs.openSync(Buffer.from(job.path), fs.constants.O_RDONLY);
    while (bytes < job.length) {
      const got = fs.readSync(fd, ctx.buf, bytes, job.length - bytes, job.offset + bytes);
      if (got === 0) throw Object.assign(new Error(`the volume ended at byte ${job.offset + bytes}, before its size at the start of the backup: it shrank while being read`), { code: 'ESHRUNK' });
      bytes += got;
    }
    const prev = Buffer.from(job.prev.buffer, job.prev.byteOffset, job.prev.length);
    for (let i = 0; i < n; i++) {
      const start = i * job.blockSize;
      const block = ctx.buf.subarray(start, Math.min(start + job.blockSize, job.length));
      if (isZeroBlock(block)) {
        states[i] = BLOCK_ZERO;
        continue;
      }
      const id = chunkId(ctx.keys, block);
      ids.set(id, i * CHUNK_ID_BYTES);
      if (id.equals(prev.subarray(i * CHUNK_ID_BYTES, (i + 1) * CHUNK_ID_BYTES))) {
        states[i] = BLOCK_SAME;
        continue;
      }
      states[i] = BLOCK_NEW;
      const blob = await sealChunk(ctx.keys, id, block, 'data');
      ctx.reserve(blob.length);
      const ab = blob.buffer as ArrayBuffer;
      ctx.post({ type: 'chunk', jobId: job.jobId, id, size: block.length, blob: ab }, [ab]);
      ctx.garbage.note(block.length);
    }
    ctx.post({ type: 'volume-done', jobId: job.jobId, bytes, states, ids });
  } catch (err) {
    ctx.post({ type: 'volume-done', jobId: job.jobId, bytes, states, ids, error: errorMessage(err), errno: errnoCode(err) });
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}
