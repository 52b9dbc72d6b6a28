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
 *   (an alias table there; here rejection sampling unless the weights are heavily skewed, so that a change of
 *   the set costs O(change), see the class comment) and compare load per unit of weight; tower's
 *   `load::Weighted` divides the load by the weight the same way.
 * - Envoy's `healthy_panic_threshold` (default 50 %): when fewer hosts than that are healthy, ignore health and
 *   balance over all of them, rather than overload the few healthy ones.
 * - tower `balance/p2c` and linkerd2-proxy: P2C over a pluggable load metric (Peak EWMA by default).
 */
import { systemClock } from '../core/clock.js';
import type { Clock } from '../core/clock.js';
import { randomInt, systemRng } from '../core/rng.js';
import type { Rng } from '../core/rng.js';
import { AliasTable } from './alias.js';
import { numberOption, optionRecord } from './options.js';
import { PEAK_EWMA_OPTION_KEYS, PeakEwmaLoad, resolvePeakEwmaOptions } from './peak-ewma.js';
import type { PeakEwmaOptions } from './peak-ewma.js';
import { PendingLoad } from './pending.js';
import { Newcomers } from './newcomers.js';
import { NodeIndex } from './node-index.js';
import { StatusTracker, statusRank } from './status.js';
import type { BalancerEnv, BalancerFactory, BalancerNode, Distributor } from './types.js';
import { WeightBook } from './weights.js';

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
 * Rejection sampling is used while the largest weight is at most this many times the mean: a draw then takes
 * at most this many tries on average (1.6 for weights 1-4). Above it (a heavily skewed set, e.g. one weight-1000
 * node among weight-1 ones) the alias table is used.
 */
const REJECTION_MAX_RATIO = 8;

/**
 * Tries of rejection sampling before a draw falls back to the alias table. With the ratio at most 8 the chance
 * of needing the fallback is below (7/8)^256, about 1e-15 per draw: it never changes the distribution, it only
 * bounds the loop.
 */
const REJECTION_TRIES = 256;

/**
 * P2C over any load metric, with statuses, panic mode, weights and an `avoid` set.
 *
 * A pick draws two distinct nodes (uniformly, or in proportion to their weights) and ranks each by, in order:
 * status (`ready` < `busy` < `down`; ignored in panic mode), whether its id is in `avoid`, then cost
 * (`load.cost(now)`; with unequal weights, the cost per normalised weight). Call a node eligible when it is
 * ready (or panic mode is on) and not avoided. The pick returns as soon as two eligible nodes have been
 * compared on cost: the cheaper one (of the three, when a pair of two eligible nodes follows one that was
 * drawn beside an ineligible partner). An eligible node drawn beside an ineligible one is kept and another
 * pair is drawn, so that it still has to beat an eligible competitor, as in tower, whose P2C draws from ready
 * endpoints only; Finagle returns it at once, which gives every node paired with a busy one the pick whatever
 * its load. Up to `maxEffort` pairs are drawn; then the best node seen is returned. Ties go to the node drawn
 * first, which keeps the weighted (or uniform) draw unbiased. O(1) per pick.
 *
 * Fairness to new and idle nodes (docs/balancers.md, "Peak EWMA"): a node added while its metric is probing
 * (`load.probing`, e.g. Peak EWMA before its first answer) is offered the next pick before any draw, if it is
 * eligible, so it gets traffic within its first pick at any set size; and the loser of each cost comparison
 * between eligible nodes is told (`load.passed`), which is how Peak EWMA re-probes an endpoint that keeps
 * losing on a stale estimate.
 *
 * Weighted draws without an O(n) rebuild per change: candidates come from an alias table (Vose; O(1) per
 * draw, one random number). A change of the set invalidates it, and the periodic status rescan (every
 * `statusRefreshMs`, already O(n)) rebuilds it. Until then, while the largest weight is at most 8 times the
 * mean, a candidate is drawn by rejection sampling over a uniform index (node i accepted with probability
 * w_i / w_max; one random number per try, at most 8 tries on average, 1.6 for weights 1-4); `w_max` is an
 * upper bound kept in O(1) per change and made exact by the same rescan. With more skewed weights the table is
 * rebuilt on the first pick after a change instead (O(n) once per change). All of them give exactly the
 * weighted distribution.
 *
 * The set changes with {@link P2CDistributor.update} (O(n)) or incrementally with {@link P2CDistributor.apply}
 * (O(change) amortised: an id -> index map, swap-remove, the cached statuses and the weights moved alongside).
 *
 * @example
 * ```ts
 * const p2c = new P2CDistributor<MyNode>({ clock, rng }, { maxEffort: 4 });
 * p2c.update(nodes);
 * const node = p2c.pick(new Set(['10.0.0.1:80'])); // prefers a node other than 10.0.0.1:80
 * p2c.apply([added], [removed], []); // O(change)
 * ```
 */
