import fs from 'node:fs';
import { CairnError, errnoCode } from '../../core/errors';
import { constantTimeEqual } from '../../core/keys';
import { parsePairingToken, TOKEN_PIN_BYTES } from '../../core/pairing-token';
import { ContinuityInfo, PeerLinkRequest, PeerLinkResponse } from '../../core/peer-api';
import { BoxClient, probeCertificate } from '../../agent/box-client';
import { DataDir } from '../data-dir';
import { writeFileDurable } from '../store/durable';
import type { Box } from '../box';

/**
 * A primary's link to its secondary (secondary.json, 0600): where it is, its pinned
 * certificate, and the credential the secondary issued to this primary. Made with the same
 * pinned-token pairing agents use: the token names the secondary's key, so the primary checks
 * it before saying anything.
 */
export interface SecondaryLink {
  format: 1;
  box: string;
  name: string;
  host: string;
  port: number;
  cert_pem: string;
  spki_sha256: string;
  credential: string;
  linked_at: string;
  /** replication upload limit in bytes per second; absent: unlimited */
  bwlimit_bps?: number;
}

export function readLink(dir: DataDir): SecondaryLink | undefined {
  let text: string;
  try {
    text = fs.readFileSync(dir.secondaryLink, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw err;
  }
  const l = JSON.parse(text) as SecondaryLink;
  if (l.format !== 1) throw new CairnError('CAIRN_STORE_IO', `${dir.secondaryLink} has an unknown format`);
  return l;
}

export function writeLink(dir: DataDir, l: SecondaryLink): void {
  writeFileDurable(dir.secondaryLink, JSON.stringify(l, null, 2) + '\n', 0o600);
}

export function peerClient(l: SecondaryLink, opts: { maxSockets?: number } = {}): BoxClient {
  return new BoxClient({ host: l.host, port: l.port, certPem: l.cert_pem, spkiSha256: Buffer.from(l.spki_sha256, 'hex') }, l.credential, opts);
}

/** What a primary tells its agents about continuity (pairing response and GET /v1/continuity). */
export function continuityInfo(box: Box): ContinuityInfo {
  const l = box.identity.role === 'primary' ? readLink(box.dir) : undefined;
  return {
    primary: box.identity.boxId,
    secondary: l ? { box: l.box, name: l.name, host: l.host, port: l.port, cert_pem: l.cert_pem, spki_sha256: l.spki_sha256 } : null,
  };
}

/** `cairnd secondary add`: pins the secondary by the token, links, saves the link. */
export async function linkSecondary(box: Box, opts: { host: string; port: number; token: string; bwlimitBps?: number }): Promise<SecondaryLink> {
  if (box.identity.role !== 'primary') throw new CairnError('CAIRN_ROLE_MISMATCH', 'only a primary box links to a secondary');
  const token = parsePairingToken(opts.token);
  const { certPem, spkiSha256 } = await probeCertificate(opts.host, opts.port);
  if (!constantTimeEqual(spkiSha256.subarray(0, TOKEN_PIN_BYTES), token.pin)) {
    throw new CairnError('CAIRN_PAIR_PIN_MISMATCH', `the box at ${opts.host}:${opts.port} presents a key that is not the one named in the token; nothing was sent to it`);
  }
  if (spkiSha256.equals(box.identity.spkiSha256)) throw new CairnError('CAIRN_USAGE', 'that address is this box itself; a secondary must be another box');
  const client = new BoxClient({ host: opts.host, port: opts.port, certPem, spkiSha256 });
  try {
    const req: PeerLinkRequest = { token_id: token.id, secret: token.secret.toString('base64'), primary: { box: box.identity.boxId, name: box.identity.name } };
    const r = await client.json<PeerLinkResponse>('POST', '/v1/peer/link', req);
    const link: SecondaryLink = {
      format: 1,
      box: r.secondary.box,
      name: r.secondary.name,
      host: opts.host,
      port: opts.port,
      cert_pem: certPem,
      spki_sha256: spkiSha256.toString('hex'),
      credential: r.credential,
      linked_at: new Date().toISOString(),
      ...(opts.bwlimitBps ? { bwlimit_bps: opts.bwlimitBps } : {}),
    };
    writeLink(box.dir, link);
    box.catalog.setSetting('secondary_linked', '1');
    box.catalog.event('secondary.linked', { secondary: link.box, name: link.name, address: `${link.host}:${link.port}` });
    return link;
  } finally {
    client.close();
  }
}
