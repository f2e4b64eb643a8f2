import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { CAIRN, CAIRND, launchOf, nodeEnvOf, nodeFlagsOf, run } from '../../../scripts/lib/procs';

const REPO = path.join(__dirname, '..', '..', '..', '..');

describe('launch flags (shebang, launchers, systemd)', () => {
  it('the agent and cairnd carry their V8 flags (and the agent its malloc setting) on the shebang, and launchers read them from there', () => {
    const expected: [string, Record<string, string>, string[]][] = [
      [CAIRN, { MALLOC_ARENA_MAX: '2' }, ['--max-semi-space-size=1', '--heap-growing-percent=50']],
      [CAIRND, {}, ['--max-semi-space-size=1', '--initial-old-space-size=48']],
    ];
    for (const [script, env, flags] of expected) {
      const assigns = Object.entries(env).map(([k, v]) => `${k}=${v} `).join('');
      expect(fs.readFileSync(script, 'utf8').split('\n')[0]).to.equal(`#!/usr/bin/env -S ${assigns}node ${flags.join(' ')}`);
      expect(nodeFlagsOf(script)).to.deep.equal(flags);
      expect(nodeEnvOf(script)).to.deep.equal(env);
    }
    const tmp = path.join(REPO, 'dist', 'flags-probe.js');
    try {
      fs.writeFileSync(tmp, '#!/usr/bin/env node\n');
      expect(nodeFlagsOf(tmp)).to.deep.equal([]);
      fs.writeFileSync(tmp, '#!/usr/bin/env -S node --a=1; rm -rf /\n');
      expect(nodeFlagsOf(tmp), 'anything but plain flags is ignored').to.deep.equal([]);
      fs.writeFileSync(tmp, '#!/usr/bin/env -S A=1 B=x/y node --c\n');
      expect(launchOf(tmp)).to.deep.equal({ env: { A: '1', B: 'x/y' }, flags: ['--c'] });
      fs.writeFileSync(tmp, '#!/usr/bin/env -S A=$(id) node --c\n');
      expect(launchOf(tmp), 'anything but plain assignments is ignored').to.deep.equal({ env: {}, flags: [] });
    } finally {
      fs.rmSync(tmp, { force: true });
    }
    expect(nodeFlagsOf('/nonexistent/script.js')).to.deep.equal([]);
  });

  it('run() launches a script with the environment and flags of its shebang; the environment of the caller wins', async () => {
    const probe = path.join(REPO, 'dist', 'launch-probe.js');
    try {
      fs.writeFileSync(probe, '#!/usr/bin/env -S CAIRN_PROBE_A=1 CAIRN_PROBE_B=2 node --max-semi-space-size=1\nconsole.log(JSON.stringify([process.execArgv, process.env.CAIRN_PROBE_A, process.env.CAIRN_PROBE_B]));\n');
      const r = await run(probe, [], { CAIRN_PROBE_B: 'caller' });
      expect(r.code, r.stderr).to.equal(0);
      expect(JSON.parse(r.stdout)).to.deep.equal([['--max-semi-space-size=1'], '1', 'caller']);
    } finally {
      fs.rmSync(probe, { force: true });
    }
  });

  it('the shebang works when the script is executed directly (env -S), and systemd passes the same flag to cairnd', () => {
    const probe = path.join(path.dirname(CAIRN), 'exec-probe.js');
    try {
      const shebang = fs.readFileSync(CAIRN, 'utf8').split('\n')[0];
      fs.writeFileSync(probe, `${shebang}\nconsole.log(JSON.stringify([process.execArgv, process.env.MALLOC_ARENA_MAX]));\n`, { mode: 0o755 });
      const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? ''}` };
      delete env.MALLOC_ARENA_MAX;
      const r = spawnSync(probe, [], { encoding: 'utf8', env });
      expect(r.status, r.stderr).to.equal(0);
      expect(JSON.parse(r.stdout)).to.deep.equal([['--max-semi-space-size=1', '--heap-growing-percent=50'], '2']);
    } finally {
      fs.rmSync(probe, { force: true });
    }
    const unit = fs.readFileSync(path.join(REPO, 'systemd', 'cairnd.service'), 'utf8');
    expect(unit).to.match(/^ExecStart=\S+node --max-semi-space-size=1 --initial-old-space-size=48 \S+appliance\/main\.js serve/m);
  });
});
