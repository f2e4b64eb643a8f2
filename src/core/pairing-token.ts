import { createHash, randomBytes } from 'node:crypto';
import { base32Decode, base32Encode } from './base32';
import { CairnError } from './errors';

/**
 * Pairing token (the kubeadm / swarm join-token pattern), version 1:
 *
 *   C1-<pin: 16 bytes>-<token id: 5 bytes>-<secret: 10 bytes>-<check: 20 bits>
 *
 * all in Crockford base32. `pin` is the first 16 bytes of SHA-256 of the box's TLS public
 * key (SPKI DER): the agent checks the box against it before sending anything. `id` names
 * the token on the box; `secret` proves the agent was given the token (the box keeps only
 * its hash; tokens expire, are single-use and lock after a few wrong secrets). `check`
 * catches typos before anything touches the network.
 */
export const TOKEN_PIN_BYTES = 16;
const ID_BYTES = 5;
const SECRET_BYTES = 10;
const PREFIX = 'C1';

export interface PairingToken {
  pin: Buffer;
  id: string;
  secret: Buffer;
}

function check(body: string): string {
  const h = createHash('sha256').update(body).digest();
  return base32Encode(h.subarray(0, 3)).slice(0, 4);
}

export function spkiPin(spkiDer: Buffer): Buffer {
  return createHash('sha256').update(spkiDer).digest();
}

export function newPairingToken(spkiSha256: Buffer): { token: string; parsed: PairingToken } {
  const parsed: PairingToken = { pin: spkiSha256.subarray(0, TOKEN_PIN_BYTES), id: base32Encode(randomBytes(ID_BYTES)), secret: randomBytes(SECRET_BYTES) };
  return { token: formatPairingToken(parsed), parsed };
}

export function formatPairingToken(t: PairingToken): string {
  const body = `${PREFIX}-${base32Encode(t.pin)}-${t.id}-${base32Encode(t.secret)}`;
  return `${body}-${check(body)}`;
}

export function parsePairingToken(text: string): PairingToken {
  const clean = text.trim().toUpperCase();
  const parts = clean.split('-');
  const bad = (why: string): CairnError =>
    new CairnError('CAIRN_TOKEN_INVALID', `this is not a valid Cairn pairing token (${why}); copy it again from the box's console or \`cairnd token create\``);
  if (parts.length !== 5 || parts[0] !== PREFIX) throw bad('expected C1-…-…-…-…');
  const [, pinText, id, secretText, sum] = parts;
  const pin = base32Decode(pinText, TOKEN_PIN_BYTES);
  const idBytes = base32Decode(id, ID_BYTES);
  const secret = base32Decode(secretText, SECRET_BYTES);
  if (!pin || !idBytes || !secret) throw bad('a group has the wrong length or a character outside 0-9 A-Z');
  const canonical: PairingToken = { pin, id: base32Encode(idBytes), secret };
  const body = `${PREFIX}-${base32Encode(pin)}-${canonical.id}-${base32Encode(secret)}`;
  if (check(body) !== sum) throw bad('checksum mismatch: probably a typo');
  return canonical;
}
