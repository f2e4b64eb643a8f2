import fs from 'node:fs';
import path from 'node:path';
import { CairnError, errnoCode } from '../../core/errors';
import { isValidSourceName } from '../../core/api';
import { parseCli, parseDuration } from '../../core/cli';
import { createLogger } from '../../core/log';
import { defaultSourceName } from '../backup';
import { AgentHome } from '../state';
import { AgentService, nextRunOf, RunOutcome } from './agent-service';
import { DEFAULT_BACKOFFS_MS, DEFAULT_JITTER } from './backoff';
import { isAlive, tryLock } from './lock';
import { describeSpec, scheduleSpecFrom } from './schedule-spec';
import { ServiceStore, SourceState } from './store';

/** `cairn schedule …`, `cairn agent run`, `cairn status`: argument handling and output only. */

function out(json: boolean, value: unknown, text: () => string): void {
  process.stdout.write(json ? JSON.stringify(value, null, 2) + '\n' : text() + '\n');
}

function table(rows: string[][], header: string[]): string {
  if (rows.length === 0) return '(none)';
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (vals: string[]): string => vals.map((v, i) => v.padEnd(widths[i])).join('  ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

const SCHEDULE_USAGE = `cairn schedule add PATH... [--source NAME] (--every DURATION | --cron "MIN HOUR DAY MONTH WEEKDAY")
cairn schedule list [--json]
cairn schedule remove SOURCE`;

export async function cmdSchedule(args: string[]): Promise<void> {
  const [sub, ...rest] = args;
  const store = new ServiceStore(new AgentHome());
  switch (sub) {
    case 'add': {
      const { values, positionals } = parseCli(rest, { source: { type: 'string' }, every: { type: 'string' }, cron: { type: 'string' }, json: { type: 'boolean' } }, SCHEDULE_USAGE);
      if (positionals.length === 0) throw new CairnError('CAIRN_USAGE', `give at least one path\nusage: ${SCHEDULE_USAGE}`);
      const spec = scheduleSpecFrom(values.every, values.cron);
      const paths = positionals.map((p) => path.resolve(p));
      for (const p of paths) {
        try {
          fs.lstatSync(p);
        } catch (err) {
          throw new CairnError('CAIRN_SOURCE_INVALID', `cannot schedule ${p}: ${errnoCode(err) === 'ENOENT' ? 'it does not exist' : String(err)}`);
        }
      }
      const source = values.source ?? defaultSourceName(paths);
      if (!isValidSourceName(source)) throw new CairnError('CAIRN_USAGE', `source name "${source.slice(0, 80)}" is not valid (1-200 letters, digits and . _ : @ / + , = ~ - or space)`);
      const entry = { source, paths, spec, added: new Date().toISOString() };
      store.putSchedule(entry);
      const next = new Date(nextRunOf(entry, store.state(source))).toISOString();
      out(!!values.json, { ...entry, next_run: next }, () => `scheduled "${source}" (${paths.join(', ')}), ${describeSpec(spec)}; next run ${next}\n(backups run while \`cairn agent run\` or the cairn-agent service is running)`);
      return;
    }
    case 'list': {
      const { values } = parseCli(rest, { json: { type: 'boolean' } }, SCHEDULE_USAGE);
      const list = store.schedules().map((e) => ({ ...e, next_run: new Date(nextRunOf(e, store.state(e.source))).toISOString() }));
      out(!!values.json, list, () => table(list.map((e) => [e.source, describeSpec(e.spec), e.next_run, e.paths.join(', ')]), ['SOURCE', 'SCHEDULE', 'NEXT RUN', 'PATHS']));
      return;
    }
    case 'remove': {
      const { values, positionals } = parseCli(rest, { json: { type: 'boolean' } }, SCHEDULE_USAGE);
      if (positionals.length !== 1) throw new CairnError('CAIRN_USAGE', `usage: ${SCHEDULE_USAGE}`);
      if (!store.removeSchedule(positionals[0])) throw new CairnError('CAIRN_SOURCE_INVALID', `no schedule for source "${positionals[0]}"; see \`cairn schedule list\``);
      out(!!values.json, { removed: positionals[0] }, () => `schedule of "${positionals[0]}" removed (its snapshots stay on the box)`);
      return;
    }
    default:
      throw new CairnError('CAIRN_USAGE', `usage: ${SCHEDULE_USAGE}`);
  }
}

function parseBackoffs(text: string): number[] {
  const list = text.split(',').map((s) => s.trim()).filter(Boolean).map(parseDuration);
  if (list.length === 0 || list.length > 50) throw new CairnError('CAIRN_USAGE', '--backoff takes 1 to 50 delays, e.g. 10s,30s,1m');
  return list;
}

const AGENT_USAGE = 'cairn agent run [--once] [--backoff 10s,30s,1m,…] [--jitter 0.2] [--threads N] [--no-discovery]';

export async function cmdAgent(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  if (sub !== 'run') throw new CairnError('CAIRN_USAGE', `usage: ${AGENT_USAGE}`);
  const { values, positionals } = parseCli(
    rest,
    { once: { type: 'boolean' }, backoff: { type: 'string' }, jitter: { type: 'string' }, threads: { type: 'string' }, 'no-discovery': { type: 'boolean' }, 'discovery-timeout': { type: 'string' } },
    AGENT_USAGE,
  );
  if (positionals.length) throw new CairnError('CAIRN_USAGE', `unexpected argument ${positionals[0]}\nusage: ${AGENT_USAGE}`);
  const threads = values.threads === undefined ? undefined : Number(values.threads);
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1 && threads <= 64)) throw new CairnError('CAIRN_USAGE', '--threads must be 1-64');
  const jitter = values.jitter === undefined ? DEFAULT_JITTER : Number(values.jitter);
  if (!(jitter >= 0 && jitter <= 1)) throw new CairnError('CAIRN_USAGE', '--jitter is a fraction between 0 and 1');
  const home = new AgentHome();
  home.load(); // not paired: say so now, not at the first run
  const store = new ServiceStore(home);
  const log = createLogger({ name: 'cairn-agent' });
  const lock = values.once ? undefined : tryLock(store.agentLock);
  if (lock && 'busy' in lock) throw new CairnError('CAIRN_AGENT_RUNNING', `the agent service already runs for ${home.root} (pid ${lock.busy.pid}); see \`cairn status\``);
  const service = new AgentService({
    home,
    log,
    threads,
    backoff: { backoffs: values.backoff ? parseBackoffs(values.backoff) : DEFAULT_BACKOFFS_MS, jitter },
    rediscover: values['no-discovery'] ? false : undefined,
    discoveryTimeoutMs: values['discovery-timeout'] ? parseDuration(values['discovery-timeout']) : undefined,
  });
  const ac = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    if (ac.signal.aborted) return;
    log.info('service.stopping', { signal: sig });
    ac.abort();
    // A backup unwinds at its next request to the box; if something hangs, do not outlive systemd's patience.
    setTimeout(() => {
      log.error('service.stop_timeout', { note: 'exiting without waiting for the backup to unwind' });
      process.exit(1);
    }, 30_000).unref();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  if (lock) store.saveServiceInfo({ pid: process.pid, started: new Date().toISOString() });
  let results: Map<string, RunOutcome>;
  try {
    if (!values.once && store.schedules().length === 0) log.warn('service.nothing_scheduled', { note: 'add sources with `cairn schedule add PATH... --every 1h`' });
    results = await service.run(ac.signal, { once: values.once });
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    if (lock) {
      store.saveServiceInfo(undefined);
      lock.release();
    }
  }
  if (!values.once) return 0;
  const bad = [...results.values()].filter((o) => o !== 'ok' && o !== 'warnings');
  return bad.length ? 1 : 0;
}

