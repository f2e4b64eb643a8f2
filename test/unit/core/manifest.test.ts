import { expect } from 'chai';
import fc from 'fast-check';
import { encodeEntry, encodeHeader, isSafeRelativePath, ManifestEntry, readManifest, CHUNK_REF_BYTES } from '../../../src/core/manifest';
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

const header = encodeHeader({ v: 1, kind: 'files', roots: ['/home/u'], host: 'pc', created: '2026-01-01T00:00:00Z' });

function refs(sizes: number[]): Buffer {
  const b = Buffer.alloc(sizes.length * CHUNK_REF_BYTES);
  sizes.forEach((s, i) => {
    b.fill(i + 1, i * CHUNK_REF_BYTES, i * CHUNK_REF_BYTES + 32);
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

  it('rejects chunk sizes that do not add up, wrong magic and truncation', async () => {
    const bad: ManifestEntry = { path: Buffer.from('f'), type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: 0n, size: 99, chunks: refs([10]) };
    const cases = [
      Buffer.concat([header, encodeEntry(bad)]),
      Buffer.concat([Buffer.from('NOTMANIF'), header.subarray(8)]),
      header.subarray(0, header.length - 3),
      Buffer.concat([header, encodeEntry({ ...bad, size: 10 }).subarray(0, 20)]),
    ];
    for (const c of cases) {
      try {
        await parse(c);
        expect.fail('accepted');
      } catch (err) {
        expect((err as CairnError).code).to.equal('CAIRN_MANIFEST_INVALID');
      }
    }
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
