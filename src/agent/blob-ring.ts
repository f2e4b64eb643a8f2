/**
 * A ring of shared memory that a chunk worker seals blobs into and the main thread uploads
 * them from.
 *
 * Before this, every sealed blob was a fresh buffer allocated on a worker thread and freed on
 * the main thread after its upload. glibc served those from the worker's malloc arena, which
 * grew far beyond the bytes live at any moment (measured on a 1 GB first backup: the agent's
 * peak RSS was about 250 MB while under 40 MB of blobs were ever in flight). With the ring, a
 * backup's blobs live in one fixed region per worker.
 *
 * The worker owns `head` (where the next blob goes); the main thread frees blobs in any order
 * and publishes `tail`, the start of the oldest blob it still holds (or the end of the newest
 * one it has seen, when it holds none). The bytes in use are [tail, head), circularly; the
 * number of blobs outstanding tells an empty ring from a full one. A blob that does not fit
 * in a contiguous run waits (Atomics.wait) until the main thread frees some; one larger than
 * half the ring is not placed in it at all (the caller allocates it the old way).
 */
const TAIL = 0;
const OUTSTANDING = 1;
const SEQ = 2;

export interface RingShared {
  data: SharedArrayBuffer;
  control: SharedArrayBuffer;
}

export function createRing(capacity: number): RingShared {
  return { data: new SharedArrayBuffer(capacity), control: new SharedArrayBuffer(4 * 4) };
}

/** Worker side: places blobs. */
export class RingWriter {
  private readonly ctl: Int32Array;
  private readonly cap: number;
  private head = 0;

  constructor(private readonly shared: RingShared) {
    this.ctl = new Int32Array(shared.control);
    this.cap = shared.data.byteLength;
  }

  /**
   * A buffer of `n` bytes in the ring, or undefined when a blob of that size does not belong
   * in it. `beforeWait` runs before blocking (the worker flushes its outbox there, so the
   * main thread can upload, and so free, what it already sealed).
   */
  take(n: number, beforeWait: () => void): Buffer | undefined {
    if (n <= 0 || n > this.cap / 2) return undefined;
    for (;;) {
      const seq = Atomics.load(this.ctl, SEQ);
      const off = this.place(n);
      if (off !== undefined) {
        Atomics.add(this.ctl, OUTSTANDING, 1);
        this.head = off + n;
        return Buffer.from(this.shared.data, off, n);
      }
      beforeWait();
      Atomics.wait(this.ctl, SEQ, seq, 100);
    }
  }

  private place(n: number): number | undefined {
    if (Atomics.load(this.ctl, OUTSTANDING) === 0) {
      // Nothing is held: start over at 0. The main thread stored its last tail before it gave
      // up its last blob, and stores none until it sees the next one, so this store is safe.
      Atomics.store(this.ctl, TAIL, 0);
      this.head = 0;
      return 0;
    }
    const tail = Atomics.load(this.ctl, TAIL);
    if (this.head > tail) {
      // in use: [tail, head); free: [head, cap) and [0, tail)
      if (this.cap - this.head >= n) return this.head;
      if (tail >= n) return 0;
      return undefined;
    }
    // in use wraps: [tail, cap) and [0, head); free: [head, tail)
    return tail - this.head >= n ? this.head : undefined;
  }
}

/** Main-thread side: learns blobs in the order the worker placed them, frees them in any order. */
export class RingReader {
  private readonly ctl: Int32Array;
  private readonly live: { off: number; end: number; freed: boolean }[] = [];
  private first = 0;
  private lastEnd = 0;

  constructor(readonly shared: RingShared) {
    this.ctl = new Int32Array(shared.control);
  }

  /** A blob the worker announced (in placement order); returns its handle for free(). */
  seen(off: number, length: number): { buf: Buffer; slot: { off: number; end: number; freed: boolean } } {
    const slot = { off, end: off + length, freed: false };
    this.live.push(slot);
    this.lastEnd = slot.end;
    return { buf: Buffer.from(this.shared.data, off, length), slot };
  }

  free(slot: { off: number; end: number; freed: boolean }): void {
    if (slot.freed) return;
    slot.freed = true;
    while (this.first < this.live.length && this.live[this.first].freed) this.first++;
    if (this.first > 1024 && this.first * 2 > this.live.length) {
      this.live.splice(0, this.first);
      this.first = 0;
    }
    const tail = this.first < this.live.length ? this.live[this.first].off : this.lastEnd;
    Atomics.store(this.ctl, TAIL, tail);
    Atomics.sub(this.ctl, OUTSTANDING, 1);
    Atomics.add(this.ctl, SEQ, 1);
    Atomics.notify(this.ctl, SEQ);
  }
}
