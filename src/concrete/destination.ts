/**
 * A concrete destination: one discovery source, the endpoints it currently names, an endpoint stack over a
 * pool for each, and the balancer that picks among them. This is the leaf of the concrete stack.
 *
 * Updates touch only what changed (an endpoint re-announced unchanged keeps its pool and load state; a
 * removed one drains: no new requests, in-flight ones finish, then its sockets close). When discovery says
 * what changed (`Addr.changes`), applying an update costs O(change), not O(endpoints).
 *
 * Around each attempt it feeds the endpoint's load metric (docs/balancers.md, "Peak EWMA"): an answer's time
 * as a latency sample (weighted down when the request probably opened a connection: the endpoint was idle
 * for longer than the transport's keep-alive), a failure or back-pressure answer as a failure (never as a
 * fast sample), a cancellation as a lower bound; and a `Retry-After` takes the endpoint out of the draw until
 * then, telling the retry filter when another endpoint is ready to take the retry at once.
 */
import { whenBodyDone } from '../core/body-done.js';
import type { CallContext } from '../core/context.js';
import {
  DiscoveryError,
  MeshClosedError,
  NoHealthyEndpointsError,
  ServiceNotFoundError,
} from '../core/errors.js';
import { rawHeader, type MeshRequest, type MeshResponse } from '../core/message.js';
import {
  callThen,
  continueWhenSettled,
  SAME,
  type Continuation,
  type MappingService,
  type ServiceStatus,
} from '../core/service.js';
import type { ModuleEnv, Stack } from '../core/stack.js';
import { TieredDistributor } from '../balance/tiers.js';
import { applyChanges, type BalancerFactory, type Distributor } from '../balance/types.js';
import {
  describeAddr,
  type Addr,
  type Endpoint,
  type Resolver,
  type Subscription,
} from '../discovery/types.js';
import { endpointId } from '../discovery/endpoint.js';
import { PoolService, type TransportOptions } from '../transport/pool.js';
import { parseRetryAfter } from '../resilience/backoff.js';
import { writeDeadlineHeader } from '../resilience/deadline.js';
import {
  ClassifierParam,
  classifyAttempt,
  type Classification,
  type Classifier,
} from '../resilience/classifier.js';
import {
  discoveryUpdateChannel,
  endpointAddedChannel,
  endpointRemovedChannel,
  type DiscoveryUpdateEvent,
  type EndpointEvent,
} from '../telemetry/events.js';
import { EndpointNode, MAX_RETRY_AFTER_HOLD_MS } from './endpoint-node.js';
import { SnapshotSections } from '../telemetry/snapshot.js';

/** What a destination needs from the mesh. */
export interface DestinationOptions {
  readonly name: string;
  readonly balancer: BalancerFactory;
  readonly endpointStack: Stack<'endpoint'>;
  readonly transport: Readonly<TransportOptions>;
  /** Host header policy: 'logical' sends the URL authority, 'endpoint' the address, any other string as is. */
  readonly hostHeader: string;
  readonly env: ModuleEnv<'concrete'>;
}

/** A call waiting for discovery's first answer: called with nothing when it came, or with why it never will. */
type Waiter = (err?: unknown) => void;

/**
 * The balancer leaf of a concrete stack.
 *
 * @example
 * ```ts
 * const dest = new Destination(resolver, options);
 * const res = await dest.call(req, ctx);
 * ```
 */
export class Destination implements MappingService {
  private readonly nodes = new Map<string, EndpointNode>();
  private readonly distributor: Distributor<EndpointNode>;
  private readonly subscription: Subscription;
  private waiters: Waiter[] = [];
  /** Calls in this destination now: from `call` until the attempt fails or its response body is done. */
  private active = 0;
  /** Runs each time `inflight` drops to 0 (a retired destination closes then). */
  onIdle: (() => void) | undefined = undefined;
  /** The service's classifier, for the endpoint stats (the same one retries, accrual and the breaker use). */
  private readonly classifier: Classifier;
  private closed = false;
  /** The node map mirrors the resolver's last bound Addr, so the next one's `changes` can be applied as is. */
  private synced = false;
  addr: Addr;

