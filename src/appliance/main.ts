#!/usr/bin/env -S node --max-semi-space-size=1 --initial-old-space-size=48
// The flags above cap V8's young generation (see src/agent/main.ts) and start the old
// generation at 48 MB (see README, Performance); systemd/cairnd.service passes the same
// flags. Test and bench launchers read them from this line.
// Many chunk writes wait on fsync at once; more libuv threads let their journal commits group.
// Must be set before the first asynchronous fs call.
process.env.UV_THREADPOOL_SIZE ??= '16';
import fs from 'node:fs';
import os from 'node:os';
import { CairnError } from '../core/errors';
import { formatBytes, parseCli, parseDuration, parseHostPort, runMain } from '../core/cli';
import { createLogger } from '../core/log';
import { DataDir } from './data-dir';
import { fingerprint, isInitialized } from './identity';
import { activateFromCli, runSetupMode } from './setup-mode';
import { adminCall, listenAdminSocket } from './admin/admin-socket';
import { Box, HW_PROFILE_NAMES } from './box';
import { createHardware, HwProfile, runHwCommand } from '../hw';
import { ApiServer } from './api/server';
import { DEFAULT_PORT } from '../core/api';
import { DEFAULT_SCHEDULE, Schedule } from './jobs/runner';
import { writeFileDurable } from './store/durable';
import { startAdvertising, stopAdvertising } from './discovery/serve-mdns';
import { Replicator } from './secondary/replicator';
import { cmdRecover } from './secondary/recover';

const USAGE = `cairnd <command> --data DIR [options]

commands:
  init --data DIR [--name NAME] [--hw PROFILE] [--json]
                                                  activate a box: master key, TLS identity, recovery key (shown once);
                                                  PROFILE is linux (default), raspberry-pi or simulated
  serve --data DIR [--listen HOST:PORT] [--no-mdns]
                                                  serve agents over HTTPS (TLS 1.3; default port ${DEFAULT_PORT}); announces _cairn._tcp over mDNS
  token create --data DIR [--ttl 1h] [--json]     a one-time pairing token for an agent
  tokens --data DIR [--json]                      pairing tokens and their state
  agents --data DIR [--json]                      paired agents
  revoke --data DIR AGENT [--json]                revoke an agent's credential
  snapshots --data DIR [--agent A] [--source S] [--json]
  sources --data DIR [--agent A] [--source S]     sources with their retention and snapshot counts
  retention --data DIR [--agent A] [--source S] --keep N
                                                  versions to keep (default 30); without filters also the default
  gc --data DIR [--grace 6h] [--json]             free chunks no snapshot references
  verify --data DIR [--subset PERCENT] [--json]   re-read chunks, check tags and ids, quarantine bad ones
  jobs --data DIR [--kind K] [--json]             history of backups, retention, GC and verify
  status --data DIR [--json]                      the box's identity, store figures, disks, RAID and LED state
  hw status|simulate ... --data DIR [--json]      hardware layer; \`cairnd hw simulate fail-disk 1\` drives the simulated profile

--data defaults to $CAIRN_DATA. Admin commands work whether or not \`cairnd serve\` runs
(they go through its local admin socket when it does).`;

