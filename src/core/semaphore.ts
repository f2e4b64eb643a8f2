/** A counting semaphore: at most `free` holders at once, waiters served in order. */
export class Semaphore {
  private waiters: (() => void)[] = [];
  constructor(private free: number) {}

  async acquire(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise<void>((r) => this.waiters.push(r));
  }

  release(): void {
    const w = this.waiters.shift();
    if (w) w();
    else this.free++;
  }
}

/** Bounds bytes in flight: acquire(n) waits until n more fit under the limit (or nothing is held), in order. */
export class ByteBudget {
  private used = 0;
  private waiters: { n: number; resolve: () => void }[] = [];
  constructor(private readonly limit: number) {}

  acquire(n: number): Promise<void> {
    if (this.waiters.length === 0 && (this.used === 0 || this.used + n <= this.limit)) {
      this.used += n;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => this.waiters.push({ n, resolve }));
  }

  release(n: number): void {
    this.used -= n;
    while (this.waiters.length && (this.used === 0 || this.used + this.waiters[0].n <= this.limit)) {
      const w = this.waiters.shift()!;
      this.used += w.n;
      w.resolve();
    }
  }
}
