import { expect } from 'chai';
import { AnswerHead, AnswerParser } from '../../../src/agent/http-answer';
import { CairnError } from '../../../src/core/errors';
import { Prng } from '../../../scripts/lib/sample';

interface Read {
  head?: AnswerHead;
  body: Buffer[];
  ended: number;
  used: number;
}

/** Feeds `bytes` in pieces cut at `cuts` (each piece copied into one reused buffer, as the channel reads). */
function feed(bytes: Buffer, cuts: number[]): Read {
  const r: Read = { body: [], ended: 0, used: 0 };
  const p = new AnswerParser({ head: (h) => (r.head = h), body: (b) => r.body.push(Buffer.from(b)), end: () => r.ended++ });
  const shared = Buffer.alloc(bytes.length);
  let from = 0;
  for (const to of [...cuts, bytes.length]) {
    if (to <= from) continue;
    const piece = shared.subarray(0, to - from);
    bytes.copy(piece, 0, from, to);
    const n = p.push(piece);
    r.used += n;
    if (p.done) break;
    expect(n).to.equal(piece.length);
    from = to;
  }
  return r;
}

function malformed(bytes: Buffer | string): string {
  const b = typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes;
  const p = new AnswerParser({ head: () => undefined, body: () => undefined, end: () => undefined });
  try {
    p.push(b);
  } catch (err) {
    expect(CairnError.is(err, 'CAIRN_BOX_ERROR'), String(err)).to.equal(true);
    return (err as Error).message;
  }
  throw new Error(`accepted: ${JSON.stringify(b.toString('latin1').slice(0, 80))}`);
}

describe('agent/http-answer: the restore channel reads HTTP/1.1 answers itself', () => {
  const rng = new Prng('http-answer');
  const body = rng.bytes(3000);

  it('reads a Content-Length answer across every split, hands the body on as views, and stops at its end', () => {
    const head = Buffer.from(`HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\nContent-Length: ${body.length}\r\nDate: x\r\n\r\n`, 'latin1');
    const bytes = Buffer.concat([head, body, Buffer.from('HTTP/1.1 200 OK\r\n')]); // and the start of something else
    for (let cut = 0; cut <= head.length + 40; cut++) {
      const r = feed(bytes, [cut, cut + 7]);
      expect(r.head).to.deep.equal({ status: 200, keepAlive: true });
      expect(Buffer.concat(r.body).equals(body), `cut ${cut}`).to.equal(true);
      expect(r.ended).to.equal(1);
      expect(r.used, 'bytes after the answer are not its').to.equal(head.length + body.length);
    }
    // views, not copies
    const views: Buffer[] = [];
    const p = new AnswerParser({ head: () => undefined, body: (b) => views.push(b), end: () => undefined });
    const whole = Buffer.concat([head, body]);
    p.push(whole);
    expect(views.length).to.equal(1);
    expect(views[0].buffer).to.equal(whole.buffer);
  });

  it('reads a chunked answer with extensions and trailers across random splits', () => {
    const parts = [body.subarray(0, 1), body.subarray(1, 1000), body.subarray(1000, 3000)];
    const chunked = Buffer.concat([
      Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\nConnection: keep-alive\r\n\r\n', 'latin1'),
      ...parts.flatMap((p, i) => [Buffer.from(`${p.length.toString(16)}${i === 1 ? ';name=value' : ''}\r\n`), p, Buffer.from('\r\n')]),
      Buffer.from('0\r\nX-Trailer: 1\r\n\r\n'),
    ]);
    for (let k = 0; k < 300; k++) {
      const cuts = Array.from({ length: 1 + rng.int(6) }, () => rng.int(chunked.length)).sort((a, b) => a - b);
      const r = feed(chunked, cuts);
      expect(Buffer.concat(r.body).equals(body), `cuts ${cuts}`).to.equal(true);
      expect(r.ended).to.equal(1);
      expect(r.used).to.equal(chunked.length);
    }
  });

  it('knows when the connection may carry another request, and answers without a body', () => {
    expect(feed(Buffer.from('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n'), []).head).to.deep.equal({ status: 200, keepAlive: false });
    expect(feed(Buffer.from('HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n'), []).head).to.deep.equal({ status: 200, keepAlive: false });
    expect(feed(Buffer.from('HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n'), []).head).to.deep.equal({ status: 200, keepAlive: true });
    const r = feed(Buffer.from('HTTP/1.1 204 No Content\r\n\r\n'), []);
    expect(r.ended).to.equal(1);
    expect(r.body).to.deep.equal([]);
    const e = feed(Buffer.from('HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\n{"a"}'), []);
    expect(e.head?.status).to.equal(404);
    expect(Buffer.concat(e.body).toString()).to.equal('{"a"}');
  });

  it('refuses malformed answers with CAIRN_BOX_ERROR', () => {
    const cases: (string | Buffer)[] = [
      'HTTP/2 200 OK\r\n\r\n',
      'HTTP/1.1 20 OK\r\nContent-Length: 0\r\n\r\n',
      'ICY 200 OK\r\nContent-Length: 0\r\n\r\n',
      'HTTP/1.1 100 Continue\r\n\r\n',
      'HTTP/1.1 200 OK\r\n\r\n', // no length
      'HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n',
      'HTTP/1.1 200 OK\r\nno colon here\r\n\r\n',
      'HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n',
      'HTTP/1.1 200 OK\r\nX: a\0b\r\nContent-Length: 0\r\n\r\n',
      'HTTP/1.1 200 OK\r\n folded: x\r\n\r\n',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\n0\r\n\r\n',
      `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n${'0'.repeat(2000)}1\r\n`,
      `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n${'X: y\r\n'.repeat(4000)}\r\n`,
      `HTTP/1.1 200 OK\r\n${'X: y\r\n'.repeat(4000)}\r\n`,
      Buffer.alloc(20_000, 0x41),
    ];
    for (const c of cases) malformed(c);
    expect(malformed('HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n')).to.match(/both Content-Length and Transfer-Encoding/);
  });

  it('property: arbitrary bytes, and valid answers with bytes flipped, only ever end in CAIRN_BOX_ERROR', () => {
    const valid = Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n'), rng.bytes(16), Buffer.from('\r\n0\r\n\r\n')]);
    for (let k = 0; k < 2000; k++) {
      const b = k % 2 ? rng.bytes(1 + rng.int(300)) : Buffer.from(valid);
      if (k % 2 === 0) for (let f = 0; f < 1 + rng.int(3); f++) b[rng.int(b.length)] = rng.int(256);
      const p = new AnswerParser({ head: () => undefined, body: () => undefined, end: () => undefined });
      try {
        let at = 0;
        while (at < b.length && !p.done) {
          const n = Math.min(b.length - at, 1 + rng.int(40));
          expect(p.push(b.subarray(at, at + n))).to.be.at.most(n);
          at += n;
        }
      } catch (err) {
        expect(CairnError.is(err, 'CAIRN_BOX_ERROR'), String(err)).to.equal(true);
      }
    }
  });
});
