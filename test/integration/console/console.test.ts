import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CAIRN, CAIRND, run, runJson } from '../../../scripts/lib/procs';
import { openEscrowFile } from '../../../src/appliance/escrow';
import { readRecoveryKey, ServeProc, skipWithoutTmux, startServe, TmuxConsole } from './tmux';

/**
 * The real cairn-console against a real cairnd (simulated hardware, temp dirs), in tmux at
 * 80x24: the wizard from a box in setup mode to a paired agent, the dashboard, refused
 * confirmations, a resize and a cairnd restart. The its run in order on one box.
 */
describe('integration: cairn-console in tmux against cairnd', function () {
  this.timeout(120_000);
  let work: string;
  let data: string;
  let serve: ServeProc | undefined;
  let tty: TmuxConsole;
  const env = (): NodeJS.ProcessEnv => ({ CAIRN_HW_PROFILE: 'simulated', CAIRN_HOME: path.join(work, 'agent'), CAIRN_LOG_LEVEL: 'info' });
  const simEvents = (): string[] => (JSON.parse(fs.readFileSync(path.join(data, 'hw-sim', 'state.json'), 'utf8')) as { events: { message: string }[] }).events.map((e) => e.message);

  before(async function () {
    skipWithoutTmux(this);
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-console-'));
    data = path.join(work, 'box');
    serve = await startServe(data, env());
    expect(serve.info().mode).to.equal('setup');
    tty = new TmuxConsole(data, path.join(work, 'console.err'));
    tty.start(80, 24);
  });

  after(async () => {
    tty?.close();
    await serve?.stop();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('serves only the admin socket in setup mode', async () => {
    const r = await run(CAIRND, ['token', 'create', '--data', data], env());
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain('CAIRN_SETUP_MODE');
    expect(serve!.info().port).to.equal(null);
  });

  it('walks the wizard to the end, refusing wrong confirmations, and the box is activated', async () => {
    // First question: a new box (primary, the default), a secondary, or restoring a box.
    await tty.waitFor(/What should it become[\s\S]*> \(\*\) 1 {2}A new box \(primary\)/);
    tty.keys('Enter');
    await tty.waitFor('step 1 of 7: Name');
    tty.keys('C-u');
    tty.type('it-box');
    tty.keys('Enter');
    await tty.waitFor(/step 2 of 7: Network[\s\S]*Gateway/);
    tty.keys('Enter');
    await tty.waitFor(/Proposed layout: RAID 1 over 2 disks/);
    const before = simEvents().filter((e) => e === 'created raid1 md0').length;

    // Wrong box name: refused, and the disks are not touched.
    tty.type('not-the-name');
    tty.keys('Enter');
    await tty.waitFor('does not match the box name "it-box"');
    expect(tty.screen()).to.contain('step 3 of 7');
    tty.type('it-box');
    tty.keys('Enter');
    await tty.waitFor('step 4 of 7: Secondary');
    // Undo: back to the disks step, then on again.
    tty.keys('Escape');
    await tty.waitFor('step 3 of 7: Disks');
    tty.keys('Enter');
    await tty.waitFor('step 4 of 7: Secondary');
    tty.keys('Enter');
    await tty.waitFor('step 5 of 7: Retention');
    tty.keys('C-u');
    tty.type('12');
    tty.keys('Enter');
    await tty.waitFor('Ready to activate');
    expect(fs.existsSync(path.join(data, 'keys.json')), 'nothing is activated before the Keys step').to.equal(false);
    expect(simEvents().filter((e) => e === 'created raid1 md0').length).to.equal(before);
    tty.keys('Enter');

    const { groups, asked: n } = await readRecoveryKey(tty);
    const recoveryKey = groups.join('-');

    // A wrong group is refused.
    tty.type(groups[n - 1] === 'ZZZZ' ? 'YYYY' : 'ZZZZ');
    tty.keys('Enter');
    await tty.waitFor(`That is not group ${n}`);
    tty.keys('Escape');
    await tty.waitFor('no way back');
    tty.type(groups[n - 1].toLowerCase());
    tty.keys('Enter');
    const done = await tty.waitFor(/Pairing token for the first PC[\s\S]*sha256:[0-9a-f]{64}/, 60_000);
    expect(done).to.not.contain(groups.slice(0, 8).join('  '));
    const token = /C1-[0-9A-Z-]+/.exec(done)![0];
    const fp = /sha256:[0-9a-f]{64}/.exec(done)![0];

    // Activated, and serving agents without a restart.
    expect(fs.existsSync(path.join(data, 'keys.json'))).to.equal(true);
    const status = await runJson<{ name: string; fingerprint: string }>(CAIRND, ['status', '--data', data], env());
    expect(status.name).to.equal('it-box');
    expect(status.fingerprint).to.equal(fp);
    const port = serve!.info().port;
    expect(port).to.be.a('number');
    expect(serve!.proc.exitCode).to.equal(null);

    // The array was created through the hardware layer (simulated profile).
    expect(simEvents().filter((e) => e === 'created raid1 md0').length).to.equal(before + 1);
    // Settings are in config.json.
    const config = JSON.parse(fs.readFileSync(path.join(data, 'config.json'), 'utf8')) as { retention_default: number; secondary: unknown };
    expect(config.retention_default).to.equal(12);
    expect(config.secondary).to.equal(null);

    // The recovery key on screen opens the escrow blob: master key and config.
    const escrow = openEscrowFile(path.join(data, 'escrow.json'), recoveryKey);
    const keys = JSON.parse(fs.readFileSync(path.join(data, 'keys.json'), 'utf8')) as { master_key: string; box_id: string };
    expect(escrow.master_key.toString('base64')).to.equal(keys.master_key);
    expect(escrow.box_id).to.equal(keys.box_id);
    expect(escrow.config.retention_default).to.equal(12);
    expect(() => openEscrowFile(path.join(data, 'escrow.json'), recoveryKey.replace(/^./, (c) => (c === 'A' ? 'B' : 'A')))).to.throw(/recovery key|escrow/);

    // The token on screen pairs a real agent.
    const p = await run(CAIRN, ['pair', `127.0.0.1:${port}`, '--token', token, '--name', 'it-pc'], env());
    expect(p.code, p.stderr).to.equal(0);
  });

  it('shows the dashboard, then a failed disk', async () => {
    tty.keys('Enter');
    await tty.waitFor(/CAIRN {2}it-box[\s\S]*HEALTHY[\s\S]*AGENTS \(1\)[\s\S]*it-pc/);
    const r = await run(CAIRND, ['hw', 'simulate', 'fail-disk', '1', '--data', data], env());
    expect(r.code, r.stderr).to.equal(0);
    const s = await tty.waitFor(/ATTENTION[\s\S]*disk1\s+CAIRNSIM\d+\s+64\.0 MiB\s+FAILING\s+faulty/);
    expect(s).to.match(/Status: ATTENTION\s+array md0 is degraded/);
    expect(s).to.contain('RAID 1 degraded 1/2 disks');
  });

  it('asks for typed confirmation before destructive actions and refuses a wrong one', async () => {
    tty.keys('r');
    await tty.waitFor('Type it-pc to confirm');
    tty.type('it-p');
    tty.keys('Enter');
    await tty.waitFor('does not match "it-pc": nothing was done');
    const agents = await runJson<{ name: string; revoked: string | null }[]>(CAIRND, ['agents', '--data', data], env());
    expect(agents[0].revoked).to.equal(null);
    tty.keys('Escape');
    await tty.waitFor('Cancelled: nothing was done');

    tty.keys('s');
    await tty.waitFor('Type shutdown to confirm');
    tty.type('shutdown');
    tty.keys('Enter');
    await tty.waitFor('simulated profile: a real box would shut down now; nothing was done');
    expect(serve!.proc.exitCode).to.equal(null);

    tty.keys('p');
    const t = await tty.waitFor(/Expires in (\d+):\d\d/);
    expect(t).to.match(/C1-[0-9A-Z-]+/);
    tty.keys('Escape');
    await tty.waitFor('AGENTS (1)');
  });

  it('survives a resize and a cairnd restart', async () => {
    tty.resize(120, 40);
    await tty.waitFor(/CAIRN {2}it-box {60,}ATTENTION/);
    expect(tty.size()).to.deep.equal({ width: 120, height: 40 });
    tty.resize(80, 24);
    await tty.waitFor(/^ CAIRN {2}it-box {30,60}ATTENTION/m);
    expect(tty.alive()).to.equal(true);

    await serve!.stop();
    await tty.waitFor('reconnecting');
    expect(tty.alive()).to.equal(true);
    serve = await startServe(data, env());
    expect(serve.info().port).to.be.a('number');
    await tty.waitGone('reconnecting');
    const s = await tty.waitFor(/ATTENTION[\s\S]*AGENTS \(1\)/);
    expect(s).to.contain('FAILING');
    expect(tty.alive()).to.equal(true);
  });
});
