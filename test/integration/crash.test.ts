import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { ChildProcess, spawn } from 'node:child_process';
import { Harness } from './harness';
import { CAIRN, CAIRND, startDaemon } from '../../scripts/lib/procs';
import { Prng } from '../../scripts/lib/sample';
import { treeDigest } from '../../scripts/lib/tree';

/**
 * kill -9 at random points of backup, commit and GC, then restart: the catalog stays
 * consistent, verify finds nothing wrong, every listed snapshot restores exactly, temp files
 * are cleaned, and the agent carries on. CAIRN_KILL_LOOPS raises the count (default 30).
 */
const LOOPS = Number(process.env.CAIRN_KILL_LOOPS ?? 30);

function exited(p: ChildProcess): Promise<number | null> {
  return p.exitCode !== null || p.signalCode !== null ? Promise.resolve(p.exitCode) : new Promise((r) => p.once('exit', (c) => r(c)));
}

describe(`integration: crash safety (kill -9 loop, ${LOOPS} kill points)`, function () {
  this.timeout(LOOPS * 20_000 + 60_000);
  let h: Harness;
  let port: number;

  before(async () => {
    h = await new Harness('cairn-crash').up();
    port = h.daemon!.port;
    await h.cairndJson(['retention', '--keep', '2']);
  });
  after(async () => h.close());

  it('survives every kill with a consistent, fully restorable store', async () => {
    const rng = new Prng('crash-loop');
    const src = h.path('src');
    fs.mkdirSync(src);
    for (let i = 0; i < 8; i++) fs.writeFileSync(path.join(src, `f${i}.bin`), rng.bytes(256 * 1024 + rng.int(1024 * 1024)));
    fs.writeFileSync(path.join(src, 'notes.txt'), 'start');
    // Calibrate: how long an uninterrupted backup of a changed tree takes on this machine now.
    const t0 = Date.now();
    fs.writeFileSync(path.join(src, 'f0.bin'), rng.bytes(512 * 1024));
    await h.cairnJson(['backup', src, '--source', 'loop']);
    const runMs = Date.now() - t0;
    const digests = new Map<string, string>();
    const kinds = { backup_box: 0, backup_agent: 0, gc_box: 0 };
    let committedAcrossKills = 0;

    let listed = (await h.cairnJson<{ id: string }[]>(['snapshots'])).map((x) => x.id);
    for (let i = 0; i < LOOPS; i++) {
      // change a few files
      for (let k = 0; k < 2; k++) fs.writeFileSync(path.join(src, `f${rng.int(8)}.bin`), rng.bytes(256 * 1024 + rng.int(1024 * 1024)));
      fs.appendFileSync(path.join(src, 'notes.txt'), ` loop ${i}`);
      const digest = treeDigest(src);
      const before = new Set(listed);
      const mode = i % 3;
      // spread over process start, scan, upload, commit and just after
      const delay = Math.round(runMs * (0.2 + 1.1 * (rng.int(1000) / 1000)));
      if (mode === 2) {
        // kill the box in the middle of a GC (there is garbage: retention keeps 2)
        const gc = spawn(process.execPath, [CAIRND, 'gc', '--data', h.data, '--grace', '0', '--json'], { env: { ...process.env, ...h.env }, stdio: 'ignore' });
        await new Promise((r) => setTimeout(r, delay / 10));
        await h.daemon!.stop('SIGKILL');
        await exited(gc);
        kinds.gc_box++;
      } else {
        const agent = spawn(process.execPath, [CAIRN, 'backup', src, '--source', 'loop', '--json'], { env: { ...process.env, ...h.env }, stdio: 'ignore' });
        await new Promise((r) => setTimeout(r, delay));
        if (mode === 0) {
          await h.daemon!.stop('SIGKILL');
          kinds.backup_box++;
        } else {
          agent.kill('SIGKILL');
          kinds.backup_agent++;
        }
        await exited(agent);
      }
      if (h.daemon!.proc.exitCode !== null || h.daemon!.proc.signalCode !== null) {
        h.daemon = await startDaemon(h.data, { port, env: h.env });
        expect(fs.readdirSync(path.join(h.data, 'tmp')), 'temp files cleaned at start-up').to.deep.equal([]);
      } else {
        // the box may still be finishing a batch the killed agent sent; then its temp files go
        const until = Date.now() + 10_000;
        while (fs.readdirSync(path.join(h.data, 'tmp')).length && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
        expect(fs.readdirSync(path.join(h.data, 'tmp')), 'temp files of a dead agent\'s upload are removed').to.deep.equal([]);
      }

      const after = await h.cairnJson<{ id: string }[]>(['snapshots']);
      listed = after.map((x) => x.id);
      // the store verifies clean (every stored chunk: header, tag, id)
      const v = await h.cairndJson<{ bad: unknown[] }>(['verify']);
      expect(v.bad, `loop ${i}: verify`).to.deep.equal([]);
      // a snapshot committed in this loop restores to exactly the tree it was taken of
      for (const s of after) {
        if (before.has(s.id)) continue;
        digests.set(s.id, digest);
        committedAcrossKills++;
        const out = h.path(`r-${i}`);
        const r = await h.cairn(['restore', s.id, '--target', out]);
        expect(r.code, `loop ${i}: restore ${s.id}: ${r.stderr}`).to.equal(0);
        expect(treeDigest(out), `loop ${i}: snapshot ${s.id} content`).to.equal(digest);
        fs.rmSync(out, { recursive: true, force: true });
      }
      // every listed snapshot is still complete (nothing it needs was freed): checked every 5th loop and at the end
      if (i % 5 === 4 || i === LOOPS - 1) {
        for (const s of after) {
          const r = await h.cairn(['verify', s.id]);
          expect(r.code, `loop ${i}: verify snapshot ${s.id}: ${r.stderr}`).to.equal(0);
        }
      }
    }
    // the agent resumes: a final run commits
    const last = await h.cairnJson<{ snapshot: string }>(['backup', src, '--source', 'loop']);
    const out = h.path('final');
    expect((await h.cairn(['restore', last.snapshot, '--target', out])).code).to.equal(0);
    expect(treeDigest(out)).to.equal(treeDigest(src));
    // leftovers of killed runs are bounded: GC clears orphans once they are past the grace
    const gc = await h.cairndJson<{ orphan_files_removed: number }>(['gc', '--grace', '0']);
    expect(gc.orphan_files_removed).to.be.at.least(0);
    const jobs = await h.cairndJson<{ kind: string; outcome: string }[]>(['jobs', '--limit', '1000']);
    expect(jobs.some((j) => j.outcome === 'running'), 'no job left "running" after restarts').to.equal(false);
    console.log(`      kill points: ${JSON.stringify(kinds)}; a backup took ${runMs} ms; ${committedAcrossKills} snapshots committed across the loop`);
    expect(kinds.backup_box + kinds.backup_agent + kinds.gc_box).to.equal(LOOPS);
  });
});
