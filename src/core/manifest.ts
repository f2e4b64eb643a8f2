import { CairnError } from './errors';
import { CHUNK_ID_BYTES } from './chunk-id';

/**
 * Manifest format, versions 1 and 2 (both FROZEN; a change needs a new version, and readers
 * keep every older one). A manifest is one byte stream, itself chunked and encrypted like file
 * data:
 *
 *   "CAIRNMF" v   (one byte: the version, 0x01 or 0x02)
 *   record*   where record = u32 LE json length | UTF-8 JSON | u32 LE chunk count | count x (32-byte id | u32 LE size)
 *
 * The first record is the header ({v, kind, ...}), whose `v` is the magic's version byte; every
 * later record is one entry in depth-first order, parents before children. Paths are relative,
 * '/'-separated, and kept as raw bytes: `p` when they are valid UTF-8, else `pb` (base64), so no
 * file name is mangled.
 *
 * Version 1: a file (or hard link) entry's refs hold exactly its bytes: their sizes add up to
 * its size `s`.
 *
 * Version 2 (file manifests written since small files are bundled) is version 1 plus the
 * entry field `o`. Small files are concatenated into one byte stream that is chunked as a whole
 * (see backup.ts), so a chunk can hold the end of one file, several whole files and the start
 * of another. A file entry's content is then concat(its refs' plaintexts)[o, o + s): `o` (absent
 * = 0) is the number of bytes of the first ref that come before the file's own. The refs are
 * exactly those that hold some of the file's bytes: o < the first ref's size, the refs hold at
 * least o + s bytes, and the last ref holds at least one of the file's bytes; a file of 0 bytes
 * has no refs and no `o`. Only file and hard link entries may carry `o`.
 *
 * Version 1 manifests (older snapshots) are still read, under version 1's rules; `o` is invalid
 * in them. Volume manifests (below) are version 1 only.
 */
/** First 7 bytes of every manifest; the 8th is the version. */
const MAGIC_PREFIX = Buffer.from('CAIRNMF', 'latin1');
/** Version 1: file manifests before bundling, and every volume manifest. */
export const MANIFEST_V1 = 1;
/** The version file manifests are written with (version 1 plus the entry field `o`). */
export const MANIFEST_VERSION = 2;
/** The 8-byte magic of a manifest of version v. */
export function manifestMagic(v: number): Buffer {
  return Buffer.concat([MAGIC_PREFIX, Buffer.from([v])]);
}
/** The magic of a file manifest as written now (version MANIFEST_VERSION). */
export const MANIFEST_MAGIC = manifestMagic(MANIFEST_VERSION);
const MAGIC_BYTES = MAGIC_PREFIX.length + 1;
const MAX_JSON = 256 * 1024;
const MAX_CHUNKS_PER_ENTRY = 64 * 1024 * 1024;
export const CHUNK_REF_BYTES = CHUNK_ID_BYTES + 4;

export type EntryType = 'file' | 'dir' | 'symlink' | 'hardlink';
const TYPE_CODE: Record<EntryType, string> = { file: 'f', dir: 'd', symlink: 'l', hardlink: 'h' };
const CODE_TYPE: Record<string, EntryType> = { f: 'file', d: 'dir', l: 'symlink', h: 'hardlink' };

export interface ManifestHeader {
  /** MANIFEST_VERSION when written; when read, the version read (MANIFEST_V1 or MANIFEST_VERSION) */
  v: number;
  kind: 'files';
  /** absolute paths the snapshot was taken from */
  roots: string[];
  host: string;
  created: string;
}

export interface ManifestEntry {
  /** relative path, raw bytes, '/'-separated */
  path: Buffer;
  type: EntryType;
  mode: number;
  uid: number;
  gid: number;
  mtimeNs: bigint;
  size: number;
  /** symlink: link target; hardlink: path of the entry it links to */
  target?: Buffer;
  /** file: other entries of this snapshot are hard links to it */
  linked?: boolean;
  /** file/hardlink: chunk refs, CHUNK_REF_BYTES each (id, u32 LE plaintext size) */
  chunks?: Buffer;
  /** file/hardlink: bytes of the first chunk that come before this file's bytes (bundled small files; version 2) */
  skip?: number;
}

