import type { Answer, SrvAnswer, StringAnswer, TxtAnswer } from 'dns-packet';
import {
  CAIRN_SERVICE, DNS_SD_SERVICES, encodeTxt, hostName, IfaceAddr, instanceName, isUnspecifiedHost, keyHashHex, MDNS_PORT, MdnsPacket, MdnsTransport,
  openMdnsTransport, Peer, sameSubnet, TTL_HOST, TTL_OTHER,
} from '../../core/mdns';
import { errorMessage } from '../../core/errors';
import { Logger, silentLogger } from '../../core/log';

/**
 * Announces this box as `<name> [<id>]._cairn._tcp.local` (DNS-SD over mDNS, RFC 6762/6763):
 * PTR -> SRV (port, host `cairn-<id>.local`) + TXT (id, name, version, port, key hash) + A.
 *
 * - answers queries for the service type, the instance, the host and the DNS-SD meta query,
 *   with the addresses it holds on the interface the query came from;
 * - sends unsolicited announcements at start and whenever its addresses change (DHCP), twice,
 *   one second apart (RFC 6762 §8.3), after a goodbye for addresses it lost;
 * - on stop sends goodbyes (TTL 0) so browsers forget it at once.
 * - queries from a port other than 5353 (one-shot queriers, §6.7) get a unicast answer.
 *
 * Not done: probing for name conflicts (§8.1). The instance and host names carry the box id,
 * so only two copies of one box could collide, and the agent checks keys anyway.
 */
export interface AdvertiserOptions {
  boxId: string;
  name: string;
  version: string;
  port: number;
  spkiSha256: Buffer;
  /** the API's listen address: unspecified (0.0.0.0) announces every interface, else only that address */
  listenHost: string;
  transport?: MdnsTransport;
  log?: Logger;
  /** how often interface addresses are checked for changes (ms) */
  pollMs?: number;
  /** delay between the two announcements (ms) */
  repeatMs?: number;
}

export class MdnsAdvertiser {
  readonly instance: string;
  readonly host: string;
  private readonly log: Logger;
  private poll: NodeJS.Timeout | undefined;
  private repeat: NodeJS.Timeout | undefined;
  private lastAddrs: IfaceAddr[] = [];
  private stopped = false;

  private constructor(private readonly opts: AdvertiserOptions, private readonly transport: MdnsTransport) {
    this.instance = instanceName(opts.name, opts.boxId);
    this.host = hostName(opts.boxId);
    this.log = opts.log ?? silentLogger;
  }

  static async start(opts: AdvertiserOptions): Promise<MdnsAdvertiser> {
    const transport = opts.transport ?? (await openMdnsTransport({ port: MDNS_PORT }));
    const a = new MdnsAdvertiser(opts, transport);
    transport.onWarning((err) => a.log.debug('mdns.warning', { err: err.message }));
    transport.onQuery((p, from) => {
      try {
        a.answer(p, from);
      } catch (err) {
        a.log.warn('mdns.bad_query', { from: from.address, err: errorMessage(err) });
      }
    });
    a.lastAddrs = a.addresses();
    await a.announce();
    a.poll = setInterval(() => void a.checkAddresses(), opts.pollMs ?? 2000);
    a.poll.unref();
    a.log.info('mdns.advertising', { instance: a.instance, host: a.host, addresses: a.lastAddrs.map((i) => i.address), port: opts.port });
    return a;
  }

  /** Interface addresses this box announces (filtered by the listen address). */
  addresses(): IfaceAddr[] {
    const all = this.transport.interfaces();
    return isUnspecifiedHost(this.opts.listenHost) ? all : all.filter((i) => i.address === this.opts.listenHost);
  }

  private records(iface: IfaceAddr | undefined, ttlScale: number): { ptr: StringAnswer; srv: SrvAnswer; txt: TxtAnswer; a: StringAnswer[] } {
    const o = this.opts;
    const ttl = (t: number): number => Math.round(t * ttlScale);
    const own = this.addresses();
    const addrs = iface ? own.filter((i) => i.name === iface.name) : own;
    return {
      ptr: { name: CAIRN_SERVICE, type: 'PTR', ttl: ttl(TTL_OTHER), data: this.instance },
      srv: { name: this.instance, type: 'SRV', ttl: ttl(TTL_HOST), flush: true, data: { port: o.port, target: this.host, priority: 0, weight: 0 } },
      txt: { name: this.instance, type: 'TXT', ttl: ttl(TTL_OTHER), flush: true, data: encodeTxt({ id: o.boxId, name: o.name, version: o.version, port: o.port, kh: keyHashHex(o.spkiSha256) }) },
      a: addrs.map((i): StringAnswer => ({ name: this.host, type: 'A', ttl: ttl(TTL_HOST), flush: true, data: i.address })),
    };
  }

