import { EventEmitter } from 'node:events';
import { Clock, TimerHandle } from './clock';
import { GpioHandle } from './gpio';

/**
 * The front-panel button, debounced in software by sampling. A change of the raw input only
 * counts once it has held for `debounceMs`; contact bounce shorter than that is ignored.
 *
 *   'press'       released before longPressMs: show status / identify the box
 *   'long-press'  held for longPressMs (fires while still held, once): clean shutdown request
 *
 * The button never shuts anything down itself; whoever listens decides.
 */
export interface ButtonOptions {
  /** true while the button is held down. */
  read: () => boolean;
  clock: Clock;
  pollMs?: number;
  debounceMs?: number;
  longPressMs?: number;
}

export interface ButtonEvents {
  press: [{ durationMs: number }];
  'long-press': [{ durationMs: number }];
}

export class Button extends EventEmitter<ButtonEvents> {
  private timer: TimerHandle | undefined;
  private stable = false;
  private candidate = false;
  private candidateSince = 0;
  private pressedAt = 0;
  private longFired = false;
  readonly pollMs: number;
  readonly debounceMs: number;
  readonly longPressMs: number;

  constructor(private readonly opts: ButtonOptions) {
    super();
    this.pollMs = opts.pollMs ?? 10;
    this.debounceMs = opts.debounceMs ?? 50;
    this.longPressMs = opts.longPressMs ?? 3000;
  }

  start(): void {
    if (this.timer) return;
    this.stable = this.candidate = this.safeRead();
    this.candidateSince = this.opts.clock.now();
    this.timer = this.opts.clock.setInterval(() => this.sample(), this.pollMs);
  }

  stop(): void {
    this.opts.clock.clearInterval(this.timer);
    this.timer = undefined;
  }

  get pressed(): boolean {
    return this.stable;
  }

  private safeRead(): boolean {
    try {
      return this.opts.read();
    } catch {
      return false;
    }
  }

  private sample(): void {
    const now = this.opts.clock.now();
    const raw = this.safeRead();
    if (raw !== this.candidate) {
      this.candidate = raw;
      this.candidateSince = now;
    }
    if (this.candidate !== this.stable && now - this.candidateSince >= this.debounceMs) {
      this.stable = this.candidate;
      if (this.stable) {
        this.pressedAt = this.candidateSince;
        this.longFired = false;
      } else if (!this.longFired) {
        this.emit('press', { durationMs: this.candidateSince - this.pressedAt });
      }
    }
    if (this.stable && !this.longFired && now - this.pressedAt >= this.longPressMs) {
      this.longFired = true;
      this.emit('long-press', { durationMs: now - this.pressedAt });
    }
  }
}

export const DEFAULT_BUTTON_PIN = 16;

/** A button between a GPIO input and ground, with the SoC's pull-up: low means pressed. */
export function gpioButtonInput(gpio: GpioHandle, pin: number = DEFAULT_BUTTON_PIN): () => boolean {
  const { rpio } = gpio;
  rpio.open(pin, rpio.INPUT, rpio.PULL_UP);
  if (gpio.mock) rpio.write(pin, rpio.HIGH); // the mock has no pull-up: start released
  return () => rpio.read(pin) === rpio.LOW;
}
