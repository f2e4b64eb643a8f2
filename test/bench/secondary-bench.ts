/**
 * Secondary box figures: replication throughput, time from the primary going down to the
 * agent's first backup landing on the secondary, flow-back time for a 100 MB snapshot made
 * there, and recovery time of a wiped primary. Real cairnd processes and agent on loopback.
 *
 *   node dist/test/bench/secondary-bench.js [--size-mb 100]
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CAIRN, CAIRND, Daemon, run, runJson, startDaemon } from '../../scripts/lib/procs';
import { generateSample } from '../../scripts/lib/sample';

interface Totals { pushed_bytes: number; pushed_chunks: number; pulled_bytes: number; pulled_snapshots: number }

async function main(): Promise<void> {
  const i = process.argv.indexOf('--size-mb');
  const mb = i > 0 ? Number(process.argv[i + 1]) : 100;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-secbench-'));
  const P = path.join(work, 'p');
  const S = path.join(work, 's');
  const env = { CAIRN_HOME: path.join(work, 'agent'), CAIRN_LOG_LEVEL: 'warn', CAIRN_PROBE_TIMEOUT_MS: '3000' };
  const json = <T>(script: string, args: string[]): Promise<T> => runJson<T>(script, args, env);
  const ok = async (script: string, args: string[]): Promise<string> => {
    const r = await run(script, args, env);
    if (r.code !== 0) throw new Error(`${path.basename(script)} ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  let p: Daemon | undefined;
  let s: Daemon | undefined;
  try {
    await json(CAIRND, ['init', '--data', S, '--role', 'secondary', '--hw', 'simulated', '--json']);
    s = await startDaemon(S, { env, args: ['--no-mdns'] });
    const init = await json<{ recovery_key: string }>(CAIRND, ['init', '--data', P, '--hw', 'simulated', '--json']);
    // Replication runs only when asked here (sync), so each phase is timed alone.
    p = await startDaemon(P, { env, args: ['--no-mdns', '--replicate-every', '1h'] });
    const port = p.port;
    const st = (await json<{ token: string }>(CAIRND, ['token', 'create', '--data', S, '--json'])).token;
    await ok(CAIRND, ['secondary', 'add', '--data', P, s.address, '--token', st]);
    const pt = (await json<{ token: string }>(CAIRND, ['token', 'create', '--data', P, '--json'])).token;
    await ok(CAIRN, ['pair', p.address, '--token', pt]);
    const src = path.join(work, 'src');
    generateSample(src, mb * 1024 * 1024, 'secbench');
    await ok(CAIRN, ['backup', src, '--source', 'bench', '--json']);
    // The commit kicked a cycle; wait for it, then time a full one on a fresh snapshot.
    await json(CAIRND, ['secondary', 'sync', '--data', P, '--json']);
    generateSample(path.join(src, 'more'), mb * 1024 * 1024, 'secbench-2');
    // The commit starts a replication cycle at once; `sync` waits for it (then runs an empty one).
    const totals = async (): Promise<Totals> => (await json<{ replication: { totals: Totals } }>(CAIRND, ['status', '--data', P, '--json'])).replication.totals;
    const before = await totals();
    await ok(CAIRN, ['backup', src, '--source', 'bench', '--json']);
    const t0 = Date.now();
    await json(CAIRND, ['secondary', 'sync', '--data', P, '--json']);
    const afterRep = await totals();
    // The cycle's own duration, from the jobs history (the wall clock above also holds the CLI's start-up).
    const jobs = await json<{ kind: string; figures: { pushed_bytes?: number; duration_s?: number } }[]>(CAIRND, ['jobs', '--data', P, '--kind', 'replication', '--json']);
    const repS = jobs.find((j) => (j.figures.pushed_bytes ?? 0) > 0)?.figures.duration_s ?? (Date.now() - t0) / 1000;
    const cyc = { pushed_bytes: afterRep.pushed_bytes - before.pushed_bytes, pushed_chunks: afterRep.pushed_chunks - before.pushed_chunks };
    // Primary down: first backup on the secondary.
    await p.stop('SIGKILL');
    const down = Date.now();
    generateSample(path.join(src, 'during-outage'), mb * 1024 * 1024, 'secbench-3');
    const genMs = Date.now() - down;
    const onS = JSON.parse(await ok(CAIRN, ['backup', src, '--source', 'bench', '--json'])) as { target: string; bytes_uploaded: number; duration_s: number };
    const failoverS = (Date.now() - down - genMs) / 1000;
    // Primary back: flow-back of that snapshot.
    const beforeFlow = afterRep;
    const t1 = Date.now();
    p = await startDaemon(P, { env, port, args: ['--no-mdns', '--replicate-every', '1h'] });
    await json(CAIRND, ['secondary', 'sync', '--data', P, '--json']);
    const flowS = (Date.now() - t1) / 1000;
    const afterFlow = await totals();
    const back = { pulled_bytes: afterFlow.pulled_bytes - beforeFlow.pulled_bytes, pulled_snapshots: afterFlow.pulled_snapshots - beforeFlow.pulled_snapshots };
    // Disaster: wipe the primary, recover.
    await p.stop('SIGKILL');
    fs.rmSync(P, { recursive: true, force: true });
    const t2 = Date.now();
    const rec = await json<{ pulled_bytes: number; pulled_snapshots: number; identity_s: number }>(CAIRND, ['recover', '--data', P, '--from', s.address, '--recovery-key', init.recovery_key, '--hw', 'simulated', '--json']);
    const recS = (Date.now() - t2) / 1000;
    const rows = [
      ['replication of a new snapshot (commit -> done)', `${(cyc.pushed_bytes / 1e6).toFixed(1)} MB, ${cyc.pushed_chunks} chunks in ${repS.toFixed(2)} s = ${(cyc.pushed_bytes / 1e6 / repS).toFixed(1)} MB/s`],
      ['primary down -> backup landed on secondary', `${failoverS.toFixed(2)} s (target ${onS.target}, ${(onS.bytes_uploaded / 1e6).toFixed(1)} MB uploaded, backup itself ${onS.duration_s.toFixed(2)} s)`],
      ['flow-back (primary start -> pulled)', `${back.pulled_snapshots} snapshot, ${(back.pulled_bytes / 1e6).toFixed(1)} MB in ${flowS.toFixed(2)} s = ${(back.pulled_bytes / 1e6 / flowS).toFixed(1)} MB/s`],
      ['recovery of a wiped primary', `${rec.pulled_snapshots} snapshots, ${(rec.pulled_bytes / 1e6).toFixed(1)} MB in ${recS.toFixed(2)} s (identity back after ${rec.identity_s.toFixed(2)} s)`],
    ];
    for (const [k, v] of rows) process.stdout.write(`${k.padEnd(44)} ${v}\n`);
  } finally {
    await p?.stop();
    await s?.stop();
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
