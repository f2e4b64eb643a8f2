/**
 * Volume backup throughput: a real box and agent on this machine, a generated image of at
 * least 1 GiB (read through a loop device when run as root with losetup, else as a file), a
 * first backup, then an incremental one after 1% of the blocks changed, then a restore.
 * Prints MB/s (bytes read from the volume / wall time of the `cairn backup` process). A script,
 * not a test:
 *
 *   npx tsc -p . && node dist/test/bench/volume-bench.js [--size-mib 1024] [--file] [--keep]
 *
 * Content: 50% random blocks (incompressible, like media or encrypted data), 30% text-like
 * blocks (compress about 3:1), 20% zero blocks. The page cache is dropped before each backup
 * when possible (root), so reads come from the disk.
 */
import fs from 'node:fs';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Harness } from '../integration/harness';
import { WorkerPool } from '../../src/agent/worker-pool';
import { dataKeysFromJson, DataKeys } from '../../src/core/keys';
import { VOLUME_JOB_BYTES } from '../../src/agent/volume/volume-job';

const MiB = 1024 * 1024;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function textBlock(seed: number): Buffer {
  const words = ['backup', 'volume', 'cairn', 'block', 'chunk', 'snapshot', 'restore', 'agent', 'box', 'disk', 'data', 'file'];
  const parts: string[] = [];
  let x = seed * 2654435761;
  let len = 0;
  while (len < MiB) {
    x = (x * 1103515245 + 12345) >>> 0;
    const w = `${words[x % words.length]}${x % 1000} `;
    parts.push(w);
    len += w.length;
  }
  return Buffer.from(parts.join('')).subarray(0, MiB);
}

function dropCaches(): void {
  try {
    execFileSync('sync');
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
  } catch {
    /* not root: reads may come from the page cache; said in the output */
  }
}

/** The agent's side alone (read, zero check, hash, and seal unless `sealAll` is false), no box. */
async function agentOnly(keys: DataKeys, file: string, size: number, sealAll: boolean): Promise<number> {
  dropCaches();
  const pool = new WorkerPool(keys);
  const t0 = Date.now();
  const per = VOLUME_JOB_BYTES / MiB;
  const window: Promise<unknown>[] = [];
  let prevIds: Uint8Array[] = [];
  try {
    if (!sealAll) {
      // learn the ids first (not timed separately: this pass seals too), then time a pass where every block is "same"
      const ids: Uint8Array[] = [];
      for (let off = 0; off < size; off += VOLUME_JOB_BYTES) {
        const r = await pool.volumeRange({ path: Buffer.from(file), offset: off, length: Math.min(VOLUME_JOB_BYTES, size - off), blockSize: MiB, prev: new Uint8Array(per * 32) }, (c) => pool.release(c));
        ids.push(r.ids);
      }
      prevIds = ids;
      dropCaches();
    }
    const start = Date.now();
    let i = 0;
    for (let off = 0; off < size; off += VOLUME_JOB_BYTES, i++) {
      const len = Math.min(VOLUME_JOB_BYTES, size - off);
      window.push(pool.volumeRange({ path: Buffer.from(file), offset: off, length: len, blockSize: MiB, prev: sealAll ? new Uint8Array(Math.ceil(len / MiB) * 32) : prevIds[i] }, (c) => pool.release(c)));
      if (window.length >= 4) await window.shift();
    }
    await Promise.all(window);
    return size / 1e6 / ((Date.now() - (sealAll ? t0 : start)) / 1000);
  } finally {
    await pool.close();
  }
}

interface Result {
  bytes_read: number;
  bytes_uploaded: number;
  blocks_changed: number;
  blocks_zero: number;
  duration_s: number;
  snapshot: string;
}

