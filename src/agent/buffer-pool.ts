/**
 * Reusable ArrayBuffers for chunk-sized blobs that cross threads.
 *
 * A restore used to allocate one buffer per sealed chunk on the main thread and free it on a
 * worker thread after the write. glibc served those (0.3-4 MiB each, after its mmap threshold
 * had risen) from the main arena, which fragmented: measured on a 1 GB restore, the main
 * arena held 70-86 MB while the buffers live at any moment were under 20 MB. Buffers taken
 * from here travel to a worker and come back with its acknowledgement, so a restore in its
 * steady state allocates none.
 *
 * Sizes are rounded up to a quarter power of two (at most 25% slack). The pool keeps at most
 * `capBytes` of free buffers and lets the rest go.
 */
export class BufferPool {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private readonly mine = new WeakSet<ArrayBuffer>();
  private freeBytes = 0;

  constructor(private readonly capBytes: number) {}

  static sizeClass(n: number): number {
    if (n <= 64 * 1024) return 64 * 1024;
    const top = 2 ** Math.floor(Math.log2(n));
    const step = top / 4;
    return Math.ceil(n / step) * step;
  }

  /** A buffer of exactly `n` bytes (uninitialised if reused) at offset 0 of a pooled ArrayBuffer. */
  take(n: number): Buffer {
    const size = BufferPool.sizeClass(n);
    const list = this.free.get(size);
    let ab = list?.pop();
    if (ab) this.freeBytes -= size;
    else ab = new ArrayBuffer(size);
    this.mine.add(ab);
    return Buffer.from(ab, 0, n);
  }

  /** Whether `ab` came from this pool (and may therefore be transferred and given back). */
  owns(ab: ArrayBufferLike): boolean {
    return ab instanceof ArrayBuffer && this.mine.has(ab);
  }

  /**
   * Takes back a buffer that came back from a worker (a transferred ArrayBuffer arrives as a
   * new object, so any buffer of a class size is accepted); dropped when the pool is full.
   */
  give(ab: ArrayBuffer): void {
    if (ab.byteLength === 0 || BufferPool.sizeClass(ab.byteLength) !== ab.byteLength) return;
    if (this.freeBytes + ab.byteLength > this.capBytes) return;
    let list = this.free.get(ab.byteLength);
    if (!list) this.free.set(ab.byteLength, (list = []));
    list.push(ab);
    this.freeBytes += ab.byteLength;
  }
}
