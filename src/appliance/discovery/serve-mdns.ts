import { errorMessage } from '../../core/errors';
import { Logger } from '../../core/log';
import { isLoopbackHost } from '../../core/mdns';
import { BoxIdentity } from '../identity';
import { VERSION } from '../api/server';
import { MdnsAdvertiser } from './advertiser';

/**
 * `cairnd serve`'s mDNS: started after the API listens, stopped (with a goodbye) before it
 * closes. A box that listens on loopback only is unreachable from the LAN, so it does not
 * announce itself; `--no-mdns` turns announcing off. mDNS trouble (port taken, no multicast)
 * is logged and never stops the box from serving.
 */
export async function startAdvertising(identity: BoxIdentity, opts: { host: string; port: number; log: Logger; disabled?: boolean }): Promise<MdnsAdvertiser | undefined> {
  if (opts.disabled) {
    opts.log.info('mdns.disabled', { reason: '--no-mdns' });
    return undefined;
  }
  if (isLoopbackHost(opts.host)) {
    opts.log.info('mdns.disabled', { reason: `listening on ${opts.host} only; agents on the network could not reach it` });
    return undefined;
  }
  try {
    return await MdnsAdvertiser.start({
      boxId: identity.boxId,
      name: identity.name,
      version: VERSION,
      port: opts.port,
      spkiSha256: identity.spkiSha256,
      listenHost: opts.host,
      log: opts.log,
    });
  } catch (err) {
    opts.log.warn('mdns.unavailable', { err: errorMessage(err), note: 'agents must be given the address: cairn pair HOST:PORT --token …' });
    return undefined;
  }
}

export async function stopAdvertising(a: MdnsAdvertiser | undefined, log: Logger): Promise<void> {
  if (!a) return;
  try {
    await a.stop();
  } catch (err) {
    log.warn('mdns.stop_failed', { err: errorMessage(err) });
  }
}
