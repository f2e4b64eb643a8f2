import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { CAIRN, CAIRND, nodeFlagsOf } from '../../../scripts/lib/procs';

const REPO = path.join(__dirname, '..', '..', '..', '..');

describe('launch flags (shebang, launchers, systemd)', () => {
  it('the agent and cairnd carry their V8 flags on the shebang, and launchers read them from there', () => {
    const expected: [string, string[]][] = [
      [CAIRN, ['--max-semi-space-size=1', '--heap-growing-percent=50']],
      [CAIRND, ['--max-semi-space-size=1']],
    ];
    for (const [script, flags] of expected) {
      expect(fs.readFileSync(script, 'utf8').split('\n')[0]).to.equal(`#!/usr/bin/env -S node ${flags.join(' ')}`);
      expect(nodeFlagsOf(script)).to.deep.equal(flags);
    }
    const tmp = path.join(REPO, 'dist', 'flags-probe.js');
    try {
      fs.writeFileSync(tmp, '#!/usr/bin/env node\n');
      expect(nodeFlagsOf(tmp)).to.deep.equal([]);
      fs.writeFileSync(tmp, '#!/usr/bin/env -S node --a=1; rm -rf /\n');
      expect(nodeFlagsOf(tmp), 'anything but plain flags is ignored').to.deep.equal([]);
    } finally {
      fs.rmSync(tmp, { force: true });
    }
    expect(nodeFlagsOf('/nonexistent/script.js')).to.deep.equal([]);
  });

  it('the shebang works when the script is executed directly (env -S), and systemd passes the same flag to cairnd', () => {
    const probe = path.join(path.dirname(CAIRN), 'exec-probe.js');
    try {
      const shebang = fs.readFileSync(CAIRN, 'utf8').split('\n')[0];
      fs.writeFileSync(probe, `${shebang}\nconsole.log(JSON.stringify(process.execArgv));\n`, { mode: 0o755 });
      const r = spawnSync(probe, [], { encoding: 'utf8', env: { ...process.env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? ''}` } });
      expect(r.status, r.stderr).to.equal(0);
      expect(JSON.parse(r.stdout)).to.deep.equal(['--max-semi-space-size=1', '--heap-growing-percent=50']);
    } finally {
      fs.rmSync(probe, { force: true });
    }
    const unit = fs.readFileSync(path.join(REPO, 'systemd', 'cairnd.service'), 'utf8');
    expect(unit).to.match(/^ExecStart=\S+node --max-semi-space-size=1 \S+appliance\/main\.js serve/m);
  });
});
