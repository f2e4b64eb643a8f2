import https from 'node:https';
import http from 'node:http';
import { AddressInfo } from 'node:net';
import { CairnError, errorMessage } from '../../core/errors';
import { Logger } from '../../core/log';
import { Box } from '../box';
import {
  API_VERSION, BoxInfo, decodeCommit, decodeIdList, decodeUploadBatch, MAX_COMMIT_BYTES, MAX_MISSING_QUERY,
  MAX_UPLOAD_BATCH_BYTES, PairRequest, PairResponse, sortUniqueIds,
} from '../../core/api';
import { dataKeysToJson } from '../../core/keys';
import { isChunkIdHex } from '../../core/chunk-id';
import { AgentRow } from '../store/catalog';
import { MAX_CHUNK_BLOB } from '../../core/chunk-codec';
import { storeError } from '../store/durable';

/**
 * The HTTPS API for agents. TLS 1.3 only, HTTP/1.1 keep-alive (measured faster than HTTP/2
 * for 1 MiB bodies on this class of machine; see README "Transport"). No plaintext port.
 * Every request body is bounded, every decoder rejects bad input with a 4xx, and nothing is
 * stored until a whole request has been received and verified.
 */
export const VERSION = '0.1.0';
const PAIR_FAILURE_WINDOW_MS = 10 * 60 * 1000;
const PAIR_FAILURE_LIMIT = 20;

export interface ApiServerOptions {
  box: Box;
  log: Logger;
  now?: () => number;
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, m: RegExpExecArray, agent: AgentRow | undefined) => Promise<void>;

interface Route {
  method: string;
  pattern: RegExp;
  auth: boolean;
  handler: Handler;
}

function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > limit) {
      reject(new CairnError('CAIRN_API_BODY_TOO_LARGE', `request body of ${declared} bytes exceeds the ${limit}-byte limit`));
      return;
    }
    const parts: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (d: Buffer) => {
      if (done) return;
      size += d.length;
      if (size > limit) {
        done = true;
        reject(new CairnError('CAIRN_API_BODY_TOO_LARGE', `request body exceeds the ${limit}-byte limit`));
        return;
      }
      parts.push(d);
    });
    req.on('end', () => {
      if (done) return;
      done = true;
      resolve(parts.length === 1 ? parts[0] : Buffer.concat(parts, size));
    });
    req.on('aborted', () => {
      if (!done) {
        done = true;
        reject(new CairnError('CAIRN_API_BAD_REQUEST', 'request body was cut short'));
      }
    });
    req.on('error', (err) => {
      if (!done) {
        done = true;
        reject(new CairnError('CAIRN_API_BAD_REQUEST', `request body could not be read: ${errorMessage(err)}`));
      }
    });
  });
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const data = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': data.length });
  res.end(data);
}

function sendBinary(res: http.ServerResponse, data: Buffer): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': data.length });
  res.end(data);
}

function parseJson<T>(body: Buffer): T {
  try {
    return JSON.parse(body.toString('utf8')) as T;
  } catch {
    throw new CairnError('CAIRN_API_BAD_REQUEST', 'request body is not valid JSON');
  }
}

export class ApiServer {
  readonly server: https.Server;
  private readonly routes: Route[];
  private pairFailures: number[] = [];
  private readonly activity = new Map<string, NodeJS.Timeout>();
  private readonly now: () => number;

  constructor(private readonly opts: ApiServerOptions) {
    const { box } = opts;
    this.now = opts.now ?? Date.now;
    this.server = https.createServer(
      {
        key: box.identity.tlsKeyPem,
        cert: box.identity.tlsCertPem,
        minVersion: 'TLSv1.3',
        maxVersion: 'TLSv1.3',
      },
      (req, res) => void this.dispatch(req, res),
    );
    this.server.keepAliveTimeout = 30_000;
    this.server.headersTimeout = 20_000;
    this.server.requestTimeout = 10 * 60_000;
    this.server.on('tlsClientError', (err) => opts.log.debug('tls.client_error', { err: errorMessage(err) }));
    this.routes = [
      { method: 'GET', pattern: /^\/v1\/info$/, auth: false, handler: (_q, r) => this.info(r) },
      { method: 'POST', pattern: /^\/v1\/pair$/, auth: false, handler: (q, r) => this.pair(q, r) },
      { method: 'POST', pattern: /^\/v1\/chunks\/missing$/, auth: true, handler: (q, r, _m, a) => this.missing(q, r, a) },
      { method: 'POST', pattern: /^\/v1\/chunks$/, auth: true, handler: (q, r, _m, a) => this.upload(q, r, a) },
      { method: 'POST', pattern: /^\/v1\/snapshots$/, auth: true, handler: (q, r, _m, a) => this.commit(q, r, a!) },
      { method: 'GET', pattern: /^\/v1\/snapshots$/, auth: true, handler: (q, r, _m, a) => this.listSnapshots(q, r, a!) },
      { method: 'GET', pattern: /^\/v1\/snapshots\/([0-9a-z]{1,40})$/, auth: true, handler: (_q, r, m, a) => this.getSnapshot(r, m[1], a!) },
      { method: 'GET', pattern: /^\/v1\/snapshots\/([0-9a-z]{1,40})\/chunks\/([^/]+)$/, auth: true, handler: (_q, r, m, a) => this.getChunk(r, m[1], m[2], a!) },
    ];
  }

