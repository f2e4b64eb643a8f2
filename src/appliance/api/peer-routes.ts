import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { CairnError } from '../../core/errors';
import { Logger } from '../../core/log';
import { constantTimeEqual } from '../../core/keys';
import { decodeIdList, decodeUploadBatch, encodeUploadBatch, MAX_COMMIT_BYTES, MAX_MISSING_QUERY, MAX_UPLOAD_BATCH_BYTES, sortUniqueIds } from '../../core/api';
import { MAX_CHUNK_BLOB } from '../../core/chunk-codec';
import { decodePeerSnapshot, MAX_FETCH_BYTES, PeerLinkRequest, PeerLinkResponse, PeerSnapshotRecord, PeerState } from '../../core/peer-api';
import { AgentRegistryRow } from '../store/catalog';
import { writeFileDurable } from '../store/durable';
import type { Box } from '../box';
import type { Route } from './server';
import type { PeerSpace } from '../secondary/peer-spaces';
import { parseJson, readBody, sendBinary, sendJson } from './http-util';

/**
 * The secondary's side of the box-to-box API (see core/peer-api.ts). Everything a primary
 * sends is ciphertext or keyed ids; the secondary checks structure and records checksums.
 * A primary may drop its own snapshots here (mirrored retention); agents never can.
 */
const FAILURE_WINDOW_MS = 10 * 60 * 1000;
const FAILURE_LIMIT = 20;
const MAX_ESCROW_BYTES = 1024 * 1024;

