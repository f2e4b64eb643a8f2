import { Clock } from '../../../src/agent/service/clock';

/**
 * A clock that moves only when the test says so. `advance` walks time forward sleeper by
 * sleeper, letting the code under test run (and go back to sleep) at each stop, so a service
 * loop sees every intermediate time it asked to be woken at.
 */
export class FakeClock implements Clock {
  private sleepers: { until: number; resolve: () => void }[] = [];

  constructor(public t: number) {}

  now(): number {
    return this.t;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve();
      const onAbort = (): void => {
        this.sleepers = this.sleepers.filter((x) => x !== s);
        resolve();
      };
      const s = {
        until: this.t + Math.max(0, ms),
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      this.sleepers.push(s);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  get sleeping(): number {
    return this.sleepers.length;
  }

  /** Waits (in real time, briefly) until the code under test is asleep on this clock. */
  async idle(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.sleepers.length === 0) {
      if (Date.now() > deadline) throw new Error('the code under test never went back to sleep');
      await new Promise((r) => setImmediate(r));
    }
  }

  async advance(ms: number): Promise<void> {
    const target = this.t + ms;
    for (;;) {
      await this.idle();
      const earliest = Math.min(...this.sleepers.map((s) => s.until));
      if (earliest > target) break;
      this.t = Math.max(this.t, earliest);
      const wake = this.sleepers.filter((s) => s.until <= this.t);
      this.sleepers = this.sleepers.filter((s) => s.until > this.t);
      for (const s of wake) s.resolve();
    }
    this.t = target;
  }
}
