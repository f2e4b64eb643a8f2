// Minimal typings for the parts of rpio (node-rpio 2.x) that src/hw uses.
declare module 'rpio' {
  namespace rpio {
    interface InitOptions {
      gpiomem?: boolean;
      mapping?: 'physical' | 'gpio';
      mock?: string | false;
      close_on_exit?: boolean;
    }
    interface Rpio {
      readonly INPUT: number;
      readonly OUTPUT: number;
      readonly LOW: number;
      readonly HIGH: number;
      readonly PULL_OFF: number;
      readonly PULL_DOWN: number;
      readonly PULL_UP: number;
      init(opts?: InitOptions): void;
      open(pin: number, mode: number, init?: number): void;
      mode(pin: number, mode: number, init?: number): void;
      read(pin: number): number;
      write(pin: number, value: number): void;
      close(pin: number, reset?: number): void;
      exit(): void;
    }
  }
  const rpio: rpio.Rpio;
  export = rpio;
}
