/**
 * Round robin: each eligible endpoint in turn, in proportion to its weight. The baseline the latency-aware
 * balancers are measured against, and the right choice when requests are uniform and endpoints identical.
 *
 * Sources:
 * - Envoy `upstream/edf_scheduler.h` and `load_balancer_impl.cc` (`RoundRobinLoadBalancer`): with unequal
 *   weights, an earliest-deadline-first schedule where an endpoint of weight w is due again 1/w after it was
 *   picked (O(log n) per pick with a binary heap; smooth weighted round robin would be O(n); the schedule is
 *   in edf.ts); with equal weights, a plain rotation (here); a random starting point so that many clients do
 *   not march in step.
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
import { numberOption, optionRecord } from './options.js';
import { PendingLoad } from './pending.js';
import { NodeIndex } from './node-index.js';
import { StatusTracker, statusRank } from './status.js';
import type { BalancerEnv, BalancerFactory, BalancerNode, Distributor } from './types.js';
import { WeightBook } from './weights.js';
import { EdfSchedule } from './edf.js';

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
 * The set changes with {@link RoundRobinDistributor.update} (O(n), restarts the schedule from a random point)
 * or incrementally with {@link RoundRobinDistributor.apply}: an added node joins the rotation just before the
 * cursor (last in the current cycle) or the EDF heap at the current virtual time plus a random phase; a removed
 * node leaves the rotation (a linked ring) without disturbing the order of the others, or the heap in
 * O(log n). Between two picks of a node no other node is picked twice, across changes too. A change that flips
 * the eligibility mode (panic, or no ready node left) or switches between equal and unequal weights rebuilds
 * the schedule in O(n), as a status change does.
 *
 * @example
 * ```ts
 * const rr = new RoundRobinDistributor<MyNode>({ clock, rng });
 * rr.update(nodes);
 * rr.pick(); // the next eligible node
 * rr.apply([added], [removed], []); // O(change) (O(log n) per node with unequal weights)
 * ```
 */
export class RoundRobinDistributor<N extends BalancerNode> implements Distributor<N> {
  private readonly clock: Clock;
  private readonly rng: Rng;
  private readonly maxEffort: number;
  private readonly panicThreshold: number;
  private readonly tracker: StatusTracker;
  private nodes: N[] = [];
  /** Node id -> position in `nodes`, for applying changes in O(change). */
  private readonly index = new NodeIndex();
  private readonly weights = new WeightBook();
  /** Whether the schedule is the EDF heap (unequal weights when it was built) or the rotation. */
  private weighted = false;
  private mode: Eligible = Eligible.Ready;
  /** A pick saw a status that differs from the one the schedule was built with. */
  private dirty = false;

  // Equal weights: the eligible indices as a circular doubly linked list (node index -> next / previous in the
  // rotation, -1 when not in it), so that a node leaves or joins in O(1) without reordering the others; the
  // cursor is the node due next (-1 when the rotation is empty).
  private ringNext = new Int32Array(0);
  private ringPrev = new Int32Array(0);
  private ringLen = 0;
  private cursor = -1;

