/**
 * The mesh: the set of logical services, their stacks, and the three entry points over them
 * (`fetch`, `request`, `dispatcher`). A URL whose host names a configured service goes through that
 * service's stacks; any other host passes through to a plain undici Agent (or is rejected, with
 * `unknownHosts: 'reject'`), and the mesh's own headers never reach it.
 */
import { Agent, type Dispatcher } from 'undici';
import { ProcessHold, systemClock, type Clock } from '../core/clock.js';
import { whenBodyDone } from '../core/body-done.js';
import { CallContext } from '../core/context.js';
import { incomingContext } from '../core/incoming.js';
import type { CancelSignal } from '../core/signal.js';
import {
  ConfigError,
  DeadlineExceededError,
  InvalidRequestError,
  MeshClosedError,
  MeshError,
  UnknownServiceError,
} from '../core/errors.js';
import { silentLogger, type Logger } from '../core/logger.js';
import {
  responseHeaders,
  type HeaderRecord,
  type MeshRequest,
  type MeshResponse,
  type RequestBody,
} from '../core/message.js';
import { systemRng, type Rng } from '../core/rng.js';
import { inlineTop, type InlineFilter, type Service } from '../core/service.js';
import { withRetryBudget } from '../resilience/retry.js';
import type { ModuleEnv, Stacks } from '../core/stack.js';
import {
  resolveDestinations,
  resolveRoutes,
  type DestinationConfig,
  type RouteRule,
} from '../routing/config.js';
import { RulesRouter } from '../routing/router.js';
import { SharedResolvers } from '../routing/subset.js';
import { takeSnapshot, type MeshSnapshot } from './snapshot.js';
import { publishRequestStart, requestEventsWanted } from '../telemetry/events.js';
import { observeMesh } from '../telemetry/metrics.js';
import { otelRegistered } from '../telemetry/otel.js';
import { SnapshotSections } from '../telemetry/snapshot.js';
import { DEADLINE_HEADER, IDEMPOTENT_HEADER, parseDeadlineHeader } from '../core/call-options.js';
import {
  resolveServiceConfig,
  validateMeshConfig,
  servicePath,
  validateServiceName,
  type MeshConfig,
  type ResolvedServiceConfig,
  type ServiceConfig,
  type ServiceDefaults,
} from './config.js';
import { defaultStacks } from './default-stack.js';
import type { Destination } from '../concrete/destination.js';
import { MeshDispatcher } from './dispatcher.js';
import { meshFetch, type FetchHost } from './fetch.js';
import { parseTarget, UrlCache, type Target } from './url.js';
import { normalizeHeaders, stripMeshHeaders, type HeadersInput } from './headers.js';
import { wireHeaders } from '../core/header-case.js';
import { passthroughDeadline } from './passthrough.js';
import { validateBody, validateMethod } from './validate.js';

/**
 * Options of {@link Mesh.request}, in undici's style.
 *
 * @example
 * ```ts
 * await mesh.request('http://users/v1/users', { method: 'POST', body: JSON.stringify(user), headers: { 'content-type': 'application/json' } });
 * ```
 */
export interface MeshRequestOptions {
  method?: string;
  headers?: HeadersInput;
  body?: RequestBody;
  signal?: AbortSignal;
}

/**
 * What {@link Mesh.request} resolves to: undici's `ResponseData` shape (the body has `.json()`, `.text()`,
 * `.arrayBuffer()` and is a Node Readable).
 */
export interface MeshResponseData {
  statusCode: number;
  statusText: string;
  headers: Record<string, string | string[] | undefined>;
  body: Dispatcher.ResponseData['body'];
}

/** The Dispatcher type the global `fetch`'s `RequestInit` names on the installed Node types (undici-types). */
export type GlobalFetchDispatcher = RequestInit extends { dispatcher?: infer D } ? NonNullable<D> : unknown;

/** Options of {@link Mesh.close}. */
export interface CloseOptions {
  /** How long in-flight calls may take to finish before they are aborted (ms). Default 10000. */
  gracePeriodMs?: number;
}

/** A logical service with its built stack. */
export class LogicalService {
  /** The inline filters at the top of the stack (outermost first), which the entry point runs itself. */
  readonly inline: readonly InlineFilter[];
  /** The first service below them (the whole stack when there are none). */
  readonly below: Service;

