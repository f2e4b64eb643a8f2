import { expect } from 'chai';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import sodium from 'sodium-native';
import { compress as lz4Compress } from 'lz4-napi';
import { CCtx, compressBound } from 'zstd-napi/binding';
import { chunkId } from '../../../src/core/chunk-id';
import { ChunkScratch, CHUNK_MAGIC, CHUNK_OVERHEAD, openChunk, parseChunkHeader, sealChunk, FLAG_LZ4, FLAG_MANIFEST, FLAG_ZSTD } from '../../../src/core/chunk-codec';
import { DataKeys } from '../../../src/core/keys';
import { deriveDataKeys } from '../../../src/core/keys';
import { CairnError } from '../../../src/core/errors';

const keys = deriveDataKeys(Buffer.alloc(32, 9), 'blake3');
const otherKeys = deriveDataKeys(Buffer.alloc(32, 10), 'blake3');

async function seal(plain: Buffer, kind: 'data' | 'manifest' = 'data') {
  const id = chunkId(keys, plain);
  return { id, blob: await sealChunk(keys, id, plain, kind) };
}

/** A blob built by hand, as an older cairn (version 1, LZ4) or a hostile agent (any payload) would: header, nonce, sealed payload. */
function handSealed(k: DataKeys, id: Buffer, version: number, flags: number, plainLength: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(12);
  CHUNK_MAGIC.copy(h, 0);
  h[4] = version;
  h[5] = flags;
  h.writeUInt32LE(plainLength, 8);
  const nonce = randomBytes(24);
  const c = Buffer.alloc(payload.length + 16);
  sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(c, payload, Buffer.concat([h, id]), null, nonce, flags & FLAG_MANIFEST ? k.manifestKey : k.chunkKey);
  return Buffer.concat([h, nonce, c]);
}

function zstdFrame(plain: Buffer): Buffer {
  const out = Buffer.alloc(compressBound(plain.length));
  return out.subarray(0, new CCtx().compress(out, plain, 1));
}

function expectRejected(fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(CairnError);
    expect((err as CairnError).code).to.match(/^CAIRN_CHUNK_/);
    return;
  }
  expect.fail('a corrupted chunk was accepted');
}

