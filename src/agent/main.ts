#!/usr/bin/env -S MALLOC_ARENA_MAX=2 node --max-semi-space-size=1 --heap-growing-percent=50
// MALLOC_ARENA_MAX=2: glibc gives each thread that meets contention a malloc arena of its own,
// and the agent runs three JS threads, libuv's pool and V8's helpers. Freed chunk and socket
// buffers stayed behind in those arenas: the peak RSS of a 1 GB restore was 184-186 MB with
// the default, 167-173 MB with two arenas; a first backup 179-181 against 170-173 MB, with no
// time lost in either (2 alternating pairs each). One arena saved more and cost 12% of a restore.
// The first flag caps V8's young generation at 1 MiB per semi-space (the default grows to 16):
// the agent allocates many short-lived objects, and its peak RSS during a 1 GB backup or
// restore falls by 30-60 MB with it. It costs time in a first backup: over 6 alternating
// pairs, 12.7 s against 11.7 s (more scavenges on the main thread); none seen in restores.
// A memory bound was chosen over those 8% (README, Performance).
// The second lets the old generation grow to 1.5 times what the last full collection kept
// before the next one (V8 chooses up to about 3 times on its own). What the small young
// generation promotes early is mostly garbage: the main thread kept 9-11 MB live while its
// old generation grew to 26-37 MB between collections. Peak RSS of a 1 GB first backup fell
// from 200 MB to 176-183 MB (4 runs), restore from 175 to 169, with no time lost in either.
// Test and bench launchers read the flags and the environment from this line (scripts/lib/procs.ts launchOf).
import './prewarm-start'; // first: starts the command's worker threads (see prewarm.ts)
import { CairnError } from '../core/errors';
import { formatBytes, parseCli, parseHostPort, runMain } from '../core/cli';
import { DEFAULT_PORT, SnapshotInfo } from '../core/api';
import { AgentConfig, AgentHome } from './state';
import { connectTarget, Target, TargetKind } from './continuity';
import type { BoxClient } from './box-client';
import { backupFiles, BackupProgress, defaultSourceName } from './backup';
import { resolveSnapshot, splitSnapshotArg } from './snapshot-ref';
import { withSourceLock } from './service/source-lock';
import { isVolumeBackup } from './volume/volume-args';
// The modules of the other commands load when one of them runs: a backup's main thread loaded
// them all (about 25 ms) while its workers were starting on the same cores.
const pairModule = (): Promise<typeof import('./pair')> => import('./pair');
const serviceCommands = (): Promise<typeof import('./service/commands')> => import('./service/commands');
const discoveryCommands = (): Promise<typeof import('./discovery/commands')> => import('./discovery/commands');
const restoreModule = (): Promise<typeof import('./restore')> => import('./restore');
const volumeCli = (): Promise<typeof import('./volume/volume-cli')> => import('./volume/volume-cli');
const volumeManifestIo = (): Promise<typeof import('./volume/volume-manifest-io')> => import('./volume/volume-manifest-io');
const volumeRestore = (): Promise<typeof import('./volume/volume-restore')> => import('./volume/volume-restore');

const USAGE = `cairn <command> [options]

commands:
  pair HOST[:PORT] --token TOKEN [--name NAME]     pair this PC with a box (checks the box's key against the token first)
  pair --token TOKEN [--name NAME] [--timeout S]   the same, finding the box on the local network (mDNS) by the token's key
  discover [--json] [--timeout S]                  list the Cairn boxes announcing themselves on the local network
  schedule add PATH... [--source NAME] (--every 1h | --cron "MIN HOUR DAY MONTH WEEKDAY")
  schedule list|remove SOURCE                      what the agent service backs up, and when
  agent run [--once] [--backoff 10s,30s,…]         the agent service: scheduled backups, retries, finds a moved box again
  status [--json]                                  last and next run of each scheduled source, and their outcome
  backup PATH... [--source NAME] [--json]          back up files and directories
  backup --volume DEVICE|IMAGE [--source NAME]     back up a block device or disk image, changed blocks only
         [--block-size 1M] [--allow-mounted] [--lvm-snapshot]
  snapshots [--source NAME] [--json]               this PC's snapshots on the box
  (backup, snapshots, ls, restore, verify take --from box|secondary; by default the box, and its
   secondary when the box does not answer or does not have the snapshot)
  ls SNAPSHOT[:PATH] [--json]                      list a snapshot's contents
  restore SNAPSHOT[:PATH] --target DIR [--json]    restore a snapshot (or part of it) into DIR
  verify SNAPSHOT[:PATH] [--json]                  fetch and check every byte of a snapshot, write nothing
  restore SNAPSHOT --target FILE|DEVICE [--force]  restore a volume snapshot (sparse image file or device), then verify it

SNAPSHOT is an id, a unique prefix of one, or "latest". State lives in $CAIRN_HOME
(default ~/.config/cairn).`;

