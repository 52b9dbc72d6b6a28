/**
 * A JSON-serialisable view of the mesh at one instant: for each service, what discovery says and how old
 * it is, the retry budget's balance and the breaker's state, and for each endpoint its address, weight,
 * status, requests in flight, latency estimate, request and failure counts and recent success rate. Built
 * on demand from live state (nothing is recorded per call for it). It never contains a secret: discovery
 * sources expose only their kind and state, never their options.
 *
 * The types, and {@link takeSnapshot}, which assembles them: what the modules expose comes from the sections
 * they registered when their stacks were built (src/telemetry/snapshot.ts); discovery, routing and each
 * endpoint's balancer and transport view are read here from the service's router and destination. It lives
 * in client, not telemetry, because it reads those levels (telemetry sits below them).
 */
import type { Clock } from '../core/clock.js';
import type { Addr } from '../discovery/types.js';
import type { EndpointNode } from '../concrete/endpoint-node.js';
import type { RoutingSnapshot, RulesRouter } from '../routing/router.js';
import { endpointSections, serviceSections, type SnapshotSections } from '../telemetry/snapshot.js';
import type { EndpointTransportSnapshot } from '../transport/tls.js';
import type { ResolvedServiceConfig } from './config.js';

export type { ConnectionSnapshot, EndpointTransportSnapshot } from '../transport/tls.js';

/** One endpoint in a {@link MeshSnapshot}. */
export interface EndpointSnapshot {
  address: string;
  weight: number;
  /** Failover tier (DNS SRV priority; lower serves first); absent for the default tier 0. */
  priority?: number;
  status: 'ready' | 'busy' | 'down';
  inflight: number;
  /** The balancer's latency estimate (Peak EWMA), in ms; absent for balancers that do not measure latency. */
  latencyMs?: number;
  /**
   * The balancer's cost of sending one more request here (lower is better; Peak EWMA: the latency estimate
   * times in-flight + 1, 0 while the endpoint is probing and has room for a probe). With unequal weights P2C
   * compares it per unit of weight (docs/balancers.md, "Weights").
   */
  cost: number;
  /**
   * What the balancer's metric knows (Peak EWMA): `probing` (new, or re-probed after losing many comparisons:
   * it costs 0 until it has answered), `warming` (in its slow start window), `measured`. Absent for metrics
   * that do not say (least-loaded, round robin).
   */
  loadState?: 'probing' | 'warming' | 'measured';
  /** Attempts sent to this endpoint since discovery named it (kept for every endpoint). */
  requests: number;
  /** Of those, the ones the service's classifier called failures. */
  failures: number;
  /** Recent success rate (last 30 s; `ignored` outcomes excluded); null with no outcome in the window. */
  successRate: number | null;
  /** Failure accrual's view: `ready`, `busy` (marked failing) or `probing`; recent success rate. */
  accrual?: { state: 'ready' | 'busy' | 'probing'; successRate: number | null; consecutiveFailures: number };
  tags: string[];
  meta: Record<string, string>;
  /**
   * What the endpoint's connections negotiated, per scheme used (absent before its first connection): the
   * protocol (`h2` or `http/1.1`), connections opened and open, and for https the TLS state.
   */
  transport?: EndpointTransportSnapshot;
}

/** One service in a {@link MeshSnapshot}. */
export interface ServiceSnapshot {
  name: string;
  balancer: string;
  timeoutMs: number | null;
  discovery: {
    kind: string;
    state: Addr['state'];
    stale: boolean;
    /** Milliseconds since the endpoint set was last confirmed; null before the first answer. */
    ageMs: number | null;
    error?: string;
  };
  /** Retries the budget allows right now; null when retries are off. */
  retryBudget: number | null;
  /**
   * Backup requests: the delay after which one is sent (ms; null while too few latency samples), and how many
   * were sent, won (their answer was returned) or not sent for want of budget; null when they are off.
   */
  backupRequests: { delayMs: number | null; sent: number; won: number; budgetExhausted: number } | null;
  /** The circuit breaker's state; null when it is off. */
  breaker: 'closed' | 'open' | 'half-open' | null;
  /** Calls in flight against the admission bound; null when it is off. */
  admission: { inFlight: number; limit: number; rejected: number } | null;
  /** Routing: the rules, each concrete destination (with its availability and breaker), those draining. */
  routing?: RoutingSnapshot;
  endpoints: EndpointSnapshot[];
}

