import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Harness } from './harness';
import { Prng } from '../../scripts/lib/sample';
import { compareTrees } from '../../scripts/lib/tree';

/** ENOSPC on the box: a clear error for the agent, nothing partial committed, success once space is freed. */
describe('integration: the box\'s disk fills up', function () {
  this.timeout(180_000);
  let h: Harness;
  let mnt: string;
  let mounted = false;

  before(async function () {
    h = new Harness('cairn-full');
    mnt = h.path('small-disk');
    fs.mkdirSync(mnt);
    const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=48m,mode=0700', 'tmpfs', mnt]);
    if (r.status !== 0) {
      console.log(`    skipping: cannot mount a size-limited tmpfs here (${r.stderr.toString().trim() || 'mount failed'}); needs root`);
      this.skip();
    }
    mounted = true;
    // the box's data dir lives on the small filesystem
    (h as unknown as { data: string }).data = path.join(mnt, 'box');
    await h.up();
  });

  after(async () => {
    if (h.daemon) await h.daemon.stop();
    if (mounted) spawnSync('umount', ['-l', mnt]);
    await h.close();
  });

  it('refuses cleanly when full and succeeds after space is freed', async () => {
    const src = h.path('big');
    fs.mkdirSync(src);
    const rng = new Prng('full');
    for (let i = 0; i < 8; i++) fs.writeFileSync(path.join(src, `f${i}.bin`), rng.bytes(8 * 1024 * 1024));
    const r = await h.cairn(['backup', src, '--source', 'big']);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/disk is full/);
    expect(r.stderr).to.contain('CAIRN_STORE_FULL');
    expect(await h.cairnJson<unknown[]>(['snapshots'])).to.deep.equal([]);
    // the box keeps serving and its temp files are gone
    expect((await h.cairndJson<{ name: string }>(['status'])).name).to.equal('test-box');
    expect(fs.readdirSync(path.join(h.data, 'tmp'))).to.deep.equal([]);

    const grow = spawnSync('mount', ['-o', 'remount,size=256m', mnt]);
    expect(grow.status, grow.stderr.toString()).to.equal(0);
    const ok = await h.cairnJson<{ snapshot: string; bytes_uploaded: number }>(['backup', src, '--source', 'big']);
    // what landed before the disk filled is not sent again
    expect(ok.bytes_uploaded).to.be.lessThan(64 * 1024 * 1024);
    const out = h.path('out');
    const rr = await h.cairn(['restore', ok.snapshot, '--target', out]);
    expect(rr.code, rr.stderr).to.equal(0);
    expect(compareTrees(src, out)).to.deep.equal([]);
    const v = await h.cairndJson<{ bad: unknown[] }>(['verify']);
    expect(v.bad).to.deep.equal([]);
  });
});
