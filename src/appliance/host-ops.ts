import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import si from 'systeminformation';
import { CairnError, errorMessage } from '../core/errors';
import { createHardware, Hardware, HwProfile, DiskInfo, RaidArray } from '../hw';
import { chooseLevel, RaidLevel, RAID_LEVELS } from '../hw/mdadm-args';
import { directPrivileged, Privileged } from '../hw/privileged';
import { unprivilegedHelper } from '../hw/helper-socket';
import { hostPaths } from '../hw/host-paths';
import { execRunner } from '../hw/runner';
import { activateBox } from './activation';
import { AdminArgs, AdminOp } from './admin/ops';
import { Box, readBoxConfig } from './box';
import { parseRetention, settingsOf, splitAddress } from './box-settings';
import { Logger, silentLogger } from '../core/log';
import { DataDir } from './data-dir';
import { fingerprint, isInitialized } from './identity';

/**
 * Host operations: what the console needs whether or not the box is activated -- what the box
 * is, its network, its disks, creating the data array, activation ('box.activate', which
 * returns the recovery key once: activation happens inside cairnd, the console holds no
 * keys), identify and power. Setup mode (setup-mode.ts) answers with these only; for an
 * activated box they are registered as ordinary admin ops (hostOpsForBox), so the console,
 * the `cairnd` commands and setup mode share one implementation.
 */
export interface HostContext {
  dir: DataDir;
  profile: HwProfile;
  box: Box | undefined;
  hw: Hardware;
  mode: 'setup' | 'serving' | 'direct';
  /** Setup mode only: called once activation has written the keys. */
  onActivated?: (box: Box) => void;
  /** Setup mode only: the array the wizard created before the catalog existed (logged at activation). */
  arrayEvent?: Record<string, unknown>;
  /** the daemon's logger (setup mode); a recovered box logs its pull there */
  log?: Logger;
}

type HostOp = (ctx: HostContext, args: AdminArgs) => unknown;

export interface DiskPlan {
  disks: { name: string; device: string; sizeBytes: number; model: string | null; serial: string | null; class: string; health: string; usable: boolean; why: string | null }[];
  devices: string[];
  levels: RaidLevel[];
  level: RaidLevel | null;
  usableBytes: number | null;
  existing: { name: string; level: string | null; state: string; members: number } | null;
  /** What the array operation needs repeated (the hardware layer's rule): the member list. */
  confirm: string | null;
  note: string | null;
}

/** The levels offered for n disks: RAID 1 for two; RAID 5 for three; RAID 6, 10 or 5 for four and more. */
export function levelsFor(n: number): RaidLevel[] {
  if (n < 2) return [];
  if (n === 2) return ['raid1'];
  if (n === 3) return ['raid5'];
  return ['raid6', 'raid10', 'raid5'];
}

export function usableBytes(level: RaidLevel, sizes: number[]): number {
  const n = sizes.length;
  const min = Math.min(...sizes);
  const data = level === 'raid1' ? 1 : level === 'raid5' ? n - 1 : level === 'raid6' ? n - 2 : Math.floor(n / 2);
  return data * min;
}

/** Pure: which disks can take part in a new array, and the proposed layout. */
export function planArray(profile: HwProfile, disks: DiskInfo[], arrays: RaidArray[], requested?: RaidLevel): DiskPlan {
  // The simulated box builds its one array from all its healthy bays; a real box uses free disks only.
  const rows = disks.map((d) => {
    let why: string | null = null;
    if (d.health.health === 'failing') why = 'failing (SMART)';
    else if (profile !== 'simulated' && d.class !== 'free') why = d.class === 'system' ? 'holds the system' : d.class === 'member' ? `member of ${d.arrays.join(', ')}` : 'in use';
    return { name: d.name, device: d.device, sizeBytes: d.sizeBytes, model: d.model, serial: d.serial, class: d.class, health: d.health.health, usable: why === null, why };
  });
  const usable = rows.filter((r) => r.usable);
  const levels = levelsFor(usable.length);
  const level = levels.length === 0 ? null : requested && levels.includes(requested) ? requested : levels[0];
  const a = arrays[0];
  const existing = a ? { name: a.name, level: a.level, state: a.state, members: a.members.length } : null;
  let note: string | null = null;
  if (!level) note = existing ? `no free disks; the existing array ${existing.name} will be used as it is` : `an array needs at least 2 free disks, found ${usable.length}: add disks and rescan`;
  return {
    disks: rows,
    devices: level ? usable.map((r) => r.device) : [],
    levels,
    level,
    usableBytes: level ? usableBytes(level, usable.map((r) => r.sizeBytes)) : null,
    existing,
    confirm: level ? usable.map((r) => r.device).join(',') : null,
    note,
  };
}

function privilegedFor(): Privileged {
  if (typeof process.getuid === 'function' && process.getuid() === 0) return directPrivileged({ runner: execRunner(), paths: hostPaths('/') });
  return unprivilegedHelper(execRunner(), path.join(__dirname, '..', 'hw', 'disk-helper.js'));
}

