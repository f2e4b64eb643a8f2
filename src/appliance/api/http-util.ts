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

export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const data = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': data.length });
  res.end(data);
}

export function sendBinary(res: http.ServerResponse, data: Buffer): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': data.length });
  res.end(data);
}

export function parseJson<T>(body: Buffer): T {
  try {
    return JSON.parse(body.toString('utf8')) as T;
  } catch {
    throw new CairnError('CAIRN_API_BAD_REQUEST', 'request body is not valid JSON');
  }
}

