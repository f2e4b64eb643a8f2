import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { errnoCode } from '../../core/errors';

/**
 * Exclusive lock files ("one backup of a source at a time", "one agent service per
 * $CAIRN_HOME"), across processes. A lock is a file created with O_EXCL holding its owner's pid
 * and that process's start time (from /proc, so a recycled pid is not mistaken for the owner).
 * A lock whose owner is gone (killed, power cut) is stale and taken over: it is renamed away
 * atomically, and if what was renamed turns out not to be the stale lock that was judged (a
 * live owner took over in between) it is put back and the lock is reported busy.
 */
export interface LockHolder {
  pid: number;
  since: string;
  start?: string;
}

export interface Lock {
  readonly file: string;
  release(): void;
}

/** Start time of a process (field 22 of /proc/PID/stat), or undefined where /proc is absent. */
export function processStart(pid: number, proc = '/proc'): string | undefined {
  try {
    const stat = fs.readFileSync(path.join(proc, String(pid), 'stat'), 'utf8');
    // the command name (field 2) may hold spaces and parentheses: count fields after the last ')'
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return rest[19];
  } catch {
    return undefined;
  }
}

export function isAlive(h: LockHolder): boolean {
  try {
    process.kill(h.pid, 0);
  } catch (err) {
    if (errnoCode(err) !== 'EPERM') return false;
  }
  if (h.start === undefined) return true;
  const now = processStart(h.pid);
  return now === undefined || now === h.start;
}

export function readHolder(file: string): LockHolder | undefined {
  try {
    const h = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<LockHolder>;
    if (typeof h.pid === 'number' && Number.isInteger(h.pid) && h.pid > 0) return { pid: h.pid, since: String(h.since ?? ''), start: typeof h.start === 'string' ? h.start : undefined };
  } catch {
    /* unreadable or half-written: treated as no holder */
  }
  return undefined;
}

/** Takes the lock, or returns who holds it. */
export function tryLock(file: string, now: () => number = Date.now): Lock | { busy: LockHolder } {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const mine: LockHolder = { pid: process.pid, since: new Date(now()).toISOString(), start: processStart(process.pid) };
  const text = JSON.stringify(mine) + '\n';
  for (let tries = 0; tries < 3; tries++) {
    try {
      const fd = fs.openSync(file, 'wx', 0o600);
      try {
        fs.writeSync(fd, text);
      } finally {
        fs.closeSync(fd);
      }
      let released = false;
      return {
        file,
        release() {
          if (released) return;
          released = true;
          // only remove it if it is still ours
          const h = readHolder(file);
          if (h && h.pid === mine.pid && h.start === mine.start && h.since === mine.since) fs.rmSync(file, { force: true });
        },
      };
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw err;
    }
    let judged: string;
    try {
      judged = fs.readFileSync(file, 'utf8');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') continue;
      throw err;
    }
    const holder = readHolder(file);
    if (holder && isAlive(holder)) return { busy: holder };
    if (!holder) {
      // Being written right now by its creator (O_EXCL, then write): give it a moment.
      let mtime = 0;
      try {
        mtime = fs.statSync(file).mtimeMs;
      } catch {
        continue;
      }
      if (Date.now() - mtime < 5000) return { busy: { pid: 0, since: '' } };
    }
    const aside = `${file}.stale-${randomBytes(4).toString('hex')}`;
    try {
      fs.renameSync(file, aside);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') continue;
      throw err;
    }
    const moved = fs.readFileSync(aside, 'utf8');
    if (moved !== judged) {
      // Someone replaced the stale lock between our read and our rename: give theirs back.
      try {
        fs.linkSync(aside, file);
      } catch {
        /* a third process holds it now */
      }
      fs.rmSync(aside, { force: true });
      return { busy: readHolder(file) ?? { pid: 0, since: '' } };
    }
    fs.rmSync(aside, { force: true });
  }
  return { busy: readHolder(file) ?? { pid: 0, since: '' } };
}
