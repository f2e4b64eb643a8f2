import { CairnError } from '../../core/errors';
import { parseCli } from '../../core/cli';
import { createLogger, Logger } from '../../core/log';
import { AgentHome } from '../state';
import { discoverBoxes } from './browser';
import { pairByDiscovery } from './locate';

/** `cairn discover` and `cairn pair --token` without an address. */

function seconds(text: string | undefined, dflt: number, flag: string): number {
  if (text === undefined) return dflt * 1000;
  const n = Number(text);
  if (!(n > 0 && n <= 600)) throw new CairnError('CAIRN_USAGE', `${flag} takes seconds, 0.1 to 600`);
  return n * 1000;
}

/** Warnings of the discovery layer go to stderr as JSON lines; stdout stays the command's answer. */
function stderrLogger(): Logger {
  return createLogger({ name: 'cairn', level: 'warn', write: (l) => process.stderr.write(l + '\n') });
}

export async function cmdDiscover(args: string[]): Promise<void> {
  const { values, positionals } = parseCli(args, { json: { type: 'boolean' }, timeout: { type: 'string' } }, 'cairn discover [--json] [--timeout S]');
  if (positionals.length) throw new CairnError('CAIRN_USAGE', 'usage: cairn discover [--json] [--timeout S]');
  const boxes = await discoverBoxes({ timeoutMs: seconds(values.timeout, 3, '--timeout'), log: stderrLogger() });
  const rows = boxes.map((b) => ({ id: b.id, name: b.name, version: b.version, addresses: b.addresses, port: b.port, key_hash: b.keyHash, host: b.host, heard_after_ms: b.heardAfterMs, heard_at: new Date(b.heardAt).toISOString() }));
  if (values.json) {
    process.stdout.write(JSON.stringify(rows, null, 2) + '\n');
    return;
  }
  if (rows.length === 0) {
    process.stdout.write('no Cairn box answered on this network (is it on, and on the same network? mDNS does not cross routers)\n');
    return;
  }
  for (const r of rows) process.stdout.write(`${r.name}  id ${r.id}  ${r.addresses.map((a) => `${a}:${r.port}`).join(' ')}  key ${r.key_hash}…  v${r.version}\n`);
  process.stdout.write('(what a box announces is a hint: pairing checks its key against the token)\n');
}

export async function cmdPairDiscovered(values: { token: string; name?: string; json?: boolean; timeout?: string }): Promise<void> {
  const home = new AgentHome();
  const r = await pairByDiscovery(home, { token: values.token, name: values.name, timeoutMs: seconds(values.timeout, 10, '--timeout'), log: stderrLogger() });
  const c = r.config;
  const value = { box: c.box.id, box_name: c.box.name, agent: c.agent.id, fingerprint: `sha256:${c.box.spki_sha256}`, address: `${r.host}:${r.port}`, refused: r.refused };
  process.stdout.write(values.json ? JSON.stringify(value, null, 2) + '\n'
    : `Found box "${c.box.name}" at ${r.host}:${r.port} on the network; its key matches the token.\nPaired as agent ${c.agent.id}.\nBox key pinned: sha256:${c.box.spki_sha256}\n`);
}
