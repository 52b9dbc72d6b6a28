// Weighted round robin: status skipping, panic mode, the avoid set, schedule behaviour across status changes,
// and property tests of the pick.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { RoundRobinDistributor, roundRobin } from '../../src/balance/index.js';
import type { RoundRobinOptions } from '../../src/balance/index.js';
import { PendingLoad } from '../../src/balance/pending.js';
import type { ServiceStatus } from '../../src/core/service.js';
import { seededRng } from '../../src/core/rng.js';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { TestNode, countPicks, harness, sum } from './helpers.js';

function rr(
  statuses: readonly ServiceStatus[],
  options?: RoundRobinOptions,
  weights?: readonly number[],
  seed = 1,
): { d: RoundRobinDistributor<TestNode>; nodes: TestNode[]; clock: FakeClock } {
  const nodes = statuses.map((s, i) => new TestNode(`n${i}`, new PendingLoad(), weights?.[i] ?? 1, s));
  const clock = new FakeClock();
  const d = new RoundRobinDistributor<TestNode>({ clock, rng: seededRng(seed) }, options);
  d.update(nodes);
  return { d, nodes, clock };
}

const statuses = (busy: number, n = 100): ServiceStatus[] =>
  Array.from({ length: n }, (_, i) => (i < busy ? 'busy' : 'ready'));

describe('status and panic mode', () => {
  test('≤ half busy: busy nodes are never picked, ready ones share exactly', () => {
    for (const busy of [1, 30, 50]) {
      const { d, nodes } = rr(statuses(busy));
      const counts = new Map<TestNode, number>();
      const picks = (100 - busy) * 100;
      for (let k = 0; k < picks; k++) {
        const node = d.pick()!;
        counts.set(node, (counts.get(node) ?? 0) + 1);
      }
      for (let i = 0; i < busy; i++) expect(counts.get(nodes[i]!)).toBeUndefined();
      for (let i = busy; i < 100; i++) expect(counts.get(nodes[i]!)).toBe(100);
    }
  });

  test('> half busy: panic, every node in turn', () => {
    const { d, nodes } = rr(statuses(51));
    expect(d.panicking).toBe(true);
    const counts = new Map<TestNode, number>();
    for (let k = 0; k < 10_000; k++) {
      const node = d.pick()!;
      counts.set(node, (counts.get(node) ?? 0) + 1);
    }
    for (const node of nodes) expect(counts.get(node)).toBe(100);
  });

  test('panic disabled and nothing ready: busy nodes rather than down ones', () => {
    const { d } = rr(['down', 'busy', 'down', 'busy'], { panicThreshold: 0 });
    for (let k = 0; k < 100; k++) expect(d.pick()!.status).toBe('busy');
  });

  test('everything down, panic disabled: still returns nodes in turn', () => {
    const { d, nodes } = rr(['down', 'down', 'down'], { panicThreshold: 0 });
    const seen = new Set(Array.from({ length: 3 }, () => d.pick()));
    expect(seen).toEqual(new Set(nodes));
  });

  test('a node that turns busy between refreshes is skipped at once; the schedule drops it at the next refresh', () => {
    const { d, nodes, clock } = rr(statuses(0, 10), { statusRefreshMs: 100 });
    nodes[4]!.status = 'busy';
    for (let k = 0; k < 1_000; k++) expect(d.pick()).not.toBe(nodes[4]);
    clock.advance(100);
    const counts = new Map<TestNode, number>();
    for (let k = 0; k < 900; k++) {
      const node = d.pick()!;
      counts.set(node, (counts.get(node) ?? 0) + 1);
    }
    // Rebuilt over the 9 ready nodes: exact shares again.
    expect([...counts.values()]).toEqual(new Array(9).fill(100));
  });

  test('a node that becomes ready again rejoins at the next refresh', () => {
    const { d, nodes, clock } = rr(statuses(1, 10), { statusRefreshMs: 100 });
    for (let k = 0; k < 100; k++) expect(d.pick()).not.toBe(nodes[0]);
    nodes[0]!.status = 'ready';
    clock.advance(100);
    let n0 = 0;
    for (let k = 0; k < 1_000; k++) if (d.pick() === nodes[0]) n0++;
    expect(n0).toBe(100);
  });

  test('weighted: a node that returns joins at the current point of the schedule, not in the past', () => {
    const weights = [1, 2, 3, 4];
    const { d, nodes, clock } = rr(['ready', 'ready', 'ready', 'ready'], { statusRefreshMs: 100 }, weights);
    nodes[0]!.status = 'busy';
    clock.advance(100);
    for (let k = 0; k < 9_000; k++) d.pick();
    nodes[0]!.status = 'ready';
    clock.advance(100);
    const counts = [0, 0, 0, 0];
    for (let k = 0; k < 10_000; k++) counts[nodes.indexOf(d.pick()!)]!++;
    // Had it kept its old deadline it would take the next ~900 picks in a row.
    counts.forEach((c, i) => expect(Math.abs(c - weights[i]! * 1_000)).toBeLessThanOrEqual(2));
  });
});

