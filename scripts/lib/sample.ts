import fs from 'node:fs';
import path from 'node:path';
import { createCipheriv, createHash } from 'node:crypto';

/**
 * Deterministic sample trees for the demo, tests and benchmarks: compressible text,
 * incompressible binaries, duplicates, many small files, nested and empty directories,
 * symlinks, a hard link, and names with spaces, newlines and non-ASCII UTF-8.
 */
export class Prng {
  private readonly cipher;
  constructor(seed: string) {
    const k = createHash('sha256').update(seed).digest();
    this.cipher = createCipheriv('aes-128-ctr', k.subarray(0, 16), k.subarray(16, 32));
  }
  bytes(n: number): Buffer {
    return this.cipher.update(Buffer.alloc(n));
  }
  int(max: number): number {
    return this.bytes(4).readUInt32LE(0) % max;
  }
}

const WORDS = 'the box keeps versions of every file and replicates them to a secondary so that nothing is lost when a disk dies cairn backup restore chunk encrypt office data report invoice budget meeting notes'.split(' ');

export function textBytes(rng: Prng, n: number): Buffer {
  const parts: string[] = [];
  let len = 0;
  const r = rng.bytes(Math.ceil(n / 3) + 16);
  let i = 0;
  while (len < n) {
    const w = WORDS[r[i++ % r.length] % WORDS.length] + (r[(i + 7) % r.length] % 11 === 0 ? '.\n' : ' ');
    parts.push(w);
    len += w.length;
  }
  return Buffer.from(parts.join('')).subarray(0, n);
}

export interface SampleSummary {
  files: number;
  bytes: number;
}

/** Writes a tree of about `totalBytes` under dir (created). */
export function generateSample(dir: string, totalBytes: number, seed = 'cairn-sample'): SampleSummary {
  const rng = new Prng(seed);
  let files = 0;
  let bytes = 0;
  const write = (rel: string, data: Buffer, mode = 0o644): void => {
    const p = path.join(dir, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, data, { mode });
    fs.chmodSync(p, mode);
    files++;
    bytes += data.length;
  };
  const big = Math.floor(totalBytes * 0.35);
  write('media/video.bin', rng.bytes(big));
  write('media/photo-archive.bin', rng.bytes(Math.floor(totalBytes * 0.15)));
  for (let i = 0; i < 10; i++) write(`documents/report-${i}.txt`, textBytes(rng, Math.floor((totalBytes * 0.2) / 10)));
  const dup = fs.readFileSync(path.join(dir, 'documents/report-3.txt'));
  write('documents/copy of report-3.txt', dup);
  const small = Math.max(50, Math.floor(totalBytes / (64 * 1024) / 2));
  for (let i = 0; i < small; i++) write(`projects/p${i % 7}/src/file-${i}.c`, textBytes(rng, 200 + rng.int(8000)), i % 5 === 0 ? 0o755 : 0o644);
  write('private/secret.txt', textBytes(rng, 3000), 0o600);
  write('names/with space.txt', textBytes(rng, 100));
  write('names/new\nline.txt', textBytes(rng, 100));
  write('names/été — 日本語 🎉.txt', textBytes(rng, 100));
  fs.mkdirSync(path.join(dir, 'empty/inner'), { recursive: true });
  fs.symlinkSync('../documents/report-1.txt', path.join(dir, 'names/link-to-report'));
  fs.symlinkSync('/nonexistent/dangling', path.join(dir, 'names/dangling'));
  fs.linkSync(path.join(dir, 'documents/report-2.txt'), path.join(dir, 'names/hardlink-to-report-2'));
  const rest = Math.max(0, totalBytes - bytes);
  write('misc/remainder.dat', Buffer.concat([textBytes(rng, Math.floor(rest / 2)), rng.bytes(rest - Math.floor(rest / 2))]));
  return { files, bytes };
}

/** Changes about `fraction` of the sample: appends, an in-place rewrite, a new file, a deleted file. */
export function mutateSample(dir: string, fraction = 0.01, seed = 'cairn-mutate'): string[] {
  const rng = new Prng(seed);
  const done: string[] = [];
  const total = dirSize(dir);
  const budget = Math.max(4096, Math.floor(total * fraction));
  fs.appendFileSync(path.join(dir, 'documents/report-0.txt'), textBytes(rng, Math.floor(budget * 0.2)));
  done.push('appended to documents/report-0.txt');
  const vid = path.join(dir, 'media/video.bin');
  const fd = fs.openSync(vid, 'r+');
  fs.writeSync(fd, rng.bytes(Math.floor(budget * 0.3)), 0, Math.floor(budget * 0.3), Math.floor(fs.fstatSync(fd).size / 2));
  fs.closeSync(fd);
  done.push('rewrote part of media/video.bin in place');
  fs.writeFileSync(path.join(dir, 'documents/new-notes.txt'), textBytes(rng, Math.floor(budget * 0.5)));
  done.push('created documents/new-notes.txt');
  fs.rmSync(path.join(dir, 'projects/p1/src/file-1.c'));
  done.push('deleted projects/p1/src/file-1.c');
  return done;
}

export function dirSize(dir: string): number {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) n += dirSize(p);
    else if (e.isFile()) n += fs.statSync(p).size;
  }
  return n;
}