async function withTimeout<T>(p: Promise<T>, ms: number, fallback: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<T>((resolve) => {
    timer = setTimeout(() => resolve(fallback), ms);
  });
  try {
    return await Promise.race([p, t]);
  } finally {
    clearTimeout(timer);
  }
}

export interface NetworkSummary {
  hostname: string;
  gateway: string | null;
  interfaces: { name: string; mac: string; ip4: string | null; ip6: string | null; state: string; speedMbps: number | null; default: boolean }[];
}

async function networkSummary(): Promise<NetworkSummary> {
  const [ifaces, gateway] = await Promise.all([
    withTimeout(si.networkInterfaces().then((r) => (Array.isArray(r) ? r : [r])), 8000, [] as si.Systeminformation.NetworkInterfacesData[]),
    withTimeout(si.networkGatewayDefault(), 8000, ''),
  ]);
  return {
    hostname: os.hostname(),
    gateway: gateway || null,
    interfaces: ifaces
      .filter((i) => !i.internal)
      .map((i) => ({ name: i.iface, mac: i.mac, ip4: i.ip4 || null, ip6: i.ip6 || null, state: i.operstate || 'unknown', speedMbps: i.speed ?? null, default: !!i.default })),
  };
}

function serveInfo(dir: DataDir): { host?: string; port?: number; mode?: string } | null {
  try {
    return JSON.parse(fs.readFileSync(dir.serveInfo, 'utf8')) as { host?: string; port?: number; mode?: string };
  } catch {
    return null;
  }
}

function str(args: AdminArgs, key: string): string {
  const v = args[key];
  if (typeof v !== 'string' || v.length === 0 || v.length > 4096) throw new CairnError('CAIRN_USAGE', `argument ${key} is required`);
  return v;
}

let activating = false;

