import { expect } from 'chai';
import type { Worker } from 'node:worker_threads';
import { ThreadOutbox } from '../../../src/agent/thread-outbox';

/** Stands in for a Worker: records what is posted to it. */
class FakeWorker {
  readonly got: number[][] = [];
  postMessage(items: number[]): void {
    this.got.push(items.slice());
  }
}

describe('thread outbox: messages to worker threads', () => {
  const make = (): { out: ThreadOutbox<number>; ws: FakeWorker[] } => {
    const ws = [new FakeWorker(), new FakeWorker()];
    return { out: new ThreadOutbox<number>(ws as unknown as Worker[]), ws };
  };
  const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

  it('post gathers a turn\'s items into one message per worker, sent after the turn', async () => {
    const { out, ws } = make();
    out.post(0, 1);
    out.post(1, 2);
    out.post(0, 3);
    expect(ws[0].got).to.deep.equal([]);
    await turn();
    expect(ws[0].got).to.deep.equal([[1, 3]]);
    expect(ws[1].got).to.deep.equal([[2]]);
  });

  it('postNow sends at once, with the items posted to that worker before it, in order; the others still wait for the turn', async () => {
    const { out, ws } = make();
    out.post(0, 1);
    out.post(1, 2);
    out.postNow(0, 3);
    expect(ws[0].got).to.deep.equal([[1, 3]]);
    expect(ws[1].got).to.deep.equal([]);
    out.post(0, 4);
    await turn();
    expect(ws[0].got).to.deep.equal([[1, 3], [4]]);
    expect(ws[1].got).to.deep.equal([[2]]);
    await turn();
    expect(ws[0].got.length, 'nothing sent twice').to.equal(2);
  });
});