  constructor(
    private readonly resolver: Resolver,
    private readonly opts: DestinationOptions,
  ) {
    const env = { clock: opts.env.clock, rng: opts.env.rng };
    // Endpoints in failover tiers (DNS SRV priorities) get a distributor per tier; with one tier (static lists,
    // Consul, A records) the tiered distributor hands every call straight to the balancer's own distributor.
    this.distributor = new TieredDistributor<EndpointNode>(opts.balancer, env);
    this.classifier = opts.env.params.get(ClassifierParam);
    this.addr = resolver.addr;
    this.apply(this.addr);
    this.subscription = resolver.subscribe((addr) => this.apply(addr));
  }

  get status(): ServiceStatus {
    if (this.closed) return 'down';
    for (const n of this.nodes.values()) if (n.status === 'ready') return 'ready';
    return this.nodes.size > 0 ? 'busy' : 'down';
  }

  /** The endpoints currently known, in discovery order. */
  endpoints(): EndpointNode[] {
    return [...this.nodes.values()];
  }

  private apply(addr: Addr): void {
    if (this.closed) return;
    this.addr = addr;
    const events = discoveryUpdateChannel.hasSubscribers;
    const added: string[] = [];
    const removed: string[] = [];
    if (addr.state === 'bound' && !this.applyDiff(addr, added, removed)) {
      const next = new Map<string, EndpointNode>();
      for (const ep of addr.endpoints) {
        const old = this.nodes.get(ep.id);
        if (old) {
          old.endpoint = ep;
          next.set(ep.id, old);
        } else if (!next.has(ep.id)) {
          next.set(ep.id, this.makeNode(ep));
          this.endpointEvent(endpointAddedChannel, ep.id, added);
        }
      }
      for (const [id, node] of this.nodes) {
        if (!next.has(id)) {
          this.endpointEvent(endpointRemovedChannel, id, removed);
          node.service.close().catch((err: unknown) => {
            this.opts.env.logger.warn(
              { err, endpoint: id, service: this.opts.env.target.service },
              'endpoint close failed',
            );
          });
        }
      }
      this.nodes.clear();
      for (const [id, node] of next) this.nodes.set(id, node);
      this.distributor.update([...next.values()]);
      this.synced = true;
    } else if (addr.state === 'negative') {
      this.synced = false;
      // The source says the service is gone: stop using what we had.
      for (const id of this.nodes.keys()) this.endpointEvent(endpointRemovedChannel, id, removed);
      for (const node of this.nodes.values()) void node.service.close().catch(() => {});
      this.nodes.clear();
      this.distributor.update([]);
    }
    // 'failed' keeps whatever endpoints we have (a source that fails after answering reports 'bound' + stale).
    if (events) {
      const e: DiscoveryUpdateEvent = {
        service: this.opts.env.target.service,
        destination: this.opts.name,
        state: addr.state,
        endpoints: addr.state === 'bound' ? addr.endpoints.length : 0,
        stale: addr.state === 'bound' && addr.stale,
        added,
        removed,
        at: this.opts.env.clock.now(),
      };
      discoveryUpdateChannel.publish(e);
    }
    if (addr.state !== 'pending') {
      const w = this.waiters;
      this.waiters = [];
      for (const x of w) x();
    }
  }

