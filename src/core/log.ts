/**
 * Structured logging: one JSON line per event on stdout (journald picks it up). Callers pass
 * an event name and plain fields; fields whose names look secret are dropped here as a last
 * line of defence, but the rule is simpler: never pass a key, token or credential to a log.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const SECRET_FIELD = /(secret|token|credential|password|key|authorization)/i;

export interface Logger {
  debug(event: string, fields?: Record<string, unknown>): void;
  info(event: string, fields?: Record<string, unknown>): void;
  warn(event: string, fields?: Record<string, unknown>): void;
  error(event: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

export function createLogger(opts: { name: string; level?: LogLevel; write?: (line: string) => void; base?: Record<string, unknown> }): Logger {
  const min = LEVELS[opts.level ?? ((process.env.CAIRN_LOG_LEVEL as LogLevel) || 'info')] ?? 20;
  const write = opts.write ?? ((line: string) => process.stdout.write(line + '\n'));
  const base = { svc: opts.name, ...(opts.base ?? {}) };
  const emit = (level: LogLevel, event: string, fields?: Record<string, unknown>): void => {
    if (LEVELS[level] < min) return;
    const rec: Record<string, unknown> = { t: new Date().toISOString(), level, ...base, event };
    if (fields) {
      for (const [k, v] of Object.entries(fields)) {
        if (SECRET_FIELD.test(k) && !/^(key_?id|token_id|pin)$/i.test(k)) continue;
        rec[k] = v instanceof Error ? v.message : v;
      }
    }
    write(JSON.stringify(rec));
  };
  return {
    debug: (e, f) => emit('debug', e, f),
    info: (e, f) => emit('info', e, f),
    warn: (e, f) => emit('warn', e, f),
    error: (e, f) => emit('error', e, f),
    child: (fields) => createLogger({ ...opts, base: { ...(opts.base ?? {}), ...fields } }),
  };
}

export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
};
