import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { Harness } from './harness';
import { Prng, textBytes } from '../../scripts/lib/sample';
import { compareTrees } from '../../scripts/lib/tree';
import type { BackupResult } from '../../src/agent/backup';

type BackupJson = Pick<BackupResult, 'snapshot' | 'files' | 'bytes_read' | 'chunks_new' | 'chunks_known' | 'warnings'>;

/** A tree of small text files: `dirs` directories of `per` files of 200 B to 20 KB. */
function smallTree(root: string, dirs: number, per: number, seed: string): void {
  const rng = new Prng(seed);
  for (let d = 0; d < dirs; d++) {
    const dir = path.join(root, `dir-${d}`);
    fs.mkdirSync(dir, { recursive: true });
    for (let f = 0; f < per; f++) fs.writeFileSync(path.join(dir, `file-${f}.txt`), textBytes(rng, 200 + rng.int(20_000)));
  }
}

/**
 * Small files are read as bundles (backup.ts, manifest version 2): many files share a chunk,
 * and restore fetches each shared chunk once and writes each file's range of it.
 */
describe('integration: small files bundled into shared chunks', function () {
  this.timeout(180_000);
  let h: Harness;

  before(async () => {
    h = await new Harness('cairn-bundles').up();
  });
  after(async () => h.close());

  /** Restores a snapshot to a new directory: nothing fails and the tree equals `src`. Returns the restore's JSON. */
  const restoresExactly = async (snapshot: string, src: string, name: string): Promise<{ files: number; failed: number }> => {
    const out = h.path(name);
    const r = await h.cairnJson<{ files: number; failed: number }>(['restore', snapshot, '--target', out]);
    expect(r.failed).to.equal(0);
    expect(compareTrees(src, out)).to.deep.equal([]);
    return r;
  };

  it('stores 2,000 small files in far fewer chunks, restores them byte for byte, and re-reads only what changed', async () => {
    const src = h.path('small');
    smallTree(src, 40, 50, 'bundles');
    fs.writeFileSync(path.join(src, 'dir-0', 'empty.txt'), '');
    fs.linkSync(path.join(src, 'dir-5', 'file-9.txt'), path.join(src, 'dir-6', 'link-to-5-9.txt'));
    const b = await h.cairnJson<BackupJson>(['backup', src, '--source', 'small']);
    expect(b.files).to.equal(2002);
    expect(b.warnings).to.deep.equal([]);
    // about 20 MB of small files: a few dozen chunks (1 MiB on average), not 2,001
    expect(b.chunks_new).to.be.within(2, 200);
    const r = await restoresExactly(b.snapshot, src, 'restore-small');
    expect(r.files).to.equal(2001);
    const out = h.path('restore-small');
    // a hard link to a bundled file is restored as a link
    expect(fs.statSync(path.join(out, 'dir-6', 'link-to-5-9.txt')).ino).to.equal(fs.statSync(path.join(out, 'dir-5', 'file-9.txt')).ino);

    // One subdirectory restored alone: its files' ranges come out of chunks shared with others.
    const part = h.path('restore-part');
    const rp = await h.cairn(['restore', `${b.snapshot}:dir-17`, '--target', part]);
    expect(rp.code, rp.stderr).to.equal(0);
    expect(compareTrees(path.join(src, 'dir-17'), path.join(part, 'dir-17'))).to.deep.equal([]);

    // Change three files: only they are read again, and the others keep their ranges.
    fs.appendFileSync(path.join(src, 'dir-3', 'file-7.txt'), 'appended');
    fs.writeFileSync(path.join(src, 'dir-30', 'new.txt'), 'a new small file');
    fs.rmSync(path.join(src, 'dir-12', 'file-0.txt'));
    const again = await h.cairnJson<BackupJson>(['backup', src, '--source', 'small']);
    expect(again.bytes_read).to.equal(fs.statSync(path.join(src, 'dir-3', 'file-7.txt')).size + 'a new small file'.length);
    expect(again.chunks_new, 'one bundle of the two files read, and the manifest').to.be.at.most(3);
    await restoresExactly(again.snapshot, src, 'restore-small-2');
  });

  it('restores a file that uses the same chunk several times (repeated content), each copy at its offset', async () => {
    const src = h.path('repeats');
    fs.mkdirSync(src);
    // A period that divides the chunker's largest chunk (4 MiB): whether or not the key finds a
    // cut inside it, the cuts recur with it. Cut short after the last chunk that repeats an
    // earlier one, the file's last chunk, fetched once for several offsets, is written last.
    const a = new Prng('repeats').bytes(2 * 1024 * 1024);
    const file = path.join(src, 'repeated.bin');
    const full = Buffer.concat([a, a, a, a, a]);
    fs.writeFileSync(file, full);
    const seen = new Set<string>();
    let end = 0;
    let cut = 0;
    for (const c of h.chunksOf(file)) {
      end += c.size;
      if (seen.has(c.hash)) cut = end;
      seen.add(c.hash);
    }
    expect(cut, 'the file repeats chunks').to.be.greaterThan(0);
    fs.writeFileSync(file, full.subarray(0, cut));
    const chunks = h.chunksOf(file);
    expect(chunks.slice(0, -1).some((c) => c.hash === chunks[chunks.length - 1].hash), 'its last chunk is a repeat').to.equal(true);
    const b = await h.cairnJson<BackupJson>(['backup', src, '--source', 'repeats']);
    await restoresExactly(b.snapshot, src, 'restore-repeats');
  });

  it('a directory moved whole is mostly found on the box: its files, read again in a new place, cut into the same chunks', async () => {
    const src = h.path('moving');
    smallTree(path.join(src, 'a'), 20, 50, 'moving');
    const first = await h.cairnJson<BackupJson>(['backup', src, '--source', 'moving']);
    fs.renameSync(path.join(src, 'a'), path.join(src, 'b'));
    const moved = await h.cairnJson<BackupJson>(['backup', src, '--source', 'moving']);
    expect(moved.bytes_read, 'every file has a new path: all are read').to.be.greaterThan(5_000_000);
    // The same files in the same order make the same stream: at most the chunks at the edges
    // of bundles cut elsewhere this time differ (plus the manifest).
    expect(first.chunks_new).to.be.at.least(6);
    expect(moved.chunks_new, JSON.stringify({ first: first.chunks_new, moved })).to.be.at.most(Math.floor(first.chunks_new / 2) + 1);
    await restoresExactly(moved.snapshot, src, 'restore-moved');
  });
});
