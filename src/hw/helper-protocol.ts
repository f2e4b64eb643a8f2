import { HwError } from './errors';
import { checkMdDevice, checkMemberDevice } from './device-name';
import { RaidLevel, RAID_LEVELS } from './mdadm-args';

/**
 * The privileged helper's fixed command set, as data. cairnd (unprivileged) turns an
 * operation into an argument list with `helperArgv`; the helper (root) turns it back with
 * `parseHelperArgv`, which accepts exactly these commands with exactly these argument shapes
 * and refuses everything else. The two are inverse functions (a property test checks it).
 *
 * Operations that can lose data carry a confirmation: the comma-joined list of the devices
 * whose contents are at stake, which the caller must repeat back (`confirmationFor`).
 */
export type HelperOp =
  | { op: 'create'; md: string; level: RaidLevel; devices: string[]; confirm: string }
  | { op: 'fail'; md: string; device: string; confirm: string }
  | { op: 'remove'; md: string; device: string; confirm: string }
  | { op: 'add'; md: string; device: string; confirm: string }
  | { op: 'stop'; md: string; confirm: string }
  | { op: 'assemble'; md: string; devices: string[] }
  | { op: 'detail'; md: string }
  | { op: 'examine'; device: string }
  | { op: 'mkfs'; md: string; confirm: string }
  | { op: 'mount'; md: string }
  | { op: 'umount' }
  | { op: 'smart'; device: string };

export type HelperOpName = HelperOp['op'];

export const HELPER_COMMANDS: readonly HelperOpName[] = ['create', 'fail', 'remove', 'add', 'stop', 'assemble', 'detail', 'examine', 'mkfs', 'mount', 'umount', 'smart'];

export const HELPER_USAGE = [
  'create <md> <raid1|raid5|raid6|raid10> <dev> <dev>... --confirm=<dev,dev,...>',
  'fail <md> <dev> --confirm=<dev>',
  'remove <md> <dev> --confirm=<dev>',
  'add <md> <dev> --confirm=<dev>',
  'stop <md> --confirm=<md>',
  'assemble <md> [<dev>...]',
  'detail <md>',
  'examine <dev>',
  'mkfs <md> --confirm=<md>',
  'mount <md>',
  'umount',
  'smart <dev>',
];

/** What must be repeated back to run a data-losing operation, or null if none is needed. */
export function confirmationFor(op: HelperOp): string | null {
  switch (op.op) {
    case 'create':
      return op.devices.join(',');
    case 'fail':
    case 'remove':
    case 'add':
      return op.device;
    case 'stop':
    case 'mkfs':
      return op.md;
    default:
      return null;
  }
}

const WHAT: Partial<Record<HelperOpName, string>> = {
  create: 'erases every listed disk',
  fail: 'takes a disk out of the array (less redundancy until it is replaced)',
  remove: 'removes a disk from the array',
  add: 'erases the added disk',
  stop: 'takes the data array offline',
  mkfs: 'erases everything on the array',
};

/** Throws unless the operation carries the exact confirmation it needs. */
export function checkConfirmation(op: HelperOp): void {
  const need = confirmationFor(op);
  if (need === null) return;
  const got = 'confirm' in op ? op.confirm : undefined;
  if (got !== need) {
    throw new HwError(
      'CAIRN_HW_CONFIRM_REQUIRED',
      `"${op.op}" ${WHAT[op.op] ?? 'changes the disks'}; to go ahead, repeat the devices as confirmation: confirm "${need}"`,
      { op: op.op, confirm: need },
    );
  }
}

