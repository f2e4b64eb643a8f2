import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CAIRN, CAIRND, Daemon, run, RunResult, runJson, startDaemon } from '../../../scripts/lib/procs';
import { generateSample, Prng, textBytes } from '../../../scripts/lib/sample';
import { treeDigest } from '../../../scripts/lib/tree';
import { newRecoveryKey } from '../../../src/core/recovery-key';
import { AgentHome } from '../../../src/agent/state';
import { BoxClient } from '../../../src/agent/box-client';
import { encodePeerSnapshot } from '../../../src/core/peer-api';
import { flipStoredBlob, publishedBlobBytes } from '../harness';

/**
 * Secondary box, end to end with real processes on loopback: a primary and a secondary cairnd,
 * one agent. Replication, fail-over while the primary is down, flow-back, kill -9 on either
 * side mid-transfer, and rebuilding a wiped primary from its secondary with the recovery key.
 */
interface BackupJson { snapshot: string; target: string; bytes_read: number; bytes_uploaded: number; bytes_scanned: number }
interface Snap { id: string; source: string; created: string }
interface Cycle { pushed_snapshots: number; pushed_bytes: number; pulled_snapshots: number; pulled_bytes: number; duration_s: number }

const REPLICATE = ['--replicate-every', '2s', '--no-mdns'];

