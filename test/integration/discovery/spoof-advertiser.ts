import { MdnsAdvertiser } from '../../../src/appliance/discovery/advertiser';
import { createLogger } from '../../../src/core/log';

/**
 * Test fixture, run as its own process inside the box namespace: announces a Cairn box with
 * whatever id, name and key hash it is told (an impostor copying the real box's TXT record),
 * pointing at another box's port. Only runs when executed directly.
 *   node spoof-advertiser.js '{"boxId":…,"name":…,"spkiHex":…,"port":…,"listenHost":…}'
 */
async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2]) as { boxId: string; name: string; spkiHex: string; port: number; listenHost: string };
  const log = createLogger({ name: 'spoof' });
  const adv = await MdnsAdvertiser.start({ boxId: a.boxId, name: a.name, version: '0.1.0', port: a.port, spkiSha256: Buffer.from(a.spkiHex, 'hex'), listenHost: a.listenHost, log });
  process.once('SIGTERM', () => void adv.stop().then(() => process.exit(0)));
}

if (require.main === module) void main();
