import { EventEmitter } from 'node:events';
import path from 'node:path';
import { Clock, systemClock } from './clock';
import { HostPaths, hostPaths } from './host-paths';
import { HwConfig, HwProfile, HW_PROFILES, DEFAULT_POLL_MS } from './config';
import { Raid, RaidStatus, MdadmRaid } from './raid';
import { RaidEvent, RaidWatch, watchRaid } from './raid-watch';
import { Disks, LinuxDisks } from './disks';
import { Leds, PatternLeds, nullLedDriver, gpioLedDriver, sysfsLedDriver, sysfsLedsPresent, DEFAULT_LED_PINS, DEFAULT_SYSFS_LED_NAMES, DEFAULT_IDENTIFY_MS, LedDriver } from './leds';
import { Button, gpioButtonInput, DEFAULT_BUTTON_PIN } from './button';
import { BoxHwStatus, BoxState } from './box-state';
import { Privileged, directPrivileged, helperPrivileged } from './privileged';
import { unprivilegedHelper } from './helper-socket';
import { CommandRunner, execRunner } from './runner';
import { openGpio } from './gpio';
import { SimulatedBox, SimulatedDisks, SimulatedRaid } from './sim';
import { CairnError } from '../core/errors';

/**
 * The hardware layer's front door. cairnd calls createHardware() once (in `serve`, with
 * watch: true) or per request (the `status` admin op); everything else in src/hw is reached
 * through the object it returns.
 */
export interface HardwareOptions {
  profile: HwProfile;
  /** Directory for the layer's own state; the simulated profile keeps its disks in <stateDir>/hw-sim. */
  stateDir: string;
  config?: HwConfig;
  /** Poll RAID and disks in the background and run the button (cairnd serve). Default false. */
  watch?: boolean;
  clock?: Clock;
  runner?: CommandRunner;
  privileged?: Privileged;
}

export interface HardwareEvents {
  /** Every poll that changed something, with what changed. */
  raid: [RaidStatus, RaidEvent[]];
  status: [BoxHwStatus];
  /** Short press of the front button: the LEDs identify the box; show status on the console. */
  'status-requested': [];
  /** Long press: the daemon should shut the box down cleanly. Nothing here shuts down. */
  'shutdown-requested': [];
  error: [Error];
}

export interface Hardware extends EventEmitter<HardwareEvents> {
  readonly profile: HwProfile;
  readonly raid: Raid;
  readonly disks: Disks;
  readonly leds: Leds;
  readonly button: Button | null;
  readonly sim: SimulatedBox | null;
  status(): Promise<BoxHwStatus>;
  jobStarted(id: string, kind: string): void;
  jobFinished(id: string): void;
  reportError(source: string, message: string): void;
  clearError(source: string): void;
  identify(durationMs?: number): void;
  stop(): void;
}

