/**
 * A tiny DNS server on loopback for fault injection: each test decides, per question, what comes back,
 * including what real servers rarely send on demand (SERVFAIL, REFUSED, garbage TTLs, a truncated UDP answer,
 * no answer at all). It is not an imitation of any server: dnsmasq and Consul's DNS interface are the real
 * servers of the other DNS tests. UDP always; TCP (RFC 1035 section 4.2.2: two-byte length prefix, used by a
 * resolver after a truncated UDP answer) when asked for.
 *
 * The wire format follows RFC 1035 section 4 (header, question, resource records) with RFC 3596 (AAAA) and
 * RFC 2782 (SRV); names in answers are written uncompressed except the owner name, which points at the
 * question (offset 12).
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

/** A resource record to answer with. */
export type DnsRecord =
  | { type: 'A'; address: string; ttl?: number; name?: string }
  | { type: 'AAAA'; address: string; ttl?: number; name?: string }
  | {
      type: 'SRV';
      target: string;
      port: number;
      priority?: number;
      weight?: number;
      ttl?: number;
      name?: string;
    };

/** What to do with one question. */
export interface DnsReply {
  /** Response code: 0 NOERROR (default), 2 SERVFAIL, 3 NXDOMAIN, 5 REFUSED. */
  rcode?: number;
  answers?: DnsRecord[];
  /** Over UDP: set TC and send the header and question only (the resolver retries over TCP). */
  truncate?: boolean;
  /** Send nothing (the resolver times out). */
  drop?: boolean;
}

/** One question as the server saw it. */
export interface DnsQuestion {
  readonly name: string;
  readonly type: 'A' | 'AAAA' | 'SRV' | number;
  readonly transport: 'udp' | 'tcp';
}

export type DnsHandler = (q: DnsQuestion) => DnsReply;

export interface TestDnsServer {
  readonly port: number;
  /** `127.0.0.1:<port>`, for `dnsDiscovery({ servers: [...] })`. */
  readonly address: string;
  handler: DnsHandler;
  /** Every question received, in order. */
  readonly questions: DnsQuestion[];
  close(): Promise<void>;
}

const TYPES: Record<number, 'A' | 'AAAA' | 'SRV'> = { 1: 'A', 28: 'AAAA', 33: 'SRV' };
const CODES = { A: 1, AAAA: 28, SRV: 33 } as const;

function readName(buf: Buffer, offset: number): { name: string; end: number } {
  const labels: string[] = [];
  let o = offset;
  for (let guard = 0; guard < 128; guard++) {
    const len = buf[o]!;
    if (len === 0) return { name: labels.join('.'), end: o + 1 };
    labels.push(buf.toString('latin1', o + 1, o + 1 + len));
    o += 1 + len;
  }
  throw new Error('name too long');
}

function writeName(name: string): Buffer {
  const parts = name
    .replace(/\.$/, '')
    .split('.')
    .filter((l) => l !== '');
  const bufs = parts.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')]));
  return Buffer.concat([...bufs, Buffer.from([0])]);
}

function ipv6Bytes(address: string): Buffer {
  const [head, tail] = address.includes('::') ? address.split('::') : [address, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g || '0', 16), i * 2));
  return out;
}

function rdata(r: DnsRecord): Buffer {
  if (r.type === 'A') return Buffer.from(r.address.split('.').map(Number));
  if (r.type === 'AAAA') return ipv6Bytes(r.address);
  const head = Buffer.alloc(6);
  head.writeUInt16BE(r.priority ?? 1, 0);
  head.writeUInt16BE(r.weight ?? 1, 2);
  head.writeUInt16BE(r.port, 4);
  return Buffer.concat([head, writeName(r.target)]);
}

