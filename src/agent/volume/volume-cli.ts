import { CairnError } from '../../core/errors';
import { formatBytes, parseCli } from '../../core/cli';
import { SnapshotInfo } from '../../core/api';
import { VolumeManifestHeader } from '../../core/manifest';
import { DataKeys } from '../../core/keys';
import { AgentHome } from '../state';
import { clientFor } from '../pair';
import { BoxClient } from '../box-client';
import { backupVolume, VolumeProgress } from './volume-backup';
import { restoreVolume } from './volume-restore';

/** The volume side of `cairn backup`, `cairn ls` and `cairn restore`; main.ts dispatches here. */
const BACKUP_USAGE = 'cairn backup --volume DEVICE_OR_IMAGE [--source NAME] [--block-size SIZE] [--allow-mounted] [--lvm-snapshot [--lvm-snapshot-size SIZE]] [--json]';

function out(json: boolean, value: unknown, text: () => string): void {
  process.stdout.write(json ? JSON.stringify(value, null, 2) + '\n' : text() + '\n');
}

/** "1M", "1MiB", "512K", "4194304" -> bytes (binary units). */
export function parseSize(text: string, what: string): number {
  const m = /^(\d+)\s*([KMGT]?)(i?B)?$/i.exec(text.trim());
  if (!m) throw new CairnError('CAIRN_USAGE', `${what} "${text}" is not a size; use e.g. 1M, 4M or 262144`);
  const mult = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[m[2].toUpperCase() as '' | 'K' | 'M' | 'G' | 'T'];
  const n = Number(m[1]) * mult;
  if (!Number.isSafeInteger(n) || n <= 0) throw new CairnError('CAIRN_USAGE', `${what} "${text}" is out of range`);
  return n;
}

function progressLine(p: VolumeProgress, startedAt: number): string {
  const secs = (Date.now() - startedAt) / 1000;
  const rate = p.bytes_read / Math.max(secs, 0.001);
  const pct = p.size > 0 ? Math.min(100, (p.bytes_read / p.size) * 100) : 100;
  const fill = Math.round((pct / 100) * 24);
  return `[${'#'.repeat(fill)}${'.'.repeat(24 - fill)}] ${formatBytes(p.bytes_read)} of ${formatBytes(p.size)} read  ${p.blocks_changed} changed  ${formatBytes(p.bytes_uploaded)} sent  ${(rate / 1e6).toFixed(1)} MB/s`;
}

export async function cmdBackupVolume(args: string[]): Promise<number> {
  const { values, positionals } = parseCli(args, {
    volume: { type: 'string' },
    source: { type: 'string' },
    json: { type: 'boolean' },
    threads: { type: 'string' },
    'block-size': { type: 'string' },
    'allow-mounted': { type: 'boolean' },
    'lvm-snapshot': { type: 'boolean' },
    'lvm-snapshot-size': { type: 'string' },
  }, BACKUP_USAGE);
  if (!values.volume || positionals.length) throw new CairnError('CAIRN_USAGE', `a volume backup reads one device or image and takes no paths\nusage: ${BACKUP_USAGE}`);
  const threads = values.threads === undefined ? undefined : Number(values.threads);
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1 && threads <= 64)) throw new CairnError('CAIRN_USAGE', '--threads must be 1-64');
  if (values['lvm-snapshot'] && values['allow-mounted']) throw new CairnError('CAIRN_USAGE', '--lvm-snapshot reads a frozen snapshot; --allow-mounted is not needed with it');
  const home = new AgentHome();
  const config = home.load();
  const client = clientFor(config);
  const tty = !values.json && process.stdout.isTTY === true;
  const startedAt = Date.now();
  try {
    const r = await backupVolume(home, client, home.keys(config), {
      device: values.volume,
      source: values.source,
      threads,
      blockSize: values['block-size'] === undefined ? undefined : parseSize(values['block-size'], '--block-size'),
      allowMounted: values['allow-mounted'],
      lvmSnapshot: values['lvm-snapshot'],
      lvmCowBytes: values['lvm-snapshot-size'] === undefined ? undefined : parseSize(values['lvm-snapshot-size'], '--lvm-snapshot-size'),
      onProgress: tty ? (p) => process.stderr.write(`\r${progressLine(p, startedAt)}\x1b[K`) : undefined,
    });
    if (tty) process.stderr.write('\r\x1b[K');
    for (const w of r.warnings) process.stderr.write(`warning: ${w}\n`);
    const rate = r.bytes_read / Math.max(r.duration_s, 0.001) / 1e6;
    out(!!values.json, r, () =>
      [
        `snapshot ${r.snapshot} of ${r.source} (volume ${r.device}${r.lvm_snapshot ? ', read from an LVM snapshot' : ''})`,
        `  ${formatBytes(r.size)} in ${r.blocks_total} blocks of ${formatBytes(r.block_size)}: ${r.blocks_changed} changed${r.parent ? ` since ${r.parent}` : ''}, ${r.blocks_zero} zero (not stored)`,
        `  ${r.chunks_new} new chunks, ${formatBytes(r.bytes_new)} new data, ${formatBytes(r.bytes_uploaded)} uploaded`,
        `  ${r.duration_s.toFixed(2)} s, ${rate.toFixed(1)} MB/s read`,
      ].join('\n'));
    return r.warnings.length ? 3 : 0;
  } finally {
    client.close();
  }
}

