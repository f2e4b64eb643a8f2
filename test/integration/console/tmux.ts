import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { CAIRND, DIST } from '../../../scripts/lib/procs';

/** The console in a detached tmux session on its own tmux server (-L), driven by send-keys and read by capture-pane. */
export const CONSOLE = path.join(DIST, 'src', 'appliance', 'console', 'main.js');

/** In a mocha `before`: skips the suite, saying why, when tmux is not installed. */
export function skipWithoutTmux(ctx: Mocha.Context): void {
  try {
    execFileSync('tmux', ['-V']);
  } catch {
    console.log('    skipping: tmux is not installed (.ci/run installs it)');
    ctx.skip();
  }
}

/** Waits for the Keys screen and reads the recovery key's groups and the group number asked for. */
export async function readRecoveryKey(tty: TmuxConsole): Promise<{ screen: string; groups: string[]; asked: number }> {
  const screen = await tty.waitFor(/type group (\d)/, 60_000);
  const line = screen.split('\n').find((l) => /^\s*([0-9A-Z]{4}\s+){8}[0-9A-Z]{4}\s*$/.test(l));
  if (!line) throw new Error(`no recovery key on the screen:\n${screen}`);
  return { screen, groups: line.trim().split(/\s+/), asked: Number(/type group (\d)/.exec(screen)![1]) };
}

export class TmuxConsole {
  readonly server: string;
  readonly session = 'console';

  constructor(
    readonly data: string,
    readonly logFile: string,
  ) {
    this.server = `cairn-console-test-${process.pid}-${Date.now() % 100000}`;
  }

  private tmux(args: string[]): string {
    return execFileSync('tmux', ['-L', this.server, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  }

  start(width = 80, height = 24): void {
    const cmd = `exec ${JSON.stringify(process.execPath)} ${JSON.stringify(CONSOLE)} --data ${JSON.stringify(this.data)} 2>>${JSON.stringify(this.logFile)}`;
    this.tmux(['-f', '/dev/null', 'new-session', '-d', '-s', this.session, '-x', String(width), '-y', String(height), cmd]);
    // A crashed console leaves a dead pane behind instead of ending the session.
    this.tmux(['set-option', '-t', this.session, 'remain-on-exit', 'on']);
  }

  screen(): string {
    return this.tmux(['capture-pane', '-p', '-t', this.session]);
  }

  /** true while the console process runs */
  alive(): boolean {
    return this.tmux(['list-panes', '-t', this.session, '-F', '#{pane_dead}']).trim() === '0';
  }

  size(): { width: number; height: number } {
    const [w, h] = this.tmux(['display-message', '-p', '-t', this.session, '#{pane_width} #{pane_height}']).trim().split(' ').map(Number);
    return { width: w, height: h };
  }

  keys(...k: string[]): void {
    this.tmux(['send-keys', '-t', this.session, ...k]);
  }

  type(text: string): void {
    this.tmux(['send-keys', '-t', this.session, '-l', text]);
  }

  resize(width: number, height: number): void {
    this.tmux(['resize-window', '-t', this.session, '-x', String(width), '-y', String(height)]);
  }

  /** Polls the screen until `want` shows (or the deadline passes, with the screen in the error). */
  async waitFor(want: string | RegExp, timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    for (;;) {
      last = this.screen();
      if (typeof want === 'string' ? last.includes(want) : want.test(last)) return last;
      if (Date.now() > deadline) {
        const err = fs.existsSync(this.logFile) ? fs.readFileSync(this.logFile, 'utf8').slice(-2000) : '';
        throw new Error(`console did not show ${String(want)} within ${timeoutMs / 1000}s; screen:\n${last}\nconsole stderr:\n${err}`);
      }
      await new Promise((r) => setTimeout(r, 150));
    }
  }

  async waitGone(what: string | RegExp, timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = this.screen();
      if (!(typeof what === 'string' ? s.includes(what) : what.test(s))) return s;
      if (Date.now() > deadline) throw new Error(`console still shows ${String(what)}; screen:\n${s}`);
      await new Promise((r) => setTimeout(r, 150));
    }
  }

  close(): void {
    try {
      this.tmux(['kill-server']);
    } catch {
      /* already gone */
    }
  }
}

/** `cairnd serve` in either mode; resolves once run/serve.json names this process (setup mode: no port). */
export interface ServeProc {
  proc: ChildProcess;
  log(): string;
  info(): { pid: number; mode?: string; host: string | null; port: number | null };
  stop(signal?: NodeJS.Signals): Promise<void>;
}

export async function startServe(data: string, env: NodeJS.ProcessEnv): Promise<ServeProc> {
  const infoFile = path.join(data, 'run', 'serve.json');
  fs.rmSync(infoFile, { force: true });
  const proc = spawn(process.execPath, [CAIRND, 'serve', '--data', data, '--listen', '127.0.0.1:0'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  proc.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
  const read = (): ReturnType<ServeProc['info']> | null => {
    try {
      return JSON.parse(fs.readFileSync(infoFile, 'utf8')) as ReturnType<ServeProc['info']>;
    } catch {
      return null;
    }
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`cairnd serve exited (${proc.exitCode}): ${log}`);
    const i = read();
    if (i && i.pid === proc.pid) break;
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`cairnd serve did not start: ${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    proc,
    log: () => log,
    info: () => read() ?? { pid: 0, host: null, port: null },
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      await exited;
    },
  };
}
