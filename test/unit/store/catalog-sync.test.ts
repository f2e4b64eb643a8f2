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
