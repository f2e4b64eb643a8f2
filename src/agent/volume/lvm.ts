import fs from 'node:fs';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { CairnError } from '../../core/errors';

/**
 * LVM snapshots for consistent volume backups: take a snapshot of the logical volume (the
 * origin is suspended for an instant, which freezes a mounted ext4/xfs, so the snapshot holds a
 * clean filesystem), read the snapshot instead of the live volume, then drop it. Pure
 * functions build the arguments and parse `lvs` output; LvmRunner is the only thing that
 * spawns, so tests drive the whole sequence with a fake runner.
 */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export type LvmRunner = (argv: string[]) => Promise<CommandResult>;

/** Runs an LVM command (argv[0] is the tool: lvs, lvcreate, lvremove), no shell. */
export const runLvm: LvmRunner = (argv) =>
  new Promise((resolve) => {
    execFile(argv[0], argv.slice(1), { timeout: 120_000, maxBuffer: 4 * 1024 * 1024, env: { ...process.env, LVM_SUPPRESS_FD_WARNINGS: '1' } }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as NodeJS.ErrnoException).code === 'number' ? Number((err as NodeJS.ErrnoException).code) : (err as { code?: unknown }).code === 'ENOENT' ? 127 : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr || (err && !stderr ? err.message : '')) });
    });
  });

export interface LvInfo {
  vg: string;
  lv: string;
  sizeBytes: number;
  /** thin volumes snapshot without a COW size */
  thin: boolean;
}

const LVM_NAME = /^[A-Za-z0-9+_.][A-Za-z0-9+_.-]{0,126}$/;

function checkName(kind: string, n: string): void {
  if (!LVM_NAME.test(n)) throw new CairnError('CAIRN_VOLUME_LVM_FAILED', `"${n.slice(0, 80)}" is not a valid LVM ${kind} name`);
}

export function lvsArgs(vg: string, lv: string): string[] {
  checkName('volume group', vg);
  checkName('logical volume', lv);
  return ['lvs', '--reportformat', 'json', '--units', 'b', '--nosuffix', '-o', 'vg_name,lv_name,lv_size,pool_lv,lv_attr', `${vg}/${lv}`];
}

/** Parses `lvs --reportformat json` output for one LV. */
export function parseLvs(stdout: string): LvInfo {
  let o: unknown;
  try {
    o = JSON.parse(stdout);
  } catch {
    throw new CairnError('CAIRN_VOLUME_LVM_FAILED', 'lvs printed something that is not JSON');
  }
  const lvs = (o as { report?: { lv?: Record<string, unknown>[] }[] })?.report?.[0]?.lv;
  const r = Array.isArray(lvs) && lvs.length === 1 ? lvs[0] : undefined;
  if (!r || typeof r.vg_name !== 'string' || typeof r.lv_name !== 'string' || typeof r.lv_size !== 'string') {
    throw new CairnError('CAIRN_VOLUME_LVM_FAILED', 'lvs did not describe exactly one logical volume');
  }
  const sizeBytes = Number(r.lv_size);
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) throw new CairnError('CAIRN_VOLUME_LVM_FAILED', `lvs gave an unusable size "${r.lv_size}"`);
  const attr = typeof r.lv_attr === 'string' ? r.lv_attr : '';
  return { vg: r.vg_name, lv: r.lv_name, sizeBytes, thin: attr.startsWith('V') || (typeof r.pool_lv === 'string' && r.pool_lv !== '') };
}

/** COW space for a classic snapshot: 10% of the origin, at least 256 MiB, never more than the origin. */
export function defaultCowBytes(originBytes: number): number {
  return Math.min(originBytes, Math.max(256 * 1024 * 1024, Math.ceil(originBytes / 10)));
}

export function lvcreateSnapshotArgs(info: LvInfo, name: string, cowBytes?: number): string[] {
  checkName('volume group', info.vg);
  checkName('logical volume', info.lv);
  checkName('snapshot', name);
  if (info.thin) return ['lvcreate', '--snapshot', '--name', name, '--setactivationskip', 'n', '--activate', 'y', `${info.vg}/${info.lv}`];
  const cow = cowBytes ?? defaultCowBytes(info.sizeBytes);
  if (!Number.isSafeInteger(cow) || cow <= 0) throw new CairnError('CAIRN_USAGE', 'the LVM snapshot size must be a positive number of bytes');
  return ['lvcreate', '--snapshot', '--name', name, '--size', `${cow}b`, `${info.vg}/${info.lv}`];
}

export function lvremoveArgs(vg: string, name: string): string[] {
  checkName('volume group', vg);
  checkName('snapshot', name);
  return ['lvremove', '--force', `${vg}/${name}`];
}

export function snapshotName(rand = randomBytes(4).toString('hex')): string {
  return `cairn-snap-${process.pid}-${rand}`;
}

function failed(what: string, r: CommandResult): CairnError {
  const hint = r.code === 127 ? ' (the lvm2 tools are not installed)' : '';
  return new CairnError('CAIRN_VOLUME_LVM_FAILED', `${what} failed${hint}: ${r.stderr.trim().split('\n').slice(-3).join(' ') || `exit ${r.code}`}`);
}

export interface LvmSnapshotOptions {
  runner?: LvmRunner;
  cowBytes?: number;
  /** where the snapshot's device node appears (default /dev/VG/NAME) */
  devicePath?: (vg: string, name: string) => string;
  waitMs?: number;
}

/**
 * Takes a snapshot of vg/lv, runs `fn` on its device path, and always drops it. If dropping
 * fails the error says which command to run by hand, and `fn`'s result is still returned
 * through `onDropFailed` (a committed backup is not thrown away for it).
 */
export async function withLvmSnapshot<T>(vg: string, lv: string, fn: (device: string, info: LvInfo) => Promise<T>, opts: LvmSnapshotOptions & { onDropFailed?: (err: CairnError) => void } = {}): Promise<T> {
  const runner = opts.runner ?? runLvm;
  const q = await runner(lvsArgs(vg, lv));
  if (q.code !== 0) throw failed(`lvs ${vg}/${lv}`, q);
  const info = parseLvs(q.stdout);
  const name = snapshotName();
  const c = await runner(lvcreateSnapshotArgs(info, name, opts.cowBytes));
  if (c.code !== 0) throw failed(`lvcreate --snapshot of ${vg}/${lv}`, c);
  const device = (opts.devicePath ?? ((g, n) => `/dev/${g}/${n}`))(info.vg, name);
  let result: T;
  try {
    const deadline = Date.now() + (opts.waitMs ?? 10_000);
    while (!fs.existsSync(device) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    if (!fs.existsSync(device)) throw new CairnError('CAIRN_VOLUME_LVM_FAILED', `the snapshot ${info.vg}/${name} was created but ${device} did not appear`);
    result = await fn(device, info);
  } catch (err) {
    await runner(lvremoveArgs(info.vg, name));
    throw err;
  }
  const d = await runner(lvremoveArgs(info.vg, name));
  if (d.code !== 0) {
    const e = failed(`dropping the snapshot (run \`lvremove --force ${info.vg}/${name}\` by hand; a full snapshot slows the volume down)`, d);
    if (opts.onDropFailed) opts.onDropFailed(e);
    else throw e;
  }
  return result;
}
