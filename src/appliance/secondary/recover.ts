import sodium from 'sodium-native';
import { CairnError, errorMessage } from '../../core/errors';
import { formatBytes, parseCli, parseHostPort } from '../../core/cli';
import { DEFAULT_PORT } from '../../core/api';
import { parseRecoveryKey } from '../../core/recovery-key';
import { constantTimeEqual } from '../../core/keys';
import { createLogger, Logger } from '../../core/log';
import { BoxClient, probeCertificate } from '../../agent/box-client';
import { DataDir } from '../data-dir';
import { deriveEscrowKey, fingerprint, isInitialized, writeRecoveredIdentity } from '../identity';
import { escrowAccess, EscrowContents, openEscrow } from '../escrow';
import { Box, readBoxConfig, writeBoxConfig, BoxConfig } from '../box';
import { writeLink } from './link';
import { Replicator } from './replicator';
import { writeFileDurable } from '../store/durable';

/**
 * `cairnd recover`: rebuilds a dead primary on a fresh data directory from its secondary.
 *
 *  1. The secondary lists the escrows it holds (box id, name, Argon2id salt: nothing secret).
 *  2. For each, the recovery key gives the escrow key (Argon2id); HMAC(escrow key, label) is
 *     the access proof the secondary checks (it stored only its hash); it returns the blob.
 *  3. The blob opens with the escrow key. The secondary's certificate must be the one the old
 *     box pinned (inside the escrow): a look-alike cannot serve a blob that opens, and the
 *     real one is then pinned again. Until here nothing is written.
 *  4. Identity (same box id, master key, TLS key: agents carry on without pairing), config,
 *     link, agent registry and retention are written; then every snapshot is pulled back from
 *     the secondary (flow-back of everything), each chunk verified with the keys. Interrupted,
 *     `cairnd serve` (or running recover's pull again with `cairnd secondary sync`) finishes it.
 * A wrong recovery key is refused after a deliberate delay, with nothing written.
 */
const WRONG_KEY_DELAY_MS = 3000;

interface EscrowListing {
  box: string;
  name: string;
  salt: string;
  sealed_at: string;
}

export async function fetchEscrow(host: string, port: number, recoveryKey: string): Promise<{ contents: EscrowContents; blob: string; escrowKey: Buffer; salt: Buffer; certPem: string; spki: Buffer }> {
  const raw = parseRecoveryKey(recoveryKey);
  const { certPem, spkiSha256 } = await probeCertificate(host, port);
  const client = new BoxClient({ host, port, certPem, spkiSha256 });
  try {
    const list = await client.json<EscrowListing[]>('GET', '/v1/recover/escrows');
    for (const e of list) {
      const salt = Buffer.from(e.salt, 'base64');
      if (salt.length !== sodium.crypto_pwhash_SALTBYTES || !/^[0-9a-f]{16}$/.test(e.box)) continue;
      const escrowKey = deriveEscrowKey(raw, salt);
      const r = await client.request('POST', '/v1/recover/escrow', Buffer.from(JSON.stringify({ box: e.box, access: escrowAccess(escrowKey).toString('hex') })), { contentType: 'application/json' });
      if (r.status !== 200) continue;
      const blob = (JSON.parse(r.body.toString('utf8')) as { escrow: string }).escrow;
      const contents = openEscrow(blob, { escrowKey });
      if (contents.box_id !== e.box) continue;
      const pinned = contents.secondary?.spki_sha256;
      if (!pinned || !constantTimeEqual(Buffer.from(pinned, 'hex'), spkiSha256)) {
        throw new CairnError('CAIRN_PAIR_PIN_MISMATCH', `the box at ${host}:${port} is not the secondary this box was linked to (its key differs from the one in the escrow); nothing was written`);
      }
      return { contents, blob, escrowKey, salt, certPem, spki: spkiSha256 };
    }
  } finally {
    client.close();
  }
  await new Promise((r) => setTimeout(r, WRONG_KEY_DELAY_MS));
  throw new CairnError('CAIRN_RECOVERY_REFUSED', `this recovery key opens no escrow held by ${host}:${port}; check the key (and that this is the right secondary). Nothing was written.`);
}

export interface RecoverResult {
  box: string;
  name: string;
  fingerprint: string;
  agents: number;
  escrow_sealed_at: string;
  identity_s: number;
  pulled_snapshots: number;
  pulled_chunks: number;
  pulled_bytes: number;
  duration_s: number;
  pull_error: string | null;
}

/**
 * Rebuilds a primary on the fresh data directory `root` from the secondary at host:port (see
 * the top of this file). Used by `cairnd recover` and by the console's "restore a box".
 * Returns the opened box (the caller serves or closes it) and the figures.
 */
