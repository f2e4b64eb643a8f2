import os from 'node:os';
import { CairnError, errorMessage } from '../core/errors';
import { parsePairingToken, TOKEN_PIN_BYTES } from '../core/pairing-token';
import { constantTimeEqual, dataKeysFromJson, dataKeysToJson, DataKeysJson } from '../core/keys';
import { PairRequest, PairResponse } from '../core/api';
import { BoxClient, probeCertificate } from './box-client';
import { AgentConfig, AgentHome } from './state';

/**
 * Pairing: the token carries a hash of the box's public key. The agent first fetches the
 * box's certificate over a handshake-only connection and compares; only when it matches does
 * it send the token's secret, over a connection pinned to that certificate.
 */
export async function pair(home: AgentHome, opts: { host: string; port: number; token: string; name?: string }): Promise<AgentConfig> {
  const token = parsePairingToken(opts.token);
  const { certPem, spkiSha256 } = await probeCertificate(opts.host, opts.port);
  if (!constantTimeEqual(spkiSha256.subarray(0, TOKEN_PIN_BYTES), token.pin)) {
    throw new CairnError(
      'CAIRN_PAIR_PIN_MISMATCH',
      `the box at ${opts.host}:${opts.port} presents key sha256:${spkiSha256.toString('hex').slice(0, 32)}…, which is not the key named in the token. ` +
        `Either the address is wrong or something is impersonating your box. Nothing was sent to it.`,
    );
  }
  const client = new BoxClient({ host: opts.host, port: opts.port, certPem, spkiSha256 });
  try {
    const req: PairRequest = { token_id: token.id, secret: token.secret.toString('base64'), agent_name: opts.name ?? os.hostname(), host: os.hostname() };
    const r = await client.json<PairResponse>('POST', '/v1/pair', req);
    // Checked before anything is saved: an unusable answer fails the pairing, not the first backup.
    let keys: DataKeysJson;
    try {
      keys = dataKeysToJson(dataKeysFromJson(r.keys));
    } catch (err) {
      throw new CairnError('CAIRN_BOX_ERROR', `the box at ${opts.host}:${opts.port} answered the pairing without usable data keys (${errorMessage(err)}); nothing was saved. Is the agent older than the box? Upgrade it and pair again.`);
    }
    const config: AgentConfig = {
      format: 1,
      box: { id: r.box, name: r.box_name, host: opts.host, port: opts.port, cert_pem: certPem, spki_sha256: spkiSha256.toString('hex') },
      agent: { id: r.agent_id, name: req.agent_name, credential: r.credential },
      keys,
      paired_at: new Date().toISOString(),
      ...(r.continuity ? { continuity: r.continuity } : {}),
    };
    home.save(config);
    return config;
  } finally {
    client.close();
  }
}

export type BoxClientClass = new (...a: ConstructorParameters<typeof BoxClient>) => BoxClient;

/** A client pinned to the paired box (`clientClass`: e.g. the agent service's abortable one). */
export function clientFor(config: AgentConfig, opts: { maxSockets?: number; clientClass?: BoxClientClass } = {}): BoxClient {
  const Cls = opts.clientClass ?? BoxClient;
  return new Cls(
    { host: config.box.host, port: config.box.port, certPem: config.box.cert_pem, spkiSha256: Buffer.from(config.box.spki_sha256, 'hex') },
    config.agent.credential,
    { maxSockets: opts.maxSockets },
  );
}
