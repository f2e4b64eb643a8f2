import { expect } from 'chai';
import { createHmac, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sodium from 'sodium-native';
import { createBLAKE3 } from 'hash-wasm';
import { chunkId } from '../../../src/core/chunk-id';
import { openChunk, sealChunk } from '../../../src/core/chunk-codec';
import { dataKeysFromJson, dataKeysToJson, deriveDataKeys, DEFAULT_ID_SCHEME } from '../../../src/core/keys';
import { DataDir } from '../../../src/appliance/data-dir';
import { initIdentity, loadIdentity, writeRecoveredIdentity } from '../../../src/appliance/identity';
import { ESCROW_FORMAT, ESCROW_FORMAT_V2, openEscrow, sealEscrow } from '../../../src/appliance/escrow';

/** Keyed BLAKE3 from an independent implementation (WebAssembly), to check the native one against. */
async function referenceBlake3(key: Buffer, data: Uint8Array): Promise<Buffer> {
  const h = await createBLAKE3(256, key);
  h.init();
  h.update(data);
  return Buffer.from(h.digest('binary'));
}

describe('chunk id schemes', () => {
  const master = Buffer.alloc(32, 7);
  const b3 = deriveDataKeys(master, 'blake3');
  const hmac = deriveDataKeys(master, 'hmac-sha256');

  it('keyed BLAKE3 ids match an independent implementation, at every size and from shared memory', async () => {
    const sizes = [0, 1, 63, 64, 65, 1023, 1024, 1025, 2048, 65_537, 1_000_003, 4 * 1024 * 1024];
    for (const n of sizes) {
      const data = randomBytes(n);
      expect(chunkId(b3, data).equals(await referenceBlake3(b3.idKey, data)), `${n} bytes`).to.equal(true);
    }
    // The chunk workers hash views into a SharedArrayBuffer, at any offset.
    const sab = new SharedArrayBuffer(300_000);
    const view = new Uint8Array(sab, 3, 250_001);
    view.set(randomBytes(view.length));
    expect(chunkId(b3, view).equals(await referenceBlake3(b3.idKey, view))).to.equal(true);
  });

  it('the reused hasher starts afresh for every id, and follows a change of key', async () => {
    const a = randomBytes(5000);
    const first = chunkId(b3, a);
    expect(chunkId(b3, a).equals(first)).to.equal(true);
    const other = deriveDataKeys(Buffer.alloc(32, 8), 'blake3');
    const underOther = chunkId(other, a);
    expect(underOther.equals(first)).to.equal(false);
    expect(underOther.equals(await referenceBlake3(other.idKey, a))).to.equal(true);
    expect(chunkId(b3, a).equals(first)).to.equal(true);
  });

  it('HMAC-SHA-256 ids are what they were before BLAKE3 ids, and the two schemes never give the same id or key', () => {
    const data = randomBytes(10_000);
    expect(chunkId(hmac, data).equals(createHmac('sha256', hmac.idKey).update(data).digest())).to.equal(true);
    expect(chunkId(hmac, data).equals(chunkId(b3, data))).to.equal(false);
    expect(hmac.idKey.equals(b3.idKey)).to.equal(false);
    // Only the id key depends on the scheme.
    expect(hmac.chunkKey.equals(b3.chunkKey) && hmac.manifestKey.equals(b3.manifestKey) && hmac.gearKey.equals(b3.gearKey)).to.equal(true);
  });

  it('a chunk sealed under one scheme does not open under the other (its id is checked)', async () => {
    const plain = randomBytes(20_000);
    const id = chunkId(b3, plain);
    const blob = await sealChunk(b3, id, plain, 'data');
    expect(openChunk(b3, id, blob).equals(plain)).to.equal(true);
    expect(() => openChunk(hmac, id, blob)).to.throw(/id/i);
  });

  it('data keys as JSON: the id key field names its scheme, and JSON from before BLAKE3 ids reads as HMAC-SHA-256', () => {
    const j = dataKeysToJson(b3);
    expect(j.idKeyBlake3).to.equal(b3.idKey.toString('base64'));
    expect(j).to.not.have.property('idKey');
    const back = dataKeysFromJson(JSON.parse(JSON.stringify(j)));
    expect(back.idScheme).to.equal('blake3');
    expect(back.idKey.equals(b3.idKey)).to.equal(true);

    const old = { idKey: hmac.idKey.toString('base64'), chunkKey: hmac.chunkKey.toString('base64'), manifestKey: hmac.manifestKey.toString('base64'), gearKey: hmac.gearKey.toString('base64') };
    const oldKeys = dataKeysFromJson(old);
    expect(oldKeys.idScheme).to.equal('hmac-sha256');
    expect(dataKeysToJson(oldKeys)).to.deep.equal(old);

    expect(() => dataKeysFromJson({ ...old, idKeyBlake3: j.idKeyBlake3 })).to.throw(/two chunk id keys/);
    expect(() => dataKeysFromJson({ ...j, idKeyBlake3: 'c2hvcnQ=' })).to.throw(/idKeyBlake3 has the wrong length/);
    expect(() => dataKeysFromJson({ chunkKey: j.chunkKey, manifestKey: j.manifestKey, gearKey: j.gearKey })).to.throw(/idKey is missing/);
    expect(() => dataKeysFromJson(undefined)).to.throw(/missing/);
  });
});

describe('chunk id scheme of a box: keys file and escrow', function () {
  this.timeout(30_000);
  let work: string;
  beforeEach(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-idscheme-'));
  });
  afterEach(() => fs.rmSync(work, { recursive: true, force: true }));

  it('a box activated now uses BLAKE3 (keys file format 2); a format 1 keys file, from before BLAKE3 ids, reads as HMAC-SHA-256', async () => {
    const dir = new DataDir(path.join(work, 'box'));
    const { identity } = await initIdentity(dir, { name: 'b' });
    expect(DEFAULT_ID_SCHEME).to.equal('blake3');
    expect(identity.chunkIds).to.equal('blake3');
    const file = JSON.parse(fs.readFileSync(dir.keys, 'utf8')) as Record<string, unknown>;
    expect(file.format).to.equal(2);
    expect(file.chunk_ids).to.equal('blake3');
    expect(loadIdentity(dir).chunkIds).to.equal('blake3');

    const old: Record<string, unknown> = { ...file, format: 1 };
    delete old.chunk_ids;
    fs.writeFileSync(dir.keys, JSON.stringify(old));
    const loaded = loadIdentity(dir);
    expect(loaded.chunkIds).to.equal('hmac-sha256');
    expect(loaded.masterKey.equals(identity.masterKey)).to.equal(true);

    fs.writeFileSync(dir.keys, JSON.stringify({ ...file, chunk_ids: 'md5' }));
    expect(() => loadIdentity(dir)).to.throw(/unknown chunk id scheme "md5"/);
    fs.writeFileSync(dir.keys, JSON.stringify({ ...file, format: 3 }));
    expect(() => loadIdentity(dir)).to.throw(/unknown format 3/);
  });

  it('the escrow carries the scheme (v3), a v2 escrow from before BLAKE3 ids opens as HMAC-SHA-256, and a recovered box keeps the scheme', async () => {
    const dir = new DataDir(path.join(work, 'box'));
    const { identity } = await initIdentity(dir, { name: 'b', chunkIds: 'hmac-sha256' });
    const access = { escrowKey: identity.escrowKey };
    for (const scheme of ['blake3', 'hmac-sha256'] as const) {
      const blob = sealEscrow({ ...identity, chunkIds: scheme }, { hw_profile: 'simulated' });
      expect((JSON.parse(blob) as { format: string }).format).to.equal(ESCROW_FORMAT);
      const c = openEscrow(blob, access);
      expect(c.chunk_ids).to.equal(scheme);
      const target = new DataDir(path.join(work, `recovered-${scheme}`));
      const rec = writeRecoveredIdentity(target, { boxId: c.box_id, name: c.name, masterKey: c.master_key, chunkIds: c.chunk_ids, escrowKey: identity.escrowKey, escrowSalt: identity.escrowSalt, tlsKeyPem: identity.tlsKeyPem, tlsCertPem: identity.tlsCertPem });
      expect(rec.chunkIds).to.equal(scheme);
      expect(loadIdentity(target).chunkIds).to.equal(scheme);
    }

    // Seal plaintexts the way a box before BLAKE3 ids (v2) did, and a v3 one naming no known scheme.
    const seal = (format: string, plain: Record<string, unknown>): string => {
      const salt = identity.escrowSalt.toString('base64');
      const pt = Buffer.from(JSON.stringify(plain));
      const nonce = randomBytes(24);
      const ct = Buffer.alloc(pt.length + 16);
      sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(ct, pt, Buffer.from(`${format}\n${identity.boxId}\n${salt}`), null, nonce, identity.escrowKey);
      return JSON.stringify({
        format, box_id: identity.boxId, sealed_at: new Date().toISOString(),
        kdf: { alg: 'argon2id13', opslimit: sodium.crypto_pwhash_OPSLIMIT_INTERACTIVE, memlimit: sodium.crypto_pwhash_MEMLIMIT_INTERACTIVE, salt },
        nonce: nonce.toString('base64'), ciphertext: ct.toString('base64'),
      });
    };
    const plain = { box_id: identity.boxId, name: 'b', role: 'primary', master_key: identity.masterKey.toString('base64'), config: {}, sealed_at: new Date().toISOString() };
    const v2 = openEscrow(seal(ESCROW_FORMAT_V2, plain), access);
    expect(v2.format).to.equal(ESCROW_FORMAT_V2);
    expect(v2.chunk_ids).to.equal('hmac-sha256');
    // A v2 blob cannot claim BLAKE3: the field is not part of that format.
    expect(openEscrow(seal(ESCROW_FORMAT_V2, { ...plain, chunk_ids: 'blake3' }), access).chunk_ids).to.equal('hmac-sha256');
    expect(() => openEscrow(seal(ESCROW_FORMAT, plain), access)).to.throw(/unknown chunk id scheme undefined/);
    expect(() => openEscrow(seal(ESCROW_FORMAT, { ...plain, chunk_ids: 'sha1' }), access)).to.throw(/unknown chunk id scheme "sha1"/);
    expect(() => openEscrow(seal('cairn-escrow-v4', { ...plain, chunk_ids: 'blake3' }), access)).to.throw(/unknown format/);
  });
});

