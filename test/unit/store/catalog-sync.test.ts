import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { Catalog } from '../../../src/appliance/store/catalog';

/** SQLite's number for synchronous=FULL (NORMAL is 1) */
const FULL = 2;

const synchronousLevel = (c: Catalog): number => c.db.pragma('synchronous', { simple: true }) as number;

describe('catalog durability levels', () => {
  let dir: string;
  let catalog: Catalog;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-catalog-sync-'));
    catalog = new Catalog(path.join(dir, 'catalog.db'));
  });
  afterEach(() => {
    catalog.db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('opens at synchronous=FULL and is back at FULL after recording chunk rows', () => {
    expect(synchronousLevel(catalog)).to.equal(FULL);
    const ids = Array.from({ length: 50 }, () => randomBytes(32));
    catalog.addChunks(ids.map((id, i) => ({ id, size: 100 + i })));
    expect(synchronousLevel(catalog), 'every other commit (snapshots above all) stays FULL').to.equal(FULL);
    for (const id of ids) expect(catalog.hasChunk(id)).to.equal(true);
  });

  it('a batch that fails records none of its rows and leaves the level at FULL', () => {
    const good = randomBytes(32);
    // an object cannot be bound: the second row throws inside the transaction
    const rows = [{ id: good, size: 10 }, { id: randomBytes(32), size: {} as unknown as number }];
    expect(() => catalog.addChunks(rows)).to.throw();
    expect(catalog.hasChunk(good)).to.equal(false);
    expect(synchronousLevel(catalog)).to.equal(FULL);
  });

  describe('the WAL', () => {
    const walBytes = (): number => fs.statSync(path.join(dir, 'catalog.db-wal')).size;
    const snapshot = (agentId: string, id: string): void =>
      catalog.insertSnapshot({ id, agentId, source: 's', host: 'h', createdAt: Date.now(), manifest: [], chunkCount: 0, stats: { files: 0, dirs: 0, bytes_scanned: 0, bytes_read: 0, bytes_new: 0, bytes_uploaded: 0, chunks_new: 0, duration_s: 0 } });
    const agent = (): string => {
      const t = randomBytes(8).toString('hex');
      const secret = randomBytes(32);
      catalog.createToken(t, secret, 60_000);
      return catalog.redeemToken(t, secret, { name: 'a', host: 'a' }).agent.id;
    };

    it('grows with chunk rows and is emptied after each snapshot commit', () => {
      const a = agent();
      for (let b = 0; b < 80; b++) catalog.addChunks(Array.from({ length: 200 }, () => ({ id: randomBytes(32), size: 1000 })));
      expect(walBytes(), 'not folded every 1,000 pages').to.be.greaterThan(4 * 1024 * 1024);
      snapshot(a, 'snap1');
      expect(walBytes()).to.equal(0);
      expect(catalog.getSnapshot('snap1')).to.not.equal(undefined);
    });

    it('a reader in another connection does not make the commit wait; the WAL is emptied later', () => {
      const a = agent();
      for (let b = 0; b < 5; b++) catalog.addChunks(Array.from({ length: 200 }, () => ({ id: randomBytes(32), size: 1000 })));
      const reader = new Database(path.join(dir, 'catalog.db'), { readonly: true });
      try {
        reader.exec('BEGIN');
        reader.prepare('SELECT count(*) FROM chunks').get();
        const t0 = Date.now();
        snapshot(a, 'snap1');
        expect(Date.now() - t0, 'no wait for the reader (busy_timeout is 10 s)').to.be.lessThan(2000);
        expect(walBytes()).to.be.greaterThan(0);
        reader.exec('COMMIT');
      } finally {
        reader.close();
      }
      snapshot(a, 'snap2');
      expect(walBytes()).to.equal(0);
      expect(catalog.listSnapshots().map((s) => s.id).sort()).to.deep.equal(['snap1', 'snap2']);
    });
  });
});

describe('catalog: chunk rows looked up in batches', () => {
  let dir: string;
  let catalog: Catalog;
  let a: string;
  let b: string;
  const agent = (name: string): string => {
    const t = randomBytes(8).toString('hex');
    const secret = randomBytes(32);
    catalog.createToken(t, secret, 60_000);
    return catalog.redeemToken(t, secret, { name, host: name }).agent.id;
  };
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-catalog-batches-'));
    catalog = new Catalog(path.join(dir, 'catalog.db'));
    a = agent('a');
    b = agent('b');
  });
  afterEach(() => {
    catalog.db.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('chunkOwners answers as chunkOwner does for each id, in order, across batch edges', () => {
    const ids: Buffer[] = [];
    const rows: { id: Buffer; size: number; owner?: string }[] = [];
    for (let i = 0; i < 1203; i++) {
      const id = randomBytes(32);
      ids.push(id);
      if (i % 5 === 4) continue; // absent
      rows.push({ id, size: 10, owner: i % 5 === 0 ? undefined : i % 5 === 1 ? a : b });
    }
    catalog.addChunks(rows);
    ids.push(ids[3], ids[4]); // the same id twice in one list
    const owners = catalog.chunkOwners(ids);
    expect(owners).to.have.length(ids.length);
    expect(owners).to.deep.equal(ids.map((id) => catalog.chunkOwner(id)));
    expect(owners.filter((o) => o === undefined)).to.have.length(240 + 1);
    expect(owners.filter((o) => o === null).length).to.be.greaterThan(200);
    expect(owners.filter((o) => o === a).length).to.be.greaterThan(200);
    expect(catalog.chunkOwners([])).to.deep.equal([]);
  });

  it('unusableRefs finds absent ids, and with `foreign` unchecked ones of other agents, as a per-id check would', () => {
    const ids = Array.from({ length: 1700 }, () => randomBytes(32)).sort(Buffer.compare);
    const absent = new Set([3, 499, 500, 1699]);
    const byB = new Set([7, 1000, 1001]);
    catalog.addChunks(ids.flatMap((id, i) => (absent.has(i) ? [] : [{ id, size: 1, owner: byB.has(i) ? b : i % 3 === 0 ? a : undefined }])));
    const hex = (l: Buffer[]): string[] => l.map((x) => x.toString('hex'));
    const pick = (set: Set<number>[]): string[] => hex(ids.filter((_, i) => set.some((s) => s.has(i))));
    expect(hex(catalog.unusableRefs(ids, a, true, 1000))).to.deep.equal(pick([absent, byB]));
    expect(hex(catalog.unusableRefs(ids, a, false, 1000)), 'a keyless store: only absent ones').to.deep.equal(pick([absent]));
    expect(hex(catalog.unusableRefs(ids, b, true, 1000)).length, "a's unchecked chunks are foreign to b").to.be.greaterThan(500);
    expect(catalog.unusableRefs(ids, a, true, 2)).to.have.length(2);
    expect(catalog.unusableRefs(ids.slice(0, 3), a, true, 1000), 'a short last batch').to.deep.equal([]);
    expect(catalog.unusableRefs([], a, true, 1000)).to.deep.equal([]);
  });
});
