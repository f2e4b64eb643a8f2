import tls from 'node:tls';
import { CairnError } from '../core/errors';
import { AnswerParser } from './http-answer';
import { BoxEndpoint, errorFromResponse, pinnedTlsOptions, tlsErrorToCairn } from './box-client';

/**
 * One pinned TLS connection to the box that carries the restore's chunk fetches, one request
 * at a time, speaking plain HTTP/1.1 itself. The same requests and answers as BoxClient's
 * (same TLS settings and pin, same headers), so the box sees no difference.
 *
 * Why not node:https: in a profiled 1 GB restore the workers spent about 8% of their CPU in
 * Node's HTTP client, which copies every piece of an answer's body into a new buffer and
 * passes it through two streams. Here the TLS socket reads into one buffer of this channel's
 * (`onread`), the answer parser hands the body on as views of it, and the only copy left is
 * the frame reader's into its frame buffer.
 *
 * A connection the box closed while idle (its keep-alive timeout) is noticed when a request
 * on it gets no answer byte: the request is sent once more on a new connection. A fetch
 * changes nothing on the box, so sending it twice is safe.
 */
const READ_BUFFER = 64 * 1024;
/** the most of an error answer's body kept (a box's errors are small JSON) */
const MAX_ERROR_BODY = 1024 * 1024;

interface Pending {
  parser: AnswerParser;
  resolve: () => void;
  reject: (err: unknown) => void;
  /** the request went out on a connection that had carried one before */
  reused: boolean;
  retry: () => void;
}

export class FetchChannel {
  private sock: tls.TLSSocket | undefined;
  private readonly readBuf = Buffer.allocUnsafeSlow(READ_BUFFER);
  private pending: Pending | undefined;
  private used = false;
  private closed = false;

  constructor(
    private readonly endpoint: BoxEndpoint,
    private readonly credential: string | undefined,
    private readonly headers: Record<string, string> = {},
    private readonly timeoutMs = 120_000,
  ) {
    for (const [k, v] of Object.entries(headers)) {
      if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(k) || /[\r\n\0]/.test(v)) throw new CairnError('CAIRN_USAGE', `header ${JSON.stringify(k)} cannot be sent`);
    }
    if (credential !== undefined && /[\r\n\0]/.test(credential)) throw new CairnError('CAIRN_USAGE', 'the credential cannot be sent in a header');
  }

  close(): void {
    this.closed = true;
    this.sock?.destroy();
    this.sock = undefined;
  }

  /**
   * POSTs `body` to `path`. A 2xx answer's body goes to `sink` piece by piece (each piece is
   * valid only during the call); a sink that throws ends the request with its error. Any other
   * status rejects with the box's error, as BoxClient.call does.
   */
  post(path: string, body: Buffer, sink: (piece: Buffer) => void): Promise<void> {
    if (this.pending) return Promise.reject(new CairnError('CAIRN_USAGE', 'a fetch channel carries one request at a time'));
    if (this.closed) return Promise.reject(new CairnError('CAIRN_USAGE', 'the fetch channel is closed'));
    if (!/^\/[!-~]*$/.test(path)) return Promise.reject(new CairnError('CAIRN_USAGE', 'bad request path'));
    return new Promise<void>((resolve, reject) => {
      let status = 0;
      let keep = true;
      const errBody: Buffer[] = [];
      let errBytes = 0;
      const parser = new AnswerParser({
        head: (h) => {
          status = h.status;
          keep = h.keepAlive;
        },
        body: (piece) => {
          if (status >= 200 && status < 300) {
            sink(piece); // a throw ends the request with this error (onBytes)
            return;
          }
          errBytes += piece.length;
          if (errBytes > MAX_ERROR_BODY) throw new CairnError('CAIRN_BOX_ERROR', `the box's error answer is longer than ${MAX_ERROR_BODY} bytes`);
          errBody.push(Buffer.from(piece)); // the piece's memory is read into again
        },
        end: () => undefined,
      });
      const p: Pending = {
        parser,
        reused: this.sock !== undefined && this.used,
        resolve: () => {
          if (!keep) this.drop();
          if (status >= 200 && status < 300) resolve();
          else reject(errorFromResponse({ status, body: Buffer.concat(errBody) }));
        },
        reject,
        retry: () => {
          this.post(path, body, sink).then(resolve, reject);
        },
      };
      this.pending = p;
      const sock = this.socket();
      sock.ref();
      this.used = true;
      const headLines = [`POST ${path} HTTP/1.1`, `host: ${hostHeader(this.endpoint.host, this.endpoint.port)}`];
      for (const [k, v] of Object.entries(this.headers)) headLines.push(`${k}: ${v}`);
      if (this.credential) headLines.push(`authorization: Bearer ${this.credential}`);
      headLines.push('content-type: application/octet-stream', `content-length: ${body.length}`, '', '');
      sock.cork();
      sock.write(headLines.join('\r\n'), 'latin1');
      sock.write(body);
      process.nextTick(() => sock.uncork());
    });
  }

  private socket(): tls.TLSSocket {
    if (this.sock) return this.sock;
    const { host, port } = this.endpoint;
    const opts: tls.ConnectionOptions & { onread: { buffer: Buffer; callback: (n: number, buf: Buffer) => boolean } } = {
      ...pinnedTlsOptions(this.endpoint),
      host,
      port,
      onread: { buffer: this.readBuf, callback: (n, buf) => this.onBytes(sock, buf.subarray(0, n)) },
    };
    const sock = tls.connect(opts);
    sock.setNoDelay(true);
    sock.setTimeout(this.timeoutMs, () => sock.destroy(Object.assign(new Error('request timed out'), { code: 'ETIMEDOUT' })));
    sock.on('error', (err) => this.onGone(sock, err));
    sock.on('close', () => this.onGone(sock, undefined));
    this.sock = sock;
    this.used = false;
    return sock;
  }

  private onBytes(sock: tls.TLSSocket, bytes: Buffer): boolean {
    const p = this.pending;
    if (sock !== this.sock) return true;
    if (!p) {
      sock.destroy(); // bytes nobody asked for: this connection is out of step
      return false;
    }
    try {
      const n = p.parser.push(bytes);
      if (p.parser.done) {
        this.pending = undefined;
        if (n < bytes.length) this.drop(); // more than the answer: do not trust what follows
        else sock.unref(); // an idle connection does not keep the process alive
        p.resolve();
      }
    } catch (err) {
      this.pending = undefined;
      this.drop();
      p.reject(err);
      return false;
    }
    return true;
  }

  private onGone(sock: tls.TLSSocket, err: Error | undefined): void {
    if (sock !== this.sock) return;
    this.sock = undefined;
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    sock.destroy();
    if (p.reused && p.parser.untouched && !this.closed) {
      p.retry(); // the box closed an idle connection: ask again on a new one
      return;
    }
    p.reject(err ? tlsErrorToCairn(err, this.endpoint) : new CairnError('CAIRN_BOX_UNREACHABLE', 'the connection to the box closed in the middle of an answer'));
  }

  private drop(): void {
    const s = this.sock;
    this.sock = undefined;
    s?.destroy();
  }
}

function hostHeader(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
