import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CairnError } from '../../../src/core/errors';
import { createLogger } from '../../../src/core/log';
import { BackupResult } from '../../../src/agent/backup';
import { AgentHome } from '../../../src/agent/state';
import { AgentService, BackupJob, nextRunOf, Rediscoverer } from '../../../src/agent/service/agent-service';
import { retryDelay, backoffPolicy } from '../../../src/agent/service/backoff';
import { processStart, tryLock } from '../../../src/agent/service/lock';
import { ScheduleEntry, ServiceStore } from '../../../src/agent/service/store';
import { statusReport } from '../../../src/agent/service/commands';
import { FakeClock } from './fake-clock';

const H = 3_600_000;
const T0 = new Date(2025, 0, 6, 1, 0, 0).getTime(); // a Monday, 01:00 local time

function result(source: string, n: number): BackupResult {
  return { snapshot: `snap${n}`, source, files: 1, dirs: 0, bytes_scanned: 1, bytes_read: 1, bytes_new: 1, bytes_uploaded: 1, chunks_new: 1, duration_s: 0, skipped: 0, warnings: [] };
}

interface Rig {
  home: AgentHome;
  store: ServiceStore;
  clock: FakeClock;
  runs: { at: number; source: string }[];
  logs: { event: string; [k: string]: unknown }[];
  rediscoveries: number;
  service: AgentService;
  stop: () => Promise<void>;
  start: () => void;
}

