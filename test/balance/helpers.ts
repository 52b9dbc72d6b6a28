// Test support for the balancer suites: nodes whose status the test controls (and whose status reads are
// counted, to check the O(1)-per-pick claim), and a closed-loop simulation that drives a distributor with
// the fake clock: requests start when picked and end after a latency the test chooses.
import type {
  BalancerEnv,
  BalancerFactory,
  BalancerNode,
  Distributor,
  LoadMetric,
} from '../../src/balance/types.js';
import type { ServiceStatus } from '../../src/core/service.js';
import { seededRng } from '../../src/core/rng.js';
import { FakeClock } from '../../src/testing/fake-clock.js';

export class TestNode implements BalancerNode {
  statusReads = 0;
  private current: ServiceStatus;
  constructor(
    readonly id: string,
    readonly load: LoadMetric,
    readonly weight = 1,
    status: ServiceStatus = 'ready',
  ) {
    this.current = status;
  }
  get status(): ServiceStatus {
    this.statusReads++;
    return this.current;
  }
  set status(s: ServiceStatus) {
    this.current = s;
  }
}

/** A load metric whose cost the test sets, counting cost reads. */
export class FixedLoad implements LoadMetric {
  pending = 0;
  costReads = 0;
  constructor(public value = 0) {}
  start(): void {
    this.pending++;
  }
  observe(): void {}
  end(): void {
    if (this.pending > 0) this.pending--;
  }
  cost(): number {
    this.costReads++;
    return this.value;
  }
}

export interface Harness {
  clock: FakeClock;
  env: BalancerEnv;
  nodes: TestNode[];
  distributor: Distributor<TestNode>;
}

/** A distributor from `factory` over `n` nodes (ids `n0`, `n1`, ...), with a fake clock and seeded rng. */
export function harness(
  factory: BalancerFactory,
  n: number,
  opts: { seed?: number; weights?: (i: number) => number } = {},
): Harness {
  const clock = new FakeClock();
  const env: BalancerEnv = { clock, rng: seededRng(opts.seed ?? 1) };
  const nodes = Array.from(
    { length: n },
    (_, i) => new TestNode(`n${i}`, factory.newLoad(env), opts.weights?.(i) ?? 1),
  );
  const distributor = factory.newDistributor<TestNode>(env);
  distributor.update(nodes);
  return { clock, env, nodes, distributor };
}

/** Picks `count` times with no load feedback; returns picks per node index. */
export function countPicks(h: Harness, count: number, avoid?: ReadonlySet<string>): number[] {
  const index = new Map(h.nodes.map((node, i) => [node, i]));
  const counts = new Array<number>(h.nodes.length).fill(0);
  for (let k = 0; k < count; k++) {
    const node = h.distributor.pick(avoid);
    if (node === undefined) throw new Error('pick returned undefined');
    counts[index.get(node)!]!++;
  }
  return counts;
}

/**
 * Closed-loop simulation: every ms, `perMs` requests are picked, started, and end (with an RTT sample)
 * `latency(nodeIndex, now)` ms later. Returns picks per node index, counted only for picks at times in
 * [countFrom, countTo).
 */
export function simulate(
  h: Harness,
  opts: {
    durationMs: number;
    perMs: number;
    latency: (node: number, now: number) => number;
    countFrom?: number;
    countTo?: number;
    startAt?: number;
  },
): number[] {
  const { clock, nodes, distributor } = h;
  const index = new Map(nodes.map((node, i) => [node, i]));
  const counts = new Array<number>(nodes.length).fill(0);
  const due = new Map<number, { node: number; sent: number }[]>();
  const start = clock.now();
  const end = start + opts.durationMs;
  const from = opts.countFrom ?? start;
  const to = opts.countTo ?? end;
  for (let t = start; t < end; t++) {
    const finishing = due.get(t);
    if (finishing !== undefined) {
      due.delete(t);
      for (const { node, sent } of finishing) {
        const load = nodes[node]!.load;
        load.observe(t - sent, t);
        load.end(t);
      }
    }
    for (let k = 0; k < opts.perMs; k++) {
      const node = distributor.pick()!;
      const i = index.get(node)!;
      if (t >= from && t < to) counts[i]!++;
      node.load.start(t);
      const at = t + Math.max(1, Math.round(opts.latency(i, t)));
      let list = due.get(at);
      if (list === undefined) due.set(at, (list = []));
      list.push({ node: i, sent: t });
    }
    clock.advance(1);
  }
  // Drain what is still in flight so loads end at rest.
  for (const [at, list] of [...due.entries()].sort((a, b) => a[0] - b[0])) {
    for (const { node, sent } of list) {
      nodes[node]!.load.observe(at - sent, Math.max(at, clock.now()));
      nodes[node]!.load.end(Math.max(at, clock.now()));
    }
  }
  return counts;
}

/** The largest relative deviation of `counts[i]` from `expected[i]`. */
export function worstDeviation(counts: readonly number[], expected: readonly number[]): number {
  let worst = 0;
  for (let i = 0; i < counts.length; i++) {
    worst = Math.max(worst, Math.abs(counts[i]! - expected[i]!) / expected[i]!);
  }
  return worst;
}

export function sum(xs: readonly number[]): number {
  return xs.reduce((a, b) => a + b, 0);
}
