// Incremental changes of a distributor's node set (`Distributor.apply`): random sequences of adds, removes and
// re-weighs must leave P2C and round robin equivalent to a distributor built from scratch with update(all)
// (same nodes, weights honoured, same panic state, the very node and load objects), and the work of a change
// must not grow with the size of the set (counted in status and weight reads, not wall time).
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  P2CDistributor,
  RoundRobinDistributor,
  p2cLeastLoaded,
  roundRobin,
} from '../../src/balance/index.js';
import type { BalancerFactory, BalancerNode, Distributor } from '../../src/balance/index.js';
import { applyChanges } from '../../src/balance/types.js';
import type { ServiceStatus } from '../../src/core/service.js';
import { seededRng } from '../../src/core/rng.js';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { FixedLoad, TestNode, sum } from './helpers.js';

/** A node whose weight and status the test changes, counting reads of both. */
class WeighedNode implements BalancerNode {
  statusReads = 0;
  weightReads = 0;
  readonly load = new FixedLoad(0);
  private w: number;
  private s: ServiceStatus;
  constructor(
    readonly id: string,
    weight: number,
    status: ServiceStatus = 'ready',
  ) {
    this.w = weight;
    this.s = status;
  }
  get weight(): number {
    this.weightReads++;
    return this.w;
  }
  get status(): ServiceStatus {
    this.statusReads++;
    return this.s;
  }
  set status(s: ServiceStatus) {
    this.s = s;
  }
  setWeight(w: number): void {
    this.w = w;
  }
}

type Op =
  | { kind: 'add'; weight: number; status: ServiceStatus }
  | { kind: 'remove'; at: number }
  | { kind: 'reweigh'; at: number; weight: number };