describe('core/chunk-codec', () => {
  it('round-trips compressible, incompressible, empty and manifest chunks', async () => {
    for (const [plain, kind] of [
      [Buffer.alloc(100_000, 'abc'), 'data'],
      [randomBytes(300_000), 'data'],
      [Buffer.alloc(0), 'data'],
      [Buffer.from('manifest bytes '.repeat(100)), 'manifest'],
    ] as const) {
      const { id, blob } = await seal(plain, kind);
      expect(openChunk(keys, id, blob).equals(plain)).to.equal(true);
    }
  });

  it('compresses (version 2, Zstandard) when it helps and keeps the raw payload when it does not', async () => {
    const text = await seal(Buffer.alloc(100_000, 'abc'));
    expect(parseChunkHeader(text.blob)).to.deep.include({ version: 2, flags: FLAG_ZSTD });
    expect(text.blob.length).to.be.lessThan(2000);
    const rnd = await seal(randomBytes(50_000));
    expect(parseChunkHeader(rnd.blob)).to.deep.include({ version: 2, flags: 0 });
    expect(rnd.blob.length).to.equal(50_000 + CHUNK_OVERHEAD);
    // A large chunk of already-compressed data is not even tried (the probe says no).
    const media = await seal(randomBytes(1_500_000));
    expect(parseChunkHeader(media.blob).flags).to.equal(0);
  });

  it('still reads version 1 blobs (LZ4 and raw) written by earlier versions', async () => {
    for (const plain of [Buffer.from('an old backup, compressible '.repeat(500)), randomBytes(3000)]) {
      const id = chunkId(keys, plain);
      const lz4 = handSealed(keys, id, 1, FLAG_LZ4, plain.length, await lz4Compress(plain));
      expect(openChunk(keys, id, lz4).equals(plain)).to.equal(true);
      const raw = handSealed(keys, id, 1, 0, plain.length, plain);
      expect(openChunk(keys, id, raw).equals(plain)).to.equal(true);
    }
  });

  it('rejects flags from the other version and hostile Zstandard frames, with no oversized output', async () => {
    const plain = Buffer.from('zstd frame content '.repeat(300));
    const id = chunkId(keys, plain);
    const frame = zstdFrame(plain);
    expect(openChunk(keys, id, handSealed(keys, id, 2, FLAG_ZSTD, plain.length, frame)).equals(plain)).to.equal(true);
    expectRejected(() => openChunk(keys, id, handSealed(keys, id, 1, FLAG_ZSTD, plain.length, frame)));
    expectRejected(() => openChunk(keys, id, handSealed(keys, id, 2, FLAG_LZ4, plain.length, frame)));
    // A frame that declares more (or less) than the header says: refused before decompressing.
    const bigger = Buffer.concat([plain, plain]);
    expectRejected(() => openChunk(keys, id, handSealed(keys, id, 2, FLAG_ZSTD, plain.length, zstdFrame(bigger))));
    const smaller = plain.subarray(0, 100);
    expectRejected(() => openChunk(keys, id, handSealed(keys, id, 2, FLAG_ZSTD, plain.length, Buffer.concat([zstdFrame(smaller), Buffer.alloc(64)]))));
    // Garbage that is no frame at all, and a truncated frame.
    expectRejected(() => openChunk(keys, id, handSealed(keys, id, 2, FLAG_ZSTD, plain.length, randomBytes(200))));
    expectRejected(() => openChunk(keys, id, handSealed(keys, id, 2, FLAG_ZSTD, plain.length, frame.subarray(0, frame.length - 5))));
  });

  it('opens into a reused scratch with the same result and the same checks', async () => {
    const scratch = new ChunkScratch();
    const plains = [randomBytes(300_000), Buffer.alloc(200_000, 'abc'), randomBytes(10), Buffer.alloc(3 * 1024 * 1024, 'xyz')];
    const sealed = await Promise.all(plains.map((p) => seal(p)));
    for (let round = 0; round < 2; round++) {
      sealed.forEach((s, i) => expect(openChunk(keys, s.id, s.blob, scratch).equals(plains[i])).to.equal(true));
    }
    const bad = Buffer.from(sealed[1].blob);
    bad[bad.length - 1] ^= 1;
    expect(() => openChunk(keys, sealed[1].id, bad, scratch)).to.throw(CairnError);
    expect(() => openChunk(keys, sealed[0].id, sealed[2].blob, scratch)).to.throw(CairnError);
    expect(openChunk(keys, sealed[3].id, sealed[3].blob, scratch).equals(plains[3])).to.equal(true);
  });

  it('opens in place with the same result and the same checks, never handing back unchecked bytes', async () => {
    const scratch = new ChunkScratch();
    const plains = [randomBytes(300_000), Buffer.alloc(200_000, 'abc'), randomBytes(10), Buffer.alloc(0)];
    for (const p of plains) {
      const s = await seal(p);
      const copy = Buffer.from(s.blob);
      expect(openChunk(keys, s.id, copy, scratch, true).equals(p)).to.equal(true);
      if (p.length >= 16) expect(copy.equals(s.blob), 'decrypted where it lay').to.equal(false);
    }
    // every flip (sampled) is still refused, also in a zstd-compressed chunk
    for (const p of [randomBytes(5000), Buffer.alloc(5000, 'zz')]) {
      const s = await seal(p);
      for (let i = 0; i < s.blob.length; i += 97) {
        const bad = Buffer.from(s.blob);
        bad[i] ^= 0x10;
        expectRejected(() => openChunk(keys, s.id, bad, scratch, true));
      }
      const wrongId = Buffer.from(s.id);
      wrongId[0] ^= 1;
      expectRejected(() => openChunk(keys, wrongId, Buffer.from(s.blob), scratch, true));
    }
  });

  it('uses a fresh random nonce: equal plaintexts give different ciphertexts', async () => {
    const p = Buffer.from('same content');
    expect((await seal(p)).blob.equals((await seal(p)).blob)).to.equal(false);
  });

  it('does not reveal the plaintext in the blob', async () => {
    const p = Buffer.from('A very recognisable plaintext sentence. '.repeat(50));
    const { blob } = await seal(p);
    expect(blob.includes(Buffer.from('recognisable'))).to.equal(false);
  });

  it('rejects every single-byte flip (compressed and raw chunks)', async () => {
    for (const plain of [Buffer.from('hello world, '.repeat(20)), randomBytes(200)]) {
      const { id, blob } = await seal(plain);
      for (let i = 0; i < blob.length; i++) {
        const bad = Buffer.from(blob);
        bad[i] ^= 1 << i % 8;
        expectRejected(() => openChunk(keys, id, bad));
      }
    }
  });

  it('rejects every truncation and an appended byte', async () => {
    const { id, blob } = await seal(randomBytes(300));
    for (let n = 0; n < blob.length; n++) expectRejected(() => openChunk(keys, id, blob.subarray(0, n)));
    expectRejected(() => openChunk(keys, id, Buffer.concat([blob, Buffer.from([0])])));
  });

  it('rejects a wrong id, a wrong key, and a blob moved to another id', async () => {
    const a = await seal(Buffer.from('chunk a'));
    const b = await seal(Buffer.from('chunk b'));
    expectRejected(() => openChunk(keys, b.id, a.blob));
    expectRejected(() => openChunk(otherKeys, a.id, a.blob));
    const wrongId = Buffer.from(a.id);
    wrongId[0] ^= 0xff;
    expectRejected(() => openChunk(keys, wrongId, a.blob));
  });

  it('rejects a validly encrypted blob whose content does not hash to its id', async () => {
    const plain = Buffer.from('real content');
    const fakeId = chunkId(keys, Buffer.from('other content'));
    const blob = await sealChunk(keys, fakeId, plain, 'data');
    try {
      openChunk(keys, fakeId, blob);
      expect.fail('accepted');
    } catch (err) {
      expect((err as CairnError).code).to.equal('CAIRN_CHUNK_ID_MISMATCH');
    }
  });

  it('property: random corruption of a random chunk is always detected', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 4000 }), fc.nat(), fc.integer({ min: 1, max: 255 }), async (arr, pos, x) => {
        const plain = Buffer.from(arr);
        const { id, blob } = await seal(plain);
        const bad = Buffer.from(blob);
        bad[pos % bad.length] ^= x;
        expectRejected(() => openChunk(keys, id, bad));
        expect(openChunk(keys, id, blob).equals(plain)).to.equal(true);
      }),
      { numRuns: 300 },
    );
  });

  it('property: arbitrary bytes never crash the header parser (only CairnError)', async () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (arr) => {
        try {
          parseChunkHeader(arr);
        } catch (err) {
          expect(err).to.be.instanceOf(CairnError);
        }
      }),
    );
  });
});