  constructor(
    readonly config: ResolvedServiceConfig,
    readonly stack: Service,
    /** The leaf of the logical stack: rules, splits, overrides and failover over the concrete destinations. */
    readonly router: RulesRouter,
    /** What the modules of its logical stack expose to snapshots (retry budget, backup requests). */
    readonly sections: SnapshotSections,
  ) {
    const top = inlineTop(stack);
    this.inline = top.inline;
    this.below = top.below;
  }
  get name(): string {
    return this.config.name;
  }
  /** The default concrete destination (`primary`, else the first rule's): its balancer and endpoints. */
  get destination(): Destination {
    return this.router.defaultDestination.destination;
  }
  /** The default destination's concrete stack (admission, breaker, balancer). */
  get concrete(): Service {
    return this.router.defaultDestination.stack;
  }
  async close(force: boolean): Promise<void> {
    await this.router.closeAll(force);
    await this.stack.close();
  }
}

/**
 * An in-process service mesh. Create it with {@link createMesh}.
 *
 * @example
 * ```ts
 * const mesh = createMesh({ services: { users: { endpoints: ['127.0.0.1:8080', '127.0.0.1:8081'] } } });
 * const res = await mesh.fetch('http://users/v1/users/42');
 * console.log(res.status, await res.json());
 * await mesh.close();
 * ```
 */
