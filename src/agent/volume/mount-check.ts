import fs from 'node:fs';
import path from 'node:path';
import { CairnError } from '../../core/errors';

/**
 * Who else is using a volume. A block device (or an image file) whose filesystem is mounted
 * read-write changes while it is read, so a backup of it is not consistent; a restore target
 * that is mounted or in use as swap must never be written. "The volume" includes its
 * partitions, the device-mapper/md devices stacked on it (holders) and, for an image file,
 * the loop devices it backs. Every host path is read through VolumeHostPaths so tests can
 * point them at a temp dir.
 */
export interface VolumeHostPaths {
  procMounts: string;
  procSwaps: string;
  sysClassBlock: string;
  dev: string;
}

export const HOST_PATHS: VolumeHostPaths = {
  procMounts: '/proc/self/mounts',
  procSwaps: '/proc/swaps',
  sysClassBlock: '/sys/class/block',
  dev: '/dev',
};

export interface MountEntry {
  source: string;
  target: string;
  fstype: string;
  options: string[];
}

/** /proc/mounts: six space-separated fields, octal escapes (\040) in paths. */
export function parseMounts(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 4) continue;
    out.push({ source: unescapeOctal(f[0]), target: unescapeOctal(f[1]), fstype: f[2], options: f[3].split(',') });
  }
  return out;
}

function unescapeOctal(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** /proc/swaps: a header line, then "Filename Type Size Used Priority". */
export function parseSwaps(text: string): string[] {
  return text.split('\n').slice(1).map((l) => unescapeOctal(l.trim().split(/\s+/)[0] ?? '')).filter((s) => s.startsWith('/'));
}

export interface VolumeUse {
  /** kernel name of the device in use (the volume, a partition of it, a loop device over it...) */
  device: string;
  kind: 'mount' | 'swap';
  /** mount point */
  target?: string;
  readWrite: boolean;
}

function readText(p: string): string | undefined {
  try {
    return fs.readFileSync(p, 'utf8');
  } catch {
    return undefined;
  }
}

function listDir(p: string): string[] {
  try {
    return fs.readdirSync(p);
  } catch {
    return [];
  }
}

/** Maps a /dev path into paths.dev (identity on a real host) and resolves symlinks to the kernel name. */
export function kernelNameOf(devPath: string, paths: VolumeHostPaths = HOST_PATHS): string {
  const mapped = devPath.startsWith('/dev/') && paths.dev !== '/dev' ? path.join(paths.dev, devPath.slice(5)) : devPath;
  try {
    return path.basename(fs.realpathSync(mapped));
  } catch {
    return path.basename(mapped);
  }
}

/** Loop devices (kernel names) whose backing file is `file` (a resolved path). */
export function loopDevicesOf(file: string, paths: VolumeHostPaths = HOST_PATHS): string[] {
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(file);
  } catch {
    /* compare by name only */
  }
  const out: string[] = [];
  for (const name of listDir(paths.sysClassBlock)) {
    if (!name.startsWith('loop')) continue;
    const backing = readText(path.join(paths.sysClassBlock, name, 'loop', 'backing_file'))?.trim();
    if (!backing) continue;
    let same = backing === file;
    if (!same && st) {
      try {
        const b = fs.statSync(backing);
        same = b.dev === st.dev && b.ino === st.ino;
      } catch {
        /* deleted or elsewhere */
      }
    }
    if (same) out.push(name);
  }
  return out;
}

/** The device, its partitions and everything stacked on them (holders), recursively. */
export function relatedDevices(kernelNames: string[], paths: VolumeHostPaths = HOST_PATHS): Set<string> {
  const seen = new Set<string>();
  const visit = (name: string, depth: number): void => {
    if (seen.has(name) || depth > 16) return;
    seen.add(name);
    const dir = path.join(paths.sysClassBlock, name);
    for (const child of listDir(dir)) {
      if (child.startsWith(name) && fs.existsSync(path.join(dir, child, 'partition'))) visit(child, depth + 1);
    }
    for (const holder of listDir(path.join(dir, 'holders'))) visit(holder, depth + 1);
  };
  for (const n of kernelNames) visit(n, 0);
  return seen;
}

