import { randomInt } from 'node:crypto';
import type { DiskPlan, NetworkSummary } from '../host-ops';
import type { RaidLevel } from '../../hw/mdadm-args';
import type { RecoverResult } from '../secondary/recover';
import { parseRetention, parseSecondary, splitAddress, DEFAULT_RETENTION, SecondaryTarget } from '../box-settings';
import { parseRecoveryKey } from '../../core/recovery-key';
import { errorMessage } from '../../core/errors';
import { App, View } from './app';
import { describeFailure } from './client';
import { Field } from './field';
import { bold, bytes, clean, countdown, fg, levelLabel, pad, recoveryGroups, sameGroup, wrap } from './format';
import { Key } from './tui';

/**
 * The activation wizard. It starts by asking what the box becomes:
 *
 *  - a new box (primary, the default): Name, Network, Disks, Secondary, Retention, Keys, Done;
 *  - a secondary (serves primaries): Name, Network, Disks, Keys, Done (no secondary of its own,
 *    no retention: its primaries' retention is mirrored); Done shows a pairing token for
 *    primaries and the command to run on one;
 *  - restoring a dead box from its secondary: Network, Disks, Restore (the secondary's address
 *    and the recovery key), Done.
 *
 * The steps before Keys (or Restore) only collect choices and can be undone with Esc; nothing
 * touches the disks or creates keys until Enter there, which creates the array and asks cairnd
 * to activate (or rebuild) the box. From there on there is no way back: the recovery key is
 * shown once and must be typed back (one group chosen at random). A primary given a
 * secondary then links to it ('secondary.add', with a retry or "later" when that fails) before
 * Done shows the first pairing token and the box's fingerprint.
 */
type Step = 'start' | 'name' | 'network' | 'disks' | 'secondary' | 'retention' | 'keys' | 'recovery' | 'link' | 'restore' | 'restored' | 'done';
type Mode = 'primary' | 'secondary' | 'restore';

const LABELS: Partial<Record<Step, string>> = {
  name: 'Name', network: 'Network', disks: 'Disks', secondary: 'Secondary', retention: 'Retention', keys: 'Keys', restore: 'Restore', done: 'Done',
};

const FLOWS: Record<Mode, Step[]> = {
  primary: ['name', 'network', 'disks', 'secondary', 'retention', 'keys', 'done'],
  secondary: ['name', 'network', 'disks', 'keys', 'done'],
  restore: ['network', 'disks', 'restore', 'done'],
};

const MODES: { mode: Mode; text: string }[] = [
  { mode: 'primary', text: 'A new box (primary): PCs back up to it' },
  { mode: 'secondary', text: "A secondary box: keeps a copy of other boxes' backups and keys" },
  { mode: 'restore', text: 'Restore a box: rebuild a dead box from its secondary' },
];

/** Steps shown under another step's number (what follows a point of no return). */
const SHOWN_AS: Partial<Record<Step, Step>> = { recovery: 'keys', link: 'done', restored: 'done' };

/** Restoring pulls every backup back before cairnd answers. */
const RESTORE_TIMEOUT_MS = 24 * 3600_000;

const NAME_RE = /^[\p{L}\p{N} ._-]{1,64}$/u;

interface Activated {
  box: string;
  name: string;
  fingerprint: string;
  recovery_key: string;
}

interface LinkReply {
  secondary: string;
  name: string;
  address: string;
  fingerprint: string;
}

interface SetupState {
  activated: boolean;
  hostname: string;
  profile: string;
  serve: { host?: string | null; port?: number | null } | null;
  fingerprint: string | null;
}

export class Wizard implements View {
  private step: Step = 'start';
  private mode: Mode = 'primary';
  private startSel = 0;
  private readonly nameField: Field;
  private network: NetworkSummary | null = null;
  private plan: DiskPlan | null = null;
  private level: RaidLevel | undefined;
  private readonly confirmField = new Field('confirm', 64);
  private diskConfirmed = false;
  private arrayDone = false;
  private secFocus = 0; // 0 later, 1 address, 2 token
  private secLater = true;
  private readonly secAddress = new Field('address', 100);
  private readonly secToken = new Field('token', 100, '', /^[0-9A-Za-z-]$/);
  private readonly retentionField = new Field('retention', 4, String(DEFAULT_RETENTION), /^[0-9]$/);
  private activated: Activated | null = null;
  private groupIndex = 0;
  private readonly groupField = new Field('group', 4, '', /^[0-9A-Za-z]$/);
  private token: { token: string; expires: string } | null = null;
  private state: SetupState | null = null;
  private activating = false;
  /** primary: the secondary to link once activated; its link */
  private target: SecondaryTarget | null = null;
  private linkState: 'waiting' | 'linking' | 'failed' | 'linked' | 'later' = 'later';
  private linkError: string | null = null;
  private link: LinkReply | null = null;
  /** restore */
  private restFocus = 0; // 0 address, 1 key
  private readonly restAddress = new Field('address', 100);
  private readonly restKey = new Field('recovery key', 36, '', /^[0-9A-Za-z]$/);
  private recovered: (RecoverResult & { from: string }) | null = null;
  private restError: string | null = null;