export class P2CDistributor<N extends BalancerNode> implements Distributor<N> {
  private readonly clock: Clock;
  private readonly rng: Rng;
  private readonly maxEffort: number;
  private readonly panicThreshold: number;
  private readonly tracker: StatusTracker;
  private nodes: N[] = [];
  /** Node id -> position in `nodes`, for applying changes in O(change). */
  private readonly index = new NodeIndex();
  private readonly weights = new WeightBook();
  /**
   * The alias table of the current weights, or undefined after a change until the next periodic rescan
   * rebuilds it (or, with heavily skewed weights, the next pick).
   */
  private table: AliasTable | undefined;
  /** Newly added nodes whose metric is probing, offered one per pick before any draw (newcomers.ts). */
  private readonly fresh = new Newcomers<N>();

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

  /** Replaces the node set: O(n) (copies the list, reads every weight, builds the alias table when weights differ, counts statuses). */
  update(nodes: readonly N[]): void {
    this.nodes = nodes.slice();
    // The id -> index map is built by the first apply() after this (update() stays as cheap as it was).
    this.index.invalidate();
    this.weights.reset(this.nodes);
    this.table = this.weights.equal ? undefined : AliasTable.fromWeights(this.weights.values);
    this.tracker.scan(this.nodes, this.clock.now());
    this.fresh.reset(this.nodes);
  }

  /**
   * Changes the node set in O(change) amortised: reads the status and weight of each added or updated node
   * only; a removed node's slot is filled by the last node. Kept nodes keep their load state (it lives in the
   * node). The panic count stays exact for what was read; the rest is as fresh as the last rescan.
   */
  apply(added: readonly N[], removed: readonly N[], updated: readonly N[]): void {
    this.index.ensure(this.nodes); // once after each update(), O(n) like the update itself
    for (const node of removed) this.remove(node.id);
    for (const node of updated) this.put(node);
    for (const node of added) this.put(node);
    this.table = undefined;
    this.fresh.remove(removed);
    this.fresh.add(added);
  }

  /** True when panic mode is on as of the last count (see {@link P2COptions.panicThreshold}). */
  get panicking(): boolean {
    return this.tracker.panic(this.panicThreshold);
  }

