import { Logger } from '../../core/log';
import { CairnError, errorMessage } from '../../core/errors';
import { Box } from '../box';
import type { StoreSpace } from '../store/space';
import { Mutex } from '../store/mutex';
import { DEFAULT_GC_GRACE_MS, GcReport, runGc } from './gc';
import { runVerify, VerifyReport } from './verify';

/**
 * Runs the box's maintenance jobs one at a time (GC and verify never overlap), on request
 * or on a schedule inside `cairnd serve`.
 */
export interface Schedule {
  gcEveryMs: number;
  verifyEveryMs: number;
  verifySubsetPercent: number;
  gcGraceMs: number;
  /** how often the scheduler looks at the clock */
  tickMs: number;
}

export const DEFAULT_SCHEDULE: Schedule = {
  gcEveryMs: 24 * 3600 * 1000,
  verifyEveryMs: 24 * 3600 * 1000,
  verifySubsetPercent: 10,
  gcGraceMs: DEFAULT_GC_GRACE_MS,
  tickMs: 60 * 1000,
};

/** How often the idle-time checker looks, and how long agents must have been quiet. */
const CHECK_TICK_MS = 2000;
const IDLE_MS = 5000;

export class JobRunner {
  private readonly mutex = new Mutex();
  private running: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private checkTimer: NodeJS.Timeout | undefined;
  private checking = false;
  /** chunks checked in idle time since start (cairnd status) */
  readonly idleChecks = { checked: 0, bad: 0, bytes: 0, seconds: 0 };

  constructor(private readonly box: Box) {}

  private get log(): Logger {
    return this.box.log;
  }

  get current(): string | undefined {
    return this.running;
  }

  /** The namespaces jobs cover: the box's own store, or on a secondary each primary's. */
  private spaces(): StoreSpace[] {
    return this.box.identity.role === 'secondary' ? this.box.peers.all() : [this.box];
  }

  /** On a secondary, one run per namespace, summed, and recorded once in the box's own catalog (the schedule reads it). */
  private async overSpaces<R extends object>(kind: 'gc' | 'verify', fn: (s: StoreSpace) => Promise<R>): Promise<R> {
    if (this.box.identity.role !== 'secondary') return fn(this.box);
    const started = Date.now();
    const out: Record<string, unknown> = { namespaces: 0 };
    for (const s of this.spaces()) {
      const r = (await fn(s)) as Record<string, unknown>;
      out.namespaces = (out.namespaces as number) + 1;
      for (const [k, v] of Object.entries(r)) {
        if (typeof v === 'number') out[k] = ((out[k] as number | undefined) ?? 0) + v;
        else if (Array.isArray(v)) out[k] = [...((out[k] as unknown[] | undefined) ?? []), ...v];
        else out[k] = v;
      }
    }
    this.box.catalog.recordJob(kind, started, 'ok', Object.fromEntries(Object.entries(out).filter(([, v]) => typeof v === 'number')));
    return out as R;
  }

  gc(graceMs?: number): Promise<GcReport> {
    return this.exclusive('gc', () => this.overSpaces('gc', (s) => runGc(s, { graceMs, log: this.log })));
  }

  verify(subsetPercent?: number): Promise<VerifyReport> {
    if (subsetPercent !== undefined && !(subsetPercent > 0 && subsetPercent <= 100)) {
      throw new CairnError('CAIRN_USAGE', '--subset is a percentage between 0 (exclusive) and 100');
    }
    return this.exclusive('verify', () => this.overSpaces('verify', (s) => runVerify(s, { subsetPercent, log: this.log })));
  }

  /** Starts a job in the background; failures are logged and recorded in the jobs table. */
  start(kind: 'gc' | 'verify', arg?: number): { started: string } {
    const p = kind === 'gc' ? this.gc(arg) : this.verify(arg);
    p.catch((err: unknown) => this.log.error(`${kind}.failed`, { err: errorMessage(err) }));
    return { started: kind };
  }

  private async exclusive<T>(kind: string, fn: () => Promise<T>): Promise<T> {
    return this.mutex.run(async () => {
      this.running = kind;
      this.box.hw?.jobStarted(`job:${kind}`, kind);
      try {
        return await fn();
      } finally {
        this.running = undefined;
        this.box.hw?.jobFinished(`job:${kind}`);
      }
    });
  }

  /** Runs GC and verify when their last run is older than the schedule says. */
  schedule(s: Schedule): void {
    const tick = (): void => {
      const now = Date.now();
      const lastGc = this.box.catalog.lastJob('gc');
      const lastVerify = this.box.catalog.lastJob('verify');
      if (!this.running && (!lastGc || now - (lastGc.finished_at ?? lastGc.started_at) >= s.gcEveryMs)) {
        this.gc(s.gcGraceMs).catch((err: unknown) => this.log.error('gc.failed', { err: errorMessage(err) }));
      } else if (!this.running && (!lastVerify || now - (lastVerify.finished_at ?? lastVerify.started_at) >= s.verifyEveryMs)) {
        this.verify(s.verifySubsetPercent).catch((err: unknown) => this.log.error('verify.failed', { err: errorMessage(err) }));
      }
    };
    this.timer = setInterval(tick, s.tickMs);
    this.timer.unref();
    this.checkTimer = setInterval(() => void this.checkWhileIdle(), CHECK_TICK_MS);
    this.checkTimer.unref();
  }

  /**
   * Idle-time work of a box with keys: checks the chunks agents uploaded unchecked (see
   * chunk-store.ts, checked on sharing), a batch at a time, while no agent has been heard for
   * IDLE_MS. A bad one is quarantined and reported like verify's finds.
   */
  async checkWhileIdle(idleMs = IDLE_MS): Promise<void> {
    if (this.checking || this.box.identity.role === 'secondary') return;
    const store = this.box.store;
    this.checking = true;
    const started = Date.now();
    try {
      while (Date.now() - store.lastAgentActivity >= idleMs) {
        const r = await store.checkUnchecked(32);
        this.idleChecks.checked += r.checked;
        this.idleChecks.bad += r.bad;
        this.idleChecks.bytes += r.bytes;
        if (r.bad) this.log.error('check.bad_chunks', { bad: r.bad });
        if (r.checked === 0) break;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    } catch (err) {
      this.log.error('check.failed', { err: errorMessage(err) });
    } finally {
      this.idleChecks.seconds += (Date.now() - started) / 1000;
      this.checking = false;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.checkTimer) clearInterval(this.checkTimer);
  }
}
