import fs from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { RingShared, RingWriter } from './blob-ring';
import { WasmChunker } from '../core/chunker';
import { chunkId, preloadChunkIdHasher } from '../core/chunk-id';
import { ChunkKind, preloadCodec, sealChunkSync } from '../core/chunk-codec';
import { DataKeys, DataKeysJson, dataKeysFromJson } from '../core/keys';
import { errnoCode, errorMessage } from '../core/errors';
import { ExternalGarbage } from '../core/external-memory';
import { processVolumeJob, VOLUME_JOB_BYTES, VolumeDone, VolumeJob } from './volume/volume-job';
import { KnownIds } from './known-ids';

/**
 * Worker thread: reads one file at a time, cuts it into chunks, hashes and seals each chunk
 * and posts it to the main thread (the blob's memory is transferred, not copied).
 *
 * Back-pressure contract: before posting a blob the worker adds its size to a shared
 * counter and blocks (Atomics.wait) while the counter is above the limit; the main thread
 * subtracts the size once the blob is uploaded or found to be a duplicate. Memory held in
 * flight is thus bounded whatever the source size.
 */
export interface WorkerInit {
  keys: DataKeysJson;
  inflight: SharedArrayBuffer;
  limitBytes: number;
  /** this worker's blob ring (see blob-ring.ts) */
  ring?: RingShared;
  /** the run's known-ids table (see known-ids.ts): data chunks found there are not sealed */
  known?: SharedArrayBuffer;
}

export interface FileJob {
  type: 'file';
  jobId: number;
  path: Uint8Array;
  kind: ChunkKind;
}

/**
 * Small files read as one byte stream (see backup.ts): their bytes follow each other with
 * nothing between them, and the stream is cut into chunks as one file would be, so a chunk
 * may hold the end of one file, several whole ones and the start of the next.
 */
export interface BundleJob {
  type: 'bundle';
  jobId: number;
  paths: Uint8Array[];
}

/** One file of a bundle: its bytes are [start, start + bytes) of the bundle's stream. */
export interface BundlePart {
  type: 'part';
  jobId: number;
  index: number;
  start: number;
  bytes: number;
  mtimeNs: string;
  ctimeNs: string;
  error?: string;
  errno?: string;
}

export type WorkerMessage =
  /**
   * the sealed blob: a transferred buffer, or `ring` = [offset, length] in the worker's ring;
   * with `known`, no blob: the id was in the known-ids table, so the chunk was not sealed
   */
  | { type: 'chunk'; jobId: number; id: Uint8Array; size: number; blob?: ArrayBuffer; ring?: [number, number]; known?: true }
  | { type: 'done'; jobId: number; bytes: number; mtimeNs: string; ctimeNs: string; error?: string; errno?: string }
  | BundlePart
  | VolumeDone;

/** the read buffer; a volume job's range fills at most this much (8 MiB: twice the largest chunk) */
const BUF_SIZE = VOLUME_JOB_BYTES;

