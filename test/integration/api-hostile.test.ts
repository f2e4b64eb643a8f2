import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import { spawnSync } from 'node:child_process';
import { Harness } from './harness';
import { BoxClient } from '../../src/agent/box-client';
import { chunkId } from '../../src/core/chunk-id';
import { sealChunk } from '../../src/core/chunk-codec';
import { dataKeysFromJson, DataKeys } from '../../src/core/keys';
import { encodeCommit, FetchAnswerReader, encodeUploadBatch, SnapshotInfo, UploadResult } from '../../src/core/api';

/** Sends raw bytes over a TLS connection pinned to the box and returns what came back. */
function rawExchange(h: Harness, payload: Buffer | string, opts: { destroyAfterWrite?: boolean } = {}): Promise<string> {
  const cfg = h.agentConfig();
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: cfg.box.port, ca: cfg.box.cert_pem, checkServerIdentity: () => undefined, minVersion: 'TLSv1.3' }, () => {
      s.write(payload);
      if (opts.destroyAfterWrite) {
        setTimeout(() => {
          s.destroy();
          resolve('');
        }, 100);
      }
    });
    let out = '';
    s.on('data', (d: Buffer) => (out += d.toString('latin1')));
    s.on('end', () => resolve(out));
    s.on('close', () => resolve(out));
    // A box that refuses a body it will not read may close while the client still sends; the
    // kernel then answers with a reset, which can drop the 413 before it is read.
    s.on('error', (e) => (opts.destroyAfterWrite ? resolve('') : (e as NodeJS.ErrnoException).code === 'ECONNRESET' ? resolve(out || 'ECONNRESET') : reject(e)));
    setTimeout(() => {
      s.destroy();
      resolve(out);
    }, 5000);
  });
}

