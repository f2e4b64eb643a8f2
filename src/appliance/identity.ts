import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { createHash, randomBytes, webcrypto, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import sodium from 'sodium-native';
import { CairnError, errnoCode } from '../core/errors';
import { DataDir } from './data-dir';
import { newRecoveryKey } from '../core/recovery-key';
import { spkiPin } from '../core/pairing-token';
import { fsyncDir, writeFileDurable } from './store/durable';
import { DEFAULT_ID_SCHEME, IdScheme, isIdScheme } from '../core/keys';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

/**
 * The box's identity: master key (32 random bytes), box id, escrow key (Argon2id of the
 * recovery key; the recovery key itself is never stored), TLS key pair and self-signed
 * certificate. Created once by activation; key files are 0600.
 */
export interface BoxIdentity {
  boxId: string;
  name: string;
  role: 'primary' | 'secondary';
  masterKey: Buffer;
  /** how the store names chunks (keys.ts IdScheme); fixed at activation */
  chunkIds: IdScheme;
  escrowKey: Buffer;
  escrowSalt: Buffer;
  tlsKeyPem: string;
  tlsCertPem: string;
  /** SHA-256 of the certificate's SubjectPublicKeyInfo (DER): what agents pin */
  spkiSha256: Buffer;
}

/**
 * keys.json. Format 1 (before BLAKE3 ids) had no chunk_ids field: its store names chunks with
 * HMAC-SHA-256, and it is read as such for good. Format 2 adds chunk_ids (keys.ts IdScheme).
 * A cairnd older than format 2 refuses it rather than compute ids with the wrong hash.
 */
interface KeysFile {
  format: 1 | 2;
  box_id: string;
  name: string;
  role: 'primary' | 'secondary';
  master_key: string;
  chunk_ids?: IdScheme;
  escrow_key: string;
  escrow_salt: string;
  created: string;
}
const KEYS_FORMAT = 2 as const;

export function certSpkiSha256(certPem: string | Buffer): Buffer {
  const c = new X509Certificate(certPem);
  return spkiPin(c.publicKey.export({ type: 'spki', format: 'der' }));
}

export function isInitialized(dir: DataDir): boolean {
  return fs.existsSync(dir.keys);
}

export async function makeTlsIdentity(name: string): Promise<{ keyPem: string; certPem: string }> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomBytes(8).toString('hex'),
    name: `CN=${name.replace(/[,=+<>#;"\\]/g, ' ')}, O=Cairn box`,
    notBefore: new Date(Date.now() - 86_400_000),
    notAfter: new Date(Date.now() + 100 * 365 * 86_400_000),
    keys,
    signingAlgorithm: alg,
    extensions: [new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true)],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n`;
  return { keyPem, certPem: cert.toString('pem') + '\n' };
}

export function deriveEscrowKey(recoveryRaw: Buffer, salt: Buffer): Buffer {
  const out = Buffer.alloc(32);
  sodium.crypto_pwhash(out, recoveryRaw, salt, sodium.crypto_pwhash_OPSLIMIT_INTERACTIVE, sodium.crypto_pwhash_MEMLIMIT_INTERACTIVE, sodium.crypto_pwhash_ALG_ARGON2ID13);
  return out;
}

/** Activation: creates keys and TLS identity. Returns the recovery key text, which is shown once and never stored. */
export async function initIdentity(dir: DataDir, opts: { name: string; role?: 'primary' | 'secondary'; chunkIds?: IdScheme }): Promise<{ identity: BoxIdentity; recoveryKey: string }> {
  if (isInitialized(dir)) {
    throw new CairnError('CAIRN_STORE_ALREADY_INITIALIZED', `${dir.root} already holds an activated box; refusing to overwrite its keys`);
  }
  fs.mkdirSync(dir.root, { recursive: true, mode: 0o700 });
  fs.mkdirSync(dir.tlsDir, { recursive: true, mode: 0o700 });
  const boxId = randomBytes(8).toString('hex');
  const masterKey = randomBytes(32);
  const recovery = newRecoveryKey();
  const escrowSalt = randomBytes(sodium.crypto_pwhash_SALTBYTES);
  const escrowKey = deriveEscrowKey(recovery.raw, escrowSalt);
  const tls = await makeTlsIdentity(opts.name);
  const role = opts.role ?? 'primary';
  const chunkIds = opts.chunkIds ?? DEFAULT_ID_SCHEME;
  writeFileDurable(dir.tlsKey, tls.keyPem, 0o600);
  writeFileDurable(dir.tlsCert, tls.certPem, 0o644);
  const file: KeysFile = {
    format: KEYS_FORMAT,
    box_id: boxId,
    name: opts.name,
    role,
    master_key: masterKey.toString('base64'),
    chunk_ids: chunkIds,
    escrow_key: escrowKey.toString('base64'),
    escrow_salt: escrowSalt.toString('base64'),
    created: new Date().toISOString(),
  };
  // keys.json last: its presence is what marks the box as activated.
  writeFileDurable(dir.keys, JSON.stringify(file, null, 2) + '\n', 0o600);
  fsyncDir(dir.root);
  return {
    identity: { boxId, name: opts.name, role, masterKey, chunkIds, escrowKey, escrowSalt, tlsKeyPem: tls.keyPem, tlsCertPem: tls.certPem, spkiSha256: certSpkiSha256(tls.certPem) },
    recoveryKey: recovery.text,
  };
}

/**
 * Recovery: writes an identity taken back from an escrow (same box id, master key and TLS key
 * pair, so agents' pins and credentials keep working). keys.json last, as at activation.
 */
export function writeRecoveredIdentity(dir: DataDir, id: { boxId: string; name: string; masterKey: Buffer; chunkIds: IdScheme; escrowKey: Buffer; escrowSalt: Buffer; tlsKeyPem: string; tlsCertPem: string }): BoxIdentity {
  if (isInitialized(dir)) throw new CairnError('CAIRN_STORE_ALREADY_INITIALIZED', `${dir.root} already holds an activated box; recover into a fresh data directory`);
  fs.mkdirSync(dir.root, { recursive: true, mode: 0o700 });
  fs.mkdirSync(dir.tlsDir, { recursive: true, mode: 0o700 });
  writeFileDurable(dir.tlsKey, id.tlsKeyPem, 0o600);
  writeFileDurable(dir.tlsCert, id.tlsCertPem, 0o644);
  const file: KeysFile = {
    format: KEYS_FORMAT, box_id: id.boxId, name: id.name, role: 'primary', master_key: id.masterKey.toString('base64'), chunk_ids: id.chunkIds,
    escrow_key: id.escrowKey.toString('base64'), escrow_salt: id.escrowSalt.toString('base64'), created: new Date().toISOString(),
  };
  writeFileDurable(dir.keys, JSON.stringify(file, null, 2) + '\n', 0o600);
  fsyncDir(dir.root);
  return loadIdentity(dir);
}

export function loadIdentity(dir: DataDir): BoxIdentity {
  let raw: string;
  try {
    raw = fs.readFileSync(dir.keys, 'utf8');
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') {
      throw new CairnError('CAIRN_STORE_NOT_INITIALIZED', `${dir.root} is not an activated Cairn box; run \`cairnd init --data ${dir.root}\` first`);
    }
    throw err;
  }
  const k = JSON.parse(raw) as KeysFile;
  if (k.format !== 1 && k.format !== 2) throw new CairnError('CAIRN_STORE_IO', `keys file ${dir.keys} has unknown format ${String(k.format)}`);
  const chunkIds: unknown = k.format === 1 ? 'hmac-sha256' : k.chunk_ids;
  if (!isIdScheme(chunkIds)) throw new CairnError('CAIRN_STORE_IO', `keys file ${dir.keys} names an unknown chunk id scheme ${JSON.stringify(chunkIds)}`);
  const tlsCertPem = fs.readFileSync(dir.tlsCert, 'utf8');
  return {
    boxId: k.box_id,
    name: k.name,
    role: k.role,
    masterKey: Buffer.from(k.master_key, 'base64'),
    chunkIds,
    escrowKey: Buffer.from(k.escrow_key, 'base64'),
    escrowSalt: Buffer.from(k.escrow_salt, 'base64'),
    tlsKeyPem: fs.readFileSync(dir.tlsKey, 'utf8'),
    tlsCertPem,
    spkiSha256: certSpkiSha256(tlsCertPem),
  };
}

export function fingerprint(spkiSha256: Buffer): string {
  return 'sha256:' + spkiSha256.toString('hex');
}

export function shortHash(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex').slice(0, 12);
}
