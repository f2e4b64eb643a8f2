/**
 * A few large buffers kept for reuse: cairnd's batched fetch answers (up to FETCH_ANSWER_BYTES
 * each, about four on the wire during a restore).
 *
 * Allocated per answer and left to V8 to collect, dead answers piled up between collections
 * and glibc served the next ones from a heap that grew around them: cairnd's RSS rose 30-40 MB
 * during a 1 GB restore. Forcing mmap for large allocations (MALLOC_MMAP_THRESHOLD_) bounded
 * it but cost 0.15-0.25 s more CPU per restore in page faults. Reused buffers cost neither.
 *
 * `take` returns a view of exactly `n` bytes; `give` takes it back once nothing reads it (for
 * an HTTP answer: after 'finish', when every write's callback has run). Views larger than
 * `size` are plain allocations and are not kept. The pool empties itself after `idleMs`
 * without use, so an idle box holds none of it.
 */
export class BufferPool {
  private readonly free: Buffer[] = [];
  /** memory this pool allocated (anything else given back is ignored) */
  private readonly own = new WeakSet<ArrayBufferLike>();
  private timer: NodeJS.Timeout | undefined;
  private lastUse = 0;

  constructor(
    readonly size: number,
    readonly max: number,
    private readonly idleMs = 10_000,
  ) {}

  take(n: number): Buffer {
    this.lastUse = Date.now();
    if (n > this.size) return Buffer.allocUnsafeSlow(n);
    let b = this.free.pop();
    if (!b) {
      b = Buffer.allocUnsafeSlow(this.size);
      this.own.add(b.buffer);
    }
    return b.subarray(0, n);
  }

  give(view: Buffer): void {
    if (!this.own.has(view.buffer) || this.free.length >= this.max) return;
    if (this.free.some((b) => b.buffer === view.buffer)) return; // given back twice
    this.free.push(Buffer.from(view.buffer, 0, this.size));
    this.lastUse = Date.now();
    if (!this.timer) {
      this.timer = setInterval(() => {
        if (Date.now() - this.lastUse < this.idleMs) return;
        this.free.length = 0;
        clearInterval(this.timer);
        this.timer = undefined;
      }, this.idleMs);
      this.timer.unref();
    }
  }

  /** buffers kept for reuse now */
  get kept(): number {
    return this.free.length;
  }
}
