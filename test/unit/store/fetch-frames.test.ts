import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Catalog } from '../../../src/appliance/store/catalog';
import { LocalBlobStore } from '../../../src/appliance/store/blob-store';
import { ChunkStore } from '../../../src/appliance/store/chunk-store';
import { chunkId } from '../../../src/core/chunk-id';
import { sealChunkSync } from '../../../src/core/chunk-codec';
import { deriveDataKeys, DataKeys } from '../../../src/core/keys';
import { encodeUploadBatch } from '../../../src/core/api';

/**
 * ChunkStore.getFramed: a restore's fetch answer read straight into one buffer. It must hold
 * exactly the frames encodeUploadBatch makes of the blobs as uploaded (empty for an id refused
 * or unknown), for the prefix that fits the size cap.
 */
describe('chunk store: fetch answers framed in one buffer', () => {
  let dir: string;
  let keys: DataKeys;
  let catalog: Catalog;
  let blobs: LocalBlobStore;
  let store: ChunkStore;
  let owner: string;
  const base = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();

  const sealed = (n: number, size: (i: number) => number): { id: Buffer; blob: Buffer }[] =>
    Array.from({ length: n }, (_, i) => {
      const plain = randomBytes(size(i));
      const id = chunkId(keys, plain);
      return { id, blob: sealChunkSync(keys, id, plain, 'data') };
    });

  /** The expected answer: the uploaded blobs framed, for the prefix of `items` that fits `maxBytes` (at least one). */
  const reference = (items: { id: Buffer; blob: Buffer }[], allowed: boolean[], maxBytes: number): { answer: Buffer; count: number } => {
    const out: { id: Buffer; blob: Buffer }[] = [];
    let bytes = 0;
    for (let i = 0; i < items.length && (i === 0 || bytes < maxBytes); i++) {
      const blob = allowed[i] ? items[i].blob : Buffer.alloc(0);
      out.push({ id: items[i].id, blob });
      bytes += blob.length;
    }
    return { answer: Buffer.concat(encodeUploadBatch(out)), count: out.length };
  };

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(base, 'cairn-fetch-frames-'));
    keys = deriveDataKeys(randomBytes(32), 'blake3');
    catalog = new Catalog(path.join(dir, 'catalog.db'));
    blobs = new LocalBlobStore(path.join(dir, 'chunks'), path.join(dir, 'tmp'));
    store = new ChunkStore(blobs, catalog, keys, path.join(dir, 'refs'), path.join(dir, 'tmp'));
    const t = randomBytes(8).toString('hex');
    const secret = randomBytes(32);
    catalog.createToken(t, secret, 60_000);
    owner = catalog.redeemToken(t, secret, { name: 'a', host: 'a' }).agent.id;
  });
  afterEach(() => {
    blobs.closePacks();
    catalog.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('holds the uploaded blobs framed in order: packed runs, loose blobs, gaps, refused and unknown ids', async () => {
    const packA = sealed(7, (i) => 3000 + i * 977);
    const packB = sealed(5, (i) => 20_000 + i);
    const loose = sealed(1, () => 50_000);
    await store.putBatch(packA, { owner });
    await store.putBatch(packB, { owner });
    await store.putBatch(loose, { owner }); // an upload of one blob stays a loose file
    expect(catalog.chunkLocation(loose[0].id)?.pack, 'the single upload is loose').to.equal(null);
    expect(catalog.chunkLocation(packA[0].id)?.pack, 'the batch is packed').to.be.a('string');
    const unknown = randomBytes(32);
    // pack order broken on purpose: a run, a jump back, the other pack, a loose blob, unknown ids
    const order = [packA[0], packA[1], packA[2], packA[5], packA[3], packB[0], packB[1], loose[0], { id: unknown, blob: Buffer.alloc(0) }, packA[6], packB[4], packB[3]];
    const ids = order.map((o) => o.id);
    const allowed = ids.map((_, i) => i !== 4 && i !== 10); // two the snapshot does not reference
    const framed = await store.getFramed(ids, allowed, 1 << 30);
    expect(framed.count).to.equal(ids.length);
    expect(framed.answer?.equals(reference(order, allowed, 1 << 30).answer)).to.equal(true);
    // an unknown or refused id gets an empty frame, in its place
    const at = (k: number): number => ids.slice(0, k).reduce((n, _id, i) => n + 36 + (allowed[i] ? order[i].blob.length : 0), 0);
    expect(framed.answer!.readUInt32LE(at(4) + 32)).to.equal(0);
    expect(framed.answer!.readUInt32LE(at(8) + 32)).to.equal(0);
    expect(framed.answer!.subarray(at(8), at(8) + 32).equals(unknown)).to.equal(true);
  });

  it('stops after maxBytes (at least one blob)', async () => {
    const items = sealed(10, () => 10_000);
    await store.putBatch(items, { owner });
    const ids = items.map((i) => i.id);
    const all = ids.map(() => true);
    for (const max of [1, 10_000, 10_100, 35_000, 1 << 30]) {
      const framed = await store.getFramed(ids, all, max);
      const ref = reference(items, all, max);
      expect(framed.answer?.equals(ref.answer), `maxBytes ${max}`).to.equal(true);
      expect(framed.count, `maxBytes ${max}`).to.equal(ref.count);
    }
    expect((await store.getFramed(ids, all, 1)).count).to.equal(1);
    expect((await store.getFramed(ids, all, 35_000)).count).to.equal(4);
  });

  it('gives no answer, but the prefix it covers, when a pack cannot be read (the caller then looks each blob up again)', async () => {
    const items = sealed(4, () => 5000);
    await store.putBatch(items, { owner });
    const pack = catalog.chunkLocation(items[0].id)!.pack!;
    blobs.closePacks();
    fs.truncateSync(blobs.packPath(pack), 6000); // cut short under the catalog's feet
    expect(await store.getFramed(items.map((i) => i.id), [true, true, true, true], 1 << 30)).to.deep.equal({ answer: null, count: 4 });
  });
});
