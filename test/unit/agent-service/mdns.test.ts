import { expect } from 'chai';
import dgram from 'node:dgram';
import { createHash } from 'node:crypto';
import packet from 'dns-packet';
import type { Answer } from 'dns-packet';
import { MdnsAdvertiser } from '../../../src/appliance/discovery/advertiser';
import { BoxBrowser, DiscoveredBox } from '../../../src/agent/discovery/browser';
import {
  CAIRN_SERVICE, decodeTxt, encodeTxt, IfaceAddr, instanceLabel, MdnsPacket, MdnsTransport, openMdnsTransport, Peer, sameSubnet, SendOptions,
} from '../../../src/core/mdns';

/**
 * An in-memory LAN: every packet is really encoded and decoded with dns-packet (the codec
 * multicast-dns uses), then delivered to every other transport on the same link.
 */
class FakeLan {
  readonly members: FakeTransport[] = [];
  sent: { from: string; packet: MdnsPacket; to?: Peer }[] = [];
}

class FakeTransport implements MdnsTransport {
  readonly port = 5353;
  private queryCbs: ((p: MdnsPacket, from: Peer) => void)[] = [];
  private responseCbs: ((p: MdnsPacket, from: Peer) => void)[] = [];
  private warningCbs: ((e: Error) => void)[] = [];
  closed = false;

  constructor(private readonly lan: FakeLan, public ifaces: IfaceAddr[], private readonly srcPort = 5353) {
    lan.members.push(this);
  }

  interfaces(): IfaceAddr[] {
    return this.ifaces;
  }
  onQuery(cb: (p: MdnsPacket, from: Peer) => void): void {
    this.queryCbs.push(cb);
  }
  onResponse(cb: (p: MdnsPacket, from: Peer) => void): void {
    this.responseCbs.push(cb);
  }
  onWarning(cb: (e: Error) => void): void {
    this.warningCbs.push(cb);
  }
  refresh(): void {}

  async send(build: (iface: IfaceAddr | undefined) => MdnsPacket | undefined, opts: SendOptions = {}): Promise<void> {
    const ifaces = this.ifaces.filter((i) => !opts.via || i.address === opts.via);
    const targets = opts.to ? [ifaces.find((i) => sameSubnet(i.address, opts.to!.address, i.netmask))] : ifaces;
    for (const iface of targets) {
      const p = build(iface);
      if (!p || this.closed) continue;
      this.lan.sent.push({ from: iface?.address ?? '?', packet: p, to: opts.to });
      const wire = packet.encode({ ...p, flags: p.type === 'response' ? packet.AUTHORITATIVE_ANSWER : 0 });
      for (const m of this.lan.members) {
        if (m === this || m.closed) continue;
        if (opts.to && !m.ifaces.some((i) => i.address === opts.to!.address)) continue;
        m.receive(wire, { address: iface?.address ?? '0.0.0.0', port: this.srcPort });
      }
    }
  }

