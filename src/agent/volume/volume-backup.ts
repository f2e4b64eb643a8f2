import fs from 'node:fs';
import { IdCollector } from '../../core/id-collector';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { CairnError, errnoCode, errorMessage } from '../../core/errors';
import { CHUNK_ID_BYTES } from '../../core/chunk-id';
import { isValidVolumeBlockSize, readAnyManifest, volumeBlockCount, VolumeManifestHeader, VOLUME_MAX_BLOCK, VOLUME_MIN_BLOCK } from '../../core/manifest';
import { BackupStats, encodeCommit, isValidSourceName, ManifestRef, MAX_COMMIT_BYTES, SnapshotInfo } from '../../core/api';
import { DataKeys } from '../../core/keys';
import { formatBytes } from '../../core/cli';
import { BoxClient } from '../box-client';
import { ChunkOut, WorkerPool } from '../worker-pool';
import { Uploader } from '../uploader';
import { AgentHome } from '../state';
import { ChunkFetcher } from '../restore';
import { BlockMapWriter, PrevMapCursor } from './block-map';
import { BLOCK_NEW, BLOCK_SAME, BLOCK_ZERO, VolumeDone, VOLUME_JOB_BYTES } from './volume-job';
import { blockDeviceSize, checkSourceNotInUse, HOST_PATHS, lvmVolumeOf, VolumeHostPaths } from './mount-check';
import { LvmRunner, withLvmSnapshot } from './lvm';
import { manifestBytes } from './volume-manifest-io';

/**
 * A volume backup run: read the device or image in fixed blocks, in ranges of up to 16 MiB
 * handed to the chunk workers (one large positioned read each, hashing and sealing off the
 * main thread), skip all-zero blocks, compare each block's keyed id with the parent
 * snapshot's map (streamed alongside, never held whole) so unchanged blocks are neither
 * sealed nor sent, upload what the box lacks, spool the new block map, chunk and upload it as
 * the manifest, then commit. As for files, the box refuses a commit that references anything it
 * does not hold; if a block the parent relied on is gone, the run is redone without trusting
 * the parent map.
 *
 * Memory: the parent map is streamed; the map being written is spooled; what grows with the
 * volume is the commit's reference list, 32 bytes per data block (32 MB per TB at 1 MiB).
 */
export const DEFAULT_BLOCK_SIZE = 1024 * 1024;

export interface VolumeBackupOptions {
  device: string;
  source?: string;
  blockSize?: number;
  allowMounted?: boolean;
  lvmSnapshot?: boolean;
  lvmCowBytes?: number;
  host?: string;
  threads?: number;
  onProgress?: (p: VolumeProgress) => void;
  paths?: VolumeHostPaths;
  lvmRunner?: LvmRunner;
}

export interface VolumeCounts {
  blocks_total: number;
  blocks_changed: number;
  blocks_zero: number;
  blocks_data: number;
}

export interface VolumeProgress extends BackupStats, VolumeCounts {
  size: number;
}

export interface VolumeBackupResult extends BackupStats, VolumeCounts {
  snapshot: string;
  source: string;
  device: string;
  size: number;
  block_size: number;
  parent: string | null;
  lvm_snapshot: boolean;
  warnings: string[];
}

function sourceOf(name: string): string {
  if (!isValidSourceName(name)) throw new CairnError('CAIRN_USAGE', `source name "${name.slice(0, 80)}" is not valid (1-200 letters, digits and . _ : @ / + , = ~ - or space)`);
  return name;
}

interface Parent {
  info: SnapshotInfo;
  header: VolumeManifestHeader;
  cursor: () => Promise<PrevMapCursor>;
}

async function findParent(client: BoxClient, keys: DataKeys, source: string): Promise<Parent | undefined> {
  const list = await client.json<SnapshotInfo[]>('GET', `/v1/snapshots?source=${encodeURIComponent(source)}`);
  if (!list.length) return undefined;
  const info = list[list.length - 1];
  const fetcher = new ChunkFetcher(client, keys, info.id);
  const m = await readAnyManifest(manifestBytes(fetcher, info));
  if (m.kind !== 'volume') {
    throw new CairnError('CAIRN_USAGE', `source "${source}" holds file backups, not a volume; give the volume backup its own --source NAME`);
  }
  return {
    info,
    header: m.header,
    cursor: async () => {
      const again = await readAnyManifest(manifestBytes(fetcher, info));
      if (again.kind !== 'volume') throw new CairnError('CAIRN_MANIFEST_INVALID', 'parent manifest changed kind');
      return new PrevMapCursor(again.runs[Symbol.asyncIterator]());
    },
  };
}

