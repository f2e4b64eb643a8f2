import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { Harness, publishedBlobBytes } from './harness';
import { CAIRN } from '../../scripts/lib/procs';
import { Prng } from '../../scripts/lib/sample';
import { compareTrees } from '../../scripts/lib/tree';


describe('integration: an interrupted backup resumes without resending what landed', function () {
  this.timeout(180_000);
  let h: Harness;

  before(async () => {
    h = await new Harness('cairn-resume').up();
  });
  after(async () => h.close());

  it('kill -9 of the agent mid-upload, then a second run sends only what is missing', async () => {
    const src = h.path('src');
    const rng = new Prng('resume');
    for (let i = 0; i < 12; i++) {
      fs.mkdirSync(path.join(src, `d${i % 3}`), { recursive: true });
      fs.writeFileSync(path.join(src, `d${i % 3}`, `f${i}.bin`), rng.bytes(12 * 1024 * 1024));
    }
    const total = 12 * 12 * 1024 * 1024;
    const agent = spawn(process.execPath, [CAIRN, 'backup', src, '--source', 'r', '--threads', '1'], { env: { ...process.env, ...h.env }, stdio: 'ignore' });
    const deadline = Date.now() + 60_000;
    while (publishedBlobBytes(h.data) < total * 0.25 && Date.now() < deadline && agent.exitCode === null) await new Promise((r) => setTimeout(r, 20));
    agent.kill('SIGKILL');
    await new Promise((r) => agent.once('exit', r));
    const landed = publishedBlobBytes(h.data);
    expect(landed, 'some chunks landed before the kill').to.be.greaterThan(total * 0.2);
    expect(landed, 'the kill came before the end').to.be.lessThan(total * 0.95);
    expect((await h.cairnJson<unknown[]>(['snapshots'])).length, 'no snapshot from the killed run').to.equal(0);

    const r = await h.cairnJson<{ snapshot: string; bytes_uploaded: number; bytes_read: number }>(['backup', src, '--source', 'r']);
    expect(r.bytes_read).to.equal(total);
    // what landed before the kill is not sent again (allow for the manifest and batch granularity)
    expect(r.bytes_uploaded).to.be.lessThan(total - landed * 0.9 + 1024 * 1024);
    expect(fs.readdirSync(path.join(h.home, 'tmp')), 'the killed run\'s spool file was cleaned').to.deep.equal([]);
    const out = h.path('out');
    const rr = await h.cairn(['restore', r.snapshot, '--target', out]);
    expect(rr.code, rr.stderr).to.equal(0);
    expect(compareTrees(src, out)).to.deep.equal([]);
  });
});
