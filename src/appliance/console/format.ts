import { formatBytes } from '../../core/cli';
/**
 * Pure text helpers of the console: blessed tags, fitting lines to the terminal width, bytes,
 * times, progress bars and recovery-key groups. Only the 8 VT100 colours are used.
 */
export type Colour = 'red' | 'green' | 'yellow' | 'blue' | 'magenta' | 'cyan' | 'white' | 'black';

/** Text from outside (names, errors) never carries blessed tags. */
export function clean(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[{}]/g, (c) => (c === '{' ? '(' : ')')).replace(/[\x00-\x1f\x7f]/g, ' ');
}

export const fg = (c: Colour, s: string): string => `{${c}-fg}${s}{/${c}-fg}`;
export const bold = (s: string): string => `{bold}${s}{/bold}`;
export const inverse = (s: string): string => `{inverse}${s}{/inverse}`;

const TAG = /\{\/?[a-z-]*\}/g;

export function visibleLength(s: string): number {
  return s.replace(TAG, '').length;
}

/** Truncates a tagged line to `width` visible characters (tags kept balanced by closing all). */
export function fit(s: string, width: number): string {
  if (visibleLength(s) <= width) return s;
  let out = '';
  let n = 0;
  let i = 0;
  while (i < s.length && n < width) {
    if (s[i] === '{') {
      const m = /^\{\/?[a-z-]*\}/.exec(s.slice(i));
      if (m) {
        out += m[0];
        i += m[0].length;
        continue;
      }
    }
    out += s[i];
    n++;
    i++;
  }
  if (width > 1) out = out.replace(/.$/, '~');
  return out + '{/}';
}

export function pad(s: string, width: number): string {
  const v = visibleLength(s);
  return v >= width ? fit(s, width) : s + ' '.repeat(width - v);
}

export function padLeft(s: string, width: number): string {
  const v = visibleLength(s);
  return v >= width ? s : ' '.repeat(width - v) + s;
}

export function center(s: string, width: number): string {
  const v = visibleLength(s);
  return v >= width ? fit(s, width) : ' '.repeat(Math.floor((width - v) / 2)) + s;
}

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '-';
  return formatBytes(n);
}

/** "3 min ago", "2 h ago", "5 d ago" */
export function ago(iso: string | null, now = Date.now()): string {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86_400)} d ago`;
}

/** mm:ss (or h:mm:ss) until a deadline; "expired" after it. */
export function countdown(untilIso: string, now = Date.now()): string {
  const s = Math.floor((Date.parse(untilIso) - now) / 1000);
  if (s <= 0) return 'expired';
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

export function clock(now = new Date()): string {
  return now.toTimeString().slice(0, 8);
}

export function progressBar(percent: number, width: number): string {
  const p = Math.max(0, Math.min(100, percent));
  const full = Math.round((p / 100) * width);
  return '[' + '#'.repeat(full) + '.'.repeat(width - full) + ']';
}

/** "AAAA-BBBB-...-CCCC" -> eight key groups and the checksum group. */
export function recoveryGroups(key: string): { groups: string[]; checksum: string } {
  const parts = key.split('-');
  return { groups: parts.slice(0, -1), checksum: parts[parts.length - 1] };
}

/** What the person typed back matches the group (case, spaces and look-alikes forgiven as the key parser does). */
export function sameGroup(typed: string, group: string): boolean {
  const norm = (s: string): string => s.replace(/\s/g, '').toUpperCase().replace(/O/g, '0').replace(/[IL]/g, '1');
  return norm(typed) === norm(group);
}

export function levelLabel(level: string | null): string {
  if (!level) return '-';
  return level.replace(/^raid/, 'RAID ');
}

/** Plain text (no tags) broken into lines of at most `width` characters, at spaces where it can. */
export function wrap(text: string, width: number): string[] {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    let w = word;
    while (w.length > width) {
      if (line) out.push(line);
      out.push(w.slice(0, width));
      w = w.slice(width);
      line = '';
    }
    if (!line) line = w;
    else if (line.length + 1 + w.length <= width) line += ' ' + w;
    else {
      out.push(line);
      line = w;
    }
  }
  if (line) out.push(line);
  return out;
}
