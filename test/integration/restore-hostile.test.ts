import { expect } from 'chai';
import fs from 'node:fs';
import https from 'node:https';
import http from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { Harness } from './harness';
import { Prng } from '../../scripts/lib/sample';
import { BoxClient } from '../../src/agent/box-client';
import { restoreSnapshot, RestoreResult } from '../../src/agent/restore';
import { decodeUploadBatch, encodeUploadBatch, SnapshotInfo } from '../../src/core/api';
import { dataKeysFromJson } from '../../src/core/keys';
import { certSpkiSha256 } from '../../src/appliance/identity';

/**
 * Restore against a box that misbehaves. A proxy holding the box's own TLS key (so the agent's
 * pin matches) sits between a real restore and a real cairnd and changes the batched chunk
 * fetch answers: an older box without the endpoint, answers cut short, out of order, altered,
 * emptied, or broken off mid-body. Every restore must finish, never write a wrong byte, leave
 * no partial file, and name each file it could not restore.
 */
type Mode = 'pass' | 'old' | 'short' | 'swap' | 'flip' | 'empty' | 'cut';

class Mitm {
  mode: Mode = 'pass';
  fetches = 0;
  /** single GETs of file data (the manifest's chunks not counted) */
  gets = 0;
  /** the request body of the largest fetch answer seen */
  biggest = { ids: Buffer.alloc(0), answer: 0 };
  private readonly server: https.Server;

  constructor(
    private readonly box: { port: number },
    tls: { key: string; cert: string },
    private readonly manifestIds: Set<string>,
  ) {
    this.server = https.createServer({ ...tls, minVersion: 'TLSv1.3' }, (req, res) => {
      this.handle(req, res).catch((err: Error) => {
        res.destroy(err);
      });
    });
  }

