// P2C behaviour: statuses, panic mode, the avoid set, load state across updates, O(1) work per pick, and
// property tests of the pick against a reference model of the algorithm.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { P2CDistributor, PeakEwmaLoad, p2cLeastLoaded, p2cPeakEwma } from '../../src/balance/index.js';
import type { ServiceStatus } from '../../src/core/service.js';
import { randomInt, seededRng } from '../../src/core/rng.js';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { FixedLoad, TestNode, countPicks, harness, sum } from './helpers.js';

function fixedNodes(costs: readonly number[], statuses?: readonly ServiceStatus[]): TestNode[] {
  return costs.map((c, i) => new TestNode(`n${i}`, new FixedLoad(c), 1, statuses?.[i] ?? 'ready'));
}

function p2c(nodes: TestNode[], seed = 1, options?: ConstructorParameters<typeof P2CDistributor>[1]) {
  const clock = new FakeClock();
  const d = new P2CDistributor<TestNode>({ clock, rng: seededRng(seed) }, options);
  d.update(nodes);
  return { d, clock };
}

describe('least-loaded', () => {
  test('never picks a node with many pending requests while its partner has none', () => {
    const h = harness(p2cLeastLoaded(), 100);
    for (let k = 0; k < 50; k++) h.nodes[7]!.load.start(0);
    const counts = countPicks(h, 20_000);
    expect(counts[7]).toBe(0);
    expect(sum(counts)).toBe(20_000);
  });

  test('a busy node with pending requests gets traffic back as they finish', () => {
    const h = harness(p2cLeastLoaded(), 10);
    const load = h.nodes[3]!.load;
    for (let k = 0; k < 5; k++) load.start(0);
    expect(countPicks(h, 5_000)[3]).toBe(0);
    for (let k = 0; k < 5; k++) load.end(0);
    // Equal loads again: its share is back to about 1/10 (500, sd ~21).
    expect(countPicks(h, 5_000)[3]).toBeGreaterThan(400);
  });
});

describe('status', () => {
  test('with two nodes, the ready one always wins, whatever the cost', () => {
    for (const other of ['busy', 'down'] as const) {
      const nodes = fixedNodes([1_000_000, 0], ['ready', other]);
      const { d } = p2c(nodes);
      for (let k = 0; k < 1_000; k++) expect(d.pick()).toBe(nodes[0]);
    }
  });

  test('a node drawn beside a busy one still has to beat a ready competitor on cost', () => {
    // n0 busy (and cheap), n1 ready but slow, five ready and fast. Returning the better of each pair would give
    // n1 every pick whose pair is {n0, n1}: 2/42 = 4.8 % (about 4,760 of 100,000). Drawing on until two ready
    // nodes have met leaves n1 only the picks where all 4 pairs are {n0, n1}: (1/21)^4, about 0.5 in 100,000.
    const nodes = fixedNodes(
      [0, 1_000, 1, 1, 1, 1, 1],
      ['busy', 'ready', 'ready', 'ready', 'ready', 'ready', 'ready'],
    );
    const { d } = p2c(nodes, 11);
    const counts = new Map<TestNode, number>();
    for (let k = 0; k < 100_000; k++) {
      const n = d.pick()!;
      counts.set(n, (counts.get(n) ?? 0) + 1);
    }
    expect(counts.get(nodes[0]!) ?? 0).toBe(0);
    expect(counts.get(nodes[1]!) ?? 0).toBeLessThanOrEqual(5);
  });

  test('the same for an avoided node: its partner is compared with another node that is not avoided', () => {
    const nodes = fixedNodes([0, 1_000, 1, 1, 1, 1, 1]);
    const { d } = p2c(nodes, 12);
    const avoid = new Set(['n0']);
    let slow = 0;
    for (let k = 0; k < 100_000; k++) if (d.pick(avoid) === nodes[1]) slow++;
    expect(slow).toBeLessThanOrEqual(5);
  });

  test('busy is preferred over down', () => {
    const nodes = fixedNodes([1_000, 0], ['busy', 'down']);
    const { d } = p2c(nodes, 1, { panicThreshold: 0 });
    for (let k = 0; k < 100; k++) expect(d.pick()).toBe(nodes[0]);
  });

  test('all down and panic disabled: still returns a node', () => {
    const nodes = fixedNodes([3, 1, 2], ['down', 'down', 'down']);
    const { d } = p2c(nodes, 1, { panicThreshold: 0 });
    for (let k = 0; k < 100; k++) expect(nodes).toContain(d.pick());
  });
});

