import { DataDir } from './data-dir';
import { BoxIdentity, loadIdentity } from './identity';
import { Catalog } from './store/catalog';
import { LocalBlobStore } from './store/blob-store';
import { ChunkStore } from './store/chunk-store';
import { DataKeys, deriveDataKeys } from '../core/keys';

/** An opened box: identity, keys, catalog and chunk store over one data directory. Only `main` wires it. */
export class Box {
  readonly keys: DataKeys;
  readonly blobs: LocalBlobStore;
  readonly store: ChunkStore;

  private constructor(readonly dir: DataDir, readonly identity: BoxIdentity, readonly catalog: Catalog) {
    this.keys = deriveDataKeys(identity.masterKey);
    this.blobs = new LocalBlobStore(dir.chunks, dir.tmp);
    this.store = new ChunkStore(this.blobs, catalog, this.keys, dir.refs, dir.tmp);
  }

  static open(root: string): Box {
    const dir = new DataDir(root);
    const identity = loadIdentity(dir);
    return new Box(dir, identity, new Catalog(dir.catalog));
  }

  close(): void {
    this.catalog.close();
  }
}
