#!/usr/bin/env node
import fs from 'node:fs';
import os from 'node:os';
import { CairnError } from '../core/errors';
import { formatBytes, parseCli, parseDuration, parseHostPort, runMain } from '../core/cli';
import { createLogger } from '../core/log';
import { DataDir } from './data-dir';
import { fingerprint, initIdentity } from './identity';
import { adminCall, listenAdminSocket } from './admin/admin-socket';
import { Box, HW_PROFILE_NAMES, writeBoxConfig } from './box';
import { createHardware, HwProfile, runHwCommand } from '../hw';
import { ApiServer } from './api/server';
import { DEFAULT_PORT } from '../core/api';
import { writeFileDurable } from './store/durable';

const USAGE = `cairnd <command> --data DIR [options]

commands:
  init --data DIR [--name NAME] [--hw PROFILE] [--json]
                                                  activate a box: master key, TLS identity, recovery key (shown once);
                                                  PROFILE is linux (default), raspberry-pi or simulated
  serve --data DIR [--listen HOST:PORT]           serve agents over HTTPS (TLS 1.3; default port ${DEFAULT_PORT})
  token create --data DIR [--ttl 1h] [--json]     a one-time pairing token for an agent
  tokens --data DIR [--json]                      pairing tokens and their state
  agents --data DIR [--json]                      paired agents
  revoke --data DIR AGENT [--json]                revoke an agent's credential
  snapshots --data DIR [--agent A] [--source S] [--json]
  status --data DIR [--json]                      the box's identity, store figures, disks, RAID and LED state
  hw status|simulate ... --data DIR [--json]      hardware layer; \`cairnd hw simulate fail-disk 1\` drives the simulated profile

--data defaults to $CAIRN_DATA. Admin commands work whether or not \`cairnd serve\` runs
(they go through its local admin socket when it does).`;

function dataRoot(v: string | undefined): string {
  const d = v ?? process.env.CAIRN_DATA;
  if (!d) throw new CairnError('CAIRN_USAGE', `--data DIR is required\nusage: ${USAGE}`);
  return d;
}

function print(json: boolean, value: unknown, text: () => string): void {
  process.stdout.write(json ? JSON.stringify(value, null, 2) + '\n' : text() + '\n');
}

async function cmdInit(args: string[]): Promise<void> {
  const { values } = parseCli(args, { data: { type: 'string' }, name: { type: 'string' }, role: { type: 'string' }, hw: { type: 'string' }, json: { type: 'boolean' } }, 'cairnd init --data DIR [--name NAME] [--hw PROFILE] [--json]');
  const hw = (values.hw ?? 'linux') as HwProfile;
  if (!HW_PROFILE_NAMES.includes(hw)) throw new CairnError('CAIRN_USAGE', `--hw takes one of ${HW_PROFILE_NAMES.join(', ')}`);
  const root = dataRoot(values.data);
  const name = values.name ?? os.hostname();
  if (!/^[\p{L}\p{N} ._-]{1,64}$/u.test(name)) throw new CairnError('CAIRN_USAGE', 'box name must be 1-64 letters, digits, spaces, dots, dashes or underscores');
  const role = values.role ?? 'primary';
  if (role !== 'primary' && role !== 'secondary') throw new CairnError('CAIRN_USAGE', '--role is primary or secondary');
  const dir = new DataDir(root);
  const { identity, recoveryKey } = await initIdentity(dir, { name, role });
  writeBoxConfig(dir, { format: 1, hw_profile: hw });
  const box = Box.open(root);
  box.catalog.event('box.activated', { box: identity.boxId, name });
  box.close();
  print(!!values.json, { box: identity.boxId, name, role, fingerprint: fingerprint(identity.spkiSha256), recovery_key: recoveryKey }, () =>
    [
      `Box "${name}" activated (id ${identity.boxId}).`,
      `TLS fingerprint: ${fingerprint(identity.spkiSha256)}`,
      '',
      'RECOVERY KEY — write it down now and keep it somewhere safe. It is shown only this once;',
      'with it and the secondary, a dead box can be rebuilt. Without it, nobody can.',
      '',
      `    ${recoveryKey}`,
      '',
    ].join('\n'),
  );
}