export function volumeLsJson(snap: SnapshotInfo, h: VolumeManifestHeader): Record<string, unknown> {
  return {
    snapshot: snap.id, kind: 'volume', device: h.device, host: h.host, created: h.created, size: h.size, block_size: h.block_size,
    blocks_total: h.blocks, blocks_data: h.blocks_data, blocks_zero: h.blocks_zero, blocks_changed: h.blocks_changed, parent: h.parent ?? null,
  };
}

export function printVolumeLs(snap: SnapshotInfo, h: VolumeManifestHeader, json: boolean): void {
  out(json, volumeLsJson(snap, h), () =>
    [
      `volume snapshot ${snap.id} of ${h.device} on ${h.host}, ${h.created}`,
      `  size        ${formatBytes(h.size)} (${h.size} bytes)`,
      `  block size  ${formatBytes(h.block_size)}`,
      `  blocks      ${h.blocks}: ${h.blocks_data} data, ${h.blocks_zero} zero (holes)`,
      `  changed     ${h.blocks_changed} blocks${h.parent ? ` since ${h.parent}` : ' (first backup of this source)'}`,
    ].join('\n'));
}

export async function restoreVolumeCli(client: BoxClient, keys: DataKeys, home: AgentHome, snap: SnapshotInfo, opts: { target: string; force: boolean; json: boolean; subpath?: string }): Promise<number> {
  if (opts.subpath) throw new CairnError('CAIRN_USAGE', `snapshot ${snap.id} is a volume image: it restores whole (no :PATH)`);
  const tty = !opts.json && process.stdout.isTTY === true;
  const r = await restoreVolume(client, keys, snap, {
    target: opts.target,
    force: opts.force,
    tmpDir: home.tmp,
    onProgress: tty ? (p) => process.stderr.write(`\r${formatBytes(p.bytes_written)} written of ${formatBytes(p.size)}\x1b[K`) : undefined,
  });
  if (tty) process.stderr.write('\r\x1b[K');
  out(opts.json, r, () =>
    `restored volume snapshot ${r.snapshot} to ${r.target_kind} ${r.target}: ${formatBytes(r.size)}, ${r.blocks_data} data blocks written, ${r.blocks_zero} zero blocks ${r.target_kind === 'file' ? 'left as holes' : 'zeroed'}; verified every block in ${r.verify_s.toFixed(2)} s (total ${r.duration_s.toFixed(2)} s)`);
  return 0;
}