/** Validates every field of an operation that arrived as untrusted data. */
export function validateOp(op: HelperOp): HelperOp {
  switch (op.op) {
    case 'create':
      checkMdDevice(op.md);
      if (!RAID_LEVELS.includes(op.level)) throw new HwError('CAIRN_HW_INVALID_ARGUMENT', `unsupported RAID level "${String(op.level)}"; use one of ${RAID_LEVELS.join(', ')}`);
      if (!Array.isArray(op.devices) || op.devices.length < 2) throw new HwError('CAIRN_HW_INVALID_ARGUMENT', 'create needs at least two disks');
      op.devices.forEach(checkMemberDevice);
      return op;
    case 'fail':
    case 'remove':
    case 'add':
      checkMdDevice(op.md);
      checkMemberDevice(op.device);
      return op;
    case 'stop':
    case 'detail':
    case 'mkfs':
    case 'mount':
      checkMdDevice(op.md);
      return op;
    case 'assemble':
      checkMdDevice(op.md);
      op.devices.forEach(checkMemberDevice);
      return op;
    case 'examine':
    case 'smart':
      checkMemberDevice(op.device);
      return op;
    case 'umount':
      return op;
    default:
      throw new HwError('CAIRN_HW_INVALID_ARGUMENT', `unknown disk operation "${String((op as { op: unknown }).op)}"`);
  }
}

export function helperArgv(op: HelperOp): string[] {
  validateOp(op);
  const confirm = 'confirm' in op ? [`--confirm=${op.confirm}`] : [];
  switch (op.op) {
    case 'create':
      return ['create', op.md, op.level, ...op.devices, ...confirm];
    case 'fail':
    case 'remove':
    case 'add':
      return [op.op, op.md, op.device, ...confirm];
    case 'stop':
    case 'mkfs':
      return [op.op, op.md, ...confirm];
    case 'assemble':
      return ['assemble', op.md, ...op.devices];
    case 'detail':
    case 'mount':
      return [op.op, op.md];
    case 'examine':
    case 'smart':
      return [op.op, op.device];
    case 'umount':
      return ['umount'];
  }
}

function usage(msg: string): HwError {
  return new HwError('CAIRN_HW_INVALID_ARGUMENT', `${msg}\nusage: disk-helper ${HELPER_USAGE.join('\n       disk-helper ')}`);
}

/** The helper's argument parser: a fixed grammar, no option other than --confirm=. */
export function parseHelperArgv(argv: readonly string[]): HelperOp {
  const [cmd, ...rest] = argv;
  if (cmd === undefined) throw usage('no command');
  if (!(HELPER_COMMANDS as readonly string[]).includes(cmd)) throw usage(`unknown command "${cmd.slice(0, 40)}"`);
  const confirms = rest.filter((a) => a.startsWith('--confirm='));
  const pos = rest.filter((a) => !a.startsWith('--confirm='));
  const bad = pos.find((a) => a.startsWith('-'));
  if (bad !== undefined) throw usage(`unknown option "${bad.slice(0, 40)}"`);
  if (confirms.length > 1) throw usage('--confirm given twice');
  const confirm = confirms.length === 1 ? confirms[0].slice('--confirm='.length) : undefined;
  const needsConfirm = ['create', 'fail', 'remove', 'add', 'stop', 'mkfs'].includes(cmd);
  if (!needsConfirm && confirm !== undefined) throw usage(`"${cmd}" takes no --confirm`);
  const arity = (n: number): void => {
    if (pos.length !== n) throw usage(`"${cmd}" takes ${n} argument${n === 1 ? '' : 's'}, got ${pos.length}`);
  };
  let op: HelperOp;
  switch (cmd) {
    case 'create': {
      if (pos.length < 4) throw usage('"create" takes an md device, a level and at least two disks');
      op = { op: 'create', md: pos[0], level: pos[1] as RaidLevel, devices: pos.slice(2), confirm: confirm ?? '' };
      break;
    }
    case 'fail':
    case 'remove':
    case 'add':
      arity(2);
      op = { op: cmd, md: pos[0], device: pos[1], confirm: confirm ?? '' };
      break;
    case 'stop':
    case 'mkfs':
      arity(1);
      op = { op: cmd, md: pos[0], confirm: confirm ?? '' };
      break;
    case 'assemble':
      if (pos.length < 1) throw usage('"assemble" takes an md device');
      op = { op: 'assemble', md: pos[0], devices: pos.slice(1) };
      break;
    case 'detail':
    case 'mount':
      arity(1);
      op = { op: cmd, md: pos[0] };
      break;
    case 'examine':
    case 'smart':
      arity(1);
      op = { op: cmd, device: pos[0] };
      break;
    default:
      arity(0);
      op = { op: 'umount' };
  }
  validateOp(op);
  return op;
}