function putBytes(o: Record<string, unknown>, key: string, b: Buffer): void {
  const s = b.toString('utf8');
  if (Buffer.from(s, 'utf8').equals(b)) o[key] = s;
  else o[key + 'b'] = b.toString('base64');
}

function getBytes(o: Record<string, unknown>, key: string): Buffer | undefined {
  const s = o[key];
  if (typeof s === 'string') return Buffer.from(s, 'utf8');
  const b = o[key + 'b'];
  if (typeof b === 'string') return Buffer.from(b, 'base64');
  return undefined;
}

function frame(json: unknown, chunks?: Buffer): Buffer {
  const j = Buffer.from(JSON.stringify(json), 'utf8');
  const n = chunks ? chunks.length / CHUNK_REF_BYTES : 0;
  const head = Buffer.alloc(4 + j.length + 4);
  head.writeUInt32LE(j.length, 0);
  j.copy(head, 4);
  head.writeUInt32LE(n, 4 + j.length);
  return chunks && n > 0 ? Buffer.concat([head, chunks]) : head;
}

/** Magic + header record; the magic's version byte is h.v (MANIFEST_VERSION for a new manifest). */
export function encodeHeader(h: ManifestHeader): Buffer {
  if (h.v !== MANIFEST_V1 && h.v !== MANIFEST_VERSION) throw new CairnError('CAIRN_USAGE', `cannot write a file manifest of version ${h.v}`);
  return Buffer.concat([manifestMagic(h.v), frame(h)]);
}

export function encodeEntry(e: ManifestEntry): Buffer {
  const o: Record<string, unknown> = { t: TYPE_CODE[e.type], m: e.mode, u: e.uid, g: e.gid, mt: e.mtimeNs.toString(), s: e.size };
  putBytes(o, 'p', e.path);
  if (e.target) putBytes(o, 'l', e.target);
  if (e.linked) o.x = 1;
  if (e.skip !== undefined && e.skip > 0) o.o = e.skip;
  return frame(o, e.chunks);
}

/** Checks a relative path's components: no empty, '.', '..' or NUL-containing component. */
export function isSafeRelativePath(p: Buffer): boolean {
  if (p.length === 0 || p[0] === 0x2f || p.includes(0)) return false;
  let start = 0;
  for (let i = 0; i <= p.length; i++) {
    if (i === p.length || p[i] === 0x2f) {
      const len = i - start;
      if (len === 0) return false;
      if (len === 1 && p[start] === 0x2e) return false;
      if (len === 2 && p[start] === 0x2e && p[start + 1] === 0x2e) return false;
      start = i + 1;
    }
  }
  return true;
}

function invalid(why: string): CairnError {
  return new CairnError('CAIRN_MANIFEST_INVALID', `snapshot manifest is invalid: ${why}`);
}

/**
 * Pulls exact byte counts out of a stream of buffers of any sizes. Records that lie wholly in
 * the buffered bytes are parsed without awaiting (see readRecordSync): the restore's main
 * thread spent a fifth of its allocations on three awaited reads per record.
 */
class ByteReader {
  buf: Buffer = Buffer.alloc(0);
  pos = 0;
  constructor(private readonly source: AsyncIterator<Buffer>) {}

  get buffered(): number {
    return this.buf.length - this.pos;
  }

  /**
   * Makes at least n bytes buffered. False at the end of the stream with nothing buffered;
   * throws when the stream ends inside a record.
   */
  async fill(n: number): Promise<boolean> {
    if (this.buffered >= n) return true;
    const parts = [this.buf.subarray(this.pos)];
    let have = parts[0].length;
    while (have < n) {
      const r = await this.source.next();
      if (r.done) {
        if (have === 0) return false;
        throw invalid('truncated record');
      }
      parts.push(r.value);
      have += r.value.length;
    }
    this.buf = parts.length === 2 && parts[0].length === 0 ? parts[1] : Buffer.concat(parts, have);
    this.pos = 0;
    return true;
  }

  async read(n: number): Promise<Buffer | null> {
    if (!(await this.fill(n))) return null;
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
}

function asObject(json: string): Record<string, unknown> {
  let o: unknown;
  try {
    o = JSON.parse(json);
  } catch {
    throw invalid('record is not JSON');
  }
  if (!o || typeof o !== 'object' || Array.isArray(o)) throw invalid('record is not an object');
  return o as Record<string, unknown>;
}

function num(o: Record<string, unknown>, k: string): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw invalid(`field ${k} is not a non-negative integer`);
  return v;
}

