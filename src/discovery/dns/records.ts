/**
 * The pure pieces of DNS discovery, kept apart from the I/O so they can be tested without a server: what a
 * resolver error means (RFC 1035 section 4.1.1 response codes as Node's `dns` module reports them), how a
 * record's TTL becomes a refresh delay, and how SRV records become weighted, tiered endpoints (RFC 2782).
 *
 * Node's codes (`dns.NOTFOUND` ...) come from c-ares: `ENOTFOUND` is NXDOMAIN (the name does not exist),
 * `ENODATA` an answer without records of the type asked (NODATA, RFC 2308 section 2.2), `ESERVFAIL` and
 * `EREFUSED` the server's own failure or refusal, `ETIMEOUT` no answer in time, `ECONNREFUSED` nobody at
 * the server's address (a TCP retry of a truncated answer, or an ICMP port unreachable on UDP), and
 * `EBADRESP` / `EFORMERR` an answer c-ares could not parse.
 */
import { endpointId } from '../endpoint.js';
import type { Endpoint } from '../types.js';

/**
 * What kind of failure a DNS query met: the server failed (`servfail`), refused to answer (`refused`), did not
 * answer in time (`timeout`), could not be reached (`unreachable`), sent an answer that could not be parsed
 * (`malformed`), or something else (`other`, e.g. `ENOMEM`).
 *
 * @example
 * ```ts
 * if (err instanceof DnsQueryError && err.kind === 'refused') console.log('is the server authoritative for it?');
 * ```
 */
export type DnsErrorKind = 'servfail' | 'refused' | 'timeout' | 'unreachable' | 'malformed' | 'other';

/**
 * A DNS query that failed (not a negative answer: NXDOMAIN and NODATA are answers). `code` is Node's error
 * code (`ESERVFAIL`, `ETIMEOUT`, ...).
 *
 * @example
 * ```ts
 * catch (e) { if (e instanceof DnsQueryError) console.log(e.kind, e.code); }
 * ```
 */
export class DnsQueryError extends Error {
  readonly kind: DnsErrorKind;
  readonly code: string;
  constructor(kind: DnsErrorKind, code: string, message: string) {
    super(message);
    this.name = 'DnsQueryError';
    this.kind = kind;
    this.code = code;
  }
}

/** What a lookup came back with, short of records: the name does not exist, or has none of the type. */
export type DnsNegative = 'nxdomain' | 'nodata';

const KIND_BY_CODE: Readonly<Record<string, DnsErrorKind>> = {
  ESERVFAIL: 'servfail',
  EREFUSED: 'refused',
  ETIMEOUT: 'timeout',
  ECONNREFUSED: 'unreachable',
  EBADRESP: 'malformed',
  EFORMERR: 'malformed',
  EBADNAME: 'malformed',
  ENOTIMP: 'refused',
};

/**
 * Sorts an error from `dns.promises.Resolver` into a negative answer or a {@link DnsQueryError}.
 *
 * @example
 * ```ts
 * classifyDnsError(Object.assign(new Error('x'), { code: 'ENOTFOUND' }), 'A users.test'); // 'nxdomain'
 * ```
 */
export function classifyDnsError(err: unknown, what: string): DnsNegative | DnsQueryError {
  const code =
    typeof (err as { code?: unknown })?.code === 'string' ? (err as { code: string }).code : 'EUNKNOWN';
  if (code === 'ENOTFOUND') return 'nxdomain';
  if (code === 'ENODATA') return 'nodata';
  const kind = KIND_BY_CODE[code] ?? 'other';
  const text: Record<DnsErrorKind, string> = {
    servfail: 'the server failed to answer (SERVFAIL)',
    refused: 'the server refused to answer (REFUSED: it does not serve this name)',
    timeout: 'no answer in time',
    unreachable: 'the server could not be reached (connection refused)',
    malformed: 'the answer could not be parsed',
    other: `the query failed (${String((err as Error)?.message ?? err)})`,
  };
  return new DnsQueryError(kind, code, `DNS query ${what}: ${text[kind]} [${code}]`);
}

/**
 * A TTL in seconds as a refresh delay in ms within `[minMs, maxMs]`. A TTL that is not a finite number, or is
 * negative (a 32-bit TTL with its top bit set reads as negative; RFC 2181 section 8 says to treat such a TTL
 * as 0), counts as 0.
 *
 * @example
 * ```ts
 * refreshDelayMs(0, 1_000, 30_000); // 1000
 * refreshDelayMs(3600, 1_000, 30_000); // 30000
 * ```
 */
export function refreshDelayMs(ttlSeconds: number | undefined, minMs: number, maxMs: number): number {
  const ttl =
    typeof ttlSeconds === 'number' && Number.isFinite(ttlSeconds) && ttlSeconds > 0 ? ttlSeconds : 0;
  return Math.min(maxMs, Math.max(minMs, ttl * 1000));
}

/**
 * An SRV record as `dns.promises.Resolver.resolveSrv` returns it.
 *
 * @example
 * ```ts
 * const r: SrvRecord = { name: 'pod-1.users.test', port: 8080, priority: 10, weight: 5 };
 * ```
 */
export interface SrvRecord {
  readonly name: string;
  readonly port: number;
  readonly priority: number;
  readonly weight: number;
}

