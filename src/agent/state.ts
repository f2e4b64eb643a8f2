import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { CairnError, errnoCode } from '../core/errors';
import { DataKeys, DataKeysJson, dataKeysFromJson } from '../core/keys';
import type { ContinuityInfo } from '../core/peer-api';

/**
 * The agent's state directory ($CAIRN_HOME, default ~/.config/cairn), owner-only:
 *   agent.json   the pinned box (address, certificate, SPKI hash), this agent's credential and
 *                the data keys (0600: whoever reads it can read this PC's backups)
 *   cache.db     files cache (SQLite)
 *   tmp/         manifest spool files of running backups
 */
export interface AgentConfig {
  format: 1;
  box: { id: string; name: string; host: string; port: number; cert_pem: string; spki_sha256: string };
  agent: { id: string; name: string; credential: string };
  keys: DataKeysJson;
  paired_at: string;
  /** the secondary to fail over to, as the box last described it (absent: none known) */
  continuity?: ContinuityInfo;
}

export class AgentHome {
  readonly root: string;
  constructor(root?: string) {
    this.root = root ?? process.env.CAIRN_HOME ?? path.join(os.homedir(), '.config', 'cairn');
  }
  get configFile(): string { return path.join(this.root, 'agent.json'); }
  get cacheFile(): string { return path.join(this.root, 'cache.db'); }
  get tmp(): string { return path.join(this.root, 'tmp'); }

  ensure(): void {
    fs.mkdirSync(this.root, { recursive: true, mode: 0o700 });
    fs.mkdirSync(this.tmp, { recursive: true, mode: 0o700 });
  }

  load(): AgentConfig {
    let text: string;
    try {
      text = fs.readFileSync(this.configFile, 'utf8');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') {
        throw new CairnError('CAIRN_AGENT_NOT_PAIRED', `this agent is not paired with a box (no ${this.configFile}); run \`cairn pair HOST:PORT --token TOKEN\` first`);
      }
      throw err;
    }
    const c = JSON.parse(text) as AgentConfig;
    if (c.format !== 1) throw new CairnError('CAIRN_AGENT_NOT_PAIRED', `${this.configFile} has an unknown format; pair again`);
    return c;
  }

  keys(c: AgentConfig): DataKeys {
    return dataKeysFromJson(c.keys);
  }

  save(c: AgentConfig): void {
    this.ensure();
    const tmp = `${this.configFile}.${randomBytes(4).toString('hex')}.tmp`;
    const fd = fs.openSync(tmp, 'wx', 0o600);
    try {
      fs.writeFileSync(fd, JSON.stringify(c, null, 2) + '\n');
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, this.configFile);
  }
}