/** "10M", "512K", "1G" or plain bytes per second. */
function parseByteRate(v: string): number {
  const m = /^(\d+(?:\.\d+)?)([KMG]?)$/i.exec(v.trim());
  if (!m) throw new CairnError('CAIRN_USAGE', `--bwlimit takes bytes per second like 512K, 10M or 1G, not "${v}"`);
  const mult = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2].toUpperCase() as '' | 'K' | 'M' | 'G'];
  return Math.round(Number(m[1]) * mult);
}

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
  // Through a daemon in setup mode if one runs (it then serves at once), else here; escrow blob included.
  const r = await activateFromCli(root, { name, role, hw: values.hw === undefined ? undefined : hw });
  const recoveryKey = r.recovery_key;
  print(!!values.json, r, () =>
    [
      `Box "${name}" activated (id ${r.box}).`,
      `TLS fingerprint: ${r.fingerprint}`,
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
  const { values } = parseCli(args, {
    data: { type: 'string' }, listen: { type: 'string' }, 'no-mdns': { type: 'boolean' },
    'gc-every': { type: 'string' }, 'verify-every': { type: 'string' }, 'verify-subset': { type: 'string' }, 'gc-grace': { type: 'string' },
    'replicate-every': { type: 'string' },
  }, 'cairnd serve --data DIR [--listen HOST:PORT] [--no-mdns] [--gc-every 24h] [--verify-every 24h] [--verify-subset 10] [--gc-grace 6h] [--replicate-every 1m]');
  const root = dataRoot(values.data);
  const subset = values['verify-subset'] === undefined ? DEFAULT_SCHEDULE.verifySubsetPercent : Number(values['verify-subset']);
  if (!(subset > 0 && subset <= 100)) throw new CairnError('CAIRN_USAGE', '--verify-subset is a percentage (0-100]');
  const schedule: Schedule = {
    gcEveryMs: values['gc-every'] ? parseDuration(values['gc-every']) : DEFAULT_SCHEDULE.gcEveryMs,
    verifyEveryMs: values['verify-every'] ? parseDuration(values['verify-every']) : DEFAULT_SCHEDULE.verifyEveryMs,
    verifySubsetPercent: subset,
    gcGraceMs: values['gc-grace'] ? (values['gc-grace'] === '0' ? 0 : parseDuration(values['gc-grace'])) : DEFAULT_SCHEDULE.gcGraceMs,
    tickMs: Math.min(DEFAULT_SCHEDULE.tickMs, values['gc-every'] || values['verify-every'] ? 1000 : DEFAULT_SCHEDULE.tickMs),
  };
  const { host, port } = parseHostPort(values.listen ?? `0.0.0.0:${DEFAULT_PORT}`, DEFAULT_PORT);
  const log = createLogger({ name: 'cairnd' });
  // Not activated yet: setup mode (admin socket only) until the console wizard or `cairnd init` activates it.
  const box = isInitialized(new DataDir(root)) ? Box.open(root) : await runSetupMode(root, log);
  if (!box) return;
  const cleaned = box.blobs.cleanTmp();
  box.log = log;
  const interrupted = box.catalog.markInterruptedJobs();
  if (interrupted) log.warn('jobs.interrupted', { count: interrupted, note: 'jobs that were running when cairnd stopped; the next run finishes their work' });
  box.jobs.schedule(schedule);
  box.hw = createHardware({ profile: box.config.hw_profile, stateDir: root, watch: true });
  const stopJobs = (): void => box.jobs.stop();
  process.once('exit', stopJobs);
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
  const mdns = await startAdvertising(box.identity, { host, port: addr.port, log, disabled: values['no-mdns'] });
  // A primary replicates to its secondary (if linked now or later) in the background.
  const replicator = box.identity.role === 'primary' ? new Replicator(box, { everyMs: values['replicate-every'] ? parseDuration(values['replicate-every']) : 60_000, log }) : undefined;
  box.replicator = replicator;
  replicator?.start();
  await new Promise<void>((resolve) => {
    const stop = (sig: string): void => {
      log.info('serve.stopping', { signal: sig });
      resolve();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
  await stopAdvertising(mdns, log);
  await replicator?.stop();
  await api.close();
  admin.close();
  fs.rmSync(box.dir.serveInfo, { force: true });
  box.close();
  log.info('serve.stopped');
}

async function cmdAdmin(op: string, args: string[], extra: Record<string, { type: 'string' | 'boolean' }>, usage: string, toArgs: (v: Record<string, unknown>, pos: string[]) => Record<string, unknown>, text: (r: unknown) => string, timeoutMs?: number): Promise<void> {
  const { values, positionals } = parseCli(args, { data: { type: 'string' }, json: { type: 'boolean' }, ...extra }, usage);
  const v = values as Record<string, unknown>;
  const result = await adminCall(dataRoot(v.data as string | undefined), op, toArgs(v, positionals), timeoutMs);
  print(!!v.json, result, () => text(result));
}

/** retention, sources, gc, verify, jobs: the maintenance commands. */
async function cmdJobs(cmd: string, rest: string[]): Promise<void> {
  const HOUR = 3600_000;
  switch (cmd) {
    case 'sources':
      return cmdAdmin('sources.list', rest, { agent: { type: 'string' }, source: { type: 'string' } }, 'cairnd sources --data DIR [--agent A] [--source S] [--json]',
        (v) => ({ agent: v.agent, source: v.source }), (r) => table(r as Record<string, unknown>[], ['agent_name', 'source', 'keep', 'snapshots', 'last_snapshot']));
    case 'retention':
      return cmdAdmin('retention.set', rest, { agent: { type: 'string' }, source: { type: 'string' }, keep: { type: 'string' } }, 'cairnd retention --data DIR [--agent A] [--source S] --keep N [--json]',
        (v, pos) => {
          if (pos.length || v.keep === undefined) throw new CairnError('CAIRN_USAGE', 'usage: cairnd retention --data DIR [--agent A] [--source S] --keep N');
          return { agent: v.agent, source: v.source, keep: v.keep };
        },
        (r) => {
          const x = r as { keep: number; sources: unknown[]; default: boolean; applies: string };
          return `keep ${x.keep} versions for ${x.sources.length} source(s)${x.default ? ' and as the default for new sources' : ''}; applies ${x.applies}`;
        });
    case 'gc':
      return cmdAdmin('gc.run', rest, { grace: { type: 'string' } }, 'cairnd gc --data DIR [--grace 6h] [--json]',
        (v) => ({ grace_ms: v.grace === undefined ? undefined : v.grace === '0' ? 0 : parseDuration(v.grace as string) }),
        (r) => {
          const g = r as { chunks_freed: number; bytes_freed: number; chunks_before: number; snapshots: number; duration_s: number; peak_rss_mb: number };
          return `GC: ${g.chunks_freed} of ${g.chunks_before} chunks freed (${formatBytes(g.bytes_freed)}), ${g.snapshots} snapshots kept, ${g.duration_s.toFixed(2)} s, peak ${g.peak_rss_mb} MB`;
        }, 12 * HOUR);
    case 'verify':
      return cmdAdmin('verify.run', rest, { subset: { type: 'string' } }, 'cairnd verify --data DIR [--subset PERCENT] [--json]',
        (v) => ({ subset: v.subset === undefined ? undefined : Number(v.subset) }),
        (r) => {
          const x = r as { chunks_checked: number; bytes_checked: number; mb_per_s: number; bad: { id: string; reason: string; snapshots: { id: string; source: string; files: string[]; manifest_damaged: boolean }[] }[] };
          const lines = [`verify: ${x.chunks_checked} chunks, ${formatBytes(x.bytes_checked)} checked at ${x.mb_per_s} MB/s, ${x.bad.length} bad`];
          for (const b of x.bad) {
            lines.push(`  BAD chunk ${b.id.slice(0, 16)}…: ${b.reason} (moved to quarantine)`);
            for (const s of b.snapshots) lines.push(`    snapshot ${s.id} (${s.source}): ${s.manifest_damaged ? 'manifest damaged' : s.files.join(', ')}`);
          }
          return lines.join('\n');
        }, 12 * HOUR);
    case 'jobs':
      return cmdAdmin('jobs.list', rest, { kind: { type: 'string' }, limit: { type: 'string' } }, 'cairnd jobs --data DIR [--kind K] [--limit N] [--json]',
        (v) => ({ kind: v.kind, limit: v.limit }), (r) => table(r as Record<string, unknown>[], ['id', 'kind', 'outcome', 'started', 'duration_s', 'error']));
  }
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
    case 'sources':
    case 'retention':
    case 'gc':
    case 'verify':
    case 'jobs':
      return cmdJobs(cmd, rest);
    case 'status':
      return cmdAdmin('status', rest, {}, 'cairnd status --data DIR [--json]', () => ({}), (r) => {
        const s = r as { name: string; box: string; fingerprint: string; chunk_ids: string; agents: number; snapshots: number; chunks: number; stored_bytes: number; hardware: { state: string; summary: string } };
        return `Box ${s.name} (${s.box}): ${s.hardware.state.toUpperCase()} — ${s.hardware.summary}\nfingerprint ${s.fingerprint}, chunk ids ${s.chunk_ids}\nagents ${s.agents}, snapshots ${s.snapshots}, chunks ${s.chunks} (${formatBytes(s.stored_bytes)} stored)`;
      });
    case 'secondary': {
      const [sub, ...r] = rest;
      if (sub === 'add') {
        return cmdAdmin('secondary.add', r, { token: { type: 'string' }, bwlimit: { type: 'string' } }, 'cairnd secondary add --data DIR HOST:PORT --token T [--bwlimit 10M]',
          (v, pos) => {
            if (pos.length !== 1 || !v.token) throw new CairnError('CAIRN_USAGE', 'usage: cairnd secondary add --data DIR HOST:PORT --token T [--bwlimit 10M]');
            const { host, port } = parseHostPort(pos[0], DEFAULT_PORT);
            return { host, port, token: v.token, bwlimit_bps: v.bwlimit ? parseByteRate(v.bwlimit as string) : undefined };
          },
          (x) => {
            const l = x as { name: string; secondary: string; address: string; fingerprint: string };
            return `Linked to secondary "${l.name}" (${l.secondary}) at ${l.address}\nSecondary key pinned: ${l.fingerprint}\nReplication, escrow and agents' fail-over start now.`;
          }, 120_000);
      }
      if (sub === 'status') {
        return cmdAdmin('secondary.status', r, {}, 'cairnd secondary status --data DIR [--json]', () => ({}), (x) => JSON.stringify(x, null, 2));
      }
      if (sub === 'sync') {
        return cmdAdmin('secondary.sync', r, {}, 'cairnd secondary sync --data DIR [--json]', () => ({}), (x) => JSON.stringify(x, null, 2), 3_600_000);
      }
      throw new CairnError('CAIRN_USAGE', 'usage: cairnd secondary add|status|sync --data DIR ...');
    }
    case 'recover':
      return cmdRecover(rest);
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
