// Balance statistics over 100 endpoints x 100k picks (after Finagle's P2CSuite), deterministic with a seeded
// rng and the fake clock. Tolerances are stated with their reason next to each assertion; the worst
// deviations measured over seeds 1..20 are in docs/balancers.md ("Measured").
import { describe, expect, test } from 'vitest';
import { p2cLeastLoaded, p2cPeakEwma, roundRobin } from '../../src/balance/index.js';
import type { BalancerFactory } from '../../src/balance/index.js';
import { seededRng } from '../../src/core/rng.js';
import { countPicks, harness, simulate, sum, worstDeviation } from './helpers.js';

const N = 100;
const R = 100_000;
const weightOf = (i: number): number => 1 + (i % 4); // weights 1, 2, 3, 4, 1, 2, ... (sum 250)

const p2cBalancers: [string, () => BalancerFactory][] = [
  ['p2cPeakEwma', () => p2cPeakEwma()],
  ['p2cLeastLoaded', () => p2cLeastLoaded()],
];

describe('equal loads: uniform share', () => {
  test.each(p2cBalancers)('$0 without load feedback: each node within 0.15 of R/N (relative)', (_, make) => {
    // Loads never change, so every pair ties and the first (uniformly drawn) candidate wins: the counts are
    // multinomial with mean 1000 and sd ~31.5 per node. ±15% is 4.7 sd: a correct sampler fails it for one of
    // 100 nodes with probability ~1e-4, a biased one (e.g. always the lower index of a pair) fails at once.
    const h = harness(make(), N);
    const counts = countPicks(h, R);
    expect(sum(counts)).toBe(R);
    expect(
      worstDeviation(
        counts,
        counts.map(() => R / N),
      ),
    ).toBeLessThan(0.15);
  });

  test.each(p2cBalancers)(
    '$0 closed loop (equal latency): each node within 0.10 of the mean (relative)',
    (_, make) => {
      // 10 requests/ms, each in flight for 20 ms (about 200 in flight over 100 nodes): P2C's load feedback
      // tightens the spread well below the multinomial one (worst measured 6%).
      const h = harness(make(), N);
      const counts = simulate(h, { durationMs: R / 10, perMs: 10, latency: () => 20 });
      expect(sum(counts)).toBe(R);
      expect(
        worstDeviation(
          counts,
          counts.map(() => R / N),
        ),
      ).toBeLessThan(0.1);
    },
  );

  test('roundRobin: exactly R/N each', () => {
    const h = harness(roundRobin(), N);
    expect(countPicks(h, R)).toEqual(new Array(N).fill(R / N));
  });

  test('roundRobin visits every node once per cycle, starting at a random point', () => {
    const starts = new Set<string>();
    for (let seed = 1; seed <= 20; seed++) {
      const h = harness(roundRobin(), 10, { seed });
      const cycle = Array.from({ length: 10 }, () => h.distributor.pick()!.id);
      expect(new Set(cycle).size).toBe(10);
      starts.add(cycle[0]!);
    }
    // Twenty clients do not all start at the same node (Envoy randomises the start for the same reason).
    expect(starts.size).toBeGreaterThan(3);
  });
});

