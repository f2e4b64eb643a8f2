import fs from 'node:fs';
import sodium from 'sodium-native';
import { CairnError, errnoCode } from '../core/errors';
import { parseRecoveryKey } from '../core/recovery-key';
import { DataDir } from './data-dir';
import { BoxIdentity, deriveEscrowKey } from './identity';
import { writeFileDurable } from './store/durable';
import { createHmac } from 'node:crypto';
import { ESCROW_ACCESS_LABEL } from '../core/peer-api';
import { IdScheme, isIdScheme } from '../core/keys';
import type { AgentRegistryRow } from './store/catalog';
import type { SecondaryLink } from './secondary/link';

/**
 * Escrow blob: the box's master key and configuration sealed with the escrow key, which is the
 * Argon2id derivation of the recovery key (identity.ts). Whoever holds the recovery key and
 * this blob can rebuild the box; nobody else learns anything from it. The box keeps the
 * derived escrow key (keys.json), never the recovery key, so it can reseal the blob whenever
 * its configuration changes.
 *
 * Format v1 (frozen: replication ships this file to the secondary, and an old blob must open
 * on a newer box):
 *   JSON { format: "cairn-escrow-v1", box_id, sealed_at,
 *          kdf: { alg: "argon2id13", opslimit, memlimit, salt },   salt base64 (16 bytes)
 *          nonce,                                                  base64, 24 bytes
 *          ciphertext }                                            base64
 *   ciphertext = XChaCha20-Poly1305(escrow key, nonce, plaintext, ad)
 *   ad         = "cairn-escrow-v1\n" + box_id + "\n" + salt (base64)
 *   plaintext  = JSON { box_id, name, role, master_key (base64), config, sealed_at }
 */
export const ESCROW_FORMAT_V1 = 'cairn-escrow-v1';
/**
 * Format v2 (secondary, continuity): same envelope and sealing as v1 under the name
 * "cairn-escrow-v2"; the plaintext adds what rebuilding a box needs so its agents carry on
 * without pairing again: tls_key_pem, tls_cert_pem, and when known the secondary link
 * (address, pin, this box's credential there), the agent registry (credential hashes) and
 * per-source retention. v1 blobs still open (those fields are then absent).
 */
export const ESCROW_FORMAT_V2 = 'cairn-escrow-v2';
/**
 * Format v3 (with BLAKE3 ids): v2 under the name "cairn-escrow-v3", whose plaintext adds chunk_ids, how the
 * box's store names chunks (keys.ts IdScheme): a box rebuilt from it must compute the same ids.
 * A v1 or v2 blob comes from a box older than BLAKE3 ids, whose store names chunks with HMAC-SHA-256.
 * A cairnd older than v3 refuses a v3 blob rather than rebuild a box with the wrong hash.
 */
export const ESCROW_FORMAT = 'cairn-escrow-v3';
type EscrowFormat = typeof ESCROW_FORMAT | typeof ESCROW_FORMAT_V2 | typeof ESCROW_FORMAT_V1;
const ESCROW_FORMATS: readonly string[] = [ESCROW_FORMAT, ESCROW_FORMAT_V2, ESCROW_FORMAT_V1];
const KDF_ALG = 'argon2id13';
const MAX_ESCROW_BYTES = 1024 * 1024;

export interface EscrowExtra {
  tls_key_pem?: string;
  tls_cert_pem?: string;
  secondary?: SecondaryLink | null;
  agents?: AgentRegistryRow[];
  sources?: { agent: string; name: string; keep: number }[];
}

export interface EscrowContents extends EscrowExtra {
  format: EscrowFormat;
  box_id: string;
  name: string;
  role: 'primary' | 'secondary';
  master_key: Buffer;
  /** hmac-sha256 for a v1 or v2 blob */
  chunk_ids: IdScheme;
  config: Record<string, unknown>;
  sealed_at: string;
}

interface EscrowEnvelope {
  format: EscrowFormat;
  box_id: string;
  sealed_at: string;
  kdf: { alg: typeof KDF_ALG; opslimit: number; memlimit: number; salt: string };
  nonce: string;
  ciphertext: string;
}

function associatedData(format: EscrowFormat, boxId: string, salt: string): Buffer {
  return Buffer.from(`${format}\n${boxId}\n${salt}`);
}

