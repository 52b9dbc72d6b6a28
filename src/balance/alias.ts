/**
 * Weighted random choice in O(1) per draw: Vose's alias method (M. D. Vose, "A linear algorithm for generating
 * random numbers with a given distribution", IEEE TSE 17(9), 1991; the same structure as Finagle's `Drv`, which
 * its weighted aperture balancer samples endpoints from). The table is built in O(n) when the endpoint set
 * changes, so a pick never scans the weights. Consul instances carry weights (`Weights.Passing`); this is how
 * P2C draws its two candidates in proportion to them.
 */
import type { Rng } from '../core/rng.js';

/**
 * An alias table over `n` outcomes with the given (positive) weights.
 *
 * @example
 * ```ts
 * const table = AliasTable.fromWeights([1, 2, 3, 4]);
 * const i = table.sample(seededRng(1)); // 3 with probability 0.4
 * ```
 */
export class AliasTable {
  /** Number of outcomes. */
  readonly size: number;
  /** Probability of keeping column `i` rather than taking its alias, scaled to [0, 1]. */
  private readonly keep: Float64Array;
  /** The outcome that column `i` gives when it is not kept. */
  private readonly alias: Int32Array;

  private constructor(keep: Float64Array, alias: Int32Array) {
    this.size = keep.length;
    this.keep = keep;
    this.alias = alias;
  }

  /**
   * Builds the table in O(n). Weights that are not finite and positive count as 1 (the balancer contract says
   * weights are > 0; the request path does not throw over a bad one). An empty list gives an empty table.
   *
   * @example
   * ```ts
   * AliasTable.fromWeights([1, 1, 2]).probabilities(); // [0.25, 0.25, 0.5]
   * ```
   */
  static fromWeights(weights: ArrayLike<number>): AliasTable {
    const n = weights.length;
    const keep = new Float64Array(n);
    const alias = new Int32Array(n);
    if (n === 0) return new AliasTable(keep, alias);
    let total = 0;
    for (let i = 0; i < n; i++) total += sanitizeWeight(weights[i]!);
    // Scaled so that the average column holds exactly 1.
    const scaled = new Float64Array(n);
    const small = new Int32Array(n);
    const large = new Int32Array(n);
    let ns = 0;
    let nl = 0;
    for (let i = 0; i < n; i++) {
      const p = (sanitizeWeight(weights[i]!) * n) / total;
      scaled[i] = p;
      if (p < 1) small[ns++] = i;
      else large[nl++] = i;
      alias[i] = i;
    }
    while (ns > 0 && nl > 0) {
      const s = small[--ns]!;
      const l = large[--nl]!;
      keep[s] = scaled[s]!;
      alias[s] = l;
      const rest = scaled[l]! + scaled[s]! - 1;
      scaled[l] = rest;
      if (rest < 1) small[ns++] = l;
      else large[nl++] = l;
    }
    // What is left is 1 up to rounding error (Vose's numerically stable variant).
    while (nl > 0) keep[large[--nl]!] = 1;
    while (ns > 0) keep[small[--ns]!] = 1;
    return new AliasTable(keep, alias);
  }

  /**
   * Draws an outcome in O(1) with one random number: its integer part picks a column, its fraction decides
   * between the column and its alias.
   *
   * @example
   * ```ts
   * const i = table.sample(rng);
   * ```
   */
  sample(rng: Rng): number {
    const u = rng.next() * this.size;
    const column = Math.floor(u);
    return u - column < this.keep[column]! ? column : this.alias[column]!;
  }

  /**
   * The probability of each outcome that the table implies, recomputed from the columns in O(n); for tests
   * and diagnostics.
   *
   * @example
   * ```ts
   * AliasTable.fromWeights([1, 3]).probabilities(); // [0.25, 0.75]
   * ```
   */
  probabilities(): Float64Array {
    const n = this.size;
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      out[i]! += this.keep[i]! / n;
      out[this.alias[i]!]! += (1 - this.keep[i]!) / n;
    }
    return out;
  }
}

/**
 * A weight as balancers use it: finite and positive, or 1.
 *
 * @example
 * ```ts
 * sanitizeWeight(0); // 1
 * ```
 */
export function sanitizeWeight(weight: number): number {
  return Number.isFinite(weight) && weight > 0 ? weight : 1;
}

/**
 * The nodes' weights divided by their mean (so they average 1), or `undefined` when every weight is the same
 * (the unweighted fast path). Shared by the P2C and round-robin distributors. O(n).
 *
 * @example
 * ```ts
 * normalizedWeights([{ weight: 1 }, { weight: 3 }]); // Float64Array [0.5, 1.5]
 * normalizedWeights([{ weight: 2 }, { weight: 2 }]); // undefined
 * ```
 */
export function normalizedWeights(
  nodes: ReadonlyArray<{ readonly weight: number }>,
): Float64Array | undefined {
  const n = nodes.length;
  if (n < 2) return undefined;
  let equal = true;
  let total = 0;
  const first = sanitizeWeight(nodes[0]!.weight);
  for (let i = 0; i < n; i++) {
    const w = sanitizeWeight(nodes[i]!.weight);
    total += w;
    if (w !== first) equal = false;
  }
  if (equal) return undefined;
  const mean = total / n;
  const weights = new Float64Array(n);
  for (let i = 0; i < n; i++) weights[i] = sanitizeWeight(nodes[i]!.weight) / mean;
  return weights;
}
