import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  blockDeviceSize, checkSourceNotInUse, checkTargetNotInUse, findVolumeUses, lvmVolumeOf, parseDmLvName, parseMounts, parseSwaps, VolumeHostPaths,
} from '../../../src/agent/volume/mount-check';
import { CairnError } from '../../../src/core/errors';

const FIXTURES = path.resolve(__dirname, '../../../../test/fixtures/volume');

/**
 * A fake host: /dev with symlinks like /dev/mapper, a /sys/class/block tree with a disk and its
 * partitions, an LVM dm device stacked on a partition, and loop devices with backing files.
 */
function fakeHost(mounts: string, swaps = 'Filename\tType\tSize\tUsed\tPriority\n'): { paths: VolumeHostPaths; root: string; image: string } {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-host-'));
  const p: VolumeHostPaths = {
    procMounts: path.join(root, 'proc-mounts'),
    procSwaps: path.join(root, 'proc-swaps'),
    sysClassBlock: path.join(root, 'sys/class/block'),
    dev: path.join(root, 'dev'),
  };
  const image = path.join(root, 'disk.img');
  fs.writeFileSync(image, 'x');
  fs.writeFileSync(p.procMounts, mounts);
  fs.writeFileSync(p.procSwaps, swaps);
  const sys = (rel: string, content?: string): void => {
    const f = path.join(p.sysClassBlock, rel);
    fs.mkdirSync(content === undefined ? f : path.dirname(f), { recursive: true });
    if (content !== undefined) fs.writeFileSync(f, content);
  };
  // sda with sda1, sda2; dm-0 (LVM vg0/home) stacked on sda2
  sys('sda/size', '2000\n');
  sys('sda/sda1/partition', '1\n');
  sys('sda/sda2/partition', '2\n');
  sys('sda/sda2/holders/dm-0');
  sys('sda1/size', '1000\n');
  sys('sda2/holders/dm-0/x', '');
  sys('dm-0/size', '800\n');
  sys('dm-0/dm/uuid', 'LVM-abcdefgh\n');
  sys('dm-0/dm/name', 'vg0-home\n');
  sys('loop0/loop/backing_file', `${image}\n`);
  sys('loop0/size', '8\n');
  sys('loop1/loop/backing_file', '/elsewhere.img\n');
  fs.mkdirSync(path.join(p.dev, 'mapper'), { recursive: true });
  for (const d of ['sda', 'sda1', 'sda2', 'dm-0', 'loop0', 'loop1']) fs.writeFileSync(path.join(p.dev, d), '');
  fs.symlinkSync('../dm-0', path.join(p.dev, 'mapper', 'vg0-home'));
  return { paths: p, root, image };
}

