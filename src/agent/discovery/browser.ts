import { EventEmitter } from 'node:events';
import type { Answer } from 'dns-packet';
import { CAIRN_SERVICE, decodeTxt, CairnTxt, MdnsPacket, MdnsTransport, openMdnsTransport, sameSubnet } from '../../core/mdns';
import { errorMessage } from '../../core/errors';
import { Logger, silentLogger } from '../../core/log';

/**
 * Browses `_cairn._tcp.local`: asks (at 0, 1, 2, 4, 8… s), listens to answers and unsolicited
 * announcements, and assembles PTR/SRV/TXT/A records into boxes. A box is reported once it has
 * a valid TXT record, an SRV record and at least one address; again when its addresses or
 * port change; goodbyes (TTL 0) remove it.
 *
 * Everything here comes from the network and is untrusted: records are validated, sizes are
 * bounded, malformed packets are dropped (multicast-dns reports them as warnings). What a box
 * says about itself only decides whom the agent probes; the TLS key decides whom it trusts.
 */
export interface DiscoveredBox {
  instance: string;
  id: string;
  name: string;
  version: string;
  port: number;
  /** hex of the first bytes of SHA-256 of the key the box claims (a hint) */
  keyHash: string;
  host: string;
  addresses: string[];
  /** ms from the start of browsing until the box was first complete */
  heardAfterMs: number;
  /** when it was first complete (ms since the epoch) */
  heardAt: number;
}

interface Instance {
  srv?: { port: number; target: string };
  txt?: CairnTxt;
  reported?: string;
  firstComplete?: number;
  asked?: number;
}

const MAX_INSTANCES = 256;
const MAX_HOSTS = 256;
const MAX_ADDRS_PER_HOST = 16;

export class BoxBrowser extends EventEmitter {
  private readonly instances = new Map<string, Instance>();
  private readonly hosts = new Map<string, Set<string>>();
  private readonly started: number;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly log: Logger;
  private readonly now: () => number;

  constructor(private readonly transport: MdnsTransport, opts: { log?: Logger; now?: () => number } = {}) {
    super();
    this.log = opts.log ?? silentLogger;
    this.now = opts.now ?? Date.now;
    this.started = this.now();
    transport.onWarning((err) => this.log.debug('mdns.warning', { err: err.message }));
    transport.onResponse((p, from) => {
      try {
        this.ingest(p);
      } catch (err) {
        this.log.debug('mdns.bad_response', { from: from.address, err: errorMessage(err) });
      }
    });
  }

  static async open(opts: { log?: Logger; transport?: MdnsTransport } = {}): Promise<BoxBrowser> {
    const transport = opts.transport ?? (await openMdnsTransport({ fallbackEphemeral: true }));
    return new BoxBrowser(transport, opts);
  }

  /** Starts the query schedule: now, then 1 s, 2 s, 4 s… apart (RFC 6762 §5.2), at most 8 s. */
  start(): this {
    let gap = 1000;
    const tick = (): void => {
      if (this.closed) return;
      this.query();
      this.timer = setTimeout(tick, gap);
      gap = Math.min(gap * 2, 8000);
    };
    tick();
    return this;
  }

  query(): void {
    this.transport.refresh();
    void this.transport.send(() => ({ type: 'query', questions: [{ name: CAIRN_SERVICE, type: 'PTR' }], answers: [], additionals: [], authorities: [] }));
  }

  boxes(): DiscoveredBox[] {
    const out: DiscoveredBox[] = [];
    for (const [name, inst] of this.instances) {
      const b = this.complete(name, inst);
      if (b) out.push(b);
    }
    return out.sort((a, b) => a.heardAfterMs - b.heardAfterMs);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.removeAllListeners();
    await this.transport.close();
  }

  /** Orders a box's addresses: those on a subnet of ours first. */
  private order(addrs: string[]): string[] {
    const ifaces = this.transport.interfaces();
    const local = (a: string): boolean => ifaces.some((i) => sameSubnet(i.address, a, i.netmask));
    return [...addrs].sort((a, b) => Number(local(b)) - Number(local(a)) || a.localeCompare(b));
  }

  private complete(name: string, inst: Instance): DiscoveredBox | undefined {
    if (!inst.srv || !inst.txt) return undefined;
    const addrs = this.hosts.get(inst.srv.target);
    if (!addrs || addrs.size === 0) return undefined;
    inst.firstComplete ??= this.now();
    return {
      instance: name,
      id: inst.txt.id,
      name: inst.txt.name,
      version: inst.txt.version,
      port: inst.srv.port,
      keyHash: inst.txt.kh,
      host: inst.srv.target,
      addresses: this.order([...addrs]),
      heardAfterMs: inst.firstComplete - this.started,
      heardAt: inst.firstComplete,
    };
  }

  /**
   * The record tables are bounded and least-recently-updated first out: a flood of fake
   * instances or hosts pushes out older fakes, and a real box that keeps announcing and
   * answering stays.
   */
  private instanceFor(name: string, create: boolean): Instance | undefined {
    let inst = this.instances.get(name);
    if (inst) {
      this.instances.delete(name);
      this.instances.set(name, inst);
    } else if (create) {
      if (this.instances.size >= MAX_INSTANCES) this.instances.delete(this.instances.keys().next().value as string);
      inst = {};
      this.instances.set(name, inst);
    }
    return inst;
  }