export class Mesh implements AsyncDisposable {
  /**
   * An undici Dispatcher for `fetch(url, { dispatcher: mesh.dispatcher })` and `undici.request`. Typed as
   * both undici's Dispatcher and the one the global fetch's `RequestInit` names on your Node types, so the
   * built-in fetch accepts it without a cast.
   */
  readonly dispatcher: MeshDispatcher & GlobalFetchDispatcher;
  readonly clock: Clock;
  readonly rng: Rng;
  readonly logger: Logger;
  private readonly services = new Map<string, LogicalService>();
  private readonly urls = new UrlCache(512);
  private readonly stacks: Stacks;
  private readonly defaults: ServiceDefaults;
  private readonly rejectUnknown: boolean;
  private readonly overridesEnabled: boolean;
  private agent: Agent | undefined;
  private inflight = 0;
  /** Keeps the process alive while a call waits for its answer (src/core/clock.ts). */
  private readonly hold = new ProcessHold();
  private idleWaiters: Array<() => void> = [];
  private closing: Promise<void> | undefined;
  /** Registration with the metrics' observable instruments (they read {@link Mesh.snapshot}). */
  private readonly observed: { dispose(): void };
  private readonly onCallDone = (): void => {
    if (--this.inflight === 0 && this.idleWaiters.length > 0) {
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const f of w) f();
    }
  };

  constructor(config: MeshConfig = {}) {
    const c = validateMeshConfig(config);
    this.clock = c.clock ?? systemClock;
    this.rng = c.rng ?? systemRng;
    this.logger = c.logger ?? silentLogger;
    this.defaults = c.defaults ?? {};
    this.rejectUnknown = c.unknownHosts === 'reject';
    this.overridesEnabled = c.overrides?.enabled === true;
    const base = defaultStacks();
    this.stacks = c.stack ? c.stack(base) : base;
    if (!this.stacks || !this.stacks.logical || !this.stacks.concrete || !this.stacks.endpoint) {
      throw new ConfigError(
        'stack',
        this.stacks,
        'a function returning { logical, concrete, endpoint } stacks',
      );
    }
    this.dispatcher = new MeshDispatcher(this) as MeshDispatcher & GlobalFetchDispatcher;
    // Validate every service before building any, so a bad config leaves nothing running.
    const entries = Object.entries(c.services ?? {});
    const resolved = entries.map(([name, sc]) => resolveServiceConfig(name, sc, this.defaults));
    // Observed before the services are built, so that their first discovery update is counted.
    this.observed = observeMesh(this);
    try {
      for (const r of resolved) this.services.set(r.name, this.build(r));
    } catch (err) {
      this.observed.dispose();
      throw err;
    }
  }

  /** True once {@link Mesh.close} has been called. */
  get closed(): boolean {
    return this.closing !== undefined;
  }

  /** Calls in flight through the mesh's services (until their response bodies end). */
  get inflightCalls(): number {
    return this.inflight;
  }

  /** Names of the configured services. */
  serviceNames(): string[] {
    return [...this.services.keys()];
  }

  /** @internal The logical service for a URL hostname. */
  lookup(hostname: string): LogicalService | undefined {
    return this.services.get(hostname);
  }

  /**
   * Adds a service at run time. Throws a {@link ConfigError} if the name is taken or the config is invalid.
   *
   * @example
   * ```ts
   * mesh.addService('billing', { endpoints: ['127.0.0.1:9000'] });
   * ```
   */
  addService(name: string, config: ServiceConfig): void {
    if (this.closing) throw new MeshClosedError();
    validateServiceName(name);
    if (this.services.has(name)) throw new ConfigError(servicePath(name), name, 'a name not already in use');
    this.services.set(name, this.build(resolveServiceConfig(name, config, this.defaults)));
  }

  /**
   * Removes a service: new calls to its name pass through (or are rejected); in-flight calls finish.
   *
   * @example
   * ```ts
   * await mesh.removeService('billing');
   * ```
   */
  async removeService(name: string): Promise<void> {
    const svc = this.services.get(name);
    if (!svc) throw new ConfigError(servicePath(name), name, 'a configured service');
    this.services.delete(name);
    await svc.close(false);
  }

  private build(config: ResolvedServiceConfig): LogicalService {
    if (config.transport.tls?.rejectUnauthorized === false) {
      // Once per service: the setting is a config fact, not a per-connection event.
      this.logger.warn(
        { service: config.name, option: `${servicePath(config.name)}.transport.tls.rejectUnauthorized` },
        'TLS certificate verification is OFF for this service (rejectUnauthorized: false): any server certificate is accepted',
      );
    }
    const sections = new SnapshotSections();
    const base: ModuleEnv = {
      level: 'logical',
      service: config.name,
      // One retry budget per logical service, read by every module that spends it.
      params: withRetryBudget(config.params, this.clock),
      clock: this.clock,
      rng: this.rng,
      logger: this.logger,
      sections,
    };
    // One discovery watch per source, shared by the destinations that take subsets of it.
    const resolvers = new SharedResolvers({
      service: config.name,
      clock: this.clock,
      rng: this.rng,
      logger: this.logger,
    });
    const router = new RulesRouter({
      service: config.name,
      routing: config.routing,
      factory: {
        stacks: this.stacks,
        env: base,
        balancer: config.balancer,
        transport: config.transport,
        hostHeader: config.hostHeader,
        resolvers,
      },
      overrides: this.overridesEnabled,
      rng: this.rng,
      logger: this.logger,
    });
    const stack = this.stacks.logical.build(router, base);
    return new LogicalService(config, stack, router, sections);
  }

  /**
   * Replaces a service's routing rules (and, when given, its named destinations) at run time, atomically:
   * calls in flight finish where they were sent; the next call routes with the new table. Destinations kept
   * under the same name and source keep their balancer, breaker and connections; the ones no longer named
   * drain and close. Everything is validated first: a {@link ConfigError} names the option path (e.g.
   * `services.users.routes[0].to[1].weight`) and changes nothing.
   *
   * @example
   * ```ts
   * // Canary: 90 % stable, 10 % v2, sticky per user.
   * mesh.setRoutes('users', [
   *   { to: [{ destination: 'v1', weight: 90 }, { destination: 'v2', weight: 10 }], sticky: { header: 'x-user-id' } },
   * ]);
   * ```
   */
  setRoutes(
    service: string,
    routes: readonly RouteRule[],
    destinations?: Readonly<Record<string, DestinationConfig>>,
  ): void {
    if (this.closing) throw new MeshClosedError();
    const svc = this.services.get(service);
    if (!svc) throw new ConfigError(servicePath(service), service, 'a configured service');
    const current = svc.router.current.routing;
    const path = servicePath(service);
    const dests =
      destinations === undefined
        ? current.destinations
        : resolveDestinations(destinations, current.base, `${path}.destinations`);
    const rules = resolveRoutes(routes, dests, `${path}.routes`);
    svc.router.setRouting({ destinations: dests, rules, base: current.base });
  }

  /**
   * The routing rules a service uses now, as given (to change a weight and {@link Mesh.setRoutes} them back).
   *
   * @example
   * ```ts
   * const rules = mesh.routes('users');
   * ```
   */
  routes(service: string): RouteRule[] {
    const svc = this.services.get(service);
    if (!svc) throw new ConfigError(servicePath(service), service, 'a configured service');
    return svc.router.current.routing.rules.map((r) => r.source);
  }

  /** @internal The plain Agent for hosts that are not services. */
  passthrough(hostname: string): Agent {
    if (this.closing) throw new MeshClosedError();
    if (this.rejectUnknown) throw new UnknownServiceError(hostname);
    // undici's own defaults (300 s headers and body timeouts included): a host outside the mesh gets what a
    // plain undici Agent gives, plus the caller's deadline when there is one (./passthrough.ts).
    return (this.agent ??= new Agent({ keepAliveTimeout: 4_000 }));
  }

  /**
   * @internal Runs one logical call through a service's stack. `req.headers` must be a fresh record the mesh
   * may change (the entry points make one).
   */
  invoke(svc: LogicalService, req: MeshRequest, signal: CancelSignal | undefined): Promise<MeshResponse>;
  /** @internal The same, with the response mapped in the same reaction (one promise hop fewer). */
  invoke(
    svc: LogicalService,
    req: MeshRequest,
    signal: CancelSignal | undefined,
    asData: true,
  ): Promise<MeshResponseData>;
  invoke(
    svc: LogicalService,
    req: MeshRequest,
    signal: CancelSignal | undefined,
    asData = false,
  ): Promise<MeshResponse | MeshResponseData> {
    let ctx: CallContext;
    try {
      ctx = this.context(svc, req, signal);
    } catch (err) {
      return Promise.reject(err);
    }
    this.inflight++;
    // Until the call settles (headers or error), the process stays up whatever the call waits on; the body
    // then streams on undici's socket, which undici keeps ref'ed while it is read.
    this.hold.acquire();
    if (requestEventsWanted()) publishRequestStart(req, ctx, this.clock);
    // The inline filters at the top of the stack (the deadline, the logical span, the retries' first attempt)
    // are entered here and exited in this function's one reaction: no promise hop of their own.
    const inline = svc.inline;
    let entered = 0;
    let pending: Promise<MeshResponse> | undefined;
    try {
      for (; entered < inline.length; entered++) {
        pending = inline[entered]!.enter(req, ctx);
        if (pending !== undefined) break;
      }
      pending ??= svc.below.call(req, ctx);
    } catch (err) {
      pending = Promise.reject(err);
    }
    if (entered === 0 && !ctx.hasEndHooks)
      // No async frame here: one `then` with pre-bound handlers, no closure per call.
      return asData
        ? pending.then(this.onResponseData, this.onFailure)
        : pending.then(this.onResponse, this.onFailure);
    return pending.then(
      (res) => this.afterInline(inline, entered, req, ctx, asData, false, res),
      (err: unknown) => this.afterInline(inline, entered, req, ctx, asData, true, err),
    );
  }

  /** The entry point's reaction: the inline filters' exits (or failure handlers), then the call's end. */
  private afterInline(
    inline: readonly InlineFilter[],
    entered: number,
    req: MeshRequest,
    ctx: CallContext,
    asData: boolean,
    failed: boolean,
    outcome: unknown,
  ): MeshResponse | MeshResponseData | Promise<MeshResponse | MeshResponseData> {
    let out: MeshResponse | Promise<MeshResponse>;
    try {
      out = runInline(inline, entered, req, ctx, failed, outcome);
    } catch (err) {
      return this.endWithError(ctx, err);
    }
    if (out instanceof Promise)
      return out.then(
        (r) => this.ended(ctx, r, asData),
        (err: unknown) => this.endWithError(ctx, err),
      );
    return this.ended(ctx, out, asData);
  }

  /** The logical call answered: the mesh's in-flight count (and telemetry's end hooks) wait for the body. */
  private ended(ctx: CallContext, res: MeshResponse, asData: boolean): MeshResponse | MeshResponseData {
    this.hold.release();
    // Telemetry (spans, request events) waits for the end of the body: the one place that runs ctx.end. A
    // closure per call only then; with no SDK and no event subscriber there is no end hook.
    if (ctx.hasEndHooks) this.endWithBody(ctx, res);
    else whenBodyDone(res.body, this.onCallDone);
    return asData ? toResponseData(res) : res;
  }

  private endWithBody(ctx: CallContext, res: MeshResponse): MeshResponse {
    const body = res.body;
    whenBodyDone(body, this.onCallDone);
    whenBodyDone(body, () => ctx.end(res, body.errored ?? undefined));
    return res;
  }

  private endWithError(ctx: CallContext, err: unknown): never {
    this.hold.release();
    this.onCallDone();
    ctx.end(undefined, err);
    throw err;
  }

  private readonly onResponse = (res: MeshResponse): MeshResponse => {
    this.hold.release();
    whenBodyDone(res.body, this.onCallDone);
    return res;
  };

  private readonly onResponseData = (res: MeshResponse): MeshResponseData => {
    this.hold.release();
    whenBodyDone(res.body, this.onCallDone);
    return toResponseData(res);
  };

  private readonly onFailure = (err: unknown): never => {
    this.hold.release();
    this.onCallDone();
    throw err;
  };

  /** Reads the per-call headers and the incoming context into a new CallContext. */
  private context(svc: LogicalService, req: MeshRequest, signal: CancelSignal | undefined): CallContext {
    if (this.closing) throw new MeshClosedError();
    const headers = req.headers;
    const config = svc.config;
    let budget = config.timeoutMs;
    // The deadline goes to the next hop when someone chose it: a configured timeoutMs, this call's own
    // deadlineMs, or the incoming request's (below); the built-in default is enforced, not sent.
    let propagate = config.timeoutConfigured;
    const dh = headers[DEADLINE_HEADER];
    if (dh !== undefined) {
      const v = parseDeadlineHeader(dh);
      if (v === undefined)
        throw new InvalidRequestError(`headers.${DEADLINE_HEADER}`, dh, 'an integer number of milliseconds');
      if (v < budget) budget = v;
      propagate = true;
      delete headers[DEADLINE_HEADER];
    }
    let idempotent: boolean | undefined;
    const ih = headers[IDEMPOTENT_HEADER];
    if (ih !== undefined) {
      if (ih === 'true' || ih === '1') idempotent = true;
      else if (ih === 'false' || ih === '0') idempotent = false;
      else throw new InvalidRequestError(`headers.${IDEMPOTENT_HEADER}`, ih, "'true' or 'false'");
      delete headers[IDEMPOTENT_HEADER];
    }
    const now = this.clock.now();
    let deadline = budget === Infinity ? Infinity : now + budget;
    // Inside a handler served with the server helper: inherit the incoming request's deadline (the effective
    // deadline is min(incoming, local)) and, when the caller gave no signal of its own, its abort signal.
    const incoming = incomingContext.getStore();
    if (incoming !== undefined) {
      if (incoming.deadline !== Infinity) propagate = true;
      if (incoming.deadline < deadline) deadline = incoming.deadline;
      if (signal === undefined) signal = incoming.signal;
    }
    const ctx = new CallContext(svc.name, signal, deadline, idempotent, now, this.logger);
    if (propagate) ctx.propagateDeadline = true;
    if (!otelRegistered()) ctx.otel = false;
    return ctx;
  }

  /**
   * The global `fetch`, routed through the mesh: same signature, a `Response` from the global constructor,
   * bodies streamed both ways, redirects followed as fetch does (each hop routed by its own host). Errors the
   * mesh raises reject as the typed {@link MeshError} itself rather than fetch's `TypeError('fetch failed')`.
   *
   * @example
   * ```ts
   * const res = await mesh.fetch('http://users/v1/users/42', { headers: callOptions({ deadlineMs: 500 }) });
   * ```
   */
  readonly fetch = (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    if (this.closing) return Promise.reject(new MeshClosedError());
    return meshFetch(this.fetchHost, input, init);
  };

  /** What `mesh.fetch` needs of the mesh (src/client/fetch.ts). */
  private readonly fetchHost: FetchHost = {
    target: (url) => {
      const u = typeof url === 'string' ? this.urls.get(url) : parseTarget(url);
      const service = this.services.get(u.hostname);
      return service === undefined ? undefined : { ...u, service };
    },
    send: (target, req, signal) => this.invoke(target.service as LogicalService, req, signal),
    now: () => this.clock.now(),
    slow: async (input, init) => {
      try {
        // A dispatcher the caller passes is used as given, as fetch uses it; otherwise the mesh's.
        const own = (init as { dispatcher?: GlobalFetchDispatcher } | undefined)?.dispatcher;
        return await fetch(input, { ...init, dispatcher: own ?? this.dispatcher });
      } catch (err) {
        if (err instanceof TypeError && err.cause instanceof MeshError) throw err.cause;
        throw err;
      }
    },
  };

  /**
   * A faster call in undici's style: resolves at response headers with `{ statusCode, headers, body }`; the
   * body is a Node Readable with `.json()` / `.text()`. Redirects are not followed.
   *
   * @example
   * ```ts
   * const { statusCode, body } = await mesh.request('http://users/v1/users/42');
   * const user = await body.json();
   * ```
   */
  request(url: string | URL, options: MeshRequestOptions = NO_OPTIONS): Promise<MeshResponseData> {
    let svc: LogicalService | undefined;
    let req: MeshRequest;
    try {
      const u = typeof url === 'string' ? this.urls.get(url) : parseTarget(url);
      const method = options.method === undefined ? 'GET' : validateMethod(options.method);
      const headers = normalizeHeaders(options.headers);
      validateBody(options.body);
      svc = this.services.get(u.hostname);
      if (svc === undefined) return this.passthroughRequest(u, method, headers, options);
      req = {
        method,
        protocol: u.protocol,
        authority: u.host,
        service: u.hostname,
        path: u.path,
        headers,
        body: options.body ?? null,
      };
    } catch (err) {
      return Promise.reject(err);
    }
    // No async frame: one `then` on the call (this is the hot path of the library).
    return this.invoke(svc, req, options.signal, true);
  }

  /** `mesh.request` to a host that is not a service: the plain Agent, without the mesh's headers. */
  private async passthroughRequest(
    u: Target,
    method: string,
    headers: HeaderRecord,
    options: MeshRequestOptions,
  ): Promise<MeshResponseData> {
    const agent = this.passthrough(u.hostname);
    const deadline = passthroughDeadline(headers, this.clock);
    if (deadline === undefined) {
      const r = await agent.request({
        origin: u.origin,
        path: u.path,
        method: method as Dispatcher.HttpMethod,
        headers: wireHeaders(stripMeshHeaders(headers)), // names as the caller wrote them
        body: options.body as Dispatcher.RequestOptions['body'],
        signal: options.signal ?? null,
      });
      return { statusCode: r.statusCode, statusText: r.statusText, headers: r.headers, body: r.body };
    }
    // The caller's deadline: one signal that aborts at the deadline (with DeadlineExceededError) or with the
    // caller's own signal, released when the body is done.
    const ac = new AbortController();
    const caller = options.signal;
    const onAbort = (): void => ac.abort(caller!.reason);
    if (caller?.aborted) ac.abort(caller.reason);
    else caller?.addEventListener('abort', onAbort, { once: true });
    let phase: 'headers' | 'body' = 'headers';
    const timer = this.clock.setTimeout(
      () => ac.abort(new DeadlineExceededError(u.hostname, deadline.budgetMs, phase)),
      Math.max(0, deadline.at - this.clock.now()),
    );
    const release = (): void => {
      this.clock.clearTimeout(timer);
      caller?.removeEventListener('abort', onAbort);
    };
    try {
      const r = await agent.request({
        origin: u.origin,
        path: u.path,
        method: method as Dispatcher.HttpMethod,
        headers: wireHeaders(stripMeshHeaders(headers)), // names as the caller wrote them
        body: options.body as Dispatcher.RequestOptions['body'],
        signal: ac.signal,
      });
      phase = 'body';
      whenBodyDone(r.body, release);
      return { statusCode: r.statusCode, statusText: r.statusText, headers: r.headers, body: r.body };
    } catch (err) {
      release();
      throw ac.signal.aborted && !caller?.aborted ? ac.signal.reason : err;
    }
  }

  /**
   * Stops new calls (they reject with {@link MeshClosedError}), lets in-flight calls finish within the grace
   * period, aborts the rest, and closes every pool, discovery watch and timer. Idempotent.
   *
   * @example
   * ```ts
   * process.on('SIGTERM', () => void mesh.close({ gracePeriodMs: 5_000 }));
   * ```
   */
  close(options: CloseOptions = {}): Promise<void> {
    const grace = options.gracePeriodMs ?? 10_000;
    if (typeof grace !== 'number' || Number.isNaN(grace) || grace < 0) {
      return Promise.reject(new ConfigError('close.gracePeriodMs', grace, 'a number of milliseconds >= 0'));
    }
    return (this.closing ??= this.shutdown(grace));
  }

  private async shutdown(grace: number): Promise<void> {
    // The caller waits on close(): its grace timer and the drain keep the process alive until it settles.
    this.hold.acquire();
    try {
      await this.drainAndClose(grace);
    } finally {
      this.hold.dispose();
    }
  }

  private async drainAndClose(grace: number): Promise<void> {
    const agent = this.agent;
    const idle = this.inflight === 0 ? Promise.resolve() : new Promise<void>((r) => this.idleWaiters.push(r));
    const agentIdle = agent ? agent.close() : Promise.resolve();
    let timer: ReturnType<Clock['setTimeout']> | undefined;
    const expired = new Promise<void>((r) => {
      timer = this.clock.setTimeout(r, grace);
    });
    await Promise.race([Promise.all([idle, agentIdle]), expired]);
    this.clock.clearTimeout(timer);
    const force = this.inflight > 0;
    if (force)
      this.logger.warn(
        { inflight: this.inflight },
        'mesh close: grace period over, aborting in-flight calls',
      );
    const services = [...this.services.values()];
    this.services.clear();
    await Promise.all([
      ...services.map((s) => s.close(force)),
      agent && !agent.destroyed
        ? agent.destroy(new MeshClosedError('The mesh was closed while the call was in flight'))
        : undefined,
    ]);
    await this.dispatcher.destroyed();
    this.observed.dispose();
  }

  /**
   * A JSON-serialisable view of every service: discovery state and age, and each endpoint's address,
   * weight, status, requests in flight and latency estimate. Never contains a secret.
   *
   * @example
   * ```ts
   * for (const s of mesh.snapshot().services) console.table(s.endpoints);
   * ```
   */
  snapshot(): MeshSnapshot {
    return takeSnapshot(this.services.values(), this.clock, {
      closed: this.closed,
      inflightCalls: this.inflight,
    });
  }

  /** `await using mesh = createMesh(...)` closes it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

export { parseRawHeaders } from '../core/message.js';

/** The options of a `mesh.request` given none: one shared object, not one per call. */
const NO_OPTIONS: MeshRequestOptions = Object.freeze({});

