import type http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { CairnError, CairnErrorCode, errnoCode, errorMessage } from '../core/errors';
import { constantTimeEqual } from '../core/keys';
import { spkiPin } from '../core/pairing-token';
import { CHUNK_ID_BYTES } from '../core/chunk-id';
import { FetchAnswerReader } from '../core/api';

/**
 * HTTPS client pinned to one box. The box's self-signed certificate is the only trust
 * anchor (`ca`), and the certificate's SPKI hash must equal the pinned one, so neither a
 * public CA nor a look-alike box can stand in. HTTP/1.1 with keep-alive and a few sockets.
 */
export interface BoxEndpoint {
  host: string;
  port: number;
  certPem: string;
  spkiSha256: Buffer;
}

/** What another thread needs to open its own connections to the same box (structured-cloneable). */
export interface BoxClientSpec {
  host: string;
  port: number;
  certPem: string;
  spkiHex: string;
  credential?: string;
  headers: Record<string, string>;
}

export interface RequestOptions {
  contentType?: string;
  timeoutMs?: number;
  sink?: (piece: Buffer) => void;
}

export interface ClientResponse {
  status: number;
  body: Buffer;
}

const NETWORK_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE', 'ECONNABORTED']);

export function spkiOfCert(raw: Buffer | string): Buffer {
  return spkiPin(new X509Certificate(raw).publicKey.export({ type: 'spki', format: 'der' }));
}

/**
 * Connects without trusting anything, reads the box's certificate and closes. Nothing is
 * sent but the TLS handshake. Used once, at pairing, before the certificate is pinned.
 */
export function probeCertificate(host: string, port: number, timeoutMs = 10_000): Promise<{ certPem: string; spkiSha256: Buffer }> {
  return new Promise((resolve, reject) => {
    const sock = tls.connect({ host, port, rejectUnauthorized: false, minVersion: 'TLSv1.3', servername: net_isIP(host) ? undefined : host });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new CairnError('CAIRN_BOX_UNREACHABLE', `no answer from ${host}:${port} within ${timeoutMs / 1000}s`));
    }, timeoutMs);
    sock.once('secureConnect', () => {
      clearTimeout(timer);
      const cert = sock.getPeerCertificate(true);
      sock.destroy();
      if (!cert || !cert.raw) {
        reject(new CairnError('CAIRN_BOX_ERROR', `${host}:${port} presented no certificate`));
        return;
      }
      const certPem = new X509Certificate(cert.raw).toString();
      resolve({ certPem, spkiSha256: spkiOfCert(cert.raw) });
    });
    sock.once('error', (err) => {
      clearTimeout(timer);
      reject(new CairnError('CAIRN_BOX_UNREACHABLE', `cannot reach the box at ${host}:${port}: ${errorMessage(err)}`));
    });
  });
}

function net_isIP(host: string): boolean {
  return /^[\d.]+$/.test(host) || host.includes(':');
}

/**
 * TLS options that trust only the paired box: its self-signed certificate is the only trust
 * anchor (`ca`), and the certificate's SPKI hash must equal the pinned one.
 */
export function pinnedTlsOptions(endpoint: BoxEndpoint): tls.ConnectionOptions {
  const pinned = endpoint.spkiSha256;
  return {
    ca: endpoint.certPem,
    minVersion: 'TLSv1.3',
    servername: net_isIP(endpoint.host) ? undefined : endpoint.host,
    checkServerIdentity: (_host, cert) => {
      if (!cert.raw || !constantTimeEqual(spkiOfCert(cert.raw), pinned)) {
        return new CairnError('CAIRN_PAIR_PIN_MISMATCH', `the box at ${endpoint.host}:${endpoint.port} presents a different key than the one this agent paired with`);
      }
      return undefined;
    },
  };
}

/** A failed connection or request to the box as a CairnError: pin mismatch, unreachable, or broken. */
export function tlsErrorToCairn(err: unknown, endpoint: { host: string; port: number }): CairnError {
  if (err instanceof CairnError) return err;
  const { host, port } = endpoint;
  const code = errnoCode(err);
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID' || code === 'DEPTH_ZERO_SELF_SIGNED_CERT' || code === 'SELF_SIGNED_CERT_IN_CHAIN' || code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' || code === 'CERT_SIGNATURE_FAILURE') {
    return new CairnError('CAIRN_PAIR_PIN_MISMATCH', `the box at ${host}:${port} presents a different certificate than the one this agent paired with; refusing to talk to it`);
  }
  if (code && NETWORK_ERRORS.has(code)) return new CairnError('CAIRN_BOX_UNREACHABLE', `cannot reach the box at ${host}:${port} (${code})`);
  return new CairnError('CAIRN_BOX_UNREACHABLE', `request to the box at ${host}:${port} failed: ${errorMessage(err)}`);
}

