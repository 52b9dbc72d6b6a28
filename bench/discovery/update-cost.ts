/**
 * The cost of applying one Consul answer for a service with many instances where one instance changed,
 * split where the issue draws the line:
 *
 *   (a) before and including the diff, proportional to the whole answer because Consul always sends the whole
 *       list: `JSON.parse` of the body (done by the `consul` client before the resolver sees it),
 *       `parseHealthEntries` and `reconcileEndpoints` (src/discovery/consul/entries.ts), the same functions,
 *       with the same arguments, that `ConsulResolver` calls for every answer;
 *   (b) everything after the diff: the new `Addr`, carrying the diff as `changes` as ConsulResolver publishes
 *       it, delivered to the mesh's `Destination` (its node map and the balancer's incremental
 *       `distributor.apply()`), which the issue expects to be proportional to the change.
 *
 * For comparison, the same two sets are also published without `changes` (a full replacement: the path a
 * first answer or a custom resolver takes, and the only path before the diff was carried), and the balancer's
 * `update()` and `apply()` are timed alone over the same nodes.
 *
 * The answers are synthetic but shaped exactly like Consul 1.8's `/v1/health/service/:name?passing=true`
 * (fields copied from a real dev agent's answer: Node, Service with TaggedAddresses, Weights, Proxy, Connect,
 * and a serfHealth plus a TTL check per instance). The Destination is the real one, built by `createMesh`
 * with the default stacks and balancer (P2C Peak EWMA) over a resolver stub that publishes the reconciled
 * set and its `changes` the way `ConsulResolver#publishBound` does (and, like it, publishes nothing when
 * nothing changed).
 *
 * Scenarios, each alternating between two answers so every update is a one-instance change:
 * - `remove`: one instance's check goes critical (the passing-only answer leaves it out), then it comes back;
 * - `update`: one instance's meta changes (same address: the endpoint node is kept, its data replaced);
 * - `unchanged`: the same set again (Consul's index moved for another reason): nothing is published.
 */
import {
  createMesh,
  p2cPeakEwma,
  systemClock,
  type Addr,
  type BalancerNode,
  type Endpoint,
  type Mesh,
  type Resolver,
  type Subscription,
} from 'meshfetch';
import { systemRng } from 'meshfetch/extend';
import { parseHealthEntries, reconcileEndpoints } from '../../src/discovery/consul/entries.js';
import type { EndpointChanges } from '../../src/discovery/types.js';
import { summarize, type Summary } from './stats.js';

/** Scenarios measured for every size. */
export type Scenario = 'remove' | 'update' | 'unchanged';

/** Options of {@link runUpdateCost}. */
export interface UpdateCostOptions {
  readonly sizes: readonly number[];
  /** Work per size, in instance-updates: reps = clamp(budget / size, minReps, maxReps). */
  readonly budget: number;
  readonly minReps: number;
  readonly maxReps: number;
  readonly log: (line: string) => void;
}

/** Stage times (µs) of one size and scenario. */
export interface UpdateCostRow {
  readonly instances: number;
  readonly scenario: Scenario;
  readonly reps: number;
  readonly bodyBytes: number;
  /** `JSON.parse` of the answer body (the consul client does it). */
  readonly jsonParseUs: Summary;
  readonly parseEntriesUs: Summary;
  readonly reconcileUs: Summary;
  /** (a) = JSON.parse + parseHealthEntries + reconcileEndpoints, per update. */
  readonly beforeDiffUs: Summary;
  /** (b) = delivering the new set and its changes to the Destination (node map + balancer apply), per update. */
  readonly applyUs: Summary;
  /**
   * (b) measured on its own: the same two reconciled sets published alternately, without parsing in between
   * (so no garbage from the parse lands in it); null for `unchanged` (nothing is published).
   */
  readonly applyAloneUs: Summary | null;
  /**
   * The same sets as `applyAloneUs` published without `changes`: the Destination's full rebuild (O(n)), as
   * every update was applied before the diff was carried; null for `unchanged`.
   */
  readonly applyFullUs: Summary | null;
  readonly totalUs: Summary;
}

