import fs from 'node:fs';
import { CommandResult, CommandRunner } from './runner';
import { HelperOp, checkConfirmation, helperArgv, validateOp } from './helper-protocol';
import { guardOp } from './guard';
import { HostPaths } from './host-paths';
import { readMountInfo } from './mounts';
import { MdStat, parseMdstat } from './mdstat';
import {
  TOOLS,
  mdadmAddArgs,
  mdadmAssembleArgs,
  mdadmCreateArgs,
  mdadmDetailArgs,
  mdadmExamineArgs,
  mdadmFailArgs,
  mdadmRemoveArgs,
  mdadmStopArgs,
  mkfsArgs,
  mountArgs,
  smartctlArgs,
  umountArgs,
} from './mdadm-args';

/**
 * How an operation that needs root gets run. `directPrivileged` validates, checks the
 * confirmation and the safety guard, and runs the tool itself: that is what the helper does
 * (and cairnd when it runs as root in development). `helperPrivileged` is what unprivileged
 * cairnd uses: it sends the same operation to the helper through sudo.
 */
export interface Privileged {
  run(op: HelperOp): Promise<CommandResult>;
}

export type Tools = { [K in keyof typeof TOOLS]: string };

/** The program and arguments for one operation. Pure. */
export function commandFor(op: HelperOp, tools: Tools = TOOLS): { command: string; args: string[] } {
  switch (op.op) {
    case 'create':
      return { command: tools.mdadm, args: mdadmCreateArgs(op.md, op.level, op.devices) };
    case 'fail':
      return { command: tools.mdadm, args: mdadmFailArgs(op.md, op.device) };
    case 'remove':
      return { command: tools.mdadm, args: mdadmRemoveArgs(op.md, op.device) };
    case 'add':
      return { command: tools.mdadm, args: mdadmAddArgs(op.md, op.device) };
    case 'stop':
      return { command: tools.mdadm, args: mdadmStopArgs(op.md) };
    case 'assemble':
      return { command: tools.mdadm, args: mdadmAssembleArgs(op.md, op.devices) };
    case 'detail':
      return { command: tools.mdadm, args: mdadmDetailArgs(op.md) };
    case 'examine':
      return { command: tools.mdadm, args: mdadmExamineArgs(op.device) };
    case 'mkfs':
      return { command: tools.mkfsExt4, args: mkfsArgs(op.md) };
    case 'mount':
      return { command: tools.mount, args: mountArgs(op.md) };
    case 'umount':
      return { command: tools.umount, args: umountArgs() };
    case 'smart':
      return { command: tools.smartctl, args: smartctlArgs(op.device) };
  }
}

function readMdstatOrNull(paths: HostPaths): MdStat | null {
  let text: string;
  try {
    text = fs.readFileSync(paths.procMdstat, 'utf8');
  } catch {
    return null;
  }
  try {
    return parseMdstat(text);
  } catch {
    return null;
  }
}

export function directPrivileged(opts: { runner: CommandRunner; paths: HostPaths; tools?: Tools }): Privileged {
  return {
    async run(op) {
      validateOp(op);
      checkConfirmation(op);
      guardOp(op, { paths: opts.paths, mounts: readMountInfo(opts.paths), mdstat: readMdstatOrNull(opts.paths) });
      const { command, args } = commandFor(op, opts.tools);
      return opts.runner.run(command, args, { timeoutMs: op.op === 'mkfs' ? 30 * 60_000 : 120_000 });
    },
  };
}

/**
 * `command` is the helper invocation, e.g. ['/usr/bin/sudo', '-n', '/usr/bin/node',
 * '/opt/cairn/dist/src/hw/disk-helper.js']. The operation's arguments follow it.
 */
export function helperPrivileged(opts: { runner: CommandRunner; command: readonly string[] }): Privileged {
  if (opts.command.length === 0) throw new Error('helper command is empty');
  return {
    async run(op) {
      checkConfirmation(op);
      const argv = helperArgv(op);
      return opts.runner.run(opts.command[0], [...opts.command.slice(1), ...argv], { timeoutMs: op.op === 'mkfs' ? 30 * 60_000 : 120_000 });
    },
  };
}