export const hostOps: Record<string, HostOp> = {
  'setup.state'(ctx) {
    const b = ctx.box;
    return {
      activated: b !== undefined,
      mode: ctx.mode,
      profile: ctx.profile,
      data_dir: ctx.dir.root,
      hostname: os.hostname(),
      name: b?.identity.name ?? null,
      box: b?.identity.boxId ?? null,
      fingerprint: b ? fingerprint(b.identity.spkiSha256) : null,
      serve: serveInfo(ctx.dir),
    };
  },

  'network.summary'() {
    return networkSummary();
  },

  'hw.status'(ctx) {
    return ctx.hw.status();
  },

  async 'disks.plan'(ctx, args) {
    const level = typeof args.level === 'string' && (RAID_LEVELS as readonly string[]).includes(args.level) ? (args.level as RaidLevel) : undefined;
    const [disks, raid] = await Promise.all([ctx.hw.disks.list(), ctx.hw.raid.status()]);
    return planArray(ctx.profile, disks, raid.arrays, level);
  },

  /**
   * Creates (and on real hardware formats and mounts) the data array. `confirm` repeats the
   * member list, as the hardware layer requires for anything that erases disks; the console
   * asks the person to type the box name before it sends this.
   */
  async 'array.create'(ctx, args) {
    const devices = args.devices;
    if (!Array.isArray(devices) || devices.length < 2 || devices.some((d) => typeof d !== 'string')) throw new CairnError('CAIRN_USAGE', 'devices takes the list of disks for the array');
    const list = devices as string[];
    const level = chooseLevel(list.length, typeof args.level === 'string' ? (args.level as RaidLevel) : undefined);
    const confirm = str(args, 'confirm');
    const md = ctx.profile === 'simulated' ? '/dev/md0' : typeof args.md === 'string' ? args.md : '/dev/md0';
    await ctx.hw.raid.create({ md, devices: list, level, confirm });
    if (ctx.profile !== 'simulated') {
      const p = privilegedFor();
      for (const op of [{ op: 'mkfs' as const, md, confirm: md }, { op: 'mount' as const, md }]) {
        const r = await p.run(op);
        if (r.code !== 0) throw new CairnError('CAIRN_HW_COMMAND_FAILED', `${op.op} ${md} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim().split('\n').slice(-2).join(' | ')}`);
      }
    }
    ctx.box?.catalog.event('array.created', { md, level, devices: list.length });
    return { md, level, devices: list, formatted: ctx.profile !== 'simulated' };
  },

  async 'box.activate'(ctx, args) {
    if (ctx.box || isInitialized(ctx.dir)) {
      throw new CairnError('CAIRN_STORE_ALREADY_INITIALIZED', `${ctx.dir.root} already holds an activated box; refusing to overwrite its keys`);
    }
    if (activating) throw new CairnError('CAIRN_SETUP_MODE', 'an activation is already running');
    activating = true;
    try {
      const role = args.role === 'secondary' ? 'secondary' : 'primary';
      // `cairnd init --hw P` may name the profile; the console wizard uses the daemon's.
      const hw = typeof args.hw === 'string' ? (args.hw as HwProfile) : ctx.profile;
      // A secondary is linked after activation ('secondary.add'), never stored here: an older
      // console's `secondary` argument is ignored (its token would otherwise sit in config.json).
      const settings = args.retention_default === undefined ? {} : { retention_default: parseRetention(args.retention_default) };
      const a = await activateBox(ctx.dir, { name: str(args, 'name'), role, hw, settings });
      if (ctx.arrayEvent) a.box.catalog.event('array.created', ctx.arrayEvent);
      // Loaded here, not at the top: console-ops needs ops.ts, which registers these host ops.
      const { syncRetentionDefault } = await import('./admin/console-ops');
      await syncRetentionDefault(a.box, settingsOf(readBoxConfig(ctx.dir)).retention_default);
      if (ctx.onActivated) ctx.onActivated(a.box);
      else a.box.close();
      return { ...a.result, serving: ctx.onActivated ? 'starting' : 'not running' };
    } finally {
      activating = false;
    }
  },

  /**
   * "Restore a box" (console wizard): rebuilds a dead primary on this fresh data directory from
   * its secondary with the recovery key (secondary/recover.ts, the code behind `cairnd recover`),
   * then hands the opened box over exactly as activation does. The pull of the data runs before
   * the reply; if it stops, the reply says why and `cairnd serve` resumes it in the background.
   */
  async 'box.recover'(ctx, args) {
    if (ctx.box || isInitialized(ctx.dir)) {
      throw new CairnError('CAIRN_STORE_ALREADY_INITIALIZED', `${ctx.dir.root} already holds an activated box; a box is restored on a fresh one`);
    }
    if (activating) throw new CairnError('CAIRN_SETUP_MODE', 'an activation or a restore is already running');
    const address = str(args, 'address');
    const { host, port } = splitAddress(address);
    const recoveryKey = str(args, 'recovery_key');
    const pull = args.pull !== false;
    activating = true;
    try {
      const { recoverBox } = await import('./secondary/recover');
      const log = ctx.log ?? silentLogger;
      const { box, result } = await recoverBox(ctx.dir.root, { host, port, recoveryKey, hw: ctx.profile, pull, log });
      if (ctx.arrayEvent) box.catalog.event('array.created', ctx.arrayEvent);
      if (result.pull_error) log.warn('recover.pull_stopped', { err: result.pull_error, note: 'cairnd serve resumes the pull in the background' });
      if (ctx.onActivated) ctx.onActivated(box);
      else box.close();
      return { ...result, serving: ctx.onActivated ? 'starting' : 'not running' };
    } catch (err) {
      ctx.log?.warn('recover.failed', { err: errorMessage(err) });
      throw err;
    } finally {
      activating = false;
    }
  },

  'identify'(ctx, args) {
    const seconds = args.seconds === undefined ? 30 : Number(args.seconds);
    if (!Number.isInteger(seconds) || seconds < 1 || seconds > 600) throw new CairnError('CAIRN_USAGE', 'identify lasts 1 to 600 seconds');
    ctx.hw.identify(seconds * 1000);
    return { identifying: true, seconds, led: ctx.hw.leds.kind };
  },

  /**
   * Clean shutdown or reboot. The privileged disk helper has no power command, so a real box
   * asks systemd (logind lets the cairn user power off the box it runs on; see docs/console.md).
   * The simulated profile does nothing and says so.
   */
  async 'box.power'(ctx, args) {
    const action = str(args, 'action');
    if (action !== 'shutdown' && action !== 'reboot') throw new CairnError('CAIRN_USAGE', 'action is shutdown or reboot');
    if (args.confirm !== action) throw new CairnError('CAIRN_HW_CONFIRM_REQUIRED', `"${action}" stops every backup in progress; repeat the action as confirmation: confirm "${action}"`);
    ctx.box?.catalog.event(`box.${action}`, { profile: ctx.profile });
    if (ctx.profile === 'simulated') return { done: false, message: `simulated profile: a real box would ${action === 'shutdown' ? 'shut down' : 'reboot'} now; nothing was done` };
    const r = await execRunner().run('/usr/bin/systemctl', [action === 'shutdown' ? 'poweroff' : 'reboot', '--no-wall'], { timeoutMs: 30_000 });
    if (r.code !== 0) throw new CairnError('CAIRN_HW_COMMAND_FAILED', `systemctl ${action === 'shutdown' ? 'poweroff' : 'reboot'} failed (exit ${r.code}): ${(r.stderr || r.stdout).trim()}`);
    return { done: true, message: action === 'shutdown' ? 'the box is shutting down' : 'the box is rebooting' };
  },
};

/** The host operations as ordinary admin ops of an activated box (cairnd serve, or a one-shot CLI run). */
export function hostOpsForBox(): Record<string, AdminOp> {
  const out: Record<string, AdminOp> = {};
  for (const [name, fn] of Object.entries(hostOps)) {
    out[name] = async (box, args) => {
      const own = box.hw === undefined;
      const hw = box.hw ?? createHardware({ profile: box.config.hw_profile, stateDir: box.dir.root });
      try {
        return await fn({ dir: box.dir, profile: box.config.hw_profile, box, hw, mode: own ? 'direct' : 'serving' }, args);
      } finally {
        if (own) hw.stop();
      }
    };
  }
  return out;
}

