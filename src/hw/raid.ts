import fs from 'node:fs';
import { HwError } from './errors';
import { HostPaths } from './host-paths';
import { MdArrayState, MdArrayStat, MdSyncAction, parseMdstat } from './mdstat';
import { Privileged } from './privileged';
import { HelperOp } from './helper-protocol';
import { RaidLevel, chooseLevel } from './mdadm-args';
import { CommandResult } from './runner';

/**
 * The RAID interface the rest of Cairn sees. Two implementations: MdadmRaid (this file: the
 * kernel's md driver through /proc/mdstat and mdadm) and SimulatedRaid (sim.ts: image files
 * and a state machine). Both report the same RaidStatus and take the same confirmations.
 */
export type RaidMemberState = 'active' | 'faulty' | 'spare' | 'rebuilding' | 'removed';

export interface RaidMember {
  device: string; // /dev/sdb1
  slot: number | null;
  state: RaidMemberState;
}

export interface RaidArray {
  name: string; // md0
  device: string; // /dev/md0
  level: string | null;
  state: MdArrayState;
  degraded: boolean;
  sizeBytes: number;
  raidDisks: number | null;
  workingDisks: number | null;
  members: RaidMember[];
  sync: { action: MdSyncAction; percent: number; speedKiBps: number | null; finishMinutes: number | null } | null;
}

export interface RaidStatus {
  available: boolean;
  /** Why RAID is not available, or anything else a user should read. */
  note: string | null;
  arrays: RaidArray[];
}

export interface Raid {
  status(): Promise<RaidStatus>;
  create(o: { md: string; devices: string[]; level?: RaidLevel; confirm: string }): Promise<void>;
  fail(o: { md: string; device: string; confirm: string }): Promise<void>;
  remove(o: { md: string; device: string; confirm: string }): Promise<void>;
  add(o: { md: string; device: string; confirm: string }): Promise<void>;
  stop(o: { md: string; confirm: string }): Promise<void>;
  assemble(o: { md: string; devices: string[] }): Promise<void>;
}

export const MD_UNAVAILABLE_NOTE = 'md driver not available: the kernel has no software RAID support loaded (no /proc/mdstat)';

/** mdstat's view of one array, in the shape every Raid implementation reports. */
export function arrayFromMdstat(a: MdArrayStat): RaidArray {
  const recovering = a.sync?.action === 'recovery';
  const members: RaidMember[] = a.members.map((m) => {
    let state: RaidMemberState = 'active';
    if (m.faulty) state = 'faulty';
    else if (m.spare) state = 'spare';
    // mdstat does not mark the disk being rebuilt; during recovery it is the non-spare
    // member whose descriptor index lies past the array's raid disks (md gives a new disk
    // the next free index). /sys/block/mdX/md/dev-*/state would say it directly.
    else if (recovering && a.raidDisks !== null && m.slot >= a.raidDisks) state = 'rebuilding';
    return { device: `/dev/${m.name}`, slot: m.slot, state };
  });
  return {
    name: a.name,
    device: `/dev/${a.name}`,
    level: a.level,
    state: a.state,
    degraded: a.degraded,
    sizeBytes: a.sizeKiB * 1024,
    raidDisks: a.raidDisks,
    workingDisks: a.workingDisks,
    members,
    sync: a.sync ? { action: a.sync.action, percent: a.sync.percent, speedKiBps: a.sync.speedKiBps, finishMinutes: a.sync.finishMinutes } : null,
  };
}

function check(result: CommandResult, what: string): void {
  if (result.code === 0) return;
  if (result.code === 127) throw new HwError('CAIRN_HW_UNAVAILABLE', `${what}: mdadm is not installed (apt-get install mdadm)`);
  const err = (result.stderr || result.stdout).trim().split('\n').slice(-3).join(' | ');
  throw new HwError('CAIRN_HW_COMMAND_FAILED', `${what} failed (exit ${result.code}): ${err || 'no message'}`, { code: result.code });
}

export class MdadmRaid implements Raid {
  constructor(private readonly opts: { paths: HostPaths; privileged: Privileged }) {}

  async status(): Promise<RaidStatus> {
    let text: string;
    try {
      text = await fs.promises.readFile(this.opts.paths.procMdstat, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { available: false, note: MD_UNAVAILABLE_NOTE, arrays: [] };
      return { available: false, note: `cannot read ${this.opts.paths.procMdstat}: ${(err as Error).message}`, arrays: [] };
    }
    try {
      const md = parseMdstat(text);
      return { available: true, note: null, arrays: md.arrays.map(arrayFromMdstat) };
    } catch (err) {
      return { available: true, note: (err as Error).message, arrays: [] };
    }
  }

  private async op(op: HelperOp, what: string): Promise<void> {
    check(await this.opts.privileged.run(op), what);
  }

  async create(o: { md: string; devices: string[]; level?: RaidLevel; confirm: string }): Promise<void> {
    const level = chooseLevel(o.devices.length, o.level);
    await this.op({ op: 'create', md: o.md, level, devices: o.devices, confirm: o.confirm }, `creating ${level} ${o.md}`);
  }

  async fail(o: { md: string; device: string; confirm: string }): Promise<void> {
    await this.op({ op: 'fail', ...o }, `marking ${o.device} failed in ${o.md}`);
  }

  async remove(o: { md: string; device: string; confirm: string }): Promise<void> {
    await this.op({ op: 'remove', ...o }, `removing ${o.device} from ${o.md}`);
  }

  async add(o: { md: string; device: string; confirm: string }): Promise<void> {
    await this.op({ op: 'add', ...o }, `adding ${o.device} to ${o.md}`);
  }

  async stop(o: { md: string; confirm: string }): Promise<void> {
    await this.op({ op: 'stop', ...o }, `stopping ${o.md}`);
  }

  async assemble(o: { md: string; devices: string[] }): Promise<void> {
    await this.op({ op: 'assemble', ...o }, `assembling ${o.md}`);
  }
}
