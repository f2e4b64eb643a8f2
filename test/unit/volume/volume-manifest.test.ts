import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import {
  CHUNK_REF_BYTES, encodeEntry, encodeHeader, encodeVolumeDataRun, encodeVolumeHeader, encodeVolumeZeroRun, readAnyManifest, readManifest,
  readVolumeManifest, VolumeManifestHeader, VolumeRun,
} from '../../../src/core/manifest';
import { CairnError } from '../../../src/core/errors';
import { BlockMapWriter, PrevMapCursor } from '../../../src/agent/volume/block-map';

const MiB = 1024 * 1024;

async function* pieces(buf: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

async function runsOf(buf: Buffer, piece = 7): Promise<{ header: VolumeManifestHeader; runs: VolumeRun[] }> {
  const m = await readVolumeManifest(pieces(buf, piece));
  const runs: VolumeRun[] = [];
  for await (const r of m.runs) runs.push(r);
  return { header: m.header, runs };
}

function hdr(over: Partial<VolumeManifestHeader> = {}): VolumeManifestHeader {
  return {
    v: 1, kind: 'volume', size: 5 * MiB + 4096, block_size: MiB, blocks: 6, blocks_data: 3, blocks_zero: 3, blocks_changed: 2,
    device: '/dev/loop0', host: 'pc', created: '2026-01-01T00:00:00Z', ...over,
  };
}

function refs(lengths: number[], seed = 1): Buffer {
  const b = Buffer.alloc(lengths.length * CHUNK_REF_BYTES);
  lengths.forEach((len, i) => {
    b.fill(seed + i, i * CHUNK_REF_BYTES, i * CHUNK_REF_BYTES + 32);
    b.writeUInt32LE(len, i * CHUNK_REF_BYTES + 32);
  });
  return b;
}

/** blocks: data data zero zero data(last, 4096 bytes)... laid out as d2 z3 d1 */
function sample(h = hdr()): Buffer {
  return Buffer.concat([encodeVolumeHeader(h), encodeVolumeDataRun(refs([MiB, MiB])), encodeVolumeZeroRun(3), encodeVolumeDataRun(refs([4096], 9))]);
}

async function expectInvalid(p: Promise<unknown>, what: string): Promise<void> {
  try {
    await p;
    expect.fail(`accepted: ${what}`);
  } catch (err) {
    expect(CairnError.is(err, 'CAIRN_MANIFEST_INVALID'), `${what}: ${String(err)}`).to.equal(true);
  }
}

describe('volume manifest (core/manifest kind "volume")', () => {
  it('round-trips header and block map across any split of the stream', async () => {
    for (const piece of [1, 5, 4096, 1 << 20]) {
      const { header, runs } = await runsOf(sample(), piece);
      expect(header).to.deep.include({ kind: 'volume', size: 5 * MiB + 4096, block_size: MiB, blocks: 6, blocks_zero: 3, device: '/dev/loop0' });
      expect(runs.map((r) => [r.zero, r.first, r.count])).to.deep.equal([[false, 0, 2], [true, 2, 3], [false, 5, 1]]);
      const last = runs[2];
      expect(!last.zero && last.refs.readUInt32LE(32)).to.equal(4096);
    }
  });

  it('readAnyManifest dispatches on kind; readManifest refuses a volume with a clear error; file manifests read as before', async () => {
    const v = await readAnyManifest(pieces(sample(), 64));
    expect(v.kind).to.equal('volume');
    const files = Buffer.concat([
      encodeHeader({ v: 1, kind: 'files', roots: ['/r'], host: 'h', created: 'c' }),
      encodeEntry({ path: Buffer.from('d'), type: 'dir', mode: 0o755, uid: 0, gid: 0, mtimeNs: 1n, size: 0 }),
    ]);
    const f = await readAnyManifest(pieces(files, 3));
    expect(f.kind).to.equal('files');
    if (f.kind === 'files') {
      const all = [];
      for await (const e of f.entries) all.push(e);
      expect(all.map((e) => e.path.toString())).to.deep.equal(['d']);
    }
    const plain = await readManifest(pieces(files, 3));
    expect(plain.header.roots).to.deep.equal(['/r']);
    try {
      await readManifest(pieces(sample(), 64));
      expect.fail('readManifest accepted a volume');
    } catch (err) {
      expect(CairnError.is(err, 'CAIRN_MANIFEST_INVALID')).to.equal(true);
      expect(String(err)).to.contain('volume image');
    }
    await expectInvalid(readVolumeManifest(pieces(files, 3)), 'a file manifest read as a volume');
  });

  it('rejects malformed maps: wrong sizes, gaps, overruns, count mismatches, bad block sizes', async () => {
    const H = encodeVolumeHeader(hdr());
    const cases: [string, Buffer][] = [
      ['short map', Buffer.concat([H, encodeVolumeDataRun(refs([MiB, MiB])), encodeVolumeZeroRun(3)])],
      ['overrun', Buffer.concat([H, encodeVolumeDataRun(refs([MiB, MiB])), encodeVolumeZeroRun(5)])],
      ['extra record', Buffer.concat([sample(), encodeVolumeZeroRun(1)])],
      ['ref of wrong size', Buffer.concat([H, encodeVolumeDataRun(refs([MiB, 4096])), encodeVolumeZeroRun(3), encodeVolumeDataRun(refs([4096]))])],
      ['last block full size', Buffer.concat([H, encodeVolumeDataRun(refs([MiB, MiB])), encodeVolumeZeroRun(3), encodeVolumeDataRun(refs([MiB]))])],
      ['zero count mismatch', sample(hdr({ blocks_zero: 2, blocks_data: 4 }))],
      ['counts do not add up', sample(hdr({ blocks_zero: 3, blocks_data: 2 }))],
      ['blocks vs size', sample(hdr({ blocks: 7, blocks_data: 4 }))],
      ['block size not a power of two', sample(hdr({ block_size: 3 * 65536 }))],
      ['block size too small', sample(hdr({ block_size: 4096, blocks: 1285, blocks_data: 1282 }))],
      ['empty run', Buffer.concat([H, encodeVolumeZeroRun(0)])],
      ['unknown record', Buffer.concat([H, Buffer.from([2, 0, 0, 0]), Buffer.from('{}'), Buffer.alloc(4)])],
      ['truncated', sample().subarray(0, sample().length - 5)],
      ['wrong magic', Buffer.concat([Buffer.from('CAIRNMX\x01'), sample().subarray(8)])],
    ];
    for (const [what, buf] of cases) {
      await expectInvalid((async () => {
        const m = await readVolumeManifest(pieces(buf, 100));
        for await (const r of m.runs) void r;
      })(), what);
    }
  });

  it('property: arbitrary bytes never crash the volume reader (parse or CAIRN_MANIFEST_INVALID)', async () => {
    const good = sample();
    const arb = fc.oneof(
      fc.uint8Array({ maxLength: 6000 }).map((a) => Buffer.from(a)),
      fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.concat([good.subarray(0, 8), Buffer.from(a)])),
      fc.tuple(fc.nat(good.length - 1), fc.integer({ min: 1, max: 255 })).map(([i, x]) => {
        const b = Buffer.from(good);
        b[i] ^= x;
        return b;
      }),
      fc.nat(good.length).map((n) => good.subarray(0, n)),
    );
    await fc.assert(
      fc.asyncProperty(arb, fc.integer({ min: 1, max: 9000 }), async (buf, piece) => {
        try {
          const m = await readAnyManifest(pieces(buf, piece));
          if (m.kind === 'volume') for await (const r of m.runs) void r;
          else for await (const e of m.entries) void e;
        } catch (err) {
          if (!CairnError.is(err, 'CAIRN_MANIFEST_INVALID')) throw err;
        }
      }),
      { numRuns: 400 },
    );
  });

  it('BlockMapWriter spools runs and fills in the header; PrevMapCursor streams ids back, holes and past-the-end as zeros', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-blockmap-'));
    try {
      const bs = 65536;
      const pattern = 'DDZZZDDDDZD'.repeat(900) + 'D'; // 9901 blocks: several 4096-ref data runs are split
      const size = (pattern.length - 1) * bs + 100;
      const file = path.join(dir, 'map');
      const w = new BlockMapWriter(file, hdr({ size, block_size: bs, blocks: pattern.length, blocks_data: 0, blocks_zero: 0, blocks_changed: 0 }));
      const idOf = (i: number): Buffer => {
        const b = Buffer.alloc(32);
        b.writeUInt32LE(i + 1, 0);
        return b;
      };
      let zero = 0;
      for (let i = 0; i < pattern.length; i++) {
        if (pattern[i] === 'Z') {
          w.addZero();
          zero++;
        } else w.addData(idOf(i), i === pattern.length - 1 ? 100 : bs);
      }
      w.finish(hdr({ size, block_size: bs, blocks: pattern.length, blocks_data: pattern.length - zero, blocks_zero: zero, blocks_changed: 7 }));
      const m = await readVolumeManifest(pieces(fs.readFileSync(file), 65536));
      expect(m.header.blocks_changed).to.equal(7);
      const cursor = new PrevMapCursor(m.runs[Symbol.asyncIterator]());
      let i = 0;
      for (const n of [1, 2, 3, 4096, 5000, 799, 10, 100]) {
        const ids = await cursor.take(n);
        for (let k = 0; k < n; k++, i++) {
          const want = i < pattern.length && pattern[i] === 'D' ? idOf(i) : Buffer.alloc(32);
          expect(ids.subarray(k * 32, k * 32 + 32).equals(want), `block ${i}`).to.equal(true);
        }
      }
      expect(i).to.be.greaterThan(pattern.length);
      expect(cursor.error).to.equal(undefined);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('PrevMapCursor turns an unreadable parent map into "everything changed" and remembers why', async () => {
    const bad = Buffer.concat([encodeVolumeHeader(hdr()), encodeVolumeDataRun(refs([MiB, 7]))]);
    const m = await readVolumeManifest(pieces(bad, 1000));
    const cursor = new PrevMapCursor(m.runs[Symbol.asyncIterator]());
    const ids = await cursor.take(6);
    expect(ids.equals(Buffer.alloc(6 * 32))).to.equal(true);
    expect(CairnError.is(cursor.error, 'CAIRN_MANIFEST_INVALID')).to.equal(true);
  });
});
