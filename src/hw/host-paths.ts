import path from 'node:path';

/**
 * Every host path the hardware layer reads or writes comes from here, so tests (and the
 * simulated profile) can point the whole layer at a temporary directory: pass `root` and
 * each path is resolved under it. Nothing else in src/hw names a path under /proc, /sys or
 * /dev directly.
 */
export interface HostPaths {
  root: string;
  procMdstat: string;
  procMounts: string;
  procSwaps: string;
  sysClassBlock: string;
  sysClassLeds: string;
  devGpiomem: string;
  dev: string;
}

export function hostPaths(root = '/'): HostPaths {
  const p = (...parts: string[]): string => path.join(root, ...parts);
  return {
    root,
    procMdstat: p('proc', 'mdstat'),
    procMounts: p('proc', 'mounts'),
    procSwaps: p('proc', 'swaps'),
    sysClassBlock: p('sys', 'class', 'block'),
    sysClassLeds: p('sys', 'class', 'leds'),
    devGpiomem: p('dev', 'gpiomem'),
    dev: p('dev'),
  };
}

export const DEFAULT_HOST_PATHS: HostPaths = hostPaths('/');
