import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { nsToSeconds } from '../../../src/agent/restore';

describe('agent/restore: file times', () => {
  it('sets every microsecond exactly, including millisecond-aligned times from coarse clocks', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-times-'));
    const f = path.join(dir, 'f');
    fs.writeFileSync(f, 'x');
    const wrong: string[] = [];
    try {
      for (let i = 0; i < 3000; i++) {
        // Kernels stamp files from a coarse clock: whole milliseconds are common. Mix in odd microseconds too.
        const ns = (1764135000n + BigInt(i)) * 1_000_000_000n + BigInt(i % 1000) * 1_000_000n + (i % 3 === 0 ? BigInt(i * 7919 % 1000) * 1000n : 0n);
        const t = nsToSeconds(ns);
        fs.utimesSync(f, t, t);
        const back = fs.statSync(f, { bigint: true }).mtimeNs;
        if (back / 1000n !== ns / 1000n) wrong.push(`${ns} -> ${back}`);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    expect(wrong.slice(0, 5)).to.deep.equal([]);
  });
});
