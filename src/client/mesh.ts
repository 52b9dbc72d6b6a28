/**
 * The mesh: the set of logical services, their stacks, and the three entry points over them
 * (`fetch`, `request`, `dispatcher`). A URL whose host names a configured service goes through that
 * service's stacks; any other host passes through to a plain undici Agent (or is rejected, with
 * `unknownHosts: 'reject'`), and the mesh's own headers never reach it.
 */
import { Agent } from 'undici';
import { systemClock, type Clock } from '../core/clock.js';
import type { CallContext } from '../core/context.js';
import type { CancelSignal } from '../core/signal.js';
import { ConfigError, MeshClosedError, MeshError, UnknownServiceError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/logger.js';
import { callMapped, callThen, type Continuation } from '../core/service.js';
import type { MeshRequest, MeshResponse } from '../core/message.js';
import { systemRng, type Rng } from '../core/rng.js';
import type { StackModule, Stacks } from '../core/stack.js';
import {
  resolveDestinations,
  resolveRoutes,
  type DestinationConfig,
  type RouteRule,
} from '../routing/config.js';
import { takeSnapshot, type MeshSnapshot } from './snapshot.js';
import { observeMesh } from '../telemetry/metrics.js';
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
import { MeshDispatcher } from './dispatcher.js';
import { meshFetch, type FetchHost } from './fetch.js';
import { parseTarget, UrlCache } from './url.js';
import { normalizeHeaders } from './headers.js';
import { buildLogicalService, type LogicalService } from './logical-service.js';
import { passthroughRequest } from './passthrough.js';
import { validateBody, validateMethod } from './validate.js';
import {
  callEntryModule,
  MeshCalls,
  newCallContext,
  toResponseData,
  type MeshRequestOptions,
  type MeshResponseData,
} from './call.js';

export type { MeshRequestOptions, MeshResponseData } from './call.js';

/** The Dispatcher type the global `fetch`'s `RequestInit` names on the installed Node types (undici-types). */
export type GlobalFetchDispatcher = RequestInit extends { dispatcher?: infer D } ? NonNullable<D> : unknown;

/** Options of {@link Mesh.close}. */
export interface CloseOptions {
  /** How long in-flight calls may take to finish before they are aborted (ms). Default 10000. */
  gracePeriodMs?: number;
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
  /** The calls in flight, and the process hold while they wait (./call.ts). */
  private readonly calls = new MeshCalls();
  /** The mesh's end of a call, first of every logical stack. */
  private readonly entry: StackModule;
  private closing: Promise<void> | undefined;
  /** Registration with the metrics' observable instruments (they read {@link Mesh.snapshot}). */
  private readonly observed: { dispose(): void };

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
    this.entry = callEntryModule(this.calls, this.clock);
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
    return this.calls.inflight;
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
    return buildLogicalService(config, {
      stacks: this.stacks,
      entry: this.entry,
      overrides: this.overridesEnabled,
      clock: this.clock,
      rng: this.rng,
      logger: this.logger,
    });
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
  invoke(svc: LogicalService, req: MeshRequest, signal: CancelSignal | undefined): Promise<MeshResponse> {
    let ctx: CallContext;
    try {
      ctx = this.context(svc, req, signal);
    } catch (err) {
      return Promise.reject(err);
    }
    return svc.stack.call(req, ctx);
  }

  /**
   * @internal {@link Mesh.invoke} for an entry point that hands the outcome on itself: `k.answered` or
   * `k.failed` runs in the stack's own reaction (no promise hop of the caller's). Neither may throw.
   */
  invokeThen(
    svc: LogicalService,
    req: MeshRequest,
    signal: CancelSignal | undefined,
    k: Continuation<void>,
  ): void {
    let ctx: CallContext;
    try {
      ctx = this.context(svc, req, signal);
    } catch (err) {
      k.failed(err);
      return;
    }
    void callThen(svc.stack, req, ctx, k);
  }

  /** Reads the per-call headers and the incoming context into a new CallContext (./call.ts). */
  private context(svc: LogicalService, req: MeshRequest, signal: CancelSignal | undefined): CallContext {
    if (this.closing) throw new MeshClosedError();
    return newCallContext(svc.config, req, signal, this.clock, this.logger);
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
    retain: () => {
      this.calls.started();
      let once = false;
      return () => {
        if (once) return;
        once = true;
        this.calls.onBodyDone();
      };
    },
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
  readonly request = (
    url: string | URL,
    options: MeshRequestOptions = NO_OPTIONS,
  ): Promise<MeshResponseData> => {
    let svc: LogicalService | undefined;
    let req: MeshRequest;
    let ctx: CallContext;
    try {
      const u = typeof url === 'string' ? this.urls.get(url) : parseTarget(url);
      const method = options.method === undefined ? 'GET' : validateMethod(options.method);
      const headers = normalizeHeaders(options.headers);
      validateBody(options.body);
      svc = this.services.get(u.hostname);
      if (svc === undefined)
        return passthroughRequest(this.passthrough(u.hostname), u, method, headers, options, this.clock);
      req = {
        method,
        protocol: u.protocol,
        authority: u.host,
        service: u.hostname,
        path: u.path,
        headers,
        body: options.body ?? null,
      };
      ctx = this.context(svc, req, options.signal);
    } catch (err) {
      return Promise.reject(err);
    }
    // No async frame: the response is mapped in the stack's own reaction (this is the hot path of the library).
    return callMapped(svc.stack, req, ctx, toResponseData);
  };

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
    this.calls.hold.acquire();
    try {
      await this.drainAndClose(grace);
    } finally {
      // Calls aborted by the drain may still be settling (a retry's backoff, a body's error): each keeps its
      // own hold until then, and the hold's handle goes once the last one lets go.
      this.calls.hold.disposeWhenIdle();
    }
  }

  private async drainAndClose(grace: number): Promise<void> {
    const agent = this.agent;
    const idle = this.calls.idle();
    const agentIdle = agent ? agent.close() : Promise.resolve();
    let timer: ReturnType<Clock['setTimeout']> | undefined;
    const expired = new Promise<void>((r) => {
      timer = this.clock.setTimeout(r, grace);
    });
    await Promise.race([Promise.all([idle, agentIdle]), expired]);
    this.clock.clearTimeout(timer);
    const force = this.calls.inflight > 0;
    if (force)
      this.logger.warn(
        { inflight: this.calls.inflight },
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
      inflightCalls: this.calls.inflight,
    });
  }

  /** `await using mesh = createMesh(...)` closes it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/** The options of a `mesh.request` given none: one shared object, not one per call. */
const NO_OPTIONS: MeshRequestOptions = Object.freeze({});

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