describe('avoid', () => {
  test('the next node in turn is skipped when avoided', () => {
    const { d, nodes } = rr(statuses(0, 5));
    const first = d.pick()!;
    const i = nodes.indexOf(first);
    const next = nodes[(i + 1) % 5]!;
    expect(d.pick(new Set([next.id]))).toBe(nodes[(i + 2) % 5]);
  });

  test('ten of 100 avoided: never picked', () => {
    const h = harness(roundRobin(), 100);
    const avoid = new Set(h.nodes.filter((_, i) => i % 10 === 0).map((n) => n.id));
    const counts = countPicks(h, 10_000, avoid);
    expect(sum(counts.filter((_, i) => i % 10 === 0))).toBe(0);
  });

  test('all avoided: still returns a ready node', () => {
    const { d, nodes } = rr(['ready', 'busy', 'ready']);
    const avoid = new Set(nodes.map((n) => n.id));
    for (let k = 0; k < 20; k++) expect(d.pick(avoid)!.status).toBe('ready');
  });
});

describe('update()', () => {
  test('nodes kept across update() keep their load state; the rotation covers the new set', () => {
    const factory = roundRobin();
    const clock = new FakeClock();
    const env = { clock, rng: seededRng(3) };
    const d = factory.newDistributor<TestNode>(env);
    const nodes = Array.from({ length: 4 }, (_, i) => new TestNode(`n${i}`, factory.newLoad(env)));
    d.update(nodes);
    nodes[0]!.load.start(0);
    const more = [...nodes, new TestNode('n4', factory.newLoad(env))];
    d.update(more);
    expect(nodes[0]!.load.pending).toBe(1);
    expect(new Set(Array.from({ length: 5 }, () => d.pick()))).toEqual(new Set(more));
  });

  test('no nodes: undefined; one node: that node', () => {
    const { d } = rr([]);
    expect(d.pick()).toBeUndefined();
    const { d: one, nodes } = rr(['down']);
    expect(one.pick()).toBe(nodes[0]);
  });

  test('constructs with defaults (system clock and rng)', () => {
    const d = new RoundRobinDistributor<TestNode>();
    const nodes = [new TestNode('a', new PendingLoad()), new TestNode('b', new PendingLoad())];
    d.update(nodes);
    expect(new Set([d.pick(), d.pick()])).toEqual(new Set(nodes));
  });
});

describe('cost per pick', () => {
  test('weighted, 1,000 nodes: one status read per pick between refreshes', () => {
    const weights = Array.from({ length: 1_000 }, (_, i) => 1 + (i % 7));
    const { d, nodes } = rr(statuses(0, 1_000), {}, weights);
    const before = sum(nodes.map((n) => n.statusReads));
    for (let k = 0; k < 10_000; k++) d.pick();
    expect(sum(nodes.map((n) => n.statusReads)) - before).toBe(10_000);
  });
});

describe('properties of the pick', () => {
  const statusArb = fc.constantFrom<ServiceStatus>('ready', 'busy', 'down');
  const specArb = fc.array(fc.record({ status: statusArb, weight: fc.integer({ min: 1, max: 5 }) }), {
    minLength: 1,
    maxLength: 20,
  });

  test('always a member, never undefined; outside panic never a node that is not ready while one is ready', () => {
    fc.assert(
      fc.property(specArb, fc.integer(), fc.constantFrom(0, 0.5, 1), (spec, seed, panicThreshold) => {
        const { d, nodes } = rr(
          spec.map((s) => s.status),
          { panicThreshold },
          spec.map((s) => s.weight),
          seed,
        );
        const ready = spec.filter((s) => s.status === 'ready').length;
        const panic = ready < panicThreshold * spec.length;
        for (let k = 0; k < 50; k++) {
          const picked = d.pick();
          expect(nodes).toContain(picked);
          if (!panic && ready > 0) expect(picked!.status).toBe('ready');
        }
      }),
    );
  });

  test('over whole cycles, each eligible node gets exactly its weight in picks', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 2, maxLength: 20 }),
        fc.integer(),
        fc.integer({ min: 1, max: 5 }),
        (weights, seed, cycles) => {
          const { d, nodes } = rr(
            weights.map(() => 'ready'),
            {},
            weights,
            seed,
          );
          const total = sum(weights);
          const counts = new Map<TestNode, number>();
          for (let k = 0; k < total * cycles * 20; k++) {
            const node = d.pick()!;
            counts.set(node, (counts.get(node) ?? 0) + 1);
          }
          // EDF keeps every node within one pick of its exact share at any point.
          nodes.forEach((node, i) =>
            expect(Math.abs((counts.get(node) ?? 0) - weights[i]! * cycles * 20)).toBeLessThanOrEqual(1),
          );
        },
      ),
    );
  });
});
