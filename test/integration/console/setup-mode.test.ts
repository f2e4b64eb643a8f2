import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CAIRN, CAIRND, run, runJson } from '../../../scripts/lib/procs';
import { openEscrow, openEscrowFile } from '../../../src/appliance/escrow';
import { planArray, levelsFor } from '../../../src/appliance/host-ops';
import { countdown, fit, recoveryGroups, sameGroup, visibleLength } from '../../../src/appliance/console/format';
import type { DiskInfo } from '../../../src/hw';
import { startServe } from './tmux';

describe('integration: setup mode and `cairnd init` (no console)', function () {
  this.timeout(120_000);
  let work: string;

  before(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-setup-'));
  });
  after(() => fs.rmSync(work, { recursive: true, force: true }));

  it('`cairnd init` activates a daemon in setup mode, which then serves agents without a restart', async () => {
    const data = path.join(work, 'box');
    const env = { CAIRN_HW_PROFILE: 'simulated', CAIRN_HOME: path.join(work, 'agent') };
    const serve = await startServe(data, env);
    try {
      expect(serve.info()).to.include({ mode: 'setup', port: null });
      const init = await runJson<{ name: string; recovery_key: string; serving: string }>(CAIRND, ['init', '--data', data, '--name', 'cli-box'], env);
      expect(init.name).to.equal('cli-box');
      expect(init.serving).to.equal('starting');
      // the escrow blob written at activation opens with the key init printed
      expect(openEscrowFile(path.join(data, 'escrow.json'), init.recovery_key).name).to.equal('cli-box');
      const deadline = Date.now() + 20_000;
      while (serve.info().port === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      const port = serve.info().port;
      expect(port).to.be.a('number');
      const token = (await runJson<{ token: string }>(CAIRND, ['token', 'create', '--data', data], env)).token;
      const p = await run(CAIRN, ['pair', `127.0.0.1:${port}`, '--token', token, '--name', 'pc'], env);
      expect(p.code, p.stderr).to.equal(0);
      const again = await run(CAIRND, ['init', '--data', data], env);
      expect(again.stderr).to.contain('CAIRN_STORE_ALREADY_INITIALIZED');
      expect(serve.proc.exitCode).to.equal(null);
    } finally {
      await serve.stop();
    }
    expect(serve.log()).to.contain('"event":"setup.activated"');
  });

  it('`cairnd init` without a daemon writes the escrow blob too; a tampered blob is refused', async () => {
    const data = path.join(work, 'offline');
    const init = await runJson<{ recovery_key: string }>(CAIRND, ['init', '--data', data, '--name', 'offline', '--hw', 'simulated'], {});
    const file = path.join(data, 'escrow.json');
    expect(fs.statSync(file).mode & 0o777).to.equal(0o600);
    const blob = JSON.parse(fs.readFileSync(file, 'utf8')) as { ciphertext: string; box_id: string };
    expect(openEscrowFile(file, init.recovery_key.toLowerCase().replace(/-/g, ' ')).name).to.equal('offline');
    const ct = Buffer.from(blob.ciphertext, 'base64');
    ct[5] ^= 1;
    expect(() => openEscrow(JSON.stringify({ ...blob, ciphertext: ct.toString('base64') }), init.recovery_key)).to.throw(/does not open it/);
    expect(() => openEscrow(JSON.stringify({ ...blob, box_id: '0000000000000000' }), init.recovery_key)).to.throw(/does not open it/);
  });
});

describe('console parts: layout proposal and text helpers', () => {
  const disk = (i: number, over: Partial<DiskInfo> = {}): DiskInfo =>
    ({ name: `sd${'bcdefgh'[i]}`, device: `/dev/sd${'bcdefgh'[i]}`, sizeBytes: 4e12 + i, class: 'free', arrays: [], health: { health: 'ok', reasons: [] }, ...over }) as DiskInfo;

  it('proposes RAID 1 for two disks, RAID 5 for three, RAID 6/10/5 for more, and only free healthy disks', () => {
    expect(levelsFor(2)).to.deep.equal(['raid1']);
    expect(levelsFor(3)).to.deep.equal(['raid5']);
    expect(levelsFor(4)).to.deep.equal(['raid6', 'raid10', 'raid5']);
    const p4 = planArray('linux', [0, 1, 2, 3].map((i) => disk(i)), []);
    expect(p4.level).to.equal('raid6');
    expect(p4.usableBytes).to.equal(2 * 4e12);
    expect(planArray('linux', [0, 1, 2, 3].map((i) => disk(i)), [], 'raid10').usableBytes).to.equal(2 * 4e12);
    const mixed = planArray('linux', [disk(0), disk(1, { class: 'system' }), disk(2, { health: { health: 'failing', reasons: [] } as unknown as DiskInfo['health'] }), disk(3)], []);
    expect(mixed.level).to.equal('raid1');
    expect(mixed.devices).to.deep.equal(['/dev/sdb', '/dev/sde']);
    expect(mixed.confirm).to.equal('/dev/sdb,/dev/sde');
    expect(planArray('linux', [disk(0)], []).level).to.equal(null);
  });

  it('fits tagged lines to the width, counts down, and checks typed-back groups', () => {
    const line = '{red-fg}' + 'x'.repeat(100) + '{/red-fg}';
    expect(visibleLength(fit(line, 80))).to.equal(80);
    expect(fit('short', 80)).to.equal('short');
    expect(countdown(new Date(Date.now() + 61_500).toISOString())).to.match(/^1:0[01]$/);
    expect(countdown(new Date(Date.now() - 1000).toISOString())).to.equal('expired');
    const g = recoveryGroups('AAAA-BBBB-CCCC-DDDD-EEEE-FFFF-GGGG-HHHH-0J1K');
    expect(g.groups).to.have.length(8);
    expect(g.checksum).to.equal('0J1K');
    expect(sameGroup(' o1li ', '0111')).to.equal(true);
    expect(sameGroup('0112', '0111')).to.equal(false);
  });
});
