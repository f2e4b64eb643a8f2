import { expect } from 'chai';
import { ManualClock } from '../../../src/hw/clock';
import { createHardware } from '../../../src/hw/index';
import { openGpio } from '../../../src/hw/gpio';
import { hostPaths } from '../../../src/hw/host-paths';
import { DEFAULT_LED_PINS } from '../../../src/hw/leds';
import { CairnError } from '../../../src/core/errors';
import { fakeRoot, tmpDir } from './fixtures';

describe('hw/createHardware', () => {
  it('linux profile on a host without md: a status with a note, never an exception', async () => {
    const root = fakeRoot({ 'proc/mounts': '/dev/vda / ext4 rw 0 0\n' });
    const hw = createHardware({
      profile: 'linux',
      stateDir: tmpDir(),
      clock: new ManualClock(),
      config: { hostRoot: root },
      privileged: { run: async () => ({ code: 1, stdout: '{"json_format_version":[1,0],"smartctl":{"messages":[{"string":"/dev/vda: Unable to detect device type","severity":"error"}],"exit_status":1}}', stderr: '' }) },
    });
    const st = await hw.status();
    expect(st.raid).to.deep.include({ available: false, arrays: [] });
    expect(st.raid.note).to.match(/md driver not available/);
    expect(st.state).to.equal('attention');
    expect(st.led).to.deep.equal({ driver: 'null', pattern: 'attention', showing: 'attention' });
    expect(st.disks.length).to.be.greaterThan(0); // this machine's real block devices, through systeminformation
    hw.stop();
  });

  it('raspberry-pi profile: GPIO LEDs and button in rpio mock mode; a long press asks for shutdown, a short one identifies', async () => {
    const clock = new ManualClock();
    const root = fakeRoot({ 'proc/mounts': '' });
    const hw = createHardware({
      profile: 'raspberry-pi',
      stateDir: tmpDir(),
      clock,
      watch: true,
      config: { hostRoot: root, gpioMock: 'raspi-4', pollIntervalMs: 60_000, button: { pin: 16, longPressMs: 2000, debounceMs: 20 } },
      privileged: { run: async () => ({ code: 127, stdout: '', stderr: '' }) },
    });
    const gpio = openGpio({ paths: hostPaths(root), mock: 'raspi-4' });
    const events: string[] = [];
    hw.on('status-requested', () => events.push('status'));
    hw.on('shutdown-requested', () => events.push('shutdown'));
    expect(hw.leds.kind).to.equal('gpio');
    // short press
    gpio.rpio.write(16, gpio.rpio.LOW);
    clock.advance(200);
    gpio.rpio.write(16, gpio.rpio.HIGH);
    clock.advance(100);
    expect(events).to.deep.equal(['status']);
    expect(hw.leds.showing).to.equal('identify');
    clock.advance(250);
    const a = gpio.rpio.read(DEFAULT_LED_PINS.status);
    clock.advance(250);
    expect(gpio.rpio.read(DEFAULT_LED_PINS.status)).to.not.equal(a); // blinking
    // long press
    gpio.rpio.write(16, gpio.rpio.LOW);
    clock.advance(2500);
    gpio.rpio.write(16, gpio.rpio.HIGH);
    clock.advance(100);
    expect(events).to.deep.equal(['status', 'shutdown']);
    hw.stop();
    expect(clock.pending()).to.equal(0);
  });

  it('rejects an unknown profile as a usage error', () => {
    expect(() => createHardware({ profile: 'amiga' as 'linux', stateDir: tmpDir() })).to.throw(CairnError, /unknown hardware profile "amiga"/);
  });
});
