import dgram from 'node:dgram';
import os from 'node:os';
import makeMdns from 'multicast-dns';
import type { Answer, Question, TxtData } from 'dns-packet';
import { errnoCode, errorMessage } from './errors';

/**
 * What the box's advertiser (src/appliance/discovery) and the agent's browser
 * (src/agent/discovery) share: the `_cairn._tcp` service's names, its TXT schema, and a small
 * mDNS socket over multicast-dns.
 *
 * TXT records are hints, never trust. Anyone on the LAN can announce anything; the agent only
 * uses them to choose whom to probe, and then checks the TLS key it is given against the pin it
 * holds (the token's, or the one saved at pairing).
 *
 * Why Cairn manages interfaces itself instead of leaving it to multicast-dns: multicast-dns
 * joins the group on every interface but sends through one (the default route's). A PC with
 * a VPN or two NICs, or a LAN without a default route (our network-namespace tests), would
 * then never hear the box. Here every outgoing packet is sent once per IPv4 interface, with
 * `IP_MULTICAST_IF` set to that interface, and the box answers each interface with the
 * addresses it holds on that interface. IPv6 is not announced (yet).
 */
export const MDNS_GROUP = '224.0.0.251';
export const MDNS_PORT = 5353;
export const CAIRN_SERVICE = '_cairn._tcp.local';
export const DNS_SD_SERVICES = '_services._dns-sd._udp.local';
/** bytes of the SPKI SHA-256 carried (as hex) in the TXT record `kh` */
export const KEY_HASH_BYTES = 8;
/** TTLs (seconds) recommended by RFC 6762 §10: host-name records 120 s, others 75 min */
export const TTL_HOST = 120;
export const TTL_OTHER = 4500;

export interface CairnTxt {
  id: string;
  name: string;
  version: string;
  port: number;
  /** hex of the first KEY_HASH_BYTES bytes of SHA-256 of the box's SPKI */
  kh: string;
}

export function keyHashHex(spkiSha256: Buffer): string {
  return spkiSha256.subarray(0, KEY_HASH_BYTES).toString('hex');
}

export function encodeTxt(t: CairnTxt): Buffer[] {
  return ['txtvers=1', `id=${t.id}`, `name=${t.name}`, `v=${t.version}`, `port=${t.port}`, `kh=${t.kh}`].map((s) => {
    const b = Buffer.from(s, 'utf8');
    return b.length > 255 ? b.subarray(0, 255) : b;
  });
}

const ID_RE = /^[0-9a-f]{8,64}$/;
const KH_RE = new RegExp(`^[0-9a-f]{${KEY_HASH_BYTES * 2}}$`);
const VERSION_RE = /^[0-9A-Za-z.+-]{1,32}$/;

/** Parses and validates a TXT record's strings; returns an error text for anything malformed. */
export function decodeTxt(data: TxtData): CairnTxt | { error: string } {
  const parts = Array.isArray(data) ? data : [data];
  const kv = new Map<string, string>();
  for (const p of parts) {
    const s = Buffer.isBuffer(p) ? p.toString('utf8') : String(p);
    const eq = s.indexOf('=');
    if (eq <= 0) continue;
    const k = s.slice(0, eq).toLowerCase();
    if (!kv.has(k)) kv.set(k, s.slice(eq + 1)); // RFC 6763 §6.4: the first occurrence wins
  }
  if (kv.get('txtvers') !== '1') return { error: `unknown txtvers ${JSON.stringify(kv.get('txtvers') ?? null)}` };
  const id = kv.get('id') ?? '';
  const name = kv.get('name') ?? '';
  const version = kv.get('v') ?? '';
  const kh = (kv.get('kh') ?? '').toLowerCase();
  const port = Number(kv.get('port'));
  if (!ID_RE.test(id)) return { error: 'bad id' };
  if (!KH_RE.test(kh)) return { error: 'bad key hash' };
  if (!VERSION_RE.test(version)) return { error: 'bad version' };
  if (!Number.isInteger(port) || port < 1 || port > 65535) return { error: 'bad port' };
  // A name is shown to the user: keep printable characters only, bounded.
  const clean = name.replace(/[\p{C}]/gu, '').slice(0, 64);
  if (!clean) return { error: 'empty name' };
  return { id, name: clean, version, port, kh };
}