  constructor(
    private readonly app: App,
    hostname: string,
    private readonly onDone: () => void,
  ) {
    this.nameField = new Field('name', 64, hostname.replace(/[^\p{L}\p{N} ._-]/gu, '-').slice(0, 64));
  }

  private get flow(): Step[] {
    return FLOWS[this.mode];
  }

  private get shown(): Step {
    return SHOWN_AS[this.step] ?? this.step;
  }

  title(): string {
    if (this.step === 'start') return 'activation - what is this box?';
    const flow = this.flow;
    const i = flow.indexOf(this.shown);
    const what = this.mode === 'restore' ? 'restore' : this.mode === 'secondary' ? 'activation (secondary)' : 'activation';
    return `${what} - step ${i + 1} of ${flow.length}: ${LABELS[flow[i]]}`;
  }

  keys(): string {
    switch (this.step) {
      case 'start':
        return 'Up/Down choose   Enter next';
      case 'name':
        return 'Enter next   (type the name; Backspace erases)';
      case 'network':
        return 'Enter next   R read again   Esc back';
      case 'disks':
        return this.plan && this.plan.levels.length > 1 ? 'Left/Right layout   Enter confirm   Ctrl-R rescan   Esc back' : 'Enter confirm   Ctrl-R rescan   Esc back';
      case 'secondary':
        return 'Tab/arrows move   Space later on/off   Enter next   Esc back';
      case 'retention':
        return 'Enter next   Esc back';
      case 'keys':
        return 'Enter ACTIVATE (cannot be undone)   Esc back';
      case 'recovery':
        return 'Enter check   (no way back: the keys exist now)';
      case 'link':
        return this.linkState === 'failed' ? 'Tab/arrows move   Space later on/off   Enter retry (or go on, with later)' : 'linking...';
      case 'restore':
        return 'Tab/arrows move   Enter RESTORE   Esc back';
      case 'restored':
        return 'Enter dashboard';
      case 'done':
        return 'Enter dashboard   N new token';
    }
  }

  private get name(): string {
    return this.nameField.value.trim();
  }

  private go(step: Step): void {
    this.step = step;
    this.app.clearMessage();
    if (step === 'network' && !this.network) void this.loadNetwork();
    if (step === 'disks' && !this.plan) void this.loadPlan();
    if (step === 'link') void this.tryLink();
    if (step === 'done') void this.loadDone();
  }

  /** Esc: the previous step of this mode's flow, or the first question; never past the point of no return. */
  private back(): void {
    const i = this.flow.indexOf(this.step);
    if (i > 0) this.go(this.flow[i - 1]);
    else if (i === 0) this.go('start');
  }

  private next(): void {
    const i = this.flow.indexOf(this.step);
    this.go(this.flow[i + 1]);
  }

  private get finished(): boolean {
    return this.activated !== null || this.recovered !== null;
  }

  /** What confirms erasing the disks: the box name, or "restore" when the name comes from the escrow. */
  private get confirmWord(): string {
    return this.mode === 'restore' ? 'restore' : this.name;
  }

  async poll(): Promise<void> {
    const r = await this.app.client.call<SetupState>('setup.state');
    if (!r.ok) return;
    this.state = r.value;
    // Activated elsewhere (`cairnd init`) while the wizard was still collecting choices.
    if (r.value.activated && !this.finished && !this.activating) {
      this.app.say('this box was activated meanwhile (cairnd init): showing the dashboard', 'info');
      this.onDone();
    }
    if (this.step === 'link' && this.linkState === 'waiting') await this.tryLink();
    if (this.step === 'done' && !this.token) await this.loadDone();
  }

  private async loadNetwork(): Promise<void> {
    const r = await this.app.busy('reading the network', () => this.app.client.call<NetworkSummary>('network.summary'));
    if (r.ok) this.network = r.value;
    else this.app.say(describeFailure('network.summary', r), 'error');
  }

