import fs from 'node:fs';
import { CHUNK_ID_BYTES } from '../../core/chunk-id';

/**
 * Per-snapshot reference lists: sorted, unique 32-byte chunk ids, one file per snapshot.
 * Helpers here read them in bounded memory and merge many of them into one sorted set.
 */
const READ_BYTES = 64 * 1024;

/** Streams the ids of a sorted refs file, READ_BYTES at a time. */
export class RefsReader {
  private fd: number;
  private buf = Buffer.allocUnsafe(READ_BYTES);
  private len = 0;
  private pos = 0;
  private eof = false;

  constructor(file: string) {
    this.fd = fs.openSync(file, 'r');
  }

  /** The next id (a view valid until the next call), or null at the end. */
  next(): Buffer | null {
    if (this.len - this.pos < CHUNK_ID_BYTES) {
      if (this.eof) return null;
      const rest = this.len - this.pos;
      this.buf.copy(this.buf, 0, this.pos, this.len);
      const n = fs.readSync(this.fd, this.buf, rest, READ_BYTES - rest, null);
      this.len = rest + n;
      this.pos = 0;
      if (n === 0) this.eof = true;
      if (this.len < CHUNK_ID_BYTES) return null;
    }
    const id = this.buf.subarray(this.pos, this.pos + CHUNK_ID_BYTES);
    this.pos += CHUNK_ID_BYTES;
    return id;
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

/**
 * Merges sorted refs files into one sorted unique Buffer (32 bytes per distinct id): the
 * mark set of GC. A binary heap over one reader per file keeps memory at 64 KiB per file
 * plus the result. Files are merged in groups so no more than `fanIn` are open at once.
 */
export function mergeRefs(files: string[], fanIn = 256): Buffer {
  if (files.length === 0) return Buffer.alloc(0);
  if (files.length <= fanIn) return mergeGroup(files.map((f) => new RefsReader(f)));
  const partials: Buffer[] = [];
  for (let i = 0; i < files.length; i += fanIn) partials.push(mergeRefs(files.slice(i, i + fanIn), fanIn));
  return mergeBuffers(partials);
}

interface Source {
  next(): Buffer | null;
  close(): void;
}

class BufferSource implements Source {
  private pos = 0;
  constructor(private readonly b: Buffer) {}
  next(): Buffer | null {
    if (this.pos + CHUNK_ID_BYTES > this.b.length) return null;
    const id = this.b.subarray(this.pos, this.pos + CHUNK_ID_BYTES);
    this.pos += CHUNK_ID_BYTES;
    return id;
  }
  close(): void {}
}

function mergeBuffers(bufs: Buffer[]): Buffer {
  return mergeGroup(bufs.map((b) => new BufferSource(b)));
}

function mergeGroup(sources: Source[]): Buffer {
  const heap: { id: Buffer; src: Source }[] = [];
  const less = (a: number, b: number): boolean => Buffer.compare(heap[a].id, heap[b].id) < 0;
  const swap = (a: number, b: number): void => {
    const t = heap[a];
    heap[a] = heap[b];
    heap[b] = t;
  };
  const up = (i: number): void => {
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(i, p)) break;
      swap(i, p);
      i = p;
    }
  };
  const down = (i: number): void => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heap.length && less(l, m)) m = l;
      if (r < heap.length && less(r, m)) m = r;
      if (m === i) break;
      swap(i, m);
      i = m;
    }
  };
  for (const src of sources) {
    const id = src.next();
    if (id) {
      heap.push({ id: Buffer.from(id), src });
      up(heap.length - 1);
    } else src.close();
  }
  let out = Buffer.allocUnsafe(CHUNK_ID_BYTES * 65536);
  let n = 0;
  let last: Buffer | null = null;
  while (heap.length) {
    const top = heap[0];
    if (!last || !last.equals(top.id)) {
      if ((n + 1) * CHUNK_ID_BYTES > out.length) {
        const bigger = Buffer.allocUnsafe(out.length * 2);
        out.copy(bigger, 0, 0, n * CHUNK_ID_BYTES);
        out = bigger;
      }
      top.id.copy(out, n * CHUNK_ID_BYTES);
      last = out.subarray(n * CHUNK_ID_BYTES, (n + 1) * CHUNK_ID_BYTES);
      n++;
    }
    const nx = top.src.next();
    if (nx) {
      nx.copy(top.id);
      down(0);
    } else {
      top.src.close();
      const end = heap.pop()!;
      if (heap.length) {
        heap[0] = end;
        down(0);
      }
    }
  }
  return Buffer.from(out.subarray(0, n * CHUNK_ID_BYTES));
}

/** Binary search in a sorted id buffer. */
export function sortedContains(sorted: Buffer, id: Buffer): boolean {
  let lo = 0;
  let hi = sorted.length / CHUNK_ID_BYTES - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const c = Buffer.compare(sorted.subarray(mid * CHUNK_ID_BYTES, (mid + 1) * CHUNK_ID_BYTES), id);
    if (c === 0) return true;
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}
