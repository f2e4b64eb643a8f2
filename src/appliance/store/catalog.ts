import fs from 'node:fs';
import Database from 'better-sqlite3';
import { createHash, randomBytes } from 'node:crypto';
import { CairnError } from '../../core/errors';
import { constantTimeEqual } from '../../core/keys';
import type { BackupStats, ManifestRef, SnapshotInfo } from '../../core/api';

/**
 * The catalog: agents, pairing tokens, sources, snapshots, chunk rows, events. SQLite in WAL
 * mode with synchronous=FULL: a commit that returned survives power loss. Several processes
 * may open it (cairnd serve and an admin command); SQLite's locking keeps their views
 * consistent, and busy_timeout makes a writer wait rather than fail.
 *
 * One exception: the chunk rows of an upload batch (addChunks) commit with synchronous=NORMAL,
 * without an fsync of their own. The WAL is written in order, so the next FULL commit (every
 * snapshot commit is one) makes them durable with it. A power loss in between can lose such
 * rows but never a snapshot's: the blobs they described stay behind as crash leftovers that GC
 * removes after its grace period, and the agent uploads them again (its commit is refused until
 * every id has a row, and it records nothing in its files cache before a commit). Each upload's
 * fsync blocked the box's event loop: about 1.3 s per GB of first backup on the bench disk
 * (profiled), a first backup about 6% slower end to end (3 alternating pairs).
 *
 * Invariant: a chunk row exists only after its blob is durable; a snapshot row exists only
 * after its refs file is durable and every id in it has a chunk row.
 */
export const CATALOG_SCHEMA_VERSION = 5;

/**
 * The WAL is folded back into the database and emptied (a checkpoint, with two fsyncs on the
 * event loop) after each snapshot commit, and otherwise folded once it holds this many pages
 * (64 MiB).
 * Chunk ids are random, so each upload's rows land on pages all over the chunk table and its
 * indexes, and every one of those pages goes to the WAL again: a 1 GB first backup wrote 75 MB
 * of WAL for 18,500 rows. With SQLite's default (1,000 pages) it checkpointed every few
 * uploads, and recording the rows took 0.86-0.98 s of the event loop, against 0.45-0.62 s with
 * no automatic checkpoint at all (2 alternating pairs).
 */
const WAL_AUTOCHECKPOINT_PAGES = 16384;
/** How long a statement waits for another process's lock before it fails. */
const BUSY_TIMEOUT_MS = 10_000;
export const DEFAULT_KEEP = 30;

export type JobKind = 'backup' | 'gc' | 'verify' | 'retention' | 'replication' | 'flowback';

export interface JobRow {
  id: number;
  kind: JobKind;
  started_at: number;
  finished_at: number | null;
  outcome: 'running' | 'ok' | 'failed' | 'interrupted';
  figures: Record<string, unknown>;
  error: string | null;
}

export interface SourceRow {
  id: number;
  agent_id: string;
  agent_name: string;
  name: string;
  keep: number;
  snapshots: number;
  last_snapshot: number | null;
}
export const MAX_FAILED_TOKEN_ATTEMPTS = 5;

/** ids per statement in chunkOwners (SQLite allows 32,766 parameters) */
const OWNER_BATCH = 500;

export interface ChunkLocation {
  size: number;
  pack: string | null;
  offset: number | null;
}

export interface AgentRegistryRow {
  id: string;
  name: string;
  host: string;
  /** hex SHA-256 of the agent's credential secret: enough to check it, useless to present it */
  cred_hash: string;
  created_at: number;
  revoked_at: number | null;
}

export interface PeerRow {
  id: string;
  name: string;
  cred_hash: Buffer;
  created_at: number;
  escrow_access_hash: Buffer | null;
  escrow_sealed_at: string | null;
}

export interface AgentRow {
  id: string;
  name: string;
  host: string;
  created_at: number;
  revoked_at: number | null;
  last_seen: number | null;
}

export interface TokenRow {
  id: string;
  created_at: number;
  expires_at: number;
  used_at: number | null;
  failed: number;
  used_by: string | null;
}

interface SnapshotRow {
  id: string;
  agent_id: string;
  source: string;
  host: string;
  created_at: number;
  manifest: string;
  chunk_count: number;
  stats: string;
}

export function hashSecret(secret: Buffer | string): Buffer {
  return createHash('sha256').update(secret).digest();
}

export class Catalog {
  readonly db: Database.Database;
  private readonly hasChunkStmt: Database.Statement<[Buffer], { x: number }>;
  private readonly insertChunk: Database.Statement<[Buffer, number, number, number, Buffer | null, string | null, number | null, string | null]>;
  private readonly ownerStmt: Database.Statement<[Buffer], { owner: string | null }>;
  private readonly locateStmt: Database.Statement<[Buffer], ChunkLocation>;
  private readonly seeChunk: Database.Statement<[number, Buffer]>;

