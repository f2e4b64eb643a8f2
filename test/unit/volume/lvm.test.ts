import { expect } from 'chai';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  CommandResult, defaultCowBytes, lvcreateSnapshotArgs, lvremoveArgs, lvsArgs, parseLvs, withLvmSnapshot,
} from '../../../src/agent/volume/lvm';
import { CairnError } from '../../../src/core/errors';

const FIXTURES = path.resolve(__dirname, '../../../../test/fixtures/volume');
const fixture = (n: string): string => fs.readFileSync(path.join(FIXTURES, n), 'utf8');

describe('volume/lvm', () => {
  it('parses lvs JSON: a classic LV, a thin LV; an empty report is an error', () => {
    expect(parseLvs(fixture('lvs-one.json'))).to.deep.equal({ vg: 'vg0', lv: 'home', sizeBytes: 10737418240, thin: false });
    expect(parseLvs(fixture('lvs-thin.json'))).to.deep.equal({ vg: 'vg0', lv: 'vm-disk', sizeBytes: 34359738368, thin: true });
    expect(() => parseLvs(fixture('lvs-empty.json'))).to.throw(CairnError, 'exactly one');
    expect(() => parseLvs('not json')).to.throw(CairnError);
  });

  it('builds lvs, lvcreate --snapshot (classic with a COW size, thin without) and lvremove arguments', () => {
    expect(lvsArgs('vg0', 'home')).to.deep.equal(['lvs', '--reportformat', 'json', '--units', 'b', '--nosuffix', '-o', 'vg_name,lv_name,lv_size,pool_lv,lv_attr', 'vg0/home']);
    const classic = { vg: 'vg0', lv: 'home', sizeBytes: 10 * 2 ** 30, thin: false };
    expect(lvcreateSnapshotArgs(classic, 'cairn-snap-1-ab')).to.deep.equal(['lvcreate', '--snapshot', '--name', 'cairn-snap-1-ab', '--size', `${2 ** 30}b`, 'vg0/home']);
    expect(lvcreateSnapshotArgs(classic, 's', 5000)).to.include('5000b');
    expect(lvcreateSnapshotArgs({ ...classic, thin: true }, 's')).to.deep.equal(['lvcreate', '--snapshot', '--name', 's', '--setactivationskip', 'n', '--activate', 'y', 'vg0/home']);
    expect(lvremoveArgs('vg0', 's')).to.deep.equal(['lvremove', '--force', 'vg0/s']);
    expect(defaultCowBytes(100 * 2 ** 20)).to.equal(100 * 2 ** 20); // never more than the origin
    expect(defaultCowBytes(2 ** 30)).to.equal(256 * 2 ** 20);
    // names that could smuggle options or paths are refused
    for (const bad of ['-rf', 'a/b', '', 'a b', '../x']) expect(() => lvsArgs(bad, 'x'), bad).to.throw(CairnError);
  });

  it('takes, reads and drops a snapshot, and drops it when the read fails', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-lvm-'));
    try {
      const calls: string[][] = [];
      const runner = async (argv: string[]): Promise<CommandResult> => {
        calls.push(argv);
        if (argv[0] === 'lvs') return { code: 0, stdout: fixture('lvs-one.json'), stderr: '' };
        if (argv[0] === 'lvcreate') fs.writeFileSync(path.join(dir, argv[3]), '');
        return { code: 0, stdout: '', stderr: '' };
      };
      const devicePath = (vg: string, n: string): string => path.join(dir, n);
      const got = await withLvmSnapshot('vg0', 'home', async (dev) => `read ${path.basename(dev)}`, { runner, devicePath });
      expect(calls.map((c) => c[0])).to.deep.equal(['lvs', 'lvcreate', 'lvremove']);
      const name = calls[1][3];
      expect(name).to.match(/^cairn-snap-\d+-[0-9a-f]{8}$/);
      expect(got).to.equal(`read ${name}`);
      expect(calls[2]).to.deep.equal(['lvremove', '--force', `vg0/${name}`]);

      calls.length = 0;
      try {
        await withLvmSnapshot('vg0', 'home', async () => {
          throw new Error('read failed');
        }, { runner, devicePath });
        expect.fail('no error');
      } catch (err) {
        expect((err as Error).message).to.equal('read failed');
      }
      expect(calls.map((c) => c[0])).to.deep.equal(['lvs', 'lvcreate', 'lvremove']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports lvcreate failure with lvm\'s own words, and a failed drop with the command to run by hand', async () => {
    const failCreate = async (argv: string[]): Promise<CommandResult> =>
      argv[0] === 'lvs' ? { code: 0, stdout: fixture('lvs-one.json'), stderr: '' } : { code: 5, stdout: '', stderr: '  Volume group "vg0" has insufficient free space (10 extents): 64 required.\n' };
    try {
      await withLvmSnapshot('vg0', 'home', async () => 1, { runner: failCreate });
      expect.fail('no error');
    } catch (err) {
      expect(CairnError.is(err, 'CAIRN_VOLUME_LVM_FAILED')).to.equal(true);
      expect((err as Error).message).to.contain('insufficient free space');
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cairn-lvm-'));
    try {
      const failDrop = async (argv: string[]): Promise<CommandResult> => {
        if (argv[0] === 'lvs') return { code: 0, stdout: fixture('lvs-one.json'), stderr: '' };
        if (argv[0] === 'lvcreate') {
          fs.writeFileSync(path.join(dir, argv[3]), '');
          return { code: 0, stdout: '', stderr: '' };
        }
        return { code: 5, stdout: '', stderr: 'Logical volume in use.' };
      };
      const warnings: string[] = [];
      const r = await withLvmSnapshot('vg0', 'home', async () => 42, { runner: failDrop, devicePath: (_, n) => path.join(dir, n), onDropFailed: (e) => warnings.push(e.message) });
      expect(r).to.equal(42);
      expect(warnings[0]).to.match(/lvremove --force vg0\/cairn-snap-/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
