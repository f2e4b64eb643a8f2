import { ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { RunResult } from '../../../scripts/lib/procs';

/**
 * Two network namespaces ("box" and "pc") joined by a veth pair on a private 10.x/24, created
 * and removed by the tests. Nothing here touches the host's own network: addresses exist only
 * inside the namespaces, and multicast stays on the veth link.
 */
export class NetLab {
  readonly tag = randomBytes(3).toString('hex');
  readonly nsBox = `cairn-box-${this.tag}`;
  readonly nsPc = `cairn-pc-${this.tag}`;
  readonly vethBox = `cb${this.tag}`;
  readonly vethPc = `cp${this.tag}`;
  readonly subnet = `10.${randomInt(200, 250)}.${randomInt(1, 250)}`;
  private readonly procs = new Set<ChildProcess>();
  private created: string[] = [];

  /** Why the machine cannot run these tests, or undefined when it can. */
  static unavailable(): string | undefined {
    if (process.platform !== 'linux') return 'network namespaces need Linux';
    if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'creating network namespaces needs root';
    const ip = spawnSync('ip', ['-V'], { encoding: 'utf8' });
    if (ip.error || ip.status !== 0) return '`ip` (iproute2) is not installed';
    const probe = `cairn-probe-${randomBytes(3).toString('hex')}`;
    const add = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
    if (add.status !== 0) return `this machine forbids network namespaces (ip netns add: ${add.stderr.trim()})`;
    spawnSync('ip', ['netns', 'del', probe]);
    return undefined;
  }

  addr(host: number): string {
    return `${this.subnet}.${host}`;
  }

  ip(...args: string[]): string {
    return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  }

  setup(boxHost = 1, pcHost = 2): void {
    this.ip('netns', 'add', this.nsBox);
    this.created.push(this.nsBox);
    this.ip('netns', 'add', this.nsPc);
    this.created.push(this.nsPc);
    this.ip('link', 'add', this.vethBox, 'type', 'veth', 'peer', 'name', this.vethPc);
    this.ip('link', 'set', this.vethBox, 'netns', this.nsBox);
    this.ip('link', 'set', this.vethPc, 'netns', this.nsPc);
    this.ip('-n', this.nsBox, 'addr', 'add', `${this.addr(boxHost)}/24`, 'dev', this.vethBox);
    this.ip('-n', this.nsPc, 'addr', 'add', `${this.addr(pcHost)}/24`, 'dev', this.vethPc);
    for (const [ns, dev] of [[this.nsBox, this.vethBox], [this.nsPc, this.vethPc]]) {
      this.ip('-n', ns, 'link', 'set', 'lo', 'up');
      this.ip('-n', ns, 'link', 'set', dev, 'up');
    }
  }

  /** Moves the box to another address on the same link (what a DHCP renumbering does). */
  moveBox(from: number, to: number): void {
    this.ip('-n', this.nsBox, 'addr', 'del', `${this.addr(from)}/24`, 'dev', this.vethBox);
    this.ip('-n', this.nsBox, 'addr', 'add', `${this.addr(to)}/24`, 'dev', this.vethBox);
  }

  addBoxAddress(host: number): void {
    this.ip('-n', this.nsBox, 'addr', 'add', `${this.addr(host)}/24`, 'dev', this.vethBox);
  }

  delBoxAddress(host: number): void {
    this.ip('-n', this.nsBox, 'addr', 'del', `${this.addr(host)}/24`, 'dev', this.vethBox);
  }

  /** Starts `node SCRIPT ARGS` inside a namespace; output is collected. */
  spawnIn(ns: string, script: string, args: string[], env: NodeJS.ProcessEnv = {}): { proc: ChildProcess; output: () => string; exited: Promise<number | null> } {
    const proc = spawn('ip', ['netns', 'exec', ns, process.execPath, script, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    this.procs.add(proc);
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => proc.on('close', (code) => {
      this.procs.delete(proc);
      resolve(code);
    }));
    return { proc, output: () => out, exited };
  }

  runIn(ns: string, script: string, args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000): Promise<RunResult> {
    return new Promise((resolve, reject) => {
      const p = spawn('ip', ['netns', 'exec', ns, process.execPath, script, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      this.procs.add(p);
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
      p.on('error', reject);
      p.on('close', (code) => {
        clearTimeout(timer);
        this.procs.delete(p);
        resolve({ code: code ?? -1, stdout, stderr });
      });
    });
  }

  /** Starts `cairnd serve` in the box namespace and waits until it serves. */
  async startBox(cairnd: string, data: string, listen: string, env: NodeJS.ProcessEnv = {}): Promise<{ proc: ChildProcess; output: () => string; stop: () => Promise<number | null> }> {
    const info = path.join(data, 'run', 'serve.json');
    fs.rmSync(info, { force: true });
    const d = this.spawnIn(this.nsBox, cairnd, ['serve', '--data', data, '--listen', listen], env);
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (d.proc.exitCode !== null) throw new Error(`cairnd serve exited (${d.proc.exitCode}): ${d.output()}`);
      try {
        const s = JSON.parse(fs.readFileSync(info, 'utf8')) as { pid: number };
        if (s.pid === d.proc.pid && /mdns\.(advertising|disabled|unavailable)/.test(d.output())) break;
      } catch {
        /* not yet */
      }
      if (Date.now() > deadline) throw new Error(`cairnd serve did not start: ${d.output()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return {
      ...d,
      stop: async () => {
        if (d.proc.exitCode === null && d.proc.signalCode === null) d.proc.kill('SIGTERM');
        return d.exited;
      },
    };
  }

  async destroy(): Promise<void> {
    for (const p of [...this.procs]) {
      if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    }
    await new Promise((r) => setTimeout(r, 100));
    for (const ns of this.created.reverse()) spawnSync('ip', ['netns', 'del', ns]);
    this.created = [];
  }
}

/** JSON log lines of a process's output. */
export function events(output: string): { event: string; [k: string]: unknown }[] {
  const out: { event: string; [k: string]: unknown }[] = [];
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      const rec = JSON.parse(line) as { event?: unknown };
      if (typeof rec.event === 'string') out.push(rec as { event: string });
    } catch {
      /* not a log line */
    }
  }
  return out;
}

export async function waitFor(what: string, cond: () => boolean, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
