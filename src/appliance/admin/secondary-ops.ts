import { CairnError } from '../../core/errors';
import type { Box } from '../box';
import type { AdminArgs, AdminOp } from './ops';
import { linkSecondary, readLink } from '../secondary/link';
import { readReplicationStatus, Replicator } from '../secondary/replicator';
import { silentLogger } from '../../core/log';

/** Admin operations of the secondary link (primary) and of the primaries served (secondary). */
function replicationOf(box: Box): unknown {
  if (box.identity.role === 'secondary') {
    return {
      role: 'secondary',
      primaries: box.catalog.listPeers().map((p) => {
        const s = box.peers.get(p.id);
        const stats = s.catalog.chunkStats();
        const snaps = s.catalog.listSnapshots();
        return {
          box: p.id, name: p.name, linked: new Date(p.created_at).toISOString(), escrow_sealed_at: p.escrow_sealed_at,
          agents: s.catalog.listAgents().length, snapshots: snaps.length, last_snapshot: snaps[snaps.length - 1]?.created ?? null, chunks: stats.count, stored_bytes: stats.bytes,
        };
      }),
    };
  }
  const r = box.replicator ? box.replicator.current() : readReplicationStatus(box);
  return { role: 'primary', ...r };
}

export function secondaryStatus(box: Box): unknown {
  return replicationOf(box);
}

export const secondaryOps: Record<string, AdminOp> = {
  async 'secondary.add'(box: Box, args: AdminArgs) {
    const host = args.host;
    const port = Number(args.port);
    const token = args.token;
    if (typeof host !== 'string' || host.length === 0 || host.length > 255 || !Number.isInteger(port) || port < 1 || port > 65535 || typeof token !== 'string' || token.length > 200) {
      throw new CairnError('CAIRN_USAGE', 'secondary add needs HOST:PORT and --token');
    }
    const bw = args.bwlimit_bps === undefined ? undefined : Number(args.bwlimit_bps);
    if (bw !== undefined && !(Number.isSafeInteger(bw) && bw >= 1024)) throw new CairnError('CAIRN_USAGE', '--bwlimit must be at least 1K (bytes per second)');
    const link = await linkSecondary(box, { host, port, token, bwlimitBps: bw });
    box.replicator?.kick('secondary linked');
    return { secondary: link.box, name: link.name, address: `${link.host}:${link.port}`, fingerprint: `sha256:${link.spki_sha256}`, bwlimit_bps: link.bwlimit_bps ?? null };
  },

  'secondary.status'(box: Box) {
    return replicationOf(box);
  },

  /** Runs one replication cycle now and returns its figures (inside serve: after the running one). */
  async 'secondary.sync'(box: Box) {
    if (box.identity.role !== 'primary') throw new CairnError('CAIRN_ROLE_MISMATCH', 'only a primary replicates; a secondary waits for its primaries');
    if (!readLink(box.dir)) throw new CairnError('CAIRN_SECONDARY_NOT_LINKED', 'no secondary is linked; `cairnd secondary add HOST:PORT --token T` first');
    const rep = box.replicator ?? new Replicator(box, { everyMs: 60_000, log: box.log ?? silentLogger });
    return rep.runNow();
  },
};
