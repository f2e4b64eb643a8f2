import type Sodium from 'sodium-native';
import type { uncompressSync as Lz4Uncompress } from 'lz4-napi';
import { CCtx, DCtx, compressBound, getFrameContentSize } from 'zstd-napi/binding';
import { chunkId, CHUNK_ID_BYTES } from './chunk-id';
import { constantTimeEqual, DataKeys } from './keys';
import { CairnError } from './errors';

/**
 * Chunk blob format. FROZEN once written: these bytes are on disks in the field; a change
 * needs a new version number, and readers keep reading every earlier version.
 *
 *   offset size
 *   0      4    magic "CRNC"
 *   4      1    version: 1 or 2
 *   5      1    flags: bit1 = manifest key; version 1: bit0 = payload is LZ4 (block, 4-byte LE
 *               size prefix); version 2: bit2 = payload is one Zstandard frame (with its
 *               content size)
 *   6      2    reserved, zero
 *   8      4    plaintext length, u32 LE
 *   12     24   XChaCha20-Poly1305 nonce (random)
 *   36     n+16 ciphertext of the payload, with its Poly1305 tag
 *
 * Associated data = the 12 header bytes || the 32-byte chunk id, so a blob cannot be passed
 * off under another id, version or flag set. After decryption the id is recomputed from the
 * plaintext and must match.
 *
 * Version 2 (written since 0.2) replaced LZ4 with Zstandard level 1: on the bench corpus its
 * output is 0.47 of the input against LZ4's 0.61, at the same speed (measured with
 * zstd-napi's context API, which compresses into a reused buffer). Version 1 blobs are read
 * as before.
 */
export const CHUNK_MAGIC = Buffer.from('CRNC', 'latin1');
/** the version written now */
export const CHUNK_VERSION = 2;
export const CHUNK_HEADER_BYTES = 12;
const NONCE_BYTES = 24;
const TAG_BYTES = 16;
export const CHUNK_OVERHEAD = CHUNK_HEADER_BYTES + NONCE_BYTES + TAG_BYTES;
/** version 1 only */
export const FLAG_LZ4 = 1;
export const FLAG_MANIFEST = 2;
/** version 2 only */
export const FLAG_ZSTD = 4;
const KNOWN_FLAGS: Record<number, number> = { 1: FLAG_LZ4 | FLAG_MANIFEST, 2: FLAG_ZSTD | FLAG_MANIFEST };
const ZSTD_LEVEL = 1;
/** Largest plaintext a chunk may hold (chunker max is 4 MiB; volume blocks up to 8 MiB). */
export const MAX_CHUNK_PLAINTEXT = 8 * 1024 * 1024;
/** Largest blob the store accepts: plaintext + LZ4 worst case (larger than Zstandard's) + overhead. */
export const MAX_CHUNK_BLOB = MAX_CHUNK_PLAINTEXT + Math.ceil(MAX_CHUNK_PLAINTEXT / 255) + 16 + 4 + CHUNK_OVERHEAD;

export type ChunkKind = 'data' | 'manifest';

/*
 * The native bindings load on first use: a command's main thread that never seals or opens a
 * chunk (a backup's: its workers do) skips the 28 ms libsodium takes to load, which it spent
 * while its workers were loading theirs on the same two cores. LZ4 only reads version 1 blobs.
 */
let sodiumLib: typeof Sodium | undefined;
function sodium(): typeof Sodium {
  return (sodiumLib ??= require('sodium-native') as typeof Sodium);
}
let lz4Uncompress: typeof Lz4Uncompress | undefined;
function uncompressSync(b: Buffer): Buffer {
  lz4Uncompress ??= (require('lz4-napi') as { uncompressSync: typeof Lz4Uncompress }).uncompressSync;
  return lz4Uncompress(b);
}

/**
 * Loads libsodium and makes this thread's compression context now (a chunk worker, before
 * its first job): loaded on first use, they cost the first chunk of a backup about 12 ms
 * (measured in a thread of its own; more while the other threads start too).
 */
export function preloadCodec(): void {
  sodium();
  cctx ??= new CCtx();
}