  constructor(private readonly file: string, opts: { readonly?: boolean } = {}) {
    this.db = new Database(file, { readonly: opts.readonly ?? false });
    this.db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    if (!opts.readonly) {
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = FULL');
      this.db.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`);
      this.db.pragma(`journal_size_limit = ${4 * 1024 * 1024}`);
      this.db.pragma('foreign_keys = ON');
      this.migrate();
    }
    this.hasChunkStmt = this.db.prepare('SELECT 1 AS x FROM chunks WHERE id = ?');
    this.insertChunk = this.db.prepare('INSERT OR IGNORE INTO chunks (id, size, stored_at, seen_at, sha256, pack, offset, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?)');
    this.ownerStmt = this.db.prepare('SELECT owner FROM chunks WHERE id = ?');
    this.seeChunk = this.db.prepare('UPDATE chunks SET seen_at = ? WHERE id = ?');
    this.locateStmt = this.db.prepare('SELECT size, pack, offset FROM chunks WHERE id = ?');
  }

  private migrate(): void {
    this.db.exec(`CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)`);
    const row = this.db.prepare(`SELECT value FROM meta WHERE key = 'schema'`).get() as { value: string } | undefined;
    const version = row ? Number(row.value) : 0;
    if (version > CATALOG_SCHEMA_VERSION) {
      throw new CairnError('CAIRN_STORE_IO', `catalog schema ${version} is newer than this cairnd understands (${CATALOG_SCHEMA_VERSION}); upgrade cairnd`);
    }
    if (version === 0) {
      this.db.exec(`
        BEGIN;
        CREATE TABLE agents (id TEXT PRIMARY KEY, name TEXT NOT NULL, host TEXT NOT NULL, cred_hash BLOB NOT NULL,
          created_at INTEGER NOT NULL, revoked_at INTEGER, last_seen INTEGER);
        CREATE TABLE tokens (id TEXT PRIMARY KEY, secret_hash BLOB NOT NULL, created_at INTEGER NOT NULL,
          expires_at INTEGER NOT NULL, used_at INTEGER, failed INTEGER NOT NULL DEFAULT 0, used_by TEXT);
        CREATE TABLE sources (id INTEGER PRIMARY KEY, agent_id TEXT NOT NULL REFERENCES agents(id), name TEXT NOT NULL,
          keep INTEGER NOT NULL DEFAULT 30, created_at INTEGER NOT NULL, UNIQUE (agent_id, name));
        CREATE TABLE snapshots (id TEXT PRIMARY KEY, agent_id TEXT NOT NULL REFERENCES agents(id),
          source_id INTEGER NOT NULL REFERENCES sources(id), host TEXT NOT NULL, created_at INTEGER NOT NULL,
          manifest TEXT NOT NULL, chunk_count INTEGER NOT NULL, stats TEXT NOT NULL);
        CREATE INDEX snapshots_by_source ON snapshots (source_id, created_at);
        CREATE TABLE chunks (id BLOB PRIMARY KEY, size INTEGER NOT NULL, stored_at INTEGER NOT NULL) WITHOUT ROWID;
        CREATE TABLE events (id INTEGER PRIMARY KEY, at INTEGER NOT NULL, kind TEXT NOT NULL, detail TEXT NOT NULL);
        INSERT INTO meta (key, value) VALUES ('schema', '1');
        COMMIT;`);
    }
    if (version < 2) {
      // v2: jobs history, quarantine, and the time an agent last relied on a chunk (GC grace).
      this.db.exec(`
        BEGIN;
        ALTER TABLE chunks ADD COLUMN seen_at INTEGER NOT NULL DEFAULT 0;
        UPDATE chunks SET seen_at = stored_at;
        CREATE TABLE jobs (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, started_at INTEGER NOT NULL, finished_at INTEGER,
          outcome TEXT NOT NULL, figures TEXT NOT NULL DEFAULT '{}', error TEXT);
        CREATE INDEX jobs_by_kind ON jobs (kind, started_at);
        CREATE TABLE quarantine (id BLOB NOT NULL, found_at INTEGER NOT NULL, reason TEXT NOT NULL, file TEXT NOT NULL);
        UPDATE meta SET value = '2' WHERE key = 'schema';
        COMMIT;`);
    }
    if (version < 3) {
      // v3 (secondary): checksum of each stored blob (a secondary verifies without keys), the
      // primaries a secondary serves, and snapshots a primary dropped that its secondary must drop too.
      this.db.exec(`
        BEGIN;
        ALTER TABLE chunks ADD COLUMN sha256 BLOB;
        CREATE TABLE peers (id TEXT PRIMARY KEY, name TEXT NOT NULL, cred_hash BLOB NOT NULL, created_at INTEGER NOT NULL,
          escrow_access_hash BLOB, escrow_sealed_at TEXT);
        CREATE TABLE tombstones (id TEXT PRIMARY KEY, dropped_at INTEGER NOT NULL);
        UPDATE meta SET value = '3' WHERE key = 'schema';
        COMMIT;`);
    }
    if (version < 4) {
      // v4 (packs): small blobs live in pack files; pack NULL means a file of its own.
      this.db.exec(`
        BEGIN;
        ALTER TABLE chunks ADD COLUMN pack TEXT;
        ALTER TABLE chunks ADD COLUMN offset INTEGER;
        CREATE INDEX chunks_by_pack ON chunks (pack) WHERE pack IS NOT NULL;
        UPDATE meta SET value = '4' WHERE key = 'schema';
        COMMIT;`);
    }
    if (version < 5) {
      // v5 (checked on sharing): owner = the agent that uploaded a chunk not yet opened and
      // checked by the box; NULL = checked (every chunk stored before v5 was checked on upload).
      this.db.exec(`
        BEGIN;
        ALTER TABLE chunks ADD COLUMN owner TEXT;
        CREATE INDEX chunks_unchecked ON chunks (owner) WHERE owner IS NOT NULL;
        UPDATE meta SET value = '5' WHERE key = 'schema';
        COMMIT;`);
    }
  }

  // ---- settings ----

  getSetting(key: string): string | undefined {
    return (this.stmt('SELECT value FROM meta WHERE key = ?').get(`setting.${key}`) as { value: string } | undefined)?.value;
  }

  setSetting(key: string, value: string): void {
    this.stmt('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(`setting.${key}`, value);
  }

  defaultKeep(): number {
    const v = Number(this.getSetting('retention_default'));
    return Number.isInteger(v) && v > 0 ? v : DEFAULT_KEEP;
  }

  // ---- jobs ----

  startJob(kind: JobKind, now = Date.now()): number {
    return Number(this.stmt(`INSERT INTO jobs (kind, started_at, outcome) VALUES (?, ?, 'running')`).run(kind, now).lastInsertRowid);
  }

  finishJob(id: number, outcome: 'ok' | 'failed', figures: Record<string, unknown>, error?: string, now = Date.now()): void {
    this.stmt('UPDATE jobs SET finished_at = ?, outcome = ?, figures = ?, error = ? WHERE id = ?').run(now, outcome, JSON.stringify(figures), error ?? null, id);
  }

  recordJob(kind: JobKind, startedAt: number, outcome: 'ok' | 'failed', figures: Record<string, unknown>, error?: string, now = Date.now()): void {
    this.stmt('INSERT INTO jobs (kind, started_at, finished_at, outcome, figures, error) VALUES (?, ?, ?, ?, ?, ?)').run(kind, startedAt, now, outcome, JSON.stringify(figures), error ?? null);
  }

  /** Jobs left 'running' by a process that died are marked interrupted (call at start-up). */
  markInterruptedJobs(now = Date.now()): number {
    return this.stmt(`UPDATE jobs SET outcome = 'interrupted', finished_at = ? WHERE outcome = 'running'`).run(now).changes;
  }

  listJobs(filter: { kind?: string; limit?: number } = {}): JobRow[] {
    const rows = this.db
      .prepare(`SELECT * FROM jobs ${filter.kind ? 'WHERE kind = ?' : ''} ORDER BY id DESC LIMIT ?`)
      .all(...(filter.kind ? [filter.kind] : []), filter.limit ?? 100) as (Omit<JobRow, 'figures'> & { figures: string })[];
    return rows.map((r) => ({ ...r, figures: JSON.parse(r.figures) as Record<string, unknown> }));
  }

  lastJob(kind: JobKind): JobRow | undefined {
    return this.listJobs({ kind, limit: 1 })[0];
  }

  // ---- quarantine ----

  quarantineChunk(id: Buffer, reason: string, file: string, now = Date.now()): void {
    this.db.transaction(() => {
      this.stmt('DELETE FROM chunks WHERE id = ?').run(id);
      this.stmt('INSERT INTO quarantine (id, found_at, reason, file) VALUES (?, ?, ?, ?)').run(id, now, reason, file);
      this.event('chunk.quarantined', { chunk: id.toString('hex'), reason });
    })();
  }

  private readonly stmts = new Map<string, Database.Statement>();

  /** Prepared statements are cached: preparing one costs more than running it (profiled). */
  private stmt(sql: string): Database.Statement {
    let st = this.stmts.get(sql);
    if (!st) {
      st = this.db.prepare(sql);
      this.stmts.set(sql, st);
    }
    return st;
  }

  close(): void {
    this.db.close();
  }

  event(kind: string, detail: Record<string, unknown>): void {
    this.stmt('INSERT INTO events (at, kind, detail) VALUES (?, ?, ?)').run(Date.now(), kind, JSON.stringify(detail));
  }

  // ---- pairing tokens ----

  createToken(id: string, secret: Buffer, ttlMs: number, now = Date.now()): TokenRow {
    this.stmt('INSERT INTO tokens (id, secret_hash, created_at, expires_at) VALUES (?, ?, ?, ?)').run(id, hashSecret(secret), now, now + ttlMs);
    return { id, created_at: now, expires_at: now + ttlMs, used_at: null, failed: 0, used_by: null };
  }

  listTokens(): TokenRow[] {
    return this.stmt('SELECT id, created_at, expires_at, used_at, failed, used_by FROM tokens ORDER BY created_at').all() as TokenRow[];
  }

  /**
   * Checks a token and, when it is good, creates the agent and burns the token in the same
   * transaction. Wrong secrets count; after MAX_FAILED_TOKEN_ATTEMPTS the token is locked.
   */
  redeemToken(tokenId: string, secret: Buffer, agent: { name: string; host: string }, now = Date.now()): { agent: AgentRow; credential: string } {
    const tx = this.db.transaction((): { agent: AgentRow; credential: string } | CairnError => {
      const id = randomBytes(8).toString('hex');
      const refused = this.burnToken(tokenId, secret, id, now);
      if (refused) return refused;
      const credSecret = randomBytes(32).toString('base64url');
      this.stmt('INSERT INTO agents (id, name, host, cred_hash, created_at) VALUES (?, ?, ?, ?, ?)').run(id, agent.name, agent.host, hashSecret(credSecret), now);
      this.event('agent.paired', { agent: id, name: agent.name, host: agent.host, token_id: tokenId });
      return { agent: { id, name: agent.name, host: agent.host, created_at: now, revoked_at: null, last_seen: null }, credential: `${id}.${credSecret}` };
    });
    const r = tx.immediate();
    if (r instanceof CairnError) throw r;
    return r;
  }

  /** A secondary takes a primary with the same single-use tokens agents pair with. Relinking replaces the credential. */
  redeemPeerToken(tokenId: string, secret: Buffer, primary: { id: string; name: string }, now = Date.now()): string {
    const tx = this.db.transaction((): string | CairnError => {
      const refused = this.burnToken(tokenId, secret, `primary:${primary.id}`, now);
      if (refused) return refused;
      const credSecret = randomBytes(32).toString('base64url');
      this.addPeer({ id: primary.id, name: primary.name, credHash: hashSecret(credSecret) }, now);
      return `${primary.id}.${credSecret}`;
    });
    const r = tx.immediate();
    if (r instanceof CairnError) throw r;
    return r;
  }

  /** Inside a transaction: checks a token and marks it used, or returns why not (wrong secrets count). */
  private burnToken(tokenId: string, secret: Buffer, usedBy: string, now: number): CairnError | undefined {
    const row = this.stmt('SELECT * FROM tokens WHERE id = ?').get(tokenId) as (TokenRow & { secret_hash: Buffer }) | undefined;
    if (!row) return new CairnError('CAIRN_TOKEN_INVALID', 'this pairing token is not known to the box; create a new one on the box');
    if (row.used_at !== null) return new CairnError('CAIRN_TOKEN_USED', 'this pairing token was already used; tokens are single-use, create a new one on the box');
    if (row.failed >= MAX_FAILED_TOKEN_ATTEMPTS) return new CairnError('CAIRN_TOKEN_LOCKED', 'this pairing token is locked after too many wrong attempts; create a new one on the box');
    if (now > row.expires_at) return new CairnError('CAIRN_TOKEN_EXPIRED', 'this pairing token has expired; create a new one on the box');
    if (!constantTimeEqual(hashSecret(secret), row.secret_hash)) {
      this.stmt('UPDATE tokens SET failed = failed + 1 WHERE id = ?').run(tokenId);
      return new CairnError('CAIRN_TOKEN_INVALID', 'the pairing token secret is wrong; check the token and try again');
    }
    this.stmt('UPDATE tokens SET used_at = ?, used_by = ? WHERE id = ?').run(now, usedBy, tokenId);
    return undefined;
  }

  // ---- agents ----

  listAgents(): AgentRow[] {
    return this.stmt('SELECT id, name, host, created_at, revoked_at, last_seen FROM agents ORDER BY created_at').all() as AgentRow[];
  }

  getAgent(id: string): AgentRow | undefined {
    return this.stmt('SELECT id, name, host, created_at, revoked_at, last_seen FROM agents WHERE id = ?').get(id) as AgentRow | undefined;
  }

  /** Resolves an agent by id or unique name. */
  findAgent(ref: string): AgentRow {
    const byId = this.getAgent(ref);
    if (byId) return byId;
    const byName = this.stmt('SELECT id, name, host, created_at, revoked_at, last_seen FROM agents WHERE name = ?').all(ref) as AgentRow[];
    if (byName.length === 1) return byName[0];
    if (byName.length > 1) throw new CairnError('CAIRN_USAGE', `several agents are named "${ref}"; use the agent id`);
    throw new CairnError('CAIRN_AGENT_NOT_FOUND', `no agent "${ref}" on this box; \`cairnd agents\` lists them`);
  }

  revokeAgent(id: string, now = Date.now()): AgentRow {
    const a = this.findAgent(id);
    if (a.revoked_at === null) {
      this.stmt('UPDATE agents SET revoked_at = ? WHERE id = ?').run(now, a.id);
      this.event('agent.revoked', { agent: a.id, name: a.name });
    }
    return this.getAgent(a.id)!;
  }

  /** Checks a credential "<agent id>.<secret>"; returns the agent or throws an auth error. */
  authenticate(credential: string): AgentRow {
    const dot = credential.indexOf('.');
    const id = dot > 0 ? credential.slice(0, dot) : '';
    const row = /^[0-9a-f]{16}$/.test(id)
      ? (this.stmt('SELECT * FROM agents WHERE id = ?').get(id) as (AgentRow & { cred_hash: Buffer }) | undefined)
      : undefined;
    if (!row || !constantTimeEqual(hashSecret(credential.slice(dot + 1)), row.cred_hash)) {
      throw new CairnError('CAIRN_AUTH_INVALID', 'agent credential not accepted; pair this agent again');
    }
    if (row.revoked_at !== null) throw new CairnError('CAIRN_AUTH_REVOKED', 'this agent was revoked on the box; ask the box owner to pair it again');
    return { id: row.id, name: row.name, host: row.host, created_at: row.created_at, revoked_at: row.revoked_at, last_seen: row.last_seen };
  }

  /** Checks a primary's credential "<primary box id>.<secret>" on a secondary. */
  authenticatePeer(credential: string): PeerRow {
    const dot = credential.indexOf('.');
    const id = dot > 0 ? credential.slice(0, dot) : '';
    const row = /^[0-9a-f]{16}$/.test(id) ? this.getPeer(id) : undefined;
    if (!row || !constantTimeEqual(hashSecret(credential.slice(dot + 1)), row.cred_hash)) {
      throw new CairnError('CAIRN_AUTH_INVALID', 'primary box credential not accepted; link the primary again with `cairnd secondary add`');
    }
    return row;
  }

  private readonly lastTouched = new Map<string, number>();

  /** Records when an agent was last heard from, at most once a minute (each write is a durable commit). */
  touchAgent(id: string, now = Date.now()): void {
    if (now - (this.lastTouched.get(id) ?? 0) < 60_000) return;
    this.lastTouched.set(id, now);
    this.stmt('UPDATE agents SET last_seen = ? WHERE id = ?').run(now, id);
  }

  /** Agents with their credential hashes: what a primary mirrors to its secondary and escrows. */
  agentRegistry(): AgentRegistryRow[] {
    return (this.stmt('SELECT id, name, host, cred_hash, created_at, revoked_at FROM agents ORDER BY created_at').all() as (Omit<AgentRegistryRow, 'cred_hash'> & { cred_hash: Buffer })[])
      .map((r) => ({ ...r, cred_hash: r.cred_hash.toString('hex') }));
  }

  /** Inserts or updates agents from a primary's registry (secondary side, and recovery). */
  upsertAgents(rows: AgentRegistryRow[]): number {
    const st = this.stmt(`INSERT INTO agents (id, name, host, cred_hash, created_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)
      ON CONFLICT (id) DO UPDATE SET name = excluded.name, host = excluded.host, cred_hash = excluded.cred_hash, revoked_at = excluded.revoked_at`);
    let n = 0;
    this.db.transaction(() => {
      for (const r of rows) n += st.run(r.id, r.name, r.host, Buffer.from(r.cred_hash, 'hex'), r.created_at, r.revoked_at).changes;
    })();
    return n;
  }

  // ---- tombstones (primary: snapshots dropped here that the secondary still has to drop) ----

  addTombstone(id: string, now = Date.now()): void {
    this.stmt('INSERT OR IGNORE INTO tombstones (id, dropped_at) VALUES (?, ?)').run(id, now);
  }

  tombstones(): Set<string> {
    return new Set((this.stmt('SELECT id FROM tombstones').raw().all() as [string][]).map((r) => r[0]));
  }

  clearTombstones(ids: string[]): void {
    const st = this.stmt('DELETE FROM tombstones WHERE id = ?');
    this.db.transaction(() => {
      for (const id of ids) st.run(id);
    })();
  }

  // ---- peers (secondary: the primaries it serves) ----

  addPeer(p: { id: string; name: string; credHash: Buffer }, now = Date.now()): void {
    this.stmt(`INSERT INTO peers (id, name, cred_hash, created_at) VALUES (?, ?, ?, ?)
      ON CONFLICT (id) DO UPDATE SET name = excluded.name, cred_hash = excluded.cred_hash`).run(p.id, p.name, p.credHash, now);
    this.event('peer.linked', { primary: p.id, name: p.name });
  }

  getPeer(id: string): PeerRow | undefined {
    return this.stmt('SELECT * FROM peers WHERE id = ?').get(id) as PeerRow | undefined;
  }

  listPeers(): PeerRow[] {
    return this.stmt('SELECT * FROM peers ORDER BY created_at').all() as PeerRow[];
  }

  setPeerEscrow(id: string, accessHash: Buffer, sealedAt: string): void {
    this.stmt('UPDATE peers SET escrow_access_hash = ?, escrow_sealed_at = ? WHERE id = ?').run(accessHash, sealedAt, id);
  }

  // ---- chunks ----

  hasChunk(id: Buffer): boolean {
    return this.hasChunkStmt.get(id) !== undefined;
  }

  /**
   * The ids among `ids` that have no chunk row, and the present ones whose content the box has
   * not checked yet that were uploaded by someone other than `asker` (null: anyone; a keyless
   * store has none). Present ones are marked as seen now, in the same transaction: an agent that
   * was told "stored" will rely on them, and GC spares chunks seen within its grace period.
   */
  missingOrUnchecked(ids: Buffer[], asker: string | null, now = Date.now()): { missing: Buffer[]; unchecked: Buffer[] } {
    const missing: Buffer[] = [];
    const unchecked: Buffer[] = [];
    this.db.transaction(() => {
      for (const id of ids) {
        const row = this.ownerStmt.get(id);
        if (row === undefined) missing.push(id);
        else {
          if (row.owner !== null && row.owner !== asker) unchecked.push(id);
          this.seeChunk.run(now, id);
        }
      }
    })();
    return { missing, unchecked };
  }

  /** undefined: no such chunk; null: checked by the box; else the agent that uploaded it unchecked. */
  chunkOwner(id: Buffer): string | null | undefined {
    return this.ownerStmt.get(id)?.owner;
  }

  /**
   * Of `ids` (unique), those a snapshot of `agent` cannot rely on: absent ones, and, with
   * `foreign`, ones uploaded by another agent and not checked yet. In order, at most `limit`.
   * One counting statement per OWNER_BATCH ids, and ids looked up one by one only in a batch
   * where the count falls short: a statement per id cost 120 ms of every commit of an
   * 18,500-chunk snapshot (most of a no-change backup's commit); this, about 40 ms.
   */
  unusableRefs(ids: Buffer[], agent: string, foreign: boolean, limit: number): Buffer[] {
    const marks = new Array<string>(OWNER_BATCH).fill('?').join(',');
    const st = (foreign
      ? this.stmt(`SELECT count(*) FROM chunks WHERE id IN (${marks}) AND (owner IS NULL OR owner = ?)`)
      : this.stmt(`SELECT count(*) FROM chunks WHERE id IN (${marks})`)
    ).pluck() as Database.Statement<(Buffer | string)[], number>;
    const out: Buffer[] = [];
    for (let i = 0; i < ids.length && out.length < limit; i += OWNER_BATCH) {
      const batch = ids.slice(i, i + OWNER_BATCH);
      const args = batch.length === OWNER_BATCH ? batch : batch.concat(new Array<Buffer>(OWNER_BATCH - batch.length).fill(batch[0]));
      if ((foreign ? st.get(...args, agent) : st.get(...args)) === batch.length) continue;
      for (const id of batch) {
        const owner = this.chunkOwner(id);
        if (owner === undefined || (foreign && owner !== null && owner !== agent)) out.push(id);
        if (out.length >= limit) break;
      }
    }
    return out;
  }

  /** chunkOwner for many ids, in order: one statement per OWNER_BATCH ids. */
  chunkOwners(ids: Buffer[]): (string | null | undefined)[] {
    const out: (string | null | undefined)[] = [];
    const st = this.stmt(`SELECT id, owner FROM chunks WHERE id IN (${new Array<string>(OWNER_BATCH).fill('?').join(',')})`) as Database.Statement<Buffer[], { id: Buffer; owner: string | null }>;
    for (let i = 0; i < ids.length; i += OWNER_BATCH) {
      const batch = ids.slice(i, i + OWNER_BATCH);
      const args = batch.length === OWNER_BATCH ? batch : batch.concat(new Array<Buffer>(OWNER_BATCH - batch.length).fill(batch[0]));
      const found = new Map<string, string | null>();
      for (const r of st.all(...args)) found.set(r.id.toString('latin1'), r.owner);
      for (const id of batch) {
        const k = id.toString('latin1');
        out.push(found.has(k) ? found.get(k) : undefined);
      }
    }
    return out;
  }

  markChecked(ids: Buffer[]): void {
    const st = this.stmt('UPDATE chunks SET owner = NULL WHERE id = ?');
    this.db.transaction(() => {
      for (const id of ids) st.run(id);
    })();
  }

  /** Whether any chunk uploaded by someone other than `otherThan` is still unchecked (uses the partial index). */
  hasUncheckedFrom(otherThan: string): boolean {
    return this.stmt('SELECT 1 FROM chunks WHERE owner IS NOT NULL AND owner != ? LIMIT 1').get(otherThan) !== undefined;
  }

  uncheckedChunks(limit: number): Buffer[] {
    return (this.stmt('SELECT id FROM chunks WHERE owner IS NOT NULL LIMIT ?').raw().all(limit) as [Buffer][]).map((r) => r[0]);
  }

  countUnchecked(): number {
    return (this.stmt('SELECT count(*) AS n FROM chunks WHERE owner IS NOT NULL').get() as { n: number }).n;
  }

  /** Records stored blobs. Committed without an fsync of its own: durable with the next FULL commit (see the class comment). */
  addChunks(rows: { id: Buffer; size: number; sha256?: Buffer; pack?: string; offset?: number; owner?: string }[], now = Date.now()): void {
    const tx = this.db.transaction(() => {
      for (const r of rows) {
        // A new row is seen now already; only a row that was there gets its seen time moved.
        if (this.insertChunk.run(r.id, r.size, now, now, r.sha256 ?? null, r.pack ?? null, r.offset ?? null, r.owner ?? null).changes === 0) this.seeChunk.run(now, r.id);
      }
    });
    this.db.pragma('synchronous = NORMAL');
    try {
      tx();
    } finally {
      this.db.pragma('synchronous = FULL');
    }
  }


  private walSync: Promise<void> | undefined;
  private walSyncAgain = false;

  /**
   * Flushes the WAL to disk on the thread pool, in the background (addChunks commits without an
   * fsync). The snapshot commit's own fsync then finds little left to write: on the event loop
   * it flushed a whole backup's chunk rows (26 MB of WAL per GB), about 100 ms at the end of a
   * 1 GB first backup. An fsync only makes written pages durable sooner; SQLite relies on
   * nothing this changes.
   */
  syncWalBehind(): void {
    if (this.walSync) {
      this.walSyncAgain = true;
      return;
    }
    this.walSync = (async (): Promise<void> => {
      do {
        this.walSyncAgain = false;
        let fh: fs.promises.FileHandle | undefined;
        try {
          fh = await fs.promises.open(`${this.file}-wal`, 'r');
          await fh.datasync();
        } catch {
          /* no WAL file (folded and removed) or closed: nothing to flush */
        } finally {
          await fh?.close().catch(() => undefined);
        }
      } while (this.walSyncAgain);
    })().finally(() => (this.walSync = undefined));
  }

  /** Deletes chunk rows that were not seen since `cutoff`; returns the rows actually deleted. */
  deleteChunkRows(ids: Buffer[], cutoff: number): { id: Buffer; size: number; pack: string | null }[] {
    const del = this.stmt('DELETE FROM chunks WHERE id = ? AND seen_at < ? RETURNING size, pack');
    const out: { id: Buffer; size: number; pack: string | null }[] = [];
    this.db.transaction(() => {
      for (const id of ids) {
        const r = del.get(id, cutoff) as { size: number; pack: string | null } | undefined;
        if (r) out.push({ id, size: r.size, pack: r.pack });
      }
    })();
    return out;
  }

  /** Where a chunk's blob is: its own file (pack null) or a range of a pack file. */
  chunkLocation(id: Buffer): ChunkLocation | undefined {
    return this.locateStmt.get(id);
  }

  /** The chunks stored in a pack, in file order. */
  packEntries(name: string): { id: Buffer; size: number; offset: number }[] {
    return this.stmt('SELECT id, size, offset FROM chunks WHERE pack = ? ORDER BY offset').all(name) as { id: Buffer; size: number; offset: number }[];
  }

  /** Points chunks of pack `from` at their copies in pack `to` (compaction), in one transaction. */
  movePackEntries(from: string, to: string, entries: { id: Buffer; offset: number }[]): void {
    const move = this.stmt('UPDATE chunks SET pack = ?, offset = ? WHERE id = ? AND pack = ?');
    this.db.transaction(() => {
      for (const e of entries) move.run(to, e.offset, e.id, from);
    })();
  }

  /** All chunk rows in id order (for GC and verify; ids only, 32 bytes each). */
  chunkIdsSorted(): Buffer[] {
    return (this.stmt('SELECT id FROM chunks ORDER BY id').raw().all() as [Buffer][]).map((r) => r[0]);
  }

  /** The blob checksum recorded when a keyless store (a secondary) took the chunk. */
  chunkSha256(id: Buffer): Buffer | undefined {
    return (this.stmt('SELECT sha256 FROM chunks WHERE id = ?').get(id) as { sha256: Buffer | null } | undefined)?.sha256 ?? undefined;
  }

  chunkSize(id: Buffer): number | undefined {
    return (this.stmt('SELECT size FROM chunks WHERE id = ?').get(id) as { size: number } | undefined)?.size;
  }

  chunkStats(): { count: number; bytes: number } {
    const r = this.stmt('SELECT count(*) AS count, coalesce(sum(size), 0) AS bytes FROM chunks').get() as { count: number; bytes: number };
    return r;
  }

  // ---- sources and snapshots ----

  sourceId(agentId: string, name: string, now = Date.now()): number {
    this.stmt('INSERT OR IGNORE INTO sources (agent_id, name, keep, created_at) VALUES (?, ?, ?, ?)').run(agentId, name, this.defaultKeep(), now);
    return (this.stmt('SELECT id FROM sources WHERE agent_id = ? AND name = ?').get(agentId, name) as { id: number }).id;
  }

  insertSnapshot(s: { id: string; agentId: string; source: string; host: string; createdAt: number; manifest: ManifestRef[]; chunkCount: number; stats: BackupStats }): void {
    const tx = this.db.transaction(() => {
      const sourceId = this.sourceId(s.agentId, s.source, s.createdAt);
      this.db
        .prepare('INSERT INTO snapshots (id, agent_id, source_id, host, created_at, manifest, chunk_count, stats) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
        .run(s.id, s.agentId, sourceId, s.host, s.createdAt, JSON.stringify(s.manifest), s.chunkCount, JSON.stringify(s.stats));
      this.event('snapshot.committed', { snapshot: s.id, agent: s.agentId, source: s.source, chunks: s.chunkCount, bytes_new: s.stats.bytes_new });
    });
    tx.immediate();
    this.foldWal();
  }

  /**
   * Folds the WAL (the backup's chunk rows) back into the database and empties it: without this
   * it stayed as large as it grew, up to 64 MiB of the data disk. Never waits: with a reader
   * in another process (a cairnd command) it does what it can now, and SQLite truncates the
   * WAL to journal_size_limit when it next starts over.
   */
  private foldWal(): void {
    this.db.pragma('busy_timeout = 0');
    try {
      this.db.pragma('wal_checkpoint(TRUNCATE)');
    } catch {
      /* busy: the next checkpoint does it */
    } finally {
      this.db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    }
  }

  private static toInfo(r: SnapshotRow): SnapshotInfo {
    return {
      id: r.id,
      agent: r.agent_id,
      source: r.source,
      host: r.host,
      created: new Date(r.created_at).toISOString(),
      manifest: JSON.parse(r.manifest) as ManifestRef[],
      chunks: r.chunk_count,
      stats: JSON.parse(r.stats) as BackupStats,
    };
  }

  private static SNAPSHOT_SELECT = `SELECT s.id, s.agent_id, src.name AS source, s.host, s.created_at, s.manifest, s.chunk_count, s.stats
    FROM snapshots s JOIN sources src ON src.id = s.source_id`;

  listSnapshots(filter: { agentId?: string; source?: string } = {}): SnapshotInfo[] {
    const where: string[] = [];
    const args: string[] = [];
    if (filter.agentId) {
      where.push('s.agent_id = ?');
      args.push(filter.agentId);
    }
    if (filter.source) {
      where.push('src.name = ?');
      args.push(filter.source);
    }
    const sql = `${Catalog.SNAPSHOT_SELECT} ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY s.created_at, s.id`;
    return (this.stmt(sql).all(...args) as SnapshotRow[]).map(Catalog.toInfo);
  }

  listSources(filter: { agentId?: string; source?: string } = {}): SourceRow[] {
    const where: string[] = [];
    const args: string[] = [];
    if (filter.agentId) {
      where.push('src.agent_id = ?');
      args.push(filter.agentId);
    }
    if (filter.source) {
      where.push('src.name = ?');
      args.push(filter.source);
    }
    return this.db
      .prepare(
        `SELECT src.id, src.agent_id, a.name AS agent_name, src.name, src.keep,
           (SELECT count(*) FROM snapshots s WHERE s.source_id = src.id) AS snapshots,
           (SELECT max(created_at) FROM snapshots s WHERE s.source_id = src.id) AS last_snapshot
         FROM sources src JOIN agents a ON a.id = src.agent_id ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY src.id`,
      )
      .all(...args) as SourceRow[];
  }

  setKeep(sourceId: number, keep: number): void {
    this.stmt('UPDATE sources SET keep = ? WHERE id = ?').run(keep, sourceId);
  }

  /** Snapshot ids of one source, oldest first. */
  sourceSnapshotIds(sourceId: number): string[] {
    return (this.stmt('SELECT id FROM snapshots WHERE source_id = ? ORDER BY created_at, id').raw().all(sourceId) as [string][]).map((r) => r[0]);
  }

  allSnapshotIds(): string[] {
    return (this.stmt('SELECT id FROM snapshots').raw().all() as [string][]).map((r) => r[0]);
  }

  deleteSnapshotRow(id: string): void {
    this.stmt('DELETE FROM snapshots WHERE id = ?').run(id);
  }

  getSnapshot(id: string): SnapshotInfo | undefined {
    const r = this.stmt(`${Catalog.SNAPSHOT_SELECT} WHERE s.id = ?`).get(id) as SnapshotRow | undefined;
    return r ? Catalog.toInfo(r) : undefined;
  }
}
