import { CairnError, errorMessage } from '../../core/errors';
import { constantTimeEqual } from '../../core/keys';
import { Logger, silentLogger } from '../../core/log';
import { KEY_HASH_BYTES, MdnsTransport } from '../../core/mdns';
import { parsePairingToken } from '../../core/pairing-token';
import { probeCertificate } from '../box-client';
import { pair } from '../pair';
import { AgentConfig, AgentHome } from '../state';
import { DiscoveredBox, findBox } from './browser';

/**
 * Finding a box without an address. mDNS only nominates candidates; trust is decided the way it
 * is with a typed address:
 *  - pairing: a candidate is a box whose announced key hash matches the token's pin; pair()
 *    then probes the real certificate and sends nothing unless its key matches the pin;
 *  - after pairing (the box's address changed): a candidate is a box announcing the paired box's
 *    id; it is accepted only if the certificate it presents has exactly the pinned key.
 * A look-alike (same name, same id, even the right key hash in its TXT record) is refused.
 */
export interface Refusal {
  address: string;
  port: number;
  name: string;
  reason: string;
}

export interface LocateOptions {
  timeoutMs: number;
  log?: Logger;
  transport?: MdnsTransport;
  /** handshake-only certificate probe (tests substitute it) */
  probe?: typeof probeCertificate;
}

export async function pairByDiscovery(home: AgentHome, opts: LocateOptions & { token: string; name?: string }): Promise<{ config: AgentConfig; host: string; port: number; refused: Refusal[] }> {
  const token = parsePairingToken(opts.token);
  const log = opts.log ?? silentLogger;
  const want = token.pin.subarray(0, KEY_HASH_BYTES).toString('hex');
  const refused: Refusal[] = [];
  let lastError: CairnError | undefined;
  const found = await findBox({
    ...opts,
    match: (b) => b.keyHash === want,
    attempt: async (b: DiscoveredBox) => {
      for (const address of b.addresses) {
        try {
          const config = await pair(home, { host: address, port: b.port, token: opts.token, name: opts.name });
          return { config, host: address, port: b.port };
        } catch (err) {
          if (CairnError.is(err, 'CAIRN_PAIR_PIN_MISMATCH')) {
            refused.push({ address, port: b.port, name: b.name, reason: 'its key is not the one named in the token' });
            log.warn('discovery.refused', { box_name: b.name, address, port: b.port, reason: 'key differs from the token pin' });
            continue;
          }
          if (CairnError.is(err, 'CAIRN_BOX_UNREACHABLE')) {
            lastError = err;
            continue;
          }
          throw err;
        }
      }
      return undefined;
    },
  });
  if (found) return { ...found, refused };
  if (refused.length) {
    throw new CairnError(
      'CAIRN_PAIR_PIN_MISMATCH',
      `${refused.map((r) => `${r.address}:${r.port} ("${r.name}")`).join(', ')} announced the key named in the token but presented another one; refused, nothing was sent to it. ` +
        `Something on this network is impersonating your box: pair with its address (cairn pair HOST:PORT --token …) from a network you trust.`,
      { refused },
    );
  }
  throw new CairnError(
    'CAIRN_DISCOVERY_NOT_FOUND',
    `no box with this token's key answered on the local network within ${Math.round(opts.timeoutMs / 1000)} s` +
      (lastError ? ` (${lastError.message})` : '') +
      `. Check that the box is on and on the same network, or give its address: cairn pair HOST:PORT --token …`,
  );
}

/**
 * Looks for the paired box by its id and returns its new address if it presents exactly the
 * pinned key. Saves nothing; see moveBox().
 */
export async function rediscoverBox(config: AgentConfig, opts: LocateOptions): Promise<{ found: { host: string; port: number } | undefined; refused: Refusal[] }> {
  const log = opts.log ?? silentLogger;
  const probe = opts.probe ?? probeCertificate;
  const pinned = Buffer.from(config.box.spki_sha256, 'hex');
  const refused: Refusal[] = [];
  const found = await findBox({
    ...opts,
    match: (b) => b.id === config.box.id,
    attempt: async (b: DiscoveredBox) => {
      for (const address of b.addresses) {
        let spki: Buffer;
        try {
          spki = (await probe(address, b.port, 5000)).spkiSha256;
        } catch (err) {
          log.info('discovery.candidate_unreachable', { address, port: b.port, err: errorMessage(err) });
          continue;
        }
        if (!constantTimeEqual(spki, pinned)) {
          refused.push({ address, port: b.port, name: b.name, reason: 'its key is not the pinned one' });
          log.error('discovery.refused', { box: config.box.id, box_name: b.name, address, port: b.port, reason: 'announces the paired box id but presents another key', presented: spki.toString('hex').slice(0, 32) });
          continue;
        }
        return { host: address, port: b.port };
      }
      return undefined;
    },
  });
  return { found, refused };
}

/** Saves the box's new address in agent.json (the pinned certificate and key are unchanged). */
export function moveBox(home: AgentHome, host: string, port: number): AgentConfig {
  const c = home.load();
  const next: AgentConfig = { ...c, box: { ...c.box, host, port } };
  home.save(next);
  return next;
}