/** A DNS label (≤ 63 bytes, no dots) naming this box's service instance. */
export function instanceLabel(name: string, boxId: string): string {
  const suffix = ` [${boxId.slice(0, 8)}]`;
  let base = name.replace(/\./g, '-');
  while (Buffer.byteLength(base + suffix) > 63) base = base.slice(0, -1);
  return base + suffix;
}

export function instanceName(name: string, boxId: string): string {
  return `${instanceLabel(name, boxId)}.${CAIRN_SERVICE}`;
}

export function hostName(boxId: string): string {
  return `cairn-${boxId.slice(0, 12)}.local`;
}

export interface IfaceAddr {
  name: string;
  address: string;
  netmask: string;
}

/** Non-internal IPv4 addresses, per interface (os.networkInterfaces by default). */
export function ipv4Interfaces(nets: NodeJS.Dict<os.NetworkInterfaceInfo[]> = os.networkInterfaces()): IfaceAddr[] {
  const out: IfaceAddr[] = [];
  for (const [name, list] of Object.entries(nets)) {
    for (const i of list ?? []) {
      if (i.family === 'IPv4' && !i.internal) out.push({ name, address: i.address, netmask: i.netmask });
    }
  }
  return out;
}

function ipv4ToInt(a: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(a);
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return undefined;
  return ((parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]) >>> 0;
}

export function sameSubnet(a: string, b: string, netmask: string): boolean {
  const x = ipv4ToInt(a);
  const y = ipv4ToInt(b);
  const m = ipv4ToInt(netmask);
  if (x === undefined || y === undefined || m === undefined) return false;
  return ((x & m) >>> 0) === ((y & m) >>> 0);
}

export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

export function isUnspecifiedHost(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '';
}

export interface MdnsPacket {
  type: 'query' | 'response';
  id?: number;
  flags?: number;
  questions: Question[];
  answers: Answer[];
  additionals: Answer[];
  authorities: Answer[];
}

export interface Peer {
  address: string;
  port: number;
}

export interface SendOptions {
  /** send only through the interface holding this address (default: every interface) */
  via?: string;
  /** unicast to this peer instead of the multicast group */
  to?: Peer;
}

/** The mDNS socket the advertiser and the browser use; tests substitute an in-memory one. */
export interface MdnsTransport {
  readonly port: number;
  interfaces(): IfaceAddr[];
  onQuery(cb: (p: MdnsPacket, from: Peer) => void): void;
  onResponse(cb: (p: MdnsPacket, from: Peer) => void): void;
  onWarning(cb: (err: Error) => void): void;
  /**
   * `build` is called once per interface the packet leaves through, so answers can carry that
   * interface's addresses; returning undefined skips the interface.
   */
  send(build: (iface: IfaceAddr | undefined) => MdnsPacket | undefined, opts?: SendOptions): Promise<void>;
  /** joins the group on interfaces that appeared since the last call */
  refresh(): void;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** 5353 (default); when it cannot be bound and `fallbackEphemeral` is set, an ephemeral port (one-shot queries, RFC 6762 §5.1) */
  port?: number;
  fallbackEphemeral?: boolean;
  interfaces?: () => IfaceAddr[];
  loopback?: boolean;
}

function bindSocket(port: number): Promise<dgram.Socket> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    const onError = (err: Error): void => {
      sock.close();
      reject(err);
    };
    sock.once('error', onError);
    sock.bind(port, () => {
      sock.removeListener('error', onError);
      resolve(sock);
    });
  });
}