describe('panic mode', () => {
  const busyShare = (busy: number, options?: { panicThreshold?: number }): number => {
    const nodes = fixedNodes(new Array(100).fill(0));
    for (let i = 0; i < busy; i++) nodes[i]!.status = 'busy';
    const { d } = p2c(nodes, 3, options);
    let picked = 0;
    for (let k = 0; k < 100_000; k++) if (d.pick()!.status === 'busy') picked++;
    return picked / 100_000;
  };

  test('more than half busy: panic, traffic spreads over all nodes in proportion', () => {
    // 51 busy: panic; statuses are ignored, so busy nodes get ~51% (sd 0.16%).
    const share = busyShare(51);
    expect(share).toBeGreaterThan(0.49);
    expect(share).toBeLessThan(0.53);
  });

  test('exactly half busy: no panic, busy nodes avoided within maxEffort', () => {
    // A busy pick needs 4 pairs in a row that are both busy: (50/100 * 49/99)^4 = 0.36%.
    const share = busyShare(50);
    expect(share).toBeGreaterThan(0);
    expect(share).toBeLessThan(0.006);
  });

  test('fewer busy: the escape rate falls as (share of busy pairs)^4', () => {
    // (30/100 * 29/99)^4 = 6e-5.
    expect(busyShare(30)).toBeLessThan(0.0003);
  });

  test('panicThreshold 0 disables panic: even 90 busy nodes are avoided as well as effort allows', () => {
    // (90/100 * 89/99)^4 = 43% of picks still find no ready node; with panic they would be 90%.
    const share = busyShare(90, { panicThreshold: 0 });
    expect(share).toBeGreaterThan(0.38);
    expect(share).toBeLessThan(0.48);
  });

  test('every node takes traffic in panic mode, down ones included', () => {
    const nodes = fixedNodes(new Array(100).fill(0));
    for (let i = 0; i < 60; i++) nodes[i]!.status = 'down';
    const { d } = p2c(nodes, 5);
    expect(d.panicking).toBe(true);
    const seen = new Set<TestNode>();
    for (let k = 0; k < 20_000; k++) seen.add(d.pick()!);
    expect(seen.size).toBe(100);
  });

  test('statuses that change after update() reach the panic count within statusRefreshMs', () => {
    const nodes = fixedNodes(new Array(100).fill(0));
    const { d, clock } = p2c(nodes, 7, { statusRefreshMs: 100 });
    expect(d.panicking).toBe(false);
    for (let i = 0; i < 60; i++) nodes[i]!.status = 'busy';
    clock.advance(100);
    d.pick();
    expect(d.panicking).toBe(true);
    for (let i = 0; i < 60; i++) nodes[i]!.status = 'ready';
    clock.advance(100);
    d.pick();
    expect(d.panicking).toBe(false);
  });

  test('the statuses picks read update the count between scans', () => {
    const nodes = fixedNodes(new Array(10).fill(0));
    // A refresh interval that never passes: only the sampled statuses can move the count.
    const { d } = p2c(nodes, 7, { statusRefreshMs: 1e12 });
    for (let i = 0; i < 8; i++) nodes[i]!.status = 'busy';
    for (let k = 0; k < 200; k++) d.pick();
    expect(d.panicking).toBe(true);
  });
});

