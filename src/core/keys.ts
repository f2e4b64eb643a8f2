import { hkdfSync, timingSafeEqual } from 'node:crypto';

/**
 * Key hierarchy. The box's 32-byte master key never leaves the box (except sealed in escrow);
 * every other key is derived from it with HKDF-SHA-256 under a fixed label. The labels are
 * frozen: changing one orphans every chunk already stored.
 */
export const KEY_LABELS = {
  chunkId: 'cairn/v1/chunk-id',
  chunk: 'cairn/v1/chunk-encryption',
  manifest: 'cairn/v1/manifest-encryption',
  gear: 'cairn/v1/chunker-gear',
} as const;

/** The keys an agent needs to back up and restore; handed to it at pairing over the pinned channel. */
export interface DataKeys {
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

export function deriveDataKeys(master: Buffer): DataKeys {
  if (master.length !== 32) throw new Error('master key must be 32 bytes');
  return {
    idKey: derive(master, KEY_LABELS.chunkId),
    chunkKey: derive(master, KEY_LABELS.chunk),
    manifestKey: derive(master, KEY_LABELS.manifest),
    gearKey: derive(master, KEY_LABELS.gear),
  };
}

export interface DataKeysJson {
  idKey: string;
  chunkKey: string;
  manifestKey: string;
  gearKey: string;
}

export function dataKeysToJson(k: DataKeys): DataKeysJson {
  return {
    idKey: k.idKey.toString('base64'),
    chunkKey: k.chunkKey.toString('base64'),
    manifestKey: k.manifestKey.toString('base64'),
    gearKey: k.gearKey.toString('base64'),
  };
}

export function dataKeysFromJson(j: unknown): DataKeys {
  const o = j as Partial<Record<keyof DataKeysJson, unknown>>;
  const get = (name: keyof DataKeysJson): Buffer => {
    const v = o?.[name];
    if (typeof v !== 'string') throw new Error(`data key ${name} is missing`);
    const b = Buffer.from(v, 'base64');
    if (b.length !== 32) throw new Error(`data key ${name} has the wrong length`);
    return b;
  };
  return { idKey: get('idKey'), chunkKey: get('chunkKey'), manifestKey: get('manifestKey'), gearKey: get('gearKey') };
}

export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}
