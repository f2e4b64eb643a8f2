import { expect } from 'chai';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { FetchChannel } from '../../../src/agent/fetch-channel';
import { BoxEndpoint } from '../../../src/agent/box-client';
import { certSpkiSha256, makeTlsIdentity } from '../../../src/appliance/identity';
import { CairnError } from '../../../src/core/errors';

type Handler = (req: http.IncomingMessage, body: Buffer, res: http.ServerResponse) => void;

interface TestServer {
  endpoint: BoxEndpoint;
  connections: number;
  requests: { method?: string; url?: string; headers: http.IncomingHttpHeaders; body: Buffer }[];
  close(): Promise<void>;
}

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

describe('agent/fetch-channel: the restore fetches chunks over its own HTTP/1.1 connection', function () {
  this.timeout(30_000);
  let id: { keyPem: string; certPem: string };
  let other: { keyPem: string; certPem: string };
  const servers: net.Server[] = [];

  before(async () => {
    id = await makeTlsIdentity('channel-test');
    other = await makeTlsIdentity('look-alike');
  });
  afterEach(async () => {
    for (const s of servers.splice(0)) {
      (s as http.Server).closeAllConnections?.();
      await new Promise((r) => s.close(r));
    }
  });

  async function httpsServer(handler: Handler, opts: { keepAliveTimeout?: number; identity?: { keyPem: string; certPem: string } } = {}): Promise<TestServer> {
    const ident = opts.identity ?? id;
    const t: TestServer = { endpoint: { host: '127.0.0.1', port: 0, certPem: id.certPem, spkiSha256: certSpkiSha256(id.certPem) }, connections: 0, requests: [], close: async () => undefined };
    const server = https.createServer({ key: ident.keyPem, cert: ident.certPem, minVersion: 'TLSv1.3' }, (req, res) => {
      const parts: Buffer[] = [];
      req.on('data', (d: Buffer) => parts.push(d));
      req.on('end', () => {
        const body = Buffer.concat(parts);
        t.requests.push({ method: req.method, url: req.url, headers: req.headers, body });
        handler(req, body, res);
      });
    });
    if (opts.keepAliveTimeout) server.keepAliveTimeout = opts.keepAliveTimeout;
    server.on('secureConnection', () => t.connections++);
    servers.push(server);
    t.endpoint.port = await listen(server);
    return t;
  }

  /** A TLS server that answers every request with `answer` (raw bytes) and then does `after`. */
  async function rawServer(answer: Buffer, after: 'keep' | 'end' | 'destroy' | 'once', counter?: { connections: number }): Promise<BoxEndpoint> {
    const server = tls.createServer({ key: id.keyPem, cert: id.certPem, minVersion: 'TLSv1.3' }, (s) => {
      if (counter) counter.connections++;
      let seen = '';
      let served = 0;
      s.on('data', (d: Buffer) => {
        seen += d.toString('latin1');
        const end = seen.indexOf('\r\n\r\n');
        if (end < 0) return;
        const len = Number(/content-length: (\d+)/i.exec(seen)?.[1] ?? 0);
        if (seen.length < end + 4 + len) return;
        seen = '';
        if (after === 'once' && served > 0) {
          s.destroy(); // as a box does that closed the idle connection just as the request came
          return;
        }
        served++;
        s.write(answer);
        if (after === 'end') s.end();
        if (after === 'destroy') setTimeout(() => s.destroy(), 20);
      });
      s.on('error', () => undefined);
    });
    servers.push(server);
    return { host: '127.0.0.1', port: await listen(server), certPem: id.certPem, spkiSha256: certSpkiSha256(id.certPem) };
  }

  async function post(ch: FetchChannel, body = Buffer.from('ask')): Promise<Buffer> {
    const got: Buffer[] = [];
    await ch.post('/v1/snapshots/s1/chunks/fetch', body, (piece) => got.push(Buffer.from(piece)));
    return Buffer.concat(got);
  }

  async function failure(p: Promise<unknown>): Promise<CairnError> {
    try {
      await p;
    } catch (err) {
      expect(err).to.be.instanceOf(CairnError);
      return err as CairnError;
    }
    throw new Error('the request succeeded');
  }

  it('sends well-formed requests (credential, extra headers, body) and reuses one connection', async () => {
    const big = Buffer.alloc(3 * 1024 * 1024 + 5, 7);
    const t = await httpsServer((req, body, res) => {
      res.writeHead(200, { 'content-length': body.length + big.length });
      res.end(Buffer.concat([body, big]));
    });
    const ch = new FetchChannel(t.endpoint, 'tok-123', { 'x-cairn-namespace': 'pc1' });
    try {
      for (let i = 0; i < 3; i++) {
        const got = await post(ch, Buffer.from(`ask ${i}`));
        expect(got.subarray(0, 5).toString()).to.equal(`ask ${i}`);
        expect(got.length).to.equal(5 + big.length);
        expect(got.subarray(5).equals(big)).to.equal(true);
      }
    } finally {
      ch.close();
    }
    expect(t.connections).to.equal(1);
    expect(t.requests.map((r) => r.method)).to.deep.equal(['POST', 'POST', 'POST']);
    expect(t.requests[0].url).to.equal('/v1/snapshots/s1/chunks/fetch');
    expect(t.requests[0].headers).to.include({ authorization: 'Bearer tok-123', 'x-cairn-namespace': 'pc1', 'content-type': 'application/octet-stream', host: `127.0.0.1:${t.endpoint.port}` });
  });

  it('asks again on a new connection when the box closed the idle one, and only then', async () => {
    const counter = { connections: 0 };
    const ep = await rawServer(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'), 'once', counter);
    const ch = new FetchChannel(ep, undefined);
    try {
      for (let i = 0; i < 3; i++) expect((await post(ch)).toString()).to.equal('ok');
    } finally {
      ch.close();
    }
    expect(counter.connections).to.equal(3);
    // a box that hangs up on every new connection is not asked forever
    const gone = new FetchChannel(await rawServer(Buffer.alloc(0), 'destroy'), undefined);
    const err = await failure(post(gone));
    expect(err.code).to.equal('CAIRN_BOX_UNREACHABLE');
    gone.close();
  });

  it("turns the box's error answers into its errors", async () => {
    const t = await httpsServer((_req, _body, res) => {
      const json = JSON.stringify({ error: { code: 'CAIRN_SNAPSHOT_NOT_FOUND', message: 'no such snapshot' } });
      res.writeHead(404, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) });
      res.end(json);
    });
    const ch = new FetchChannel(t.endpoint, undefined);
    const err = await failure(post(ch));
    expect(err.code).to.equal('CAIRN_SNAPSHOT_NOT_FOUND');
    expect(err.message).to.equal('no such snapshot');
    // and the connection still serves
    await failure(post(ch));
    expect(t.connections).to.equal(1);
    ch.close();
  });

  it('refuses a box with another key (the pin), before sending anything', async () => {
    const t = await httpsServer(() => undefined, { identity: other });
    const ch = new FetchChannel(t.endpoint, 'secret-token');
    const err = await failure(post(ch));
    expect(err.code).to.equal('CAIRN_PAIR_PIN_MISMATCH');
    expect(t.requests).to.deep.equal([]);
    ch.close();
  });

  it('garbage, a cut answer, bytes past the answer, a failing sink: clear errors, and the next request works', async () => {
    const garbage = await rawServer(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n'), 'keep');
    const ch1 = new FetchChannel(garbage, undefined);
    expect((await failure(post(ch1))).code).to.equal('CAIRN_BOX_ERROR');
    ch1.close();

    const cut = await rawServer(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part'), 'end');
    const ch2 = new FetchChannel(cut, undefined);
    const e2 = await failure(post(ch2));
    expect(e2.code).to.equal('CAIRN_BOX_UNREACHABLE');
    expect(e2.message).to.match(/middle of an answer/);
    ch2.close();

    // an answer followed by bytes nobody asked for: the answer counts, the connection is dropped
    const extra = await rawServer(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n'), 'keep');
    const ch3 = new FetchChannel(extra, undefined);
    expect((await post(ch3)).toString()).to.equal('ok');
    expect((await post(ch3)).toString()).to.equal('ok');
    ch3.close();

    const t = await httpsServer((_req, body, res) => {
      res.writeHead(200, { 'content-length': body.length });
      res.end(body);
    });
    const ch4 = new FetchChannel(t.endpoint, undefined);
    const boom = new CairnError('CAIRN_BOX_ERROR', 'the sink refused it');
    const e4 = await failure(ch4.post('/x', Buffer.from('a'), () => {
      throw boom;
    }));
    expect(e4).to.equal(boom);
    expect((await post(ch4)).toString()).to.equal('ask');
    ch4.close();
  });

  it('refuses headers and paths that would break the request', async () => {
    const ep: BoxEndpoint = { host: '127.0.0.1', port: 1, certPem: id.certPem, spkiSha256: certSpkiSha256(id.certPem) };
    expect(() => new FetchChannel(ep, 'tok\r\nx-evil: 1')).to.throw(/credential/);
    expect(() => new FetchChannel(ep, undefined, { 'x-a': 'b\r\nx-evil: 1' })).to.throw(/cannot be sent/);
    expect(() => new FetchChannel(ep, undefined, { 'x a': 'b' })).to.throw(/cannot be sent/);
    const ch = new FetchChannel(ep, undefined);
    expect((await failure(ch.post('/a b', Buffer.alloc(0), () => undefined))).code).to.equal('CAIRN_USAGE');
    expect((await failure(ch.post('/a\r\nx: y', Buffer.alloc(0), () => undefined))).code).to.equal('CAIRN_USAGE');
    const refused = await failure(ch.post('/ok', Buffer.alloc(0), () => undefined));
    expect(refused.code).to.equal('CAIRN_BOX_UNREACHABLE');
    ch.close();
  });
});