  private async loadPlan(): Promise<void> {
    const r = await this.app.busy('looking for disks', () => this.app.client.call<DiskPlan>('disks.plan', this.level ? { level: this.level } : {}));
    if (r.ok) {
      this.plan = r.value;
      this.level = r.value.level ?? undefined;
    } else this.app.say(describeFailure('disks.plan', r), 'error');
  }

  private async loadDone(): Promise<void> {
    if (this.token) return;
    const r = await this.app.client.call<{ token: string; expires: string }>('token.create', { ttl_ms: 3600_000 });
    if (r.ok) {
      this.token = r.value;
      this.app.clearMessage();
      const s = await this.app.client.call<SetupState>('setup.state');
      if (s.ok) this.state = s.value;
    } else if (!r.unreachable && r.code !== 'CAIRN_SETUP_MODE') this.app.say(describeFailure('token.create', r), 'error');
  }

  async key(k: Key): Promise<void> {
    if (k.name === 'escape') {
      if (this.step === 'recovery') this.app.say(`The keys exist now: no way back. Type group ${this.groupIndex + 1} of the recovery key.`, 'error');
      else if (this.step === 'link') this.app.say('The box is activated: link the secondary (Enter) or choose later (Space, then Enter).', 'error');
      else if (this.step === 'done' || this.step === 'restored') this.onDone();
      else if (this.step !== 'start') this.back();
      return;
    }
    switch (this.step) {
      case 'start':
        if (k.name === 'up') this.startSel = (this.startSel + MODES.length - 1) % MODES.length;
        else if (k.name === 'down' || k.name === 'tab') this.startSel = (this.startSel + 1) % MODES.length;
        else if (k.ch && /^[1-3]$/.test(k.ch)) this.startSel = Number(k.ch) - 1;
        else if (k.name === 'enter') {
          const mode = MODES[this.startSel].mode;
          if (mode !== this.mode) this.diskConfirmed = false;
          this.mode = mode;
          // Only a primary links to a secondary (its Secondary step sets the target again).
          this.target = null;
          this.go(this.flow[0]);
        }
        return;
      case 'name':
        if (k.name === 'enter') {
          if (!NAME_RE.test(this.name)) this.app.say('The name needs 1-64 letters, digits, spaces, dots, dashes or underscores.', 'error');
          else this.next();
        } else this.nameField.key(k);
        return;
      case 'network':
        if (k.name === 'enter') this.next();
        else if (k.name === 'r') {
          this.network = null;
          await this.loadNetwork();
        }
        return;
      case 'disks':
        return this.diskKey(k);
      case 'secondary':
        return this.secondaryKey(k);
      case 'retention':
        if (k.name === 'enter') {
          try {
            parseRetention(this.retentionField.value);
            this.next();
          } catch (err) {
            this.app.say(errorMessage(err), 'error');
          }
        } else this.retentionField.key(k);
        return;
      case 'keys':
        if (k.name === 'enter') await this.activate();
        return;
      case 'recovery':
        if (k.name === 'enter') {
          const group = recoveryGroups(this.activated!.recovery_key).groups[this.groupIndex];
          if (sameGroup(this.groupField.value, group)) {
            // The key leaves the console's memory here; it was shown once.
            this.activated = { ...this.activated!, recovery_key: '' };
            this.go(this.target ? 'link' : 'done');
          } else {
            this.groupField.value = '';
            this.app.say(`That is not group ${this.groupIndex + 1}. Check what you wrote down and type group ${this.groupIndex + 1} again.`, 'error');
          }
        } else this.groupField.key(k);
        return;
      case 'link':
        return this.linkKey(k);
      case 'restore':
        return this.restoreKey(k);
      case 'restored':
        if (k.name === 'enter') this.onDone();
        return;
      case 'done':
        if (k.name === 'enter') this.onDone();
        else if (k.name === 'n') {
          this.token = null;
          await this.loadDone();
        }
        return;
    }
  }

  private async diskKey(k: Key): Promise<void> {
    const plan = this.plan;
    // Letters go to the confirmation field, so rescanning is Ctrl-R here.
    if (k.ctrl && k.name === 'r') {
      this.plan = null;
      this.diskConfirmed = false;
      await this.loadPlan();
      return;
    }
    if ((k.name === 'left' || k.name === 'right') && plan && plan.levels.length > 1 && this.level) {
      const i = plan.levels.indexOf(this.level);
      this.level = plan.levels[(i + (k.name === 'right' ? 1 : plan.levels.length - 1)) % plan.levels.length];
      this.diskConfirmed = false;
      await this.loadPlan();
      return;
    }
    if (k.name === 'enter') {
      if (!plan) return void (await this.loadPlan());
      if (!plan.level) {
        if (plan.existing) {
          this.diskConfirmed = false;
          this.next();
        } else this.app.say(plan.note ?? 'no disks to build an array from', 'error');
        return;
      }
      if (this.confirmField.value !== this.confirmWord) {
        this.confirmField.value = '';
        this.app.say(this.mode === 'restore' ? 'That is not "restore". The disks were not touched.' : `That does not match the box name "${this.name}". The disks were not touched.`, 'error');
        return;
      }
      this.diskConfirmed = true;
      this.next();
      return;
    }
    this.confirmField.key(k);
  }

