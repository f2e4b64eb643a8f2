import { CairnError } from '../core/errors';
import { HwProfile } from '../hw';
import { Box, HW_PROFILE_NAMES } from './box';
import { BoxSettings, DEFAULT_RETENTION, updateConfig } from './box-settings';
import { DataDir } from './data-dir';
import { fingerprint, initIdentity } from './identity';
import { writeEscrow } from './escrow';

/**
 * Activation, the one implementation behind `cairnd init` and the console wizard's
 * 'box.activate' admin op: master key and TLS identity (identity.ts), config.json, the escrow
 * blob, and the 'box.activated' event. Returns the opened box and the recovery key text, which
 * is shown once and never stored.
 *
 * Order matters: keys.json marks a box as activated, so it is written first by initIdentity;
 * config and escrow follow. A crash between them leaves an activated box whose escrow blob
 * is written by the next settings change ('settings.set').
 */
export interface ActivateOptions {
  name: string;
  role?: 'primary' | 'secondary';
  hw: HwProfile;
  settings?: Pick<Partial<BoxSettings>, 'retention_default'>;
}

export interface Activation {
  box: Box;
  recoveryKey: string;
  result: { box: string; name: string; role: string; fingerprint: string; recovery_key: string };
}

const NAME = /^[\p{L}\p{N} ._-]{1,64}$/u;

export function checkBoxName(name: unknown): string {
  if (typeof name !== 'string' || !NAME.test(name) || name.trim() !== name) {
    throw new CairnError('CAIRN_USAGE', 'box name must be 1-64 letters, digits, spaces, dots, dashes or underscores (no leading or trailing space)');
  }
  return name;
}

export async function activateBox(dir: DataDir, o: ActivateOptions): Promise<Activation> {
  const name = checkBoxName(o.name);
  const role = o.role ?? 'primary';
  if (role !== 'primary' && role !== 'secondary') throw new CairnError('CAIRN_USAGE', 'role is primary or secondary');
  if (!HW_PROFILE_NAMES.includes(o.hw)) throw new CairnError('CAIRN_USAGE', `hardware profile takes one of ${HW_PROFILE_NAMES.join(', ')}`);
  const { identity, recoveryKey } = await initIdentity(dir, { name, role });
  const config = updateConfig(dir, {
    hw_profile: o.hw,
    // The secondary is linked after activation (secondary.json); config.json holds no token.
    secondary: null,
    retention_default: o.settings?.retention_default ?? DEFAULT_RETENTION,
  });
  writeEscrow(dir, identity, config);
  const box = Box.open(dir.root);
  box.catalog.event('box.activated', { box: identity.boxId, name });
  return {
    box,
    recoveryKey,
    result: { box: identity.boxId, name, role, fingerprint: fingerprint(identity.spkiSha256), recovery_key: recoveryKey },
  };
}
