import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/** Helpers to run the real binaries as separate processes (the demo, tests and benchmarks use them). */
export const DIST = path.resolve(__dirname, '..', '..');
export const CAIRND = path.join(DIST, 'src', 'appliance', 'main.js');
export const CAIRN = path.join(DIST, 'src', 'agent', 'main.js');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * How a script's `#!/usr/bin/env -S [NAME=VALUE ...] node [FLAGS]` line launches it: the
 * environment assignments and the node flags. Launching a script with process.execPath skips
 * its shebang, and tests and benches must run it as the installed command runs. Anything but
 * plain assignments and flags gives nothing.
 */
export function launchOf(script: string): { env: Record<string, string>; flags: string[] } {
  const none = { env: {}, flags: [] };
  let first = '';
  try {
    const fd = fs.openSync(script, 'r');
    const buf = Buffer.alloc(256);
    const n = fs.readSync(fd, buf, 0, 256, 0);
    fs.closeSync(fd);
    first = buf.subarray(0, n).toString('utf8').split('\n')[0];
  } catch {
    return none;
  }
  const m = /^#!\/usr\/bin\/env -S ((?:[A-Z_][A-Z0-9_]*=[A-Za-z0-9_.:\/-]+ )*)node((?: --[a-z0-9-]+(?:=[^\s]+)?)*)\s*$/.exec(first);
  if (!m) return none;
  const env: Record<string, string> = {};
  for (const kv of m[1].trim().split(/\s+/).filter(Boolean)) env[kv.slice(0, kv.indexOf('='))] = kv.slice(kv.indexOf('=') + 1);
  return { env, flags: m[2].trim().split(/\s+/).filter(Boolean) };
}

/** The node flags on a script's shebang line (see launchOf). */
export function nodeFlagsOf(script: string): string[] {
  return launchOf(script).flags;
}

/** The environment a script's shebang line sets (see launchOf). */
export function nodeEnvOf(script: string): Record<string, string> {
  return launchOf(script).env;
}

export function run(script: string, args: string[], env: NodeJS.ProcessEnv = {}, opts: { input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [...nodeFlagsOf(script), script, ...args], { env: { ...process.env, ...nodeEnvOf(script), ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 300_000);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
    p.stdin.end(opts.input ?? '');
  });
}

export async function runJson<T>(script: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<T> {
  const r = await run(script, [...args, '--json'], env);
  if (r.code !== 0) throw new Error(`${path.basename(script)} ${args.join(' ')} failed (${r.code}): ${r.stderr || r.stdout}`);
  return JSON.parse(r.stdout) as T;
}

export interface Daemon {
  proc: ChildProcess;
  port: number;
  address: string;
  log: () => string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `cairnd serve` on 127.0.0.1 and an ephemeral port; resolves once it accepts connections. */
export async function startDaemon(data: string, opts: { port?: number; env?: NodeJS.ProcessEnv; nodeArgs?: string[]; args?: string[] } = {}): Promise<Daemon> {
  const info = path.join(data, 'run', 'serve.json');
  fs.rmSync(info, { force: true });
  const proc = spawn(process.execPath, [...nodeFlagsOf(CAIRND), ...(opts.nodeArgs ?? []), CAIRND, 'serve', '--data', data, '--listen', `127.0.0.1:${opts.port ?? 0}`, ...(opts.args ?? [])], {
    env: { ...process.env, ...nodeEnvOf(CAIRND), ...(opts.env ?? {}) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  proc.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`cairnd serve exited (${proc.exitCode}): ${log}`);
    try {
      const s = JSON.parse(fs.readFileSync(info, 'utf8')) as { port: number; host: string; pid: number };
      if (s.pid === proc.pid) {
        return {
          proc,
          port: s.port,
          address: `127.0.0.1:${s.port}`,
          log: () => log,
          async stop(signal: NodeJS.Signals = 'SIGTERM') {
            if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
            return exited;
          },
        };
      }
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`cairnd serve did not start: ${log}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