  private fullPacket(iface: IfaceAddr | undefined, ttlScale: number): MdnsPacket | undefined {
    const r = this.records(iface, ttlScale);
    if (iface && r.a.length === 0) return undefined;
    return { type: 'response', questions: [], answers: [r.ptr, r.srv, r.txt, ...r.a], additionals: [], authorities: [] };
  }

  /** Unsolicited announcement, sent twice one second apart. */
  async announce(): Promise<void> {
    if (this.stopped) return;
    await this.transport.send((i) => this.fullPacket(i, 1));
    if (this.repeat) clearTimeout(this.repeat);
    this.repeat = setTimeout(() => void this.transport.send((i) => this.fullPacket(i, 1)), this.opts.repeatMs ?? 1000);
    this.repeat.unref();
  }

  private answer(p: MdnsPacket, from: Peer): void {
    if (this.stopped) return;
    const instance = this.instance.toLowerCase();
    const host = this.host.toLowerCase();
    const legacy = from.port !== MDNS_PORT;
    // The interface the query came in on: the one whose subnet holds the sender (all, if none does).
    const via = this.addresses().find((i) => sameSubnet(i.address, from.address, i.netmask));
    const build = (iface: IfaceAddr | undefined): MdnsPacket | undefined => {
      const r = this.records(iface ?? via, 1);
      if (legacy) for (const x of [r.ptr, r.srv, r.txt, ...r.a]) x.ttl = Math.min(x.ttl ?? 10, 10);
      const answers: Answer[] = [];
      const additionals: Answer[] = [];
      const add = (list: Answer[], xs: Answer[]): void => {
        for (const x of xs) if (!answers.includes(x) && !list.includes(x)) list.push(x);
      };
      for (const q of p.questions ?? []) {
        const name = String(q.name).toLowerCase();
        const t = String(q.type); // ANY (255) is not in dns-packet's RecordType union
        const any = t === 'ANY';
        if (name === CAIRN_SERVICE && (t === 'PTR' || any)) {
          add(answers, [r.ptr]);
          add(additionals, [r.srv, r.txt, ...r.a]);
        } else if (name === DNS_SD_SERVICES && (t === 'PTR' || any)) {
          answers.push({ name: DNS_SD_SERVICES, type: 'PTR', ttl: r.ptr.ttl, data: CAIRN_SERVICE });
        } else if (name === instance && (t === 'SRV' || t === 'TXT' || any)) {
          if (t !== 'TXT') add(answers, [r.srv]);
          if (t !== 'SRV') add(answers, [r.txt]);
          add(additionals, r.a);
        } else if (name === host && (t === 'A' || any)) {
          add(answers, r.a);
        }
      }
      const finalAdditionals = additionals.filter((x) => !answers.includes(x));
      if (answers.length === 0) return undefined;
      if (legacy) return { type: 'response', id: p.id, questions: p.questions, answers, additionals: finalAdditionals, authorities: [] };
      return { type: 'response', questions: [], answers, additionals: finalAdditionals, authorities: [] };
    };
    if (legacy) void this.transport.send(build, { to: from });
    else void this.transport.send(build, via ? { via: via.address } : {});
  }

  /** Re-announces when interface addresses changed, after a goodbye for the ones that went away. */
  async checkAddresses(): Promise<void> {
    if (this.stopped) return;
    this.transport.refresh();
    const now = this.addresses();
    const key = (l: IfaceAddr[]): string => l.map((i) => `${i.name}/${i.address}`).sort().join(',');
    if (key(now) === key(this.lastAddrs)) return;
    const gone = this.lastAddrs.filter((o) => !now.some((n) => n.address === o.address));
    this.log.info('mdns.addresses_changed', { before: this.lastAddrs.map((i) => i.address), after: now.map((i) => i.address) });
    this.lastAddrs = now;
    if (gone.length) {
      await this.transport.send(() => ({
        type: 'response', questions: [], additionals: [], authorities: [],
        answers: gone.map((g): Answer => ({ name: this.host, type: 'A', ttl: 0, data: g.address })),
      }));
    }
    await this.announce();
  }

  /** Goodbye (every record with TTL 0), then close the socket. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    if (this.poll) clearInterval(this.poll);
    if (this.repeat) clearTimeout(this.repeat);
    try {
      await this.transport.send((i) => this.fullPacket(i, 0));
      this.stopped = true;
      this.log.info('mdns.goodbye', { instance: this.instance });
    } finally {
      this.stopped = true;
      await this.transport.close();
    }
  }
}
