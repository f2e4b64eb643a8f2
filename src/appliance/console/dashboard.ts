import type { Overview, OverviewAgent, OverviewReplication } from '../admin/console-ops';
import { parseSecondary } from '../box-settings';
import { errorMessage } from '../../core/errors';
import type { DiskInfo, RaidArray } from '../../hw';
import type { NetworkSummary } from '../host-ops';
import { App, View } from './app';
import { describeFailure } from './client';
import { ConfirmDialog, FormDialog, MessageDialog, TokenDialog } from './dialogs';
import { DiskReplaceView } from './disk-replace';
import { Field } from './field';
import { ago, bold, bytes, clean, fg, inverse, levelLabel, pad, padLeft, progressBar } from './format';
import { Key } from './tui';

/**
 * The dashboard of an activated box: one 'console.overview' call per poll, drawn to fit the
 * terminal (80x24 and up: lists get the rows that are left). Actions are single letters shown
 * on the bottom line; destructive ones ask for a typed confirmation.
 */
interface JobRow {
  kind: string;
  outcome: string;
  started: string;
  finished: string | null;
  running?: boolean;
  error?: string | null;
}

type Focus = 'agents' | 'disks';

export class Dashboard implements View {
  ov: Overview | null = null;
  private focus: Focus = 'agents';
  private agentSel = 0;
  private diskSel = 0;

  constructor(private readonly app: App) {}

  title(): string {
    return this.ov ? `${clean(this.ov.box.name)}` : 'dashboard';
  }

  badge(): string {
    const s = this.ov?.hardware.state;
    if (!s) return '';
    const c = s === 'healthy' ? 'green' : s === 'attention' ? 'yellow' : 'red';
    return `{${c}-bg}{black-fg} ${s.toUpperCase()} {/black-fg}{/${c}-bg}`;
  }

  keys(): string {
    return 'P pair   R revoke agent   T retention   C secondary   V verify   G gc\nI identify   D replace disk   S shutdown   B reboot   Tab/arrows select';
  }

  private ip: string | null = null;

  async poll(): Promise<void> {
    if (this.ip === null) {
      const n = await this.app.client.call<NetworkSummary>('network.summary');
      if (n.ok) this.ip = n.value.interfaces.find((i) => i.default && i.ip4)?.ip4 ?? n.value.interfaces.find((i) => i.ip4)?.ip4 ?? n.value.hostname;
    }
    const r = await this.app.client.call<Overview>('console.overview');
    if (r.ok) this.ov = r.value;
    else if (!r.unreachable) this.app.say(describeFailure('console.overview', r), 'error');
  }

  address(): string {
    const port = this.ov?.serve?.port ?? 8443;
    const host = this.ov?.serve?.host;
    return `${clean(host && host !== '0.0.0.0' && host !== '::' ? host : this.ip ?? 'THIS-BOX')}:${port}`;
  }

  private get agents(): OverviewAgent[] {
    return this.ov?.agents ?? [];
  }

  private get selectedAgent(): OverviewAgent | undefined {
    return this.agents[Math.min(this.agentSel, this.agents.length - 1)];
  }

  private get disks(): DiskInfo[] {
    return this.ov?.hardware.disks ?? [];
  }

  async key(k: Key): Promise<void> {
    const app = this.app;
    switch (k.name) {
      case 'tab':
        this.focus = this.focus === 'agents' ? 'disks' : 'agents';
        return;
      case 'up':
      case 'down': {
        const d = k.name === 'up' ? -1 : 1;
        if (this.focus === 'agents') this.agentSel = clamp(this.agentSel + d, this.agents.length);
        else this.diskSel = clamp(this.diskSel + d, this.disks.length);
        return;
      }
      case 'p': {
        const t = new TokenDialog(app, () => this.address());
        app.push(t);
        await t.create();
        return;
      }
      case 'r':
        return this.revoke();
      case 't':
        return this.retention();
      case 'c':
        return this.secondary();
      case 'v':
        return this.startJob('verify.start', 'verify', 'Verify started: it re-reads every chunk and checks it.');
      case 'g':
        return this.startJob('gc.start', 'garbage collection', 'GC started: chunks no snapshot uses any more are freed.');
      case 'i': {
        const r = await app.client.call<{ seconds: number; led: string }>('identify', { seconds: 30 });
        if (r.ok) app.say(`Identifying: the front LEDs blink for ${r.value.seconds} s${r.value.led === 'null' ? ' (no LEDs on this box)' : ''}.`, 'ok');
        else app.say(describeFailure('identify', r), 'error');
        return;
      }
      case 'd':
      case 'enter':
        if (k.name === 'enter' && this.focus !== 'disks') return;
        app.push(new DiskReplaceView(app, this.focus === 'disks' ? this.disks[this.diskSel]?.device : undefined));
        return;
      case 's':
        return this.power('shutdown');
      case 'b':
        return this.power('reboot');
      default:
        return;
    }
  }