  async listen(host: string, port: number): Promise<AddressInfo> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    return this.server.address() as AddressInfo;
  }

  async close(): Promise<void> {
    for (const [id, t] of this.activity) {
      clearTimeout(t);
      this.opts.box.hw?.jobFinished(id);
    }
    this.activity.clear();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
      setTimeout(() => this.server.closeAllConnections(), 2000).unref();
    });
  }

  private async dispatch(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const started = this.now();
    const url = new URL(req.url ?? '/', 'https://box');
    let agent: AgentRow | undefined;
    try {
      const path = url.pathname;
      const method = req.method ?? 'GET';
      if ((method === 'DELETE' || method === 'PUT' || method === 'PATCH') && path.startsWith('/v1/')) {
        // No endpoint deletes or replaces anything for an agent; say so plainly (after auth, so it is no oracle).
        agent = this.authenticate(req, true);
        throw new CairnError('CAIRN_API_APPEND_ONLY', 'agents can only add backups; deleting or overwriting is done by the box itself');
      }
      const candidates = this.routes.filter((r) => r.pattern.test(path));
      if (candidates.length === 0) throw new CairnError('CAIRN_API_NOT_FOUND', `no such API endpoint ${path.slice(0, 100)}`);
      const route = candidates.find((r) => r.method === method);
      if (!route) throw new CairnError('CAIRN_API_METHOD', `${method} is not allowed on ${path.slice(0, 100)}`);
      if (route.auth) agent = this.authenticate(req, true);
      await route.handler(req, res, route.pattern.exec(path)!, agent);
      this.opts.log.debug('api.request', { method, path, status: res.statusCode, agent: agent?.id, ms: this.now() - started });
    } catch (err) {
      this.fail(req, res, err, agent);
    }
  }

  private fail(req: http.IncomingMessage, res: http.ServerResponse, raw: unknown, agent: AgentRow | undefined): void {
    const err = storeError(raw);
    const ce = err instanceof CairnError ? err : undefined;
    const status = ce ? ce.httpStatus : 500;
    const body = ce
      ? { error: { code: ce.code, message: ce.message, ...(ce.details ?? {}) } }
      : { error: { code: 'CAIRN_API_UNEXPECTED', message: 'the box hit an unexpected error; see its log' } };
    const level = status >= 500 ? 'error' : 'warn';
    this.opts.log[level]('api.error', { method: req.method, path: (req.url ?? '').slice(0, 120), status, code: body.error.code, err: ce ? ce.message : errorMessage(err), agent: agent?.id });
    if (res.headersSent) {
      res.destroy();
      return;
    }
    // When the body was not (fully) read, close the connection rather than drain an attacker's stream.
    if (!req.complete) res.setHeader('connection', 'close');
    sendJson(res, status, body);
    if (!req.complete) req.resume();
  }

  private authenticate(req: http.IncomingMessage, required: boolean): AgentRow | undefined {
    const h = req.headers.authorization;
    if (!h) {
      if (required) throw new CairnError('CAIRN_AUTH_REQUIRED', 'this endpoint needs an agent credential (Authorization: Bearer …)');
      return undefined;
    }
    const m = /^Bearer ([A-Za-z0-9._-]{1,200})$/.exec(h);
    if (!m) throw new CairnError('CAIRN_AUTH_INVALID', 'malformed Authorization header; expected "Bearer <credential>"');
    const agent = this.opts.box.catalog.authenticate(m[1]);
    this.opts.box.catalog.touchAgent(agent.id, this.now());
    return agent;
  }

  private async info(res: http.ServerResponse): Promise<void> {
    const id = this.opts.box.identity;
    const body: BoxInfo = { box: id.boxId, name: id.name, api: API_VERSION, version: VERSION, role: id.role };
    sendJson(res, 200, body);
  }

  private async pair(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const now = this.now();
    this.pairFailures = this.pairFailures.filter((t) => now - t < PAIR_FAILURE_WINDOW_MS);
    if (this.pairFailures.length >= PAIR_FAILURE_LIMIT) {
      throw new CairnError('CAIRN_PAIR_RATE_LIMITED', 'too many failed pairing attempts; wait ten minutes and try again');
    }
    const body = parseJson<Partial<PairRequest>>(await readBody(req, 8 * 1024));
    const str = (v: unknown, max: number): string | undefined => (typeof v === 'string' && v.length > 0 && v.length <= max ? v : undefined);
    const tokenId = str(body.token_id, 16);
    const secret = str(body.secret, 64);
    const name = str(body.agent_name, 100);
    const host = str(body.host, 255) ?? '';
    if (!tokenId || !secret || !name) throw new CairnError('CAIRN_API_BAD_REQUEST', 'pairing needs token_id, secret and agent_name');
    let result;
    try {
      result = this.opts.box.catalog.redeemToken(tokenId, Buffer.from(secret, 'base64'), { name, host }, now);
    } catch (err) {
      this.pairFailures.push(now);
      throw err;
    }
    this.opts.log.info('agent.paired', { agent: result.agent.id, name, host, token_id: tokenId });
    const id = this.opts.box.identity;
    const out: PairResponse = {
      agent_id: result.agent.id,
      credential: result.credential,
      box: id.boxId,
      box_name: id.name,
      keys: dataKeysToJson(this.opts.box.keys),
    };
    sendJson(res, 200, out);
  }

  private async missing(req: http.IncomingMessage, res: http.ServerResponse, agent?: AgentRow): Promise<void> {
    const ids = decodeIdList(await readBody(req, MAX_MISSING_QUERY * 32), MAX_MISSING_QUERY);
    if (agent) this.opts.box.store.touchSession(agent.id, this.now());
    sendBinary(res, Buffer.concat(this.opts.box.store.missing(ids)));
  }

  /** Backup traffic from an agent counts as a running job for the LEDs until it has been quiet for 30 s. */
  private backupActivity(agent: AgentRow | undefined): void {
    const hw = this.opts.box.hw;
    if (!hw || !agent) return;
    const id = `backup:${agent.id}`;
    const t = this.activity.get(id);
    if (t) clearTimeout(t);
    else hw.jobStarted(id, 'backup');
    const timer = setTimeout(() => {
      this.activity.delete(id);
      hw.jobFinished(id);
    }, 30_000);
    timer.unref();
    this.activity.set(id, timer);
  }

  private async upload(req: http.IncomingMessage, res: http.ServerResponse, agent?: AgentRow): Promise<void> {
    this.backupActivity(agent);
    if (agent) this.opts.box.store.touchSession(agent.id, this.now());
    const body = await readBody(req, MAX_UPLOAD_BATCH_BYTES + MAX_CHUNK_BLOB + 1024);
    const items = decodeUploadBatch(body);
    const r = await this.opts.box.store.putBatch(items);
    sendJson(res, 200, r);
  }

  private async commit(req: http.IncomingMessage, res: http.ServerResponse, agent: AgentRow): Promise<void> {
    const { commit, refs } = decodeCommit(await readBody(req, MAX_COMMIT_BYTES));
    const started = this.now();
    let info;
    try {
      info = await this.opts.box.store.commitSnapshot({ agentId: agent.id, source: commit.source, host: commit.host, manifest: commit.manifest, refs: sortUniqueIds(refs), stats: commit.stats });
    } catch (err) {
      try {
        this.opts.box.catalog.recordJob('backup', started, 'failed', { agent: agent.id, source: commit.source }, errorMessage(err));
      } catch {
        /* the failure itself is what matters (e.g. a full disk) */
      }
      throw err;
    }
    this.opts.box.store.endSession(agent.id);
    this.opts.box.catalog.recordJob('backup', started - commit.stats.duration_s * 1000, 'ok', { agent: agent.id, source: commit.source, snapshot: info.id, ...commit.stats });
    this.opts.log.info('snapshot.committed', { snapshot: info.id, agent: agent.id, source: info.source, chunks: info.chunks, bytes_new: info.stats.bytes_new });
    sendJson(res, 201, info);
  }

  private async listSnapshots(req: http.IncomingMessage, res: http.ServerResponse, agent: AgentRow): Promise<void> {
    const source = new URL(req.url ?? '/', 'https://box').searchParams.get('source') ?? undefined;
    sendJson(res, 200, this.opts.box.catalog.listSnapshots({ agentId: agent.id, source }));
  }

  private ownSnapshot(id: string, agent: AgentRow) {
    const s = this.opts.box.catalog.getSnapshot(id);
    // Another agent's snapshot is reported as absent, not forbidden: ids are not an oracle.
    if (!s || s.agent !== agent.id) throw new CairnError('CAIRN_SNAPSHOT_NOT_FOUND', `snapshot ${id} not found`);
    return s;
  }

  private async getSnapshot(res: http.ServerResponse, id: string, agent: AgentRow): Promise<void> {
    sendJson(res, 200, this.ownSnapshot(id, agent));
  }

  private async getChunk(res: http.ServerResponse, snapId: string, chunkHex: string, agent: AgentRow): Promise<void> {
    this.ownSnapshot(snapId, agent);
    if (!isChunkIdHex(chunkHex)) throw new CairnError('CAIRN_CHUNK_ID_INVALID', 'chunk id must be 64 lowercase hex characters');
    const id = Buffer.from(chunkHex, 'hex');
    if (!(await this.opts.box.store.snapshotReferences(snapId, id))) {
      throw new CairnError('CAIRN_CHUNK_MISSING', `snapshot ${snapId} does not reference chunk ${chunkHex.slice(0, 16)}…`);
    }
    sendBinary(res, await this.opts.box.store.getBlob(id));
  }
}
