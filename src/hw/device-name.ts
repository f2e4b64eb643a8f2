import { HwError } from './errors';

/**
 * Which block devices the hardware layer (and the privileged helper) will touch at all.
 * Whole disks and their partitions on the buses a box has, loop devices for tests and the
 * simulated profile, and md arrays. Anything else -- a path with "..", a symlink under
 * /dev/disk, a file, an option smuggled as a device -- is refused before it reaches a tool.
 */
const MEMBER_PATTERNS: readonly RegExp[] = [
  /^\/dev\/sd[a-z]{1,2}(\d{1,3})?$/, // SATA/SAS/USB disks and partitions
  /^\/dev\/vd[a-z]{1,2}(\d{1,3})?$/, // virtio
  /^\/dev\/xvd[a-z]{1,2}(\d{1,3})?$/, // xen
  /^\/dev\/hd[a-z](\d{1,3})?$/, // old IDE
  /^\/dev\/nvme\d{1,3}n\d{1,3}(p\d{1,3})?$/, // NVMe namespaces and partitions
  /^\/dev\/mmcblk\d{1,3}(p\d{1,3})?$/, // SD cards (a Pi's system disk)
  /^\/dev\/loop\d{1,4}(p\d{1,3})?$/, // loop devices
];

const MD_PATTERN = /^\/dev\/md\d{1,4}$/;

export function isMemberDevice(dev: string): boolean {
  return MEMBER_PATTERNS.some((re) => re.test(dev));
}

export function isMdDevice(dev: string): boolean {
  return MD_PATTERN.test(dev);
}

/** A disk or partition that may become an array member; throws a clear error otherwise. */
export function checkMemberDevice(dev: string): string {
  if (typeof dev !== 'string' || !isMemberDevice(dev)) {
    throw new HwError(
      'CAIRN_HW_INVALID_ARGUMENT',
      `"${String(dev).slice(0, 80)}" is not a disk device Cairn manages; use a name like /dev/sdb, /dev/nvme0n1, /dev/vdb or /dev/loop3`,
    );
  }
  return dev;
}

export function checkMdDevice(dev: string): string {
  if (typeof dev !== 'string' || !isMdDevice(dev)) {
    throw new HwError('CAIRN_HW_INVALID_ARGUMENT', `"${String(dev).slice(0, 80)}" is not an md array device; use a name like /dev/md0`);
  }
  return dev;
}

/** "/dev/sdb1" -> "sdb1"; names from /proc/mdstat come without the prefix. */
export function kernelName(dev: string): string {
  return dev.startsWith('/dev/') ? dev.slice(5) : dev;
}

/**
 * The whole disk a partition name belongs to, by naming convention only (sysfs knows better;
 * see mounts.ts): sda1 -> sda, nvme0n1p2 -> nvme0n1, mmcblk0p2 -> mmcblk0, loop3p1 -> loop3.
 */
export function parentDiskName(name: string): string {
  const n = kernelName(name);
  const p = /^((?:nvme\d+n\d+)|(?:mmcblk\d+)|(?:loop\d+))p\d+$/.exec(n);
  if (p) return p[1];
  const s = /^((?:sd|vd|xvd|hd)[a-z]+)\d+$/.exec(n);
  if (s) return s[1];
  return n;
}
