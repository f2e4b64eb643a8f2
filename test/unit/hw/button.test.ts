import { expect } from 'chai';
import { ManualClock } from '../../../src/hw/clock';
import { Button, gpioButtonInput } from '../../../src/hw/button';
import { openGpio } from '../../../src/hw/gpio';
import { hostPaths } from '../../../src/hw/host-paths';
import { fakeRoot } from './fixtures';

/** Drives a simulated input: a list of [level, ms] segments, sampled by the button's clock. */
function harness(opts: { debounceMs?: number; longPressMs?: number } = {}) {
  const clock = new ManualClock();
  let level = false;
  const button = new Button({ read: () => level, clock, pollMs: 5, debounceMs: opts.debounceMs ?? 30, longPressMs: opts.longPressMs ?? 3000 });
  const events: string[] = [];
  button.on('press', (e) => events.push(`press ${e.durationMs}`));
  button.on('long-press', (e) => events.push(`long ${e.durationMs}`));
  button.start();
  const play = (segments: [boolean, number][]): void => {
    for (const [l, ms] of segments) {
      level = l;
      clock.advance(ms);
    }
  };
  return { clock, button, events, play };
}

describe('hw/button: debounce, short and long press', () => {
  it('a clean short press fires one "press" on release', () => {
    const h = harness();
    h.play([
      [true, 200],
      [false, 100],
    ]);
    expect(h.events).to.deep.equal(['press 200']);
  });

  it('contact bounce on press and release still makes exactly one press', () => {
    const h = harness();
    h.play([
      [true, 3],
      [false, 4],
      [true, 2],
      [false, 6],
      [true, 400],
      [false, 5],
      [true, 5],
      [false, 200],
    ]);
    expect(h.events).to.have.length(1);
    expect(h.events[0]).to.match(/^press \d+$/);
  });

  it('glitches shorter than the debounce time are ignored', () => {
    const h = harness();
    for (let i = 0; i < 20; i++)
      h.play([
        [true, 10],
        [false, 100],
      ]);
    expect(h.events).to.deep.equal([]);
  });

  it('holding for the long-press time fires "long-press" once, while held, and no press on release', () => {
    const h = harness({ longPressMs: 3000 });
    h.play([[true, 2990]]);
    expect(h.events).to.deep.equal([]);
    h.play([[true, 2000]]);
    expect(h.events).to.have.length(1);
    expect(h.events[0]).to.match(/^long 30\d\d$/);
    h.play([[false, 200]]);
    expect(h.events).to.have.length(1);
    // and the next short press works again
    h.play([
      [true, 100],
      [false, 100],
    ]);
    expect(h.events[1]).to.equal('press 100');
  });

  it('stop() removes its timer', () => {
    const h = harness();
    h.button.stop();
    expect(h.clock.pending()).to.equal(0);
  });

  it('reads a GPIO input (active low, pull-up) in rpio mock mode', () => {
    const gpio = openGpio({ paths: hostPaths(fakeRoot()), mock: 'raspi-4' });
    const read = gpioButtonInput(gpio, 16);
    expect(read()).to.equal(false);
    gpio.rpio.write(16, gpio.rpio.LOW); // the test stands in for a finger
    expect(read()).to.equal(true);
    gpio.rpio.write(16, gpio.rpio.HIGH);
    expect(read()).to.equal(false);
  });
});