export interface SourceStatus {
  source: string;
  paths: string[];
  schedule: string;
  running: boolean;
  last_started?: string;
  last_finished?: string;
  last_outcome?: string;
  last_error?: { code: string; message: string };
  last_snapshot?: string;
  /** box, or secondary when the last good backup failed over */
  last_target?: 'box' | 'secondary';
  last_ok?: string;
  last_stats?: SourceState['last_stats'];
  retry_at?: string;
  next_run: string;
}

export interface StatusReport {
  box: { id: string; name: string; address: string } | null;
  /** the box's secondary, where backups go while the box is down */
  secondary: { id: string; name: string; address: string } | null;
  agent: { id: string; name: string } | null;
  service: { running: boolean; pid?: number; started?: string };
  sources: SourceStatus[];
}

export function statusReport(home: AgentHome): StatusReport {
  const store = new ServiceStore(home);
  let box: StatusReport['box'] = null;
  let agent: StatusReport['agent'] = null;
  let secondary: StatusReport['secondary'] = null;
  try {
    const c = home.load();
    box = { id: c.box.id, name: c.box.name, address: `${c.box.host}:${c.box.port}` };
    const sec = c.continuity?.secondary;
    if (sec) secondary = { id: sec.box, name: sec.name, address: `${sec.host}:${sec.port}` };
    agent = { id: c.agent.id, name: c.agent.name };
  } catch (err) {
    if (!CairnError.is(err, 'CAIRN_AGENT_NOT_PAIRED')) throw err;
  }
  const info = store.serviceInfo();
  const running = !!info && isAlive({ pid: info.pid, since: info.started });
  const sources = store.schedules().map((e): SourceStatus => {
    const st = store.state(e.source);
    const alive = !!st.running && isAlive({ pid: st.running.pid, since: st.running.started });
    const outcome = st.running && !alive ? 'interrupted' : st.last_outcome;
    return {
      source: e.source, paths: e.paths, schedule: describeSpec(e.spec), running: alive,
      last_started: st.last_started, last_finished: st.last_finished, last_outcome: outcome, last_error: st.last_error,
      last_snapshot: st.last_snapshot, last_target: st.last_target, last_ok: st.last_ok, last_stats: st.last_stats, retry_at: st.retry_at,
      next_run: new Date(nextRunOf(e, st)).toISOString(),
    };
  });
  return { box, secondary, agent, service: running ? { running, pid: info!.pid, started: info!.started } : { running: false }, sources };
}

