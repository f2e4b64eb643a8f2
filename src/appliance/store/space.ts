import type { DataKeys } from '../../core/keys';
import type { Catalog } from './catalog';
import type { ChunkStore } from './chunk-store';
import type { LocalBlobStore } from './blob-store';

/**
 * One chunk namespace: a catalog, its chunk store and blob files. A primary box has one (its
 * own, with keys); a secondary has one per primary it serves, without keys (ciphertext only).
 * GC and verify work on either.
 */
export interface StoreSpace {
  readonly catalog: Catalog;
  readonly store: ChunkStore;
  readonly blobs: LocalBlobStore;
  /** null on a secondary's namespace */
  readonly keys: DataKeys | null;
  /** directory where verify moves bad blobs */
  readonly quarantineDir: string;
}
