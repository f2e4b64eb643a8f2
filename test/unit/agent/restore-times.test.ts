import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { nsToSeconds } from '../../../src/agent/restore';
import { compareTrees } from '../../../scripts/lib/tree';

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

  it('tests compare restored times exactly, also in the last nanoseconds of a millisecond', () => {
    // mtimeMs is a double and rounds ...123.99995 ms up to ...124 at today's epoch; the
    // restored copy (whole microseconds) reads ...123.999. Trees compared on the doubles
    // reported such files as changed; compareTrees reads the integer nanoseconds.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-times-'));
    try {
      const a = path.join(dir, 'a');
      const b = path.join(dir, 'b');
      for (const d of [a, b]) {
        fs.mkdirSync(d);
        fs.writeFileSync(path.join(d, 'f'), 'same');
      }
      execFileSync('touch', ['-m', '-d', '@1764194400.123999950', path.join(a, 'f')]);
      const ns = fs.statSync(path.join(a, 'f'), { bigint: true }).mtimeNs;
      expect(ns % 1_000_000_000n).to.equal(123_999_950n);
      const t = nsToSeconds(ns);
      fs.utimesSync(path.join(b, 'f'), t, t);
      expect(Math.floor(fs.statSync(path.join(a, 'f')).mtimeMs), 'the double rounds up').to.not.equal(Math.floor(fs.statSync(path.join(b, 'f')).mtimeMs));
      expect(compareTrees(a, b)).to.deep.equal([]);
      // one microsecond off is a real difference
      const off = nsToSeconds(ns - 1000n);
      fs.utimesSync(path.join(b, 'f'), off, off);
      expect(compareTrees(a, b)).to.deep.equal(['mtime differs: f']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
