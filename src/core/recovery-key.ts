import { createHash, randomBytes } from 'node:crypto';
import { base32Decode, base32Encode } from './base32';
import { CairnError } from './errors';

/**
 * Recovery key: 160 random bits, shown once at activation as eight groups of four
 * Crockford base32 characters plus a four-character checksum group. With 160 bits of
 * entropy the key cannot be guessed, so the Argon2id step that turns it into the escrow key
 * can use interactive limits and still run on a Pi.
 */
const KEY_BYTES = 20;

function checksum(raw: Buffer): string {
  return base32Encode(createHash('sha256').update('cairn recovery key').update(raw).digest().subarray(0, 3)).slice(0, 4);
}

export function newRecoveryKey(): { text: string; raw: Buffer } {
  const raw = randomBytes(KEY_BYTES);
  return { text: formatRecoveryKey(raw), raw };
}

export function formatRecoveryKey(raw: Buffer): string {
  const chars = base32Encode(raw) + checksum(raw);
  return chars.match(/.{4}/g)!.join('-');
}

export function parseRecoveryKey(text: string): Buffer {
  const chars = text.replace(/[\s-]/g, '').toUpperCase();
  const bad = (why: string): CairnError => new CairnError('CAIRN_RECOVERY_KEY_INVALID', `recovery key rejected: ${why}; type it again as printed at activation`);
  if (chars.length !== 36) throw bad(`expected 36 characters in 9 groups, got ${chars.length}`);
  const raw = base32Decode(chars.slice(0, 32), KEY_BYTES);
  if (!raw) throw bad('a character is outside 0-9 A-Z');
  if (checksum(raw) !== chars.slice(32).replace(/O/g, '0').replace(/[IL]/g, '1')) throw bad('checksum mismatch: probably a typo');
  return raw;
}
