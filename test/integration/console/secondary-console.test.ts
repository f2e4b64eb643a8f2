import { expect } from 'chai';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CAIRN, CAIRND, run, runJson } from '../../../scripts/lib/procs';
import { newPairingToken } from '../../../src/core/pairing-token';
import { newRecoveryKey } from '../../../src/core/recovery-key';
import { readRecoveryKey, ServeProc, skipWithoutTmux, startServe, TmuxConsole } from './tmux';

/**
 * The console's secondary-box parts (issue 10), with real cairnd processes on loopback
 * (simulated hardware) and the real cairn-console in tmux at 80x24: the wizard activates a
 * secondary and shows a token for primaries; the wizard on a primary links to it (a refused
 * token first, then the right one); both dashboards show replication; then the primary's data
 * dir is wiped and "Restore a box" rebuilds it from the secondary. The its run in order.
 */
describe('integration: cairn-console with a secondary box (tmux)', function () {
  this.timeout(180_000);
  let work: string;
  let S: string;
  let P: string;
  let sServe: ServeProc | undefined;
  let pServe: ServeProc | undefined;
  let sTty: TmuxConsole | undefined;
  let pTty: TmuxConsole | undefined;
  let sToken = '';
  let sAddress = '';
  let pToken = '';
  let pBox = '';
  let recoveryKey = '';
  const env = (): NodeJS.ProcessEnv => ({ CAIRN_HW_PROFILE: 'simulated', CAIRN_HOME: path.join(work, 'agent'), CAIRN_LOG_LEVEL: 'info' });

  /** Reads the recovery key off the Keys screen and types back the group asked for. */
  const recoveryStep = async (tty: TmuxConsole): Promise<string> => {
    const { groups, asked } = await readRecoveryKey(tty);
    tty.type(groups[asked - 1]);
    tty.keys('Enter');
    return groups.join('-');
  };

  before(async function () {
    skipWithoutTmux(this);
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-console-sec-'));
    S = path.join(work, 'vault');
    P = path.join(work, 'office');
    [sServe, pServe] = await Promise.all([startServe(S, env()), startServe(P, env())]);
  });

  after(async () => {
    sTty?.close();
    pTty?.close();
    await Promise.all([sServe?.stop(), pServe?.stop()]);
    // Three block stores of 4,096 shard directories each take ~10 s to delete on a slow disk:
    // done in the background so the suite does not wait for it.
    if (work) spawn('rm', ['-rf', work], { detached: true, stdio: 'ignore' }).unref();
  });

  it('the wizard activates a secondary and ends with a pairing token for primaries', async () => {
    sTty = new TmuxConsole(S, path.join(work, 'vault-console.err'));
    sTty.start(80, 24);
    await sTty.waitFor('What should it become');
    sTty.keys('Down');
    await sTty.waitFor('> (*) 2  A secondary box');
    sTty.keys('Enter');
    await sTty.waitFor('activation (secondary) - step 1 of 5: Name');
    sTty.keys('C-u');
    sTty.type('vault');
    sTty.keys('Enter');
    await sTty.waitFor(/step 2 of 5: Network[\s\S]*Gateway/);
    sTty.keys('Enter');
    await sTty.waitFor(/step 3 of 5: Disks[\s\S]*Proposed layout: RAID 1/);
    sTty.type('vault');
    sTty.keys('Enter');
    // No Secondary and no Retention step on a secondary.
    const summary = await sTty.waitFor(/step 4 of 5: Keys[\s\S]*Ready to activate/);
    expect(summary).to.match(/Role\s+secondary/);
    expect(summary).to.not.contain('Retention');
    sTty.keys('Enter');
    await recoveryStep(sTty);
    const done = await sTty.waitFor(/Pairing token for a primary box[\s\S]*cairnd secondary add --data \/var\/lib\/cairn 127\.0\.0\.1:\d+ \\\s+--token C1-/, 60_000);
    sToken = /^ {3}(C1-[0-9A-Z-]+)\s*$/m.exec(done)![1];
    expect(done).to.contain(`--token ${sToken}`);
    const port = sServe!.info().port;
    expect(port).to.be.a('number');
    sAddress = `127.0.0.1:${port}`;
    expect(done).to.contain(`add --data /var/lib/cairn ${sAddress}`);
    const status = await runJson<{ role: string; name: string; replication: { role: string; primaries: unknown[] } }>(CAIRND, ['status', '--data', S, '--json'], env());
    expect(status).to.include({ role: 'secondary', name: 'vault' });
    expect(status.replication).to.deep.equal({ role: 'secondary', primaries: [] });
  });

  it('the wizard on a primary links it to the running secondary (a refused token first, then a retry)', async () => {
    pTty = new TmuxConsole(P, path.join(work, 'office-console.err'));
    pTty.start(80, 24);
    await pTty.waitFor('What should it become');
    pTty.keys('Enter');
    await pTty.waitFor('activation - step 1 of 7: Name');
    pTty.keys('C-u');
    pTty.type('office');
    pTty.keys('Enter');
    await pTty.waitFor(/step 2 of 7: Network[\s\S]*Gateway/);
    pTty.keys('Enter');
    await pTty.waitFor('Proposed layout: RAID 1');
    pTty.type('office');
    pTty.keys('Enter');
    await pTty.waitFor('step 4 of 7: Secondary');
    // A well-formed token that names another key: the link is refused before anything is sent.
    const impostor = newPairingToken(Buffer.alloc(32, 7)).token;
    pTty.keys('Down');
    pTty.type(sAddress);
    pTty.keys('Down');
    pTty.type(impostor);
    pTty.keys('Enter');
    await pTty.waitFor('step 5 of 7: Retention');
    pTty.keys('Enter');
    const summary = await pTty.waitFor('Ready to activate');
    expect(summary).to.match(new RegExp(`Secondary\\s+${sAddress.replace(/\./g, '\\.')} \\(linked right after activation\\)`));
    pTty.keys('Enter');
    recoveryKey = await recoveryStep(pTty);
    const failed = await pTty.waitFor(/The secondary was not linked: [\s\S]*not the one named in\s+the token/, 60_000);
    expect(failed).to.contain('step 7 of 7: Done');
    expect(fs.existsSync(path.join(P, 'secondary.json'))).to.equal(false);
    // Retry with the secondary's real token (focus is on the address: down to the token).
    pTty.keys('Down');
    pTty.keys('C-u');
    pTty.type(sToken);
    pTty.keys('Enter');
    const done = await pTty.waitFor(/Secondary: linked to "vault" at 127\.0\.0\.1:\d+[\s\S]*Pairing token for the first PC/, 60_000);
    pToken = /C1-[0-9A-Z-]+/.exec(done.split('Pairing token for the first PC')[1])![0];

    const st = await runJson<{ role: string; secondary: { name: string; address: string } | null; state: string }>(CAIRND, ['secondary', 'status', '--data', P, '--json'], env());
    expect(st.role).to.equal('primary');
    expect(st.secondary).to.include({ name: 'vault', address: sAddress });
    // The single-use token is not kept in config.json (0600 or not, it has no business there).
    const config = fs.readFileSync(path.join(P, 'config.json'), 'utf8');
    expect(config).to.not.contain(sToken);
    expect(config).to.not.contain(impostor);
    expect((JSON.parse(config) as { secondary: unknown }).secondary).to.equal(null);
    pBox = (await runJson<{ box: string }>(CAIRND, ['status', '--data', P, '--json'], env())).box;
  });

  it('both dashboards show replication, and 80x24 still fits', async () => {
    // One small backup, replicated to the secondary.
    const src = path.join(work, 'docs');
    fs.mkdirSync(src);
    for (let i = 0; i < 5; i++) fs.writeFileSync(path.join(src, `f${i}.txt`), `file ${i} `.repeat(2000 + i));
    const pPort = pServe!.info().port;
    const pair = await run(CAIRN, ['pair', `127.0.0.1:${pPort}`, '--token', pToken, '--name', 'pc'], env());
    expect(pair.code, pair.stderr).to.equal(0);
    const b = await run(CAIRN, ['backup', src, '--source', 'docs', '--json'], env());
    expect(b.code, b.stderr).to.equal(0);
    const sync = await run(CAIRND, ['secondary', 'sync', '--data', P, '--json'], env());
    expect(sync.code, sync.stderr).to.equal(0);

    pTty!.keys('Enter');
    const p = await pTty!.waitFor(/Secondary vault 127\.0\.0\.1:\d+\s+up to date\s+last ok \d+ s ago[\s\S]*AGENTS \(1\)/);
    expect(p).to.not.contain('no secondary linked');
    sTty!.keys('Enter');
    const s = await sTty!.waitFor(/Secondary for 1 primary\s*\n\s+office\s+1 snapshots\s+last \d+ s ago/);
    // C: on the primary, the link as it is; on the secondary, what it serves.
    pTty!.keys('c');
    await pTty!.waitFor(/link a secondary[\s\S]*Now: linked to vault at 127\.0\.0\.1:\d+/);
    pTty!.keys('Escape');
    await pTty!.waitFor('Cancelled: nothing was changed');
    sTty!.keys('c');
    await sTty!.waitFor(/This box is a secondary[\s\S]*It serves 1 primary: office/);
    sTty!.keys('Escape');
    await sTty!.waitFor('Secondary for 1 primary');
    for (const screen of [p, s]) {
      const lines = screen.replace(/\n$/, '').split('\n');
      expect(lines).to.have.length(24);
      expect(lines[0]).to.match(/^ CAIRN {2}(office|vault) /);
      expect(lines[23]).to.contain('I identify');
      expect(lines[22]).to.contain('P pair');
    }
  });

  it('"Restore a box" rebuilds the wiped primary from its secondary with the recovery key', async () => {
    pTty!.close();
    await pServe!.stop();
    fs.renameSync(P, path.join(work, 'office-wiped')); // as good as wiped for cairnd, and instant
    pServe = await startServe(P, env());
    expect(pServe.info().mode).to.equal('setup');
    pTty = new TmuxConsole(P, path.join(work, 'office-console-2.err'));
    pTty.start(80, 24);
    await pTty.waitFor('What should it become');
    pTty.type('3');
    await pTty.waitFor('> (*) 3  Restore a box');
    pTty.keys('Enter');
    await pTty.waitFor(/restore - step 1 of 4: Network[\s\S]*Gateway/);
    pTty.keys('Enter');
    await pTty.waitFor('Type the word restore to confirm');
    pTty.type('office');
    pTty.keys('Enter');
    await pTty.waitFor('That is not "restore". The disks were not touched.');
    pTty.type('restore');
    pTty.keys('Enter');
    await pTty.waitFor('step 3 of 4: Restore');
    pTty.type(sAddress);
    pTty.keys('Tab');

    // A mistyped group: the checksum catches it, nothing is asked of the secondary.
    const groups = recoveryKey.split('-');
    const alphabet = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
    groups[2] = alphabet[(alphabet.indexOf(groups[2][0]) + 5) % 32] + groups[2].slice(1);
    pTty.type(groups.join(' '));
    pTty.keys('Enter');
    await pTty.waitFor(/Compare each group with the paper[\s\S]*Recovery key: checksum mismatch, a group is mistyped/);
    expect(fs.existsSync(path.join(P, 'keys.json'))).to.equal(false);
    // A well-formed key that opens nothing: refused (after the deliberate delay), nothing written.
    pTty.keys('C-u');
    pTty.type(newRecoveryKey().text);
    pTty.keys('Enter');
    await pTty.waitFor(/Not restored: this recovery key opens no escrow held by/, 30_000);
    expect(fs.existsSync(path.join(P, 'keys.json'))).to.equal(false);

    pTty.keys('C-u');
    pTty.type(recoveryKey.toLowerCase().replace(/-/g, ''));
    pTty.keys('Enter');
    const done = await pTty.waitFor(/restored from 127\.0\.0\.1:\d+[\s\S]*Agents\s+1 kept their pairing[\s\S]*Backups\s+1 snapshots pulled back/, 90_000);
    expect(done).to.contain(`(${pBox})`);
    expect(done).to.not.contain('pull of the backups stopped');

    // Handed over like an activation: the same box serves agents without a restart.
    const deadline = Date.now() + 20_000;
    while (pServe.info().port === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(pServe.info().port).to.be.a('number');
    const status = await runJson<{ box: string; name: string; snapshots: number; agents: number }>(CAIRND, ['status', '--data', P, '--json'], env());
    expect(status).to.include({ box: pBox, name: 'office', snapshots: 1, agents: 1 });
    pTty.keys('Enter');
    await pTty.waitFor(/CAIRN {2}office[\s\S]*Secondary vault 127\.0\.0\.1:\d+/);
  });
});
