import fs from 'node:fs';
import si from 'systeminformation';
import { getDiskInfo } from 'node-disk-info';
import { HostPaths } from './host-paths';
import { Clock } from './clock';
import { readMountInfo, disksUnder, MountInfo } from './mounts';
import { MdStat, parseMdstat } from './mdstat';
import { DiskHealth, SmartReport, parseSmartctlJson } from './smart';
import { Privileged } from './privileged';
import { kernelName } from './device-name';

/**
 * Disk inventory: which disks the box has, what each is used for, and how healthy it is.
 * Sources: systeminformation (blockDevices, diskLayout) for the devices, node-disk-info for
 * the usage of mounted filesystems, /proc/mdstat for array membership, /proc/mounts and
 * /proc/swaps for the system disk, and `smartctl -j` (through the privileged runner) for health.
 *
 * Each disk gets one class, in this order of precedence:
 *   failing  SMART says so (whatever else the disk is: it needs replacing)
 *   system   holds /, /boot, /usr, /var or swap
 *   member   belongs to an md array (or carries an md superblock)
 *   in-use   has some other mounted filesystem
 *   free     none of the above: may be used for a new array or as a replacement
 */
export type DiskClass = 'system' | 'member' | 'free' | 'failing' | 'in-use';

export interface DiskHealthSummary {
  health: DiskHealth;
  reasons: string[];
  temperatureC: number | null;
  reallocatedSectors: number | null;
  pendingSectors: number | null;
  powerOnHours: number | null;
  passed: boolean | null;
}

export interface DiskInfo {
  name: string; // sdb, nvme0n1, loop3
  device: string; // /dev/sdb
  type: 'disk' | 'loop' | 'virtual';
  sizeBytes: number;
  model: string | null;
  serial: string | null;
  removable: boolean;
  transport: string | null;
  mountpoints: string[];
  usage: { mountpoint: string; usedBytes: number; availableBytes: number }[];
  arrays: string[];
  backingFile: string | null; // loop devices: the image file behind them
  class: DiskClass;
  health: DiskHealthSummary;
}

export interface Disks {
  list(): Promise<DiskInfo[]>;
}

export function unknownHealth(reason: string): DiskHealthSummary {
  return { health: 'unknown', reasons: [reason], temperatureC: null, reallocatedSectors: null, pendingSectors: null, powerOnHours: null, passed: null };
}

export function summarizeSmart(r: SmartReport): DiskHealthSummary {
  return {
    health: r.health,
    reasons: r.reasons,
    temperatureC: r.temperatureC,
    reallocatedSectors: r.reallocatedSectors,
    pendingSectors: r.pendingSectors,
    powerOnHours: r.powerOnHours,
    passed: r.passed,
  };
}

/** Pure: the class of one disk given what is known about it. */
export function classifyDisk(d: { health: DiskHealth; system: boolean; arrays: string[]; mounted: boolean }): DiskClass {
  if (d.health === 'failing') return 'failing';
  if (d.system) return 'system';
  if (d.arrays.length > 0) return 'member';
  if (d.mounted) return 'in-use';
  return 'free';
}

export interface BlockDevice {
  name: string;
  type: string;
  size: number;
  model: string;
  serial: string;
  removable: boolean;
  protocol: string;
  fsType: string;
  mount: string;
}

export interface UsageEntry {
  filesystem: string;
  mountpoint: string;
  usedBytes: number;
  availableBytes: number;
}

export interface LinuxDisksOptions {
  paths: HostPaths;
  clock: Clock;
  /** Runs `smartctl` (needs root); null: health is reported as unknown. */
  privileged: Privileged | null;
  blockDevices?: () => Promise<BlockDevice[]>;
  diskLayout?: () => Promise<{ device: string; vendor: string; name: string; serialNum: string; interfaceType: string }[]>;
  usage?: () => Promise<UsageEntry[]>;
  /** How long a SMART reading is reused (reading SMART wakes sleeping disks). */
  smartTtlMs?: number;
}

const IGNORED = /^(zram|ram|sr|fd|md|dm-|nbd)\d*/;

async function defaultUsage(): Promise<UsageEntry[]> {
  const drives = await getDiskInfo();
  return drives.map((d) => ({ filesystem: d.filesystem, mountpoint: d.mounted, usedBytes: d.used * 1024, availableBytes: d.available * 1024 }));
}

export class LinuxDisks implements Disks {
  private smartCache = new Map<string, { at: number; summary: DiskHealthSummary }>();

