import fs from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { ChunkScratch, FLAG_LZ4, MAX_CHUNK_BLOB, openChunk } from '../core/chunk-codec';
import { CHUNK_ID_BYTES } from '../core/chunk-id';
import { CHUNK_REF_BYTES } from '../core/manifest';
import { FETCH_ANSWER_BYTES, MAX_FETCH_IDS } from '../core/api';
import { DataKeys, DataKeysJson, dataKeysFromJson } from '../core/keys';
import { errnoCode, errorMessage, CairnError } from '../core/errors';
import { ExternalGarbage } from '../core/external-memory';
import { BoxClient, BoxClientSpec, fetchChunksOver } from './box-client';
import { FetchChannel } from './fetch-channel';

/**
 * Restore worker: fetches, checks and writes whole files. The main thread reads the manifest
 * and hands each regular file here (path, chunk refs, metadata); this thread asks the box for
 * the chunks over its own TLS connections (batched fetches, several files' chunks per
 * request), authenticates and decrypts each (openChunk: tag, then the id recomputed from the
 * plaintext) before a byte of it is written, at its offset, with synchronous calls, and
 * reports the file done or failed.
 *
 * Profiled before: with the main thread fetching for the workers, it spent 5.4 s of a 1 GB
 * restore's 13.7 s agent CPU receiving every answer, keeping a promise per chunk and handing
 * each chunk across threads, and the workers as much again taking them in. Each worker now
 * reads its answers straight into one reusable frame buffer.
 *
 * A file that fails is closed and removed at once; its chunks still on the wire are dropped.
 * An id the box answers empty is fetched alone (which returns the box's own error for it); a
 * box without the batched endpoint gets single GETs.
 */
export type RestoreWorkerRequest =
  /** umask: the process's file mode creation mask (see `open` below) */
  | { type: 'init'; keys: DataKeysJson; isRoot: boolean; box: BoxClientSpec; snapshot: string; umask: number }
  /**
   * abs: the path's bytes as a latin1 string, refs: the manifest's chunk refs (36 bytes each) as
   * a latin1 string (strings cross threads cheaper than small typed arrays). clear: an entry
   * may already exist at this path (its parent was not created by this restore). atime and
   * mtime in seconds, already adjusted for libuv (see nsToSeconds).
   */
  | { type: 'file'; file: number; abs: string; refs: string; skip: number; size: number; clear: boolean; verifyOnly: boolean; mode: number; uid: number; gid: number; atime: number; mtime: number };

export type RestoreWorkerReply =
  /** plaintext bytes checked (and written) since the last reply */
  | { type: 'bytes'; bytes: number }
  | { type: 'done'; file: number }
  | { type: 'failed'; file: number; code?: string; message: string };

/**
 * Batched fetches on the wire per worker: while the worker handles one answer, the box reads
 * and sends the next. 1 GB restore, 3 alternating pairs: two took 9.1-9.2 s against 10.0-10.7 s
 * with one (agent peak +8-12 MB: a frame buffer per fetch); three were no faster than two (2
 * pairs) and cairnd's peak rose to 180-190 MB. Files that arrive while the fetches are on the
 * wire wait for one to finish, so their chunks go out together.
 */
const MAX_ACTIVE = 2;
const MAX_FRAME = CHUNK_ID_BYTES + MAX_CHUNK_BLOB;

type FileRequest = Extract<RestoreWorkerRequest, { type: 'file' }>;

interface FileState {
  job: FileRequest;
  abs: Buffer;
  refs: Buffer;
  /** index of the next ref to ask for */
  next: number;
  /** byte offset of that ref's first byte in the file (negative for a first chunk that begins before the file: see skip) */
  offset: number;
  /** refs asked for and not yet written or dropped */
  pending: number;
  fd?: number;
  /** the file was created with its final mode: no fchmod at the end */
  modeSet: boolean;
  opened: boolean;
  failed: boolean;
}

