/**
 * Seeded randomness for the tail benchmark's backends: mulberry32 (a small 32-bit generator, plenty for
 * latency jitter) and a normal deviate by Box-Muller. Seeded so every strategy of a run, and every run, sees
 * the same delay sequence per backend. Not a measurement; used by bench/tail/backends.ts.
 */

/** A uniform generator on [0, 1) from a 32-bit seed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A normal deviate with the given mean and standard deviation (Box-Muller, one of the pair). */
export function normal(u: () => number, mean: number, sd: number): number {
  const u1 = 1 - u(); // (0, 1]: log is finite
  const u2 = u();
  return mean + sd * Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
}