const weightArb = fc.constantFrom(1, 1, 1, 2, 3, 4, 10);
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant('add' as const),
    weight: weightArb,
    status: fc.constantFrom<ServiceStatus>('ready', 'ready', 'ready', 'busy'),
  }),
  fc.record({ kind: fc.constant('remove' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('reweigh' as const), at: fc.nat(), weight: weightArb }),
);
/** Batches of ops: each batch is one apply() call (like one discovery update). */
const batchesArb = fc.array(fc.array(opArb, { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 12 });

interface Run {
  clock: FakeClock;
  d: Distributor<WeighedNode>;
  model: WeighedNode[];
}

/** Starts from `initial` nodes with update(), then applies the batches incrementally, mirroring them in `model`. */
function runIncremental(
  make: (env: { clock: FakeClock; rng: ReturnType<typeof seededRng> }) => Distributor<WeighedNode>,
  initial: number,
  batches: readonly (readonly Op[])[],
  seed: number,
): Run {
  const clock = new FakeClock();
  const d = make({ clock, rng: seededRng(seed) });
  let next = 0;
  const model = Array.from({ length: initial }, () => new WeighedNode(`n${next++}`, 1 + (next % 3)));
  d.update(model);
  for (const batch of batches) {
    const added: WeighedNode[] = [];
    const removed: WeighedNode[] = [];
    const updated: WeighedNode[] = [];
    for (const op of batch) {
      if (op.kind === 'add') {
        const node = new WeighedNode(`n${next++}`, op.weight, op.status);
        model.push(node);
        added.push(node);
      } else if (model.length > 0) {
        const i = op.at % model.length;
        const node = model[i]!;
        if (op.kind === 'remove') {
          // A node added and removed in the same batch never reaches the distributor: keep lists disjoint
          // as a diff would be.
          const a = added.indexOf(node);
          if (a >= 0) added.splice(a, 1);
          else removed.push(node);
          const u = updated.indexOf(node);
          if (u >= 0) updated.splice(u, 1);
          model.splice(i, 1);
        } else {
          node.setWeight(op.weight);
          if (!added.includes(node) && !updated.includes(node)) updated.push(node);
        }
      }
    }
    d.apply!(added, removed, updated);
    // Picks between batches, so the incremental state is exercised while it changes.
    for (let k = 0; k < 20; k++) d.pick();
    clock.advance(7);
  }
  return { clock, d, model };
}

function counts(
  d: Distributor<WeighedNode>,
  model: readonly WeighedNode[],
  picks: number,
): Map<WeighedNode, number> {
  const c = new Map<WeighedNode, number>(model.map((n) => [n, 0]));
  for (let k = 0; k < picks; k++) {
    const node = d.pick();
    const seen = node === undefined ? undefined : c.get(node);
    // Only members of the current set, and the very objects the caller handed over.
    if (seen === undefined) throw new Error(`picked ${node?.id ?? 'nothing'}, not a member of the set`);
    c.set(node!, seen + 1);
  }
  return c;
}

const factories: [string, BalancerFactory][] = [
  ['P2C', p2cLeastLoaded()],
  ['round robin', roundRobin()],
];

describe('apply() is equivalent to update(all)', () => {
  test.each(factories)(
    '%s: same node set and weighted shares after random change sequences',
    (_, factory) => {
      fc.assert(
        fc.property(
          batchesArb,
          fc.integer({ min: 0, max: 12 }),
          fc.integer({ min: 1, max: 1e6 }),
          (batches, initial, seed) => {
            const { d, model, clock } = runIncremental(
              (env) => factory.newDistributor<WeighedNode>(env),
              initial,
              batches,
              seed,
            );
            // Every node ready for the share check (statuses are checked in the panic test below).
            for (const node of model) node.status = 'ready';
            // ... seen by the next periodic rescan, as live statuses are.
            clock.advance(1_000);
            const clock2 = new FakeClock();
            const fresh = factory.newDistributor<WeighedNode>({ clock: clock2, rng: seededRng(seed + 1) });
            fresh.update(model);
            if (model.length === 0) {
              expect(d.pick()).toBeUndefined();
              return;
            }
            const total = sum(model.map((n) => n.weight));
            const R = 2_000 * model.length;
            const mine = counts(d, model, R);
            const ref = counts(fresh, model, R);
            for (const node of model) {
              const expected = (R * node.weight) / total;
              // P2C with equal costs: the first (weighted) candidate wins, so picks are multinomial in the weights;
              // the lightest possible share here is 1/(1 + 10 * 17) of R = 4000 * 18 picks: 421 expected, sd 20.5;
              // 6 sd covers it with room for fast-check's many runs. Round robin is exact within a few picks.
              const tol = factory.kind === 'round-robin' ? 3 : 6 * Math.sqrt(expected) + 2;
              expect(Math.abs(mine.get(node)! - expected)).toBeLessThanOrEqual(tol);
              expect(Math.abs(ref.get(node)! - expected)).toBeLessThanOrEqual(tol);
            }
          },
        ),
        { numRuns: 25, seed: 4 },
      );
    },
  );

  test.each(factories)('%s: the same panic state as a fresh distributor', (_, factory) => {
    fc.assert(
      fc.property(
        batchesArb,
        fc.integer({ min: 0, max: 8 }),
        fc.integer({ min: 1, max: 1e6 }),
        (batches, initial, seed) => {
          const { d, model } = runIncremental(
            (env) => factory.newDistributor<WeighedNode>(env),
            initial,
            batches,
            seed,
          );
          const fresh = factory.newDistributor<WeighedNode>({ clock: new FakeClock(), rng: seededRng(seed) });
          fresh.update(model);
          const panicking = (x: Distributor<WeighedNode>): boolean =>
            (x as unknown as { panicking: boolean }).panicking;
          // No status changed after the nodes were added: the counts kept incrementally are exact.
          expect(panicking(d)).toBe(panicking(fresh));
        },
      ),
      { numRuns: 60, seed: 5 },
    );
  });
});

describe('weighted P2C draws between a change and the next rescan', () => {
  // After apply() the alias table is stale until the periodic rescan rebuilds it; meanwhile candidates come
  // from rejection sampling (mild skew) or a table built at once (heavy skew). Both must give the weights.
  function shares(weights: (i: number) => number, n: number): { counts: number[]; total: number } {
    const clock = new FakeClock();
    const d = new P2CDistributor<WeighedNode>({ clock, rng: seededRng(11) }, { statusRefreshMs: 1e9 });
    const nodes = Array.from({ length: n }, (_, i) => new WeighedNode(`n${i}`, weights(i)));
    d.update(nodes.slice(0, n - 1));
    d.apply([nodes[n - 1]!], [], []); // the clock never reaches the rescan: no table rebuild
    const index = new Map(nodes.map((x, i) => [x, i]));
    const counts = new Array<number>(n).fill(0);
    for (let k = 0; k < 100_000; k++) counts[index.get(d.pick()!)!]!++;
    return { counts, total: sum(nodes.map((x) => x.weight)) };
  }

  test('weights 1-4 (rejection sampling): each weight class within 5 % of its share', () => {
    const { counts, total } = shares((i) => 1 + (i % 4), 100);
    for (let c = 0; c < 4; c++) {
      const got = sum(counts.filter((_, i) => i % 4 === c));
      const want = (100_000 * 25 * (c + 1)) / total;
      // A class expects 10k-40k picks (sd <= 155): 5 % is more than 3 sd, as in distribution.test.ts.
      expect(Math.abs(got - want) / want).toBeLessThan(0.05);
    }
  });

  test('one weight-1000 node among 99 of weight 1 (alias table built at once): about 91 % to it', () => {
    const { counts, total } = shares((i) => (i === 99 ? 1000 : 1), 100);
    // 1000/1099 = 91.0 % of 100k picks (sd ~90): within 1 %.
    expect(Math.abs(counts[99]! / 100_000 - 1000 / total)).toBeLessThan(0.01);
  });
});

describe('kept nodes keep their state', () => {
  test.each(factories)(
    '%s: a node kept across apply() is the same object with the same load',
    (_, factory) => {
      const clock = new FakeClock();
      const env = { clock, rng: seededRng(2) };
      const d = factory.newDistributor<TestNode>(env);
      const nodes = Array.from({ length: 10 }, (_, i) => new TestNode(`n${i}`, new FixedLoad(0)));
      d.update(nodes);
      const kept = nodes[3]!;
      kept.load.start(0);
      const load = kept.load;
      const added = new TestNode('m0', new FixedLoad(0));
      d.apply!([added], [nodes[0]!, nodes[9]!], []);
      expect(kept.load).toBe(load);
      expect(kept.load.pending).toBe(1);
      const seen = new Set<TestNode>();
      for (let k = 0; k < 2_000; k++) seen.add(d.pick()!);
      expect(seen).toEqual(new Set([...nodes.slice(1, 9), added]));
    },
  );

  test('P2C: a slow node kept across apply() stays avoided (its Peak EWMA state is not reset)', () => {
    const clock = new FakeClock();
    const d = new P2CDistributor<TestNode>({ clock, rng: seededRng(3) });
    const nodes = Array.from({ length: 10 }, (_, i) => new TestNode(`n${i}`, new FixedLoad(1)));
    (nodes[0]!.load as FixedLoad).value = 1e6;
    d.update(nodes);
    d.apply([new TestNode('x', new FixedLoad(1))], [nodes[5]!], []);
    for (let k = 0; k < 5_000; k++) expect(d.pick()).not.toBe(nodes[0]);
  });
});

describe('panic mode across incremental changes', () => {
  test('P2C: adding busy nodes past the threshold turns panic on; removing them turns it off', () => {
    const clock = new FakeClock();
    const d = new P2CDistributor<TestNode>({ clock, rng: seededRng(1) }, { statusRefreshMs: 1e9 });
    const ready = Array.from({ length: 10 }, (_, i) => new TestNode(`r${i}`, new FixedLoad(0)));
    d.update(ready);
    const busy = Array.from({ length: 11 }, (_, i) => new TestNode(`b${i}`, new FixedLoad(0), 1, 'busy'));
    d.apply(busy, [], []);
    expect(d.panicking).toBe(true);
    // In panic the busy nodes take their share.
    let busyPicks = 0;
    for (let k = 0; k < 2_100; k++) if (d.pick()!.id.startsWith('b')) busyPicks++;
    expect(busyPicks).toBeGreaterThan(700);
    d.apply([], busy.slice(0, 2), []);
    expect(d.panicking).toBe(false);
    // 10 ready, 9 busy: busy nodes only win when every pair of maxEffort drew two of them, (9/19)^8 < 0.3 %.
    busyPicks = 0;
    for (let k = 0; k < 10_000; k++) if (d.pick()!.id.startsWith('b')) busyPicks++;
    expect(busyPicks).toBeLessThan(50);
  });

  test('round robin: removing the ready nodes leaves a schedule over the busy ones (never an empty one)', () => {
    const clock = new FakeClock();
    const d = new RoundRobinDistributor<TestNode>({ clock, rng: seededRng(1) }, { panicThreshold: 0 });
    const ready = Array.from({ length: 3 }, (_, i) => new TestNode(`r${i}`, new FixedLoad(0)));
    const busy = Array.from({ length: 3 }, (_, i) => new TestNode(`b${i}`, new FixedLoad(0), 1, 'busy'));
    d.update([...ready, ...busy]);
    for (let k = 0; k < 30; k++) expect(d.pick()!.id.startsWith('r')).toBe(true);
    d.apply([], ready, []);
    const seen = new Set<string>();
    for (let k = 0; k < 30; k++) seen.add(d.pick()!.id);
    expect(seen).toEqual(new Set(['b0', 'b1', 'b2']));
  });

  test('round robin: every node once per cycle after removals on both sides of the cursor', () => {
    const clock = new FakeClock();
    const d = new RoundRobinDistributor<TestNode>({ clock, rng: seededRng(9) });
    const nodes = Array.from({ length: 12 }, (_, i) => new TestNode(`n${i}`, new FixedLoad(0)));
    d.update(nodes);
    for (let k = 0; k < 5; k++) d.pick(); // the cursor is inside the ring
    d.apply([new TestNode('a', new FixedLoad(0))], [nodes[0]!, nodes[6]!, nodes[11]!], []);
    const left = 10;
    for (let cycle = 0; cycle < 3; cycle++) {
      const ids = Array.from({ length: left }, () => d.pick()!.id);
      expect(new Set(ids).size).toBe(left);
    }
  });
});

describe('round robin stays fair through changes', () => {
  test('between two picks of a node, no other node is picked twice (equal weights, random adds and removes)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ picks: fc.nat({ max: 25 }), remove: fc.nat(), add: fc.boolean() }), {
          minLength: 1,
          maxLength: 30,
        }),
        fc.integer({ min: 1, max: 1e6 }),
        (steps, seed) => {
          const d = new RoundRobinDistributor<TestNode>({ clock: new FakeClock(), rng: seededRng(seed) });
          let next = 0;
          const live = Array.from({ length: 12 }, () => new TestNode(`n${next++}`, new FixedLoad(0)));
          d.update(live);
          const sequence: string[] = [];
          for (const step of steps) {
            for (let k = 0; k < step.picks; k++) sequence.push(d.pick()!.id);
            const added = step.add ? [new TestNode(`n${next++}`, new FixedLoad(0))] : [];
            const removed = live.length > 2 ? live.splice(step.remove % live.length, 1) : [];
            live.push(...added);
            d.apply(added, removed, []);
          }
          for (let k = 0; k < 30; k++) sequence.push(d.pick()!.id);
          // For every node, the picks between two consecutive picks of it are all distinct.
          const last = new Map<string, number>();
          sequence.forEach((id, t) => {
            const from = last.get(id);
            if (from !== undefined) {
              const window = sequence.slice(from + 1, t);
              expect(new Set(window).size).toBe(window.length);
            }
            last.set(id, t);
          });
        },
      ),
      { numRuns: 100, seed: 6 },
    );
  });
});

