import fs from 'node:fs';
import type { Rpio } from 'rpio';
import { HostPaths } from './host-paths';

/**
 * The rpio library, initialised once per process (rpio keeps global state). On a machine
 * without /dev/gpiomem -- a laptop, CI, this build host -- it runs in rpio's mock mode
 * emulating a Raspberry Pi 4: pins can be written and read back, nothing touches hardware.
 * Pins are physical header numbers (rpio's default 'physical' mapping).
 */
export interface GpioHandle {
  rpio: Rpio;
  mock: string | null;
}

let handle: GpioHandle | null = null;

export function openGpio(opts: { paths: HostPaths; mock?: string | null }): GpioHandle {
  if (handle) return handle;
  // Required lazily: rpio is a native module and only the GPIO profile needs it.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const rpio = require('rpio') as Rpio;
  const mock = opts.mock !== undefined && opts.mock !== null ? opts.mock : fs.existsSync(opts.paths.devGpiomem) ? null : 'raspi-4';
  rpio.init({ gpiomem: true, mapping: 'physical', mock: mock ?? false, close_on_exit: false });
  handle = { rpio, mock };
  return handle;
}