function fromOption(v: string | undefined): TargetKind | 'auto' {
  if (v === undefined || v === 'auto') return 'auto';
  if (v === 'box' || v === 'secondary') return v;
  throw new CairnError('CAIRN_USAGE', '--from takes box or secondary');
}

/**
 * Finds a snapshot on the box, or on the secondary when the box is down, when asked (--from
 * secondary), or when the box does not have it (yet): a rebuilt box pulling data back, or a
 * backup made on the secondary that has not flowed back.
 */
async function resolveOn(home: AgentHome, config: AgentConfig, ref: string, source: string | undefined, from: TargetKind | 'auto'): Promise<{ target: Target; snap: SnapshotInfo }> {
  const target = await connectTarget(home, config, { from });
  try {
    return { target, snap: await resolveSnapshot(target.client, ref, source) };
  } catch (err) {
    target.client.close();
    if (from === 'auto' && target.kind === 'box' && CairnError.is(err, 'CAIRN_SNAPSHOT_NOT_FOUND') && config.continuity?.secondary) {
      const t2 = await connectTarget(home, config, { from: 'secondary' });
      try {
        return { target: t2, snap: await resolveSnapshot(t2.client, ref, source) };
      } catch {
        t2.client.close();
      }
    }
    throw err;
  }
}

function fromNote(t: Target): void {
  if (t.kind === 'secondary') process.stderr.write(`note: using the secondary "${t.name}" at ${t.address}${t.reason ? `: ${t.reason}` : ''}\n`);
}

/** ls, restore and verify: the paired state, the snapshot named by SNAPSHOT[:PATH], and the store holding it. */
async function openSnapshotArg(arg: string, values: { source?: string; from?: string }): Promise<{ home: AgentHome; config: AgentConfig; client: BoxClient; snap: SnapshotInfo; subpath: string | undefined }> {
  const { ref, subpath } = splitSnapshotArg(arg);
  const home = new AgentHome();
  const config = home.load();
  const { target, snap } = await resolveOn(home, config, ref, values.source, fromOption(values.from));
  fromNote(target);
  return { home, config, client: target.client, snap, subpath };
}

function out(json: boolean, value: unknown, text: () => string): void {
  process.stdout.write(json ? JSON.stringify(value, null, 2) + '\n' : text() + '\n');
}

function progressLine(p: BackupProgress, startedAt: number): string {
  const secs = (Date.now() - startedAt) / 1000;
  const rate = p.bytes_read / Math.max(secs, 0.001);
  const total = Math.max(p.estimated_total, p.bytes_scanned);
  const pct = total > 0 ? Math.min(100, (p.bytes_scanned / total) * 100) : 0;
  const width = 24;
  const fill = Math.round((pct / 100) * width);
  const eta = p.estimated_total > p.bytes_scanned && rate > 0 ? `ETA ${Math.ceil((p.estimated_total - p.bytes_scanned) / Math.max(rate, 1))}s` : '';
  return `[${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${p.files} files  ${formatBytes(p.bytes_scanned)} scanned  ${formatBytes(p.bytes_uploaded)} sent  ${(rate / 1e6).toFixed(1)} MB/s  ${eta}`;
}

