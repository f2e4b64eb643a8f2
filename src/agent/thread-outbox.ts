import type { Worker } from 'node:worker_threads';

/**
 * Messages for worker threads, posted together at the end of the current turn of the event
 * loop: one postMessage per worker carrying an array, not one per item. A message between
 * threads costs tens of microseconds, which per chunk and per file dominated trees of small
 * files (profiled). Workers receive arrays.
 */
export class ThreadOutbox<T> {
  private boxes: { items: T[]; transfer: ArrayBuffer[] }[];
  private scheduled = false;

  constructor(private readonly workers: Worker[]) {
    this.boxes = workers.map(() => ({ items: [], transfer: [] }));
  }

  /**
   * Posts this worker's queued items and `item` now, in one message. For a job worth far more
   * than a message: a walk that awaits only settled promises never ends its turn, and bundles
   * of small files waited in the box until the walk blocked (the workers idle meanwhile).
   */
  postNow(worker: number, item: T): void {
    const box = this.boxes[worker];
    box.items.push(item);
    this.workers[worker].postMessage(box.items, box.transfer);
    this.boxes[worker] = { items: [], transfer: [] };
  }

  post(worker: number, item: T, transfer?: ArrayBuffer[]): void {
    const box = this.boxes[worker];
    box.items.push(item);
    if (transfer) box.transfer.push(...transfer);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.boxes.forEach((b, i) => {
        if (b.items.length) this.workers[i].postMessage(b.items, b.transfer);
      });
      this.boxes = this.workers.map(() => ({ items: [], transfer: [] }));
    });
  }
}
