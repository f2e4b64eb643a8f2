import { expect } from 'chai';
import { FileSpread } from '../../../src/agent/restore-pool';

/** Which restore worker gets a file (FileSpread): by bytes in progress, a directory's small files together. */
describe('restore: files spread over the workers', () => {
  it('gives each large file to the worker with the fewest bytes in progress', () => {
    const s = new FileSpread(2);
    expect(s.choose(100 << 20)).to.equal(0);
    expect(s.choose(10 << 20)).to.equal(1);
    expect(s.choose(10 << 20), 'worker 1 holds 10 MiB, worker 0 100 MiB').to.equal(1);
    expect(s.choose(10 << 20)).to.equal(1);
    s.done(0, 100 << 20);
    expect(s.load).to.deep.equal([0, 30 << 20]);
    expect(s.choose(1 << 20)).to.equal(0);
  });

  it("keeps a directory's small files on one worker while any is in progress, then lets the directory move", () => {
    const s = new FileSpread(2);
    expect(s.choose(50 << 20)).to.equal(0); // a large file elsewhere
    const first = s.choose(1000, 'a');
    expect(first, 'the lighter worker').to.equal(1);
    for (let i = 0; i < 100; i++) expect(s.choose(1000, 'a')).to.equal(1);
    expect(s.choose(1000, 'b'), 'another directory goes to the lighter worker, whichever it is').to.equal(1);
    s.done(0, 50 << 20);
    expect(s.choose(1000, 'a'), 'still in progress: same worker though worker 0 is idle').to.equal(1);
    for (let i = 0; i < 102; i++) s.done(1, 1000, 'a');
    expect(s.choose(1000, 'a'), 'none in progress: the directory goes to the lighter worker').to.equal(0);
    expect(s.load).to.deep.equal([1000, 1000]);
  });
});
