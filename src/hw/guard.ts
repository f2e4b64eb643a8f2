import { HwError } from './errors';
import { HelperOp } from './helper-protocol';
import { MountInfo, disksUnder } from './mounts';
import { MdStat } from './mdstat';
import { HostPaths } from './host-paths';
import { kernelName } from './device-name';

/**
 * The refusals that stand between a request and a wiped disk. Checked by cairnd before it
 * asks, and again by the privileged helper (as root, on the live system) before it acts:
 * never erase or re-use a disk that holds the running system or a mounted filesystem or
 * belongs to another array; never stop, fail or remove members of the array the system runs on.
 */
export interface GuardContext {
  paths: HostPaths;
  mounts: MountInfo;
  mdstat: MdStat | null;
}

const SYSTEM_TARGETS = new Set(['/', '/boot', '/boot/efi', '/boot/firmware', '/usr', '/var']);

function refuse(msg: string, details: Record<string, unknown>): HwError {
  return new HwError('CAIRN_HW_REFUSED', msg, details);
}

function checkWipeable(device: string, ctx: GuardContext, purpose: string): void {
  const name = kernelName(device);
  const disks = disksUnder(device, ctx.paths);
  for (const disk of disks) {
    if (ctx.mounts.systemDisks.has(disk)) {
      throw refuse(`refusing to ${purpose} ${device}: disk ${disk} holds the running system; choose a data disk`, { device, disk });
    }
    const where = ctx.mounts.mountedDisks.get(disk);
    if (where && where.length > 0) {
      throw refuse(`refusing to ${purpose} ${device}: disk ${disk} has a mounted filesystem (${where.join(', ')}); unmount it first`, { device, disk, mounted: where });
    }
  }
  for (const a of ctx.mdstat?.arrays ?? []) {
    const hit = a.members.find((m) => m.name === name || disks.includes(m.name) || disks.includes(disksUnder(m.name, ctx.paths)[0]));
    if (hit && !hit.faulty) {
      throw refuse(`refusing to ${purpose} ${device}: it is a member of array ${a.name}; remove it from that array first`, { device, array: a.name });
    }
  }
}

function mountsOf(md: string, ctx: GuardContext): string[] {
  return ctx.mounts.mounts.filter((m) => m.source === md || kernelName(m.source) === kernelName(md)).map((m) => m.target);
}

function checkNotSystemArray(md: string, ctx: GuardContext, purpose: string): void {
  const targets = mountsOf(md, ctx);
  const sys = targets.filter((t) => SYSTEM_TARGETS.has(t));
  if (sys.length > 0 || ctx.mounts.swaps.includes(md)) {
    throw refuse(`refusing to ${purpose}: ${md} holds the running system (${sys.join(', ') || 'swap'})`, { md });
  }
}

export function guardOp(op: HelperOp, ctx: GuardContext): void {
  switch (op.op) {
    case 'create':
      for (const d of op.devices) checkWipeable(d, ctx, 'build an array on');
      if (ctx.mdstat?.arrays.some((a) => a.name === kernelName(op.md))) {
        throw refuse(`refusing to create ${op.md}: an array of that name is already running; stop it first or use another name`, { md: op.md });
      }
      return;
    case 'add':
      checkWipeable(op.device, ctx, 'add');
      checkNotSystemArray(op.md, ctx, `add a disk to ${op.md}`);
      return;
    case 'fail':
    case 'remove':
      checkNotSystemArray(op.md, ctx, `${op.op} ${op.device} from ${op.md}`);
      return;
    case 'stop': {
      checkNotSystemArray(op.md, ctx, `stop ${op.md}`);
      const targets = mountsOf(op.md, ctx);
      if (targets.length > 0) throw refuse(`refusing to stop ${op.md}: it is mounted on ${targets.join(', ')}; unmount it first`, { md: op.md });
      return;
    }
    case 'mkfs': {
      const targets = mountsOf(op.md, ctx);
      if (targets.length > 0) throw refuse(`refusing to format ${op.md}: it is mounted on ${targets.join(', ')}`, { md: op.md });
      checkNotSystemArray(op.md, ctx, `format ${op.md}`);
      return;
    }
    default:
      return;
  }
}
