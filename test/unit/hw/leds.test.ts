import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { ManualClock } from '../../../src/hw/clock';
import { openGpio } from '../../../src/hw/gpio';
import { hostPaths } from '../../../src/hw/host-paths';
import { PatternLeds, gpioLedDriver, sysfsLedDriver, nullLedDriver, DEFAULT_LED_PINS, LedName } from '../../../src/hw/leds';
import { fakeRoot } from './fixtures';

describe('hw/leds', () => {
  describe('GPIO LEDs in rpio mock mode (Raspberry Pi 4), pins read back over time', () => {
    const gpio = openGpio({ paths: hostPaths(fakeRoot()), mock: 'raspi-4' });
    const pins = DEFAULT_LED_PINS;
    const read = (): Record<LedName, number> => ({ status: gpio.rpio.read(pins.status), activity: gpio.rpio.read(pins.activity), fault: gpio.rpio.read(pins.fault) });
    /** Pin levels sampled every `step` ms for `ms` ms. */
    const trace = (clock: ManualClock, ms: number, step: number): Record<LedName, number>[] => {
      const out = [read()];
      for (let t = step; t <= ms; t += step) {
        clock.advance(step);
        out.push(read());
      }
      return out;
    };

    it('runs in mock mode where there is no /dev/gpiomem', () => {
      expect(gpio.mock).to.equal('raspi-4');
    });

    it('idle: status steady on, nothing else, no timers', () => {
      const clock = new ManualClock();
      const leds = new PatternLeds(gpioLedDriver(gpio, pins), clock);
      leds.set('idle');
      const t = trace(clock, 3000, 250);
      expect(t.every((s) => s.status === 1 && s.activity === 0 && s.fault === 0)).to.equal(true);
      expect(clock.pending()).to.equal(0);
      leds.close();
    });

    it('backup: activity blinks 0.5 s on / 0.5 s off while status stays on', () => {
      const clock = new ManualClock();
      const leds = new PatternLeds(gpioLedDriver(gpio, pins), clock);
      leds.set('backup');
      const t = trace(clock, 2000, 250);
      expect(t.map((s) => s.activity)).to.deep.equal([1, 1, 0, 0, 1, 1, 0, 0, 1]);
      expect(t.every((s) => s.status === 1 && s.fault === 0)).to.equal(true);
      leds.close();
    });

    it('attention: fault blinks 1 s / 1 s; error: fault steady, status off', () => {
      const clock = new ManualClock();
      const leds = new PatternLeds(gpioLedDriver(gpio, pins), clock);
      leds.set('attention');
      expect(trace(clock, 4000, 500).map((s) => s.fault)).to.deep.equal([1, 1, 0, 0, 1, 1, 0, 0, 1]);
      leds.set('error');
      expect(trace(clock, 3000, 500).every((s) => s.fault === 1 && s.status === 0 && s.activity === 0)).to.equal(true);
      expect(clock.pending()).to.equal(0);
      leds.close();
      expect(read()).to.deep.equal({ status: 0, activity: 0, fault: 0 });
    });

    it('identify: all three blink together for its duration, then the pattern returns', () => {
      const clock = new ManualClock();
      const leds = new PatternLeds(gpioLedDriver(gpio, pins), clock);
      leds.set('attention');
      leds.identify(2000);
      expect(leds.showing).to.equal('identify');
      const t = trace(clock, 1750, 250);
      expect(t.map((s) => s.status)).to.deep.equal([1, 0, 1, 0, 1, 0, 1, 0]);
      expect(t.every((s) => s.status === s.activity && s.activity === s.fault)).to.equal(true);
      leds.set('error'); // the underlying pattern may change meanwhile
      expect(leds.showing).to.equal('identify');
      clock.advance(250);
      expect(leds.showing).to.equal('error');
      expect(read()).to.deep.equal({ status: 0, activity: 0, fault: 1 });
      leds.close();
      expect(clock.pending()).to.equal(0);
    });
  });

  it('sysfs LEDs: sets the trigger to none and writes brightness (max_brightness when on)', () => {
    const root = fakeRoot({
      'sys/class/leds/cairn:green:status/brightness': '0',
      'sys/class/leds/cairn:green:status/trigger': '[none] timer heartbeat',
      'sys/class/leds/cairn:green:status/max_brightness': '255',
      'sys/class/leds/cairn:blue:activity/brightness': '0',
      'sys/class/leds/cairn:amber:fault/brightness': '0',
    });
    const dir = (n: string): string => path.join(root, 'sys/class/leds', n);
    const clock = new ManualClock();
    const leds = new PatternLeds(sysfsLedDriver(hostPaths(root)), clock);
    expect(fs.readFileSync(path.join(dir('cairn:green:status'), 'trigger'), 'utf8')).to.equal('none');
    leds.set('backup');
    expect(fs.readFileSync(path.join(dir('cairn:green:status'), 'brightness'), 'utf8')).to.equal('255');
    expect(fs.readFileSync(path.join(dir('cairn:blue:activity'), 'brightness'), 'utf8')).to.equal('1');
    clock.advance(500);
    expect(fs.readFileSync(path.join(dir('cairn:blue:activity'), 'brightness'), 'utf8')).to.equal('0');
    leds.set('error');
    expect(fs.readFileSync(path.join(dir('cairn:amber:fault'), 'brightness'), 'utf8')).to.equal('1');
    expect(fs.readFileSync(path.join(dir('cairn:green:status'), 'brightness'), 'utf8')).to.equal('0');
    leds.close();
  });

  it('null LEDs keep the logical state for status reports', () => {
    const clock = new ManualClock();
    const leds = new PatternLeds(nullLedDriver(), clock);
    leds.set('attention');
    expect(leds).to.include({ kind: 'null', pattern: 'attention', showing: 'attention' });
    expect(leds.levels()).to.deep.equal({ status: true, activity: false, fault: true });
    clock.advance(1000);
    expect(leds.levels().fault).to.equal(false);
    leds.close();
    expect(clock.pending()).to.equal(0);
  });
});
