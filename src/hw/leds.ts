import fs from 'node:fs';
import path from 'node:path';
import { Clock, TimerHandle } from './clock';
import { HostPaths } from './host-paths';
import { GpioHandle } from './gpio';

/**
 * Front-panel LEDs. Three lights -- status (green), activity (blue), fault (amber/red) -- and
 * a small set of patterns that the box state chooses from. One Leds interface; the pattern
 * engine is shared and drives a LedDriver (GPIO pins through rpio, /sys/class/leds, or
 * nothing). Timing comes from the injected Clock, so tests step through blinks exactly.
 *
 *   pattern    status        activity          fault
 *   off        off           off               off
 *   idle       on            off               off
 *   backup     on            blink 0.5s/0.5s   off
 *   attention  on            off               blink 1s/1s     (degraded, rebuilding, disk failing)
 *   error      off           off               on              (array failed, hardware error)
 *   identify   blink 0.25s   blink 0.25s       blink 0.25s     (all together: "this box")
 */
export type LedName = 'status' | 'activity' | 'fault';
export const LED_NAMES: readonly LedName[] = ['status', 'activity', 'fault'];
export type LedPattern = 'off' | 'idle' | 'backup' | 'attention' | 'error' | 'identify';
export const LED_PATTERNS: readonly LedPattern[] = ['off', 'idle', 'backup', 'attention', 'error', 'identify'];

/** A cycle of [on, milliseconds] steps; one step means steady. */
type Cycle = readonly (readonly [boolean, number])[];
const ON: Cycle = [[true, 0]];
const OFF: Cycle = [[false, 0]];
const blink = (onMs: number, offMs: number): Cycle => [
  [true, onMs],
  [false, offMs],
];

export const PATTERN_TABLE: Record<LedPattern, Record<LedName, Cycle>> = {
  off: { status: OFF, activity: OFF, fault: OFF },
  idle: { status: ON, activity: OFF, fault: OFF },
  backup: { status: ON, activity: blink(500, 500), fault: OFF },
  attention: { status: ON, activity: OFF, fault: blink(1000, 1000) },
  error: { status: OFF, activity: OFF, fault: ON },
  identify: { status: blink(250, 250), activity: blink(250, 250), fault: blink(250, 250) },
};

export interface LedDriver {
  readonly kind: 'gpio' | 'sysfs' | 'null';
  write(led: LedName, on: boolean): void;
  close(): void;
}

export interface Leds {
  readonly kind: LedDriver['kind'];
  /** The pattern set by the box state (identify shows on top of it for a while). */
  readonly pattern: LedPattern;
  /** What is showing now: the pattern, or 'identify' while an identify is running. */
  readonly showing: LedPattern;
  set(pattern: LedPattern): void;
  identify(durationMs?: number): void;
  /** The level each LED was last driven to. */
  levels(): Record<LedName, boolean>;
  close(): void;
}

export const DEFAULT_IDENTIFY_MS = 30_000;

export class PatternLeds implements Leds {
  private current: LedPattern = 'off';
  private identifyUntil: TimerHandle | undefined;
  private identifying = false;
  private timers: TimerHandle[] = [];
  private lit: Record<LedName, boolean> = { status: false, activity: false, fault: false };
  private closed = false;

  constructor(
    private readonly driver: LedDriver,
    private readonly clock: Clock,
  ) {
    for (const led of LED_NAMES) this.drive(led, false);
  }

  get kind(): LedDriver['kind'] {
    return this.driver.kind;
  }

  get pattern(): LedPattern {
    return this.current;
  }

  get showing(): LedPattern {
    return this.identifying ? 'identify' : this.current;
  }

  set(pattern: LedPattern): void {
    if (this.closed || !LED_PATTERNS.includes(pattern)) return;
    if (pattern === 'identify') return this.identify();
    const changed = pattern !== this.current;
    this.current = pattern;
    if (changed && !this.identifying) this.play(pattern);
  }

  identify(durationMs = DEFAULT_IDENTIFY_MS): void {
    if (this.closed) return;
    this.clock.clearTimeout(this.identifyUntil);
    if (!this.identifying) {
      this.identifying = true;
      this.play('identify');
    }
    this.identifyUntil = this.clock.setTimeout(() => {
      this.identifying = false;
      this.identifyUntil = undefined;
      this.play(this.current);
    }, durationMs);
  }

