import { expect } from 'chai';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { Chunker, ChunkerParams, DEFAULT_CHUNKER, WasmChunker } from '../../../src/core/chunker';
import { GEAR_WASM_BASE64 } from '../../../src/core/gear-wasm';
import { assembleGearWat } from '../../../scripts/gen-gear-wasm';
import { Prng } from '../../../scripts/lib/sample';

const KEY_A = Buffer.alloc(32, 1);
const KEY_B = Buffer.alloc(32, 2);

function boundaries(lengths: number[]): number[] {
  const out: number[] = [];
  let pos = 0;
  for (const l of lengths) out.push((pos += l));
  return out;
}

describe('core/chunker', () => {
  const data = new Prng('chunker-test').bytes(24 * 1024 * 1024);

  it('is deterministic for one key and differs between keys', () => {
    const a1 = new Chunker(KEY_A).split(data);
    const a2 = new Chunker(KEY_A).split(data);
    const b = new Chunker(KEY_B).split(data);
    expect(a1).to.deep.equal(a2);
    expect(a1).to.not.deep.equal(b);
  });

  it('holds its bounds and averages about 1 MiB', () => {
    const lengths = new Chunker(KEY_A).split(data);
    const { minSize, maxSize } = DEFAULT_CHUNKER;
    lengths.slice(0, -1).forEach((l) => expect(l).to.be.within(minSize, maxSize));
    expect(lengths[lengths.length - 1]).to.be.at.most(maxSize);
    const avg = data.length / lengths.length;
    expect(avg).to.be.within(700 * 1024, 1600 * 1024);
  });

  it('cuts at maxSize on data without boundaries (all zeros)', () => {
    const zeros = Buffer.alloc(10 * 1024 * 1024);
    const lengths = new Chunker(KEY_A).split(zeros);
    expect(lengths.slice(0, -1).every((l) => l === DEFAULT_CHUNKER.maxSize || l >= DEFAULT_CHUNKER.minSize)).to.equal(true);
    expect(lengths.reduce((a, b) => a + b, 0)).to.equal(zeros.length);
  });

  it('resynchronises after an insertion: boundaries after the edit are the same, shifted', () => {
    const c = new Chunker(KEY_A);
    const before = boundaries(c.split(data));
    const at = 5 * 1024 * 1024 + 12345;
    const insert = randomBytes(777);
    const edited = Buffer.concat([data.subarray(0, at), insert, data.subarray(at)]);
    const after = boundaries(c.split(edited));
    const shiftedAfter = new Set(after.filter((b) => b > at + insert.length).map((b) => b - insert.length));
    const beforeLate = before.filter((b) => b > at + 5 * 1024 * 1024);
    expect(beforeLate.length).to.be.greaterThan(5);
    beforeLate.forEach((b) => expect(shiftedAfter.has(b), `boundary ${b}`).to.equal(true));
    // boundaries before the edit are untouched
    before.filter((b) => b < at - 1).forEach((b) => expect(after).to.include(b));
  });

  it('gives the same cuts whatever the read sizes (streaming == whole buffer)', () => {
    const c = new Chunker(KEY_A);
    const whole = c.split(data.subarray(0, 12 * 1024 * 1024));
    // emulate a reader that sees the data through a window of maxSize + some bytes
    const input = data.subarray(0, 12 * 1024 * 1024);
    const streamed: number[] = [];
    let start = 0;
    let end = Math.min(input.length, DEFAULT_CHUNKER.maxSize + 1000);
    while (start < input.length) {
      const eof = end === input.length;
      const len = c.next(input, start, end, eof);
      if (len === 0) {
        end = Math.min(input.length, end + 300_000);
        continue;
      }
      streamed.push(len);
      start += len;
      end = Math.min(input.length, Math.max(end, start + DEFAULT_CHUNKER.maxSize + 1000));
    }
    expect(streamed).to.deep.equal(whole);
  });

  it('property: chunk lengths always sum to the input and stay in bounds (small bounds)', () => {
    const small = { minSize: 64, avgSize: 256, maxSize: 1024 };
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 20000 }), (arr) => {
        const lengths = new Chunker(KEY_A, small).split(arr);
        expect(lengths.reduce((a, b) => a + b, 0)).to.equal(arr.length);
        lengths.slice(0, -1).forEach((l) => expect(l).to.be.within(small.minSize, small.maxSize));
      }),
      { numRuns: 200 },
    );
  });

  it('rejects impossible bounds', () => {
    expect(() => new Chunker(KEY_A, { minSize: 10, avgSize: 5, maxSize: 20 })).to.throw(/invalid chunker bounds/);
  });

  describe('WasmChunker (the gear loop in WebAssembly)', () => {
    /** Streams `input` through a WasmChunker whose buffer holds `window` bytes, reading `step` bytes at a time. */
    function wasmSplit(input: Uint8Array, params: ChunkerParams, window: number, step: number, key = KEY_A): number[] {
      const c = new WasmChunker(key, window, params);
      const buf = c.buffer;
      const out: number[] = [];
      let taken = 0;
      let start = 0;
      let end = 0;
      for (;;) {
        const eof = taken === input.length;
        const len = start === end ? 0 : c.next(start, end, eof);
        if (len > 0) {
          out.push(len);
          start += len;
          continue;
        }
        if (eof) break;
        buf.copyWithin(0, start, end);
        end -= start;
        start = 0;
        const n = Math.min(step, window - end, input.length - taken);
        buf.set(input.subarray(taken, taken + n), end);
        end += n;
        taken += n;
      }
      return out;
    }

    it('cuts exactly where the JS chunker does, whatever the read sizes', () => {
      const input = data.subarray(0, 16 * 1024 * 1024);
      const reference = new Chunker(KEY_A).split(input);
      expect(wasmSplit(input, DEFAULT_CHUNKER, 16 * 1024 * 1024, 16 * 1024 * 1024)).to.deep.equal(reference);
      expect(wasmSplit(input, DEFAULT_CHUNKER, DEFAULT_CHUNKER.maxSize + 4096, 300_000)).to.deep.equal(reference);
      expect(wasmSplit(input, DEFAULT_CHUNKER, 16 * 1024 * 1024, 16 * 1024 * 1024, KEY_B)).to.deep.equal(new Chunker(KEY_B).split(input));
      const zeros = Buffer.alloc(9 * 1024 * 1024);
      expect(wasmSplit(zeros, DEFAULT_CHUNKER, 16 * 1024 * 1024, 1 << 20)).to.deep.equal(new Chunker(KEY_A).split(zeros));
    });

    it('property: same cuts as the JS chunker on any input (small bounds, odd reads)', () => {
      const small = { minSize: 64, avgSize: 256, maxSize: 1024 };
      fc.assert(
        fc.property(fc.uint8Array({ minLength: 0, maxLength: 20000 }), fc.integer({ min: 1, max: 3000 }), (arr, step) => {
          expect(wasmSplit(arr, small, small.maxSize + 512, step)).to.deep.equal(new Chunker(KEY_A, small).split(arr));
        }),
        { numRuns: 200 },
      );
    });

    it('runs the bytes assembled from src/core/gear.wat', async () => {
      const assembled = await assembleGearWat();
      expect(assembled.toString('base64'), 'gear-wasm.ts is stale: run node dist/scripts/gen-gear-wasm.js').to.equal(GEAR_WASM_BASE64);
    });
  });
});