  private revoke(): void {
    const a = this.selectedAgent;
    if (!a) return this.app.say('No agent to revoke: none is paired.', 'error');
    if (a.state === 'revoked') return this.app.say(`${a.name} is already revoked.`, 'error');
    this.app.push(
      new ConfirmDialog(
        this.app,
        `revoke agent ${clean(a.name)}`,
        [
          `Revoke the agent ${bold(clean(a.name))} (${clean(a.host)}, id ${a.id})?`,
          '',
          'It can no longer back up or restore. Its existing backups stay on the box',
          'and are kept by retention as usual. To use that PC again, pair it anew.',
        ],
        a.name,
        async () => {
          const r = await this.app.client.call<{ name: string }>('agents.revoke', { agent: a.id });
          if (!r.ok) {
            this.app.say(describeFailure('agents.revoke', r, 'revoke'), 'error');
            return null;
          }
          await this.poll();
          return `Agent ${r.value.name} revoked.`;
        },
      ),
    );
  }

  private retention(): void {
    const a = this.selectedAgent;
    const source = new Field('source', 64, a?.sources[0] ?? '');
    const keep = new Field('keep', 5, String(this.ov?.settings.retention_default ?? 30), /^[0-9]$/);
    const agentLine = a ? `Agent ${bold(clean(a.name))}; its sources: ${a.sources.map(clean).join(', ') || 'none yet'}.` : 'No agent selected: leave the source empty to set the default.';
    this.app.push(
      new FormDialog(
        this.app,
        'retention',
        [agentLine, 'How many versions to keep of this source. Empty source: the default for all', 'sources without their own number. Takes effect at the next backup.'],
        [
          { label: 'Source', field: source },
          { label: 'Versions to keep', field: keep },
        ],
        async ([src, n]) => {
          const args: Record<string, unknown> = { keep: Number(n) };
          if (src) Object.assign(args, { source: src }, a ? { agent: a.id } : {});
          const r = await this.app.client.call<{ keep: number; sources: unknown[] }>('retention.set', args);
          if (!r.ok) {
            this.app.say(describeFailure('retention.set', r, 'setting retention'), 'error');
            return null;
          }
          if (!src) await this.app.client.call('settings.set', { retention_default: Number(n) });
          return src ? `Retention of ${src}: ${r.value.keep} versions.` : `Default retention: ${r.value.keep} versions per source.`;
        },
      ),
    );
  }

