import fs from 'node:fs';
import path from 'node:path';
import { CairnError } from '../../core/errors';
import { Catalog } from '../store/catalog';
import { LocalBlobStore } from '../store/blob-store';
import { ChunkStore } from '../store/chunk-store';
import type { StoreSpace } from '../store/space';

/**
 * A secondary's namespaces, one per primary it serves, under <data>/peers/<primary id>/:
 *
 *   catalog.db   that primary's agents (credential hashes only), snapshots, chunk rows + checksums
 *   chunks/      its ciphertext blobs, exactly as the primary or its agents sealed them
 *   refs/        per-snapshot sorted chunk ids (keyed ids: they reveal nothing)
 *   escrow.json  the primary's escrow blob (sealed with its recovery key; opaque here)
 *
 * No key of the primary is ever here in usable form: chunks are checked by structure and
 * checksum only, and the primary re-verifies every chunk with its keys when it pulls one back.
 */
export class PeerSpace implements StoreSpace {
  readonly catalog: Catalog;
  readonly blobs: LocalBlobStore;
  readonly store: ChunkStore;
  readonly keys = null;

  constructor(readonly primaryId: string, readonly root: string) {
    fs.mkdirSync(root, { recursive: true, mode: 0o700 });
    fs.mkdirSync(path.join(root, 'tmp'), { recursive: true, mode: 0o700 });
    this.catalog = new Catalog(path.join(root, 'catalog.db'));
    this.blobs = new LocalBlobStore(path.join(root, 'chunks'), path.join(root, 'tmp'));
    this.store = new ChunkStore(this.blobs, this.catalog, null, path.join(root, 'refs'), path.join(root, 'tmp'));
  }

  get quarantineDir(): string {
    return path.join(this.root, 'quarantine');
  }

  get escrowFile(): string {
    return path.join(this.root, 'escrow.json');
  }

  close(): void {
    this.blobs.closePacks();
    this.catalog.close();
  }
}

export class PeerSpaces {
  private readonly open = new Map<string, PeerSpace>();

  constructor(
    private readonly root: string,
    private readonly registry: Catalog,
    /** told when an agent's upload written behind fails (ChunkStore.onWriteBehindError) */
    private readonly onWriteBehindError?: (err: unknown, chunks: number) => void,
  ) {}

  dirOf(primaryId: string): string {
    if (!/^[0-9a-f]{16}$/.test(primaryId)) throw new CairnError('CAIRN_API_BAD_REQUEST', 'a primary box id is 16 lowercase hex characters');
    return path.join(this.root, 'peers', primaryId);
  }

  /** The namespace of a linked primary; unknown ids are refused (no namespace is created for them). */
  get(primaryId: string): PeerSpace {
    let s = this.open.get(primaryId);
    if (s) return s;
    if (!this.registry.getPeer(primaryId)) throw new CairnError('CAIRN_SECONDARY_NOT_LINKED', 'this secondary serves no primary box with that id');
    s = new PeerSpace(primaryId, this.dirOf(primaryId));
    s.blobs.cleanTmp();
    s.store.onWriteBehindError = this.onWriteBehindError;
    this.open.set(primaryId, s);
    return s;
  }

  /** The namespaces opened so far. */
  opened(): PeerSpace[] {
    return [...this.open.values()];
  }

  all(): PeerSpace[] {
    return this.registry.listPeers().map((p) => this.get(p.id));
  }

  close(): void {
    for (const s of this.open.values()) s.close();
    this.open.clear();
  }
}
