import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
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
});
