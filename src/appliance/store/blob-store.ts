import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { errnoCode } from '../../core/errors';
import { fsyncDir, fsyncDirAsync, ioError } from './durable';

/**
 * Stores opaque bytes under 32-byte ids; knows nothing of encryption or the catalog
 * (restic's backend layer). Local implementation: one file per blob at
 * root/ab/c/<64 hex> (4,096 shard directories, all created once when the store is first
 * opened, so no write pays for creating and fsyncing a directory), written to tmpDir, fsynced, hard-linked into place (link() never
 * replaces an existing blob, so nothing is ever overwritten) and the directory fsynced.
 */
export interface StagedBlob {
  id: Buffer;
  tmp: string;
}

/** A pack file written under tmp/ and fsynced, not yet visible. */
export interface StagedPack {
  name: string;
  tmp: string;
  entries: { id: Buffer; offset: number; size: number }[];
}

export const PACK_MAGIC = Buffer.from('CRNP');
export const PACK_VERSION = 1;
const PACK_ENTRY = 32 + 4 + 4;

export interface BlobStore {
  /** Durable when the promise resolves. 'existed' when a blob with this id was already stored (it is left untouched). */
  put(id: Buffer, data: Uint8Array): Promise<'stored' | 'existed'>;
  get(id: Buffer): Promise<Buffer>;
  has(id: Buffer): Promise<boolean>;
  remove(id: Buffer): Promise<void>;
  list(): AsyncGenerator<Buffer>;
}

export class LocalBlobStore implements BlobStore {
  /**
   * Pack files (format 1): small blobs of one upload batch written together, so storing them
   * costs one file, one fsync and one rename instead of one of each per blob (profiled: per-
   * file calls were most of the box's time on small-file corpora). packs/<24 hex>.pack =
   * the blobs back to back, then an index (id 32 | offset u32 LE | size u32 LE per blob),
   * u32 LE count, "CRNP", u32 LE version: self-describing, so a lost catalog can be rebuilt.
   * Where each packed blob lives is in the catalog (chunks.pack, chunks.offset).
   */
  readonly packsDir: string;
  private readonly openPacks = new Map<string, Promise<fs.promises.FileHandle>>();

  constructor(readonly root: string, readonly tmpDir: string) {
    fs.mkdirSync(root, { recursive: true, mode: 0o700 });
    fs.mkdirSync(tmpDir, { recursive: true, mode: 0o700 });
    this.packsDir = path.join(path.dirname(root), 'packs');
    if (!fs.existsSync(this.packsDir)) {
      fs.mkdirSync(this.packsDir, { recursive: true, mode: 0o700 });
      fsyncDir(path.dirname(root));
    }
    this.createShards();
  }

  packPath(name: string): string {
    return path.join(this.packsDir, `${name}.pack`);
  }

  /**
   * Writes blobs into one new pack file under tmp/ and fsyncs it (unless `sync` is false: then
   * the caller fsyncs it with syncStaged before publishing). Nothing is visible yet.
   */
  async stagePack(items: { id: Buffer; blob: Buffer }[], sync = true): Promise<StagedPack> {
    const name = randomBytes(12).toString('hex');
    const tmp = path.join(this.tmpDir, `pack-${name}`);
    const entries: StagedPack['entries'] = [];
    const index = Buffer.alloc(items.length * PACK_ENTRY + 12);
    let offset = 0;
    items.forEach((it, i) => {
      entries.push({ id: it.id, offset, size: it.blob.length });
      it.id.copy(index, i * PACK_ENTRY);
      index.writeUInt32LE(offset, i * PACK_ENTRY + 32);
      index.writeUInt32LE(it.blob.length, i * PACK_ENTRY + 36);
      offset += it.blob.length;
    });
    index.writeUInt32LE(items.length, items.length * PACK_ENTRY);
    PACK_MAGIC.copy(index, items.length * PACK_ENTRY + 4);
    index.writeUInt32LE(PACK_VERSION, items.length * PACK_ENTRY + 8);
    let fh: fs.promises.FileHandle | undefined;
    try {
      fh = await fs.promises.open(tmp, 'wx', 0o600);
      await fh.writev([...items.map((it) => it.blob), index]);
      if (sync) await fh.sync();
      return { name, tmp, entries };
    } catch (err) {
      await fs.promises.rm(tmp, { force: true }).catch(() => undefined);
      throw ioError('storing a pack of chunks', err);
    } finally {
      if (fh) await fh.close().catch(() => undefined);
    }
  }

