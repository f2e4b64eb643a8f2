import { expect } from 'chai';
import fs from 'node:fs';
import { Harness } from './harness';
import { run, CAIRND } from '../../scripts/lib/procs';

describe('integration: cairnd admin commands, with and without a running daemon', function () {
  this.timeout(120_000);
  let h: Harness;

  before(async () => {
    h = new Harness('cairn-admin');
    await h.init('admin-box');
  });
  after(async () => h.close());

  it('creates tokens and lists agents directly on the data dir when no daemon runs', async () => {
    const t = await h.cairndJson<{ token: string; expires: string; fingerprint: string }>(['token', 'create', '--ttl', '5m']);
    expect(t.token).to.match(/^C1-/);
    expect(Date.parse(t.expires) - Date.now()).to.be.within(4 * 60_000, 5 * 60_000 + 5000);
    const tokens = await h.cairndJson<{ token_id: string; state: string }[]>(['tokens']);
    expect(tokens.map((x) => x.state)).to.deep.equal(['open']);
    expect(JSON.stringify(tokens)).to.not.contain(t.token.split('-')[3]);
    expect(await h.cairndJson<unknown[]>(['agents'])).to.deep.equal([]);
  });

  it('goes through the daemon\'s admin socket while it serves, and sees the same store', async () => {
    await h.start();
    const sock = fs.statSync(`${h.data}/run/admin.sock`);
    expect(sock.mode & 0o777).to.equal(0o600);
    const token = (await h.cairndJson<{ token: string }>(['token', 'create'])).token;
    expect(h.daemon!.log()).to.contain('"op":"token.create"');
    const p = await h.cairn(['pair', h.daemon!.address, '--token', token, '--name', 'pc-1']);
    expect(p.code, p.stderr).to.equal(0);
    const agents = await h.cairndJson<{ id: string; name: string; revoked: string | null }[]>(['agents']);
    expect(agents.map((a) => a.name)).to.deep.equal(['pc-1']);
    const rv = await h.cairndJson<{ id: string }>(['revoke', agents[0].id]);
    expect(rv.id).to.equal(agents[0].id);
    const after = await h.cairndJson<{ revoked: string | null }[]>(['agents']);
    expect(after[0].revoked).to.be.a('string');
    const status = await h.cairndJson<{ agents: number; hardware: { profile: string; state: string } }>(['status']);
    expect(status.agents).to.equal(0);
    expect(status.hardware.profile).to.equal('simulated');
  });

  it('refuses a second daemon on the same data dir and a second activation', async () => {
    const second = await run(CAIRND, ['serve', '--data', h.data, '--listen', '127.0.0.1:0'], h.env, { timeoutMs: 20_000 });
    expect(second.code).to.equal(1);
    expect(second.stderr).to.match(/already serving/);
    const again = await h.cairnd(['init', '--data', h.data]);
    expect(again.code).to.equal(1);
    expect(again.stderr).to.contain('CAIRN_STORE_ALREADY_INITIALIZED');
    // the running daemon is unharmed
    expect((await h.cairndJson<{ name: string }>(['status'])).name).to.equal('admin-box');
  });

  it('falls back to the data dir after the daemon stops (stale socket is harmless)', async () => {
    await h.daemon!.stop('SIGKILL');
    h.daemon = undefined;
    const t = await h.cairndJson<{ token: string }>(['token', 'create']);
    expect(t.token).to.match(/^C1-/);
  });

  it('gives clear usage errors', async () => {
    const cases: [string[], RegExp][] = [
      [['token', 'create'], /--data DIR is required/],
      [['token', 'create', '--data', h.data, '--ttl', 'soon'], /not a duration/],
      [['revoke', '--data', h.data], /usage: cairnd revoke/],
      [['revoke', '--data', h.data, 'nobody'], /no agent "nobody"/],
      [['status', '--data', h.path('not-a-box')], /not an activated Cairn box/],
      [['serve', '--data', h.data, '--listen', 'nonsense:port'], /not HOST:PORT/],
      [['init', '--data', h.path('x'), '--hw', 'toaster'], /--hw takes one of/],
      [['dance'], /unknown command/],
    ];
    for (const [args, re] of cases) {
      const r = await h.cairnd(args);
      expect(r.code, args.join(' ')).to.not.equal(0);
      expect(r.stderr, args.join(' ')).to.match(re);
    }
  });
});