  /** Unequal weights: the earliest-deadline-first heap of eligible indices (edf.ts). */
  private readonly edf = new EdfSchedule(this.weights);

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
    // The id -> index map is built by the first apply() after this (update() stays as cheap as it was).
    this.index.invalidate();
    this.weights.reset(this.nodes);
    this.tracker.scan(this.nodes, this.clock.now());
    this.edf.phased = false;
    this.rebuild(true);
  }

  /**
   * Changes the node set in O(change) amortised (O(log n) per node with unequal weights): reads the status and
   * weight of each added or updated node only. Kept nodes keep their place in the schedule and their load.
   */
  apply(added: readonly N[], removed: readonly N[], updated: readonly N[]): void {
    this.index.ensure(this.nodes); // once after each update(), O(n) like the update itself
    for (const node of removed) this.remove(node.id);
    for (const node of updated) this.put(node);
    for (const node of added) this.put(node);
    // A change of mode or of weightedness changes which nodes are scheduled, or how: rebuild, keeping phases.
    if (this.nodes.length > 0 && (this.modeFor() !== this.mode || this.weights.equal === this.weighted))
      this.rebuild(false);
  }

  /** True when panic mode is on as of the last count. */
  get panicking(): boolean {
    return this.tracker.panic(this.panicThreshold);
  }

  pick(avoid?: ReadonlySet<string>, at?: number): N | undefined {
    const nodes = this.nodes;
    const n = nodes.length;
    if (n < 2) return nodes[0];
    const tracker = this.tracker;
    const now = at ?? this.clock.now();
    // At most once per statusRefreshMs: recount, and rebuild the schedule if any status changed since it was
    // built (seen by this scan or by an earlier pick).
    if (tracker.due(now)) {
      const changed = tracker.scan(nodes, now);
      if (this.weights.loose) this.weights.recount();
      if (changed || this.dirty) this.rebuild(false);
    }
    let size = this.weighted ? this.edf.size : this.ringLen;
    if (size === 0) {
      // Removals emptied the schedule between refreshes: make a new one over what is left.
      this.rebuild(false);
      size = this.weighted ? this.edf.size : this.ringLen;
    }
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

  /** Whether the node with cached status rank `code` is scheduled in the current mode. */
  private eligible(code: number): boolean {
    return this.mode === Eligible.All || (this.mode === Eligible.Ready ? code === 0 : code !== 2);
  }

  /** Rebuilds the schedule over the eligible nodes; `fresh` restarts it from a random point. */
  private rebuild(fresh: boolean): void {
    const n = this.nodes.length;
    const tracker = this.tracker;
    // Read before the heap is emptied below: where nodes that come back join.
    const now = this.weighted ? this.edf.now() : 0;
    this.dirty = false;
    this.mode = this.modeFor();
    this.weighted = !this.weights.equal;
    this.reserve(n);
    const oldCursor = this.cursor;
    this.ringNext.fill(-1, 0, n);
    this.ringPrev.fill(-1, 0, n);
    this.edf.clear(n);
    this.ringLen = 0;
    this.cursor = -1;
    if (!this.weighted) {
      this.edf.phased = false;
      // Linked in index order; the rotation goes on from where it was (the first eligible node at or after the
      // old cursor), or from a random point when fresh.
      let first = -1;
      let prev = -1;
      let from = -1;
      let count = 0;
      if (fresh) for (let i = 0; i < n; i++) if (this.eligible(tracker.cached(i))) count++;
      const start = count > 0 ? randomInt(this.rng, count) : -1;
      for (let i = 0; i < n; i++) {
        if (!this.eligible(tracker.cached(i))) continue;
        if (first < 0) first = i;
        else {
          this.ringNext[prev] = i;
          this.ringPrev[i] = prev;
        }
        if (fresh ? this.ringLen === start : from < 0 && i >= oldCursor) from = i;
        prev = i;
        this.ringLen++;
      }
      if (first >= 0) {
        this.ringNext[prev] = first;
        this.ringPrev[first] = prev;
        this.cursor = from >= 0 ? from : first;
      }
      return;
    }
    // EDF: node i is next due at its deadline; a pick moves it 1/w later. A random phase in [0, 1/w) per node
    // desynchronises clients without changing the long-run shares. Nodes kept across a rebuild keep their
    // deadline so that a status change does not reset the schedule; nodes coming back join at the current
    // virtual time.
    const edf = this.edf;
    if (fresh || !edf.phased) edf.rephase(n, this.rng);
    else for (let i = 0; i < n; i++) if (this.eligible(tracker.cached(i))) edf.catchUp(i, now);
    for (let i = 0; i < n; i++) if (this.eligible(tracker.cached(i))) edf.push(i);
    edf.heapify();
  }

  /** Adds `node`, or replaces the node with its id (new data, e.g. a weight): O(1) amortised, O(log n) heap. */
  private put(node: N): void {
    const existing = this.index.get(node.id);
    if (existing !== undefined) {
      this.nodes[existing] = node;
      this.weights.set(existing, node.weight);
      // A status that changed makes the schedule stale, exactly as when a pick reads it.
      if (this.tracker.note(existing, node.status)) this.dirty = true;
      return;
    }
    const i = this.index.push(this.nodes, node);
    this.weights.push(node.weight);
    this.tracker.push(node.status);
    this.reserve(i + 1);
    this.ringNext[i] = -1;
    this.ringPrev[i] = -1;
    this.edf.detach(i);
    // Joins at the current virtual time with a random phase, as a fresh schedule would place it.
    if (this.weighted && this.edf.phased) this.edf.join(i, this.rng);
    if (!this.eligible(this.tracker.cached(i))) return;
    if (this.weighted) {
      if (!this.edf.phased) return; // the rebuild that apply() makes places it
      this.edf.insert(i);
    } else {
      this.ringInsert(i);
    }
  }

  /** Removes the node with id `id` (if present) and moves the last node into its slot. */
  private remove(id: string): void {
    const i = this.index.get(id);
    if (i === undefined) return;
    if (this.ringNext[i]! >= 0) this.ringRemove(i);
    if (this.edf.has(i)) this.edf.remove(i);
    const last = this.nodes.length - 1;
    this.index.swapRemove(this.nodes, i);
    if (i !== last) {
      // The last node moved into slot i: move its schedule data with it.
      this.edf.move(last, i);
      const rn = (this.ringNext[i] = this.ringNext[last]!);
      const rp = (this.ringPrev[i] = this.ringPrev[last]!);
      if (rn >= 0) {
        // The neighbours now point at the node's new index (a ring of one points at itself).
        this.ringPrev[rn === last ? i : rn] = i;
        this.ringNext[rp === last ? i : rp] = i;
        if (this.cursor === last) this.cursor = i;
      }
    }
    this.weights.swapRemove(i);
    this.tracker.swapRemove(i);
  }

  /** Puts node `i` into the rotation just before the cursor (last in the current cycle): O(1). */
  private ringInsert(i: number): void {
    if (this.ringLen++ === 0) {
      this.ringNext[i] = i;
      this.ringPrev[i] = i;
      this.cursor = i;
      return;
    }
    const before = this.ringPrev[this.cursor]!;
    this.ringNext[before] = i;
    this.ringPrev[i] = before;
    this.ringNext[i] = this.cursor;
    this.ringPrev[this.cursor] = i;
  }

  /** Takes node `i` out of the rotation in O(1); the others keep their order. */
  private ringRemove(i: number): void {
    const next = this.ringNext[i]!;
    const prev = this.ringPrev[i]!;
    this.ringNext[i] = -1;
    this.ringPrev[i] = -1;
    if (--this.ringLen === 0) {
      this.cursor = -1;
      return;
    }
    this.ringNext[prev] = next;
    this.ringPrev[next] = prev;
    if (this.cursor === i) this.cursor = next;
  }

  /** The next node index of the schedule (O(1) rotation or O(log n) heap step). */
  private next(): number {
    if (!this.weighted) {
      const index = this.cursor;
      this.cursor = this.ringNext[index]!;
      return index;
    }
    return this.edf.next();
  }

  /** Grows the per-node arrays to hold at least `n` nodes (doubling: appends are O(1) amortised). */
  private reserve(n: number): void {
    if (n <= this.ringNext.length) return;
    const cap = Math.max(n, this.ringNext.length * 2, 8);
    const grow = <T extends Int32Array | Float64Array>(a: T, make: (c: number) => T): T => {
      const b = make(cap);
      b.set(a);
      return b;
    };
    this.ringNext = grow(this.ringNext, (c) => new Int32Array(c));
    this.ringPrev = grow(this.ringPrev, (c) => new Int32Array(c));
    this.edf.reserve(n);
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
