import { expect } from 'chai';
import fc from 'fast-check';
import {
  encodeEntry, encodeHeader, encodeVolumeDataRun, encodeVolumeHeader, isSafeRelativePath, ManifestEntry, ManifestHeader, MANIFEST_V1, MANIFEST_VERSION,
  readAnyManifest, readManifest, readVolumeManifest, CHUNK_REF_BYTES, VolumeManifestHeader,
} from '../../../src/core/manifest';
import { CairnError } from '../../../src/core/errors';

async function* pieces(buf: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < buf.length; i += size) yield buf.subarray(i, i + size);
}

async function parse(buf: Buffer, piece = 7): Promise<ManifestEntry[]> {
  const m = await readManifest(pieces(buf, piece));
  const out: ManifestEntry[] = [];
  for await (const e of m.entries) out.push(e);
  return out;
}

const headerOf = (v: number): ManifestHeader => ({ v, kind: 'files', roots: ['/home/u'], host: 'pc', created: '2026-01-01T00:00:00Z' });
/** a manifest of the version written now (2) */
const header = encodeHeader(headerOf(MANIFEST_VERSION));
/** a manifest as agents before bundling wrote it (magic byte 1, header v 1) */
const headerV1 = encodeHeader(headerOf(MANIFEST_V1));

/** One record as encodeEntry frames it, with any JSON (for fields encodeEntry never writes). */
function rawRecord(json: Record<string, unknown>, chunks: Buffer = Buffer.alloc(0)): Buffer {
  const j = Buffer.from(JSON.stringify(json), 'utf8');
  const head = Buffer.alloc(8 + j.length);
  head.writeUInt32LE(j.length, 0);
  j.copy(head, 4);
  head.writeUInt32LE(chunks.length / CHUNK_REF_BYTES, 4 + j.length);
  return Buffer.concat([head, chunks]);
}

const fileJson = (s: number, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ t: 'f', p: 'f', m: 0o644, u: 0, g: 0, mt: '0', s, ...extra });

async function expectInvalid(p: Promise<unknown>, what: string, message?: RegExp): Promise<void> {
  try {
    await p;
    expect.fail(`accepted: ${what}`);
  } catch (err) {
    expect((err as CairnError).code, `${what}: ${String(err)}`).to.equal('CAIRN_MANIFEST_INVALID');
    if (message) expect((err as Error).message, what).to.match(message);
  }
}

function refs(sizes: number[], seed = 1): Buffer {
  const b = Buffer.alloc(sizes.length * CHUNK_REF_BYTES);
  sizes.forEach((s, i) => {
    b.fill(seed + i, i * CHUNK_REF_BYTES, i * CHUNK_REF_BYTES + 32);
    b.writeUInt32LE(s, i * CHUNK_REF_BYTES + 32);
  });
  return b;
}