  constructor(private readonly opts: LinuxDisksOptions) {}

  async list(): Promise<DiskInfo[]> {
    const o = this.opts;
    const [blocks, layout, usage] = await Promise.all([
      (o.blockDevices ?? (() => si.blockDevices()))(),
      (o.diskLayout ?? (() => si.diskLayout()))().catch(() => []),
      (o.usage ?? defaultUsage)().catch(() => [] as UsageEntry[]),
    ]);
    const mounts = readMountInfo(o.paths);
    const mdstat = this.readMdstat();
    const memberOf = new Map<string, Set<string>>();
    for (const a of mdstat?.arrays ?? []) {
      for (const m of a.members) {
        for (const disk of disksUnder(m.name, o.paths)) {
          memberOf.set(disk, (memberOf.get(disk) ?? new Set()).add(a.name));
        }
      }
    }
    // Partitions flagged as md members by blkid (an array not assembled here) count too.
    for (const b of blocks) {
      if (b.fsType === 'linux_raid_member') {
        for (const disk of disksUnder(b.name, o.paths)) memberOf.set(disk, (memberOf.get(disk) ?? new Set()).add('(not assembled)'));
      }
    }
    const disks = blocks.filter((b) => (b.type === 'disk' || b.type === 'loop') && !IGNORED.test(b.name));
    const out: DiskInfo[] = [];
    for (const b of disks) {
      const device = `/dev/${b.name}`;
      const lay = layout.find((l) => l.device === device);
      const mountpoints = mountpointsOf(b.name, mounts);
      const arrays = [...(memberOf.get(b.name) ?? [])].sort();
      const health = await this.health(device, b.type === 'loop');
      const usageHere = usage
        .filter((u) => u.filesystem.startsWith('/dev/') && disksUnder(u.filesystem, o.paths).includes(b.name))
        .map((u) => ({ mountpoint: u.mountpoint, usedBytes: u.usedBytes, availableBytes: u.availableBytes }));
      out.push({
        name: b.name,
        device,
        type: b.type === 'loop' ? 'loop' : 'disk',
        sizeBytes: b.size,
        model: (lay ? `${lay.vendor} ${lay.name}`.trim() : b.model) || null,
        serial: (lay?.serialNum || b.serial) || null,
        removable: b.removable,
        transport: (lay?.interfaceType || b.protocol) || null,
        mountpoints,
        usage: usageHere,
        arrays,
        backingFile: b.type === 'loop' ? this.loopBackingFile(b.name) : null,
        class: classifyDisk({ health: health.health, system: mounts.systemDisks.has(b.name), arrays, mounted: mountpoints.length > 0 }),
        health,
      });
    }
    return out.sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }));
  }

  private readMdstat(): MdStat | null {
    try {
      return parseMdstat(fs.readFileSync(this.opts.paths.procMdstat, 'utf8'));
    } catch {
      return null;
    }
  }

  private loopBackingFile(name: string): string | null {
    try {
      return fs.readFileSync(`${this.opts.paths.sysClassBlock}/${name}/loop/backing_file`, 'utf8').trim() || null;
    } catch {
      return null;
    }
  }

  private async health(device: string, isLoop: boolean): Promise<DiskHealthSummary> {
    if (isLoop) return unknownHealth('loop device: no SMART data (its health is the health of the disk holding the image file)');
    if (!this.opts.privileged) return unknownHealth('SMART not read: no privileged helper configured');
    const cached = this.smartCache.get(device);
    const ttl = this.opts.smartTtlMs ?? 10 * 60_000;
    if (cached && this.opts.clock.now() - cached.at < ttl) return cached.summary;
    let summary: DiskHealthSummary;
    try {
      const r = await this.opts.privileged.run({ op: 'smart', device: device });
      const why = (r.stderr || '').trim().split('\n')[0];
      if (r.code === 127) summary = unknownHealth(`SMART not read: ${why || 'smartctl not found'} (is smartmontools installed?)`);
      else if (!r.stdout.trim()) summary = unknownHealth(`SMART not read: ${why || `exit ${r.code}`}`);
      else summary = summarizeSmart(parseSmartctlJson(r.stdout));
    } catch (err) {
      summary = unknownHealth(`SMART not read: ${(err as Error).message}`);
    }
    this.smartCache.set(device, { at: this.opts.clock.now(), summary });
    return summary;
  }
}

function mountpointsOf(disk: string, mounts: MountInfo): string[] {
  return mounts.mountedDisks.get(kernelName(disk)) ?? [];
}
