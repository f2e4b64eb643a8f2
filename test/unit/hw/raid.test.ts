import fs from 'node:fs';
import { expect } from 'chai';
import { ManualClock } from '../../../src/hw/clock';
import { hostPaths } from '../../../src/hw/host-paths';
import { MdadmRaid, MD_UNAVAILABLE_NOTE, Raid, RaidStatus } from '../../../src/hw/raid';
import { diffRaid, watchRaid, RaidEvent } from '../../../src/hw/raid-watch';
import { Privileged } from '../../../src/hw/privileged';
import { assessBox, patternFor } from '../../../src/hw/box-state';
import { DiskInfo, classifyDisk } from '../../../src/hw/disks';
import { fakeRoot, fixture } from './fixtures';

const noPrivileges: Privileged = {
  run: async () => {
    throw new Error('not expected');
  },
};

function mdstatRoot(text: string | null): string {
  return fakeRoot(text === null ? {} : { 'proc/mdstat': text });
}

describe('hw/raid status and watch', () => {
  it('reports arrays from /proc/mdstat, with the disk being rebuilt', async () => {
    const raid = new MdadmRaid({ paths: hostPaths(mdstatRoot(fixture('mdstat-node-exporter.txt'))), privileged: noPrivileges });
    const st = await raid.status();
    expect(st.available).to.equal(true);
    const md6 = st.arrays.find((a) => a.name === 'md6')!;
    expect(md6).to.include({ device: '/dev/md6', state: 'recovering', degraded: true, sizeBytes: 195310144 * 1024 });
    expect(md6.members).to.deep.equal([
      { device: '/dev/sdb2', slot: 2, state: 'rebuilding' },
      { device: '/dev/sda2', slot: 0, state: 'active' },
    ]);
    const failed = await new MdadmRaid({ paths: hostPaths(mdstatRoot(fixture('mdstat-failed-member.txt'))), privileged: noPrivileges }).status();
    expect(failed.arrays[1].members[0]).to.deep.equal({ device: '/dev/sdb3', slot: 2, state: 'faulty' });
  });

  it('says "md driver not available" instead of throwing when there is no /proc/mdstat', async () => {
    const st = await new MdadmRaid({ paths: hostPaths(mdstatRoot(null)), privileged: noPrivileges }).status();
    expect(st).to.deep.equal({ available: false, note: MD_UNAVAILABLE_NOTE, arrays: [] });
  });

  it('turns an unreadable /proc/mdstat into a note, not a crash', async () => {
    const st = await new MdadmRaid({ paths: hostPaths(mdstatRoot('md0 : exploded\n')), privileged: noPrivileges }).status();
    expect(st.available).to.equal(true);
    expect(st.note).to.match(/md0: expected "active" or "inactive"/);
  });

  it('diffs successive states into events', () => {
    const paths = hostPaths(mdstatRoot(''));
    const write = (t: string): void => fs.writeFileSync(paths.procMdstat, t);
    const read = async (): Promise<RaidStatus> => new MdadmRaid({ paths, privileged: noPrivileges }).status();
    const clean = 'Personalities : [raid1]\nmd0 : active raid1 sdb1[1] sda1[0]\n      1000 blocks super 1.2 [2/2] [UU]\n\nunused devices: <none>\n';
    const failed = 'Personalities : [raid1]\nmd0 : active raid1 sdb1[1](F) sda1[0]\n      1000 blocks super 1.2 [2/1] [U_]\n\nunused devices: <none>\n';
    const rebuilding = (pct: string): string => `Personalities : [raid1]\nmd0 : active raid1 sdc1[2] sda1[0]\n      1000 blocks super 1.2 [2/1] [U_]\n      [=>...]  recovery = ${pct}% (100/1000) finish=1.0min speed=1000K/sec\n\nunused devices: <none>\n`;
    return (async () => {
      write(clean);
      const s0 = await read();
      write(failed);
      const s1 = await read();
      expect(diffRaid(s0, s1)).to.deep.equal([
        { type: 'member-failed', array: 'md0', device: '/dev/sdb1' },
        { type: 'state-changed', array: 'md0', from: 'clean', to: 'degraded' },
        { type: 'degraded', array: 'md0' },
      ]);
      write(rebuilding('10.0'));
      const s2 = await read();
      expect(diffRaid(s1, s2)).to.deep.equal([
        { type: 'state-changed', array: 'md0', from: 'degraded', to: 'recovering' },
        { type: 'rebuild-started', array: 'md0', device: '/dev/sdc1' },
      ]);
      write(rebuilding('55.5'));
      const s3 = await read();
      expect(diffRaid(s2, s3)).to.deep.equal([{ type: 'rebuild-progress', array: 'md0', percent: 55.5 }]);
      write(clean.replace('sdb1[1]', 'sdc1[2]'));
      const s4 = await read();
      expect(diffRaid(s3, s4)).to.deep.equal([
        { type: 'state-changed', array: 'md0', from: 'recovering', to: 'clean' },
        { type: 'rebuilt', array: 'md0' },
      ]);
      expect(diffRaid(s4, { available: true, note: null, arrays: [] })).to.deep.equal([{ type: 'array-gone', array: 'md0' }]);
    })();
  });

  it('watchRaid polls on the injected clock and reports only changes', async () => {
    let n = 0;
    const states: RaidStatus[] = [
      { available: true, note: null, arrays: [] },
      { available: true, note: null, arrays: [] },
      { available: true, note: null, arrays: [{ name: 'md0', device: '/dev/md0', level: 'raid1', state: 'degraded', degraded: true, sizeBytes: 1, raidDisks: 2, workingDisks: 1, members: [], sync: null }] },
    ];
    const fake: Raid = { status: async () => states[Math.min(n++, states.length - 1)] } as unknown as Raid;
    const clock = new ManualClock();
    const seen: RaidEvent[][] = [];
    const w = watchRaid(fake, { clock, intervalMs: 1000, onChange: (_s, ev) => seen.push(ev) });
    const flush = async (): Promise<void> => {
      for (let i = 0; i < 5; i++) await Promise.resolve();
    };
    clock.advance(1000);
    await flush();
    clock.advance(1000);
    await flush();
    clock.advance(1000);
    await flush();
    expect(seen).to.deep.equal([[], [{ type: 'array-appeared', array: 'md0' }, { type: 'degraded', array: 'md0' }]]);
    w.stop();
    expect(clock.pending()).to.equal(0);
  });
});

