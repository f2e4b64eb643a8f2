import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { prewarm, takeWorker } from '../../../src/agent/prewarm';
import { ChunkOut, WorkerPool } from '../../../src/agent/worker-pool';
import { deriveDataKeys } from '../../../src/core/keys';

/** Worker threads started before the CLI has loaded (see prewarm.ts). */
describe('prewarmed worker threads', () => {
  it('are taken in order; one that died before it was taken is replaced by a new one', async () => {
    const [first, dead] = prewarm('restore-worker.js', 2);
    await dead.terminate();
    const a = takeWorker('restore-worker.js');
    const b = takeWorker('restore-worker.js');
    const c = takeWorker('restore-worker.js');
    try {
      expect(a).to.equal(first);
      expect(b).to.not.equal(dead);
      expect(b.threadId).to.be.greaterThan(0);
      expect(c.threadId).to.be.greaterThan(0);
      expect(new Set([a.threadId, b.threadId, c.threadId]).size).to.equal(3);
    } finally {
      await Promise.all([a, b, c].map((w) => w.terminate()));
    }
  });

  it('a pool runs its jobs on a worker started before it (its set-up message arrives late)', async () => {
    const [early] = prewarm('chunk-worker.js', 1);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-prewarm-'));
    const pool = new WorkerPool(deriveDataKeys(randomBytes(32), 'blake3'), { threads: 1 });
    try {
      const file = path.join(dir, 'f');
      fs.writeFileSync(file, randomBytes(300 * 1024));
      const chunks: ChunkOut[] = [];
      const r = await pool.chunkFile(Buffer.from(file), 'data', (c) => {
        chunks.push(c);
        pool.release(c);
      });
      expect(r.error).to.equal(undefined);
      expect(r.bytes).to.equal(300 * 1024);
      expect(chunks.reduce((n, c) => n + c.size, 0)).to.equal(300 * 1024);
      expect(early.threadId, 'the early worker is the one that ran (still alive, taken by the pool)').to.be.greaterThan(0);
      const next = takeWorker('chunk-worker.js');
      await next.terminate();
      expect(next, 'none left over').to.not.equal(early);
    } finally {
      await pool.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('workers nobody takes do not keep the process alive', () => {
    const mod = path.join(__dirname, '../../../src/agent/prewarm.js');
    const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(mod)}).prewarm('restore-worker.js', 2); require(${JSON.stringify(mod)}).prewarm('chunk-worker.js', 1);`], { timeout: 20_000 });
    expect(r.signal, 'the process had to be killed: a worker held it').to.equal(null);
    expect(r.status, r.stderr.toString()).to.equal(0);
  });
});
