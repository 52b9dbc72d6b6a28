/**
 * Power of two choices (P2C): draw two distinct endpoints at random and send to the better one. Comparing two
 * random choices instead of scanning for the best keeps a pick O(1) and avoids the herd behaviour of "always
 * the least loaded" when many clients share stale load views (M. Mitzenmacher, "The Power of Two Choices in
 * Randomized Load Balancing", IEEE TPDS 12(10), 2001).
 *
 * Sources and reference defaults:
 * - Finagle `p2c/P2CPick.scala`: two distinct indices without replacement (`b` drawn from n - 1 and shifted
 *   past `a`), the better status first, then the lower load. `Balancer.scala`/`PanicMode.scala`: re-pick while
 *   the choice is not available, up to `maxEffort` = 4 times (at 50 % unhealthy, 0.25^4 < 1 % of picks fail
 *   to find a healthy node).
 * - Finagle `aperture/WeightedP2CPick.scala`: with weights, draw the candidates from a weighted distribution
 *   (an alias table) and compare load per unit of weight; tower's `load::Weighted` divides the load by the
 *   weight the same way.
 * - Envoy's `healthy_panic_threshold` (default 50 %): when fewer hosts than that are healthy, ignore health and
 *   balance over all of them, rather than overload the few healthy ones.
 * - tower `balance/p2c` and linkerd2-proxy: P2C over a pluggable load metric (Peak EWMA by default).
 */
import { systemClock } from '../core/clock.js';
import type { Clock } from '../core/clock.js';
import { randomInt, systemRng } from '../core/rng.js';
import type { Rng } from '../core/rng.js';
import { AliasTable, normalizedWeights } from './alias.js';
import { numberOption, optionRecord } from './options.js';
import { PEAK_EWMA_OPTION_KEYS, PeakEwmaLoad, resolvePeakEwmaOptions } from './peak-ewma.js';
import type { PeakEwmaOptions } from './peak-ewma.js';
import { PendingLoad } from './pending.js';
import { StatusTracker, statusRank } from './status.js';
import type { BalancerEnv, BalancerFactory, BalancerNode, Distributor } from './types.js';

/**
 * Options of {@link P2CDistributor} (and of the `p2cPeakEwma` / `p2cLeastLoaded` factories).
 *
 * @example
 * ```ts
 * const options: P2COptions = { maxEffort: 4, panicThreshold: 0.5, statusRefreshMs: 100 };
 * ```
 */
export interface P2COptions {
  /**
   * How many pairs to draw, at most, while the better of a pair is not ready or is in the `avoid` set
   * (Finagle's `maxEffort`). Default 4. An integer >= 1.
   */
  maxEffort?: number;
  /**
   * Panic when the share of ready endpoints falls below this fraction: then statuses are ignored and every
   * endpoint competes on load alone (Envoy's `healthy_panic_threshold`, as a fraction). Default 0.5, i.e.
   * panic when more than half are not ready. 0 disables panic mode. In [0, 1].
   */
  panicThreshold?: number;
  /**
   * How often, at most, the not-ready count behind panic mode is recounted with a scan of every endpoint, in
   * ms of clock time. Default 100. Between scans the statuses each pick reads keep it current. >= 0; 0 recounts
   * on every pick (O(n), for tests and tiny sets).
   */
  statusRefreshMs?: number;
}

/**
 * The resolved options of a {@link P2CDistributor}.
 *
 * @example
 * ```ts
 * const o: ResolvedP2COptions = resolveP2COptions({ maxEffort: 2 });
 * ```
 */
export interface ResolvedP2COptions {
  readonly maxEffort: number;
  readonly panicThreshold: number;
  readonly statusRefreshMs: number;
}

/**
 * The reference defaults of P2C.
 *
 * @example
 * ```ts
 * P2C_DEFAULTS.maxEffort; // 4
 * ```
 */
export const P2C_DEFAULTS: ResolvedP2COptions = Object.freeze({
  maxEffort: 4,
  panicThreshold: 0.5,
  statusRefreshMs: 100,
});

/**
 * The option keys {@link P2CDistributor} understands.
 *
 * @example
 * ```ts
 * P2C_OPTION_KEYS.includes('maxEffort'); // true
 * ```
 */
export const P2C_OPTION_KEYS = ['maxEffort', 'panicThreshold', 'statusRefreshMs'] as const;

/**
 * Validates P2C options and fills in defaults. Throws a `ConfigError` naming the option
 * (`balancer.maxEffort`) on a bad value.
 *
 * @example
 * ```ts
 * resolveP2COptions({ maxEffort: 2 }); // { maxEffort: 2, panicThreshold: 0.5, statusRefreshMs: 100 }
 * ```
 */
