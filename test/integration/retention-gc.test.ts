import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import Database from 'better-sqlite3';
import { Harness, flipStoredBlob } from './harness';
import { CAIRN } from '../../scripts/lib/procs';
import { Prng } from '../../scripts/lib/sample';
import { compareTrees } from '../../scripts/lib/tree';

interface Snap {
  id: string;
}
interface GcReport {
  packs_removed: number;
  packs_compacted: number;
  pack_bytes_reclaimed: number;
  chunks_freed: number;
  bytes_freed: number;
  chunks_before: number;
}

function dirBytes(d: string): number {
  let n = 0;
  if (!fs.existsSync(d)) return 0;
  for (const e of fs.readdirSync(d, { withFileTypes: true })) {
    const p = path.join(d, e.name);
    n += e.isDirectory() ? dirBytes(p) : fs.statSync(p).size;
  }
  return n;
}

describe('integration: retention, GC, verify, jobs', function () {
  this.timeout(240_000);
  let h: Harness;
  const rng = new Prng('retention');

  before(async () => {
    h = await new Harness('cairn-gc').up();
  });
  after(async () => h.close());

  it('small files share pack files; GC deletes emptied packs and rewrites mostly-dead ones, and everything left restores', async () => {
    const src = h.path('smalls');
    for (let i = 0; i < 400; i++) {
      fs.mkdirSync(path.join(src, `d${i % 10}`), { recursive: true });
      fs.writeFileSync(path.join(src, `d${i % 10}`, `f${i}.bin`), rng.bytes(2000 + (i % 7) * 3000));
    }
    await h.cairnJson(['backup', src, '--source', 'smalls']);
    const packsDir = path.join(h.data, 'packs');
    const packsBefore = fs.readdirSync(packsDir).length;
    expect(packsBefore, 'small chunks went into pack files').to.be.greaterThan(0);
    expect(packsBefore, 'far fewer files than chunks').to.be.lessThan(40);
    const bytesBefore = dirBytes(packsDir);
    // Keep a fifth of the files, then let retention drop the first snapshot.
    for (let i = 0; i < 400; i++) if (i % 5 !== 0) fs.rmSync(path.join(src, `d${i % 10}`, `f${i}.bin`));
    await h.cairndJson(['retention', '--source', 'smalls', '--keep', '1']);
    const last = (await h.cairnJson<{ snapshot: string }>(['backup', src, '--source', 'smalls'])).snapshot;
    const gc = await h.cairndJson<GcReport>(['gc', '--grace', '0']);
    expect(gc.packs_compacted + gc.packs_removed, JSON.stringify(gc)).to.be.greaterThan(0);
    expect(gc.pack_bytes_reclaimed).to.be.greaterThan(0);
    expect(dirBytes(packsDir), 'pack bytes shrank').to.be.lessThan(bytesBefore * 0.6);
    const out = h.path('smalls-restore');
    const r = await h.cairn(['restore', last, '--target', out]);
    expect(r.code, r.stderr).to.equal(0);
    expect(compareTrees(src, out)).to.deep.equal([]);
    const v = await h.cairndJson<{ bad: unknown[] }>(['verify']);
    expect(v.bad).to.deep.equal([]);
  });

  it('keep=3 with five backups: the newest three remain, all restorable; GC frees what only the dropped ones held', async () => {
    const src = h.path('src');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'stable.bin'), rng.bytes(2 * 1024 * 1024));
    // first backup creates the source; then set keep=3 for it
    const ids: string[] = [];
    const states: string[] = [];
    for (let i = 0; i < 5; i++) {
      fs.writeFileSync(path.join(src, 'changing.bin'), rng.bytes(3 * 1024 * 1024));
      const copy = h.path(`state-${i}`);
      fs.cpSync(src, copy, { recursive: true, preserveTimestamps: true });
      states.push(copy);
      ids.push((await h.cairnJson<{ snapshot: string }>(['backup', src, '--source', 'docs'])).snapshot);
      if (i === 0) {
        const r = await h.cairndJson<{ keep: number }>(['retention', '--source', 'docs', '--keep', '3']);
        expect(r.keep).to.equal(3);
      }
    }
    const left = await h.cairnJson<Snap[]>(['snapshots', '--source', 'docs']);
    expect(left.map((s) => s.id)).to.deep.equal(ids.slice(2));
    const sources = await h.cairndJson<{ source: string; keep: number; snapshots: number }[]>(['sources']);
    expect(sources.find((s) => s.source === 'docs')).to.include({ keep: 3, snapshots: 3 });
    const stored = (): number => dirBytes(path.join(h.data, 'chunks')) + dirBytes(path.join(h.data, 'packs'));
    // Bytes in pack files that no catalog row points at, and the packs that hold any.
    const deadInPacks = (): { bytes: number; packs: { name: string; size: number; live: number }[] } => {
      const db = new Database(path.join(h.data, 'catalog.db'), { readonly: true });
      try {
        const liveOf = db.prepare('SELECT COALESCE(SUM(size), 0) AS n FROM chunks WHERE pack = ?');
        let bytes = 0;
        const packs: { name: string; size: number; live: number }[] = [];
        for (const f of fs.readdirSync(path.join(h.data, 'packs'))) {
          const m = /^([0-9a-f]{24})\.pack$/.exec(f);
          if (!m) continue;
          const file = fs.readFileSync(path.join(h.data, 'packs', f));
          const size = file.length;
          const live = (liveOf.get(m[1]) as { n: number }).n;
          // the pack's index (40 bytes per blob it was written with, then 12) is not dead
          const index = file.readUInt32LE(size - 12) * 40 + 12;
          if (size - index - live > 0) {
            bytes += size - index - live;
            packs.push({ name: m[1], size, live });
          }
        }
        return { bytes, packs };
      } finally {
        db.close();
      }
    };
    const before = stored();
    const deadBefore = deadInPacks();
    const gc = await h.cairndJson<GcReport>(['gc', '--grace', '0']);
    const after = stored();
    const deadAfter = deadInPacks();
    // the two dropped snapshots each held one unique 3 MiB file (random: incompressible)
    expect(gc.chunks_freed).to.be.greaterThan(0);
    // Loose files go at once; dead blobs in packs go when their pack empties or is compacted.
    // A pack still at least half live keeps its dead blobs until then (which blobs share a pack
    // depends on how uploads were batched), so disk shrinks by what was freed less what such
    // packs keep, and no pack is left more than half dead.
    for (const p of deadAfter.packs) expect(p.live, `pack ${p.name} is mostly dead`).to.be.at.least(0.5 * p.size);
    const keptDead = deadAfter.bytes - deadBefore.bytes;
    expect(keptDead, 'dead bytes a pack keeps').to.be.at.most(gc.bytes_freed);
    expect(before - after).to.be.within(gc.bytes_freed - keptDead, gc.bytes_freed - keptDead + 64 * 1024);
    expect(gc.bytes_freed).to.be.within(2 * 3 * 1024 * 1024, 2 * 3 * 1024 * 1024 + 64 * 1024);
    for (let i = 2; i < 5; i++) {
      const out = h.path(`restore-${i}`);
      const r = await h.cairn(['restore', ids[i], '--target', out]);
      expect(r.code, r.stderr).to.equal(0);
      expect(compareTrees(states[i], out, { mtimes: false })).to.deep.equal([]);
    }
    const gc2 = await h.cairndJson<GcReport>(['gc', '--grace', '0']);
    expect(gc2.chunks_freed, 'a second GC finds nothing more').to.equal(0);
    const events = await h.cairndJson<{ kind: string; outcome: string; figures: { source?: string } }[]>(['jobs']);
    expect(events.filter((j) => j.kind === 'retention' && j.figures.source === 'docs').length).to.equal(2);
    expect(events.filter((j) => j.kind === 'gc' && j.outcome === 'ok').length).to.be.at.least(2);
    expect(events.filter((j) => j.kind === 'backup' && j.outcome === 'ok').length).to.be.at.least(5);
  });

  it('agents cannot change retention: there is no such API', async () => {
    const client = h.client();
    try {
      const r = await client.request('POST', '/v1/retention', Buffer.from('{"keep":1}'));
      expect(r.status).to.equal(404);
      const d = await client.request('PUT', '/v1/sources/docs', Buffer.from('{"keep":1}'));
      expect(d.status).to.equal(403);
    } finally {
      client.close();
    }
  });

  it('GC running concurrently with a backup never frees what the backup relies on', async () => {
    const src = h.path('busy');
    fs.mkdirSync(src);
    for (let i = 0; i < 8; i++) fs.writeFileSync(path.join(src, `f${i}.bin`), rng.bytes(6 * 1024 * 1024));
    // an old snapshot that shares chunks, then dropped by retention so its chunks are garbage candidates
    await h.cairnJson(['backup', src, '--source', 'busy']);
    await h.cairndJson(['retention', '--source', 'busy', '--keep', '1']);
    fs.writeFileSync(path.join(src, 'f0.bin'), rng.bytes(6 * 1024 * 1024));
    const agent = spawn(process.execPath, [CAIRN, 'backup', src, '--source', 'busy', '--json', '--threads', '1'], { env: { ...process.env, ...h.env, CAIRN_HOME: h.path('fresh-home') } });
    // A fresh agent home has no files cache: it asks the box about every chunk while GC runs.
    fs.cpSync(h.home, h.path('fresh-home'), { recursive: true });
    fs.rmSync(path.join(h.path('fresh-home'), 'cache.db'), { force: true });
    let out = '';
    agent.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const done = new Promise<number>((r) => agent.on('exit', (c) => r(c ?? -1)));
    let gcs = 0;
    let finished = false;
    void done.then(() => (finished = true));
    while (!finished) {
      await h.cairndJson(['gc', '--grace', '0']);
      gcs++;
    }
    expect(await done, out).to.equal(0);
    expect(gcs).to.be.greaterThan(0);
    await h.cairndJson(['gc', '--grace', '0']);
    const snap = (JSON.parse(out) as { snapshot: string }).snapshot;
    const target = h.path('busy-restore');
    const r = await h.cairn(['restore', snap, '--target', target]);
    expect(r.code, r.stderr).to.equal(0);
    expect(compareTrees(src, target)).to.deep.equal([]);
  });

  it('a flipped byte in a stored chunk: verify reports the snapshot and file, restore fails that file only', async () => {
    const src = h.path('flip');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'victim.bin'), rng.bytes(1024 * 1024));
    fs.writeFileSync(path.join(src, 'bystander.txt'), 'still fine');
    const snap = (await h.cairnJson<{ snapshot: string }>(['backup', src, '--source', 'flip'])).snapshot;
    const ls = await h.cairnJson<{ entries: { path: string }[] }>(['ls', snap]);
    expect(ls.entries.map((e) => e.path)).to.include('victim.bin');
    // find a chunk of the victim: the newest large blob in the catalog (boundaries depend on the
    // box's secret gear table, so the 1 MiB file is one chunk or two, both the victim's; an
    // upload of one blob stays a loose file, one of several goes into a pack)
    const flipped = flipStoredBlob(h.data, 200 * 1024);
    expect(flipped, 'victim chunk found').to.not.equal(null);
    const victimId = flipped!.id;

    const v = await h.cairndJson<{ bad: { id: string; snapshots: { id: string; files: string[] }[] }[] }>(['verify']);
    expect(v.bad.length).to.equal(1);
    expect(v.bad[0].id).to.equal(victimId);
    expect(v.bad[0].snapshots.map((s) => s.id)).to.include(snap);
    expect(v.bad[0].snapshots.find((s) => s.id === snap)!.files).to.deep.equal(['victim.bin']);
    if (flipped!.loose) expect(fs.existsSync(flipped!.loose), 'moved aside').to.equal(false);
    expect(fs.readdirSync(path.join(h.data, 'quarantine')).some((f) => f.startsWith(victimId))).to.equal(true);

    const target = h.path('flip-restore');
    const r = await h.cairn(['restore', snap, '--target', target]);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/victim\.bin/);
    expect(fs.existsSync(path.join(target, 'victim.bin')), 'no wrong bytes written').to.equal(false);
    expect(fs.readFileSync(path.join(target, 'bystander.txt'), 'utf8')).to.equal('still fine');
    const cv = await h.cairn(['verify', snap]);
    expect(cv.code).to.equal(1);
    expect(cv.stderr).to.match(/victim\.bin/);

    // the next backup of the same content heals the store: the chunk is uploaded again
    fs.rmSync(path.join(h.home, 'cache.db'));
    const again = await h.cairnJson<{ snapshot: string; chunks_new: number }>(['backup', src, '--source', 'flip']);
    expect(again.chunks_new).to.be.at.least(1);
    const healed = await h.cairn(['verify', snap]);
    expect(healed.code, healed.stderr).to.equal(0);
    const jobs = await h.cairndJson<{ kind: string; outcome: string }[]>(['jobs', '--kind', 'verify']);
    expect(jobs[0].outcome).to.equal('failed');
  });

  it('verify --subset checks only part of the store and reports throughput', async () => {
    const all = await h.cairndJson<{ chunks_checked: number; mb_per_s: number }>(['verify']);
    const part = await h.cairndJson<{ chunks_checked: number; subset_percent: number }>(['verify', '--subset', '30']);
    expect(part.subset_percent).to.equal(30);
    expect(part.chunks_checked).to.be.lessThan(all.chunks_checked);
    expect(all.mb_per_s).to.be.greaterThan(0);
  });
});
