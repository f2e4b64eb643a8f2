import fs from 'node:fs';
import path from 'node:path';
import { CairnError } from '../core/errors';
import { Clock, systemClock } from './clock';
import { HwConfig, HwProfile, HW_PROFILES } from './config';
import { BoxHwStatus } from './box-state';
import { SimState, SimulatedBox, simArrayState } from './sim';
import type { DiskInfo } from './disks';

/**
 * `cairnd hw ...`: the hardware commands of the daemon's CLI. Returns the text to print
 * (JSON when opts.json). cairnd routes `cairnd hw <args>` here.
 *
 *   cairnd hw status                         the box's hardware status
 *   cairnd hw simulate status                the simulated box: array, bays, LED, events
 *   cairnd hw simulate fail-disk N           the disk in bay N dies
 *   cairnd hw simulate replace-disk N        a new disk goes into bay N; the array rebuilds
 *   cairnd hw simulate tick [SECONDS]        simulated time passes (default 10 s)
 *   cairnd hw simulate reset                 a fresh, clean simulated box
 */
export const HW_USAGE = [
  'cairnd hw status [--profile linux|raspberry-pi|simulated] [--json]',
  'cairnd hw simulate status|reset [--json]',
  'cairnd hw simulate fail-disk N [--json]',
  'cairnd hw simulate replace-disk N [--json]',
  'cairnd hw simulate tick [SECONDS] [--json]',
].join('\n       ');

export interface HwCommandOptions {
  stateDir: string;
  json: boolean;
  /** Default: 'simulated' when <stateDir>/hw-sim exists, else 'linux'. */
  profile?: HwProfile;
  config?: HwConfig;
  clock?: Clock;
}

function usage(msg: string): CairnError {
  return new CairnError('CAIRN_USAGE', `${msg}\nusage: ${HW_USAGE}`);
}

function bayArg(v: string | undefined, cmd: string): number {
  if (v === undefined || !/^\d{1,2}$/.test(v)) throw usage(`${cmd} takes a bay number, e.g. "cairnd hw simulate ${cmd} 2"`);
  return Number(v);
}

export async function runHwCommand(argv: string[], opts: HwCommandOptions): Promise<string> {
  // Imported here, not at the top: index.ts re-exports this module.
  const { createHardware, simDir } = await import('./index');
  const args = argv.filter((a) => a !== '--json');
  const json = opts.json || argv.includes('--json');
  const clock = opts.clock ?? systemClock();
  let profile = opts.profile;
  const pi = args.indexOf('--profile');
  if (pi >= 0) {
    const p = args[pi + 1];
    if (!p || !(HW_PROFILES as readonly string[]).includes(p)) throw usage(`--profile takes one of ${HW_PROFILES.join(', ')}`);
    profile = p as HwProfile;
    args.splice(pi, 2);
  }
  const [cmd, sub, ...rest] = args;

  if (cmd === undefined || cmd === 'help' || cmd === '--help') return `usage: ${HW_USAGE}\n`;

  if (cmd === 'status') {
    if (sub !== undefined) throw usage(`unexpected argument "${sub}"`);
    const p = profile ?? (fs.existsSync(path.join(simDir(opts.stateDir), 'state.json')) ? 'simulated' : 'linux');
    const hw = createHardware({ profile: p, stateDir: opts.stateDir, config: { ...opts.config, leds: { driver: 'null', ...(opts.config?.leds ?? {}) } }, clock });
    try {
      const st = await hw.status();
      return json ? JSON.stringify(st, null, 2) + '\n' : formatStatus(st);
    } finally {
      hw.stop();
    }
  }

  if (cmd !== 'simulate') throw usage(`unknown hw command "${cmd}"`);
  const sc = opts.config?.simulated ?? {};
  const box = new SimulatedBox({
    dir: simDir(opts.stateDir),
    clock,
    disks: sc.disks,
    diskSizeBytes: sc.diskSizeMiB !== undefined ? Math.round(sc.diskSizeMiB * 1048576) : undefined,
    rebuildBytesPerSec: sc.rebuildMiBps !== undefined ? Math.round(sc.rebuildMiBps * 1048576) : undefined,
    level: sc.level,
  });
  let message: string;
  switch (sub) {
    case 'status':
    case undefined:
      if (rest.length > 0) throw usage(`unexpected argument "${rest[0]}"`);
      box.read();
      message = '';
      break;
    case 'reset':
      box.reset();
      message = 'simulated box reset: all disks new and the array clean';
      break;
    case 'fail-disk': {
      const bay = bayArg(rest[0], 'fail-disk');
      box.failDisk(bay);
      message = `disk ${bay} failed`;
      break;
    }
    case 'replace-disk': {
      const bay = bayArg(rest[0], 'replace-disk');
      box.replaceDisk(bay);
      message = `disk ${bay} replaced`;
      break;
    }
    case 'tick': {
      const secs = rest[0] === undefined ? 10 : Number(rest[0]);
      if (rest[0] !== undefined && !/^\d+(\.\d+)?$/.test(rest[0])) throw usage('tick takes a number of seconds');
      box.tick(secs);
      message = `${secs} simulated seconds passed`;
      break;
    }
    default:
      throw usage(`unknown simulate command "${sub}"`);
  }
  const hw = createHardware({ profile: 'simulated', stateDir: opts.stateDir, config: { ...opts.config, leds: { driver: 'null' } }, clock });
  try {
    const st = await hw.status();
    const state = box.read();
    if (json) return JSON.stringify({ message: message || undefined, status: st, simulation: state }, null, 2) + '\n';
    return (message ? `${message}\n\n` : '') + formatSim(box, state, st);
  } finally {
    hw.stop();
  }
}

