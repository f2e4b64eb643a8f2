#!/usr/bin/env node
/**
 * cairn-disk-helper: the only part of Cairn that runs as root. cairnd (unprivileged) calls it
 * with one command from a fixed set (helper-protocol.ts): on the appliance through the
 * socket-activated cairn-disk-helper.socket (`--stdio`, below; client in helper-socket.ts),
 * elsewhere through sudo with the command as arguments. The helper validates
 * every argument, checks the confirmation of data-losing commands, re-checks on the live
 * system that no system disk, mounted disk or member of another array is touched
 * (guard.ts), then runs one tool by absolute path with an argument array -- no shell.
 * Anything else is refused with exit code 2. Commands are documented in docs/hardware.md.
 *
 * Exit codes: the tool's own exit code; 2 refused (bad command, arguments, confirmation
 * or safety check); 127 tool not installed.
 *
 * `--stdio` (one instance per connection, the connection on stdin/stdout): reads ONE line, a
 * JSON array of strings (the argv helperArgv() builds), handles it exactly like the
 * command-line form, writes ONE line {"code":N,"stdout":"...","stderr":"..."} and exits 0.
 * A request that is not such a line is refused with code 2 in the same reply format.
 */
import { parseHelperArgv } from './helper-protocol';
import { directPrivileged } from './privileged';
import { execRunner, CommandRunner, CommandResult } from './runner';
import { HostPaths, DEFAULT_HOST_PATHS } from './host-paths';
import { HwError } from './errors';

/** Longest request line --stdio accepts (the longest real argv is a few hundred bytes). */
export const MAX_REQUEST_BYTES = 64 * 1024;

export interface HelperReply {
  code: number;
  stdout: string;
  stderr: string;
}

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

/** The first line of `input`, without its newline (or all of it, if it ends without one); rejects past `max` bytes or on an empty input. */
export function readRequestLine(input: NodeJS.ReadableStream, max = MAX_REQUEST_BYTES): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (err: Error | null, line?: string): void => {
      input.removeListener('data', onData);
      input.removeListener('end', onEnd);
      input.removeListener('error', onError);
      if (err) reject(err);
      else resolve(line!);
    };
    const onData = (d: Buffer | string): void => {
      const b = typeof d === 'string' ? Buffer.from(d) : d;
      const nl = b.indexOf(0x0a);
      if (nl >= 0) {
        chunks.push(b.subarray(0, nl));
        size += nl;
        if (size > max) return finish(new Error(`request longer than ${max} bytes`));
        return finish(null, Buffer.concat(chunks).toString('utf8'));
      }
      chunks.push(b);
      size += b.length;
      if (size > max) finish(new Error(`request longer than ${max} bytes`));
    };
    const onEnd = (): void => {
      if (size > 0) finish(null, Buffer.concat(chunks).toString('utf8'));
      else finish(new Error('no request (the connection closed before sending one)'));
    };
    const onError = (err: Error): void => finish(err);
    input.on('data', onData);
    input.once('end', onEnd);
    input.once('error', onError);
  });
}

/** Parses a request line: a JSON array of strings, else an error saying what is wrong. */
export function parseRequest(line: string): string[] {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw new Error('request is not JSON (expected one line: a JSON array of strings)');
  }
  if (!Array.isArray(v) || v.length === 0 || v.length > 64 || !v.every((a) => typeof a === 'string')) {
    throw new Error('request must be a non-empty JSON array of at most 64 strings');
  }
  return v as string[];
}

/**
 * One --stdio exchange: request line in, reply line out. Never throws for a bad request: the
 * reply carries code 2, so the client always gets an answer it can report.
 */
export async function stdioMain(input: NodeJS.ReadableStream, write: (line: string) => void, deps: { runner: CommandRunner; paths: HostPaths }): Promise<HelperReply> {
  const reply: HelperReply = { code: 2, stdout: '', stderr: '' };
  let argv: string[];
  try {
    argv = parseRequest(await readRequestLine(input));
  } catch (err) {
    reply.stderr = `cairn-disk-helper: ${(err as Error).message} [CAIRN_HW_INVALID_ARGUMENT]\n`;
    write(`${JSON.stringify(reply)}\n`);
    return reply;
  }
  reply.code = await helperMain(argv, {
    runner: deps.runner,
    paths: deps.paths,
    io: { stdout: (s) => (reply.stdout += s), stderr: (s) => (reply.stderr += s) },
  });
  write(`${JSON.stringify(reply)}\n`);
  return reply;
}

if (require.main === module) {
  // A fixed, minimal environment for the tools: no inherited PATH, locale or IFS games.
  const env = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' };
  const runner = execRunner({ env });
  const main =
    process.argv[2] === '--stdio' && process.argv.length === 3
      ? stdioMain(process.stdin, (line) => process.stdout.write(line), { runner, paths: DEFAULT_HOST_PATHS }).then(() => {
          // The reply is the result; the process itself succeeded once it was written.
          process.stdin.destroy();
          return 0;
        })
      : helperMain(process.argv.slice(2), {
          runner,
          paths: DEFAULT_HOST_PATHS,
          io: { stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s) },
        });
  main.then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`cairn-disk-helper: unexpected error: ${(err as Error)?.message ?? String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
