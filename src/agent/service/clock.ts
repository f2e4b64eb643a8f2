/**
 * Time for the agent service. The scheduler never reads Date.now() or sets timers itself: it
 * asks a Clock, so tests drive it with a fake one (test/unit/agent-service).
 */
export interface Clock {
  now(): number;
  /** resolves after `ms`, or early (without error) when `signal` aborts */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const realClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve) => {
      if (signal?.aborted) return resolve();
      const done = (): void => {
        clearTimeout(t);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const t = setTimeout(done, Math.max(0, ms));
      signal?.addEventListener('abort', done, { once: true });
    }),
};
