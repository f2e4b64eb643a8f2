import type { BoxHwStatus, DiskInfo, RaidArray } from '../../hw';
import { App, View } from './app';
import { describeFailure } from './client';
import { Field } from './field';
import { bold, bytes, clean, fg, pad, progressBar } from './format';
import { Key } from './tui';

/**
 * Replacing a failed disk, guided: (1) take the failed disk out of the array, (2) swap it
 * for a new one (the LEDs identify the box), (3) add the new disk; md rebuilds onto it.
 * Steps 1 and 3 erase or drop a disk, so each asks for the disk's name typed back.
 */
type Stage = 'pick' | 'retire' | 'swap' | 'add' | 'done';

export class DiskReplaceView implements View {
  private stage: Stage = 'pick';
  private hw: BoxHwStatus | null = null;
  private sel = 0;
  private failed: DiskInfo | null = null;
  private readonly field = new Field('confirm', 40);

  constructor(
    private readonly app: App,
    private readonly preselect: string | undefined,
  ) {}

  title(): string {
    return 'replace a failed disk';
  }

  keys(): string {
    switch (this.stage) {
      case 'pick':
        return 'Up/Down choose   Enter next   Esc close';
      case 'retire':
      case 'add':
        return 'type the disk name, Enter   Up/Down choose   Esc close';
      case 'swap':
        return 'Enter the new disk is in   I identify   Esc close';
      case 'done':
        return 'Enter/Esc close';
    }
  }

  private get array(): RaidArray | undefined {
    return this.hw?.raid.arrays[0];
  }

  private memberState(d: DiskInfo): string | null {
    return this.array?.members.find((m) => m.device === d.device)?.state ?? null;
  }

  private get failedDisks(): DiskInfo[] {
    return (this.hw?.disks ?? []).filter((d) => d.health.health === 'failing' || this.memberState(d) === 'faulty');
  }

  private get candidates(): DiskInfo[] {
    return (this.hw?.disks ?? []).filter((d) => d.health.health !== 'failing' && this.memberState(d) === null && d.class !== 'system');
  }

  async poll(): Promise<void> {
    const r = await this.app.client.call<BoxHwStatus>('hw.status');
    if (!r.ok) return;
    this.hw = r.value;
    if (this.stage === 'pick' && this.failed === null && this.preselect) {
      const i = this.failedDisks.findIndex((d) => d.device === this.preselect);
      if (i >= 0) this.sel = i;
    }
  }

  private list(): DiskInfo[] {
    return this.stage === 'add' ? this.candidates : this.failedDisks;
  }

  async key(k: Key): Promise<void> {
    if (k.name === 'escape') {
      this.app.pop(this);
      return;
    }
    if (k.name === 'up' || k.name === 'down') {
      const n = this.list().length;
      if (n > 0) this.sel = (this.sel + (k.name === 'up' ? n - 1 : 1)) % n;
      return;
    }
    switch (this.stage) {
      case 'pick': {
        if (k.name !== 'enter') return;
        const d = this.failedDisks[this.sel];
        if (!d) return this.app.pop(this);
        this.failed = d;
        this.stage = this.memberState(d) === null ? 'swap' : 'retire';
        return;
      }
      case 'retire':
        if (k.name !== 'enter') return void this.field.key(k);
        return this.retire();
      case 'swap':
        if (k.name === 'i') {
          const r = await this.app.client.call('identify', { seconds: 120 });
          this.app.say(r.ok ? 'The LEDs blink for 2 minutes.' : describeFailure('identify', r), r.ok ? 'ok' : 'error');
          return;
        }
        if (k.name === 'enter') {
          await this.poll();
          this.sel = 0;
          this.stage = this.array?.sync || this.array?.state === 'recovering' ? 'done' : 'add';
        }
        return;
      case 'add':
        if (k.name !== 'enter') return void this.field.key(k);
        return this.add();
      case 'done':
        if (k.name === 'enter') this.app.pop(this);
        return;
    }
  }