  /** The Secondary step's fields (also shown again when linking failed): Later, address, token. Returns the choice when Enter accepts it. */
  private secondaryFields(k: Key): 'later' | SecondaryTarget | undefined {
    if (k.name === 'tab' || k.name === 'down') this.secFocus = (this.secFocus + 1) % 3;
    else if (k.name === 'up') this.secFocus = (this.secFocus + 2) % 3;
    else if (k.name === 'enter') {
      if (this.secLater) return 'later';
      try {
        return parseSecondary({ address: this.secAddress.value, token: this.secToken.value })!;
      } catch (err) {
        this.app.say(errorMessage(err), 'error');
      }
    } else if (this.secFocus === 0) {
      if (k.name === 'space' || k.ch === ' ') this.secLater = !this.secLater;
    } else {
      const f = this.secFocus === 1 ? this.secAddress : this.secToken;
      if (f.key(k)) this.secLater = false;
    }
    return undefined;
  }

  private secondaryKey(k: Key): void {
    const choice = this.secondaryFields(k);
    if (choice === undefined) return;
    this.target = choice === 'later' ? null : choice;
    this.next();
  }

  private async linkKey(k: Key): Promise<void> {
    if (this.linkState !== 'failed') return;
    const choice = this.secondaryFields(k);
    if (choice === undefined) return;
    if (choice === 'later') {
      this.target = null;
      this.linkState = 'later';
      this.go('done');
      return;
    }
    this.target = choice;
    await this.tryLink();
  }

  /**
   * Links this (now activated) primary to its secondary through the serving daemon's
   * 'secondary.add' (secondary/link.ts: the token pins the secondary's key). While cairnd
   * switches from setup mode to serving, the call waits; a refusal is shown with a retry.
   */
  private async tryLink(): Promise<void> {
    const t = this.target;
    if (!t || this.linkState === 'linking' || this.linkState === 'linked') return;
    this.linkState = 'linking';
    this.linkError = null;
    const r = await this.app.busy(`linking to the secondary at ${t.address}`, () =>
      this.app.client.call<LinkReply>('secondary.add', { host: t.host, port: t.port, token: t.token }, 120_000),
    );
    if (r.ok) {
      this.link = r.value;
      this.linkState = 'linked';
      this.go('done');
      this.app.say(`Linked to the secondary "${r.value.name}": replication and escrow start now.`, 'ok');
      return;
    }
    if (r.unreachable || r.code === 'CAIRN_SETUP_MODE') {
      this.linkState = 'waiting'; // cairnd is still switching to serving: the next poll tries again
      return;
    }
    this.linkState = 'failed';
    this.linkError = describeFailure('secondary.add', r, 'linking the secondary');
    this.secFocus = 1;
    this.app.say(`Not linked: ${this.linkError}`, 'error');
  }

  private async createArray(): Promise<boolean> {
    const plan = this.plan;
    if (plan?.level && this.diskConfirmed && !this.arrayDone) {
      const r = await this.app.busy(`creating the ${levelLabel(plan.level)} array on ${plan.devices.length} disks`, () =>
        this.app.client.call('array.create', { devices: plan.devices, level: plan.level, confirm: plan.confirm }),
      );
      if (!r.ok) {
        this.app.say(`The array was not created: ${describeFailure('array.create', r)}`, 'error');
        return false;
      }
      this.arrayDone = true;
    }
    return true;
  }

  private async activate(): Promise<void> {
    this.activating = true;
    try {
      await this.activateSteps();
    } finally {
      this.activating = false;
    }
  }

  private async activateSteps(): Promise<void> {
    if (!(await this.createArray())) return;
    const args: Record<string, unknown> = { name: this.name, role: this.mode === 'secondary' ? 'secondary' : 'primary' };
    if (this.mode === 'primary') args.retention_default = parseRetention(this.retentionField.value);
    const r = await this.app.busy('generating the master key and the TLS identity', () => this.app.client.call<Activated>('box.activate', args));
    if (!r.ok) return this.app.say(`The box was not activated: ${describeFailure('box.activate', r)}`, 'error');
    this.activated = r.value;
    this.linkState = this.target ? 'waiting' : 'later';
    this.groupIndex = randomInt(0, recoveryGroups(r.value.recovery_key).groups.length);
    this.step = 'recovery';
    this.app.say('Activated. Write the recovery key down now.', 'ok');
  }

