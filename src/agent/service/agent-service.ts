import { CairnError, errorMessage } from '../../core/errors';
import { Logger, silentLogger } from '../../core/log';
import { isLoopbackHost } from '../../core/mdns';
import { backupFiles, BackupResult } from '../backup';
import { connectTarget } from '../continuity';
import { moveBox, rediscoverBox } from '../discovery/locate';
import { AgentHome } from '../state';
import { AbortableBoxClient } from './abortable-client';
import { backoffPolicy, BackoffPolicy, retryDelay } from './backoff';
import { Clock, realClock } from './clock';
import { isAlive, tryLock } from './lock';
import { nextRegular } from './schedule-spec';
import { Outcome, ScheduleEntry, ServiceStore, SourceState } from './store';

/**
 * The agent service: backs up each scheduled source when it is due, one source at a time.
 *
 * Invariants:
 * - a source is backed up only under its lock file, so two runs of one source never overlap,
 *   whichever processes start them (`cairn agent run`, `--once`, `cairn backup`);
 * - a run's state file is written only under that lock;
 * - box unreachable: the agent first looks for the box on the LAN by its id (DHCP may have moved
 *   it; the key is checked against the pin), then retries after the backoff delays, never past
 *   the source's next regular time; a box presenting another key (CAIRN_PAIR_PIN_MISMATCH) is
 *   an attack or a mistake, not an outage: it is logged and the run ends without retrying;
 * - stopping (SIGTERM) aborts the running backup; it is recorded as interrupted and runs again
 *   first thing next time, resending nothing that landed.
 */
export interface BackupJob {
  source: string;
  paths: string[];
}

/** `failover`: the box was unreachable and not found on the LAN; its secondary may take this run. */
export type BackupRunner = (job: BackupJob, signal: AbortSignal, opts?: { failover?: boolean }) => Promise<BackupResult>;
/** Finds the paired box at a new address (and saves it); undefined when not found. */
export type Rediscoverer = () => Promise<{ host: string; port: number } | undefined>;

export interface AgentServiceOptions {
  home: AgentHome;
  clock?: Clock;
  log?: Logger;
  backoff?: Partial<BackoffPolicy>;
  runBackup?: BackupRunner;
  /** false: never look for the box on the network */
  rediscover?: Rediscoverer | false;
  discoveryTimeoutMs?: number;
  /** timeout of the pre-flight handshake with the box (ms) */
  probeTimeoutMs?: number;
  threads?: number;
  /** longest sleep between looks at schedule.json (ms) */
  maxSleepMs?: number;
  /** how long a source whose lock is held elsewhere is left alone (ms) */
  busyRetryMs?: number;
}

export type RunOutcome = Outcome | 'busy';

const iso = (ms: number): string => new Date(ms).toISOString();

/** When `entry` should run next, from its persisted state (ms since the epoch). */
export function nextRunOf(entry: ScheduleEntry, state: SourceState): number {
  const added = Date.parse(entry.added);
  if (state.running && !isAlive({ pid: state.running.pid, since: state.running.started })) return Date.parse(state.running.started); // its process died mid-run
  if (state.retry_at) return Date.parse(state.retry_at);
  if (state.last_outcome === 'interrupted') return Date.parse(state.last_finished ?? state.last_started ?? entry.added);
  return nextRegular(entry.spec, state.cycle_started ? Date.parse(state.cycle_started) : undefined, added);
}

export class AgentService {
  readonly store: ServiceStore;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly policy: BackoffPolicy;
  private readonly runBackup: BackupRunner;
  private readonly rediscover: Rediscoverer | undefined;
  private readonly skipUntil = new Map<string, number>();

  constructor(private readonly opts: AgentServiceOptions) {
    this.store = new ServiceStore(opts.home);
    this.clock = opts.clock ?? realClock;
    this.log = opts.log ?? silentLogger;
    this.policy = backoffPolicy(opts.backoff);
    this.runBackup = opts.runBackup ?? this.defaultBackup;
    this.rediscover = opts.rediscover === false ? undefined : (opts.rediscover ?? this.defaultRediscover);
  }

