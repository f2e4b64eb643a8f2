import fs from 'node:fs';
import { CairnError } from '../core/errors';
import { Logger } from '../core/log';
import { createHardware, HwProfile } from '../hw';
import { AdminArgs } from './admin/ops';
import { callAdminSocket, listenAdminSocket } from './admin/admin-socket';
import { Activation, activateBox } from './activation';
import { Box, readBoxConfig } from './box';
import { DataDir } from './data-dir';
import { HostContext, hostOps } from './host-ops';
import { writeFileDurable } from './store/durable';

/**
 * Setup mode: `cairnd serve` on a data directory that has no keys.json yet answers on the
 * admin socket only (no agent API: no TLS identity exists yet) with the host operations of
 * host-ops.ts, until the console wizard (or `cairnd init`) activates the box through
 * 'box.activate'. Then runSetupMode resolves with the opened box and cmdServe carries on as
 * for any activated box: agents are served without a restart.
 */
/**
 * Runs setup mode until the box is activated (resolves with the opened box) or the daemon is
 * told to stop (resolves undefined). run/serve.json says {"mode":"setup"} meanwhile.
 */
export async function runSetupMode(root: string, log: Logger): Promise<Box | undefined> {
  const dir = new DataDir(root);
  fs.mkdirSync(root, { recursive: true, mode: 0o700 });
  const profile = readBoxConfig(dir).hw_profile;
  const hw = createHardware({ profile, stateDir: root });
  hw.on('error', (err) => log.warn('hw.error', { err: err.message }));
  let finish: (b: Box | undefined) => void = () => undefined;
  const done = new Promise<Box | undefined>((resolve) => (finish = resolve));
  const ctx: HostContext = {
    dir,
    profile,
    box: undefined,
    hw,
    mode: 'setup',
    log,
    onActivated: (box) => {
      log.info('setup.activated', { box: box.identity.boxId, name: box.identity.name });
      // After the reply is written: the admin socket is handed over to the serving daemon.
      setImmediate(() => finish(box));
    },
  };
  const dispatch = async (op: string, args: AdminArgs): Promise<unknown> => {
    const fn = Object.prototype.hasOwnProperty.call(hostOps, op) ? hostOps[op] : undefined;
    if (!fn) throw new CairnError('CAIRN_SETUP_MODE', `"${op}" needs an activated box; this one is in setup mode: finish the activation wizard on the console (or run \`cairnd init --data ${root}\`)`);
    const r = await fn(ctx, args);
    if (op === 'array.create') {
      const a = r as { md: string; level: string; devices: string[] };
      ctx.arrayEvent = { md: a.md, level: a.level, disks: a.devices.length };
    }
    return r;
  };
  const server = await listenAdminSocket({ dir, dispatch }, log);
  writeFileDurable(dir.serveInfo, JSON.stringify({ pid: process.pid, mode: 'setup', host: null, port: null }) + '\n', 0o600);
  log.info('setup.started', { data: root, profile, note: 'not activated: admin socket only until the console wizard or `cairnd init` activates the box' });
  const onSignal = (sig: string): void => {
    log.info('serve.stopping', { signal: sig, mode: 'setup' });
    finish(undefined);
  };
  const term = (): void => onSignal('SIGTERM');
  const int = (): void => onSignal('SIGINT');
  process.once('SIGTERM', term);
  process.once('SIGINT', int);
  const box = await done;
  process.off('SIGTERM', term);
  process.off('SIGINT', int);
  hw.stop();
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, 1000);
    server.close(() => {
      clearTimeout(t);
      resolve();
    });
  });
  fs.rmSync(dir.serveInfo, { force: true });
  if (!box) log.info('serve.stopped', { mode: 'setup' });
  return box;
}

/**
 * `cairnd init`: activates through a daemon in setup mode when one answers on the admin socket
 * (so it starts serving agents at once), else directly on the data directory. Same code either
 * way: activateBox (activation.ts).
 */
export async function activateFromCli(root: string, o: { name: string; role: 'primary' | 'secondary'; hw: HwProfile | undefined }): Promise<Activation['result']> {
  const dir = new DataDir(root);
  const viaDaemon = await callAdminSocket(dir.adminSocket, 'box.activate', { name: o.name, role: o.role, ...(o.hw ? { hw: o.hw } : {}) }, 120_000);
  if (viaDaemon) return viaDaemon.result as Activation['result'];
  const a = await activateBox(dir, { name: o.name, role: o.role, hw: o.hw ?? 'linux' });
  a.box.close();
  return a.result;
}
