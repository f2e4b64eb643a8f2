import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { ManualClock } from '../../../src/hw/clock';
import { createHardware, runHwCommand, Hardware } from '../../../src/hw/index';
import { SimulatedBox } from '../../../src/hw/sim';
import { HwError } from '../../../src/hw/errors';
import { CairnError } from '../../../src/core/errors';
import { tmpDir } from './fixtures';

const MiB = 1024 * 1024;

describe('hw/simulated profile', () => {
  let stateDir: string;
  let clock: ManualClock;
  let hw: Hardware;

  beforeEach(() => {
    stateDir = tmpDir('cairn-hw-sim-');
    clock = new ManualClock(Date.UTC(2026, 0, 1));
    // 8 MiB disks rebuilt at 1 MiB/s: a rebuild takes 8 simulated seconds.
    hw = createHardware({ profile: 'simulated', stateDir, clock, config: { simulated: { disks: 2, diskSizeMiB: 8, rebuildMiBps: 1 } } });
  });

  afterEach(() => {
    hw.stop();
    fs.rmSync(stateDir, { recursive: true, force: true });
  });

  it('goes through degrade -> replace -> rebuild with status and LED pattern asserted at each step', async () => {
    // 1. fresh box: clean RAID 1 over two sparse image files
    let st = await hw.status();
    expect(st.state).to.equal('healthy');
    expect(st.led.pattern).to.equal('idle');
    expect(st.raid.arrays[0]).to.include({ name: 'md0', level: 'raid1', state: 'clean', degraded: false, raidDisks: 2, workingDisks: 2 });
    expect(st.disks.map((d) => [d.name, d.class, d.health.health])).to.deep.equal([
      ['disk1', 'member', 'ok'],
      ['disk2', 'member', 'ok'],
    ]);
    const image1 = st.disks[0].device;
    expect(fs.statSync(image1).size).to.equal(8 * MiB);
    expect(fs.statSync(image1).blocks * 512).to.be.below(1 * MiB); // sparse

    // a backup running on a healthy box blinks the activity LED
    hw.jobStarted('job-1', 'backup');
    expect(hw.leds.pattern).to.equal('backup');
    hw.jobFinished('job-1');
    expect(hw.leds.pattern).to.equal('idle');

    // 2. disk 2 dies: degraded, attention, disk classified failing
    hw.sim!.failDisk(2);
    st = await hw.status();
    expect(st.state).to.equal('attention');
    expect(st.led.pattern).to.equal('attention');
    expect(st.raid.arrays[0]).to.include({ state: 'degraded', degraded: true, workingDisks: 1 });
    expect(st.raid.arrays[0].members.map((m) => m.state)).to.deep.equal(['active', 'faulty']);
    expect(st.disks[1]).to.include({ class: 'failing' });
    expect(st.reasons.join('\n')).to.match(/array md0 is degraded: 1 of 2 disks working/);
    expect(st.reasons.join('\n')).to.match(/disk disk2 \(CAIRNSIM0002\) is failing/);
    // attention wins over backup
    hw.jobStarted('job-2', 'backup');
    expect(hw.leds.pattern).to.equal('attention');
    hw.jobFinished('job-2');

    // 3. the user swaps disk 2: recovery starts at 0%
    hw.sim!.replaceDisk(2);
    st = await hw.status();
    expect(st.state).to.equal('attention');
    expect(st.led.pattern).to.equal('attention');
    expect(st.raid.arrays[0]).to.include({ state: 'recovering' });
    expect(st.raid.arrays[0].sync).to.include({ action: 'recovery', percent: 0 });
    expect(st.raid.arrays[0].members.map((m) => m.state)).to.deep.equal(['active', 'rebuilding']);
    expect(st.disks[1]).to.include({ serial: 'CAIRNSIM0003', class: 'member' });
    expect(fs.existsSync(path.join(stateDir, 'hw-sim', 'bay2-CAIRNSIM0002.img'))).to.equal(false);

    // 4. time passes: progress moves with the clock
    clock.advance(2000);
    st = await hw.status();
    expect(st.raid.arrays[0].sync?.percent).to.equal(25);
    expect(st.reasons[0]).to.match(/rebuilding \(25%/);
    clock.advance(4000);
    st = await hw.status();
    expect(st.raid.arrays[0].sync?.percent).to.equal(75);
    expect(st.led.pattern).to.equal('attention');

    // 5. rebuild completes: clean, idle, and the new disk now carries the mirrored data
    clock.advance(2500);
    st = await hw.status();
    expect(st.state).to.equal('healthy');
    expect(st.led.pattern).to.equal('idle');
    expect(st.raid.arrays[0]).to.include({ state: 'clean', degraded: false, workingDisks: 2, sync: null });
    const a = fs.readFileSync(st.disks[0].device).subarray(0, 64);
    const b = fs.readFileSync(st.disks[1].device).subarray(0, 64);
    expect(b.toString()).to.match(/^CAIRN simulated raid1 array md0/);
    expect(b.equals(a)).to.equal(true);
    expect(fs.statSync(st.disks[1].device).blocks * 512).to.be.below(1 * MiB); // zero chunks skipped
  });

  it('losing both disks of a mirror is an error, shown as the error pattern', async () => {
    hw.sim!.failDisk(1);
    hw.sim!.failDisk(2);
    const st = await hw.status();
    expect(st.state).to.equal('error');
    expect(st.led.pattern).to.equal('error');
    expect(st.raid.arrays[0].state).to.equal('failed');
    expect(st.summary).to.match(/^error: array md0 has FAILED/);
    // a new disk cannot rebuild from nothing
    hw.sim!.replaceDisk(2);
    expect((await hw.status()).raid.arrays[0].state).to.equal('failed');
  });

  it('keeps its state in a JSON file that another process (another instance) sees', async () => {
    const other = new SimulatedBox({ dir: path.join(stateDir, 'hw-sim'), clock });
    other.failDisk(1);
    const st = await hw.status();
    expect(st.raid.arrays[0].members[0].state).to.equal('faulty');
    const saved = JSON.parse(fs.readFileSync(path.join(stateDir, 'hw-sim', 'state.json'), 'utf8')) as { disks: { state: string }[] };
    expect(saved.disks[0].state).to.equal('faulty');
    expect(fs.readdirSync(path.join(stateDir, 'hw-sim')).filter((f) => f.endsWith('.lock') || f.endsWith('.tmp'))).to.deep.equal([]);
  });

  it('implements the Raid operations with the same confirmations as mdadm', async () => {
    const st = await hw.status();
    const dev2 = st.raid.arrays[0].members[1].device;
    await hw.raid.fail({ md: '/dev/md0', device: dev2, confirm: 'yes' }).then(
      () => expect.fail('needs confirmation'),
      (e: unknown) => expect(e).to.be.instanceOf(HwError).with.property('code', 'CAIRN_HW_CONFIRM_REQUIRED'),
    );
    await hw.raid.remove({ md: '/dev/md0', device: dev2, confirm: dev2 }).then(
      () => expect.fail('active member'),
      (e: unknown) => expect((e as Error).message).to.match(/mark it failed first/),
    );
    await hw.raid.fail({ md: '/dev/md0', device: dev2, confirm: dev2 });
    expect((await hw.status()).raid.arrays[0].state).to.equal('degraded');
    await hw.raid.remove({ md: '/dev/md0', device: dev2, confirm: dev2 });
    await hw.raid.add({ md: '/dev/md0', device: dev2, confirm: dev2 });
    expect((await hw.status()).raid.arrays[0].state).to.equal('recovering');
    await hw.raid.stop({ md: '/dev/md0', confirm: '/dev/md0' });
    const stopped = await hw.status();
    expect(stopped.raid.arrays[0].state).to.equal('inactive');
    expect(stopped.state).to.equal('error');
    await hw.raid.assemble({ md: '/dev/md0', devices: [] });
    expect((await hw.status()).raid.arrays[0].state).to.equal('recovering');
    await hw.raid.fail({ md: '/dev/md9', device: dev2, confirm: dev2 }).then(
      () => expect.fail('wrong md'),
      (e: unknown) => expect((e as Error).message).to.match(/one array, \/dev\/md0/),
    );
  });

  it('refuses impossible requests with clear errors', () => {
    const box = hw.sim!;
    expect(() => box.failDisk(3)).to.throw(HwError, /no disk bay 3; bays are 1 to 2/);
    expect(() => box.replaceDisk(1)).to.throw(HwError, /disk 1 is healthy and in use; fail it first/);
    box.failDisk(1);
    expect(() => box.failDisk(1)).to.throw(HwError, /already failed/);
    fs.writeFileSync(path.join(stateDir, 'hw-sim', 'state.json'), '{broken');
    expect(() => box.read()).to.throw(HwError, /not valid JSON; run "cairnd hw simulate reset"/);
    box.reset();
    expect(box.read().disks.every((d) => d.state === 'active')).to.equal(true);
  });

  describe('cairnd hw commands', () => {
    const run = (argv: string[], json = false): Promise<string> => runHwCommand(argv, { stateDir, json, clock, config: { simulated: { diskSizeMiB: 8, rebuildMiBps: 1 } } });

    it('simulate status / fail-disk / replace-disk / tick / reset print what a user needs', async () => {
      let out = await run(['simulate', 'status']);
      expect(out).to.match(/array md0 \(raid1, 2 bays\): clean/);
      expect(out).to.match(/LED: idle/);
      out = await run(['simulate', 'fail-disk', '2']);
      expect(out).to.match(/^disk 2 failed/);
      expect(out).to.match(/bay 2 {2}CAIRNSIM0002 {2}faulty +health failing/);
      expect(out).to.match(/LED: attention/);
      out = await run(['simulate', 'replace-disk', '2']);
      expect(out).to.match(/recovering 0%/);
      out = await run(['simulate', 'tick', '4']);
      expect(out).to.match(/recovering 50%/);
      const json = JSON.parse(await run(['simulate', 'tick', '10'], true)) as { status: { state: string; led: { pattern: string } } };
      expect(json.status.state).to.equal('healthy');
      expect(json.status.led.pattern).to.equal('idle');
      out = await run(['status']);
      expect(out).to.match(/^hardware \(simulated\): healthy/);
      out = await run(['simulate', 'reset']);
      expect(out).to.match(/reset/);
    });

    it('gives usage errors for bad commands', async () => {
      for (const argv of [['simulate', 'fail-disk'], ['simulate', 'fail-disk', 'two'], ['simulate', 'explode'], ['frobnicate'], ['status', '--profile', 'amiga'], ['simulate', 'tick', '-3']]) {
        const err = await run(argv).then(
          () => null,
          (e: unknown) => e,
        );
        expect(err, argv.join(' ')).to.be.instanceOf(CairnError).with.property('code', 'CAIRN_USAGE');
        expect((err as Error).message).to.match(/usage: cairnd hw/);
      }
      expect(await run([])).to.match(/^usage: cairnd hw status/);
    });
  });
});
