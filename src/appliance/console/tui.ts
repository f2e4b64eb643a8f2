import blessed from 'blessed';
import { fit } from './format';

/**
 * The thin typed layer over blessed: one full-screen box whose lines the console composes
 * itself (header, body, footer), key presses as plain records, and resize events. blessed
 * does the terminal work (terminfo, smart redraws, VT100 colours); nothing else in the console
 * touches its loosely typed API.
 */
export interface Key {
  /** 'enter', 'escape', 'tab', 'up', 'down', 'left', 'right', 'backspace', a letter, ... */
  name: string;
  /** the printable character, if any */
  ch: string | undefined;
  ctrl: boolean;
  shift: boolean;
}

export interface TuiOptions {
  input?: NodeJS.ReadableStream;
  output?: NodeJS.WritableStream;
  terminal?: string;
}

export class Tui {
  private readonly screen: blessed.Widgets.Screen;
  private readonly box: blessed.Widgets.BoxElement;

  constructor(opts: TuiOptions = {}) {
    this.screen = blessed.screen({
      smartCSR: true,
      fullUnicode: false,
      dockBorders: false,
      autoPadding: false,
      warnings: false,
      title: 'Cairn',
      input: opts.input,
      output: opts.output,
      terminal: opts.terminal,
    } as blessed.Widgets.IScreenOptions);
    this.box = blessed.box({ parent: this.screen, top: 0, left: 0, width: '100%', height: '100%', tags: true, wrap: false, style: {} });
  }

  get width(): number {
    return Math.max(20, Number(this.screen.width) || 80);
  }

  get height(): number {
    return Math.max(10, Number(this.screen.height) || 24);
  }

  /** Exactly `height` lines, each cut to the width. */
  draw(lines: string[]): void {
    const w = this.width;
    const out: string[] = [];
    for (let i = 0; i < this.height; i++) out.push(fit(lines[i] ?? '', w));
    this.box.setContent(out.join('\n'));
    this.screen.render();
  }

  onKey(fn: (k: Key) => void): void {
    this.screen.on('keypress', (ch: string | undefined, key: blessed.Widgets.Events.IKeyEventArg | undefined) => {
      const name = key?.name ?? (ch && ch.length === 1 ? ch.toLowerCase() : '');
      // blessed reports "\r" twice, as 'enter' and as 'return': keep one; "\n" arrives as 'linefeed'.
      if (name === 'return') return;
      const norm = name === 'linefeed' ? 'enter' : name;
      if (!norm && !ch) return;
      fn({ name: norm, ch: ch && ch.length === 1 && ch >= ' ' && ch !== '\x7f' ? ch : undefined, ctrl: !!key?.ctrl, shift: !!key?.shift });
    });
  }

  onResize(fn: () => void): void {
    this.screen.on('resize', fn);
  }

  destroy(): void {
    this.screen.destroy();
  }
}
