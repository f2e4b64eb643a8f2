import fs from 'node:fs';
import { Semaphore } from '../../core/semaphore';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { CairnError, errnoCode, errorMessage } from '../../core/errors';
import { chunkId, CHUNK_ID_BYTES } from '../../core/chunk-id';
import { CHUNK_REF_BYTES, VolumeManifestHeader, VolumeRun } from '../../core/manifest';
import { SnapshotInfo } from '../../core/api';
import { DataKeys } from '../../core/keys';
import { formatBytes } from '../../core/cli';
import { BoxClient } from '../box-client';
import { ChunkFetcher } from '../restore';
import { openAnyManifest } from './volume-manifest-io';
import { isZeroBlock } from './volume-job';
import { blockDeviceSize, checkTargetNotInUse, HOST_PATHS, VolumeHostPaths } from './mount-check';

/**
 * Volume restore: writes the snapshot's blocks to an image file or a block device, then reads
 * back everything it wrote and checks each block's keyed hash against the map.
 *
 * - A file target is created (or, with --force, emptied), sized with ftruncate and only its
 *   data blocks are written, so zero blocks stay holes and the image is sparse.
 * - A device target must be at least the volume's size and not in use (no mount, no swap, for
 *   it, its partitions or anything stacked on it; opened O_EXCL, which the kernel refuses on a
 *   device that is mounted or held); its zero blocks are written as zeros, since the device holds
 *   old data. Bytes past the volume's size are left alone.
 * - The block map is spooled to a temp file (32 bytes per block, zero for a hole) for the verify
 *   pass, so memory stays bounded whatever the volume size. The verify pass reads through the
 *   page cache after fsync: it proves that every block landed at the right offset with the right
 *   content, not that the medium will return it after a power cycle.
 */
export interface VolumeRestoreOptions {
  target: string;
  force?: boolean;
  /** chunks fetched at once */
  concurrency?: number;
  tmpDir: string;
  paths?: VolumeHostPaths;
  onProgress?: (p: { bytes_written: number; size: number }) => void;
}

export interface VolumeRestoreResult {
  snapshot: string;
  target: string;
  target_kind: 'file' | 'device';
  size: number;
  block_size: number;
  blocks_total: number;
  blocks_data: number;
  blocks_zero: number;
  bytes_written: number;
  verified: boolean;
  duration_s: number;
  verify_s: number;
}


interface Target {
  fh: fs.promises.FileHandle;
  kind: 'file' | 'device';
  path: string;
  created: boolean;
}

async function openTarget(target: string, size: number, opts: VolumeRestoreOptions): Promise<Target> {
  const paths = opts.paths ?? HOST_PATHS;
  let exists = true;
  try {
    fs.lstatSync(target);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
    exists = false;
  }
  if (!exists) {
    const fh = await fs.promises.open(target, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600).catch((err: unknown) => {
      throw new CairnError('CAIRN_VOLUME_TARGET_INVALID', `cannot create ${target}: ${errorMessage(err)}`);
    });
    await fh.truncate(size);
    return { fh, kind: 'file', path: target, created: true };
  }
  const resolved = fs.realpathSync(target);
  const st = fs.statSync(resolved);
  if (st.isBlockDevice()) {
    checkTargetNotInUse(target, resolved, true, paths);
    const devSize = blockDeviceSize(resolved, paths);
    if (devSize < size) {
      throw new CairnError('CAIRN_VOLUME_TARGET_INVALID', `${target} holds ${formatBytes(devSize)} (${devSize} bytes); the volume needs ${formatBytes(size)} (${size} bytes). Restore to a device at least that large, or to an image file`);
    }
    let fh: fs.promises.FileHandle;
    try {
      fh = await fs.promises.open(resolved, fs.constants.O_WRONLY | fs.constants.O_EXCL);
    } catch (err) {
      if (errnoCode(err) === 'EBUSY') throw new CairnError('CAIRN_VOLUME_MOUNTED', `refusing to restore onto ${target}: the kernel reports it busy (mounted, or held by another device or program)`);
      throw new CairnError('CAIRN_VOLUME_TARGET_INVALID', `cannot open ${target} for writing: ${errorMessage(err)}`);
    }
    return { fh, kind: 'device', path: resolved, created: false };
  }
  if (!st.isFile()) throw new CairnError('CAIRN_VOLUME_TARGET_INVALID', `${target} is neither an image file nor a block device`);
  checkTargetNotInUse(target, resolved, false, paths);
  if (st.size > 0 && !opts.force) {
    throw new CairnError('CAIRN_VOLUME_TARGET_INVALID', `${target} is not empty (${formatBytes(st.size)}); pass --force to overwrite it, or choose a new file`);
  }
  const fh = await fs.promises.open(resolved, fs.constants.O_WRONLY | fs.constants.O_NOFOLLOW);
  // Emptied first so that whatever it held becomes holes, then sized.
  await fh.truncate(0);
  await fh.truncate(size);
  return { fh, kind: 'file', path: resolved, created: false };
}

