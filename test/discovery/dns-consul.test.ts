// DNS discovery against Consul's DNS interface (a real dev agent with -dns-port and a 1 s service TTL): SRV
// for a service with 3 instances (priority 1, weight Weights.Passing), registered with registerService, whose
// weights now reach the agent (sent with undici: the `consul` package drops them); consulDiscovery follows the
// same weights; an instance going critical leaves the DNS answer at once and the traffic within the refresh
// bound, while calls keep succeeding.
import { Resolver } from 'node:dns/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { consulDiscovery, createMesh, dnsDiscovery, registerService } from 'meshfetch';
import { type ServiceRegistration } from 'meshfetch/extend';
import { systemClock } from '../../src/core/clock.js';
import { silentLogger } from '../../src/core/logger.js';
import { seededRng } from '../../src/core/rng.js';
import type { Addr } from '../../src/discovery/types.js';
import { registerInstance, setCheck, startConsul, waitFor, type ConsulAgent } from '../support/consul.js';
import { startServer, type TestServer } from '../support/servers.js';
import { until } from '../support/until.js';

let consul: ConsulAgent;
let servers: TestServer[] = [];
const registrations: ServiceRegistration[] = [];

beforeAll(async () => {
  [consul, servers] = await Promise.all([
    startConsul({ dns: { serviceTtl: '1s' } }),
    Promise.all([1, 2, 3].map(() => startServer())),
  ]);
  const [a, b, c] = servers as [TestServer, TestServer, TestServer];
  // Two through registerService (weights through the agent's HTTP API), one through the raw API so that the
  // test can fail its TTL check without a heartbeat passing it again.
  for (const [s, passing] of [
    [a, 3],
    [b, 1],
  ] as const) {
    registrations.push(
      await registerService({
        name: 'users',
        id: `users-${s.port}`,
        address: '127.0.0.1',
        port: s.port,
        agent: consul.httpAddr,
        weights: { passing, warning: 1 },
      }),
    );
  }
  await registerInstance(consul, {
    name: 'users',
    id: `users-${c.port}`,
    address: '127.0.0.1',
    port: c.port,
    weights: { passing: 2, warning: 1 },
  });
});
afterAll(async () => {
  await Promise.all(registrations.map((r) => r.close()));
  await Promise.all(servers.map((s) => s.close()));
  await consul?.stop();
});

const ctx = { service: 'users', clock: systemClock, rng: seededRng(3), logger: silentLogger };

describe("dnsDiscovery with Consul's DNS interface", () => {
  it('the agent stores the weights registerService sends', async () => {
    const [a, b] = servers as [TestServer, TestServer];
    const services = await consul.api<Record<string, { Weights: { Passing: number; Warning: number } }>>(
      'GET',
      '/v1/agent/services',
    );
    expect(services[`users-${a.port}`]!.Weights).toEqual({ Passing: 3, Warning: 1 });
    expect(services[`users-${b.port}`]!.Weights).toEqual({ Passing: 1, Warning: 1 });
  });

  it('SRV: 3 instances, priority 1, weights Weights.Passing, targets resolved through <hex>.addr.dc1.consul', async () => {
    const raw = new Resolver({ timeout: 1_000, tries: 2 });
    raw.setServers([consul.dnsAddr!]);
    const records = await raw.resolveSrv('users.service.consul');
    expect(records.map((r) => r.priority)).toEqual([1, 1, 1]);
    expect(records.every((r) => /^7f000001\.addr\.dc1\.consul$/.test(r.name))).toBe(true);

    const r = dnsDiscovery({ name: 'users.service.consul', type: 'SRV', servers: [consul.dnsAddr!] }).resolve(
      ctx,
    );
    try {
      await until(() => r.addr.state === 'bound' && r.addr.endpoints.length === 3, 10_000, 'timer');
      const addr = r.addr as Addr & { state: 'bound' };
      const weights = Object.fromEntries(addr.endpoints.map((e) => [e.port, e.weight]));
      const [a, b, c] = servers as [TestServer, TestServer, TestServer];
      expect(weights).toEqual({ [a.port]: 3, [b.port]: 1, [c.port]: 2 });
      expect(addr.endpoints.every((e) => e.host === '127.0.0.1' && e.priority === 1)).toBe(true);
    } finally {
      await r.close();
    }
  });

  it('consulDiscovery follows the same weights', async () => {
    const r = consulDiscovery({ address: consul.httpAddr }).resolve(ctx);
    try {
      await until(() => r.addr.state === 'bound' && r.addr.endpoints.length === 3, 10_000, 'timer');
      const addr = r.addr as Addr & { state: 'bound' };
      const [a, b, c] = servers as [TestServer, TestServer, TestServer];
      expect(Object.fromEntries(addr.endpoints.map((e) => [e.port, e.weight]))).toEqual({
        [a.port]: 3,
        [b.port]: 1,
        [c.port]: 2,
      });
    } finally {
      await r.close();
    }
  });

  it('an instance going critical leaves the answer at once and the traffic within the refresh bound', async () => {
    const [, , c] = servers as [TestServer, TestServer, TestServer];
    const minTtlMs = 300;
    const mesh = createMesh({
      services: {
        users: {
          discovery: dnsDiscovery({
            name: 'users.service.consul',
            type: 'SRV',
            servers: [consul.dnsAddr!],
            minTtlMs,
          }),
        },
      },
    });
    let running = true;
    const failures: unknown[] = [];
    const loop = async (): Promise<void> => {
      while (running) {
        try {
          const res = await mesh.request('http://users/');
          await res.body.text();
        } catch (err) {
          failures.push(err);
        }
      }
    };
    const loops = Array.from({ length: 4 }, loop);
    try {
      await until(() => mesh.snapshot().services[0]!.endpoints.length === 3, 10_000, 'timer');
      await until(() => c.received.length > 0, 10_000, 'timer');

      await setCheck(consul, `users-${c.port}`, 'critical');
      const t0 = performance.now();
      const raw = new Resolver({ timeout: 1_000, tries: 2 });
      raw.setServers([consul.dnsAddr!]);
      expect((await raw.resolveSrv('users.service.consul')).map((r) => r.port)).not.toContain(c.port);

      await until(() => mesh.snapshot().services[0]!.endpoints.length === 2, 10_000, 'timer');
      // The refresh bound: minTtlMs (Consul's target records have TTL 0), plus the lookups, with room for a
      // busy machine.
      expect(performance.now() - t0).toBeLessThan(minTtlMs + 2_000);
      await until(() => mesh.inflightCalls <= 4, 5_000, 'timer');
      const hits = c.received.length;
      await waitFor(
        () => servers.slice(0, 2).every((s) => s.received.length > hits + 20),
        'more calls',
        10_000,
      );
      expect(c.received.length - hits).toBeLessThanOrEqual(4);
    } finally {
      running = false;
      await Promise.all(loops);
      await mesh.close();
      await setCheck(consul, `users-${c.port}`, 'passing');
    }
    expect(failures).toEqual([]);
  });
});