describe('weights 1, 2, 3, 4', () => {
  const expectedShares = (total: number): number[] =>
    Array.from({ length: N }, (_, i) => (total * weightOf(i)) / 250);
  const classTotals = (counts: readonly number[]): number[] =>
    [0, 1, 2, 3].map((k) => sum(counts.filter((_, i) => i % 4 === k)));

  test.each(p2cBalancers)(
    '$0 without feedback: per node within 0.25, per weight class within 0.05',
    (_, make) => {
      // Candidates are drawn from the alias table, ties go to the first: counts are multinomial in the weights.
      // A weight-1 node expects 400 picks (sd 20): ±25% is 5 sd. A weight class (25 nodes) expects 10k-40k
      // picks (sd <= 155): ±5% is more than 3 sd for the smallest class.
      const h = harness(make(), N, { weights: weightOf });
      const counts = countPicks(h, R);
      expect(worstDeviation(counts, expectedShares(R))).toBeLessThan(0.25);
      expect(
        worstDeviation(
          classTotals(counts),
          [1, 2, 3, 4].map((w) => (R * w) / 10),
        ),
      ).toBeLessThan(0.05);
    },
  );

  test.each(p2cBalancers)('$0 closed loop: per node within 0.25, per weight class within 0.08', (_, make) => {
    // Under load the cost per unit of weight decides: pending settles in proportion to weight (worst measured
    // per class: 4.5% Peak EWMA, 2.3% least-loaded; per node 12%).
    const h = harness(make(), N, { weights: weightOf });
    const counts = simulate(h, { durationMs: R / 10, perMs: 10, latency: () => 20 });
    const total = sum(counts);
    expect(worstDeviation(counts, expectedShares(total))).toBeLessThan(0.25);
    expect(
      worstDeviation(
        classTotals(counts),
        [1, 2, 3, 4].map((w) => (total * w) / 10),
      ),
    ).toBeLessThan(0.08);
  });

  test('roundRobin (EDF): every node within 2 picks of its exact share', () => {
    const h = harness(roundRobin(), N, { weights: weightOf });
    const counts = countPicks(h, R);
    const expected = expectedShares(R);
    for (let i = 0; i < N; i++) expect(Math.abs(counts[i]! - expected[i]!)).toBeLessThanOrEqual(2);
  });

  test('a canary of weight 1 among nine of weight 99 gets about 0.1%', () => {
    for (const make of [p2cPeakEwma, p2cLeastLoaded, roundRobin]) {
      const h = harness(make(), 10, { weights: (i) => (i === 0 ? 1 : 99) });
      const counts = countPicks(h, R);
      // Expected 1/892 of R = 112 picks (sd ~10.6): within ±40% is ~4 sd.
      expect(Math.abs(counts[0]! - R / 892)).toBeLessThan((0.4 * R) / 892);
    }
  });
});

describe('latency awareness', () => {
  // 10 nodes, 2 requests/ms, latency 6-14 ms (jitter keeps estimates from tying exactly); node 0 takes 200 ms
  // from t = 10 s to t = 20 s. Shares of node 0 per window, compared with its fair 10%.
  function run(factory: BalancerFactory): { before: number; degraded: number; recovered: number } {
    const h = harness(factory, 10);
    const jitter = seededRng(99);
    const latency = (i: number, t: number): number =>
      i === 0 && t >= 10_000 && t < 20_000 ? 200 : 6 + 8 * jitter.next();
    const share = (c: number[]): number => c[0]! / sum(c);
    const before = share(simulate(h, { durationMs: 10_000, perMs: 2, latency, countFrom: 5_000 }));
    const degraded = share(simulate(h, { durationMs: 10_000, perMs: 2, latency, countFrom: 12_000 }));
    simulate(h, { durationMs: 40_000, perMs: 2, latency });
    const recovered = share(simulate(h, { durationMs: 20_000, perMs: 2, latency }));
    return { before, degraded, recovered };
  }

  test('Peak EWMA moves traffic off an endpoint whose latency rises, and back after it recovers', () => {
    const { before, degraded, recovered } = run(p2cPeakEwma());
    expect(before).toBeGreaterThan(0.08);
    expect(before).toBeLessThan(0.12);
    // A 200 ms peak replaces the estimate at once: node 0 loses every comparison until it decays.
    expect(degraded).toBeLessThan(0.005);
    // It recovers cautiously (tau = 10 s): 40-60 s after the recovery it is back to its fair share.
    expect(recovered).toBeGreaterThan(0.08);
    expect(recovered).toBeLessThan(0.12);
  });

  test('Peak EWMA sheds the slow endpoint harder than least-loaded, which sheds it harder than round robin', () => {
    const ewma = run(p2cPeakEwma()).degraded;
    const leastLoaded = run(p2cLeastLoaded()).degraded;
    const rr = run(roundRobin()).degraded;
    expect(ewma).toBeLessThan(leastLoaded);
    expect(leastLoaded).toBeLessThan(rr);
    expect(rr).toBeCloseTo(0.1, 2);
  });
});
