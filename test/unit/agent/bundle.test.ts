import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ChunkOut, WorkerPool } from '../../../src/agent/worker-pool';
import type { BundlePart } from '../../../src/agent/chunk-worker';
import { openChunk } from '../../../src/core/chunk-codec';
import { chunkId } from '../../../src/core/chunk-id';
import { deriveDataKeys } from '../../../src/core/keys';

/**
 * Bundles (chunk-worker.ts): small files read one after another as one stream. What the main
 * thread builds the manifest from must hold: each part's [start, start + bytes) is exactly
 * that file's bytes in the concatenation of the chunks' plaintexts.
 */
describe('chunk worker: bundles of small files', () => {
  const keys = deriveDataKeys(randomBytes(32), 'blake3');
  let dir: string;
  let pool: WorkerPool;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-bundle-'));
    pool = new WorkerPool(keys, { threads: 2 });
  });
  after(async () => {
    await pool.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  /** plaintexts by id: a chunk met before in the pool's run comes back known, without a blob */
  const seen = new Map<string, Buffer>();
  const run = async (paths: string[]): Promise<{ parts: BundlePart[]; chunks: ChunkOut[]; stream: Buffer; error?: string }> => {
    const chunks: ChunkOut[] = [];
    const parts: BundlePart[] = [];
    const plains: Buffer[] = [];
    const r = await pool.chunkBundle(paths.map((p) => Buffer.from(p)), (c) => {
      const hex = c.id.toString('hex');
      if (!c.known) seen.set(hex, Buffer.from(openChunk(keys, c.id, c.blob)));
      chunks.push({ ...c, id: Buffer.from(c.id) });
      plains.push(seen.get(hex)!);
      pool.release(c);
    }, (m) => parts.push(m), 0);
    parts.sort((a, b) => a.index - b.index);
    return { parts, chunks, stream: Buffer.concat(plains), error: r.error };
  };

  it('places every file at its offset in the stream, cut across file boundaries, and reports empty, missing and non-regular files', async () => {
    const contents: (Buffer | null)[] = [];
    const paths: string[] = [];
    for (let i = 0; i < 300; i++) {
      const p = path.join(dir, `f-${String(i).padStart(3, '0')}`);
      paths.push(p);
      if (i === 7) {
        contents.push(null); // missing: never created
        continue;
      }
      if (i === 8) {
        fs.mkdirSync(p); // a directory where a file was listed
        contents.push(null);
        continue;
      }
      const b = i === 9 ? Buffer.alloc(0) : randomBytes(1000 + ((i * 7919) % 60000));
      fs.writeFileSync(p, b);
      contents.push(b);
    }
    const { parts, chunks, stream, error } = await run(paths);
    expect(error).to.equal(undefined);
    expect(parts.map((p) => p.index)).to.deep.equal(paths.map((_, i) => i));
    // 300 files of 1-61 KB (about 9 MB): several chunks, most of them holding many files
    expect(chunks.length).to.be.within(2, 40);
    let at = 0;
    parts.forEach((p, i) => {
      const want = contents[i];
      expect(p.start, `start of ${i}`).to.equal(at);
      if (want === null) {
        expect(p.error, `error of ${i}`).to.be.a('string');
        expect(p.bytes).to.equal(0);
        return;
      }
      expect(p.error, `error of ${i}`).to.equal(undefined);
      expect(p.bytes).to.equal(want.length);
      expect(stream.subarray(p.start, p.start + p.bytes).equals(want), `bytes of ${i}`).to.equal(true);
      expect(p.mtimeNs).to.equal(fs.statSync(paths[i], { bigint: true }).mtimeNs.toString());
      at += p.bytes;
    });
    expect(parts.find((p) => p.index === 7)!.errno).to.equal('ENOENT');
    expect(parts.find((p) => p.index === 8)!.errno).to.equal('ENOTREG');
    expect(stream.length).to.equal(at);
    for (const c of chunks) expect(c.id.equals(chunkId(keys, seen.get(c.id.toString('hex'))!))).to.equal(true);
  });

  it('cuts the same stream into the same chunks: a bundle of the same files in the same order gives the same ids', async () => {
    const paths = Array.from({ length: 120 }, (_, i) => {
      const p = path.join(dir, `same-${i}`);
      fs.writeFileSync(p, randomBytes(20_000 + i));
      return p;
    });
    const a = await run(paths);
    const b = await run(paths);
    expect(a.chunks.map((c) => c.id.toString('hex'))).to.deep.equal(b.chunks.map((c) => c.id.toString('hex')));
    expect(a.stream.equals(b.stream)).to.equal(true);
  });

  it('a bundle of one file is that file cut alone: its chunk is the one a file job gives', async () => {
    const p = path.join(dir, 'alone');
    fs.writeFileSync(p, randomBytes(50_000));
    const { chunks } = await run([p]);
    const single: ChunkOut[] = [];
    await pool.chunkFile(Buffer.from(p), 'data', (c) => {
      single.push(c);
      pool.release(c);
    }, 50_000);
    expect(chunks.map((c) => c.id.toString('hex'))).to.deep.equal(single.map((c) => c.id.toString('hex')));
  });
});
