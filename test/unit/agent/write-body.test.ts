import { expect } from 'chai';
import type http from 'node:http';
import { randomBytes } from 'node:crypto';
import { writeBody } from '../../../src/agent/box-client';

/** A request that records its writes and answers each one only when the test says so. */
class FakeRequest {
  readonly writes: Buffer[] = [];
  ended: Buffer | undefined | null = null;
  pending: ((err?: Error | null) => void) | undefined;

  write(chunk: Buffer, cb: (err?: Error | null) => void): boolean {
    expect(this.pending, 'a write before the last one was handed on').to.equal(undefined);
    expect(this.ended, 'a write after end').to.equal(null);
    this.writes.push(chunk);
    this.pending = cb;
    return true;
  }

  end(chunk?: Buffer): this {
    expect(this.pending, 'end before the last write was handed on').to.equal(undefined);
    this.ended = chunk;
    return this;
  }

  /** answers the pending write; returns false when nothing was pending */
  flush(err?: Error): boolean {
    const cb = this.pending;
    if (!cb) return false;
    this.pending = undefined;
    cb(err ?? null);
    return true;
  }

  /** answers writes until the body has ended */
  drain(): Buffer[] {
    while (this.flush());
    const all = [...this.writes];
    if (this.ended) all.push(this.ended);
    return all;
  }
}

const asReq = (f: FakeRequest): Pick<http.ClientRequest, 'write' | 'end'> => f as unknown as Pick<http.ClientRequest, 'write' | 'end'>;

/** an upload body as encodeUploadBatch lays it out: a 36-byte head before each blob */
function uploadParts(sizes: number[]): Buffer[] {
  return sizes.flatMap((n) => [randomBytes(36), randomBytes(n)]);
}

describe('agent: writing a request body in parts', () => {
  it('writes each large part alone (the same buffer, not a copy) and joins runs of small ones, one write at a time', () => {
    const parts = uploadParts([3000, 2 * 1024 * 1024, 100, 70 * 1024, 5, 4 * 1024 * 1024]);
    const req = new FakeRequest();
    writeBody(asReq(req), parts);
    expect(req.writes.length, 'only the first write before it was answered').to.equal(1);
    const out = req.drain();
    expect(Buffer.concat(out).equals(Buffer.concat(parts)), 'the body, byte for byte').to.equal(true);
    for (const p of parts.filter((x) => x.length >= 64 * 1024)) {
      expect(out.some((w) => w === p), `the ${p.length}-byte part went out as it is`).to.equal(true);
    }
    // heads and small blobs: joined, never a 36-byte write of their own between two large parts
    expect(out.map((w) => w.length)).to.deep.equal([36 + 3000 + 36, 2 * 1024 * 1024, 36 + 100 + 36, 70 * 1024, 36 + 5 + 36, 4 * 1024 * 1024]);
  });

  it('joins a long run of small parts into writes of at least 64 KiB', () => {
    const parts = uploadParts(Array.from({ length: 2000 }, (_, i) => 500 + (i % 300)));
    const req = new FakeRequest();
    writeBody(asReq(req), parts);
    const out = req.drain();
    expect(Buffer.concat(out).equals(Buffer.concat(parts))).to.equal(true);
    expect(out.length).to.be.lessThan(40);
    for (const w of out.slice(0, -1)) expect(w.length).to.be.at.least(64 * 1024);
  });

  it('ends at once with no body, or with the only part', () => {
    const empty = new FakeRequest();
    writeBody(asReq(empty), []);
    expect(empty.writes).to.deep.equal([]);
    expect(empty.ended).to.equal(undefined);
    const one = new FakeRequest();
    const body = randomBytes(1 << 20);
    writeBody(asReq(one), [body]);
    expect(one.writes).to.deep.equal([]);
    expect(one.ended).to.equal(body);
  });

  it('stops writing when a write fails (the request reports the error)', () => {
    const req = new FakeRequest();
    writeBody(asReq(req), uploadParts([1 << 20, 1 << 20, 1 << 20]));
    expect(req.writes.length).to.equal(1);
    req.flush(new Error('socket closed'));
    expect(req.writes.length, 'no write after the failed one').to.equal(1);
    expect(req.ended).to.equal(null);
  });
});
