import fs from 'node:fs';
import net from 'node:net';
import { HwError } from './errors';
import { HelperOp, checkConfirmation, helperArgv } from './helper-protocol';
import { helperPrivileged, Privileged } from './privileged';
import { CommandResult, CommandRunner } from './runner';

/**
 * The client side of the socket-activated disk helper (systemd/cairn-disk-helper.socket). On
 * the appliance cairnd runs with NoNewPrivileges and no capabilities, so sudo is out; it
 * connects to this socket (root:cairn 0660) instead, and systemd starts one
 * `disk-helper.js --stdio` per connection. One request per connection: a line holding the
 * JSON argv of the operation; one reply line {"code":N,"stdout":"...","stderr":"..."}.
 * Results mean what the command-line helper's exit codes mean (2 refused, 127 tool missing).
 */
export const DEFAULT_HELPER_SOCKET = '/run/cairn-disk-helper.sock';

/** Largest reply accepted (the helper's tools are capped at 16 MiB of output each stream). */
const MAX_REPLY_BYTES = 40 * 1024 * 1024;

function timeoutFor(op: HelperOp): number {
  // As helperPrivileged; plus a little for the helper's own start-up (node, on a slow card).
  return (op.op === 'mkfs' ? 30 * 60_000 : 120_000) + 30_000;
}

/** Sends one argv to the helper socket and returns its reply. Pure transport, no validation. */
export function requestHelper(socketPath: string, argv: readonly string[], timeoutMs = 150_000): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection({ path: socketPath });
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const done = (err: Error | null, result?: CommandResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(result!);
    };
    const timer = setTimeout(
      () => done(new HwError('CAIRN_HW_COMMAND_FAILED', `the disk helper did not answer within ${Math.round(timeoutMs / 1000)} s (${argv[0]})`)),
      timeoutMs,
    );
    const parseReply = (text: string): void => {
      let v: unknown;
      try {
        v = JSON.parse(text);
      } catch {
        return done(new HwError('CAIRN_HW_PARSE', `the disk helper's reply is not JSON: ${text.slice(0, 200)}`));
      }
      const r = v as Partial<CommandResult> | null;
      if (!r || typeof r.code !== 'number' || typeof r.stdout !== 'string' || typeof r.stderr !== 'string') {
        return done(new HwError('CAIRN_HW_PARSE', `the disk helper's reply lacks code/stdout/stderr: ${text.slice(0, 200)}`));
      }
      done(null, { code: r.code, stdout: r.stdout, stderr: r.stderr });
    };
    sock.on('connect', () => sock.write(`${JSON.stringify(argv)}\n`));
    sock.on('data', (d: Buffer) => {
      const nl = d.indexOf(0x0a);
      chunks.push(nl >= 0 ? d.subarray(0, nl) : d);
      size += nl >= 0 ? nl : d.length;
      if (size > MAX_REPLY_BYTES) return done(new HwError('CAIRN_HW_PARSE', 'the disk helper sent an oversized reply'));
      if (nl >= 0) parseReply(Buffer.concat(chunks).toString('utf8'));
    });
    sock.on('end', () => {
      if (size > 0) parseReply(Buffer.concat(chunks).toString('utf8'));
      else done(new HwError('CAIRN_HW_COMMAND_FAILED', `the disk helper closed the connection without a reply (${argv[0]}); see journalctl -u 'cairn-disk-helper@*'`));
    });
    sock.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') {
        done(new HwError('CAIRN_HW_UNAVAILABLE', `the disk helper socket ${socketPath} is not there (${err.code}); is cairn-disk-helper.socket enabled?`));
      } else if (err.code === 'EACCES') {
        done(new HwError('CAIRN_HW_UNAVAILABLE', `no permission on the disk helper socket ${socketPath}: cairnd must run in group cairn`));
      } else {
        done(new HwError('CAIRN_HW_COMMAND_FAILED', `the disk helper connection failed: ${err.message}`));
      }
    });
  });
}

/**
 * A Privileged that reaches the helper through its socket. The confirmation is checked here
 * first (as helperPrivileged does), so an unconfirmed destructive operation never leaves cairnd;
 * the helper checks it again, with everything else, as root.
 */
export function socketPrivileged(opts: { socketPath?: string } = {}): Privileged {
  const socketPath = opts.socketPath ?? DEFAULT_HELPER_SOCKET;
  return {
    async run(op) {
      checkConfirmation(op);
      return requestHelper(socketPath, helperArgv(op), timeoutFor(op));
    },
  };
}

/**
 * How an unprivileged cairnd reaches the disk helper: the socket when it exists (the appliance:
 * cairn-disk-helper.socket; or $CAIRN_DISK_HELPER_SOCKET), else sudo (a box installed by hand
 * with the sudoers line of docs/hardware.md).
 */
export function unprivilegedHelper(runner: CommandRunner, helperJs: string): Privileged {
  const sock = process.env.CAIRN_DISK_HELPER_SOCKET ?? DEFAULT_HELPER_SOCKET;
  if (fs.existsSync(sock)) return socketPrivileged({ socketPath: sock });
  return helperPrivileged({ runner, command: ['/usr/bin/sudo', '-n', process.execPath, helperJs] });
}
