import fs from 'node:fs';
import { createHash } from 'node:crypto';
import { CairnError, errorMessage } from '../../core/errors';
import { Logger } from '../../core/log';
import { CHUNK_ID_BYTES } from '../../core/chunk-id';
import { decodeIdList, decodeUploadBatch, encodeUploadBatch, isValidSourceName, MAX_MISSING_QUERY, SnapshotInfo, sortUniqueIds } from '../../core/api';
import { encodePeerSnapshot, PeerSnapshotRecord, PeerState } from '../../core/peer-api';
import { BoxClient } from '../../agent/box-client';
import { escrowAccess, EscrowExtra, writeEscrow } from '../escrow';
import { readBoxConfig } from '../box';
import type { Box } from '../box';
import { peerClient, readLink, SecondaryLink } from './link';

/**
 * Replication between a primary and its secondary, run by the primary (the secondary never
 * calls out). Each cycle compares snapshot ids on both sides, so it is stateless and
 * converges whatever was interrupted, on either side, at any instant:
 *
 *   1. agent registry (credential hashes) -> secondary, when it changed: agents can fail over;
 *   2. escrow blob, resealed with the current config, link and registry, when any changed and
 *      at least daily;
 *   3. drops: snapshots this box dropped (retention tombstones) are dropped there too;
 *   4. flow-back: snapshots the secondary has and this box neither has nor dropped (agents
 *      backed up there while this box was down; or everything, after `cairnd recover`) are
 *      pulled down: chunks this box lacks, each verified with the keys, then the record;
 *   5. push: snapshots the secondary lacks go up, oldest first: only chunks it lacks, then
 *      the record (a record never arrives before its chunks).
 * Chunks that landed before an interruption are found by the next cycle's "missing" query and
 * not sent again. Snapshot ids are global, so nothing is ever duplicated.
 */
export interface ReplicationStatus {
  secondary: { box: string; name: string; address: string } | null;
  state: 'unlinked' | 'idle' | 'running' | 'error';
  last_attempt: string | null;
  last_success: string | null;
  last_error: string | null;
  pending_snapshots: number;
  pending_bytes: number;
  pending_pull: number;
  escrow_sent_at: string | null;
  totals: { pushed_snapshots: number; pushed_chunks: number; pushed_bytes: number; pulled_snapshots: number; pulled_chunks: number; pulled_bytes: number; dropped: number };
}

export interface CycleReport {
  pushed_snapshots: number;
  pushed_chunks: number;
  pushed_bytes: number;
  pulled_snapshots: number;
  pulled_chunks: number;
  pulled_bytes: number;
  dropped: number;
  escrow_sent: boolean;
  duration_s: number;
}

const STATUS_KEY = 'replication.status';
const ESCROW_EVERY_MS = 24 * 3600 * 1000;
const UPLOAD_BATCH_BYTES = 16 * 1024 * 1024;
const FETCH_IDS = 1024;

/** The status as last persisted (what a command sees when no `cairnd serve` runs). */
export function readReplicationStatus(box: Box): ReplicationStatus {
  const saved = box.catalog.getSetting(STATUS_KEY);
  const base: ReplicationStatus = {
    secondary: null, state: 'idle', last_attempt: null, last_success: null, last_error: null, pending_snapshots: 0, pending_bytes: 0, pending_pull: 0, escrow_sent_at: null,
    totals: { pushed_snapshots: 0, pushed_chunks: 0, pushed_bytes: 0, pulled_snapshots: 0, pulled_chunks: 0, pulled_bytes: 0, dropped: 0 },
  };
  // Never ran: everything is pending.
  const s: ReplicationStatus = saved ? { ...base, ...(JSON.parse(saved) as Partial<ReplicationStatus>) } : { ...base, pending_snapshots: box.catalog.allSnapshotIds().length };
  return withLink(box, s);
}