async function cmdServe(args: string[]): Promise<void> {
  const { values } = parseCli(args, { data: { type: 'string' }, listen: { type: 'string' } }, 'cairnd serve --data DIR [--listen HOST:PORT]');
  const root = dataRoot(values.data);
  const { host, port } = parseHostPort(values.listen ?? `0.0.0.0:${DEFAULT_PORT}`, DEFAULT_PORT);
  const log = createLogger({ name: 'cairnd' });
  const box = Box.open(root);
  const cleaned = box.blobs.cleanTmp();
  box.hw = createHardware({ profile: box.config.hw_profile, stateDir: root, watch: true });
  box.hw.on('error', (err) => log.warn('hw.error', { err: err.message }));
  box.hw.on('status', (s) => log.info('hw.status', { state: s.state, summary: s.summary }));
  box.hw.on('shutdown-requested', () => log.warn('hw.shutdown_requested', { note: 'front button long press' }));
  const admin = await listenAdminSocket(box, log);
  const api = new ApiServer({ box, log });
  let addr;
  try {
    addr = await api.listen(host, port);
  } catch (err) {
    admin.close();
    throw new CairnError('CAIRN_USAGE', `cannot listen on ${host}:${port}: ${(err as Error).message}`);
  }
  writeFileDurable(box.dir.serveInfo, JSON.stringify({ pid: process.pid, host: addr.address, port: addr.port }) + '\n', 0o600);
  log.info('serve.started', { box: box.identity.boxId, name: box.identity.name, address: addr.address, port: addr.port, tmp_cleaned: cleaned, fingerprint: fingerprint(box.identity.spkiSha256) });
  await new Promise<void>((resolve) => {
    const stop = (sig: string): void => {
      log.info('serve.stopping', { signal: sig });
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  await api.close();
  admin.close();
  fs.rmSync(box.dir.serveInfo, { force: true });
  box.close();
  log.info('serve.stopped');
}

async function cmdAdmin(op: string, args: string[], extra: Record<string, { type: 'string' | 'boolean' }>, usage: string, toArgs: (v: Record<string, unknown>, pos: string[]) => Record<string, unknown>, text: (r: unknown) => string): Promise<void> {
  const { values, positionals } = parseCli(args, { data: { type: 'string' }, json: { type: 'boolean' }, ...extra }, usage);
  const v = values as Record<string, unknown>;
  const result = await adminCall(dataRoot(v.data as string | undefined), op, toArgs(v, positionals));
  print(!!v.json, result, () => text(result));
}

function table(rows: Record<string, unknown>[], cols: string[]): string {
  if (rows.length === 0) return '(none)';
  const cells = rows.map((r) => cols.map((c) => String(r[c] ?? '-')));
  const widths = cols.map((c, i) => Math.max(c.length, ...cells.map((r) => r[i].length)));
  const line = (vals: string[]): string => vals.map((v, i) => v.padEnd(widths[i])).join('  ').trimEnd();
  return [line(cols.map((c) => c.toUpperCase())), ...cells.map(line)].join('\n');
}

async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case 'init':
      return cmdInit(rest);
    case 'serve':
      return cmdServe(rest);
    case 'token': {
      const [sub, ...r] = rest;
      if (sub !== 'create') throw new CairnError('CAIRN_USAGE', `usage: cairnd token create --data DIR [--ttl 1h] [--json]`);
      return cmdAdmin('token.create', r, { ttl: { type: 'string' } }, 'cairnd token create --data DIR [--ttl 1h] [--json]',
        (v, pos) => {
          if (pos.length) throw new CairnError('CAIRN_USAGE', `unexpected argument ${pos[0]}`);
          return { ttl_ms: v.ttl ? parseDuration(v.ttl as string) : undefined };
        },
        (r) => {
          const t = r as { token: string; expires: string; fingerprint: string };
          return `Pairing token (single use, expires ${t.expires}):\n\n    ${t.token}\n\nOn the PC: cairn pair HOST:PORT --token ${t.token}\nBox fingerprint: ${t.fingerprint}`;
        });
    }
    case 'tokens':
      return cmdAdmin('tokens.list', rest, {}, 'cairnd tokens --data DIR [--json]', () => ({}), (r) => table(r as Record<string, unknown>[], ['token_id', 'state', 'expires', 'used_by']));
    case 'agents':
      return cmdAdmin('agents.list', rest, {}, 'cairnd agents --data DIR [--json]', () => ({}),
        (r) => table(r as Record<string, unknown>[], ['id', 'name', 'host', 'snapshots', 'last_backup', 'revoked']));
    case 'revoke':
      return cmdAdmin('agents.revoke', rest, {}, 'cairnd revoke --data DIR AGENT [--json]',
        (_v, pos) => {
          if (pos.length !== 1) throw new CairnError('CAIRN_USAGE', 'usage: cairnd revoke --data DIR AGENT');
          return { agent: pos[0] };
        },
        (r) => `Agent ${(r as { id: string; name: string }).name} (${(r as { id: string }).id}) revoked; it can no longer back up or restore.`);
    case 'snapshots':
      return cmdAdmin('snapshots.list', rest, { agent: { type: 'string' }, source: { type: 'string' } }, 'cairnd snapshots --data DIR [--agent A] [--source S] [--json]',
        (v) => ({ agent: v.agent, source: v.source }),
        (r) => table((r as { id: string; agent: string; source: string; created: string; chunks: number }[]).map((s) => ({ ...s })), ['id', 'agent', 'source', 'created', 'chunks']));
    case 'status':
      return cmdAdmin('status', rest, {}, 'cairnd status --data DIR [--json]', () => ({}), (r) => {
        const s = r as { name: string; box: string; fingerprint: string; agents: number; snapshots: number; chunks: number; stored_bytes: number; hardware: { state: string; summary: string } };
        return `Box ${s.name} (${s.box}): ${s.hardware.state.toUpperCase()} — ${s.hardware.summary}\nfingerprint ${s.fingerprint}\nagents ${s.agents}, snapshots ${s.snapshots}, chunks ${s.chunks} (${formatBytes(s.stored_bytes)} stored)`;
      });
    case 'hw': {
      const { values, positionals } = parseCli(rest, { data: { type: 'string' }, json: { type: 'boolean' }, profile: { type: 'string' } }, 'cairnd hw status|simulate ... --data DIR [--json]');
      const root = dataRoot(values.data);
      const argv = values.profile ? [...positionals, '--profile', values.profile] : positionals;
      const { readBoxConfig } = await import('./box');
      const text = await runHwCommand(argv, { stateDir: root, json: !!values.json, profile: readBoxConfig(new DataDir(root)).hw_profile });
      process.stdout.write(text.endsWith('\n') ? text : text + '\n');
      return;
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE + '\n');
      return;
    default:
      throw new CairnError('CAIRN_USAGE', `unknown command "${cmd}"\nusage: ${USAGE}`);
  }
}

runMain(main);
