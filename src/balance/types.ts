/**
 * The balancer's contracts. What is measured (a {@link LoadMetric} per endpoint) is kept apart from what acts
 * on it (a {@link Distributor} that picks), as in Finagle's balancers and tower's `p2c` over `load`: any
 * distributor can run over any metric.
 */
import type { Clock } from '../core/clock.js';
import type { Rng } from '../core/rng.js';
import type { ServiceStatus } from '../core/service.js';

/**
 * The load of one endpoint, fed by the concrete layer around every request sent to it.
 *
 * @example
 * ```ts
 * load.start(clock.now());              // request sent
 * load.observe(12.5, clock.now());       // headers after 12.5 ms
 * load.end(clock.now());                // body finished
 * load.cost(clock.now());               // lower is better
 * ```
 */
export interface LoadMetric {
  /** Requests sent and not yet finished. */
  readonly pending: number;
  /** A request was sent to the endpoint. */
  start(now: number): void;
  /**
   * Response headers arrived `rtt` ms after the request was sent, and the classifier did not call the attempt
   * a failure. `cold` (optional): the request probably paid for opening a connection, so `rtt` includes the
   * connect; a latency metric should weight it down.
   */
  observe(rtt: number, now: number, cold?: boolean): void;
  /**
   * Optional: the attempt failed as the classifier says (a 5xx, a 429 or a 503 with Retry-After, a reset, a
   * timeout) `elapsed` ms after it was sent. Its time is not a latency sample (a fast 429 must not make an
   * endpoint look fast); a metric should make the endpoint costlier instead. Metrics without it ignore
   * failures.
   *
   * @example
   * ```ts
   * load.observeFailure?.(elapsed, clock.now());
   * ```
   */
  observeFailure?(elapsed: number, now: number): void;
  /**
   * Optional: the endpoint lost a cost comparison (P2C sent the request to the other candidate). Evidence that
   * its estimate is not being refreshed; Peak EWMA re-probes an endpoint that loses many in a row.
   */
  passed?(now: number): void;
  /**
   * Optional: true while the metric has no trustworthy measurement and has room for a probe request (it then
   * costs 0). P2C offers a newly added endpoint in this state the next pick.
   */
  readonly probing?: boolean;
  /**
   * Optional: what the metric knows, for snapshots: `probing` (not yet measured, or re-probed), `warming`
   * (slow start), `measured`.
   */
  phase?(now: number): LoadPhase;
  /**
   * Optional: a request was cancelled `elapsed` ms after it was sent, before its response headers (a backup
   * request won the race, the caller gave up, the deadline or the per-attempt timeout fired). Its RTT is at
   * least `elapsed`, so a latency metric may only learn from it that the endpoint is *slower* than it
   * thought; it must not count the cancellation as a fast answer. Metrics without it ignore the sample.
   *
   * @example
   * ```ts
   * load.observeCancelled?.(elapsed, clock.now());
   * ```
   */
  observeCancelled?(elapsed: number, now: number): void;
  /** A request started with {@link LoadMetric.start} is over (body finished, failed or cancelled). */
  end(now: number): void;
  /** The cost of sending one more request here; lower is better. */
  cost(now: number): number;
  /**
   * Optional: the cost of one more request on an endpoint of relative `weight` (the weights normalised so that
   * their mean is 1), used by weighted distributors. Without it a distributor compares `cost(now) / weight`
   * (tower's `Weighted` load). `PeakEwmaLoad` implements it as `rtt * (pending / weight + 1)`: the weight
   * scales the queue, not the latency, so equal-latency idle endpoints tie and the weighted random choice of
   * candidates decides (see docs/balancers.md, "Weights").
   *
   * @example
   * ```ts
   * const c = load.weightedCost ? load.weightedCost(now, 2) : load.cost(now) / 2;
   * ```
   */
  weightedCost?(now: number, weight: number): number;
}

/**
 * A load metric's state (see {@link LoadMetric.phase}).
 *
 * @example
 * ```ts
 * const phase: LoadPhase = load.phase?.(clock.now()) ?? 'measured';
 * ```
 */
