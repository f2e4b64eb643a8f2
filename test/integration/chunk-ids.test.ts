import { expect } from 'chai';
import Database from 'better-sqlite3';
import { createHmac } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { createBLAKE3 } from 'hash-wasm';
import { Harness } from './harness';
import { Prng } from '../../scripts/lib/sample';
import { compareTrees } from '../../scripts/lib/tree';
import { deriveDataKeys, IdScheme } from '../../src/core/keys';
import type { BackupResult } from '../../src/agent/backup';

/**
 * Real cairnd and agent processes, one box per scheme: a box activated now names chunks with
 * keyed BLAKE3; a box activated before BLAKE3 ids (keys file format 1, no chunk_ids) keeps naming them
 * with HMAC-SHA-256 after the upgrade, so what it stored before stays deduplicated and readable.
 */
describe('integration: chunk ids of a box activated now, and of one activated before BLAKE3 ids', function () {
  this.timeout(120_000);

  for (const scheme of ['blake3', 'hmac-sha256'] as const) {
    it(`${scheme}: pairing hands the agent its id key, the box stores the ids the scheme gives, and the restore is byte for byte`, async () => {
      const h = new Harness(`cairn-ids-${scheme}`);
      try {
        await h.init();
        const keysFile = path.join(h.data, 'keys.json');
        const k = JSON.parse(fs.readFileSync(keysFile, 'utf8')) as Record<string, unknown>;
        expect(k.chunk_ids).to.equal('blake3');
        if (scheme === 'hmac-sha256') {
          // What a box activated before BLAKE3 ids has on its disk.
          delete k.chunk_ids;
          k.format = 1;
          fs.writeFileSync(keysFile, JSON.stringify(k, null, 2));
        }
        await h.start();
        const p = await h.cairn(['pair', h.daemon!.address, '--token', await h.token(), '--name', 'pc']);
        expect(p.code, p.stderr).to.equal(0);
        expect((await h.cairndJson<{ chunk_ids: string }>(['status'])).chunk_ids).to.equal(scheme);
        const text = await h.cairnd(['status', '--data', h.data]);
        expect(text.stdout).to.contain(`chunk ids ${scheme}`);
        const agentKeys = h.agentConfig().keys;
        expect(Object.keys(agentKeys).filter((f) => f.startsWith('idKey'))).to.deep.equal([scheme === 'blake3' ? 'idKeyBlake3' : 'idKey']);

        const src = h.path('src');
        fs.mkdirSync(src);
        const rng = new Prng(scheme);
        const small = rng.bytes(50_000); // under the chunker's minimum: one chunk
        fs.writeFileSync(path.join(src, 'small.bin'), small);
        fs.writeFileSync(path.join(src, 'large.bin'), rng.bytes(6 * 1024 * 1024 + 5));
        const b = await h.cairnJson<Pick<BackupResult, 'snapshot' | 'chunks_new'>>(['backup', src, '--source', 's']);
        expect(b.chunks_new).to.be.greaterThan(2);

        const idKey = deriveDataKeys(Buffer.from(k.master_key as string, 'base64'), scheme as IdScheme).idKey;
        let expected: Buffer;
        if (scheme === 'blake3') {
          const ref = await createBLAKE3(256, idKey);
          ref.init();
          ref.update(small);
          expected = Buffer.from(ref.digest('binary'));
        } else {
          expected = createHmac('sha256', idKey).update(small).digest();
        }
        const db = new Database(path.join(h.data, 'catalog.db'), { readonly: true, fileMustExist: true });
        try {
          const row = db.prepare('SELECT size FROM chunks WHERE id = ?').get(expected) as { size: number } | undefined;
          expect(row, 'the small file\'s chunk is stored under the id its scheme gives').to.not.equal(undefined);
        } finally {
          db.close();
        }

        const out = h.path('restored');
        const r = await h.cairn(['restore', b.snapshot, '--target', out]);
        expect(r.code, r.stderr).to.equal(0);
        expect(compareTrees(src, out)).to.deep.equal([]);

        // A second backup finds the new file's chunk known (the ids are stable from one run of
        // the agent to the next): it uploads only the new snapshot's manifest.
        fs.writeFileSync(path.join(src, 'copy-of-small.bin'), small);
        const again = await h.cairnJson<Pick<BackupResult, 'chunks_new' | 'bytes_new'>>(['backup', src, '--source', 's']);
        expect(again.chunks_new).to.equal(1);
        expect(again.bytes_new).to.be.lessThan(10_000);
      } finally {
        await h.close();
      }
    });
  }
});
