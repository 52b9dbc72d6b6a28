// The alias table behind weighted candidate selection: the probabilities it implies sum to 1 and equal the
// normalised weights, and its draws follow them.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { AliasTable } from '../../src/balance/index.js';
import { seededRng } from '../../src/core/rng.js';

const weightsArb = fc.array(fc.double({ min: 1e-3, max: 1e3, noNaN: true }), {
  minLength: 1,
  maxLength: 200,
});

describe('AliasTable', () => {
  test('probabilities sum to 1 and match the normalised weights', () => {
    fc.assert(
      fc.property(weightsArb, (weights) => {
        const table = AliasTable.fromWeights(weights);
        const p = table.probabilities();
        const total = weights.reduce((a, b) => a + b, 0);
        expect(p.length).toBe(weights.length);
        expect(Math.abs(p.reduce((a, b) => a + b, 0) - 1)).toBeLessThan(1e-9);
        for (let i = 0; i < weights.length; i++)
          expect(Math.abs(p[i]! - weights[i]! / total)).toBeLessThan(1e-9);
      }),
    );
  });

  test('every draw is an outcome index, for any uniform number in [0, 1)', () => {
    fc.assert(
      fc.property(weightsArb, fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (weights, u) => {
        const i = AliasTable.fromWeights(weights).sample({ next: () => u });
        expect(Number.isInteger(i)).toBe(true);
        expect(i).toBeGreaterThanOrEqual(0);
        expect(i).toBeLessThan(weights.length);
      }),
    );
  });

  test('draws follow the weights 1, 2, 3, 4 (100k draws, each within ±3%)', () => {
    // Expected 10k-40k per outcome; for the smallest, sd ~95 and ±3% is 300 draws, over 3 sd.
    const table = AliasTable.fromWeights([1, 2, 3, 4]);
    const rng = seededRng(11);
    const counts = [0, 0, 0, 0];
    for (let k = 0; k < 100_000; k++) counts[table.sample(rng)]!++;
    counts.forEach((c, i) => expect(Math.abs(c - (i + 1) * 10_000) / ((i + 1) * 10_000)).toBeLessThan(0.03));
  });

  test('bad weights count as 1; an empty list gives an empty table', () => {
    expect([...AliasTable.fromWeights([0, NaN, -2, Infinity]).probabilities()]).toEqual([
      0.25, 0.25, 0.25, 0.25,
    ]);
    expect(AliasTable.fromWeights([]).size).toBe(0);
  });

  test('a dominant weight', () => {
    const p = AliasTable.fromWeights([1e6, 1]).probabilities();
    expect(p[1]).toBeCloseTo(1 / (1e6 + 1), 12);
  });
});
