/**
 * The benchmark corpus: a deterministic tree (same seed and size, same bytes) mixing what a
 * PC holds — text, executables and libraries (partly compressible), media (incompressible),
 * already-compressed archives (gzip'd text made with zlib), a sparse-ish disk image,
 * exact duplicates, a shifted near-duplicate (tests content-defined boundaries) and many
 * small files in nested directories — and a deterministic ~1% change that works on any
 * tree (appends, in-place rewrites, new files, deleted files).
 *
 * Shares are of the requested size; sizes are in bytes (MB = 1e6, like MB/s).
 */
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { Prng } from '../../scripts/lib/sample';

/** Bump when the generator's output changes, so a cached corpus is not reused. */
export const CORPUS_VERSION = 1;

export interface CorpusSummary {
  files: number;
  bytes: number;
  dirs: number;
  symlinks: number;
  kinds: Record<string, { files: number; bytes: number }>;
}

/**
 * Fast, compressible-like-real text: a Zipf-weighted vocabulary of 4,096 pseudo-words,
 * punctuation, numbers and line breaks (LZ4 shrinks it to about half, gzip to about a third).
 */
export class TextGen {
  private readonly words: Buffer[];
  private readonly cdf: Uint32Array;
  constructor(seed: string) {
    const rng = new Prng(`${seed}/vocab`);
    const letters = 'etaoinshrdlcumwfgypbvkjxqz';
    this.words = [];
    for (let i = 0; i < 4096; i++) {
      const len = 2 + (rng.int(9) + rng.int(5)) % 11;
      const r = rng.bytes(len);
      let w = '';
      // Skewed letter choice (frequent letters first), like natural language.
      for (let j = 0; j < len; j++) w += letters[Math.min(25, Math.floor((r[j] / 256) ** 2 * 26))];
      this.words.push(Buffer.from(w));
    }
    // Zipf weights 1/(rank+1), scaled to a cumulative table over 2^24.
    const weights = this.words.map((_, i) => 1 / (i + 1));
    const total = weights.reduce((a, b) => a + b, 0);
    this.cdf = new Uint32Array(weights.length);
    let acc = 0;
    for (let i = 0; i < weights.length; i++) {
      acc += weights[i];
      this.cdf[i] = Math.min(0xffffff, Math.floor((acc / total) * 0x1000000));
    }
    this.cdf[this.cdf.length - 1] = 0x1000000;
  }

  private pick(x: number): Buffer {
    let lo = 0;
    let hi = this.cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.cdf[mid] > x) hi = mid;
      else lo = mid + 1;
    }
    return this.words[lo];
  }

  bytes(rng: Prng, n: number): Buffer {
    const out = Buffer.allocUnsafe(n + 32);
    const r = rng.bytes(Math.ceil(n / 2) + 64);
    let ri = 0;
    let o = 0;
    const next = (): number => {
      if (ri + 4 > r.length) ri = 0;
      const v = r.readUInt32LE(ri);
      ri += 4;
      return v;
    };
    while (o < n) {
      const v = next();
      const w = this.pick(v & 0xffffff);
      o += w.copy(out, o);
      const p = v >>> 24;
      if (p < 10) {
        out[o++] = 0x2e; // '.'
        out[o++] = 0x0a;
      } else if (p < 22) {
        out[o++] = 0x2c; // ','
        out[o++] = 0x20;
      } else if (p < 30) {
        o += out.write(String(next() % 100000), o, 'latin1');
        out[o++] = 0x20;
      } else out[o++] = 0x20;
    }
    return out.subarray(0, n);
  }
}

/** Bytes like an executable or library: random code-like runs, zero padding, tables, strings. */
function binaryBytes(rng: Prng, text: TextGen, n: number): Buffer {
  const out = Buffer.alloc(n);
  let o = 0;
  while (o < n) {
    const kind = rng.int(10);
    const len = Math.min(n - o, 512 + rng.int(16384));
    if (kind < 5) rng.bytes(len).copy(out, o); // code: dense
    else if (kind < 7) {
      // tables: small integers, little entropy per byte
      const r = rng.bytes(len);
      for (let i = 0; i < len; i++) out[o + i] = r[i] & 0x0f;
    } else if (kind < 9) text.bytes(rng, len).copy(out, o); // string tables
    // else: zero padding (already zero)
    o += len;
  }
  return out;
}