interface RawRecord {
  json: Record<string, unknown>;
  chunks: Buffer;
}

/**
 * How many buffered bytes the next record needs, as far as the buffered bytes tell: 4 (its
 * length), then through its chunk count, then all of it. Lengths are checked as soon as they
 * are buffered, so a bad one is refused before anything waits for the bytes it claims.
 */
function recordNeeds(r: ByteReader): number {
  const { buf, pos } = r;
  const have = buf.length - pos;
  if (have < 4) return 4;
  const len = buf.readUInt32LE(pos);
  if (len === 0 || len > MAX_JSON) throw invalid(`record length ${len} out of range`);
  if (have < 8 + len) return 8 + len;
  const cnt = buf.readUInt32LE(pos + 4 + len);
  if (cnt > MAX_CHUNKS_PER_ENTRY) throw invalid(`chunk count ${cnt} out of range`);
  return 8 + len + cnt * CHUNK_REF_BYTES;
}

/** The next record when it is wholly buffered, else undefined (nothing consumed). */
function readRecordSync(r: ByteReader): RawRecord | undefined {
  const total = recordNeeds(r);
  if (r.buffered < total) return undefined;
  const { buf, pos } = r;
  const len = buf.readUInt32LE(pos);
  const end = pos + total;
  const json = asObject(buf.toString('utf8', pos + 4, pos + 4 + len));
  // Copied: a slice would keep the whole manifest chunk alive while the entry lives.
  const chunks = end > pos + 8 + len ? Buffer.from(buf.subarray(pos + 8 + len, end)) : EMPTY;
  r.pos = end;
  return { json, chunks };
}

const EMPTY = Buffer.alloc(0);

/** The next record, or null at the end of the stream. */
async function readRecord(r: ByteReader): Promise<RawRecord | null> {
  for (;;) {
    const rec = readRecordSync(r);
    if (rec) return rec;
    if (!(await r.fill(recordNeeds(r)))) return null;
  }
}

export interface ManifestStream {
  header: ManifestHeader;
  entries: AsyncGenerator<ManifestEntry>;
}

/** Parses a manifest from its decrypted bytes, in order. Rejects anything malformed with CAIRN_MANIFEST_INVALID. */
export async function readManifest(source: AsyncIterable<Buffer>): Promise<ManifestStream> {
  const { r, hj, v } = await readManifestHead(source);
  if (hj.kind === 'volume') throw invalid('this snapshot holds a volume image, not a file tree; restore it with `cairn restore SNAPSHOT --target FILE_OR_DEVICE`');
  return filesManifest(r, hj, v);
}

interface ManifestHead {
  r: ByteReader;
  hj: Record<string, unknown>;
  headerChunks: number;
  /** the magic's version byte: MANIFEST_V1 or MANIFEST_VERSION (which kind allows which is checked by the caller) */
  v: number;
}

/** Magic, version and the header record, shared by every manifest kind. */
async function readManifestHead(source: AsyncIterable<Buffer>): Promise<ManifestHead> {
  const r = new ByteReader(source[Symbol.asyncIterator]());
  const magic = await r.read(MAGIC_BYTES);
  if (!magic || !magic.subarray(0, MAGIC_PREFIX.length).equals(MAGIC_PREFIX)) throw invalid('wrong magic');
  const v = magic[MAGIC_PREFIX.length];
  if (v !== MANIFEST_V1 && v !== MANIFEST_VERSION) throw invalid(`unknown manifest version ${v}`);
  const first = await readRecord(r);
  if (!first) throw invalid('no header');
  return { r, hj: first.json, headerChunks: first.chunks.length, v };
}

/** A path for an error message. */
function shown(path: Buffer): string {
  return path.toString('utf8').slice(0, 200);
}

/**
 * Checks a file or hard link entry's refs against its size (and, in version 2, its skip `o`),
 * and sets e.skip when o > 0. See the format comment at the top.
 */