async function main(): Promise<void> {
  const sizeMiB = Number(arg('--size-mib') ?? 1024);
  const useLoop = !process.argv.includes('--file') && process.getuid?.() === 0 && spawnSync('losetup', ['-f']).status === 0;
  const h = await new Harness('cairn-volbench').up();
  let loopDev: string | undefined;
  try {
    const img = h.path('bench.img');
    const fd = fs.openSync(img, 'w');
    for (let b = 0; b < sizeMiB; b++) {
      const k = b % 10;
      if (k < 5) {
        fs.writeSync(fd, randomBytes(MiB), 0, MiB, b * MiB);
      } else if (k < 8) {
        fs.writeSync(fd, textBlock(b), 0, MiB, b * MiB);
      }
    }
    fs.ftruncateSync(fd, sizeMiB * MiB);
    fs.closeSync(fd);
    const source = useLoop ? execFileSync('losetup', ['-f', '--show', img], { encoding: 'utf8' }).trim() : img;
    loopDev = useLoop ? source : undefined;
    const cacheNote = process.getuid?.() === 0 ? 'page cache dropped before each run' : 'page cache NOT dropped (not root)';
    console.log(`volume bench: ${sizeMiB} MiB image (50% random, 30% text, 20% zero) read as ${useLoop ? `loop device ${source}` : 'image file'}; ${cacheNote}; box on 127.0.0.1`);

    const run = async (label: string): Promise<Result> => {
      dropCaches();
      const t0 = Date.now();
      const r = await h.cairn(['backup', '--volume', source, '--source', 'bench', '--json']);
      const wall = (Date.now() - t0) / 1000;
      if (r.code !== 0) throw new Error(`${label} failed: ${r.stderr}${r.stdout}`);
      const j = JSON.parse(r.stdout) as Result;
      console.log(`${label.padEnd(12)} ${(j.bytes_read / 1e6 / wall).toFixed(1).padStart(7)} MB/s (wall ${wall.toFixed(2)} s, in-run ${(j.bytes_read / 1e6 / j.duration_s).toFixed(1)} MB/s)  changed ${j.blocks_changed}  zero ${j.blocks_zero}  uploaded ${(j.bytes_uploaded / 1e6).toFixed(1)} MB`);
      return j;
    };

    const keys = dataKeysFromJson(h.agentConfig().keys);
    const size = sizeMiB * MiB;
    console.log(`${'agent only'.padEnd(12)} ${(await agentOnly(keys, source, size, true)).toFixed(1).padStart(7)} MB/s read+hash+seal of every block (no box), ${(await agentOnly(keys, source, size, false)).toFixed(1)} MB/s read+hash when nothing changed`);
    await run('first');
    // change 1% of the blocks in place, spread over the image
    const changes = Math.max(1, Math.floor(sizeMiB / 100));
    const wfd = fs.openSync(source, 'r+');
    for (let i = 0; i < changes; i++) {
      const b = Math.floor(((i + 0.5) * sizeMiB) / changes);
      fs.writeSync(wfd, randomBytes(4096), 0, 4096, b * MiB + 8192);
    }
    fs.fsyncSync(wfd);
    fs.closeSync(wfd);
    await run('incremental');

    const out = h.path('restored.img');
    dropCaches();
    const t0 = Date.now();
    const rr = await h.cairn(['restore', 'latest', '--target', out, '--json']);
    const wall = (Date.now() - t0) / 1000;
    if (rr.code !== 0) throw new Error(`restore failed: ${rr.stderr}${rr.stdout}`);
    const v = JSON.parse(rr.stdout) as { verify_s: number };
    console.log(`${'restore'.padEnd(12)} ${((sizeMiB * MiB) / 1e6 / wall).toFixed(1).padStart(7)} MB/s (wall ${wall.toFixed(2)} s, of which verify ${v.verify_s.toFixed(2)} s)  cmp: ${spawnSync('cmp', [source, out]).status === 0 ? 'equal' : 'DIFFERENT'}`);
  } finally {
    if (loopDev) spawnSync('losetup', ['-d', loopDev]);
    if (process.argv.includes('--keep')) {
      await h.daemon?.stop();
      console.log(`kept ${h.work}`);
    } else await h.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
