import fs from 'node:fs';
import path from 'node:path';
import { Clock } from './clock';
import { HwError } from './errors';
import { Raid, RaidArray, RaidMember, RaidStatus } from './raid';
import { DiskInfo, Disks, unknownHealth, classifyDisk, DiskHealthSummary } from './disks';
import { RaidLevel, chooseLevel } from './mdadm-args';
import { MdArrayState, redundancyOf } from './mdstat';

/**
 * The simulated profile: an md-like array over image files, for machines without md RAID
 * (laptops, CI, this build host) and for the demo. Same Raid and Disks interfaces as the
 * real thing, same confirmations.
 *
 * State lives in <dir>/state.json so that a `cairnd hw simulate ...` process and a running
 * cairnd see and change the same box. Every change is read-modify-write under a lock file
 * and lands with write-to-temp + rename, so a reader never sees half a state.
 *
 * Disks sit in numbered bays (1..n, as printed on a front panel). Each is a sparse image
 * file. A rebuild really copies the image of a healthy member onto the new disk, chunk by
 * chunk as simulated time passes (all-zero chunks are skipped so images stay sparse); for
 * RAID 5/6 the copy stands in for parity reconstruction, only the timing is modelled.
 */
export type SimDiskState = 'active' | 'faulty' | 'spare' | 'rebuilding';

export interface SimDisk {
  bay: number;
  serial: string;
  image: string; // file name inside the state directory
  state: SimDiskState;
  health: 'ok' | 'failing';
}

export interface SimEvent {
  at: number;
  message: string;
}

export interface SimState {
  version: 1;
  md: string; // "md0"
  level: RaidLevel;
  bays: number;
  diskSizeBytes: number;
  rebuildBytesPerSec: number;
  running: boolean; // false after stop
  disks: SimDisk[]; // at most one per bay; an empty bay has none
  rebuild: { bay: number; doneBytes: number; lastAt: number } | null;
  nextSerial: number;
  events: SimEvent[];
}

export interface SimOptions {
  dir: string;
  clock: Clock;
  disks?: number;
  diskSizeBytes?: number;
  rebuildBytesPerSec?: number;
  level?: RaidLevel;
}

const STATE_FILE = 'state.json';
const LOCK_FILE = 'state.lock';
const CHUNK = 1024 * 1024;
const BLOCK = 4096; // copy granularity: all-zero blocks are skipped so images stay sparse
const MAX_EVENTS = 30;
export const SIM_DEFAULT_DISKS = 2;
export const SIM_DEFAULT_DISK_BYTES = 64 * 1024 * 1024;
export const SIM_DEFAULT_REBUILD_BPS = 4 * 1024 * 1024;