  /** C: link this primary to a secondary (pinned-token pairing through 'secondary.add'); on a secondary, what it serves. */
  private secondary(): void {
    const ov = this.ov;
    if (ov?.box.role === 'secondary') {
      const rep = ov.replication?.role === 'secondary' ? ov.replication.primaries : [];
      this.app.push(
        new MessageDialog(this.app, 'primaries served', [
          'This box is a secondary: primaries link to it, it does not link to one.',
          `It serves ${rep.length} primar${rep.length === 1 ? 'y' : 'ies'}${rep.length ? ': ' + rep.map((p) => clean(p.name)).join(', ') : ''}.`,
          '',
          `To link a primary: press P here for a token, then on the primary C (its console)`,
          `or: cairnd secondary add --data /var/lib/cairn ${this.address()} --token T`,
        ]),
      );
      return;
    }
    const cur = ov?.settings.secondary;
    const address = new Field('address', 100, cur?.address ?? '');
    const token = new Field('token', 100, '', /^[0-9A-Za-z-]$/);
    this.app.push(
      new FormDialog(
        this.app,
        'link a secondary',
        [
          `Now: ${cur?.linked ? `linked to ${bold(clean(cur.name ?? ''))} at ${bold(clean(cur.address))}` : cur ? `${clean(cur.address)} (noted, never linked)` : 'none'}. A second Cairn box keeps`,
          "a copy of every backup and of this box's sealed key (escrow).",
          'The token: at the end of its activation, P on its console, or',
          '`cairnd token create` there. The token names its key: it is checked first.',
        ],
        [
          { label: 'Address (HOST[:PORT])', field: address },
          { label: 'Pairing token', field: token },
        ],
        async ([addr, tok]) => {
          let t;
          try {
            t = parseSecondary({ address: addr, token: tok })!;
          } catch (err) {
            this.app.say(errorMessage(err), 'error');
            return null;
          }
          const r = await this.app.client.call<{ name: string; address: string }>('secondary.add', { host: t.host, port: t.port, token: t.token }, 120_000);
          if (!r.ok) {
            this.app.say(`Not linked: ${describeFailure('secondary.add', r, 'linking a secondary')}`, 'error');
            return null;
          }
          await this.poll();
          return `Linked to the secondary "${r.value.name}" at ${r.value.address}: replication and escrow start now.`;
        },
      ),
    );
  }

  /** The replication line(s): this primary's link and lag, or the primaries this secondary serves. */
  private replicationLines(rep: OverviewReplication | null): { fixed: string[]; rows: string[] } {
    const now = this.app.now();
    if (!rep) return { fixed: [], rows: [] };
    if (rep.role === 'secondary') {
      const n = rep.primaries.length;
      const head = ` Secondary for ${n} primar${n === 1 ? 'y' : 'ies'}${n ? '' : fg('blue', ': none linked yet (P: a token for a primary)')}`;
      const rows = rep.primaries.map(
        (p) => `   ${pad(clean(p.name), 18)}${padLeft(String(p.snapshots), 6)} snapshots  last ${pad(ago(p.last_snapshot, now), 12)}${padLeft(bytes(p.stored_bytes), 10)}  ${p.agents} agents`,
      );
      return { fixed: [head], rows };
    }
    if (!rep.secondary) return { fixed: [fg('blue', ' Secondary: none linked (C links one)')], rows: [] };
    const pending = rep.pending_snapshots + (rep.pending_pull ?? 0);
    const state =
      rep.state === 'error' ? fg('red', 'ERROR') : rep.state === 'running' ? fg('cyan', 'replicating') : pending > 0 ? fg('yellow', 'behind') : fg('green', 'up to date');
    const lag = pending > 0 ? `  ${rep.pending_snapshots} snapshots (${bytes(rep.pending_bytes)}) to send${rep.pending_pull ? `, ${rep.pending_pull} to pull` : ''}` : '';
    const line = ` Secondary ${clean(rep.secondary.name)} ${clean(rep.secondary.address)}  ${state}${lag}  last ok ${ago(rep.last_success, now)}`;
    const fixed = [line];
    if (rep.last_error && rep.state === 'error') fixed.push(fg('red', `   ! ${clean(rep.last_error)}`));
    return { fixed, rows: [] };
  }

  private async startJob(op: string, what: string, ok: string): Promise<void> {
    const r = await this.app.client.call(op, {});
    if (r.ok) this.app.say(ok, 'ok');
    else this.app.say(describeFailure(op, r, what), 'error');
    await this.poll();
  }

  private power(action: 'shutdown' | 'reboot'): void {
    const what = action === 'shutdown' ? 'Shut the box down' : 'Reboot the box';
    this.app.push(
      new ConfirmDialog(
        this.app,
        action,
        [`${what}? Backups in progress stop; agents retry later.`, 'cairnd stops cleanly first (systemd), the disks are unmounted, the array stopped.'],
        action,
        async () => {
          const r = await this.app.client.call<{ done: boolean; message: string }>('box.power', { action, confirm: action });
          if (!r.ok) {
            this.app.push(new MessageDialog(this.app, action, [fg('red', describeFailure('box.power', r, action))]));
            return null;
          }
          return r.value.message;
        },
      ),
    );
  }

