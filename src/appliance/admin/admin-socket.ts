import fs from 'node:fs';
import net from 'node:net';
import { CairnError, CairnErrorCode, errnoCode, errorMessage } from '../../core/errors';
import { Logger } from '../../core/log';
import { Box } from '../box';
import { DataDir } from '../data-dir';
import { AdminArgs, runAdminOp } from './ops';

/**
 * Local admin socket of a running daemon: a Unix socket (0600, owner only) speaking one JSON
 * line per request ({op, args}) and one per response ({ok, result} | {ok:false, error}).
 * Anyone who can open it can administer the box, which is why it is owner-only and local.
 */
const MAX_LINE = 64 * 1024;

/** What answers on the socket when there is no activated box yet (setup mode, src/appliance/setup-mode.ts). */
export interface AdminEndpoint {
  dir: DataDir;
  dispatch(op: string, args: AdminArgs): Promise<unknown>;
}

export async function listenAdminSocket(target: Box | AdminEndpoint, log: Logger): Promise<net.Server> {
  const box = target;
  const run = target instanceof Box ? (op: string, a: AdminArgs) => runAdminOp(target, op, a) : (op: string, a: AdminArgs) => target.dispatch(op, a);
  const file = box.dir.adminSocket;
  fs.mkdirSync(box.dir.run, { recursive: true, mode: 0o700 });
  if (fs.existsSync(file)) {
    if (await socketAlive(file)) throw new CairnError('CAIRN_STORE_LOCKED', `a cairnd is already serving ${box.dir.root}`);
    fs.rmSync(file, { force: true });
  }
  const server = net.createServer((sock) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => undefined);
    let chain = Promise.resolve();
    sock.on('data', (d: string) => {
      buf += d;
      if (buf.length > MAX_LINE) {
        sock.end(JSON.stringify({ ok: false, error: { code: 'CAIRN_ADMIN_PROTOCOL', message: 'request too long' } }) + '\n');
        return;
      }
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        // Requests on one connection are answered in order.
        chain = chain.then(async () => {
          let reply: unknown;
          try {
            const req = JSON.parse(line) as { op?: unknown; args?: unknown };
            if (typeof req.op !== 'string') throw new CairnError('CAIRN_ADMIN_PROTOCOL', 'request has no op');
            const args = req.args && typeof req.args === 'object' ? (req.args as AdminArgs) : {};
            reply = { ok: true, result: await run(req.op, args) };
            log.info('admin.op', { op: req.op });
          } catch (err) {
            const code = err instanceof CairnError ? err.code : err instanceof SyntaxError ? 'CAIRN_ADMIN_PROTOCOL' : 'CAIRN_API_UNEXPECTED';
            reply = { ok: false, error: { code, message: errorMessage(err) } };
          }
          if (!sock.destroyed) sock.write(JSON.stringify(reply) + '\n');
        });
      }
    });
  });
  const oldMask = process.umask(0o077);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(file, () => resolve());
    });
  } finally {
    process.umask(oldMask);
  }
  fs.chmodSync(file, 0o600);
  return server;
}

export function socketAlive(file: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(file);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Sends one request to a running daemon. Resolves `undefined` when no daemon listens. */
export function callAdminSocket(file: string, op: string, args: AdminArgs, timeoutMs = 30_000): Promise<{ result: unknown } | undefined> {
  return new Promise((resolve, reject) => {
    const s = net.connect(file);
    let buf = '';
    let connected = false;
    const timer = setTimeout(() => {
      s.destroy();
      reject(new CairnError('CAIRN_ADMIN_PROTOCOL', `cairnd did not answer on ${file} within ${timeoutMs / 1000}s`));
    }, timeoutMs);
    s.setEncoding('utf8');
    s.once('connect', () => {
      connected = true;
      s.write(JSON.stringify({ op, args }) + '\n');
    });
    s.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      s.destroy();
      try {
        const r = JSON.parse(buf.slice(0, nl)) as { ok: boolean; result?: unknown; error?: { code: CairnErrorCode; message: string } };
        if (r.ok) resolve({ result: r.result });
        else reject(new CairnError(r.error?.code ?? 'CAIRN_ADMIN_PROTOCOL', r.error?.message ?? 'admin call failed'));
      } catch {
        reject(new CairnError('CAIRN_ADMIN_PROTOCOL', 'cairnd sent an unreadable admin reply'));
      }
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      const code = errnoCode(err);
      if (!connected && (code === 'ENOENT' || code === 'ECONNREFUSED')) resolve(undefined);
      else reject(new CairnError('CAIRN_ADMIN_PROTOCOL', `admin socket ${file}: ${errorMessage(err)}`));
    });
  });
}

/** Runs an admin op through the running daemon if there is one, else directly on the data directory. */
export async function adminCall(dataRoot: string, op: string, args: AdminArgs, timeoutMs?: number): Promise<unknown> {
  const { DataDir } = await import('../data-dir');
  const dir = new DataDir(dataRoot);
  const viaDaemon = await callAdminSocket(dir.adminSocket, op, args, timeoutMs);
  if (viaDaemon) return viaDaemon.result;
  const box = Box.open(dataRoot);
  try {
    return await runAdminOp(box, op, args);
  } finally {
    box.close();
  }
}