  /**
   * Applies a bound Addr's `changes` in O(change): new nodes for the added endpoints, the removed ones taken out
   * and drained (no new requests, in-flight ones finish, then the pool closes), `endpoint` replaced on the
   * updated ones, and the same three lists handed to the distributor's incremental `apply` (or its `update`
   * when it has none). Returns false, having touched nothing, when the Addr carries no changes, the node map
   * does not mirror the resolver's previous bound Addr (first answer, after `negative`), or the diff does not
   * add up to the Addr's endpoint count (it names endpoints that are not ours); the caller then rebuilds.
   */
  private applyDiff(addr: Addr & { state: 'bound' }, added: string[], removed: string[]): boolean {
    const changes = addr.changes;
    if (changes === undefined || !this.synced) return false;
    const nodes = this.nodes;
    // Check first, in O(change), that the diff turns our map into a set of the Addr's size: it does exactly
    // when every id it names belongs here (a view that filters a shared source, e.g. a routing subset, may
    // pass on a diff that names endpoints outside it). Otherwise take the full path without having made a
    // node or published an event.
    let size = nodes.size;
    for (const id of changes.removed) if (nodes.has(id)) size--;
    for (const ep of changes.updated) if (!nodes.has(ep.id)) size++;
    for (const ep of changes.added) if (!nodes.has(ep.id)) size++;
    if (size !== addr.endpoints.length) return false;
    const addedNodes: EndpointNode[] = [];
    const removedNodes: EndpointNode[] = [];
    const updatedNodes: EndpointNode[] = [];
    for (const id of changes.removed) {
      const node = nodes.get(id);
      if (node === undefined) continue;
      nodes.delete(id);
      removedNodes.push(node);
      this.endpointEvent(endpointRemovedChannel, id, removed);
      node.service.close().catch((err: unknown) => {
        this.opts.env.logger.warn(
          { err, endpoint: id, service: this.opts.env.target.service },
          'endpoint close failed',
        );
      });
    }
    for (const list of [changes.updated, changes.added]) {
      for (const ep of list) {
        const old = nodes.get(ep.id);
        if (old !== undefined) {
          old.endpoint = ep;
          updatedNodes.push(old);
        } else {
          const node = this.makeNode(ep);
          nodes.set(ep.id, node);
          addedNodes.push(node);
          this.endpointEvent(endpointAddedChannel, ep.id, added);
        }
      }
    }
    if (nodes.size !== addr.endpoints.length) {
      this.synced = false;
      return false;
    }
    applyChanges(this.distributor, addedNodes, removedNodes, updatedNodes, () => [...nodes.values()]);
    return true;
  }

  /** Publishes an endpoint event (when anyone listens) and notes the address for the discovery event. */
  private endpointEvent(ch: typeof endpointAddedChannel, endpoint: string, list: string[]): void {
    list.push(endpoint);
    if (!ch.hasSubscribers) return;
    const e: EndpointEvent = {
      service: this.opts.env.target.service,
      destination: this.opts.name,
      endpoint,
      at: this.opts.env.clock.now(),
    };
    ch.publish(e);
  }

  private makeNode(ep: Endpoint): EndpointNode {
    const o = this.opts;
    const id = endpointId(ep.host, ep.port);
    const host = o.hostHeader === 'endpoint' ? undefined : o.hostHeader;
    const { service: name, destination } = o.env.target;
    const leaf = new PoolService(id, name, ep.id, o.transport, host, o.env.logger, o.env.clock);
    const sections = new SnapshotSections();
    const target = { service: name, destination, address: ep.id, tags: ep.tags, meta: ep.meta };
    const env: ModuleEnv<'endpoint'> = { ...o.env, level: 'endpoint', target, sections };
    const service = o.endpointStack.build(leaf, env);
    const load = o.balancer.newLoad({ clock: o.env.clock, rng: o.env.rng });
    return new EndpointNode(ep, load, leaf, service, o.env.clock, sections);
  }

