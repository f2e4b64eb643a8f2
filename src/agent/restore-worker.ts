import fs from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { ChunkScratch, FLAG_LZ4, openChunk } from '../core/chunk-codec';
import { DataKeys, DataKeysJson, dataKeysFromJson } from '../core/keys';
import { errnoCode, errorMessage, CairnError } from '../core/errors';
import { ExternalGarbage } from '../core/external-memory';

/**
 * Restore worker: writes whole files. The main thread fetches sealed chunks and hands them
 * here; this thread authenticates and decrypts each (openChunk: tag, then the id recomputed
 * from the plaintext) before a byte of it is written, at its offset, with synchronous calls.
 * Profiled before this existed: the main thread was the bottleneck of a restore, spending its
 * time in openChunk and in one thread-pool hop per file call (open, write, chown, chmod,
 * utimes, close).
 *
 * Requests come in batches (an array per message, one reply array back): a message between
 * threads costs tens of microseconds, which per chunk and per file dominated small files.
 * Requests for one file arrive in order (open, chunks in any order, finish), since one file
 * always goes to one worker. A file that fails is closed and removed at once; its later
 * chunks are only acknowledged.
 */
export type RestoreWorkerRequest =
  | { type: 'init'; keys: DataKeysJson; isRoot: boolean }
  /** clear: an entry may already exist at this path (its parent was not created by this restore) */
  /** abs: the path's bytes as a latin1 string (strings cross threads cheaper than small typed arrays) */
  | { type: 'open'; file: number; abs: string; clear: boolean; verifyOnly: boolean }
  /** data: the 32-byte chunk id followed by the sealed blob (`length` bytes in all), in one transferred buffer, handed back with the ack */
  | { type: 'chunk'; file: number; offset: number; size: number; data: ArrayBuffer; length: number }
  | { type: 'finish'; file: number; mode: number; uid: number; gid: number; atime: number; mtime: number }
  /** give up on a file (a chunk could not be fetched): close and remove it, no reply */
  | { type: 'abort'; file: number };

export type RestoreWorkerReply =
  /** the plaintext bytes of the chunk messages finished with, whatever became of them (the main thread's memory bound) */
  | { type: 'ack'; bytes: number; buffers: ArrayBuffer[] }
  | { type: 'done'; file: number }
  | { type: 'failed'; file: number; code?: string; message: string };

interface OpenFile {
  fd?: number;
  abs: Buffer;
  failed: boolean;
}

function run(port: NonNullable<typeof parentPort>): void {
  let keys: DataKeys | undefined;
  let isRoot = false;
  const files = new Map<number, OpenFile>();
  /** only version 1 (LZ4) chunks decompress into memory V8 does not see (see core/external-memory) */
  const garbage = new ExternalGarbage(32 * 1024 * 1024);
  /** plaintext is written before the next chunk is opened, so one pair of buffers serves them all */
  const scratch = new ChunkScratch();
  let replies: RestoreWorkerReply[] = [];
  /** the chunk buffers done with, handed back to the main thread's pool */
  let back: ArrayBuffer[] = [];
  let acked = 0;

  const fail = (file: number, f: OpenFile | undefined, err: unknown): void => {
    if (f) {
      f.failed = true;
      if (f.fd !== undefined) {
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
      }
    }
    replies.push({ type: 'failed', file, code: CairnError.is(err) ? err.code : errnoCode(err), message: errorMessage(err) });
  };

  const open = (m: Extract<RestoreWorkerRequest, { type: 'open' }>): void => {
    const f: OpenFile = { abs: Buffer.from(m.abs, 'latin1'), failed: false };
    files.set(m.file, f);
    if (m.verifyOnly) return;
    try {
      if (m.clear) {
        let st: fs.Stats | undefined;
        try {
          st = fs.lstatSync(f.abs);
        } catch (err) {
          if (errnoCode(err) !== 'ENOENT') throw err;
        }
        if (st?.isDirectory()) throw new CairnError('CAIRN_RESTORE_FAILED', `${f.abs.toString()} is an existing directory; not replacing it with a file`);
        if (st) fs.unlinkSync(f.abs);
      }
      // O_EXCL|O_NOFOLLOW: never through a symlink, never into an existing file.
      f.fd = fs.openSync(f.abs, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
    } catch (err) {
      fail(m.file, f, err);
    }
  };

  const chunk = (m: Extract<RestoreWorkerRequest, { type: 'chunk' }>): void => {
    const f = files.get(m.file);
    try {
      if (f && !f.failed) {
        const plain = openChunk(keys!, new Uint8Array(m.data, 0, 32), new Uint8Array(m.data, 32, m.length - 32), scratch);
        if (plain.length !== m.size) throw new CairnError('CAIRN_RESTORE_FAILED', 'chunk size does not match the manifest');
        if (f.fd !== undefined) {
          let done = 0;
          while (done < plain.length) done += fs.writeSync(f.fd, plain, done, plain.length - done, m.offset + done);
        }
        const head = new Uint8Array(m.data, 32, 6); // openChunk checked the header
        if (head[4] === 1 && head[5] & FLAG_LZ4) garbage.note(plain.length);
      }
    } catch (err) {
      fail(m.file, f, err);
    }
    acked += m.size;
    back.push(m.data);
  };

  const abort = (file: number): void => {
    const f = files.get(file);
    files.delete(file);
    if (f?.fd === undefined) return;
    try {
      fs.closeSync(f.fd);
      fs.unlinkSync(f.abs);
    } catch {
      /* best effort: the file is reported as not restored either way */
    }
  };

  const finish = (m: Extract<RestoreWorkerRequest, { type: 'finish' }>): void => {
    const f = files.get(m.file);
    files.delete(m.file);
    if (!f || f.failed) return; // its failure was reported already
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
        fs.fchmodSync(f.fd, m.mode);
        fs.futimesSync(f.fd, m.atime, m.mtime);
        fs.closeSync(f.fd);
        f.fd = undefined;
      }
      replies.push({ type: 'done', file: m.file });
    } catch (err) {
      fail(m.file, f, err);
    }
  };

  port.on('message', (batch: RestoreWorkerRequest[]) => {
    for (const m of batch) {
      if (m.type === 'init') {
        keys = dataKeysFromJson(m.keys);
        isRoot = m.isRoot;
      } else if (m.type === 'open') open(m);
      else if (m.type === 'chunk') chunk(m);
      else if (m.type === 'abort') abort(m.file);
      else finish(m);
    }
    if (acked || back.length) replies.push({ type: 'ack', bytes: acked, buffers: back });
    if (replies.length) port.postMessage(replies, back);
    replies = [];
    back = [];
    acked = 0;
  });
}

if (parentPort) run(parentPort);