/** Builds the answer message for `query` (the raw question message). */
function answer(query: Buffer, reply: DnsReply, tcp: boolean): Buffer {
  const { end } = readName(query, 12);
  const question = query.subarray(12, end + 4);
  const rd = query.readUInt16BE(2) & 0x0100;
  const truncated = reply.truncate === true && !tcp;
  const answers = truncated ? [] : (reply.answers ?? []);
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.readUInt16BE(0), 0);
  header.writeUInt16BE(
    0x8000 | 0x0400 | (truncated ? 0x0200 : 0) | rd | 0x0080 | ((reply.rcode ?? 0) & 0xf),
    2,
  );
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(answers.length, 6);
  const rrs = answers.map((r) => {
    const data = rdata(r);
    const fixed = Buffer.alloc(10);
    fixed.writeUInt16BE(CODES[r.type], 0);
    fixed.writeUInt16BE(1, 2);
    // Any 32-bit value, including ones with the top bit set (the garbage-TTL tests).
    fixed.writeUInt32BE((r.ttl ?? 1) >>> 0, 4);
    fixed.writeUInt16BE(data.length, 8);
    const owner = r.name === undefined ? Buffer.from([0xc0, 0x0c]) : writeName(r.name);
    return Buffer.concat([owner, fixed, data]);
  });
  return Buffer.concat([header, question, ...rrs]);
}

function parse(msg: Buffer, transport: 'udp' | 'tcp'): DnsQuestion {
  const { name, end } = readName(msg, 12);
  const code = msg.readUInt16BE(end);
  return { name, type: TYPES[code] ?? code, transport };
}

/**
 * Starts the server on 127.0.0.1 (UDP, and TCP on the same port with `tcp: true`).
 *
 * @example
 * ```ts
 * const dns = await startDnsServer((q) => ({ answers: [{ type: 'A', address: '127.0.0.1', ttl: 1 }] }));
 * dnsDiscovery({ name: 'users.test', port: 8080, servers: [dns.address] });
 * ```
 */
export async function startDnsServer(
  handler: DnsHandler,
  options: { tcp?: boolean } = {},
): Promise<TestDnsServer> {
  const questions: DnsQuestion[] = [];
  const state = { handler };
  // UDP on a free port, and TCP on the same port number when asked: that port can be taken for TCP by another
  // socket, so a pair that does not fit is dropped and another port tried.
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOn(handler, options, questions, state);
    } catch (err) {
      if ((err as { code?: string }).code !== 'EADDRINUSE' || attempt >= 20) throw err;
    }
  }
}

async function startOn(
  handler: DnsHandler,
  options: { tcp?: boolean },
  questions: DnsQuestion[],
  state: { handler: DnsHandler },
): Promise<TestDnsServer> {
  const udp: UdpSocket = createSocket('udp4');
  udp.on('message', (msg, rinfo) => {
    let q: DnsQuestion;
    try {
      q = parse(msg, 'udp');
    } catch {
      return;
    }
    questions.push(q);
    const reply = state.handler(q);
    if (reply.drop) return;
    udp.send(answer(msg, reply, false), rinfo.port, rinfo.address);
  });
  await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
  const port = (udp.address() as AddressInfo).port;
  let tcp: Server | undefined;
  const sockets = new Set<Socket>();
  if (options.tcp) {
    tcp = createServer((s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
      let pending = Buffer.alloc(0);
      s.on('data', (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
          const len = pending.readUInt16BE(0);
          const msg = pending.subarray(2, 2 + len);
          pending = pending.subarray(2 + len);
          const q = parse(msg, 'tcp');
          questions.push(q);
          const reply = state.handler(q);
          if (reply.drop) continue;
          const body = answer(msg, reply, true);
          const prefix = Buffer.alloc(2);
          prefix.writeUInt16BE(body.length, 0);
          s.write(Buffer.concat([prefix, body]));
        }
      });
    });
    try {
      await new Promise<void>((resolve, reject) => {
        tcp!.once('error', reject);
        tcp!.listen(port, '127.0.0.1', () => resolve());
      });
    } catch (err) {
      udp.close();
      throw err;
    }
  }
  return {
    port,
    address: `127.0.0.1:${port}`,
    questions,
    get handler() {
      return state.handler;
    },
    set handler(h: DnsHandler) {
      state.handler = h;
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await Promise.all([
        new Promise<void>((r) => udp.close(() => r())),
        tcp ? new Promise<void>((r) => tcp!.close(() => r())) : Promise.resolve(),
      ]);
    },
  };
}

/** `n` A records 127.0.0.1 ... on consecutive loopback addresses, starting at 127.0.<hi>.<lo>. */
export function loopbackRecords(n: number, ttl = 1, start = 1): DnsRecord[] {
  return Array.from({ length: n }, (_, i) => {
    const k = start + i;
    return { type: 'A' as const, address: `127.0.${(k >> 8) & 255}.${k & 255}`, ttl };
  });
}
