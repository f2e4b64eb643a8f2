import { expect } from 'chai';
import { parseMdadmDetail, parseMdadmExport } from '../../../src/hw/mdadm-detail';
import { parseMdadmExamine } from '../../../src/hw/mdadm-examine';
import { HwError } from '../../../src/hw/errors';
import { fixture } from './fixtures';

describe('hw/mdadm output parsers', () => {
  describe('mdadm --detail', () => {
    it('reads a RAID1 rebuilding onto a new disk', () => {
      const d = parseMdadmDetail(fixture('mdadm-detail-recovering.txt'));
      expect(d).to.include({ device: '/dev/md127', level: 'raid1', raidDevices: 2, activeDevices: 1, workingDevices: 2, spareDevices: 1, arraySizeKiB: 732442432 });
      expect(d.state).to.deep.equal(['clean', 'degraded', 'recovering']);
      expect(d.progress).to.deep.equal({ action: 'rebuild', percent: 10 });
      expect(d.members).to.deep.equal([
        { number: 2, major: 8, minor: 17, raidDevice: 0, state: ['spare', 'rebuilding'], device: '/dev/sdb1' },
        { number: 1, major: 8, minor: 33, raidDevice: 1, state: ['active', 'sync'], device: '/dev/sdc1' },
      ]);
    });

    it('reads a RAID1 during a check, with the long-key layout of mdadm 4', () => {
      const d = parseMdadmDetail(fixture('mdadm-detail-checking.txt'));
      expect(d.state).to.deep.equal(['clean', 'checking']);
      expect(d.progress).to.deep.equal({ action: 'check', percent: 1 });
      expect(d.name).to.equal('valkyrie:4');
      expect(d.uuid).to.equal('6e520607:f152d8b9:dd2a3bec:5f9dc875');
      expect(d.fields['Consistency Policy']).to.equal('bitmap');
      expect(d.members.map((m) => m.device)).to.deep.equal(['/dev/sdc', '/dev/sdd']);
    });

    it('reads a degraded mirror with a faulty spare and a removed slot, indentation lost', () => {
      const d = parseMdadmDetail(fixture('mdadm-detail-degraded-faulty.txt'));
      expect(d.state).to.deep.equal(['clean', 'degraded']);
      expect(d.failedDevices).to.equal(1);
      expect(d.members).to.deep.equal([
        { number: 0, major: 8, minor: 3, raidDevice: 0, state: ['active', 'sync'], device: '/dev/sda3' },
        { number: 1, major: 0, minor: 0, raidDevice: 1, state: ['removed'], device: null },
        { number: 2, major: 8, minor: 19, raidDevice: null, state: ['faulty', 'spare'], device: '/dev/sdb3' },
      ]);
    });

    it('reads an inactive array (no RaidDevice, no State column)', () => {
      const d = parseMdadmDetail(fixture('mdadm-detail-inactive.txt'));
      expect(d.state).to.deep.equal(['inactive']);
      expect(d.members.map((m) => [m.number, m.raidDevice, m.device])).to.deep.equal([
        [null, null, '/dev/sda1'],
        [null, null, '/dev/sdb2'],
        [null, null, '/dev/sdb1'],
      ]);
    });

    it('turns mdadm error text (captured on a host without md) into a clear parse error', () => {
      expect(() => parseMdadmDetail(fixture('mdadm-detail-no-device.txt')))
        .to.throw(HwError, /not mdadm --detail output.*cannot open \/dev\/md0/)
        .with.property('code', 'CAIRN_HW_PARSE');
      expect(() => parseMdadmDetail('/dev/md0:\n   Foo : bar\n')).to.throw(HwError, /neither "Raid Level" nor "State"/);
      expect(() => parseMdadmDetail('/dev/md0:\n State : clean\n Number Major Minor RaidDevice State\n x y\n')).to.throw(HwError, /device row/);
      expect(() => parseMdadmDetail('/dev/md0:\n State : clean, recovering\n Rebuild Status : soon\n')).to.throw(HwError, /Rebuild Status/);
    });
  });

  describe('mdadm --detail --export', () => {
    it('reads members ordered by role, without requiring MD_UUID', () => {
      const r1 = parseMdadmExport(fixture('mdadm-export-raid1.txt'));
      expect(r1).to.include({ level: 'raid1', devices: 2, metadata: '1.2', uuid: null });
      expect(r1.members).to.deep.equal([
        { device: '/dev/sda2', role: 0 },
        { device: '/dev/sdb2', role: 1 },
      ]);
      const r5 = parseMdadmExport(fixture('mdadm-export-raid5.txt'));
      expect(r5.name).to.equal('redrum:2');
      expect(r5.members.map((m) => m.device)).to.deep.equal(['/dev/sde', '/dev/sdd', '/dev/sdi', '/dev/sdg', '/dev/sdh', '/dev/sdf']);
    });

    it('keeps spare and faulty roles as words', () => {
      const e = parseMdadmExport('MD_LEVEL=raid1\nMD_DEVICE_dev_sdc_ROLE=spare\nMD_DEVICE_dev_sdc_DEV=/dev/sdc\nMD_DEVICE_dev_sdd_ROLE=0\nMD_DEVICE_dev_sdd_DEV=/dev/sdd\n');
      expect(e.members).to.deep.equal([
        { device: '/dev/sdd', role: 0 },
        { device: '/dev/sdc', role: 'spare' },
      ]);
    });

    it('rejects error text and half-written variables', () => {
      expect(() => parseMdadmExport(fixture('mdadm-detail-no-device.txt'))).to.throw(HwError, /not mdadm --export output/);
      expect(() => parseMdadmExport('FOO=1\n')).to.throw(HwError, /no MD_ variables/);
      expect(() => parseMdadmExport('MD_LEVEL=raid1\nMD_DEVICE_dev_sda_ROLE=0\n')).to.throw(HwError, /no MD_DEVICE_dev_sda_DEV/);
    });
  });

  describe('mdadm --examine', () => {
    it('reads a RAID10 member superblock', () => {
      const e = parseMdadmExamine(fixture('mdadm-examine-raid10.txt'));
      expect(e).to.include({ device: '/dev/sda1', superblock: true, arrayUuid: 'cb5bfe7a:3806324c:3c1e7030:e6267102', name: 'ttserv:0', level: 'raid10', raidDevices: 4, events: 2719, role: 2 });
      expect(e.arrayState).to.deep.equal(['A', 'A', 'A', '.']);
    });

    it('reads a RAID1 member with a bitmap and bad block log', () => {
      const e = parseMdadmExamine(fixture('mdadm-examine-raid1-bitmap.txt'));
      expect(e).to.include({ device: '/dev/sdc', level: 'raid1', role: 0, events: 8193, name: 'valkyrie:4' });
      expect(e.fields['Feature Map']).to.equal('0x1');
      expect(e.arrayState).to.deep.equal(['A', 'A']);
    });

    it('recognises a disk without a superblock (captured here)', () => {
      const e = parseMdadmExamine(fixture('mdadm-examine-no-superblock.txt'));
      expect(e).to.include({ device: '/dev/loop0', superblock: false, role: null });
    });

    it('rejects anything else', () => {
      expect(() => parseMdadmExamine('mdadm: cannot open /dev/sdz: No such file or directory\n')).to.throw(HwError, /not mdadm --examine output/);
      expect(() => parseMdadmExamine('/dev/sda1:\n  Version : 1.2\n')).to.throw(HwError, /no "Magic" line/);
    });
  });
});
