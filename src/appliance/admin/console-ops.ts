import fs from 'node:fs';
import { CairnError, errorMessage } from '../../core/errors';
import { createHardware, Hardware, BoxHwStatus } from '../../hw';
import { Box, readBoxConfig } from '../box';
import { parseSettingsPatch, publicSettings, readRawConfig, settingsOf, updateConfig } from '../box-settings';
import { writeEscrow } from '../escrow';
import { fingerprint } from '../identity';
import { AdminArgs, AdminOp, runAdminOp } from './ops';
import { secondaryStatus } from './secondary-ops';
import { readLink } from '../secondary/link';

/**
 * Admin operations of an activated box that exist for the console: the dashboard in one call,
 * settings (secondary, default retention), and the two steps of replacing a failed disk.
 * Registered in ops.ts next to the others, so `cairnd` commands can use them too.
 */
const STALE_MS = 48 * 3600_000;
const EVENT_ROWS = 12;

export interface OverviewAgent {
  id: string;
  name: string;
  host: string;
  state: 'ok' | 'backing up' | 'stale' | 'never backed up' | 'revoked';
  last_backup: string | null;
  last_size: number;
  snapshots: number;
  sources: string[];
}

export interface Overview {
  box: { id: string; name: string; role: string; fingerprint: string; profile: string };
  serve: { host?: string; port?: number } | null;
  hardware: BoxHwStatus;
  storage: { used_bytes: number; chunks: number; fs_total_bytes: number | null; fs_free_bytes: number | null };
  agents: OverviewAgent[];
  jobs: { running: { id: string; kind: string; since: string }[]; list: unknown[] | null; note: string | null };
  recent: { at: string; kind: string; text: string }[];
  open_tokens: number;
  settings: Omit<ReturnType<typeof publicSettings>, 'secondary'> & { secondary: { address: string; name?: string; linked: boolean } | null };
  /** the same as `cairnd status` -> replication: the link and its lag (primary) or the primaries served (secondary) */
  replication: OverviewReplication | null;
  alerts: string[];
}

export type OverviewReplication =
  | {
      role: 'primary';
      secondary: { box: string; name: string; address: string } | null;
      state: string;
      last_attempt: string | null;
      last_success: string | null;
      last_error: string | null;
      pending_snapshots: number;
      pending_bytes: number;
      pending_pull?: number;
      escrow_sent_at: string | null;
    }
  | { role: 'secondary'; primaries: { box: string; name: string; agents: number; snapshots: number; last_snapshot: string | null; stored_bytes: number; escrow_sealed_at: string | null }[] };

/** What the console shows as "the secondary": the link (secondary.json); else a legacy config's address. */
function secondarySetting(box: Box): { address: string; name?: string; linked: boolean } | null {
  let link;
  try {
    link = readLink(box.dir);
  } catch {
    link = undefined;
  }
  if (link) return { address: `${link.host}:${link.port}`, name: link.name, linked: true };
  const legacy = settingsOf(readBoxConfig(box.dir)).secondary;
  return legacy ? { address: legacy.address, linked: false } : null;
}

async function withHw<T>(box: Box, fn: (hw: Hardware) => Promise<T>): Promise<T> {
  const own = box.hw === undefined;
  const hw = box.hw ?? createHardware({ profile: box.config.hw_profile, stateDir: box.dir.root });
  try {
    return await fn(hw);
  } finally {
    if (own) hw.stop();
  }
}

function str(args: AdminArgs, key: string): string {
  const v = args[key];
  if (typeof v !== 'string' || v.length === 0 || v.length > 4096) throw new CairnError('CAIRN_USAGE', `argument ${key} is required`);
  return v;
}

function eventText(kind: string, detail: Record<string, unknown>): string {
  const d = Object.entries(detail)
    .filter(([k]) => k !== 'box' && k !== 'expires_at')
    .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
    .join(' ');
  return d ? `${kind} ${d}` : kind;
}