/** The outcome of {@link runUpdateCost}. */
export interface UpdateCostResult {
  readonly rows: UpdateCostRow[];
  /** `distributor.update()` of the default balancer alone over the same nodes (µs), per size. */
  readonly balancerUpdateUs: { readonly instances: number; readonly reps: number; readonly us: Summary }[];
  /** `distributor.apply()` of one node removed / re-added, alone (µs), per size. */
  readonly balancerApplyUs: { readonly instances: number; readonly reps: number; readonly us: Summary }[];
  readonly balancer: string;
}

const PER_NODE = 10;

/** One entry of `/v1/health/service/:name?passing=true`, as Consul 1.8.7 sends it. */
function healthEntry(i: number, version: string): unknown {
  const nodeIndex = Math.floor(i / PER_NODE);
  const address = `10.${(nodeIndex >> 16) & 255}.${(nodeIndex >> 8) & 255}.${nodeIndex & 255}`;
  const node = `node-${nodeIndex}`;
  const port = 20_000 + (i % PER_NODE);
  const id = `api-${i}`;
  const tags = ['http', 'v1'];
  return {
    Node: {
      ID: `00000000-0000-4000-8000-${String(nodeIndex).padStart(12, '0')}`,
      Node: node,
      Address: address,
      Datacenter: 'dc1',
      TaggedAddresses: { lan: address, lan_ipv4: address, wan: address, wan_ipv4: address },
      Meta: { 'consul-network-segment': '' },
      CreateIndex: 11 + nodeIndex,
      ModifyIndex: 12 + nodeIndex,
    },
    Service: {
      ID: id,
      Service: 'api',
      Tags: tags,
      Address: address,
      TaggedAddresses: {
        lan_ipv4: { Address: address, Port: port },
        wan_ipv4: { Address: address, Port: port },
      },
      Meta: { version, zone: `zone-${nodeIndex % 3}` },
      Port: port,
      Weights: { Passing: 1, Warning: 1 },
      EnableTagOverride: false,
      Proxy: { MeshGateway: {}, Expose: {} },
      Connect: {},
      CreateIndex: 100 + i,
      ModifyIndex: 100 + i,
    },
    Checks: [
      {
        Node: node,
        CheckID: 'serfHealth',
        Name: 'Serf Health Status',
        Status: 'passing',
        Notes: '',
        Output: 'Agent alive and reachable',
        ServiceID: '',
        ServiceName: '',
        ServiceTags: [],
        Type: '',
        Definition: {},
        CreateIndex: 11 + nodeIndex,
        ModifyIndex: 11 + nodeIndex,
      },
      {
        Node: node,
        CheckID: `service:${id}`,
        Name: "Service 'api' check",
        Status: 'passing',
        Notes: '',
        Output: '',
        ServiceID: id,
        ServiceName: 'api',
        ServiceTags: tags,
        Type: 'ttl',
        Definition: {},
        CreateIndex: 100 + i,
        ModifyIndex: 100 + i,
      },
    ],
  };
}

/** The two answer bodies a scenario alternates between. */
function answers(n: number, scenario: Scenario): [string, string] {
  const changed = Math.floor(n / 2);
  const a: unknown[] = [];
  const b: unknown[] = [];
  for (let i = 0; i < n; i++) {
    a.push(healthEntry(i, 'v1'));
    if (scenario === 'remove' && i === changed) continue;
    b.push(healthEntry(i, scenario === 'update' && i === changed ? 'v2' : 'v1'));
  }
  return [JSON.stringify(a), JSON.stringify(b)];
}