  levels(): Record<LedName, boolean> {
    return { ...this.lit };
  }

  close(): void {
    if (this.closed) return;
    this.stopTimers();
    this.clock.clearTimeout(this.identifyUntil);
    for (const led of LED_NAMES) this.drive(led, false);
    this.closed = true;
    this.driver.close();
  }

  private stopTimers(): void {
    for (const t of this.timers) this.clock.clearTimeout(t);
    this.timers = [];
  }

  private play(pattern: LedPattern): void {
    this.stopTimers();
    const table = PATTERN_TABLE[pattern];
    for (const led of LED_NAMES) this.runCycle(led, table[led], 0);
  }

  private runCycle(led: LedName, cycle: Cycle, step: number): void {
    const [on, ms] = cycle[step];
    this.drive(led, on);
    if (cycle.length === 1) return;
    const t = this.clock.setTimeout(() => {
      this.timers = this.timers.filter((x) => x !== t);
      this.runCycle(led, cycle, (step + 1) % cycle.length);
    }, ms);
    this.timers.push(t);
  }

  private drive(led: LedName, on: boolean): void {
    this.lit[led] = on;
    try {
      this.driver.write(led, on);
    } catch {
      // An LED that cannot be written must not take the daemon down; the state is still
      // reported through status(), which is what the console shows.
    }
  }
}

export const nullLedDriver = (): LedDriver => ({ kind: 'null', write() {}, close() {} });

/** Physical header pins (see docs/hardware.md for the wiring). */
export interface LedPins {
  status: number;
  activity: number;
  fault: number;
}

export const DEFAULT_LED_PINS: LedPins = { status: 11, activity: 13, fault: 15 };

export function gpioLedDriver(gpio: GpioHandle, pins: LedPins = DEFAULT_LED_PINS): LedDriver {
  const { rpio } = gpio;
  for (const led of LED_NAMES) rpio.open(pins[led], rpio.OUTPUT, rpio.LOW);
  return {
    kind: 'gpio',
    write(led, on) {
      rpio.write(pins[led], on ? rpio.HIGH : rpio.LOW);
    },
    close() {
      for (const led of LED_NAMES) rpio.write(pins[led], rpio.LOW);
    },
  };
}

/** Names under /sys/class/leds, e.g. { status: 'cairn:green:status', ... }. */
export type SysfsLedNames = Record<LedName, string>;

export const DEFAULT_SYSFS_LED_NAMES: SysfsLedNames = { status: 'cairn:green:status', activity: 'cairn:blue:activity', fault: 'cairn:amber:fault' };

/**
 * /sys/class/leds/<name>/{trigger,brightness}. The trigger is set to "none" once so the
 * kernel does not blink the LED for its own reasons; brightness is written 0 or
 * max_brightness. An LED missing from sysfs is skipped (a board with fewer LEDs).
 */
export function sysfsLedDriver(paths: HostPaths, names: SysfsLedNames = DEFAULT_SYSFS_LED_NAMES): LedDriver {
  const dirs = {} as Record<LedName, string | null>;
  const max = {} as Record<LedName, string>;
  for (const led of LED_NAMES) {
    const dir = path.join(paths.sysClassLeds, names[led]);
    if (!fs.existsSync(path.join(dir, 'brightness'))) {
      dirs[led] = null;
      continue;
    }
    dirs[led] = dir;
    try {
      fs.writeFileSync(path.join(dir, 'trigger'), 'none');
    } catch {
      /* some LEDs have no trigger file */
    }
    try {
      max[led] = fs.readFileSync(path.join(dir, 'max_brightness'), 'utf8').trim() || '1';
    } catch {
      max[led] = '1';
    }
  }
  return {
    kind: 'sysfs',
    write(led, on) {
      const dir = dirs[led];
      if (dir) fs.writeFileSync(path.join(dir, 'brightness'), on ? max[led] : '0');
    },
    close() {},
  };
}

export function sysfsLedsPresent(paths: HostPaths, names: SysfsLedNames = DEFAULT_SYSFS_LED_NAMES): string[] {
  return LED_NAMES.filter((l) => fs.existsSync(path.join(paths.sysClassLeds, names[l], 'brightness'))).map((l) => names[l]);
}
