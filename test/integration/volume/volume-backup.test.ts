import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Harness } from '../harness';
import { RunResult } from '../../../scripts/lib/procs';
import { verifyVolumeSnapshot } from '../../../src/agent/volume/volume-restore';
import { dataKeysFromJson } from '../../../src/core/keys';
import { SnapshotInfo } from '../../../src/core/api';

/**
 * Volume backup end to end: a real box and agent, a 256 MB ext4 image holding files, read
 * through a real loop device when this machine allows it (root + losetup), else as an image file.
 */
const MB = 1024 * 1024;
const IMAGE_BYTES = 256 * MB;

interface VolumeJson {
  snapshot: string;
  size: number;
  block_size: number;
  bytes_read: number;
  bytes_new: number;
  bytes_uploaded: number;
  chunks_new: number;
  blocks_total: number;
  blocks_changed: number;
  blocks_zero: number;
  blocks_data: number;
  files: number;
  duration_s: number;
  warnings: string[];
}

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function loopSupport(): { ok: boolean; why: string } {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) return { ok: false, why: 'not root' };
  const r = spawnSync('losetup', ['-f'], { encoding: 'utf8' });
  if (r.status !== 0) return { ok: false, why: `losetup -f failed: ${(r.stderr || String(r.error)).trim()}` };
  return { ok: true, why: 'root and losetup work' };
}

function errorOf(r: RunResult): { code: string; message: string } {
  return (JSON.parse(r.stdout) as { error: { code: string; message: string } }).error;
}

