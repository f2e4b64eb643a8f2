import { DataDir } from './data-dir';
import { BoxIdentity, loadIdentity } from './identity';
import { Catalog } from './store/catalog';
import { LocalBlobStore } from './store/blob-store';
import { ChunkStore } from './store/chunk-store';
import { DataKeys, deriveDataKeys } from '../core/keys';
import fs from 'node:fs';
import { JobRunner } from './jobs/runner';
import { applyRetention } from './jobs/retention';
import { quarantine } from './jobs/verify';
import { Logger, silentLogger } from '../core/log';
import { CairnError, errorMessage } from '../core/errors';
import { createHardware, Hardware, HwProfile } from '../hw';
import { writeFileDurable } from './store/durable';
import type { StoreSpace } from './store/space';
import { PeerSpaces } from './secondary/peer-spaces';
import type { Replicator } from './secondary/replicator';
import path from 'node:path';

export const HW_PROFILE_NAMES: readonly HwProfile[] = ['linux', 'raspberry-pi', 'simulated'];

/** Non-secret box settings (config.json). */
export interface BoxConfig {
  format: 1;
  hw_profile: HwProfile;
  /** Second box for replication and escrow, set by the activation wizard; null: "later" (src/appliance/box-settings.ts). */
  secondary?: { address: string; token: string } | null;
  /** Versions kept per source unless the source has its own setting. */
  retention_default?: number;
}

export function readBoxConfig(dir: DataDir): BoxConfig {
  let c: Partial<BoxConfig> = {};
  try {
    c = JSON.parse(fs.readFileSync(dir.config, 'utf8')) as Partial<BoxConfig>;
  } catch {
    /* absent: defaults */
  }
  const env = process.env.CAIRN_HW_PROFILE;
  const profile = (env ?? c.hw_profile ?? 'linux') as HwProfile;
  if (!HW_PROFILE_NAMES.includes(profile)) throw new CairnError('CAIRN_USAGE', `hardware profile "${profile}" is not one of ${HW_PROFILE_NAMES.join(', ')}`);
  // Other settings pass through untouched (box-settings.ts validates what it writes).
  return { ...c, format: 1, hw_profile: profile };
}

export function writeBoxConfig(dir: DataDir, c: BoxConfig): void {
  writeFileDurable(dir.config, JSON.stringify(c, null, 2) + '\n', 0o644);
}

/** An opened box: identity, keys, catalog and chunk store over one data directory. Only `main` wires it. */
export class Box implements StoreSpace {
  readonly keys: DataKeys;
  readonly blobs: LocalBlobStore;
  readonly store: ChunkStore;
  readonly config: BoxConfig;
  /** Maintenance jobs (GC, verify), one at a time. */
  readonly jobs: JobRunner;
  /** The hardware layer when this process watches it (cairnd serve); undefined in one-shot admin commands. */
  hw: Hardware | undefined;
  /** Where jobs and retention log (cairnd serve sets its logger). */
  log: Logger = silentLogger;
  /** Primary with a secondary, inside `cairnd serve`: background replication (secondary/replicator.ts). */
  replicator: Replicator | undefined;
  private peerSpaces: PeerSpaces | undefined;

  /** A secondary's namespaces, one per primary it serves. */
  get peers(): PeerSpaces {
    if (this.identity.role !== 'secondary') throw new CairnError('CAIRN_ROLE_MISMATCH', 'only a secondary box holds other boxes\' data');
    this.peerSpaces ??= new PeerSpaces(this.dir.root, this.catalog, (err, chunks) => this.log.error('upload.write_failed', { chunks, err: errorMessage(err) }));
    return this.peerSpaces;
  }

  private constructor(readonly dir: DataDir, readonly identity: BoxIdentity, readonly catalog: Catalog) {
    this.keys = deriveDataKeys(identity.masterKey, identity.chunkIds);
    this.blobs = new LocalBlobStore(dir.chunks, dir.tmp);
    this.store = new ChunkStore(this.blobs, catalog, this.keys, dir.refs, dir.tmp);
    this.config = readBoxConfig(dir);
    this.jobs = new JobRunner(this);
    this.store.quarantine = async (id, reason) => {
      const bad = await quarantine(this, id, reason);
      this.log.error('check.quarantined', { chunk: bad.id, reason, snapshots: bad.snapshots.map((x) => x.id) });
    };
    this.store.onWriteBehindError = (err, chunks) => this.log.error('upload.write_failed', { chunks, err: errorMessage(err) });
    const catalogRef = catalog;
    this.store.afterCommit = (info) => {
      const src = catalogRef.listSources({ agentId: info.agent, source: info.source })[0];
      if (src) applyRetention(this.store, catalogRef, src.id, this.log);
    };
  }

  get quarantineDir(): string {
    return path.join(this.dir.root, 'quarantine');
  }

  /** Hardware status: from the watching instance, or a one-shot read. */
  async hardwareStatus(): Promise<unknown> {
    if (this.hw) return this.hw.status();
    const hw = createHardware({ profile: this.config.hw_profile, stateDir: this.dir.root });
    try {
      return await hw.status();
    } finally {
      hw.stop();
    }
  }

  static open(root: string): Box {
    const dir = new DataDir(root);
    const identity = loadIdentity(dir);
    return new Box(dir, identity, new Catalog(dir.catalog));
  }

  /** Waits for uploads written behind (ChunkStore.writeBehind), here and in a secondary's namespaces. */
  async settleWrites(): Promise<void> {
    await this.store.settle();
    for (const s of this.peerSpaces?.opened() ?? []) await s.store.settle();
  }

  close(): void {
    this.hw?.stop();
    this.peerSpaces?.close();
    this.blobs.closePacks();
    this.catalog.close();
  }
}
