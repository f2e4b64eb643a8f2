/**
 * Reads V8 .cpuprofile files (written by `node --cpu-prof`) and sums self time per function,
 * so the bench can print where each thread spent its time.
 *
 *   node dist/test/bench/cpu-profile.js FILE.cpuprofile... [--top 15]
 */
import fs from 'node:fs';
import path from 'node:path';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface SelfTime {
  name: string;
  where: string;
  ms: number;
  share: number;
}

export interface ProfileSummary {
  file: string;
  thread: string;
  wallMs: number;
  busyMs: number;
  top: SelfTime[];
}

/** `(idle)` is time the thread waited; everything else counts as busy. */
export function selfTimes(profile: CpuProfile): { busyMs: number; wallMs: number; all: SelfTime[] } {
  const byId = new Map<number, ProfileNode>();
  for (const n of profile.nodes) byId.set(n.id, n);
  const acc = new Map<string, { name: string; where: string; us: number }>();
  let busy = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]);
    const dt = profile.timeDeltas[i] ?? 0;
    if (!node || dt < 0) continue;
    const cf = node.callFrame;
    const name = cf.functionName || '(anonymous)';
    const where = cf.url ? `${shortUrl(cf.url)}:${cf.lineNumber + 1}` : '';
    const key = `${name}\0${where}`;
    const e = acc.get(key) ?? { name, where, us: 0 };
    e.us += dt;
    acc.set(key, e);
    if (name !== '(idle)') busy += dt;
  }
  const all = [...acc.values()]
    .map((e) => ({ name: e.name, where: e.where, ms: e.us / 1000, share: busy > 0 && e.name !== '(idle)' ? e.us / busy : 0 }))
    .sort((a, b) => b.ms - a.ms);
  return { busyMs: busy / 1000, wallMs: (profile.endTime - profile.startTime) / 1000, all };
}

function shortUrl(url: string): string {
  const u = url.replace(/^file:\/\//, '');
  const i = u.indexOf('/dist/');
  if (i >= 0) return u.slice(i + 6);
  const j = u.indexOf('/node_modules/');
  if (j >= 0) return u.slice(j + 1);
  return u.startsWith('node:') ? u : path.basename(u);
}

/** Node names profiles CPU.<date>.<time>.<pid>.<thread id>.<seq>.cpuprofile; thread 0 is the main thread. */
export function threadOf(file: string): string {
  const m = /CPU\.\d+\.\d+\.(\d+)\.(\d+)\.\d+\.cpuprofile$/.exec(path.basename(file));
  if (!m) return path.basename(file);
  return m[2] === '0' ? `pid ${m[1]} main` : `pid ${m[1]} worker ${m[2]}`;
}

export function summarize(file: string, top = 12): ProfileSummary {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfile;
  const s = selfTimes(profile);
  return { file, thread: threadOf(file), wallMs: s.wallMs, busyMs: s.busyMs, top: s.all.filter((e) => e.name !== '(idle)').slice(0, top) };
}

export function formatSummary(s: ProfileSummary): string {
  const lines = [`${s.thread}: busy ${(s.busyMs / 1000).toFixed(2)} s of ${(s.wallMs / 1000).toFixed(2)} s wall`];
  for (const e of s.top) lines.push(`  ${(e.share * 100).toFixed(1).padStart(5)}%  ${e.ms.toFixed(0).padStart(7)} ms  ${e.name}${e.where ? `  ${e.where}` : ''}`);
  return lines.join('\n');
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const ti = args.indexOf('--top');
  const top = ti >= 0 ? Number(args[ti + 1]) : 15;
  const files = args.filter((a, i) => !a.startsWith('--') && (ti < 0 || i !== ti + 1));
  for (const f of files) process.stdout.write(formatSummary(summarize(f, top)) + '\n\n');
}
