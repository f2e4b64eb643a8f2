import { App, View } from './app';
import { describeFailure } from './client';
import { Field } from './field';
import { bold, clean, countdown, fg } from './format';
import { Key } from './tui';

/**
 * Dialogs that sit over the dashboard: a message, a typed confirmation for destructive
 * actions, a small form, and the pairing token with its countdown. Esc closes any of them
 * without doing anything.
 */
export class MessageDialog implements View {
  constructor(
    private readonly app: App,
    private readonly heading: string,
    private readonly lines: string[],
  ) {}

  title(): string {
    return this.heading;
  }

  keys(): string {
    return 'Enter/Esc close';
  }

  body(): string[] {
    return ['', ...this.lines.map((l) => ' ' + l)];
  }

  key(k: Key): void {
    if (k.name === 'enter' || k.name === 'escape') this.app.pop(this);
  }
}

/** Asks the person to type `expected` before `action` runs; anything else does nothing. */
export class ConfirmDialog implements View {
  private readonly field: Field;

  constructor(
    private readonly app: App,
    private readonly heading: string,
    private readonly lines: string[],
    private readonly expected: string,
    private readonly action: () => Promise<string | null>,
  ) {
    this.field = new Field('confirm', Math.max(8, expected.length + 4));
  }

  title(): string {
    return this.heading;
  }

  keys(): string {
    return 'Enter confirm   Esc cancel';
  }

  body(width: number): string[] {
    return ['', ...this.lines.map((l) => ' ' + l), '', ` Type ${bold(clean(this.expected))} to confirm: ${this.field.render(Math.min(40, width - 30), true)}`];
  }

  async key(k: Key): Promise<void> {
    if (k.name === 'escape') {
      this.app.pop(this);
      this.app.say('Cancelled: nothing was done.');
      return;
    }
    if (k.name !== 'enter') {
      this.field.key(k);
      return;
    }
    if (this.field.value.trim() !== this.expected) {
      this.field.value = '';
      this.app.say(`That does not match "${this.expected}": nothing was done.`, 'error');
      return;
    }
    const done = await this.app.busy(this.heading, this.action);
    this.app.pop(this);
    if (done) this.app.say(done, 'ok');
  }
}

export interface FormField {
  label: string;
  field: Field;
}

/** A few labelled fields; Tab/arrows move between them, Enter submits. */
export class FormDialog implements View {
  private focus = 0;

  constructor(
    private readonly app: App,
    private readonly heading: string,
    private readonly lines: string[],
    private readonly fields: FormField[],
    private readonly submit: (values: string[]) => Promise<string | null>,
  ) {}

  title(): string {
    return this.heading;
  }

  keys(): string {
    return `${this.fields.length > 1 ? 'Tab/arrows move   ' : ''}Enter save   Esc cancel`;
  }

  body(width: number): string[] {
    const w = Math.max(...this.fields.map((f) => f.label.length));
    return [
      '',
      ...this.lines.map((l) => ' ' + l),
      '',
      ...this.fields.map((f, i) => ` ${i === this.focus ? '>' : ' '} ${f.label.padEnd(w)}  ${f.field.render(Math.min(44, width - w - 8), i === this.focus)}`),
    ];
  }

  async key(k: Key): Promise<void> {
    if (k.name === 'escape') {
      this.app.pop(this);
      this.app.say('Cancelled: nothing was changed.');
      return;
    }
    if (k.name === 'tab' || k.name === 'down') this.focus = (this.focus + 1) % this.fields.length;
    else if (k.name === 'up') this.focus = (this.focus + this.fields.length - 1) % this.fields.length;
    else if (k.name === 'enter') {
      const msg = await this.app.busy(this.heading, () => this.submit(this.fields.map((f) => f.field.value.trim())));
      if (msg !== null) {
        this.app.pop(this);
        this.app.say(msg, 'ok');
      }
    } else this.fields[this.focus].field.key(k);
  }
}

interface TokenReply {
  token: string;
  expires: string;
  fingerprint: string;
}

/** A new single-use pairing token, with the time it has left. */
export class TokenDialog implements View {
  private token: TokenReply | null = null;

  constructor(
    private readonly app: App,
    private readonly address: () => string,
  ) {}

  title(): string {
    return 'new pairing token';
  }

  keys(): string {
    return 'N another token   Enter/Esc close';
  }

  async create(): Promise<void> {
    const r = await this.app.client.call<TokenReply>('token.create', { ttl_ms: 3600_000 });
    if (r.ok) this.token = r.value;
    else this.app.say(describeFailure('token.create', r, 'new pairing token'), 'error');
  }

  body(): string[] {
    const t = this.token;
    if (!t) return ['', ' Creating a token...'];
    const left = countdown(t.expires, this.app.now());
    return [
      '',
      ' Pairing token (single use):',
      '',
      `   ${bold(t.token)}`,
      '',
      ` Expires in ${left === 'expired' ? fg('red', 'expired: press N for a new one') : bold(left)}`,
      '',
      ' Box fingerprint (the agent checks it before sending anything):',
      `   ${clean(t.fingerprint)}`,
      '',
      ` On the PC:  cairn pair ${clean(this.address())} --token <the token above>`,
    ];
  }

  async key(k: Key): Promise<void> {
    if (k.name === 'enter' || k.name === 'escape') this.app.pop(this);
    else if (k.name === 'n') {
      this.token = null;
      await this.create();
    }
  }
}