export type LoadPhase = 'probing' | 'warming' | 'measured';

/**
 * What a distributor sees of an endpoint.
 *
 * @example
 * ```ts
 * const node: BalancerNode = { id: '10.0.0.1:80', weight: 1, status: 'ready', load };
 * ```
 */
export interface BalancerNode {
  readonly id: string;
  /** Relative share of traffic (> 0). */
  readonly weight: number;
  /** Live status: `ready` takes traffic, `busy` is avoided, `down` is never picked unless in panic. */
  readonly status: ServiceStatus;
  readonly load: LoadMetric;
  /**
   * Optional failover tier (lower serves first; absent: 0). Only {@link TieredDistributor} reads it: every
   * other distributor sees the nodes of one tier.
   */
  readonly priority?: number;
}

/**
 * Picks a node for each request. O(1) per pick: no scan of every node.
 *
 * @example
 * ```ts
 * distributor.update(nodes);
 * const node = distributor.pick(ctx.tried); // prefers nodes not yet tried by this call
 * distributor.apply?.([added], [removed], []); // optional: O(change) instead of update(all)
 * ```
 */
export interface Distributor<N extends BalancerNode = BalancerNode> {
  /** Replaces the node set. A node kept across updates is the same object and keeps its load state. */
  update(nodes: readonly N[]): void;
  /**
   * Optional: changes the node set incrementally, in time proportional to the change (amortised), where
   * {@link Distributor.update} is proportional to the whole set. `added` are new nodes, `removed` nodes to
   * drop (matched by id), `updated` nodes whose data (e.g. weight) changed; every other node stays as it is,
   * with its load state. The result must be equivalent to `update()` with the whole new set, up to the order
   * of the schedule or of the random draws. A caller falls back to `update(all)` when a distributor lacks it
   * (see {@link applyChanges}). An added node whose id is already present counts as updated, an updated node
   * that is absent as added, a removed id that is absent is ignored.
   *
   * @example
   * ```ts
   * distributor.apply([newNode], [goneNode], [reweighedNode]);
   * ```
   */
  apply?(added: readonly N[], removed: readonly N[], updated: readonly N[]): void;
  /**
   * Picks a node, preferring ready ones and ones whose id is not in `avoid`. Returns `undefined` only when
   * there are no nodes at all. `now` is the time of the pick on the mesh clock, when the caller has just read
   * it (the balancer leaf reads it once for the pick and the load sample); the distributor reads the clock
   * itself otherwise.
   */
  pick(avoid?: ReadonlySet<string>, now?: number): N | undefined;
}

/**
 * What a balancer factory gets: the only sources of time and randomness a balancer may use.
 *
 * @example
 * ```ts
 * const env: BalancerEnv = { clock: new FakeClock(), rng: seededRng(1) };
 * ```
 */
export interface BalancerEnv {
  readonly clock: Clock;
  readonly rng: Rng;
}

/**
 * A balancing strategy: a metric per endpoint and a distributor per destination.
 *
 * @example
 * ```ts
 * createMesh({ services: { users: { endpoints: [...], balancer: roundRobin() } } });
 * ```
 */
export interface BalancerFactory {
  /** A name for snapshots and telemetry, e.g. `p2c-peak-ewma`. */
  readonly kind: string;
  newLoad(env: BalancerEnv): LoadMetric;
  newDistributor<N extends BalancerNode>(env: BalancerEnv): Distributor<N>;
}

/**
 * Applies a change to a distributor: through its incremental {@link Distributor.apply} when it has one,
 * otherwise with `update(all())` (`all` is only called then, so a caller need not build the whole list).
 *
 * @example
 * ```ts
 * applyChanges(distributor, [added], [], [], () => [...nodes.values()]);
 * ```
 */
export function applyChanges<N extends BalancerNode>(
  distributor: Distributor<N>,
  added: readonly N[],
  removed: readonly N[],
  updated: readonly N[],
  all: () => readonly N[],
): void {
  if (distributor.apply !== undefined) distributor.apply(added, removed, updated);
  else distributor.update(all());
}