  private async retire(): Promise<void> {
    const d = this.failed!;
    if (this.field.value.trim() !== d.name) {
      this.field.value = '';
      return this.app.say(`That is not "${d.name}": nothing was done.`, 'error');
    }
    this.field.value = '';
    const r = await this.app.busy(`taking ${d.name} out of the array`, () => this.app.client.call('disk.retire', { device: d.device, confirm: d.device }));
    if (!r.ok) return this.app.say(describeFailure('disk.retire', r, 'taking the disk out'), 'error');
    this.app.say(`${d.name} is out of the array.`, 'ok');
    this.stage = 'swap';
    void this.app.client.call('identify', { seconds: 120 });
  }

  private async add(): Promise<void> {
    const d = this.candidates[this.sel];
    if (!d) return this.app.say('No new disk found yet: check it is seated, then press Enter again.', 'error');
    if (this.field.value.trim() !== d.name) {
      this.field.value = '';
      return this.app.say(`That is not "${d.name}": nothing was done.`, 'error');
    }
    this.field.value = '';
    const r = await this.app.busy(`adding ${d.name} to the array`, () => this.app.client.call('disk.add', { device: d.device, confirm: d.device }));
    if (!r.ok) return this.app.say(describeFailure('disk.add', r, 'adding the disk'), 'error');
    this.stage = 'done';
    await this.poll();
  }

  private diskRow(d: DiskInfo, selected: boolean): string {
    const health = d.health.health === 'failing' ? fg('red', 'FAILING') : fg('green', d.health.health);
    const row = ` ${selected ? '>' : ' '} ${pad(clean(d.name), 8)}${pad(clean(d.serial ?? '-'), 15)}${pad(bytes(d.sizeBytes), 11)}${pad(health, 10)}${clean(this.memberState(d) ?? 'not in the array')}`;
    return selected ? `{inverse}${row}{/inverse}` : row;
  }

  body(width: number): string[] {
    if (!this.hw) return ['', ' Reading the disks...'];
    const L = [''];
    const d = this.failed;
    const bay = d && /^disk(\d+)$/.exec(d.name)?.[1];
    switch (this.stage) {
      case 'pick': {
        const f = this.failedDisks;
        if (f.length === 0) return [...L, ' No disk has failed. A healthy disk is not replaced from here.', '', ' (Esc closes.)'];
        L.push(' Which disk do you replace?', '');
        f.forEach((x, i) => L.push(this.diskRow(x, i === this.sel)));
        break;
      }
      case 'retire':
        L.push(` Step 1 of 3: take ${bold(clean(d!.name))} (serial ${clean(d!.serial ?? '?')}) out of the array.`, '');
        L.push(' The array keeps running on the other disks meanwhile.', '');
        L.push(` Type ${bold(clean(d!.name))} to confirm: ${this.field.render(Math.min(30, width - 30), true)}`);
        break;
      case 'swap':
        L.push(` Step 2 of 3: pull out ${bold(clean(d?.name ?? 'the failed disk'))}${d?.serial ? ` (serial ${clean(d.serial)})` : ''}`, ' and put the new disk in its place.');
        L.push(' The front LEDs blink so you find the right box (I: blink again).', '');
        L.push(' The new disk must be at least as large as the old one; it will be erased.');
        if (this.hw.profile === 'simulated') L.push('', fg('blue', ` Simulated profile: run  cairnd hw simulate replace-disk ${bay ?? 'N'} --data DIR`));
        L.push('', ' Press Enter when the new disk is in.');
        break;
      case 'add': {
        const c = this.candidates;
        L.push(' Step 3 of 3: add the new disk to the array; it is rebuilt from the others.', '');
        if (c.length === 0) L.push(fg('yellow', ' No new disk found yet. Check it is seated, wait a few seconds.'));
        c.forEach((x, i) => L.push(this.diskRow(x, i === this.sel)));
        const s = c[this.sel];
        if (s) L.push('', fg('red', ` ${s.name} will be ERASED.`) + ` Type ${bold(clean(s.name))} to confirm: ${this.field.render(Math.min(24, width - 50), true)}`);
        break;
      }
      case 'done': {
        const a = this.array;
        L.push(fg('green', ' The array is rebuilding onto the new disk.'), '');
        if (a?.sync) L.push(`   ${progressBar(a.sync.percent, 30)} ${a.sync.percent.toFixed(1)}%`);
        L.push('', ' Backups go on meanwhile. The dashboard shows the progress.');
        break;
      }
    }
    return L;
  }
}