/** Seals the master key and config under the identity's escrow key. Pure apart from randomness. */
export function sealEscrow(identity: BoxIdentity, config: Record<string, unknown>, extra: EscrowExtra = {}, now = new Date()): string {
  const salt = identity.escrowSalt.toString('base64');
  const sealedAt = now.toISOString();
  const plaintext = Buffer.from(
    JSON.stringify({
      box_id: identity.boxId, name: identity.name, role: identity.role, master_key: identity.masterKey.toString('base64'), chunk_ids: identity.chunkIds, config, sealed_at: sealedAt,
      tls_key_pem: identity.tlsKeyPem, tls_cert_pem: identity.tlsCertPem, ...extra,
    }),
  );
  const nonce = Buffer.alloc(sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
  sodium.randombytes_buf(nonce);
  const ciphertext = Buffer.alloc(plaintext.length + sodium.crypto_aead_xchacha20poly1305_ietf_ABYTES);
  sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(ciphertext, plaintext, associatedData(ESCROW_FORMAT, identity.boxId, salt), null, nonce, identity.escrowKey);
  sodium.sodium_memzero(plaintext);
  const env: EscrowEnvelope = {
    format: ESCROW_FORMAT,
    box_id: identity.boxId,
    sealed_at: sealedAt,
    kdf: { alg: KDF_ALG, opslimit: sodium.crypto_pwhash_OPSLIMIT_INTERACTIVE, memlimit: sodium.crypto_pwhash_MEMLIMIT_INTERACTIVE, salt },
    nonce: nonce.toString('base64'),
    ciphertext: ciphertext.toString('base64'),
  };
  return JSON.stringify(env, null, 2) + '\n';
}

/** Writes (or replaces) the escrow file in the data directory: tmp, fsync, rename. */
export function writeEscrow(dir: DataDir, identity: BoxIdentity, config: Record<string, unknown>, extra: EscrowExtra = {}): string {
  const blob = sealEscrow(identity, config, extra);
  writeFileDurable(dir.escrow, blob, 0o600);
  return blob;
}

/** What proves knowledge of the recovery key to a secondary without revealing it: HMAC(escrow key, label). */
export function escrowAccess(escrowKey: Buffer): Buffer {
  return createHmac('sha256', escrowKey).update(ESCROW_ACCESS_LABEL).digest();
}

function invalid(why: string): CairnError {
  return new CairnError('CAIRN_ESCROW_INVALID', `escrow blob rejected: ${why}`);
}

function b64(v: unknown, what: string, len?: number): Buffer {
  if (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v)) throw invalid(`${what} is not base64`);
  const b = Buffer.from(v, 'base64');
  if (len !== undefined && b.length !== len) throw invalid(`${what} has ${b.length} bytes, expected ${len}`);
  return b;
}

/**
 * Opens an escrow blob with the recovery key as the user typed it (groups, dashes and case do
 * not matter). Throws CAIRN_RECOVERY_KEY_INVALID for a mistyped key (checksum) and
 * CAIRN_ESCROW_INVALID for a damaged blob or a key that does not open it.
 */
export function openEscrow(blob: string | Buffer, recoveryKey: string | { escrowKey: Buffer }): EscrowContents {
  if (blob.length > MAX_ESCROW_BYTES) throw invalid('it is larger than 1 MiB');
  let env: Partial<EscrowEnvelope>;
  try {
    env = JSON.parse(blob.toString()) as Partial<EscrowEnvelope>;
  } catch {
    throw invalid('it is not JSON');
  }
  if (!env || typeof env.format !== 'string' || !ESCROW_FORMATS.includes(env.format)) throw invalid(`unknown format ${JSON.stringify(env?.format)}`);
  const format = env.format;
  if (typeof env.box_id !== 'string' || !/^[0-9a-f]{16}$/.test(env.box_id)) throw invalid('bad box id');
  const kdf = env.kdf;
  // Only the limits cairnd writes are accepted: a blob must not make the opener burn memory.
  if (!kdf || kdf.alg !== KDF_ALG || kdf.opslimit !== sodium.crypto_pwhash_OPSLIMIT_INTERACTIVE || kdf.memlimit !== sodium.crypto_pwhash_MEMLIMIT_INTERACTIVE) {
    throw invalid('unsupported key derivation parameters');
  }
  const salt = b64(kdf.salt, 'salt', sodium.crypto_pwhash_SALTBYTES);
  const nonce = b64(env.nonce, 'nonce', sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
  const ciphertext = b64(env.ciphertext, 'ciphertext');
  if (ciphertext.length < sodium.crypto_aead_xchacha20poly1305_ietf_ABYTES) throw invalid('ciphertext is truncated');
  const key = typeof recoveryKey === 'string' ? deriveEscrowKey(parseRecoveryKey(recoveryKey), salt) : Buffer.from(recoveryKey.escrowKey);
  const plaintext = Buffer.alloc(ciphertext.length - sodium.crypto_aead_xchacha20poly1305_ietf_ABYTES);
  try {
    sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(plaintext, null, ciphertext, associatedData(format, env.box_id, kdf.salt), nonce, key);
  } catch {
    throw invalid('this recovery key does not open it (wrong key, or the blob was altered)');
  } finally {
    sodium.sodium_memzero(key);
  }
  const p = JSON.parse(plaintext.toString()) as Omit<EscrowContents, 'master_key' | 'chunk_ids'> & { master_key: string; chunk_ids?: unknown };
  sodium.sodium_memzero(plaintext);
  if (p.box_id !== env.box_id) throw invalid('box id inside does not match the envelope');
  const chunkIds = format === ESCROW_FORMAT ? p.chunk_ids : 'hmac-sha256';
  if (!isIdScheme(chunkIds)) throw invalid(`unknown chunk id scheme ${JSON.stringify(chunkIds)}`);
  return { ...p, format, master_key: b64(p.master_key, 'master key', 32), chunk_ids: chunkIds };
}

/** Reads and opens the escrow file of a data directory. */
export function openEscrowFile(file: string, recoveryKey: string): EscrowContents {
  let blob: Buffer;
  try {
    blob = fs.readFileSync(file);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') throw new CairnError('CAIRN_ESCROW_INVALID', `no escrow blob at ${file}`);
    throw err;
  }
  return openEscrow(blob, recoveryKey);
}
