import { CairnError } from '../../core/errors';
import { newPairingToken } from '../../core/pairing-token';
import { fingerprint } from '../identity';
import { Box } from '../box';
import { DEFAULT_PORT } from '../../core/api';
import { jobOps } from './job-ops';
import { hostOpsForBox } from '../host-ops';
import { consoleOps } from './console-ops';
import { secondaryOps, secondaryStatus } from './secondary-ops';

/**
 * Admin operations: what the console and the `cairnd` admin commands can do. They run inside
 * `cairnd serve` (over the local admin socket) or, when no daemon runs, directly on the data
 * directory; the code is the same either way. Arguments arrive as untrusted JSON.
 */
export type AdminArgs = Record<string, unknown>;
export type AdminOp = (box: Box, args: AdminArgs) => unknown;

const DEFAULT_TOKEN_TTL_MS = 60 * 60 * 1000;

function str(args: AdminArgs, key: string): string {
  const v = args[key];
  if (typeof v !== 'string' || v.length === 0 || v.length > 200) throw new CairnError('CAIRN_USAGE', `argument ${key} is required`);
  return v;
}

export const adminOps: Record<string, AdminOp> = {
  'token.create'(box, args) {
    const ttl = args.ttl_ms === undefined ? DEFAULT_TOKEN_TTL_MS : Number(args.ttl_ms);
    if (!Number.isSafeInteger(ttl) || ttl <= 0 || ttl > 30 * 86_400_000) throw new CairnError('CAIRN_USAGE', 'token TTL must be between 1 second and 30 days');
    const { token, parsed } = newPairingToken(box.identity.spkiSha256);
    const row = box.catalog.createToken(parsed.id, parsed.secret, ttl);
    box.catalog.event('token.created', { token_id: parsed.id, expires_at: row.expires_at });
    return { token, token_id: parsed.id, expires: new Date(row.expires_at).toISOString(), box: box.identity.boxId, fingerprint: fingerprint(box.identity.spkiSha256) };
  },

  'tokens.list'(box) {
    return box.catalog.listTokens().map((t) => ({
      token_id: t.id,
      created: new Date(t.created_at).toISOString(),
      expires: new Date(t.expires_at).toISOString(),
      state: t.used_at !== null ? 'used' : t.failed >= 5 ? 'locked' : Date.now() > t.expires_at ? 'expired' : 'open',
      used_by: t.used_by,
    }));
  },

  'agents.list'(box) {
    const snaps = box.catalog.listSnapshots();
    return box.catalog.listAgents().map((a) => {
      const own = snaps.filter((s) => s.agent === a.id);
      const last = own[own.length - 1];
      return {
        id: a.id,
        name: a.name,
        host: a.host,
        paired: new Date(a.created_at).toISOString(),
        revoked: a.revoked_at === null ? null : new Date(a.revoked_at).toISOString(),
        last_seen: a.last_seen === null ? null : new Date(a.last_seen).toISOString(),
        snapshots: own.length,
        last_backup: last?.created ?? null,
      };
    });
  },

  'agents.revoke'(box, args) {
    const a = box.catalog.revokeAgent(str(args, 'agent'));
    return { id: a.id, name: a.name, revoked: new Date(a.revoked_at!).toISOString() };
  },

  'snapshots.list'(box, args) {
    const agent = typeof args.agent === 'string' ? box.catalog.findAgent(args.agent).id : undefined;
    return box.catalog.listSnapshots({ agentId: agent, source: typeof args.source === 'string' ? args.source : undefined });
  },

  async status(box) {
    const chunks = box.catalog.chunkStats();
    return {
      box: box.identity.boxId,
      name: box.identity.name,
      role: box.identity.role,
      fingerprint: fingerprint(box.identity.spkiSha256),
      /** how the store names chunks (keys.ts IdScheme), fixed at activation */
      chunk_ids: box.identity.chunkIds,
      default_port: DEFAULT_PORT,
      agents: box.catalog.listAgents().filter((a) => a.revoked_at === null).length,
      snapshots: box.catalog.listSnapshots().length,
      chunks: chunks.count,
      stored_bytes: chunks.bytes,
      /** uploaded by an agent and not yet checked by the box (checked on sharing, or in idle time) */
      unchecked_chunks: box.identity.role === 'secondary' ? 0 : box.catalog.countUnchecked(),
      idle_checks: box.jobs.idleChecks,
      hardware: await box.hardwareStatus(),
      replication: secondaryStatus(box),
    };
  },
};

// The console's operations: host ops (also answered in setup mode) and the dashboard's.
Object.assign(adminOps, hostOpsForBox(), consoleOps);

Object.assign(adminOps, jobOps, secondaryOps);

export async function runAdminOp(box: Box, op: string, args: AdminArgs): Promise<unknown> {
  const fn = Object.prototype.hasOwnProperty.call(adminOps, op) ? adminOps[op] : undefined;
  if (!fn) throw new CairnError('CAIRN_ADMIN_PROTOCOL', `unknown admin operation "${op}"`);
  return await fn(box, args);
}