function toResponseData(res: MeshResponse): MeshResponseData {
  return {
    statusCode: res.statusCode,
    statusText: res.statusText,
    headers: responseHeaders(res),
    body: res.body as Dispatcher.ResponseData['body'],
  };
}

/**
 * Creates a mesh. Validates the whole config first: a wrong value throws a {@link ConfigError} naming the
 * option path and the value, and nothing is started.
 *
 * @example
 * ```ts
 * const mesh = createMesh({ services: { users: { endpoints: ['127.0.0.1:8080'] } } });
 * ```
 */
export function createMesh(config: MeshConfig = {}): Mesh {
  return new Mesh(config);
}

/**
 * Runs the first `n` inline filters' handlers on an outcome, innermost first: `exit` on a response, `fail` on
 * an error. A handler that throws passes its error to the next one's `fail`; a `fail` that recovers passes its
 * response to the next one's `exit`. One that returns a promise (a retry) hands the rest to that promise.
 */
function runInline(
  inline: readonly InlineFilter[],
  n: number,
  req: MeshRequest,
  ctx: CallContext,
  failed: boolean,
  outcome: unknown,
): MeshResponse | Promise<MeshResponse> {
  for (let i = n - 1; i >= 0; i--) {
    const f = inline[i]!;
    let out: MeshResponse | Promise<MeshResponse>;
    try {
      out = failed ? f.fail(outcome, req, ctx) : f.exit(outcome as MeshResponse, req, ctx);
    } catch (err) {
      failed = true;
      outcome = err;
      continue;
    }
    if (out instanceof Promise) return i === 0 ? out : chainInline(inline, i, req, ctx, out);
    failed = false;
    outcome = out;
  }
  if (failed) throw outcome;
  return outcome as MeshResponse;
}

/** The exits of the filters above `n` once `pending` (the result of filter `n`) settles. */
function chainInline(
  inline: readonly InlineFilter[],
  n: number,
  req: MeshRequest,
  ctx: CallContext,
  pending: Promise<MeshResponse>,
): Promise<MeshResponse> {
  return pending.then(
    (res) => runInline(inline, n, req, ctx, false, res),
    (err: unknown) => runInline(inline, n, req, ctx, true, err),
  );
}
