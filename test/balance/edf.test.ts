// The earliest-deadline-first schedule of weighted round robin on its own (src/balance/edf.ts): shares in
// proportion to weight, leaving and moving slots without disturbing the others, and joining at the current
// virtual time rather than in the past.
import { describe, expect, test } from 'vitest';
import { EdfSchedule } from '../../src/balance/edf.js';
import { WeightBook } from '../../src/balance/weights.js';
import { seededRng } from '../../src/core/rng.js';

function schedule(weights: readonly number[], seed = 1): { edf: EdfSchedule; book: WeightBook } {
  const book = new WeightBook();
  book.reset(weights.map((weight) => ({ weight })));
  const edf = new EdfSchedule(book);
  const n = weights.length;
  edf.reserve(n);
  edf.clear(n);
  edf.rephase(n, seededRng(seed));
  for (let i = 0; i < n; i++) edf.push(i);
  edf.heapify();
  return { edf, book };
}

function picks(edf: EdfSchedule, count: number): number[] {
  return Array.from({ length: count }, () => edf.next());
}

function tally(seq: readonly number[], n: number): number[] {
  const counts = new Array<number>(n).fill(0);
  for (const i of seq) counts[i]!++;
  return counts;
}

describe('EdfSchedule', () => {
  test('each node is picked in proportion to its weight, within one pick per node', () => {
    for (const seed of [1, 2, 3]) {
      const weights = [1, 2, 3, 10];
      const { edf } = schedule(weights, seed);
      const total = 16 * 500;
      const counts = tally(picks(edf, total), weights.length);
      weights.forEach((w, i) => expect(Math.abs(counts[i]! - (total * w) / 16)).toBeLessThanOrEqual(1));
    }
  });

  test('a removed node is never picked again and the others keep their shares', () => {
    const { edf } = schedule([1, 1, 2, 4]);
    picks(edf, 37);
    expect(edf.has(1)).toBe(true);
    edf.remove(1);
    expect(edf.has(1)).toBe(false);
    expect(edf.size).toBe(3);
    const counts = tally(picks(edf, 7 * 300), 4);
    expect(counts[1]).toBe(0);
    [1, 0, 2, 4].forEach((w, i) => expect(Math.abs(counts[i]! - 300 * w)).toBeLessThanOrEqual(1));
  });

  test('moving the last node into a freed slot (swap-remove) leaves the order of picks unchanged', () => {
    const a = schedule([1, 2, 3, 5], 7);
    const b = schedule([1, 2, 3, 5], 7);
    picks(a.edf, 50);
    picks(b.edf, 50);
    // a: node 0 leaves and node 3 moves into slot 0; b: node 0 leaves and node 3 stays where it is.
    a.edf.remove(0);
    a.edf.move(3, 0);
    a.book.swapRemove(0);
    b.edf.remove(0);
    const renamed = picks(a.edf, 200).map((i) => (i === 0 ? 3 : i));
    expect(renamed).toEqual(picks(b.edf, 200));
  });

  test('a node that joins starts at the current virtual time: it is not picked again and again to catch up', () => {
    const { edf, book } = schedule([1, 1]);
    picks(edf, 1000);
    book.push(1);
    edf.reserve(3);
    edf.detach(2);
    edf.join(2, seededRng(5));
    edf.insert(2);
    const next = picks(edf, 300);
    const counts = tally(next, 3);
    expect(Math.abs(counts[2]! - 100)).toBeLessThanOrEqual(1);
    // Never twice in a row among three equal weights.
    for (let k = 1; k < next.length; k++) if (next[k] === 2) expect(next[k - 1]).not.toBe(2);
  });

  test('catchUp moves a deadline in the past up to the current virtual time, and leaves later ones alone', () => {
    const { edf } = schedule([1, 1, 1]);
    picks(edf, 30);
    const now = edf.now();
    edf.remove(2);
    picks(edf, 40); // node 2's deadline is now far behind
    const later = edf.now();
    expect(later).toBeGreaterThan(now);
    edf.catchUp(2, later);
    edf.insert(2);
    const counts = tally(picks(edf, 300), 3);
    expect(Math.abs(counts[2]! - 100)).toBeLessThanOrEqual(1);
  });
});
