import { Key } from './tui';
import { clean, fg } from './format';

/** A one-line text input the console draws itself: printable characters, Backspace, Ctrl-U. */
export class Field {
  value: string;

  constructor(
    readonly label: string,
    readonly max: number,
    initial = '',
    private readonly allowed: RegExp = /^[\x20-\x7e]$/,
  ) {
    this.value = initial;
  }

  /** true when the key was for this field */
  key(k: Key): boolean {
    if (k.name === 'backspace') {
      this.value = this.value.slice(0, -1);
      return true;
    }
    if (k.ctrl && k.name === 'u') {
      this.value = '';
      return true;
    }
    if (!k.ctrl && k.ch !== undefined && this.allowed.test(k.ch)) {
      if (this.value.length < this.max) this.value += k.ch;
      return true;
    }
    return false;
  }

  render(width: number, focused: boolean): string {
    const room = Math.max(4, Math.min(this.max + 1, width));
    const shown = this.value.length >= room ? this.value.slice(this.value.length - room + 1) : this.value;
    const text = clean(shown) + (focused ? '_' : '');
    const line = text + ' '.repeat(Math.max(0, room - text.length));
    return focused ? `{inverse}${line}{/inverse}` : fg('cyan', clean(shown) + '.'.repeat(Math.max(0, room - shown.length)));
  }
}