  private async restoreKey(k: Key): Promise<void> {
    if (k.name === 'tab' || k.name === 'down' || k.name === 'up') {
      this.restFocus = 1 - this.restFocus;
      return;
    }
    if (k.name !== 'enter') {
      (this.restFocus === 0 ? this.restAddress : this.restKey).key(k);
      return;
    }
    let host: string;
    let port: number;
    try {
      ({ host, port } = splitAddress(this.restAddress.value));
    } catch (err) {
      this.restFocus = 0;
      return this.app.say(errorMessage(err), 'error');
    }
    try {
      parseRecoveryKey(this.restKey.value);
    } catch (err) {
      this.restFocus = 1;
      const msg = errorMessage(err);
      this.restError = /checksum/.test(msg)
        ? 'The recovery key does not add up (checksum mismatch): a group is mistyped. Compare each group with the paper; nothing was sent to the secondary.'
        : msg.replace(/^recovery key rejected: /, 'Recovery key: ');
      return this.app.say(/checksum/.test(msg) ? 'Recovery key: checksum mismatch, a group is mistyped.' : this.restError, 'error');
    }
    this.activating = true;
    try {
      if (!(await this.createArray())) return;
      const from = `${host.includes(':') ? `[${host}]` : host}:${port}`;
      const r = await this.app.busy(`restoring from ${from}: fetching the escrow, then pulling the backups back (can take long)`, () =>
        this.app.client.call<RecoverResult>('box.recover', { address: from, recovery_key: this.restKey.value }, RESTORE_TIMEOUT_MS),
      );
      if (!r.ok) {
        this.restError = `Not restored: ${describeFailure('box.recover', r, 'restoring a box')}`;
        this.app.say(this.restError, 'error');
        return;
      }
      this.restError = null;
      // The key leaves the console's memory.
      this.restKey.value = '';
      this.recovered = { ...r.value, from };
      this.step = 'restored';
      this.app.say(r.value.pull_error ? 'Restored; the pull of the backups stopped: cairnd resumes it.' : 'Restored.', r.value.pull_error ? 'error' : 'ok');
    } finally {
      this.activating = false;
    }
  }

  body(width: number, height: number): string[] {
    const L: string[] = [''];
    if (this.step !== 'start') {
      const steps = this.flow.map((id, i) => {
        const label = `${i + 1} ${LABELS[id]}`;
        return id === this.shown ? `{inverse} ${label} {/inverse}` : ` ${label} `;
      }).join(fg('blue', '>'));
      L.push(' ' + steps, '');
    }
    switch (this.step) {
      case 'start':
        L.push(
          ' Welcome. This box is not activated yet. What should it become?',
          '',
          ...MODES.map((m, i) => `  ${i === this.startSel ? '>' : ' '} (${i === this.startSel ? '*' : ' '}) ${i + 1}  ${m.text}`),
          '',
          ' A secondary is a second Cairn box, ideally in another building: its primaries',
          " copy every backup and their sealed keys to it, and PCs fail over to it when",
          ' their box is down. Restoring takes back a dead box\'s identity, agents and',
          ' backups from its secondary, with the recovery key written down at activation.',
          '',
          fg('blue', ' Nothing is written before the last step; until then Esc goes back.'),
        );
        break;
      case 'name':
        L.push(
          ` Welcome. This ${this.mode === 'secondary' ? 'secondary box' : 'box'} is not activated yet. These steps set it up. Nothing is`,
          ' written until the Keys step: until then Esc goes back and choices can change.',
          '',
          ' Name of this box (agents and people will know it by this name):',
          '',
          `   ${this.nameField.render(width - 6, true)}`,
          '',
          fg('blue', ' Letters, digits, spaces, dots, dashes or underscores; up to 64.'),
        );
        break;
      case 'network':
        L.push(...this.networkLines());
        break;
      case 'disks':
        L.push(...this.diskLines(width));
        break;
      case 'secondary':
        L.push(
          ' Secondary storage: a second Cairn box keeps a copy of every backup and of this',
          " box's sealed key and settings (escrow), so a dead box can be rebuilt.",
          '',
          ...this.secondaryFieldLines(),
          '',
          fg('blue', ' The token: at the end of the second box\'s own activation, or from'),
          fg('blue', ' `cairnd token create` there. The link is made right after activation.'),
        );
        break;
      case 'retention':
        L.push(
          ' How many versions should the box keep of each source (each folder set or disk',
          ' an agent backs up)? When a new backup would exceed it, the oldest one is merged',
          ' into the next. Each source can get its own number later, from the dashboard.',
          '',
          `   Versions per source: ${this.retentionField.render(6, true)}`,
        );
        break;
      case 'keys':
        L.push(...this.summaryLines());
        break;
      case 'recovery':
        L.push(...this.recoveryLines());
        break;
      case 'link':
        L.push(...this.linkLines());
        break;
      case 'restore':
        L.push(...this.restoreLines());
        break;
      case 'restored':
        L.push(...this.restoredLines());
        break;
      case 'done':
        L.push(...this.doneLines());
        break;
    }
    return L.slice(0, height);
  }

