// mesh.snapshot(): what it shows during and after a discovery change, and that it never holds a secret.
import { afterEach, expect, it } from 'vitest';
import { createMesh, staticDiscovery, type Mesh } from 'meshfetch';
import { TestCa } from '../support/certs.js';
import { startServer, type TestServer } from '../support/servers.js';

const servers: TestServer[] = [];
let mesh: Mesh | undefined;
afterEach(async () => {
  await mesh?.close({ gracePeriodMs: 0 });
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

it('shows services, discovery state and age, endpoints with status, in-flight, latency and accrual', async () => {
  const a = await startServer();
  const b = await startServer();
  servers.push(a, b);
  const d = staticDiscovery([a.address]);
  // A client key in the config (a real pair: a key alone is refused) must never show in a snapshot.
  const ca = new TestCa();
  const client = ca.leaf({ names: ['users-client'], client: true });
  ca.dispose();
  mesh = createMesh({ services: { users: { discovery: d, transport: { tls: { ...client } } } } });
  const res = await mesh.request('http://users/', { headers: { authorization: 'Bearer SECRET-TOKEN' } });
  const during = mesh.snapshot();
  expect(during.inflightCalls).toBe(1);
  const svc = during.services[0]!;
  expect(svc).toMatchObject({
    name: 'users',
    balancer: 'p2c-peak-ewma',
    timeoutMs: 30_000,
    discovery: { kind: 'static', state: 'bound', stale: false },
    breaker: 'closed',
    admission: { inFlight: 1, limit: 1024, rejected: 0 },
  });
  expect(svc.retryBudget).toBeGreaterThan(0);
  expect(svc.discovery.ageMs).toBeGreaterThanOrEqual(0);
  expect(svc.endpoints).toEqual([
    expect.objectContaining({
      address: a.address,
      weight: 1,
      status: 'ready',
      inflight: 1,
      accrual: expect.objectContaining({ state: 'ready' }),
    }),
  ]);
  expect(svc.endpoints[0]!.latencyMs).toBeGreaterThan(0);
  await res.body.dump();

  d.set([a.address, b.address]);
  const after = mesh.snapshot();
  expect(after.inflightCalls).toBe(0);
  expect(after.services[0]!.endpoints.map((e) => e.address)).toEqual([a.address, b.address]);
  const json = JSON.stringify(after);
  expect(JSON.parse(json)).toEqual(after);
  expect(json).not.toContain('SECRET');
  expect(json).not.toContain(client.key.split('\n')[1]!);
});