async function cmdPair(args: string[]): Promise<void> {
  const { values, positionals } = parseCli(args, { token: { type: 'string' }, name: { type: 'string' }, json: { type: 'boolean' }, timeout: { type: 'string' } }, 'cairn pair [HOST[:PORT]] --token TOKEN [--name NAME]');
  // Without an address: find the box on the LAN by the key hash in the token (mDNS), then pair as usual.
  if (positionals.length === 0 && values.token) return (await discoveryCommands()).cmdPairDiscovered({ ...values, token: values.token });
  if (positionals.length !== 1 || !values.token) throw new CairnError('CAIRN_USAGE', 'usage: cairn pair [HOST[:PORT]] --token TOKEN [--name NAME]');
  const { host, port } = parseHostPort(positionals[0], DEFAULT_PORT);
  const home = new AgentHome();
  const c = await (await pairModule()).pair(home, { host, port, token: values.token, name: values.name });
  out(!!values.json, { box: c.box.id, box_name: c.box.name, agent: c.agent.id, fingerprint: `sha256:${c.box.spki_sha256}` }, () =>
    `Paired with box "${c.box.name}" (${c.box.id}) at ${host}:${port} as agent ${c.agent.id}.\nBox key pinned: sha256:${c.box.spki_sha256}`);
}

async function cmdBackup(args: string[]): Promise<number> {
  if (isVolumeBackup(args)) return (await volumeCli()).cmdBackupVolume(args);
  const { values, positionals } = parseCli(args, { source: { type: 'string' }, json: { type: 'boolean' }, threads: { type: 'string' }, from: { type: 'string' } }, 'cairn backup PATH... [--source NAME] [--from box|secondary] [--json]');
  if (positionals.length === 0) throw new CairnError('CAIRN_USAGE', 'usage: cairn backup PATH... [--source NAME] [--json]');
  const threads = values.threads === undefined ? undefined : Number(values.threads);
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1 && threads <= 64)) throw new CairnError('CAIRN_USAGE', '--threads must be 1-64');
  const home = new AgentHome();
  const config = home.load();
  const target = await connectTarget(home, config, { from: fromOption(values.from) });
  const client = target.client;
  fromNote(target);
  const tty = !values.json && process.stdout.isTTY === true;
  const startedAt = Date.now();
  try {
    const source = values.source ?? defaultSourceName(positionals);
    const r0 = await withSourceLock(source, () => backupFiles(home, client, home.keys(config), {
      paths: positionals,
      source,
      threads,
      target: target.key,
      onProgress: tty ? (p) => process.stderr.write(`\r${progressLine(p, startedAt)}\x1b[K`) : undefined,
    }));
    const r = { ...r0, target: target.kind, ...(target.reason ? { target_reason: target.reason } : {}) };
    if (tty) process.stderr.write('\r\x1b[K');
    for (const w of r.warnings) process.stderr.write(`warning: ${w.path}: ${w.message}\n`);
    const dedup = r.bytes_read > 0 ? (1 - r.bytes_new / r.bytes_read) * 100 : 100;
    out(!!values.json, r, () =>
      [
        `snapshot ${r.snapshot} of ${r.source}${target.kind === 'secondary' ? ` — on the SECONDARY "${target.name}" (the box did not answer; it flows back to the box once it is up)` : ''}`,
        `  ${r.files} files, ${r.dirs} dirs, ${formatBytes(r.bytes_scanned)} scanned, ${formatBytes(r.bytes_read)} read`,
        `  ${r.chunks_new} new chunks, ${formatBytes(r.bytes_new)} new data, ${formatBytes(r.bytes_uploaded)} uploaded (${dedup.toFixed(1)}% of what was read deduplicated)`,
        `  ${r.duration_s.toFixed(2)} s${r.warnings.length ? `, ${r.warnings.length} warnings` : ''}`,
      ].join('\n'));
    return r.warnings.length ? 3 : 0;
  } finally {
    client.close();
  }
}