/** Every mount and swap that uses the volume at `resolved` (a realpath: a block device or an image file). */
export function findVolumeUses(resolved: string, isBlockDevice: boolean, paths: VolumeHostPaths = HOST_PATHS): VolumeUse[] {
  const roots = isBlockDevice ? [kernelNameOf(resolved, paths)] : loopDevicesOf(resolved, paths);
  const related = relatedDevices(roots, paths);
  const uses: VolumeUse[] = [];
  for (const m of parseMounts(readText(paths.procMounts) ?? '')) {
    const direct = !isBlockDevice && m.source === resolved; // an image mounted by path (mount -o loop shows the loop device, but be safe)
    if (!direct && !m.source.startsWith('/')) continue;
    const name = direct ? resolved : kernelNameOf(m.source, paths);
    if (direct || related.has(name)) uses.push({ device: name, kind: 'mount', target: m.target, readWrite: m.options.includes('rw') });
  }
  for (const s of parseSwaps(readText(paths.procSwaps) ?? '')) {
    const name = !isBlockDevice && s === resolved ? resolved : kernelNameOf(s, paths);
    if (related.has(name) || name === resolved) uses.push({ device: name, kind: 'swap', readWrite: true });
  }
  return uses;
}

export function describeUse(u: VolumeUse): string {
  return u.kind === 'swap' ? `${u.device} is in use as swap` : `${u.device} is mounted ${u.readWrite ? 'read-write' : 'read-only'} at ${u.target}`;
}

/** Backup side: refuses a volume mounted read-write (or used as swap) unless allowed. Returns the uses that were allowed. */
export function checkSourceNotInUse(device: string, resolved: string, isBlockDevice: boolean, opts: { allowMounted?: boolean; isLvm?: boolean; paths?: VolumeHostPaths }): VolumeUse[] {
  const rw = findVolumeUses(resolved, isBlockDevice, opts.paths).filter((u) => u.readWrite);
  if (rw.length === 0 || opts.allowMounted) return rw;
  const what = rw.map(describeUse).join('; ');
  const mountPoint = rw.find((u) => u.target)?.target;
  throw new CairnError('CAIRN_VOLUME_MOUNTED',
    `refusing to back up ${device}: ${what}. Its filesystem changes while it is read, so the backup would not be a consistent image. ` +
      (opts.isLvm ? 'It is an LVM logical volume: use --lvm-snapshot to back up a frozen snapshot of it; or ' : '') +
      (mountPoint ? `unmount it or remount it read-only (mount -o remount,ro ${mountPoint}), ` : '') +
      'or pass --allow-mounted to read it anyway (crash-consistent at best).',
    { uses: rw });
}

/** Restore side: a target that is mounted at all, or used as swap, is never written. */
export function checkTargetNotInUse(target: string, resolved: string, isBlockDevice: boolean, paths?: VolumeHostPaths): void {
  const uses = findVolumeUses(resolved, isBlockDevice, paths);
  if (uses.length === 0) return;
  throw new CairnError('CAIRN_VOLUME_MOUNTED',
    `refusing to restore onto ${target}: ${uses.map(describeUse).join('; ')}. Writing under a mounted filesystem would corrupt it; unmount it first.`, { uses });
}

/** Size of a block device in bytes, from sysfs (512-byte sectors whatever the logical block size). */
export function blockDeviceSize(resolved: string, paths: VolumeHostPaths = HOST_PATHS): number {
  const name = kernelNameOf(resolved, paths);
  const text = readText(path.join(paths.sysClassBlock, name, 'size'));
  const sectors = text === undefined ? NaN : Number(text.trim());
  if (!Number.isSafeInteger(sectors)) throw new CairnError('CAIRN_SOURCE_INVALID', `cannot find the size of ${resolved} (no ${path.join(paths.sysClassBlock, name, 'size')})`);
  return sectors * 512;
}

/** LVM logical volume behind a device-mapper device, from sysfs: dm/uuid starts with "LVM-", dm/name is "VG-LV" with '-' doubled inside names. */
export function lvmVolumeOf(resolved: string, paths: VolumeHostPaths = HOST_PATHS): { vg: string; lv: string } | undefined {
  const name = kernelNameOf(resolved, paths);
  const uuid = readText(path.join(paths.sysClassBlock, name, 'dm', 'uuid'))?.trim();
  const dmName = readText(path.join(paths.sysClassBlock, name, 'dm', 'name'))?.trim();
  if (!uuid?.startsWith('LVM-') || !dmName) return undefined;
  return parseDmLvName(dmName);
}

/** "my--vg-my--lv" -> {vg: "my-vg", lv: "my-lv"}: the VG/LV separator is the first single '-'. */
export function parseDmLvName(dmName: string): { vg: string; lv: string } | undefined {
  for (let i = 0; i < dmName.length; i++) {
    if (dmName[i] !== '-') continue;
    if (dmName[i + 1] === '-') {
      i++;
      continue;
    }
    const vg = dmName.slice(0, i).replace(/--/g, '-');
    const lv = dmName.slice(i + 1).replace(/--/g, '-');
    return vg && lv ? { vg, lv } : undefined;
  }
  return undefined;
}