export async function backupVolume(home: AgentHome, client: BoxClient, keys: DataKeys, opts: VolumeBackupOptions): Promise<VolumeBackupResult> {
  const paths = opts.paths ?? HOST_PATHS;
  const device = path.resolve(opts.device);
  let resolved: string;
  let st: fs.Stats;
  try {
    resolved = fs.realpathSync(device);
    st = fs.statSync(resolved);
  } catch (err) {
    throw new CairnError('CAIRN_SOURCE_INVALID', `cannot back up ${device}: ${errnoCode(err) === 'ENOENT' ? 'it does not exist' : errorMessage(err)}`);
  }
  if (!st.isBlockDevice() && !st.isFile()) throw new CairnError('CAIRN_SOURCE_INVALID', `${device} is neither a block device nor an image file`);
  const source = sourceOf(opts.source ?? device);
  if (opts.blockSize !== undefined && !isValidVolumeBlockSize(opts.blockSize)) {
    throw new CairnError('CAIRN_USAGE', `block size ${opts.blockSize} is not valid: use a power of two from ${formatBytes(VOLUME_MIN_BLOCK)} to ${formatBytes(VOLUME_MAX_BLOCK)}`);
  }
  const lv = st.isBlockDevice() ? lvmVolumeOf(resolved, paths) : undefined;
  if (opts.lvmSnapshot && !lv) throw new CairnError('CAIRN_USAGE', `--lvm-snapshot: ${device} is not an LVM logical volume`);
  const warnings: string[] = [];
  if (!opts.lvmSnapshot) {
    const allowed = checkSourceNotInUse(device, resolved, st.isBlockDevice(), { allowMounted: opts.allowMounted, isLvm: !!lv, paths });
    if (allowed.length) warnings.push(`${device} was read while mounted read-write (--allow-mounted): the image is crash-consistent at best`);
  }
  home.ensure();

  const parent = await findParent(client, keys, source);
  if (parent && opts.blockSize !== undefined && opts.blockSize !== parent.header.block_size) {
    throw new CairnError('CAIRN_USAGE', `source "${source}" has a block size of ${formatBytes(parent.header.block_size)}, fixed by its first backup; drop --block-size or use a new --source`);
  }
  const blockSize = parent?.header.block_size ?? opts.blockSize ?? DEFAULT_BLOCK_SIZE;

  const read = async (readPath: string): Promise<VolumeBackupResult> => {
    const size = st.isBlockDevice() ? blockDeviceSize(readPath, paths) : fs.statSync(readPath).size;
    const run = (trustParent: boolean): Promise<VolumeBackupResult> =>
      runOnce(home, client, keys, { ...opts, device, source, readPath, size, blockSize, parent, trustParent, warnings, lvm: !!opts.lvmSnapshot });
    try {
      return await run(true);
    } catch (err) {
      if (!parent || !CairnError.is(err, 'CAIRN_SNAPSHOT_INCOMPLETE')) throw err;
      // Blocks the parent map vouched for are gone from the box (retention, quarantine): seal every block and ask the box.
      return run(false);
    }
  };
  if (opts.lvmSnapshot && lv) {
    return withLvmSnapshot(lv.vg, lv.lv, (snapDev) => read(snapDev), {
      runner: opts.lvmRunner,
      cowBytes: opts.lvmCowBytes,
      onDropFailed: (e) => warnings.push(e.message),
    });
  }
  return read(resolved);
}

interface RunParams extends VolumeBackupOptions {
  device: string;
  source: string;
  readPath: string;
  size: number;
  blockSize: number;
  parent: Parent | undefined;
  trustParent: boolean;
  warnings: string[];
  lvm: boolean;
}