describe('avoid (a retry prefers endpoints not yet tried)', () => {
  test('ten avoided of 100: never picked', () => {
    const h = harness(p2cPeakEwma(), 100);
    const avoid = new Set(h.nodes.slice(0, 10).map((n) => n.id));
    const counts = countPicks(h, 20_000, avoid);
    expect(sum(counts.slice(0, 10))).toBe(0);
  });

  test('with two nodes, the one not avoided wins whatever the cost', () => {
    const nodes = fixedNodes([1_000_000, 0]);
    const { d } = p2c(nodes);
    for (let k = 0; k < 200; k++) expect(d.pick(new Set(['n1']))).toBe(nodes[0]);
  });

  test('status comes before avoid: a ready tried node beats a busy untried one', () => {
    const nodes = fixedNodes([0, 0], ['ready', 'busy']);
    const { d } = p2c(nodes);
    for (let k = 0; k < 200; k++) expect(d.pick(new Set(['n0']))).toBe(nodes[0]);
  });

  test('avoid is best effort: all 100 avoided still returns the cheapest of what was drawn', () => {
    const h = harness(p2cLeastLoaded(), 100);
    const avoid = new Set(h.nodes.map((n) => n.id));
    for (let k = 0; k < 100; k++) expect(h.nodes).toContain(h.distributor.pick(avoid));
  });

  test('99 of 100 avoided: the free node is picked whenever a pair contains it', () => {
    const h = harness(p2cLeastLoaded(), 100);
    const avoid = new Set(h.nodes.slice(1).map((n) => n.id));
    const counts = countPicks(h, 50_000, avoid);
    // P(free node in one of 4 pairs) = 1 - (98/100)^4 = 7.8% -> 3,900 of 50,000 (sd ~60).
    expect(counts[0]).toBeGreaterThan(3_600);
    expect(counts[0]).toBeLessThan(4_200);
  });
});

describe('update()', () => {
  test('a node kept across update() keeps its load state', () => {
    const factory = p2cPeakEwma();
    const clock = new FakeClock();
    const env = { clock, rng: seededRng(4) };
    const d = factory.newDistributor<TestNode>(env);
    const nodes = Array.from({ length: 10 }, (_, i) => new TestNode(`n${i}`, factory.newLoad(env)));
    d.update(nodes);
    for (const node of nodes) for (let k = 0; k < 3; k++) node.load.observe(10, 0);
    nodes[0]!.load.observe(500, 0); // slow
    const slow = nodes[0]!.load as PeakEwmaLoad;
    // Discovery re-announces the same endpoints plus five new ones.
    const fresh = Array.from({ length: 5 }, (_, i) => new TestNode(`m${i}`, factory.newLoad(env)));
    d.update([...nodes, ...fresh]);
    expect(slow.rttEstimate).toBe(500);
    // Each pick answers at once, in 10 ms (500 ms on the slow one): the slow one gets only its re-probes,
    // which back off while they confirm the estimate (20, 40, ... 320 comparisons lost in a row).
    let slowPicks = 0;
    for (let k = 0; k < 10_000; k++) {
      const node = d.pick()!;
      if (node === nodes[0]) slowPicks++;
      node.load.start(0);
      node.load.observe(node === nodes[0] ? 500 : 10, 0);
      node.load.end(0);
    }
    expect(slowPicks).toBeLessThanOrEqual(10);
    expect(slow.rttEstimate).toBe(500);
  });

  test('a node dropped by update() is never picked again', () => {
    const h = harness(p2cLeastLoaded(), 10);
    h.distributor.update(h.nodes.slice(1));
    for (let k = 0; k < 5_000; k++) expect(h.distributor.pick()).not.toBe(h.nodes[0]);
  });

  test('no nodes: undefined; one node: that node, whatever its status', () => {
    const { d } = p2c([]);
    expect(d.pick()).toBeUndefined();
    const only = fixedNodes([5], ['down']);
    d.update(only);
    expect(d.pick()).toBe(only[0]);
    d.update([]);
    expect(d.pick()).toBeUndefined();
  });
});