/** Opens a real mDNS socket: UDP 5353, the group joined on every IPv4 interface. */
export async function openMdnsTransport(opts: OpenOptions = {}): Promise<MdnsTransport> {
  const listInterfaces = opts.interfaces ?? (() => ipv4Interfaces());
  let socket: dgram.Socket;
  try {
    socket = await bindSocket(opts.port ?? MDNS_PORT);
  } catch (err) {
    const code = errnoCode(err);
    if (!opts.fallbackEphemeral || (code !== 'EADDRINUSE' && code !== 'EACCES')) throw err;
    socket = await bindSocket(0);
  }
  const port = socket.address().port;
  const multicastPort = port === MDNS_PORT;
  socket.setMulticastTTL(255);
  socket.setMulticastLoopback(opts.loopback ?? true);
  // multicast-dns decodes (undecodable packets become 'warning', never a throw) and encodes;
  // binding and group membership are done here (see the header comment).
  const mdns = makeMdns({ socket, bind: false, multicast: false, port: MDNS_PORT });
  const warnings: ((err: Error) => void)[] = [];
  const warn = (err: Error): void => {
    for (const w of warnings) w(err);
  };
  mdns.on('warning', warn);
  mdns.on('error', warn);
  const joined = new Set<string>();
  const refresh = (): void => {
    if (!multicastPort) return;
    for (const i of listInterfaces()) {
      if (joined.has(i.name)) continue;
      try {
        socket.addMembership(MDNS_GROUP, i.address);
        joined.add(i.name);
      } catch (err) {
        // Already a member through an earlier address of the same interface: that is fine.
        if (errnoCode(err) === 'EADDRINUSE') joined.add(i.name);
        else warn(new Error(`cannot join ${MDNS_GROUP} on ${i.name} (${i.address}): ${errorMessage(err)}`));
      }
    }
  };
  refresh();
  let chain: Promise<void> = Promise.resolve();
  let closed = false;

  const sendOne = (packet: MdnsPacket, to: Peer, ifaceAddr: string | undefined): Promise<void> =>
    new Promise((resolve) => {
      if (closed) return resolve();
      try {
        if (ifaceAddr) socket.setMulticastInterface(ifaceAddr);
      } catch (err) {
        warn(new Error(`cannot send through ${ifaceAddr}: ${errorMessage(err)}`));
        return resolve();
      }
      const done = (err: Error | null): void => {
        if (err) warn(err);
        resolve();
      };
      if (packet.type === 'query') mdns.query({ ...packet }, to, done);
      else mdns.respond({ ...packet }, to, done);
    });

  return {
    port,
    interfaces: listInterfaces,
    onQuery: (cb) => mdns.on('query', (p, r) => cb(p as MdnsPacket, { address: r.address, port: r.port })),
    onResponse: (cb) => mdns.on('response', (p, r) => cb(p as MdnsPacket, { address: r.address, port: r.port })),
    onWarning: (cb) => warnings.push(cb),
    refresh,
    send(build, sendOpts = {}) {
      // Sends are serialized: IP_MULTICAST_IF is socket-wide, so one interface at a time.
      const run = async (): Promise<void> => {
        const ifaces = listInterfaces().filter((i) => !sendOpts.via || i.address === sendOpts.via);
        if (sendOpts.to) {
          const iface = ifaces.find((i) => sameSubnet(i.address, sendOpts.to!.address, i.netmask));
          const p = build(iface);
          if (p) await sendOne(p, sendOpts.to, undefined);
          return;
        }
        for (const i of ifaces) {
          const p = build(i);
          if (p) await sendOne(p, { address: MDNS_GROUP, port: MDNS_PORT }, i.address);
        }
      };
      chain = chain.then(run, run);
      return chain;
    },
    async close() {
      if (closed) return;
      await chain.catch(() => undefined);
      closed = true;
      await new Promise<void>((resolve) => mdns.destroy(() => resolve()));
    },
  };
}
