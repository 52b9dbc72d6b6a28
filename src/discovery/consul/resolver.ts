/**
 * The Consul watch loop behind {@link consulDiscovery}: one blocking query at a time on
 * `/v1/health/service/:name`, spaced by a token bucket, with jittered backoff on errors and Consul's index
 * rules. It turns answers into the {@link Addr} states the mesh understands:
 *
 * - `pending` until the first answer;
 * - `bound` to the passing instances (possibly none, when the service exists but nothing passes), with
 *   `changes`, the diff from the previous bound set (so the mesh applies an update in O(change));
 * - `negative` when the catalog does not know the service (Consul answers `200 []` both for an unknown
 *   service and for a token that cannot read it, so the catalog is consulted to tell "no such service" from
 *   "no passing instance");
 * - on errors, a bound set is kept and marked `stale` (an outage never empties it: linkerd/linkerd#665,
 *   #2145), with `updatedAt` the time of the last good answer; before any answer the state is `failed` with
 *   a {@link ConsulRequestError} (the mesh turns it into a `DiscoveryError` for callers).
 *
 * After any error the next query is non-blocking (index 0): the agent may be a restarted one whose index is
 * lower than ours, and a blocking query with an index from the future would hang for the whole `wait`.
 */
import type { Logger } from '../../core/logger.js';
import type { Rng } from '../../core/rng.js';
import type { Addr, DiscoveryContext, Resolver, Subscription } from '../types.js';
import { DiscoveryWatch } from '../watch.js';
import { ConsulApi, ConsulRequestError } from './client.js';
import { parseHealthEntries, type SkippedInstance } from './entries.js';
import { backoffDelay, nextIndex, parseIndex, TokenBucket } from './loop.js';
import type { ResolvedConsulOptions } from './options.js';

/**
 * Counters of one resolver's loop.
 *
 * @example
 * ```ts
 * resolver.snapshot().stats.queries;
 * ```
 */
export interface ConsulResolverStats {
  /** Health queries sent. */
  queries: number;
  /** Failed queries (including catalog lookups). */
  errors: number;
  /** Changes of `addr` published to subscribers. */
  updates: number;
  /** Times Consul's index rules reset the index. */
  indexResets: number;
  /** Catalog lookups made to tell an unknown service from one without passing instances. */
  catalogChecks: number;
}

/**
 * A JSON-safe view of a {@link ConsulResolver} (never contains the token; `token` only says whether one is set).
 *
 * @example
 * ```ts
 * console.log(JSON.stringify(resolver)); // same as resolver.snapshot()
 * ```
 */
export interface ConsulResolverSnapshot {
  readonly kind: 'consul';
  readonly service: string;
  readonly consulService: string;
  readonly datacenter: string | undefined;
  readonly agent: string;
  readonly token: boolean;
  readonly state: Addr['state'];
  readonly endpoints: number;
  readonly stale: boolean;
  /** Mesh-clock ms of the answer the current set came from (bound only). */
  readonly updatedAt: number | undefined;
  /** How long ago Consul last confirmed the set (ms, bound only). */
  readonly ageMs: number | undefined;
  readonly index: string;
  readonly consecutiveErrors: number;
  readonly lastError: string | undefined;
  readonly skipped: readonly SkippedInstance[];
  readonly stats: Readonly<ConsulResolverStats>;
}

/**
 * A live view of one Consul service. Made by {@link ConsulDiscovery.resolve}; the mesh closes it.
 *
 * @example
 * ```ts
 * const resolver = consulDiscovery({ address: '127.0.0.1:8500' }).resolve(ctx);
 * resolver.subscribe((addr) => console.log(addr.state, addr.state === 'bound' ? addr.endpoints.length : ''));
 * console.log(resolver.skipped, resolver.snapshot());
 * await resolver.close();
 * ```
 */
