import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CAIRN, CAIRND, runJson } from '../../../scripts/lib/procs';
import { compareTrees } from '../../../scripts/lib/tree';
import { Prng } from '../../../scripts/lib/sample';
import { AgentConfig } from '../../../src/agent/state';
import { events, NetLab, waitFor } from './netlab';

/**
 * Discovery and the agent service between two hosts: the box in one network namespace, the PC
 * in another, a veth pair between them. The steps build on each other, in order.
 */
const SPOOF = path.join(__dirname, 'spoof-advertiser.js');

interface Discovered {
  id: string;
  name: string;
  addresses: string[];
  port: number;
  key_hash: string;
  heard_after_ms: number;
  heard_at: string;
}

describe('integration: mDNS discovery and the agent service across two network namespaces', function () {
  this.timeout(120_000);
  let lab: NetLab;
  let work: string;
  let boxData: string;
  let pcHome: string;
  let box: Awaited<ReturnType<NetLab['startBox']>> | undefined;
  let boxId: string;
  let realKeyHash: string;
  const src = (): string => path.join(work, 'src');
  const pcEnv = (): NodeJS.ProcessEnv => ({ CAIRN_HOME: pcHome, CAIRN_LOG_LEVEL: 'info' });
  const cairnPc = (args: string[], env: NodeJS.ProcessEnv = {}) => lab.runIn(lab.nsPc, CAIRN, args, { ...pcEnv(), ...env });

  before(function () {
    const why = NetLab.unavailable();
    if (why) {
      console.log(`    skipping: ${why}`);
      this.skip();
    }
    lab = new NetLab();
    lab.setup(1, 2);
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-lan-'));
    boxData = path.join(work, 'box');
    pcHome = path.join(work, 'pc');
    const rng = new Prng('lan');
    fs.mkdirSync(path.join(src(), 'docs'), { recursive: true });
    fs.writeFileSync(path.join(src(), 'docs', 'letter.txt'), 'Dear box,\n');
    fs.writeFileSync(path.join(src(), 'photo.bin'), rng.bytes(3 * 1024 * 1024 + 17));
  });

  after(async function () {
    if (lab) await lab.destroy();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('`cairn discover` in the PC namespace finds the box started in the other one (and measures how fast)', async () => {
    const init = await runJson<{ box: string }>(CAIRND, ['init', '--data', boxData, '--name', 'office-box', '--hw', 'simulated']);
    boxId = init.box;
    // Box and browser start together: the figure is start-to-discovery as a user sees it.
    const t0 = Date.now();
    const discover = cairnPc(['discover', '--json', '--timeout', '3']);
    box = await lab.startBox(CAIRND, boxData, '0.0.0.0:8443');
    const tReady = Date.now() - t0;
    const r = await discover;
    expect(r.code, r.stderr).to.equal(0);
    const found = JSON.parse(r.stdout) as Discovered[];
    expect(found.map((b) => b.id)).to.deep.equal([boxId]);
    expect(found[0]).to.include({ name: 'office-box', port: 8443 });
    expect(found[0].addresses).to.deep.equal([lab.addr(1)]);
    const cert = fs.readFileSync(path.join(boxData, 'tls', 'cert.pem'), 'utf8');
    const { createHash, X509Certificate } = await import('node:crypto');
    const spki = createHash('sha256').update(new X509Certificate(cert).publicKey.export({ type: 'spki', format: 'der' })).digest();
    realKeyHash = spki.subarray(0, 8).toString('hex');
    expect(found[0].key_hash).to.equal(realKeyHash);
    const heard = Date.parse(found[0].heard_at) - t0;
    expect(heard).to.be.at.least(0);
    console.log(`      start -> discovery: ${heard} ms (box and \`cairn discover\` started together; the box was serving after ${tReady} ms)`);
    expect(events(box.output()).map((e) => e.event)).to.include('mdns.advertising');
  });

  it('malformed packets sent to the box\'s mDNS port do not disturb it', async () => {
    // Garbage, a truncated header, and a query with an absurd question count, from the PC side.
    const script = `
      const s = require('dgram').createSocket('udp4');
      const pkts = [Buffer.from('not dns at all'), Buffer.alloc(5), Buffer.from([0,0,0,0,0xff,0xff,0,0,0,0,0,0,1,2,3])];
      let n = 0;
      for (const p of pkts) for (const to of ['${lab.addr(1)}', '224.0.0.251']) s.send(p, 5353, to, () => { if (++n === 6) s.close(); });`;
    const g = spawnSync('ip', ['netns', 'exec', lab.nsPc, process.execPath, '-e', script], { encoding: 'utf8' });
    expect(g.status, g.stderr).to.equal(0);
    const r = await cairnPc(['discover', '--json', '--timeout', '1.5']);
    expect((JSON.parse(r.stdout) as Discovered[]).map((b) => b.id)).to.deep.equal([boxId]);
    expect(box!.proc.exitCode).to.equal(null);
  });

  it('`cairn pair --token` with no address finds the box by the token\'s key and pairs', async () => {
    const { token } = await runJson<{ token: string }>(CAIRND, ['token', 'create', '--data', boxData, '--ttl', '10m']);
    const r = await cairnPc(['pair', '--token', token, '--name', 'pc-1', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    const out = JSON.parse(r.stdout) as { box: string; address: string };
    expect(out.box).to.equal(boxId);
    expect(out.address).to.equal(`${lab.addr(1)}:8443`);
    const config = JSON.parse(fs.readFileSync(path.join(pcHome, 'agent.json'), 'utf8')) as AgentConfig;
    expect(config.box).to.include({ id: boxId, host: lab.addr(1), port: 8443 });
  });

  it('a scheduled backup runs across the link (`cairn agent run`), shows in `cairn status`, and restores', async () => {
    const add = await cairnPc(['schedule', 'add', src(), '--source', 'docs', '--every', '1h']);
    expect(add.code, add.stderr).to.equal(0);
    const agent = lab.spawnIn(lab.nsPc, CAIRN, ['agent', 'run'], pcEnv());
    await waitFor('the scheduled backup', () => events(agent.output()).some((e) => e.event === 'backup.finished' || e.event === 'backup.failed'), 60_000);
    const st = JSON.parse((await cairnPc(['status', '--json'])).stdout) as { service: { running: boolean }; sources: { source: string; last_outcome: string; last_snapshot: string; next_run: string; last_started: string }[] };
    expect(st.service.running).to.equal(true);
    expect(st.sources).to.have.length(1);
    expect(st.sources[0].last_outcome).to.equal('ok');
    const gap = Date.parse(st.sources[0].next_run) - Date.parse(st.sources[0].last_started);
    expect(gap).to.equal(3_600_000);
    agent.proc.kill('SIGTERM');
    expect(await agent.exited).to.equal(0);
    expect(events(agent.output()).map((e) => e.event)).to.include.members(['service.started', 'backup.started', 'backup.finished', 'service.stopping', 'service.stopped']);
    const out = path.join(work, 'restored-1');
    const rr = await cairnPc(['restore', 'latest', '--target', out]);
    expect(rr.code, rr.stderr).to.equal(0);
    expect(compareTrees(src(), out)).to.deep.equal([]);
  });

  it('after the box changes address, the agent finds it again by its id, checks its key, and backs up', async () => {
    lab.moveBox(1, 7);
    fs.writeFileSync(path.join(src(), 'docs', 'letter.txt'), 'Dear box, you moved.\n');
    const r = await cairnPc(['agent', 'run', '--once', '--backoff', '1s', '--jitter', '0']);
    const ev = events(r.stdout);
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    expect(ev.map((e) => e.event)).to.include.members(['box.unreachable', 'box.moved', 'backup.finished']);
    expect(ev.find((e) => e.event === 'box.moved')).to.include({ to: `${lab.addr(7)}:8443` });
    const config = JSON.parse(fs.readFileSync(path.join(pcHome, 'agent.json'), 'utf8')) as AgentConfig;
    expect(config.box.host).to.equal(lab.addr(7));
    const out = path.join(work, 'restored-2');
    const rr = await cairnPc(['restore', 'latest', '--target', out]);
    expect(rr.code, rr.stderr).to.equal(0);
    expect(compareTrees(src(), out)).to.deep.equal([]);
  });

  it('a box announcing the same name, id and key hash but holding another key is refused', async () => {
    // The real box goes away; an impostor takes its name, its address and copies its TXT record.
    const { token } = await runJson<{ token: string }>(CAIRND, ['token', 'create', '--data', boxData, '--ttl', '10m']);
    expect(await box!.stop()).to.equal(0);
    expect(events(box!.output()).map((e) => e.event)).to.include('mdns.goodbye');
    box = undefined;
    const impData = path.join(work, 'impostor');
    await runJson(CAIRND, ['init', '--data', impData, '--name', 'office-box', '--hw', 'simulated']);
    const imp = await lab.startBox(CAIRND, impData, '0.0.0.0:8443');
    const spoof = lab.spawnIn(lab.nsBox, SPOOF, [JSON.stringify({ boxId, name: 'office-box', spkiHex: realKeyHash, port: 8443, listenHost: '0.0.0.0' })]);
    await waitFor('the spoofed announcement', () => /mdns\.advertising/.test(spoof.output()), 15_000);
    const before = fs.readFileSync(path.join(pcHome, 'agent.json'), 'utf8');

    // 1. Pairing by token on this network: the copied key hash makes it a candidate; its real key refuses it.
    const otherHome = path.join(work, 'pc-2');
    const p = await cairnPc(['pair', '--token', token, '--timeout', '3', '--json'], { CAIRN_HOME: otherHome });
    expect(p.code).to.equal(1);
    expect((JSON.parse(p.stdout) as { error: { code: string } }).error.code).to.equal('CAIRN_PAIR_PIN_MISMATCH');
    expect(fs.existsSync(path.join(otherHome, 'agent.json'))).to.equal(false);
    const tokens = await runJson<{ token_id: string; state: string }[]>(CAIRND, ['tokens', '--data', boxData]);
    expect(tokens.filter((t) => t.state === 'used')).to.have.length(1); // only the first pairing's token

    // 2. The impostor answers at the paired address: refused at once, not retried.
    const r1 = await cairnPc(['agent', 'run', '--once', '--backoff', '1s', '--jitter', '0']);
    const ev1 = events(r1.stdout).map((e) => e.event);
    expect(r1.code).to.equal(1);
    expect(ev1).to.include('box.key_mismatch');
    expect(ev1.filter((e) => e === 'backup.started')).to.have.length(1);
    expect(ev1).to.not.include('backup.retry_scheduled');

    // 3. The paired address goes dark; rediscovery by id meets only the look-alike and refuses it.
    lab.moveBox(7, 9);
    const r2 = await cairnPc(['agent', 'run', '--once', '--backoff', '2h', '--discovery-timeout', '2s']);
    const ev2 = events(r2.stdout);
    expect(r2.code).to.equal(1);
    expect(ev2.map((e) => e.event)).to.include.members(['box.unreachable', 'discovery.refused', 'discovery.not_found', 'backup.gave_up']);
    expect(ev2.map((e) => e.event)).to.not.include('box.moved');
    expect(fs.readFileSync(path.join(pcHome, 'agent.json'), 'utf8')).to.equal(before);
    const st = JSON.parse((await cairnPc(['status', '--json'])).stdout) as { sources: { last_outcome: string }[] };
    expect(st.sources[0].last_outcome).to.equal('unreachable');
    // Nothing reached the impostor's API beyond handshakes: it paired nobody and holds no snapshots.
    const impSnaps = await runJson<unknown[]>(CAIRND, ['snapshots', '--data', impData]);
    expect(impSnaps).to.deep.equal([]);
    spoof.proc.kill('SIGTERM');
    await spoof.exited;
    await imp.stop();
  });
});