/**
 * The balancer weight of each SRV record (by index). RFC 2782: within one priority, a target's share is its
 * weight over the sum; weight 0 means "no server selection to do" when every record of the priority has it
 * (then all are equal: 1), and "a very small chance of being selected" beside non-zero weights (then 1 % of
 * the smallest non-zero weight of that priority). The balancer needs weights > 0, hence these stand-ins.
 *
 * @example
 * ```ts
 * srvWeights([{ name: 'a', port: 1, priority: 1, weight: 0 }, { name: 'b', port: 1, priority: 1, weight: 10 }]);
 * // [0.1, 10]
 * ```
 */
export function srvWeights(records: readonly SrvRecord[]): number[] {
  const minNonZero = new Map<number, number>();
  for (const r of records) {
    if (r.weight > 0) minNonZero.set(r.priority, Math.min(minNonZero.get(r.priority) ?? Infinity, r.weight));
  }
  return records.map((r) => {
    if (r.weight > 0) return r.weight;
    const m = minNonZero.get(r.priority);
    return m === undefined ? 1 : m / 100;
  });
}

/**
 * True for an SRV record the resolver can use: a target name (RFC 2782's "." target, "service decidedly not
 * available", arrives empty), a port in 1..65535, integer priority and weight.
 *
 * @example
 * ```ts
 * validSrv({ name: 'a.test', port: 0, priority: 1, weight: 1 }); // false
 * ```
 */
export function validSrv(r: SrvRecord): boolean {
  return (
    typeof r.name === 'string' &&
    r.name !== '' &&
    Number.isInteger(r.port) &&
    r.port >= 1 &&
    r.port <= 65535 &&
    Number.isInteger(r.priority) &&
    Number.isInteger(r.weight) &&
    r.weight >= 0
  );
}

const NO_TAGS: readonly string[] = Object.freeze([]);
const NO_META: Readonly<Record<string, string>> = Object.freeze({});

/**
 * What a resolver remembers of one endpoint of its current set, keyed by the address for A / AAAA records
 * (one port for all) and by the endpoint id for SRV: the {@link Endpoint} object, and the refresh that last saw
 * it and where (so a duplicate record in one answer is found without a second map).
 */
export interface EndpointSlot {
  readonly endpoint: Endpoint;
  seen: number;
  index: number;
}

/** The key of an endpoint in the slot map: its address with a fixed port, else its id. */
export function slotKey(endpoint: Endpoint, fixedPort: boolean): string {
  return fixedPort ? endpoint.host : endpoint.id;
}

/**
 * Builds one refresh's endpoints from `(address, port, weight, priority)` tuples, reusing the previous
 * {@link Endpoint} object of every record whose weight and priority did not change, and dropping duplicate
 * records (the first, that is the lowest priority, wins; weights of duplicates at the same priority add up).
 * A refresh of an unchanged set costs one map lookup per record (by the address string c-ares produced, with
 * a fixed port) and allocates nothing per record; {@link EndpointBuilder.unchanged} then says so in O(1).
 *
 * @example
 * ```ts
 * const b = new EndpointBuilder(slots, ++generation);
 * b.add('10.0.0.1', '10.0.0.1', 8080, 1, undefined);
 * if (!b.unchanged) publish(b.list());
 * ```
 */
export class EndpointBuilder {
  private readonly out: Endpoint[] = [];
  /** Keys of this refresh that are not in `previous`, with their index in `out`. */
  private readonly fresh = new Map<string, number>();
  private reused = 0;
  private merged = false;

  constructor(
    private readonly previous: ReadonlyMap<string, EndpointSlot>,
    private readonly generation: number,
  ) {}

  /** Adds one record: `key` is {@link slotKey} of the endpoint it names. */
  add(key: string, host: string, port: number, weight: number, priority: number | undefined): void {
    const p = priority === 0 ? undefined : priority;
    const slot = this.previous.get(key);
    if (slot !== undefined) {
      if (slot.seen === this.generation) return this.merge(slot.index, host, port, weight, p);
      slot.seen = this.generation;
      slot.index = this.out.length;
      const prev = slot.endpoint;
      if (prev.weight === weight && prev.priority === p) {
        this.reused++;
        this.out.push(prev);
      } else this.out.push(make(prev.id, host, port, weight, p));
      return;
    }
    const at = this.fresh.get(key);
    if (at !== undefined) return this.merge(at, host, port, weight, p);
    this.fresh.set(key, this.out.length);
    this.out.push(make(endpointId(host, port), host, port, weight, p));
  }

  private merge(at: number, host: string, port: number, weight: number, p: number | undefined): void {
    const e = this.out[at]!;
    if (e.priority !== p) return;
    this.out[at] = make(e.id, host, port, e.weight + weight, p);
    this.merged = true;
  }

  /** The endpoints, in the order first added. */
  list(): Endpoint[] {
    return this.out;
  }

  /**
   * True when the list is the previous set exactly (every record a previous object, none missing, no
   * duplicate merged): the common refresh, told without a diff.
   */
  get unchanged(): boolean {
    return (
      !this.merged &&
      this.fresh.size === 0 &&
      this.reused === this.out.length &&
      this.out.length === this.previous.size
    );
  }
}

function make(id: string, host: string, port: number, weight: number, p: number | undefined): Endpoint {
  return p === undefined
    ? Object.freeze({ id, host, port, weight, tags: NO_TAGS, meta: NO_META })
    : Object.freeze({ id, host, port, weight, priority: p, tags: NO_TAGS, meta: NO_META });
}