async function runOnce(home: AgentHome, client: BoxClient, keys: DataKeys, p: RunParams): Promise<VolumeBackupResult> {
  const started = Date.now();
  const { size, blockSize } = p;
  const blocks = volumeBlockCount(size, blockSize);
  if (blocks * CHUNK_ID_BYTES > MAX_COMMIT_BYTES - 1024 * 1024) {
    throw new CairnError('CAIRN_USAGE', `${p.device} has ${blocks} blocks of ${formatBytes(blockSize)}: too many for one snapshot; use a larger --block-size (new source)`);
  }
  const threads = p.threads ?? Math.max(1, Math.min(os.availableParallelism(), 8));
  const pool = new WorkerPool(keys, { threads });
  const uploader = new Uploader(client, pool);
  const refs = new IdCollector();
  const host = p.host ?? os.hostname();
  const spool = path.join(home.tmp, `manifest-${process.pid}-vol-${randomBytes(4).toString('hex')}`);
  const counts: VolumeCounts = { blocks_total: blocks, blocks_changed: 0, blocks_zero: 0, blocks_data: 0 };
  const header = (): VolumeManifestHeader => ({
    v: 1, kind: 'volume', size, block_size: blockSize, blocks, blocks_data: counts.blocks_data, blocks_zero: counts.blocks_zero,
    blocks_changed: counts.blocks_changed, device: p.device.slice(0, 1024), host, created: new Date(started).toISOString(),
    ...(p.parent ? { parent: p.parent.info.id } : {}),
  });
  let bytesRead = 0;
  const stats = (): BackupStats => ({
    files: 0, dirs: 0, bytes_scanned: bytesRead, bytes_read: bytesRead, bytes_new: uploader.stats.bytes_new,
    bytes_uploaded: uploader.stats.bytes_uploaded, chunks_new: uploader.stats.chunks_new, duration_s: (Date.now() - started) / 1000,
  });
  const progressTimer = p.onProgress ? setInterval(() => p.onProgress!({ ...stats(), ...counts, size }), 250) : undefined;
  let writer: BlockMapWriter | undefined;
  try {
    writer = new BlockMapWriter(spool, header());
    const cursor = p.parent ? await p.parent.cursor() : undefined;
    const rangeBlocks = Math.max(1, Math.floor(VOLUME_JOB_BYTES / blockSize));
    const windowSize = threads * 2;
    const queue: { first: number; n: number; prev: Buffer; done: Promise<VolumeDone> }[] = [];
    const onChunk = (c: ChunkOut): void => uploader.add(c);
    const w = writer;

    const consume = async (): Promise<void> => {
      const job = queue.shift()!;
      const r = await job.done;
      if (r.error) throw new CairnError('CAIRN_SOURCE_INVALID', `cannot read ${p.device} at byte ${job.first * blockSize}: ${r.error}`);
      bytesRead += r.bytes;
      const ids = Buffer.from(r.ids.buffer, r.ids.byteOffset, r.ids.byteLength);
      for (let i = 0; i < job.n; i++) {
        const id = ids.subarray(i * CHUNK_ID_BYTES, (i + 1) * CHUNK_ID_BYTES);
        const prev = job.prev.subarray(i * CHUNK_ID_BYTES, (i + 1) * CHUNK_ID_BYTES);
        if (r.states[i] === BLOCK_ZERO) {
          counts.blocks_zero++;
          w.addZero();
        } else {
          if (r.states[i] !== BLOCK_SAME && r.states[i] !== BLOCK_NEW) throw new Error('bad block state from worker');
          counts.blocks_data++;
          w.addData(id, Math.min(blockSize, size - (job.first + i) * blockSize));
          refs.add(id);
        }
        // id is all zero for a zero block, prev is all zero for a hole in the parent: equal means unchanged
        if (!id.equals(prev)) counts.blocks_changed++;
      }
    };

    for (let first = 0; first < blocks; first += rangeBlocks) {
      const n = Math.min(rangeBlocks, blocks - first);
      const prev = cursor ? await cursor.take(n) : Buffer.alloc(n * CHUNK_ID_BYTES);
      const offset = first * blockSize;
      const length = Math.min(n * blockSize, size - offset);
      const done = pool.volumeRange({ path: Buffer.from(p.readPath), offset, length, blockSize, prev: p.trustParent ? prev : new Uint8Array(n * CHUNK_ID_BYTES) }, onChunk);
      queue.push({ first, n, prev, done });
      while (queue.length >= windowSize) await consume();
      uploader.check();
    }
    while (queue.length) await consume();
    if (cursor?.error) p.warnings.push(`the parent snapshot's block map could not be read (${errorMessage(cursor.error)}); every block was compared with the box instead`);

    writer.finish(header());
    writer = undefined;
    const manifestChunks: ChunkOut[] = [];
    const mres = await pool.chunkFile(Buffer.from(spool), 'manifest', (c) => {
      manifestChunks.push({ id: c.id, size: c.size, blob: Buffer.alloc(0) });
      refs.add(c.id);
      uploader.add(c);
    });
    if (mres.error) throw new CairnError('CAIRN_SOURCE_INVALID', `could not read the manifest spool file: ${mres.error}`);
    await uploader.drain();

    const manifest: ManifestRef[] = manifestChunks.map((c) => ({ id: c.id.toString('hex'), size: c.size }));
    const final = stats();
    const body = await client.call('POST', '/v1/snapshots', encodeCommit({ source: p.source, host, manifest, stats: final }, refs.result), { timeoutMs: 600_000 });
    const info = JSON.parse(body.toString('utf8')) as SnapshotInfo;
    return {
      snapshot: info.id, source: p.source, device: p.device, size, block_size: blockSize, parent: p.parent?.info.id ?? null, lvm_snapshot: p.lvm,
      ...final, duration_s: (Date.now() - started) / 1000, ...counts, warnings: p.warnings,
    };
  } finally {
    if (progressTimer) clearInterval(progressTimer);
    writer?.close();
    fs.rmSync(spool, { force: true });
    await pool.close();
  }
}
