import { expect } from 'chai';
import fc from 'fast-check';
import { parseMdstat, MdArrayStat } from '../../../src/hw/mdstat';
import { HwError } from '../../../src/hw/errors';
import { fixture } from './fixtures';

function byName(arrays: MdArrayStat[], name: string): MdArrayStat {
  const a = arrays.find((x) => x.name === name);
  if (!a) throw new Error(`no ${name}`);
  return a;
}

describe('hw/mdstat parser', () => {
  it('reads every array of the node_exporter fixture (clean, recovery, resync, inactive, degraded, raid0, imsm)', () => {
    const md = parseMdstat(fixture('mdstat-node-exporter.txt'));
    expect(md.personalities).to.deep.equal(['linear', 'multipath', 'raid0', 'raid1', 'raid6', 'raid5', 'raid4', 'raid10']);
    expect(md.arrays.map((a) => a.name)).to.deep.equal(['md3', 'md127', 'md0', 'md4', 'md6', 'md8', 'md7', 'md9', 'md10', 'md11', 'md12', 'md219']);

    const md3 = byName(md.arrays, 'md3');
    expect(md3).to.include({ level: 'raid6', active: true, state: 'clean', degraded: false, sizeKiB: 5853468288, metadata: '1.2', chunkKiB: 64, raidDisks: 8, workingDisks: 8 });
    expect(md3.members).to.have.length(8);

    const md6 = byName(md.arrays, 'md6');
    expect(md6.state).to.equal('recovering');
    expect(md6.degraded).to.equal(true);
    expect(md6.memberStatus).to.equal('U_');
    expect(md6.sync).to.deep.equal({ action: 'recovery', percent: 8.5, doneKiB: 16775552, totalKiB: 195310144, finishMinutes: 17, speedKiBps: 259783 });

    const md8 = byName(md.arrays, 'md8'); // tab-indented lines
    expect(md8.state).to.equal('resyncing');
    expect(md8.sync?.action).to.equal('resync');

    const md4 = byName(md.arrays, 'md4');
    expect(md4).to.include({ active: false, state: 'inactive', level: 'raid1' });

    const md7 = byName(md.arrays, 'md7');
    expect(md7).to.include({ state: 'degraded', degraded: true, raidDisks: 4, workingDisks: 3 });
    expect(md7.bitmap).to.deep.equal({ pages: 0, totalPages: 30, chunkKiB: 65536 });

    expect(byName(md.arrays, 'md9').syncPending).to.equal('resync=DELAYED');
    const md11 = byName(md.arrays, 'md11');
    expect(md11).to.include({ readOnly: 'auto-read-only', level: 'raid1', syncPending: 'resync=PENDING', state: 'clean' });

    const md10 = byName(md.arrays, 'md10');
    expect(md10).to.include({ level: 'raid0', state: 'clean', raidDisks: null, metadata: null, chunkKiB: 64 });

    const md219 = byName(md.arrays, 'md219');
    expect(md219).to.include({ active: false, level: null, metadata: 'external:imsm', state: 'inactive' });
    expect(md219.members.every((m) => m.spare)).to.equal(true);
  });

  it('reads a check (scrub) whose progress line a mail client wrapped', () => {
    const md = parseMdstat(fixture('mdstat-check-raid1.txt'));
    const md4 = byName(md.arrays, 'md4');
    expect(md4.state).to.equal('checking');
    expect(md4.sync).to.deep.equal({ action: 'check', percent: 2.8, doneKiB: 84842176, totalKiB: 2930135488, finishMinutes: 28990.7, speedKiBps: 1635 });
    expect(md4.members.map((m) => m.name)).to.deep.equal(['sdc', 'sdd']);
    expect(md.arrays.filter((a) => a.state === 'clean')).to.have.length(4);
  });

  it('reads a RAID5 reshape split over several lines', () => {
    const md = parseMdstat(fixture('mdstat-reshape-raid5.txt'));
    expect(md.personalities).to.deep.equal([]);
    const a = byName(md.arrays, 'md3');
    expect(a.members.map((m) => m.name)).to.deep.equal(['sdc1', 'sde1', 'sdd1', 'hdk1', 'hdi1', 'hde1', 'hdc1', 'hda1']);
    expect(a).to.include({ state: 'reshaping', metadata: '0.91', raidDisks: 8, workingDisks: 8, chunkKiB: 512 });
    expect(a.sync).to.include({ action: 'reshape', percent: 0.2, finishMinutes: 1031.7, speedKiBps: 6293 });
  });

  it('reads a degraded RAID5 recovering onto a new disk and RAID1 arrays with spares', () => {
    const md = parseMdstat(fixture('mdstat-recovery-raid5.txt'));
    const md0 = byName(md.arrays, 'md0');
    expect(md0).to.include({ level: 'raid5', state: 'recovering', raidDisks: 5, workingDisks: 4, memberStatus: '_UUUU' });
    expect(md0.sync?.percent).to.equal(39.4);
    const md5 = byName(md.arrays, 'md5');
    expect(md5.members.filter((m) => m.spare).map((m) => m.name)).to.deep.equal(['sde2', 'sdd2', 'sdc2']);
    expect(md5.state).to.equal('clean');
  });

  it('marks a failed member (F) and a degraded mirror, even with indentation lost', () => {
    const md = parseMdstat(fixture('mdstat-failed-member.txt'));
    const md1 = byName(md.arrays, 'md1');
    expect(md1).to.include({ state: 'degraded', degraded: true, sizeKiB: 1948488512, metadata: '1.0' });
    expect(md1.members).to.deep.equal([
      { name: 'sdb3', slot: 2, faulty: true, spare: false, writeMostly: false, replacement: false, journal: false },
      { name: 'sda3', slot: 0, faulty: false, spare: false, writeMostly: false, replacement: false, journal: false },
    ]);
    expect(byName(md.arrays, 'md0').state).to.equal('clean');
  });

  it('reads an inactive array whose members all came back as spares', () => {
    const md = parseMdstat(fixture('mdstat-inactive-spares.txt'));
    expect(md.personalities).to.include('raid10');
    const a = byName(md.arrays, 'md0');
    expect(a).to.include({ active: false, state: 'inactive', sizeKiB: 8761499679, level: null });
    expect(a.members.map((m) => [m.name, m.slot, m.spare])).to.deep.equal([
      ['sda1', 2, true],
      ['sdb1', 0, true],
      ['sdb2', 1, true],
    ]);
  });

  it('reads a RAID10 missing two of 22 disks', () => {
    const a = byName(parseMdstat(fixture('mdstat-raid10-degraded.txt')).arrays, 'md127');
    expect(a).to.include({ level: 'raid10', raidDisks: 22, workingDisks: 20, chunkKiB: 4096, degraded: true, state: 'degraded' });
    expect(a.members).to.have.length(20);
  });

  it('calls an array that lost more members than its level survives "failed"', () => {
    const text = 'Personalities : [raid1]\nmd0 : active raid1 sda1[0](F) sdb1[1](F)\n      1000 blocks super 1.2 [2/0] [__]\n\nunused devices: <none>\n';
    expect(parseMdstat(text).arrays[0].state).to.equal('failed');
    const r5 = 'Personalities : [raid5]\nmd1 : active raid5 sda1[0]\n      2000 blocks super 1.2 level 5, 64k chunk, algorithm 2 [3/1] [U__]\nunused devices: <none>\n';
    expect(parseMdstat(r5).arrays[0].state).to.equal('failed');
  });

  it('accepts an empty md setup', () => {
    expect(parseMdstat('Personalities : \nunused devices: <none>\n')).to.deep.equal({ personalities: [], arrays: [] });
  });

  describe('malformed input: a clear error, never a crash', () => {
    const bad: [string, string, RegExp][] = [
      ['empty text', '', /empty/],
      ['not mdstat at all', '{"json": true}', /does not look like \/proc\/mdstat/],
      ['invalid activity (procfs)', 'Personalities : [invalid]\nmd3 : invalid\n      314159265 blocks 64k chunks\n\nunused devices: <none>\n', /md3: expected "active" or "inactive"/],
      ['impossible member state (Z) (procfs)', '\nmd127 : active raid1 sdi2[0] sdj2[1](Z)\n      312319552 blocks [2/2] [UU]\n', /unknown state flag \(Z\)/],
      ['malformed member slot (procfs)', '\nmd127 : active raid1 sdi2[0] sdj2[X]\n      312319552 blocks [2/2] [UU]\n', /cannot read member "sdj2\[X\]"/],
      ['no size line', 'Personalities : [raid1]\nmd0 : active raid1 sda1[0] sdb1[1]\n', /no "<n> blocks" size line/],
      ['member status that does not add up', 'Personalities : [raid1]\nmd0 : active raid1 sda1[0]\n 100 blocks [2/1] [UUU]\n', /inconsistent member status/],
      ['progress percent out of range', 'Personalities : [raid1]\nmd0 : active raid1 sda1[0] sdb1[1]\n 100 blocks [2/2] [UU]\n [==>] recovery = 150.0% (1/2) finish=1.0min speed=1K/sec\n', /out of range/],
      ['garbage progress', 'Personalities : [raid1]\nmd0 : active raid1 sda1[0] sdb1[1]\n 100 blocks [2/2] [UU]\n [==>] resync = soon\n', /cannot read the progress line/],
      ['text before the first array', 'hello\nmd0 : active raid1 sda1[0]\n 100 blocks [1/1] [U]\n', /unexpected text before the first array/],
    ];
    for (const [what, text, re] of bad) {
      it(what, () => {
        expect(() => parseMdstat(text)).to.throw(HwError, re).with.property('code', 'CAIRN_HW_PARSE');
      });
    }

    it('any string either parses or throws CAIRN_HW_PARSE (property)', () => {
      const pieces = fc.constantFrom('Personalities : [raid1]\n', 'md0 : ', 'active ', 'inactive ', 'raid1 ', 'sda1[0] ', 'sdb1[1](F) ', 'x[', '100 blocks ', '[2/1] [U_]', '\n', '  recovery = 12.5% (1/8) finish=1.0min speed=10K/sec\n', 'unused devices: <none>\n', '\t', ']');
      fc.assert(
        fc.property(fc.oneof(fc.string(), fc.array(pieces, { maxLength: 30 }).map((a) => a.join(''))), (text) => {
          try {
            const md = parseMdstat(text);
            for (const a of md.arrays) expect(a.name).to.match(/^md/);
          } catch (err) {
            expect(err).to.be.instanceOf(HwError);
            expect((err as HwError).code).to.equal('CAIRN_HW_PARSE');
          }
        }),
        { numRuns: 500 },
      );
    });
  });
});
