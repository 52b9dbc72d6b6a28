/**
 * The refresh loop behind {@link dnsDiscovery}: one lookup at a time with Node's `dns.promises.Resolver`
 * (c-ares: its own sockets, no thread pool, no hand-written DNS protocol here), the next one when the answer's
 * TTL runs out, bounded by `minTtlMs` and `maxTtlMs`. It turns answers into the {@link Addr} states the mesh
 * understands:
 *
 * - `pending` until the first answer;
 * - `bound` to every address of the answer, with `changes`, the diff from the previous bound set (the mesh
 *   applies it in O(change); a refresh that changes nothing publishes nothing). NODATA, an answer without
 *   records of the type asked, is a bound empty set: the name exists and has no endpoints now;
 * - `negative` on NXDOMAIN: the name does not exist (calls get a `ServiceNotFoundError`, as for a service
 *   Consul's catalog does not know). It can only arrive once the previous answer's TTL ran out;
 * - on a failure (SERVFAIL, REFUSED, timeout, server unreachable, unparsable answer) a bound set is kept and
 *   marked `stale`, with `updatedAt` the time of the last good answer so its age shows; before any answer the
 *   state is `failed` with a {@link DnsQueryError}. Failed refreshes back off with equal jitter.
 *
 * The problem this solves: clients that resolve a name once (undici's Agent connects to what `dns.lookup`
 * returns and keeps the sockets) stick to a few instances of a Kubernetes headless service and never use
 * new pods (nodejs/undici#3648, grpc/grpc-node#2455 and #1663, cloudflare/pingora#138).
 *
 * SRV (RFC 2782): Node's `resolveSrv` does not return the records' TTL (c-ares' SRV parser drops it), so an
 * SRV set is refreshed when the first of its targets' address records expires (each target is looked up with
 * `{ ttl: true }`), within the same bounds. A target that is an address literal is used as is. A target whose
 * lookup fails keeps the addresses it had; one that does not exist (or has no addresses) gives no endpoint and
 * is listed in `skipped`.
 */
