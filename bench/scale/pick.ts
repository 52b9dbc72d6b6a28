/**
 * Pick cost of the real distributors (src/balance) at 10, 1,000 and 10,000 endpoints: what the balancer
 * costs one request, measured as `pick()` plus the load bookkeeping that request causes (`start` when it is
 * sent, `observe` + `end` when it finishes), with a ring of requests in flight so loads keep changing and the
 * picks see different costs, as under traffic. The clock and rng are the production ones (`systemClock`,
 * `systemRng`), so a pick's `clock.now()` and random draws are counted too; the bookkeeping reads the clock
 * once per request, as the mesh does.
 *
 * A second loop does the same bookkeeping on endpoints drawn from a precomputed random sequence, without
 * picking; the difference is the pick alone (it touches as many random endpoints, so memory effects of a
 * large set are in both and cancel).
 *
 * Sizes are alternated within each round (every size once per round), and each figure is the median over
 * rounds. Part of bench/scale (see index.ts for how to run it).
 */
import {
  p2cLeastLoaded,
  p2cPeakEwma,
  roundRobin,
  systemClock,
  type BalancerFactory,
  type BalancerNode,
  type Distributor,
} from 'meshfetch';
import { systemRng } from 'meshfetch/extend';
import { median, range } from '../lib/stats.js';

/** A balancer measured. */
export interface PickBalancer {
  id: string;
  label: string;
  factory: () => BalancerFactory;
  /** Unequal weights (1, 2, 3, ...): P2C draws through its alias table. */
  weighted?: boolean;
}

/** The balancers: the three configurable ones, and P2C Peak-EWMA with unequal weights. */
export const PICK_BALANCERS: readonly PickBalancer[] = [
  { id: 'p2c-peak-ewma', label: 'P2C Peak-EWMA', factory: () => p2cPeakEwma() },
  { id: 'p2c-least-loaded', label: 'P2C least-loaded', factory: () => p2cLeastLoaded() },
  { id: 'round-robin', label: 'round robin', factory: () => roundRobin() },
  {
    id: 'p2c-peak-ewma-weighted',
    label: 'P2C Peak-EWMA, unequal weights',
    factory: () => p2cPeakEwma(),
    weighted: true,
  },
];

/** One balancer at one size. */
export interface PickCell {
  balancer: string;
  label: string;
  endpoints: number;
  /** ns per request: pick + start + observe + end (median of rounds). */
  perRequestNs: number;
  /** ns per request of the bookkeeping alone on random endpoints (median of rounds). */
  bookkeepingNs: number;
  /** perRequestNs - bookkeepingNs: the pick alone. */
  pickNs: number;
  perRequestRange: [number, number];
  rounds: number[];
}

const IN_FLIGHT = 32;
const SEQ = 1 << 16;

interface Fixture {
  dist: Distributor<BalancerNode>;
  nodes: BalancerNode[];
  seq: Uint32Array;
}

