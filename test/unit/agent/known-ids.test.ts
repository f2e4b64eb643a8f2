import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { KnownIds, KNOWN_ID_SLOTS } from '../../../src/agent/known-ids';

/** ids that all fall in one bucket: the same first four bytes */
function sameBucket(n: number): Buffer[] {
  const head = randomBytes(4);
  return Array.from({ length: n }, () => Buffer.concat([head, randomBytes(28)]));
}

describe('KnownIds (the table of chunks a run need not seal)', () => {
  it('knows what was added and nothing else', () => {
    const k = new KnownIds();
    const ids = Array.from({ length: 1000 }, () => randomBytes(32));
    for (const id of ids.slice(0, 500)) k.add(id);
    expect(ids.slice(0, 500).every((id) => k.has(id))).to.equal(true);
    expect(ids.slice(500).some((id) => k.has(id))).to.equal(false);
  });

  it('never knows an empty slot, the all-zero id or an id of the wrong length', () => {
    const k = new KnownIds();
    expect(k.has(Buffer.alloc(32))).to.equal(false);
    k.add(Buffer.alloc(32));
    expect(k.has(Buffer.alloc(32))).to.equal(false);
    const id = randomBytes(32);
    k.add(id);
    expect(k.has(id.subarray(0, 31))).to.equal(false);
    k.add(randomBytes(16));
    expect(k.has(Buffer.concat([id, Buffer.alloc(1)]))).to.equal(false);
  });

  it('keeps four ids that share a bucket; a fifth takes one of their places', () => {
    const k = new KnownIds();
    const ids = sameBucket(5);
    for (const id of ids.slice(0, 4)) k.add(id);
    expect(ids.slice(0, 4).every((id) => k.has(id))).to.equal(true);
    k.add(ids[4]);
    expect(k.has(ids[4])).to.equal(true);
    expect(ids.filter((id) => k.has(id)).length).to.equal(4);
    // adding a known id again moves nothing
    const before = ids.map((id) => k.has(id));
    k.add(ids[4]);
    expect(ids.map((id) => k.has(id))).to.deep.equal(before);
  });

  it('adds a whole chunk list (id and size per reference)', () => {
    const k = new KnownIds();
    const ids = Array.from({ length: 10 }, () => randomBytes(32));
    const list = Buffer.concat(ids.map((id) => Buffer.concat([id, Buffer.from([1, 0, 0, 0])])));
    k.addList(list, 36);
    expect(ids.every((id) => k.has(id))).to.equal(true);
  });

  it('is one table across threads: ids a worker adds are known here', async () => {
    const k = new KnownIds();
    const ids = Array.from({ length: 200 }, () => randomBytes(32));
    const mod = path.join(__dirname, '../../../src/agent/known-ids.js');
    const w = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
       const { KnownIds } = require(workerData.mod);
       const k = new KnownIds(workerData.shared);
       for (const id of workerData.ids) k.add(id);
       parentPort.postMessage(workerData.ids.filter((id) => k.has(id)).length);`,
      { eval: true, workerData: { mod, shared: k.shared, ids } },
    );
    const seen = await new Promise<number>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    await w.terminate();
    expect(seen).to.equal(200);
    expect(ids.every((id) => k.has(id))).to.equal(true);
  });

  it('refuses a table that is not whole buckets', () => {
    expect(() => new KnownIds(new SharedArrayBuffer(32 * 3))).to.throw(/not a power-of-two/);
    expect(new KnownIds().shared.byteLength).to.equal(KNOWN_ID_SLOTS * 32);
  });
});