export function resolveP2COptions(
  options?: P2COptions,
  known: readonly string[] = P2C_OPTION_KEYS,
): ResolvedP2COptions {
  const o = optionRecord(options, known);
  return {
    maxEffort: numberOption(o, 'maxEffort', P2C_DEFAULTS.maxEffort, { min: 1, max: 64, integer: true }),
    panicThreshold: numberOption(o, 'panicThreshold', P2C_DEFAULTS.panicThreshold, { min: 0, max: 1 }),
    statusRefreshMs: numberOption(o, 'statusRefreshMs', P2C_DEFAULTS.statusRefreshMs, { min: 0 }),
  };
}

/** How many extra weighted draws to try for a second candidate distinct from the first (Finagle's `Alias`: 5). */
const WEIGHTED_SECOND_TRIES = 4;

/**
 * P2C over any load metric, with statuses, panic mode, weights and an `avoid` set.
 *
 * A pick draws two distinct nodes (uniformly, or in proportion to their weights through an {@link AliasTable})
 * and ranks each by, in order: status (`ready` < `busy` < `down`; ignored in panic mode), whether its id is in
 * `avoid`, then cost (`load.cost(now)`; with unequal weights, the cost per normalised weight). The better of
 * the pair is returned when it is ready (or panic mode is on) and not avoided; otherwise another pair is drawn,
 * up to `maxEffort` pairs, and the best node seen is returned. Ties go to the first candidate, which keeps the
 * weighted (or uniform) draw unbiased. O(1) per pick.
 *
 * @example
 * ```ts
 * const p2c = new P2CDistributor<MyNode>({ clock, rng }, { maxEffort: 4 });
 * p2c.update(nodes);
 * const node = p2c.pick(new Set(['10.0.0.1:80'])); // prefers a node other than 10.0.0.1:80
 * ```
 */
export class P2CDistributor<N extends BalancerNode> implements Distributor<N> {
  private readonly clock: Clock;
  private readonly rng: Rng;
  private readonly maxEffort: number;
  private readonly panicThreshold: number;
  private readonly tracker: StatusTracker;
  private nodes: readonly N[] = [];
  /** Weights normalised to a mean of 1, or undefined when all weights are equal (the fast path). */
  private weights: Float64Array | undefined;
  private table: AliasTable | undefined;

  /**
   * @param env the clock (for costs and the status refresh) and the rng (for the draws); defaults to the system
   *   clock and `Math.random` through `systemRng`.
   * @param options validated; a bad value throws a `ConfigError`.
   */
  constructor(env: Partial<BalancerEnv> = {}, options?: P2COptions) {
    const o = resolveP2COptions(options);
    this.clock = env.clock ?? systemClock;
    this.rng = env.rng ?? systemRng;
    this.maxEffort = o.maxEffort;
    this.panicThreshold = o.panicThreshold;
    this.tracker = new StatusTracker(o.statusRefreshMs);
  }

  /** Replaces the node set: O(n) (copies the list, builds the alias table when weights differ, counts statuses). */
  update(nodes: readonly N[]): void {
    this.nodes = nodes.slice();
    this.weights = normalizedWeights(this.nodes);
    this.table = this.weights === undefined ? undefined : AliasTable.fromWeights(this.weights);
    this.tracker.scan(this.nodes, this.clock.now());
  }

  /** True when panic mode is on as of the last count (see {@link P2COptions.panicThreshold}). */
  get panicking(): boolean {
    return this.tracker.panic(this.panicThreshold);
  }

  pick(avoid?: ReadonlySet<string>): N | undefined {
    const nodes = this.nodes;
    const n = nodes.length;
    if (n < 2) return nodes[0];
    const now = this.clock.now();
    const tracker = this.tracker;
    tracker.refresh(nodes, now);
    const panic = tracker.panic(this.panicThreshold);
    const avoiding = avoid !== undefined && avoid.size > 0 ? avoid : undefined;
    // With two nodes every draw is the same pair: one round says all there is to say.
    const rounds = n === 2 ? 1 : this.maxEffort;
    let best = -1;
    let bestRank = Infinity;
    let bestCost = NaN;
    for (let round = 0; round < rounds; round++) {
      const a = this.first();
      const b = this.second(a, n);
      const nodeA = nodes[a]!;
      const nodeB = nodes[b]!;
      const statusA = nodeA.status;
      const statusB = nodeB.status;
      tracker.note(a, statusA);
      tracker.note(b, statusB);
      const rankA = (panic ? 0 : statusRank(statusA) * 2) + (avoiding?.has(nodeA.id) ? 1 : 0);
      const rankB = (panic ? 0 : statusRank(statusB) * 2) + (avoiding?.has(nodeB.id) ? 1 : 0);
      let winner: number;
      let rank: number;
      // NaN: not computed yet (a status or avoid difference decided the pair).
      let cost = NaN;
      if (rankA === rankB) {
        const costA = this.costOf(a, nodeA, now);
        const costB = this.costOf(b, nodeB, now);
        // Ties go to `a`: it was drawn first, so the choice stays uniform (or weighted) when loads are equal.
        if (costB < costA) {
          winner = b;
          cost = costB;
        } else {
          winner = a;
          cost = costA;
        }
        rank = rankA;
      } else if (rankA < rankB) {
        winner = a;
        rank = rankA;
      } else {
        winner = b;
        rank = rankB;
      }
      if (rank === 0) return nodes[winner];
      if (rank < bestRank) {
        best = winner;
        bestRank = rank;
        bestCost = cost;
      } else if (rank === bestRank && winner !== best) {
        if (Number.isNaN(bestCost)) bestCost = this.costOf(best, nodes[best]!, now);
        if (Number.isNaN(cost)) cost = this.costOf(winner, nodes[winner]!, now);
        if (cost < bestCost) {
          best = winner;
          bestCost = cost;
        }
      }
    }
    return nodes[best];
  }