  private secondaryFieldLines(): string[] {
    return [
      `  ${this.secFocus === 0 ? '>' : ' '} [${this.secLater ? 'x' : ' '}] Later (C on the dashboard links it when the second box exists)`,
      '',
      `  ${this.secFocus === 1 ? '>' : ' '} Address of the second box  ${this.secAddress.render(40, this.secFocus === 1)}`,
      `  ${this.secFocus === 2 ? '>' : ' '} Its pairing token          ${this.secToken.render(44, this.secFocus === 2)}`,
    ];
  }

  private linkLines(): string[] {
    const t = this.target;
    const L = [fg('green', ` Box "${clean(this.activated?.name ?? this.name)}" is activated.`), ''];
    if (this.linkState !== 'failed') {
      L.push(` Linking to the secondary at ${bold(clean(t?.address ?? ''))}...`, '', fg('blue', ' (cairnd is starting to serve; the link is made as soon as it answers)'));
      return L;
    }
    L.push(
      ...wrap(`The secondary was not linked: ${this.linkError ?? ''}`, 76).map((l) => fg('red', ' ' + clean(l))),
      '',
      ' Correct the address or the token (a token is single use and expires: make a new',
      ' one on the second box), then Enter to try again; or tick Later and Enter.',
      '',
      ...this.secondaryFieldLines(),
    );
    return L;
  }

  private restoreLines(): string[] {
    const key = this.restKey.value.toUpperCase();
    const groups: string[] = [];
    const at = Math.min(8, Math.floor(key.length / 4)); // the group the next character goes to
    for (let i = 0; i < 9; i++) {
      const g = key.slice(i * 4, i * 4 + 4);
      const cur = this.restFocus === 1 && i === at;
      const text = g.padEnd(4, '.');
      groups.push(cur ? `{inverse}${text}{/inverse}` : this.restFocus === 1 ? bold(text) : fg('cyan', text));
    }
    return [
      " Restore a dead box: this box takes back its identity (agents carry on without",
      ' pairing again), its settings and its backups from the secondary that holds',
      ' its escrow. Keep the new box on the same network as the old one.',
      '',
      `  ${this.restFocus === 0 ? '>' : ' '} Address of the secondary  ${this.restAddress.render(40, this.restFocus === 0)}`,
      '',
      `  ${this.restFocus === 1 ? '>' : ' '} Recovery key`,
      fg('blue', '     ' + [1, 2, 3, 4, 5, 6, 7, 8].map((n) => pad(String(n), 6)).join('') + 'check'),
      '     ' + groups.join('  '),
      '',
      fg('blue', ' Type the groups as written at activation (dashes and spaces not needed); the'),
      fg('blue', ' last group is a checksum that catches a mistyped group. Backspace erases.'),
      ...(this.restError ? ['', ...wrap(this.restError, 76).map((l) => fg('red', ' ' + clean(l)))] : []),
    ];
  }

  private restoredLines(): string[] {
    const r = this.recovered!;
    const L = [
      fg('green', ` Box "${clean(r.name)}" (${clean(r.box)}) is restored from ${clean(r.from)}.`),
      '',
      '   Identity   the same box id and TLS key (agents keep their pins):',
      `              ${clean(r.fingerprint)}`,
      `   Agents     ${r.agents} kept their pairing: they back up here again at their next run`,
      `   Backups    ${r.pulled_snapshots} snapshots pulled back (${r.pulled_chunks} chunks, ${bytes(r.pulled_bytes)}) in ${r.duration_s.toFixed(1)} s`,
      `   Escrow     sealed ${clean(r.escrow_sealed_at)}`,
    ];
    if (r.pull_error) {
      L.push('', fg('red', ` The pull of the backups stopped: ${clean(r.pull_error)}`), ' cairnd carries on with it in the background; restores meanwhile fall back on the', ' secondary for snapshots this box does not hold yet.');
    }
    L.push('', ' The recovery key stays valid: keep the paper.', '', fg('blue', ' Agents, disks, replication and status: on the dashboard (Enter).'));
    return L;
  }