  call(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> {
    return this.callThen(req, ctx, SAME);
  }

  /**
   * `call(req, ctx)` continued with `k` right after this leaf's own work on the endpoint's answer, in that
   * same reaction (`MappingService`).
   */
  callThen<T>(req: MeshRequest, ctx: CallContext, k: Continuation<T>): Promise<T> {
    if (this.closed) return continueWhenSettled(Promise.reject(new MeshClosedError()), k);
    this.active++;
    if (this.addr.state === 'pending') return this.sendAfterAnswer(req, ctx, k);
    return this.send(req, ctx, k);
  }

  /**
   * Waits for discovery's first answer, bounded by the call's signal (its deadline), then sends. A method of
   * its own: closures in `callThen` would make every call allocate their context, pending or not.
   */
  private sendAfterAnswer<T>(req: MeshRequest, ctx: CallContext, k: Continuation<T>): Promise<T> {
    const answered = new Promise<void>((resolve, reject) => {
      const signal = ctx.signal;
      if (signal?.aborted) return reject(signal.reason);
      const onAbort = (): void => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(signal!.reason);
      };
      const waiter: Waiter = (err) => {
        signal?.removeEventListener('abort', onAbort);
        if (err === undefined) resolve();
        else reject(err);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
    return answered.then(
      () => this.send(req, ctx, k),
      (err: unknown) => {
        this.onBodyDone();
        return k.failed(err);
      },
    );
  }

  /** Calls in flight here: waiting for discovery, or sent and not done (their body included). */
  get inflight(): number {
    return this.active;
  }

  /** @internal A call here is over (failed, or its body is done). */
  onBodyDone(): void {
    if (--this.active === 0) this.onIdle?.();
  }

  /** Picks an endpoint and sends one attempt to it (no async frame: this runs on every attempt). */
  private send<T>(req: MeshRequest, ctx: CallContext, k: Continuation<T>): Promise<T> {
    // One clock read for the pick and the start of the attempt's latency sample.
    const t0 = this.opts.env.clock.now();
    const node = this.distributor.pick(ctx.tried, t0);
    if (node === undefined) {
      this.onBodyDone();
      return continueWhenSettled(Promise.reject(this.noEndpoint()), k);
    }
    const attempt = ctx.attempt;
    attempt.endpoint = node.id;
    attempt.balancer = this.opts.balancer.kind;
    // The next hop gets the time that remains, when the deadline was chosen rather than the default.
    writeDeadlineHeader(req, ctx, t0);
    // Probably a new connection (the connect is in this sample): nothing sent or answered here for longer
    // than the pool keeps an idle socket (the transport's keep-alive timeout), or never used. (A request in
    // flight that long holds its socket, so this one needs another.)
    const cold = t0 - node.lastActive >= this.opts.transport.keepAliveTimeoutMs;
    node.lastActive = t0;
    node.load.start(t0);
    // The endpoint's stack runs synchronously up to its first await, in this turn: a module at its top that
    // reserves something at the start of its call (failure accrual's probe slot) does so before another pick.
    const sent = new SentAttempt(this, node, req, ctx, t0, cold, k);
    // Called here rather than through the shared `callThen`: this site sees only endpoint stacks' tops.
    const top = node.service as Partial<MappingService>;
    if (top.callThen === undefined) return callThen(node.service, req, ctx, sent);
    try {
      return top.callThen(req, ctx, sent);
    } catch (err) {
      return continueWhenSettled(Promise.reject(err), sent);
    }
  }

  /**
   * @internal An attempt's outcome, a response or (`failed`) an error: the latency sample (one clock read
   * for the outcome), the endpoint's stats and, for a response, the body-done hooks.
   */
  attemptSettled(a: SentAttempt<unknown>, failed: boolean, outcome: unknown): void {
    const { node, ctx, t0 } = a;
    const load = node.load;
    const t1 = ctx.attempt.outcomeTime(this.opts.env.clock);
    node.lastActive = t1;
    const res = failed ? undefined : (outcome as MeshResponse);
    const c = this.count(node, a.req, ctx, res, failed ? outcome : undefined, t1);
    if (res !== undefined) {
      // A failure or back-pressure (a fast 429 or 503) is not a latency sample: it makes the endpoint
      // costlier instead. Retry-After also takes the endpoint out of the draw until then.
      if (c === undefined || (c.kind !== 'failure' && !c.backpressure)) load.observe(t1 - t0, t1, a.cold);
      else {
        load.observeFailure?.(t1 - t0, t1);
        if (c.backpressure) this.holdForRetryAfter(node, res, ctx, t1);
      }
      whenBodyDone(res.body, node);
      whenBodyDone(res.body, this);
      return;
    }
    // A cancelled attempt (backup won, caller or deadline gave up) only says the endpoint took at least this
    // long. A failure (reset, refused, per-attempt timeout) makes it costlier; an error the classifier ignores
    // (the idle-close race, the mesh's own refusal) says nothing about its latency.
    if (ctx.signal?.aborted === true) load.observeCancelled?.(t1 - t0, t1);
    else if (c?.kind === 'failure') load.observeFailure?.(t1 - t0, t1);
    else if ((outcome as { code?: unknown })?.code === 'MESH_ATTEMPT_TIMEOUT')
      load.observeCancelled?.(t1 - t0, t1);
    load.end(t1);
    this.onBodyDone();
  }

  /**
   * A `Retry-After` on a back-pressure answer (429, or 503 with the header) takes its endpoint out of the draw
   * until then (at most {@link MAX_RETRY_AFTER_HOLD_MS}), and tells the retry filter, through the call
   * context, when another endpoint is ready to take the retry at once.
   */
  private holdForRetryAfter(node: EndpointNode, res: MeshResponse, ctx: CallContext, now: number): void {
    const ms = parseRetryAfter(rawHeader(res.rawHeaders, 'retry-after'), this.opts.env.clock.wallNow());
    if (ms === undefined || ms <= 0) return;
    node.heldUntil = now + Math.min(ms, MAX_RETRY_AFTER_HOLD_MS);
    for (const other of this.nodes.values()) {
      if (other !== node && other.status === 'ready') {
        ctx.attempt.retryAfterHeld = true;
        return;
      }
    }
  }

  /**
   * Counts an attempt's outcome in the endpoint's stats and returns its classification (undefined when the
   * classifier throws: counted as ignored).
   */
  private count(
    node: EndpointNode,
    req: MeshRequest,
    ctx: CallContext,
    res: MeshResponse | undefined,
    error: unknown,
    now: number,
  ): Classification | undefined {
    let c: Classification | undefined;
    try {
      c = classifyAttempt(this.classifier, req, ctx, res, error);
    } catch {
      c = undefined;
    }
    node.stats.record(c?.kind ?? 'ignored', now);
    return c;
  }

  private noEndpoint(): Error {
    const addr = this.addr;
    const service = this.opts.env.target.service;
    if (addr.state === 'negative') return new ServiceNotFoundError(service, addr.reason);
    if (addr.state === 'failed') return new DiscoveryError(service, addr.error.message, addr.error);
    return new NoHealthyEndpointsError(service, describeAddr(addr), { endpoint: undefined });
  }

  /** Stops following discovery, rejects waiters, and closes every endpoint (gracefully, or at once). */
  async close(force = false): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.subscription.unsubscribe();
    const w = this.waiters;
    this.waiters = [];
    for (const x of w) x(new MeshClosedError());
    const nodes = [...this.nodes.values()];
    this.nodes.clear();
    this.distributor.update([]);
    await Promise.all([
      this.resolver.close(),
      ...nodes.map((n) =>
        force
          ? n.leaf
              .destroy(
                new MeshClosedError('The mesh was closed while the call was in flight', {
                  service: this.opts.env.target.service,
                  endpoint: n.id,
                }),
              )
              .then(() => n.service.close())
          : n.service.close(),
      ),
    ]);
  }
}

/** One attempt sent to an endpoint: the balancer leaf's work on its outcome, then the caller's continuation. */
class SentAttempt<T> implements Continuation<T> {
  constructor(
    readonly dest: Destination,
    readonly node: EndpointNode,
    readonly req: MeshRequest,
    readonly ctx: CallContext,
    readonly t0: number,
    readonly cold: boolean,
    private readonly k: Continuation<T>,
  ) {}

  answered(res: MeshResponse): T | PromiseLike<T> {
    return this.settle(false, res);
  }

  failed(err: unknown): T | PromiseLike<T> {
    return this.settle(true, err);
  }

  /** The leaf's own work on the outcome (a throw from it fails the call), then the caller's continuation. */
  private settle(failed: boolean, outcome: unknown): T | PromiseLike<T> {
    try {
      this.dest.attemptSettled(this, failed, outcome);
    } catch (err) {
      return this.k.failed(err);
    }
    return failed ? this.k.failed(outcome) : this.k.answered(outcome as MeshResponse);
  }
}
