import { expect } from 'chai';
import { describeSpec, nextCron, nextRegular, parseCron, scheduleSpecFrom } from '../../../src/agent/service/schedule-spec';

const at = (y: number, mo: number, d: number, h = 0, mi = 0): number => new Date(y, mo - 1, d, h, mi).getTime();

describe('agent service: schedule specs', () => {
  it('--every: first run when added, then one interval after each run started', () => {
    const spec = scheduleSpecFrom('1h', undefined);
    expect(spec).to.deep.equal({ every_ms: 3_600_000 });
    expect(nextRegular(spec, undefined, 1000)).to.equal(1000);
    expect(nextRegular(spec, 5000, 1000)).to.equal(5000 + 3_600_000);
    expect(describeSpec(spec)).to.equal('every 1h');
    expect(describeSpec({ every_ms: 90 * 60_000 })).to.equal('every 90m');
  });

  it('rejects both or neither of --every and --cron, and intervals under a minute', () => {
    expect(() => scheduleSpecFrom(undefined, undefined)).to.throw(/exactly one/);
    expect(() => scheduleSpecFrom('1h', '* * * * *')).to.throw(/exactly one/);
    expect(() => scheduleSpecFrom('10s', undefined)).to.throw(/too often/);
    expect(() => scheduleSpecFrom('soon', undefined)).to.throw(/not a duration/);
  });

  it('cron: minutes, hours, steps, lists, ranges and names', () => {
    const mon = at(2025, 1, 6, 10, 7); // Monday 10:07
    expect(nextCron('*/15 * * * *', mon)).to.equal(at(2025, 1, 6, 10, 15));
    expect(nextCron('30 2 * * *', mon)).to.equal(at(2025, 1, 7, 2, 30));
    expect(nextCron('0 9-17/4 * * *', mon)).to.equal(at(2025, 1, 6, 13, 0));
    expect(nextCron('0 0 * * sat,sun', mon)).to.equal(at(2025, 1, 11));
    expect(nextCron('0 0 * * 7', mon)).to.equal(at(2025, 1, 12)); // 7 is Sunday too
    expect(nextCron('0 0 1 mar *', mon)).to.equal(at(2025, 3, 1));
    expect(nextCron('@weekly', mon)).to.equal(at(2025, 1, 12));
    expect(nextCron('@hourly', mon)).to.equal(at(2025, 1, 6, 11, 0));
    expect(nextCron('0 0 29 2 *', mon)).to.equal(at(2028, 2, 29));
    // strictly after: a time that matches exactly is not "next"
    expect(nextCron('7 10 * * *', mon)).to.equal(at(2025, 1, 7, 10, 7));
  });

  it('cron: with both day fields restricted, either one matches (as in Vixie cron)', () => {
    // the 13th, or any Friday
    expect(nextCron('0 0 13 * fri', at(2025, 1, 6))).to.equal(at(2025, 1, 10));
    expect(nextCron('0 0 13 * fri', at(2025, 1, 11))).to.equal(at(2025, 1, 13));
  });

  it('cron: refuses what it cannot read or what never fires', () => {
    for (const bad of ['61 * * * *', '* * *', '* * * * * *', '0 0 32 * *', '0 0 * * funday', '*/0 * * * *', '5-1 * * * *']) {
      expect(() => parseCron(bad), bad).to.throw(/is not a schedule/);
    }
    expect(() => scheduleSpecFrom(undefined, '0 0 30 2 *')).to.throw(/names no time/);
  });
});
