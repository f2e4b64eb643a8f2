import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { BLOCK_NEW, BLOCK_SAME, BLOCK_ZERO, processVolumeJob, VolumeDone, VOLUME_JOB_BYTES } from '../../../src/agent/volume/volume-job';
import { chunkId } from '../../../src/core/chunk-id';
import { openChunk } from '../../../src/core/chunk-codec';
import { DataKeys } from '../../../src/core/keys';
import { ExternalGarbage } from '../../../src/core/external-memory';
import { WorkerPool } from '../../../src/agent/worker-pool';
import type { WorkerMessage } from '../../../src/agent/chunk-worker';

const keys: DataKeys = { idScheme: 'blake3', idKey: randomBytes(32), chunkKey: randomBytes(32), manifestKey: randomBytes(32), gearKey: randomBytes(32) };
const BS = 64 * 1024;

describe('volume/volume-job (worker side) and WorkerPool.volumeRange', () => {
  let dir: string;
  let img: string;
  const blocks: Buffer[] = [];
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-vjob-'));
    img = path.join(dir, 'v.img');
    // zero, random, random (same as the parent), zero, short last block
    blocks.push(Buffer.alloc(BS), randomBytes(BS), randomBytes(BS), Buffer.alloc(BS), randomBytes(1000));
    fs.writeFileSync(img, Buffer.concat(blocks));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  function prevFor(sameIndex: number): Uint8Array {
    const prev = Buffer.alloc(blocks.length * 32);
    chunkId(keys, blocks[sameIndex]).copy(prev, sameIndex * 32);
    return prev;
  }

  it('classifies zero / same / new blocks and seals only the new ones', async () => {
    const msgs: (WorkerMessage | VolumeDone)[] = [];
    const size = fs.statSync(img).size;
    await processVolumeJob(
      { keys, buf: Buffer.alloc(VOLUME_JOB_BYTES), reserve: () => undefined, garbage: new ExternalGarbage(), post: (m) => msgs.push(m) },
      { type: 'volume', jobId: 7, path: Buffer.from(img), offset: 0, length: size, blockSize: BS, prev: prevFor(2) },
    );
    const done = msgs[msgs.length - 1] as VolumeDone;
    expect(done.type).to.equal('volume-done');
    expect(done.error).to.equal(undefined);
    expect(done.bytes).to.equal(size);
    expect([...done.states]).to.deep.equal([BLOCK_ZERO, BLOCK_NEW, BLOCK_SAME, BLOCK_ZERO, BLOCK_NEW]);
    const chunks = msgs.filter((m): m is Extract<WorkerMessage, { type: 'chunk' }> => m.type === 'chunk');
    expect(chunks.map((c) => c.size)).to.deep.equal([BS, 1000]);
    expect(openChunk(keys, Buffer.from(chunks[1].id), Buffer.from(chunks[1].blob!)).equals(blocks[4])).to.equal(true);
    expect(Buffer.from(done.ids.subarray(0, 32)).equals(Buffer.alloc(32))).to.equal(true);
    expect(Buffer.from(done.ids.subarray(64, 96)).equals(chunkId(keys, blocks[2]))).to.equal(true);
  });

  it('reports a volume that ends before the expected range instead of inventing blocks', async () => {
    const msgs: (WorkerMessage | VolumeDone)[] = [];
    await processVolumeJob(
      { keys, buf: Buffer.alloc(VOLUME_JOB_BYTES), reserve: () => undefined, garbage: new ExternalGarbage(), post: (m) => msgs.push(m) },
      { type: 'volume', jobId: 1, path: Buffer.from(img), offset: 0, length: 8 * BS, blockSize: BS, prev: new Uint8Array(8 * 32) },
    );
    const done = msgs[msgs.length - 1] as VolumeDone;
    expect(done.error).to.contain('shrank');
  });

  it('runs in the real worker pool: a range at an offset, chunks streamed back and released', async () => {
    const pool = new WorkerPool(keys, { threads: 2 });
    try {
      const seen: number[] = [];
      const r = await pool.volumeRange({ path: Buffer.from(img), offset: BS, length: 2 * BS, blockSize: BS, prev: new Uint8Array(64) }, (c) => {
        seen.push(c.size);
        pool.release(c);
      });
      expect(r.error).to.equal(undefined);
      expect([...r.states]).to.deep.equal([BLOCK_NEW, BLOCK_NEW]);
      expect(seen).to.deep.equal([BS, BS]);
      // the file path of the pool still works alongside
      const f = await pool.chunkFile(Buffer.from(img), 'data', (c) => pool.release(c));
      expect(f.bytes).to.equal(fs.statSync(img).size);
    } finally {
      await pool.close();
    }
  });
});