  listen(): Promise<number> {
    return new Promise((resolve) => this.server.listen(0, '127.0.0.1', () => resolve((this.server.address() as AddressInfo).port)));
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private forward(req: http.IncomingMessage, body: Buffer): Promise<{ status: number; type: string; body: Buffer }> {
    const headers: http.OutgoingHttpHeaders = { 'content-length': body.length };
    for (const h of ['authorization', 'content-type']) if (req.headers[h]) headers[h] = req.headers[h];
    return new Promise((resolve, reject) => {
      const up = https.request({ host: '127.0.0.1', port: this.box.port, method: req.method, path: req.url, headers, rejectUnauthorized: false }, (r) => {
        const parts: Buffer[] = [];
        r.on('data', (d: Buffer) => parts.push(d));
        r.on('end', () => resolve({ status: r.statusCode ?? 0, type: String(r.headers['content-type'] ?? ''), body: Buffer.concat(parts) }));
        r.on('error', reject);
      });
      up.on('error', reject);
      up.end(body);
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const parts: Buffer[] = [];
    for await (const d of req) parts.push(d as Buffer);
    const body = Buffer.concat(parts);
    const url = req.url ?? '';
    const isFetch = url.endsWith('/chunks/fetch');
    if (isFetch) this.fetches++;
    else if (/\/chunks\/[0-9a-f]{64}$/.test(url) && !this.manifestIds.has(url.slice(-64))) this.gets++;
    const ids: string[] = [];
    for (let i = 0; isFetch && i + 32 <= body.length; i += 32) ids.push(body.subarray(i, i + 32).toString('hex'));
    // The manifest's own chunks pass untouched: the misbehaviour is aimed at file data.
    const touch = isFetch && this.mode !== 'pass' && !ids.every((id) => this.manifestIds.has(id));
    if (touch && this.mode === 'old') {
      const msg = Buffer.from(JSON.stringify({ error: { code: 'CAIRN_API_NOT_FOUND', message: `no such API endpoint ${url}` } }));
      res.writeHead(404, { 'content-type': 'application/json', 'content-length': msg.length });
      res.end(msg);
      return;
    }
    const up = await this.forward(req, body);
    if (isFetch && up.body.length > this.biggest.answer) this.biggest = { ids: body, answer: up.body.length };
    let out = up.body;
    if (touch && up.status === 200) {
      let frames = decodeUploadBatch(up.body);
      if (this.mode === 'short') frames = frames.slice(0, 1);
      else if (this.mode === 'swap' && frames.length >= 2) [frames[0], frames[1]] = [frames[1], frames[0]];
      else if (this.mode === 'flip') {
        const blob = Buffer.from(frames[0].blob);
        blob[blob.length >> 1] ^= 0x04;
        frames[0] = { id: frames[0].id, blob };
      } else if (this.mode === 'empty') frames = frames.map((f) => ({ id: f.id, blob: Buffer.alloc(0) }));
      out = Buffer.concat(encodeUploadBatch(frames));
      if (this.mode === 'cut') {
        res.writeHead(200, { 'content-type': up.type, 'content-length': out.length });
        res.write(out.subarray(0, out.length >> 1), () => res.destroy());
        return;
      }
    }
    res.writeHead(up.status, { 'content-type': up.type, 'content-length': out.length });
    res.end(out);
  }
}

describe('integration: restore from a misbehaving box', function () {
  this.timeout(180_000);
  let h: Harness;
  let mitm: Mitm;
  let client: BoxClient;
  let snap: SnapshotInfo;
  let src: string;
  let n = 0;

  before(async () => {
    h = await new Harness('cairn-rh').up();
    src = h.path('src');
    const rng = new Prng('restore-hostile');
    for (const d of ['a', 'b', 'c/d']) {
      fs.mkdirSync(path.join(src, d), { recursive: true });
      for (let i = 0; i < 12; i++) fs.writeFileSync(path.join(src, d, `f${i}.bin`), rng.bytes(1000 + i * 3000));
    }
    fs.writeFileSync(path.join(src, 'big.bin'), rng.bytes(5 * 1024 * 1024 + 123));
    fs.writeFileSync(path.join(src, 'empty'), '');
    const r = await h.cairnJson<{ snapshot: string }>(['backup', src, '--source', 'rh']);
    snap = await h.client().json<SnapshotInfo>('GET', `/v1/snapshots/${r.snapshot}`);
    mitm = new Mitm({ port: h.daemon!.port }, { key: fs.readFileSync(path.join(h.data, 'tls', 'key.pem'), 'utf8'), cert: fs.readFileSync(path.join(h.data, 'tls', 'cert.pem'), 'utf8') }, new Set(snap.manifest.map((m) => m.id)));
    const port = await mitm.listen();
    const cfg = h.agentConfig();
    client = new BoxClient({ host: '127.0.0.1', port, certPem: cfg.box.cert_pem, spkiSha256: certSpkiSha256(cfg.box.cert_pem) }, cfg.agent.credential);
  });
  after(async () => {
    client?.close();
    await mitm?.close();
    await h?.close();
  });

  const files = (): string[] => {
    const out: string[] = [];
    const walk = (d: string): void => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) walk(p);
        else out.push(path.relative(src, p));
      }
    };
    walk(src);
    return out.sort();
  };

  /** distinct chunks of file data (the small files share a few: they were read as one bundle) */
  const dataChunks = (): number => snap.chunks - snap.manifest.length;

  /** Restores through the proxy in `mode`; checks that what exists is right and what failed is absent. */
  const restoreIn = async (mode: Mode): Promise<{ r: RestoreResult; target: string }> => {
    mitm.mode = mode;
    mitm.fetches = mitm.gets = 0;
    const target = h.path(`out-${mode}-${n++}`);
    const r = await restoreSnapshot(client, dataKeysFromJson(h.agentConfig().keys), snap, { target });
    const failed = new Set(r.failures.map((f) => f.path));
    expect(r.failed).to.equal(r.failures.length);
    for (const rel of files()) {
      const at = path.join(target, rel);
      if (failed.has(rel)) expect(fs.existsSync(at), `${mode}: ${rel} failed and must not be left behind`).to.equal(false);
      else expect(fs.readFileSync(at).equals(fs.readFileSync(path.join(src, rel))), `${mode}: ${rel} byte for byte`).to.equal(true);
    }
    expect(r.files + r.failed).to.equal(files().length);
    return { r, target };
  };

  it('restores everything through an honest proxy with batched fetches', async () => {
    const { r } = await restoreIn('pass');
    expect(r.failed).to.equal(0);
    expect(mitm.fetches).to.be.at.least(1);
    expect(mitm.gets).to.equal(0);
  });

  it('keeps serving when a client stops reading a fetch answer and goes away', async () => {
    expect(mitm.biggest.answer, 'a fetch answer larger than the socket buffers').to.be.greaterThan(2 * 1024 * 1024);
    const cfg = h.agentConfig();
    for (let round = 0; round < 3; round++) {
      await new Promise<void>((resolve) => {
        const req = https.request(
          {
            host: '127.0.0.1', port: h.daemon!.port, method: 'POST', path: `/v1/snapshots/${snap.id}/chunks/fetch`, rejectUnauthorized: false,
            headers: { authorization: `Bearer ${cfg.agent.credential}`, 'content-type': 'application/octet-stream', 'content-length': mitm.biggest.ids.length },
          },
          (res) => {
            expect(res.statusCode).to.equal(200);
            res.pause(); // read nothing: the box's writes back up
            setTimeout(() => {
              req.destroy();
              resolve();
            }, 300);
          },
        );
        req.on('error', () => undefined);
        req.end(mitm.biggest.ids);
      });
    }
    const { r } = await restoreIn('pass');
    expect(r.failed).to.equal(0);
  });

  it('falls back to one GET per chunk on a box without the batched endpoint', async () => {
    const { r } = await restoreIn('old');
    expect(r.failed, JSON.stringify(r.failures)).to.equal(0);
    expect(dataChunks()).to.be.at.least(3);
    expect(mitm.gets).to.be.at.least(dataChunks()); // every chunk of file data, alone
  });

  it('asks again for what an answer cut short left out', async () => {
    const { r } = await restoreIn('short');
    expect(r.failed, JSON.stringify(r.failures)).to.equal(0);
    expect(mitm.fetches).to.be.at.least(dataChunks());
  });

  it('fetches alone every chunk the box answered empty', async () => {
    const { r } = await restoreIn('empty');
    expect(r.failed, JSON.stringify(r.failures)).to.equal(0);
    expect(mitm.gets).to.be.at.least(dataChunks());
  });

  it('fails the files of an answer out of order and restores the rest', async () => {
    const { r } = await restoreIn('swap');
    expect(r.failed).to.be.at.least(1);
    for (const f of r.failures) expect(f.message).to.match(/out of order/);
  });

  it('fails a file whose chunk was altered on the way, writes none of it, and restores the rest', async () => {
    const { r } = await restoreIn('flip');
    expect(r.failed).to.be.at.least(1);
    expect(r.files).to.be.at.least(1);
    for (const f of r.failures) expect(f.message).to.match(/not restored: .*failed authentication/);
  });

  it('fails the files of an answer broken off mid-body, without hanging or leaving partial files', async () => {
    const { r } = await restoreIn('cut');
    expect(r.failed).to.be.at.least(1);
    for (const f of r.failures) expect(f.message).to.match(/connection|socket|hang up|aborted|box/i);
    // the box itself was never touched: an honest restore afterwards gets everything
    const again = await restoreIn('pass');
    expect(again.r.failed).to.equal(0);
  });
});