function checkExtent(e: ManifestEntry, chunks: Buffer, o: unknown, v: number): void {
  let total = 0;
  for (let off = CHUNK_ID_BYTES; off < chunks.length; off += CHUNK_REF_BYTES) total += chunks.readUInt32LE(off);
  if (v === MANIFEST_V1) {
    if (o !== undefined) throw invalid(`${shown(e.path)} has a skip (field o) in a version 1 manifest`);
    if (total !== e.size) throw invalid(`chunk sizes of ${shown(e.path)} do not add up to its size`);
    return;
  }
  const skip = o === undefined ? 0 : o;
  if (typeof skip !== 'number' || !Number.isSafeInteger(skip) || skip < 0) throw invalid(`skip (field o) of ${shown(e.path)} is not a non-negative integer`);
  if (chunks.length === 0) {
    if (e.size !== 0 || skip !== 0) throw invalid(`${shown(e.path)} has no chunks but a size or a skip`);
    return;
  }
  const first = chunks.readUInt32LE(CHUNK_ID_BYTES);
  const last = chunks.readUInt32LE(chunks.length - CHUNK_REF_BYTES + CHUNK_ID_BYTES);
  if (e.size === 0) throw invalid(`${shown(e.path)} has 0 bytes but chunks`);
  if (skip >= first) throw invalid(`skip of ${shown(e.path)} is not inside its first chunk`);
  if (total - skip < e.size) throw invalid(`chunk sizes of ${shown(e.path)} do not add up to its size`);
  if (total - skip - e.size >= last) throw invalid(`last chunk of ${shown(e.path)} holds none of its bytes`);
  if (skip > 0) e.skip = skip;
}

function filesManifest(r: ByteReader, hj: Record<string, unknown>, v: number): ManifestStream {
  if (hj.kind !== 'files' || !Array.isArray(hj.roots)) throw invalid('bad header');
  if (hj.v !== v) throw invalid(`header version ${JSON.stringify(hj.v)} does not match the magic's version ${v}`);
  const header: ManifestHeader = {
    v,
    kind: 'files',
    roots: hj.roots.filter((x): x is string => typeof x === 'string'),
    host: typeof hj.host === 'string' ? hj.host : '',
    created: typeof hj.created === 'string' ? hj.created : '',
  };
  async function* entries(): AsyncGenerator<ManifestEntry> {
    for (;;) {
      const rec = readRecordSync(r) ?? (await readRecord(r));
      if (!rec) return;
      const o = rec.json;
      const type = typeof o.t === 'string' ? CODE_TYPE[o.t] : undefined;
      if (!type) throw invalid(`unknown entry type ${JSON.stringify(o.t)}`);
      const path = getBytes(o, 'p');
      if (!path || !isSafeRelativePath(path)) throw invalid(`unsafe or missing path ${JSON.stringify(path ? shown(path) : undefined)}`);
      if (typeof o.mt !== 'string' || !/^-?\d{1,30}$/.test(o.mt)) throw invalid('bad mtime');
      const e: ManifestEntry = {
        path, type, mode: num(o, 'm') & 0o7777, uid: num(o, 'u'), gid: num(o, 'g'), mtimeNs: BigInt(o.mt), size: num(o, 's'),
      };
      if (o.x === 1 && type === 'file') e.linked = true;
      const target = getBytes(o, 'l');
      if (type === 'symlink' || type === 'hardlink') {
        if (!target || target.length === 0 || target.includes(0)) throw invalid('link without a target');
        if (type === 'hardlink' && !isSafeRelativePath(target)) throw invalid('hard link target outside the snapshot');
        e.target = target;
      }
      if (type === 'file' || type === 'hardlink') {
        e.chunks = rec.chunks;
        checkExtent(e, rec.chunks, o.o, v);
      } else if (rec.chunks.length) {
        throw invalid('chunks on an entry that holds no data');
      } else if (o.o !== undefined) {
        throw invalid(`skip (field o) on ${shown(path)}, an entry that holds no data`);
      }
      yield e;
    }
  }
  return { header, entries: entries() };
}

/** Iterates the (id, size) pairs of a chunk ref list. */
export function* chunkRefs(chunks: Buffer): Generator<{ id: Buffer; size: number }> {
  for (let off = 0; off + CHUNK_REF_BYTES <= chunks.length; off += CHUNK_REF_BYTES) {
    yield { id: chunks.subarray(off, off + CHUNK_ID_BYTES), size: chunks.readUInt32LE(off + CHUNK_ID_BYTES) };
  }
}

