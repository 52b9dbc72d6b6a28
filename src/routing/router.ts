/**
 * The router is the leaf of the logical stack: it chooses the concrete destination a call goes to, and does
 * nothing else (each destination keeps its own balancer, breaker and endpoint state). It sits below retries,
 * so every attempt routes again and may land on another destination (a fallback, another datacenter).
 *
 * Per call: a per-request override (`mesh-dtab`, when enabled) decides first; otherwise the first rule whose
 * match holds picks a destination from its split (sticky by hash, or at random from the injected rng). The
 * destination's fallbacks are used, in order, while it is unavailable: no healthy endpoints (discovery bound to
 * none, negative or failed) or an open breaker. It is used again as soon as it recovers, since availability is
 * read on every call. A destination that refuses a call before sending it (no endpoint, open breaker, full
 * admission) makes the router try the next fallback within the same attempt.
 *
 * The rules and destinations form an immutable {@link RoutingTable} (table.ts: the rules, matching and the
 * failover chains); {@link RulesRouter.setRouting} swaps it in one assignment, so a call in flight keeps the
 * table it started with. Destinations the new table no longer references drain (see src/concrete/concrete-destination.ts). What
 * `mesh.snapshot()` shows of it is assembled in snapshot.ts.
 */
import type { CallContext } from '../core/context.js';
import { ConfigError, MeshError } from '../core/errors.js';
import { optionPath } from '../core/option-path.js';
import { incomingContext } from '../core/incoming.js';
import type { Logger } from '../core/logger.js';
import type { MeshRequest, MeshResponse } from '../core/message.js';
import type { Rng } from '../core/rng.js';
import {
  continueWhenSettled,
  SAME,
  type Continuation,
  type MappingService,
  type Service,
  type ServiceStatus,
} from '../core/service.js';
import {
  ConcreteDestination,
  type ConcreteFactoryOptions,
  type ConcreteSource,
} from '../concrete/concrete-destination.js';
import {
  discoveryInDatacenter,
  PRIMARY,
  subsetOf,
  type CompiledRule,
  type ResolvedRouting,
} from './config.js';
import { InvalidOverrideError, NoRouteError } from './errors.js';
import { stickyIndex, weightedIndex } from './hash.js';
import {
  OVERRIDE_HEADER,
  readOverrideHeader,
  type OverrideEntry,
  type OverrideTarget,
  type RouteOverrides,
} from './override.js';
import { routingSnapshot, type RoutingSnapshot } from './snapshot.js';
import { buildRoutingTable, type RoutingTable } from './table.js';

export type { RoutedDestinationSnapshot, RoutingSnapshot, RuleSnapshot } from './snapshot.js';

/**
 * Sends every call to one destination.
 *
 * @example
 * ```ts
 * const router = new SingleRouter('primary', concreteStack);
 * ```
 */
export class SingleRouter implements Service {
  constructor(
    readonly destinationName: string,
    private readonly destination: Service,
  ) {}
  get status(): ServiceStatus {
    return this.destination.status;
  }
  call(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> {
    ctx.attempt.destination = this.destinationName;
    return this.destination.call(req, ctx);
  }
  close(): Promise<void> {
    return this.destination.close();
  }
}

/** Errors after which the request was provably not sent, so another destination may take it at once. */
const NOT_SENT = new Set([
  'MESH_NO_HEALTHY_ENDPOINTS',
  'MESH_CIRCUIT_OPEN',
  'MESH_OVERLOADED',
  'MESH_SERVICE_NOT_FOUND',
  'MESH_DISCOVERY_FAILED',
]);

/** Longest-unused override destinations are retired past this many per service. */
const MAX_OVERRIDE_DESTINATIONS = 16;

/** What a {@link RulesRouter} needs. */
export interface RulesRouterOptions {
  readonly service: string;
  readonly routing: ResolvedRouting;
  readonly factory: ConcreteFactoryOptions;
  /** Apply per-request overrides (the `mesh-dtab` header and the incoming request's). Off by default. */
  readonly overrides: boolean;
  readonly rng: Rng;
  readonly logger: Logger;
}

/**
 * The rules router: the leaf of a logical service's stack.
 *
 * @example
 * ```ts
 * const router = new RulesRouter({ service: 'users', routing, factory, overrides: false, rng, logger });
 * router.setRouting(resolveRouting({ routes, destinations }, base, 'services.users'));
 * ```
 */
export class RulesRouter implements MappingService {
  readonly service: string;
  readonly overrides: boolean;
  private table: RoutingTable;
  private readonly factory: ConcreteFactoryOptions;
  private readonly rng: Rng;
  private readonly logger: Logger;
  private readonly dynamic = new Map<string, ConcreteDestination>();
  private readonly draining = new Set<ConcreteDestination>();
  private closed = false;

