/**
 * Choosing a destination of a weighted split. Two ways:
 *
 * - Not sticky: a draw from the injected {@link Rng} over the cumulative weights (tests pass a seeded one).
 * - Sticky: a deterministic hash of a key the caller supplies (a header, a user id), the same in every process
 *   and every restart, so a user stays on one version. It must not use the injected rng: two processes would
 *   disagree. The assignment is weighted rendezvous hashing (Thaler & Ravishankar, "Using name-based mappings
 *   to increase hit rates", 1998; the weighted form of Schindelhauer & Schomaker, "Weighted distributed hash
 *   tables", 2005): each destination scores `-weight / ln(u)` with `u = hash(key, destination)` uniform in
 *   (0, 1), and the highest score wins. Destination `i` wins with probability exactly `w_i / sum(w)`, and the
 *   assignment is **monotone**: raising one destination's weight can only move keys *to* it, lowering it can
 *   only move keys *away* from it, whatever the number of destinations and their order. So a canary raised
 *   from 5 % to 10 % takes keys only from the old version, and nobody who already saw the canary goes back.
 *
 * The hash is 32-bit FNV-1a (Fowler, Noll, Vo) over the UTF-16 code units of `key`, a NUL, and the destination
 * name, finished with MurmurHash3's `fmix32` avalanche step (FNV alone clusters on keys that differ only in
 * their last characters, like `user-1`, `user-2`). Pure integer arithmetic: identical on every platform.
 */
import type { Rng } from '../core/rng.js';

/**
 * A deterministic 32-bit hash of `key` and `salt` (FNV-1a, then MurmurHash3's fmix32). The same on every
 * process and platform.
 *
 * @example
 * ```ts
 * stableHash('user-42', 'v2') === stableHash('user-42', 'v2'); // true, in every process
 * ```
 */
export function stableHash(key: string, salt = ''): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  // The NUL separator (so ('ab', 'c') and ('a', 'bc') differ).
  h ^= 0;
  h = Math.imul(h, 0x01000193);
  for (let i = 0; i < salt.length; i++) {
    h ^= salt.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  // MurmurHash3 fmix32.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * `stableHash(key, salt)` as a number uniform in the open interval (0, 1).
 *
 * @example
 * ```ts
 * const u = stableUnit('user-42', 'v2'); // 0 < u < 1
 * ```
 */
export function stableUnit(key: string, salt = ''): number {
  return (stableHash(key, salt) + 0.5) / 4294967296;
}

/** One option of a split: a name (hashed with the key) and a weight >= 0. */
export interface SplitOption {
  readonly name: string;
  readonly weight: number;
}

/**
 * Sticky choice: the index of the option `key` goes to (weighted rendezvous hashing; see the file comment).
 * Options with weight 0 are never chosen unless every weight is 0 (then the first is).
 *
 * @example
 * ```ts
 * const opts = [{ name: 'v1', weight: 95 }, { name: 'v2', weight: 5 }];
 * stickyIndex(opts, 'user-42'); // the same answer everywhere; raising v2's weight only moves keys to v2
 * ```
 */
export function stickyIndex(options: readonly SplitOption[], key: string): number {
  let best = 0;
  let bestScore = -1;
  for (let i = 0; i < options.length; i++) {
    const w = options[i]!.weight;
    if (!(w > 0)) continue;
    // -w / ln(u) > 0 for u in (0, 1): larger u (closer to 1) and larger w both score higher.
    const score = -w / Math.log(stableUnit(key, options[i]!.name));
    if (score > bestScore) {
      bestScore = score;
      best = i;
    }
  }
  return best;
}

/**
 * Random choice in proportion to the weights, from the injected rng. `total` is the sum of the weights (> 0).
 *
 * @example
 * ```ts
 * weightedIndex([{ name: 'v1', weight: 95 }, { name: 'v2', weight: 5 }], 100, seededRng(1));
 * ```
 */
export function weightedIndex(options: readonly SplitOption[], total: number, rng: Rng): number {
  let x = rng.next() * total;
  const last = options.length - 1;
  for (let i = 0; i < last; i++) {
    const w = options[i]!.weight;
    if (x < w) return i;
    x -= w;
  }
  // Floating-point leftovers land on the last option with a positive weight.
  for (let i = last; i > 0; i--) if (options[i]!.weight > 0) return i;
  return 0;
}
