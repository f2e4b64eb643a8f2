import fs from 'node:fs';
import { CairnError } from '../core/errors';
import { DataDir } from './data-dir';
import { BoxConfig } from './box';
import { writeFileDurable } from './store/durable';

/**
 * The settings the activation wizard and the console change in config.json: the secondary
 * (a second box's address and pairing token, or null for "later") and the default number of
 * versions kept per source. Values arrive as untrusted JSON (admin ops) and are checked here.
 * Replication itself is another issue; this only records where it will go.
 */
export interface BoxSettings {
  secondary: { address: string; token: string } | null;
  retention_default: number;
}

export const DEFAULT_RETENTION = 30;
export const MAX_RETENTION = 1000;

export function parseSecondary(v: unknown): BoxSettings['secondary'] {
  if (v === null || v === undefined || v === 'later') return null;
  const o = v as { address?: unknown; token?: unknown };
  if (typeof o !== 'object' || typeof o.address !== 'string' || typeof o.token !== 'string') {
    throw new CairnError('CAIRN_USAGE', 'secondary takes {address, token} or null ("later")');
  }
  const address = o.address.trim();
  const token = o.token.trim();
  if (!/^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]{1,253})(?::\d{1,5})?$/.test(address)) {
    throw new CairnError('CAIRN_USAGE', `"${address}" is not HOST[:PORT] for the secondary box`);
  }
  if (!/^C1-[0-9A-Z-]{20,120}$/i.test(token)) throw new CairnError('CAIRN_USAGE', 'the secondary token must be a pairing token from the second box (C1-…)');
  return { address, token: token.toUpperCase() };
}

export function parseRetention(v: unknown): number {
  const n = typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_RETENTION) {
    throw new CairnError('CAIRN_USAGE', `retention is a number of versions between 1 and ${MAX_RETENTION}`);
  }
  return n;
}

/** config.json as stored (without the CAIRN_HW_PROFILE override readBoxConfig applies). */
export function readRawConfig(dir: DataDir): Record<string, unknown> {
  try {
    const c = JSON.parse(fs.readFileSync(dir.config, 'utf8')) as unknown;
    return c && typeof c === 'object' ? (c as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

export function settingsOf(c: Partial<BoxConfig>): BoxSettings {
  return { secondary: c.secondary ?? null, retention_default: c.retention_default ?? DEFAULT_RETENTION };
}

/** Merges a patch into config.json, keeping every other key. Returns the new raw config. */
export function updateConfig(dir: DataDir, patch: Record<string, unknown>): Record<string, unknown> {
  const next = { format: 1, ...readRawConfig(dir), ...patch };
  writeFileDurable(dir.config, JSON.stringify(next, null, 2) + '\n', 0o600);
  return next;
}

/** Validates a settings patch from an admin op: only the keys present are changed. */
export function parseSettingsPatch(args: Record<string, unknown>): Partial<BoxSettings> {
  const out: Partial<BoxSettings> = {};
  if ('secondary' in args) out.secondary = parseSecondary(args.secondary);
  if ('retention_default' in args) out.retention_default = parseRetention(args.retention_default);
  return out;
}

/** What the console and `cairnd status` may show: the token stays on the box. */
export function publicSettings(s: BoxSettings): { secondary: { address: string } | null; retention_default: number } {
  return { secondary: s.secondary ? { address: s.secondary.address } : null, retention_default: s.retention_default };
}
