import { createHmac } from 'node:crypto';
import type { Blake3Hasher } from '@napi-rs/blake-hash';
import { CairnError, errorMessage } from './errors';
import type { DataKeys } from './keys';

/**
 * A chunk id is a keyed hash of the plaintext under the repository's id key: equal content
 * dedups, the id reveals nothing without the key. Which hash is the repository's id scheme
 * (keys.ts, IdScheme): HMAC-SHA-256 for boxes activated before keys file format 2, keyed BLAKE3 (32-byte
 * output) since.
 */
export const CHUNK_ID_BYTES = 32;

export type IdKeys = Pick<DataKeys, 'idScheme' | 'idKey'>;

type Blake3Module = { Blake3Hasher: typeof Blake3Hasher };
let blake3Module: Blake3Module | undefined;

/** The BLAKE3 binding, loaded on first use (a box or agent on an HMAC-SHA-256 store never loads it). */
function blake3(): Blake3Module {
  if (!blake3Module) {
    try {
      blake3Module = require('@napi-rs/blake-hash') as Blake3Module;
    } catch (err) {
      throw new CairnError('CAIRN_BLAKE3_UNAVAILABLE', `this box's store names chunks with BLAKE3, and the BLAKE3 module (@napi-rs/blake-hash) does not load on ${process.platform}-${process.arch}: ${errorMessage(err)}`);
    }
  }
  return blake3Module;
}

/**
 * Loads the BLAKE3 binding now if it loads at all (a chunk worker, before its first job, so
 * the first chunk does not wait for it). A failure is left for chunkId to report, which only
 * a store with BLAKE3 ids calls for.
 */
export function preloadChunkIdHasher(): void {
  try {
    blake3();
  } catch {
    /* reported by chunkId when a BLAKE3 store needs it */
  }
}

/**
 * One keyed hasher per thread, reset after each id (creating one per chunk cost 13 µs; a 1 GB
 * backup has 20,000 chunks). Kept for the last key seen: a process holds one box's keys.
 */
let keyed: { key: Buffer; hasher: Blake3Hasher } | undefined;

export function chunkId(keys: IdKeys, plaintext: Uint8Array): Buffer {
  if (keys.idScheme === 'hmac-sha256') return createHmac('sha256', keys.idKey).update(plaintext).digest();
  if (!keyed || !keyed.key.equals(keys.idKey)) {
    const key = Buffer.from(keys.idKey);
    keyed = { key, hasher: blake3().Blake3Hasher.newKeyed(key) };
  }
  const h = keyed.hasher;
  try {
    h.update(Buffer.isBuffer(plaintext) ? plaintext : Buffer.from(plaintext.buffer, plaintext.byteOffset, plaintext.byteLength));
    return h.digestBuffer();
  } finally {
    h.reset();
  }
}

const HEX_ID = /^[0-9a-f]{64}$/;

export function isChunkIdHex(s: string): boolean {
  return HEX_ID.test(s);
}

export function parseChunkIdHex(s: string): Buffer {
  if (!isChunkIdHex(s)) {
    throw new CairnError('CAIRN_CHUNK_ID_INVALID', `"${s.slice(0, 80)}" is not a chunk id (64 lowercase hex characters)`);
  }
  return Buffer.from(s, 'hex');
}
