import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { Harness } from '../../integration/harness';
import { AgentHome } from '../../../src/agent/state';
import { BoxClient } from '../../../src/agent/box-client';
import { ChunkOut, WorkerPool } from '../../../src/agent/worker-pool';
import { Uploader } from '../../../src/agent/uploader';
import { chunkId } from '../../../src/core/chunk-id';
import { sealChunkSync } from '../../../src/core/chunk-codec';
import { encodeUploadBatch, UploadResult } from '../../../src/core/api';
import type { DataKeys } from '../../../src/core/keys';

/**
 * The uploader against a real cairnd over TLS: after the box says it lacks every id of a
 * batch, the next batches go up without asking; an answer naming held ids sends it back to
 * asking, and those ids do not count as new.
 */
describe('uploader: asking which chunks the box lacks', function () {
  this.timeout(60_000);
  let h: Harness;
  let keys: DataKeys;
  let pool: WorkerPool;
  let client: BoxClient;
  const calls: string[] = [];
  /** answers to hand the uploader instead of the box's next upload answers */
  const garble: Buffer[] = [];

  before(async () => {
    h = await new Harness('cairn-uploader').up();
    keys = new AgentHome(h.home).keys(h.agentConfig());
    pool = new WorkerPool(keys, { threads: 1 });
    client = h.client();
    const call = client.call.bind(client);
    client.call = async (method, p, body, opts) => {
      calls.push(p);
      const answer = await call(method, p, body, opts);
      return p === '/v1/chunks' && garble.length ? garble.shift()! : answer;
    };
  });
  after(async () => {
    client.close();
    await pool.close();
    await h.close();
  });

  const chunk = (size: number): ChunkOut => {
    const plain = randomBytes(size);
    const id = chunkId(keys, plain);
    return { id, size, blob: sealChunkSync(keys, id, plain, 'data') };
  };

  it('stops asking once batches worth skipAfterBytes in a row were all lacking, and asks again when the box held some', async () => {
    const held = chunk(70_000);
    const first = JSON.parse((await client.call('POST', '/v1/chunks', encodeUploadBatch([held]))).toString('utf8')) as UploadResult;
    expect(first).to.include({ stored: 1, existed: 0 });
    expect(first.existed_ids, 'no ids listed when none were held').to.equal(undefined);
    calls.length = 0;

    const up = new Uploader(client, pool, { skipAfterBytes: 100_000 });
    const sent: ChunkOut[] = [];
    const send = async (size: number): Promise<ChunkOut> => {
      const c = chunk(size);
      sent.push(c);
      up.add(c);
      await up.drain();
      return c;
    };
    const asked = ['/v1/chunks/missing', '/v1/chunks'];
    const unasked = ['/v1/chunks'];
    const step = async (what: () => Promise<unknown>): Promise<string[]> => {
      const from = calls.length;
      await what();
      return calls.slice(from);
    };
    expect(await step(() => send(50_000)), 'asks at first').to.deep.equal(asked);
    expect(await step(() => send(60_000)), 'asks until 100,000 bytes in a row were all lacking').to.deep.equal(asked);
    expect(await step(() => send(30_000)), 'then uploads without asking').to.deep.equal(unasked);
    // a batch holding a chunk the box has: sent whole, and the box names the held one
    const before = { ...up.stats };
    expect(await step(async () => {
      up.add(held);
      await up.drain();
    })).to.deep.equal(unasked);
    expect(up.stats.chunks_new - before.chunks_new, 'the held chunk is not new').to.equal(0);
    expect(up.stats.bytes_new - before.bytes_new).to.equal(0);
    expect(up.stats.bytes_uploaded - before.bytes_uploaded, 'but it went on the wire').to.equal(held.blob.length);
    // back to asking, and it now takes twice the evidence to stop
    expect(await step(() => send(120_000))).to.deep.equal(asked);
    expect(await step(() => send(90_000)), '210,000 bytes: past the doubled 200,000').to.deep.equal(asked);
    expect(await step(() => send(10_000))).to.deep.equal(unasked);
    expect(up.stats.chunks_new).to.equal(sent.length);
    expect(up.stats.bytes_new).to.equal(sent.reduce((n, c) => n + c.size, 0));
    expect(up.stats.bytes_uploaded).to.equal(sent.reduce((n, c) => n + c.blob.length, 0) + held.blob.length);
    // an upload answer it cannot read: the chunk still counts as new, and it asks again
    const n = up.stats.chunks_new;
    garble.push(Buffer.from('{"existed": "lots", "existed_ids": [1, "zz"]'));
    expect(await step(() => send(20_000))).to.deep.equal(unasked);
    expect(up.stats.chunks_new).to.equal(n + 1);
    expect(await step(() => send(15_000)), 'back to asking').to.deep.equal(asked);
    // what was uploaded without asking is stored: the box lacks none of it
    const ids = Buffer.concat([...sent.map((c) => c.id), held.id]);
    const missing = await client.call('POST', '/v1/chunks/missing', ids);
    expect(missing.length).to.equal(0);
  });
});
