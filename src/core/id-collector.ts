import { CHUNK_ID_BYTES } from './chunk-id';

/** Appends 32-byte chunk ids into one growing buffer (what a commit sends as its reference list). */
export class IdCollector {
  private buf = Buffer.allocUnsafe(CHUNK_ID_BYTES * 4096);
  private len = 0;

  add(id: Uint8Array): void {
    if (this.len + CHUNK_ID_BYTES > this.buf.length) {
      const next = Buffer.allocUnsafe(this.buf.length * 2);
      this.buf.copy(next, 0, 0, this.len);
      this.buf = next;
    }
    this.buf.set(id, this.len);
    this.len += CHUNK_ID_BYTES;
  }

  get result(): Buffer {
    return this.buf.subarray(0, this.len);
  }
}
