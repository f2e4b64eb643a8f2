import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';

/**
 * Compares two directory trees: same names, types, contents (byte for byte, by SHA-256),
 * permission bits, symlink targets, file mtimes (to the microsecond) and hard-link groups.
 * Returns a list of differences; empty means identical.
 *
 * Times are compared as integers (bigint stats). `mtimeMs` is a double: at today's epoch it
 * holds only about 0.24 us, so a source time in the last ~120 ns of a millisecond rounds up
 * to the next one while its restored copy (Node sets whole microseconds) does not, and a
 * millisecond comparison of the doubles then reports a difference that is not there.
 */
export function compareTrees(a: string, b: string, opts: { mtimes?: boolean; dirModes?: boolean } = {}): string[] {
  const diffs: string[] = [];
  const join = (root: string, rel: Buffer): Buffer => (rel.length ? Buffer.concat([Buffer.from(root + '/'), rel]) : Buffer.from(root));
  const walk = (relBuf: Buffer): void => {
    const rel = relBuf.toString();
    const pa = join(a, relBuf);
    const pb = join(b, relBuf);
    let sa: fs.BigIntStats;
    let sb: fs.BigIntStats;
    try {
      sa = fs.lstatSync(pa, { bigint: true });
    } catch {
      diffs.push(`missing in source: ${rel}`);
      return;
    }
    try {
      sb = fs.lstatSync(pb, { bigint: true });
    } catch {
      diffs.push(`missing in restore: ${rel}`);
      return;
    }
    const type = (s: fs.BigIntStats): string => (s.isDirectory() ? 'dir' : s.isFile() ? 'file' : s.isSymbolicLink() ? 'symlink' : 'other');
    if (type(sa) !== type(sb)) {
      diffs.push(`type differs: ${rel} (${type(sa)} vs ${type(sb)})`);
      return;
    }
    if (sa.isSymbolicLink()) {
      if (fs.readlinkSync(pa) !== fs.readlinkSync(pb)) diffs.push(`symlink target differs: ${rel}`);
      return;
    }
    const modeA = Number(sa.mode) & 0o7777;
    const modeB = Number(sb.mode) & 0o7777;
    if (modeA !== modeB && (rel !== '' || opts.dirModes)) diffs.push(`mode differs: ${rel} (${modeA.toString(8)} vs ${modeB.toString(8)})`);
    if (sa.isFile()) {
      if (sa.size !== sb.size) diffs.push(`size differs: ${rel} (${sa.size} vs ${sb.size})`);
      else if (hashFile(pa) !== hashFile(pb)) diffs.push(`content differs: ${rel}`);
      if (opts.mtimes !== false && !sameMicrosecond(sa, sb)) diffs.push(`mtime differs: ${rel}`);
      if ((sa.nlink > 1n) !== (sb.nlink > 1n)) diffs.push(`hard-link state differs: ${rel}`);
      return;
    }
    const names = new Map<string, Buffer>();
    for (const n of [...fs.readdirSync(pa, { encoding: 'buffer' }), ...fs.readdirSync(pb, { encoding: 'buffer' })]) names.set(n.toString('hex'), n);
    for (const n of names.values()) walk(relBuf.length ? Buffer.concat([relBuf, Buffer.from('/'), n]) : n);
    if (opts.mtimes !== false && rel !== '' && !sameMicrosecond(sa, sb)) diffs.push(`dir mtime differs: ${rel}`);
  };
  walk(Buffer.alloc(0));
  return diffs;
}

/** Node sets file times to the whole microsecond; nanoseconds below that cannot be restored. */
function sameMicrosecond(a: fs.BigIntStats, b: fs.BigIntStats): boolean {
  return a.mtimeNs / 1000n === b.mtimeNs / 1000n;
}

export function hashFile(p: string | Buffer): string {
  return createHash('sha256').update(fs.readFileSync(p)).digest('hex');
}

/** One string that changes when any name, type, content, mode or symlink target in the tree changes. */
export function treeDigest(root: string): string {
  const h = createHash('sha256');
  const walk = (rel: string): void => {
    const p = path.join(root, rel);
    const st = fs.lstatSync(p);
    h.update(`${rel}\0${st.isDirectory() ? 'd' : st.isFile() ? 'f' : 'l'}\0${(st.mode & 0o7777).toString(8)}\0`);
    if (st.isSymbolicLink()) h.update(fs.readlinkSync(p));
    else if (st.isFile()) h.update(hashFile(p));
    else if (st.isDirectory()) for (const n of fs.readdirSync(p).sort()) walk(path.join(rel, n));
  };
  for (const n of fs.readdirSync(root).sort()) walk(n);
  return h.digest('hex');
}
