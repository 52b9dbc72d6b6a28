/**
 * What `mesh.snapshot()` shows of a logical service's routing: its rules in order, its destinations (the ones
 * the config names and the ones made for per-request overrides) with their discovery state, availability,
 * breaker state and calls in flight, and the destinations still draining after a table swap. Plain data, made
 * on demand, so that a snapshot never holds the live objects.
 *
 * Apart from the router service (router.ts), which owns the state shown.
 */
import type { ServiceStatus } from '../core/service.js';
import { BreakerSection } from '../telemetry/snapshot.js';
import type { ConcreteDestination } from '../concrete/concrete-destination.js';
import type { RoutingTable } from './table.js';

/** One rule of a {@link RoutingSnapshot}. */
export interface RuleSnapshot {
  name: string;
  match: { method?: string[]; pathPrefix?: string; path?: string; headers?: Record<string, string> };
  to: Array<{ destination: string; weight: number }>;
  sticky: boolean;
}

/** One concrete destination of a {@link RoutingSnapshot}. */
export interface RoutedDestinationSnapshot {
  name: string;
  /** `config` (named in the service's config), `override` (made for a per-request override). */
  origin: 'config' | 'override';
  discovery: string;
  datacenter: string | null;
  /** The subset's canonical text (`tag:canary,version=v2`), null for all endpoints. */
  subset: string | null;
  fallbacks: string[];
  /** Discovery state of the destination's view. */
  state: 'pending' | 'bound' | 'negative' | 'failed';
  endpoints: number;
  /** What failover sees: `down` means the router skips it for its fallbacks. */
  availability: ServiceStatus;
  breaker: 'closed' | 'open' | 'half-open' | null;
  inflight: number;
}

/**
 * The routing of one logical service at one instant: its rules in order, its destinations and the ones still
 * draining after a table swap.
 *
 * @example
 * ```ts
 * console.table(mesh.snapshot().services[0]?.routing?.destinations);
 * ```
 */
export interface RoutingSnapshot {
  /** Table swaps since the service was built. */
  version: number;
  overrides: boolean;
  rules: RuleSnapshot[];
  destinations: RoutedDestinationSnapshot[];
  draining: string[];
}

/**
 * The snapshot of a router's state: the table in use, whether overrides apply, the destinations made for
 * overrides and the ones draining.
 *
 * @example
 * ```ts
 * const view = routingSnapshot(table, false, new Map(), new Set());
 * ```
 */
export function routingSnapshot(
  t: RoutingTable,
  overrides: boolean,
  dynamic: ReadonlyMap<string, ConcreteDestination>,
  draining: ReadonlySet<ConcreteDestination>,
): RoutingSnapshot {
  const describe = (d: ConcreteDestination, origin: 'config' | 'override'): RoutedDestinationSnapshot => {
    const addr = d.destination.addr;
    return {
      name: d.name,
      origin,
      discovery: d.source.discovery.kind,
      datacenter: d.source.datacenter ?? null,
      subset: d.source.subset?.key ?? null,
      fallbacks: origin === 'config' ? [...(t.routing.destinations.get(d.name)?.fallbacks ?? [])] : [],
      state: addr.state,
      endpoints: addr.state === 'bound' ? addr.endpoints.length : 0,
      availability: d.availability,
      breaker: d.sections.read(BreakerSection) ?? null,
      inflight: d.inflightCalls,
    };
  };
  return {
    version: t.version,
    overrides,
    rules: t.routing.rules.map((r) => ({
      name: r.name,
      match: {
        ...(r.methods ? { method: [...r.methods] } : {}),
        ...(r.pathPrefix !== undefined ? { pathPrefix: r.pathPrefix } : {}),
        ...(r.path ? { path: String(r.path) } : {}),
        ...(r.headers.length > 0
          ? { headers: Object.fromEntries(r.headers.map(([k, v]) => [k, String(v)])) }
          : {}),
      },
      to: r.split.map((s) => ({ destination: s.name, weight: s.weight })),
      sticky: r.sticky !== undefined,
    })),
    destinations: [
      ...[...t.destinations.values()].map((d) => describe(d, 'config')),
      ...[...dynamic.values()].map((d) => describe(d, 'override')),
    ],
    draining: [...draining].filter((d) => !d.isClosed).map((d) => d.name),
  };
}
