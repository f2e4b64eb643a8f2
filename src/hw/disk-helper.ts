#!/usr/bin/env node
/**
 * cairn-disk-helper: the only part of Cairn that runs as root. cairnd (unprivileged) calls it
 * through sudo with one command from a fixed set (helper-protocol.ts); the helper validates
 * every argument, checks the confirmation of data-losing commands, re-checks on the live
 * system that no system disk, mounted disk or member of another array is touched
 * (guard.ts), then runs one tool by absolute path with an argument array -- no shell.
 * Anything else is refused with exit code 2. Commands are documented in docs/hardware.md.
 *
 * Exit codes: the tool's own exit code; 2 refused (bad command, arguments, confirmation
 * or safety check); 127 tool not installed.
 */
import { parseHelperArgv } from './helper-protocol';
import { directPrivileged } from './privileged';
import { execRunner, CommandRunner, CommandResult } from './runner';
import { HostPaths, DEFAULT_HOST_PATHS } from './host-paths';
import { HwError } from './errors';

export interface HelperIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
}

/** The helper's main, separated from process wiring so tests run it with a fake runner. */
export async function helperMain(argv: readonly string[], deps: { runner: CommandRunner; paths: HostPaths; io: HelperIo }): Promise<number> {
  let result: CommandResult;
  try {
    const op = parseHelperArgv(argv);
    result = await directPrivileged({ runner: deps.runner, paths: deps.paths }).run(op);
  } catch (err) {
    const code = err instanceof HwError ? err.code : 'CAIRN_HW_INVALID_ARGUMENT';
    deps.io.stderr(`cairn-disk-helper: ${(err as Error).message} [${code}]\n`);
    return 2;
  }
  if (result.stdout) deps.io.stdout(result.stdout);
  if (result.stderr) deps.io.stderr(result.stderr);
  return result.code;
}

if (require.main === module) {
  // A fixed, minimal environment for the tools: no inherited PATH, locale or IFS games.
  const env = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' };
  helperMain(process.argv.slice(2), {
    runner: execRunner({ env }),
    paths: DEFAULT_HOST_PATHS,
    io: { stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s) },
  }).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`cairn-disk-helper: unexpected error: ${(err as Error)?.message ?? String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