export function simDir(stateDir: string): string {
  return path.join(stateDir, 'hw-sim');
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

function choosePrivileged(o: HardwareOptions, paths: HostPaths, runner: CommandRunner): Privileged {
  if (o.privileged) return o.privileged;
  if (o.config?.helperCommand && o.config.helperCommand.length > 0) return helperPrivileged({ runner, command: o.config.helperCommand });
  if (isRoot()) return directPrivileged({ runner, paths });
  return unprivilegedHelper(runner, path.join(__dirname, 'disk-helper.js'));
}

function chooseLeds(o: HardwareOptions, paths: HostPaths): LedDriver {
  const cfg = o.config?.leds ?? {};
  const names = { ...DEFAULT_SYSFS_LED_NAMES, ...(cfg.sysfsNames ?? {}) };
  const driver = cfg.driver ?? (o.profile === 'raspberry-pi' ? 'gpio' : o.profile === 'linux' && sysfsLedsPresent(paths, names).length > 0 ? 'sysfs' : 'null');
  if (driver === 'gpio') return gpioLedDriver(openGpio({ paths, mock: o.config?.gpioMock }), { ...DEFAULT_LED_PINS, ...(cfg.pins ?? {}) });
  if (driver === 'sysfs') return sysfsLedDriver(paths, names);
  return nullLedDriver();
}

class HardwareImpl extends EventEmitter<HardwareEvents> implements Hardware {
  readonly profile: HwProfile;
  readonly raid: Raid;
  readonly disks: Disks;
  readonly leds: Leds;
  readonly button: Button | null;
  readonly sim: SimulatedBox | null;
  private readonly box: BoxState;
  private watch: RaidWatch | null = null;
  private stopped = false;
  private readonly identifyMs: number;

  constructor(o: HardwareOptions) {
    super();
    if (!HW_PROFILES.includes(o.profile)) throw new CairnError('CAIRN_USAGE', `unknown hardware profile "${String(o.profile)}"; use linux, raspberry-pi or simulated`);
    const clock = o.clock ?? systemClock();
    const paths = hostPaths(o.config?.hostRoot ?? '/');
    const runner = o.runner ?? execRunner();
    this.profile = o.profile;
    this.identifyMs = o.config?.leds?.identifyMs ?? DEFAULT_IDENTIFY_MS;
    if (o.profile === 'simulated') {
      const sc = o.config?.simulated ?? {};
      this.sim = new SimulatedBox({
        dir: simDir(o.stateDir),
        clock,
        disks: sc.disks,
        diskSizeBytes: sc.diskSizeMiB !== undefined ? Math.round(sc.diskSizeMiB * 1048576) : undefined,
        rebuildBytesPerSec: sc.rebuildMiBps !== undefined ? Math.round(sc.rebuildMiBps * 1048576) : undefined,
        level: sc.level,
      });
      this.raid = new SimulatedRaid(this.sim);
      this.disks = new SimulatedDisks(this.sim);
    } else {
      const privileged = choosePrivileged(o, paths, runner);
      this.sim = null;
      this.raid = new MdadmRaid({ paths, privileged });
      this.disks = new LinuxDisks({ paths, clock, privileged, smartTtlMs: o.config?.smartTtlMs });
    }
    this.leds = new PatternLeds(chooseLeds(o, paths), clock);
    this.box = new BoxState({ raid: this.raid, disks: this.disks, leds: this.leds, clock, profile: o.profile });

    const bcfg = o.config?.button ?? {};
    if (bcfg.enabled ?? o.profile === 'raspberry-pi') {
      const gpio = openGpio({ paths, mock: o.config?.gpioMock });
      this.button = new Button({ read: gpioButtonInput(gpio, bcfg.pin ?? DEFAULT_BUTTON_PIN), clock, debounceMs: bcfg.debounceMs, longPressMs: bcfg.longPressMs });
      this.button.on('press', () => {
        this.identify();
        this.emit('status-requested');
      });
      this.button.on('long-press', () => this.emit('shutdown-requested'));
    } else {
      this.button = null;
    }

    if (o.watch) {
      this.button?.start();
      this.watch = watchRaid(this.raid, {
        clock,
        intervalMs: o.config?.pollIntervalMs ?? DEFAULT_POLL_MS,
        onChange: (status, events) => {
          this.emit('raid', status, events);
          void this.status().then(
            (s) => this.emit('status', s),
            () => undefined,
          );
        },
        // an 'error' event with no listener would throw: a hardware hiccup must not kill cairnd
        onError: (err) => {
          if (this.listenerCount('error') > 0) this.emit('error', err instanceof Error ? err : new Error(String(err)));
        },
      });
      void this.watch.poll();
    }
  }

  status(): Promise<BoxHwStatus> {
    return this.box.refresh();
  }

  jobStarted(id: string, kind: string): void {
    this.box.jobStarted(id, kind);
  }

  jobFinished(id: string): void {
    this.box.jobFinished(id);
  }

  reportError(source: string, message: string): void {
    this.box.reportError(source, message);
  }

  clearError(source: string): void {
    this.box.clearError(source);
  }

  identify(durationMs?: number): void {
    this.leds.identify(durationMs ?? this.identifyMs);
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.watch?.stop();
    this.button?.stop();
    this.leds.close();
  }
}

export function createHardware(opts: HardwareOptions): Hardware {
  return new HardwareImpl(opts);
}

export { runHwCommand } from './hw-command';
export type { BoxHwStatus, BoxHealth, BoxJob, BoxError } from './box-state';
export type { Raid, RaidStatus, RaidArray, RaidMember } from './raid';
export type { RaidEvent } from './raid-watch';
export type { Disks, DiskInfo, DiskClass } from './disks';
export type { Leds, LedPattern, LedName } from './leds';
export type { HwConfig, HwProfile } from './config';
export { HwError } from './errors';
export type { HwErrorCode } from './errors';
export { Button } from './button';
