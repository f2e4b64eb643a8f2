import { LedPins, SysfsLedNames } from './leds';
import { RaidLevel } from './mdadm-args';

/**
 * Hardware settings (the "hardware" section of the box configuration). Every field is
 * optional; the defaults match docs/hardware.md.
 */
export type HwProfile = 'linux' | 'raspberry-pi' | 'simulated';
export const HW_PROFILES: readonly HwProfile[] = ['linux', 'raspberry-pi', 'simulated'];

export interface HwConfig {
  /** Prefix for every host path (/proc, /sys, /dev); tests point it at a temp dir. */
  hostRoot?: string;
  leds?: {
    /** Default: gpio on raspberry-pi, sysfs where /sys/class/leds has Cairn's LEDs, else none. */
    driver?: 'gpio' | 'sysfs' | 'null';
    pins?: Partial<LedPins>;
    sysfsNames?: Partial<SysfsLedNames>;
    identifyMs?: number;
  };
  button?: {
    /** Default: on for raspberry-pi, off otherwise. */
    enabled?: boolean;
    pin?: number;
    debounceMs?: number;
    longPressMs?: number;
  };
  /** rpio mock board ('raspi-4'); default: mock only where /dev/gpiomem is missing. */
  gpioMock?: string | null;
  /** How often RAID and disks are polled while watching. */
  pollIntervalMs?: number;
  smartTtlMs?: number;
  /** How cairnd reaches the privileged helper, e.g. ["/usr/bin/sudo","-n","/usr/bin/node","/opt/cairn/dist/src/hw/disk-helper.js"]. */
  helperCommand?: string[];
  simulated?: {
    disks?: number;
    diskSizeMiB?: number;
    rebuildMiBps?: number;
    level?: RaidLevel;
  };
}

export const DEFAULT_POLL_MS = 5000;
