import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { expect } from 'chai';
import { createHardware } from '../../../src/hw/index';

/**
 * The CLI (`cairnd hw simulate ...`, a separate process) and a running daemon share the
 * simulated box through its state file. Here a child node process runs runHwCommand -- the
 * function cairnd routes `cairnd hw` to -- while this process holds the daemon's Hardware.
 */
const INDEX = path.resolve(__dirname, '../../../src/hw/index.js');

function cli(stateDir: string, ...argv: string[]): { status: number | null; stdout: string; stderr: string } {
  const script = `require(${JSON.stringify(INDEX)}).runHwCommand(process.argv.slice(1), { stateDir: ${JSON.stringify(stateDir)}, json: false, config: { simulated: { diskSizeMiB: 4, rebuildMiBps: 1 } } }).then((t) => process.stdout.write(t), (e) => { process.stderr.write(e.message + '\\n'); process.exitCode = e.code === 'CAIRN_USAGE' ? 2 : 1; })`;
  const r = spawnSync(process.execPath, ['-e', script, ...argv], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('integration: cairnd hw simulate (separate process) and the daemon share the simulated box', function () {
  this.timeout(30_000);
  let stateDir: string;

  before(() => {
    stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-hw-simcli-'));
  });

  after(() => fs.rmSync(stateDir, { recursive: true, force: true }));

  it('a disk failed from the CLI shows up in the daemon, and the daemon sees the replacement rebuild', async () => {
    const hw = createHardware({ profile: 'simulated', stateDir, config: { simulated: { diskSizeMiB: 4, rebuildMiBps: 1 } } });
    try {
      expect((await hw.status()).state).to.equal('healthy');
      const failed = cli(stateDir, 'simulate', 'fail-disk', '1');
      expect(failed.status, failed.stderr).to.equal(0);
      expect(failed.stdout).to.match(/disk 1 failed/);
      let st = await hw.status();
      expect(st.state).to.equal('attention');
      expect(st.led.pattern).to.equal('attention');
      expect(st.raid.arrays[0].members[0].state).to.equal('faulty');

      expect(cli(stateDir, 'simulate', 'replace-disk', '1').stdout).to.match(/recovering/);
      st = await hw.status();
      expect(st.raid.arrays[0].state).to.equal('recovering');

      expect(cli(stateDir, 'simulate', 'tick', '60').stdout).to.match(/array md0 \(raid1, 2 bays\): clean/);
      st = await hw.status();
      expect(st.state).to.equal('healthy');
      expect(st.led.pattern).to.equal('idle');

      const status = cli(stateDir, 'status');
      expect(status.stdout).to.match(/^hardware \(simulated\): healthy/);
      const bad = cli(stateDir, 'simulate', 'fail-disk', '9');
      expect(bad.status).to.equal(1);
      expect(bad.stderr).to.match(/no disk bay 9/);
    } finally {
      hw.stop();
    }
  });
});