function rig(t: Mocha.Context | undefined, opts: {
  entries?: Partial<ScheduleEntry>[];
  backup?: (job: BackupJob, signal: AbortSignal, n: number) => Promise<BackupResult>;
  rediscover?: Rediscoverer | false;
  backoffs?: number[];
  jitter?: number;
  home?: AgentHome;
}): Rig {
  const home = opts.home ?? new AgentHome(fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-sched-')));
  const store = new ServiceStore(home);
  for (const e of opts.entries ?? [{}]) {
    store.putSchedule({ source: 'docs', paths: ['/nowhere'], spec: { every_ms: H }, added: new Date(T0).toISOString(), ...e });
  }
  const clock = new FakeClock(T0);
  const runs: Rig['runs'] = [];
  const logs: Rig['logs'] = [];
  const r: Rig = {
    home, store, clock, runs, logs, rediscoveries: 0,
    service: undefined as unknown as AgentService,
    stop: async () => undefined,
    start: () => undefined,
  };
  let n = 0;
  r.service = new AgentService({
    home,
    clock,
    log: createLogger({ name: 'test', level: 'debug', write: (l) => logs.push(JSON.parse(l) as Rig['logs'][number]) }),
    backoff: { backoffs: opts.backoffs ?? [1000, 5000], jitter: opts.jitter ?? 0 },
    maxSleepMs: 10 * 60_000,
    runBackup: (job, signal) => {
      runs.push({ at: clock.now(), source: job.source });
      n++;
      return opts.backup ? opts.backup(job, signal, n) : Promise.resolve(result(job.source, n));
    },
    rediscover: opts.rediscover === false ? false : async () => {
      r.rediscoveries++;
      return opts.rediscover ? opts.rediscover() : undefined;
    },
  });
  r.start = () => {
    const ac = new AbortController();
    const done = r.service.run(ac.signal);
    r.stop = async () => {
      ac.abort();
      await done;
    };
  };
  return r;
}

const unreachable = (): Promise<BackupResult> => Promise.reject(new CairnError('CAIRN_BOX_UNREACHABLE', 'cannot reach the box (ECONNREFUSED)'));
const rel = (r: Rig): number[] => r.runs.map((x) => x.at - T0);
const eventsOf = (r: Rig): string[] => r.logs.map((l) => l.event);

describe('agent service: the scheduler under a fake clock', function () {
  const cleanup: Rig[] = [];
  const make = (o: Parameters<typeof rig>[1]): Rig => {
    const r = rig(undefined, o);
    cleanup.push(r);
    return r;
  };
  afterEach(async () => {
    for (const r of cleanup.splice(0)) {
      await r.stop();
      fs.rmSync(r.home.root, { recursive: true, force: true });
    }
  });

  it('runs an "every 1h" source at once, then exactly one hour after each run started', async () => {
    const r = make({});
    r.start();
    await r.clock.idle();
    expect(rel(r)).to.deep.equal([0]);
    await r.clock.advance(H - 1);
    expect(rel(r)).to.deep.equal([0]);
    await r.clock.advance(1);
    expect(rel(r)).to.deep.equal([0, H]);
    await r.clock.advance(3 * H);
    expect(rel(r)).to.deep.equal([0, H, 2 * H, 3 * H, 4 * H]);
    const st = r.store.state('docs');
    expect(st).to.include({ last_outcome: 'ok', last_snapshot: 'snap5', attempt: 0 });
    expect(nextRunOf(r.store.schedules()[0], st)).to.equal(T0 + 5 * H);
  });

  it('runs a cron source at the times it names (local time), not at start', async () => {
    const r = make({ entries: [{ spec: { cron: '30 2 * * *' } }] });
    r.start();
    await r.clock.idle();
    expect(rel(r)).to.deep.equal([]);
    await r.clock.advance(89 * 60_000);
    expect(rel(r)).to.deep.equal([]);
    await r.clock.advance(60_000);
    expect(rel(r)).to.deep.equal([90 * 60_000]);
    await r.clock.advance(24 * H);
    expect(rel(r)).to.deep.equal([90 * 60_000, 90 * 60_000 + 24 * H]);
  });

  it('catches up once (not once per missed slot) after the PC was off', async () => {
    const r = make({});
    r.store.saveState({ source: 'docs', attempt: 0, cycle_started: new Date(T0 - 10 * H).toISOString(), last_outcome: 'ok' });
    r.start();
    await r.clock.idle();
    expect(rel(r)).to.deep.equal([0]);
    await r.clock.advance(H - 1);
    expect(rel(r)).to.deep.equal([0]);
  });

  it('box unreachable: looks for it by id, then retries after each backoff, keeping the regular slot', async () => {
    const r = make({ backup: (job, _s, n) => (n <= 2 ? unreachable() : Promise.resolve(result(job.source, n))) });
    r.start();
    await r.clock.advance(10_000);
    expect(rel(r)).to.deep.equal([0, 1000, 6000]);
    expect(r.rediscoveries).to.equal(2);
    expect(r.logs.filter((l) => l.event === 'backup.retry_scheduled').map((l) => l.delay_ms)).to.deep.equal([1000, 5000]);
    expect(r.store.state('docs')).to.include({ last_outcome: 'ok', attempt: 0 });
    await r.clock.advance(H - 10_000);
    expect(rel(r)).to.deep.equal([0, 1000, 6000, H]);
  });

  it('gives up when the backoffs are used up and waits for the next regular run', async () => {
    const r = make({ backup: () => unreachable() });
    r.start();
    await r.clock.advance(H - 1);
    expect(rel(r)).to.deep.equal([0, 1000, 6000]);
    expect(eventsOf(r)).to.include('backup.gave_up');
    const st = r.store.state('docs');
    expect(st.last_outcome).to.equal('unreachable');
    expect(st.retry_at).to.equal(undefined);
    const s = statusReport(r.home).sources[0];
    expect(s.last_outcome).to.equal('unreachable');
    expect(s.next_run).to.equal(new Date(T0 + H).toISOString());
    expect(s.last_error!.code).to.equal('CAIRN_BOX_UNREACHABLE');
    await r.clock.advance(1);
    expect(rel(r)).to.deep.equal([0, 1000, 6000, H]);
  });

  it('never retries past the next regular time', async () => {
    const r = make({ backup: () => unreachable(), backoffs: [20 * 60_000, 50 * 60_000] });
    r.start();
    await r.clock.advance(H - 1);
    expect(rel(r)).to.deep.equal([0, 20 * 60_000]);
  });

  it('jitter spreads the delays by ±jitter', () => {
    expect(retryDelay(backoffPolicy({ backoffs: [1000], jitter: 0.5, random: () => 1 }), 1)).to.equal(1500);
    expect(retryDelay(backoffPolicy({ backoffs: [1000], jitter: 0.5, random: () => 0 }), 1)).to.equal(500);
    expect(retryDelay(backoffPolicy({ backoffs: [1000], jitter: 0, random: () => 0.9 }), 1)).to.equal(1000);
    expect(retryDelay(backoffPolicy({ backoffs: [1000] }), 2)).to.equal(undefined);
    expect(() => backoffPolicy({ jitter: 2 })).to.throw(RangeError);
  });

  it('a box found at a new address is retried at once, within the same run', async () => {
    const r = make({ backup: (job, _s, n) => (n === 1 ? unreachable() : Promise.resolve(result(job.source, n))), rediscover: async () => ({ host: '10.1.2.3', port: 8443 }) });
    r.start();
    await r.clock.idle();
    expect(rel(r)).to.deep.equal([0, 0]);
    expect(eventsOf(r)).to.include('backup.retrying');
    expect(r.store.state('docs').last_outcome).to.equal('ok');
  });

  it('a box presenting another key is refused: logged, not rediscovered, not retried', async () => {
    const r = make({ backup: () => Promise.reject(new CairnError('CAIRN_PAIR_PIN_MISMATCH', 'the box presents a different key')) });
    r.start();
    await r.clock.advance(H - 1);
    expect(rel(r)).to.deep.equal([0]);
    expect(r.rediscoveries).to.equal(0);
    expect(eventsOf(r)).to.include('box.key_mismatch');
    expect(r.logs.find((l) => l.event === 'box.key_mismatch')!.level).to.equal('error');
    expect(r.store.state('docs').last_outcome).to.equal('refused');
  });

  it('stopping aborts the running backup; it is recorded as interrupted and runs first thing next time', async () => {
    let started!: () => void;
    const running = new Promise<void>((res) => (started = res));
    const r = make({
      backup: (_job, signal, n) => n === 1
        ? new Promise<BackupResult>((_res, rej) => {
          started();
          signal.addEventListener('abort', () => rej(new CairnError('CAIRN_INTERRUPTED', 'stopped')));
        })
        : Promise.resolve(result('docs', n)),
    });
    r.start();
    await running;
    await r.stop();
    const st = r.store.state('docs');
    expect(st.last_outcome).to.equal('interrupted');
    expect(st.running).to.equal(undefined);
    expect(nextRunOf(r.store.schedules()[0], st)).to.be.at.most(r.clock.now());
    expect(fs.existsSync(r.store.lockFile('docs')), 'lock released').to.equal(false);
    // a new service (same home) resumes it at once
    const r2 = make({ home: r.home });
    r2.clock.t = T0 + 60_000;
    r2.start();
    await r2.clock.idle();
    expect(rel(r2)).to.deep.equal([60_000]);
  });

  it('never runs two backups of one source at once, even from two services on one home', async () => {
    let release!: () => void;
    const gate = new Promise<void>((res) => (release = res));
    let started!: () => void;
    const running = new Promise<void>((res) => (started = res));
    const a = make({ backup: async (job, _s, n) => {
      started();
      await gate;
      return result(job.source, n);
    } });
    const b = make({ home: a.home });
    a.start();
    await running;
    const entry = a.store.schedules()[0];
    expect(await b.service.runSource(entry, new AbortController().signal)).to.equal('busy');
    expect(b.runs).to.deep.equal([]);
    expect(b.logs.map((l) => l.event)).to.include('backup.skipped');
    release();
    await a.clock.idle();
    expect(await b.service.runSource(entry, new AbortController().signal)).to.equal('ok');
  });

  it('leaves a source alone while another process holds its lock, and runs it once the lock is free', async () => {
    const r = make({});
    fs.mkdirSync(r.store.dir, { recursive: true });
    fs.writeFileSync(r.store.lockFile('docs'), JSON.stringify({ pid: process.ppid, since: new Date().toISOString() }));
    r.start();
    await r.clock.advance(30_000);
    expect(rel(r)).to.deep.equal([]);
    expect(eventsOf(r).filter((e) => e === 'backup.skipped')).to.have.length(1);
    fs.rmSync(r.store.lockFile('docs'));
    await r.clock.advance(30_000);
    expect(rel(r)).to.deep.equal([60_000]);
  });
});

describe('agent service: lock files', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-lock-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('is exclusive, and released only by its owner', () => {
    const f = path.join(dir, 'x.lock');
    const a = tryLock(f);
    expect('busy' in a).to.equal(false);
    const b = tryLock(f);
    expect('busy' in b && b.busy.pid).to.equal(process.pid);
    if (!('busy' in a)) a.release();
    expect(fs.existsSync(f)).to.equal(false);
  });

  it('takes over a lock whose process is gone, or whose pid now belongs to another process', () => {
    const f = path.join(dir, 'x.lock');
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    fs.writeFileSync(f, JSON.stringify({ pid: Number(dead.stdout), since: 'then' }));
    const a = tryLock(f);
    expect('busy' in a).to.equal(false);
    if (!('busy' in a)) a.release();
    if (processStart(process.pid) !== undefined) {
      fs.writeFileSync(f, JSON.stringify({ pid: process.pid, since: 'then', start: '1' }));
      const b = tryLock(f);
      expect('busy' in b, 'same pid, other start time: a recycled pid').to.equal(false);
      if (!('busy' in b)) b.release();
    }
  });
});