/** Fills in the secondary from the link file (it may be linked or relinked at any time). */
function withLink(box: Box, s: ReplicationStatus): ReplicationStatus {
  const link = box.identity.role === 'primary' ? readLink(box.dir) : undefined;
  if (!link) return { ...s, secondary: null, state: 'unlinked' };
  return { ...s, state: s.state === 'unlinked' ? 'idle' : s.state, secondary: { box: link.box, name: link.name, address: `${link.host}:${link.port}` } };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Throttles a byte stream to `bps` (token bucket of one second). */
class RateLimiter {
  private start = Date.now();
  private sent = 0;
  constructor(private readonly bps: number | undefined) {}
  async take(n: number): Promise<void> {
    if (!this.bps) return;
    this.sent += n;
    const due = this.start + (this.sent / this.bps) * 1000;
    const wait = due - Date.now();
    if (wait > 0) await sleep(wait);
  }
}

export class Replicator {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<CycleReport | undefined> | undefined;
  private again = false;
  private stopped = false;
  private status: ReplicationStatus;

  constructor(private readonly box: Box, private readonly opts: { everyMs: number; log: Logger }) {
    this.status = readReplicationStatus(box);
  }

  start(): void {
    this.timer = setInterval(() => this.kick('schedule'), this.opts.everyMs);
    this.timer.unref();
    this.kick('start');
  }

  stop(): Promise<unknown> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    return this.running ?? Promise.resolve();
  }

  /** Runs a cycle soon (coalesced with one already running). */
  kick(reason: string): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = (async () => {
      let last: CycleReport | undefined;
      do {
        this.again = false;
        try {
          last = await this.cycle();
        } catch (err) {
          this.opts.log.warn('replication.failed', { reason, err: errorMessage(err) });
        }
      } while (this.again && !this.stopped);
      return last;
    })().finally(() => {
      this.running = undefined;
    });
  }

  /** Waits for the running cycle, or runs one. */
  async runNow(): Promise<CycleReport | undefined> {
    if (this.running) await this.running;
    return this.cycle();
  }

  /** The live status (progress is kept in memory; outcomes are persisted). */
  current(): ReplicationStatus {
    return withLink(this.box, this.status);
  }

  /** Progress: memory only (no durable catalog commit per batch). */
  private update(patch: Partial<ReplicationStatus>): void {
    this.status = { ...this.status, ...patch };
  }

  /** Outcomes: also persisted, for `cairnd status` without a running daemon. */
  private save(patch: Partial<ReplicationStatus>): void {
    this.update(patch);
    const { secondary: _s, ...persist } = this.status;
    this.box.catalog.setSetting(STATUS_KEY, JSON.stringify(persist));
  }

  async cycle(): Promise<CycleReport | undefined> {
    const link = readLink(this.box.dir);
    if (!link || this.box.identity.role !== 'primary') return undefined;
    const started = Date.now();
    const report: CycleReport = { pushed_snapshots: 0, pushed_chunks: 0, pushed_bytes: 0, pulled_snapshots: 0, pulled_chunks: 0, pulled_bytes: 0, dropped: 0, escrow_sent: false, duration_s: 0 };
    this.update({ state: 'running', last_attempt: new Date(started).toISOString() });
    const client = peerClient(link, { maxSockets: 4 });
    try {
      await this.syncRegistry(client);
      report.escrow_sent = await this.syncEscrow(client, link);
      const state = await client.json<PeerState>('GET', '/v1/peer/state');
      const remote = new Set(state.snapshots);
      const catalog = this.box.catalog;

      const tomb = catalog.tombstones();
      const toDrop = [...tomb].filter((id) => remote.has(id));
      if (toDrop.length) {
        const r = await client.json<{ dropped: string[] }>('POST', '/v1/peer/snapshots/drop', { ids: toDrop });
        report.dropped = r.dropped.length;
        this.opts.log.info('replication.dropped', { snapshots: toDrop });
      }
      catalog.clearTombstones([...tomb]);
      for (const id of toDrop) remote.delete(id);

      const local = new Set(catalog.allSnapshotIds());
      const pull = [...remote].filter((id) => !local.has(id) && !tomb.has(id)).sort();
      for (const [i, id] of pull.entries()) {
        if (this.stopped) break;
        this.update({ pending_pull: pull.length - i });
        await this.pullSnapshot(client, id, report);
      }
      this.update({ pending_pull: 0 });

      const push = catalog.listSnapshots().filter((s) => !remote.has(s.id));
      const limiter = new RateLimiter(link.bwlimit_bps);
      let gone = 0;
      for (const [i, s] of push.entries()) {
        if (this.stopped) break;
        if (!catalog.getSnapshot(s.id)) {
          gone++; // dropped by retention meanwhile
          continue;
        }
        const later = push.slice(i + 1).reduce((n, x) => n + x.stats.bytes_new, 0);
        await this.pushSnapshot(client, s, report, limiter, (bytes) => this.update({ pending_snapshots: push.length - i, pending_bytes: bytes + later }));
      }
      report.duration_s = (Date.now() - started) / 1000;
      const t = this.status.totals;
      this.save({
        state: 'idle', last_success: new Date().toISOString(), last_error: null, pending_snapshots: push.length - gone - report.pushed_snapshots, pending_bytes: 0,
        totals: {
          pushed_snapshots: t.pushed_snapshots + report.pushed_snapshots, pushed_chunks: t.pushed_chunks + report.pushed_chunks, pushed_bytes: t.pushed_bytes + report.pushed_bytes,
          pulled_snapshots: t.pulled_snapshots + report.pulled_snapshots, pulled_chunks: t.pulled_chunks + report.pulled_chunks, pulled_bytes: t.pulled_bytes + report.pulled_bytes,
          dropped: t.dropped + report.dropped,
        },
      });
      if (report.pushed_snapshots || report.pulled_snapshots || report.dropped) {
        catalog.recordJob(report.pulled_snapshots ? 'flowback' : 'replication', started, 'ok', { ...report });
        this.opts.log.info('replication.cycle', { ...report });
      }
      return report;
    } catch (err) {
      this.save({ state: 'error', last_error: errorMessage(err) });
      throw err;
    } finally {
      client.close();
    }
  }

  private async syncRegistry(client: BoxClient): Promise<void> {
    const agents = this.box.catalog.agentRegistry();
    const hash = createHash('sha256').update(JSON.stringify(agents)).digest('hex');
    if (this.box.catalog.getSetting('replication.agents_hash') === hash) return;
    await client.json('POST', '/v1/peer/agents', { agents });
    this.box.catalog.setSetting('replication.agents_hash', hash);
  }

  /** Reseals and sends the escrow when what it holds changed, and at least daily. */
  private async syncEscrow(client: BoxClient, link: SecondaryLink): Promise<boolean> {
    const box = this.box;
    const { format: _f, ...config } = readBoxConfig(box.dir);
    const extra: EscrowExtra = {
      secondary: link,
      agents: box.catalog.agentRegistry(),
      sources: box.catalog.listSources().map((s) => ({ agent: s.agent_id, name: s.name, keep: s.keep })),
    };
    const hash = createHash('sha256').update(JSON.stringify({ config, extra })).digest('hex');
    const last = box.catalog.getSetting('escrow.sent');
    const [lastHash, lastAt] = last ? last.split(' ') : ['', '0'];
    if (lastHash === hash && Date.now() - Number(lastAt) < ESCROW_EVERY_MS) return false;
    const blob = writeEscrow(box.dir, box.identity, { ...config, format: 1 }, extra);
    const sealedAt = (JSON.parse(blob) as { sealed_at: string }).sealed_at;
    await client.json('POST', '/v1/peer/escrow', { escrow: blob, access_hash: createHash('sha256').update(escrowAccess(box.identity.escrowKey)).digest('hex'), sealed_at: sealedAt });
    box.catalog.setSetting('escrow.sent', `${hash} ${Date.now()}`);
    this.save({ escrow_sent_at: sealedAt });
    this.opts.log.info('escrow.sent', { secondary: link.box, sealed_at: sealedAt });
    return true;
  }

  private async pushSnapshot(client: BoxClient, s: SnapshotInfo, report: CycleReport, limiter: RateLimiter, progress: (pendingBytes: number) => void): Promise<void> {
    const { store, catalog } = this.box;
    const refs = await fs.promises.readFile(store.refsPath(s.id));
    const missing: Buffer[] = [];
    for (let off = 0; off < refs.length; off += MAX_MISSING_QUERY * CHUNK_ID_BYTES) {
      const body = await client.call('POST', '/v1/peer/chunks/missing', refs.subarray(off, off + MAX_MISSING_QUERY * CHUNK_ID_BYTES));
      missing.push(...decodeIdList(body, MAX_MISSING_QUERY));
    }
    let pendingBytes = missing.reduce((n, id) => n + (catalog.chunkSize(id) ?? 0), 0);
    progress(pendingBytes);
    let batch: { id: Buffer; blob: Buffer }[] = [];
    let batchBytes = 0;
    const flush = async (): Promise<void> => {
      if (!batch.length) return;
      await limiter.take(batchBytes);
      await client.call('POST', '/v1/peer/chunks', encodeUploadBatch(batch), { timeoutMs: 600_000 });
      report.pushed_chunks += batch.length;
      report.pushed_bytes += batchBytes;
      pendingBytes -= batchBytes;
      progress(Math.max(0, pendingBytes));
      batch = [];
      batchBytes = 0;
    };
    for (const id of missing) {
      if (this.stopped) return;
      let blob: Buffer;
      try {
        blob = await store.getBlob(Buffer.from(id));
      } catch {
        throw new CairnError('CAIRN_CHUNK_MISSING', `chunk ${id.toString('hex').slice(0, 16)}… of snapshot ${s.id} is not readable here (run cairnd verify); that snapshot is not replicated yet`);
      }
      batch.push({ id: Buffer.from(id), blob });
      batchBytes += blob.length;
      if (batchBytes >= UPLOAD_BATCH_BYTES) await flush();
    }
    await flush();
    const record: PeerSnapshotRecord = { id: s.id, agent: s.agent, source: s.source, host: s.host, created_at: Date.parse(s.created), manifest: s.manifest, stats: s.stats };
    await client.call('POST', '/v1/peer/snapshots', encodePeerSnapshot(record, refs), { timeoutMs: 600_000 });
    report.pushed_snapshots++;
  }

  private async pullSnapshot(client: BoxClient, id: string, report: CycleReport): Promise<void> {
    const { store, catalog } = this.box;
    const record = await client.json<PeerSnapshotRecord>('GET', `/v1/peer/snapshots/${id}`);
    if (!catalog.getAgent(record.agent)) {
      this.opts.log.warn('flowback.unknown_agent', { snapshot: id, agent: record.agent, note: 'the secondary holds a snapshot of an agent this box does not know; left there' });
      return;
    }
    if (record.id !== id || typeof record.source !== 'string' || !isValidSourceName(record.source) || !Array.isArray(record.manifest) || !Number.isSafeInteger(record.created_at)) {
      throw new CairnError('CAIRN_API_BAD_REQUEST', `the secondary sent a malformed record for snapshot ${id}`);
    }
    const raw = await client.call('GET', `/v1/peer/snapshots/${id}/refs`);
    if (raw.length % CHUNK_ID_BYTES !== 0) throw new CairnError('CAIRN_API_BAD_REQUEST', `the secondary sent a malformed reference list for snapshot ${id}`);
    const refs = sortUniqueIds(raw);
    const missing: Buffer[] = [];
    for (let off = 0; off < refs.length; off += MAX_MISSING_QUERY * CHUNK_ID_BYTES) {
      missing.push(...(await store.missing(decodeIdList(refs.subarray(off, off + MAX_MISSING_QUERY * CHUNK_ID_BYTES), MAX_MISSING_QUERY))));
    }
    for (let i = 0; i < missing.length;) {
      if (this.stopped) return;
      const want = missing.slice(i, i + FETCH_IDS);
      const body = await client.call('POST', '/v1/peer/chunks/fetch', Buffer.concat(want), { timeoutMs: 600_000 });
      if (body.length === 0) throw new CairnError('CAIRN_CHUNK_MISSING', `the secondary lacks chunk ${want[0].toString('hex').slice(0, 16)}… of snapshot ${id}`);
      const items = decodeUploadBatch(body);
      for (const [k, it] of items.entries()) {
        if (!it.id.equals(want[k])) throw new CairnError('CAIRN_API_BAD_REQUEST', `the secondary answered chunks out of order for snapshot ${id}`);
      }
      // putBatch opens every blob with this box's keys: a damaged or planted chunk is refused here.
      await store.putBatch(items);
      report.pulled_chunks += items.length;
      report.pulled_bytes += items.reduce((n, it) => n + it.blob.length, 0);
      i += items.length;
    }
    await store.importSnapshot({ id: record.id, createdAt: record.created_at, agentId: record.agent, source: record.source, host: record.host, manifest: record.manifest, refs, stats: record.stats });
    report.pulled_snapshots++;
    this.opts.log.info('flowback.snapshot', { snapshot: id, agent: record.agent, source: record.source, chunks: missing.length });
  }
}
