/**
 * The weights of a distributor's node set, kept up to date in O(1) per added, removed or re-weighed node, so
 * that an incremental change (`Distributor.apply`) never rescans every weight. Shared by the P2C and
 * round-robin distributors, whose nodes sit in a dense array with swap-remove: entry `i` is node `i`.
 *
 * What is kept: each node's weight (sanitised: finite and > 0, else 1), a count of nodes per distinct weight
 * (one distinct weight = all equal, the unweighted fast path), the running total (for the mean, so costs can
 * be compared per normalised weight) and an upper bound of the largest weight (for rejection sampling, see
 * p2c.ts). A removal may leave the bound too high and the total off by rounding; {@link WeightBook.recount}
 * makes both exact again in O(n), and the distributors call it from their periodic status rescan when
 * {@link WeightBook.loose} says something was removed since.
 */
import { sanitizeWeight } from './alias.js';

/**
 * Per-node weights with a running total, an upper bound of the maximum and the number of distinct weights.
 *
 * @example
 * ```ts
 * const book = new WeightBook();
 * book.reset([{ weight: 1 }, { weight: 3 }]);
 * book.mean;        // 2
 * book.normalized(1); // 1.5
 * book.push(2);     // a third node
 * book.swapRemove(0); // node 0 removed, node 2 moved to 0
 * ```
 */
export class WeightBook {
  /** Sanitised weights; entries at and beyond `size` are spare capacity. */
  private w = new Float64Array(0);
  private n = 0;
  /** Nodes per distinct weight. */
  private readonly counts = new Map<number, number>();
  /** Sum of the weights (running: may carry rounding error until {@link WeightBook.recount}). */
  total = 0;
  /** An upper bound of the largest weight (exact after {@link WeightBook.reset} and {@link WeightBook.recount}). */
  maxBound = 0;
  /** True when a weight was removed or lowered since the last exact count (the bound may be loose). */
  loose = false;

  /** Number of weights. */
  get size(): number {
    return this.n;
  }

  /** The weights, as a view of the first {@link WeightBook.size} entries (valid until the next change). */
  get values(): Float64Array {
    return this.w.subarray(0, this.n);
  }

  /** True when every weight is the same (or there are fewer than two). */
  get equal(): boolean {
    return this.counts.size <= 1;
  }

  /** The mean weight (0 when empty). */
  get mean(): number {
    return this.n === 0 ? 0 : this.total / this.n;
  }

  /** Weight `i`. */
  at(i: number): number {
    return this.w[i]!;
  }

  /** Weight `i` divided by the mean (1 for every node when all are equal). */
  normalized(i: number): number {
    return (this.w[i]! * this.n) / this.total;
  }

  /** Replaces every weight with those of `nodes`: O(n). */
  reset(nodes: ReadonlyArray<{ readonly weight: number }>): void {
    const n = nodes.length;
    this.counts.clear();
    this.n = 0;
    this.reserve(n);
    for (let i = 0; i < n; i++) this.w[i] = sanitizeWeight(nodes[i]!.weight);
    this.n = n;
    // Counted in runs of equal weights: one map update per run (one in all for the common all-equal set).
    let run = 0;
    for (let i = 0; i < n; i++) {
      run++;
      if (i + 1 === n || this.w[i + 1] !== this.w[i]) {
        this.count(this.w[i]!, run);
        run = 0;
      }
    }
    this.recount();
  }

  /** Appends the weight of a node added at index {@link WeightBook.size}: O(1) amortised. */
  push(weight: number): void {
    const w = sanitizeWeight(weight);
    this.reserve(this.n + 1);
    this.w[this.n++] = w;
    this.count(w, 1);
    this.total += w;
    if (w > this.maxBound) this.maxBound = w;
  }

  /** Changes weight `i`: O(1). */
  set(i: number, weight: number): void {
    const w = sanitizeWeight(weight);
    const old = this.w[i]!;
    if (w === old) return;
    this.w[i] = w;
    this.count(old, -1);
    this.count(w, 1);
    this.total += w - old;
    if (w > this.maxBound) this.maxBound = w;
    this.loose = true;
  }

  /** Drops weight `i` and moves the last one into its place (the distributor's swap-remove): O(1). */
  swapRemove(i: number): void {
    const old = this.w[i]!;
    this.count(old, -1);
    this.total -= old;
    const last = --this.n;
    this.w[i] = this.w[last]!;
    this.loose = true;
    if (this.n === 0) this.recount();
  }

  /** Recomputes the total and the maximum exactly: O(n). */
  recount(): void {
    let total = 0;
    let max = 0;
    for (let i = 0; i < this.n; i++) {
      const w = this.w[i]!;
      total += w;
      if (w > max) max = w;
    }
    this.total = total;
    this.maxBound = max;
    this.loose = false;
  }

  private count(w: number, delta: number): void {
    const c = (this.counts.get(w) ?? 0) + delta;
    if (c === 0) this.counts.delete(w);
    else this.counts.set(w, c);
  }

  private reserve(n: number): void {
    if (n <= this.w.length) return;
    const next = new Float64Array(Math.max(n, this.w.length * 2, 8));
    next.set(this.w.subarray(0, this.n));
    this.w = next;
  }
}