/** Parts of a body at least this large go out in a write of their own; smaller neighbours are joined first. */
const OWN_WRITE_BYTES = 64 * 1024;

/**
 * Writes a request body given in parts (an upload: a 36-byte frame head before each blob).
 * Every write carries one buffer, and the next waits until the last was handed to the socket.
 * Node's TLS stream copies the buffers of a gathered write (a corked request, or writes queued
 * while one is pending) into one new buffer before encrypting it: for a 4 MiB upload that was
 * a 4 MiB allocation and copy (profiled: 9% of the agent's main thread in a 1 GB first backup,
 * and the allocations stayed in its malloc heap). Uncorked writes of every part made each small
 * frame head a TLS record and a syscall of its own, so runs of small parts are joined (a copy
 * of small bytes only).
 */
export function writeBody(req: Pick<http.ClientRequest, 'write' | 'end'>, parts: Buffer[]): void {
  const writes: Buffer[] = [];
  let run: Buffer[] = [];
  let runBytes = 0;
  const endRun = (): void => {
    if (run.length) writes.push(run.length === 1 ? run[0] : Buffer.concat(run, runBytes));
    run = [];
    runBytes = 0;
  };
  for (const p of parts) {
    if (p.length >= OWN_WRITE_BYTES) {
      endRun();
      writes.push(p);
    } else {
      run.push(p);
      runBytes += p.length;
      if (runBytes >= OWN_WRITE_BYTES) endRun();
    }
  }
  endRun();
  let i = 0;
  const next = (err?: Error | null): void => {
    if (err) return; // the request's 'error' handler reports it
    if (i >= writes.length - 1) req.end(writes[i]);
    else req.write(writes[i++], next);
  };
  next();
}

export class BoxClient {
  private readonly agent: https.Agent;
  private readonly extraHeaders: Record<string, string>;

  constructor(readonly endpoint: BoxEndpoint, private readonly credential?: string, opts: { maxSockets?: number; headers?: Record<string, string> } = {}) {
    this.extraHeaders = opts.headers ?? {};
    const { servername: _unused, ...pinned } = pinnedTlsOptions(endpoint); // https.request sets servername per request
    this.agent = new https.Agent({ keepAlive: true, maxSockets: opts.maxSockets ?? 4, ...pinned });
  }

  close(): void {
    this.agent.destroy();
  }

  /** This client's box, pin, credential and headers, for BoxClient.fromSpec in a worker thread. */
  get spec(): BoxClientSpec {
    const e = this.endpoint;
    return { host: e.host, port: e.port, certPem: e.certPem, spkiHex: e.spkiSha256.toString('hex'), credential: this.credential, headers: { ...this.extraHeaders } };
  }

  static fromSpec(s: BoxClientSpec, opts: { maxSockets?: number } = {}): BoxClient {
    return new BoxClient({ host: s.host, port: s.port, certPem: s.certPem, spkiSha256: Buffer.from(s.spkiHex, 'hex') }, s.credential, { maxSockets: opts.maxSockets, headers: s.headers });
  }