import { Resolver as NodeResolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { Logger } from '../../core/logger.js';
import type { Rng } from '../../core/rng.js';
import type { Addr, DiscoveryContext, Endpoint, Resolver, Subscription } from '../types.js';
import { endpointId } from '../endpoint.js';
import { backoffDelay } from '../consul/loop.js';
import { DiscoveryWatch } from '../watch.js';
import type { DnsAddressType, ResolvedDnsOptions } from './options.js';
import type { DnsResolverSnapshot, DnsResolverStats, SkippedTarget } from './snapshot.js';
import {
  classifyDnsError,
  DnsQueryError,
  EndpointBuilder,
  slotKey,
  type EndpointSlot,
  refreshDelayMs,
  srvWeights,
  type DnsNegative,
  type SrvRecord,
  validSrv,
} from './records.js';

/** SRV targets looked up at once: enough for hundreds of pods in a few round trips, few enough for any server. */
const TARGET_CONCURRENCY = 16;

interface AddressRecord {
  readonly address: string;
  readonly ttl: number;
}

/** What one lookup of the name came back with. */
type Answer =
  | {
      readonly kind: 'records';
      readonly endpoints: Endpoint[];
      /** The builder saw exactly the previous set (see EndpointBuilder.unchanged). */
      readonly unchanged: boolean;
      readonly refreshMs: number;
      readonly nodata: boolean;
    }
  | { readonly kind: 'nxdomain' };

interface TargetAddresses {
  readonly addresses: readonly string[];
  /** Seconds; undefined for an address literal. */
  readonly ttl: number | undefined;
}

/**
 * A live view of one DNS name. Made by {@link DnsDiscovery.resolve}; the mesh closes it.
 *
 * @example
 * ```ts
 * const resolver = dnsDiscovery({ name: 'users.test', port: 8080 }).resolve(ctx);
 * resolver.subscribe((addr) => console.log(addr.state));
 * await resolver.close();
 * ```
 */
export class DnsResolver implements Resolver {
  readonly #opts: ResolvedDnsOptions;
  readonly #logical: string;
  readonly #name: string;
  readonly #rng: Rng;
  readonly #log: Logger;
  readonly #dns: NodeResolver;
  readonly #watch: DiscoveryWatch;
  readonly #stats: DnsResolverStats = {
    lookups: 0,
    queries: 0,
    errors: 0,
    updates: 0,
    nxdomain: 0,
    nodata: 0,
    targetErrors: 0,
  };
  /** The current set by address (A / AAAA) or id (SRV), for the next refresh's {@link EndpointBuilder}. */
  #slots: Map<string, EndpointSlot> = new Map();
  #generation = 0;
  #targets: Map<string, TargetAddresses> = new Map();
  #skipped: readonly SkippedTarget[] = Object.freeze([]);
  #refreshMs: number | undefined;
  readonly #loop: Promise<void>;

  constructor(ctx: DiscoveryContext, options: ResolvedDnsOptions, name: string) {
    this.#opts = options;
    this.#logical = ctx.service;
    this.#name = name;
    this.#rng = ctx.rng;
    this.#log = ctx.logger;
    this.#dns = new NodeResolver({ timeout: options.timeoutMs, tries: options.tries });
    if (options.servers !== undefined) this.#dns.setServers([...options.servers]);
    this.#watch = new DiscoveryWatch(ctx, 'dns', { service: this.#logical, name, type: options.type }, () => {
      this.#stats.updates++;
    });
    this.#loop = this.#run();
  }

  /** The current state. */
  get addr(): Addr {
    return this.#watch.addr;
  }

  /** SRV targets of the last refresh that gave no endpoint (no such name, no address records). */
  get skipped(): readonly SkippedTarget[] {
    return this.#skipped;
  }

  /** The last error of the loop, or undefined after a good answer. */
  get lastError(): Error | undefined {
    return this.#watch.lastError;
  }

  /** How long ago DNS last confirmed the current set (ms; undefined unless bound). */
  get ageMs(): number | undefined {
    return this.#watch.ageMs;
  }

  subscribe(listener: (addr: Addr) => void): Subscription {
    return this.#watch.subscribe(listener);
  }

  /** A JSON-safe view for diagnostics. */
  snapshot(): DnsResolverSnapshot {
    const a = this.#watch.addr;
    return {
      kind: 'dns',
      service: this.#logical,
      name: this.#name,
      type: this.#opts.type,
      servers: this.#opts.servers ?? [],
      state: a.state,
      endpoints: a.state === 'bound' ? a.endpoints.length : 0,
      stale: a.state === 'bound' && a.stale,
      updatedAt: a.state === 'bound' ? a.updatedAt : undefined,
      ageMs: this.ageMs,
      refreshMs: this.#refreshMs,
      consecutiveErrors: this.#watch.consecutiveErrors,
      lastError: this.#watch.lastError?.message,
      skipped: this.#skipped,
      stats: { ...this.#stats },
    };
  }

  toJSON(): DnsResolverSnapshot {
    return this.snapshot();
  }

  /** Stops the loop, cancels the queries in flight and the timer. Idempotent. */
  async close(): Promise<void> {
    if (this.#watch.closed) return this.#loop;
    this.#watch.close();
    this.#dns.cancel();
    await this.#loop;
    this.#watch.clearListeners();
  }

  async #run(): Promise<void> {
    const w = this.#watch;
    while (!w.closed) {
      let delay: number;
      try {
        this.#stats.lookups++;
        const answer = this.#opts.type === 'SRV' ? await this.#lookupSrv() : await this.#lookupAddresses();
        if (w.closed) return;
        delay = this.#onAnswer(answer);
      } catch (err) {
        if (w.closed) return;
        this.#onError(err);
        delay = backoffDelay(
          w.consecutiveErrors - 1,
          this.#opts.backoffBaseMs,
          this.#opts.backoffMaxMs,
          this.#rng,
        );
      }
      await w.sleep(delay);
    }
  }

  /** One address lookup: records, a negative answer, or a thrown {@link DnsQueryError}. */
  async #query(type: 'A' | 'AAAA', name: string): Promise<AddressRecord[] | DnsNegative> {
    this.#stats.queries++;
    try {
      return type === 'A'
        ? await this.#dns.resolve4(name, { ttl: true })
        : await this.#dns.resolve6(name, { ttl: true });
    } catch (err) {
      const c = classifyDnsError(err, `${type} ${name}`);
      if (c instanceof DnsQueryError) throw c;
      return c;
    }
  }

  /** The address records of `name` for `type` (both families for A+AAAA): NXDOMAIN only when neither exists. */
  async #addresses(type: DnsAddressType, name: string): Promise<AddressRecord[] | DnsNegative> {
    if (type !== 'A+AAAA') return this.#query(type, name);
    const [v4, v6] = await Promise.allSettled([this.#query('A', name), this.#query('AAAA', name)]);
    if (v4.status === 'rejected') throw v4.reason;
    if (v6.status === 'rejected') throw v6.reason;
    const a = v4.value;
    const b = v6.value;
    if (typeof a === 'string' && typeof b === 'string')
      return a === 'nxdomain' && b === 'nxdomain' ? 'nxdomain' : 'nodata';
    return [...(typeof a === 'string' ? [] : a), ...(typeof b === 'string' ? [] : b)];
  }

  async #lookupAddresses(): Promise<Answer> {
    const got = await this.#addresses(this.#opts.type as DnsAddressType, this.#name);
    if (got === 'nxdomain') return { kind: 'nxdomain' };
    const o = this.#opts;
    const builder = new EndpointBuilder(this.#slots, ++this.#generation);
    let ttl = Infinity;
    if (got !== 'nodata') {
      for (const r of got) {
        builder.add(r.address, r.address, o.port!, 1, undefined);
        if (r.ttl < ttl) ttl = r.ttl;
      }
    }
    return {
      kind: 'records',
      endpoints: builder.list(),
      unchanged: builder.unchanged,
      refreshMs: refreshDelayMs(ttl === Infinity ? undefined : ttl, o.minTtlMs, o.maxTtlMs),
      nodata: got === 'nodata',
    };
  }

  async #lookupSrv(): Promise<Answer> {
    const o = this.#opts;
    let records: SrvRecord[];
    this.#stats.queries++;
    try {
      records = await this.#dns.resolveSrv(this.#name);
    } catch (err) {
      const c = classifyDnsError(err, `SRV ${this.#name}`);
      if (c instanceof DnsQueryError) throw c;
      if (c === 'nxdomain') return { kind: 'nxdomain' };
      records = [];
    }
    // Lowest priority first, so that a duplicate address keeps its best tier (EndpointBuilder keeps the first).
    records = records.filter(validSrv).sort((a, b) => a.priority - b.priority);
    const weights = srvWeights(records);
    const names = [...new Set(records.map((r) => r.name))];
    const found = await this.#resolveTargets(names);
    const builder = new EndpointBuilder(this.#slots, ++this.#generation);
    const skipped: SkippedTarget[] = [];
    let ttl = Infinity;
    records.forEach((r, i) => {
      const t = found.get(r.name);
      if (t === undefined || typeof t === 'string') {
        skipped.push({ target: r.name, port: r.port, reason: t ?? 'no addresses' });
        return;
      }
      if (t.addresses.length === 0)
        skipped.push({ target: r.name, port: r.port, reason: 'no addresses (NODATA)' });
      for (const address of t.addresses) {
        builder.add(endpointId(address, r.port), address, r.port, weights[i]!, r.priority);
      }
      if (t.ttl !== undefined && t.ttl < ttl) ttl = t.ttl;
    });
    this.#reportSkipped(skipped);
    return {
      kind: 'records',
      endpoints: builder.list(),
      unchanged: builder.unchanged,
      refreshMs: refreshDelayMs(ttl === Infinity ? undefined : ttl, o.minTtlMs, o.maxTtlMs),
      nodata: records.length === 0,
    };
  }

  /**
   * Looks up every SRV target, {@link TARGET_CONCURRENCY} at a time. A target whose lookup fails keeps its
   * previous addresses (one broken record must not take the others' updates hostage); one without them is
   * reported with the reason.
   */
  async #resolveTargets(names: readonly string[]): Promise<Map<string, TargetAddresses | string>> {
    const out = new Map<string, TargetAddresses | string>();
    const next: Map<string, TargetAddresses> = new Map();
    let i = 0;
    const worker = async (): Promise<void> => {
      while (i < names.length && !this.#watch.closed) {
        const name = names[i++]!;
        if (isIP(name) !== 0) {
          const t = { addresses: [name], ttl: undefined };
          out.set(name, t);
          next.set(name, t);
          continue;
        }
        try {
          const got = await this.#addresses(this.#opts.targets, name);
          if (typeof got === 'string') {
            out.set(name, got === 'nxdomain' ? 'NXDOMAIN' : 'no addresses (NODATA)');
            continue;
          }
          let ttl = Infinity;
          for (const r of got) if (r.ttl < ttl) ttl = r.ttl;
          const t = { addresses: got.map((r) => r.address), ttl: ttl === Infinity ? undefined : ttl };
          out.set(name, t);
          next.set(name, t);
        } catch (err) {
          this.#stats.targetErrors++;
          const previous = this.#targets.get(name);
          const message = err instanceof Error ? err.message : String(err);
          this.#log.debug(
            { ...this.#watch.fields, target: name, error: message },
            'dns: SRV target lookup failed',
          );
          if (previous !== undefined) {
            out.set(name, previous);
            next.set(name, previous);
          } else out.set(name, `lookup failed: ${message}`);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(TARGET_CONCURRENCY, names.length) }, worker));
    this.#targets = next;
    return out;
  }

  #onAnswer(answer: Answer): number {
    const o = this.#opts;
    const at = this.#watch.answered();
    if (answer.kind === 'nxdomain') {
      this.#stats.nxdomain++;
      this.#refreshMs = o.minTtlMs;
      this.#slots = new Map();
      this.#targets = new Map();
      this.#watch.absent(
        `the DNS name "${this.#name}" does not exist (NXDOMAIN)`,
        'dns: no such name (NXDOMAIN)',
      );
      return o.minTtlMs;
    }
    if (answer.nodata) this.#stats.nodata++;
    this.#refreshMs = answer.refreshMs;
    // The builder reused a previous Endpoint object for every record and missed none: nothing changed (the
    // common refresh: O(records) of lookups in a map, no diff, nothing published).
    const r = this.#watch.bind(answer.endpoints, at, answer.unchanged);
    if (r !== undefined) {
      // The slots of the new set (O(set), on a change only).
      const fixedPort = o.type !== 'SRV';
      const slots = new Map<string, EndpointSlot>();
      r.endpoints.forEach((e, index) => slots.set(slotKey(e, fixedPort), { endpoint: e, seen: 0, index }));
      this.#slots = slots;
    }
    return answer.refreshMs;
  }

  #onError(err: unknown): void {
    const e =
      err instanceof DnsQueryError
        ? err
        : new DnsQueryError(
            'other',
            'EUNKNOWN',
            `unexpected error in the DNS loop: ${String((err as Error)?.message ?? err)}`,
          );
    this.#stats.errors++;
    this.#watch.failed({ error: e, kind: e.kind, fields: { code: e.code } }, 'dns lookup failed');
  }

  #reportSkipped(skipped: SkippedTarget[]): void {
    const key = skipped.map((s) => `${s.target}|${s.port}|${s.reason}`).join('\n');
    const frozen = this.#watch.skipped(skipped, key, `dns: ${skipped.length} SRV target(s) gave no endpoint`);
    if (frozen !== undefined) this.#skipped = frozen;
  }
}
