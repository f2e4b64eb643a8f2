import { expect } from 'chai';
import fc from 'fast-check';
import { decodeCommit, decodeIdList, decodeUploadBatch, encodeCommit, encodeUploadBatch, FetchAnswerReader, sortUniqueIds } from '../../../src/core/api';
import { MAX_CHUNK_BLOB } from '../../../src/core/chunk-codec';
import { CairnError } from '../../../src/core/errors';
import { parseDuration, parseHostPort } from '../../../src/core/cli';

function onlyCairnErrors(fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(CairnError);
  }
}

describe('core/api codecs', () => {
  it('upload batches round-trip and reject truncation at every length', () => {
    const items = [{ id: Buffer.alloc(32, 1), blob: Buffer.alloc(70, 2) }, { id: Buffer.alloc(32, 3), blob: Buffer.alloc(5, 4) }];
    const body = Buffer.concat(encodeUploadBatch(items));
    const back = decodeUploadBatch(body);
    expect(back.map((b) => b.blob.length)).to.deep.equal([70, 5]);
    for (let n = 0; n < body.length; n++) {
      if (n === 32 + 4 + 70) continue; // a whole first frame is a valid batch
      expect(() => decodeUploadBatch(body.subarray(0, n))).to.throw(CairnError);
    }
  });

  it('FetchAnswerReader reads the same frames as decodeUploadBatch however the answer is split, each in a buffer of its own', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ maxLength: 300 })), { minLength: 1, maxLength: 6 }),
        fc.array(fc.integer({ min: 1, max: 97 }), { minLength: 1, maxLength: 20 }),
        (frames, cuts) => {
          const body = Buffer.concat(encodeUploadBatch(frames.map(([id, blob]) => ({ id: Buffer.from(id), blob: Buffer.from(blob) }))));
          const reader = new FetchAnswerReader();
          let at = 0;
          for (let i = 0; at < body.length; i++) {
            const n = cuts[i % cuts.length];
            reader.push(body.subarray(at, at + n));
            at += n;
          }
          const got = reader.end();
          expect(got.length).to.equal(frames.length);
          got.forEach((f, i) => {
            expect(f.byteOffset).to.equal(0);
            expect(f.subarray(0, 32).equals(Buffer.from(frames[i][0]))).to.equal(true);
            expect(f.subarray(32).equals(Buffer.from(frames[i][1]))).to.equal(true);
          });
        },
      ),
    );
  });

  it('FetchAnswerReader refuses truncated answers, oversized frames and extra frames', () => {
    const body = Buffer.concat(encodeUploadBatch([{ id: Buffer.alloc(32, 1), blob: Buffer.alloc(70, 2) }, { id: Buffer.alloc(32, 3), blob: Buffer.alloc(0) }]));
    for (let n = 1; n < body.length; n++) {
      if (n === 32 + 4 + 70) continue; // a whole first frame
      const r = new FetchAnswerReader();
      r.push(body.subarray(0, n));
      expect(() => r.end(), `cut at ${n}`).to.throw(CairnError, /truncated/);
    }
    const huge = Buffer.alloc(36);
    huge.writeUInt32LE(MAX_CHUNK_BLOB + 1, 32);
    expect(() => new FetchAnswerReader().push(huge)).to.throw(CairnError, /exceeds the chunk limit/);
    const extra = new FetchAnswerReader(1);
    expect(() => extra.push(body)).to.throw(CairnError, /more than the 1 chunks asked for/);
    const [a, b] = (() => {
      const r = new FetchAnswerReader(2);
      r.push(body);
      return r.end();
    })();
    expect(a.length).to.equal(32 + 70);
    expect(b.length).to.equal(32); // an empty blob: "fetch this one alone"
  });

  it('FetchAnswerReader with onFrame hands each frame over as soon as it is complete, in memory the allocator may lend again', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.uint8Array({ maxLength: 300 })), { minLength: 1, maxLength: 6 }),
        fc.array(fc.integer({ min: 1, max: 400 }), { minLength: 1, maxLength: 20 }),
        (frames, cuts) => {
          const body = Buffer.concat(encodeUploadBatch(frames.map(([id, blob]) => ({ id: Buffer.from(id), blob: Buffer.from(blob) }))));
          const shared = Buffer.alloc(400);
          const seen: Buffer[] = [];
          const reader = new FetchAnswerReader(frames.length, (n) => shared.subarray(0, n), (f) => {
            expect(f.buffer).to.equal(shared.buffer);
            seen.push(Buffer.from(f)); // copied: the next frame reuses the memory
          });
          let at = 0;
          for (let i = 0; at < body.length; i++) {
            const n = cuts[i % cuts.length];
            reader.push(body.subarray(at, at + n));
            at += n;
            expect(reader.count).to.equal(seen.length);
          }
          expect(reader.end()).to.deep.equal([]);
          expect(seen.length).to.equal(frames.length);
          seen.forEach((f, i) => expect(Buffer.concat([frames[i][0], frames[i][1]]).equals(f)).to.equal(true));
        },
      ),
    );
  });

  it('commits round-trip; malformed headers are rejected', () => {
    const refs = Buffer.alloc(64, 7);
    const c = { source: 'docs', host: 'pc', manifest: [{ id: 'a'.repeat(64), size: 10 }], stats: { files: 1, dirs: 0, bytes_scanned: 1, bytes_read: 1, bytes_new: 1, bytes_uploaded: 1, chunks_new: 1, duration_s: 0.1 } };
    const back = decodeCommit(Buffer.concat(encodeCommit(c, refs)));
    expect(back.commit).to.deep.equal(c);
    expect(back.refs.length).to.equal(64);
    const bad = [{ ...c, source: '' }, { ...c, manifest: [] }, { ...c, manifest: [{ id: 'zz', size: 1 }] }, { ...c, source: 'a\u0000b' }];
    for (const b of bad) expect(() => decodeCommit(Buffer.concat(encodeCommit(b, refs)))).to.throw(CairnError);
    expect(() => decodeCommit(Buffer.concat(encodeCommit(c, Buffer.alloc(33))))).to.throw(CairnError, /whole number/);
  });

  it('property: random bodies never crash any decoder', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (a) => {
      const b = Buffer.from(a);
      onlyCairnErrors(() => decodeUploadBatch(b));
      onlyCairnErrors(() => decodeCommit(b));
      onlyCairnErrors(() => decodeIdList(b, 4));
    }), { numRuns: 500 });
  });

  it('sortUniqueIds sorts and removes duplicates', () => {
    const ids = [Buffer.alloc(32, 3), Buffer.alloc(32, 1), Buffer.alloc(32, 3), Buffer.alloc(32, 2)];
    const out = sortUniqueIds(Buffer.concat(ids));
    expect(out.length).to.equal(96);
    expect([out[0], out[32], out[64]]).to.deep.equal([1, 2, 3]);
  });

  it('sortUniqueIds agrees with Buffer.compare on arbitrary ids (every byte value, shared prefixes, duplicates)', () => {
    fc.assert(fc.property(fc.array(fc.uint8Array({ minLength: 32, maxLength: 32 }), { maxLength: 60 }), fc.array(fc.nat(), { maxLength: 20 }), (raw, dupIdx) => {
      const ids = raw.map((a) => Buffer.from(a));
      // ids that differ only late, and ids repeated
      if (ids.length) ids.push(Buffer.concat([ids[0].subarray(0, 31), Buffer.from([ids[0][31] ^ 0x80])]));
      for (const d of dupIdx) if (ids.length) ids.push(ids[d % ids.length]);
      const want = [...new Map(ids.map((b) => [b.toString('hex'), b])).values()].sort(Buffer.compare);
      expect(sortUniqueIds(Buffer.concat(ids)).equals(Buffer.concat(want))).to.equal(true);
    }), { numRuns: 300 });
  });

  it('CLI value parsers reject nonsense', () => {
    expect(parseDuration('90s')).to.equal(90_000);
    expect(parseDuration('2h')).to.equal(7_200_000);
    for (const d of ['', 'abc', '-1h', '0s', '999d']) expect(() => parseDuration(d)).to.throw(CairnError);
    expect(parseHostPort('box.local:9000', 8443)).to.deep.equal({ host: 'box.local', port: 9000 });
    expect(parseHostPort('[::1]:1', 8443)).to.deep.equal({ host: '::1', port: 1 });
    expect(parseHostPort('10.0.0.2', 8443)).to.deep.equal({ host: '10.0.0.2', port: 8443 });
    for (const h of ['a:b', 'a:99999', 'a b', '']) expect(() => parseHostPort(h, 8443)).to.throw(CairnError);
  });
});
