import { CairnError } from '../core/errors';
/**
 * Errors of the hardware layer: CairnErrors whose codes all start with CAIRN_HW_. Messages say what happened, to
 * which device, and what to do next.
 */
export type HwErrorCode =
  | 'CAIRN_HW_PARSE' // outside text (mdstat, mdadm, smartctl) could not be understood
  | 'CAIRN_HW_INVALID_ARGUMENT' // a device name, level or option that is not allowed
  | 'CAIRN_HW_CONFIRM_REQUIRED' // a destructive operation without its explicit confirmation
  | 'CAIRN_HW_REFUSED' // a destructive operation aimed at the system disk or a mounted one
  | 'CAIRN_HW_COMMAND_FAILED' // mdadm, mkfs, mount... exited non-zero
  | 'CAIRN_HW_UNAVAILABLE' // the tool or driver is not there (no md driver, no smartctl)
  | 'CAIRN_HW_SIM_STATE'; // the simulated profile cannot do that in its current state

export class HwError extends CairnError {
  declare readonly code: HwErrorCode;

  constructor(code: HwErrorCode, message: string, details?: Record<string, unknown>) {
    super(code, message, details);
    this.name = 'HwError';
  }

  static override is(err: unknown, code?: HwErrorCode): err is HwError {
    return err instanceof HwError && (code === undefined || err.code === code);
  }
}