describe('O(1) per pick', () => {
  test('1,000 nodes: at most 2 status and 2 cost reads per pair, plus the amortised refresh scan', () => {
    const nodes = fixedNodes(new Array(1_000).fill(0));
    const { d, clock } = p2c(nodes, 2, { statusRefreshMs: 100 });
    const reads = (): { status: number; cost: number } => ({
      status: sum(nodes.map((n) => n.statusReads)),
      cost: sum(nodes.map((n) => (n.load as FixedLoad).costReads)),
    });
    const before = reads();
    for (let k = 0; k < 10_000; k++) d.pick();
    let after = reads();
    // All ready: one pair per pick, no scan (the clock does not move).
    expect(after.status - before.status).toBe(20_000);
    expect(after.cost - before.cost).toBe(20_000);
    // With time passing, one full scan per 100 ms: 1 ms per pick adds 1000/100 = 10 reads per pick.
    const mid = after;
    for (let k = 0; k < 10_000; k++) {
      clock.advance(1);
      d.pick();
    }
    after = reads();
    expect(after.status - mid.status).toBeLessThanOrEqual(20_000 + 100 * 1_000);
  });

  test('half busy: never more than maxEffort pairs', () => {
    const nodes = fixedNodes(new Array(100).fill(0));
    for (let i = 0; i < 50; i++) nodes[i]!.status = 'busy';
    const { d } = p2c(nodes, 2, { maxEffort: 3 });
    for (let k = 0; k < 1_000; k++) {
      const before = sum(nodes.map((n) => n.statusReads));
      d.pick();
      expect(sum(nodes.map((n) => n.statusReads)) - before).toBeLessThanOrEqual(6);
    }
  });
});

// A reference model of one unweighted pick, written from the spec rather than the code: it replays the same
// rng and computes what P2C must return.
function modelPick(
  rng: { next(): number },
  nodes: readonly { id: string; status: ServiceStatus; cost: number }[],
  avoid: ReadonlySet<string>,
  panic: boolean,
  maxEffort: number,
): number {
  const n = nodes.length;
  const key = (i: number): [number, number, number] => [
    panic ? 0 : ['ready', 'busy', 'down'].indexOf(nodes[i]!.status),
    avoid.has(nodes[i]!.id) ? 1 : 0,
    nodes[i]!.cost,
  ];
  const better = (x: number, y: number): boolean => {
    const [a, b] = [key(x), key(y)];
    for (let k = 0; k < 3; k++) if (a[k] !== b[k]) return a[k]! < b[k]!;
    return false;
  };
  const eligible = (i: number): boolean => key(i)[0] === 0 && key(i)[1] === 0;
  // Eligible nodes drawn so far, distinct, in draw order: once there are two, the cheapest of them wins
  // (ties to the one drawn first). Until then, the best of each pair by (status, avoid, cost) is remembered.
  const seen: number[] = [];
  let best = -1;
  const rounds = n === 2 ? 1 : maxEffort;
  for (let r = 0; r < rounds; r++) {
    const a = randomInt(rng, n);
    let b = randomInt(rng, n - 1);
    if (b >= a) b++;
    for (const x of [a, b]) if (eligible(x) && !seen.includes(x)) seen.push(x);
    if (seen.length >= 2) return seen.reduce((m, x) => (nodes[x]!.cost < nodes[m]!.cost ? x : m), seen[0]!);
    const w = better(b, a) ? b : a;
    if (best < 0 || better(w, best)) best = w;
  }
  return seen.length === 1 ? seen[0]! : best;
}

