import fs from 'node:fs';
import Database from 'better-sqlite3';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { CAIRN, CAIRND, Daemon, run, RunResult, runJson, startDaemon } from '../../scripts/lib/procs';
import { AgentHome, AgentConfig } from '../../src/agent/state';
import { clientFor } from '../../src/agent/pair';
import { BoxClient } from '../../src/agent/box-client';
import { Chunker } from '../../src/core/chunker';

/** A real box (cairnd process) and a real agent home in a temp dir, for integration tests. */
/**
 * Bytes of the blobs published in a chunk store (its chunks/ and packs/ directories): what has
 * landed durably. Blobs still under tmp/ are not counted.
 */
export function publishedBlobBytes(storeDir: string): number {
  let bytes = 0;
  const walk = (d: string): void => {
    if (!fs.existsSync(d)) return;
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else bytes += fs.statSync(p).size;
    }
  };
  walk(path.join(storeDir, 'chunks'));
  walk(path.join(storeDir, 'packs'));
  return bytes;
}

/**
 * Flips one byte in the middle of the newest stored blob of at least `minSize` bytes of a chunk
 * store (found in its catalog: a loose file under chunks/, or a range of a pack under packs/;
 * which one depends on how the blob's upload was batched). Returns the blob's id and whether it
 * was loose, or null when the store holds no such blob.
 */
export function flipStoredBlob(storeDir: string, minSize: number): { id: string; loose: string | null } | null {
  const db = new Database(path.join(storeDir, 'catalog.db'), { readonly: true });
  let row: { id: Buffer; size: number; pack: string | null; offset: number | null } | undefined;
  try {
    row = db.prepare('SELECT id, size, pack, offset FROM chunks WHERE size >= ? ORDER BY stored_at DESC LIMIT 1').get(minSize) as typeof row;
  } finally {
    db.close();
  }
  if (!row) return null;
  const id = row.id.toString('hex');
  const loose = path.join(storeDir, 'chunks', id.slice(0, 2), id[2], id);
  const file = row.pack === null ? loose : path.join(storeDir, 'packs', `${row.pack}.pack`);
  const bytes = fs.readFileSync(file);
  bytes[(row.offset ?? 0) + (row.size >> 1)] ^= 0x40;
  fs.writeFileSync(file, bytes);
  return { id, loose: row.pack === null ? loose : null };
}

export class Harness {
  readonly work: string;
  readonly data: string;
  readonly home: string;
  daemon: Daemon | undefined;
  private chunker: Chunker | undefined;

  constructor(name = 'cairn-it') {
    this.work = fs.mkdtempSync(path.join(os.tmpdir(), `${name}-`));
    this.data = path.join(this.work, 'box');
    this.home = path.join(this.work, 'agent');
  }

  get env(): NodeJS.ProcessEnv {
    return { CAIRN_HOME: this.home, CAIRN_LOG_LEVEL: 'info' };
  }

  path(...p: string[]): string {
    return path.join(this.work, ...p);
  }

  async init(name = 'test-box'): Promise<{ box: string; recovery_key: string; fingerprint: string }> {
    return runJson(CAIRND, ['init', '--data', this.data, '--name', name, '--hw', 'simulated'], this.env);
  }

  async start(): Promise<Daemon> {
    this.daemon = await startDaemon(this.data, { env: this.env });
    return this.daemon;
  }

  async token(ttl = '10m'): Promise<string> {
    return (await runJson<{ token: string }>(CAIRND, ['token', 'create', '--data', this.data, '--ttl', ttl], this.env)).token;
  }

  /** init + serve + token + pair */
  async up(): Promise<this> {
    await this.init();
    await this.start();
    const r = await this.cairn(['pair', this.daemon!.address, '--token', await this.token(), '--name', 'test-pc']);
    if (r.code !== 0) throw new Error(`pair failed: ${r.stderr}`);
    return this;
  }

  cairn(args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
    return run(CAIRN, args, { ...this.env, ...env });
  }

  cairnJson<T>(args: string[]): Promise<T> {
    return runJson<T>(CAIRN, args, this.env);
  }

  cairnd(args: string[]): Promise<RunResult> {
    return run(CAIRND, args, this.env);
  }

  cairndJson<T>(args: string[]): Promise<T> {
    return runJson<T>(CAIRND, [...args, '--data', this.data], this.env);
  }

  /**
   * The chunks the paired agent cuts `file` into (with its own gear key, so the cut points are
   * this box's), each as the SHA-256 of its bytes and its size: what a test can expect the
   * agent to read, seal and upload.
   */
  chunksOf(file: string): { hash: string; size: number }[] {
    this.chunker ??= new Chunker(new AgentHome(this.home).keys(this.agentConfig()).gearKey);
    const data = fs.readFileSync(file);
    const out: { hash: string; size: number }[] = [];
    let pos = 0;
    for (const len of this.chunker.split(data)) {
      out.push({ hash: createHash('sha256').update(data.subarray(pos, pos + len)).digest('hex'), size: len });
      pos += len;
    }
    return out;
  }

  agentConfig(): AgentConfig {
    return new AgentHome(this.home).load();
  }

  client(): BoxClient {
    return clientFor(this.agentConfig());
  }

  /** Every file under the box's chunk store, with size (to prove "nothing changed"). */
  storeListing(): string[] {
    const out: string[] = [];
    const walk = (d: string): void => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) walk(p);
        else out.push(`${path.relative(this.data, p)}:${fs.statSync(p).size}`);
      }
    };
    for (const sub of ['chunks', 'packs', 'refs']) if (fs.existsSync(path.join(this.data, sub))) walk(path.join(this.data, sub));
    return out.sort();
  }

  async close(): Promise<void> {
    if (this.daemon) await this.daemon.stop();
    fs.rmSync(this.work, { recursive: true, force: true });
  }
}