  /** The cost P2C compares for node `i`: raw with equal weights, per normalised weight otherwise. */
  private costOf(i: number, node: N, now: number): number {
    const weights = this.weights;
    if (weights === undefined) return node.load.cost(now);
    const w = weights[i]!;
    const load = node.load;
    return load.weightedCost !== undefined ? load.weightedCost(now, w) : load.cost(now) / w;
  }

  private first(): number {
    return this.table !== undefined ? this.table.sample(this.rng) : randomInt(this.rng, this.nodes.length);
  }

  private second(a: number, n: number): number {
    const table = this.table;
    if (table !== undefined) {
      for (let i = 0; i < WEIGHTED_SECOND_TRIES; i++) {
        const b = table.sample(this.rng);
        if (b !== a) return b;
      }
    }
    // Uniform over the other n - 1 (Finagle's "hole" trick: draw from n - 1 and step over `a`).
    const b = randomInt(this.rng, n - 1);
    return b >= a ? b + 1 : b;
  }
}

/**
 * Options of {@link p2cPeakEwma}: P2C's and Peak EWMA's together.
 *
 * @example
 * ```ts
 * const options: P2CPeakEwmaOptions = { tauMs: 10_000, defaultRttMs: 30, maxEffort: 4 };
 * ```
 */
export interface P2CPeakEwmaOptions extends P2COptions, PeakEwmaOptions {}

/**
 * Options of {@link p2cLeastLoaded}.
 *
 * @example
 * ```ts
 * const options: P2CLeastLoadedOptions = { panicThreshold: 0.3 };
 * ```
 */
export type P2CLeastLoadedOptions = P2COptions;

/**
 * P2C over Peak EWMA: the default balancer. Latency-aware; moves traffic off a slow endpoint within a few
 * requests and back as it recovers. Options are validated now: a bad one throws a `ConfigError` naming
 * `balancer.<option>`.
 *
 * @example
 * ```ts
 * createMesh({ services: { users: { endpoints: ['10.0.0.1:80', '10.0.0.2:80'], balancer: p2cPeakEwma() } } });
 * p2cPeakEwma({ tauMs: 5_000, defaultRttMs: 50, panicThreshold: 0.3 });
 * ```
 */
export function p2cPeakEwma(options?: P2CPeakEwmaOptions): BalancerFactory {
  const keys = [...P2C_OPTION_KEYS, ...PEAK_EWMA_OPTION_KEYS];
  const p2c = resolveP2COptions(options, keys);
  const ewma = resolvePeakEwmaOptions(options, keys);
  return {
    kind: 'p2c-peak-ewma',
    newLoad: (env) => new PeakEwmaLoad(ewma, env.clock.now()),
    newDistributor: <N extends BalancerNode>(env: BalancerEnv) => new P2CDistributor<N>(env, p2c),
  };
}

/**
 * P2C over outstanding requests (Finagle's `P2CLeastLoaded`, tower's `PendingRequests`). Cheaper than Peak
 * EWMA and blind to latency until it turns into queued requests. Options are validated now.
 *
 * @example
 * ```ts
 * createMesh({ services: { users: { endpoints: ['10.0.0.1:80'], balancer: p2cLeastLoaded() } } });
 * ```
 */
export function p2cLeastLoaded(options?: P2CLeastLoadedOptions): BalancerFactory {
  const p2c = resolveP2COptions(options);
  return {
    kind: 'p2c-least-loaded',
    newLoad: () => new PendingLoad(),
    newDistributor: <N extends BalancerNode>(env: BalancerEnv) => new P2CDistributor<N>(env, p2c),
  };
}
