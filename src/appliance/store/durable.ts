import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { CairnError, errnoCode, errorMessage } from '../../core/errors';

/**
 * Durability discipline: data is written to a temp name, fsynced, then linked/renamed into
 * place and the directory fsynced. A failed fsync is fatal for that write: it is reported,
 * never retried into a success (the page cache may already have dropped the dirty pages).
 */
export function ioError(what: string, err: unknown): CairnError {
  const code = errnoCode(err);
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new CairnError('CAIRN_STORE_FULL', `the box's disk is full while ${what}; free space or add disks, then retry`);
  }
  return new CairnError('CAIRN_STORE_IO', `I/O error while ${what}: ${errorMessage(err)}`);
}

/** SQLite's "disk full" and I/O errors, as CairnErrors (other errors pass through). */
export function storeError(err: unknown): unknown {
  const code = errnoCode(err);
  if (code === 'SQLITE_FULL') return new CairnError('CAIRN_STORE_FULL', "the box's disk is full while updating its catalog; free space or add disks, then retry");
  if (code && code.startsWith('SQLITE_IOERR')) return new CairnError('CAIRN_STORE_IO', `the box's catalog hit an I/O error (${code})`);
  return err;
}

export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export async function fsyncDirAsync(dir: string): Promise<void> {
  const fh = await fs.promises.open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Small files (keys, certs, config): tmp -> fsync -> rename -> fsync(dir). */
export function writeFileDurable(file: string, data: string | Buffer, mode: number): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = fs.openSync(tmp, 'wx', mode);
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } catch (err) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
  fs.closeSync(fd);
  fs.renameSync(tmp, file);
  fsyncDir(path.dirname(file));
}