describe('the work of a change does not grow with the set', () => {
  function reads(n: number, factory: BalancerFactory): { status: number; weight: number } {
    const clock = new FakeClock();
    const d = factory.newDistributor<WeighedNode>({ clock, rng: seededRng(1) });
    const nodes = Array.from({ length: n }, (_, i) => new WeighedNode(`n${i}`, 1 + (i % 4)));
    d.update(nodes);
    d.pick();
    const before = {
      status: sum(nodes.map((x) => x.statusReads)),
      weight: sum(nodes.map((x) => x.weightReads)),
    };
    const added = new WeighedNode('new', 2);
    nodes[7]!.setWeight(5);
    applyChanges(d, [added], [nodes[3]!], [nodes[7]!], () => {
      throw new Error('update(all) used');
    });
    const all = [...nodes, added];
    return {
      status: sum(all.map((x) => x.statusReads)) - before.status,
      weight: sum(all.map((x) => x.weightReads)) - before.weight,
    };
  }

  test.each(factories)(
    '%s: one add, one remove, one re-weigh read the same few statuses at 100 and 10,000 nodes',
    (_, factory) => {
      const small = reads(100, factory);
      const large = reads(10_000, factory);
      expect(large).toEqual(small);
      // The added and the updated node, read once each.
      expect(small.status).toBeLessThanOrEqual(2);
      expect(small.weight).toBeLessThanOrEqual(2);
    },
  );

  test('a distributor without apply() gets update(all) through applyChanges', () => {
    const calls: number[] = [];
    const plain: Distributor<TestNode> = {
      update: (nodes) => void calls.push(nodes.length),
      pick: () => undefined,
    };
    applyChanges(plain, [], [], [], () => [new TestNode('a', new FixedLoad(0))]);
    expect(calls).toEqual([1]);
  });
});