/*
 * Volume manifests (kind 'volume'; FROZEN like kind 'files'). Same magic and record framing as
 * above, always version 1 (magic byte 1, header v 1: version 2 changed only file entries, and a
 * volume manifest of version 2 is invalid); only the records differ:
 *
 *   header  {v:1, kind:'volume', size, block_size, blocks, blocks_data, blocks_zero, blocks_changed,
 *            device, host, created[, parent]}, its JSON padded with spaces to
 *            VOLUME_HEADER_JSON_BYTES so a writer can fill in the counts after the map is written
 *   runs    the block map in block order, as runs of equal kind:
 *            {"z": n} with no refs    n all-zero blocks: holes, no chunk stored
 *            {"d": n} with n refs     n data blocks; each ref's size is that block's length
 *                                     (block_size; the last block may be shorter)
 *
 * The runs cover blocks 0 .. blocks-1 exactly once, and the header counts must match them.
 * blocks_changed counts blocks that differ from the same block of the parent snapshot (a block
 * beyond the parent's end, or with no parent, compares as a hole); it is informative only.
 */
export const VOLUME_HEADER_JSON_BYTES = 4096;
export const VOLUME_MIN_BLOCK = 64 * 1024;
/** = MAX_CHUNK_PLAINTEXT in chunk-codec: a block is one chunk. */
export const VOLUME_MAX_BLOCK = 8 * 1024 * 1024;
/** A writer's longest data run per record (36 B per ref: 147 KB records). */
export const VOLUME_DATA_RUN = 4096;
const MAX_VOLUME_DATA_RUN = 65536;
const MAX_VOLUME_BLOCKS = 2 ** 32;

export interface VolumeManifestHeader {
  v: number;
  kind: 'volume';
  size: number;
  block_size: number;
  blocks: number;
  blocks_data: number;
  blocks_zero: number;
  blocks_changed: number;
  /** the device or image path that was read */
  device: string;
  host: string;
  created: string;
  /** id of the snapshot the changed count compares with */
  parent?: string;
}

/** A run of the block map: `count` blocks from block `first`; data runs carry CHUNK_REF_BYTES refs per block. */
export type VolumeRun = { zero: true; first: number; count: number } | { zero: false; first: number; count: number; refs: Buffer };

export interface VolumeManifestStream {
  header: VolumeManifestHeader;
  runs: AsyncGenerator<VolumeRun>;
}

export type AnyManifestStream = ({ kind: 'files' } & ManifestStream) | ({ kind: 'volume' } & VolumeManifestStream);

export function isValidVolumeBlockSize(n: number): boolean {
  return Number.isSafeInteger(n) && n >= VOLUME_MIN_BLOCK && n <= VOLUME_MAX_BLOCK && (n & (n - 1)) === 0;
}

export function volumeBlockCount(size: number, blockSize: number): number {
  return Math.ceil(size / blockSize);
}

/** Length of block `index` of a volume of `size` bytes. */
export function volumeBlockLength(size: number, blockSize: number, index: number): number {
  return Math.min(blockSize, size - index * blockSize);
}

/** Magic (version 1) + the header record (h.v must be MANIFEST_V1), padded to a fixed length (see above). */
export function encodeVolumeHeader(h: VolumeManifestHeader): Buffer {
  if (h.v !== MANIFEST_V1) throw new CairnError('CAIRN_USAGE', `cannot write a volume manifest of version ${h.v}`);
  const j = Buffer.from(JSON.stringify(h), 'utf8');
  if (j.length > VOLUME_HEADER_JSON_BYTES) throw new CairnError('CAIRN_USAGE', 'volume manifest header too long (device path?)');
  const out = Buffer.alloc(MAGIC_BYTES + 4 + VOLUME_HEADER_JSON_BYTES + 4, 0x20);
  manifestMagic(MANIFEST_V1).copy(out, 0);
  out.writeUInt32LE(VOLUME_HEADER_JSON_BYTES, MAGIC_BYTES);
  j.copy(out, MAGIC_BYTES + 4);
  out.writeUInt32LE(0, out.length - 4);
  return out;
}

export function encodeVolumeZeroRun(count: number): Buffer {
  return frame({ z: count });
}

/** refs: count x CHUNK_REF_BYTES (id, u32 LE block length). */
export function encodeVolumeDataRun(refs: Buffer): Buffer {
  return frame({ d: refs.length / CHUNK_REF_BYTES }, refs);
}