describe('volume/mount-check', () => {
  const cleanup: string[] = [];
  after(() => cleanup.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

  it('parses a captured /proc/mounts (octal escapes, rw/ro) and /proc/swaps', () => {
    const m = parseMounts(fs.readFileSync(path.join(FIXTURES, 'proc-mounts.txt'), 'utf8'));
    const loop0 = m.find((e) => e.source === '/dev/loop0')!;
    expect(loop0.target).to.equal('/tmp/fx mnt rw');
    expect(loop0.options).to.include('rw');
    expect(m.find((e) => e.source === '/dev/loop1')!.options).to.include('ro');
    expect(parseSwaps('Filename\tType\tSize\tUsed\tPriority\n/dev/sda1 partition 1 0 -2\n/swap\\040file file 1 0 -3\n')).to.deep.equal(['/dev/sda1', '/swap file']);
  });

  it('finds a mount of the device itself, through /dev/mapper symlinks, and of a partition of a whole disk', () => {
    const h = fakeHost('/dev/mapper/vg0-home /home ext4 rw,relatime 0 0\n/dev/sda1 /boot ext4 ro,relatime 0 0\n');
    cleanup.push(h.root);
    const dm = path.join(h.paths.dev, 'dm-0');
    expect(findVolumeUses(dm, true, h.paths)).to.deep.equal([{ device: 'dm-0', kind: 'mount', target: '/home', readWrite: true }]);
    // the whole disk: its partition sda1 (ro) and, stacked on sda2, the LV (rw)
    const uses = findVolumeUses(path.join(h.paths.dev, 'sda'), true, h.paths);
    expect(uses.map((u) => `${u.device}:${u.readWrite}`).sort()).to.deep.equal(['dm-0:true', 'sda1:false']);
    // only read-only: the backup of sda1 is allowed
    expect(checkSourceNotInUse('/dev/sda1', path.join(h.paths.dev, 'sda1'), true, { paths: h.paths })).to.deep.equal([]);
  });

  it('refuses a read-write mount with a message that says why and what to do; --allow-mounted passes', () => {
    const h = fakeHost('/dev/mapper/vg0-home /home ext4 rw,relatime 0 0\n');
    cleanup.push(h.root);
    const dm = path.join(h.paths.dev, 'dm-0');
    try {
      checkSourceNotInUse('/dev/mapper/vg0-home', dm, true, { paths: h.paths, isLvm: true });
      expect.fail('accepted');
    } catch (err) {
      expect(CairnError.is(err, 'CAIRN_VOLUME_MOUNTED')).to.equal(true);
      const msg = (err as Error).message;
      expect(msg).to.contain('mounted read-write at /home');
      expect(msg).to.contain('not be a consistent image');
      expect(msg).to.contain('--lvm-snapshot');
      expect(msg).to.contain('--allow-mounted');
      expect(msg).to.contain('mount -o remount,ro /home');
    }
    expect(checkSourceNotInUse('/dev/mapper/vg0-home', dm, true, { paths: h.paths, allowMounted: true })).to.have.length(1);
  });

  it('an image file is in use when a loop device backed by it is mounted or used as swap', () => {
    const h = fakeHost('/dev/loop0 /mnt ext4 rw 0 0\n/dev/loop1 /other ext4 rw 0 0\n');
    cleanup.push(h.root);
    expect(findVolumeUses(h.image, false, h.paths)).to.deep.equal([{ device: 'loop0', kind: 'mount', target: '/mnt', readWrite: true }]);
    const h2 = fakeHost('', 'Filename\tType\tSize\tUsed\tPriority\n/dev/loop0 partition 8 0 -2\n');
    cleanup.push(h2.root);
    expect(() => checkTargetNotInUse('t.img', h2.image, false, h2.paths)).to.throw(CairnError, 'swap');
  });

  it('a restore target mounted even read-only is refused', () => {
    const h = fakeHost('/dev/sda1 /boot ext4 ro 0 0\n');
    cleanup.push(h.root);
    expect(() => checkTargetNotInUse('/dev/sda', path.join(h.paths.dev, 'sda'), true, h.paths)).to.throw(CairnError, 'mounted read-only at /boot');
    expect(() => checkTargetNotInUse('/dev/sda2', path.join(h.paths.dev, 'sda2'), true, h.paths)).to.not.throw();
  });

  it('reads device sizes and recognises LVM volumes from sysfs; parses dm names with escaped dashes', () => {
    const h = fakeHost('');
    cleanup.push(h.root);
    expect(blockDeviceSize(path.join(h.paths.dev, 'sda'), h.paths)).to.equal(2000 * 512);
    expect(lvmVolumeOf(path.join(h.paths.dev, 'mapper', 'vg0-home'), h.paths)).to.deep.equal({ vg: 'vg0', lv: 'home' });
    expect(lvmVolumeOf(path.join(h.paths.dev, 'sda1'), h.paths)).to.equal(undefined);
    expect(parseDmLvName('my--vg-my--lv')).to.deep.equal({ vg: 'my-vg', lv: 'my-lv' });
    expect(parseDmLvName('vg-lv-cow')).to.deep.equal({ vg: 'vg', lv: 'lv-cow' });
    expect(parseDmLvName('novg')).to.equal(undefined);
    expect(() => blockDeviceSize(path.join(h.paths.dev, 'nothing'), h.paths)).to.throw(CairnError);
  });
});
