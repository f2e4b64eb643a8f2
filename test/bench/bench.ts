/**
 * `npm run bench`: Cairn against restic and borg, side by side on the same data (issue 5).
 *
 *   node dist/test/bench/bench.js [--corpus DIR | --size MB] [--runs N] [--json FILE]
 *        [--tools cairn,restic,borg] [--work DIR] [--keep] [--fs fresh|dir] [--profile DIR] [--profile-only]
 *
 * Each run, for each tool, on a fresh copy of the corpus and an empty repository: first
 * backup, no-change backup, backup after a deterministic ~1% change (appends, in-place
 * rewrites, new and deleted files), full restore into an empty directory, then a byte-for-byte
 * comparison of the restore with the source (any difference fails the bench). Figures are
 * medians over the runs. Cairn is a real `cairnd serve` plus a real `cairn` agent over TLS on
 * loopback; restic 0.14 (repository v2, `--compression auto`) and borg 1.2 (`repokey`,
 * `--compression lz4`) are the Debian packages, installed with apt-get when missing.
 *
 * Filesystem: by default every tool run gets a new ext4 on a loop device (see freshFs; the
 * same for every tool), so one run's file churn does not slow the next; `--fs dir` uses plain
 * directories under the work dir.
 *
 * Page cache: warm, for every tool. Each tool's copy of the corpus is written just before its
 * backups (so it sits in the page cache), and `sync` runs before every measured step so one
 * step's dirty pages are not flushed on the next one's clock. Restores are timed to the
 * tool's exit, not to a later sync. Peak RSS: one-shot processes under `/usr/bin/time -v`;
 * cairnd's VmHWM, reset before each step through /proc/PID/clear_refs.
 *
 * `--profile DIR` then runs Cairn once more with `node --cpu-prof` on the agent and on cairnd
 * (first backup, and restore) and prints the top self-time functions of every thread.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { CAIRN, CAIRND, nodeEnvOf, nodeFlagsOf, runJson, startDaemon, Daemon } from '../../scripts/lib/procs';
import { compareTrees } from '../../scripts/lib/tree';
import { CORPUS_VERSION, generateCorpus, mutateCorpus, listFiles, ChangeSummary } from './corpus';
import { GNU_TIME, median, readCpuSeconds, readVmHwm, resetPeakRss, timed, Timed, treeBytes } from './measure';
import { formatSummary, summarize, ProfileSummary } from './cpu-profile';

const MB = 1_000_000;
const PHASES = ['first', 'nochange', 'change', 'restore'] as const;
type Phase = (typeof PHASES)[number];
const PHASE_LABEL: Record<Phase, string> = { first: 'first backup', nochange: 'no-change backup', change: '1% change backup', restore: 'full restore' };
const TOOL_NAMES = ['cairn', 'restic', 'borg'] as const;
type ToolName = (typeof TOOL_NAMES)[number];

interface PhaseResult {
  wall_s: number;
  /** source bytes (backups) or restored bytes (restore) per wall second */
  mb_per_s: number;
  bytes: number;
  /** peak RSS of the client process: the cairn agent, restic, borg */
  client_peak_rss: number;
  /** peak RSS of cairnd during this step (Cairn only) */
  box_peak_rss?: number;
  /** CPU seconds of the client process (all threads) */
  client_cpu_s: number;
  /** CPU seconds cairnd used during this step (Cairn only) */
  box_cpu_s?: number;
  detail?: unknown;
}

interface ToolRun {
  tool: ToolName;
  run: number;
  phases: Record<Phase, PhaseResult>;
  stored_after_first: number;
  stored: number;
  stored_disk: number;
  stored_chunks_only?: number;
  box_peak_rss_overall?: number;
  verified: boolean;
  /** Cairn only: hash of dist/src/**.js when the run started (the tree is shared and rebuilt by others) */
  cairn_build?: string;
}

interface Options {
  corpus?: string;
  sizeMb: number;
  runs: number;
  json?: string;
  tools: ToolName[];
  work?: string;
  keep: boolean;
  profile?: string;
  profileOnly: boolean;
  /** 'fresh': every tool run in a new ext4 on a loop device; 'dir': directories under the work dir */
  fsMode: 'fresh' | 'dir';
}