  private ingest(p: MdnsPacket): void {
    const records: Answer[] = [...(p.answers ?? []), ...(p.additionals ?? [])];
    const suffix = `.${CAIRN_SERVICE}`;
    const touched = new Set<string>();
    // Addresses first, so that an SRV in the same packet finds them.
    const flushed = new Set<string>();
    for (const r of records) {
      if (r.type !== 'A' || typeof r.data !== 'string') continue;
      const host = r.name.toLowerCase();
      if (!host.endsWith('.local')) continue;
      let set = this.hosts.get(host);
      if (r.ttl === 0) {
        set?.delete(r.data);
      } else {
        if (set) {
          this.hosts.delete(host);
        } else {
          if (this.hosts.size >= MAX_HOSTS) this.hosts.delete(this.hosts.keys().next().value as string);
          set = new Set();
        }
        this.hosts.set(host, set);
        // cache-flush: this packet's records replace what was known (all of them, not just the last)
        if (r.flush && !flushed.has(host)) set.clear();
        flushed.add(host);
        if (set.size < MAX_ADDRS_PER_HOST) set.add(r.data);
      }
      for (const [name, inst] of this.instances) if (inst.srv?.target === host) touched.add(name);
    }
    for (const r of records) {
      const name = r.name.toLowerCase();
      if (r.type === 'PTR' && name === CAIRN_SERVICE && typeof r.data === 'string') {
        const inst = r.data.toLowerCase();
        if (!inst.endsWith(suffix)) continue;
        if (r.ttl === 0) this.forget(inst);
        else if (this.instanceFor(inst, true)) touched.add(inst);
      } else if (r.type === 'SRV' && name.endsWith(suffix)) {
        if (r.ttl === 0) {
          this.forget(name);
          continue;
        }
        const d = r.data;
        if (!Number.isInteger(d.port) || d.port < 1 || d.port > 65535 || typeof d.target !== 'string') continue;
        const inst = this.instanceFor(name, true);
        if (!inst) continue;
        inst.srv = { port: d.port, target: d.target.toLowerCase() };
        touched.add(name);
      } else if (r.type === 'TXT' && name.endsWith(suffix)) {
        if (r.ttl === 0) continue;
        const t = decodeTxt(r.data);
        if ('error' in t) {
          this.log.debug('mdns.bad_txt', { instance: name, err: t.error });
          continue;
        }
        const inst = this.instanceFor(name, true);
        if (!inst) continue;
        inst.txt = t;
        touched.add(name);
      }
    }
    for (const name of touched) {
      const inst = this.instances.get(name);
      if (!inst) continue;
      const b = this.complete(name, inst);
      if (!b) {
        this.resolve(name, inst);
        continue;
      }
      const sig = `${b.port}|${b.keyHash}|${b.id}|${b.addresses.join(',')}`;
      if (sig === inst.reported) continue;
      inst.reported = sig;
      this.emit('box', b);
    }
  }

  /** Asks directly for what an instance still lacks (SRV/TXT, or its host's address), at most once a second. */
  private resolve(name: string, inst: Instance): void {
    if (this.closed) return;
    const now = this.now();
    if (inst.asked !== undefined && now - inst.asked < 1000) return;
    inst.asked = now;
    const questions = !inst.srv || !inst.txt ? [{ name, type: 'SRV' as const }, { name, type: 'TXT' as const }] : [{ name: inst.srv.target, type: 'A' as const }];
    void this.transport.send(() => ({ type: 'query', questions, answers: [], additionals: [], authorities: [] }));
  }

  private forget(name: string): void {
    const inst = this.instances.get(name);
    if (!inst) return;
    this.instances.delete(name);
    if (inst.reported) this.emit('gone', name);
  }
}

/** Lists the boxes heard within `timeoutMs`. */
export async function discoverBoxes(opts: { timeoutMs: number; log?: Logger; transport?: MdnsTransport }): Promise<DiscoveredBox[]> {
  const browser = await BoxBrowser.open(opts);
  try {
    browser.start();
    await new Promise((r) => setTimeout(r, opts.timeoutMs));
    return browser.boxes();
  } finally {
    await browser.close();
  }
}

/**
 * Browses until `attempt` accepts a box that `match` selects, or the time is up. Candidates are
 * tried one at a time, in the order heard; a candidate is tried again if its addresses change.
 */
export async function findBox<T>(opts: {
  timeoutMs: number;
  match: (b: DiscoveredBox) => boolean;
  attempt: (b: DiscoveredBox) => Promise<T | undefined>;
  log?: Logger;
  transport?: MdnsTransport;
}): Promise<T | undefined> {
  const browser = await BoxBrowser.open(opts);
  const queue: DiscoveredBox[] = [];
  let wake: (() => void) | undefined;
  browser.on('box', (b: DiscoveredBox) => {
    if (!opts.match(b)) return;
    queue.push(b);
    wake?.();
  });
  const deadline = Date.now() + opts.timeoutMs;
  try {
    browser.start();
    while (Date.now() < deadline) {
      const next = queue.shift();
      if (next) {
        const r = await opts.attempt(next);
        if (r !== undefined) return r;
        continue;
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(0, deadline - Date.now()));
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      wake = undefined;
    }
    return undefined;
  } finally {
    await browser.close();
  }
}
