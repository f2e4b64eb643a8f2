import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { Harness } from './harness';
import { formatPairingToken, parsePairingToken } from '../../src/core/pairing-token';
import { startDaemon } from '../../scripts/lib/procs';

describe('integration: pairing trust', function () {
  this.timeout(120_000);
  let box: Harness;
  let impostor: Harness;

  before(async () => {
    box = new Harness('cairn-trust');
    await box.init('real-box');
    await box.start();
    impostor = new Harness('cairn-impostor');
    await impostor.init('real-box');
    await impostor.start();
  });
  after(async () => {
    await box.close();
    await impostor.close();
  });

  const pairAs = (home: string, address: string, token: string) => box.cairn(['pair', address, '--token', token], { CAIRN_HOME: home });
  const agents = async (h: Harness) => h.cairndJson<unknown[]>(['agents']);

  it('refuses a box whose key does not match the token, before sending anything', async () => {
    const token = await box.token();
    const home = box.path('home-pin');
    const r = await pairAs(home, impostor.daemon!.address, token);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/not the key named in the token.*Nothing was sent/s);
    expect(r.stderr).to.contain('CAIRN_PAIR_PIN_MISMATCH');
    expect(fs.existsSync(path.join(home, 'agent.json'))).to.equal(false);
    expect(await agents(impostor)).to.deep.equal([]);
    // the impostor never saw a pairing request; the token is still good on the real box
    expect(impostor.daemon!.log()).to.not.contain('pair');
    const ok = await pairAs(box.path('home-pin-ok'), box.daemon!.address, token);
    expect(ok.code, ok.stderr).to.equal(0);
  });

  it('refuses a wrong secret, and locks the token after five wrong tries', async () => {
    const token = await box.token();
    const parsed = parsePairingToken(token);
    const wrong = formatPairingToken({ ...parsed, secret: Buffer.alloc(parsed.secret.length, 7) });
    const before = (await agents(box)).length;
    for (let i = 0; i < 5; i++) {
      const r = await pairAs(box.path(`home-wrong-${i}`), box.daemon!.address, wrong);
      expect(r.code).to.equal(1);
      expect(r.stderr).to.contain('CAIRN_TOKEN_INVALID');
      expect(fs.existsSync(box.path(`home-wrong-${i}`, 'agent.json'))).to.equal(false);
    }
    const r = await pairAs(box.path('home-after-lock'), box.daemon!.address, token);
    expect(r.stderr).to.contain('CAIRN_TOKEN_LOCKED');
    expect((await agents(box)).length).to.equal(before);
  });

  it('refuses an expired token', async () => {
    const token = await box.token('1s');
    await new Promise((r) => setTimeout(r, 1500));
    const r = await pairAs(box.path('home-expired'), box.daemon!.address, token);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/expired/);
    expect(r.stderr).to.contain('CAIRN_TOKEN_EXPIRED');
  });

  it('refuses a token used twice', async () => {
    const token = await box.token();
    expect((await pairAs(box.path('home-once'), box.daemon!.address, token)).code).to.equal(0);
    const r = await pairAs(box.path('home-twice'), box.daemon!.address, token);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain('CAIRN_TOKEN_USED');
    expect(fs.existsSync(box.path('home-twice', 'agent.json'))).to.equal(false);
  });

  it('a paired agent refuses to talk to another box at its box address (pin mismatch)', async () => {
    const home = box.path('home-once');
    const cfg = JSON.parse(fs.readFileSync(path.join(home, 'agent.json'), 'utf8')) as { box: { port: number } };
    // Move the real box away and put the impostor on its port.
    await box.daemon!.stop();
    await impostor.daemon!.stop();
    const fake = await startDaemon(impostor.data, { port: cfg.box.port, env: impostor.env });
    try {
      const src = box.path('src-pin');
      fs.mkdirSync(src);
      fs.writeFileSync(path.join(src, 'f'), 'data');
      const r = await box.cairn(['backup', src], { CAIRN_HOME: home });
      expect(r.code).to.equal(1);
      expect(r.stderr).to.contain('CAIRN_PAIR_PIN_MISMATCH');
      expect(fake.log()).to.not.contain('snapshot');
    } finally {
      await fake.stop();
      await box.start();
      await impostor.start();
    }
  });

  it('never writes a token secret or a credential to the daemon log', async () => {
    const token = await box.token();
    const secret = token.split('-')[3];
    await pairAs(box.path('home-log'), box.daemon!.address, token);
    const cred = (JSON.parse(fs.readFileSync(box.path('home-log', 'agent.json'), 'utf8')) as { agent: { credential: string } }).agent.credential;
    const log = box.daemon!.log();
    expect(log).to.contain('agent.paired');
    expect(log).to.not.contain(secret);
    expect(log).to.not.contain(cred.split('.')[1]);
  });
});
