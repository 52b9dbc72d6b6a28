// DNS discovery in the mesh's metrics, with the real OpenTelemetry metrics SDK: discovery updates and failed
// refreshes are counted with `meshfetch.discovery.kind = dns`, and the age gauge grows, marked stale, while the
// DNS server fails (the fault-injection server of test/support/dns-server.ts answers SERVFAIL).
import { afterEach, expect, it } from 'vitest';
import { createMesh, dnsDiscovery, METRICS, type Mesh } from 'meshfetch';
import { startDnsServer, type DnsReply, type TestDnsServer } from '../support/dns-server.js';
import { until } from '../support/until.js';
import { points, setupOtel, sum, type TestOtel } from '../telemetry/otel-sdk.js';

let mesh: Mesh | undefined;
let otel: TestOtel | undefined;
let dns: TestDnsServer | undefined;
afterEach(async () => {
  await mesh?.close({ gracePeriodMs: 0 });
  await otel?.shutdown();
  await dns?.close();
  mesh = otel = dns = undefined;
});

it('counts updates and failed refreshes with kind dns, and reports the stale set’s growing age', async () => {
  otel = setupOtel({ traces: false });
  let reply: DnsReply = { answers: [{ type: 'A', address: '127.0.0.1', ttl: 0 }] };
  dns = await startDnsServer(() => reply);
  mesh = createMesh({
    services: {
      users: {
        discovery: dnsDiscovery({
          name: 'users.test',
          port: 8080,
          servers: [dns.address],
          minTtlMs: 30,
          backoff: { baseMs: 20, maxMs: 40 },
        }),
      },
    },
  });
  await until(() => mesh!.snapshot().services[0]!.discovery.state === 'bound', 5_000, 'timer');
  reply = { rcode: 2 };
  await until(() => mesh!.snapshot().services[0]!.discovery.stale, 5_000, 'timer');
  await until(() => mesh!.snapshot().services[0]!.discovery.ageMs! > 150, 5_000, 'timer');
  const m = await otel.collect();
  expect(sum(m.get(METRICS.discoveryUpdates), { 'meshfetch.service': 'users' })).toBeGreaterThanOrEqual(2);
  expect(
    sum(m.get(METRICS.discoveryErrors), {
      'meshfetch.service': 'users',
      'meshfetch.discovery.kind': 'dns',
      'meshfetch.discovery.error_kind': 'servfail',
    }),
  ).toBeGreaterThanOrEqual(1);
  const age = points(m.get(METRICS.discoveryAge), { 'meshfetch.service': 'users' });
  expect(age).toHaveLength(1);
  expect(age[0]!.attributes).toMatchObject({
    'meshfetch.discovery.kind': 'dns',
    'meshfetch.discovery.stale': true,
  });
  expect(age[0]!.value as number).toBeGreaterThan(0.15);
});