/** Writes the corpus under dir (created, must not exist or be empty). */
export function generateCorpus(dir: string, totalBytes: number, seed = 'cairn-bench'): CorpusSummary {
  const rng = new Prng(seed);
  const text = new TextGen(seed);
  const sum: CorpusSummary = { files: 0, bytes: 0, dirs: 0, symlinks: 0, kinds: {} };
  const madeDirs = new Set<string>();
  const write = (kind: string, rel: string, data: Buffer, mode = 0o644): void => {
    const p = path.join(dir, rel);
    const d = path.dirname(p);
    if (!madeDirs.has(d)) {
      fs.mkdirSync(d, { recursive: true });
      madeDirs.add(d);
    }
    fs.writeFileSync(p, data, { mode });
    if (mode !== 0o644) fs.chmodSync(p, mode);
    sum.files++;
    sum.bytes += data.length;
    const k = (sum.kinds[kind] ??= { files: 0, bytes: 0 });
    k.files++;
    k.bytes += data.length;
  };
  /** Splits `share` bytes into files of sizes in [min, max] (last one takes the rest, if >= min). */
  const sizes = (share: number, min: number, max: number): number[] => {
    const out: number[] = [];
    let left = share;
    while (left >= min) {
      const s = Math.min(left, min + rng.int(Math.max(1, max - min)));
      out.push(s);
      left -= s;
    }
    return out;
  };
  const MB = 1_000_000;
  const scale = (f: number): number => Math.floor(totalBytes * f);
  const bigMax = Math.max(MB, Math.min(120 * MB, scale(0.08)));

  // Text documents, 22%: mostly 0.2–8 MB, a few logs up to 40 MB.
  sizes(scale(0.16), 200_000, 8 * MB).forEach((s, i) => write('text', `Documents/reports/${2010 + (i % 14)}/report-${i}.txt`, text.bytes(rng, s)));
  sizes(scale(0.06), 2 * MB, Math.max(2 * MB + 1, Math.min(40 * MB, scale(0.03)))).forEach((s, i) => write('text', `var/log/app-${i}.log`, text.bytes(rng, s)));

  // Media, 22%: incompressible (photos, videos).
  sizes(scale(0.12), 2 * MB, 12 * MB).forEach((s, i) => write('media', `Pictures/${2015 + (i % 9)}/IMG_${1000 + i}.jpg`, rng.bytes(s)));
  sizes(scale(0.10), Math.min(20 * MB, bigMax), bigMax).forEach((s, i) => write('media', `Videos/clip-${i}.mp4`, rng.bytes(s)));

  // Executables and libraries, 14%: partly compressible.
  sizes(scale(0.14), 100_000, 16 * MB).forEach((s, i) => write('binary', `Programs/app${i % 12}/lib${i}.so`, binaryBytes(rng, text, s), i % 3 === 0 ? 0o755 : 0o644));

  // Already compressed, 14%: gzip'd text (zlib level 6) as archives, so no tool can shrink it further.
  {
    let left = scale(0.14);
    let i = 0;
    while (left > 100_000) {
      const plain = text.bytes(rng, Math.min(Math.max(300_000, left * 3), 300_000 + rng.int(30 * MB)));
      const gz = zlib.gzipSync(plain, { level: 6 });
      write('compressed', `Archives/backup-${i++}.tar.gz`, gz);
      left -= gz.length;
    }
  }

  // A disk image, 6%: mostly zeros with scattered data blocks.
  {
    const n = scale(0.06);
    const img = Buffer.alloc(n);
    for (let o = 0; o + 65536 <= n; o += 65536) {
      const k = rng.int(10);
      if (k < 3) rng.bytes(65536).copy(img, o);
      else if (k < 5) text.bytes(rng, 65536).copy(img, o);
    }
    write('image', 'VMs/disk.img', img);
  }

  // Many small files, 10%: source trees, configs, mail; 100 B – 32 KB, log-distributed, nested.
  {
    let left = scale(0.10);
    let i = 0;
    while (left > 0) {
      const s = Math.min(left, Math.floor(100 * Math.pow(320, rng.int(1000) / 1000)));
      const proj = i % 23;
      const sub = Math.floor(i / 23) % 37;
      const mode = i % 11 === 0 ? 0o755 : 0o644;
      const data = i % 9 === 0 ? rng.bytes(s) : text.bytes(rng, s);
      write('small', `src/project-${proj}/module-${sub}/file-${i}.${['c', 'h', 'ts', 'json', 'md', 'py'][i % 6]}`, data, mode);
      left -= s;
      i++;
    }
  }

  // Duplicates, 12%: exact copies of earlier files in other folders, and one large file copied
  // with 4,321 bytes inserted at its start (same content, shifted: CDC finds the old chunks).
  {
    const all: string[] = [];
    const walk = (rel: string): void => {
      for (const e of fs.readdirSync(path.join(dir, rel), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
        const r = path.join(rel, e.name);
        if (e.isDirectory()) walk(r);
        else if (e.isFile()) all.push(r);
      }
    };
    walk('');
    let left = scale(0.10);
    let guard = 0;
    while (left > 0 && guard++ < 100_000) {
      const src = all[rng.int(all.length)];
      const st = fs.statSync(path.join(dir, src));
      if (st.size > left + MB) continue;
      write('duplicate', path.join('Backup of old PC', src), fs.readFileSync(path.join(dir, src)));
      left -= st.size;
    }
    const biggestText = all.filter((f) => f.startsWith('var/log/')).map((f) => ({ f, s: fs.statSync(path.join(dir, f)).size })).sort((a, b) => b.s - a.s)[0];
    if (biggestText) write('duplicate', 'Documents/edited-copy.log', Buffer.concat([text.bytes(rng, 4321), fs.readFileSync(path.join(dir, biggestText.f))]));
  }

  // Whatever is left to reach the size, as text; a few symlinks and empty entries.
  const rest = totalBytes - sum.bytes;
  if (rest > 0) write('text', 'Documents/remainder.txt', text.bytes(rng, rest));
  write('small', 'Documents/empty.txt', Buffer.alloc(0));
  fs.mkdirSync(path.join(dir, 'Downloads/empty-folder'), { recursive: true });
  fs.symlinkSync('../Documents/remainder.txt', path.join(dir, 'Downloads/remainder-link.txt'));
  fs.symlinkSync('/nonexistent/target', path.join(dir, 'Downloads/dangling-link'));
  sum.symlinks = 2;
  // Fixed times, so the same seed gives the same tree, metadata included.
  const t = new Date('2024-01-15T10:00:00Z');
  const fix = (rel: string): void => {
    const p = path.join(dir, rel);
    for (const e of fs.readdirSync(p, { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) {
        sum.dirs++;
        fix(r);
      }
      if (!e.isSymbolicLink()) fs.utimesSync(path.join(dir, r), t, t);
    }
  };
  fix('');
  return sum;
}

export interface FileEntry {
  rel: string;
  size: number;
}

export function listFiles(root: string): FileEntry[] {
  const out: FileEntry[] = [];
  const walk = (rel: string): void => {
    const names = fs.readdirSync(path.join(root, rel), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of names) {
      const r = rel ? path.join(rel, e.name) : e.name;
      if (e.isDirectory()) walk(r);
      else if (e.isFile()) out.push({ rel: r, size: fs.statSync(path.join(root, r)).size });
    }
  };
  walk('');
  return out;
}

export interface ChangeSummary {
  appended: number;
  rewritten: number;
  created: number;
  deleted: number;
  bytesChanged: number;
  filesTouched: number;
}

/**
 * Changes about `fraction` of the tree's bytes, deterministically for a given tree and seed:
 * 25% of the budget appended to 20 files, 35% rewritten in place (same size) inside 10 large
 * files, 40% as 60 new files (text and binary), and 20 small files deleted.
 */
export function mutateCorpus(root: string, fraction = 0.01, seed = 'cairn-bench-change'): ChangeSummary {
  const rng = new Prng(seed);
  const text = new TextGen(seed);
  const files = listFiles(root);
  const total = files.reduce((a, f) => a + f.size, 0);
  const budget = Math.max(64 * 1024, Math.floor(total * fraction));
  const out: ChangeSummary = { appended: 0, rewritten: 0, created: 0, deleted: 0, bytesChanged: 0, filesTouched: 0 };
  const touched = new Set<string>();
  const pick = (list: FileEntry[]): FileEntry | undefined => {
    for (let tries = 0; tries < 50 && list.length; tries++) {
      const f = list[rng.int(list.length)];
      if (!touched.has(f.rel)) return f;
    }
    return undefined;
  };

  const appendEach = Math.floor((budget * 0.25) / 20);
  const nonEmpty = files.filter((f) => f.size > 0);
  for (let i = 0; i < 20; i++) {
    const f = pick(nonEmpty);
    if (!f) break;
    touched.add(f.rel);
    fs.appendFileSync(path.join(root, f.rel), i % 2 === 0 ? text.bytes(rng, appendEach) : rng.bytes(appendEach));
    out.appended++;
    out.bytesChanged += appendEach;
  }

  const rewriteEach = Math.floor((budget * 0.35) / 10);
  const large = files.filter((f) => f.size >= rewriteEach * 2);
  for (let i = 0; i < 10; i++) {
    const f = pick(large);
    if (!f) break;
    touched.add(f.rel);
    const fd = fs.openSync(path.join(root, f.rel), 'r+');
    try {
      const at = rng.int(f.size - rewriteEach);
      fs.writeSync(fd, rng.bytes(rewriteEach), 0, rewriteEach, at);
    } finally {
      fs.closeSync(fd);
    }
    out.rewritten++;
    out.bytesChanged += rewriteEach;
  }

  const newEach = Math.floor((budget * 0.4) / 60);
  const dirs = [...new Set(files.map((f) => path.dirname(f.rel)))];
  for (let i = 0; i < 60; i++) {
    const d = i < 20 ? 'New stuff' : dirs[rng.int(dirs.length)];
    const rel = path.join(d, `new-${i}.${i % 3 === 0 ? 'bin' : 'txt'}`);
    fs.mkdirSync(path.join(root, d), { recursive: true });
    fs.writeFileSync(path.join(root, rel), i % 3 === 0 ? rng.bytes(newEach) : text.bytes(rng, newEach));
    touched.add(rel);
    out.created++;
    out.bytesChanged += newEach;
  }

  const small = files.filter((f) => f.size < 64 * 1024);
  for (let i = 0; i < 20; i++) {
    const f = pick(small);
    if (!f) break;
    touched.add(f.rel);
    fs.rmSync(path.join(root, f.rel));
    out.deleted++;
  }
  out.filesTouched = touched.size;
  return out;
}