  private networkLines(): string[] {
    const n = this.network;
    if (!n) return [' Reading the network...'];
    const L = [` Host name  ${clean(n.hostname)}        Gateway  ${n.gateway ? clean(n.gateway) : fg('yellow', 'none')}`, '', bold(` ${pad('INTERFACE', 12)}${pad('LINK', 8)}${pad('SPEED', 10)}${pad('IPv4', 17)}IPv6`)];
    for (const i of n.interfaces.slice(0, 6)) {
      const link = i.state === 'up' ? fg('green', 'up') : fg('yellow', clean(i.state));
      const speed = i.speedMbps && i.speedMbps > 0 ? (i.speedMbps >= 1000 ? `${i.speedMbps / 1000} Gb/s` : `${i.speedMbps} Mb/s`) : '-';
      L.push(` ${pad(clean(i.name) + (i.default ? ' *' : ''), 12)}${pad(link, 8)}${pad(speed, 10)}${pad(i.ip4 ?? '-', 17)}${clean(i.ip6 ?? '-')}`);
    }
    if (n.interfaces.length === 0) L.push(fg('yellow', ' No network interface found. The box works offline, but agents cannot reach it.'));
    const ip = n.interfaces.find((i) => i.default && i.ip4)?.ip4 ?? n.interfaces.find((i) => i.ip4)?.ip4;
    L.push('', ip ? ` Agents will reach this box at ${bold(ip)} (or ${clean(n.hostname)}.local through mDNS).` : fg('yellow', ' No IPv4 address yet: check the cable or the DHCP server, then press R.'));
    L.push(fg('blue', ' (* = default route)'));
    return L;
  }

  private diskLines(width: number): string[] {
    const p = this.plan;
    if (!p) return [' Looking for disks...'];
    const L = [bold(` ${pad('DISK', 8)}${pad('SERIAL', 15)}${pad('SIZE', 11)}${pad('HEALTH', 9)}USE`)];
    for (const d of p.disks.slice(0, 8)) {
      const health = d.health === 'failing' ? fg('red', 'FAILING') : d.health === 'ok' ? fg('green', 'ok') : clean(d.health);
      L.push(` ${pad(clean(d.name), 8)}${pad(clean(d.serial ?? '-'), 15)}${pad(bytes(d.sizeBytes), 11)}${pad(health, 9)}${d.usable ? 'for the array' : fg('yellow', 'not used: ' + clean(d.why ?? ''))}`);
    }
    if (p.disks.length === 0) L.push(fg('yellow', ' No disks found.'));
    L.push('');
    if (!p.level) {
      L.push(fg('yellow', ` ${clean(p.note ?? '')}`));
      return L;
    }
    const others = p.levels.length > 1 ? fg('blue', `  (Left/Right: ${p.levels.map(levelLabel).join(', ')})`) : '';
    L.push(` Proposed layout: ${bold(levelLabel(p.level))} over ${p.devices.length} disks, ${bytes(p.usableBytes)} usable${others}`);
    L.push(` ${redundancy(p.level)}`);
    L.push('', fg('red', this.mode === 'restore' ? ' These disks will be ERASED when you start the restore (at the Restore step).' : ' These disks will be ERASED when you activate the box (at the Keys step).'));
    const what = this.mode === 'restore' ? `the word ${bold('restore')}` : `the box name (${bold(clean(this.name))})`;
    L.push(` Type ${what} to confirm: ${this.confirmField.render(Math.max(8, Math.min(30, width - 52)), true)}`);
    if (this.diskConfirmed) L.push(fg('green', ' Confirmed.'));
    return L;
  }

  private summaryLines(): string[] {
    const p = this.plan;
    const disks = p?.level && this.diskConfirmed ? `${levelLabel(p.level)} over ${p.devices.length} disks, ${bytes(p.usableBytes)} usable ${fg('red', '(disks will be erased)')}` : p?.existing ? `existing array ${clean(p.existing.name)} (${levelLabel(p.existing.level)}), kept as it is` : fg('yellow', 'no array');
    const sec = this.target ? `${clean(this.target.address)} (linked right after activation)` : 'later';
    return [
      ' Ready to activate. This is the last step you can go back from (Esc).',
      '',
      `   Box name    ${bold(clean(this.name))}`,
      `   Role        ${this.mode === 'secondary' ? bold('secondary') + ': serves primaries (their copies and escrows)' : 'primary: PCs back up to it'}`,
      `   Disks       ${disks}`,
      ...(this.mode === 'primary' ? [`   Secondary   ${sec}`, `   Retention   ${clean(this.retentionField.value)} versions per source`] : []),
      '',
      ' Enter creates the array, then cairnd generates the master key and the box\'s TLS',
      ' identity. You will then see the RECOVERY KEY once: have pen and paper ready.',
    ];
  }

