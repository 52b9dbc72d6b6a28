/**
 * Round robin: each eligible endpoint in turn, in proportion to its weight. The baseline the latency-aware
 * balancers are measured against, and the right choice when requests are uniform and endpoints identical.
 *
 * Sources:
 * - Envoy `upstream/edf_scheduler.h` and `load_balancer_impl.cc` (`RoundRobinLoadBalancer`): with unequal
 *   weights, an earliest-deadline-first schedule where an endpoint of weight w is due again 1/w after it was
 *   picked (O(log n) per pick with a binary heap; smooth weighted round robin would be O(n)); with equal
 *   weights, a plain rotation; a random starting point so that many clients do not march in step.
 * - Envoy's `healthy_panic_threshold` (default 50 %) for panic mode, as in P2C.
 *
 * Statuses: the schedule runs over the eligible endpoints only, i.e. the ready ones (all of them in panic
 * mode; the ones not down when panic is disabled and none is ready). Eligibility is recomputed on `update()`
 * and at most every `statusRefreshMs` (see status.ts); in between, a picked endpoint whose live status is no
 * longer acceptable is skipped, up to `maxEffort` endpoints per pick.
 */
import { systemClock } from '../core/clock.js';
import type { Clock } from '../core/clock.js';
import { randomInt, systemRng } from '../core/rng.js';
import type { Rng } from '../core/rng.js';
import { normalizedWeights } from './alias.js';
import { numberOption, optionRecord } from './options.js';
import { PendingLoad } from './pending.js';
import { StatusTracker, statusRank } from './status.js';
import type { BalancerEnv, BalancerFactory, BalancerNode, Distributor } from './types.js';

/**
 * Options of {@link RoundRobinDistributor} and the `roundRobin` factory.
 *
 * @example
 * ```ts
 * const options: RoundRobinOptions = { panicThreshold: 0.5, maxEffort: 4 };
 * ```
 */
export interface RoundRobinOptions {
  /**
   * How many endpoints a pick may step over, at most, when the next one's live status is no longer acceptable
   * or its id is in `avoid`. Default 4 (as P2C's `maxEffort`). An integer >= 1.
   */
  maxEffort?: number;
  /**
   * Panic (rotate over every endpoint, whatever its status) when the share of ready endpoints falls below this
   * fraction (Envoy's `healthy_panic_threshold`). Default 0.5. 0 disables panic mode. In [0, 1].
   */
  panicThreshold?: number;
  /** How often, at most, eligibility is recomputed by a scan of every endpoint, in ms. Default 100. >= 0. */
  statusRefreshMs?: number;
}

/**
 * The resolved options of a {@link RoundRobinDistributor}.
 *
 * @example
 * ```ts
 * const o: ResolvedRoundRobinOptions = resolveRoundRobinOptions({ maxEffort: 2 });
 * ```
 */
export interface ResolvedRoundRobinOptions {
  readonly maxEffort: number;
  readonly panicThreshold: number;
  readonly statusRefreshMs: number;
}

/**
 * The defaults of round robin.
 *
 * @example
 * ```ts
 * ROUND_ROBIN_DEFAULTS.panicThreshold; // 0.5
 * ```
 */
export const ROUND_ROBIN_DEFAULTS: ResolvedRoundRobinOptions = Object.freeze({
  maxEffort: 4,
  panicThreshold: 0.5,
  statusRefreshMs: 100,
});

/**
 * Validates round-robin options and fills in defaults. Throws a `ConfigError` naming the option
 * (`balancer.panicThreshold`) on a bad value.
 *
 * @example
 * ```ts
 * resolveRoundRobinOptions({ panicThreshold: 0 }); // panic mode disabled
 * ```
 */
export function resolveRoundRobinOptions(options?: RoundRobinOptions): ResolvedRoundRobinOptions {
  const o = optionRecord(options, ['maxEffort', 'panicThreshold', 'statusRefreshMs']);
  return {
    maxEffort: numberOption(o, 'maxEffort', ROUND_ROBIN_DEFAULTS.maxEffort, {
      min: 1,
      max: 64,
      integer: true,
    }),
    panicThreshold: numberOption(o, 'panicThreshold', ROUND_ROBIN_DEFAULTS.panicThreshold, {
      min: 0,
      max: 1,
    }),
    statusRefreshMs: numberOption(o, 'statusRefreshMs', ROUND_ROBIN_DEFAULTS.statusRefreshMs, { min: 0 }),
  };
}