/** Publishes sets to the mesh the way ConsulResolver does, without the HTTP loop. */
class StubResolver implements Resolver {
  addr: Addr = { state: 'pending' };
  private readonly listeners = new Set<(addr: Addr) => void>();
  subscribe(listener: (addr: Addr) => void): Subscription {
    this.listeners.add(listener);
    return { unsubscribe: () => void this.listeners.delete(listener) };
  }
  /** `changes` as ConsulResolver attaches them (relative to the previous bound Addr); none = full replacement. */
  publish(endpoints: readonly Endpoint[], at: number, changes?: EndpointChanges): void {
    this.addr = { state: 'bound', endpoints, stale: false, updatedAt: at, changes };
    for (const l of [...this.listeners]) l(this.addr);
  }
  async close(): Promise<void> {
    this.listeners.clear();
  }
}

const us = (from: number, to: number): number => (to - from) * 1_000;

/** A full collection between measurement blocks when node runs with --expose-gc (bench/run.ts passes it). */
const collect = (): void => (globalThis as { gc?: () => void }).gc?.();

async function measure(
  n: number,
  scenario: Scenario,
  reps: number,
): Promise<{ row: UpdateCostRow; nodes: BalancerNode[] }> {
  const [textA, textB] = answers(n, scenario);
  const stub = new StubResolver();
  let mesh: Mesh | undefined;
  try {
    mesh = createMesh({
      services: { api: { discovery: { kind: 'bench-stub', resolve: () => stub } } },
    });
    const destination = mesh.lookup('api')!.destination;
    const first = parseHealthEntries(JSON.parse(textA) as unknown[], { passingOnly: true });
    let previous = reconcileEndpoints([], first.endpoints).endpoints;
    stub.publish(previous, systemClock.now());
    if (destination.endpoints().length !== n)
      throw new Error(`destination has ${destination.endpoints().length}`);

    collect();
    const times = {
      json: [] as number[],
      parse: [] as number[],
      reconcile: [] as number[],
      apply: [] as number[],
    };
    const warmup = Math.max(4, Math.ceil(reps / 10));
    for (let k = 0; k < warmup + reps; k++) {
      const text = k % 2 === 0 ? textB : textA;
      const t0 = performance.now();
      const body = JSON.parse(text) as unknown[];
      const t1 = performance.now();
      const parsed = parseHealthEntries(body, { passingOnly: true });
      const t2 = performance.now();
      const r = reconcileEndpoints(previous, parsed.endpoints);
      const t3 = performance.now();
      // ConsulResolver#publishBound: a fresh bound set that did not change is not published.
      if (r.changed) stub.publish(r.endpoints, t3, r.changes);
      const t4 = performance.now();
      previous = r.endpoints;
      const expectedChanges = scenario === 'unchanged' ? 0 : 1;
      if (r.added + r.removed + r.updated !== expectedChanges)
        throw new Error(`${scenario} at ${n}: ${r.added}+${r.removed}+${r.updated} changes`);
      if (k >= warmup) {
        times.json.push(us(t0, t1));
        times.parse.push(us(t1, t2));
        times.reconcile.push(us(t2, t3));
        times.apply.push(us(t3, t4));
      }
      // Let the removed endpoint's close() (a promise) settle, as it would between two Consul answers.
      if (k % 16 === 15) await new Promise<void>((resolve) => setImmediate(resolve));
    }
    const want = scenario === 'remove' && (warmup + reps) % 2 === 1 ? n - 1 : n;
    if (destination.endpoints().length !== want)
      throw new Error(`${scenario} at ${n}: destination has ${destination.endpoints().length}, want ${want}`);
    // (b) alone: the two reconciled sets (sharing every unchanged Endpoint object, as reconcile leaves them).
    let applyAloneUs: Summary | null = null;
    let applyFullUs: Summary | null = null;
    if (scenario !== 'unchanged') {
      const setA = reconcileEndpoints(
        [],
        parseHealthEntries(JSON.parse(textA) as unknown[], { passingOnly: true }).endpoints,
      ).endpoints;
      const setB = reconcileEndpoints(
        setA,
        parseHealthEntries(JSON.parse(textB) as unknown[], { passingOnly: true }).endpoints,
      ).endpoints;
      const toB = reconcileEndpoints(setA, setB).changes;
      const toA = reconcileEndpoints(setB, setA).changes;
      // with: the diff, as ConsulResolver publishes it; without: a full replacement (the Destination's rebuild).
      for (const withChanges of [true, false]) {
        stub.publish(setA, systemClock.now());
        collect();
        const alone: number[] = [];
        for (let k = 0; k < warmup + reps; k++) {
          const even = k % 2 === 0;
          const t0 = performance.now();
          stub.publish(even ? setB : setA, t0, withChanges ? (even ? toB : toA) : undefined);
          const t1 = performance.now();
          if (k >= warmup) alone.push(us(t0, t1));
          if (k % 16 === 15) await new Promise<void>((resolve) => setImmediate(resolve));
        }
        if (withChanges) applyAloneUs = summarize(alone);
        else applyFullUs = summarize(alone);
      }
    }
    const before = times.json.map((v, i) => v + times.parse[i]! + times.reconcile[i]!);
    return {
      row: {
        instances: n,
        scenario,
        reps,
        bodyBytes: Buffer.byteLength(textA),
        jsonParseUs: summarize(times.json),
        parseEntriesUs: summarize(times.parse),
        reconcileUs: summarize(times.reconcile),
        beforeDiffUs: summarize(before),
        applyUs: summarize(times.apply),
        applyAloneUs,
        applyFullUs,
        totalUs: summarize(before.map((v, i) => v + times.apply[i]!)),
      },
      nodes: destination.endpoints(),
    };
  } finally {
    await mesh?.close({ gracePeriodMs: 0 });
  }
}

