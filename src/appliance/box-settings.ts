import fs from 'node:fs';
import { CairnError } from '../core/errors';
import { DataDir } from './data-dir';
import { BoxConfig } from './box';
import { writeFileDurable } from './store/durable';
import { DEFAULT_PORT } from '../core/api';

/**
 * The settings the activation wizard and the console change in config.json: the default
 * number of versions kept per source. Values arrive as untrusted JSON (admin ops) and are
 * checked here.
 *
 * The secondary is not a setting any more: linking (secondary/link.ts, 'secondary.add') writes
 * secondary.json (0600). Configs written before that held `secondary: {address, token}`; they
 * are still read (the address is shown, as a hint, until a link exists) but the token is never
 * written again: a used single-use token is useless and does not belong in config.json.
 */
export interface BoxSettings {
  /** a legacy config's secondary address (never the token); null when none */
  secondary: { address: string } | null;
  retention_default: number;
}

/** An address and a pairing token of a second box, as typed in the console: checked before linking. */
export interface SecondaryTarget {
  address: string;
  host: string;
  port: number;
  token: string;
}

export const DEFAULT_RETENTION = 30;
export const MAX_RETENTION = 1000;

export function parseSecondary(v: unknown): SecondaryTarget | null {
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
  const { host, port } = splitAddress(address);
  return { address: `${host.includes(':') ? `[${host}]` : host}:${port}`, host, port, token: token.toUpperCase() };
}

/** HOST[:PORT] (IPv6 in brackets) -> host and port; the port defaults to 8443. */
export function splitAddress(address: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:]+))(?::(\d{1,5}))?$/.exec(address.trim());
  const port = m?.[3] === undefined ? DEFAULT_PORT : Number(m[3]);
  if (!m || !Number.isInteger(port) || port < 1 || port > 65535) throw new CairnError('CAIRN_USAGE', `"${address}" is not HOST[:PORT] for the secondary box`);
  return { host: m[1] ?? m[2], port };
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
  const legacy = c.secondary as { address?: unknown } | null | undefined;
  return { secondary: legacy && typeof legacy.address === 'string' ? { address: legacy.address } : null, retention_default: c.retention_default ?? DEFAULT_RETENTION };
}

/**
 * Merges a patch into config.json, keeping every other key. Returns the new raw config.
 * A legacy secondary token (written by older consoles) is dropped on the way.
 */
export function updateConfig(dir: DataDir, patch: Record<string, unknown>): Record<string, unknown> {
  const next: Record<string, unknown> = { format: 1, ...readRawConfig(dir), ...patch };
  const sec = next.secondary as { address?: unknown } | null | undefined;
  if (sec && typeof sec === 'object') next.secondary = typeof sec.address === 'string' ? { address: sec.address } : null;
  writeFileDurable(dir.config, JSON.stringify(next, null, 2) + '\n', 0o600);
  return next;
}

/**
 * Validates a settings patch from an admin op: only the keys present are changed. `secondary`
 * takes only null (forget a legacy address): a secondary is linked with 'secondary.add'.
 */
export function parseSettingsPatch(args: Record<string, unknown>): Partial<BoxSettings> {
  const out: Partial<BoxSettings> = {};
  if ('secondary' in args) {
    if (args.secondary !== null && args.secondary !== 'later') {
      throw new CairnError('CAIRN_USAGE', 'a secondary is linked, not set: use the admin op secondary.add (`cairnd secondary add --data DIR HOST:PORT --token T`)');
    }
    out.secondary = null;
  }
  if ('retention_default' in args) out.retention_default = parseRetention(args.retention_default);
  return out;
}

/** What the console and `cairnd status` may show (never a token). */
export function publicSettings(s: BoxSettings): { secondary: { address: string } | null; retention_default: number } {
  return { secondary: s.secondary ? { address: s.secondary.address } : null, retention_default: s.retention_default };
}