function parseArgs(argv: string[]): Options {
  const o: Options = { sizeMb: 1000, runs: 3, tools: [...TOOL_NAMES], keep: false, profileOnly: false, fsMode: 'fresh' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--corpus') o.corpus = path.resolve(val());
    else if (a === '--size') o.sizeMb = Number(val());
    else if (a === '--runs') o.runs = Number(val());
    else if (a === '--json') o.json = path.resolve(val());
    else if (a === '--work') o.work = path.resolve(val());
    else if (a === '--keep') o.keep = true;
    else if (a === '--profile') o.profile = path.resolve(val());
    else if (a === '--profile-only') o.profileOnly = true;
    else if (a === '--fs') {
      const v = val();
      if (v !== 'fresh' && v !== 'dir') throw new Error('--fs is fresh (a new ext4 per tool run, the default) or dir');
      o.fsMode = v;
    }
    else if (a === '--tools') {
      const t = val().split(',');
      for (const x of t) if (!(TOOL_NAMES as readonly string[]).includes(x)) throw new Error(`unknown tool ${x} (cairn, restic, borg)`);
      o.tools = TOOL_NAMES.filter((n) => t.includes(n)); // Cairn first, whatever the order given
    } else if (a === '--help' || a === '-h') {
      say('usage: bench [--corpus DIR | --size MB] [--runs N] [--json FILE] [--tools cairn,restic,borg] [--work DIR] [--keep] [--fs fresh|dir] [--profile DIR] [--profile-only]');
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  if (!(o.sizeMb > 0)) throw new Error('--size must be a positive number of MB');
  if (!(o.runs >= 1) || !Number.isInteger(o.runs)) throw new Error('--runs must be a positive integer');
  if (o.profileOnly && !o.profile) throw new Error('--profile-only needs --profile DIR');
  return o;
}

function say(s: string): void {
  process.stdout.write(s + '\n');
}

function sync(): void {
  execFileSync('sync');
}

/**
 * A new ext4 for one tool run, on a loop device over a sparse file in the work dir. Measured
 * here: on a filesystem that has created and deleted hundreds of thousands of files (as
 * repeated bench runs do), creating a file took 3-10x longer (the kernel's inode allocator
 * skips recently deleted inodes), and restores of 21,000 files drifted from 9 s to 22 s
 * between runs of the same code. A fresh filesystem per run gives every tool the same
 * conditions. Falls back to a plain directory (and says why) when it cannot mount.
 */
function freshFs(dir: string, bytes: number, keep: boolean): { mounted: boolean; why?: string; release: () => void } {
  fs.mkdirSync(dir, { recursive: true });
  if (!(process.getuid && process.getuid() === 0)) return { mounted: false, why: 'not root', release: () => undefined };
  const img = `${dir}.img`;
  try {
    fs.rmSync(img, { force: true });
    fs.writeFileSync(img, '');
    fs.truncateSync(img, bytes);
    execFileSync('mkfs.ext4', ['-q', '-F', '-E', 'nodiscard', img], { stdio: 'pipe' });
    execFileSync('mount', ['-o', 'loop', img, dir], { stdio: 'pipe' });
  } catch (err) {
    fs.rmSync(img, { force: true });
    return { mounted: false, why: err instanceof Error ? err.message.split('\n')[0] : String(err), release: () => undefined };
  }
  return {
    mounted: true,
    release: () => {
      spawnSync('umount', [dir]);
      if (keep) say(`  kept ${img} (mount it with: mount -o loop ${img} DIR)`);
      else fs.rmSync(img, { force: true });
    },
  };
}

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/** restic, borg and GNU time from Debian when missing (root, or sudo without a password). */
function ensureTools(tools: ToolName[]): void {
  const pkgs: string[] = [];
  if (tools.includes('restic') && !have('restic')) pkgs.push('restic');
  if (tools.includes('borg') && !have('borg')) pkgs.push('borgbackup');
  if (!fs.existsSync(GNU_TIME)) pkgs.push('time');
  if (!pkgs.length) return;
  say(`installing ${pkgs.join(', ')} with apt-get`);
  const pre = process.getuid && process.getuid() === 0 ? [] : ['sudo', '-n'];
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const aptGet = (args: string[]): boolean => spawnSync(pre[0] ?? 'apt-get', [...pre.slice(1), ...(pre.length ? ['apt-get'] : []), ...args], { stdio: 'inherit', env }).status === 0;
  if (!aptGet(['install', '-y', ...pkgs])) {
    aptGet(['update']);
    if (!aptGet(['install', '-y', ...pkgs])) throw new Error(`could not install ${pkgs.join(', ')}: install them (apt-get install ${pkgs.join(' ')}) and run again`);
  }
}

function toolVersion(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return (r.stdout || r.stderr || '').trim().split('\n')[0];
}

function machine(): Record<string, unknown> {
  const cpus = os.cpus();
  let fsType = '';
  try {
    fsType = execFileSync('stat', ['-f', '-c', '%T', os.tmpdir()], { encoding: 'utf8' }).trim();
  } catch {
    /* unknown */
  }
  return {
    cpu: cpus[0]?.model ?? 'unknown',
    cores: cpus.length,
    ram_gb: Math.round(os.totalmem() / 1e9),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    tmp_fs: fsType,
  };
}

// ---------------------------------------------------------------- corpus

function prepareCorpus(o: Options): { dir: string; bytes: number; files: number; generated: boolean; kinds?: unknown } {
  if (o.corpus) {
    if (!fs.statSync(o.corpus).isDirectory()) throw new Error(`${o.corpus} is not a directory`);
    const files = listFiles(o.corpus);
    return { dir: o.corpus, bytes: files.reduce((a, f) => a + f.size, 0), files: files.length, generated: false };
  }
  const dir = path.join(os.tmpdir(), `cairn-bench-corpus-v${CORPUS_VERSION}-${o.sizeMb}MB`);
  const marker = `${dir}.json`;
  if (fs.existsSync(marker) && fs.existsSync(dir)) {
    const s = JSON.parse(fs.readFileSync(marker, 'utf8')) as { files: number; bytes: number; kinds: unknown };
    say(`corpus: reusing ${dir} (${s.files} files, ${(s.bytes / MB).toFixed(0)} MB)`);
    return { dir, bytes: s.bytes, files: s.files, generated: true, kinds: s.kinds };
  }
  fs.rmSync(dir, { recursive: true, force: true });
  fs.rmSync(marker, { force: true });
  say(`corpus: generating ${o.sizeMb} MB under ${dir} (deterministic; kept for later runs)`);
  const t0 = Date.now();
  const s = generateCorpus(dir, Math.floor(o.sizeMb * MB));
  fs.writeFileSync(marker, JSON.stringify(s, null, 2));
  say(`corpus: ${s.files} files in ${s.dirs} directories, ${(s.bytes / MB).toFixed(0)} MB, in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  return { dir, bytes: s.bytes, files: s.files, generated: true, kinds: s.kinds };
}

/** Identifies the compiled Cairn the run used: SHA-256 over dist/src's .js files (names and contents). */
function cairnBuild(): string {
  const root = path.resolve(CAIRN, '..', '..');
  const h = createHash('sha256');
  const walk = (rel: string): void => {
    for (const e of fs.readdirSync(path.join(root, rel), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) walk(r);
      else if (e.name.endsWith('.js')) h.update(r).update('\0').update(fs.readFileSync(path.join(root, r)));
    }
  };
  walk('');
  return h.digest('hex').slice(0, 12);
}

function copyTree(from: string, to: string): void {
  fs.mkdirSync(path.dirname(to), { recursive: true });
  execFileSync('cp', ['-a', from, to]);
}

function sourceBytes(dir: string): number {
  return listFiles(dir).reduce((a, f) => a + f.size, 0);
}

// ---------------------------------------------------------------- tools

interface ToolDriver {
  setup(): Promise<void>;
  backup(label: string): Promise<PhaseResult>;
  restore(target: string): Promise<PhaseResult>;
  stored(): { apparent: number; disk: number; chunksOnly?: number };
  teardown(): Promise<{ boxPeak?: number }>;
}

function must(t: Timed, what: string): Timed {
  if (t.code !== 0) throw new Error(`${what} failed (exit ${t.code}): ${(t.stderr || t.stdout).slice(-2000)}`);
  return t;
}

function phase(t: Timed, bytes: number, extra: Partial<PhaseResult> = {}): PhaseResult {
  return { wall_s: t.wallS, mb_per_s: bytes / MB / t.wallS, bytes, client_peak_rss: t.peakRss, client_cpu_s: t.cpuS, ...extra };
}

interface CairnBackupJson {
  snapshot: string;
  files: number;
  bytes_scanned: number;
  bytes_read: number;
  bytes_new: number;
  bytes_uploaded: number;
  chunks_new: number;
  duration_s: number;
}

/** A cairnd serve with extra node flags (for --cpu-prof). */
function startProfiledDaemon(data: string, nodeArgs: string[], env: NodeJS.ProcessEnv, port: number): Promise<Daemon> {
  return startDaemon(data, { port, env, nodeArgs });
}

class CairnDriver implements ToolDriver {
  private daemon?: Daemon;
  private lastSnapshot = '';
  private readonly data: string;
  private readonly env: NodeJS.ProcessEnv;
  private boxPeakOverall = 0;
  /** node flags for the agent and the box (profiling); empty for measured runs */
  agentNodeArgs: string[] = [];
  boxNodeArgs: string[] = [];

  constructor(dir: string, private readonly src: string) {
    this.data = path.join(dir, 'box');
    this.env = { CAIRN_HOME: path.join(dir, 'agent'), CAIRN_LOG_LEVEL: 'warn' };
  }

  async setup(): Promise<void> {
    await runJson(CAIRND, ['init', '--data', this.data, '--name', 'bench-box', '--hw', 'simulated'], this.env);
    await this.startBox();
    const tok = await runJson<{ token: string }>(CAIRND, ['token', 'create', '--data', this.data, '--ttl', '10m'], this.env);
    await runJson(CAIRN, ['pair', this.daemon!.address, '--token', tok.token, '--name', 'bench-pc'], this.env);
  }

  /** The agent keeps the address it paired with, so a restarted box reuses the first port. */
  private port = 0;

  async startBox(): Promise<void> {
    this.daemon = this.boxNodeArgs.length ? await startProfiledDaemon(this.data, this.boxNodeArgs, this.env, this.port) : await startDaemon(this.data, { env: this.env, port: this.port });
    this.port = this.daemon.port;
  }

  async stopBox(): Promise<void> {
    if (!this.daemon) return;
    this.boxPeakOverall = Math.max(this.boxPeakOverall, readVmHwm(this.daemon.proc.pid!));
    const code = await this.daemon.stop();
    this.daemon = undefined;
    if (code !== 0 && code !== null) throw new Error(`cairnd serve exited with ${code}`);
  }

  private async agent(args: string[], what: string): Promise<{ t: Timed; box: Partial<PhaseResult> }> {
    const pid = this.daemon!.proc.pid!;
    this.boxPeakOverall = Math.max(this.boxPeakOverall, readVmHwm(pid));
    const reset = resetPeakRss(pid);
    const cpu0 = readCpuSeconds(pid);
    const t = must(await timed(process.execPath, [...nodeFlagsOf(CAIRN), ...this.agentNodeArgs, CAIRN, ...args], { env: { ...nodeEnvOf(CAIRN), ...this.env } }), what);
    const boxCpu = readCpuSeconds(pid) - cpu0;
    const boxPeak = readVmHwm(pid);
    this.boxPeakOverall = Math.max(this.boxPeakOverall, boxPeak);
    if (!reset) this.boxPeakOverall = boxPeak;
    return { t, box: { box_peak_rss: boxPeak, ...(Number.isFinite(boxCpu) ? { box_cpu_s: boxCpu } : {}) } };
  }

  async backup(label: string): Promise<PhaseResult> {
    const { t, box } = await this.agent(['backup', this.src, '--source', 'bench', '--json'], `cairn backup (${label})`);
    const j = JSON.parse(t.stdout) as CairnBackupJson;
    this.lastSnapshot = j.snapshot;
    return phase(t, j.bytes_scanned, { ...box, detail: { files: j.files, bytes_read: j.bytes_read, bytes_new: j.bytes_new, bytes_uploaded: j.bytes_uploaded, chunks_new: j.chunks_new, agent_duration_s: j.duration_s } });
  }

  async restore(target: string): Promise<PhaseResult> {
    const { t, box } = await this.agent(['restore', this.lastSnapshot, '--target', target, '--json'], 'cairn restore');
    const j = JSON.parse(t.stdout) as { files: number; bytes: number; failed: number; duration_s: number };
    if (j.failed) throw new Error(`cairn restore reported ${j.failed} failed entries`);
    return phase(t, j.bytes, { ...box, detail: { files: j.files, agent_duration_s: j.duration_s } });
  }

  stored(): { apparent: number; disk: number; chunksOnly: number } {
    // hw-sim holds the simulated hardware's sparse disk images, not backup data.
    const all = treeBytes(this.data, ['hw-sim']);
    return { apparent: all.apparent, disk: all.disk, chunksOnly: treeBytes(path.join(this.data, 'chunks')).apparent };
  }

  async teardown(): Promise<{ boxPeak: number }> {
    await this.stopBox();
    return { boxPeak: this.boxPeakOverall };
  }
}

class ResticDriver implements ToolDriver {
  private readonly repo: string;
  private readonly env: NodeJS.ProcessEnv;
  constructor(dir: string, private readonly src: string) {
    this.repo = path.join(dir, 'repo');
    this.env = { RESTIC_PASSWORD: 'cairn-bench-password', RESTIC_CACHE_DIR: path.join(dir, 'cache'), RESTIC_REPOSITORY: this.repo };
  }
  async setup(): Promise<void> {
    must(await timed('restic', ['init', '--repository-version', '2', '-q'], { env: this.env }), 'restic init');
  }
  async backup(label: string): Promise<PhaseResult> {
    const t = must(await timed('restic', ['backup', '--compression', 'auto', '--host', 'bench', '--json', '.'], { cwd: this.src, env: this.env }), `restic backup (${label})`);
    const summary = t.stdout.split('\n').filter((l) => l.includes('"message_type":"summary"')).pop();
    const s = summary ? (JSON.parse(summary) as { total_bytes_processed: number; files_new: number; files_changed: number; files_unmodified: number; data_added: number }) : undefined;
    return phase(t, s?.total_bytes_processed ?? sourceBytes(this.src), { detail: s && { files_new: s.files_new, files_changed: s.files_changed, files_unmodified: s.files_unmodified, data_added: s.data_added } });
  }
  async restore(target: string): Promise<PhaseResult> {
    const t = must(await timed('restic', ['restore', 'latest', '--target', target, '-q'], { env: this.env }), 'restic restore');
    return phase(t, sourceBytes(target));
  }
  stored(): { apparent: number; disk: number } {
    return treeBytes(this.repo);
  }
  async teardown(): Promise<Record<string, never>> {
    return {};
  }
}

class BorgDriver implements ToolDriver {
  private readonly repo: string;
  private readonly env: NodeJS.ProcessEnv;
  private n = 0;
  constructor(dir: string, private readonly src: string) {
    this.repo = path.join(dir, 'repo');
    this.env = { BORG_PASSPHRASE: 'cairn-bench-password', BORG_BASE_DIR: path.join(dir, 'base'), BORG_RELOCATED_REPO_ACCESS_IS_OK: 'yes' };
  }
  async setup(): Promise<void> {
    must(await timed('borg', ['init', '-e', 'repokey', this.repo], { env: this.env }), 'borg init');
  }
  async backup(label: string): Promise<PhaseResult> {
    this.n++;
    const t = must(await timed('borg', ['create', '--compression', 'lz4', '--json', `${this.repo}::b${this.n}`, '.'], { cwd: this.src, env: this.env }), `borg create (${label})`);
    const j = JSON.parse(t.stdout) as { archive: { stats: { original_size: number; deduplicated_size: number; nfiles: number } } };
    return phase(t, j.archive.stats.original_size, { detail: j.archive.stats });
  }
  async restore(target: string): Promise<PhaseResult> {
    fs.mkdirSync(target, { recursive: true });
    const t = must(await timed('borg', ['extract', `${this.repo}::b${this.n}`], { cwd: target, env: this.env }), 'borg extract');
    return phase(t, sourceBytes(target));
  }
  stored(): { apparent: number; disk: number } {
    return treeBytes(this.repo);
  }
  async teardown(): Promise<Record<string, never>> {
    return {};
  }
}

function driver(tool: ToolName, dir: string, src: string): ToolDriver {
  if (tool === 'cairn') return new CairnDriver(dir, src);
  if (tool === 'restic') return new ResticDriver(dir, src);
  return new BorgDriver(dir, src);
}

// ---------------------------------------------------------------- one run of one tool

let fsNoted = false;

async function runTool(tool: ToolName, run: number, corpus: string, work: string, keep: boolean, fsMode: Options['fsMode'], corpusBytes: number): Promise<{ result: ToolRun; change: ChangeSummary }> {
  const dir = path.join(work, `run${run}-${tool}`);
  const src = path.join(dir, 'source');
  const target = path.join(dir, 'restore');
  fs.rmSync(dir, { recursive: true, force: true });
  // Room for the source, a repository, the restore and the 1% change, with slack.
  const mnt = fsMode === 'fresh' ? freshFs(dir, Math.max(4 * corpusBytes, 2e9) + 2e9, keep) : { mounted: false, why: '--fs dir', release: () => undefined };
  if (!fsNoted) {
    say(mnt.mounted ? 'filesystem: a fresh ext4 (loop device, sparse file in the work dir) for every tool run' : `filesystem: directories under the work dir (no fresh filesystem: ${mnt.why})`);
    fsNoted = true;
  }
  try {
    // On a fresh filesystem nothing is deleted file by file: release() unmounts and drops it whole.
    return await runToolIn(tool, run, corpus, dir, src, target, keep || mnt.mounted);
  } finally {
    mnt.release();
  }
}

async function runToolIn(tool: ToolName, run: number, corpus: string, dir: string, src: string, target: string, keep: boolean): Promise<{ result: ToolRun; change: ChangeSummary }> {
  copyTree(corpus, src);
  const build = tool === 'cairn' ? cairnBuild() : undefined;
  const d = driver(tool, dir, src);
  let change: ChangeSummary | undefined;
  try {
    await d.setup();
    const step = async (label: Phase, f: () => Promise<PhaseResult>): Promise<PhaseResult> => {
      sync();
      const r = await f();
      say(`  ${tool.padEnd(6)} run ${run}  ${PHASE_LABEL[label].padEnd(17)} ${r.wall_s.toFixed(2).padStart(7)} s  ${r.mb_per_s.toFixed(1).padStart(7)} MB/s  client ${(r.client_peak_rss / MB).toFixed(0).padStart(4)} MB ${r.client_cpu_s.toFixed(1).padStart(5)} s CPU${r.box_peak_rss !== undefined ? `  box ${(r.box_peak_rss / MB).toFixed(0)} MB${r.box_cpu_s !== undefined ? ` ${r.box_cpu_s.toFixed(1)} s CPU` : ''}` : ''}`);
      return r;
    };
    const first = await step('first', () => d.backup('first'));
    const storedFirst = d.stored().apparent;
    const nochange = await step('nochange', () => d.backup('no change'));
    change = mutateCorpus(src);
    const changed = await step('change', () => d.backup('1% change'));
    const restore = await step('restore', () => d.restore(target));
    const stored = d.stored();
    const { boxPeak } = await d.teardown();
    const diffs = compareTrees(src, target);
    if (diffs.length) {
      throw new Error(`${tool} restore differs from the source in ${diffs.length} places (kept in ${dir}):\n  ${diffs.slice(0, 20).join('\n  ')}`);
    }
    say(`  ${tool.padEnd(6)} run ${run}  restore verified byte for byte; stored ${(stored.apparent / MB).toFixed(1)} MB`);
    const result: ToolRun = {
      tool, run, phases: { first, nochange, change: changed, restore },
      stored_after_first: storedFirst, stored: stored.apparent, stored_disk: stored.disk, verified: true,
    };
    if (build) result.cairn_build = build;
    if (stored.chunksOnly !== undefined) result.stored_chunks_only = stored.chunksOnly;
    if (boxPeak !== undefined) result.box_peak_rss_overall = boxPeak;
    if (!keep) fs.rmSync(dir, { recursive: true, force: true });
    return { result, change };
  } catch (err) {
    await d.teardown().catch(() => undefined);
    throw err;
  }
}

// ---------------------------------------------------------------- report

interface Row {
  label: string;
  unit: string;
  values: Partial<Record<ToolName, number>>;
  digits: number;
}

function medianOf(runs: ToolRun[], tool: ToolName, f: (r: ToolRun) => number | undefined): number | undefined {
  const xs = runs.filter((r) => r.tool === tool).map(f).filter((x): x is number => x !== undefined);
  return xs.length ? median(xs) : undefined;
}

function buildRows(runs: ToolRun[], tools: ToolName[]): Row[] {
  const rows: Row[] = [];
  const add = (label: string, unit: string, digits: number, f: (r: ToolRun) => number | undefined): void => {
    const values: Partial<Record<ToolName, number>> = {};
    for (const t of tools) {
      const v = medianOf(runs, t, f);
      if (v !== undefined) values[t] = v;
    }
    rows.push({ label, unit, values, digits });
  };
  for (const p of PHASES) {
    add(`${PHASE_LABEL[p]}`, 's', 2, (r) => r.phases[p].wall_s);
    add(`${PHASE_LABEL[p]}`, 'MB/s', 1, (r) => r.phases[p].mb_per_s);
  }
  add('stored after first backup', 'MB', 1, (r) => r.stored_after_first / MB);
  add('stored after 3 backups', 'MB', 1, (r) => r.stored / MB);
  add('stored after 3 backups, du', 'MB', 1, (r) => r.stored_disk / MB);
  // CPU: what the two cores ran out of. Cairn's agent and cairnd share this machine; restic and borg are one process.
  for (const p of PHASES) add(`CPU client, ${PHASE_LABEL[p]}`, 's', 1, (r) => r.phases[p].client_cpu_s);
  for (const p of PHASES) add(`CPU client + box, ${PHASE_LABEL[p]}`, 's', 1, (r) => r.phases[p].client_cpu_s + (r.phases[p].box_cpu_s ?? 0));
  for (const p of PHASES) add(`peak RSS client, ${PHASE_LABEL[p]}`, 'MB', 0, (r) => r.phases[p].client_peak_rss / MB);
  for (const p of PHASES) add(`peak RSS box, ${PHASE_LABEL[p]}`, 'MB', 0, (r) => (r.phases[p].box_peak_rss === undefined ? undefined : r.phases[p].box_peak_rss! / MB));
  add('peak RSS box, whole run', 'MB', 0, (r) => (r.box_peak_rss_overall === undefined ? undefined : r.box_peak_rss_overall / MB));
  return rows;
}

function ratio(a: number | undefined, b: number | undefined): number | undefined {
  return a !== undefined && b !== undefined && b > 0 ? a / b : undefined;
}

function formatTable(rows: Row[], tools: ToolName[]): string {
  const peers = tools.filter((t) => t !== 'cairn');
  const showRatios = tools.includes('cairn');
  const head = ['', 'unit', ...tools.map((t) => (t === 'cairn' ? 'Cairn' : t)), ...(showRatios ? peers.map((p) => `Cairn/${p}`) : [])];
  const body = rows.map((r) => [
    r.label, r.unit,
    ...tools.map((t) => (r.values[t] === undefined ? '—' : r.values[t]!.toFixed(r.digits))),
    ...(showRatios ? peers.map((p) => {
      const x = ratio(r.values.cairn, r.values[p]);
      return x === undefined ? '—' : x.toFixed(2);
    }) : []),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

function markdownTable(rows: Row[], tools: ToolName[]): string {
  const peers = tools.filter((t) => t !== 'cairn');
  const head = ['', ...tools.map((t) => (t === 'cairn' ? 'Cairn' : t)), ...peers.map((p) => `Cairn/${p}`)];
  const out = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`];
  for (const r of rows) {
    const cells = [`${r.label} (${r.unit})`, ...tools.map((t) => (r.values[t] === undefined ? '—' : r.values[t]!.toFixed(r.digits))), ...peers.map((p) => {
      const x = ratio(r.values.cairn, r.values[p]);
      return x === undefined ? '—' : x.toFixed(2);
    })];
    out.push(`| ${cells.join(' | ')} |`);
  }
  return out.join('\n');
}

// ---------------------------------------------------------------- profile

async function profileCairn(corpus: string, work: string, outDir: string, keep: boolean, fsMode: Options['fsMode'], corpusBytes: number): Promise<Record<string, ProfileSummary[]>> {
  const dir = path.join(work, 'profile-cairn');
  fs.rmSync(dir, { recursive: true, force: true });
  const mnt = fsMode === 'fresh' ? freshFs(dir, Math.max(4 * corpusBytes, 2e9) + 2e9, false) : { mounted: false, release: () => undefined };
  try {
    return await profileCairnIn(corpus, dir, outDir, keep || mnt.mounted);
  } finally {
    mnt.release();
  }
}

async function profileCairnIn(corpus: string, dir: string, outDir: string, keep: boolean): Promise<Record<string, ProfileSummary[]>> {
  const src = path.join(dir, 'source');
  fs.rmSync(outDir, { recursive: true, force: true });
  copyTree(corpus, src);
  const d = new CairnDriver(dir, src);
  await d.setup();
  const stages: Record<string, ProfileSummary[]> = {};
  const profDirs = { 'agent-backup': '', 'box-backup': '', 'agent-restore': '', 'box-restore': '' };
  for (const k of Object.keys(profDirs) as (keyof typeof profDirs)[]) {
    profDirs[k] = path.join(outDir, k);
    fs.mkdirSync(profDirs[k], { recursive: true });
  }
  try {
    await d.stopBox();
    d.boxNodeArgs = ['--cpu-prof', `--cpu-prof-dir=${profDirs['box-backup']}`];
    d.agentNodeArgs = ['--cpu-prof', `--cpu-prof-dir=${profDirs['agent-backup']}`];
    await d.startBox();
    sync();
    const b = await d.backup('profiled first');
    say(`  profiled first backup: ${b.wall_s.toFixed(2)} s, ${b.mb_per_s.toFixed(1)} MB/s`);
    await d.stopBox();
    d.boxNodeArgs = ['--cpu-prof', `--cpu-prof-dir=${profDirs['box-restore']}`];
    d.agentNodeArgs = ['--cpu-prof', `--cpu-prof-dir=${profDirs['agent-restore']}`];
    await d.startBox();
    sync();
    const r = await d.restore(path.join(dir, 'restore'));
    say(`  profiled restore: ${r.wall_s.toFixed(2)} s, ${r.mb_per_s.toFixed(1)} MB/s`);
  } finally {
    await d.teardown();
  }
  for (const [k, pd] of Object.entries(profDirs)) {
    const files = fs.readdirSync(pd).filter((f) => f.endsWith('.cpuprofile')).sort();
    stages[k] = files.map((f) => summarize(path.join(pd, f), 15)).sort((a, b) => b.busyMs - a.busyMs);
  }
  if (!keep) fs.rmSync(dir, { recursive: true, force: true });
  return stages;
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  const o = parseArgs(process.argv.slice(2));
  const loadStart = os.loadavg();
  const started = new Date().toISOString();
  ensureTools(o.tools);
  const mach = machine();
  const versions: Record<string, string> = { cairn: JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8')).version as string };
  if (o.tools.includes('restic')) versions.restic = toolVersion('restic', ['version']);
  if (o.tools.includes('borg')) versions.borg = toolVersion('borg', ['--version']);
  say(`Cairn bench — ${started}`);
  say(`machine: ${mach.cpu}, ${mach.cores} cores, ${mach.ram_gb} GB RAM, ${mach.kernel}, node ${mach.node}, ${os.tmpdir()} on ${mach.tmp_fs}`);
  say(`load average at start: ${loadStart.map((x) => x.toFixed(2)).join(' ')} (1/5/15 min)`);
  say(`tools: ${Object.entries(versions).map(([k, v]) => `${k} ${v}`).join('; ')}`);
  say('page cache: warm for every tool (source copied just before its backups; sync before each step; caches not dropped)');
  const corpus = prepareCorpus(o);
  const work = o.work ?? fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-bench-'));
  fs.mkdirSync(work, { recursive: true });
  say(`work dir: ${work}`);

  const runs: ToolRun[] = [];
  let change: ChangeSummary | undefined;
  if (!o.profileOnly) {
    for (let run = 1; run <= o.runs; run++) {
      // Rotate the order so no tool always runs first (or last) while the machine's load drifts.
      const order = o.tools.map((_, i) => o.tools[(i + run - 1) % o.tools.length]);
      say(`run ${run}/${o.runs}: ${order.join(', ')}`);
      for (const tool of order) {
        const r = await runTool(tool, run, corpus.dir, work, o.keep, o.fsMode, corpus.bytes);
        runs.push(r.result);
        change = r.change;
        // Raw figures so far, so an interrupted bench still leaves what it measured.
        if (o.json) fs.writeFileSync(o.json, JSON.stringify({ partial: true, started, machine: mach, load_average_start: loadStart, runs }, null, 2) + '\n');
      }
    }
  }
  const loadEnd = os.loadavg();

  let profile: Record<string, ProfileSummary[]> | undefined;
  if (o.profile) {
    say(`profiling Cairn (node --cpu-prof) into ${o.profile}`);
    profile = await profileCairn(corpus.dir, work, o.profile, o.keep, o.fsMode, corpus.bytes);
  }

  const rows = buildRows(runs, o.tools);
  if (runs.length) {
    say('');
    say(`Medians of ${o.runs} run(s); corpus ${corpus.files} files, ${(corpus.bytes / MB).toFixed(0)} MB${change ? `; 1% change: ${change.appended} appends, ${change.rewritten} in-place rewrites, ${change.created} new files, ${change.deleted} deleted, ${(change.bytesChanged / MB).toFixed(1)} MB written` : ''}.`);
    say('MB/s = source bytes as the tool counts them (backups) or restored bytes (restore) / wall time of the client process, startup included.');
    say('Ratios are Cairn/peer of the figure on that line: below 1 is better for s, MB and RSS, above 1 is better for MB/s.');
    say('Client = the cairn agent, restic or borg; box = cairnd (VmHWM during that step).');
    say('CPU = user + system seconds of all threads; for Cairn "client + box" adds what cairnd used during the step.');
    say('');
    say(formatTable(rows, o.tools));
    say('');
    say(`load average at start ${loadStart.map((x) => x.toFixed(2)).join(' ')}, at end ${loadEnd.map((x) => x.toFixed(2)).join(' ')}`);
    say('All restores verified byte for byte against their source.');
  }
  if (profile) {
    for (const [stage, sums] of Object.entries(profile)) {
      say('');
      say(`== profile: ${stage}`);
      for (const s of sums) say(formatSummary({ ...s, top: s.top.slice(0, 12) }));
    }
  }
  if (o.json) {
    const out = {
      started, machine: mach, versions, load_average_start: loadStart, load_average_end: loadEnd,
      page_cache: 'warm', runs_requested: o.runs,
      corpus: { path: corpus.dir, generated: corpus.generated, files: corpus.files, bytes: corpus.bytes, kinds: corpus.kinds, version: CORPUS_VERSION },
      change,
      medians: rows.map((r) => ({ label: r.label, unit: r.unit, ...r.values, ...Object.fromEntries(o.tools.filter((t) => t !== 'cairn').map((p) => [`cairn_over_${p}`, ratio(r.values.cairn, r.values[p]) ?? null])) })),
      markdown: markdownTable(rows, o.tools),
      runs,
      profile,
    };
    fs.writeFileSync(o.json, JSON.stringify(out, null, 2) + '\n');
    say(`JSON written to ${o.json}`);
  }
  if (!o.keep && !o.work) fs.rmSync(work, { recursive: true, force: true });
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stdout.write(`BENCH FAILED: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
