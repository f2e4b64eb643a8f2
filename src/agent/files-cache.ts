import Database from 'better-sqlite3';

/**
 * Files cache: for each source, the (size, mtime, ctime, inode) of every file seen at the last
 * committed backup and its chunk list. A file whose four values are unchanged is not read
 * again. Rows of a running backup go to `staged` and replace the source's rows only once the
 * snapshot is committed, so an interrupted run never leaves the cache pointing at chunks the
 * box may not hold.
 */
export interface CachedFile {
  size: number;
  mtimeNs: string;
  ctimeNs: string;
  ino: string;
  chunks: Buffer;
}

export class FilesCache {
  private readonly db: Database.Database;
  private readonly getStmt: Database.Statement<[string, Buffer], CachedFile>;
  private readonly stageStmt: Database.Statement<[string, Buffer, number, string, string, string, Buffer]>;
  private pendingStage: [string, Buffer, number, string, string, string, Buffer][] = [];

  constructor(file: string) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 10000');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS files (source TEXT NOT NULL, path BLOB NOT NULL, size INTEGER NOT NULL, mtime TEXT NOT NULL,
        ctime TEXT NOT NULL, ino TEXT NOT NULL, chunks BLOB NOT NULL, PRIMARY KEY (source, path)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS staged (source TEXT NOT NULL, path BLOB NOT NULL, size INTEGER NOT NULL, mtime TEXT NOT NULL,
        ctime TEXT NOT NULL, ino TEXT NOT NULL, chunks BLOB NOT NULL, PRIMARY KEY (source, path)) WITHOUT ROWID;
      CREATE TABLE IF NOT EXISTS targets (source TEXT PRIMARY KEY, target TEXT NOT NULL);`);
    this.getStmt = this.db.prepare('SELECT size, mtime AS mtimeNs, ctime AS ctimeNs, ino, chunks FROM files WHERE source = ? AND path = ?');
    this.stageStmt = this.db.prepare('INSERT OR REPLACE INTO staged (source, path, size, mtime, ctime, ino, chunks) VALUES (?, ?, ?, ?, ?, ?, ?)');
  }

  lookup(source: string, path: Buffer): CachedFile | undefined {
    return this.getStmt.get(source, path);
  }

  /** Whether the source has any cached file (a first backup has none, and need not look each file up). */
  hasAny(source: string): boolean {
    return this.db.prepare('SELECT 1 FROM files WHERE source = ? LIMIT 1').get(source) !== undefined;
  }

  beginRun(source: string): void {
    this.db.prepare('DELETE FROM staged WHERE source = ?').run(source);
  }

  stage(source: string, path: Buffer, f: CachedFile): void {
    this.pendingStage.push([source, path, f.size, f.mtimeNs, f.ctimeNs, f.ino, f.chunks]);
    if (this.pendingStage.length >= 2000) this.flush();
  }

  private flush(): void {
    const rows = this.pendingStage;
    this.pendingStage = [];
    this.db.transaction(() => {
      for (const r of rows) this.stageStmt.run(...r);
    })();
  }

  /** The snapshot is committed: the staged rows become the cache for this source. */
  commitRun(source: string): void {
    this.flush();
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM files WHERE source = ?').run(source);
      this.db.prepare('INSERT INTO files SELECT * FROM staged WHERE source = ?').run(source);
      this.db.prepare('DELETE FROM staged WHERE source = ?').run(source);
    })();
  }

  /** Which store (box or secondary) the cached chunk lists of a source were last confirmed on. */
  target(source: string): string | undefined {
    return (this.db.prepare('SELECT target FROM targets WHERE source = ?').get(source) as { target: string } | undefined)?.target;
  }

  setTarget(source: string, target: string): void {
    this.db.prepare('INSERT INTO targets (source, target) VALUES (?, ?) ON CONFLICT (source) DO UPDATE SET target = excluded.target').run(source, target);
  }

  /** Every chunk list of a source's cache, one row at a time (bounded memory). */
  *chunkLists(source: string): Generator<Buffer> {
    for (const r of this.db.prepare('SELECT chunks FROM files WHERE source = ?').raw().iterate(source) as IterableIterator<[Buffer]>) yield r[0];
  }

  /** Forget a source (used when the box reports that chunks the cache relies on are gone). */
  invalidate(source: string): void {
    this.pendingStage = [];
    this.db.prepare('DELETE FROM files WHERE source = ?').run(source);
    this.db.prepare('DELETE FROM staged WHERE source = ?').run(source);
  }

  close(): void {
    this.db.close();
  }
}
