// End to end: traffic through the mesh (createMesh) with Consul discovery against a real agent and real
// HTTP servers. Three registered instances all receive traffic; one whose TTL check goes critical stops
// receiving it; a new one starts; deregistering one does not fail its in-flight calls; an unknown service
// fails fast (ServiceNotFoundError); one without passing instances fails with NoHealthyEndpointsError; and
// with Consul stopped, traffic keeps flowing to the last (stale) set until a restart recovers the watch.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createMesh, type Mesh } from 'meshfetch';
import { DiscoveryError, NoHealthyEndpointsError, ServiceNotFoundError } from '../../src/core/errors.js';
import { consulDiscovery, type ConsulDiscoveryOptions } from '../../src/discovery/consul.js';
import {
  deregisterInstance,
  registerInstance,
  setCheck,
  startConsul,
  waitFor,
  type ConsulAgent,
} from '../support/consul.js';
import { closedPort, echoHandler, startServer, type TestServer } from '../support/servers.js';

let consul: ConsulAgent;
let servers: TestServer[] = [];
let mesh: Mesh | undefined;

beforeAll(async () => {
  consul = await startConsul();
  servers = await Promise.all([1, 2, 3, 4].map(() => startServer()));
});
afterEach(async () => {
  await mesh?.close({ gracePeriodMs: 1_000 });
  mesh = undefined;
  for (const s of servers) {
    s.received.length = 0;
    s.handler = echoHandler;
  }
});
afterAll(async () => {
  await Promise.all(servers.map((s) => s.close()));
  await consul?.stop();
});

const discovery = (extra: ConsulDiscoveryOptions = {}): ReturnType<typeof consulDiscovery> =>
  consulDiscovery({ address: consul.httpAddr, backoff: { baseMs: 20, maxMs: 200 }, ...extra });

const meshFor = (name: string, extra: ConsulDiscoveryOptions = {}): Mesh =>
  (mesh = createMesh({ services: { [name]: { discovery: discovery(extra), balancer: 'round-robin' } } }));

async function register(name: string, s: TestServer): Promise<void> {
  await registerInstance(consul, { name, id: `${name}-${s.port}`, address: '127.0.0.1', port: s.port });
}

/** Sends `n` calls and returns how many each server received. */
async function spread(m: Mesh, name: string, n: number): Promise<number[]> {
  const before = servers.map((s) => s.received.length);
  for (let i = 0; i < n; i++) {
    const res = await m.fetch(`http://${name}/ping`);
    expect(res.status).toBe(200);
    await res.text();
  }
  return servers.map((s, i) => s.received.length - before[i]!);
}

describe('mesh traffic with Consul discovery', () => {
  it('follows health, new instances and deregistration without failing in-flight calls', async () => {
    const [a, b, c, d] = servers as [TestServer, TestServer, TestServer, TestServer];
    for (const s of [a, b, c]) await register('api', s);
    const m = meshFor('api');
    // The first call waits for discovery's first answer (pending), bounded by its deadline.
    let counts = await spread(m, 'api', 30);
    expect(counts.slice(0, 3).every((n) => n > 0)).toBe(true);
    expect(counts[3]).toBe(0);

    // b's TTL check goes critical: it stops receiving traffic.
    await setCheck(consul, `api-${b.port}`, 'critical');
    await waitFor(async () => (await spread(m, 'api', 4))[1] === 0, 'b out of rotation', 5_000);
    counts = await spread(m, 'api', 20);
    expect(counts[1]).toBe(0);
    expect(counts[0]! > 0 && counts[2]! > 0).toBe(true);

    // A new instance d starts receiving traffic.
    await register('api', d);
    await waitFor(async () => (await spread(m, 'api', 4))[3]! > 0, 'd in rotation', 5_000);

    // Calls in flight on c while c is deregistered all complete.
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    c.handler = async (req, res, body) => {
      if (req.url === '/slow') await gate;
      echoHandler(req, res, body);
    };
    const inflight = Array.from({ length: 9 }, () =>
      m.fetch('http://api/slow').then(async (r) => [r.status, await r.text()] as const),
    );
    await waitFor(() => c.received.some((r) => r.url === '/slow'), 'a call in flight on c', 5_000);
    await deregisterInstance(consul, `api-${c.port}`);
    await waitFor(
      async () => {
        const n = c.received.length;
        await spread(m, 'api', 6);
        return c.received.length === n;
      },
      'c out of rotation',
      5_000,
    );
    release();
    const results = await Promise.all(inflight);
    expect(results.every(([status]) => status === 200)).toBe(true);
  });

  it('an unknown service fails fast with ServiceNotFoundError', async () => {
    const m = meshFor('ghost');
    const t0 = performance.now();
    await expect(m.fetch('http://ghost/')).rejects.toBeInstanceOf(ServiceNotFoundError);
    expect(performance.now() - t0).toBeLessThan(1_000);
  });

  it('Consul unreachable from the start: calls fail at once with one clear DiscoveryError', async () => {
    const port = await closedPort();
    mesh = createMesh({
      services: {
        lost: {
          discovery: consulDiscovery({ address: `127.0.0.1:${port}`, backoff: { baseMs: 50, maxMs: 500 } }),
        },
      },
    });
    const m = mesh;
    const err = await waitFor(
      () =>
        m.fetch('http://lost/').then(
          () => undefined,
          (e: unknown) => (e instanceof DiscoveryError ? e : undefined),
        ),
      'a DiscoveryError',
      3_000,
    );
    expect(err?.message).toMatch(
      /^Discovery failed for service "lost": Consul health query for "lost" failed: agent .* unreachable \(ECONNREFUSED\)$/,
    );
  });

  it('a service without passing instances fails with NoHealthyEndpointsError that says so', async () => {
    await registerInstance(consul, {
      name: 'ill',
      id: 'ill-1',
      address: '127.0.0.1',
      port: servers[0]!.port,
      status: 'critical',
    });
    const m = meshFor('ill');
    const err = await m.fetch('http://ill/').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NoHealthyEndpointsError);
    expect((err as Error).message).toMatch(/0 endpoint/);
  });

  it('keeps traffic flowing while Consul is down (stale set), and recovers after a restart', async () => {
    const [a, b] = servers as [TestServer, TestServer];
    for (const s of [a, b]) await register('steady', s);
    const m = meshFor('steady');
    let counts = await spread(m, 'steady', 10);
    expect(counts[0]! > 0 && counts[1]! > 0).toBe(true);
    await consul.stop();
    for (let round = 0; round < 3; round++) {
      counts = await spread(m, 'steady', 10);
      expect(counts[0]! + counts[1]!).toBe(10);
    }
    await consul.restart();
    // Fresh agent, fresh state: register only b; the mesh follows.
    await register('steady', b);
    await waitFor(
      async () => {
        const c2 = await spread(m, 'steady', 6);
        return c2[0] === 0 && c2[1] === 6;
      },
      'only b after the restart',
      5_000,
    );
  });
});