/** Sequential writer of the verify map (32 bytes per block). */
class IdSpool {
  private readonly fd: number;
  private buf = Buffer.allocUnsafe(1024 * 1024);
  private len = 0;
  constructor(readonly file: string) {
    this.fd = fs.openSync(file, 'wx', 0o600);
  }
  add(id: Uint8Array): void {
    if (this.len + id.length > this.buf.length) this.flush();
    this.buf.set(id, this.len);
    this.len += id.length;
  }
  addZeros(n: number): void {
    for (let i = 0; i < n; i++) {
      if (this.len + CHUNK_ID_BYTES > this.buf.length) this.flush();
      this.buf.fill(0, this.len, this.len + CHUNK_ID_BYTES);
      this.len += CHUNK_ID_BYTES;
    }
  }
  flush(): void {
    let off = 0;
    while (off < this.len) off += fs.writeSync(this.fd, this.buf, off, this.len - off);
    this.len = 0;
  }
  close(): void {
    try {
      fs.closeSync(this.fd);
    } catch {
      /* closed */
    }
  }
}

const ZERO_WRITE = 8 * 1024 * 1024;

export async function restoreVolume(client: BoxClient, keys: DataKeys, snap: SnapshotInfo, opts: VolumeRestoreOptions): Promise<VolumeRestoreResult> {
  const started = Date.now();
  const fetcher = new ChunkFetcher(client, keys, snap.id);
  const m = await openAnyManifest(fetcher, snap);
  if (m.kind !== 'volume') throw new CairnError('CAIRN_USAGE', `snapshot ${snap.id} holds files, not a volume`);
  const h: VolumeManifestHeader = m.header;
  const target = path.resolve(opts.target);
  const t = await openTarget(target, h.size, opts);
  const spoolFile = path.join(opts.tmpDir, `manifest-${process.pid}-volmap-${randomBytes(4).toString('hex')}`);
  fs.mkdirSync(opts.tmpDir, { recursive: true, mode: 0o700 });
  const spool = new IdSpool(spoolFile);
  const r: VolumeRestoreResult = {
    snapshot: snap.id, target, target_kind: t.kind, size: h.size, block_size: h.block_size, blocks_total: h.blocks,
    blocks_data: 0, blocks_zero: 0, bytes_written: 0, verified: false, duration_s: 0, verify_s: 0,
  };
  const progressTimer = opts.onProgress ? setInterval(() => opts.onProgress!({ bytes_written: r.bytes_written, size: h.size }), 250) : undefined;
  let ok = false;
  try {
    const slots = new Semaphore(opts.concurrency ?? 8);
    let failure: unknown;
    const inflight = new Set<Promise<void>>();
    const zeros = t.kind === 'device' ? Buffer.alloc(Math.min(ZERO_WRITE, Math.max(h.block_size, 1))) : Buffer.alloc(0);
    const writeBlock = async (index: number, id: Buffer, len: number): Promise<void> => {
      await slots.acquire();
      if (failure) {
        slots.release();
        return;
      }
      const p = (async () => {
        try {
          const data = await fetcher.get(id);
          if (data.length !== len) throw new CairnError('CAIRN_RESTORE_FAILED', `block ${index}: chunk holds ${data.length} bytes, the map says ${len}`);
          let off = 0;
          while (off < len) off += (await t.fh.write(data, off, len - off, index * h.block_size + off)).bytesWritten;
          r.bytes_written += len;
        } catch (err) {
          failure ??= err;
        } finally {
          slots.release();
        }
      })();
      inflight.add(p);
      void p.finally(() => inflight.delete(p));
    };
    for await (const run of m.runs as AsyncIterable<VolumeRun>) {
      if (failure) break;
      if (run.zero) {
        r.blocks_zero += run.count;
        spool.addZeros(run.count);
        if (t.kind === 'device') {
          let pos = run.first * h.block_size;
          const end = Math.min(h.size, (run.first + run.count) * h.block_size);
          while (pos < end) {
            const n = Math.min(zeros.length, end - pos);
            pos += (await t.fh.write(zeros, 0, n, pos)).bytesWritten;
          }
        }
        continue;
      }
      for (let i = 0; i < run.count; i++) {
        const id = run.refs.subarray(i * CHUNK_REF_BYTES, i * CHUNK_REF_BYTES + CHUNK_ID_BYTES);
        const len = run.refs.readUInt32LE(i * CHUNK_REF_BYTES + CHUNK_ID_BYTES);
        spool.add(id);
        r.blocks_data++;
        await writeBlock(run.first + i, Buffer.from(id), len);
        if (failure) break;
      }
    }
    await Promise.all(inflight);
    if (failure) {
      if (CairnError.is(failure) && failure.code.startsWith('CAIRN_CHUNK')) throw new CairnError('CAIRN_RESTORE_FAILED', `volume not restored: ${errorMessage(failure)}`);
      throw failure;
    }
    spool.flush();
    await t.fh.sync();
    await t.fh.close();

    const vStart = Date.now();
    await verifyTarget(t.path, spoolFile, h, keys);
    r.verify_s = (Date.now() - vStart) / 1000;
    r.verified = true;
    ok = true;
  } finally {
    if (progressTimer) clearInterval(progressTimer);
    await t.fh.close().catch(() => undefined);
    spool.close();
    fs.rmSync(spoolFile, { force: true });
    if (!ok && t.created) fs.rmSync(t.path, { force: true });
  }
  r.duration_s = (Date.now() - started) / 1000;
  return r;
}

