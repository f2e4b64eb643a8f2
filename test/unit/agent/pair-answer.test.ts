import { expect } from 'chai';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { pair } from '../../../src/agent/pair';
import { AgentHome } from '../../../src/agent/state';
import { CairnError } from '../../../src/core/errors';
import { newPairingToken } from '../../../src/core/pairing-token';
import { certSpkiSha256, makeTlsIdentity } from '../../../src/appliance/identity';

/**
 * The agent's side of pairing against a stand-in box (real TLS on loopback) whose answer's data
 * keys are given per test: an unusable set fails the pairing and saves nothing.
 */
describe('pairing: the data keys in the box\'s answer', function () {
  this.timeout(30_000);
  let tls: { keyPem: string; certPem: string };
  let server: https.Server;
  let keys: unknown;
  let work: string;
  const key = (): string => Buffer.alloc(32, 5).toString('base64');

  before(async () => {
    tls = await makeTlsIdentity('stand-in');
    server = https.createServer({ key: tls.keyPem, cert: tls.certPem, minVersion: 'TLSv1.3' }, (req, res) => {
      req.resume();
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ agent_id: 'a1', credential: 'c'.repeat(43), box: '0123456789abcdef', box_name: 'stand-in', keys }));
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  });
  after(() => server.close());
  beforeEach(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-pair-'));
  });
  afterEach(() => fs.rmSync(work, { recursive: true, force: true }));

  const tryPair = (): Promise<unknown> => {
    const { port } = server.address() as AddressInfo;
    return pair(new AgentHome(work), { host: '127.0.0.1', port, token: newPairingToken(certSpkiSha256(tls.certPem)).token, name: 'pc' });
  };

  for (const [what, bad] of [
    ['no id key', { chunkKey: key(), manifestKey: key(), gearKey: key() }],
    ['two id keys', { idKey: key(), idKeyBlake3: key(), chunkKey: key(), manifestKey: key(), gearKey: key() }],
    ['a short key', { idKeyBlake3: key(), chunkKey: 'AAAA', manifestKey: key(), gearKey: key() }],
    ['no keys at all', undefined],
  ] as const) {
    it(`${what}: refused with CAIRN_BOX_ERROR, nothing saved`, async () => {
      keys = bad;
      const err = await tryPair().then(() => undefined, (e: unknown) => e);
      expect(CairnError.is(err, 'CAIRN_BOX_ERROR'), String(err)).to.equal(true);
      expect((err as Error).message).to.match(/without usable data keys/);
      expect(fs.existsSync(new AgentHome(work).configFile)).to.equal(false);
    });
  }

  it('a usable set is saved as the agent reads it back', async () => {
    keys = { idKeyBlake3: key(), chunkKey: key(), manifestKey: key(), gearKey: key(), extra: 'ignored' };
    await tryPair();
    const home = new AgentHome(work);
    const cfg = home.load();
    expect(cfg.keys).to.deep.equal({ idKeyBlake3: key(), chunkKey: key(), manifestKey: key(), gearKey: key() });
    expect(home.keys(cfg).idScheme).to.equal('blake3');
  });
});
