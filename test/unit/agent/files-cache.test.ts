import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { CachedFile, FilesCache } from '../../../src/agent/files-cache';

/** The agent's files cache: which files need not be read again, and what survives an interrupted run. */
describe('files cache', () => {
  let dir: string;
  let file: string;
  const open: FilesCache[] = [];
  const cacheAt = (): FilesCache => {
    const c = new FilesCache(file);
    open.push(c);
    return c;
  };
  const row = (size: number, skip = 0): CachedFile => ({ size, mtimeNs: String(1e18 + size), ctimeNs: String(2e18 + size), ino: String(size * 7), chunks: randomBytes(36), skip });
  const p = (s: string): Buffer => Buffer.from(s);

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-files-cache-'));
    file = path.join(dir, 'cache.db');
  });
  afterEach(() => {
    for (const c of open.splice(0)) {
      try {
        c.close();
      } catch {
        /* closed by the test */
      }
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('keeps unchanged rows, replaces changed ones and forgets deleted files at commit', () => {
    const c = cacheAt();
    const a = row(1);
    const b = row(2);
    const d = row(4);
    c.beginRun('s');
    c.stage('s', p('a'), a);
    c.stage('s', p('b'), b);
    c.stage('s', p('d'), d);
    expect(c.lookup('s', p('a')), 'staged rows count only after the commit').to.equal(undefined);
    c.commitRun('s');
    expect(c.lookup('s', p('a'))).to.deep.equal(a);

    c.beginRun('s');
    const b2 = row(22);
    const e = row(5);
    expect(c.lookup('s', p('a'))).to.deep.equal(a);
    c.keep('s', p('a'));
    expect(c.lookup('s', p('b'))).to.deep.equal(b);
    c.stage('s', p('b'), b2); // changed
    c.stage('s', p('e'), e); // new; d was not seen: deleted
    c.commitRun('s');
    expect(c.lookup('s', p('a'))).to.deep.equal(a);
    expect(c.lookup('s', p('b'))).to.deep.equal(b2);
    expect(c.lookup('s', p('e'))).to.deep.equal(e);
    expect(c.lookup('s', p('d'))).to.equal(undefined);
  });

  it('an interrupted run changes nothing a later run relies on', () => {
    const c = cacheAt();
    const a = row(1);
    const b = row(2);
    c.beginRun('s');
    c.stage('s', p('a'), a);
    c.stage('s', p('b'), b);
    c.commitRun('s');
    // a run that keeps a, stages a changed b and a new x, then dies before its commit
    c.beginRun('s');
    c.keep('s', p('a'));
    c.stage('s', p('b'), row(9));
    c.stage('s', p('x'), row(10));
    for (let i = 0; i < 2500; i++) c.keep('s', p(`none-${i}`)); // forces the writes out
    c.close();
    const again = cacheAt();
    expect(again.lookup('s', p('a'))).to.deep.equal(a);
    expect(again.lookup('s', p('b')), 'the changed row is not in force').to.deep.equal(b);
    expect(again.lookup('s', p('x'))).to.equal(undefined);
    // the next run sees b unchanged and drops a (deleted meanwhile); what the dead run staged is gone
    again.beginRun('s');
    again.keep('s', p('b'));
    again.commitRun('s');
    expect(again.lookup('s', p('a'))).to.equal(undefined);
    expect(again.lookup('s', p('b'))).to.deep.equal(b);
    expect(again.lookup('s', p('x'))).to.equal(undefined);
  });

  it('sources are apart, and a run of one source may commit while another reads', () => {
    const one = cacheAt();
    const two = cacheAt();
    const a = row(1);
    one.beginRun('one');
    one.stage('one', p('a'), a);
    one.commitRun('one');
    one.beginRun('one');
    expect(one.lookup('one', p('a'))).to.deep.equal(a); // its read transaction is open now
    two.beginRun('two');
    two.stage('two', p('a'), row(3));
    two.commitRun('two'); // another writer is not held up by it
    one.keep('one', p('a'));
    for (let i = 0; i < 3000; i++) {
      one.lookup('one', p(`f${i}`));
      one.stage('one', p(`f${i}`), row(100 + i)); // lookups and flushes interleave
    }
    one.commitRun('one');
    expect(one.lookup('one', p('a'))).to.deep.equal(a);
    expect(one.lookup('one', p('f2999'))?.size).to.equal(3099);
    expect(two.lookup('two', p('a'))?.size).to.equal(3);
    expect(one.lookup('two', p('f1'))).to.equal(undefined);
  });

  it('reads a cache of version 0 (no generation column), and rebuilds one of a newer version', () => {
    const chunks = randomBytes(72);
    const old = new Database(file);
    old.exec(`CREATE TABLE files (source TEXT NOT NULL, path BLOB NOT NULL, size INTEGER NOT NULL, mtime TEXT NOT NULL,
        ctime TEXT NOT NULL, ino TEXT NOT NULL, chunks BLOB NOT NULL, PRIMARY KEY (source, path)) WITHOUT ROWID;
      CREATE TABLE staged (source TEXT NOT NULL, path BLOB NOT NULL, size INTEGER NOT NULL, mtime TEXT NOT NULL,
        ctime TEXT NOT NULL, ino TEXT NOT NULL, chunks BLOB NOT NULL, PRIMARY KEY (source, path)) WITHOUT ROWID;
      CREATE TABLE targets (source TEXT PRIMARY KEY, target TEXT NOT NULL);`);
    old.prepare('INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?)').run('s', p('a'), 5, '11', '12', '13', chunks);
    old.prepare('INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?)').run('s', p('gone'), 6, '11', '12', '13', chunks);
    old.close();

    const c = cacheAt();
    expect(c.lookup('s', p('a'))).to.deep.equal({ size: 5, mtimeNs: '11', ctimeNs: '12', ino: '13', chunks, skip: 0 });
    c.beginRun('s');
    c.keep('s', p('a'));
    c.commitRun('s');
    expect(c.lookup('s', p('a'))?.size).to.equal(5);
    expect(c.lookup('s', p('gone'))).to.equal(undefined);
    c.close();
    const check = new Database(file);
    expect(check.pragma('user_version', { simple: true })).to.equal(2);
    check.pragma('user_version = 7'); // written by a newer agent
    check.close();
    const rebuilt = cacheAt();
    expect(rebuilt.lookup('s', p('a')), 'a cache this agent cannot read is started over').to.equal(undefined);
    expect(rebuilt.hasAny('s')).to.equal(false);
  });
  it('keeps a bundled file\'s skip through stage, commit, keep and reopening', () => {
    const c = cacheAt();
    const bundled = row(10, 1234);
    const big = 2 ** 32 + 5; // more than a u32: a skip is never that large, but the column holds it
    const wide = row(11, big);
    const own = row(12);
    c.beginRun('s');
    c.stage('s', p('bundled'), bundled);
    c.stage('s', p('wide'), wide);
    c.stage('s', p('own'), own);
    c.commitRun('s');
    expect(c.lookup('s', p('bundled'))).to.deep.equal(bundled);
    expect(c.lookup('s', p('bundled'))?.skip).to.be.a('number').and.equal(1234);
    expect(c.lookup('s', p('wide'))?.skip).to.equal(big);
    expect(c.lookup('s', p('own'))?.skip).to.equal(0);
    c.beginRun('s');
    c.keep('s', p('bundled'));
    const moved = row(10, 77); // rebundled with other neighbours
    c.stage('s', p('own'), moved);
    c.commitRun('s');
    c.close();
    const again = cacheAt();
    expect(again.lookup('s', p('bundled'))).to.deep.equal(bundled);
    expect(again.lookup('s', p('own'))).to.deep.equal(moved);
    expect(again.lookup('s', p('wide'))).to.equal(undefined);
  });

  it('reads a cache of version 1 (no skip column): its rows have skip 0, and new rows keep theirs', () => {
    const chunks = randomBytes(72);
    const old = new Database(file);
    old.exec(`CREATE TABLE files (source TEXT NOT NULL, path BLOB NOT NULL, size INTEGER NOT NULL, mtime TEXT NOT NULL,
        ctime TEXT NOT NULL, ino TEXT NOT NULL, chunks BLOB NOT NULL, gen INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (source, path)) WITHOUT ROWID;
      CREATE TABLE staged (source TEXT NOT NULL, path BLOB NOT NULL, size INTEGER NOT NULL, mtime TEXT NOT NULL,
        ctime TEXT NOT NULL, ino TEXT NOT NULL, chunks BLOB NOT NULL, PRIMARY KEY (source, path)) WITHOUT ROWID;
      CREATE TABLE targets (source TEXT PRIMARY KEY, target TEXT NOT NULL);`);
    old.prepare('INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)').run('s', p('a'), 5, '11', '12', '13', chunks, 3);
    old.prepare('INSERT INTO staged VALUES (?, ?, ?, ?, ?, ?, ?)').run('s', p('ghost'), 3, '1', '2', '3', chunks);
    old.prepare('INSERT INTO targets VALUES (?, ?)').run('s', 'box');
    old.pragma('user_version = 1');
    old.close();

    const c = cacheAt();
    expect(c.lookup('s', p('a'))).to.deep.equal({ size: 5, mtimeNs: '11', ctimeNs: '12', ino: '13', chunks, skip: 0 });
    expect(c.target('s')).to.equal('box');
    c.beginRun('s'); // next generation after the migrated row's 3
    c.keep('s', p('a'));
    const b = row(7, 99);
    c.stage('s', p('b'), b);
    c.commitRun('s');
    expect(c.lookup('s', p('a'))).to.deep.equal({ size: 5, mtimeNs: '11', ctimeNs: '12', ino: '13', chunks, skip: 0 });
    expect(c.lookup('s', p('b'))).to.deep.equal(b);
    expect(c.lookup('s', p('ghost'))).to.equal(undefined);
    c.close();
    const check = new Database(file);
    expect(check.pragma('user_version', { simple: true })).to.equal(2);
    for (const t of ['files', 'staged']) {
      const cols = check.prepare('SELECT name FROM pragma_table_info(?)').pluck().all(t) as string[];
      expect(cols, t).to.include('skip');
    }
    check.close();
  });

  it('staged rows are the run\'s own: an older agent\'s leftovers and a restarted run\'s rows never take effect', () => {
    const c = cacheAt();
    c.beginRun('s');
    c.stage('s', p('a'), row(1));
    c.commitRun('s');
    c.close();
    // an older agent staged rows in the file and died before its commit
    const old = new Database(file);
    old.prepare('INSERT INTO staged (source, path, size, mtime, ctime, ino, chunks) VALUES (?, ?, ?, ?, ?, ?, ?)').run('s', p('ghost'), 3, '1', '2', '3', randomBytes(36));
    old.close();
    const d = cacheAt();
    d.beginRun('s');
    d.stage('s', p('dropped'), row(4)); // this run is given up before its commit...
    d.beginRun('s'); // ...and the next one starts in the same process
    d.keep('s', p('a'));
    d.stage('s', p('b'), row(5));
    d.commitRun('s');
    expect(d.lookup('s', p('ghost'))).to.equal(undefined);
    expect(d.lookup('s', p('dropped'))).to.equal(undefined);
    expect(d.lookup('s', p('a'))?.size).to.equal(1);
    expect(d.lookup('s', p('b'))?.size).to.equal(5);
  });

  it('a run staging more rows than it keeps in memory commits them all', () => {
    const c = cacheAt();
    c.beginRun('s');
    const n = 40_000;
    const chunks = (i: number): Buffer => Buffer.alloc(96, i % 251);
    for (let i = 0; i < n; i++) c.stage('s', p(`dir/file-${i}`), { size: i, mtimeNs: '1', ctimeNs: '2', ino: String(i), chunks: chunks(i), skip: i % 3 });
    c.commitRun('s');
    c.close();
    const again = cacheAt();
    for (const i of [0, 1, 12_345, 29_999, n - 1]) expect(again.lookup('s', p(`dir/file-${i}`)), `row ${i}`).to.deep.equal({ size: i, mtimeNs: '1', ctimeNs: '2', ino: String(i), chunks: chunks(i), skip: i % 3 });
    expect([...again.chunkLists('s')]).to.have.length(n);
  });
});
