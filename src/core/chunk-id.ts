import { createHmac } from 'node:crypto';
import { CairnError } from './errors';

/** A chunk id is HMAC-SHA-256(idKey, plaintext): equal content dedups, the id reveals nothing without the key. */
export const CHUNK_ID_BYTES = 32;

export function chunkId(idKey: Buffer, plaintext: Uint8Array): Buffer {
  return createHmac('sha256', idKey).update(plaintext).digest();
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