function run(port: NonNullable<typeof parentPort>): void {
  let keys: DataKeys | undefined;
  let chunker: WasmChunker | undefined;
  let inflight: Int32Array | undefined;
  let limit = 0;
  /** the read buffer: the chunker's WebAssembly memory, so file bytes are read straight into it */
  let buf: Buffer = Buffer.alloc(0);
  const garbage = new ExternalGarbage();
  let ring: RingWriter | undefined;
  let known: KnownIds | undefined;

  // Messages leave in batches (a message between threads costs tens of microseconds, which per
  // chunk and per file dominated trees of small files): at the end of the last queued job, when
  // the batch is large, and always before blocking on the in-flight limit.
  let outbox: WorkerMessage[] = [];
  let outTransfer: ArrayBuffer[] = [];
  let outBytes = 0;
  let queuedJobs = 0;
  const flush = (): void => {
    if (!outbox.length) return;
    port.postMessage(outbox, outTransfer);
    outbox = [];
    outTransfer = [];
    outBytes = 0;
  };
  const post = (m: WorkerMessage, transfer?: ArrayBuffer[]): void => {
    outbox.push(m);
    if (transfer) {
      outTransfer.push(...transfer);
      for (const t of transfer) outBytes += t.byteLength;
    }
    if (outbox.length >= 128 || outBytes >= 4 * 1024 * 1024) flush();
  };

  const reserve = (n: number): void => {
    const ia = inflight!;
    for (;;) {
      const cur = Atomics.load(ia, 0);
      if (cur < limit || cur === 0) break;
      flush();
      Atomics.wait(ia, 0, cur, 100);
    }
    Atomics.add(ia, 0, n);
  };

  /** Hashes one chunk, and seals and posts it unless the run's known-ids table has its id. */
  const emit = (jobId: number, kind: ChunkKind, slice: Buffer): void => {
    const len = slice.length;
    const id = chunkId(keys!, slice);
    const table = kind === 'data' ? known : undefined;
    if (table?.has(id)) {
      post({ type: 'chunk', jobId, id, size: len, known: true });
      return;
    }
    const blob = sealChunkSync(keys!, id, slice, kind, { alloc: (n) => ring?.take(n, flush) ?? Buffer.allocUnsafeSlow(n) });
    reserve(blob.length);
    if (blob.buffer instanceof SharedArrayBuffer) post({ type: 'chunk', jobId, id, size: len, ring: [blob.byteOffset, blob.length] });
    else post({ type: 'chunk', jobId, id, size: len, blob: blob.buffer as ArrayBuffer }, [blob.buffer as ArrayBuffer]);
    // Only once its blob is on its way: every id in the table has a sealed copy (known-ids.ts).
    table?.add(id);
  };

  /**
   * Cuts a byte stream into chunks and emits them. `read(at, room)` puts up to `room` bytes at
   * buf[at] and returns how many, 0 at the stream's end. The buffer holds the bytes not yet cut;
   * it is refilled whenever less than a largest chunk is left.
   */
  const cutStream = (jobId: number, kind: ChunkKind, read: (at: number, room: number) => number): void => {
    const maxChunk = chunker!.params.maxSize;
    let start = 0;
    let end = 0;
    let eof = false;
    for (;;) {
      if (!eof && end - start < maxChunk) {
        if (start > 0) {
          buf.copyWithin(0, start, end);
          end -= start;
          start = 0;
        }
        while (end < BUF_SIZE) {
          const n = read(end, BUF_SIZE - end);
          if (n === 0) {
            eof = true;
            break;
          }
          end += n;
        }
        continue;
      }
      if (start === end) return;
      const len = chunker!.next(start, end, eof);
      emit(jobId, kind, buf.subarray(start, start + len));
      start += len;
    }
  };

  const openRegular = (path: Uint8Array): number => {
    const fd = fs.openSync(Buffer.from(path), fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
    try {
      if (!fs.fstatSync(fd).isFile()) throw Object.assign(new Error('not a regular file any more'), { code: 'ENOTREG' });
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
    return fd;
  };

  /**
   * A bundle: its files read one after another into the same buffer and cut as one stream.
   * Each file is reported (a 'part') once read to its end, before the chunks that hold its
   * last bytes may be cut; a file that fails keeps what was read of it in the stream (its part
   * says so, and the main thread leaves it out of the manifest).
   */
  const processBundle = (job: BundleJob): void => {
    /** bytes of the stream read so far */
    let streamEnd = 0;
    let next = 0;
    let cur: { index: number; fd: number; start: number } | undefined;
    const finish = (err?: unknown): void => {
      const c = cur!;
      cur = undefined;
      let mtimeNs = '0';
      let ctimeNs = '0';
      try {
        if (err === undefined) {
          const after = fs.fstatSync(c.fd, { bigint: true });
          mtimeNs = after.mtimeNs.toString();
          ctimeNs = after.ctimeNs.toString();
        }
      } catch (e) {
        err = e;
      }
      try {
        fs.closeSync(c.fd);
      } catch {
        /* closed already */
      }
      const part: BundlePart = { type: 'part', jobId: job.jobId, index: c.index, start: c.start, bytes: streamEnd - c.start, mtimeNs, ctimeNs };
      if (err !== undefined) {
        part.error = errorMessage(err);
        part.errno = errnoCode(err);
      }
      post(part);
    };
    /** The bundle's next bytes: the current file's, or the next file's once it ends; 0 after the last. */
    const read = (at: number, room: number): number => {
      for (;;) {
        if (cur === undefined) {
          if (next >= job.paths.length) return 0;
          const index = next++;
          try {
            cur = { index, fd: openRegular(job.paths[index]), start: streamEnd };
          } catch (err) {
            post({ type: 'part', jobId: job.jobId, index, start: streamEnd, bytes: 0, mtimeNs: '0', ctimeNs: '0', error: errorMessage(err), errno: errnoCode(err) });
          }
          continue;
        }
        let n: number;
        try {
          n = fs.readSync(cur.fd, buf, at, room, null);
        } catch (err) {
          finish(err);
          continue;
        }
        if (n === 0) {
          finish();
          continue;
        }
        streamEnd += n;
        return n;
      }
    };
    try {
      cutStream(job.jobId, 'data', read);
    } catch (err) {
      // Not one file's failure (those are parts): the stream could not be cut or sealed.
      if (cur !== undefined) fs.closeSync(cur.fd);
      post({ type: 'done', jobId: job.jobId, bytes: streamEnd, mtimeNs: '0', ctimeNs: '0', error: errorMessage(err), errno: errnoCode(err) });
      flush();
      return;
    }
    post({ type: 'done', jobId: job.jobId, bytes: streamEnd, mtimeNs: '0', ctimeNs: '0' });
    // A bundle's end goes out at once: the main thread's manifest waits for its files, and
    // held until 128 messages gathered, it left only when the next bundle was half done.
    flush();
  };

  const processFile = async (job: FileJob): Promise<void> => {
    let fd: number | undefined;
    let bytes = 0;
    try {
      fd = openRegular(job.path);
      const from = fd;
      cutStream(job.jobId, job.kind, (at, room) => {
        const n = fs.readSync(from, buf, at, room, null);
        bytes += n;
        return n;
      });
      const after = fs.fstatSync(fd, { bigint: true });
      post({ type: 'done', jobId: job.jobId, bytes, mtimeNs: after.mtimeNs.toString(), ctimeNs: after.ctimeNs.toString() });
    } catch (err) {
      post({ type: 'done', jobId: job.jobId, bytes, mtimeNs: '0', ctimeNs: '0', error: errorMessage(err), errno: errnoCode(err) });
    } finally {
      if (fd !== undefined) fs.closeSync(fd);
    }
  };

  // Jobs run one after another: the read buffer is shared.
  let queue: Promise<void> = Promise.resolve();
  const afterJob = (): void => {
    if (--queuedJobs === 0) flush();
  };
  const handle = (msg: { type: 'init'; init: WorkerInit } | FileJob | BundleJob | VolumeJob): void => {
    if (msg.type === 'init') {
      keys = dataKeysFromJson(msg.init.keys);
      chunker = new WasmChunker(keys.gearKey, BUF_SIZE);
      buf = chunker.buffer;
      inflight = new Int32Array(msg.init.inflight);
      limit = msg.init.limitBytes;
      if (msg.init.ring) ring = new RingWriter(msg.init.ring);
      if (msg.init.known) known = new KnownIds(msg.init.known);
      return;
    }
    queuedJobs++;
    if (msg.type === 'volume') {
      queue = queue.then(() => processVolumeJob({ keys: keys!, buf, reserve, garbage, post }, msg)).then(afterJob);
      return;
    }
    if (msg.type === 'bundle') {
      queue = queue.then(() => processBundle(msg)).then(afterJob);
      return;
    }
    queue = queue.then(() => processFile(msg)).then(afterJob);
  };
  port.on('message', (batch: ({ type: 'init'; init: WorkerInit } | FileJob | BundleJob | VolumeJob)[]) => batch.forEach(handle));
  // A worker starts early (prewarm.ts) and waits while the main thread connects to the box:
  // the native codecs load in that time rather than in front of the first chunk.
  preloadCodec();
  preloadChunkIdHasher();
}

if (parentPort) run(parentPort);
