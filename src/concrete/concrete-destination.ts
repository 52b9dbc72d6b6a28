/**
 * One concrete destination of a logical service, as the router sees it: a {@link Destination} (its balancer,
 * endpoint stacks and the subset view of discovery it reads) wrapped in its own concrete stack (admission,
 * circuit breaker). Each keeps its own state, so a canary's failures open the canary's breaker, not the
 * stable version's. It also counts its calls in flight (until their response bodies close), so that when a
 * routing table swap stops referencing it, it can drain: no new calls reach it, the ones in flight finish,
 * and then it closes (its sockets, its breaker, its share of the discovery watch).
 */
import type { CallContext } from '../core/context.js';
import type { MeshRequest, MeshResponse } from '../core/message.js';
import {
  callThen,
  settledCall,
  type Continuation,
  type Service,
  type ServiceStatus,
} from '../core/service.js';
import type { ModuleEnv, Stacks } from '../core/stack.js';
import type { ConcreteTarget } from '../core/targets.js';
import type { BalancerFactory } from '../balance/types.js';
import type { Discovery } from '../discovery/types.js';
import type { TransportOptions } from '../transport/pool.js';
import { Destination } from './destination.js';
import type { ResolvedSubset, SharedResolvers } from './subset.js';
import { SnapshotSections } from '../telemetry/snapshot.js';

/** What a concrete destination is made of (two with equal sources can take each other's place). */
export interface ConcreteSource {
  readonly discovery: Discovery;
  readonly subset: ResolvedSubset | undefined;
  readonly datacenter: string | undefined;
}

/** What building a concrete destination needs from the mesh. */
export interface ConcreteFactoryOptions {
  readonly stacks: Stacks;
  /** The logical service's module environment (the concrete level's target is made here). */
  readonly env: ModuleEnv<'logical'>;
  readonly balancer: BalancerFactory;
  readonly transport: Readonly<TransportOptions>;
  readonly hostHeader: string;
  readonly resolvers: SharedResolvers;
}

/**
 * A concrete destination: a balancer over a discovery view, under its own concrete stack.
 *
 * @example
 * ```ts
 * const v2 = new ConcreteDestination('v2', { discovery: consul, subset, datacenter: undefined }, factoryOptions);
 * const res = await v2.call(req, ctx);
 * v2.retire(); // closes once its calls in flight are done
 * ```
 */
export class ConcreteDestination {
  readonly destination: Destination;
  readonly stack: Service;
  /** What the modules of its concrete stack expose to snapshots (breaker state, admission). */
  readonly sections = new SnapshotSections();
  private readonly logger: ModuleEnv['logger'];
  private retired = false;
  private closing: Promise<void> | undefined;

  constructor(
    readonly name: string,
    readonly source: ConcreteSource,
    options: ConcreteFactoryOptions,
  ) {
    const target: ConcreteTarget = {
      service: options.env.target.service,
      destination: name,
      discovery: source.discovery.kind,
      balancer: options.balancer.kind,
    };
    const env: ModuleEnv<'concrete'> = { ...options.env, level: 'concrete', target, sections: this.sections };
    this.logger = env.logger;
    const resolver = options.resolvers.acquire(source.discovery, source.subset);
    this.destination = new Destination(resolver, {
      name,
      balancer: options.balancer,
      endpointStack: options.stacks.endpoint,
      transport: options.transport,
      hostHeader: options.hostHeader,
      env,
    });
    this.stack = options.stacks.concrete.build(this.destination, env);
  }

  /** True when `other` reads the same endpoints (same discovery object, datacenter and subset). */
  sameSource(other: ConcreteSource): boolean {
    return (
      this.source.discovery === other.discovery &&
      this.source.datacenter === other.datacenter &&
      (this.source.subset?.key ?? null) === (other.subset?.key ?? null)
    );
  }

  /**
   * Whether it can take calls now, for failover: `down` with no endpoints (discovery bound to none, negative
   * or failed), an open breaker, or once closing; `busy` when every endpoint is marked failing, the breaker
   * waits for its trial, or admission is full; `ready` otherwise. A destination still waiting for discovery's
   * first answer counts as `ready`: a call waits for the answer (bounded by its deadline).
   */
  get availability(): ServiceStatus {
    if (this.closing !== undefined || this.retired) return 'down';
    const addr = this.destination.addr;
    if (addr.state === 'pending') return 'ready';
    if (addr.state !== 'bound' || addr.endpoints.length === 0) return 'down';
    return this.stack.status;
  }

  /**
   * Calls in flight through it: sent to an endpoint (or waiting for discovery's first answer) and not done,
   * bodies included. Counted by the destination below, in the reactions it has anyway, so the routing layer
   * adds no promise of its own to a call.
   */
  get inflightCalls(): number {
    return this.destination.inflight;
  }

  /** True once retired (no longer referenced by the routing table): draining or closed. */
  get isRetired(): boolean {
    return this.retired;
  }

  /** True once it has started closing. */
  get isClosed(): boolean {
    return this.closing !== undefined;
  }

  private closeQuietly(): void {
    this.close(false).catch((err: unknown) => {
      this.logger.warn({ err, destination: this.name }, 'retired destination close failed');
    });
  }

  call(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> {
    ctx.attempt.destination = this.name;
    return settledCall(this.stack, req, ctx);
  }

  /** `call(req, ctx)` continued with `k` in the reaction of its stack (`MappingService`). */
  callThen<T>(req: MeshRequest, ctx: CallContext, k: Continuation<T>): Promise<T> {
    ctx.attempt.destination = this.name;
    return callThen(this.stack, req, ctx, k);
  }

  /** Takes it out of service: it closes as soon as its calls in flight are done. Idempotent. */
  retire(): void {
    if (this.retired) return;
    this.retired = true;
    if (this.destination.inflight === 0) this.closeQuietly();
    else this.destination.onIdle = () => this.closeQuietly();
  }

  /** Closes it (gracefully, or aborting what is in flight with `force`). Idempotent. */
  close(force: boolean): Promise<void> {
    return (this.closing ??= (async () => {
      await this.destination.close(force);
      await this.stack.close();
    })());
  }
}
