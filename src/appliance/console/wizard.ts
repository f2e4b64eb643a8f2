import { randomInt } from 'node:crypto';
import type { DiskPlan, NetworkSummary } from '../host-ops';
import type { RaidLevel } from '../../hw/mdadm-args';
import { parseRetention, parseSecondary, DEFAULT_RETENTION } from '../box-settings';
import { errorMessage } from '../../core/errors';
import { App, View } from './app';
import { describeFailure } from './client';
import { Field } from './field';
import { bold, bytes, clean, countdown, fg, levelLabel, pad, recoveryGroups, sameGroup } from './format';
import { Key } from './tui';

/**
 * The activation wizard. Steps 1-6 only collect choices and can be undone with Esc; nothing
 * touches the disks or creates keys until Enter on the Keys step, which creates the array
 * and asks cairnd to activate the box. From there on there is no way back: the recovery key is
 * shown once and must be typed back (one group chosen at random) before Done shows the first
 * pairing token and the box's fingerprint.
 */
type Step = 'name' | 'network' | 'disks' | 'secondary' | 'retention' | 'keys' | 'recovery' | 'done';

const STEPS: { id: Step; label: string }[] = [
  { id: 'name', label: 'Name' },
  { id: 'network', label: 'Network' },
  { id: 'disks', label: 'Disks' },
  { id: 'secondary', label: 'Secondary' },
  { id: 'retention', label: 'Retention' },
  { id: 'keys', label: 'Keys' },
  { id: 'done', label: 'Done' },
];

const NAME_RE = /^[\p{L}\p{N} ._-]{1,64}$/u;

interface Activated {
  box: string;
  name: string;
  fingerprint: string;
  recovery_key: string;
}

interface SetupState {
  activated: boolean;
  hostname: string;
  profile: string;
  serve: { host?: string | null; port?: number | null } | null;
  fingerprint: string | null;
}

export class Wizard implements View {
  private step: Step = 'name';
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

  constructor(
    private readonly app: App,
    hostname: string,
    private readonly onDone: () => void,
  ) {
    this.nameField = new Field('name', 64, hostname.replace(/[^\p{L}\p{N} ._-]/gu, '-').slice(0, 64));
  }

  title(): string {
    const i = STEPS.findIndex((s) => s.id === (this.step === 'recovery' ? 'keys' : this.step));
    return `activation - step ${i + 1} of ${STEPS.length}: ${STEPS[i].label}`;
  }

