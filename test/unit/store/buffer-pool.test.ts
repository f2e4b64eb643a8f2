import { expect } from 'chai';
import { BufferPool } from '../../../src/appliance/api/buffer-pool';

describe('buffer pool (cairnd fetch answers)', () => {
  it('hands out views of the asked size and reuses buffers given back', () => {
    const pool = new BufferPool(1024, 2);
    const a = pool.take(100);
    expect(a.length).to.equal(100);
    expect(a.buffer.byteLength).to.equal(1024);
    a.fill(7);
    pool.give(a);
    expect(pool.kept).to.equal(1);
    const b = pool.take(1024);
    expect(b.buffer, 'the same memory again').to.equal(a.buffer);
    expect(b.length).to.equal(1024);
    expect(pool.kept).to.equal(0);
  });

  it('does not keep oversized buffers, foreign views, or more than its maximum', () => {
    const pool = new BufferPool(1024, 2);
    const big = pool.take(4096);
    expect(big.length).to.equal(4096);
    pool.give(big);
    expect(pool.kept, 'oversized').to.equal(0);
    pool.give(Buffer.alloc(1024));
    pool.give(Buffer.allocUnsafeSlow(2048).subarray(0, 1024));
    expect(pool.kept, 'not from the pool').to.equal(0);
    const views = [pool.take(10), pool.take(20), pool.take(30)];
    expect(new Set(views.map((v) => v.buffer)).size, 'three distinct buffers while all are out').to.equal(3);
    for (const v of views) pool.give(v);
    expect(pool.kept).to.equal(2);
    const again = new BufferPool(1024, 4);
    const once = again.take(8);
    again.give(once);
    again.give(once);
    expect(again.kept, 'a view given back twice is kept once').to.equal(1);
  });

  it('lets go of its buffers once idle', async () => {
    const pool = new BufferPool(1024, 4, 50);
    pool.give(pool.take(10));
    expect(pool.kept).to.equal(1);
    await new Promise((r) => setTimeout(r, 200));
    expect(pool.kept).to.equal(0);
    pool.give(pool.take(10));
    expect(pool.kept, 'and keeps again after').to.equal(1);
  });
});