describe('hw/box state verdict', () => {
  const disk = (over: Partial<DiskInfo> & { health?: DiskInfo['health'] }): DiskInfo => ({
    name: 'sdb',
    device: '/dev/sdb',
    type: 'disk',
    sizeBytes: 1,
    model: null,
    serial: 'S1',
    removable: false,
    transport: null,
    mountpoints: [],
    usage: [],
    arrays: [],
    backingFile: null,
    class: 'free',
    health: { health: 'ok', reasons: [], temperatureC: null, reallocatedSectors: null, pendingSectors: null, powerOnHours: null, passed: true },
    ...over,
  });
  const array = (state: RaidStatus['arrays'][number]['state'], extra: Partial<RaidStatus['arrays'][number]> = {}): RaidStatus => ({
    available: true,
    note: null,
    arrays: [{ name: 'md0', device: '/dev/md0', level: 'raid1', state, degraded: state === 'degraded' || state === 'recovering', sizeBytes: 1, raidDisks: 2, workingDisks: 1, members: [], sync: null, ...extra }],
  });

  it('healthy, attention and error follow array state, disk health and reported errors', () => {
    expect(assessBox({ raid: array('clean'), disks: [disk({})], errors: [] })).to.deep.equal({ state: 'healthy', reasons: [] });
    expect(assessBox({ raid: array('checking'), disks: [], errors: [] }).state).to.equal('healthy');
    expect(assessBox({ raid: array('resyncing'), disks: [], errors: [] }).state).to.equal('healthy');
    expect(assessBox({ raid: array('degraded'), disks: [], errors: [] }).reasons[0]).to.match(/degraded: 1 of 2 disks working/);
    expect(assessBox({ raid: array('recovering', { sync: { action: 'recovery', percent: 42, speedKiBps: 1, finishMinutes: 9.5 } }), disks: [], errors: [] }).reasons[0]).to.equal('array md0 is rebuilding (42%, about 10 min left)');
    expect(assessBox({ raid: array('reshaping'), disks: [], errors: [] }).state).to.equal('attention');
    expect(assessBox({ raid: array('clean'), disks: [disk({ health: { health: 'warning', reasons: ['3 reallocated sectors'], temperatureC: null, reallocatedSectors: 3, pendingSectors: 0, powerOnHours: 1, passed: true } })], errors: [] })).to.deep.equal({ state: 'attention', reasons: ['disk sdb: 3 reallocated sectors'] });
    expect(assessBox({ raid: array('failed'), disks: [], errors: [] }).state).to.equal('error');
    expect(assessBox({ raid: array('inactive'), disks: [], errors: [] }).reasons[0]).to.match(/not running/);
    expect(assessBox({ raid: array('clean'), disks: [], errors: [{ source: 'store', message: 'data disk full', at: '' }] })).to.deep.equal({ state: 'error', reasons: ['store: data disk full'] });
    expect(assessBox({ raid: { available: false, note: MD_UNAVAILABLE_NOTE, arrays: [] }, disks: [], errors: [] })).to.deep.equal({ state: 'attention', reasons: [MD_UNAVAILABLE_NOTE] });
    expect(assessBox({ raid: { available: true, note: null, arrays: [] }, disks: [], errors: [] }).reasons[0]).to.match(/no data array set up yet/);
  });

  it('picks the LED pattern: error > attention > backup > idle', () => {
    const backup = [{ id: '1', kind: 'backup', since: '' }];
    expect(patternFor('error', backup)).to.equal('error');
    expect(patternFor('attention', backup)).to.equal('attention');
    expect(patternFor('healthy', backup)).to.equal('backup');
    expect(patternFor('healthy', [{ id: '2', kind: 'gc', since: '' }])).to.equal('idle');
  });

  it('classifies disks: failing > system > member > in-use > free', () => {
    expect(classifyDisk({ health: 'failing', system: true, arrays: ['md0'], mounted: true })).to.equal('failing');
    expect(classifyDisk({ health: 'ok', system: true, arrays: [], mounted: true })).to.equal('system');
    expect(classifyDisk({ health: 'warning', system: false, arrays: ['md0'], mounted: false })).to.equal('member');
    expect(classifyDisk({ health: 'unknown', system: false, arrays: [], mounted: true })).to.equal('in-use');
    expect(classifyDisk({ health: 'unknown', system: false, arrays: [], mounted: false })).to.equal('free');
  });

});
