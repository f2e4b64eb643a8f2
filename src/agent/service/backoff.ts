/**
 * Retry delays while the box is unreachable. `backoffs` are the successive delays; once they are
 * used up the run is given up and the source waits for its next scheduled time. `jitter` (0..1)
 * spreads each delay by ±jitter so that a room of PCs coming back from a power cut do not knock
 * on the box in step. Tests pass `jitter: 0` (the hyperswarm habit) or their own `random`.
 */
export const DEFAULT_BACKOFFS_MS = [10_000, 30_000, 60_000, 120_000, 300_000, 600_000];
export const DEFAULT_JITTER = 0.2;

export interface BackoffPolicy {
  backoffs: number[];
  jitter: number;
  random: () => number;
}

export function backoffPolicy(p: Partial<BackoffPolicy> = {}): BackoffPolicy {
  const jitter = p.jitter ?? DEFAULT_JITTER;
  if (!(jitter >= 0 && jitter <= 1)) throw new RangeError('jitter must be between 0 and 1');
  return { backoffs: p.backoffs ?? DEFAULT_BACKOFFS_MS, jitter, random: p.random ?? Math.random };
}

/** Delay before retry number `attempt` (1-based), or undefined when retries are exhausted. */
export function retryDelay(policy: BackoffPolicy, attempt: number): number | undefined {
  const base = policy.backoffs[attempt - 1];
  if (base === undefined) return undefined;
  const spread = policy.jitter * (2 * policy.random() - 1);
  return Math.max(0, Math.round(base * (1 + spread)));
}