/**
 * The whole mesh.
 *
 * @example
 * ```ts
 * console.log(JSON.stringify(mesh.snapshot(), null, 2));
 * ```
 */
export interface MeshSnapshot {
  takenAt: number;
  closed: boolean;
  inflightCalls: number;
  services: ServiceSnapshot[];
}

/** What a snapshot reads of one logical service (the mesh's `LogicalService`). */
export interface SnapshotSource {
  readonly name: string;
  readonly config: ResolvedServiceConfig;
  /** The sections its logical stack's modules registered. */
  readonly sections: SnapshotSections;
  /** Its router: the routing view, and the default destination (discovery, endpoints, concrete sections). */
  readonly router: RulesRouter;
}

/**
 * Assembles a {@link MeshSnapshot} from live state (what `mesh.snapshot()` returns).
 *
 * @example
 * ```ts
 * takeSnapshot(services.values(), clock, { closed: false, inflightCalls: 0 });
 * ```
 */
export function takeSnapshot(
  services: Iterable<SnapshotSource>,
  clock: Clock,
  mesh: { readonly closed: boolean; readonly inflightCalls: number },
): MeshSnapshot {
  const now = clock.now();
  const out: ServiceSnapshot[] = [];
  for (const svc of services) out.push(serviceSnapshot(svc, now));
  return { takenAt: clock.wallNow(), closed: mesh.closed, inflightCalls: mesh.inflightCalls, services: out };
}

function serviceSnapshot(svc: SnapshotSource, now: number): ServiceSnapshot {
  const concrete = svc.router.defaultDestination;
  const addr = concrete.destination.addr;
  return {
    name: svc.name,
    balancer: svc.config.balancer.kind,
    timeoutMs: svc.config.timeoutMs === Infinity ? null : svc.config.timeoutMs,
    discovery: {
      kind: svc.config.discovery.kind,
      state: addr.state,
      stale: addr.state === 'bound' && addr.stale,
      ageMs: addr.state === 'bound' ? Math.max(0, now - addr.updatedAt) : null,
      ...(addr.state === 'failed'
        ? { error: addr.error.message }
        : addr.state === 'negative'
          ? { error: addr.reason }
          : {}),
    },
    ...serviceSections(svc.sections, concrete.sections),
    routing: svc.router.snapshot(),
    endpoints: concrete.destination.endpoints().map((n) => endpointSnapshot(n, now)),
  };
}

function endpointSnapshot(n: EndpointNode, now: number): EndpointSnapshot {
  const load = n.load as { rtt?: (now: number) => number };
  return {
    address: n.id,
    weight: n.weight,
    ...(n.priority !== 0 ? { priority: n.priority } : {}),
    status: n.status,
    inflight: n.load.pending,
    ...(typeof load.rtt === 'function' ? { latencyMs: load.rtt(now) } : {}),
    cost: n.load.cost(now),
    ...(n.load.phase !== undefined ? { loadState: n.load.phase(now) } : {}),
    ...n.stats.snapshot(now),
    ...transportOf(n.leaf.transportSnapshot()),
    ...endpointSections(n.sections),
    tags: [...n.endpoint.tags],
    meta: { ...n.endpoint.meta },
  };
}

function transportOf(t: EndpointSnapshot['transport']): { transport?: EndpointSnapshot['transport'] } {
  return t === undefined ? {} : { transport: t };
}