  constructor(options: RulesRouterOptions) {
    this.service = options.service;
    this.overrides = options.overrides;
    this.factory = options.factory;
    this.rng = options.rng;
    this.logger = options.logger;
    this.table = buildRoutingTable(options.routing, new Map(), 0, this.factory);
  }

  /** The current table (immutable; replaced whole by {@link RulesRouter.setRouting}). */
  get current(): RoutingTable {
    return this.table;
  }

  /** The destination a plain request most likely goes to: `primary` if there is one, else the first rule's. */
  get defaultDestination(): ConcreteDestination {
    const t = this.table;
    return t.destinations.get(PRIMARY) ?? t.destinations.get(t.routing.rules[0]!.split[0]!.name)!;
  }

  /** `ready` if any destination is, else `busy` if any is, else `down`. */
  get status(): ServiceStatus {
    if (this.closed) return 'down';
    let busy = false;
    for (const d of this.table.destinations.values()) {
      const s = d.availability;
      if (s === 'ready') return 'ready';
      if (s === 'busy') busy = true;
    }
    return busy ? 'busy' : 'down';
  }

  /**
   * Replaces the routing table atomically. Destinations kept under the same name with the same source keep
   * their state (balancer, breaker, pools); the ones no longer referenced drain and close. Calls in flight are
   * untouched; the next call routes with the new table.
   */
  setRouting(routing: ResolvedRouting): void {
    if (this.closed)
      throw new ConfigError(optionPath('services', this.service), this.service, 'a service that is open');
    const old = this.table;
    const next = buildRoutingTable(routing, old.destinations, old.version + 1, this.factory);
    this.table = next;
    const kept = new Set(next.destinations.values());
    for (const d of old.destinations.values()) {
      if (kept.has(d)) continue;
      this.draining.add(d);
      d.retire();
    }
    for (const d of this.draining) if (d.isClosed) this.draining.delete(d);
  }

  call(req: MeshRequest, ctx: CallContext): Promise<MeshResponse> {
    return this.callThen(req, ctx, SAME);
  }

  /** `call(req, ctx)` continued with `k` in the reaction of the destination's stack (`MappingService`). */
  callThen<T>(req: MeshRequest, ctx: CallContext, k: Continuation<T>): Promise<T> {
    const t = this.table;
    let chain: readonly ConcreteDestination[];
    try {
      if (this.overrides) {
        const o = this.inheritOverrides(req);
        const entry = o?.get(this.service);
        if (entry !== undefined) return this.callChain(this.overrideChain(entry, t), req, ctx, k);
      } else if (req.headers[OVERRIDE_HEADER] !== undefined) {
        // Overrides are off in this mesh: neither applied nor forwarded.
        delete req.headers[OVERRIDE_HEADER];
      }
      const simple = t.simple;
      if (simple !== undefined) return simple.callThen(req, ctx, k);
      const rule = t.match(req);
      if (rule === undefined) throw new NoRouteError(this.service, req.method, req.path);
      // A split: another attempt may be routed to another destination (the retries ask, on an open circuit).
      if (rule.split.length > 1) ctx.attempt.rerouteable = true;
      chain = t.chains.get(this.pick(rule, req))!;
    } catch (err) {
      return continueWhenSettled(Promise.reject(err), k);
    }
    return this.callChain(chain, req, ctx, k);
  }

  /** The split's choice for this request: by the sticky key's hash when there is one, else at random. */
  private pick(rule: CompiledRule, req: MeshRequest): string {
    const split = rule.split;
    if (split.length === 1) return split[0]!.name;
    if (rule.sticky !== undefined) {
      let key: string | undefined;
      try {
        key = rule.sticky(req);
      } catch (err) {
        this.logger.debug(
          { err, service: this.service, rule: rule.name },
          'sticky key threw; assigned at random',
        );
      }
      if (typeof key === 'string' && key.length > 0) return split[stickyIndex(split, key)]!.name;
    }
    return split[weightedIndex(split, rule.total, this.rng)]!.name;
  }

  /**
   * The override this call carries: the incoming request's (from the server helper's context) followed by the
   * request's own header, whose entries win. Writes the combined override back into the header, so it is
   * forwarded to the next hop (only mesh services reach the router, so it never leaves for another host).
   */
  private inheritOverrides(req: MeshRequest): RouteOverrides | undefined {
    const h = req.headers[OVERRIDE_HEADER];
    const inherited = incomingContext.getStore()?.overrides as RouteOverrides | undefined;
    if (h === undefined) {
      if (inherited === undefined || inherited.size === 0) return undefined;
      req.headers[OVERRIDE_HEADER] = inherited.text;
      return inherited;
    }
    let own: RouteOverrides | undefined;
    try {
      own = readOverrideHeader(h);
    } catch (err) {
      if (err instanceof InvalidOverrideError) {
        throw new InvalidOverrideError(err.reason, err.part, err.offset, this.service);
      }
      throw err;
    }
    const combined = inherited !== undefined && own !== undefined ? inherited.then(own) : own!;
    if (combined.size === 0) {
      delete req.headers[OVERRIDE_HEADER];
      return undefined;
    }
    req.headers[OVERRIDE_HEADER] = combined.text;
    return combined;
  }