export interface SealOptions {
  /** try to compress (default true); the payload stays raw when compression does not shrink it */
  compress?: boolean;
  /** where the blob goes (default: a fresh unpooled buffer of exactly its size) */
  alloc?: (n: number) => Buffer;
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

/** Per-thread Zstandard contexts and the buffer compression writes into (reused: no allocation per chunk). */
let cctx: CCtx | undefined;
let dctx: DCtx | undefined;
let scratch: Buffer | undefined;

function compressInto(src: Uint8Array): Buffer {
  cctx ??= new CCtx();
  const need = compressBound(src.length);
  if (!scratch || scratch.length < need) scratch = Buffer.allocUnsafeSlow(Math.max(need, compressBound(4 * 1024 * 1024)));
  const n = cctx.compress(scratch, src, ZSTD_LEVEL);
  return scratch.subarray(0, n);
}

/**
 * Encrypts one chunk whose id the caller computed with chunkId(). Returns a fresh, unpooled
 * buffer of exactly the blob's size. (Asynchronous for its callers' sake: sealing used an
 * asynchronous compressor before version 2.)
 */
export async function sealChunk(keys: DataKeys, id: Uint8Array, plaintext: Uint8Array, kind: ChunkKind, opts: SealOptions = {}): Promise<Buffer> {
  return sealChunkSync(keys, id, plaintext, kind, opts);
}

export function sealChunkSync(keys: DataKeys, id: Uint8Array, plaintext: Uint8Array, kind: ChunkKind, opts: SealOptions = {}): Buffer {
  if (plaintext.length > MAX_CHUNK_PLAINTEXT) {
    throw new CairnError('CAIRN_CHUNK_TOO_LARGE', `chunk of ${plaintext.length} bytes exceeds the ${MAX_CHUNK_PLAINTEXT}-byte limit`);
  }
  let flags = kind === 'manifest' ? FLAG_MANIFEST : 0;
  let payload: Uint8Array = plaintext;
  if (opts.compress !== false && plaintext.length > 64 && worthCompressing(plaintext)) {
    const packed = compressInto(plaintext);
    if (packed.length < plaintext.length) {
      payload = packed;
      flags |= FLAG_ZSTD;
    }
  }
  return encryptPayload(keys, id, payload, flags, plaintext.length, opts.alloc);
}

const PROBE = 64 * 1024;

/**
 * Already-compressed data (media, archives) does not shrink, and the compressor spends about
 * as long failing on it as it does succeeding. A large chunk is compressed only when a 64 KiB
 * sample from its middle shrinks by at least 3%.
 */
function worthCompressing(plaintext: Uint8Array): boolean {
  if (plaintext.length < 4 * PROBE) return true;
  const mid = Math.floor(plaintext.length / 2) - PROBE / 2;
  return compressInto(plaintext.subarray(mid, mid + PROBE)).length < PROBE * 0.97;
}

function encryptPayload(keys: DataKeys, id: Uint8Array, payload: Uint8Array, flags: number, plainLength: number, alloc?: (n: number) => Buffer): Buffer {
  const h = header(flags, plainLength);
  const n = CHUNK_HEADER_BYTES + NONCE_BYTES + payload.length + TAG_BYTES;
  const out = alloc ? alloc(n) : Buffer.allocUnsafeSlow(n);
  h.copy(out, 0);
  const nonce = out.subarray(CHUNK_HEADER_BYTES, CHUNK_HEADER_BYTES + NONCE_BYTES);
  sodium().randombytes_buf(nonce);
  const ad = Buffer.concat([h, id]);
  sodium().crypto_aead_xchacha20poly1305_ietf_encrypt(
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
  const known = KNOWN_FLAGS[version];
  if (known === undefined) throw bad(`unknown format version ${version}`);
  const flags = b[5];
  if (flags & ~known) throw bad(`unknown flags 0x${flags.toString(16)} for version ${version}`);
  if (b[6] !== 0 || b[7] !== 0) throw bad('reserved bytes are not zero');
  const plainLength = b.readUInt32LE(8);
  if (plainLength > MAX_CHUNK_PLAINTEXT) throw bad(`declared length ${plainLength} exceeds the limit`);
  const payloadLength = blob.length - CHUNK_OVERHEAD;
  if (!(flags & (FLAG_LZ4 | FLAG_ZSTD)) && payloadLength !== plainLength) throw bad('payload length does not match the declared length');
  if (flags & FLAG_LZ4 && (payloadLength < 4 || payloadLength >= plainLength + 4 + Math.ceil(plainLength / 255) + 16)) {
    throw bad('compressed payload length is implausible');
  }
  if (flags & FLAG_ZSTD && (payloadLength < 9 || payloadLength > compressBound(plainLength))) {
    throw bad('compressed payload length is implausible');
  }
  return { version, flags, plainLength };
}

/**
 * Two buffers that openChunk may decrypt and decompress into instead of allocating per chunk.
 * Opening a chunk allocated two buffers of about its size, and threads that open chunk after
 * chunk (restore workers, the box's checks) then grew their malloc arenas far beyond what they
 * held live (measured on a 1 GB restore: about 60 MB of the agent's peak RSS).
 */
export class ChunkScratch {
  private a = Buffer.alloc(0);
  private b = Buffer.alloc(0);

  payload(n: number): Buffer {
    if (this.a.length < n) this.a = Buffer.allocUnsafeSlow(Math.max(n, MAX_CHUNK_BLOB));
    return this.a.subarray(0, n);
  }

  plain(n: number): Buffer {
    if (this.b.length < n) this.b = Buffer.allocUnsafeSlow(Math.max(n, MAX_CHUNK_PLAINTEXT));
    return this.b.subarray(0, n);
  }
}

/**
 * Decrypts and checks a chunk: header, tag (with id and header as associated data), length,
 * and finally that the keyed hash of the plaintext equals `id`. Any failure throws; no
 * unchecked byte is ever returned. With `scratch`, the plaintext returned lives in it and is
 * valid only until the next call with the same scratch. With `inPlace`, the blob is decrypted
 * where it lies (libsodium checks the tag before it writes a byte): the caller's blob is
 * destroyed, and one chunk-sized copy and buffer are saved.
 */
export function openChunk(keys: DataKeys, id: Uint8Array, blob: Uint8Array, scratch?: ChunkScratch, inPlace = false): Buffer {
  if (id.length !== CHUNK_ID_BYTES) throw new CairnError('CAIRN_CHUNK_ID_INVALID', 'chunk id must be 32 bytes');
  const hdr = parseChunkHeader(blob);
  const b = Buffer.from(blob.buffer, blob.byteOffset, blob.length);
  const h = b.subarray(0, CHUNK_HEADER_BYTES);
  const nonce = b.subarray(CHUNK_HEADER_BYTES, CHUNK_HEADER_BYTES + NONCE_BYTES);
  const cipher = b.subarray(CHUNK_HEADER_BYTES + NONCE_BYTES);
  const payloadLength = cipher.length - TAG_BYTES;
  const payload = inPlace ? cipher.subarray(0, payloadLength) : scratch ? scratch.payload(payloadLength) : Buffer.allocUnsafe(payloadLength);
  let ok = true;
  try {
    sodium().crypto_aead_xchacha20poly1305_ietf_decrypt(payload, null, cipher, Buffer.concat([h, id]), nonce, keyFor(keys, hdr.flags));
  } catch {
    ok = false;
  }
  if (!ok) throw new CairnError('CAIRN_CHUNK_TAG_MISMATCH', `chunk ${Buffer.from(id).toString('hex').slice(0, 16)}… failed authentication: it was altered, damaged, or sealed with another key`);
  let plain: Buffer;
  if (hdr.flags & FLAG_ZSTD) {
    // The frame must declare exactly the header's length; decompression writes into a buffer
    // of that size and no more, so a hostile frame cannot make this allocate or write past it.
    const bad = (): CairnError => new CairnError('CAIRN_CHUNK_HEADER_INVALID', 'compressed payload does not decompress to the declared length');
    let declared: number | null;
    try {
      declared = getFrameContentSize(payload);
    } catch {
      throw bad();
    }
    if (declared !== hdr.plainLength) throw bad();
    plain = scratch ? scratch.plain(hdr.plainLength) : Buffer.allocUnsafe(hdr.plainLength);
    dctx ??= new DCtx();
    let n: number;
    try {
      n = dctx.decompress(plain, payload);
    } catch {
      throw bad();
    }
    if (n !== hdr.plainLength) throw bad();
  } else if (hdr.flags & FLAG_LZ4) {
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
  if (!constantTimeEqual(chunkId(keys, plain), id)) {
    throw new CairnError('CAIRN_CHUNK_ID_MISMATCH', `chunk ${Buffer.from(id).toString('hex').slice(0, 16)}… decrypted but its content does not match its id`);
  }
  return plain;
}
