/**
 * `npm run demo [-- PATH] [--keep]`: the main job on embedded defaults. Starts a real cairnd
 * (temp data dir, 127.0.0.1, simulated hardware), activates it, pairs a real agent over
 * pinned TLS, backs up a directory (a generated sample, or a copy of PATH), changes a few
 * files, backs up again, restores to a fresh directory and compares byte for byte.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CAIRN, CAIRND, run, runJson, startDaemon, Daemon } from './lib/procs';
import { generateSample, mutateSample } from './lib/sample';
import { compareTrees } from './lib/tree';
import type { BackupResult } from '../src/agent/backup';
import { formatBytes } from '../src/core/cli';

type BackupJson = Pick<BackupResult, 'snapshot' | 'files' | 'bytes_scanned' | 'bytes_read' | 'bytes_new' | 'bytes_uploaded' | 'chunks_new' | 'duration_s'>;

function say(s: string): void {
  process.stdout.write(s + '\n');
}

function describe(label: string, b: BackupJson): void {
  const dedup = b.bytes_read > 0 ? (1 - b.bytes_new / b.bytes_read) * 100 : 100;
  say(`  ${label}: snapshot ${b.snapshot}`);
  say(`    ${b.files} files, ${formatBytes(b.bytes_scanned)} scanned, ${formatBytes(b.bytes_read)} read, ${formatBytes(b.bytes_new)} new, ${formatBytes(b.bytes_uploaded)} uploaded`);
  say(`    ${b.chunks_new} new chunks, dedup ${dedup.toFixed(1)}% of bytes read, ${b.duration_s.toFixed(2)} s (${(b.bytes_read / 1e6 / Math.max(b.duration_s, 0.001)).toFixed(0)} MB/s read)`);
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const keep = args.includes('--keep');
  const userPath = args.find((a) => !a.startsWith('--'));
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-demo-'));
  const data = path.join(work, 'box');
  const home = path.join(work, 'agent');
  const src = path.join(work, 'source');
  const restored = path.join(work, 'restored');
  const env = { CAIRN_HOME: home, CAIRN_LOG_LEVEL: 'warn' };
  let daemon: Daemon | undefined;
  const t0 = Date.now();
  try {
    say(`Cairn demo — working in ${work}`);
    if (userPath) {
      if (!fs.statSync(userPath).isDirectory()) throw new Error(`${userPath} is not a directory`);
      say(`1. copying ${userPath} (your files are never modified; the demo changes only its copy)`);
      fs.cpSync(userPath, src, { recursive: true, preserveTimestamps: true, verbatimSymlinks: true });
    } else {
      const s = generateSample(src, 64 * 1024 * 1024);
      say(`1. generated a sample tree: ${s.files} files, ${formatBytes(s.bytes)} (text, binaries, duplicates, small files, links, odd names)`);
    }

    const init = await runJson<{ box: string; fingerprint: string }>(CAIRND, ['init', '--data', data, '--name', 'demo-box', '--hw', 'simulated'], env);
    say(`2. activated box ${init.box} (${init.fingerprint.slice(0, 23)}…); recovery key generated and shown once (hidden here)`);
    daemon = await startDaemon(data, { env });
    say(`3. cairnd serving HTTPS (TLS 1.3 only) on ${daemon.address}`);
    const tok = await runJson<{ token: string }>(CAIRND, ['token', 'create', '--data', data, '--ttl', '10m'], env);
    const paired = await runJson<{ agent: string }>(CAIRN, ['pair', daemon.address, '--token', tok.token, '--name', 'demo-pc'], env);
    say(`4. agent paired as ${paired.agent} (box key checked against the token before anything was sent)`);

    say('5. first backup');
    const b1 = await runJson<BackupJson>(CAIRN, ['backup', src, '--source', 'demo'], env);
    describe('first', b1);
    const changes = mutateSample(src);
    say(`6. changed the source: ${changes.join('; ')}`);
    const b2 = await runJson<BackupJson>(CAIRN, ['backup', src, '--source', 'demo'], env);
    describe('incremental', b2);

    say('7. restoring the latest snapshot to a fresh directory');
    const r0 = Date.now();
    const r = await run(CAIRN, ['restore', b2.snapshot, '--target', restored, '--json'], env);
    if (r.code !== 0) throw new Error(`restore failed: ${r.stderr || r.stdout}`);
    const rj = JSON.parse(r.stdout) as { files: number; bytes: number };
    say(`  restored ${rj.files} files, ${formatBytes(rj.bytes)} in ${((Date.now() - r0) / 1000).toFixed(2)} s`);

    const diffs = compareTrees(src, restored);
    const stored = await runJson<{ chunks: number; stored_bytes: number }>(CAIRND, ['status', '--data', data], env);
    say(`8. box holds ${stored.chunks} chunks, ${formatBytes(stored.stored_bytes)} encrypted (source ${formatBytes(b2.bytes_scanned)})`);
    say(`   total time ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    if (diffs.length) {
      for (const d of diffs.slice(0, 20)) say(`   difference: ${d}`);
      say(`FAILED: the restore differs from the source in ${diffs.length} places`);
      return 1;
    }
    say('VERIFIED: the restored tree matches the source byte for byte (contents, modes, mtimes, symlinks, hard links)');
    return 0;
  } finally {
    if (daemon) await daemon.stop();
    if (keep) say(`(kept ${work})`);
    else fs.rmSync(work, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stdout.write(`FAILED: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
