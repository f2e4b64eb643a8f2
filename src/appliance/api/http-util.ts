import http from 'node:http';
import { CairnError, errorMessage } from '../../core/errors';

/** Small HTTP helpers shared by the agent API and the box-to-box API. */
export function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
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

/** A request body in a buffer that must be handed back (`release`) once nothing reads it any more. */
export interface PooledBody {
  body: Buffer;
  release: () => void;
}

/**
 * Like readBody, but a body whose declared length fits the pool's buffers is read straight
 * into one of them instead of being gathered in pieces and copied into a fresh allocation.
 * (The box's upload bodies: 4 MiB each, 640 MB in a 1 GB first backup, every fresh buffer
 * of which cost page faults and collections.) A body without a declared length, or a longer
 * one, is read as readBody reads it. The caller calls `release` when done, also on failure.
 */
export async function readBodyPooled(req: http.IncomingMessage, limit: number, pool: { size: number; take(n: number): Buffer; give(b: Buffer): void }): Promise<PooledBody> {
  const declared = req.headers['content-length'];
  const n = declared === undefined ? NaN : Number(declared);
  if (!Number.isSafeInteger(n) || n <= 0 || n > pool.size || n > limit) return { body: await readBody(req, limit), release: () => undefined };
  const buf = pool.take(n);
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    pool.give(buf);
  };
  try {
    await new Promise<void>((resolve, reject) => {
      let fill = 0;
      let done = false;
      const fail = (err: CairnError): void => {
        if (done) return;
        done = true;
        reject(err);
      };
      req.on('data', (d: Buffer) => {
        if (done) return;
        if (fill + d.length > n) {
          fail(new CairnError('CAIRN_API_BAD_REQUEST', `request body is longer than its declared ${n} bytes`));
          return;
        }
        d.copy(buf, fill);
        fill += d.length;
      });
      req.on('end', () => {
        if (done) return;
        if (fill !== n) fail(new CairnError('CAIRN_API_BAD_REQUEST', `request body was cut short: ${fill} of ${n} bytes`));
        else {
          done = true;
          resolve();
        }
      });
      req.on('aborted', () => fail(new CairnError('CAIRN_API_BAD_REQUEST', 'request body was cut short')));
      req.on('error', (err) => fail(new CairnError('CAIRN_API_BAD_REQUEST', `request body could not be read: ${errorMessage(err)}`)));
    });
  } catch (err) {
    release();
    throw err;
  }
  return { body: buf, release };
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const data = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': data.length });
  res.end(data);
}

export function sendBinary(res: http.ServerResponse, data: Buffer): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': data.length });
  res.end(data);
}

/**
 * A binary answer made of several parts, written in corked groups of about `group` bytes with a
 * wait for the socket to drain between groups. Uncorked, every small part (a 36-byte frame
 * header) became its own TLS record and syscall (profiled); corking a whole 4 MiB fetch answer
 * queued a second, encrypted copy of it behind the socket, and a restore has four answers in
 * flight. Resolves when the answer is written or the client is gone.
 */
export async function sendParts(res: http.ServerResponse, parts: Buffer[], group = 256 * 1024): Promise<void> {
  const length = parts.reduce((n, b) => n + b.length, 0);
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': length });
  let pending = 0;
  res.cork();
  for (const p of parts) {
    res.write(p);
    pending += p.length;
    if (pending >= group) {
      pending = 0;
      res.uncork();
      if (res.writableNeedDrain && !(await drained(res))) return;
      res.cork();
    }
  }
  res.end(); // end() uncorks
}

/**
 * A binary answer held in one buffer, written in slices of `slice` bytes, each once the socket
 * has taken the one before: the TLS layer then encrypts every slice from where it lies (it
 * gathers several pending writes into a buffer of its own first), and no more than one slice
 * waits encrypted behind the socket. Resolves when the answer is written or the client is gone.
 */
export async function sendSlices(res: http.ServerResponse, data: Buffer, slice = 256 * 1024): Promise<void> {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': data.length });
  for (let at = 0; at < data.length; at += slice) {
    const last = at + slice >= data.length;
    const part = data.subarray(at, Math.min(at + slice, data.length));
    if (last) {
      res.end(part);
      return;
    }
    if (!res.write(part) && !(await drained(res))) return;
  }
  res.end();
}

/** Waits for 'drain'; false when the response closes first (the client went away). */
function drained(res: http.ServerResponse): Promise<boolean> {
  if (res.destroyed) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (ok: boolean): void => {
      res.off('drain', onDrain);
      res.off('close', onClose);
      resolve(ok);
    };
    const onDrain = (): void => done(true);
    const onClose = (): void => done(false);
    res.on('drain', onDrain);
    res.on('close', onClose);
  });
}

export function parseJson<T>(body: Buffer): T {
  try {
    return JSON.parse(body.toString('utf8')) as T;
  } catch {
    throw new CairnError('CAIRN_API_BAD_REQUEST', 'request body is not valid JSON');
  }
}

