import { AnyManifestStream, readAnyManifest } from '../../core/manifest';
import { SnapshotInfo } from '../../core/api';
import { ChunkFetcher } from '../restore';

/** The decrypted manifest bytes of a snapshot, one chunk fetched ahead (`ahead: false` for a header-only peek). */
export async function* manifestBytes(fetcher: ChunkFetcher, snap: SnapshotInfo, ahead = true): AsyncGenerator<Buffer> {
  let next: Promise<Buffer> | undefined;
  for (let i = 0; i < snap.manifest.length; i++) {
    const cur = next ?? fetcher.get(Buffer.from(snap.manifest[i].id, 'hex'));
    next = ahead && i + 1 < snap.manifest.length ? fetcher.get(Buffer.from(snap.manifest[i + 1].id, 'hex')) : undefined;
    next?.catch(() => undefined);
    yield await cur;
  }
}

/** Opens a snapshot's manifest of either kind; the CLI dispatches on `kind`. */
export function openAnyManifest(fetcher: ChunkFetcher, snap: SnapshotInfo, ahead = true): Promise<AnyManifestStream> {
  return readAnyManifest(manifestBytes(fetcher, snap, ahead));
}

/** Reads only as much of the manifest as its header needs (usually its first chunk). */
export async function manifestKind(fetcher: ChunkFetcher, snap: SnapshotInfo): Promise<'files' | 'volume'> {
  return (await openAnyManifest(fetcher, snap, false)).kind;
}