  private defaultBackup: BackupRunner = async (job, signal, runOpts = {}) => {
    const home = this.opts.home;
    const config = home.load();
    // Pre-flight: a short handshake-only probe. A box that moved (DHCP) often leaves its old
    // address silently dropping packets, where a request would hang until TCP gives up (over a
    // minute); this knows in seconds, and checks the key before anything else is said.
    // The box unreachable and not found again on the LAN: the secondary, if the box named one.
    const target = await connectTarget(home, config, { from: runOpts.failover ? 'auto' : 'box', probeTimeoutMs: this.opts.probeTimeoutMs ?? 5000, clientClass: AbortableBoxClient });
    const client = target.client as AbortableBoxClient;
    if (target.kind === 'secondary') this.log.warn('backup.failover', { source: job.source, secondary: target.name, address: target.address, reason: target.reason });
    const onAbort = (): void => client.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      if (signal.aborted) client.abort();
      const r = await backupFiles(home, client, home.keys(config), { paths: job.paths, source: job.source, threads: this.opts.threads, target: target.key });
      return { ...r, target: target.kind, ...(target.reason ? { target_reason: target.reason } : {}) };
    } finally {
      signal.removeEventListener('abort', onAbort);
      client.close();
    }
  };

  private defaultRediscover: Rediscoverer = async () => {
    const home = this.opts.home;
    const config = home.load();
    // A box paired over loopback runs on this machine: there is nothing to look for on the LAN.
    if (isLoopbackHost(config.box.host)) return undefined;
    this.log.info('discovery.searching', { box: config.box.id, box_name: config.box.name, last_address: `${config.box.host}:${config.box.port}` });
    const r = await rediscoverBox(config, { timeoutMs: this.opts.discoveryTimeoutMs ?? 5000, log: this.log });
    if (!r.found) {
      this.log.warn('discovery.not_found', { box: config.box.id, refused: r.refused.length });
      return undefined;
    }
    if (r.found.host !== config.box.host || r.found.port !== config.box.port) {
      moveBox(home, r.found.host, r.found.port);
      this.log.info('box.moved', { box: config.box.id, from: `${config.box.host}:${config.box.port}`, to: `${r.found.host}:${r.found.port}` });
    }
    return r.found;
  };

  /** Whether the box named a secondary to fail over to (the state file may be absent in tests). */
  private knowsSecondary(): boolean {
    try {
      return !!this.opts.home.load().continuity?.secondary;
    } catch {
      return false;
    }
  }

  nextRun(entry: ScheduleEntry, state: SourceState): number {
    return nextRunOf(entry, state);
  }

  /**
   * The service loop. `once`: back up every scheduled source now (with its retries) and return;
   * otherwise run until `signal` aborts.
   */
  async run(signal: AbortSignal, opts: { once?: boolean } = {}): Promise<Map<string, RunOutcome>> {
    const results = new Map<string, RunOutcome>();
    const forced = new Set(opts.once ? this.store.schedules().map((e) => e.source) : []);
    const entries0 = this.store.schedules();
    this.log.info('service.started', { once: !!opts.once, sources: entries0.map((e) => e.source), pid: process.pid });
    while (!signal.aborted) {
      const entries = this.store.schedules();
      const now = this.clock.now();
      const due = entries
        .map((e) => ({ e, at: forced.has(e.source) ? -Infinity : this.nextRun(e, this.store.state(e.source)) }))
        .filter((x) => x.at <= now && (!opts.once || forced.has(x.e.source) || results.get(x.e.source) === 'unreachable'))
        .filter((x) => (this.skipUntil.get(x.e.source) ?? -Infinity) <= now)
        .sort((a, b) => a.at - b.at);
      for (const { e } of due) {
        if (signal.aborted) break;
        forced.delete(e.source);
        const o = await this.runSource(e, signal);
        results.set(e.source, o);
        if (o === 'busy') this.skipUntil.set(e.source, this.clock.now() + (this.opts.busyRetryMs ?? 60_000));
      }
      if (signal.aborted) break;
      const later = this.clock.now();
      let wake = Infinity;
      for (const e of this.store.schedules()) {
        const st = this.store.state(e.source);
        if (opts.once && !(results.get(e.source) === 'unreachable' && st.retry_at)) continue;
        wake = Math.min(wake, Math.max(this.nextRun(e, st), this.skipUntil.get(e.source) ?? -Infinity));
      }
      if (opts.once && forced.size === 0 && wake === Infinity) break;
      const ms = Math.min(Math.max(wake - later, 0), this.opts.maxSleepMs ?? 30_000);
      if (ms > 0 || due.length === 0) await this.clock.sleep(Math.max(ms, 1), signal);
    }
    this.log.info('service.stopped', { results: Object.fromEntries(results) });
    return results;
  }

  /** One backup of one source under its lock, with rediscovery and retry bookkeeping. */
  async runSource(entry: ScheduleEntry, signal: AbortSignal): Promise<RunOutcome> {
    const { source, paths } = entry;
    const lock = tryLock(this.store.lockFile(source), () => this.clock.now());
    if ('busy' in lock) {
      this.log.info('backup.skipped', { source, reason: 'another backup of this source is running', pid: lock.busy.pid });
      return 'busy';
    }
    try {
      let state = this.store.state(source);
      let rediscovered = false;
      let triedSecondary = false;
      for (;;) {
        const started = this.clock.now();
        state = { ...state, last_started: iso(started), running: { pid: process.pid, started: iso(started) }, retry_at: undefined };
        if (state.attempt === 0 || !state.cycle_started) state.cycle_started = iso(started);
        this.store.saveState(state);
        this.log.info('backup.started', { source, paths, attempt: state.attempt + 1 });
        let outcome: Outcome;
        try {
          const r = await this.runBackup({ source, paths }, signal, { failover: triedSecondary });
          outcome = r.warnings.length ? 'warnings' : 'ok';
          const finished = this.clock.now();
          state = {
            ...state, running: undefined, last_finished: iso(finished), last_outcome: outcome, last_error: undefined, last_snapshot: r.snapshot, last_ok: iso(finished), attempt: 0, retry_at: undefined,
            last_stats: { files: r.files, bytes_scanned: r.bytes_scanned, bytes_uploaded: r.bytes_uploaded, duration_s: r.duration_s, warnings: r.warnings.length },
            last_target: r.target ?? 'box',
          };
          this.store.saveState(state);
          for (const w of r.warnings.slice(0, 20)) this.log.warn('backup.warning', { source, path: w.path, message: w.message });
          this.log.info('backup.finished', {
            source, snapshot: r.snapshot, outcome, target: r.target ?? 'box', files: r.files, bytes_scanned: r.bytes_scanned, bytes_read: r.bytes_read, bytes_uploaded: r.bytes_uploaded, warnings: r.warnings.length, duration_s: r.duration_s,
            next_run: iso(this.nextRun(entry, state)),
          });
          return outcome;
        } catch (err) {
          const finished = this.clock.now();
          const code = err instanceof CairnError ? err.code : 'CAIRN_UNEXPECTED';
          const message = errorMessage(err);
          if (signal.aborted) {
            outcome = 'interrupted';
            this.log.warn('backup.interrupted', { source, note: 'stopped by a signal; resumes on the next run without resending what landed' });
          } else if (code === 'CAIRN_BOX_UNREACHABLE') {
            this.log.warn('box.unreachable', { source, err: message, attempt: state.attempt + 1 });
            if (!rediscovered && this.rediscover) {
              rediscovered = true;
              const found = await this.rediscover().catch((e: unknown) => {
                this.log.warn('discovery.failed', { err: errorMessage(e) });
                return undefined;
              });
              if (found && !signal.aborted) {
                this.log.info('backup.retrying', { source, reason: 'the box answers at a (new) address with its pinned key', address: `${found.host}:${found.port}` });
                continue;
              }
            }
            if (!triedSecondary && !signal.aborted && this.knowsSecondary()) {
              triedSecondary = true;
              this.log.info('backup.retrying', { source, reason: 'the box does not answer: backing up to its secondary' });
              continue;
            }
            outcome = 'unreachable';
            state.attempt += 1;
            const delay = retryDelay(this.policy, state.attempt);
            const regular = nextRegular(entry.spec, Date.parse(state.cycle_started!), Date.parse(entry.added));
            if (delay === undefined || finished + delay >= regular) {
              this.log.error('backup.gave_up', { source, attempts: state.attempt, next_run: iso(regular) });
              state.attempt = 0;
              state.retry_at = undefined;
            } else {
              state.retry_at = iso(finished + delay);
              this.log.info('backup.retry_scheduled', { source, attempt: state.attempt + 1, delay_ms: delay, at: state.retry_at });
            }
          } else if (code === 'CAIRN_PAIR_PIN_MISMATCH') {
            outcome = 'refused';
            state.attempt = 0;
            this.log.error('box.key_mismatch', { source, err: message, note: 'something answers at the box address with another key; nothing was sent and this run is not retried' });
          } else {
            outcome = 'failed';
            state.attempt = 0;
            this.log.error('backup.failed', { source, code, err: message });
          }
          state = { ...state, running: undefined, last_finished: iso(finished), last_outcome: outcome, last_error: { code, message } };
          if (outcome !== 'unreachable') state.retry_at = undefined;
          this.store.saveState(state);
          return outcome;
        }
      }
    } finally {
      lock.release();
    }
  }
}
