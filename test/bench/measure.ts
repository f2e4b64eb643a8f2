/**
 * Measuring one-shot processes and a long-running one: wall time, CPU time and peak RSS.
 * One-shot processes run under GNU time (`/usr/bin/time -v`: its "Maximum resident set size"
 * is the kernel's ru_maxrss of the child, its user and system times cover all the child's
 * threads); a long-running process's peak is its VmHWM in /proc/PID/status, which can be reset
 * between phases by writing 5 to /proc/PID/clear_refs, and its CPU time the difference of
 * utime + stime in /proc/PID/stat across a phase.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const GNU_TIME = '/usr/bin/time';

export interface Timed {
  code: number;
  stdout: string;
  stderr: string;
  wallS: number;
  /** peak resident set size in bytes */
  peakRss: number;
  /** user + system CPU seconds of the process and all its threads */
  cpuS: number;
}

export function timed(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Timed> {
  const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-bench-time-')), 'time.txt');
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const p = spawn(GNU_TIME, ['-v', '-o', out, cmd, ...args], { cwd: opts.cwd, env: { ...process.env, ...(opts.env ?? {}) }, stdio: ['ignore', 'pipe', 'pipe'] });
    const so: Buffer[] = [];
    const se: Buffer[] = [];
    p.stdout.on('data', (d: Buffer) => so.push(d));
    p.stderr.on('data', (d: Buffer) => se.push(d));
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 3_600_000);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
      let report = '';
      try {
        report = fs.readFileSync(out, 'utf8');
      } catch {
        /* time did not write: reported below as 0 */
      }
      fs.rmSync(path.dirname(out), { recursive: true, force: true });
      resolve({ code: code ?? -1, stdout: Buffer.concat(so).toString(), stderr: Buffer.concat(se).toString(), wallS, peakRss: parseGnuTimeMaxRss(report), cpuS: parseGnuTimeCpu(report) });
    });
  });
}

/** "Maximum resident set size (kbytes): 123456" → bytes; 0 when absent. */
export function parseGnuTimeMaxRss(report: string): number {
  const m = /Maximum resident set size \(kbytes\): (\d+)/.exec(report);
  return m ? Number(m[1]) * 1024 : 0;
}

/** "User time (seconds): 1.5" + "System time (seconds): 0.25" → 1.75; NaN when absent. */
export function parseGnuTimeCpu(report: string): number {
  const u = /User time \(seconds\): ([\d.]+)/.exec(report);
  const k = /System time \(seconds\): ([\d.]+)/.exec(report);
  return u && k ? Number(u[1]) + Number(k[1]) : NaN;
}

let clockTicks: number | undefined;

/** utime + stime of a /proc/PID/stat line, in ticks; NaN when it does not parse. */
export function parseStatTicks(stat: string): number {
  // The command name (field 2) may hold spaces and parentheses: fields are counted after its last ')'.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(f[11]) + Number(f[12]);
  return Number.isFinite(ticks) ? ticks : NaN;
}

/** CPU seconds a live process has used so far (all its threads); NaN when it cannot be read. */
export function readCpuSeconds(pid: number): number {
  try {
    clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    return parseStatTicks(fs.readFileSync(`/proc/${pid}/stat`, 'utf8')) / clockTicks;
  } catch {
    return NaN;
  }
}

/** "VmHWM:	  123456 kB" → bytes; 0 when absent. */
export function parseVmHwm(status: string): number {
  const m = /^VmHWM:\s+(\d+) kB/m.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

export function readVmHwm(pid: number): number {
  try {
    return parseVmHwm(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return 0;
  }
}

/** Resets the process's peak RSS to its current RSS (Linux ≥ 4.0); false when not allowed. */
export function resetPeakRss(pid: number): boolean {
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/**
 * Apparent bytes (sum of file sizes) and disk usage (allocated blocks of files and
 * directories, like du) of a tree; top-level names in `exclude` are skipped.
 */
export function treeBytes(root: string, exclude: string[] = []): { apparent: number; disk: number; files: number } {
  let apparent = 0;
  let disk = 0;
  let files = 0;
  const walk = (p: string): void => {
    for (const e of fs.readdirSync(p, { withFileTypes: true })) {
      const q = path.join(p, e.name);
      if (p === root && exclude.includes(e.name)) continue;
      if (e.isDirectory()) {
        disk += fs.statSync(q).blocks * 512;
        walk(q);
      } else if (e.isFile()) {
        const st = fs.statSync(q);
        apparent += st.size;
        disk += st.blocks * 512;
        files++;
      }
    }
  };
  if (fs.existsSync(root)) walk(root);
  return { apparent, disk, files };
}

export function median(xs: number[]): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return NaN;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}