export function peerRoutes(box: Box, log: Logger, now: () => number): Route[] {
  let failures: number[] = [];
  const limited = (): void => {
    const t = now();
    failures = failures.filter((f) => t - f < FAILURE_WINDOW_MS);
    if (failures.length >= FAILURE_LIMIT) throw new CairnError('CAIRN_PAIR_RATE_LIMITED', 'too many failed attempts; wait ten minutes and try again');
  };
  const secondaryOnly = (): void => {
    if (box.identity.role !== 'secondary') throw new CairnError('CAIRN_ROLE_MISMATCH', 'this box is a primary; box-to-box calls go to a secondary');
  };
  const space = (p: PeerSpace | undefined): PeerSpace => p!;

  return [
    {
      method: 'POST', pattern: /^\/v1\/peer\/link$/, auth: 'none', handler: async (req, res) => {
        secondaryOnly();
        limited();
        const b = parseJson<Partial<PeerLinkRequest>>(await readBody(req, 8 * 1024));
        const id = b.primary?.box;
        const name = b.primary?.name;
        if (typeof b.token_id !== 'string' || b.token_id.length > 16 || typeof b.secret !== 'string' || b.secret.length > 64 ||
          typeof id !== 'string' || !/^[0-9a-f]{16}$/.test(id) || typeof name !== 'string' || name.length === 0 || name.length > 100) {
          throw new CairnError('CAIRN_API_BAD_REQUEST', 'linking needs token_id, secret and primary {box, name}');
        }
        if (id === box.identity.boxId) throw new CairnError('CAIRN_API_BAD_REQUEST', 'a box cannot be its own secondary');
        let credential: string;
        try {
          credential = box.catalog.redeemPeerToken(b.token_id, Buffer.from(b.secret, 'base64'), { id, name });
        } catch (err) {
          failures.push(now());
          throw err;
        }
        box.peers.get(id); // creates the namespace
        log.info('peer.linked', { primary: id, name });
        const out: PeerLinkResponse = { credential, secondary: { box: box.identity.boxId, name: box.identity.name } };
        sendJson(res, 200, out);
      },
    },
    {
      method: 'GET', pattern: /^\/v1\/peer\/state$/, auth: 'peer', handler: async (_req, res, _m, ctx) => {
        const s = space(ctx.peer);
        const stats = s.catalog.chunkStats();
        const out: PeerState = {
          snapshots: s.catalog.allSnapshotIds(),
          agents: s.catalog.listAgents().length,
          escrow_sealed_at: box.catalog.getPeer(s.primaryId)?.escrow_sealed_at ?? null,
          chunks: stats.count,
          stored_bytes: stats.bytes,
        };
        sendJson(res, 200, out);
      },
    },
    {
      method: 'POST', pattern: /^\/v1\/peer\/agents$/, auth: 'peer', handler: async (req, res, _m, ctx) => {
        const b = parseJson<{ agents?: unknown }>(await readBody(req, 4 * 1024 * 1024));
        if (!Array.isArray(b.agents) || b.agents.length > 100_000) throw new CairnError('CAIRN_API_BAD_REQUEST', 'agents must be a list');
        const rows: AgentRegistryRow[] = b.agents.map((a: Partial<AgentRegistryRow>) => {
          if (!a || typeof a.id !== 'string' || !/^[0-9a-f]{16}$/.test(a.id) || typeof a.cred_hash !== 'string' || !/^[0-9a-f]{64}$/.test(a.cred_hash) ||
            typeof a.name !== 'string' || a.name.length > 100 || typeof a.host !== 'string' || a.host.length > 255 || !Number.isSafeInteger(a.created_at) ||
            !(a.revoked_at === null || Number.isSafeInteger(a.revoked_at))) {
            throw new CairnError('CAIRN_API_BAD_REQUEST', 'malformed agent registry row');
          }
          return { id: a.id, name: a.name, host: a.host, cred_hash: a.cred_hash, created_at: a.created_at as number, revoked_at: a.revoked_at as number | null };
        });
        const n = space(ctx.peer).catalog.upsertAgents(rows);
        sendJson(res, 200, { agents: rows.length, changed: n });
      },
    },
    {
      method: 'POST', pattern: /^\/v1\/peer\/chunks\/missing$/, auth: 'peer', handler: async (req, res, _m, ctx) => {
        const ids = decodeIdList(await readBody(req, MAX_MISSING_QUERY * 32), MAX_MISSING_QUERY);
        sendBinary(res, Buffer.concat(await space(ctx.peer).store.missing(ids)));
      },
    },
    {
      method: 'POST', pattern: /^\/v1\/peer\/chunks$/, auth: 'peer', handler: async (req, res, _m, ctx) => {
        const items = decodeUploadBatch(await readBody(req, MAX_UPLOAD_BATCH_BYTES + MAX_CHUNK_BLOB + 1024));
        sendJson(res, 200, await space(ctx.peer).store.putBatch(items));
      },
    },
    {
      method: 'POST', pattern: /^\/v1\/peer\/chunks\/fetch$/, auth: 'peer', handler: async (req, res, _m, ctx) => {
        const s = space(ctx.peer);
        const ids = decodeIdList(await readBody(req, 4096 * 32), 4096);
        const out: { id: Buffer; blob: Buffer }[] = [];
        let bytes = 0;
        for (const id of ids) {
          if (!s.catalog.hasChunk(id)) continue; // absent ids are simply not in the answer
          const blob = await s.store.getBlob(id);
          out.push({ id, blob });
          bytes += blob.length;
          if (bytes >= MAX_FETCH_BYTES) break; // the caller asks again for the rest
        }
        sendBinary(res, out.length ? Buffer.concat(encodeUploadBatch(out)) : Buffer.alloc(0));
      },
    },
    {
      method: 'POST', pattern: /^\/v1\/peer\/snapshots$/, auth: 'peer', handler: async (req, res, _m, ctx) => {
        const s = space(ctx.peer);
        const { record, refs } = decodePeerSnapshot(await readBody(req, MAX_COMMIT_BYTES));
        if (!s.catalog.getAgent(record.agent)) throw new CairnError('CAIRN_AGENT_NOT_FOUND', `agent ${record.agent} is not in this primary's registry here yet; send the registry first`);
        const info = await s.store.importSnapshot({ id: record.id, createdAt: record.created_at, agentId: record.agent, source: record.source, host: record.host, manifest: record.manifest, refs: sortUniqueIds(refs), stats: record.stats });
        sendJson(res, 201, info);
      },
    },
    {
      method: 'GET', pattern: /^\/v1\/peer\/snapshots\/([0-9a-z]{1,40})$/, auth: 'peer', handler: async (_req, res, m, ctx) => {
        const s = space(ctx.peer);
        const info = s.catalog.getSnapshot(m[1]);
        if (!info) throw new CairnError('CAIRN_SNAPSHOT_NOT_FOUND', `snapshot ${m[1]} not found`);
        const rec: PeerSnapshotRecord = { id: info.id, agent: info.agent, source: info.source, host: info.host, created_at: Date.parse(info.created), manifest: info.manifest, stats: info.stats };
        sendJson(res, 200, rec);
      },
    },
    {
      method: 'GET', pattern: /^\/v1\/peer\/snapshots\/([0-9a-z]{1,40})\/refs$/, auth: 'peer', handler: async (_req, res, m, ctx) => {
        const s = space(ctx.peer);
        if (!s.catalog.getSnapshot(m[1])) throw new CairnError('CAIRN_SNAPSHOT_NOT_FOUND', `snapshot ${m[1]} not found`);
        sendBinary(res, await fs.promises.readFile(s.store.refsPath(m[1])));
      },
    },
    {
      method: 'POST', pattern: /^\/v1\/peer\/snapshots\/drop$/, auth: 'peer', handler: async (req, res, _m, ctx) => {
        const s = space(ctx.peer);
        const b = parseJson<{ ids?: unknown }>(await readBody(req, 1024 * 1024));
        if (!Array.isArray(b.ids) || b.ids.some((x) => typeof x !== 'string' || !/^[0-9a-z]{1,40}$/.test(x))) throw new CairnError('CAIRN_API_BAD_REQUEST', 'ids must be a list of snapshot ids');
        const dropped: string[] = [];
        await s.store.commitLock.run(async () => {
          for (const id of b.ids as string[]) {
            if (!s.catalog.getSnapshot(id)) continue;
            s.catalog.db.transaction(() => {
              s.catalog.deleteSnapshotRow(id);
              s.catalog.event('retention.mirrored', { snapshot: id });
            })();
            s.store.forgetRefs(id);
            fs.rmSync(s.store.refsPath(id), { force: true });
            dropped.push(id);
          }
        });
        if (dropped.length) log.info('retention.mirrored', { primary: s.primaryId, dropped });
        sendJson(res, 200, { dropped });
      },
    },
    {
      method: 'POST', pattern: /^\/v1\/peer\/escrow$/, auth: 'peer', handler: async (req, res, _m, ctx) => {
        const s = space(ctx.peer);
        const b = parseJson<{ escrow?: unknown; access_hash?: unknown; sealed_at?: unknown }>(await readBody(req, MAX_ESCROW_BYTES + 4096));
        if (typeof b.escrow !== 'string' || b.escrow.length > MAX_ESCROW_BYTES || typeof b.access_hash !== 'string' || !/^[0-9a-f]{64}$/.test(b.access_hash) || typeof b.sealed_at !== 'string' || b.sealed_at.length > 40) {
          throw new CairnError('CAIRN_API_BAD_REQUEST', 'escrow needs escrow, access_hash and sealed_at');
        }
        let env: { box_id?: unknown };
        try {
          env = JSON.parse(b.escrow) as { box_id?: unknown };
        } catch {
          throw new CairnError('CAIRN_API_BAD_REQUEST', 'escrow blob is not JSON');
        }
        if (env.box_id !== s.primaryId) throw new CairnError('CAIRN_API_BAD_REQUEST', 'escrow blob belongs to another box');
        writeFileDurable(s.escrowFile, b.escrow, 0o600);
        box.catalog.setPeerEscrow(s.primaryId, Buffer.from(b.access_hash, 'hex'), b.sealed_at);
        log.info('escrow.stored', { primary: s.primaryId, sealed_at: b.sealed_at });
        sendJson(res, 200, { stored: true });
      },
    },
    {
      method: 'GET', pattern: /^\/v1\/recover\/escrows$/, auth: 'none', handler: async (_req, res) => {
        secondaryOnly();
        const out = box.catalog.listPeers().filter((p) => p.escrow_sealed_at).map((p) => {
          let salt = '';
          try {
            const env = JSON.parse(fs.readFileSync(box.peers.get(p.id).escrowFile, 'utf8')) as { kdf?: { salt?: string } };
            salt = env.kdf?.salt ?? '';
          } catch {
            /* no blob: not listed */
          }
          return { box: p.id, name: p.name, salt, sealed_at: p.escrow_sealed_at };
        }).filter((e) => e.salt);
        sendJson(res, 200, out);
      },
    },
    {
      method: 'POST', pattern: /^\/v1\/recover\/escrow$/, auth: 'none', handler: async (req, res) => {
        secondaryOnly();
        limited();
        const b = parseJson<{ box?: unknown; access?: unknown }>(await readBody(req, 4096));
        if (typeof b.box !== 'string' || !/^[0-9a-f]{16}$/.test(b.box) || typeof b.access !== 'string' || !/^[0-9a-f]{64}$/.test(b.access)) {
          throw new CairnError('CAIRN_API_BAD_REQUEST', 'recovery needs box and access');
        }
        const peer = box.catalog.getPeer(b.box);
        const given = createHash('sha256').update(Buffer.from(b.access, 'hex')).digest();
        if (!peer || !peer.escrow_access_hash || !constantTimeEqual(given, peer.escrow_access_hash)) {
          failures.push(now());
          log.warn('recover.refused', { box: b.box });
          throw new CairnError('CAIRN_RECOVERY_REFUSED', 'this recovery key does not open the escrow of that box');
        }
        log.info('recover.escrow_sent', { box: b.box });
        sendJson(res, 200, { escrow: fs.readFileSync(path.join(box.peers.dirOf(b.box), 'escrow.json'), 'utf8') });
      },
    },
  ];
}