  receive(wire: Buffer, from: Peer): void {
    let p: MdnsPacket;
    try {
      p = packet.decode(wire) as unknown as MdnsPacket;
    } catch (err) {
      for (const w of this.warningCbs) w(err as Error);
      return;
    }
    for (const cb of p.type === 'query' ? this.queryCbs : this.responseCbs) cb(p, from);
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

const NET = (address: string, name = 'eth0'): IfaceAddr => ({ name, address, netmask: '255.255.255.0' });
const spki = createHash('sha256').update('box key').digest();
const BOX_ID = '0123456789abcdef';

async function advertiser(lan: FakeLan, ifaces: IfaceAddr[], over: Partial<Parameters<typeof MdnsAdvertiser.start>[0]> = {}): Promise<{ adv: MdnsAdvertiser; t: FakeTransport }> {
  const t = new FakeTransport(lan, ifaces);
  const adv = await MdnsAdvertiser.start({ boxId: BOX_ID, name: 'office.box', version: '0.1.0', port: 8443, spkiSha256: spki, listenHost: '0.0.0.0', transport: t, pollMs: 3_600_000, repeatMs: 3_600_000, ...over });
  return { adv, t };
}

function waitBox(b: BoxBrowser, pred: (x: DiscoveredBox) => boolean = () => true): Promise<DiscoveredBox> {
  return new Promise((resolve) => {
    const on = (x: DiscoveredBox): void => {
      if (!pred(x)) return;
      b.off('box', on);
      resolve(x);
    };
    b.on('box', on);
    for (const x of b.boxes()) if (pred(x)) resolve(x);
  });
}

describe('mDNS: TXT records and names', () => {
  it('round-trips the TXT record and rejects malformed ones', () => {
    const txt = { id: BOX_ID, name: 'office box', version: '0.1.0', port: 8443, kh: spki.subarray(0, 8).toString('hex') };
    expect(decodeTxt(encodeTxt(txt))).to.deep.equal(txt);
    const bad = (mut: (s: string[]) => string[]): unknown => decodeTxt(mut(encodeTxt(txt).map((b) => b.toString())).map((s) => Buffer.from(s)));
    expect(bad((s) => s.filter((x) => !x.startsWith('txtvers')))).to.have.property('error');
    expect(bad((s) => s.map((x) => (x.startsWith('port=') ? 'port=70000' : x)))).to.have.property('error');
    expect(bad((s) => s.map((x) => (x.startsWith('kh=') ? 'kh=zz' : x)))).to.have.property('error');
    expect(bad((s) => s.map((x) => (x.startsWith('id=') ? 'id=../../etc' : x)))).to.have.property('error');
    // the first occurrence of a key wins (RFC 6763 §6.4)
    expect(decodeTxt(['txtvers=1', `id=${BOX_ID}`, 'id=ffffffffffffffff', 'name=a', 'v=1', 'port=1', `kh=${txt.kh}`])).to.include({ id: BOX_ID });
    // control characters never reach the terminal
    expect(decodeTxt(['txtvers=1', `id=${BOX_ID}`, 'name=a\x1b[2Jb', 'v=1', 'port=1', `kh=${txt.kh}`])).to.include({ name: 'a[2Jb' });
  });

  it('builds instance labels that fit a DNS label and hold no dots', () => {
    const l = instanceLabel('ö'.repeat(64), BOX_ID);
    expect(Buffer.byteLength(l)).to.be.at.most(63);
    expect(l.endsWith('[01234567]')).to.equal(true);
    expect(instanceLabel('a.b', BOX_ID)).to.equal('a-b [01234567]');
  });
});

describe('mDNS: advertiser and browser on an in-memory LAN', () => {
  it('announces at start; a browser started later asks and gets PTR, SRV, TXT and the A record of its subnet', async () => {
    const lan = new FakeLan();
    const { adv } = await advertiser(lan, [NET('10.0.0.5'), NET('192.168.9.5', 'wlan0')]);
    const announced = lan.sent[0].packet;
    expect(announced.answers.map((a) => a.type)).to.deep.equal(['PTR', 'SRV', 'TXT', 'A']);
    const b = new BoxBrowser(new FakeTransport(lan, [NET('10.0.0.77')])).start();
    const box = await waitBox(b);
    expect(box).to.include({ id: BOX_ID, name: 'office.box', port: 8443, keyHash: spki.subarray(0, 8).toString('hex'), host: 'cairn-0123456789ab.local' });
    expect(box.addresses).to.deep.equal(['10.0.0.5']); // answered through the interface on the querier's subnet
    await b.close();
    await adv.stop();
  });

  it('answers a one-shot (non-5353) query by unicast, echoing its id and question, with short TTLs', async () => {
    const lan = new FakeLan();
    const { adv } = await advertiser(lan, [NET('10.0.0.5')]);
    const q = new FakeTransport(lan, [NET('10.0.0.9')], 40000);
    const got = new Promise<MdnsPacket>((resolve) => q.onResponse((p) => resolve(p)));
    await q.send(() => ({ type: 'query', id: 4242, questions: [{ name: CAIRN_SERVICE, type: 'PTR' }], answers: [], additionals: [], authorities: [] }));
    const p = await got;
    expect(p.id).to.equal(4242);
    expect(p.questions[0].name).to.equal(CAIRN_SERVICE);
    expect(lan.sent[lan.sent.length - 1].to).to.deep.equal({ address: '10.0.0.9', port: 40000 });
    for (const a of [...p.answers, ...p.additionals] as (Answer & { ttl?: number })[]) expect(a.ttl).to.be.at.most(10);
    await adv.stop();
  });

  it('answers the DNS-SD meta query, the instance and the host; ignores other names', async () => {
    const lan = new FakeLan();
    const { adv } = await advertiser(lan, [NET('10.0.0.5')]);
    const q = new FakeTransport(lan, [NET('10.0.0.9')]);
    const answers: MdnsPacket[] = [];
    q.onResponse((p) => answers.push(p));
    const ask = async (name: string, type: 'PTR' | 'SRV' | 'A' | 'TXT'): Promise<string[]> => {
      answers.length = 0;
      await q.send(() => ({ type: 'query', questions: [{ name, type }], answers: [], additionals: [], authorities: [] }));
      await new Promise((r) => setImmediate(r));
      return answers.flatMap((p) => p.answers.map((a) => `${a.type} ${typeof (a as { data: unknown }).data === 'string' ? (a as { data: string }).data : ''}`));
    };
    expect(await ask('_services._dns-sd._udp.local', 'PTR')).to.deep.equal([`PTR ${CAIRN_SERVICE}`]);
    expect(await ask(adv.instance, 'SRV')).to.deep.equal(['SRV ']);
    expect(await ask(adv.host, 'A')).to.deep.equal(['A 10.0.0.5']);
    expect(await ask('_http._tcp.local', 'PTR')).to.deep.equal([]);
    await adv.stop();
  });

  it('re-announces on an address change (goodbye for the old address) and says goodbye on stop', async () => {
    const lan = new FakeLan();
    const { adv, t } = await advertiser(lan, [NET('10.0.0.5')]);
    const b = new BoxBrowser(new FakeTransport(lan, [NET('10.0.0.77')])).start();
    await waitBox(b);
    t.ifaces = [NET('10.0.0.6')];
    await adv.checkAddresses();
    const moved = await waitBox(b, (x) => x.addresses.includes('10.0.0.6'));
    expect(moved.addresses).to.deep.equal(['10.0.0.6']);
    const goodbyeA = lan.sent.find((s) => s.packet.answers.some((a) => a.type === 'A' && (a as { ttl?: number }).ttl === 0));
    expect(goodbyeA).to.not.equal(undefined);
    const gone = new Promise<string>((resolve) => b.once('gone', resolve));
    await adv.stop();
    expect(await gone).to.equal(adv.instance.toLowerCase());
    expect(b.boxes()).to.deep.equal([]);
    await b.close();
  });

  it('announces only the listen address when the API is bound to one', async () => {
    const lan = new FakeLan();
    const { adv } = await advertiser(lan, [NET('10.0.0.5'), NET('10.0.1.5', 'eth1')], { listenHost: '10.0.1.5' });
    expect(adv.addresses().map((i) => i.address)).to.deep.equal(['10.0.1.5']);
    const a = lan.sent.flatMap((s) => s.packet.answers).filter((x) => x.type === 'A').map((x) => (x as { data: string }).data);
    expect(a).to.deep.equal(['10.0.1.5']);
    await adv.stop();
  });

  it('the browser ignores malformed and hostile records and keeps working', async () => {
    const lan = new FakeLan();
    const pc = new FakeTransport(lan, [NET('10.0.0.77')]);
    const warnings: Error[] = [];
    pc.onWarning((e) => warnings.push(e));
    const b = new BoxBrowser(pc);
    // undecodable bytes: a warning, not a throw
    pc.receive(Buffer.from('definitely not dns'), { address: '10.0.0.66', port: 5353 });
    pc.receive(Buffer.alloc(3), { address: '10.0.0.66', port: 5353 });
    expect(warnings.length).to.equal(2);
    // well-formed DNS, wrong content: bad TXT, SRV port 0, a flood of instances
    const evil = new FakeTransport(lan, [NET('10.0.0.66')]);
    const inst = `evil.${CAIRN_SERVICE}`;
    const flood: Answer[] = [];
    for (let i = 0; i < 400; i++) flood.push({ name: CAIRN_SERVICE, type: 'PTR', ttl: 100, data: `x${i}.${CAIRN_SERVICE}` });
    await evil.send(() => ({ type: 'response', questions: [], additionals: [], authorities: [], answers: [
      { name: CAIRN_SERVICE, type: 'PTR', ttl: 100, data: inst },
      { name: inst, type: 'SRV', ttl: 100, data: { port: 0, target: 'evil.local' } },
      { name: inst, type: 'TXT', ttl: 100, data: ['txtvers=9', 'id=zz'] },
      { name: 'evil.local', type: 'A', ttl: 100, data: '10.0.0.66' },
      ...flood,
    ] }));
    expect(b.boxes()).to.deep.equal([]);
    // and a real box is still found
    const { adv } = await advertiser(lan, [NET('10.0.0.5')]);
    b.start();
    expect((await waitBox(b)).id).to.equal(BOX_ID);
    await b.close();
    await adv.stop();
  });
});

describe('mDNS: the real socket', () => {
  it('turns undecodable datagrams into warnings and still delivers the next valid query (loopback only)', async () => {
    // An ephemeral port and no interfaces: nothing joins a group or leaves this machine.
    const t = await openMdnsTransport({ port: 0, interfaces: () => [] });
    const warnings: Error[] = [];
    t.onWarning((e) => warnings.push(e));
    const queries: MdnsPacket[] = [];
    t.onQuery((p) => queries.push(p));
    const s = dgram.createSocket('udp4');
    const send = (b: Buffer): Promise<void> => new Promise((r) => s.send(b, t.port, '127.0.0.1', () => r()));
    try {
      await send(Buffer.from('garbage'));
      await send(Buffer.from([0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 1]));
      await send(packet.encode({ type: 'query', id: 1, questions: [{ name: CAIRN_SERVICE, type: 'PTR' }] }));
      const deadline = Date.now() + 5000;
      while (queries.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(warnings.length).to.equal(2);
      expect(queries.map((q) => q.questions[0].name)).to.deep.equal([CAIRN_SERVICE]);
    } finally {
      s.close();
      await t.close();
    }
  });
});