describe('integration: secondary box (replication, continuity, escrow, recovery)', function () {
  this.timeout(600_000);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-secondary-'));
  const P = path.join(work, 'primary');
  const S = path.join(work, 'secondary');
  const home = path.join(work, 'agent');
  const src = path.join(work, 'src');
  const env = { CAIRN_HOME: home, CAIRN_LOG_LEVEL: 'info', CAIRN_PROBE_TIMEOUT_MS: '3000' };
  let primary: Daemon | undefined;
  let secondary: Daemon | undefined;
  let primaryPort = 0;
  let recoveryKey = '';
  let masterKey: Buffer;
  /** snapshot id -> digest of the tree it saved */
  const digests = new Map<string, string>();

  /** A small change: an append, an in-place rewrite, a new file. */
  const change = (tag: string): void => {
    const rng = new Prng(tag);
    fs.appendFileSync(path.join(src, 'documents/report-0.txt'), textBytes(rng, 50_000));
    const fd = fs.openSync(path.join(src, 'media/video.bin'), 'r+');
    fs.writeSync(fd, rng.bytes(200_000), 0, 200_000, 1_000_000 + rng.int(4_000_000));
    fs.closeSync(fd);
    fs.writeFileSync(path.join(src, `documents/new-${tag}.txt`), textBytes(rng, 100_000));
  };
  const cairn = (args: string[]): Promise<RunResult> => run(CAIRN, args, env);
  const cairnd = (args: string[]): Promise<RunResult> => run(CAIRND, args, env);
  const cairndJson = <T>(args: string[]): Promise<T> => runJson<T>(CAIRND, args, env);
  const backup = async (): Promise<BackupJson> => {
    const r = await cairn(['backup', src, '--source', 'docs', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    const b = JSON.parse(r.stdout) as BackupJson;
    digests.set(b.snapshot, treeDigest(src));
    return b;
  };
  const startPrimary = async (): Promise<Daemon> => {
    primary = await startDaemon(P, { port: primaryPort, env, args: REPLICATE });
    primaryPort = primary.port;
    return primary;
  };
  const restoreAndCheck = async (id: string, from: 'box' | 'secondary'): Promise<void> => {
    const out = path.join(work, `restore-${id}-${from}-${Date.now()}`);
    const r = await cairn(['restore', id, '--target', out, '--from', from, '--json']);
    expect(r.code, r.stderr).to.equal(0);
    expect(treeDigest(out), `snapshot ${id} from the ${from}`).to.equal(digests.get(id));
    fs.rmSync(out, { recursive: true, force: true });
  };
  const waitFor = async (what: string, fn: () => Promise<boolean>, ms = 90_000): Promise<number> => {
    const t0 = Date.now();
    while (!(await fn())) {
      if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 250));
    }
    return Date.now() - t0;
  };
  const snapshotsOn = async (data: string): Promise<Snap[]> => cairndJson<Snap[]>(['snapshots', '--data', data, '--json']);
  /** Bytes of blobs published in the secondary's namespace for the primary (chunks/ and packs/). */
  const namespaceBytes = (): number => publishedBlobBytes(path.join(S, 'peers', fs.readdirSync(path.join(S, 'peers'))[0]));


  before(async () => {
    await cairndJson(['init', '--data', S, '--name', 'vault', '--role', 'secondary', '--hw', 'simulated', '--json']);
    secondary = await startDaemon(S, { env, args: ['--no-mdns'] });
    const init = await cairndJson<{ recovery_key: string }>(['init', '--data', P, '--name', 'office', '--hw', 'simulated', '--json']);
    recoveryKey = init.recovery_key;
    masterKey = Buffer.from((JSON.parse(fs.readFileSync(path.join(P, 'keys.json'), 'utf8')) as { master_key: string }).master_key, 'base64');
    await startPrimary();
    generateSample(src, 24 * 1024 * 1024, 'secondary-test');
  });

  after(async () => {
    await primary?.stop();
    await secondary?.stop();
    fs.rmSync(work, { recursive: true, force: true });
  });

  it('links a primary to a secondary with a pinned token; a wrong token or a secondary-as-agent is refused', async () => {
    const bad = await cairnd(['secondary', 'add', '--data', P, secondary!.address, '--token', 'C1-0000-0000000000-0000000000000000000000000000000000000000000000000000-00']);
    expect(bad.code).to.not.equal(0);
    const token = (await cairndJson<{ token: string }>(['token', 'create', '--data', S, '--json'])).token;
    // Bandwidth-limited, so a large transfer is slow enough to be killed in the middle below.
    const r = await cairndJson<{ secondary: string; name: string; bwlimit_bps: number }>(['secondary', 'add', '--data', P, secondary!.address, '--token', token, '--bwlimit', '8M', '--json']);
    expect(r.name).to.equal('vault');
    expect(r.bwlimit_bps).to.equal(8 * 1024 * 1024);
    expect(fs.statSync(path.join(P, 'secondary.json')).mode & 0o777).to.equal(0o600);
    // Agents pair with primaries only.
    const t2 = (await cairndJson<{ token: string }>(['token', 'create', '--data', S, '--json'])).token;
    const p2 = await run(CAIRN, ['pair', secondary!.address, '--token', t2], { ...env, CAIRN_HOME: path.join(work, 'other-agent') });
    expect(p2.code).to.not.equal(0);
    expect(p2.stderr).to.match(/secondary/);
  });

  it('pairing provisions the agent for the secondary; snapshots replicate and restore from the secondary alone', async () => {
    const token = (await cairndJson<{ token: string }>(['token', 'create', '--data', P, '--json'])).token;
    const p = await cairn(['pair', primary!.address, '--token', token, '--name', 'pc-1']);
    expect(p.code, p.stderr).to.equal(0);
    const cfg = new AgentHome(home).load();
    expect(cfg.continuity?.secondary?.name).to.equal('vault');
    const ids: string[] = [];
    ids.push((await backup()).snapshot);
    change('m1');
    ids.push((await backup()).snapshot);
    change('m2');
    ids.push((await backup()).snapshot);
    const t0 = Date.now();
    // Each commit started a cycle of its own; sync waits for them, then runs one more.
    await cairndJson<Cycle>(['secondary', 'sync', '--data', P, '--json']);
    const secs = (Date.now() - t0) / 1000;
    const status = await cairndJson<{ replication: { pending_snapshots: number; last_success: string | null; escrow_sent_at: string | null; totals: { pushed_snapshots: number; pushed_bytes: number } } }>(['status', '--data', P, '--json']);
    expect(status.replication.pending_snapshots).to.equal(0);
    expect(status.replication.last_success).to.be.a('string');
    expect(status.replication.escrow_sent_at).to.be.a('string');
    const onS = (await run(CAIRND, ['secondary', 'status', '--data', S, '--json'], env));
    const sStatus = JSON.parse(onS.stdout) as { primaries: { snapshots: number; agents: number }[] };
    expect(sStatus.primaries[0].snapshots).to.equal(3);
    expect(sStatus.primaries[0].agents).to.equal(1);
    const totals = status.replication.totals;
    expect(totals.pushed_snapshots).to.equal(3);
    process.stdout.write(`      replication: ${totals.pushed_snapshots} snapshots, ${(totals.pushed_bytes / 1e6).toFixed(1)} MB pushed; sync returned after ${secs.toFixed(2)} s\n`);
    // The primary goes away: every snapshot restores from the secondary alone.
    await primary!.stop('SIGKILL');
    for (const id of ids) await restoreAndCheck(id, 'secondary');
    await startPrimary();
  });

  it('hostile calls to the box-to-box API get clear 4xx answers and change nothing', async () => {
    const link = JSON.parse(fs.readFileSync(path.join(P, 'secondary.json'), 'utf8')) as { cert_pem: string; spki_sha256: string; credential: string };
    const cfg = new AgentHome(home).load();
    const ep = { host: '127.0.0.1', port: secondary!.port, certPem: link.cert_pem, spkiSha256: Buffer.from(link.spki_sha256, 'hex') };
    const asPeer = new BoxClient(ep, link.credential);
    const asAgent = new BoxClient(ep, cfg.agent.credential, { headers: { 'x-cairn-box': cfg.continuity!.primary } });
    const noNs = new BoxClient(ep, cfg.agent.credential);
    const wrongNs = new BoxClient(ep, cfg.agent.credential, { headers: { 'x-cairn-box': '0123456789abcdef' } });
    const forged = new BoxClient(ep, link.credential.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A')));
    const onPrimary = new BoxClient({ host: '127.0.0.1', port: primary!.port, certPem: cfg.box.cert_pem, spkiSha256: Buffer.from(cfg.box.spki_sha256, 'hex') }, link.credential);
    const before = (await asPeer.json<{ snapshots: string[] }>('GET', '/v1/peer/state')).snapshots;
    try {
      const cases: [string, Promise<{ status: number; body: Buffer }>, number][] = [
        ['agent credential on a peer route', asAgent.request('POST', '/v1/peer/snapshots/drop', Buffer.from(JSON.stringify({ ids: before }))), 401],
        ['forged peer credential', forged.request('GET', '/v1/peer/state'), 401],
        ['peer route on a primary', onPrimary.request('GET', '/v1/peer/state'), 409],
        ['agent without namespace header on a secondary', noNs.request('GET', '/v1/snapshots'), 409],
        ['agent with an unknown namespace', wrongNs.request('GET', '/v1/snapshots'), 401],
        ['agent deleting on a secondary', asAgent.request('DELETE', `/v1/snapshots/${before[0]}`), 403],
        ['garbage upload batch', asPeer.request('POST', '/v1/peer/chunks', Buffer.from('not a batch at all, not even close')), 400],
        ['truncated snapshot record', asPeer.request('POST', '/v1/peer/snapshots', Buffer.from([200, 0, 0, 0, 123])), 400],
        ['snapshot record of an unknown agent', asPeer.request('POST', '/v1/peer/snapshots', Buffer.concat(encodePeerSnapshot({ id: 'zz1', agent: '0000000000000000', created_at: 1, source: 'x', host: 'h', manifest: [{ id: '00'.repeat(32), size: 1 }], stats: { files: 0, dirs: 0, bytes_scanned: 0, bytes_read: 0, bytes_new: 0, bytes_uploaded: 0, chunks_new: 0, duration_s: 0 } }, Buffer.alloc(32)))), 404],
        ['escrow for another box', asPeer.request('POST', '/v1/peer/escrow', Buffer.from(JSON.stringify({ escrow: JSON.stringify({ box_id: '0123456789abcdef' }), access_hash: '00'.repeat(32), sealed_at: 'now' }))), 400],
        ['drop with bad ids', asPeer.request('POST', '/v1/peer/snapshots/drop', Buffer.from(JSON.stringify({ ids: ['../../etc'] }))), 400],
        ['recovery with a wrong access proof', asPeer.request('POST', '/v1/recover/escrow', Buffer.from(JSON.stringify({ box: cfg.continuity!.primary, access: '00'.repeat(32) }))), 403],
        ['recovery with a malformed body', asPeer.request('POST', '/v1/recover/escrow', Buffer.from('{')), 400],
      ];
      for (const [what, p, status] of cases) {
        const r = await p;
        expect(r.status, `${what}: ${r.body.toString().slice(0, 200)}`).to.equal(status);
        expect(JSON.parse(r.body.toString()).error.message, what).to.be.a('string');
      }
      const after = (await asPeer.json<{ snapshots: string[] }>('GET', '/v1/peer/state')).snapshots;
      expect(after).to.deep.equal(before);
    } finally {
      for (const c of [asPeer, asAgent, noNs, wrongNs, forged, onPrimary]) c.close();
    }
  });

  it("the secondary's data dir holds no plaintext of a known file and no copy of the master key", async () => {
    const known = fs.readFileSync(path.join(src, 'documents/report-5.txt')).subarray(1000, 1064);
    const needles = [known, masterKey, Buffer.from(masterKey.toString('base64')), Buffer.from(masterKey.toString('hex'))];
    const hits: string[] = [];
    const walk = (d: string): void => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.isFile()) {
          const data = fs.readFileSync(p);
          needles.forEach((n, i) => {
            if (data.includes(n)) hits.push(`${path.relative(S, p)} contains needle ${i}`);
          });
        }
      }
    };
    walk(S);
    expect(hits).to.deep.equal([]);
    expect(fs.existsSync(path.join(S, 'peers'))).to.equal(true);
  });

  it('the primary down: the next backup lands on the secondary; back up: flow-back, then backups go to the primary again', async () => {
    await primary!.stop('SIGKILL');
    const down = Date.now();
    change('m3');
    const onSecondary = await backup();
    const failoverMs = Date.now() - down;
    expect(onSecondary.target).to.equal('secondary');
    // The agent service says so too.
    const sched = await cairn(['schedule', 'add', src, '--source', 'docs', '--every', '1h']);
    expect(sched.code, sched.stderr).to.equal(0);
    change('m4');
    const once = await cairn(['agent', 'run', '--once', '--no-discovery']);
    expect(once.code, once.stderr + once.stdout).to.equal(0);
    const st = JSON.parse((await cairn(['status', '--json'])).stdout) as { sources: { last_target: string; last_snapshot: string }[] };
    expect(st.sources[0].last_target).to.equal('secondary');
    digests.set(st.sources[0].last_snapshot, treeDigest(src));
    const text = (await cairn(['status'])).stdout;
    expect(text).to.match(/SECONDARY/);
    const onS = new Set((await snapshotsOn(S).catch(() => [])).map((s) => s.id));
    expect(onS.size).to.equal(0); // `cairnd snapshots` on a secondary lists its own (none): namespaces are separate
    await startPrimary();
    const flowMs = await waitFor('flow-back', async () => {
      const ids = new Set((await snapshotsOn(P)).map((s) => s.id));
      return ids.has(onSecondary.snapshot) && ids.has(st.sources[0].last_snapshot);
    });
    const back = await backup();
    expect(back.target).to.equal('box');
    expect(back.bytes_read, 'the files cache stays valid across the switch').to.be.lessThan(0.1 * back.bytes_scanned);
    const list = await snapshotsOn(P);
    const ids = list.map((s) => s.id);
    expect(new Set(ids).size, 'no snapshot appears twice').to.equal(ids.length);
    for (const id of ids) await restoreAndCheck(id, 'box');
    process.stdout.write(`      primary down -> first backup on the secondary: ${(failoverMs / 1000).toFixed(2)} s; flow-back after restart: ${(flowMs / 1000).toFixed(2)} s\n`);
  });

  it('a pin mismatch on the primary address stops the run with an error and does not fail over', async () => {
    await primary!.stop();
    const impostor = path.join(work, 'impostor');
    await cairndJson(['init', '--data', impostor, '--name', 'office', '--hw', 'simulated', '--json']);
    const fake = await startDaemon(impostor, { port: primaryPort, env, args: ['--no-mdns'] });
    try {
      const before = (await cairndJson<{ primaries: { snapshots: number }[] }>(['secondary', 'status', '--data', S, '--json'])).primaries[0].snapshots;
      change('m5');
      const r = await cairn(['backup', src, '--source', 'docs', '--json']);
      expect(r.code).to.not.equal(0);
      expect(r.stderr + r.stdout).to.match(/different key|CAIRN_PAIR_PIN_MISMATCH/);
      const after = (await cairndJson<{ primaries: { snapshots: number }[] }>(['secondary', 'status', '--data', S, '--json'])).primaries[0].snapshots;
      expect(after).to.equal(before);
    } finally {
      await fake.stop();
    }
    await startPrimary();
  });

  it('kill -9 mid-replication and mid-flow-back: both resume and converge', async () => {
    // Mid-replication: a big new snapshot, the primary killed while pushing it.
    generateSample(path.join(src, 'big'), 40 * 1024 * 1024, 'big-1');
    const before = namespaceBytes();
    const big = await backup();
    await waitFor('replication to start', async () => namespaceBytes() > before + 2 * 1024 * 1024, 60_000);
    const partial = namespaceBytes() - before;
    await primary!.stop('SIGKILL');
    await startPrimary();
    await waitFor('replication to converge', async () => {
      const st = await cairndJson<{ primaries: { snapshots: number }[] }>(['secondary', 'status', '--data', S, '--json']);
      const p = (await snapshotsOn(P)).length;
      return st.primaries[0].snapshots === p;
    });
    await restoreAndCheck(big.snapshot, 'secondary');
    expect(partial, 'the kill came in the middle of the transfer').to.be.lessThan(namespaceBytes() - before);
    // Mid-flow-back: a big snapshot made on the secondary, the secondary killed while the primary pulls it.
    await primary!.stop('SIGKILL');
    generateSample(path.join(src, 'big2'), 40 * 1024 * 1024, 'big-2');
    const onS = await backup();
    expect(onS.target).to.equal('secondary');
    const chunksBefore = fs.readdirSync(path.join(P, 'chunks')).length;
    void chunksBefore;
    const pChunks = async (): Promise<number> => (await cairndJson<{ chunks: number }>(['status', '--data', P, '--json'])).chunks;
    const c0 = await pChunks();
    await startPrimary();
    await waitFor('flow-back to start', async () => (await pChunks()) > c0 + 3, 60_000);
    const sPort = secondary!.port;
    await secondary!.stop('SIGKILL');
    secondary = await startDaemon(S, { port: sPort, env, args: ['--no-mdns'] });
    await waitFor('flow-back to converge', async () => (await snapshotsOn(P)).some((s) => s.id === onS.snapshot));
    await restoreAndCheck(onS.snapshot, 'box');
  });

  it('a wiped primary is rebuilt with `cairnd recover`; a wrong key is refused and writes nothing; the same agent carries on', async () => {
    const all = (await snapshotsOn(P)).map((s) => s.id);
    await waitFor('replication before the disaster', async () => {
      const st = await cairndJson<{ primaries: { snapshots: number }[] }>(['secondary', 'status', '--data', S, '--json']);
      return st.primaries[0].snapshots === all.length;
    });
    await primary!.stop('SIGKILL');
    fs.rmSync(P, { recursive: true, force: true });
    const wrong = await cairnd(['recover', '--data', P, '--from', secondary!.address, '--recovery-key', newRecoveryKey().text]);
    expect(wrong.code).to.not.equal(0);
    expect(wrong.stderr).to.match(/opens no escrow/);
    expect(fs.existsSync(path.join(P, 'keys.json'))).to.equal(false);
    const t0 = Date.now();
    const rec = await cairndJson<{ box: string; pulled_snapshots: number; pulled_bytes: number; duration_s: number; agents: number; pull_error: string | null }>(
      ['recover', '--data', P, '--from', secondary!.address, '--recovery-key', recoveryKey, '--hw', 'simulated', '--json']);
    expect(rec.pull_error).to.equal(null);
    expect(rec.agents).to.equal(1);
    expect(rec.pulled_snapshots).to.equal(all.length);
    process.stdout.write(`      recovery of a wiped box: ${rec.pulled_snapshots} snapshots, ${(rec.pulled_bytes / 1e6).toFixed(1)} MB pulled, ${((Date.now() - t0) / 1000).toFixed(2)} s\n`);
    await startPrimary();
    change('m6');
    const again = await backup();
    expect(again.target).to.equal('box');
    for (const id of [...all, again.snapshot]) await restoreAndCheck(id, 'box');
  });

  it('retention is mirrored (then GC frees it there); the secondary verifies its blobs without keys', async () => {
    const r = await cairndJson<{ keep: number }>(['retention', '--data', P, '--source', 'docs', '--keep', '1']);
    expect(r.keep).to.equal(1);
    change('m7');
    await backup();
    expect((await snapshotsOn(P)).length).to.equal(1);
    await cairndJson(['secondary', 'sync', '--data', P, '--json']);
    const st = await cairndJson<{ primaries: { snapshots: number; chunks: number }[] }>(['secondary', 'status', '--data', S, '--json']);
    expect(st.primaries[0].snapshots, 'the dropped snapshots are dropped on the secondary too').to.equal(1);
    const gc = await cairndJson<{ chunks_freed: number; namespaces: number }>(['gc', '--data', S, '--grace', '0', '--json']);
    expect(gc.namespaces).to.equal(1);
    expect(gc.chunks_freed, 'GC on the secondary frees what only dropped snapshots held').to.be.greaterThan(0);
    // Rot on the secondary's disk: its verify finds it by checksum (it has no keys).
    const flipped = flipStoredBlob(path.join(S, 'peers', fs.readdirSync(path.join(S, 'peers'))[0]), 1024);
    expect(flipped, 'a stored blob to damage').to.not.equal(null);
    const v = await cairndJson<{ bad: { id: string; reason: string }[] }>(['verify', '--data', S, '--json']);
    expect(v.bad.map((b) => b.id)).to.deep.equal([flipped!.id]);
    expect(v.bad[0].reason).to.match(/checksum/);
  });
});
