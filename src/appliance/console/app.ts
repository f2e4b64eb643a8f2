import { errorMessage } from '../../core/errors';
import { DaemonClient } from './client';
import { bold, clean, clock, fg, inverse, pad, visibleLength } from './format';
import { Key, Tui } from './tui';

/**
 * The console application: a stack of views (wizard or dashboard at the bottom, dialogs on
 * top), a header with the box's state and the connection, a message line and the key line.
 * Views compose text; the app draws it, routes keys, and polls the daemon. A daemon that goes
 * away (restart, setup mode handing over to serving) shows "reconnecting" and the console
 * keeps polling until it answers again; nothing a view holds is lost meanwhile.
 */
export interface View {
  /** after "CAIRN" in the header */
  title(): string;
  /** right side of the header, before the clock (the box's health on the dashboard) */
  badge?(): string;
  body(width: number, height: number): string[];
  /** key hints for the bottom line(s, split on newlines): shortcut letters the view answers to */
  keys(): string;
  key(k: Key): void | Promise<void>;
  /** called every poll interval while the view is on top (or is the base under a dialog) */
  poll?(): Promise<void>;
}

export type MessageKind = 'info' | 'ok' | 'error';

export interface AppOptions {
  pollMs?: number;
  now?: () => number;
}

export class App {
  private stack: View[] = [];
  private message: { text: string; kind: MessageKind; at: number } | null = null;
  private busyText: string | null = null;
  private timer: NodeJS.Timeout | undefined;
  private polling = false;
  private stopped = false;
  readonly pollMs: number;
  readonly now: () => number;

  constructor(
    readonly tui: Tui,
    readonly client: DaemonClient,
    opts: AppOptions = {},
  ) {
    this.pollMs = opts.pollMs ?? 2000;
    this.now = opts.now ?? Date.now;
    tui.onKey((k) => this.onKey(k));
    tui.onResize(() => this.redraw());
  }

  get top(): View | undefined {
    return this.stack[this.stack.length - 1];
  }

  setBase(v: View): void {
    this.stack = [v];
    this.message = null;
    this.redraw();
    void this.pollNow();
  }

  push(v: View): void {
    this.stack.push(v);
    this.redraw();
    void this.pollNow();
  }

  pop(v?: View): void {
    if (this.stack.length <= 1) return;
    if (v && this.top !== v) return;
    this.stack.pop();
    this.redraw();
  }

  say(text: string, kind: MessageKind = 'info'): void {
    this.message = { text, kind, at: this.now() };
    this.redraw();
  }

  clearMessage(): void {
    this.message = null;
  }

  /** Runs an operation with a "working" line; keys wait meanwhile. */
  async busy<T>(text: string, fn: () => Promise<T>): Promise<T> {
    this.busyText = text;
    this.redraw();
    try {
      return await fn();
    } finally {
      this.busyText = null;
      this.redraw();
    }
  }

  get isBusy(): boolean {
    return this.busyText !== null;
  }

  private onKey(k: Key): void {
    if (k.ctrl && k.name === 'c') {
      this.stop();
      return;
    }
    if (this.busyText) return;
    const v = this.top;
    if (!v) return;
    try {
      const r = v.key(k);
      if (r) r.then(() => this.redraw(), (err: unknown) => this.say(errorMessage(err), 'error'));
      else this.redraw();
    } catch (err) {
      this.say(errorMessage(err), 'error');
    }
  }

  redraw(): void {
    if (this.stopped) return;
    const w = this.tui.width;
    const h = this.tui.height;
    const v = this.top;
    const left = ` CAIRN  ${v ? v.title() : ''}`;
    const conn = this.client.connected ? '' : fg('yellow', 'reconnecting to cairnd... ');
    const right = `${conn}${v?.badge ? v.badge() + ' ' : ''}${clock(new Date(this.now()))} `;
    const gap = Math.max(1, w - visibleLength(left) - visibleLength(right));
    const header = inverse(pad(left, visibleLength(left)) + ' '.repeat(gap)) + right;
    const keyLines = v ? v.keys().split('\n') : [''];
    const bodyHeight = h - 2 - keyLines.length;
    const body = v ? v.body(w, bodyHeight) : [];
    const lines = [header, ...body.slice(0, bodyHeight)];
    while (lines.length < h - 1 - keyLines.length) lines.push('');
    let msg = '';
    if (this.busyText) msg = fg('cyan', ` ... ${clean(this.busyText)}`);
    else if (!this.client.connected) msg = fg('yellow', ` cairnd is not answering on ${clean(this.client.socket)}: reconnecting...`);
    else if (this.message) msg = fg(this.message.kind === 'error' ? 'red' : this.message.kind === 'ok' ? 'green' : 'cyan', ` ${clean(this.message.text)}`);
    lines.push(msg);
    for (const k of keyLines) lines.push(bold(` ${k}`));
    this.tui.draw(lines);
  }

  async pollNow(): Promise<void> {
    if (this.polling || this.stopped) return;
    this.polling = true;
    try {
      // The view on top polls; a dialog over the dashboard lets the dashboard poll too.
      const views = new Set<View>([this.stack[0], this.top].filter((x): x is View => x !== undefined));
      for (const v of views) if (v.poll) await v.poll();
    } catch (err) {
      this.say(errorMessage(err), 'error');
    } finally {
      this.polling = false;
    }
    this.redraw();
  }

  start(): void {
    const loop = (): void => {
      if (this.stopped) return;
      void this.pollNow().finally(() => {
        if (!this.stopped) this.timer = setTimeout(loop, this.client.connected ? this.pollMs : 1000);
      });
    };
    loop();
    // the clock and countdowns move every second even between polls
    const tick = setInterval(() => (this.stopped ? clearInterval(tick) : this.redraw()), 1000);
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.tui.destroy();
    process.exit(0);
  }
}