  body(width: number, height: number): string[] {
    const ov = this.ov;
    if (!ov) return ['', ' Reading the box status...'];
    const hw = ov.hardware;
    const L: string[] = [];
    const stateColour = hw.state === 'healthy' ? 'green' : hw.state === 'attention' ? 'yellow' : 'red';
    const said = hw.state === 'healthy' ? (hw.jobs.length ? hw.summary : 'disks, array and store are fine') : hw.reasons[0] ?? hw.summary;
    L.push(` Status: ${fg(stateColour, bold(hw.state.toUpperCase()))}  ${clean(said)}${hw.reasons.length > 1 ? fg('yellow', ` (+${hw.reasons.length - 1} more below)`) : ''}`);

    // Array and storage
    const array: RaidArray | undefined = hw.raid.arrays[0];
    const arrayText = array
      ? `Array ${clean(array.name)} ${levelLabel(array.level)} ${colourState(array.state)} ${array.workingDisks ?? '?'}/${array.raidDisks ?? '?'} disks ${bytes(array.sizeBytes)}`
      : fg('yellow', `No data array${hw.raid.note ? ': ' + clean(hw.raid.note) : ''}`);
    const total = ov.storage.fs_total_bytes;
    const storage = `Storage ${bytes(ov.storage.used_bytes)} used by ${ov.storage.chunks} chunks, ${bytes(ov.storage.fs_free_bytes)} free${total ? ` of ${bytes(total)}` : ''}`;
    L.push(' ' + arrayText);
    if (array?.sync) {
      const s = array.sync;
      L.push(`   ${s.action} ${progressBar(s.percent, 20)} ${s.percent.toFixed(1)}%${s.finishMinutes !== null ? `, about ${Math.ceil(s.finishMinutes)} min left` : ''}`);
    }
    L.push(' ' + storage);
    const rep = this.replicationLines(ov.replication ?? null);
    L.push(...rep.fixed);
    const diskHead = bold(`   ${pad('DISK', 8)}${pad('SERIAL', 15)}${pad('SIZE', 11)}${pad('HEALTH', 10)}IN ARRAY`);
    const diskRows = this.disks.map((d, i) => {
      const member = array?.members.find((m) => m.device === d.device);
      const health = d.health.health === 'failing' ? fg('red', 'FAILING') : d.health.health === 'warning' ? fg('yellow', 'warning') : d.health.health === 'ok' ? fg('green', 'ok') : d.health.health;
      const role = member ? (member.state === 'faulty' ? fg('red', 'faulty') : member.state === 'rebuilding' ? fg('yellow', 'rebuilding') : member.state) : d.class;
      const sel = this.focus === 'disks' && i === this.diskSel ? '>' : ' ';
      const row = ` ${sel} ${pad(clean(d.name), 8)}${pad(clean(d.serial ?? '-'), 15)}${pad(bytes(d.sizeBytes), 11)}${pad(health, 10)}${role}`;
      return this.focus === 'disks' && i === this.diskSel ? inverse(pad(row, Math.min(width - 1, 70))) : row;
    });

    // Agents
    const agentHead = bold(`   ${pad(`AGENTS (${this.agents.length})`, 24)}${pad('LAST BACKUP', 14)}${padLeft('SIZE', 10)}  STATE`);
    const agentRows = this.agents.map((a, i) => {
      const st = a.state === 'ok' ? fg('green', 'ok') : a.state === 'backing up' ? fg('cyan', 'backing up') : a.state === 'revoked' ? fg('red', 'revoked') : fg('yellow', a.state);
      const sel = this.focus === 'agents' && i === this.agentSel ? '>' : ' ';
      const row = ` ${sel} ${pad(clean(a.name), 24)}${pad(ago(a.last_backup, this.app.now()), 14)}${padLeft(bytes(a.last_size), 10)}  ${st}`;
      return this.focus === 'agents' && i === this.agentSel ? inverse(pad(row, Math.min(width - 1, 70))) : row;
    });
    if (agentRows.length === 0) agentRows.push(fg('blue', ov.box.role === 'secondary' ? "   Agents are their primaries' (listed above); P: a token for a primary." : '   No agent paired yet: press P for a pairing token.'));

    // Jobs and recent activity
    const jobs = (ov.jobs.list ?? []) as JobRow[];
    const running = [...ov.jobs.running.map((j) => `${j.kind} (since ${ago(j.since, this.app.now())})`), ...jobs.filter((j) => j.running || j.outcome === 'running').map((j) => j.kind)];
    const jobHead = bold(`   JOBS`) + `  running: ${running.length ? fg('cyan', running.map(clean).join(', ')) : 'none'}${ov.jobs.note ? fg('blue', '  (' + clean(ov.jobs.note) + ')') : ''}`;
    // Finished jobs (when this cairnd keeps a jobs table) and the catalog's events, newest first.
    const recent: { at: string; text: string }[] = [
      ...jobs
        .filter((j) => !(j.running || j.outcome === 'running'))
        .map((j) => ({ at: j.finished ?? j.started, text: `${pad(clean(j.kind), 10)}${j.outcome === 'ok' || j.outcome === 'success' ? fg('green', clean(j.outcome)) : fg('yellow', clean(j.outcome))}${j.error ? ' ' + clean(j.error) : ''}` })),
      // with a jobs table, backups/GC/verify are listed as jobs above, not again from events and snapshots
      ...ov.recent.filter((e) => !(ov.jobs.list && /^(backup|gc|verify)$/.test(e.kind))).map((e) => ({ at: e.at, text: clean(e.text) })),
    ].sort((x, y) => y.at.localeCompare(x.at));
    const recentRows = recent.map((e) => `   ${pad(time(e.at), 10)}${e.text}`);

    // Alerts
    const alertRows = ov.alerts.map((a) => fg(a.startsWith('no secondary') ? 'blue' : 'yellow', `   ! ${clean(a)}`));

    // Fit: fixed lines so far + 3 headings; lists share what is left.
    const fixed = L.length + 1 + 1 + 1 + (alertRows.length ? 1 : 0);
    let room = height - fixed;
    const take = (rows: string[], max: number): string[] => {
      const n = Math.max(0, Math.min(rows.length, max, room));
      room -= n;
      return rows.slice(0, n);
    };
    const repShown = take(rep.rows, 3);
    L.push(...repShown);
    const disksShown = take(diskRows, 8);
    const alertsShown = take(alertRows, Math.max(1, Math.min(3, room - 3)));
    const agentsShown = windowed(agentRows, this.focus === 'agents' ? this.agentSel : 0, Math.max(1, Math.min(agentRows.length, room - 1)));
    room -= agentsShown.length;
    const recentShown = take(recentRows, room);
    // Spare rows (a taller terminal) become blank lines between the sections.
    const gap = room >= 4 ? [''] : [];
    L.push(...gap, diskHead, ...disksShown, ...gap, agentHead, ...agentsShown, ...gap, jobHead, ...recentShown);
    if (alertsShown.length) L.push(...gap, bold('   ALERTS'), ...alertsShown);
    return L.slice(0, height);
  }
}

function clamp(i: number, n: number): number {
  return n === 0 ? 0 : Math.max(0, Math.min(n - 1, i));
}

function windowed(rows: string[], sel: number, n: number): string[] {
  if (rows.length <= n) return rows;
  const start = Math.max(0, Math.min(rows.length - n, sel - Math.floor(n / 2)));
  return rows.slice(start, start + n);
}

function time(iso: string): string {
  const d = new Date(iso);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toTimeString().slice(0, 8) : d.toISOString().slice(5, 10);
}

function colourState(s: string): string {
  if (s === 'clean' || s === 'active') return fg('green', s);
  if (s === 'failed' || s === 'inactive') return fg('red', s);
  return fg('yellow', s);
}
