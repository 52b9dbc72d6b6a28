// A discovery update reaches a Destination as a diff (`Addr.changes`) and is applied in O(change): unchanged
// endpoints keep their node, pool and load objects, removed ones drain, and the work after the diff (node
// constructions, status and weight reads, the balancer's full update) does not grow with the number of
// endpoints. Counted with spies, not timed.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import {
  createMesh,
  p2cPeakEwma,
  roundRobin,
  staticDiscovery,
  type EndpointInput,
  type Mesh,
} from 'meshfetch';
import type { BalancerFactory, BalancerNode, Distributor } from '../../src/balance/types.js';
import type { Addr, Resolver } from '../../src/discovery/types.js';
import type { Destination } from '../../src/concrete/destination.js';
import { EndpointNode } from '../../src/concrete/endpoint-node.js';
import { CHANNELS, type EndpointEvent } from '../../src/telemetry/events.js';
import { startServer, type TestServer } from '../support/servers.js';

const servers: TestServer[] = [];
let mesh: Mesh | undefined;
afterEach(async () => {
  vi.restoreAllMocks();
  await mesh?.close({ gracePeriodMs: 0 });
  mesh = undefined;
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/** Wraps a balancer factory, counting loads made and the distributor's update() / apply() calls. */
function counting(inner: BalancerFactory): {
  factory: BalancerFactory;
  loads: number;
  updates: number[];
  applies: [number, number, number][];
} {
  const c = {
    loads: 0,
    updates: [] as number[],
    applies: [] as [number, number, number][],
    factory: undefined as unknown as BalancerFactory,
  };
  c.factory = {
    kind: inner.kind,
    newLoad: (env) => {
      c.loads++;
      return inner.newLoad(env);
    },
    newDistributor: <N extends BalancerNode>(
      env: Parameters<BalancerFactory['newLoad']>[0],
    ): Distributor<N> => {
      const d = inner.newDistributor<N>(env);
      return {
        update: (nodes) => {
          c.updates.push(nodes.length);
          d.update(nodes);
        },
        apply: (added, removed, updated) => {
          c.applies.push([added.length, removed.length, updated.length]);
          d.apply!(added, removed, updated);
        },
        pick: (avoid) => d.pick(avoid),
      };
    },
  };
  return c;
}

const addresses = (n: number, from = 0): string[] =>
  Array.from({ length: n }, (_, i) => `10.1.${((from + i) >> 8) & 255}.${(from + i) & 255}:8080`);

function destinationOf(m: Mesh, name: string): Destination {
  return m.lookup(name)!.destination;
}

describe('Destination applies Addr.changes', () => {
  it('keeps the node, pool and load of unchanged endpoints; makes only the added; drains the removed', () => {
    const c = counting(p2cPeakEwma());
    const d = staticDiscovery(addresses(3));
    mesh = createMesh({ services: { api: { discovery: d, balancer: c.factory } } });
    const dest = destinationOf(mesh, 'api');
    const before = new Map(dest.endpoints().map((n) => [n.id, n]));
    const kept = before.get(addresses(3)[0]!)!;
    const keptLoad = kept.load;
    const keptLeaf = kept.leaf;
    kept.load.start(0); // a request in flight: load state that must survive the update
    const removed = before.get(addresses(3)[2]!)!;
    const close = vi.spyOn(removed.service, 'close');
    const loadsBefore = c.loads;

    d.set([...addresses(2), ...addresses(1, 100)]);

    const after = new Map(dest.endpoints().map((n) => [n.id, n]));
    expect([...after.keys()].sort()).toEqual([...addresses(2), ...addresses(1, 100)].sort());
    expect(after.get(kept.id)).toBe(kept);
    expect(after.get(addresses(3)[1]!)).toBe(before.get(addresses(3)[1]!));
    expect(kept.load).toBe(keptLoad);
    expect(kept.leaf).toBe(keptLeaf);
    expect(kept.load.pending).toBe(1);
    // The removed endpoint is closed (drained: its stack finishes in-flight calls, then the pool closes).
    expect(close).toHaveBeenCalledTimes(1);
    // One node made; the balancer got the diff, not the whole set.
    expect(c.loads - loadsBefore).toBe(1);
    expect(c.updates).toEqual([3]); // the first answer only
    expect(c.applies).toEqual([[1, 1, 0]]);
  });

  it('a changed weight reaches the balancer as an update of the same node', () => {
    const c = counting(roundRobin());
    const d = staticDiscovery(addresses(2));
    mesh = createMesh({ services: { api: { discovery: d, balancer: c.factory } } });
    const dest = destinationOf(mesh, 'api');
    const node = dest.endpoints()[1]!;
    const [a, b] = addresses(2) as [string, string];
    d.set([a, { host: b.split(':')[0]!, port: 8080, weight: 3 }]);
    expect(dest.endpoints()[1]).toBe(node);
    expect(node.weight).toBe(3);
    expect(c.applies).toEqual([[0, 0, 1]]);
  });

  it('a removed endpoint drains: its in-flight call finishes, new calls go elsewhere, then its sockets close', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let arrived!: () => void;
    const inHandler = new Promise<void>((r) => (arrived = r));
    const old = await startServer(async (_req, res) => {
      arrived();
      await gate;
      res.end('old');
    });
    const fresh = await startServer((_req, res) => void res.end('new'));
    servers.push(old, fresh);
    const d = staticDiscovery([old.address]);
    mesh = createMesh({ services: { api: { discovery: d } } });
    const inflight = mesh.request('http://api/');
    await inHandler;
    d.set([old.address, fresh.address]); // incremental: add
    d.set([fresh.address]); // incremental: remove the old one while its call is in flight
    expect(
      destinationOf(mesh, 'api')
        .endpoints()
        .map((n) => n.id),
    ).toEqual([fresh.address]);
    for (let i = 0; i < 3; i++) expect(await (await mesh.request('http://api/')).body.text()).toBe('new');
    release();
    expect(await (await inflight).body.text()).toBe('old');
    await vi.waitFor(() => expect(old.openSockets).toBe(0), { timeout: 2_000, interval: 5 });
  });

  it('the work after the diff does not grow with the number of endpoints (50 vs 5,000)', () => {
    function work(n: number): { loads: number; statusReads: number; weightReads: number; updates: number[] } {
      const c = counting(p2cPeakEwma());
      const list = addresses(n);
      const d = staticDiscovery(list);
      const m = createMesh({ services: { api: { discovery: d, balancer: c.factory } } });
      try {
        const status = vi.spyOn(EndpointNode.prototype, 'status', 'get');
        const weight = vi.spyOn(EndpointNode.prototype, 'weight', 'get');
        const loads = c.loads;
        const updates = c.updates.length;
        // One removed, one added: the discovery's own diff is O(n) (allowed); what follows must not be.
        const next = [...list.slice(1), ...addresses(1, 9_000)];
        status.mockClear();
        weight.mockClear();
        d.set(next);
        const out = {
          loads: c.loads - loads,
          statusReads: status.mock.calls.length,
          weightReads: weight.mock.calls.length,
          updates: c.updates.slice(updates),
        };
        status.mockRestore();
        weight.mockRestore();
        expect(destinationOf(m, 'api').endpoints()).toHaveLength(n);
        return out;
      } finally {
        void m.close({ gracePeriodMs: 0 });
      }
    }
    const small = work(50);
    const large = work(5_000);
    expect(large).toEqual(small);
    expect(small.loads).toBe(1);
    expect(small.updates).toEqual([]);
    expect(small.statusReads).toBe(1); // the added node's, once
    expect(small.weightReads).toBe(1);
  });

  it('routing subsets over one source: a diff that names endpoints of the other subset makes no node there', () => {
    const v = (i: number, version: string): EndpointInput => ({
      host: `10.0.0.${i}`,
      port: 80,
      meta: { version },
    });
    const d = staticDiscovery([v(1, 'v1'), v(2, 'v2')]);
    mesh = createMesh({
      services: {
        api: {
          discovery: d,
          destinations: {
            v1: { subset: { meta: { version: 'v1' } } },
            v2: { subset: { meta: { version: 'v2' } } },
          },
          routes: [
            {
              to: [
                { destination: 'v1', weight: 1 },
                { destination: 'v2', weight: 1 },
              ],
            },
          ],
        },
      },
    });
    const events: string[] = [];
    const onAdded = (m: unknown): void =>
      void events.push(`+${(m as EndpointEvent).destination} ${(m as EndpointEvent).endpoint}`);
    const onRemoved = (m: unknown): void =>
      void events.push(`-${(m as EndpointEvent).destination} ${(m as EndpointEvent).endpoint}`);
    subscribe(CHANNELS.endpointAdded, onAdded);
    subscribe(CHANNELS.endpointRemoved, onRemoved);
    try {
      // One endpoint added to each subset in the same update: the shared diff names both.
      d.set([v(1, 'v1'), v(2, 'v2'), v(3, 'v1'), v(4, 'v2')]);
    } finally {
      unsubscribe(CHANNELS.endpointAdded, onAdded);
      unsubscribe(CHANNELS.endpointRemoved, onRemoved);
    }
    // Each destination announces only its own new endpoint, never one it then has to drop.
    expect(events.filter((e) => !e.includes('primary')).sort()).toEqual([
      '+v1 10.0.0.3:80',
      '+v2 10.0.0.4:80',
    ]);
  });

  it('without changes (a custom resolver) the full path still reconciles, keeping unchanged nodes', () => {
    const c = counting(p2cPeakEwma());
    const d = staticDiscovery(addresses(3));
    let inner: Resolver | undefined;
    let listener: ((addr: Addr) => void) | undefined;
    mesh = createMesh({
      services: {
        api: {
          balancer: c.factory,
          discovery: {
            kind: 'custom',
            resolve: (ctx) => {
              const r = (inner = d.resolve(ctx));
              return {
                get addr() {
                  return r.addr;
                },
                subscribe: (l) => {
                  listener = l;
                  return { unsubscribe: () => (listener = undefined) };
                },
                close: () => r.close(),
              };
            },
          },
        },
      },
    });
    const dest = destinationOf(mesh, 'api');
    const first = dest.endpoints()[0]!;
    const addr = inner!.addr;
    expect(addr.state).toBe('bound');
    if (addr.state !== 'bound') return;
    // The same list with no `changes`: a full replacement, applied with update(all).
    listener!({ state: 'bound', endpoints: addr.endpoints.slice(0, 2), stale: false, updatedAt: 0 });
    expect(dest.endpoints()).toHaveLength(2);
    expect(dest.endpoints()[0]).toBe(first);
    expect(c.updates).toEqual([3, 2]);
    expect(c.applies).toEqual([]);
  });
});
