import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ChunkOut, FileResult, WorkerPool } from '../../../src/agent/worker-pool';
import { deriveDataKeys } from '../../../src/core/keys';

describe('worker pool: spreading jobs', () => {
  let dir: string;
  let pool: WorkerPool;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-pool-'));
    pool = new WorkerPool(deriveDataKeys(randomBytes(32), 'blake3'), { threads: 2 });
  });
  after(async () => {
    await pool.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('queues small files on the other worker while one works through a large file, and forgets every job once done', async () => {
    const big = path.join(dir, 'big');
    fs.writeFileSync(big, randomBytes(24 * 1024 * 1024));
    const small = Array.from({ length: 40 }, (_, i) => {
      const p = path.join(dir, `small-${i}`);
      fs.writeFileSync(p, randomBytes(3000 + i));
      return p;
    });
    const got: ChunkOut[] = [];
    const onChunk = (c: ChunkOut): void => {
      got.push(c);
      pool.release(c);
    };
    const jobs: Promise<FileResult>[] = [pool.chunkFile(Buffer.from(big), 'data', onChunk, fs.statSync(big).size)];
    const afterBig = pool.queuedBytes;
    const bigWorker = afterBig[0] > afterBig[1] ? 0 : 1;
    expect(afterBig[1 - bigWorker]).to.equal(0);
    for (const p of small) jobs.push(pool.chunkFile(Buffer.from(p), 'data', onChunk, fs.statSync(p).size));
    const queued = pool.queuedBytes;
    // By count the small files would have been split 20/20, half of them waiting behind the large one.
    expect(queued[bigWorker], 'nothing more queued behind the large file').to.equal(afterBig[bigWorker]);
    expect(queued[1 - bigWorker]).to.be.greaterThan(40 * 3000);
    const results = await Promise.all(jobs);
    expect(results.map((r) => r.error)).to.deep.equal(jobs.map(() => undefined));
    expect(results[0].bytes).to.equal(24 * 1024 * 1024);
    expect(pool.queuedBytes).to.deep.equal([0, 0]);
    expect(got.length).to.be.greaterThan(40);
  });
});
