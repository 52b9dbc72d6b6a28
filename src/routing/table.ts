/**
 * The routing table of one logical service: its compiled rules in order, the concrete destinations they name,
 * and each destination's failover chain (itself, then its fallbacks). Immutable: the router swaps a whole new
 * table in one assignment, so a call in flight keeps the table it started with. The first rule whose match
 * holds routes the request, as Istio evaluates a VirtualService's `http` routes in order (docs/routing.md): a
 * rule holds when its method, path (prefix or pattern, query excluded) and header conditions all hold. A
 * table that sends everything to one destination without fallbacks exposes that destination as its fast path.
 *
 * Apart from the router service (router.ts), which reads a table per call, and from the rules' parsing and
 * validation (config.ts).
 */
import type { MeshRequest } from '../core/message.js';
import { ConcreteDestination, type ConcreteFactoryOptions } from '../concrete/concrete-destination.js';
import type { CompiledRule, ResolvedRouting } from './config.js';

/**
 * An immutable routing table: compiled rules, the destinations they name, and each destination's failover
 * chain (itself, then its fallbacks).
 *
 * @example
 * ```ts
 * const rule = table.match(req);
 * ```
 */
export class RoutingTable {
  /** The one destination when the table is "everything to X, no fallbacks": the fast path. */
  readonly simple: ConcreteDestination | undefined;
  constructor(
    readonly routing: ResolvedRouting,
    readonly destinations: ReadonlyMap<string, ConcreteDestination>,
    readonly chains: ReadonlyMap<string, readonly ConcreteDestination[]>,
    readonly version: number,
  ) {
    const rules = routing.rules;
    const only = rules.length === 1 ? rules[0]! : undefined;
    const unconditional =
      only !== undefined &&
      only.methods === undefined &&
      only.pathPrefix === undefined &&
      only.path === undefined &&
      only.headers.length === 0 &&
      only.split.length === 1;
    const chain = unconditional ? chains.get(only.split[0]!.name) : undefined;
    this.simple = chain !== undefined && chain.length === 1 ? chain[0] : undefined;
  }

  /** The first rule whose match holds, or undefined. */
  match(req: MeshRequest): CompiledRule | undefined {
    let pathOnly: string | undefined;
    for (const r of this.routing.rules) {
      if (r.methods !== undefined && !r.methods.has(req.method)) continue;
      if (r.pathPrefix !== undefined || r.path !== undefined) {
        if (pathOnly === undefined) {
          const q = req.path.indexOf('?');
          pathOnly = q < 0 ? req.path : req.path.slice(0, q);
        }
        if (r.pathPrefix !== undefined && !pathOnly.startsWith(r.pathPrefix)) continue;
        if (r.path !== undefined && !r.path.test(pathOnly)) continue;
      }
      if (r.headers.length > 0 && !headersMatch(r.headers, req)) continue;
      return r;
    }
    return undefined;
  }
}

function headersMatch(conds: CompiledRule['headers'], req: MeshRequest): boolean {
  for (const [name, want] of conds) {
    const v = req.headers[name];
    if (v === undefined) return false;
    const values = Array.isArray(v) ? v : [v];
    let ok = false;
    for (const x of values) {
      if (typeof want === 'string' ? x === want : want.test(x)) {
        ok = true;
        break;
      }
    }
    if (!ok) return false;
  }
  return true;
}

/**
 * Builds the table for `routing`. Destinations of `previous` kept under the same name with the same source
 * keep their state (balancer, breaker, pools); the others are made anew. If making one throws, the ones made so
 * far are closed and the error is rethrown.
 *
 * @example
 * ```ts
 * const next = buildRoutingTable(routing, current.destinations, current.version + 1, factory);
 * ```
 */
export function buildRoutingTable(
  routing: ResolvedRouting,
  previous: ReadonlyMap<string, ConcreteDestination>,
  version: number,
  factory: ConcreteFactoryOptions,
): RoutingTable {
  const built: ConcreteDestination[] = [];
  const destinations = new Map<string, ConcreteDestination>();
  try {
    for (const [name, d] of routing.destinations) {
      const old = previous.get(name);
      if (old !== undefined && !old.isRetired && old.sameSource(d)) destinations.set(name, old);
      else {
        const c = new ConcreteDestination(name, d, factory);
        built.push(c);
        destinations.set(name, c);
      }
    }
  } catch (err) {
    for (const c of built) void c.close(true).catch(() => {});
    throw err;
  }
  const chains = new Map<string, ConcreteDestination[]>();
  for (const [name, d] of routing.destinations) {
    chains.set(name, [destinations.get(name)!, ...d.fallbacks.map((f) => destinations.get(f)!)]);
  }
  return new RoutingTable(routing, destinations, chains, version);
}