describe('integration: append-only agents and hostile input', function () {
  this.timeout(120_000);
  let h: Harness;
  let client: BoxClient;
  let keys: DataKeys;
  let snap: SnapshotInfo;
  let auth: string;

  before(async () => {
    h = await new Harness('cairn-hostile').up();
    const src = h.path('src');
    fs.mkdirSync(src);
    fs.writeFileSync(path.join(src, 'a.txt'), 'precious data '.repeat(1000));
    const r = await h.cairnJson<{ snapshot: string }>(['backup', src, '--source', 'src']);
    client = h.client();
    keys = dataKeysFromJson(h.agentConfig().keys);
    snap = (await client.json<SnapshotInfo[]>('GET', '/v1/snapshots')).find((s) => s.id === r.snapshot)!;
    auth = `Bearer ${h.agentConfig().agent.credential}`;
  });
  after(async () => {
    client.close();
    await h.close();
  });

  async function expectStatus(method: string, p: string, status: number, code: string, body?: Buffer): Promise<void> {
    const r = await client.request(method, p, body);
    expect(r.status, `${method} ${p}: ${r.body.toString()}`).to.equal(status);
    expect(JSON.parse(r.body.toString()).error.code).to.equal(code);
  }

  it('refuses deletes and overwrites from an agent with 403', async () => {
    const before = h.storeListing();
    const chunk = snap.manifest[0].id;
    await expectStatus('DELETE', `/v1/snapshots/${snap.id}`, 403, 'CAIRN_API_APPEND_ONLY');
    await expectStatus('PUT', `/v1/snapshots/${snap.id}`, 403, 'CAIRN_API_APPEND_ONLY', Buffer.from('{}'));
    await expectStatus('PATCH', `/v1/snapshots/${snap.id}`, 403, 'CAIRN_API_APPEND_ONLY', Buffer.from('{}'));
    await expectStatus('DELETE', `/v1/chunks/${chunk}`, 403, 'CAIRN_API_APPEND_ONLY');
    await expectStatus('PUT', `/v1/chunks/${chunk}`, 403, 'CAIRN_API_APPEND_ONLY', Buffer.from('x'));
    await expectStatus('DELETE', `/v1/chunks`, 403, 'CAIRN_API_APPEND_ONLY');
    expect(h.storeListing()).to.deep.equal(before);
    expect((await client.json<SnapshotInfo[]>('GET', '/v1/snapshots')).map((s) => s.id)).to.include(snap.id);
  });

  it('never overwrites a stored chunk: a re-upload or a forged copy of a stored id is "existed" and changes nothing', async () => {
    const id = Buffer.from(snap.manifest[0].id, 'hex');
    const stored = (): Promise<Buffer> => client.call('GET', `/v1/snapshots/${snap.id}/chunks/${snap.manifest[0].id}`);
    const bytesBefore = await stored();
    const forged = await sealChunk(keys, id, Buffer.from('ransomware was here'), 'manifest');
    const r1 = JSON.parse((await client.call('POST', '/v1/chunks', encodeUploadBatch([{ id, blob: forged }]))).toString());
    expect(r1).to.deep.equal({ stored: 0, existed: 1, existed_ids: [id.toString('hex')] });
    const plain = Buffer.from('x'.repeat(1000));
    const pid = chunkId(keys, plain);
    const blob = await sealChunk(keys, pid, plain, 'data');
    const first = JSON.parse((await client.call('POST', '/v1/chunks', encodeUploadBatch([{ id: pid, blob }]))).toString());
    const again = JSON.parse((await client.call('POST', '/v1/chunks', encodeUploadBatch([{ id: pid, blob: await sealChunk(keys, pid, plain, 'data') }]))).toString());
    expect(first).to.deep.equal({ stored: 1, existed: 0 });
    expect(again).to.deep.equal({ stored: 0, existed: 1, existed_ids: [pid.toString('hex')] });
    expect((await stored()).equals(bytesBefore)).to.equal(true);
  });

  it('rejects garbage of every kind with a 4xx and keeps serving with the store unchanged', async () => {
    const before = h.storeListing();
    const id = 'ab'.repeat(32);
    await expectStatus('POST', '/v1/chunks/missing', 400, 'CAIRN_API_BAD_REQUEST', Buffer.alloc(33));
    await expectStatus('POST', '/v1/chunks', 400, 'CAIRN_API_BAD_REQUEST', Buffer.from('garbage'));
    await expectStatus('POST', '/v1/chunks', 400, 'CAIRN_API_BAD_REQUEST', Buffer.alloc(0));
    const frame = Buffer.concat(encodeUploadBatch([{ id: Buffer.alloc(32, 1), blob: Buffer.from('CRNC junk that is not a chunk at all, long enough to parse') }]));
    await expectStatus('POST', '/v1/chunks', 422, 'CAIRN_CHUNK_HEADER_INVALID', frame);
    const huge = Buffer.alloc(36);
    huge.writeUInt32LE(0xffffffff, 32);
    await expectStatus('POST', '/v1/chunks', 413, 'CAIRN_CHUNK_TOO_LARGE', huge);
    await expectStatus('POST', '/v1/snapshots', 400, 'CAIRN_API_BAD_REQUEST', Buffer.from('{"source": 1}'));
    const missingRef = Buffer.concat(encodeCommit({ source: 'src', host: 'x', manifest: [{ id, size: 1 }], stats: {} as never }, Buffer.from(id, 'hex')));
    await expectStatus('POST', '/v1/snapshots', 409, 'CAIRN_SNAPSHOT_INCOMPLETE', missingRef);
    await expectStatus('GET', `/v1/snapshots/${snap.id}/chunks/not-hex`, 400, 'CAIRN_CHUNK_ID_INVALID');
    await expectStatus('GET', `/v1/snapshots/${snap.id}/chunks/${id}`, 404, 'CAIRN_CHUNK_MISSING');
    await expectStatus('GET', `/v1/snapshots/zzzz`, 404, 'CAIRN_SNAPSHOT_NOT_FOUND');
    await expectStatus('GET', '/v1/../../etc/passwd', 404, 'CAIRN_API_NOT_FOUND');
    await expectStatus('POST', '/v1/pair', 400, 'CAIRN_API_BAD_REQUEST', Buffer.from('{not json'));
    await expectStatus('POST', '/v1/pair', 400, 'CAIRN_API_BAD_REQUEST', Buffer.from('{"token_id": 5}'));

    // bad credentials
    const anon = new BoxClient(client.endpoint);
    const bad = new BoxClient(client.endpoint, 'deadbeefdeadbeef.wrong');
    const malformed = new BoxClient(client.endpoint, 'has spaces in it');
    try {
      expect((await anon.request('GET', '/v1/snapshots')).status).to.equal(401);
      expect((await bad.request('GET', '/v1/snapshots')).status).to.equal(401);
      expect((await malformed.request('GET', '/v1/snapshots')).status).to.equal(401);
      expect((await anon.request('DELETE', `/v1/snapshots/${snap.id}`)).status).to.equal(401);
    } finally {
      anon.close();
      bad.close();
      malformed.close();
    }

    // oversized declared body: refused without reading it
    const big = await rawExchange(h, `POST /v1/chunks HTTP/1.1\r\nHost: box\r\nAuthorization: ${auth}\r\nContent-Length: 999999999\r\n\r\n`);
    expect(big).to.match(/^HTTP\/1\.1 413|^ECONNRESET$/);
    // oversized streamed body (chunked, no length)
    const chunkHead = `POST /v1/chunks/missing HTTP/1.1\r\nHost: box\r\nAuthorization: ${auth}\r\nTransfer-Encoding: chunked\r\n\r\n`;
    const piece = Buffer.alloc(1024 * 1024, 1);
    const stream = Buffer.concat([Buffer.from(chunkHead), ...Array.from({ length: 4 }, () => Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n')]))]);
    expect(await rawExchange(h, stream)).to.match(/^HTTP\/1\.1 413|^ECONNRESET$/);
    // truncated upload: declares more than it sends, then hangs up
    const plain = Buffer.from('truncated chunk content');
    const tid = chunkId(keys, plain);
    const body = Buffer.concat(encodeUploadBatch([{ id: tid, blob: await sealChunk(keys, tid, plain, 'data') }]));
    await rawExchange(h, Buffer.concat([Buffer.from(`POST /v1/chunks HTTP/1.1\r\nHost: box\r\nAuthorization: ${auth}\r\nContent-Length: ${body.length}\r\n\r\n`), body.subarray(0, body.length - 10)]), { destroyAfterWrite: true });
    // header junk
    expect(await rawExchange(h, 'GARBAGE\r\n\r\n')).to.match(/^HTTP\/1\.1 400/);
    expect(await rawExchange(h, `GET /v1/info HTTP/1.1\r\nHost: box\r\nX-Big: ${'a'.repeat(100_000)}\r\n\r\n`)).to.match(/^HTTP\/1\.1 431/);

    // still serving, nothing stored
    expect((await client.request('GET', '/v1/info')).status).to.equal(200);
    expect(h.storeListing()).to.deep.equal(before);
    expect(h.daemon!.proc.exitCode).to.equal(null);
    const ok = await h.cairn(['restore', snap.id, '--target', h.path('after-garbage')]);
    expect(ok.code, ok.stderr).to.equal(0);
  });

  it('batched chunk fetch: answers only what the snapshot references, in order, and rejects bad bodies', async () => {
    const mine = Buffer.from(snap.manifest[0].id, 'hex');
    const foreign = Buffer.alloc(32, 7);
    const r = await client.request('POST', `/v1/snapshots/${snap.id}/chunks/fetch`, Buffer.concat([foreign, mine]));
    expect(r.status).to.equal(200);
    const reader = new FetchAnswerReader(2);
    reader.push(r.body);
    const frames = reader.end();
    expect(frames.map((f) => f.subarray(0, 32).toString('hex'))).to.deep.equal([foreign.toString('hex'), mine.toString('hex')]);
    expect(frames[0].length - 32, 'an id the snapshot does not reference gets nothing').to.equal(0);
    expect(frames[1].length - 32).to.be.greaterThan(0);
    await expectStatus('POST', `/v1/snapshots/${snap.id}/chunks/fetch`, 400, 'CAIRN_API_BAD_REQUEST', Buffer.from('not ids'));
    await expectStatus('POST', `/v1/snapshots/${snap.id}/chunks/fetch`, 413, 'CAIRN_API_BODY_TOO_LARGE', Buffer.alloc(32 * 257));
    await expectStatus('POST', '/v1/snapshots/zzzz/chunks/fetch', 404, 'CAIRN_SNAPSHOT_NOT_FOUND', mine);
  });

  it('one agent cannot see or read another agent\'s snapshots', async () => {
    const home2 = h.path('agent2');
    const r = await h.cairn(['pair', h.daemon!.address, '--token', await h.token()], { CAIRN_HOME: home2 });
    expect(r.code, r.stderr).to.equal(0);
    const list = await h.cairn(['snapshots', '--json'], { CAIRN_HOME: home2 });
    expect(JSON.parse(list.stdout)).to.deep.equal([]);
    const cfg2 = JSON.parse(fs.readFileSync(path.join(home2, 'agent.json'), 'utf8')) as { agent: { credential: string } };
    const other = new BoxClient(client.endpoint, cfg2.agent.credential);
    try {
      expect((await other.request('GET', `/v1/snapshots/${snap.id}`)).status).to.equal(404);
      expect((await other.request('GET', `/v1/snapshots/${snap.id}/chunks/${snap.manifest[0].id}`)).status).to.equal(404);
    } finally {
      other.close();
    }
  });

  it('a revoked agent can no longer back up or restore', async () => {
    const agentId = h.agentConfig().agent.id;
    const rv = await h.cairnd(['revoke', '--data', h.data, agentId]);
    expect(rv.code, rv.stderr).to.equal(0);
    const r = await h.cairn(['snapshots']);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain('CAIRN_AUTH_REVOKED');
  });

  it('speaks TLS 1.3 only: a TLS 1.2 client is refused (openssl s_client)', function () {
    const which = spawnSync('sh', ['-c', 'command -v openssl']);
    if (which.status !== 0) {
      console.log('    skipping: openssl is not installed (CI installs it)');
      this.skip();
    }
    const port = String(h.daemon!.port);
    const v12 = spawnSync('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-tls1_2'], { input: '', timeout: 10_000 });
    const v13 = spawnSync('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-tls1_3'], { input: '', timeout: 10_000 });
    expect(v12.status, 'TLS 1.2 handshake must fail').to.not.equal(0);
    expect(v12.stdout.toString() + v12.stderr.toString()).to.match(/alert protocol version|no protocols available|wrong version|unsupported protocol/i);
    expect(v13.status, v13.stderr.toString()).to.equal(0);
    expect(v13.stdout.toString()).to.match(/TLSv1\.3/);
  });

  describe('checked on sharing: a forged chunk never reaches another agent', () => {
    // Two agents of their own (the outer tests revoke the first agent before these run).
    let client: BoxClient;
    let other: BoxClient;
    const unchecked = async (): Promise<number> => (await h.cairndJson<{ unchecked_chunks: number }>(['status'])).unchecked_chunks;
    /** A blob sealed with the right keys whose content does not hash to the id it is uploaded under. */
    const forge = async (label: string): Promise<{ id: Buffer; blob: Buffer; good: Buffer }> => {
      const good = Buffer.from(`the real content of ${label} `.repeat(200));
      const id = chunkId(keys, good);
      return { id, blob: await sealChunk(keys, id, Buffer.from(`planted instead of ${label}`), 'data'), good };
    };
    const missing = async (c: BoxClient, id: Buffer): Promise<boolean> => (await c.call('POST', '/v1/chunks/missing', id)).equals(id);

    const pairNew = async (name: string): Promise<BoxClient> => {
      const home = h.path(name);
      const r = await h.cairn(['pair', h.daemon!.address, '--token', await h.token()], { CAIRN_HOME: home });
      expect(r.code, r.stderr).to.equal(0);
      const cfg = JSON.parse(fs.readFileSync(path.join(home, 'agent.json'), 'utf8')) as { agent: { credential: string } };
      return new BoxClient(h.client().endpoint, cfg.agent.credential);
    };

    before(async () => {
      client = await pairNew('agent-uploader');
      other = await pairNew('agent-sharing');
    });
    after(() => {
      client.close();
      other.close();
    });

    it('another agent asking for it gets "missing" (it is quarantined), uploads a good copy, and that copy is served', async () => {
      const f = await forge('shared file');
      const before = await unchecked();
      expect(JSON.parse((await client.call('POST', '/v1/chunks', encodeUploadBatch([{ id: f.id, blob: f.blob }]))).toString())).to.deep.equal({ stored: 1, existed: 0 });
      expect(await unchecked()).to.equal(before + 1);
      expect(await missing(client, f.id), 'its uploader relies on its own upload').to.equal(false);
      expect(await missing(other, f.id), 'another agent is never told the forged chunk is stored').to.equal(true);
      expect(await unchecked()).to.equal(before);
      expect(await missing(client, f.id), 'quarantined: gone for its uploader too').to.equal(true);
      const good = await sealChunk(keys, f.id, f.good, 'data');
      expect(JSON.parse((await other.call('POST', '/v1/chunks', encodeUploadBatch([{ id: f.id, blob: good }]))).toString())).to.deep.equal({ stored: 1, existed: 0 });
      expect(await missing(other, f.id)).to.equal(false);
      const q = fs.readdirSync(path.join(h.data, 'quarantine'));
      expect(q.some((n) => n.startsWith(f.id.toString('hex')))).to.equal(true);
    });

    it('another agent uploading it without asking first: the held copy is checked, quarantined, and the upload stored', async () => {
      const f = await forge('uploaded blind');
      expect(JSON.parse((await client.call('POST', '/v1/chunks', encodeUploadBatch([{ id: f.id, blob: f.blob }]))).toString())).to.deep.equal({ stored: 1, existed: 0 });
      const good = await sealChunk(keys, f.id, f.good, 'data');
      // what an agent's uploader sends once it stops asking which chunks the box lacks
      const r = JSON.parse((await other.call('POST', '/v1/chunks', encodeUploadBatch([{ id: f.id, blob: good }]))).toString()) as UploadResult;
      expect(r, 'the forged copy is not counted as held').to.deep.equal({ stored: 1, existed: 0 });
      expect(fs.readdirSync(path.join(h.data, 'quarantine')).some((n) => n.startsWith(f.id.toString('hex')))).to.equal(true);
      expect(await missing(other, f.id)).to.equal(false);
      expect(await missing(client, f.id), 'the good copy is there for every agent').to.equal(false);
      // and an honest chunk another agent holds unchecked is named as held, and checked
      const honestPlain = Buffer.from('honest and shared '.repeat(300));
      const hid = chunkId(keys, honestPlain);
      await client.call('POST', '/v1/chunks', encodeUploadBatch([{ id: hid, blob: await sealChunk(keys, hid, honestPlain, 'data') }]));
      const again = JSON.parse((await other.call('POST', '/v1/chunks', encodeUploadBatch([{ id: hid, blob: await sealChunk(keys, hid, honestPlain, 'data') }]))).toString()) as UploadResult;
      expect(again).to.deep.equal({ stored: 0, existed: 1, existed_ids: [hid.toString('hex')] });
    });

    it('a snapshot of another agent that references an unchecked forged chunk is refused', async () => {
      const f = await forge('referenced file');
      await client.call('POST', '/v1/chunks', encodeUploadBatch([{ id: f.id, blob: f.blob }]));
      const body = Buffer.concat(encodeCommit({ source: 'sharing', host: 'x', manifest: [{ id: f.id.toString('hex'), size: f.good.length }], stats: {} as never }, f.id));
      const r = await other.request('POST', '/v1/snapshots', body);
      expect(r.status, r.body.toString()).to.equal(409);
      expect(JSON.parse(r.body.toString()).error.code).to.equal('CAIRN_SNAPSHOT_INCOMPLETE');
      expect(await missing(client, f.id)).to.equal(true);
    });

    it('in idle time the box checks every unchecked chunk and quarantines forged ones', async () => {
      const f = await forge('idle file');
      const plain = Buffer.from('an honest chunk '.repeat(300));
      const honest = { id: chunkId(keys, plain), blob: await sealChunk(keys, chunkId(keys, plain), plain, 'data') };
      await client.call('POST', '/v1/chunks', encodeUploadBatch([{ id: f.id, blob: f.blob }, honest]));
      expect(await unchecked()).to.be.at.least(2);
      const deadline = Date.now() + 30_000;
      while ((await unchecked()) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 500));
      expect(await unchecked(), 'checked once agents were quiet for 5 s').to.equal(0);
      expect(await missing(client, f.id), 'the forged chunk is quarantined').to.equal(true);
      expect(await missing(client, honest.id), 'the honest one stays').to.equal(false);
    });
  });

});