/** v: the magic's version byte; a volume manifest is version 1 only. */
function volumeHeader(hj: Record<string, unknown>, headerChunks: number, v: number): VolumeManifestHeader {
  if (v !== MANIFEST_V1) throw invalid(`volume manifest of version ${v}`);
  if (hj.v !== MANIFEST_V1 || hj.kind !== 'volume' || headerChunks !== 0) throw invalid('bad volume header');
  const size = num(hj, 'size');
  const blockSize = num(hj, 'block_size');
  if (!isValidVolumeBlockSize(blockSize)) throw invalid(`block size ${blockSize} out of range`);
  const blocks = num(hj, 'blocks');
  if (blocks !== volumeBlockCount(size, blockSize) || blocks > MAX_VOLUME_BLOCKS) throw invalid('block count does not match size and block size');
  const h: VolumeManifestHeader = {
    v: MANIFEST_V1,
    kind: 'volume',
    size,
    block_size: blockSize,
    blocks,
    blocks_data: num(hj, 'blocks_data'),
    blocks_zero: num(hj, 'blocks_zero'),
    blocks_changed: num(hj, 'blocks_changed'),
    device: typeof hj.device === 'string' ? hj.device : '',
    host: typeof hj.host === 'string' ? hj.host : '',
    created: typeof hj.created === 'string' ? hj.created : '',
  };
  if (typeof hj.parent === 'string') h.parent = hj.parent;
  if (h.blocks_data + h.blocks_zero !== blocks || h.blocks_changed > blocks) throw invalid('block counts do not add up');
  return h;
}

function volumeRuns(r: ByteReader, h: VolumeManifestHeader): AsyncGenerator<VolumeRun> {
  return (async function* runs(): AsyncGenerator<VolumeRun> {
    let next = 0;
    let zero = 0;
    for (;;) {
      const rec = await readRecord(r);
      if (!rec) break;
      if (next >= h.blocks) throw invalid('records after the end of the block map');
      const o = rec.json;
      const keys = Object.keys(o);
      if (keys.length !== 1 || (keys[0] !== 'z' && keys[0] !== 'd')) throw invalid('unknown block map record');
      const count = num(o, keys[0]);
      if (count === 0 || count > h.blocks - next) throw invalid(`run of ${count} blocks at block ${next} out of range`);
      if (keys[0] === 'z') {
        if (rec.chunks.length) throw invalid('chunks on a zero run');
        zero += count;
        yield { zero: true, first: next, count };
      } else {
        if (count > MAX_VOLUME_DATA_RUN || rec.chunks.length !== count * CHUNK_REF_BYTES) throw invalid('data run does not carry one ref per block');
        for (let i = 0; i < count; i++) {
          if (rec.chunks.readUInt32LE(i * CHUNK_REF_BYTES + CHUNK_ID_BYTES) !== volumeBlockLength(h.size, h.block_size, next + i)) {
            throw invalid(`block ${next + i} has a ref of the wrong size`);
          }
        }
        yield { zero: false, first: next, count, refs: rec.chunks };
      }
      next += count;
    }
    if (next !== h.blocks) throw invalid(`block map ends at block ${next} of ${h.blocks}`);
    if (zero !== h.blocks_zero) throw invalid('zero block count does not match the header');
  })();
}

/** Parses a volume manifest. Rejects anything malformed (or a file manifest) with CAIRN_MANIFEST_INVALID. */
export async function readVolumeManifest(source: AsyncIterable<Buffer>): Promise<VolumeManifestStream> {
  const { r, hj, headerChunks, v } = await readManifestHead(source);
  const header = volumeHeader(hj, headerChunks, v);
  return { header, runs: volumeRuns(r, header) };
}

/** Parses a manifest of either kind; callers dispatch on `kind`. */
export async function readAnyManifest(source: AsyncIterable<Buffer>): Promise<AnyManifestStream> {
  const { r, hj, headerChunks, v } = await readManifestHead(source);
  if (hj.kind === 'volume') {
    const header = volumeHeader(hj, headerChunks, v);
    return { kind: 'volume', header, runs: volumeRuns(r, header) };
  }
  return { kind: 'files', ...filesManifest(r, hj, v) };
}