describe('core/manifest', () => {
  it('round-trips entries of every type, odd names and non-UTF-8 bytes, across any split of the stream', async () => {
    const entries: ManifestEntry[] = [
      { path: Buffer.from('dir'), type: 'dir', mode: 0o755, uid: 1000, gid: 1000, mtimeNs: 1700000000123456789n, size: 0 },
      { path: Buffer.from('dir/file with space\nand newline é 日本'), type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: 5n, size: 30, chunks: refs([10, 20]), linked: true },
      { path: Buffer.from([0x64, 0x69, 0x72, 0x2f, 0xff, 0xfe]), type: 'symlink', mode: 0o777, uid: 1, gid: 1, mtimeNs: 0n, size: 0, target: Buffer.from([0x2e, 0x2e, 0x2f, 0xc3]) },
      { path: Buffer.from('dir/h'), type: 'hardlink', mode: 0o644, uid: 0, gid: 0, mtimeNs: 5n, size: 30, target: Buffer.from('dir/file with space\nand newline é 日本'), chunks: refs([10, 20]) },
      { path: Buffer.from('empty'), type: 'file', mode: 0o600, uid: 0, gid: 0, mtimeNs: 9n, size: 0, chunks: Buffer.alloc(0) },
    ];
    const buf = Buffer.concat([header, ...entries.map(encodeEntry)]);
    for (const piece of [1, 3, 64, 100000]) {
      const back = await parse(buf, piece);
      expect(back.length).to.equal(entries.length);
      back.forEach((e, i) => {
        expect(e.path.equals(entries[i].path)).to.equal(true);
        expect(e.type).to.equal(entries[i].type);
        expect(e.mode).to.equal(entries[i].mode);
        expect(e.mtimeNs).to.equal(entries[i].mtimeNs);
        expect(e.size).to.equal(entries[i].size);
        if (entries[i].target) expect(e.target!.equals(entries[i].target!)).to.equal(true);
        if (entries[i].chunks) expect(e.chunks!.equals(entries[i].chunks!)).to.equal(true);
      });
    }
  });

  it('rejects unsafe paths: absolute, .., empty components, NUL', async () => {
    for (const p of ['/etc/passwd', '../x', 'a/../../x', 'a//b', 'a/./b', '.', '', 'a\0b']) {
      expect(isSafeRelativePath(Buffer.from(p)), p).to.equal(false);
      const e: ManifestEntry = { path: Buffer.from(p), type: 'dir', mode: 0o755, uid: 0, gid: 0, mtimeNs: 0n, size: 0 };
      try {
        await parse(Buffer.concat([header, encodeEntry(e)]));
        expect.fail(`accepted ${JSON.stringify(p)}`);
      } catch (err) {
        expect((err as CairnError).code).to.equal('CAIRN_MANIFEST_INVALID');
      }
    }
    expect(isSafeRelativePath(Buffer.from('a/..b/c.'))).to.equal(true);
  });

  it('rejects chunk sizes that do not add up, wrong magic and truncation, in either version', async () => {
    const bad: ManifestEntry = { path: Buffer.from('f'), type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: 0n, size: 99, chunks: refs([10]) };
    for (const h of [header, headerV1]) {
      const cases = [
        Buffer.concat([h, encodeEntry(bad)]),
        Buffer.concat([Buffer.from('NOTMANIF'), h.subarray(8)]),
        h.subarray(0, h.length - 3),
        Buffer.concat([h, encodeEntry({ ...bad, size: 10 }).subarray(0, 20)]),
      ];
      for (const c of cases) await expectInvalid(parse(c), 'bad case');
    }
    await expectInvalid(parse(Buffer.concat([header, encodeEntry(bad)])), 'short refs', /chunk sizes of f do not add up/);
  });

  it('writes version 2: magic byte 2 and header v 2; skip 0 writes no field o', async () => {
    expect(MANIFEST_VERSION).to.equal(2);
    expect(MANIFEST_V1).to.equal(1);
    expect(header.subarray(0, 8).toString('latin1')).to.equal('CAIRNMF\x02');
    expect(headerV1.subarray(0, 8).toString('latin1')).to.equal('CAIRNMF\x01');
    expect(header.toString('utf8')).to.include('"v":2');
    const f: ManifestEntry = { path: Buffer.from('f'), type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: 0n, size: 10, chunks: refs([10]) };
    expect(encodeEntry(f).toString('utf8')).to.not.include('"o"');
    expect(encodeEntry({ ...f, skip: 0 }).toString('utf8')).to.not.include('"o"');
    expect(encodeEntry({ ...f, skip: 3 }).toString('utf8')).to.include('"o":3');
    expect(() => encodeHeader(headerOf(3))).to.throw(/version 3/);
    expect((await readManifest(pieces(header, 5))).header).to.deep.equal(headerOf(2));
    expect((await readManifest(pieces(headerV1, 5))).header).to.deep.equal(headerOf(1));
  });

  it('round-trips version 2 entries of bundled files: a skip, a file ending mid-chunk, a file over two chunks', async () => {
    // one bundle stream cut into chunks A (100 bytes), B (50) and C (80): files a, b, c, d, e one after another
    const A = refs([100], 1);
    const AB = Buffer.concat([A, refs([50], 2)]);
    const BC = Buffer.concat([refs([50], 2), refs([80], 3)]);
    const C = refs([80], 3);
    const f = (name: string, size: number, chunks: Buffer, skip?: number): ManifestEntry => ({
      path: Buffer.from(name), type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: 7n, size, chunks, ...(skip === undefined ? {} : { skip }),
    });
    const entries: ManifestEntry[] = [
      { path: Buffer.from('d'), type: 'dir', mode: 0o755, uid: 0, gid: 0, mtimeNs: 1n, size: 0 },
      f('d/a', 30, A), // skip 0 (absent), ends mid-chunk: A[0, 30)
      f('d/b', 40, A, 30), // whole inside A: A[30, 70)
      f('d/c', 60, AB, 70), // over two chunks: A[70, 100) + B[0, 30)
      f('d/d', 70, BC, 30), // B[30, 50) + C[0, 50)
      f('d/e', 30, C, 50), // ends exactly at the chunk's end
      f('d/empty', 0, Buffer.alloc(0)),
      f('d/own', 230, Buffer.concat([A, BC])), // a large file's chunks of its own
      { path: Buffer.from('d/h'), type: 'hardlink', mode: 0o644, uid: 0, gid: 0, mtimeNs: 7n, size: 60, target: Buffer.from('d/c'), chunks: AB, skip: 70 },
    ];
    const buf = Buffer.concat([header, ...entries.map(encodeEntry)]);
    for (const piece of [1, 3, 64, 100000]) {
      const m = await readManifest(pieces(buf, piece));
      expect(m.header.v).to.equal(2);
      const back: ManifestEntry[] = [];
      for await (const e of m.entries) back.push(e);
      expect(back).to.deep.equal(entries);
    }
    // an explicit o: 0 is the same as none
    const zero = await parse(Buffer.concat([header, rawRecord(fileJson(10, { o: 0 }), refs([10]))]));
    expect(zero[0].skip).to.equal(undefined);
    expect(zero[0].size).to.equal(10);
  });

  it('reads version 1 manifests under version 1\'s rules; field o is invalid in them', async () => {
    const entries: ManifestEntry[] = [
      { path: Buffer.from('d'), type: 'dir', mode: 0o755, uid: 0, gid: 0, mtimeNs: 1n, size: 0 },
      { path: Buffer.from('d/f'), type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: 7n, size: 30, chunks: refs([10, 20]) },
      { path: Buffer.from('d/empty'), type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: 7n, size: 0, chunks: Buffer.alloc(0) },
    ];
    const m = await readManifest(pieces(Buffer.concat([headerV1, ...entries.map(encodeEntry)]), 7));
    expect(m.header.v).to.equal(1);
    const back: ManifestEntry[] = [];
    for await (const e of m.entries) back.push(e);
    expect(back).to.deep.equal(entries);
    const any = await readAnyManifest(pieces(headerV1, 100));
    expect(any.kind).to.equal('files');
    expect(any.header.v).to.equal(1);

    const v1 = (rec: Buffer): Promise<ManifestEntry[]> => parse(Buffer.concat([headerV1, rec]));
    await expectInvalid(v1(rawRecord(fileJson(10, { o: 5 }), refs([15]))), 'o in v1', /version 1/);
    await expectInvalid(v1(rawRecord(fileJson(10, { o: 0 }), refs([10]))), 'o: 0 in v1', /version 1/);
    await expectInvalid(v1(rawRecord(fileJson(10), refs([15]))), 'refs beyond the size in v1', /do not add up/);
    await expectInvalid(v1(rawRecord({ t: 'd', p: 'd', m: 0o755, u: 0, g: 0, mt: '0', s: 0, o: 1 })), 'o on a dir in v1');
  });

  it('rejects each invalid version 2 extent, naming the file', async () => {
    const v2 = (rec: Buffer): Promise<ManifestEntry[]> => parse(Buffer.concat([header, rec]));
    const cases: [string, Buffer, RegExp][] = [
      ['o equal to the first chunk', rawRecord(fileJson(10, { o: 20 }), refs([20, 10])), /skip of f is not inside its first chunk/],
      ['o beyond the first chunk', rawRecord(fileJson(5, { o: 25 }), refs([20, 10])), /skip of f is not inside its first chunk/],
      ['refs short of o + size', rawRecord(fileJson(20, { o: 5 }), refs([10, 10])), /chunk sizes of f do not add up/],
      ['refs short of the size', rawRecord(fileJson(21), refs([10, 10])), /chunk sizes of f do not add up/],
      ['a trailing ref beyond the file', rawRecord(fileJson(10, { o: 5 }), refs([20, 10])), /last chunk of f holds none of its bytes/],
      ['a trailing ref beyond a file without o', rawRecord(fileJson(10), refs([10, 10])), /last chunk of f holds none of its bytes/],
      ['refs on a zero-size file', rawRecord(fileJson(0), refs([10])), /f has 0 bytes but chunks/],
      ['refs of 0 bytes on a zero-size file', rawRecord(fileJson(0), refs([0])), /f has 0 bytes but chunks/],
      ['o on a zero-size file without refs', rawRecord(fileJson(0, { o: 3 })), /f has no chunks but a size or a skip/],
      ['a size without refs', rawRecord(fileJson(4)), /f has no chunks but a size or a skip/],
      ['negative o', rawRecord(fileJson(10, { o: -1 }), refs([10])), /skip \(field o\) of f is not a non-negative integer/],
      ['non-integer o', rawRecord(fileJson(5, { o: 1.5 }), refs([10])), /skip \(field o\) of f is not a non-negative integer/],
      ['string o', rawRecord(fileJson(5, { o: '1' }), refs([10])), /skip \(field o\) of f is not a non-negative integer/],
      ['null o', rawRecord(fileJson(5, { o: null }), refs([10])), /skip \(field o\) of f is not a non-negative integer/],
      ['unsafe o', rawRecord(fileJson(5, { o: 2 ** 53 }), refs([10])), /skip \(field o\) of f is not a non-negative integer/],
      ['o on a hard link beyond its first chunk', rawRecord({ ...fileJson(5, { o: 10 }), t: 'h', l: 'g' }, refs([10, 10])), /skip of f is not inside its first chunk/],
    ];
    for (const [what, rec, message] of cases) await expectInvalid(v2(rec), what, message);
    await expectInvalid(v2(rawRecord({ t: 'd', p: 'dir', m: 0o755, u: 0, g: 0, mt: '0', s: 0, o: 1 })), 'o on a dir', /skip \(field o\) on dir, an entry that holds no data/);
    await expectInvalid(v2(rawRecord({ t: 'l', p: 'ln', l: 'x', m: 0o777, u: 0, g: 0, mt: '0', s: 0, o: 1 })), 'o on a symlink', /skip \(field o\) on ln/);
    // the edges that are valid: the file ends one byte into the last chunk; it starts at the first chunk's last byte
    expect((await v2(rawRecord(fileJson(11, { o: 5 }), refs([10, 10]))))[0].skip).to.equal(5);
    expect((await v2(rawRecord(fileJson(1, { o: 9 }), refs([10]))))[0].skip).to.equal(9);
    expect((await v2(rawRecord(fileJson(2, { o: 9 }), refs([10, 10]))))[0].skip).to.equal(9);
  });

  it('rejects a header whose v is not the magic\'s version, and unknown versions', async () => {
    const swap = (h: Buffer, magicByte: number): Buffer => {
      const b = Buffer.from(h);
      b[7] = magicByte;
      return b;
    };
    await expectInvalid(parse(swap(header, 1)), 'magic 1, header v 2', /does not match/);
    await expectInvalid(parse(swap(headerV1, 2)), 'magic 2, header v 1', /does not match/);
    await expectInvalid(parse(Buffer.concat([header.subarray(0, 8), rawRecord({ ...headerOf(2), v: '2' })])), 'header v a string', /does not match/);
    for (const n of [0, 3, 255]) await expectInvalid(parse(swap(header, n)), `version ${n}`, new RegExp(`unknown manifest version ${n}$`));
  });

  it('volume manifests stay version 1: written and read with magic byte 1, and version 2 is rejected', async () => {
    const MiB = 1024 * 1024;
    const vh: VolumeManifestHeader = {
      v: 1, kind: 'volume', size: MiB, block_size: MiB, blocks: 1, blocks_data: 1, blocks_zero: 0, blocks_changed: 1, device: '/dev/x', host: 'pc', created: 'c',
    };
    const head = encodeVolumeHeader(vh);
    expect(head.subarray(0, 8).toString('latin1')).to.equal('CAIRNMF\x01');
    const buf = Buffer.concat([head, encodeVolumeDataRun(refs([MiB]))]);
    const m = await readVolumeManifest(pieces(buf, 1000));
    expect(m.header).to.deep.equal(vh);
    const runs = [];
    for await (const r of m.runs) runs.push(r);
    expect(runs).to.have.length(1);
    const any = await readAnyManifest(pieces(buf, 1000));
    expect(any.kind).to.equal('volume');
    expect(any.header.v).to.equal(1);

    const magic2 = Buffer.from(buf);
    magic2[7] = 2;
    await expectInvalid(readVolumeManifest(pieces(magic2, 1000)), 'volume with magic byte 2', /volume manifest of version 2/);
    await expectInvalid(readAnyManifest(pieces(magic2, 1000)), 'volume with magic byte 2 (any)', /volume manifest of version 2/);
    await expectInvalid(readManifest(pieces(magic2, 1000)), 'volume read as files');
    // header v 2 behind magic byte 2 (as a careless writer would make it) is no better
    const json = Buffer.from(JSON.stringify({ ...vh, v: 2 }), 'utf8');
    const v2head = Buffer.from(magic2);
    v2head.fill(0x20, 12, 12 + 4096);
    json.copy(v2head, 12);
    await expectInvalid(readVolumeManifest(pieces(v2head, 1000)), 'volume v 2');
    expect(() => encodeVolumeHeader({ ...vh, v: 2 })).to.throw(/version 2/);
  });

  it('property: arbitrary bytes after the magic give entries or CAIRN_MANIFEST_INVALID, never a crash', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 400 }), async (arr) => {
        try {
          await parse(Buffer.concat([header, Buffer.from(arr)]));
        } catch (err) {
          expect((err as CairnError).code).to.equal('CAIRN_MANIFEST_INVALID');
        }
      }),
      { numRuns: 300 },
    );
  });
});
