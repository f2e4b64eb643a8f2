#!/usr/bin/env node
import { parseCli } from '../../core/cli';
import { errorMessage } from '../../core/errors';
import { App, View } from './app';
import { DaemonClient } from './client';
import { Dashboard } from './dashboard';
import { fg } from './format';
import { Tui } from './tui';
import { Wizard } from './wizard';

/**
 * cairn-console: the box's text console on tty1. It finds cairnd through the admin socket of
 * the data directory (--data DIR, else $CAIRN_DATA, else /var/lib/cairn) and shows the
 * activation wizard on a box that is not activated, the dashboard on one that is.
 */
export const DEFAULT_DATA_DIR = '/var/lib/cairn';

const USAGE = 'cairn-console [--data DIR]   (default: $CAIRN_DATA, else /var/lib/cairn)';

/** Shown until cairnd answers for the first time. */
class Waiting implements View {
  constructor(private readonly socket: string) {}
  title(): string {
    return 'starting';
  }
  keys(): string {
    return 'Ctrl-C quit';
  }
  body(): string[] {
    return ['', ` Waiting for cairnd on ${this.socket} ...`, '', fg('blue', ' (systemd starts it; the console connects as soon as it answers)')];
  }
  key(): void {
    /* nothing to do yet */
  }
}

function main(): void {
  let values: { data?: string; help?: boolean };
  try {
    values = parseCli(process.argv.slice(2), { data: { type: 'string' }, help: { type: 'boolean', short: 'h' } }, USAGE).values;
  } catch (err) {
    process.stderr.write(`${errorMessage(err)}\n`);
    process.exitCode = 2;
    return;
  }
  if (values.help) {
    process.stdout.write(`usage: ${USAGE}\n`);
    return;
  }
  const data = values.data ?? process.env.CAIRN_DATA ?? DEFAULT_DATA_DIR;
  const client = new DaemonClient(data);
  const tui = new Tui();
  const app = new App(tui, client);
  const dashboard = (): void => app.setBase(new Dashboard(app));
  let decided = false;

  // The first answer of 'setup.state' decides between wizard and dashboard.
  const waiting: View = Object.assign(new Waiting(client.socket), {
    async poll(): Promise<void> {
      if (decided) return;
      const r = await client.call<{ activated: boolean; hostname: string }>('setup.state');
      if (!r.ok) return;
      decided = true;
      if (r.value.activated) dashboard();
      else app.setBase(new Wizard(app, r.value.hostname, dashboard));
    },
  });
  app.setBase(waiting);
  // Nothing a view does may take the console down: it is the box's only screen.
  process.on('uncaughtException', (err) => app.say(`internal error: ${errorMessage(err)}`, 'error'));
  process.on('unhandledRejection', (err) => app.say(`internal error: ${errorMessage(err)}`, 'error'));
  app.start();
}

main();