export async function recoverBox(root: string, o: { host: string; port: number; recoveryKey: string; hw?: BoxConfig['hw_profile']; pull?: boolean; log: Logger }): Promise<{ box: Box; result: RecoverResult }> {
  const dir = new DataDir(root);
  if (isInitialized(dir)) throw new CairnError('CAIRN_STORE_ALREADY_INITIALIZED', `${root} already holds an activated box; recover into a fresh data directory`);
  const { host, port, log } = o;
  const started = Date.now();
  const got = await fetchEscrow(host, port, o.recoveryKey);
  const c = got.contents;
  if (!c.tls_key_pem || !c.tls_cert_pem || !c.secondary) {
    throw new CairnError('CAIRN_ESCROW_INVALID', `the escrow of box ${c.box_id} (${c.format}, sealed ${c.sealed_at}) predates continuity and holds no TLS identity or link; it cannot rebuild the box`);
  }
  const identity = writeRecoveredIdentity(dir, { boxId: c.box_id, name: c.name, masterKey: c.master_key, chunkIds: c.chunk_ids, escrowKey: got.escrowKey, escrowSalt: got.salt, tlsKeyPem: c.tls_key_pem, tlsCertPem: c.tls_cert_pem });
  const config = { ...(c.config as Partial<BoxConfig>), format: 1 as const };
  if (o.hw) config.hw_profile = o.hw;
  writeBoxConfig(dir, { ...config, hw_profile: config.hw_profile ?? 'linux' });
  readBoxConfig(dir); // validates the profile
  writeLink(dir, { ...c.secondary, host, port });
  writeFileDurable(dir.escrow, got.blob, 0o600);
  const box = Box.open(root);
  box.log = log;
  try {
    box.catalog.setSetting('secondary_linked', '1');
    box.catalog.upsertAgents(c.agents ?? []);
    for (const s of c.sources ?? []) {
      if (box.catalog.getAgent(s.agent)) box.catalog.setKeep(box.catalog.sourceId(s.agent, s.name), s.keep);
    }
    box.catalog.event('box.recovered', { box: c.box_id, from: `${host}:${port}`, sealed_at: c.sealed_at });
    const identityS = (Date.now() - started) / 1000;
    log.info('recover.identity', { box: c.box_id, name: c.name, agents: c.agents?.length ?? 0, seconds: identityS });
    let pulled = { snapshots: 0, chunks: 0, bytes: 0 };
    let pullError: string | undefined;
    if (o.pull !== false) {
      try {
        const r = await new Replicator(box, { everyMs: 60_000, log }).cycle();
        if (r) pulled = { snapshots: r.pulled_snapshots, chunks: r.pulled_chunks, bytes: r.pulled_bytes };
      } catch (err) {
        pullError = errorMessage(err);
      }
    }
    return {
      box,
      result: {
        box: c.box_id, name: c.name, fingerprint: fingerprint(identity.spkiSha256), agents: c.agents?.length ?? 0, escrow_sealed_at: c.sealed_at,
        identity_s: identityS, pulled_snapshots: pulled.snapshots, pulled_chunks: pulled.chunks, pulled_bytes: pulled.bytes, duration_s: (Date.now() - started) / 1000,
        pull_error: pullError ?? null,
      },
    };
  } catch (err) {
    box.close();
    throw err;
  }
}

export async function cmdRecover(args: string[]): Promise<void> {
  const { values } = parseCli(args, {
    data: { type: 'string' }, from: { type: 'string' }, 'recovery-key': { type: 'string' }, json: { type: 'boolean' }, 'no-pull': { type: 'boolean' }, hw: { type: 'string' },
  }, 'cairnd recover --data DIR --from HOST:PORT --recovery-key KEY [--no-pull] [--json]');
  const root = values.data ?? process.env.CAIRN_DATA;
  if (!root || !values.from || !values['recovery-key']) throw new CairnError('CAIRN_USAGE', 'usage: cairnd recover --data DIR --from HOST:PORT --recovery-key KEY [--no-pull] [--json]');
  const { host, port } = parseHostPort(values.from, DEFAULT_PORT);
  const log = createLogger({ name: 'cairnd-recover', write: (line) => process.stderr.write(line + '\n') });
  const { box, result: out } = await recoverBox(root, { host, port, recoveryKey: values['recovery-key'], hw: values.hw as BoxConfig['hw_profile'] | undefined, pull: !values['no-pull'], log });
  box.close();
  process.stdout.write(values.json ? JSON.stringify(out, null, 2) + '\n' : [
    `Box "${out.name}" (${out.box}) recovered from ${host}:${port}: same identity (${out.fingerprint}), ${out.agents} agents keep their pairing.`,
    values['no-pull'] ? 'Data not pulled yet (--no-pull): `cairnd serve` pulls it back in the background.'
      : `Pulled back ${out.pulled_snapshots} snapshots, ${out.pulled_chunks} chunks, ${formatBytes(out.pulled_bytes)} in ${out.duration_s.toFixed(1)} s.`,
    out.pull_error ? `The pull stopped: ${out.pull_error}. \`cairnd serve\` resumes it.` : '',
  ].filter(Boolean).join('\n') + '\n');
  if (out.pull_error) process.exitCode = 1;
}
