/**
 * The only place that reads ambient randomness. Balancers, jitter and backup-request sampling take an
 * {@link Rng} so that their statistics can be tested with a seed (Finagle's `P2CSuite` does the same).
 */

/**
 * A source of uniform random numbers in [0, 1).
 *
 * @example
 * ```ts
 * const r = seededRng(42);
 * const i = Math.floor(r.next() * 10); // 0..9, the same sequence every run
 * ```
 */
export interface Rng {
  /** A uniform number in [0, 1). */
  next(): number;
}

/**
 * `Math.random`, for production use.
 *
 * @example
 * ```ts
 * createMesh({ rng: systemRng, services: {} });
 * ```
 */
export const systemRng: Rng = { next: () => Math.random() };

/**
 * A fast deterministic generator (sfc32 seeded through splitmix32), for tests and simulations.
 *
 * @example
 * ```ts
 * const a = seededRng(7), b = seededRng(7);
 * a.next() === b.next(); // true
 * ```
 */
export function seededRng(seed: number): Rng {
  let s = seed >>> 0;
  const split = (): number => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = split();
  let b = split();
  let c = split();
  let d = split();
  return {
    next(): number {
      a >>>= 0;
      b >>>= 0;
      c >>>= 0;
      d >>>= 0;
      const t = (a + b + d) >>> 0;
      d = (d + 1) >>> 0;
      a = b ^ (b >>> 9);
      b = (c + (c << 3)) >>> 0;
      c = (c << 21) | (c >>> 11);
      c = (c + t) >>> 0;
      return t / 4294967296;
    },
  };
}

/**
 * A uniform integer in [0, n).
 *
 * @example
 * ```ts
 * const i = randomInt(seededRng(1), 10);
 * ```
 */
export function randomInt(rng: Rng, n: number): number {
  return Math.floor(rng.next() * n);
}