async function cmdSnapshots(args: string[]): Promise<void> {
  const { values } = parseCli(args, { source: { type: 'string' }, json: { type: 'boolean' }, from: { type: 'string' } }, 'cairn snapshots [--source NAME] [--from box|secondary] [--json]');
  const home = new AgentHome();
  const target = await connectTarget(home, home.load(), { from: fromOption(values.from) });
  const client = target.client;
  fromNote(target);
  try {
    const q = values.source ? `?source=${encodeURIComponent(values.source)}` : '';
    const list = await client.json<SnapshotInfo[]>('GET', `/v1/snapshots${q}`);
    out(!!values.json, list, () =>
      list.length === 0
        ? '(no snapshots)'
        : list.map((s) => `${s.id}  ${s.created}  ${String(s.stats.files).padStart(7)} files  ${formatBytes(s.stats.bytes_scanned).padStart(10)}  ${s.source}`).join('\n'));
  } finally {
    client.close();
  }
}

function modeString(type: string, mode: number): string {
  const t = type === 'dir' ? 'd' : type === 'symlink' ? 'l' : type === 'hardlink' ? 'h' : '-';
  const bits = 'rwxrwxrwx';
  let s = t;
  for (let i = 0; i < 9; i++) s += mode & (1 << (8 - i)) ? bits[i] : '-';
  return s;
}

async function cmdLs(args: string[]): Promise<void> {
  const { values, positionals } = parseCli(args, { json: { type: 'boolean' }, source: { type: 'string' }, from: { type: 'string' } }, 'cairn ls SNAPSHOT[:PATH] [--from box|secondary] [--json]');
  if (positionals.length !== 1) throw new CairnError('CAIRN_USAGE', 'usage: cairn ls SNAPSHOT[:PATH] [--json]');
  const { ChunkFetcher, matchesSubpath } = await restoreModule();
  const { openAnyManifest } = await volumeManifestIo();
  const { printVolumeLs } = await volumeCli();
  const { home, config, client, snap, subpath } = await openSnapshotArg(positionals[0], values);
  try {
    const m = await openAnyManifest(new ChunkFetcher(client, home.keys(config), snap.id), snap);
    if (m.kind === 'volume') {
      if (subpath) throw new CairnError('CAIRN_USAGE', `snapshot ${snap.id} is a volume image: it has no paths to list`);
      return printVolumeLs(snap, m.header, !!values.json);
    }
    const { entries } = m;
    const sub = subpath ? Buffer.from(subpath) : undefined;
    const rows: Record<string, unknown>[] = [];
    for await (const e of entries) {
      if (!matchesSubpath(e.path, sub)) continue;
      const mtime = new Date(Number(e.mtimeNs / 1000000n)).toISOString();
      if (values.json) rows.push({ path: e.path.toString(), type: e.type, mode: e.mode, size: e.size, mtime, target: e.target?.toString() });
      else process.stdout.write(`${modeString(e.type, e.mode)} ${String(e.size).padStart(12)} ${mtime} ${e.path.toString()}${e.target ? ` -> ${e.target.toString()}` : ''}\n`);
    }
    if (values.json) out(true, { snapshot: snap.id, entries: rows }, () => '');
  } finally {
    client.close();
  }
}

async function cmdRestore(args: string[]): Promise<number> {
  const { values, positionals } = parseCli(args, { target: { type: 'string' }, json: { type: 'boolean' }, source: { type: 'string' }, force: { type: 'boolean' }, from: { type: 'string' } }, 'cairn restore SNAPSHOT[:PATH] --target DIR|FILE|DEVICE [--force] [--from box|secondary] [--json]');
  if (positionals.length !== 1 || !values.target) throw new CairnError('CAIRN_USAGE', 'usage: cairn restore SNAPSHOT[:PATH] --target DIR [--json]');
  const { ChunkFetcher, restoreSnapshot } = await restoreModule();
  const { manifestKind } = await volumeManifestIo();
  const { restoreVolumeCli } = await volumeCli();
  const { home, config, client, snap, subpath } = await openSnapshotArg(positionals[0], values);
  try {
    if ((await manifestKind(new ChunkFetcher(client, home.keys(config), snap.id), snap)) === 'volume') {
      return await restoreVolumeCli(client, home.keys(config), home, snap, { target: values.target, force: !!values.force, json: !!values.json, subpath });
    }
    if (values.force) throw new CairnError('CAIRN_USAGE', '--force applies to volume restores only (a file restore never overwrites a directory)');
    const r = await restoreSnapshot(client, home.keys(config), snap, { target: values.target, subpath });
    for (const f of r.failures) process.stderr.write(`error: ${f.path}: ${f.message}\n`);
    out(!!values.json, r, () =>
      `restored snapshot ${r.snapshot}${subpath ? `:${subpath}` : ''} to ${values.target}: ${r.files} files, ${r.dirs} dirs, ${r.symlinks} symlinks, ${r.hardlinks} hard links, ${formatBytes(r.bytes)} in ${r.duration_s.toFixed(2)} s` +
        (r.failed ? `\n${r.failed} entries FAILED (listed above); everything else was restored` : ''));
    return r.failed ? 1 : 0;
  } finally {
    client.close();
  }
}

