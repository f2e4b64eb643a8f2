import { parseArgs, ParseArgsConfig } from 'node:util';
import { CairnError, errorMessage } from './errors';

/** Strict argument parsing: an unknown option or a missing value is a usage error with a clear message. */
export function parseCli<T extends NonNullable<ParseArgsConfig['options']>>(
  args: string[],
  options: T,
  usage: string,
): { values: { [K in keyof T]?: T[K] extends { type: 'boolean' } ? boolean : T[K] extends { multiple: true } ? string[] : string }; positionals: string[] } {
  try {
    const r = parseArgs({ args, options, allowPositionals: true, strict: true });
    return r as unknown as ReturnType<typeof parseCli<T>>;
  } catch (err) {
    throw new CairnError('CAIRN_USAGE', `${errorMessage(err).replace(/\. To specify a positional.*$/s, '')}\nusage: ${usage}`);
  }
}

const DURATION = /^(\d+)\s*(s|m|h|d)?$/;

/** "90s", "15m", "24h", "7d" or plain seconds -> milliseconds. */
export function parseDuration(text: string): number {
  const m = DURATION.exec(text.trim());
  if (!m) throw new CairnError('CAIRN_USAGE', `"${text}" is not a duration; use e.g. 30m, 24h or 7d`);
  const n = Number(m[1]);
  const mult = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 's') as 's' | 'm' | 'h' | 'd'];
  const ms = n * mult;
  if (ms <= 0 || ms > 365 * 86_400_000) throw new CairnError('CAIRN_USAGE', `duration ${text} is out of range (1s to 365d)`);
  return ms;
}

/** "HOST:PORT", "[v6]:PORT" or "HOST" (default port). */
export function parseHostPort(text: string, defaultPort: number): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s\[\]]+))(?::(\d{1,5}))?$/.exec(text.trim());
  const port = m?.[3] !== undefined ? Number(m[3]) : defaultPort;
  if (!m || port > 65535) throw new CairnError('CAIRN_USAGE', `"${text}" is not HOST:PORT`);
  return { host: m[1] ?? m[2], port };
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/**
 * Runs a CLI entry point: prints errors as one clear line (or JSON with --json) and sets
 * exit codes: 0 ok, 1 failure, 2 usage error.
 */
export function runMain(main: (argv: string[]) => Promise<number | void>): void {
  const argv = process.argv.slice(2);
  const json = argv.includes('--json');
  main(argv).then(
    (code) => {
      process.exitCode = code ?? 0;
    },
    (err: unknown) => {
      const code = err instanceof CairnError ? err.code : 'CAIRN_UNEXPECTED';
      const message = errorMessage(err);
      if (json) process.stdout.write(JSON.stringify({ error: { code, message } }) + '\n');
      else process.stderr.write(`error: ${message}${err instanceof CairnError ? ` [${code}]` : ''}\n`);
      if (!(err instanceof CairnError) && process.env.CAIRN_DEBUG) process.stderr.write(String((err as Error)?.stack) + '\n');
      process.exitCode = err instanceof CairnError && err.code === 'CAIRN_USAGE' ? 2 : 1;
    },
  );
}
