import { execFile } from 'node:child_process';

/**
 * The one place in src/hw that starts processes. Everything else builds argument arrays with
 * pure functions and hands them to a CommandRunner, so tests substitute a recording runner
 * and never spawn mdadm, smartctl or mount. No shell is involved: arguments are passed as
 * an array, never interpolated into a command line.
 */
export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CommandRunner {
  run(command: string, args: readonly string[], opts?: { timeoutMs?: number }): Promise<CommandResult>;
}

const MAX_OUTPUT = 16 * 1024 * 1024;

/** Runs real programs. A missing program resolves with code 127, like a shell would. */
export function execRunner(opts: { env?: NodeJS.ProcessEnv } = {}): CommandRunner {
  return {
    run(command, args, runOpts) {
      return new Promise((resolve) => {
        execFile(
          command,
          [...args],
          { timeout: runOpts?.timeoutMs ?? 120_000, maxBuffer: MAX_OUTPUT, encoding: 'utf8', env: opts.env ?? { ...process.env, LC_ALL: 'C' } },
          (err, stdout, stderr) => {
            if (!err) return resolve({ code: 0, stdout, stderr });
            const e = err as NodeJS.ErrnoException & { code?: string | number; killed?: boolean };
            if (e.code === 'ENOENT') return resolve({ code: 127, stdout: '', stderr: `${command}: not found` });
            const code = typeof e.code === 'number' ? e.code : e.killed ? 124 : 1;
            resolve({ code, stdout: stdout ?? '', stderr: stderr || (stdout ? '' : e.message) });
          },
        );
      });
    },
  };
}
