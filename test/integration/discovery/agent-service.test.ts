import { expect } from 'chai';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Harness, publishedBlobBytes } from '../harness';
import { CAIRN, startDaemon } from '../../../scripts/lib/procs';
import { Prng } from '../../../scripts/lib/sample';
import { compareTrees } from '../../../scripts/lib/tree';
import { ServiceStore } from '../../../src/agent/service/store';
import { AgentHome } from '../../../src/agent/state';
import { events, waitFor } from './netlab';

/** The agent service as real processes on loopback (a box paired over 127.0.0.1 is never looked for with mDNS). */


function startAgent(h: Harness, args: string[]): { output: () => string; exited: Promise<number | null>; kill: (s: NodeJS.Signals) => void } {
  const p = spawn(process.execPath, [CAIRN, 'agent', 'run', ...args], { env: { ...process.env, ...h.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => p.on('close', (code) => resolve(code)));
  return { output: () => out, exited, kill: (s) => p.kill(s) };
}

describe('integration: the agent service on loopback', function () {
  this.timeout(120_000);
  let h: Harness;

  before(async () => {
    h = await new Harness('cairn-svc').up();
  });
  after(async () => h.close());

  it('SIGTERM mid-backup stops cleanly; the next run resumes without resending what landed', async () => {
    const src = h.path('big');
    const rng = new Prng('svc-sigterm');
    fs.mkdirSync(src, { recursive: true });
    // Large enough that what is on the wire and written behind when the signal comes (up to
    // the box's 64 MiB written behind, unpublished) does not finish the backup.
    for (let i = 0; i < 24; i++) fs.writeFileSync(path.join(src, `f${i}.bin`), rng.bytes(8 * 1024 * 1024));
    const total = 24 * 8 * 1024 * 1024;
    expect((await h.cairn(['schedule', 'add', src, '--source', 'big', '--every', '1h'])).code).to.equal(0);
    const agent = startAgent(h, ['--threads', '1']);
    await waitFor('a tenth of the data on the box', () => publishedBlobBytes(h.data) > total * 0.1, 60_000);
    const tSig = Date.now();
    agent.kill('SIGTERM');
    expect(await agent.exited, agent.output()).to.equal(0);
    const landed = publishedBlobBytes(h.data);
    console.log(`      SIGTERM at ${Math.round((landed / total) * 100)}% landed; the agent exited ${Date.now() - tSig} ms later`);
    const ev = events(agent.output()).map((e) => e.event);
    expect(ev).to.include.members(['service.stopping', 'backup.interrupted', 'service.stopped']);
    expect(ev).to.not.include('backup.finished');
    expect(landed, 'the signal came before the end').to.be.lessThan(total * 0.95);
    const st = JSON.parse((await h.cairn(['status', '--json'])).stdout) as { service: { running: boolean }; sources: { last_outcome: string; next_run: string; running: boolean }[] };
    expect(st.service.running).to.equal(false);
    expect(st.sources[0]).to.include({ last_outcome: 'interrupted', running: false });
    expect(Date.parse(st.sources[0].next_run), 'an interrupted run is due at once').to.be.at.most(Date.now());

    const again = await h.cairn(['agent', 'run', '--once']);
    expect(again.code, again.stdout + again.stderr).to.equal(0);
    const fin = events(again.stdout).find((e) => e.event === 'backup.finished') as { bytes_uploaded: number; bytes_read: number } | undefined;
    expect(fin).to.not.equal(undefined);
    expect(fin!.bytes_read).to.equal(total);
    expect(fin!.bytes_uploaded, 'what landed is not sent again').to.be.lessThan(total - landed * 0.9 + 1024 * 1024);
    const out = h.path('out-big');
    const rr = await h.cairn(['restore', 'latest', '--source', 'big', '--target', out]);
    expect(rr.code, rr.stderr).to.equal(0);
    expect(compareTrees(src, out)).to.deep.equal([]);
  });

  it('`cairn backup` refuses to run a source whose backup is running in another process', async () => {
    const src = h.path('small');
    fs.mkdirSync(src, { recursive: true });
    fs.writeFileSync(path.join(src, 'a.txt'), 'a');
    // Another live process holds the source's lock (as a running service would).
    const holder = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
    try {
      const store = new ServiceStore(new AgentHome(h.home));
      fs.mkdirSync(store.dir, { recursive: true });
      fs.writeFileSync(store.lockFile('small'), JSON.stringify({ pid: holder.pid, since: new Date().toISOString() }));
      const r = await h.cairn(['backup', src, '--source', 'small', '--json']);
      expect(r.code).to.equal(1);
      expect((JSON.parse(r.stdout) as { error: { code: string } }).error.code).to.equal('CAIRN_SOURCE_BUSY');
      holder.kill('SIGKILL');
      await new Promise((res) => holder.once('exit', res));
      // Its owner is gone: the lock is stale and taken over.
      const ok = await h.cairn(['backup', src, '--source', 'small', '--json']);
      expect(ok.code, ok.stderr).to.equal(0);
      expect(fs.existsSync(store.lockFile('small')), 'released after the run').to.equal(false);
    } finally {
      holder.kill('SIGKILL');
    }
  });

  it('backs off while the box is down and backs up once it is back', async () => {
    const src = h.path('small');
    expect((await h.cairn(['schedule', 'remove', 'big'])).code).to.equal(0);
    expect((await h.cairn(['schedule', 'add', src, '--source', 'small', '--every', '1h'])).code).to.equal(0);
    const port = h.daemon!.port;
    await h.daemon!.stop();
    const agent = startAgent(h, ['--once', '--backoff', '1s,1s,1s,1s,1s,1s,1s,1s,1s,1s', '--jitter', '0']);
    await waitFor('two failed attempts', () => events(agent.output()).filter((e) => e.event === 'box.unreachable').length >= 2, 30_000);
    h.daemon = await startDaemon(h.data, { port, env: h.env });
    expect(await agent.exited, agent.output()).to.equal(0);
    const ev = events(agent.output());
    const starts = ev.filter((e) => e.event === 'backup.started').map((e) => Date.parse(String(e.t)));
    expect(starts.length).to.be.at.least(3);
    for (let i = 1; i < starts.length; i++) expect(starts[i] - starts[i - 1], 'attempts are spaced by the backoff').to.be.at.least(900);
    const retries = ev.filter((e) => e.event === 'backup.retry_scheduled');
    expect(retries.map((e) => e.delay_ms)).to.deep.equal(retries.map(() => 1000));
    expect(ev.map((e) => e.event)).to.include('backup.finished');
    expect(ev.map((e) => e.event)).to.not.include('discovery.searching'); // loopback box: no mDNS
    const st = JSON.parse((await h.cairn(['status', '--json'])).stdout) as { sources: { source: string; last_outcome: string }[] };
    expect(st.sources.find((s) => s.source === 'small')!.last_outcome).to.equal('ok');
  });
});
