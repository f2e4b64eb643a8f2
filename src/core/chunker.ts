import { hkdfSync } from 'node:crypto';
import { GEAR_WASM_BASE64 } from './gear-wasm';

/**
 * FastCDC-style content-defined chunking with a gear rolling hash and normalized chunking
 * (a harder mask before the target size, an easier one after it).
 *
 * Contract: the cut point of a chunk depends only on the bytes from its start to the cut,
 * never on how the input was split into reads, so boundaries are deterministic per key and
 * resynchronise shortly after an insertion or deletion.
 *
 * The gear table is derived from a secret key: without it, chunk sizes do not reveal
 * which known content a file holds.
 */
export interface ChunkerParams {
  minSize: number;
  avgSize: number;
  maxSize: number;
}

/**
 * Bounds chosen by measurement (test/bench/chunker-bench): min = avg/4 and max = 4*avg keep the
 * mean close to 1 MiB on random data while leaving little probability mass at the max cut.
 */
export const DEFAULT_CHUNKER: ChunkerParams = { minSize: 256 * 1024, avgSize: 1024 * 1024, maxSize: 4 * 1024 * 1024 };

export function gearTable(gearKey: Buffer): Int32Array {
  const bytes = Buffer.from(hkdfSync('sha256', gearKey, Buffer.alloc(0), 'cairn/v1/gear-table', 1024));
  const table = new Int32Array(256);
  for (let i = 0; i < 256; i++) table[i] = bytes.readInt32LE(i * 4);
  return table;
}

/** A mask with the top `bits` bits of a 32-bit word set (the high bits of a gear hash mix the most bytes). */
function topMask(bits: number): number {
  return bits >= 32 ? -1 : ~((1 << (32 - bits)) - 1) | 0;
}

/** The harder mask (before the target size) and the easier one (after it). */
function masksFor(avgSize: number): [number, number] {
  const bits = Math.round(Math.log2(avgSize));
  return [topMask(bits + 2), topMask(bits - 2)];
}

function checkParams({ minSize, avgSize, maxSize }: ChunkerParams): void {
  if (!(minSize > 0 && minSize < avgSize && avgSize < maxSize)) {
    throw new Error(`invalid chunker bounds ${minSize}/${avgSize}/${maxSize}`);
  }
}

export class Chunker {
  readonly params: ChunkerParams;
  private readonly gear: Int32Array;
  private readonly maskS: number;
  private readonly maskL: number;

  constructor(gearKey: Buffer, params: ChunkerParams = DEFAULT_CHUNKER) {
    checkParams(params);
    this.params = params;
    this.gear = gearTable(gearKey);
    [this.maskS, this.maskL] = masksFor(params.avgSize);
  }

  /**
   * Length of the chunk that starts at `start` within buf[start, end). Returns 0 when no cut
   * can be decided yet (fewer than maxSize bytes available and not at end of input): the
   * caller must supply more bytes, keeping those from `start` on.
   */
  next(buf: Uint8Array, start: number, end: number, eof: boolean): number {
    const n = end - start;
    const { minSize, avgSize, maxSize } = this.params;
    if (n <= minSize) return eof ? n : n >= maxSize ? maxSize : 0;
    const gear = this.gear;
    const maskS = this.maskS;
    const maskL = this.maskL;
    let h = 0;
    let i = start + minSize;
    const normal = start + Math.min(avgSize, n);
    const limit = start + Math.min(maxSize, n);
    for (; i < normal; i++) {
      h = ((h << 1) + gear[buf[i]]) | 0;
      if ((h & maskS) === 0) return i - start + 1;
    }
    for (; i < limit; i++) {
      h = ((h << 1) + gear[buf[i]]) | 0;
      if ((h & maskL) === 0) return i - start + 1;
    }
    if (n >= maxSize) return maxSize;
    return eof ? n : 0;
  }

  /** Cuts a whole in-memory buffer; returns chunk lengths. */
  split(data: Uint8Array): number[] {
    const lengths: number[] = [];
    let pos = 0;
    while (pos < data.length) {
      const len = this.next(data, pos, data.length, true);
      lengths.push(len);
      pos += len;
    }
    return lengths;
  }
}

const GEAR_TABLE_BYTES = 1024;
const WASM_PAGE = 65536;

/** The little of WebAssembly's API used here (the project's lib settings do not declare it). */
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
}
const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
let gearModule: object | undefined;

/**
 * The same chunker with its gear loop in WebAssembly (src/core/gear.wat), over a buffer that
 * lives in the module's memory: callers read file data straight into `buffer`, and cut points
 * come out identical to Chunker's (unit-tested). Profiled on a 1 GB first backup, the JS loop
 * was the largest single cost of the agent's workers; this one runs 4-5x as fast.
 */
export class WasmChunker {
  readonly params: ChunkerParams;
  /** where callers place the bytes to cut (a view of the module's memory) */
  readonly buffer: Buffer;
  private readonly cutAt: (p: number, n: number, min: number, avg: number, max: number, maskS: number, maskL: number) => number;
  private readonly maskS: number;
  private readonly maskL: number;

  constructor(gearKey: Buffer, bufferBytes: number, params: ChunkerParams = DEFAULT_CHUNKER) {
    checkParams(params);
    this.params = params;
    [this.maskS, this.maskL] = masksFor(params.avgSize);
    gearModule ??= new wasm.Module(Buffer.from(GEAR_WASM_BASE64, 'base64'));
    const instance = new wasm.Instance(gearModule, {});
    const memory = instance.exports.memory as WasmMemory;
    const pages = Math.ceil((GEAR_TABLE_BYTES + bufferBytes) / WASM_PAGE);
    if (pages > memory.buffer.byteLength / WASM_PAGE) memory.grow(pages - memory.buffer.byteLength / WASM_PAGE);
    new Int32Array(memory.buffer, 0, 256).set(gearTable(gearKey));
    this.buffer = Buffer.from(memory.buffer, GEAR_TABLE_BYTES, bufferBytes);
    this.cutAt = instance.exports.cut as WasmChunker['cutAt'];
  }

  /** Chunker.next over `buffer`: the length of the chunk at `start` within [start, end), or 0 when more bytes are needed. */
  next(start: number, end: number, eof: boolean): number {
    const n = end - start;
    const { minSize, avgSize, maxSize } = this.params;
    if (n <= minSize) return eof ? n : n >= maxSize ? maxSize : 0;
    const len = this.cutAt(GEAR_TABLE_BYTES + start, n, minSize, avgSize, maxSize, this.maskS, this.maskL);
    if (len > 0) return len;
    if (n >= maxSize) return maxSize;
    return eof ? n : 0;
  }
}
