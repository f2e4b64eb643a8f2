import sodium from 'sodium-native';
import { compress, uncompressSync } from 'lz4-napi';
import { chunkId, CHUNK_ID_BYTES } from './chunk-id';
import { constantTimeEqual, DataKeys } from './keys';
import { CairnError } from './errors';

/**
 * Chunk blob format, version 1. FROZEN: these bytes are on disks in the field; a change
 * needs a new version number, and readers keep reading version 1.
 *
 *   offset size
 *   0      4    magic "CRNC"
 *   4      1    version = 1
 *   5      1    flags: bit0 = payload is LZ4 (block, 4-byte LE size prefix), bit1 = manifest key
 *   6      2    reserved, zero
 *   8      4    plaintext length, u32 LE
 *   12     24   XChaCha20-Poly1305 nonce (random)
 *   36     n+16 ciphertext of the payload, with its Poly1305 tag
 *
 * Associated data = the 12 header bytes || the 32-byte chunk id, so a blob cannot be passed
 * off under another id, version or flag set. After decryption the id is recomputed from the
 * plaintext and must match.
 */
export const CHUNK_MAGIC = Buffer.from('CRNC', 'latin1');
export const CHUNK_VERSION = 1;
export const CHUNK_HEADER_BYTES = 12;
const NONCE_BYTES = 24;
const TAG_BYTES = 16;
export const CHUNK_OVERHEAD = CHUNK_HEADER_BYTES + NONCE_BYTES + TAG_BYTES;
export const FLAG_LZ4 = 1;
export const FLAG_MANIFEST = 2;
const KNOWN_FLAGS = FLAG_LZ4 | FLAG_MANIFEST;
/** Largest plaintext a chunk may hold (chunker max is 4 MiB; volume blocks up to 8 MiB). */
export const MAX_CHUNK_PLAINTEXT = 8 * 1024 * 1024;
/** Largest blob the store accepts: plaintext + LZ4 worst case + overhead. */
export const MAX_CHUNK_BLOB = MAX_CHUNK_PLAINTEXT + Math.ceil(MAX_CHUNK_PLAINTEXT / 255) + 16 + 4 + CHUNK_OVERHEAD;

export type ChunkKind = 'data' | 'manifest';

export interface SealOptions {
  /** try LZ4 (default true); the payload stays raw when compression does not shrink it */
  compress?: boolean;
}

function header(flags: number, plainLength: number): Buffer {
  const h = Buffer.alloc(CHUNK_HEADER_BYTES);
  CHUNK_MAGIC.copy(h, 0);
  h[4] = CHUNK_VERSION;
  h[5] = flags;
  h.writeUInt32LE(plainLength, 8);
  return h;
}

function keyFor(keys: DataKeys, flags: number): Buffer {
  return flags & FLAG_MANIFEST ? keys.manifestKey : keys.chunkKey;
}

/**
 * Encrypts one chunk whose id the caller computed with chunkId(). Returns a fresh, unpooled
 * buffer. Asynchronous because lz4-napi's compressSync leaks its output (measured: 2.4 GB RSS
 * after 3,000 1 MiB chunks, with forced GCs) while its async compress does not.
 */
export async function sealChunk(keys: DataKeys, id: Uint8Array, plaintext: Uint8Array, kind: ChunkKind, opts: SealOptions = {}): Promise<Buffer> {
  if (plaintext.length > MAX_CHUNK_PLAINTEXT) {
    throw new CairnError('CAIRN_CHUNK_TOO_LARGE', `chunk of ${plaintext.length} bytes exceeds the ${MAX_CHUNK_PLAINTEXT}-byte limit`);
  }
  let flags = kind === 'manifest' ? FLAG_MANIFEST : 0;
  let payload: Uint8Array = plaintext;
  if (opts.compress !== false && plaintext.length > 64 && (await worthCompressing(plaintext))) {
    const packed = await compress(Buffer.from(plaintext.buffer, plaintext.byteOffset, plaintext.length));
    if (packed.length < plaintext.length) {
      payload = packed;
      flags |= FLAG_LZ4;
    }
  }
  return encryptPayload(keys, id, payload, flags, plaintext.length);
}

const PROBE = 64 * 1024;

/**
 * Already-compressed data (media, archives) does not shrink, and LZ4 spends about as long
 * failing on it as it does succeeding. A large chunk is compressed only when a 64 KiB sample
 * from its middle shrinks by at least 3%.
 */
async function worthCompressing(plaintext: Uint8Array): Promise<boolean> {
  if (plaintext.length < 4 * PROBE) return true;
  const mid = Math.floor(plaintext.length / 2) - PROBE / 2;
  const sample = Buffer.from(plaintext.buffer, plaintext.byteOffset + mid, PROBE);
  const packed = await compress(sample);
  return packed.length < PROBE * 0.97;
}

