import { CairnError } from '../core/errors';
import { SnapshotInfo } from '../core/api';
import { BoxClient } from './box-client';

/** "ID", a unique prefix of an id, or "latest"; optionally followed by ":PATH" inside the snapshot. */
export function splitSnapshotArg(arg: string): { ref: string; subpath: string | undefined } {
  const i = arg.indexOf(':');
  if (i < 0) return { ref: arg, subpath: undefined };
  const sub = arg.slice(i + 1).replace(/^\/+|\/+$/g, '');
  return { ref: arg.slice(0, i), subpath: sub.length ? sub : undefined };
}

export async function resolveSnapshot(client: BoxClient, ref: string, source?: string): Promise<SnapshotInfo> {
  if (!/^[0-9a-z]{1,40}$/.test(ref)) throw new CairnError('CAIRN_USAGE', `"${ref.slice(0, 60)}" is not a snapshot id (see \`cairn snapshots\`)`);
  const q = source ? `?source=${encodeURIComponent(source)}` : '';
  const all = await client.json<SnapshotInfo[]>('GET', `/v1/snapshots${q}`);
  if (ref === 'latest') {
    if (!all.length) throw new CairnError('CAIRN_SNAPSHOT_NOT_FOUND', 'this agent has no snapshots yet');
    return all[all.length - 1];
  }
  const hits = all.filter((s) => s.id.startsWith(ref));
  if (hits.length === 1) return hits[0];
  if (hits.length === 0) throw new CairnError('CAIRN_SNAPSHOT_NOT_FOUND', `no snapshot of this agent starts with "${ref}"; \`cairn snapshots\` lists them`);
  throw new CairnError('CAIRN_SNAPSHOT_AMBIGUOUS', `"${ref}" matches ${hits.length} snapshots; give more characters`);
}