  /**
   * One request. With `sink`, a 2xx answer's body is handed to it piece by piece as it arrives
   * (and the body returned is empty); a sink that throws aborts the request with its error.
   */
  request(method: string, path: string, body?: Buffer | Buffer[], opts: RequestOptions = {}): Promise<ClientResponse> {
    const parts = body === undefined ? [] : Array.isArray(body) ? body : [body];
    const length = parts.reduce((n, b) => n + b.length, 0);
    const headers: Record<string, string | number> = { ...this.extraHeaders, 'content-length': length };
    if (body !== undefined) headers['content-type'] = opts.contentType ?? 'application/octet-stream';
    if (this.credential) headers.authorization = `Bearer ${this.credential}`;
    const { host, port } = this.endpoint;
    return new Promise((resolve, reject) => {
      const req = https.request({ host, port, method, path, headers, agent: this.agent, servername: net_isIP(host) ? undefined : host, timeout: opts.timeoutMs ?? 120_000 }, (res) => {
        const chunks: Buffer[] = [];
        const status = res.statusCode ?? 0;
        const sink = status >= 200 && status < 300 ? opts.sink : undefined;
        if (sink) {
          res.on('data', (d: Buffer) => {
            try {
              sink(d);
            } catch (err) {
              reject(err);
              req.destroy();
            }
          });
        } else res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => resolve({ status, body: Buffer.concat(chunks) }));
        res.on('error', (err) => reject(new CairnError('CAIRN_BOX_UNREACHABLE', `connection to the box broke: ${errorMessage(err)}`)));
      });
      req.on('timeout', () => req.destroy(Object.assign(new Error('request timed out'), { code: 'ETIMEDOUT' })));
      req.on('error', (err) => reject(tlsErrorToCairn(err, this.endpoint)));
      writeBody(req, parts);
    });
  }

  /**
   * Batched chunk fetch of one snapshot (POST /v1/snapshots/ID/chunks/fetch). Each frame is
   * checked to answer the next id asked for and handed to `onFrame(i, blob)` as soon as it is
   * complete; an empty blob means the box did not answer that id (ask for it alone to learn
   * why). Resolves with how many ids were answered (fewer when the box cut the answer short:
   * ask again for the rest), or 'unsupported' from an older box without the endpoint. On an
   * error, the ids from the last one handed over on were not.
   * @param alloc where frame buffers come from (see FetchAnswerReader)
   */
  fetchChunks(snapshot: string, ids: Buffer[], onFrame: (i: number, blob: Buffer) => void, alloc?: (n: number) => Buffer): Promise<number | 'unsupported'> {
    return fetchChunksOver(async (path, body, sink) => void (await this.call('POST', path, body, { sink })), snapshot, ids, onFrame, alloc);
  }

  /** Throws the box's error (its code when known) unless the status is 2xx. */
  async call(method: string, path: string, body?: Buffer | Buffer[], opts: RequestOptions = {}): Promise<Buffer> {
    const r = await this.request(method, path, body, opts);
    if (r.status >= 200 && r.status < 300) return r.body;
    throw errorFromResponse(r);
  }

  async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const out = await this.call(method, path, data, { contentType: 'application/json' });
    return JSON.parse(out.toString('utf8')) as T;
  }
}

/** A POST whose 2xx answer body goes to `sink` piece by piece; other answers reject with the box's error. */
export type SinkPost = (path: string, body: Buffer, sink: (piece: Buffer) => void) => Promise<void>;

/** BoxClient.fetchChunks over any POST that streams its answer (BoxClient's own, or a FetchChannel's). */
export async function fetchChunksOver(post: SinkPost, snapshot: string, ids: Buffer[], onFrame: (i: number, blob: Buffer) => void, alloc?: (n: number) => Buffer): Promise<number | 'unsupported'> {
  let i = 0;
  const reader = new FetchAnswerReader(ids.length, alloc, (frame) => {
    if (!frame.subarray(0, CHUNK_ID_BYTES).equals(ids[i])) throw new CairnError('CAIRN_BOX_ERROR', 'the box answered a batched chunk fetch out of order');
    onFrame(i++, frame.subarray(CHUNK_ID_BYTES));
  });
  try {
    await post(`/v1/snapshots/${snapshot}/chunks/fetch`, Buffer.concat(ids), (piece) => reader.push(piece));
  } catch (err) {
    if (i === 0 && (CairnError.is(err, 'CAIRN_API_NOT_FOUND') || CairnError.is(err, 'CAIRN_API_METHOD'))) return 'unsupported';
    throw err;
  }
  reader.end();
  return i;
}

export function errorFromResponse(r: ClientResponse): CairnError {
  let code: CairnErrorCode = 'CAIRN_BOX_ERROR';
  let message = `the box answered HTTP ${r.status}`;
  let details: Record<string, unknown> | undefined;
  try {
    const e = (JSON.parse(r.body.toString('utf8')) as { error?: { code?: string; message?: string } }).error;
    if (e?.code && /^CAIRN_[A-Z_]+$/.test(e.code)) code = e.code as CairnErrorCode;
    if (e?.message) message = e.message;
    details = e as Record<string, unknown>;
  } catch {
    /* keep the generic message */
  }
  return new CairnError(code, message, details);
}