function encryptPayload(keys: DataKeys, id: Uint8Array, payload: Uint8Array, flags: number, plainLength: number): Buffer {
  const h = header(flags, plainLength);
  const out = Buffer.allocUnsafeSlow(CHUNK_HEADER_BYTES + NONCE_BYTES + payload.length + TAG_BYTES);
  h.copy(out, 0);
  const nonce = out.subarray(CHUNK_HEADER_BYTES, CHUNK_HEADER_BYTES + NONCE_BYTES);
  sodium.randombytes_buf(nonce);
  const ad = Buffer.concat([h, id]);
  sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(
    out.subarray(CHUNK_HEADER_BYTES + NONCE_BYTES), payload, ad, null, nonce, keyFor(keys, flags));
  return out;
}

export interface ChunkHeader {
  version: number;
  flags: number;
  plainLength: number;
}

/** Checks the header only (what a box without keys can check). Throws CAIRN_CHUNK_HEADER_INVALID. */
export function parseChunkHeader(blob: Uint8Array): ChunkHeader {
  const bad = (why: string): CairnError => new CairnError('CAIRN_CHUNK_HEADER_INVALID', `chunk blob rejected: ${why}`);
  if (blob.length < CHUNK_OVERHEAD) throw bad(`only ${blob.length} bytes, shorter than any valid chunk`);
  if (blob.length > MAX_CHUNK_BLOB) throw new CairnError('CAIRN_CHUNK_TOO_LARGE', `chunk blob of ${blob.length} bytes exceeds the ${MAX_CHUNK_BLOB}-byte limit`);
  const b = Buffer.from(blob.buffer, blob.byteOffset, blob.length);
  if (!b.subarray(0, 4).equals(CHUNK_MAGIC)) throw bad('wrong magic (not a Cairn chunk)');
  const version = b[4];
  if (version !== CHUNK_VERSION) throw bad(`unknown format version ${version}`);
  const flags = b[5];
  if (flags & ~KNOWN_FLAGS) throw bad(`unknown flags 0x${flags.toString(16)}`);
  if (b[6] !== 0 || b[7] !== 0) throw bad('reserved bytes are not zero');
  const plainLength = b.readUInt32LE(8);
  if (plainLength > MAX_CHUNK_PLAINTEXT) throw bad(`declared length ${plainLength} exceeds the limit`);
  const payloadLength = blob.length - CHUNK_OVERHEAD;
  if (!(flags & FLAG_LZ4) && payloadLength !== plainLength) throw bad('payload length does not match the declared length');
  if (flags & FLAG_LZ4 && (payloadLength < 4 || payloadLength >= plainLength + 4 + Math.ceil(plainLength / 255) + 16)) {
    throw bad('compressed payload length is implausible');
  }
  return { version, flags, plainLength };
}

/**
 * Decrypts and checks a chunk: header, tag (with id and header as associated data), length,
 * and finally that the keyed hash of the plaintext equals `id`. Any failure throws; no
 * unchecked byte is ever returned.
 */
export function openChunk(keys: DataKeys, id: Uint8Array, blob: Uint8Array): Buffer {
  if (id.length !== CHUNK_ID_BYTES) throw new CairnError('CAIRN_CHUNK_ID_INVALID', 'chunk id must be 32 bytes');
  const hdr = parseChunkHeader(blob);
  const b = Buffer.from(blob.buffer, blob.byteOffset, blob.length);
  const h = b.subarray(0, CHUNK_HEADER_BYTES);
  const nonce = b.subarray(CHUNK_HEADER_BYTES, CHUNK_HEADER_BYTES + NONCE_BYTES);
  const cipher = b.subarray(CHUNK_HEADER_BYTES + NONCE_BYTES);
  const payload = Buffer.allocUnsafe(cipher.length - TAG_BYTES);
  let ok = true;
  try {
    sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(payload, null, cipher, Buffer.concat([h, id]), nonce, keyFor(keys, hdr.flags));
  } catch {
    ok = false;
  }
  if (!ok) throw new CairnError('CAIRN_CHUNK_TAG_MISMATCH', `chunk ${Buffer.from(id).toString('hex').slice(0, 16)}… failed authentication: it was altered, damaged, or sealed with another key`);
  let plain: Buffer;
  if (hdr.flags & FLAG_LZ4) {
    if (payload.readUInt32LE(0) !== hdr.plainLength) {
      throw new CairnError('CAIRN_CHUNK_HEADER_INVALID', 'compressed payload length prefix does not match the header');
    }
    try {
      plain = uncompressSync(payload);
    } catch {
      throw new CairnError('CAIRN_CHUNK_HEADER_INVALID', 'compressed payload does not decompress');
    }
  } else {
    plain = payload;
  }
  if (plain.length !== hdr.plainLength) throw new CairnError('CAIRN_CHUNK_HEADER_INVALID', 'plaintext length does not match the header');
  if (!constantTimeEqual(chunkId(keys.idKey, plain), id)) {
    throw new CairnError('CAIRN_CHUNK_ID_MISMATCH', `chunk ${Buffer.from(id).toString('hex').slice(0, 16)}… decrypted but its content does not match its id`);
  }
  return plain;
}
