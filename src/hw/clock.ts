/**
 * Time comes into the hardware layer through this interface, so LED patterns, the button's
 * debounce, RAID polling and the simulated rebuild can run under a manual clock in tests:
 * fast and deterministic, no real sleeps.
 */
export type TimerHandle = { readonly id: number };

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle | undefined): void;
  setInterval(fn: () => void, ms: number): TimerHandle;
  clearInterval(handle: TimerHandle | undefined): void;
}

/** The real clock. Timers are unref'd: hardware polling never keeps a process alive. */
export function systemClock(): Clock {
  let next = 1;
  const live = new Map<number, NodeJS.Timeout>();
  const add = (t: NodeJS.Timeout): TimerHandle => {
    t.unref();
    const id = next++;
    live.set(id, t);
    return { id };
  };
  return {
    now: () => Date.now(),
    setTimeout(fn, ms) {
      let handle: TimerHandle | undefined = undefined;
      const t = setTimeout(() => {
        if (handle) live.delete(handle.id);
        fn();
      }, ms);
      handle = add(t);
      return handle;
    },
    clearTimeout(handle) {
      if (!handle) return;
      const t = live.get(handle.id);
      if (t) clearTimeout(t);
      live.delete(handle.id);
    },
    setInterval(fn, ms) {
      return add(setInterval(fn, ms));
    },
    clearInterval(handle) {
      if (!handle) return;
      const t = live.get(handle.id);
      if (t) clearInterval(t);
      live.delete(handle.id);
    },
  };
}

interface ManualTimer {
  id: number;
  at: number;
  every: number | null;
  fn: () => void;
}

/**
 * A clock that only moves when told to. `advance(ms)` fires every timer that falls due, in
 * time order, with `now()` set to each timer's due time while it runs.
 */
export class ManualClock implements Clock {
  private t: number;
  private nextId = 1;
  private timers = new Map<number, ManualTimer>();

  constructor(start = 0) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const id = this.nextId++;
    this.timers.set(id, { id, at: this.t + Math.max(0, ms), every: null, fn });
    return { id };
  }

  clearTimeout(handle: TimerHandle | undefined): void {
    if (handle) this.timers.delete(handle.id);
  }

  setInterval(fn: () => void, ms: number): TimerHandle {
    const id = this.nextId++;
    const every = Math.max(1, ms);
    this.timers.set(id, { id, at: this.t + every, every, fn });
    return { id };
  }

  clearInterval(handle: TimerHandle | undefined): void {
    if (handle) this.timers.delete(handle.id);
  }

  /** Number of timers still scheduled (a stopped component leaves none). */
  pending(): number {
    return this.timers.size;
  }

  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let due: ManualTimer | undefined;
      for (const timer of this.timers.values()) {
        if (timer.at <= end && (!due || timer.at < due.at || (timer.at === due.at && timer.id < due.id))) due = timer;
      }
      if (!due) break;
      this.t = due.at;
      if (due.every === null) this.timers.delete(due.id);
      else due.at += due.every;
      due.fn();
    }
    this.t = end;
  }
}
