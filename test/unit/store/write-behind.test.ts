import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Catalog } from '../../../src/appliance/store/catalog';
import { LocalBlobStore } from '../../../src/appliance/store/blob-store';
import { ChunkStore } from '../../../src/appliance/store/chunk-store';
import { chunkId } from '../../../src/core/chunk-id';
import { sealChunkSync, openChunk, ChunkScratch } from '../../../src/core/chunk-codec';
import { deriveDataKeys, DataKeys } from '../../../src/core/keys';
import { CairnError } from '../../../src/core/errors';
import type { BackupStats } from '../../../src/core/api';

/**
 * Uploads written behind (ChunkStore.writeBehind): answered once written under tmp/, fsynced,
 * published and recorded afterwards. A gate on the blob store's fsync holds a write behind at
 * the point where a crash or an I/O error could strike.
 */
const STATS: BackupStats = { files: 0, dirs: 0, bytes_scanned: 0, bytes_read: 0, bytes_new: 0, bytes_uploaded: 0, chunks_new: 0, duration_s: 0 };

interface Gate {
  open: () => void;
  fail: (err: Error) => void;
  entered: Promise<void>;
}

describe('chunk store: uploads written behind', () => {
  let dir: string;
  let keys: DataKeys;
  let catalog: Catalog;
  let blobs: LocalBlobStore;
  let store: ChunkStore;
  let agentA: string;
  let agentB: string;
  const realSync = LocalBlobStore.prototype.syncStaged;
  const savedLimit = ChunkStore.WRITE_BEHIND_BYTES;

  const open = (): void => {
    catalog = new Catalog(path.join(dir, 'catalog.db'));
    blobs = new LocalBlobStore(path.join(dir, 'chunks'), path.join(dir, 'tmp'));
    store = new ChunkStore(blobs, catalog, keys, path.join(dir, 'refs'), path.join(dir, 'tmp'));
  };

  /** Holds every fsync of a write behind until the gate is opened (or failed). */
  const gate = (): Gate => {
    let open!: () => void;
    let fail!: (err: Error) => void;
    let entered!: () => void;
    const passed = new Promise<void>((resolve, reject) => {
      open = resolve;
      fail = reject;
    });
    passed.catch(() => undefined);
    const g: Gate = { open, fail, entered: new Promise<void>((r) => (entered = r)) };
    blobs.syncStaged = async function (this: LocalBlobStore, tmps: string[]): Promise<void> {
      entered();
      await passed;
      return realSync.call(this, tmps);
    };
    return g;
  };

  /** Sealed chunks: `big` of 600 KiB, the rest small (an upload of two or more shares one pack file). */
  const chunks = (n: number, big = 1): { id: Buffer; blob: Buffer; plain: Buffer }[] =>
    Array.from({ length: n }, (_, i) => {
      const plain = randomBytes(i < big ? 600 * 1024 : 2000 + i);
      const id = chunkId(keys, plain);
      return { id, plain, blob: sealChunkSync(keys, id, plain, 'data') };
    });

  const registerAgent = (name: string): string => {
    const t = randomBytes(8).toString('hex');
    const secret = randomBytes(32);
    catalog.createToken(t, secret, 60_000);
    return catalog.redeemToken(t, secret, { name, host: name }).agent.id;
  };

  const inPlace = (): string[] => {
    const files: string[] = [];
    const walk = (d: string): void => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        if (e.isDirectory()) walk(path.join(d, e.name));
        else if (/^[0-9a-f]{64}$|\.pack$/.test(e.name)) files.push(e.name);
      }
    };
    walk(path.join(dir, 'chunks'));
    walk(path.join(dir, 'packs'));
    return files;
  };

  const tick = (): Promise<void> => new Promise((r) => setTimeout(r, 30));

  // Each test opens a new store: its 4,096 shard directories take seconds on a disk, so the
  // stores live in memory where there is a tmpfs (the logic under test is the same).
  const base = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(base, 'cairn-write-behind-'));
    keys = deriveDataKeys(randomBytes(32), 'blake3');
    open();
    agentA = registerAgent('a');
    agentB = registerAgent('b');
  });
  afterEach(async () => {
    ChunkStore.WRITE_BEHIND_BYTES = savedLimit;
    blobs.syncStaged = realSync;
    blobs.closePacks();
    catalog.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('answers before the rows exist, counts the chunks as stored for their uploader, and records them durably', async () => {
    const g = gate();
    const items = chunks(6, 2);
    const r = await store.putBatch(items, { owner: agentA, writeBehind: true });
    expect(r).to.deep.equal({ stored: 6, existed: 0 });
    await g.entered;
    for (const it of items) expect(catalog.hasChunk(it.id), 'no row before the fsync').to.equal(false);
    expect(inPlace(), 'nothing published before the fsync').to.deep.equal([]);
    expect(store.behindFigures()).to.include({ ids: 6 });
    expect(await store.missing(items.map((i) => i.id), agentA), 'the uploader is not asked again').to.deep.equal([]);
    const again = await store.putBatch(items.slice(0, 3), { owner: agentA, writeBehind: true });
    expect(again, 'a second upload of a chunk behind').to.deep.equal({ stored: 0, existed: 3, existedIds: items.slice(0, 3).map((i) => i.id) });
    let settled = false;
    const s = store.settle().then(() => (settled = true));
    await tick();
    expect(settled, 'settle waits for the fsync').to.equal(false);
    g.open();
    await s;
    expect(store.behindFigures()).to.deep.equal({ ids: 0, bytes: 0, failed: 0 });
    const scratch = new ChunkScratch();
    for (const it of items) {
      expect(catalog.hasChunk(it.id)).to.equal(true);
      expect(Buffer.from(openChunk(keys, it.id, await store.getBlob(it.id), scratch)).equals(it.plain)).to.equal(true);
    }
    expect(inPlace().length, 'one pack: the blobs of an upload share it').to.equal(1);
    expect(fs.readdirSync(path.join(dir, 'tmp')), 'no temp file left').to.deep.equal([]);
  });

  it('another agent asking about a chunk behind waits for its row, and gets a checked answer', async () => {
    const g = gate();
    const items = chunks(3);
    await store.putBatch(items, { owner: agentA, writeBehind: true });
    await g.entered;
    let answered = false;
    const asked = store.missing(items.map((i) => i.id), agentB).then((m) => {
      answered = true;
      return m;
    });
    await tick();
    expect(answered).to.equal(false);
    g.open();
    expect(await asked).to.deep.equal([]);
    expect(catalog.hasUncheckedFrom(agentB), 'checked on sharing: nothing of agent a is left unchecked').to.equal(false);
  });

  it('a snapshot commit waits for the writes behind and then finds every chunk', async () => {
    const g = gate();
    const items = chunks(4);
    await store.putBatch(items, { owner: agentA, writeBehind: true });
    await g.entered;
    const refs = Buffer.concat(items.map((i) => i.id).sort(Buffer.compare));
    let done = false;
    const commit = store.commitSnapshot({ agentId: agentA, source: 's', host: 'h', manifest: [], refs, stats: STATS }).then((info) => {
      done = true;
      return info;
    });
    await tick();
    expect(done, 'the commit waits for the fsync').to.equal(false);
    g.open();
    const info = await commit;
    expect(info.chunks).to.equal(4);
  });

  it('a write behind that fails leaves no row and no file, is reported, and the commit is refused until the chunks come again', async () => {
    const reported: number[] = [];
    store.onWriteBehindError = (_err, n) => reported.push(n);
    const g = gate();
    const items = chunks(5, 2);
    await store.putBatch(items, { owner: agentA, writeBehind: true });
    await g.entered;
    g.fail(Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' }));
    await store.settle();
    expect(reported).to.deep.equal([5]);
    expect(store.behindFigures()).to.include({ ids: 0, failed: 5 });
    for (const it of items) expect(catalog.hasChunk(it.id)).to.equal(false);
    expect(inPlace()).to.deep.equal([]);
    expect(fs.readdirSync(path.join(dir, 'tmp'))).to.deep.equal([]);
    expect((await store.missing(items.map((i) => i.id), agentA)).length, 'reported missing again').to.equal(5);
    const refs = Buffer.concat(items.map((i) => i.id).sort(Buffer.compare));
    const refused = await store.commitSnapshot({ agentId: agentA, source: 's', host: 'h', manifest: [], refs, stats: STATS }).catch((e: unknown) => e);
    expect(CairnError.is(refused, 'CAIRN_SNAPSHOT_INCOMPLETE')).to.equal(true);
    blobs.syncStaged = realSync;
    expect(await store.putBatch(items, { owner: agentA, writeBehind: true })).to.deep.equal({ stored: 5, existed: 0 });
    expect((await store.commitSnapshot({ agentId: agentA, source: 's', host: 'h', manifest: [], refs, stats: STATS })).chunks).to.equal(5);
  });

  it('uploads that arrive while a round is recorded are recorded together in the next, in one transaction', async () => {
    const g = gate();
    const first = chunks(2);
    await store.putBatch(first, { owner: agentA, writeBehind: true });
    await g.entered;
    const rounds: number[] = [];
    const realAdd = catalog.addChunks.bind(catalog);
    catalog.addChunks = (rows, now) => {
      rounds.push(rows.length);
      realAdd(rows, now);
    };
    const later = [chunks(3), chunks(1), chunks(4, 0)];
    for (const items of later) await store.putBatch(items, { owner: agentA, writeBehind: true });
    expect(rounds, 'nothing recorded while the first round waits for its fsync').to.deep.equal([]);
    g.open();
    await store.settle();
    expect(rounds).to.deep.equal([2, 8]);
    for (const it of [first, ...later].flat()) expect(catalog.hasChunk(it.id)).to.equal(true);
    expect(fs.readdirSync(path.join(dir, 'tmp')), 'no temp file left').to.deep.equal([]);
    const refs = Buffer.concat([first, ...later].flat().map((i) => i.id).sort(Buffer.compare));
    expect((await store.commitSnapshot({ agentId: agentA, source: 's', host: 'h', manifest: [], refs, stats: STATS })).chunks).to.equal(10);
  });

  it('a crash before the fsync leaves only temp files, which start-up removes; the chunks are then missing and upload again', async () => {
    gate();
    const items = chunks(4, 1);
    await store.putBatch(items.slice(0, 3), { owner: agentA, writeBehind: true });
    await store.putBatch(items.slice(3), { owner: agentA, writeBehind: true }); // a blob uploaded alone is a file of its own
    // the process dies here: the write behind never finishes
    blobs.closePacks();
    catalog.close();
    blobs.syncStaged = realSync;
    open();
    expect(blobs.cleanTmp(), 'a pack and a loose blob were left under tmp/').to.equal(2);
    expect(inPlace()).to.deep.equal([]);
    expect((await store.missing(items.map((i) => i.id), agentA)).length).to.equal(4);
    expect(await store.putBatch(items, { owner: agentA, writeBehind: true })).to.deep.equal({ stored: 4, existed: 0 });
    await store.settle();
    for (const it of items) expect(catalog.hasChunk(it.id)).to.equal(true);
  });

  it('holds at most WRITE_BEHIND_BYTES behind: the next upload waits for room', async () => {
    ChunkStore.WRITE_BEHIND_BYTES = 100 * 1024;
    const g = gate();
    await store.putBatch(chunks(1, 1), { owner: agentA, writeBehind: true });
    await g.entered;
    let answered = false;
    const next = store.putBatch(chunks(2, 0), { owner: agentA, writeBehind: true }).then((r) => {
      answered = true;
      return r;
    });
    await tick();
    expect(answered, 'the second upload waits').to.equal(false);
    g.open();
    expect(await next).to.deep.equal({ stored: 2, existed: 0 });
    await store.settle();
    expect(store.behindFigures().bytes).to.equal(0);
  });

  it('uploads without write-behind are recorded before they are answered', async () => {
    const items = chunks(3);
    expect(await store.putBatch(items, { owner: agentA })).to.deep.equal({ stored: 3, existed: 0 });
    for (const it of items) expect(catalog.hasChunk(it.id)).to.equal(true);
  });
});
