/**
 * GC and verify figures on a large store, in-process (no network): `node dist/test/bench/gc-bench.js [CHUNKS] [VERIFY_MB]`.
 * Builds a box with CHUNKS small chunks (default 100,000) in 10 snapshots, drops half the
 * snapshots, and times GC with its peak RSS; then stores VERIFY_MB of 1 MiB chunks and times
 * a full verify. Prints figures; asserts nothing.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DataDir } from '../../src/appliance/data-dir';
import { initIdentity } from '../../src/appliance/identity';
import { Box, writeBoxConfig } from '../../src/appliance/box';
import { chunkId } from '../../src/core/chunk-id';
import { sealChunk } from '../../src/core/chunk-codec';
import { sortUniqueIds } from '../../src/core/api';
import { runGc } from '../../src/appliance/jobs/gc';
import { runVerify } from '../../src/appliance/jobs/verify';
import { Prng } from '../../scripts/lib/sample';

async function main(): Promise<void> {
  const chunks = Number(process.argv[2] ?? 100_000);
  const verifyMb = Number(process.argv[3] ?? 512);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-gc-bench-'));
  const dir = new DataDir(path.join(root, 'box'));
  await initIdentity(dir, { name: 'bench' });
  writeBoxConfig(dir, { format: 1, hw_profile: 'simulated' });
  const box = Box.open(dir.root);
  const rng = new Prng('gc-bench');
  const agent = box.catalog.redeemToken(box.catalog.createToken('BENCH', Buffer.from('s'), 60_000).id, Buffer.from('s'), { name: 'bench', host: 'bench' }).agent;
  const t0 = Date.now();
  const perSnap = chunks / 10;
  const snapshots: string[] = [];
  for (let s = 0; s < 10; s++) {
    const ids: Buffer[] = [];
    for (let b = 0; b < perSnap; b += 1000) {
      const items = [];
      for (let i = 0; i < Math.min(1000, perSnap - b); i++) {
        const plain = rng.bytes(512 + rng.int(1024));
        const id = chunkId(box.keys, plain);
        items.push({ id, blob: await sealChunk(box.keys, id, plain, 'data') });
        ids.push(id);
      }
      await box.store.putBatch(items);
    }
    const refs = sortUniqueIds(Buffer.concat(ids));
    const info = await box.store.commitSnapshot({
      agentId: agent.id, source: 'bench', host: 'bench', manifest: [{ id: ids[0].toString('hex'), size: 1 }], refs,
      stats: { files: 0, dirs: 0, bytes_scanned: 0, bytes_read: 0, bytes_new: 0, bytes_uploaded: 0, chunks_new: 0, duration_s: 0 },
    });
    snapshots.push(info.id);
  }
  const fill = (Date.now() - t0) / 1000;
  for (const id of snapshots.slice(0, 5)) {
    box.catalog.deleteSnapshotRow(id);
    fs.rmSync(box.store.refsPath(id));
  }
  const rssBefore = process.memoryUsage().rss;
  const gc = await runGc(box, { graceMs: 0 });
  console.log(`store: ${chunks} chunks in 10 snapshots (filled in ${fill.toFixed(1)} s); 5 snapshots dropped`);
  console.log(`GC: ${gc.chunks_before} chunks examined, ${gc.chunks_freed} freed (${(gc.bytes_freed / 1e6).toFixed(1)} MB) in ${gc.duration_s.toFixed(2)} s; peak RSS ${gc.peak_rss_mb} MB (process RSS before GC ${(rssBefore / 1e6).toFixed(0)} MB)`);

  // verify throughput on 1 MiB chunks (half random, half base64 text), in their own snapshot
  const items = [];
  const bigIds: Buffer[] = [];
  for (let i = 0; i < verifyMb; i++) {
    const plain = i % 2 ? rng.bytes(1024 * 1024) : Buffer.from(rng.bytes(768 * 1024).toString('base64').slice(0, 1024 * 1024));
    const id = chunkId(box.keys, plain);
    bigIds.push(id);
    items.push({ id, blob: await sealChunk(box.keys, id, plain, 'data') });
    if (items.length === 32) await box.store.putBatch(items.splice(0));
  }
  if (items.length) await box.store.putBatch(items.splice(0));
  await box.store.commitSnapshot({
    agentId: agent.id, source: 'bench-big', host: 'bench', manifest: [{ id: bigIds[0].toString('hex'), size: 1 }], refs: sortUniqueIds(Buffer.concat(bigIds)),
    stats: { files: 0, dirs: 0, bytes_scanned: 0, bytes_read: 0, bytes_new: 0, bytes_uploaded: 0, chunks_new: 0, duration_s: 0 },
  });
  for (const id of snapshots.slice(5)) {
    box.catalog.deleteSnapshotRow(id);
    fs.rmSync(box.store.refsPath(id));
  }
  await runGc(box, { graceMs: 0 });
  const v = await runVerify(box, {});
  console.log(`verify: ${v.chunks_checked} chunks, ${(v.bytes_checked / 1e6).toFixed(0)} MB in ${v.duration_s.toFixed(2)} s = ${v.mb_per_s} MB/s, ${v.bad.length} bad`);
  box.close();
  fs.rmSync(root, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