  keys(): string {
    switch (this.step) {
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
    if (step === 'done') void this.loadDone();
  }

  private back(): void {
    const order: Step[] = ['name', 'network', 'disks', 'secondary', 'retention', 'keys'];
    const i = order.indexOf(this.step);
    if (i > 0) this.go(order[i - 1]);
  }

  async poll(): Promise<void> {
    const r = await this.app.client.call<SetupState>('setup.state');
    if (!r.ok) return;
    this.state = r.value;
    // Activated elsewhere (`cairnd init`) while the wizard was still collecting choices.
    if (r.value.activated && !this.activated && !this.activating) {
      this.app.say('this box was activated meanwhile (cairnd init): showing the dashboard', 'info');
      this.onDone();
    }
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
      else if (this.step === 'done') this.onDone();
      else this.back();
      return;
    }
    switch (this.step) {
      case 'name':
        if (k.name === 'enter') {
          if (!NAME_RE.test(this.name)) this.app.say('The name needs 1-64 letters, digits, spaces, dots, dashes or underscores.', 'error');
          else this.go('network');
        } else this.nameField.key(k);
        return;
      case 'network':
        if (k.name === 'enter') this.go('disks');
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
            this.go('keys');
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
            this.go('done');
          } else {
            this.groupField.value = '';
            this.app.say(`That is not group ${this.groupIndex + 1}. Check what you wrote down and type group ${this.groupIndex + 1} again.`, 'error');
          }
        } else this.groupField.key(k);
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
          this.go('secondary');
        } else this.app.say(plan.note ?? 'no disks to build an array from', 'error');
        return;
      }
      if (this.confirmField.value !== this.name) {
        this.confirmField.value = '';
        this.app.say(`That does not match the box name "${this.name}". The disks were not touched.`, 'error');
        return;
      }
      this.diskConfirmed = true;
      this.go('secondary');
      return;
    }
    this.confirmField.key(k);
  }

  private secondaryKey(k: Key): void {
    if (k.name === 'tab' || k.name === 'down') this.secFocus = (this.secFocus + 1) % 3;
    else if (k.name === 'up') this.secFocus = (this.secFocus + 2) % 3;
    else if (k.name === 'enter') {
      if (this.secLater) return this.go('retention');
      try {
        parseSecondary({ address: this.secAddress.value, token: this.secToken.value });
        this.go('retention');
      } catch (err) {
        this.app.say(errorMessage(err), 'error');
      }
    } else if (this.secFocus === 0) {
      if (k.name === 'space' || k.ch === ' ') this.secLater = !this.secLater;
    } else {
      const f = this.secFocus === 1 ? this.secAddress : this.secToken;
      if (f.key(k)) this.secLater = false;
    }
  }

  private secondaryArg(): { address: string; token: string } | null {
    return this.secLater ? null : parseSecondary({ address: this.secAddress.value, token: this.secToken.value });
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
    const plan = this.plan;
    if (plan?.level && this.diskConfirmed && !this.arrayDone) {
      const r = await this.app.busy(`creating the ${levelLabel(plan.level)} array on ${plan.devices.length} disks`, () =>
        this.app.client.call('array.create', { devices: plan.devices, level: plan.level, confirm: plan.confirm }),
      );
      if (!r.ok) return this.app.say(`The array was not created: ${describeFailure('array.create', r)}`, 'error');
      this.arrayDone = true;
    }
    const r = await this.app.busy('generating the master key and the TLS identity', () =>
      this.app.client.call<Activated>('box.activate', { name: this.name, secondary: this.secondaryArg(), retention_default: parseRetention(this.retentionField.value) }),
    );
    if (!r.ok) return this.app.say(`The box was not activated: ${describeFailure('box.activate', r)}`, 'error');
    this.activated = r.value;
    this.groupIndex = randomInt(0, recoveryGroups(r.value.recovery_key).groups.length);
    this.step = 'recovery';
    this.app.say('Activated. Write the recovery key down now.', 'ok');
  }

  body(width: number, height: number): string[] {
    const L: string[] = [''];
    const steps = STEPS.map((s, i) => {
      const cur = s.id === (this.step === 'recovery' ? 'keys' : this.step);
      const label = `${i + 1} ${s.label}`;
      return cur ? `{inverse} ${label} {/inverse}` : ` ${label} `;
    }).join(fg('blue', '>'));
    L.push(' ' + steps, '');
    switch (this.step) {
      case 'name':
        L.push(
          ' Welcome. This box is not activated yet. These steps set it up. Nothing is',
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
          `  ${this.secFocus === 0 ? '>' : ' '} [${this.secLater ? 'x' : ' '}] Later (C on the dashboard sets it when the second box exists)`,
          '',
          `  ${this.secFocus === 1 ? '>' : ' '} Address of the second box  ${this.secAddress.render(40, this.secFocus === 1)}`,
          `  ${this.secFocus === 2 ? '>' : ' '} Its pairing token          ${this.secToken.render(44, this.secFocus === 2)}`,
          '',
          fg('blue', ' On the second box, a token comes from: cairnd token create.'),
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
      case 'done':
        L.push(...this.doneLines());
        break;
    }
    return L.slice(0, height);
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
    L.push('', fg('red', ` These disks will be ERASED when you activate the box (at the Keys step).`));
    L.push(` Type the box name (${bold(clean(this.name))}) to confirm: ${this.confirmField.render(Math.max(8, Math.min(30, width - 52)), true)}`);
    if (this.diskConfirmed) L.push(fg('green', ' Confirmed.'));
    return L;
  }

  private summaryLines(): string[] {
    const p = this.plan;
    const disks = p?.level && this.diskConfirmed ? `${levelLabel(p.level)} over ${p.devices.length} disks, ${bytes(p.usableBytes)} usable ${fg('red', '(disks will be erased)')}` : p?.existing ? `existing array ${clean(p.existing.name)} (${levelLabel(p.existing.level)}), kept as it is` : fg('yellow', 'no array');
    const sec = this.secLater ? 'later' : clean(this.secAddress.value);
    return [
      ' Ready to activate. This is the last step you can go back from (Esc).',
      '',
      `   Box name    ${bold(clean(this.name))}`,
      `   Disks       ${disks}`,
      `   Secondary   ${sec}`,
      `   Retention   ${clean(this.retentionField.value)} versions per source`,
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
    const ip = this.network?.interfaces.find((i) => i.default && i.ip4)?.ip4 ?? this.network?.interfaces.find((i) => i.ip4)?.ip4 ?? this.state?.hostname ?? 'this-box';
    const addr = `${ip}:${port ?? 8443}`;
    const L = [fg('green', ` Box "${clean(a?.name ?? this.name)}" is activated${port ? ' and serving agents' : ''}.`), ''];
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