/** Which statuses the schedule currently accepts: ready only, any but down, or all (panic). */
const Eligible = { Ready: 0, NotDown: 1, All: 2 } as const;
type Eligible = (typeof Eligible)[keyof typeof Eligible];

/**
 * A weighted round-robin distributor: a rotation when weights are equal (O(1) per pick), an earliest-deadline-
 * first heap otherwise (O(log n) per pick), over the eligible endpoints.
 *
 * @example
 * ```ts
 * const rr = new RoundRobinDistributor<MyNode>({ clock, rng });
 * rr.update(nodes);
 * rr.pick(); // the next eligible node
 * ```
 */
export class RoundRobinDistributor<N extends BalancerNode> implements Distributor<N> {
  private readonly clock: Clock;
  private readonly rng: Rng;
  private readonly maxEffort: number;
  private readonly panicThreshold: number;
  private readonly tracker: StatusTracker;
  private nodes: readonly N[] = [];
  /** Weights normalised to a mean of 1, or undefined when all are equal. */
  private weights: Float64Array | undefined;
  private mode: Eligible = Eligible.Ready;
  /** A pick saw a status that differs from the one the schedule was built with. */
  private dirty = false;

  // Equal weights: the eligible indices in order and a cursor.
  private ring = new Int32Array(0);
  private cursor = 0;

  // Unequal weights: a binary min-heap of eligible indices keyed by (deadline, seq).
  private heap = new Int32Array(0);
  private deadline = new Float64Array(0);
  private seq = new Float64Array(0);
  private counter = 0;

  /**
   * @param env the clock (for the status refresh) and the rng (for the random starting point); default to the
   *   system clock and rng.
   * @param options validated; a bad value throws a `ConfigError`.
   */
  constructor(env: Partial<BalancerEnv> = {}, options?: RoundRobinOptions) {
    const o = resolveRoundRobinOptions(options);
    this.clock = env.clock ?? systemClock;
    this.rng = env.rng ?? systemRng;
    this.maxEffort = o.maxEffort;
    this.panicThreshold = o.panicThreshold;
    this.tracker = new StatusTracker(o.statusRefreshMs);
  }

  /** Replaces the node set and restarts the schedule from a random point: O(n log n) at worst. */
  update(nodes: readonly N[]): void {
    this.nodes = nodes.slice();
    this.weights = normalizedWeights(this.nodes);
    this.tracker.scan(this.nodes, this.clock.now());
    this.rebuild(true);
  }

  /** True when panic mode is on as of the last count. */
  get panicking(): boolean {
    return this.tracker.panic(this.panicThreshold);
  }

  pick(avoid?: ReadonlySet<string>): N | undefined {
    const nodes = this.nodes;
    const n = nodes.length;
    if (n < 2) return nodes[0];
    const tracker = this.tracker;
    const now = this.clock.now();
    // At most once per statusRefreshMs: recount, and rebuild the schedule if any status changed since it was
    // built (seen by this scan or by an earlier pick).
    if (tracker.due(now) && (tracker.scan(nodes, now) || this.dirty)) this.rebuild(false);
    const size = this.weights === undefined ? this.ring.length : this.heap.length;
    const effort = Math.min(size, this.maxEffort);
    const avoiding = avoid !== undefined && avoid.size > 0 ? avoid : undefined;
    let fallback = -1;
    let fallbackRank = Infinity;
    for (let i = 0; i < effort; i++) {
      const index = this.next();
      const node = nodes[index]!;
      const status = node.status;
      if (tracker.note(index, status)) this.dirty = true;
      const acceptable =
        this.mode === Eligible.All || (this.mode === Eligible.Ready ? status === 'ready' : status !== 'down');
      const avoided = avoiding !== undefined && avoiding.has(node.id);
      if (acceptable && !avoided) return node;
      const rank = (acceptable ? 0 : 2 + statusRank(status)) + (avoided ? 1 : 0);
      if (rank < fallbackRank) {
        fallback = index;
        fallbackRank = rank;
      }
    }
    return nodes[fallback];
  }

