import { expect } from 'chai';
import fc from 'fast-check';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { createRing, RingReader, RingWriter } from '../../../src/agent/blob-ring';
import { ChunkOut, WorkerPool } from '../../../src/agent/worker-pool';
import { openChunk } from '../../../src/core/chunk-codec';
import { deriveDataKeys } from '../../../src/core/keys';

type Slot = { off: number; end: number; freed: boolean };

describe('agent/blob-ring (sealed blobs in shared memory)', () => {
  it('property: blobs never overlap a blob still held, stay inside the ring, and any order of frees lets the writer go on', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 1, max: 600 }), fc.nat()), { minLength: 1, maxLength: 300 }),
        (ops) => {
          const cap = 2048;
          const shared = createRing(cap);
          const writer = new RingWriter(shared);
          const reader = new RingReader(shared);
          const held: { slot: Slot; buf: Buffer; fill: number }[] = [];
          let fill = 0;
          const freeOne = (pick: number): void => {
            const i = pick % held.length;
            const h = held.splice(i, 1)[0];
            // its bytes are intact until it is freed
            expect(h.buf.every((b) => b === h.fill)).to.equal(true);
            reader.free(h.slot);
          };
          for (const [n, pick] of ops) {
            const buf = writer.take(n, () => {
              // the writer can only wait for the reader: free something (as an upload would)
              expect(held.length, 'the writer waited with nothing held').to.be.greaterThan(0);
              freeOne(pick);
            });
            if (n > cap / 2) {
              expect(buf).to.equal(undefined);
              continue;
            }
            expect(buf).to.not.equal(undefined);
            const off = buf!.byteOffset;
            expect(off).to.be.at.least(0);
            expect(off + n).to.be.at.most(cap);
            for (const h of held) expect(off + n <= h.slot.off || off >= h.slot.end, 'overlap').to.equal(true);
            fill = (fill % 250) + 1;
            buf!.fill(fill);
            held.push({ slot: reader.seen(off, n).slot, buf: buf!, fill });
            if (pick % 3 === 0) freeOne(pick >> 2);
          }
          while (held.length) freeOne(0);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('a blob larger than half the ring is left to the caller', () => {
    const writer = new RingWriter(createRing(1000));
    expect(writer.take(501, () => undefined)).to.equal(undefined);
    expect(writer.take(500, () => undefined)?.length).to.equal(500);
  });

  it('in the real worker pool: blobs held for a while and released in any order stay intact, and files many times the ring go through', async function () {
    this.timeout(60_000);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-ring-'));
    const keys = deriveDataKeys(randomBytes(32), 'blake3');
    const pool = new WorkerPool(keys, { threads: 2 });
    try {
      const files = [0, 1].map((i) => {
        const p = path.join(dir, `f${i}`);
        fs.writeFileSync(p, randomBytes(24 * 1024 * 1024)); // three times a ring
        return p;
      });
      let checked = 0;
      let plain = 0;
      let inRing = 0;
      const held: Promise<void>[] = [];
      const hold = (c: ChunkOut): void => {
        if (c.ring) inRing++;
        held.push(
          new Promise<void>((resolve, reject) => {
            setTimeout(() => {
              try {
                plain += openChunk(keys, c.id, c.blob).length; // not overwritten while held
                checked++;
                pool.release(c);
                resolve();
              } catch (err) {
                reject(err);
              }
            }, Math.floor(Math.random() * 30));
          }),
        );
      };
      const results = await Promise.all(files.map((f) => pool.chunkFile(Buffer.from(f), 'data', hold)));
      await Promise.all(held);
      expect(results.map((r) => r.error)).to.deep.equal([undefined, undefined]);
      expect(plain).to.equal(48 * 1024 * 1024);
      expect(inRing, 'blobs were placed in the rings').to.be.greaterThan(checked / 2);
    } finally {
      await pool.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