describe('properties of the pick', () => {
  const statusArb = fc.constantFrom<ServiceStatus>('ready', 'busy', 'down');
  const setArb = fc.array(fc.record({ status: statusArb, cost: fc.integer({ min: 0, max: 5 }) }), {
    minLength: 1,
    maxLength: 12,
  });

  test('always returns a member of the set, never undefined for a nonempty set', () => {
    fc.assert(
      fc.property(
        setArb,
        fc.array(fc.nat(11)),
        fc.integer(),
        fc.boolean(),
        fc.array(fc.double({ min: 0.01, max: 100, noNaN: true }), { minLength: 12, maxLength: 12 }),
        (spec, avoidIdx, seed, weighted, ws) => {
          const nodes = spec.map(
            (s, i) => new TestNode(`n${i}`, new FixedLoad(s.cost), weighted ? ws[i]! : 1, s.status),
          );
          const { d } = p2c(nodes, seed);
          const avoid = new Set(avoidIdx.map((i) => `n${i}`));
          for (let k = 0; k < 20; k++) {
            const picked = d.pick(avoid);
            expect(picked).toBeDefined();
            expect(nodes).toContain(picked);
          }
        },
      ),
    );
  });

  test('equals the reference model (status, then avoid, then cost; maxEffort pairs; panic)', () => {
    fc.assert(
      fc.property(
        setArb,
        fc.array(fc.nat(11)),
        fc.integer(),
        fc.integer({ min: 1, max: 6 }),
        fc.constantFrom(0, 0.3, 0.5, 1),
        (spec, avoidIdx, seed, maxEffort, panicThreshold) => {
          const nodes = spec.map((s, i) => new TestNode(`n${i}`, new FixedLoad(s.cost), 1, s.status));
          const { d } = p2c(nodes, seed, { maxEffort, panicThreshold });
          const model = seededRng(seed);
          // The distributor drew nothing at update(): its rng is in step with the model's.
          const avoid = new Set(avoidIdx.map((i) => `n${i}`));
          const ready = spec.filter((s) => s.status === 'ready').length;
          const panic = ready < panicThreshold * spec.length;
          expect(d.panicking).toBe(panic);
          for (let k = 0; k < 10; k++) {
            const picked = d.pick(avoid);
            if (spec.length === 1) expect(picked).toBe(nodes[0]);
            else
              expect(picked).toBe(
                nodes[
                  modelPick(
                    model,
                    spec.map((s, i) => ({ ...s, id: `n${i}` })),
                    avoid,
                    panic,
                    maxEffort,
                  )
                ],
              );
          }
        },
      ),
    );
  });

  test('outside panic, with a ready node in every pair, never picks a node that is not ready', () => {
    // One node not ready among many: any pair holds a ready node.
    fc.assert(
      fc.property(
        fc.integer({ min: 3, max: 50 }),
        fc.nat(49),
        statusArb,
        fc.integer(),
        (n, bad, status, seed) => {
          const nodes = fixedNodes(new Array(n).fill(0));
          nodes[bad % n]!.status = status;
          const { d } = p2c(nodes, seed);
          for (let k = 0; k < 50; k++) expect(d.pick()!.status).toBe('ready');
        },
      ),
    );
  });

  test('the pick never has a higher cost than both members of its pair when all are ready (it is the min of some pair)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 1000 }), { minLength: 2, maxLength: 30 }),
        fc.integer(),
        (costs, seed) => {
          const nodes = fixedNodes(costs);
          const { d } = p2c(nodes, seed);
          const max = Math.max(...costs);
          for (let k = 0; k < 30; k++) {
            const picked = d.pick()!;
            // The most expensive node can only win a pair against an equally expensive one.
            if ((picked.load as FixedLoad).value === max) {
              expect(costs.filter((c) => c === max).length).toBeGreaterThan(1);
            }
          }
        },
      ),
    );
  });
});

describe('weighted P2C uses the load per unit of weight', () => {
  test('equal pending, unequal weights: Peak EWMA prefers the heavier node only through its queue', () => {
    const clock = new FakeClock();
    const heavy = new PeakEwmaLoad({}, 0);
    const light = new PeakEwmaLoad({}, 0);
    heavy.observe(10, 0);
    light.observe(10, 0);
    const nodes = [new TestNode('heavy', heavy, 3), new TestNode('light', light, 1)];
    const d = new P2CDistributor<TestNode>({ clock, rng: seededRng(1) });
    d.update(nodes);
    // Idle: same RTT, the costs tie; the draw (3:1) decides.
    const idle = { heavy: 0, light: 0 };
    for (let k = 0; k < 4_000; k++) idle[d.pick()!.id as 'heavy' | 'light']++;
    expect(idle.heavy / 4_000).toBeGreaterThan(0.7);
    expect(idle.heavy / 4_000).toBeLessThan(0.8);
    // Two in flight on each: 10 * (2/1.5 + 1) = 23.3 for heavy against 10 * (2/0.5 + 1) = 50 for light.
    heavy.start(0);
    heavy.start(0);
    light.start(0);
    light.start(0);
    for (let k = 0; k < 100; k++) expect(d.pick()!.id).toBe('heavy');
  });
});