/** One file's use of a chunk: its bytes go to the file at `offset` (cut to the file's range). */
interface Target {
  f: FileState;
  offset: number;
}

/**
 * One chunk to fetch. Bundled small files (manifest version 2) share chunks: every file that
 * needs a chunk already asked for and not yet delivered becomes another target of it, so a
 * chunk holding 200 small files is fetched and opened once, not 200 times.
 */
interface Item {
  id: Buffer;
  size: number;
  targets: Target[];
}

function run(port: NonNullable<typeof parentPort>): void {
  let keys: DataKeys | undefined;
  let isRoot = false;
  let umask = 0o777;
  let client: BoxClient | undefined;
  let spec: BoxClientSpec | undefined;
  /** idle connections for batched fetches (one per fetch on the wire; see FetchChannel) */
  const channels: FetchChannel[] = [];
  let snapshot = '';
  let batched = true;
  /** files with refs not yet asked for, oldest first (a failed one is dropped when reached) */
  const queue: FileState[] = [];
  let qHead = 0;
  /** refs a cut-short answer did not hold: asked for first */
  let redo: Item[] = [];
  let active = 0;
  /** only version 1 (LZ4) chunks decompress into memory V8 does not see (see core/external-memory) */
  const garbage = new ExternalGarbage(32 * 1024 * 1024);
  /** plaintext is written before the next chunk is opened, so one scratch buffer serves them all (blobs are decrypted in place) */
  const scratch = new ChunkScratch();
  /**
   * Frame buffers, one per fetch on the wire: every frame of an answer is read into its fetch's
   * buffer and handled before the next frame starts. Allocated once at full size: grown step
   * by step, each outgrown buffer freed raised glibc's mmap threshold and later buffers came
   * from the fragmenting heap (agent peak 183-187 MB against 190-193 MB, 1 GB restore).
   */
  const frameBufs: Buffer[] = [];

  let replies: RestoreWorkerReply[] = [];
  let written = 0;
  let flushing = false;
  const reply = (m: RestoreWorkerReply): void => {
    replies.push(m);
    scheduleFlush();
  };
  const scheduleFlush = (): void => {
    if (flushing) return;
    flushing = true;
    setImmediate(() => {
      flushing = false;
      if (written) replies.push({ type: 'bytes', bytes: written });
      written = 0;
      if (replies.length) port.postMessage(replies);
      replies = [];
    });
  };

  const closeAndRemove = (f: FileState): void => {
    if (f.fd === undefined) return;
    try {
      fs.closeSync(f.fd);
    } catch {
      /* already gone */
    }
    f.fd = undefined;
    try {
      fs.unlinkSync(f.abs);
    } catch {
      /* nothing to remove */
    }
  };

  const fail = (f: FileState, err: unknown): void => {
    if (f.failed) return;
    f.failed = true;
    closeAndRemove(f);
    reply({ type: 'failed', file: f.job.file, code: CairnError.is(err) ? err.code : errnoCode(err), message: errorMessage(err) });
  };

  /** Creates the file (O_EXCL|O_NOFOLLOW: never through a symlink, never into an existing file). */
  const open = (f: FileState): void => {
    f.opened = true;
    if (f.job.verifyOnly) return;
    try {
      if (f.job.clear) {
        let st: fs.Stats | undefined;
        try {
          st = fs.lstatSync(f.abs);
        } catch (err) {
          if (errnoCode(err) !== 'ENOENT') throw err;
        }
        if (st?.isDirectory()) throw new CairnError('CAIRN_RESTORE_FAILED', `${f.abs.toString()} is an existing directory; not replacing it with a file`);
        if (st) fs.unlinkSync(f.abs);
      }
      // A plain mode the umask leaves whole is given at creation, which saves an fchmod per
      // file (20,000 small files in 2 threads: 493-504 ms against 517-537 ms). Set-id and
      // sticky bits are set after the chown, which clears them; a mode the umask would cut is
      // set with fchmod at the end.
      const mode = f.job.mode & 0o7777;
      f.modeSet = (mode & 0o7000) === 0 && (mode & umask) === 0;
      f.fd = fs.openSync(f.abs, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, f.modeSet ? mode : 0o600);
    } catch (err) {
      fail(f, err);
    }
  };

  /** Applies owner, mode and times and closes the file, once every ref is asked for and written. */
  const maybeFinish = (f: FileState): void => {
    if (f.failed || f.pending > 0 || f.next * CHUNK_REF_BYTES < f.refs.length) return;
    const m = f.job;
    try {
      if (f.fd !== undefined) {
        // A new file (O_EXCL) holds exactly what was written: no truncate needed.
        if (isRoot && (m.uid !== 0 || m.gid !== 0)) {
          try {
            fs.fchownSync(f.fd, m.uid, m.gid);
          } catch {
            /* keep going with the restoring user's ownership */
          }
        }
        if (!f.modeSet) fs.fchmodSync(f.fd, m.mode);
        fs.futimesSync(f.fd, m.atime, m.mtime);
        fs.closeSync(f.fd);
        f.fd = undefined;
      }
      reply({ type: 'done', file: m.file });
    } catch (err) {
      fail(f, err);
    }
  };

  /** chunks asked for and not yet delivered or dropped, by id (latin1): later files join them */
  const asked = new Map<string, Item>();

  /** Checks a chunk and writes each target's part of it at its offset; a bad one fails its files only. */
  const deliver = (it: Item, blob: Buffer): void => {
    asked.delete(it.id.toString('latin1'));
    for (const t of it.targets) t.f.pending--;
    const live = it.targets.filter((t) => !t.f.failed);
    if (live.length === 0) return;
    let plain: Buffer;
    try {
      plain = openChunk(keys!, it.id, blob, scratch, true);
      if (plain.length !== it.size) throw new CairnError('CAIRN_RESTORE_FAILED', 'chunk size does not match the manifest');
      if (blob[4] === 1 && blob[5] & FLAG_LZ4) garbage.note(plain.length); // openChunk checked the header (which stays in the clear)
    } catch (err) {
      for (const t of live) fail(t.f, err);
      return;
    }
    for (const { f, offset } of live) {
      if (f.failed) continue;
      try {
        // The file's bytes of this chunk: from its start (or skip bytes in), to its end or the file's.
        const from = Math.max(0, -offset);
        const to = Math.min(plain.length, f.job.size - offset);
        if (f.fd !== undefined) {
          let done = from;
          while (done < to) done += fs.writeSync(f.fd, plain, done, to - done, offset + done);
        }
        written += to - from;
      } catch (err) {
        fail(f, err);
      }
    }
    // Only once every target is written: a file may use the same chunk twice (repeated
    // content), and finishing it after the first closed it before the second was written.
    for (const f of new Set(live.map((t) => t.f))) maybeFinish(f);
    scheduleFlush();
  };

  const dropped = (it: Item, err: unknown): void => {
    asked.delete(it.id.toString('latin1'));
    for (const t of it.targets) {
      t.f.pending--;
      fail(t.f, err);
    }
  };

  /** Next refs to ask for: the cut-short ones first, then the queue's, up to one answer's worth. */
  const take = (): Item[] => {
    const items = redo.splice(0, MAX_FETCH_IDS);
    let bytes = 0;
    while (items.length < MAX_FETCH_IDS && bytes < FETCH_ANSWER_BYTES && qHead < queue.length) {
      const f = queue[qHead];
      if (!f.failed && !f.opened) open(f);
      if (f.failed) {
        f.next = f.refs.length / CHUNK_REF_BYTES;
      } else {
        const refs = f.refs;
        while (f.next * CHUNK_REF_BYTES < refs.length && items.length < MAX_FETCH_IDS && bytes < FETCH_ANSWER_BYTES) {
          const off = f.next * CHUNK_REF_BYTES;
          const size = refs.readUInt32LE(off + CHUNK_ID_BYTES);
          const id = refs.subarray(off, off + CHUNK_ID_BYTES);
          const key = id.toString('latin1');
          const same = asked.get(key);
          if (same && same.size === size) same.targets.push({ f, offset: f.offset });
          else {
            const it: Item = { id, size, targets: [{ f, offset: f.offset }] };
            if (!same) asked.set(key, it);
            items.push(it);
            bytes += size;
          }
          f.pending++;
          f.next++;
          f.offset += size;
        }
      }
      if (f.next * CHUNK_REF_BYTES >= f.refs.length) {
        qHead++;
        maybeFinish(f); // an empty file
      }
    }
    if (qHead > 1024 && qHead * 2 > queue.length) {
      queue.splice(0, qHead);
      qHead = 0;
    }
    return items;
  };

  const queued = (): number => redo.length + (qHead < queue.length ? queue.length - qHead : 0);

  const pump = (): void => {
    while (active < MAX_ACTIVE && queued() > 0) {
      const items = take();
      if (items.length === 0) return; // the rest were failed or empty files
      if (!batched) {
        for (const it of items) alone(it);
        continue;
      }
      active++;
      void fetchBatch(items).finally(() => {
        active--;
        pump();
      });
    }
  };

  const alone = (it: Item): void => {
    active++;
    client!
      .call('GET', `/v1/snapshots/${snapshot}/chunks/${it.id.toString('hex')}`)
      .then(
        (blob) => deliver(it, blob),
        (err: unknown) => dropped(it, err),
      )
      .finally(() => {
        active--;
        pump();
      });
  };

  const fetchBatch = async (items: Item[]): Promise<void> => {
    let handed = 0;
    const buf = frameBufs.pop() ?? Buffer.allocUnsafeSlow(MAX_FRAME);
    try {
      const channel = channels.pop() ?? new FetchChannel(client!.endpoint, spec!.credential, spec!.headers);
      const answered = await fetchChunksOver(
        (path, body, sink) => channel.post(path, body, sink).finally(() => channels.push(channel)),
        snapshot,
        items.map((it) => it.id),
        (i, blob) => {
          handed = i + 1;
          if (blob.length === 0) alone(items[i]);
          else deliver(items[i], blob);
        },
        (n) => buf.subarray(0, n), // n <= MAX_FRAME: FetchAnswerReader refuses larger frames
      );
      if (answered === 'unsupported') {
        batched = false; // an older box
        redo = items.concat(redo);
      } else if (answered < items.length) {
        redo = items.slice(answered).concat(redo); // the answer stopped early (size cap): ask again
      }
    } catch (err) {
      for (let i = handed; i < items.length; i++) dropped(items[i], err);
    } finally {
      frameBufs.push(buf);
    }
  };

  port.on('message', (batch: RestoreWorkerRequest[]) => {
    for (const m of batch) {
      if (m.type === 'init') {
        keys = dataKeysFromJson(m.keys);
        isRoot = m.isRoot;
        umask = m.umask;
        client = BoxClient.fromSpec(m.box, { maxSockets: MAX_ACTIVE });
        spec = m.box;
        snapshot = m.snapshot;
      } else {
        const f: FileState = { job: m, abs: Buffer.from(m.abs, 'latin1'), refs: Buffer.from(m.refs, 'latin1'), next: 0, offset: -m.skip, pending: 0, modeSet: false, opened: false, failed: false };
        if (f.refs.length % CHUNK_REF_BYTES !== 0) fail(f, new CairnError('CAIRN_RESTORE_FAILED', 'the manifest entry\'s chunk list is cut short'));
        else queue.push(f);
      }
    }
    pump();
  });
}

if (parentPort) run(parentPort);
