import { expect } from 'chai';
import { median, parseGnuTimeCpu, parseGnuTimeMaxRss, parseStatTicks, parseVmHwm, readCpuSeconds } from '../../bench/measure';
import { selfTimes, CpuProfile } from '../../bench/cpu-profile';

describe('bench helpers', () => {
  it('parses peak RSS from GNU time and /proc status', () => {
    expect(parseGnuTimeMaxRss('\tUser time (seconds): 0.01\n\tMaximum resident set size (kbytes): 2048\n')).to.equal(2048 * 1024);
    expect(parseGnuTimeMaxRss('nothing here')).to.equal(0);
    expect(parseVmHwm('Name:\tnode\nVmPeak:\t  900 kB\nVmHWM:\t   123456 kB\nVmRSS:\t 1 kB\n')).to.equal(123456 * 1024);
  });

  it('parses CPU time from GNU time and /proc stat, and reads it for a live process', () => {
    expect(parseGnuTimeCpu('\tUser time (seconds): 1.50\n\tSystem time (seconds): 0.25\n')).to.equal(1.75);
    expect(parseGnuTimeCpu('\tUser time (seconds): 1.50\n')).to.be.NaN;
    // a command name with spaces and a parenthesis; utime 250, stime 31 ticks
    expect(parseStatTicks('4242 (we ird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 1 0 5 0 0')).to.equal(281);
    expect(parseStatTicks('garbage')).to.be.NaN;
    const before = readCpuSeconds(process.pid);
    const until = Date.now() + 150;
    let x = 0;
    while (Date.now() < until) x += Math.sqrt(x + 1);
    expect(x).to.be.greaterThan(0);
    expect(readCpuSeconds(process.pid) - before).to.be.greaterThan(0.05);
    expect(readCpuSeconds(2 ** 22 + 12345)).to.be.NaN;
  });

  it('takes medians of odd and even counts, ignoring NaN', () => {
    expect(median([3, 1, 2])).to.equal(2);
    expect(median([4, 1, 2, 3])).to.equal(2.5);
    expect(median([NaN, 5])).to.equal(5);
  });

  it('sums self time per function and leaves idle out of the busy share', () => {
    const frame = (functionName: string) => ({ functionName, url: 'file:///x/dist/src/a.js', lineNumber: 0, columnNumber: 0 });
    const p: CpuProfile = {
      nodes: [{ id: 1, callFrame: frame('(root)') }, { id: 2, callFrame: frame('hot') }, { id: 3, callFrame: frame('(idle)') }],
      samples: [2, 2, 3, 2],
      timeDeltas: [1000, 1000, 5000, 2000],
      startTime: 0,
      endTime: 9000,
    };
    const s = selfTimes(p);
    expect(s.busyMs).to.equal(4);
    expect(s.all[0]).to.include({ name: '(idle)', ms: 5 });
    expect(s.all[1]).to.include({ name: 'hot', ms: 4, share: 1, where: 'src/a.js:1' });
  });
});