/** Another op this daemon may or may not have yet (jobs arrive with another issue). */
async function optionalOp(box: Box, op: string, args: AdminArgs = {}): Promise<{ value: unknown } | null> {
  try {
    return { value: await runAdminOp(box, op, args) };
  } catch (err) {
    if (CairnError.is(err, 'CAIRN_ADMIN_PROTOCOL') && /unknown admin operation/.test(err.message)) return null;
    return { value: { error: errorMessage(err) } };
  }
}

function statfs(dir: string): { total: number; free: number } | null {
  try {
    const s = fs.statfsSync(dir);
    return { total: s.blocks * s.bsize, free: s.bavail * s.bsize };
  } catch {
    return null;
  }
}

/**
 * The default retention lives in config.json (and so in the escrow blob); the retention job
 * reads its own default from the catalog ('retention.set' without agent or source). Both are
 * set together; a cairnd without that op keeps the config value only.
 */
export async function syncRetentionDefault(box: Box, keep: number): Promise<void> {
  await optionalOp(box, 'retention.set', { keep });
}

export const consoleOps: Record<string, AdminOp> = {
  async 'console.overview'(box): Promise<Overview> {
    const hardware = await withHw(box, (hw) => hw.status());
    const chunks = box.catalog.chunkStats();
    const snaps = box.catalog.listSnapshots();
    const now = Date.now();
    const running = hardware.jobs;
    const agents: OverviewAgent[] = box.catalog.listAgents().map((a) => {
      const own = snaps.filter((s) => s.agent === a.id);
      const last = own[own.length - 1];
      const latestPerSource = new Map<string, number>();
      for (const s of own) latestPerSource.set(s.source, s.stats.bytes_scanned);
      let state: OverviewAgent['state'] = 'ok';
      if (a.revoked_at !== null) state = 'revoked';
      else if (running.some((j) => j.id === `backup:${a.id}`)) state = 'backing up';
      else if (!last) state = 'never backed up';
      else if (now - Date.parse(last.created) > STALE_MS) state = 'stale';
      return {
        id: a.id,
        name: a.name,
        host: a.host,
        state,
        last_backup: last?.created ?? null,
        last_size: [...latestPerSource.values()].reduce((x, y) => x + y, 0),
        snapshots: own.length,
        sources: [...latestPerSource.keys()],
      };
    });
    const names = new Map(agents.map((a) => [a.id, a.name]));
    const events = (box.catalog.db.prepare('SELECT at, kind, detail FROM events ORDER BY id DESC LIMIT ?').all(EVENT_ROWS) as { at: number; kind: string; detail: string }[]).map((e) => {
      let detail: Record<string, unknown> = {};
      try {
        detail = JSON.parse(e.detail) as Record<string, unknown>;
      } catch {
        /* shown as the bare kind */
      }
      return { at: new Date(e.at).toISOString(), kind: e.kind, text: eventText(e.kind, detail) };
    });
    const backups = snaps.slice(-EVENT_ROWS).map((s) => ({ at: s.created, kind: 'backup', text: `backup ${names.get(s.agent) ?? s.agent}/${s.source} ${s.stats.files} files` }));
    const recent = [...events, ...backups].sort((x, y) => y.at.localeCompare(x.at)).slice(0, EVENT_ROWS);
    const jobsOp = await optionalOp(box, 'jobs.list', { limit: EVENT_ROWS });
    const fsInfo = statfs(box.dir.root);
    const settings = settingsOf(readBoxConfig(box.dir));
    const alerts = [...hardware.reasons];
    for (const a of agents) if (a.state === 'stale') alerts.push(`agent ${a.name}: no backup for more than ${STALE_MS / 3600_000} hours`);
    if (fsInfo && fsInfo.total > 0 && fsInfo.free / fsInfo.total < 0.1) alerts.push(`storage almost full: ${Math.round((100 * fsInfo.free) / fsInfo.total)}% free`);
    const secondary = box.identity.role === 'primary' ? secondarySetting(box) : null;
    if (box.identity.role === 'primary' && !secondary?.linked) alerts.push('no secondary linked: backups exist on this box only (C links one)');
    let replication: OverviewReplication | null = null;
    try {
      replication = secondaryStatus(box) as OverviewReplication;
    } catch (err) {
      alerts.push(`replication status unreadable: ${errorMessage(err)}`);
    }
    let serve: Overview['serve'] = null;
    try {
      serve = JSON.parse(fs.readFileSync(box.dir.serveInfo, 'utf8')) as Overview['serve'];
    } catch {
      /* not serving */
    }
    return {
      box: { id: box.identity.boxId, name: box.identity.name, role: box.identity.role, fingerprint: fingerprint(box.identity.spkiSha256), profile: box.config.hw_profile },
      serve,
      hardware,
      storage: { used_bytes: chunks.bytes, chunks: chunks.count, fs_total_bytes: fsInfo?.total ?? null, fs_free_bytes: fsInfo?.free ?? null },
      agents,
      jobs: {
        running,
        list: jobsOp && Array.isArray(jobsOp.value) ? (jobsOp.value as unknown[]) : null,
        note: jobsOp ? (Array.isArray(jobsOp.value) ? null : `jobs: ${JSON.stringify(jobsOp.value)}`) : 'this cairnd has no jobs list yet: showing recent events',
      },
      recent,
      open_tokens: box.catalog.listTokens().filter((t) => t.used_at === null && t.failed < 5 && t.expires_at > now).length,
      settings: { ...publicSettings(settings), secondary },
      replication,
      alerts,
    };
  },

  'settings.get'(box) {
    return publicSettings(settingsOf(readBoxConfig(box.dir)));
  },

  /** Changes the default retention (or forgets a legacy secondary address); the escrow blob is resealed with the new config. */
  async 'settings.set'(box, args) {
    const patch = parseSettingsPatch(args);
    if (Object.keys(patch).length === 0) throw new CairnError('CAIRN_USAGE', 'settings.set takes secondary and/or retention_default');
    const config = updateConfig(box.dir, patch);
    writeEscrow(box.dir, box.identity, config);
    if (patch.retention_default !== undefined) await syncRetentionDefault(box, patch.retention_default);
    box.catalog.event('settings.changed', { keys: Object.keys(patch) });
    return publicSettings(settingsOf(readRawConfig(box.dir)));
  },

  /** Replacing a failed disk, step 1: mark it failed (if md has not) and take it out of the array. */
  async 'disk.retire'(box, args) {
    const device = str(args, 'device');
    if (args.confirm !== device) throw new CairnError('CAIRN_HW_CONFIRM_REQUIRED', `taking ${device} out of the array needs confirmation: confirm "${device}"`, { confirm: device });
    return withHw(box, async (hw) => {
      const raid = await hw.raid.status();
      const array = raid.arrays.find((a) => a.members.some((m) => m.device === device));
      if (!array) throw new CairnError('CAIRN_HW_INVALID_ARGUMENT', `${device} is not a member of any array`);
      const member = array.members.find((m) => m.device === device)!;
      if (member.state === 'active' || member.state === 'rebuilding') await hw.raid.fail({ md: array.device, device, confirm: device });
      await hw.raid.remove({ md: array.device, device, confirm: device });
      box.catalog.event('disk.retired', { md: array.device, device });
      return { md: array.device, device, removed: true };
    });
  },

  /** Replacing a failed disk, step 2: add the new disk; md rebuilds onto it. */
  async 'disk.add'(box, args) {
    const device = str(args, 'device');
    if (args.confirm !== device) throw new CairnError('CAIRN_HW_CONFIRM_REQUIRED', `adding ${device} erases it; confirm "${device}"`, { confirm: device });
    return withHw(box, async (hw) => {
      const raid = await hw.raid.status();
      const array = raid.arrays[0];
      if (!array) throw new CairnError('CAIRN_HW_INVALID_ARGUMENT', 'there is no data array to add a disk to');
      await hw.raid.add({ md: array.device, device, confirm: device });
      box.catalog.event('disk.added', { md: array.device, device });
      return { md: array.device, device, added: true };
    });
  },
};