export async function cmdStatus(args: string[]): Promise<void> {
  const { values } = parseCli(args, { json: { type: 'boolean' } }, 'cairn status [--json]');
  const r = statusReport(new AgentHome());
  out(!!values.json, r, () => {
    const lines: string[] = [];
    lines.push(r.box ? `box "${r.box.name}" (${r.box.id}) at ${r.box.address}; this PC is agent ${r.agent!.name} (${r.agent!.id})` : 'not paired with a box (cairn pair --token TOKEN)');
    lines.push(r.secondary ? `secondary "${r.secondary.name}" (${r.secondary.id}) at ${r.secondary.address}: backups go there while the box is down` : 'no secondary known: when the box is down, backups wait for it');
    lines.push(r.service.running ? `agent service: running (pid ${r.service.pid}, since ${r.service.started})` : 'agent service: not running (start it with `cairn agent run` or `systemctl start cairn-agent`)');
    lines.push('');
    lines.push(table(
      r.sources.map((s) => [
        s.source,
        s.schedule,
        s.running ? `running since ${s.last_started}` : (s.last_started ?? 'never'),
        s.running ? '-' : (s.last_outcome ?? '-') + (s.last_error && s.last_outcome !== 'ok' ? ` (${s.last_error.code})` : '') + (s.last_target === 'secondary' && (s.last_outcome === 'ok' || s.last_outcome === 'warnings') ? ' on the SECONDARY (box down)' : ''),
        s.running ? '-' : s.next_run,
      ]),
      ['SOURCE', 'SCHEDULE', 'LAST RUN', 'OUTCOME', 'NEXT RUN'],
    ));
    for (const s of r.sources) if (s.last_error && s.last_outcome !== 'ok' && s.last_outcome !== 'warnings') lines.push(`  ${s.source}: ${s.last_error.message}`);
    return lines.join('\n');
  });
}
