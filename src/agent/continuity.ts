import { CairnError, errorMessage } from '../core/errors';
import { constantTimeEqual } from '../core/keys';
import { ContinuityInfo, NAMESPACE_HEADER } from '../core/peer-api';
import { BoxClient, probeCertificate } from './box-client';
import { AgentConfig, AgentHome } from './state';
import { BoxClientClass, clientFor } from './pair';

/**
 * Continuity ("Plan de Continuité de Sauvegarde"): where an agent's requests go.
 *
 * The box first, after a short handshake-only probe that also checks its pinned key. When the
 * box does not answer (refused, timed out, unreachable), and the box told us of a secondary,
 * the secondary, with the same credential (the box mirrors its agent registry there) and the
 * box's namespace named in a header. A box presenting another key is not an outage but an
 * attack or a mistake: that stops the run, it never fails over.
 */
export type TargetKind = 'box' | 'secondary';

export interface Target {
  client: BoxClient;
  kind: TargetKind;
  /** stable name of the store for the files cache: "box:<id>" or "secondary:<id>" */
  key: string;
  address: string;
  name: string;
  /** why the secondary was chosen */
  reason?: string;
}

export function secondaryClient(config: AgentConfig, opts: { maxSockets?: number; clientClass?: BoxClientClass } = {}): BoxClient {
  const s = config.continuity?.secondary;
  if (!s) throw new CairnError('CAIRN_SECONDARY_NOT_LINKED', 'this agent knows no secondary: its box had none linked when it last talked to it');
  const Cls = opts.clientClass ?? BoxClient;
  return new Cls(
    { host: s.host, port: s.port, certPem: s.cert_pem, spkiSha256: Buffer.from(s.spki_sha256, 'hex') },
    config.agent.credential,
    { maxSockets: opts.maxSockets, headers: { [NAMESPACE_HEADER]: config.continuity!.primary } },
  );
}

async function probePinned(host: string, port: number, spkiHex: string, timeoutMs: number, what: string): Promise<void> {
  const { spkiSha256 } = await probeCertificate(host, port, timeoutMs);
  if (!constantTimeEqual(spkiSha256, Buffer.from(spkiHex, 'hex'))) {
    throw new CairnError('CAIRN_PAIR_PIN_MISMATCH', `the ${what} at ${host}:${port} presents a different key (sha256:${spkiSha256.toString('hex').slice(0, 32)}…) than the one this agent pinned; nothing was sent, and this is not treated as an outage`);
  }
}

/** Refreshes what the box says about its secondary (it may have been linked after pairing). */
async function refreshContinuity(home: AgentHome, config: AgentConfig, client: BoxClient): Promise<void> {
  try {
    const info = await client.json<ContinuityInfo>('GET', '/v1/continuity');
    if (JSON.stringify(info) !== JSON.stringify(config.continuity ?? null)) {
      config.continuity = info;
      home.save(config);
    }
  } catch (err) {
    // An older box has no such endpoint; anything else will show in the real requests.
    if (!CairnError.is(err, 'CAIRN_API_NOT_FOUND')) throw err;
  }
}

export async function connectTarget(home: AgentHome, config: AgentConfig, opts: { from?: TargetKind | 'auto'; probeTimeoutMs?: number; maxSockets?: number; clientClass?: BoxClientClass } = {}): Promise<Target> {
  const from = opts.from ?? 'auto';
  const timeout = opts.probeTimeoutMs ?? Number(process.env.CAIRN_PROBE_TIMEOUT_MS ?? 5000);
  const toSecondary = async (reason?: string): Promise<Target> => {
    const s = config.continuity?.secondary;
    if (!s) throw new CairnError('CAIRN_SECONDARY_NOT_LINKED', 'this agent knows no secondary: its box had none linked when it last talked to it');
    await probePinned(s.host, s.port, s.spki_sha256, timeout, 'secondary');
    return { client: secondaryClient(config, { maxSockets: opts.maxSockets, clientClass: opts.clientClass }), kind: 'secondary', key: `secondary:${s.box}`, address: `${s.host}:${s.port}`, name: s.name, reason };
  };
  if (from === 'secondary') return toSecondary('asked for with --from secondary');
  try {
    await probePinned(config.box.host, config.box.port, config.box.spki_sha256, timeout, 'box');
  } catch (err) {
    if (from === 'auto' && CairnError.is(err, 'CAIRN_BOX_UNREACHABLE') && config.continuity?.secondary) {
      return toSecondary(`the box at ${config.box.host}:${config.box.port} does not answer (${errorMessage(err)})`);
    }
    throw err;
  }
  const client = clientFor(config, { maxSockets: opts.maxSockets, clientClass: opts.clientClass });
  try {
    await refreshContinuity(home, config, client);
  } catch (err) {
    client.close();
    if (from === 'auto' && CairnError.is(err, 'CAIRN_BOX_UNREACHABLE') && config.continuity?.secondary) return toSecondary(`the box stopped answering (${errorMessage(err)})`);
    throw err;
  }
  return { client, kind: 'box', key: `box:${config.box.id}`, address: `${config.box.host}:${config.box.port}`, name: config.box.name };
}