function simError(msg: string): HwError {
  return new HwError('CAIRN_HW_SIM_STATE', msg);
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export class SimulatedBox {
  readonly dir: string;
  private readonly clock: Clock;
  private readonly defaults: Required<Omit<SimOptions, 'dir' | 'clock' | 'level'>> & { level?: RaidLevel };

  constructor(opts: SimOptions) {
    this.dir = opts.dir;
    this.clock = opts.clock;
    this.defaults = {
      disks: opts.disks ?? SIM_DEFAULT_DISKS,
      diskSizeBytes: opts.diskSizeBytes ?? SIM_DEFAULT_DISK_BYTES,
      rebuildBytesPerSec: opts.rebuildBytesPerSec ?? SIM_DEFAULT_REBUILD_BPS,
      level: opts.level,
    };
  }

  get statePath(): string {
    return path.join(this.dir, STATE_FILE);
  }

  imagePath(d: SimDisk): string {
    return path.join(this.dir, d.image);
  }

  // ---- state file -------------------------------------------------------------------

  private withLock<T>(fn: () => T): T {
    fs.mkdirSync(this.dir, { recursive: true });
    const lock = path.join(this.dir, LOCK_FILE);
    const deadline = Date.now() + 5000;
    let fd: number | undefined;
    while (fd === undefined) {
      try {
        fd = fs.openSync(lock, 'wx');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        try {
          // A lock left by a killed process is stale after 10 s (no operation takes that long).
          if (Date.now() - fs.statSync(lock).mtimeMs > 10_000) fs.rmSync(lock, { force: true });
        } catch {
          /* gone meanwhile */
        }
        if (Date.now() > deadline) throw simError(`the simulated box at ${this.dir} is locked (${lock}); another command is running`);
        sleepSync(5);
      }
    }
    try {
      return fn();
    } finally {
      fs.closeSync(fd);
      fs.rmSync(lock, { force: true });
    }
  }

  private load(): SimState | null {
    let text: string;
    try {
      text = fs.readFileSync(this.statePath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    let s: unknown;
    try {
      s = JSON.parse(text);
    } catch {
      throw simError(`simulated box state ${this.statePath} is not valid JSON; run "cairnd hw simulate reset" to start over`);
    }
    const st = s as SimState;
    if (!st || st.version !== 1 || !Array.isArray(st.disks)) throw simError(`simulated box state ${this.statePath} has an unknown format; run "cairnd hw simulate reset"`);
    return st;
  }

  private save(s: SimState): void {
    const tmp = `${this.statePath}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(s, null, 2) + '\n');
    fs.renameSync(tmp, this.statePath);
  }

  /** Read-modify-write of the state; creates a fresh box the first time. */
  private mutate<T>(fn: (s: SimState) => T): T {
    return this.withLock(() => {
      const s = this.load() ?? this.fresh();
      this.advance(s);
      const out = fn(s);
      this.save(s);
      return out;
    });
  }

  private log(s: SimState, message: string): void {
    s.events.push({ at: this.clock.now(), message });
    if (s.events.length > MAX_EVENTS) s.events.splice(0, s.events.length - MAX_EVENTS);
  }

  private newDisk(s: SimState, bay: number, state: SimDiskState): SimDisk {
    const serial = `CAIRNSIM${String(s.nextSerial++).padStart(4, '0')}`;
    const d: SimDisk = { bay, serial, image: `bay${bay}-${serial}.img`, state, health: 'ok' };
    const fd = fs.openSync(this.imagePath(d), 'w');
    try {
      fs.ftruncateSync(fd, s.diskSizeBytes); // sparse
    } finally {
      fs.closeSync(fd);
    }
    return d;
  }

  private fresh(): SimState {
    const n = this.defaults.disks;
    const level = chooseLevel(n, this.defaults.level);
    fs.mkdirSync(this.dir, { recursive: true });
    const s: SimState = {
      version: 1,
      md: 'md0',
      level,
      bays: n,
      diskSizeBytes: this.defaults.diskSizeBytes,
      rebuildBytesPerSec: this.defaults.rebuildBytesPerSec,
      running: true,
      disks: [],
      rebuild: null,
      nextSerial: 1,
      events: [],
    };
    for (let bay = 1; bay <= n; bay++) s.disks.push(this.newDisk(s, bay, 'active'));
    // Something to mirror: a label block at the start of every member, as a filesystem would have.
    const label = Buffer.alloc(4096);
    label.write(`CAIRN simulated ${level} array ${s.md}\n`);
    for (const d of s.disks) fs.writeFileSync(this.imagePath(d), label, { flag: 'r+' });
    this.log(s, `created ${level} ${s.md} over ${n} simulated disks of ${Math.round(s.diskSizeBytes / 1048576)} MiB`);
    return s;
  }

  // ---- time -------------------------------------------------------------------------

  /** Moves a running rebuild forward to now (and copies the bytes that covers). */
  private advance(s: SimState, extraBytes = 0): void {
    if (!s.rebuild) return;
    const now = this.clock.now();
    const elapsed = Math.max(0, now - s.rebuild.lastAt);
    const target = Math.min(s.diskSizeBytes, s.rebuild.doneBytes + Math.floor((elapsed / 1000) * s.rebuildBytesPerSec) + extraBytes);
    s.rebuild.lastAt = now;
    const bay = s.rebuild.bay;
    const dst = s.disks.find((d) => d.bay === bay && d.state === 'rebuilding');
    const src = s.disks.find((d) => d.state === 'active');
    if (!dst || !src || !s.running) {
      if (!src) {
        s.rebuild = null;
        if (dst) dst.state = 'spare';
        this.log(s, 'rebuild stopped: no healthy disk left to copy from');
      }
      return;
    }
    if (target > s.rebuild.doneBytes) {
      this.copyRange(this.imagePath(src), this.imagePath(dst), s.rebuild.doneBytes, target);
      s.rebuild.doneBytes = target;
    }
    if (s.rebuild.doneBytes >= s.diskSizeBytes) {
      dst.state = 'active';
      s.rebuild = null;
      this.log(s, `rebuild of disk ${bay} complete: array ${s.md} is clean`);
    }
  }

  private copyRange(from: string, to: string, start: number, end: number): void {
    const src = fs.openSync(from, 'r');
    const dst = fs.openSync(to, 'r+');
    try {
      const buf = Buffer.alloc(CHUNK);
      for (let off = start; off < end; off += CHUNK) {
        const len = Math.min(CHUNK, end - off);
        const n = fs.readSync(src, buf, 0, len, off);
        for (let b = 0; b < n; b += BLOCK) {
          const block = buf.subarray(b, Math.min(n, b + BLOCK));
          if (block.some((x) => x !== 0)) fs.writeSync(dst, block, 0, block.length, off + b);
        }
      }
    } finally {
      fs.closeSync(src);
      fs.closeSync(dst);
    }
  }

  private maybeStartRebuild(s: SimState): void {
    if (s.rebuild || !s.running) return;
    const working = s.disks.filter((d) => d.state === 'active').length;
    if (working >= s.bays) return;
    const spare = s.disks.find((d) => d.state === 'spare');
    if (!spare || working === 0) return;
    spare.state = 'rebuilding';
    s.rebuild = { bay: spare.bay, doneBytes: 0, lastAt: this.clock.now() };
    this.log(s, `rebuild onto disk ${spare.bay} (${spare.serial}) started`);
  }

  // ---- what the CLI drives ----------------------------------------------------------

  /** Current state, with any rebuild moved forward to now. */
  read(): SimState {
    return this.mutate((s) => structuredClone(s));
  }

  reset(): SimState {
    return this.withLock(() => {
      // Works on a damaged state file too: every bay image goes, whatever the state says.
      for (const f of fs.readdirSync(this.dir)) if (/^bay\d+-.*\.img$/.test(f)) fs.rmSync(path.join(this.dir, f), { force: true });
      const s = this.fresh();
      this.save(s);
      return structuredClone(s);
    });
  }

  /** Advance simulated time: the rebuild progresses as if `seconds` had passed. */
  tick(seconds: number): SimState {
    if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 86_400) throw new HwError('CAIRN_HW_INVALID_ARGUMENT', 'tick takes a number of seconds between 1 and 86400');
    return this.withLock(() => {
      const s = this.load() ?? this.fresh();
      this.advance(s, Math.floor(seconds * s.rebuildBytesPerSec));
      this.save(s);
      return structuredClone(s);
    });
  }

  private bayDisk(s: SimState, bay: number): SimDisk {
    if (!Number.isInteger(bay) || bay < 1 || bay > s.bays) throw new HwError('CAIRN_HW_INVALID_ARGUMENT', `there is no disk bay ${bay}; bays are 1 to ${s.bays}`);
    const d = s.disks.find((x) => x.bay === bay);
    if (!d) throw simError(`bay ${bay} is empty; put a disk in with "replace-disk ${bay}"`);
    return d;
  }

  /** A disk dies: SMART fails and md kicks it out of the array. */
  failDisk(bay: number): SimState {
    return this.mutate((s) => {
      const d = this.bayDisk(s, bay);
      if (d.state === 'faulty') throw simError(`disk ${bay} has already failed`);
      if (s.rebuild?.bay === bay) s.rebuild = null;
      d.state = 'faulty';
      d.health = 'failing';
      this.log(s, `disk ${bay} (${d.serial}) failed`);
      // A rebuild that was reading from this disk must pick another source (or stop).
      this.advance(s);
      return structuredClone(s);
    });
  }

  /** The user swaps the disk in bay N for a new one; the array rebuilds onto it. */
  replaceDisk(bay: number): SimState {
    return this.mutate((s) => {
      if (!Number.isInteger(bay) || bay < 1 || bay > s.bays) throw new HwError('CAIRN_HW_INVALID_ARGUMENT', `there is no disk bay ${bay}; bays are 1 to ${s.bays}`);
      const old = s.disks.find((x) => x.bay === bay);
      if (old && old.state === 'active' && old.health === 'ok') {
        throw simError(`disk ${bay} is healthy and in use; fail it first ("fail-disk ${bay}") to simulate replacing it`);
      }
      if (old) {
        fs.rmSync(this.imagePath(old), { force: true });
        s.disks = s.disks.filter((x) => x !== old);
        if (s.rebuild?.bay === bay) s.rebuild = null;
        this.log(s, `disk ${bay} (${old.serial}) removed`);
      }
      const d = this.newDisk(s, bay, 'spare');
      s.disks.push(d);
      s.disks.sort((a, b) => a.bay - b.bay);
      this.log(s, `new disk ${d.serial} inserted in bay ${bay}`);
      this.maybeStartRebuild(s);
      return structuredClone(s);
    });
  }

  // ---- the Raid operations (same confirmations as mdadm) ----------------------------

  findByDevice(s: SimState, device: string): SimDisk {
    const d = s.disks.find((x) => this.imagePath(x) === device || x.image === device);
    if (!d) throw new HwError('CAIRN_HW_INVALID_ARGUMENT', `${device} is not a disk of the simulated box`);
    return d;
  }

  mutateRaid<T>(fn: (s: SimState) => T): T {
    return this.mutate(fn);
  }

  logEvent(s: SimState, message: string): void {
    this.log(s, message);
  }

  startRebuildIfNeeded(s: SimState): void {
    this.maybeStartRebuild(s);
  }
}

// ---- views -----------------------------------------------------------------------------

export function simArrayState(s: SimState): { state: MdArrayState; degraded: boolean; working: number } {
  const working = s.disks.filter((d) => d.state === 'active').length;
  const degraded = working < s.bays;
  let state: MdArrayState;
  if (!s.running) state = 'inactive';
  else if (s.bays - working > redundancyOf(s.level, s.bays)) state = 'failed';
  else if (s.rebuild) state = 'recovering';
  else state = degraded ? 'degraded' : 'clean';
  return { state, degraded: s.running && degraded, working };
}

export function simRaidStatus(box: SimulatedBox, s: SimState): RaidStatus {
  const { state, degraded, working } = simArrayState(s);
  const members: RaidMember[] = s.disks.map((d) => ({ device: box.imagePath(d), slot: d.bay - 1, state: d.state }));
  const dataDisks = s.level === 'raid1' ? 1 : s.level === 'raid10' ? s.bays / 2 : s.level === 'raid5' ? s.bays - 1 : s.bays - 2;
  const pct = s.rebuild ? Math.floor((s.rebuild.doneBytes / s.diskSizeBytes) * 1000) / 10 : null;
  const remaining = s.rebuild ? s.diskSizeBytes - s.rebuild.doneBytes : 0;
  const array: RaidArray = {
    name: s.md,
    device: `/dev/${s.md}`,
    level: s.level,
    state,
    degraded,
    sizeBytes: Math.floor(dataDisks) * s.diskSizeBytes,
    raidDisks: s.bays,
    workingDisks: working,
    members,
    sync:
      s.rebuild && pct !== null
        ? { action: 'recovery', percent: pct, speedKiBps: Math.round(s.rebuildBytesPerSec / 1024), finishMinutes: Math.round((remaining / s.rebuildBytesPerSec / 60) * 10) / 10 }
        : null,
  };
  return { available: true, note: 'simulated profile: disks are image files in ' + box.dir, arrays: [array] };
}

export class SimulatedRaid implements Raid {
  constructor(private readonly box: SimulatedBox) {}

  async status(): Promise<RaidStatus> {
    return simRaidStatus(this.box, this.box.read());
  }

  private checkMd(s: SimState, md: string): void {
    if (md !== `/dev/${s.md}` && md !== s.md) throw new HwError('CAIRN_HW_INVALID_ARGUMENT', `the simulated box has one array, /dev/${s.md}; got ${md}`);
  }

  private confirm(got: string, need: string, what: string): void {
    if (got !== need) throw new HwError('CAIRN_HW_CONFIRM_REQUIRED', `"${what}"; to go ahead, repeat the devices as confirmation: confirm "${need}"`, { confirm: need });
  }

  async create(o: { md: string; devices: string[]; level?: RaidLevel; confirm: string }): Promise<void> {
    this.confirm(o.confirm, o.devices.join(','), 'create erases every listed disk');
    this.box.mutateRaid((s) => {
      this.checkMd(s, o.md);
      const disks = o.devices.map((d) => this.box.findByDevice(s, d));
      if (disks.length !== s.bays || disks.some((d) => d.health === 'failing')) throw simError(`the simulated array is built from all ${s.bays} healthy disks`);
      s.level = chooseLevel(disks.length, o.level);
      s.running = true;
      s.rebuild = null;
      for (const d of disks) d.state = 'active';
      this.box.logEvent(s, `created ${s.level} ${s.md}`);
    });
  }

  async fail(o: { md: string; device: string; confirm: string }): Promise<void> {
    this.confirm(o.confirm, o.device, 'fail takes a disk out of the array');
    this.box.mutateRaid((s) => {
      this.checkMd(s, o.md);
      const d = this.box.findByDevice(s, o.device);
      if (s.rebuild?.bay === d.bay) s.rebuild = null;
      d.state = 'faulty';
      this.box.logEvent(s, `disk ${d.bay} marked failed`);
    });
  }

  async remove(o: { md: string; device: string; confirm: string }): Promise<void> {
    this.confirm(o.confirm, o.device, 'remove removes a disk from the array');
    this.box.mutateRaid((s) => {
      this.checkMd(s, o.md);
      const d = this.box.findByDevice(s, o.device);
      if (d.state === 'active' || d.state === 'rebuilding') throw simError(`disk ${d.bay} is an active member; mark it failed first (like mdadm: "device or resource busy")`);
      d.state = 'spare';
      this.box.logEvent(s, `disk ${d.bay} removed from ${s.md} (left in its bay as a spare)`);
    });
  }

  async add(o: { md: string; device: string; confirm: string }): Promise<void> {
    this.confirm(o.confirm, o.device, 'add erases the added disk');
    this.box.mutateRaid((s) => {
      this.checkMd(s, o.md);
      const d = this.box.findByDevice(s, o.device);
      if (d.state === 'active' || d.state === 'rebuilding') throw simError(`disk ${d.bay} is already in the array`);
      d.state = 'spare';
      this.box.logEvent(s, `disk ${d.bay} added to ${s.md}`);
      this.box.startRebuildIfNeeded(s);
    });
  }

  async stop(o: { md: string; confirm: string }): Promise<void> {
    this.confirm(o.confirm, o.md, 'stop takes the data array offline');
    this.box.mutateRaid((s) => {
      this.checkMd(s, o.md);
      s.running = false;
      this.box.logEvent(s, `${s.md} stopped`);
    });
  }

  async assemble(o: { md: string; devices: string[] }): Promise<void> {
    this.box.mutateRaid((s) => {
      this.checkMd(s, o.md);
      s.running = true;
      this.box.logEvent(s, `${s.md} assembled`);
      this.box.startRebuildIfNeeded(s);
    });
  }
}

export class SimulatedDisks implements Disks {
  constructor(private readonly box: SimulatedBox) {}

  async list(): Promise<DiskInfo[]> {
    const s = this.box.read();
    return s.disks.map((d) => {
      const health: DiskHealthSummary =
        d.health === 'failing'
          ? { health: 'failing', reasons: ['simulated failure: SMART overall health check FAILED'], temperatureC: 41, reallocatedSectors: 1975, pendingSectors: 8, powerOnHours: 1000, passed: false }
          : { ...unknownHealth(''), health: 'ok', reasons: [], temperatureC: 34, reallocatedSectors: 0, pendingSectors: 0, powerOnHours: 1000, passed: true };
      const inArray = d.state !== 'spare' || s.rebuild?.bay === d.bay;
      return {
        name: `disk${d.bay}`,
        device: this.box.imagePath(d),
        type: 'virtual' as const,
        sizeBytes: s.diskSizeBytes,
        model: 'Cairn simulated disk',
        serial: d.serial,
        removable: false,
        transport: 'sim',
        mountpoints: [],
        usage: [],
        arrays: inArray ? [s.md] : [],
        backingFile: this.box.imagePath(d),
        class: classifyDisk({ health: health.health, system: false, arrays: inArray ? [s.md] : [], mounted: false }),
        health,
      };
    });
  }
}
