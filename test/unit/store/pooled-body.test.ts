import { expect } from 'chai';
import http from 'node:http';
import net from 'node:net';
import { AddressInfo } from 'node:net';
import { BufferPool } from '../../../src/appliance/api/buffer-pool';
import { PooledBody, readBodyPooled } from '../../../src/appliance/api/http-util';
import { CairnError } from '../../../src/core/errors';

/**
 * readBodyPooled reads an upload body into one of cairnd's reusable buffers. What matters: the
 * bytes are the body's, a buffer given back is reused, and a body that fails half-way gives its
 * buffer back and rejects with a clear error.
 */
describe('request bodies read into pooled buffers (cairnd uploads)', () => {
  let server: http.Server;
  let port: number;
  let pool: BufferPool;
  let bodies: { body?: PooledBody; error?: unknown }[] = [];
  let arrived: ((n: number) => void) | undefined;

  before(async () => {
    server = http.createServer((req, res) => {
      readBodyPooled(req, 1024 * 1024, pool).then(
        (body) => {
          bodies.push({ body });
          res.end(body.body.toString('hex'));
        },
        (error: unknown) => {
          bodies.push({ error });
          res.destroy();
        },
      ).finally(() => arrived?.(bodies.length));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  beforeEach(() => {
    pool = new BufferPool(4096, 2);
    bodies = [];
  });

  function post(body: Buffer, headers: Record<string, string | number> = { 'content-length': body.length }): Promise<string> {
    return new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/', headers }, (res) => {
        let out = '';
        res.on('data', (d: Buffer) => (out += d.toString()));
        res.on('end', () => resolve(out));
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  it('reads a body that fits into a pool buffer, and the next body reuses it once given back', async () => {
    const a = Buffer.alloc(3000, 0xaa);
    expect(await post(a)).to.equal(a.toString('hex'));
    const first = bodies[0].body!;
    expect(first.body.buffer.byteLength, 'a pool buffer').to.equal(4096);
    expect(first.body.equals(a)).to.equal(true);
    first.release();
    first.release();
    expect(pool.kept, 'given back once').to.equal(1);
    const b = Buffer.from('a shorter, different body');
    expect(await post(b)).to.equal(b.toString('hex'));
    const second = bodies[1].body!;
    expect(second.body.buffer, 'the same memory again').to.equal(first.body.buffer);
    expect(second.body.equals(b), 'exactly the new body, none of the old one').to.equal(true);
    second.release();
  });

  it('reads a body larger than the pool buffers, or without a declared length, the ordinary way', async () => {
    const big = Buffer.alloc(10_000, 7);
    expect(await post(big)).to.equal(big.toString('hex'));
    expect(bodies[0].body!.body.buffer.byteLength).to.not.equal(4096);
    const chunked = Buffer.from('sent in chunks');
    expect(await post(chunked, { 'transfer-encoding': 'chunked' })).to.equal(chunked.toString('hex'));
    for (const b of bodies) b.body!.release();
    expect(pool.kept, 'nothing of the pool was used').to.equal(0);
  });

  it('a body cut short rejects with CAIRN_API_BAD_REQUEST and gives its buffer back', async () => {
    const done = new Promise<number>((resolve) => (arrived = resolve));
    const s = net.connect(port, '127.0.0.1', () => {
      s.write('POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n');
      s.write(Buffer.alloc(500, 1));
      setTimeout(() => s.destroy(), 50);
    });
    s.on('error', () => undefined);
    await done;
    arrived = undefined;
    expect(bodies).to.have.length(1);
    const err = bodies[0].error;
    expect(err).to.be.instanceOf(CairnError);
    expect((err as CairnError).code).to.equal('CAIRN_API_BAD_REQUEST');
    expect(pool.kept, 'the buffer is back in the pool').to.equal(1);
    // and the server still answers
    const again = Buffer.from('still here');
    expect(await post(again)).to.equal(again.toString('hex'));
  });
});
