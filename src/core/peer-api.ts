import { CairnError } from './errors';
import { decodeCommit, encodeCommit, SnapshotCommit } from './api';

/**
 * Box-to-box API (a primary and its secondary) and what a secondary tells agents. Version 1.
 *
 *   POST /v1/peer/link                 {token_id, secret, primary:{box,name}} -> PeerLinkResponse (token-checked, like pairing)
 *   GET  /v1/peer/state                -> PeerState
 *   POST /v1/peer/agents               {agents: AgentRegistryRow[]}: the primary's agent registry (credential hashes)
 *   POST /v1/peer/chunks/missing       id list -> ids the secondary lacks
 *   POST /v1/peer/chunks               upload batch (stored as is, checksummed; no keys here)
 *   POST /v1/peer/chunks/fetch         id list -> upload-batch frames of the blobs (flow-back, recovery)
 *   POST /v1/peer/snapshots            peer snapshot record (below) + refs
 *   GET  /v1/peer/snapshots/ID         PeerSnapshotRecord JSON;  GET .../refs: the sorted id list
 *   POST /v1/peer/snapshots/drop       {ids}: retention mirrored from the primary
 *   POST /v1/peer/escrow               {escrow, access_hash}: the primary's sealed escrow blob
 *   GET  /v1/recover/escrows           [{box, name, salt, sealed_at}] (no auth: nothing secret)
 *   POST /v1/recover/escrow            {box, access} -> {escrow}; access = HMAC(escrow key, ACCESS_LABEL)
 * Peer calls carry "Authorization: Bearer <primary box id>.<secret>". Agents talking to a
 * secondary add "x-cairn-box: <primary box id>" to name their namespace.
 */
export const PEER_API_VERSION = 1;
export const NAMESPACE_HEADER = 'x-cairn-box';
export const ESCROW_ACCESS_LABEL = 'cairn-escrow-access-v1';
export const MAX_FETCH_BYTES = 32 * 1024 * 1024;

export interface PeerLinkRequest {
  token_id: string;
  secret: string;
  primary: { box: string; name: string };
}

export interface PeerLinkResponse {
  credential: string;
  secondary: { box: string; name: string };
}

export interface PeerState {
  snapshots: string[];
  agents: number;
  escrow_sealed_at: string | null;
  chunks: number;
  stored_bytes: number;
}

/** Where an agent's secondary is, as its primary hands it out (over the pinned channel). */
export interface ContinuityInfo {
  secondary: { box: string; name: string; host: string; port: number; cert_pem: string; spki_sha256: string } | null;
  /** the primary this agent belongs to: the namespace on the secondary */
  primary: string;
}

export interface PeerSnapshotRecord extends SnapshotCommit {
  id: string;
  agent: string;
  created_at: number;
}

export function encodePeerSnapshot(r: PeerSnapshotRecord, refs: Buffer): Buffer[] {
  return encodeCommit(r, refs);
}

export function decodePeerSnapshot(body: Buffer): { record: PeerSnapshotRecord; refs: Buffer } {
  const { commit, refs } = decodeCommit(body);
  const head = JSON.parse(body.subarray(4, 4 + body.readUInt32LE(0)).toString('utf8')) as Partial<PeerSnapshotRecord>;
  if (typeof head.id !== 'string' || !/^[0-9a-z]{1,40}$/.test(head.id)) throw new CairnError('CAIRN_API_BAD_REQUEST', 'peer snapshot has no valid id');
  if (typeof head.agent !== 'string' || !/^[0-9a-f]{16}$/.test(head.agent)) throw new CairnError('CAIRN_API_BAD_REQUEST', 'peer snapshot has no valid agent id');
  if (!Number.isSafeInteger(head.created_at) || (head.created_at as number) <= 0) throw new CairnError('CAIRN_API_BAD_REQUEST', 'peer snapshot has no valid creation time');
  return { record: { ...commit, id: head.id, agent: head.agent, created_at: head.created_at as number }, refs };
}
