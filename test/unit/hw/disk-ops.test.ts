import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import fc from 'fast-check';
import { hostPaths, HostPaths } from '../../../src/hw/host-paths';
import { CommandRunner } from '../../../src/hw/runner';
import { HelperOp, helperArgv, parseHelperArgv, confirmationFor } from '../../../src/hw/helper-protocol';
import { commandFor, directPrivileged, helperPrivileged } from '../../../src/hw/privileged';
import { chooseLevel, mdadmCreateArgs } from '../../../src/hw/mdadm-args';
import { checkMemberDevice, parentDiskName } from '../../../src/hw/device-name';
import { readMountInfo, parseMounts } from '../../../src/hw/mounts';
import { helperMain } from '../../../src/hw/disk-helper';
import { MdadmRaid } from '../../../src/hw/raid';
import { HwError } from '../../../src/hw/errors';
import { fakeRoot } from './fixtures';

/** A runner that records what would have run and answers with `result`. */
function recorder(result = { code: 0, stdout: '', stderr: '' }): CommandRunner & { calls: { command: string; args: string[] }[] } {
  const calls: { command: string; args: string[] }[] = [];
  return {
    calls,
    async run(command, args) {
      calls.push({ command, args: [...args] });
      return result;
    },
  };
}

/**
 * A host where sda holds / and /boot, sdb has a mounted USB filesystem, sdc2 is swap,
 * md0 (sdd1 + sde1) is the data array mounted on /srv/cairn/data, and sdf, sdg are blank.
 */
function fakeHost(): HostPaths {
  const root = fakeRoot({
    'proc/mounts': [
      '/dev/sda2 / ext4 rw,relatime 0 0',
      '/dev/sda1 /boot/firmware vfat rw 0 0',
      'proc /proc proc rw 0 0',
      '/dev/sdb1 /media/usb\\040stick vfat rw 0 0',
      '/dev/md0 /srv/cairn/data ext4 rw,noatime 0 0',
    ].join('\n'),
    'proc/swaps': 'Filename\tType\tSize\tUsed\tPriority\n/dev/sdc2 partition 1048572 0 -2\n',
    'proc/mdstat': 'Personalities : [raid1]\nmd0 : active raid1 sdd1[0] sde1[1]\n      1000 blocks super 1.2 [2/2] [UU]\n\nunused devices: <none>\n',
  });
  const dev = path.join(root, 'sys/devices/block');
  const cls = path.join(root, 'sys/class/block');
  fs.mkdirSync(cls, { recursive: true });
  const disk = (name: string, parts: string[]): void => {
    fs.mkdirSync(path.join(dev, name), { recursive: true });
    fs.symlinkSync(path.join(dev, name), path.join(cls, name));
    for (const p of parts) {
      fs.mkdirSync(path.join(dev, name, p), { recursive: true });
      fs.writeFileSync(path.join(dev, name, p, 'partition'), '1\n');
      fs.symlinkSync(path.join(dev, name, p), path.join(cls, p));
    }
  };
  disk('sda', ['sda1', 'sda2']);
  disk('sdb', ['sdb1']);
  disk('sdc', ['sdc1', 'sdc2']);
  disk('sdd', ['sdd1']);
  disk('sde', ['sde1']);
  disk('sdf', []);
  disk('sdg', []);
  // md0 is a virtual device whose slaves are the member partitions
  fs.mkdirSync(path.join(root, 'sys/devices/virtual/block/md0/slaves'), { recursive: true });
  fs.symlinkSync(path.join(root, 'sys/devices/virtual/block/md0'), path.join(cls, 'md0'));
  for (const s of ['sdd1', 'sde1']) fs.symlinkSync(path.join(dev, s.slice(0, 3), s), path.join(root, 'sys/devices/virtual/block/md0/slaves', s));
  return hostPaths(root);
}