/** Measures every size and scenario, then the balancer's update alone. */
export async function runUpdateCost(o: UpdateCostOptions): Promise<UpdateCostResult> {
  const rows: UpdateCostRow[] = [];
  const balancerUpdateUs: UpdateCostResult['balancerUpdateUs'] = [];
  const balancerApplyUs: UpdateCostResult['balancerApplyUs'] = [];
  const factory = p2cPeakEwma();
  for (const n of o.sizes) {
    const reps = Math.max(o.minReps, Math.min(o.maxReps, Math.round(o.budget / n)));
    let nodes: BalancerNode[] = [];
    for (const scenario of ['remove', 'update', 'unchanged'] as const) {
      const { row, nodes: ns } = await measure(n, scenario, reps);
      if (scenario === 'remove') nodes = ns;
      rows.push(row);
      o.log(
        `  ${n} instances, ${scenario}: before diff ${row.beforeDiffUs.p50?.toFixed(0)} µs, apply ${row.applyUs.p50?.toFixed(1)} µs (median of ${reps})`,
      );
    }
    // The balancer's share of (b): the same update() the Destination calls, over the same node objects.
    const distributor = factory.newDistributor<BalancerNode>({ clock: systemClock, rng: systemRng });
    const without = nodes.filter((_, i) => i !== Math.floor(nodes.length / 2));
    const samples: number[] = [];
    const warmup = Math.max(4, Math.ceil(reps / 10));
    collect();
    for (let k = 0; k < warmup + reps; k++) {
      const list = k % 2 === 0 ? without : nodes;
      const t0 = performance.now();
      distributor.update(list);
      const t1 = performance.now();
      if (k >= warmup) samples.push(us(t0, t1));
    }
    balancerUpdateUs.push({ instances: n, reps, us: summarize(samples) });
    // The incremental path alone: the same node removed and re-added through apply().
    const gone = nodes[Math.floor(nodes.length / 2)]!;
    distributor.update(nodes);
    const applied: number[] = [];
    collect();
    for (let k = 0; k < warmup + reps; k++) {
      const t0 = performance.now();
      if (k % 2 === 0) distributor.apply!([], [gone], []);
      else distributor.apply!([gone], [], []);
      const t1 = performance.now();
      if (k >= warmup) applied.push(us(t0, t1));
    }
    balancerApplyUs.push({ instances: n, reps, us: summarize(applied) });
  }
  return { rows, balancerUpdateUs, balancerApplyUs, balancer: factory.kind };
}