/** Restores to nowhere: fetches and checks every chunk of the snapshot, writes nothing. */
async function cmdVerify(args: string[]): Promise<number> {
  const { values, positionals } = parseCli(args, { json: { type: 'boolean' }, source: { type: 'string' }, from: { type: 'string' } }, 'cairn verify SNAPSHOT[:PATH] [--from box|secondary] [--json]');
  if (positionals.length !== 1) throw new CairnError('CAIRN_USAGE', 'usage: cairn verify SNAPSHOT[:PATH] [--json]');
  const { ChunkFetcher, restoreSnapshot } = await restoreModule();
  const { manifestKind } = await volumeManifestIo();
  const { verifyVolumeSnapshot } = await volumeRestore();
  const { home, config, client, snap, subpath } = await openSnapshotArg(positionals[0], values);
  try {
    if ((await manifestKind(new ChunkFetcher(client, home.keys(config), snap.id), snap)) === 'volume') {
      if (subpath) throw new CairnError('CAIRN_USAGE', `snapshot ${snap.id} is a volume image: it has no paths`);
      const v = await verifyVolumeSnapshot(client, home.keys(config), snap);
      for (const f of v.failures) process.stderr.write(`error: block ${f.block}: ${f.message}\n`);
      out(!!values.json, { snapshot: snap.id, blocks: v.blocks, bytes: v.bytes, failed: v.failures.length, ok: v.failures.length === 0 }, () =>
        `verified volume snapshot ${snap.id}: ${v.blocks} blocks, ${formatBytes(v.bytes)}` + (v.failures.length ? `\n${v.failures.length} blocks FAILED verification` : ' — every byte authenticated'));
      return v.failures.length ? 1 : 0;
    }
    const r = await restoreSnapshot(client, home.keys(config), snap, { subpath, verifyOnly: true });
    for (const f of r.failures) process.stderr.write(`error: ${f.path}: ${f.message}\n`);
    out(!!values.json, { ...r, ok: r.failed === 0 }, () =>
      `verified snapshot ${r.snapshot}: ${r.files} files, ${formatBytes(r.bytes)} checked in ${r.duration_s.toFixed(2)} s` +
        (r.failed ? `\n${r.failed} entries FAILED verification (listed above)` : ' — every byte authenticated'));
    return r.failed ? 1 : 0;
  } finally {
    client.close();
  }
}

async function main(argv: string[]): Promise<number | void> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'pair':
      return cmdPair(rest);
    case 'backup':
      return cmdBackup(rest);
    case 'snapshots':
      return cmdSnapshots(rest);
    case 'ls':
      return cmdLs(rest);
    case 'restore':
      return cmdRestore(rest);
    case 'discover':
      return (await discoveryCommands()).cmdDiscover(rest);
    case 'schedule':
      return (await serviceCommands()).cmdSchedule(rest);
    case 'agent':
      return (await serviceCommands()).cmdAgent(rest);
    case 'status':
      return (await serviceCommands()).cmdStatus(rest);
    case 'verify':
      return cmdVerify(rest);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE + '\n');
      return;
    default:
      throw new CairnError('CAIRN_USAGE', `unknown command "${cmd}"\nusage: ${USAGE}`);
  }
}

runMain(main);