function human(bytes: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${u[i]}`;
}

function formatSim(box: SimulatedBox, s: SimState, st: BoxHwStatus): string {
  const { state } = simArrayState(s);
  const arr = st.raid.arrays[0];
  const lines: string[] = [];
  lines.push(`simulated box in ${box.dir}`);
  let head = `array ${s.md} (${s.level}, ${s.bays} bays): ${state}`;
  if (arr?.sync) head += ` ${arr.sync.percent}%${arr.sync.finishMinutes !== null ? `, about ${arr.sync.finishMinutes} min left` : ''}`;
  lines.push(head);
  for (let bay = 1; bay <= s.bays; bay++) {
    const d = s.disks.find((x) => x.bay === bay);
    lines.push(d ? `  bay ${bay}  ${d.serial}  ${d.state.padEnd(10)}  health ${d.health}` : `  bay ${bay}  (empty)`);
  }
  lines.push(`box: ${st.summary}`);
  lines.push(`LED: ${st.led.pattern}`);
  if (s.events.length > 0) {
    lines.push('recent events:');
    for (const e of s.events.slice(-5)) lines.push(`  ${new Date(e.at).toISOString()}  ${e.message}`);
  }
  return lines.join('\n') + '\n';
}

function diskLine(d: DiskInfo): string {
  const mounts = d.mountpoints.length > 0 ? ` mounted ${d.mountpoints.join(',')}` : '';
  const arrays = d.arrays.length > 0 ? ` in ${d.arrays.join(',')}` : '';
  const health = d.health.health === 'unknown' ? 'health unknown' : `health ${d.health.health}`;
  return `  ${d.name.padEnd(10)} ${human(d.sizeBytes).padStart(10)}  ${d.class.padEnd(8)} ${health}${arrays}${mounts}${d.backingFile ? ` (${d.backingFile})` : ''}`;
}

export function formatStatus(st: BoxHwStatus): string {
  const lines: string[] = [];
  lines.push(`hardware (${st.profile}): ${st.summary}`);
  for (const r of st.reasons.slice(1)) lines.push(`  - ${r}`);
  if (!st.raid.available) lines.push(`RAID: ${st.raid.note}`);
  else if (st.raid.arrays.length === 0) lines.push(`RAID: no arrays${st.raid.note ? ` (${st.raid.note})` : ''}`);
  for (const a of st.raid.arrays) {
    const members = a.members.map((m) => `${m.device}${m.state === 'active' ? '' : `(${m.state})`}`).join(' ');
    lines.push(`RAID ${a.device} ${a.level ?? ''} ${a.state}${a.sync ? ` ${a.sync.action} ${a.sync.percent}%` : ''}: ${members}`);
  }
  lines.push('disks:');
  if (st.disks.length === 0) lines.push('  (none found)');
  for (const d of st.disks) lines.push(diskLine(d));
  lines.push(`LED: ${st.led.pattern} (${st.led.driver})`);
  return lines.join('\n') + '\n';
}

