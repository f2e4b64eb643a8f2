import { hkdfSync } from 'node:crypto';

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

export class Chunker {
  readonly params: ChunkerParams;
  private readonly gear: Int32Array;
  private readonly maskS: number;
  private readonly maskL: number;

  constructor(gearKey: Buffer, params: ChunkerParams = DEFAULT_CHUNKER) {
    const { minSize, avgSize, maxSize } = params;
    if (!(minSize > 0 && minSize < avgSize && avgSize < maxSize)) {
      throw new Error(`invalid chunker bounds ${minSize}/${avgSize}/${maxSize}`);
    }
    this.params = params;
    this.gear = gearTable(gearKey);
    const bits = Math.round(Math.log2(avgSize));
    this.maskS = topMask(bits + 2);
    this.maskL = topMask(bits - 2);
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