const VERIFY_READ = 16 * 1024 * 1024;

/** Re-reads the first `size` bytes of the target and checks every block against the spooled map. */
export async function verifyTarget(file: string, spoolFile: string, h: VolumeManifestHeader, keys: DataKeys): Promise<void> {
  const fd = fs.openSync(file, 'r');
  const ids = fs.openSync(spoolFile, 'r');
  try {
    if (fs.fstatSync(fd).isFile() && fs.fstatSync(fd).size !== h.size) {
      throw new CairnError('CAIRN_VOLUME_VERIFY_FAILED', `${file} is ${fs.fstatSync(fd).size} bytes after the restore, not ${h.size}`);
    }
    const perRead = Math.max(1, Math.floor(VERIFY_READ / h.block_size));
    const buf = Buffer.allocUnsafeSlow(perRead * h.block_size);
    const idBuf = Buffer.allocUnsafeSlow(perRead * CHUNK_ID_BYTES);
    const bad: number[] = [];
    let badCount = 0;
    for (let first = 0; first < h.blocks; first += perRead) {
      const n = Math.min(perRead, h.blocks - first);
      const want = Math.min(n * h.block_size, h.size - first * h.block_size);
      let got = 0;
      while (got < want) {
        const k = fs.readSync(fd, buf, got, want - got, first * h.block_size + got);
        if (k === 0) throw new CairnError('CAIRN_VOLUME_VERIFY_FAILED', `${file} ends at byte ${first * h.block_size + got}, before the volume's ${h.size} bytes`);
        got += k;
      }
      let idGot = 0;
      while (idGot < n * CHUNK_ID_BYTES) {
        const k = fs.readSync(ids, idBuf, idGot, n * CHUNK_ID_BYTES - idGot, first * CHUNK_ID_BYTES + idGot);
        if (k === 0) throw new Error('verify map spool is short');
        idGot += k;
      }
      for (let i = 0; i < n; i++) {
        const block = buf.subarray(i * h.block_size, Math.min((i + 1) * h.block_size, want));
        const id = idBuf.subarray(i * CHUNK_ID_BYTES, (i + 1) * CHUNK_ID_BYTES);
        const okBlock = id.every((b) => b === 0) ? isZeroBlock(block) : chunkId(keys, block).equals(id);
        if (!okBlock) {
          badCount++;
          if (bad.length < 10) bad.push(first + i);
        }
      }
      // Hashing 16 MiB takes a few milliseconds; yield so progress timers and signals get a turn.
      await new Promise((res) => setImmediate(res));
    }
    if (badCount) {
      throw new CairnError('CAIRN_VOLUME_VERIFY_FAILED', `${badCount} block(s) of ${file} do not match the snapshot after writing (first: ${bad.join(', ')}); the target may be failing or was written to meanwhile`);
    }
  } finally {
    fs.closeSync(fd);
    fs.closeSync(ids);
  }
}

/**
 * `cairn verify` for a volume snapshot: fetches every data block's chunk and checks it (tag, id,
 * length against the map) without writing anything. Returns the number of blocks checked.
 */
export async function verifyVolumeSnapshot(client: BoxClient, keys: DataKeys, snap: SnapshotInfo, concurrency = 8): Promise<{ blocks: number; bytes: number; failures: { block: number; message: string }[] }> {
  const fetcher = new ChunkFetcher(client, keys, snap.id);
  const m = await openAnyManifest(fetcher, snap);
  if (m.kind !== 'volume') throw new CairnError('CAIRN_USAGE', `snapshot ${snap.id} holds files, not a volume`);
  const slots = new Semaphore(concurrency);
  const out = { blocks: 0, bytes: 0, failures: [] as { block: number; message: string }[] };
  const inflight = new Set<Promise<void>>();
  for await (const run of m.runs as AsyncIterable<VolumeRun>) {
    if (run.zero) continue;
    for (let i = 0; i < run.count; i++) {
      const id = Buffer.from(run.refs.subarray(i * CHUNK_REF_BYTES, i * CHUNK_REF_BYTES + CHUNK_ID_BYTES));
      const len = run.refs.readUInt32LE(i * CHUNK_REF_BYTES + CHUNK_ID_BYTES);
      const block = run.first + i;
      await slots.acquire();
      const p = fetcher.get(id).then(
        (data) => {
          if (data.length !== len) throw new Error(`chunk holds ${data.length} bytes, the map says ${len}`);
          out.blocks++;
          out.bytes += len;
        },
      ).catch((err: unknown) => {
        if (out.failures.length < 1000) out.failures.push({ block, message: errorMessage(err) });
      }).finally(() => {
        slots.release();
        inflight.delete(p);
      });
      inflight.add(p);
    }
  }
  await Promise.all(inflight);
  return out;
}
