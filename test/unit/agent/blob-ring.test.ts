import { expect } from 'chai';
import fc from 'fast-check';
import { createRing, RingReader, RingWriter } from '../../../src/agent/blob-ring';

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
});
