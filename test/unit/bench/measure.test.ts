import { expect } from 'chai';
import { median, parseGnuTimeMaxRss, parseVmHwm } from '../../bench/measure';
import { selfTimes, CpuProfile } from '../../bench/cpu-profile';

describe('bench helpers', () => {
  it('parses peak RSS from GNU time and /proc status', () => {
    expect(parseGnuTimeMaxRss('\tUser time (seconds): 0.01\n\tMaximum resident set size (kbytes): 2048\n')).to.equal(2048 * 1024);
    expect(parseGnuTimeMaxRss('nothing here')).to.equal(0);
    expect(parseVmHwm('Name:\tnode\nVmPeak:\t  900 kB\nVmHWM:\t   123456 kB\nVmRSS:\t 1 kB\n')).to.equal(123456 * 1024);
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
