import fs from 'node:fs';
import path from 'node:path';
import { HostPaths } from './host-paths';
import { parentDiskName, kernelName } from './device-name';

/**
 * What is mounted, and which disks hold the running system. Destructive RAID operations ask
 * this module before touching a disk: a disk whose filesystem is mounted, or which carries
 * the root filesystem, /boot or swap, is never wiped.
 */
export interface MountEntry {
  source: string;
  target: string;
  fstype: string;
  options: string;
}

/** /proc/mounts (and /proc/self/mounts): six space-separated fields, octal escapes in paths. */
export function parseMounts(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const f = line.trim().split(/\s+/);
    if (f.length < 4) continue; // a truncated line says nothing reliable; skip it
    out.push({ source: unescapeMount(f[0]), target: unescapeMount(f[1]), fstype: f[2], options: f[3] });
  }
  return out;
}

function unescapeMount(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** /proc/swaps: a header line, then "Filename Type Size Used Priority". */
export function parseSwaps(text: string): string[] {
  return text
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/)[0])
    .filter((s): s is string => !!s && s.startsWith('/'));
}

const SYSTEM_TARGETS = new Set(['/', '/boot', '/boot/efi', '/boot/firmware', '/usr', '/var']);

/**
 * Whole disks (kernel names) under a block device, through sysfs where it can: a partition
 * resolves to its disk, a device-mapper or md device to the disks under its slaves. Falls
 * back to the naming convention when sysfs has nothing (a test tree, a container).
 */
export function disksUnder(dev: string, paths: HostPaths, depth = 0): string[] {
  let name = kernelName(dev);
  try {
    name = path.basename(fs.realpathSync(path.join(paths.dev, name)));
  } catch {
    /* not a device node here: keep the name */
  }
  if (depth > 8) return [parentDiskName(name)];
  const sysEntry = path.join(paths.sysClassBlock, name);
  let real: string | undefined;
  try {
    real = fs.realpathSync(sysEntry);
  } catch {
    return [parentDiskName(name)];
  }
  if (fs.existsSync(path.join(real, 'partition'))) return [path.basename(path.dirname(real))];
  let slaves: string[] = [];
  try {
    slaves = fs.readdirSync(path.join(real, 'slaves'));
  } catch {
    /* no slaves directory: a plain disk */
  }
  if (slaves.length === 0) return [name];
  return [...new Set(slaves.flatMap((s) => disksUnder(s, paths, depth + 1)))];
}

export interface MountInfo {
  mounts: MountEntry[];
  swaps: string[];
  /** Whole disks that hold /, /boot, /usr, /var or swap. */
  systemDisks: Set<string>;
  /** Whole disks with any mounted filesystem (system or not), by kernel name. */
  mountedDisks: Map<string, string[]>;
}

function readOr(file: string, fallback: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return fallback;
  }
}

export function readMountInfo(paths: HostPaths): MountInfo {
  const mounts = parseMounts(readOr(paths.procMounts, ''));
  const swaps = parseSwaps(readOr(paths.procSwaps, ''));
  const systemDisks = new Set<string>();
  const mountedDisks = new Map<string, string[]>();
  for (const m of mounts) {
    if (!m.source.startsWith('/dev/')) continue;
    for (const disk of disksUnder(m.source, paths)) {
      mountedDisks.set(disk, [...(mountedDisks.get(disk) ?? []), m.target]);
      if (SYSTEM_TARGETS.has(m.target)) systemDisks.add(disk);
    }
  }
  for (const s of swaps) {
    if (!s.startsWith('/dev/')) continue;
    for (const disk of disksUnder(s, paths)) {
      systemDisks.add(disk);
      mountedDisks.set(disk, [...(mountedDisks.get(disk) ?? []), '[swap]']);
    }
  }
  return { mounts, swaps, systemDisks, mountedDisks };
}