  /** The eligibility the current counts call for. */
  private modeFor(): Eligible {
    const tracker = this.tracker;
    if (tracker.panic(this.panicThreshold)) return Eligible.All;
    if (tracker.notReady < tracker.size) return Eligible.Ready;
    return tracker.down < tracker.size ? Eligible.NotDown : Eligible.All;
  }

  /** Rebuilds the schedule over the eligible nodes; `fresh` restarts it from a random point. */
  private rebuild(fresh: boolean): void {
    const n = this.nodes.length;
    const tracker = this.tracker;
    this.dirty = false;
    this.mode = this.modeFor();
    const eligible: number[] = [];
    for (let i = 0; i < n; i++) {
      const code = tracker.cached(i);
      if (this.mode === Eligible.All || (this.mode === Eligible.Ready ? code === 0 : code !== 2))
        eligible.push(i);
    }
    const weights = this.weights;
    if (weights === undefined) {
      this.ring = Int32Array.from(eligible);
      const len = this.ring.length;
      this.cursor = len === 0 ? 0 : fresh ? randomInt(this.rng, len) : this.cursor % len;
      return;
    }
    // EDF: node i is next due at deadline[i]; a pick moves it 1/w later. A random phase in [0, 1/w) per node
    // desynchronises clients without changing the long-run shares. Nodes kept across a rebuild keep their
    // deadline so that a status change does not reset the schedule.
    if (fresh || this.deadline.length !== n) {
      this.deadline = new Float64Array(n);
      this.seq = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        this.deadline[i] = this.rng.next() / weights[i]!;
        this.seq[i] = i;
      }
      this.counter = n;
    } else {
      // Nodes coming back join at the current virtual time, not in the past (they would otherwise be picked
      // again and again until they caught up).
      const now = this.heap.length > 0 ? this.deadline[this.heap[0]!]! : 0;
      for (const i of eligible) if (this.deadline[i]! < now) this.deadline[i] = now;
    }
    this.heap = Int32Array.from(eligible);
    for (let k = (this.heap.length >> 1) - 1; k >= 0; k--) this.siftDown(k);
  }

  /** The next node index of the schedule (O(1) rotation or O(log n) heap step). */
  private next(): number {
    const weights = this.weights;
    if (weights === undefined) {
      const ring = this.ring;
      const index = ring[this.cursor]!;
      this.cursor = this.cursor + 1 === ring.length ? 0 : this.cursor + 1;
      return index;
    }
    const heap = this.heap;
    const top = heap[0]!;
    this.deadline[top] = this.deadline[top]! + 1 / weights[top]!;
    this.seq[top] = this.counter++;
    this.siftDown(0);
    return top;
  }

  private before(a: number, b: number): boolean {
    const da = this.deadline[a]!;
    const db = this.deadline[b]!;
    return da < db || (da === db && this.seq[a]! < this.seq[b]!);
  }

  private siftDown(k: number): void {
    const heap = this.heap;
    const len = heap.length;
    const item = heap[k]!;
    for (;;) {
      const left = 2 * k + 1;
      if (left >= len) break;
      const right = left + 1;
      const child = right < len && this.before(heap[right]!, heap[left]!) ? right : left;
      if (!this.before(heap[child]!, item)) break;
      heap[k] = heap[child]!;
      k = child;
    }
    heap[k] = item;
  }
}

/**
 * Weighted round robin over the endpoints, load tracked as pending requests (for telemetry; round robin does
 * not read it). Options are validated now: a bad one throws a `ConfigError` naming `balancer.<option>`.
 *
 * @example
 * ```ts
 * createMesh({ services: { users: { endpoints: ['127.0.0.1:8080'], balancer: roundRobin() } } });
 * roundRobin({ panicThreshold: 0 }); // never panic
 * ```
 */
export function roundRobin(options?: RoundRobinOptions): BalancerFactory {
  const o = resolveRoundRobinOptions(options);
  return {
    kind: 'round-robin',
    newLoad: () => new PendingLoad(),
    newDistributor: <N extends BalancerNode>(env: BalancerEnv) => new RoundRobinDistributor<N>(env, o),
  };
}