describe('integration: volume backup and restore', function () {
  this.timeout(120_000);
  let h: Harness;
  const loop = loopSupport();
  const loops: string[] = [];
  const mounts: string[] = [];
  let image: string;
  /** what the backup reads: the loop device over `image`, or `image` itself */
  let source: string;

  const attach = (file: string): string => {
    const dev = sh('losetup', ['-f', '--show', file]).trim();
    loops.push(dev);
    return dev;
  };
  const backup = (args: string[]): Promise<RunResult> => h.cairn(['backup', '--json', ...args]);
  const backupJson = async (args: string[]): Promise<VolumeJson> => {
    const r = await backup(args);
    expect(r.code, r.stderr + r.stdout).to.be.oneOf([0, 3]);
    return JSON.parse(r.stdout) as VolumeJson;
  };
  /** debugfs -w with one command per line, on the device the backup reads (so no page cache sits between them) */
  const debugfs = (target: string, cmds: string[]): void => {
    const f = h.path(`debugfs-${randomBytes(3).toString('hex')}.cmd`);
    fs.writeFileSync(f, cmds.join('\n') + '\n');
    const r = spawnSync('debugfs', ['-w', '-f', f, target], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`debugfs failed: ${r.stderr}`);
  };

  before(async () => {
    // eslint-disable-next-line no-console
    console.log(`      volume tests use ${loop.ok ? 'real loop devices' : 'image files'} (${loop.why})`);
    h = await new Harness('cairn-vol').up();
    image = h.path('fs.img');
    fs.writeFileSync(image, '');
    fs.truncateSync(image, IMAGE_BYTES);
    sh('mkfs.ext4', ['-q', '-F', '-L', 'cairnvol', image]);
    source = loop.ok ? attach(image) : image;
    const cmds: string[] = ['mkdir /data'];
    for (let i = 0; i < 24; i++) {
      const f = h.path(`src-${i}.bin`);
      fs.writeFileSync(f, randomBytes(MB + i * 37_000));
      cmds.push(`write ${f} /data/file-${String(i).padStart(2, '0')}.bin`);
    }
    fs.writeFileSync(h.path('notes.txt'), 'hello volume\n'.repeat(1000));
    cmds.push(`write ${h.path('notes.txt')} /notes.txt`);
    debugfs(source, cmds);
  });

  after(async () => {
    for (const m of mounts.reverse()) spawnSync('umount', [m]);
    for (const l of loops.reverse()) spawnSync('losetup', ['-d', l]);
    await h?.close();
  });

  let first: VolumeJson;

  it('backs up a 256 MB ext4 volume: zero blocks are holes, data blocks are uploaded once', async () => {
    first = await backupJson(['--volume', source, '--source', 'vol']);
    expect(first.size).to.equal(IMAGE_BYTES);
    expect(first.block_size).to.equal(MB);
    expect(first.blocks_total).to.equal(256);
    expect(first.blocks_zero).to.be.greaterThan(100);
    expect(first.blocks_data + first.blocks_zero).to.equal(256);
    expect(first.blocks_changed).to.equal(first.blocks_data);
    expect(first.bytes_read).to.equal(IMAGE_BYTES);
    // 24 random files of ~1.4 MB on average: about 33 MB that does not compress, plus metadata
    expect(first.bytes_uploaded).to.be.within(30 * MB, 60 * MB);
    for (const k of ['snapshot', 'files', 'bytes_scanned', 'bytes_read', 'bytes_new', 'bytes_uploaded', 'chunks_new', 'duration_s', 'blocks_total', 'blocks_changed', 'blocks_zero']) {
      expect(first, k).to.have.property(k);
    }
    const ls = await h.cairn(['ls', first.snapshot]);
    expect(ls.code, ls.stderr).to.equal(0);
    expect(ls.stdout).to.contain('256.0 MiB (268435456 bytes)').and.contain('block size  1.0 MiB').and.contain(`${first.blocks_zero} zero`);
    const lsj = await h.cairnJson<{ kind: string; size: number; block_size: number; blocks_zero: number; blocks_changed: number }>(['ls', first.snapshot]);
    expect(lsj).to.deep.include({ kind: 'volume', size: IMAGE_BYTES, block_size: MB, blocks_zero: first.blocks_zero, blocks_changed: first.blocks_changed });
  });

  it('after one file changes inside, the second run uploads under 5% of the image', async () => {
    const f = h.path('changed.bin');
    fs.writeFileSync(f, randomBytes(MB));
    debugfs(source, ['rm /data/file-07.bin', `write ${f} /data/file-07.bin`]);
    const second = await backupJson(['--volume', source, '--source', 'vol']);
    expect(second.blocks_changed).to.be.within(1, 12);
    expect(second.bytes_uploaded).to.be.below(0.05 * IMAGE_BYTES);
    expect(second.bytes_read).to.equal(IMAGE_BYTES);
    // eslint-disable-next-line no-console
    console.log(`      incremental: ${second.blocks_changed} blocks changed, ${(second.bytes_uploaded / MB).toFixed(2)} MB uploaded (${((second.bytes_uploaded / IMAGE_BYTES) * 100).toFixed(2)}% of the image)`);
    const ls = await h.cairnJson<{ blocks_changed: number; parent: string }>(['ls', second.snapshot]);
    expect(ls.blocks_changed).to.equal(second.blocks_changed);
    expect(ls.parent).to.equal(first.snapshot);
  });

  it('restores to a new sparse image that cmp finds equal and e2fsck finds clean', async () => {
    const out = h.path('restored.img');
    const r = await h.cairn(['restore', 'latest', '--source', 'vol', '--target', out, '--json']);
    expect(r.code, r.stderr + r.stdout).to.equal(0);
    const res = JSON.parse(r.stdout) as { verified: boolean; target_kind: string; blocks_zero: number };
    expect(res.verified).to.equal(true);
    expect(res.target_kind).to.equal('file');
    expect(spawnSync('cmp', [source, out]).status, 'cmp').to.equal(0);
    const fsck = spawnSync('e2fsck', ['-fn', out], { encoding: 'utf8' });
    expect(fsck.status, fsck.stdout + fsck.stderr).to.equal(0);
    const st = fs.statSync(out);
    expect(st.size).to.equal(IMAGE_BYTES);
    expect(st.blocks * 512, 'zero blocks are holes').to.be.below(IMAGE_BYTES - res.blocks_zero * MB + 4 * MB);
    // the first snapshot restores too, and differs from the second
    const out1 = h.path('restored-1.img');
    expect((await h.cairn(['restore', first.snapshot, '--target', out1])).code).to.equal(0);
    expect(spawnSync('cmp', ['-s', out1, out]).status).to.equal(1);
  });

  it('verifies a volume snapshot on the box without writing anything', async () => {
    const client = h.client();
    try {
      const snap = await client.json<SnapshotInfo>('GET', `/v1/snapshots/${first.snapshot}`);
      const v = await verifyVolumeSnapshot(client, dataKeysFromJson(h.agentConfig().keys), snap);
      expect(v.failures).to.deep.equal([]);
      expect(v.blocks).to.equal(first.blocks_data);
    } finally {
      client.close();
    }
  });

  it('refuses a non-empty target file unless --force, and restores over it with --force', async () => {
    const t = h.path('occupied.img');
    fs.writeFileSync(t, 'precious');
    const r = await h.cairn(['restore', 'latest', '--source', 'vol', '--target', t, '--json']);
    expect(r.code).to.equal(1);
    expect(errorOf(r).code).to.equal('CAIRN_VOLUME_TARGET_INVALID');
    expect(errorOf(r).message).to.contain('--force');
    expect(fs.readFileSync(t, 'utf8')).to.equal('precious');
    const ok = await h.cairn(['restore', 'latest', '--source', 'vol', '--target', t, '--force']);
    expect(ok.code, ok.stderr).to.equal(0);
    expect(spawnSync('cmp', [source, t]).status).to.equal(0);
  });

  it('restores onto a block device at least as large, and refuses a smaller one', async function () {
    if (!loop.ok) {
      // eslint-disable-next-line no-console
      console.log(`      skipped: needs loop devices (${loop.why})`);
      this.skip();
    }
    const big = h.path('dev-big.img');
    fs.writeFileSync(big, '');
    fs.truncateSync(big, IMAGE_BYTES + 8 * MB);
    fs.writeFileSync(big, randomBytes(MB)); // old content in what will be a zero block of the volume
    fs.truncateSync(big, IMAGE_BYTES + 8 * MB);
    const dev = attach(big);
    const r = await h.cairn(['restore', 'latest', '--source', 'vol', '--target', dev, '--json']);
    expect(r.code, r.stderr + r.stdout).to.equal(0);
    expect((JSON.parse(r.stdout) as { target_kind: string }).target_kind).to.equal('device');
    expect(spawnSync('cmp', ['-n', String(IMAGE_BYTES), source, dev]).status).to.equal(0);
    const small = h.path('dev-small.img');
    fs.writeFileSync(small, '');
    fs.truncateSync(small, 128 * MB);
    const sdev = attach(small);
    const s = await h.cairn(['restore', 'latest', '--source', 'vol', '--target', sdev, '--json']);
    expect(s.code).to.equal(1);
    expect(errorOf(s).code).to.equal('CAIRN_VOLUME_TARGET_INVALID');
  });

  it('refuses a device mounted read-write without --allow-mounted, and says why', async function () {
    if (!loop.ok) {
      // eslint-disable-next-line no-console
      console.log(`      skipped: mounting needs root and loop devices (${loop.why})`);
      this.skip();
    }
    const mnt = h.path('mnt');
    fs.mkdirSync(mnt);
    sh('mount', [source, mnt]);
    mounts.push(mnt);
    try {
      const r = await backup(['--volume', source, '--source', 'vol']);
      expect(r.code).to.equal(1);
      const e = errorOf(r);
      expect(e.code).to.equal('CAIRN_VOLUME_MOUNTED');
      expect(e.message).to.contain(`mounted read-write at ${mnt}`).and.contain('consistent').and.contain('--allow-mounted');
      // the image file behind the mounted loop device is the same volume
      const r2 = await backup(['--volume', image, '--source', 'vol-img']);
      expect(errorOf(r2).code).to.equal('CAIRN_VOLUME_MOUNTED');
      // nor is a mounted device a restore target
      const r3 = await h.cairn(['restore', 'latest', '--source', 'vol', '--target', source, '--json']);
      expect(errorOf(r3).code).to.equal('CAIRN_VOLUME_MOUNTED');
      // with the flag it runs, and warns
      const forced = await backup(['--volume', source, '--source', 'vol-mounted', '--allow-mounted']);
      expect(forced.code, forced.stdout + forced.stderr).to.equal(3);
      expect(forced.stderr).to.contain('mounted read-write');
      // read-only is fine
      sh('mount', ['-o', 'remount,ro', mnt]);
      const ro = await backup(['--volume', source, '--source', 'vol-ro']);
      expect(ro.code, ro.stdout + ro.stderr).to.equal(0);
    } finally {
      sh('umount', [mnt]);
      mounts.pop();
    }
  });

  it('a mostly-empty image costs almost nothing to store', async () => {
    const empty = h.path('empty.img');
    fs.writeFileSync(empty, '');
    fs.truncateSync(empty, IMAGE_BYTES);
    sh('mkfs.ext4', ['-q', '-F', empty]);
    const before = h.storeListing();
    const r = await backupJson(['--volume', empty, '--source', 'empty']);
    const stored = h.storeListing().filter((x) => !before.includes(x)).reduce((n, x) => n + Number(x.slice(x.lastIndexOf(':') + 1)), 0);
    expect(r.blocks_zero).to.be.greaterThan(200);
    expect(r.bytes_uploaded).to.be.below(0.01 * IMAGE_BYTES);
    expect(stored).to.be.below(0.01 * IMAGE_BYTES);
    // eslint-disable-next-line no-console
    console.log(`      empty 256 MB ext4: ${r.blocks_zero} zero blocks, ${(r.bytes_uploaded / 1024).toFixed(0)} KiB uploaded, ${(stored / 1024).toFixed(0)} KiB stored`);
  });

  it('block size is chosen at the first backup of a source and fixed after', async () => {
    const img = h.path('small.img');
    fs.writeFileSync(img, Buffer.concat([randomBytes(300_000), Buffer.alloc(700_000), randomBytes(50_001)]));
    const a = await backupJson(['--volume', img, '--source', 'small', '--block-size', '256K']);
    expect(a.block_size).to.equal(256 * 1024);
    expect(a.blocks_total).to.equal(5);
    expect(a.blocks_zero).to.equal(1); // bytes 524288..786431 are all zero
    const bad = await backup(['--volume', img, '--source', 'small', '--block-size', '1M']);
    expect(bad.code).to.equal(2);
    expect(errorOf(bad).message).to.contain('fixed by its first backup');
    const b = await backupJson(['--volume', img, '--source', 'small']);
    expect(b.block_size).to.equal(256 * 1024);
    expect(b.blocks_changed).to.equal(0);
    const out = h.path('small-out.img');
    expect((await h.cairn(['restore', 'latest', '--source', 'small', '--target', out])).code).to.equal(0);
    expect(fs.readFileSync(out).equals(fs.readFileSync(img))).to.equal(true);
    expect((await backup(['--volume', img, '--source', 'other', '--block-size', '3K'])).code).to.equal(2);
    // a volume snapshot cannot be listed by path
    expect((await h.cairn(['ls', `${b.snapshot}:etc`])).code).to.equal(2);
  });

  it('a source that holds file backups is not mixed with a volume', async () => {
    const dir = h.path('some-files');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'a.txt'), 'a');
    expect((await h.cairn(['backup', dir, '--source', 'mixed'])).code).to.equal(0);
    const r = await backup(['--volume', h.path('small.img'), '--source', 'mixed']);
    expect(r.code).to.equal(2);
    expect(errorOf(r).message).to.contain('holds file backups');
  });

  it('backs up an LVM volume mounted read-write through --lvm-snapshot (needs lvm2 and device-mapper)', async function () {
    const lv = spawnSync('lvcreate', ['--version'], { encoding: 'utf8' });
    const dm = spawnSync('dmsetup', ['version'], { encoding: 'utf8' });
    const why = !loop.ok ? `no loop devices (${loop.why})` : lv.status !== 0 ? 'lvm2 is not installed' : !/Driver version/.test(dm.stdout ?? '') ? 'the kernel has no device-mapper driver' : '';
    if (why) {
      // eslint-disable-next-line no-console
      console.log(`      skipped: ${why}; --lvm-snapshot argument building and take/read/drop are covered by test/unit/volume/lvm.test.ts`);
      this.skip();
    }
    const vg = `cairnit${randomBytes(3).toString('hex')}`;
    const pvImg = h.path('pv.img');
    fs.writeFileSync(pvImg, '');
    fs.truncateSync(pvImg, 400 * MB);
    const pv = attach(pvImg);
    const mnt = h.path('lvmnt');
    try {
      sh('pvcreate', ['-q', pv]);
      sh('vgcreate', ['-q', vg, pv]);
      sh('lvcreate', ['-q', '-y', '-L', '96M', '-n', 'data', vg]);
      const dev = `/dev/${vg}/data`;
      sh('mkfs.ext4', ['-q', '-F', dev]);
      fs.mkdirSync(mnt);
      sh('mount', [dev, mnt]);
      mounts.push(mnt);
      fs.writeFileSync(path.join(mnt, 'live.bin'), randomBytes(3 * MB));
      const refused = await backup(['--volume', dev, '--source', 'lvm']);
      expect(errorOf(refused).code).to.equal('CAIRN_VOLUME_MOUNTED');
      expect(errorOf(refused).message).to.contain('--lvm-snapshot');
      const r = await backupJson(['--volume', dev, '--source', 'lvm', '--lvm-snapshot', '--lvm-snapshot-size', '64M']);
      expect(r.size).to.equal(96 * MB);
      expect(sh('lvs', ['--noheadings', '-o', 'lv_name', vg])).to.not.contain('cairn-snap');
      const out = h.path('lvm-restored.img');
      expect((await h.cairn(['restore', r.snapshot, '--target', out])).code).to.equal(0);
      const fsck = spawnSync('e2fsck', ['-fn', out], { encoding: 'utf8' });
      expect(fsck.status, fsck.stdout + fsck.stderr).to.be.oneOf([0]);
    } finally {
      spawnSync('umount', [mnt]);
      if (mounts[mounts.length - 1] === mnt) mounts.pop();
      spawnSync('vgremove', ['-q', '-f', vg]);
      spawnSync('pvremove', ['-q', pv]);
    }
  });
});