  pick(avoid?: ReadonlySet<string>, at?: number): N | undefined {
    const nodes = this.nodes;
    const n = nodes.length;
    if (n < 2) return nodes[0];
    const now = at ?? this.clock.now();
    const tracker = this.tracker;
    if (tracker.due(now)) {
      tracker.scan(nodes, now);
      // The same periodic O(n) pass tightens the weight bound after removals and, with unequal weights,
      // rebuilds the alias table a change invalidated (picks use rejection sampling until then).
      if (this.weights.loose) this.weights.recount();
      if (this.table === undefined && !this.weights.equal)
        this.table = AliasTable.fromWeights(this.weights.values);
    }
    const panic = tracker.panic(this.panicThreshold);
    const avoiding = avoid !== undefined && avoid.size > 0 ? avoid : undefined;
    if (this.fresh.waiting) {
      const node = this.fresh.take((x) => (panic || x.status === 'ready') && avoiding?.has(x.id) !== true);
      if (node !== undefined) return node;
    }
    // With two nodes every draw is the same pair: one round says all there is to say.
    const rounds = n === 2 ? 1 : this.maxEffort;
    const weighted = !this.weights.equal;
    let best = -1;
    let bestRank = Infinity;
    let bestCost = NaN;
    for (let round = 0; round < rounds; round++) {
      const a = weighted ? this.weightedDraw() : randomInt(this.rng, n);
      const b = this.second(a, n, weighted);
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
        const costA = this.costOf(a, nodeA, now, weighted);
        const costB = this.costOf(b, nodeB, now, weighted);
        // Ties go to `a`: it was drawn first, so the choice stays uniform (or weighted) when loads are equal.
        if (costB < costA) {
          winner = b;
          cost = costB;
          if (rankA === 0) nodeA.load.passed?.(now);
        } else {
          winner = a;
          cost = costA;
          if (rankA === 0) nodeB.load.passed?.(now);
        }
        rank = rankA;
      } else if (rankA < rankB) {
        winner = a;
        rank = rankA;
      } else {
        winner = b;
        rank = rankB;
      }
      if (rank === 0) {
        // An eligible node (ready, or any in panic mode; not avoided). It has competed on cost only if the
        // pair was decided on cost; one whose partner was not eligible has met no competitor yet, and returning
        // it would hand every node paired with a busy or avoided one the pick whatever its load (with one busy
        // node among n, each other node would win 2/(n(n-1)) of all picks for free: 4.8 % of the traffic to a
        // slow node among 7 in the demo). So, as tower's P2C draws both candidates from ready endpoints only,
        // such a node is kept and the next pair is drawn; the pick returns once two eligible nodes have met.
        if (bestRank === 0 && best !== winner) {
          if (Number.isNaN(bestCost)) bestCost = this.costOf(best, nodes[best]!, now, weighted);
          if (Number.isNaN(cost)) cost = this.costOf(winner, nodes[winner]!, now, weighted);
          // Ties go to `best`: it was drawn first. The loser was passed over on cost.
          const [won, lost] = cost < bestCost ? [winner, best] : [best, winner];
          nodes[lost]!.load.passed?.(now);
          return nodes[won];
        }
        if (!Number.isNaN(cost)) return nodes[winner];
        best = winner;
        bestRank = 0;
        bestCost = NaN;
        continue;
      }
      if (rank < bestRank) {
        best = winner;
        bestRank = rank;
        bestCost = cost;
      } else if (rank === bestRank && winner !== best) {
        if (Number.isNaN(bestCost)) bestCost = this.costOf(best, nodes[best]!, now, weighted);
        if (Number.isNaN(cost)) cost = this.costOf(winner, nodes[winner]!, now, weighted);
        if (cost < bestCost) {
          best = winner;
          bestCost = cost;
        }
      }
    }
    return nodes[best];
  }

  /** Adds `node`, or replaces the node with its id (new data, e.g. a weight): O(1) amortised. */
  private put(node: N): void {
    const i = this.index.get(node.id);
    if (i === undefined) {
      this.index.push(this.nodes, node);
      this.weights.push(node.weight);
      this.tracker.push(node.status);
      return;
    }
    this.nodes[i] = node;
    this.weights.set(i, node.weight);
    this.tracker.note(i, node.status);
  }

  /** Removes the node with id `id` (if present) by moving the last node into its slot: O(1). */
  private remove(id: string): void {
    const i = this.index.get(id);
    if (i === undefined) return;
    this.index.swapRemove(this.nodes, i);
    this.weights.swapRemove(i);
    this.tracker.swapRemove(i);
  }

  /** The cost P2C compares for node `i`: raw with equal weights, per normalised weight otherwise. */
  private costOf(i: number, node: N, now: number, weighted: boolean): number {
    if (!weighted) return node.load.cost(now);
    const w = this.weights.normalized(i);
    const load = node.load;
    return load.weightedCost !== undefined ? load.weightedCost(now, w) : load.cost(now) / w;
  }

  /**
   * A node index drawn in proportion to the weights: from the alias table when it is current, else by
   * rejection sampling (mild skew), else from an alias table built now (heavy skew).
   */
  private weightedDraw(): number {
    if (this.table !== undefined) return this.table.sample(this.rng);
    const book = this.weights;
    const n = this.nodes.length;
    const max = book.maxBound;
    if (max <= REJECTION_MAX_RATIO * book.mean) {
      const rng = this.rng;
      for (let t = 0; t < REJECTION_TRIES; t++) {
        // One random number: its integer part picks a node, its fraction decides acceptance (w_i / w_max).
        const u = rng.next() * n;
        const i = Math.floor(u);
        if ((u - i) * max < book.at(i)) return i;
      }
    }
    const table = (this.table = AliasTable.fromWeights(book.values));
    return table.sample(this.rng);
  }

  private second(a: number, n: number, weighted: boolean): number {
    if (weighted) {
      for (let i = 0; i < WEIGHTED_SECOND_TRIES; i++) {
        const b = this.weightedDraw();
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
 * const options: P2CPeakEwmaOptions = { tauMs: 10_000, maxProbes: 1, maxEffort: 4 };
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
 * p2cPeakEwma({ tauMs: 5_000, slowStartMs: 30_000, panicThreshold: 0.3 });
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
