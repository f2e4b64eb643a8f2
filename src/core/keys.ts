import { hkdfSync, timingSafeEqual } from 'node:crypto';

/**
 * Key hierarchy. The box's 32-byte master key never leaves the box (except sealed in escrow);
 * every other key is derived from it with HKDF-SHA-256 under a fixed label. The labels are
 * frozen: changing one orphans every chunk already stored.
 */
export const KEY_LABELS = {
  chunkId: 'cairn/v1/chunk-id',
  chunkIdBlake3: 'cairn/v2/chunk-id-blake3',
  chunk: 'cairn/v1/chunk-encryption',
  manifest: 'cairn/v1/manifest-encryption',
  gear: 'cairn/v1/chunker-gear',
} as const;

/**
 * How a repository computes chunk ids (chunk-id.ts). Fixed for the life of a box's store: every
 * stored id, manifest and files cache depends on it.
 * - 'hmac-sha256': HMAC-SHA-256 under the key labelled cairn/v1/chunk-id. Boxes activated
 *   before BLAKE3 ids (keys file format 1, escrow v1/v2) keep it.
 * - 'blake3': keyed BLAKE3 (@napi-rs/blake-hash) under the key labelled
 *   cairn/v2/chunk-id-blake3. Boxes activated since (keys file format 2). On the bench host,
 *   whose CPU has SHA-256 instructions, 5.5 GB/s a core against HMAC-SHA-256's 1.7. Where the
 *   CPU has none (Intel desktop CPUs before 2021, the Raspberry Pi 4's Cortex-A72), SHA-256
 *   runs in software while BLAKE3 still uses SIMD (AVX2, NEON); not measured here.
 */
export type IdScheme = 'hmac-sha256' | 'blake3';
export const ID_SCHEMES: readonly IdScheme[] = ['hmac-sha256', 'blake3'];
/** what a box activated now uses */
export const DEFAULT_ID_SCHEME: IdScheme = 'blake3';

export function isIdScheme(v: unknown): v is IdScheme {
  return typeof v === 'string' && (ID_SCHEMES as readonly string[]).includes(v);
}

/** The keys an agent needs to back up and restore; handed to it at pairing over the pinned channel. */
export interface DataKeys {
  /** how idKey turns plaintext into a chunk id */
  idScheme: IdScheme;
  /** keyed hash of plaintext -> chunk id */
  idKey: Buffer;
  /** XChaCha20-Poly1305 key for data chunks */
  chunkKey: Buffer;
  /** XChaCha20-Poly1305 key for manifest chunks */
  manifestKey: Buffer;
  /** seeds the chunker's gear table, so boundaries do not fingerprint content */
  gearKey: Buffer;
}

const SALT = Buffer.from('cairn master key derivation v1');

function derive(master: Buffer, label: string): Buffer {
  return Buffer.from(hkdfSync('sha256', master, SALT, label, 32));
}

export function deriveDataKeys(master: Buffer, idScheme: IdScheme): DataKeys {
  if (master.length !== 32) throw new Error('master key must be 32 bytes');
  return {
    idScheme,
    idKey: derive(master, idScheme === 'blake3' ? KEY_LABELS.chunkIdBlake3 : KEY_LABELS.chunkId),
    chunkKey: derive(master, KEY_LABELS.chunk),
    manifestKey: derive(master, KEY_LABELS.manifest),
    gearKey: derive(master, KEY_LABELS.gear),
  };
}

/**
 * Data keys as JSON (pairing answer, agent config, worker start-up). The id key's field names
 * its scheme: `idKey` is an HMAC-SHA-256 key (the only field before BLAKE3 ids, so every older JSON
 * reads as before), `idKeyBlake3` a keyed-BLAKE3 key. Exactly one is present. An agent older
 * than BLAKE3 ids pairing with a BLAKE3 box finds no `idKey` and refuses the keys, instead of
 * computing ids the box would reject.
 */
export interface DataKeysJson {
  idKey?: string;
  idKeyBlake3?: string;
  chunkKey: string;
  manifestKey: string;
  gearKey: string;
}

export function dataKeysToJson(k: DataKeys): DataKeysJson {
  const id = k.idKey.toString('base64');
  return {
    ...(k.idScheme === 'blake3' ? { idKeyBlake3: id } : { idKey: id }),
    chunkKey: k.chunkKey.toString('base64'),
    manifestKey: k.manifestKey.toString('base64'),
    gearKey: k.gearKey.toString('base64'),
  };
}

export function dataKeysFromJson(j: unknown): DataKeys {
  const o = j as Partial<Record<keyof DataKeysJson, unknown>> | undefined;
  const get = (name: keyof DataKeysJson): Buffer => {
    const v = o?.[name];
    if (typeof v !== 'string') throw new Error(`data key ${name} is missing`);
    const b = Buffer.from(v, 'base64');
    if (b.length !== 32) throw new Error(`data key ${name} has the wrong length`);
    return b;
  };
  const hasHmac = o?.idKey !== undefined;
  const hasBlake3 = o?.idKeyBlake3 !== undefined;
  if (hasHmac && hasBlake3) throw new Error('data keys hold two chunk id keys (idKey and idKeyBlake3)');
  const idScheme: IdScheme = hasBlake3 ? 'blake3' : 'hmac-sha256';
  return { idScheme, idKey: get(hasBlake3 ? 'idKeyBlake3' : 'idKey'), chunkKey: get('chunkKey'), manifestKey: get('manifestKey'), gearKey: get('gearKey') };
}

export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