describe('hw/disk operations: command building, confirmations and refusals', () => {
  it('chooses RAID 1 for two disks, 5 for three, 6 for four or more; 10 on request', () => {
    expect(chooseLevel(2)).to.equal('raid1');
    expect(chooseLevel(3)).to.equal('raid5');
    expect(chooseLevel(4)).to.equal('raid6');
    expect(chooseLevel(6)).to.equal('raid6');
    expect(chooseLevel(4, 'raid10')).to.equal('raid10');
    expect(chooseLevel(3, 'raid1')).to.equal('raid1');
    expect(() => chooseLevel(1)).to.throw(HwError, /at least 2 disks/);
    expect(() => chooseLevel(2, 'raid5')).to.throw(HwError, /raid5 needs at least 3/);
    expect(() => chooseLevel(3, 'raid6')).to.throw(HwError, /raid6 needs at least 4/);
  });

  it('builds the exact argument array of every operation', () => {
    const ops: [HelperOp, string, string[]][] = [
      [{ op: 'create', md: '/dev/md0', level: 'raid1', devices: ['/dev/sdf', '/dev/sdg'], confirm: '' }, '/usr/sbin/mdadm', ['--create', '/dev/md0', '--run', '--metadata=1.2', '--level=1', '--raid-devices=2', '--name=cairn-data', '--bitmap=internal', '/dev/sdf', '/dev/sdg']],
      [{ op: 'create', md: '/dev/md1', level: 'raid10', devices: ['/dev/sdb', '/dev/sdc', '/dev/nvme0n1', '/dev/nvme1n1'], confirm: '' }, '/usr/sbin/mdadm', ['--create', '/dev/md1', '--run', '--metadata=1.2', '--level=10', '--raid-devices=4', '--name=cairn-data', '--bitmap=internal', '/dev/sdb', '/dev/sdc', '/dev/nvme0n1', '/dev/nvme1n1']],
      [{ op: 'fail', md: '/dev/md0', device: '/dev/sdf', confirm: '' }, '/usr/sbin/mdadm', ['--manage', '/dev/md0', '--fail', '/dev/sdf']],
      [{ op: 'remove', md: '/dev/md0', device: '/dev/sdf', confirm: '' }, '/usr/sbin/mdadm', ['--manage', '/dev/md0', '--remove', '/dev/sdf']],
      [{ op: 'add', md: '/dev/md0', device: '/dev/sdg', confirm: '' }, '/usr/sbin/mdadm', ['--manage', '/dev/md0', '--add', '/dev/sdg']],
      [{ op: 'stop', md: '/dev/md0', confirm: '' }, '/usr/sbin/mdadm', ['--stop', '/dev/md0']],
      [{ op: 'assemble', md: '/dev/md0', devices: ['/dev/sdf', '/dev/sdg'] }, '/usr/sbin/mdadm', ['--assemble', '/dev/md0', '--run', '/dev/sdf', '/dev/sdg']],
      [{ op: 'assemble', md: '/dev/md0', devices: [] }, '/usr/sbin/mdadm', ['--assemble', '/dev/md0', '--scan']],
      [{ op: 'detail', md: '/dev/md0' }, '/usr/sbin/mdadm', ['--detail', '/dev/md0']],
      [{ op: 'examine', device: '/dev/loop3' }, '/usr/sbin/mdadm', ['--examine', '/dev/loop3']],
      [{ op: 'mkfs', md: '/dev/md0', confirm: '' }, '/usr/sbin/mkfs.ext4', ['-F', '-q', '-m', '0', '-L', 'cairn-data', '/dev/md0']],
      [{ op: 'mount', md: '/dev/md0' }, '/usr/bin/mount', ['-t', 'ext4', '-o', 'noatime,nodev,nosuid,noexec', '/dev/md0', '/srv/cairn/data']],
      [{ op: 'umount' }, '/usr/bin/umount', ['/srv/cairn/data']],
      [{ op: 'smart', device: '/dev/nvme0n1' }, '/usr/sbin/smartctl', ['-j', '-a', '/dev/nvme0n1']],
    ];
    for (const [op, command, args] of ops) expect(commandFor(op), op.op).to.deep.equal({ command, args });
  });

  it('accepts only device names Cairn manages', () => {
    for (const ok of ['/dev/sda', '/dev/sdb1', '/dev/sdaa', '/dev/nvme0n1', '/dev/nvme1n1p3', '/dev/vdb', '/dev/loop12', '/dev/mmcblk0p2', '/dev/xvdb']) expect(checkMemberDevice(ok)).to.equal(ok);
    for (const bad of ['/dev/md0', 'sda', '/dev/sda;reboot', '/dev/../etc/passwd', '/dev/disk/by-id/ata-X', '--force', '/dev/sd', '/dev/sda 1', '/tmp/x.img', '/dev/nvme0', '']) {
      expect(() => checkMemberDevice(bad), bad).to.throw(HwError).with.property('code', 'CAIRN_HW_INVALID_ARGUMENT');
    }
    expect(() => mdadmCreateArgs('/dev/md0', 'raid1', ['/dev/sdb', '/dev/sdb'])).to.throw(HwError, /listed twice/);
    expect(parentDiskName('nvme0n1p2')).to.equal('nvme0n1');
    expect(parentDiskName('mmcblk0p1')).to.equal('mmcblk0');
    expect(parentDiskName('sdab3')).to.equal('sdab');
  });

  it('serializes operations for the helper and parses them back identically (property)', () => {
    const dev = fc.oneof(
      fc.constantFrom('a', 'b', 'c', 'z').map((c) => `/dev/sd${c}`),
      fc.nat(9).map((n) => `/dev/loop${n}`),
      fc.tuple(fc.nat(3), fc.nat(3)).map(([a, b]) => `/dev/nvme${a}n${b + 1}`),
    );
    const md = fc.nat(127).map((n) => `/dev/md${n}`);
    const op: fc.Arbitrary<HelperOp> = fc.oneof(
      fc.tuple(md, fc.uniqueArray(dev, { minLength: 4, maxLength: 6 }), fc.constantFrom('raid1' as const, 'raid5' as const, 'raid6' as const, 'raid10' as const)).map(([m, devices, level]) => ({ op: 'create' as const, md: m, level, devices, confirm: devices.join(',') })),
      fc.tuple(md, dev, fc.constantFrom('fail' as const, 'remove' as const, 'add' as const)).map(([m, d, o]) => ({ op: o, md: m, device: d, confirm: d })),
      md.map((m) => ({ op: 'stop' as const, md: m, confirm: m })),
      md.map((m) => ({ op: 'mkfs' as const, md: m, confirm: m })),
      fc.tuple(md, fc.uniqueArray(dev, { maxLength: 4 })).map(([m, devices]) => ({ op: 'assemble' as const, md: m, devices })),
      md.map((m) => ({ op: 'detail' as const, md: m })),
      md.map((m) => ({ op: 'mount' as const, md: m })),
      dev.map((d) => ({ op: 'smart' as const, device: d })),
      dev.map((d) => ({ op: 'examine' as const, device: d })),
      fc.constant({ op: 'umount' as const }),
    );
    fc.assert(
      fc.property(op, (o) => {
        expect(parseHelperArgv(helperArgv(o))).to.deep.equal(o);
      }),
      { numRuns: 300 },
    );
  });

  it('the helper grammar refuses anything outside the fixed command set', () => {
    const refused: [string[], RegExp][] = [
      [[], /no command/],
      [['rm', '-rf', '/'], /unknown command "rm"/],
      [['create', '/dev/md0', 'raid1', '/dev/sdb'], /at least two disks/],
      [['create', '/dev/md0', 'raid9', '/dev/sdb', '/dev/sdc', '--confirm=/dev/sdb,/dev/sdc'], /unsupported RAID level/],
      [['fail', '/dev/md0', '/dev/sdb', '--force'], /unknown option "--force"/],
      [['mount', '/dev/md0', '/etc'], /takes 1 argument/],
      [['mount', '/dev/sda1'], /not an md array device/],
      [['smart', '/dev/sda', '--confirm=x'], /takes no --confirm/],
      [['umount', '/srv/cairn/data'], /takes 0 arguments/],
      [['examine', '$(reboot)'], /not a disk device/],
      [['stop', '/dev/md0', '--confirm=a', '--confirm=b'], /--confirm given twice/],
    ];
    for (const [argv, re] of refused) expect(() => parseHelperArgv(argv), argv.join(' ')).to.throw(HwError, re);
  });

  describe('refusals on a live-looking host', () => {
    let paths: HostPaths;
    before(() => {
      paths = fakeHost();
    });

    it('reads mounts and swaps into system and mounted disks', () => {
      const info = readMountInfo(paths);
      expect([...info.systemDisks].sort()).to.deep.equal(['sda', 'sdc']);
      expect(info.mountedDisks.get('sdb')).to.deep.equal(['/media/usb stick']);
      expect(info.mountedDisks.get('sdd')).to.deep.equal(['/srv/cairn/data']);
      expect(parseMounts('short line\n')).to.deep.equal([]);
    });

    const refusal = async (op: HelperOp, re: RegExp, code = 'CAIRN_HW_REFUSED'): Promise<void> => {
      const runner = recorder();
      const err = await directPrivileged({ runner, paths }).run(op).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err, op.op).to.be.instanceOf(HwError);
      expect((err as HwError).message).to.match(re);
      expect((err as HwError).code).to.equal(code);
      expect(runner.calls, 'nothing may run').to.deep.equal([]);
    };

    it('requires the exact confirmation for every data-losing operation', async () => {
      await refusal({ op: 'create', md: '/dev/md1', level: 'raid1', devices: ['/dev/sdf', '/dev/sdg'], confirm: '' }, /confirm "\/dev\/sdf,\/dev\/sdg"/, 'CAIRN_HW_CONFIRM_REQUIRED');
      await refusal({ op: 'create', md: '/dev/md1', level: 'raid1', devices: ['/dev/sdf', '/dev/sdg'], confirm: '/dev/sdf' }, /erases every listed disk/, 'CAIRN_HW_CONFIRM_REQUIRED');
      await refusal({ op: 'add', md: '/dev/md0', device: '/dev/sdf', confirm: 'yes' }, /confirm "\/dev\/sdf"/, 'CAIRN_HW_CONFIRM_REQUIRED');
      await refusal({ op: 'fail', md: '/dev/md0', device: '/dev/sdd1', confirm: '' }, /confirm "\/dev\/sdd1"/, 'CAIRN_HW_CONFIRM_REQUIRED');
      await refusal({ op: 'remove', md: '/dev/md0', device: '/dev/sdd1', confirm: '' }, /confirm/, 'CAIRN_HW_CONFIRM_REQUIRED');
      await refusal({ op: 'stop', md: '/dev/md0', confirm: '' }, /confirm "\/dev\/md0"/, 'CAIRN_HW_CONFIRM_REQUIRED');
      await refusal({ op: 'mkfs', md: '/dev/md0', confirm: '/dev/md1' }, /erases everything on the array/, 'CAIRN_HW_CONFIRM_REQUIRED');
    });

    it('refuses the system disk, its partitions and the swap disk', async () => {
      await refusal({ op: 'create', md: '/dev/md1', level: 'raid1', devices: ['/dev/sda', '/dev/sdf'], confirm: '/dev/sda,/dev/sdf' }, /sda holds the running system/);
      await refusal({ op: 'add', md: '/dev/md0', device: '/dev/sda1', confirm: '/dev/sda1' }, /sda holds the running system/);
      await refusal({ op: 'create', md: '/dev/md1', level: 'raid1', devices: ['/dev/sdf', '/dev/sdc1'], confirm: '/dev/sdf,/dev/sdc1' }, /sdc holds the running system/);
    });

    it('refuses a disk with a mounted filesystem, and members of another array', async () => {
      await refusal({ op: 'create', md: '/dev/md1', level: 'raid1', devices: ['/dev/sdb', '/dev/sdf'], confirm: '/dev/sdb,/dev/sdf' }, /sdb has a mounted filesystem \(\/media\/usb stick\); unmount it first/);
      await refusal({ op: 'add', md: '/dev/md1', device: '/dev/sdd1', confirm: '/dev/sdd1' }, /sdd has a mounted filesystem/);
    });

    it('refuses to stop or format a mounted array, or create over a running one', async () => {
      await refusal({ op: 'stop', md: '/dev/md0', confirm: '/dev/md0' }, /mounted on \/srv\/cairn\/data; unmount it first/);
      await refusal({ op: 'mkfs', md: '/dev/md0', confirm: '/dev/md0' }, /refusing to format \/dev\/md0: it is mounted/);
      await refusal({ op: 'create', md: '/dev/md0', level: 'raid1', devices: ['/dev/sdf', '/dev/sdg'], confirm: '/dev/sdf,/dev/sdg' }, /already running/);
    });

    it('runs a confirmed operation on free disks, and only then', async () => {
      const runner = recorder();
      await directPrivileged({ runner, paths }).run({ op: 'create', md: '/dev/md1', level: 'raid1', devices: ['/dev/sdf', '/dev/sdg'], confirm: '/dev/sdf,/dev/sdg' });
      expect(runner.calls).to.have.length(1);
      expect(runner.calls[0].command).to.equal('/usr/sbin/mdadm');
      expect(runner.calls[0].args.slice(-2)).to.deep.equal(['/dev/sdf', '/dev/sdg']);
    });

    it('MdadmRaid goes through the privileged runner and reports failures clearly', async () => {
      const runner = recorder({ code: 1, stdout: '', stderr: 'mdadm: /dev/sdf is busy - skipping\n' });
      const raid = new MdadmRaid({ paths, privileged: directPrivileged({ runner, paths }) });
      const err = await raid.add({ md: '/dev/md0', device: '/dev/sdf', confirm: '/dev/sdf' }).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(HwError).with.property('code', 'CAIRN_HW_COMMAND_FAILED');
      expect((err as Error).message).to.match(/adding \/dev\/sdf to \/dev\/md0 failed \(exit 1\): mdadm: \/dev\/sdf is busy/);
      const missing = new MdadmRaid({ paths, privileged: directPrivileged({ runner: recorder({ code: 127, stdout: '', stderr: '' }), paths }) });
      await missing.create({ md: '/dev/md1', devices: ['/dev/sdf', '/dev/sdg'], confirm: '/dev/sdf,/dev/sdg' }).then(
        () => expect.fail('should fail'),
        (e: unknown) => expect(e).to.be.instanceOf(HwError).with.property('code', 'CAIRN_HW_UNAVAILABLE'),
      );
    });

    it('the helper main refuses with exit 2 and runs the tool otherwise', async () => {
      const out: string[] = [];
      const err: string[] = [];
      const io = { stdout: (s: string) => out.push(s), stderr: (s: string) => err.push(s) };
      const runner = recorder({ code: 0, stdout: 'mdadm: added /dev/sdf\n', stderr: '' });
      expect(await helperMain(['add', '/dev/md0', '/dev/sda1', '--confirm=/dev/sda1'], { runner, paths, io })).to.equal(2);
      expect(err.join('')).to.match(/holds the running system.*\[CAIRN_HW_REFUSED\]/);
      expect(await helperMain(['add', '/dev/md0', '/dev/sdf', '--confirm=/dev/sdf'], { runner, paths, io })).to.equal(0);
      expect(out.join('')).to.equal('mdadm: added /dev/sdf\n');
      expect(runner.calls).to.deep.equal([{ command: '/usr/sbin/mdadm', args: ['--manage', '/dev/md0', '--add', '/dev/sdf'] }]);
    });
  });

  it('the helper client sends the operation through the configured command (sudo)', async () => {
    const runner = recorder();
    const p = helperPrivileged({ runner, command: ['/usr/bin/sudo', '-n', '/usr/bin/node', '/opt/cairn/dist/src/hw/disk-helper.js'] });
    const op: HelperOp = { op: 'fail', md: '/dev/md0', device: '/dev/sdb', confirm: '/dev/sdb' };
    await p.run(op);
    expect(runner.calls).to.deep.equal([{ command: '/usr/bin/sudo', args: ['-n', '/usr/bin/node', '/opt/cairn/dist/src/hw/disk-helper.js', 'fail', '/dev/md0', '/dev/sdb', '--confirm=/dev/sdb'] }]);
    expect(confirmationFor(op)).to.equal('/dev/sdb');
    await p.run({ ...op, confirm: 'no' }).then(
      () => expect.fail('should refuse'),
      (e: unknown) => expect(e).to.be.instanceOf(HwError).with.property('code', 'CAIRN_HW_CONFIRM_REQUIRED'),
    );
    expect(runner.calls).to.have.length(1);
  });
});