  /** Moves a staged pack into packs/ and fsyncs the directory: durable on return. */
  async publishPack(p: StagedPack): Promise<void> {
    try {
      await fs.promises.rename(p.tmp, this.packPath(p.name));
      await fsyncDirAsync(this.packsDir);
    } catch (err) {
      throw ioError('storing a pack of chunks', err);
    }
  }

  /** Reads one blob out of a pack (file handles of recently read packs stay open). */
  async getPacked(name: string, offset: number, size: number): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(size);
    await this.readPackedInto(name, offset, [buf]);
    return buf;
  }

  /**
   * Reads the pack's bytes from `offset` on into `views`, one after another, with one call
   * (preadv): neighbouring blobs land straight in their places of a caller's buffer.
   */
  async readPackedInto(name: string, offset: number, views: Buffer[]): Promise<void> {
    const fh = await this.openPack(name);
    const want = views.reduce((n, v) => n + v.length, 0);
    const { bytesRead } = views.length === 1 ? await fh.read(views[0], 0, want, offset) : await fh.readv(views, offset);
    if (bytesRead !== want) throw ioError(`reading pack ${name}`, new Error(`short read: ${bytesRead} of ${want} bytes`));
  }

  /** An open handle on a pack; handles of the 32 most recently opened stay open. */
  private openPack(name: string): Promise<fs.promises.FileHandle> {
    let fhp = this.openPacks.get(name);
    if (!fhp) {
      fhp = fs.promises.open(this.packPath(name), 'r');
      fhp.catch(() => this.openPacks.delete(name));
      this.openPacks.set(name, fhp);
      while (this.openPacks.size > 32) {
        const [oldest, old] = this.openPacks.entries().next().value as [string, Promise<fs.promises.FileHandle>];
        this.openPacks.delete(oldest);
        old.then((h) => h.close(), () => undefined).catch(() => undefined);
      }
    }
    return fhp;
  }

  async removePack(name: string): Promise<void> {
    const h = this.openPacks.get(name);
    this.openPacks.delete(name);
    h?.then((x) => x.close(), () => undefined).catch(() => undefined);
    await fs.promises.rm(this.packPath(name), { force: true });
  }

  /** Pack names on disk. */
  listPacks(): string[] {
    return fs.readdirSync(this.packsDir).filter((f) => /^[0-9a-f]{24}\.pack$/.test(f)).map((f) => f.slice(0, 24));
  }

  closePacks(): void {
    for (const h of this.openPacks.values()) h.then((x) => x.close(), () => undefined).catch(() => undefined);
    this.openPacks.clear();
  }

  /** Layout marker: present once every shard directory exists durably. */
  private createShards(): void {
    const marker = path.join(this.root, '.layout-v1');
    if (fs.existsSync(marker)) return;
    for (let a = 0; a < 256; a++) {
      const top = path.join(this.root, a.toString(16).padStart(2, '0'));
      fs.mkdirSync(top, { recursive: true, mode: 0o700 });
      for (let b = 0; b < 16; b++) fs.mkdirSync(path.join(top, b.toString(16)), { recursive: true, mode: 0o700 });
      fsyncDir(top);
    }
    fsyncDir(this.root);
    fs.writeFileSync(marker, 'ab/c/<id>\n');
    fsyncDir(this.root);
  }

  pathOf(id: Buffer): string {
    const hex = id.toString('hex');
    return path.join(this.root, hex.slice(0, 2), hex[2], hex);
  }

  /** Removes partial writes left by a crash. Call at start-up, before serving. */
  cleanTmp(): number {
    let n = 0;
    for (const name of fs.readdirSync(this.tmpDir)) {
      fs.rmSync(path.join(this.tmpDir, name), { force: true, recursive: true });
      n++;
    }
    return n;
  }

  /** Recreates a shard directory someone removed (not expected; the layout creates them all). */
  private async restoreShard(file: string): Promise<void> {
    const shard = path.dirname(file);
    await fs.promises.mkdir(shard, { recursive: true, mode: 0o700 });
    await fsyncDirAsync(path.dirname(shard));
    await fsyncDirAsync(this.root);
  }

  private async link(tmp: string, final: string): Promise<void> {
    try {
      await fs.promises.link(tmp, final);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT' || !fs.existsSync(tmp)) throw err;
      await this.restoreShard(final);
      await fs.promises.link(tmp, final);
    }
  }

  async put(id: Buffer, data: Uint8Array): Promise<'stored' | 'existed'> {
    const st = await this.stage(id, data);
    try {
      return (await this.publish([st], false))[0];
    } finally {
      await this.discard([st]);
    }
  }

  /**
   * Phase 1 of a put: the bytes are written under tmp/ and fsynced (unless `sync` is false: then
   * the caller fsyncs them with syncStaged before publishing). Nothing is visible yet.
   */
  async stage(id: Buffer, data: Uint8Array, sync = true): Promise<StagedBlob> {
    const tmp = path.join(this.tmpDir, `${id.toString('hex').slice(0, 16)}.${randomBytes(6).toString('hex')}`);
    let fh: fs.promises.FileHandle | undefined;
    try {
      fh = await fs.promises.open(tmp, 'wx', 0o600);
      await fh.writeFile(data);
      if (sync) await fh.sync();
      return { id, tmp };
    } catch (err) {
      await fs.promises.rm(tmp, { force: true }).catch(() => undefined);
      throw ioError(`storing chunk ${id.toString('hex').slice(0, 16)}`, err);
    } finally {
      if (fh) await fh.close().catch(() => undefined);
    }
  }

  /**
   * Phase 2: links staged blobs into place and fsyncs their directories; durable on return.
   * An existing file is left alone ('existed') unless `replaceUnlisted`, which the chunk store
   * passes only for ids it has no row for (a leftover of a crash or of GC, never a live chunk):
   * then the verified new bytes take its place atomically.
   */
  async publish(staged: StagedBlob[], replaceUnlisted: boolean): Promise<('stored' | 'existed')[]> {
    const out: ('stored' | 'existed')[] = [];
    const dirs = new Set<string>();
    try {
      for (const st of staged) {
        const final = this.pathOf(st.id);
        try {
          await this.link(st.tmp, final);
          out.push('stored');
        } catch (err) {
          if (errnoCode(err) !== 'EEXIST') throw err;
          if (replaceUnlisted) {
            await fs.promises.rename(st.tmp, final);
            out.push('stored');
          } else out.push('existed');
        }
        dirs.add(path.dirname(final));
      }
      // Concurrent fsyncs share journal commits (group commit), so they go together.
      await Promise.all([...dirs].map((d) => fsyncDirAsync(d)));
      return out;
    } catch (err) {
      throw ioError('storing chunks', err);
    }
  }

  /** fsyncs files staged with `sync` false, all at once (concurrent fsyncs share journal commits). */
  async syncStaged(tmps: string[]): Promise<void> {
    try {
      await Promise.all(
        tmps.map(async (tmp) => {
          const fh = await fs.promises.open(tmp, 'r');
          try {
            await fh.sync();
          } finally {
            await fh.close();
          }
        }),
      );
    } catch (err) {
      throw ioError('storing chunks', err);
    }
  }

  async discard(staged: StagedBlob[]): Promise<void> {
    for (const st of staged) await fs.promises.rm(st.tmp, { force: true }).catch(() => undefined);
  }

  async get(id: Buffer, size?: number): Promise<Buffer> {
    if (size === undefined) return fs.promises.readFile(this.pathOf(id));
    const buf = Buffer.allocUnsafe(size);
    await this.readInto(id, buf);
    return buf;
  }

  /** Reads a loose blob whose size the catalog knows into `buf` (exactly that size): one read instead of readFile's fstat and 512 KiB steps. */
  async readInto(id: Buffer, buf: Buffer): Promise<void> {
    const size = buf.length;
    const fh = await fs.promises.open(this.pathOf(id), 'r');
    try {
      let got = 0;
      while (got < size) {
        const { bytesRead } = await fh.read(buf, got, size - got, got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      if (got !== size) throw ioError(`reading chunk ${id.toString('hex').slice(0, 16)}`, new Error(`short read: ${got} of ${size} bytes`));
    } finally {
      await fh.close();
    }
  }

  async has(id: Buffer): Promise<boolean> {
    return exists(this.pathOf(id));
  }

  async remove(id: Buffer): Promise<void> {
    try {
      await fs.promises.unlink(this.pathOf(id));
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
  }

  async *list(): AsyncGenerator<Buffer> {
    for (const a of await readdirOrEmpty(this.root)) {
      if (!/^[0-9a-f]{2}$/.test(a)) continue;
      for (const b of await readdirOrEmpty(path.join(this.root, a))) {
        if (!/^[0-9a-f]$/.test(b)) continue;
        for (const name of await readdirOrEmpty(path.join(this.root, a, b))) {
          if (/^[0-9a-f]{64}$/.test(name)) yield Buffer.from(name, 'hex');
        }
      }
    }
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await fs.promises.access(p);
    return true;
  } catch {
    return false;
  }
}

async function readdirOrEmpty(p: string): Promise<string[]> {
  try {
    return await fs.promises.readdir(p);
  } catch {
    return [];
  }
}