  private recoveryLines(): string[] {
    const a = this.activated!;
    const { groups, checksum } = recoveryGroups(a.recovery_key);
    const head = groups.map((_, i) => pad(`  ${i + 1}`, 6)).join('') + '  check';
    const row = groups.map((g) => pad(`  ${g}`, 6)).join('') + `  ${checksum}`;
    return [
      bold(' RECOVERY KEY') + ' - shown only this once. Write it down now, on paper.',
      '',
      fg('blue', ' ' + head),
      bold(' ' + row),
      '',
      ' With this key and the secondary, a dead box can be rebuilt. Without it, nobody',
      ' can: Cairn does not keep it. The last group is a checksum that catches typos.',
      '',
      ` To show you have it, type group ${bold(String(this.groupIndex + 1))}: ${this.groupField.render(6, true)}`,
    ];
  }

  private doneLines(): string[] {
    const a = this.activated;
    const port = this.state?.serve?.port ?? null;
    // cairnd listening on one address (not 0.0.0.0): that one; else this box's address on the network.
    const host = this.state?.serve?.host;
    const ip = (host && host !== '0.0.0.0' && host !== '::' ? host : null) ?? this.network?.interfaces.find((i) => i.default && i.ip4)?.ip4 ?? this.network?.interfaces.find((i) => i.ip4)?.ip4 ?? this.state?.hostname ?? 'this-box';
    const addr = `${ip}:${port ?? 8443}`;
    if (this.mode === 'secondary') return this.secondaryDoneLines(addr);
    const L = [fg('green', ` Box "${clean(a?.name ?? this.name)}" is activated${port ? ' and serving agents' : ''}.`)];
    L.push(this.link ? ` Secondary: linked to "${clean(this.link.name)}" at ${clean(this.link.address)}.` : fg('blue', ' Secondary: later (C on the dashboard links one).'), '');
    if (!this.token) {
      L.push(' Waiting for cairnd to start serving agents...');
      return L;
    }
    L.push(
      ` Pairing token for the first PC (single use, expires in ${countdown(this.token.expires, this.app.now())}):`,
      '',
      `   ${bold(this.token.token)}`,
      '',
      ' Box fingerprint (the agent checks it):',
      `   ${clean(a?.fingerprint ?? this.state?.fingerprint ?? '')}`,
      '',
      ` On the PC:  cairn pair ${clean(addr)} --token <the token above>`,
      '',
      fg('blue', ' More tokens, agents, disks and status: on the dashboard (Enter).'),
    );
    return L;
  }

  /** A secondary's Done: a pairing token for a primary, and what to do with it there. */
  private secondaryDoneLines(addr: string): string[] {
    const a = this.activated;
    const L = [fg('green', ` Secondary box "${clean(a?.name ?? this.name)}" is activated${this.state?.serve?.port ? ' and serving' : ''}.`), ''];
    if (!this.token) {
      L.push(' Waiting for cairnd to start serving...');
      return L;
    }
    L.push(
      ` Pairing token for a primary box (single use, expires in ${countdown(this.token.expires, this.app.now())}):`,
      '',
      `   ${bold(this.token.token)}`,
      '',
      ` On the primary: its wizard's Secondary step or C on its dashboard, with the`,
      ` address ${bold(clean(addr))} and this token; or on its command line:`,
      `   cairnd secondary add --data /var/lib/cairn ${clean(addr)} \\`,
      `     --token ${clean(this.token.token)}`,
      '',
      " This box's fingerprint (the primary checks it against the token):",
      `   ${clean(a?.fingerprint ?? this.state?.fingerprint ?? '')}`,
      fg('blue', ' N: a token for another primary. Enter: the dashboard.'),
    );
    return L;
  }
}

function redundancy(level: string): string {
  switch (level) {
    case 'raid1':
      return 'Each disk holds a full copy: the box survives one disk failing.';
    case 'raid5':
      return 'Parity over all disks: the box survives one disk failing.';
    case 'raid6':
      return 'Double parity: the box survives any two disks failing.';
    case 'raid10':
      return 'Mirrored pairs, striped: survives one disk failing per pair; fastest.';
    default:
      return '';
  }
}