function fixture(b: PickBalancer, n: number): Fixture {
  const env = { clock: systemClock, rng: systemRng };
  const f = b.factory();
  const nodes: BalancerNode[] = Array.from({ length: n }, (_, i) => ({
    id: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:8080`,
    weight: b.weighted ? 1 + (i % 3) : 1,
    status: 'ready' as const,
    load: f.newLoad(env),
  }));
  const dist = f.newDistributor<BalancerNode>(env);
  dist.update(nodes);
  const seq = new Uint32Array(SEQ);
  for (let i = 0; i < SEQ; i++) seq[i] = Math.floor(Math.random() * n);
  return { dist, nodes, seq };
}

/** Runs `iters` requests through pick + bookkeeping; returns elapsed ns. */
function withPick(fx: Fixture, iters: number): number {
  const ring: BalancerNode[] = [];
  const sent = new Float64Array(IN_FLIGHT);
  let head = 0;
  const dist = fx.dist;
  const t0 = performance.now();
  for (let i = 0; i < iters; i++) {
    const now = performance.now();
    const node = dist.pick()!;
    node.load.start(now);
    const slot = head++ % IN_FLIGHT;
    const old = ring[slot];
    if (old !== undefined) {
      // The request sent IN_FLIGHT picks ago finishes, with an RTT of 1-8 ms that varies with the slot.
      old.load.observe(1 + (slot & 7) + (now - sent[slot]!), now);
      old.load.end(now);
    }
    ring[slot] = node;
    sent[slot] = now;
  }
  const ns = (performance.now() - t0) * 1e6;
  for (const n of ring) n?.load.end(t0);
  return ns;
}

/** The same bookkeeping on endpoints from a random sequence, no pick; returns elapsed ns. */
function withoutPick(fx: Fixture, iters: number): number {
  const ring: BalancerNode[] = [];
  const sent = new Float64Array(IN_FLIGHT);
  let head = 0;
  const { nodes, seq } = fx;
  const t0 = performance.now();
  for (let i = 0; i < iters; i++) {
    const now = performance.now();
    const node = nodes[seq[i & (SEQ - 1)]!]!;
    node.load.start(now);
    const slot = head++ % IN_FLIGHT;
    const old = ring[slot];
    if (old !== undefined) {
      old.load.observe(1 + (slot & 7) + (now - sent[slot]!), now);
      old.load.end(now);
    }
    ring[slot] = node;
    sent[slot] = now;
  }
  const ns = (performance.now() - t0) * 1e6;
  for (const n of ring) n?.load.end(t0);
  return ns;
}

/** Iterations that take about `ms` for this fixture. */
function calibrate(fx: Fixture, ms: number): number {
  let iters = 1_000;
  for (;;) {
    const ns = withPick(fx, iters);
    if (ns >= 5e6 || iters >= 1e8) return Math.max(1_000, Math.round((iters * ms * 1e6) / ns));
    iters *= 4;
  }
}

/** Options of {@link measurePicks}. */
export interface PickOptions {
  sizes: readonly number[];
  rounds: number;
  /** Time per measured loop (ms). */
  loopMs: number;
  log: (line: string) => void;
}

/**
 * Measures the given balancers at every size; see the file comment. index.ts calls it in a separate process
 * per balancer, so the loops' call sites see one distributor and one load class (as in a mesh that uses one
 * balancer) and one balancer's JIT state does not slow another's.
 */
export function measurePicks(
  o: PickOptions,
  balancers: readonly PickBalancer[] = PICK_BALANCERS,
): PickCell[] {
  const gc = (globalThis as { gc?: () => void }).gc;
  const fixtures = new Map<string, { fx: Fixture; iters: number }>();
  for (const b of balancers) {
    for (const n of o.sizes) {
      const fx = fixture(b, n);
      // Warm-up (JIT, the status tracker's first scans), then size the loops.
      withPick(fx, 50_000);
      withoutPick(fx, 50_000);
      fixtures.set(`${b.id}@${n}`, { fx, iters: calibrate(fx, o.loopMs) });
    }
  }
  const per = new Map<string, { pick: number[]; base: number[] }>();
  for (let r = 0; r < o.rounds; r++) {
    for (const b of balancers) {
      for (const n of o.sizes) {
        const key = `${b.id}@${n}`;
        const { fx, iters } = fixtures.get(key)!;
        gc?.();
        const a = withPick(fx, iters) / iters;
        const c = withoutPick(fx, iters) / iters;
        const e = per.get(key) ?? { pick: [], base: [] };
        e.pick.push(a);
        e.base.push(c);
        per.set(key, e);
      }
    }
  }
  const cells: PickCell[] = [];
  for (const b of balancers) {
    for (const n of o.sizes) {
      const e = per.get(`${b.id}@${n}`)!;
      const perRequestNs = median(e.pick);
      const bookkeepingNs = median(e.base);
      cells.push({
        balancer: b.id,
        label: b.label,
        endpoints: n,
        perRequestNs: Math.round(perRequestNs * 10) / 10,
        bookkeepingNs: Math.round(bookkeepingNs * 10) / 10,
        pickNs: Math.round((perRequestNs - bookkeepingNs) * 10) / 10,
        perRequestRange: range(e.pick).map((x) => Math.round(x * 10) / 10) as [number, number],
        rounds: e.pick.map((x) => Math.round(x * 10) / 10),
      });
    }
  }
  return cells;
}