export class ConsulResolver implements Resolver {
  readonly #api: ConsulApi;
  readonly #opts: ResolvedConsulOptions;
  readonly #logical: string;
  readonly #service: string;
  readonly #rng: Rng;
  readonly #log: Logger;
  readonly #watch: DiscoveryWatch;
  readonly #bucket: TokenBucket;
  readonly #stats: ConsulResolverStats = {
    queries: 0,
    errors: 0,
    updates: 0,
    indexResets: 0,
    catalogChecks: 0,
  };
  #skipped: readonly SkippedInstance[] = Object.freeze([]);
  #index = 0n;
  /** Whether the agent has ACLs on (asked only without a token, after an empty answer); undefined: not known. */
  #acl: boolean | undefined;
  readonly #loop: Promise<void>;

  constructor(ctx: DiscoveryContext, options: ResolvedConsulOptions, token: string | undefined) {
    this.#opts = options;
    this.#logical = ctx.service;
    this.#service = options.service ?? ctx.service;
    this.#rng = ctx.rng;
    this.#log = ctx.logger;
    this.#api = new ConsulApi(options.address, token, ctx.clock);
    this.#bucket = new TokenBucket(ctx.clock, options.minIntervalMs, options.burst);
    const fields = {
      service: this.#logical,
      consulService: this.#service,
      datacenter: options.datacenter,
      agent: options.address.url,
    };
    this.#watch = new DiscoveryWatch(ctx, 'consul', fields, () => {
      this.#stats.updates++;
    });
    this.#loop = this.#run();
  }

  /** The current state. */
  get addr(): Addr {
    return this.#watch.addr;
  }

  /** Instances of the last answer that were skipped (unusable address or port, duplicate address). */
  get skipped(): readonly SkippedInstance[] {
    return this.#skipped;
  }

  /** The last error of the loop (message safe to show), or undefined after a good answer. */
  get lastError(): Error | undefined {
    return this.#watch.lastError;
  }

  /**
   * How long ago Consul last confirmed the current endpoint set (ms; undefined unless bound). While Consul
   * answers this stays below `waitMs`; while it is down (stale) it grows with the outage.
   */
  get ageMs(): number | undefined {
    return this.#watch.ageMs;
  }

  subscribe(listener: (addr: Addr) => void): Subscription {
    return this.#watch.subscribe(listener);
  }

  /** A JSON-safe view for diagnostics. */
  snapshot(): ConsulResolverSnapshot {
    const a = this.#watch.addr;
    return {
      kind: 'consul',
      service: this.#logical,
      consulService: this.#service,
      datacenter: this.#opts.datacenter,
      agent: this.#opts.address.url,
      token: this.#api.hasToken,
      state: a.state,
      endpoints: a.state === 'bound' ? a.endpoints.length : 0,
      stale: a.state === 'bound' && a.stale,
      updatedAt: a.state === 'bound' ? a.updatedAt : undefined,
      ageMs: this.ageMs,
      index: this.#index.toString(),
      consecutiveErrors: this.#watch.consecutiveErrors,
      lastError: this.#watch.lastError?.message,
      skipped: this.#skipped,
      stats: { ...this.#stats },
    };
  }

  toJSON(): ConsulResolverSnapshot {
    return this.snapshot();
  }

  /** Stops the loop, cancels the request in flight and its timers, closes the sockets. Idempotent. */
  async close(): Promise<void> {
    if (this.#watch.closed) return this.#loop;
    this.#watch.close();
    await this.#api.close();
    await this.#loop;
    this.#watch.clearListeners();
  }

  async #run(): Promise<void> {
    const w = this.#watch;
    while (!w.closed) {
      try {
        await this.#throttle();
        if (w.closed) return;
        await this.#queryOnce();
      } catch (err) {
        if (w.closed) return;
        this.#onError(err);
        // The next query reads the current state at once (see the file comment).
        this.#index = 0n;
        await w.sleep(
          backoffDelay(w.consecutiveErrors - 1, this.#opts.backoffBaseMs, this.#opts.backoffMaxMs, this.#rng),
        );
      }
    }
  }

  async #throttle(): Promise<void> {
    for (;;) {
      const waitMs = this.#bucket.take();
      if (waitMs === 0 || this.#watch.closed) return;
      await this.#watch.sleep(waitMs);
    }
  }

  #queryOptions(): Record<string, string | boolean | readonly string[]> {
    const o = this.#opts;
    const q: Record<string, string | boolean | readonly string[]> = {};
    if (o.passingOnly) q.passing = true;
    if (o.tags.length > 0) q.tag = [...o.tags];
    if (o.datacenter) q.dc = o.datacenter;
    if (o.consistency === 'stale') q.stale = true;
    if (o.consistency === 'consistent') q.consistent = true;
    if (o.nodeMeta.length > 0) q['node-meta'] = [...o.nodeMeta];
    return q;
  }

  async #queryOnce(): Promise<void> {
    const blocking = this.#index > 0n;
    const q = this.#queryOptions();
    if (blocking) {
      q.index = this.#index.toString();
      q.wait = `${Math.round(this.#opts.waitMs)}ms`;
    }
    this.#stats.queries++;
    const answer = await this.#api.read(
      `health query for "${this.#service}"`,
      `/v1/health/service/${encodeURIComponent(this.#service)}`,
      q,
      blocking ? this.#opts.timeoutMs : Math.min(this.#opts.requestTimeoutMs, this.#opts.timeoutMs),
      this.#opts.maxResponseBytes,
    );
    if (this.#watch.closed) return;
    const body = answer.body;
    if (!Array.isArray(body)) {
      throw new ConsulRequestError(
        'malformed',
        `Consul health query for "${this.#service}" returned a malformed answer: expected a JSON array, got ${describeBody(body)}`,
      );
    }
    const next = nextIndex(this.#index, parseIndex(answer.headers['x-consul-index']));
    if (next.reset !== 'none') {
      this.#stats.indexResets++;
      this.#log.debug(
        { ...this.#watch.fields, reset: next.reset, previous: this.#index.toString() },
        'consul index reset',
      );
    }
    const parsed = parseHealthEntries(body, { passingOnly: this.#opts.passingOnly });
    // An empty answer is ambiguous (unknown service, unreadable service, or nothing passing): ask the catalog.
    const exists = body.length > 0 ? true : await this.#catalogHasService();
    if (this.#watch.closed) return;
    // Without a token, an agent with ACLs on (default deny) hides every service: it is not "absent", the
    // resolver cannot see it. Tell that apart (unless this resolver saw the service before, when the
    // anonymous token could read it and its absence is real).
    if (!exists && !this.#api.hasToken && this.#watch.addr.state !== 'bound' && (await this.#aclsOn())) {
      const where = this.#opts.datacenter ? ` in datacenter "${this.#opts.datacenter}"` : '';
      throw new ConsulRequestError(
        'acl',
        `Consul shows no service "${this.#service}"${where} to a request without a token ` +
          `(GET /v1/acl/token/self answered 403)`,
        403,
      );
    }
    this.#index = next.index;
    const at = this.#watch.answered();
    this.#reportSkipped(parsed.skipped);
    if (exists) this.#watch.bind(parsed.endpoints, at);
    else this.#publishNegative();
  }

  async #catalogHasService(): Promise<boolean> {
    this.#stats.catalogChecks++;
    const q: Record<string, string | boolean> = {};
    if (this.#opts.datacenter) q.dc = this.#opts.datacenter;
    if (this.#opts.consistency === 'stale') q.stale = true;
    if (this.#opts.consistency === 'consistent') q.consistent = true;
    const answer = await this.#api.read(
      'catalog lookup',
      '/v1/catalog/services',
      q,
      Math.min(this.#opts.requestTimeoutMs, this.#opts.timeoutMs),
      this.#opts.maxResponseBytes,
    );
    const body = answer.body;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new ConsulRequestError(
        'malformed',
        `Consul catalog lookup returned a malformed answer: expected a JSON object, got ${describeBody(body)}`,
      );
    }
    return Object.prototype.hasOwnProperty.call(body, this.#service);
  }

  /**
   * Whether the agent has ACLs on, asked once: without a token Consul answers `GET /v1/acl/token/self` with
   * 403 when they are on, 401 ("ACL support disabled") when they are off. A failed probe is asked again next
   * time and counts as "don't know" (false).
   */
  async #aclsOn(): Promise<boolean> {
    if (this.#acl !== undefined) return this.#acl;
    try {
      await this.#api.read(
        'ACL check',
        '/v1/acl/token/self',
        {},
        Math.min(this.#opts.requestTimeoutMs, this.#opts.timeoutMs),
        this.#opts.maxResponseBytes,
      );
      this.#acl = false; // a 2xx without a token: not a default-deny agent
    } catch (err) {
      if (!(err instanceof ConsulRequestError)) return false;
      if (err.kind === 'acl') this.#acl = true;
      else if (err.kind === 'http') this.#acl = false;
      else return false;
    }
    return this.#acl;
  }

  #publishNegative(): void {
    const where = this.#opts.datacenter ? ` in datacenter "${this.#opts.datacenter}"` : '';
    const reason =
      `Consul's catalog${where} has no service "${this.#service}"` +
      (this.#api.hasToken
        ? ` (or the ACL token cannot see it: with ACLs on, a service the token has no service:read on looks absent)`
        : '');
    this.#watch.absent(reason, 'consul: no such service');
  }

  #onError(err: unknown): void {
    const e =
      err instanceof ConsulRequestError
        ? err
        : new ConsulRequestError(
            'malformed',
            this.#api.scrub(`unexpected error in the Consul loop: ${String((err as Error)?.message ?? err)}`),
          );
    this.#stats.errors++;
    const message = this.#explain(e);
    const safe = message === e.message ? e : new ConsulRequestError(e.kind, message, e.statusCode);
    // The message is scrubbed: never the token.
    this.#watch.failed(
      { error: safe, kind: e.kind, fields: { status: e.statusCode } },
      'consul query failed',
    );
  }

  #explain(e: ConsulRequestError): string {
    if (e.kind !== 'acl') return e.message;
    return this.#api.hasToken
      ? `${e.message}: Consul ACLs rejected the token (set with consulDiscovery({ token }) or $CONSUL_HTTP_TOKEN); ` +
          `it is unknown or lacks service:read on "${this.#service}" and node:read`
      : `${e.message}: Consul ACLs are on and discovery has no token; set one with service:read on ` +
          `"${this.#service}" and node:read (consulDiscovery({ token }) or $CONSUL_HTTP_TOKEN)`;
  }

  #reportSkipped(skipped: SkippedInstance[]): void {
    const key = skipped.map((s) => `${s.serviceId}|${s.node}|${s.reason}`).join('\n');
    const frozen = this.#watch.skipped(
      skipped,
      key,
      `consul: skipped ${skipped.length} unusable instance(s)`,
    );
    if (frozen !== undefined) this.#skipped = frozen;
  }
}

function describeBody(body: unknown): string {
  if (body === undefined) return 'an empty body';
  if (body === null) return 'null';
  if (typeof body === 'string') return `text (${body.length} chars)`;
  if (Array.isArray(body)) return 'an array';
  return typeof body === 'object' ? 'an object' : typeof body;
}
