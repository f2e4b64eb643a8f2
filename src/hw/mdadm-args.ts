import { HwError } from './errors';
import { checkMdDevice, checkMemberDevice } from './device-name';

/**
 * Pure builders of the argument arrays for every disk operation. Nothing here runs anything;
 * privileged.ts hands the result to the runner. Each builder validates its device names, so
 * an argument array that leaves this module only ever names devices Cairn manages.
 */
export type RaidLevel = 'raid1' | 'raid5' | 'raid6' | 'raid10';

export const RAID_LEVELS: readonly RaidLevel[] = ['raid1', 'raid5', 'raid6', 'raid10'];

const MIN_DISKS: Record<RaidLevel, number> = { raid1: 2, raid5: 3, raid6: 4, raid10: 4 };

export const MAX_ARRAY_DISKS = 16;

/** Absolute paths: the helper runs as root with a scrubbed PATH. */
export const TOOLS = {
  mdadm: '/usr/sbin/mdadm',
  mkfsExt4: '/usr/sbin/mkfs.ext4',
  mount: '/usr/bin/mount',
  umount: '/usr/bin/umount',
  smartctl: '/usr/sbin/smartctl',
} as const;

/** Where the data array is mounted. Fixed, not an argument: the helper mounts nothing else. */
export const DATA_MOUNT_POINT = '/srv/cairn/data';
export const DATA_FS_LABEL = 'cairn-data';

/**
 * The level Cairn builds for a number of disks: two disks mirror (RAID 1); three use RAID 5;
 * four or more use RAID 6 (any two disks may fail) unless RAID 10 is asked for.
 */
export function chooseLevel(diskCount: number, requested?: RaidLevel): RaidLevel {
  if (!Number.isInteger(diskCount) || diskCount < 2) {
    throw new HwError('CAIRN_HW_INVALID_ARGUMENT', `an array needs at least 2 disks, got ${diskCount}`);
  }
  if (diskCount > MAX_ARRAY_DISKS) throw new HwError('CAIRN_HW_INVALID_ARGUMENT', `at most ${MAX_ARRAY_DISKS} disks per array, got ${diskCount}`);
  const level = requested ?? (diskCount === 2 ? 'raid1' : diskCount === 3 ? 'raid5' : 'raid6');
  if (!RAID_LEVELS.includes(level)) throw new HwError('CAIRN_HW_INVALID_ARGUMENT', `unsupported RAID level "${String(level)}"; use one of ${RAID_LEVELS.join(', ')}`);
  if (diskCount < MIN_DISKS[level]) {
    throw new HwError('CAIRN_HW_INVALID_ARGUMENT', `${level} needs at least ${MIN_DISKS[level]} disks, got ${diskCount}`);
  }
  if (diskCount === 2 && level !== 'raid1') throw new HwError('CAIRN_HW_INVALID_ARGUMENT', 'two disks are mirrored (raid1)');
  return level;
}

function uniqueMembers(devices: readonly string[]): string[] {
  const list = devices.map(checkMemberDevice);
  if (new Set(list).size !== list.length) throw new HwError('CAIRN_HW_INVALID_ARGUMENT', `a disk is listed twice: ${list.join(' ')}`);
  return list;
}

export function mdadmCreateArgs(md: string, level: RaidLevel, devices: readonly string[]): string[] {
  checkMdDevice(md);
  const list = uniqueMembers(devices);
  const lvl = chooseLevel(list.length, level);
  const args = ['--create', md, '--run', '--metadata=1.2', `--level=${lvl.slice(4)}`, `--raid-devices=${list.length}`, '--name=cairn-data'];
  // A write-intent bitmap makes a re-added disk resync only what changed while it was out.
  return [...args, '--bitmap=internal', ...list];
}

export function mdadmFailArgs(md: string, device: string): string[] {
  return ['--manage', checkMdDevice(md), '--fail', checkMemberDevice(device)];
}

export function mdadmRemoveArgs(md: string, device: string): string[] {
  return ['--manage', checkMdDevice(md), '--remove', checkMemberDevice(device)];
}

export function mdadmAddArgs(md: string, device: string): string[] {
  return ['--manage', checkMdDevice(md), '--add', checkMemberDevice(device)];
}

export function mdadmStopArgs(md: string): string[] {
  return ['--stop', checkMdDevice(md)];
}

export function mdadmAssembleArgs(md: string, devices: readonly string[]): string[] {
  checkMdDevice(md);
  if (devices.length === 0) return ['--assemble', md, '--scan'];
  return ['--assemble', md, '--run', ...uniqueMembers(devices)];
}

export function mdadmDetailArgs(md: string): string[] {
  return ['--detail', checkMdDevice(md)];
}

export function mdadmExamineArgs(device: string): string[] {
  return ['--examine', checkMemberDevice(device)];
}

export function mkfsArgs(md: string): string[] {
  // -m 0: no blocks reserved for root on a data-only filesystem
  return ['-F', '-q', '-m', '0', '-L', DATA_FS_LABEL, checkMdDevice(md)];
}

export function mountArgs(md: string): string[] {
  return ['-t', 'ext4', '-o', 'noatime,nodev,nosuid,noexec', checkMdDevice(md), DATA_MOUNT_POINT];
}

export function umountArgs(): string[] {
  return [DATA_MOUNT_POINT];
}

export function smartctlArgs(device: string): string[] {
  return ['-j', '-a', checkMemberDevice(device)];
}