  /** The destinations an override entry names, in order. */
  private overrideChain(entry: OverrideEntry, t: RoutingTable): ConcreteDestination[] {
    return entry.targets.map((target) => {
      if (target.kind === 'destination') {
        const d = t.destinations.get(target.name);
        if (d === undefined) {
          throw new InvalidOverrideError(
            `service "${this.service}" has no destination "${target.name}" (it has ${[...t.destinations.keys()].join(', ')})`,
            target.key,
            -1,
            this.service,
          );
        }
        return d;
      }
      return this.overrideDestination(target, t);
    });
  }

  /** A destination made for a subset override, kept (at most 16 per service, least recently used out). */
  private overrideDestination(
    target: Extract<OverrideTarget, { kind: 'subset' }>,
    t: RoutingTable,
  ): ConcreteDestination {
    const found = this.dynamic.get(target.key);
    if (found !== undefined && !found.isRetired) {
      this.dynamic.delete(target.key); // most recently used last
      this.dynamic.set(target.key, found);
      return found;
    }
    const base = t.routing.base;
    if (base === undefined) {
      throw new InvalidOverrideError(
        `service "${this.service}" has no discovery of its own to take a subset of; name a destination with "#"`,
        target.key,
        -1,
        this.service,
      );
    }
    let discovery = base;
    if (target.datacenter !== undefined) {
      try {
        discovery = discoveryInDatacenter(base, target.datacenter, 'override');
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        throw new InvalidOverrideError(
          `service "${this.service}" uses '${base.kind}' discovery, which has no datacenters`,
          target.key,
          -1,
          this.service,
        );
      }
    }
    const hasSubset = target.tags.length > 0 || Object.keys(target.meta).length > 0;
    const source: ConcreteSource = {
      discovery,
      subset: hasSubset ? subsetOf(target.tags, target.meta) : undefined,
      datacenter: target.datacenter,
    };
    const d = new ConcreteDestination(`~${target.key}`, source, this.factory);
    this.dynamic.set(target.key, d);
    if (this.dynamic.size > MAX_OVERRIDE_DESTINATIONS) {
      const [oldestKey, oldest] = this.dynamic.entries().next().value!;
      this.dynamic.delete(oldestKey);
      this.draining.add(oldest);
      oldest.retire();
    }
    return d;
  }

  /**
   * Calls the first available destination of `chain` (ready, else busy, else the first), and on a refusal that
   * provably did not send the request, the others in order.
   */
  private callChain<T>(
    chain: readonly ConcreteDestination[],
    req: MeshRequest,
    ctx: CallContext,
    k: Continuation<T>,
  ): Promise<T> {
    if (chain.length === 1) return chain[0]!.callThen(req, ctx, k);
    let start = -1;
    let busy = -1;
    for (let i = 0; i < chain.length; i++) {
      const a = chain[i]!.availability;
      if (a === 'ready') {
        start = i;
        break;
      }
      if (a === 'busy' && busy < 0) busy = i;
    }
    if (start < 0) start = busy < 0 ? 0 : busy;
    return continueWhenSettled(this.callFrom(chain, start, req, ctx), k);
  }

  private async callFrom(
    chain: readonly ConcreteDestination[],
    start: number,
    req: MeshRequest,
    ctx: CallContext,
  ): Promise<MeshResponse> {
    let first: unknown;
    const order = [start, ...chain.keys()].filter((i, k) => k === 0 || i !== start);
    for (const i of order) {
      const d = chain[i]!;
      if (i !== start && (d.isRetired || d.availability === 'down')) continue;
      try {
        return await d.call(req, ctx);
      } catch (err) {
        if (!(err instanceof MeshError) || !NOT_SENT.has(err.code) || ctx.signal?.aborted) throw err;
        first ??= err;
      }
    }
    throw first;
  }

  /** A view for `mesh.snapshot()`. */
  snapshot(): RoutingSnapshot {
    return routingSnapshot(this.table, this.overrides, this.dynamic, this.draining);
  }

  /** Closes every destination (gracefully, or aborting what is in flight with `force`). */
  async closeAll(force: boolean): Promise<void> {
    this.closed = true;
    const all = new Set([...this.table.destinations.values(), ...this.dynamic.values(), ...this.draining]);
    this.dynamic.clear();
    this.draining.clear();
    await Promise.all([...all].map((d) => d.close(force)));
  }

  close(): Promise<void> {
    return this.closeAll(false);
  }
}
