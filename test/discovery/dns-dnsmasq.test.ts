// DNS discovery against a real dnsmasq on loopback (test/support/dnsmasq.ts), the shape of a Kubernetes
// headless service: one name, an A record per pod, the same port. The record set grows and shrinks while calls
// flow, every record takes traffic, and no call fails during the changes; SRV priorities from `--srv-host`
// fail over between tiers; and a dnsmasq that stops (connection refused) leaves the last set serving.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createMesh, dnsDiscovery, type Mesh } from 'meshfetch';
import { startDnsmasq, type Dnsmasq } from '../support/dnsmasq.js';
import { startLoopbackFleet, type LoopbackFleet } from '../support/loopback-fleet.js';
import { until } from '../support/until.js';

const DOMAIN = 'mesh.test';
const NAME = `users.${DOMAIN}`;
const ALL = ['127.0.0.1', '127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5'];

let dns: Dnsmasq;
let fleet: LoopbackFleet;
const meshes: Mesh[] = [];

beforeAll(async () => {
  [dns, fleet] = await Promise.all([
    startDnsmasq(DOMAIN, { [NAME]: ALL.slice(0, 3) }),
    startLoopbackFleet(ALL),
  ]);
});
afterEach(async () => {
  await Promise.all(meshes.splice(0).map((m) => m.close({ gracePeriodMs: 500 })));
  fleet.hits.clear();
});
afterAll(async () => {
  await Promise.all([dns?.close(), fleet?.close()]);
});

function mesh(discovery: ReturnType<typeof dnsDiscovery>): Mesh {
  const m = createMesh({ services: { users: { discovery } } });
  meshes.push(m);
  return m;
}

/** Calls with `concurrency` loops until `stop()`; collects failures instead of throwing. */
function load(
  m: Mesh,
  concurrency: number,
): { stop(): Promise<void>; failures: unknown[]; calls: () => number } {
  let running = true;
  let calls = 0;
  const failures: unknown[] = [];
  const loop = async (): Promise<void> => {
    while (running) {
      try {
        const res = await m.request('http://users/');
        await res.body.text();
        if (res.statusCode !== 200) failures.push(new Error(`status ${res.statusCode}`));
      } catch (err) {
        failures.push(err);
      }
      calls++;
    }
  };
  const loops = Array.from({ length: concurrency }, loop);
  return {
    failures,
    calls: () => calls,
    stop: async () => {
      running = false;
      await Promise.all(loops);
    },
  };
}

const endpoints = (m: Mesh): string[] =>
  m
    .snapshot()
    .services[0]!.endpoints.map((e) => e.address)
    .sort();

/** Waits until each of `hosts` took at least one more call than in `before` (bounded). */
async function everyTakesTraffic(hosts: readonly string[]): Promise<void> {
  const before = new Map(hosts.map((h) => [h, fleet.hits.get(h) ?? 0]));
  await until(() => hosts.every((h) => (fleet.hits.get(h) ?? 0) > before.get(h)!), 10_000, 'timer');
}

describe('dnsDiscovery with dnsmasq', () => {
  it('3 A records grown to 5 and shrunk to 2 while calls flow: every record takes traffic, no call fails', async () => {
    await dns.setHosts({ [NAME]: ALL.slice(0, 3) });
    const m = mesh(dnsDiscovery({ name: NAME, port: fleet.port, servers: [dns.address], minTtlMs: 100 }));
    const l = load(m, 8);
    try {
      await until(() => endpoints(m).length === 3, 10_000, 'timer');
      await everyTakesTraffic(ALL.slice(0, 3));

      await dns.setHosts({ [NAME]: ALL });
      await until(() => endpoints(m).length === 5, 10_000, 'timer');
      await everyTakesTraffic(ALL);

      await dns.setHosts({ [NAME]: ALL.slice(3) });
      await until(
        () => endpoints(m).join() === '127.0.0.4:' + fleet.port + ',127.0.0.5:' + fleet.port,
        10_000,
        'timer',
      );
      const gone = ALL.slice(0, 3).map((h) => fleet.hits.get(h) ?? 0);
      await everyTakesTraffic(ALL.slice(3));
      // Removed records drain: calls in flight finish, no new call reaches them.
      await until(() => m.inflightCalls <= 8, 5_000, 'timer');
      const after = ALL.slice(0, 3).map((h) => fleet.hits.get(h) ?? 0);
      for (let i = 0; i < 3; i++) expect(after[i]! - gone[i]!).toBeLessThanOrEqual(8);
    } finally {
      await l.stop();
    }
    expect(l.failures).toEqual([]);
    expect(l.calls()).toBeGreaterThan(50);
    expect(m.snapshot().services[0]!.discovery).toMatchObject({ kind: 'dns', state: 'bound', stale: false });
  });

  it('SRV priorities from --srv-host fail over between tiers (and --srv-host changes need a restart)', async () => {
    const srvName = `_http._tcp.users.${DOMAIN}`;
    const hosts = {
      [`primary.${DOMAIN}`]: ['127.0.0.1', '127.0.0.2'],
      [`backup.${DOMAIN}`]: ['127.0.0.3'],
    };
    await dns.setHosts(hosts);
    await dns.setSrv([
      { name: srvName, target: `primary.${DOMAIN}`, port: fleet.port, priority: 1, weight: 10 },
      { name: srvName, target: `backup.${DOMAIN}`, port: fleet.port, priority: 2, weight: 10 },
    ]);
    const m = mesh(
      dnsDiscovery({
        name: srvName,
        type: 'SRV',
        servers: [dns.address],
        minTtlMs: 100,
        backoff: { baseMs: 50, maxMs: 200 },
      }),
    );
    const l = load(m, 4);
    try {
      await until(() => endpoints(m).length === 3, 10_000, 'timer');
      await everyTakesTraffic(['127.0.0.1', '127.0.0.2']);
      const backupBefore = fleet.hits.get('127.0.0.3') ?? 0;
      await everyTakesTraffic(['127.0.0.1', '127.0.0.2']);
      expect(fleet.hits.get('127.0.0.3') ?? 0).toBe(backupBefore);

      // The primary target loses its addresses (SIGHUP re-reads the hosts file): the backup tier serves.
      await dns.setHosts({ ...hosts, [`primary.${DOMAIN}`]: [] });
      await until(() => endpoints(m).length === 1, 10_000, 'timer');
      await everyTakesTraffic(['127.0.0.3']);

      // Swap the priorities: only a restart applies --srv-host changes. Calls continue on the last set meanwhile.
      await dns.setHosts(hosts);
      await dns.setSrv([
        { name: srvName, target: `primary.${DOMAIN}`, port: fleet.port, priority: 2, weight: 10 },
        { name: srvName, target: `backup.${DOMAIN}`, port: fleet.port, priority: 1, weight: 10 },
      ]);
      await until(
        () =>
          m.snapshot().services[0]!.endpoints.find((e) => e.address.startsWith('127.0.0.3'))?.priority === 1,
        10_000,
        'timer',
      );
      await until(() => endpoints(m).length === 3, 10_000, 'timer');
      const primaryBefore = (fleet.hits.get('127.0.0.1') ?? 0) + (fleet.hits.get('127.0.0.2') ?? 0);
      await everyTakesTraffic(['127.0.0.3']);
      await everyTakesTraffic(['127.0.0.3']);
      expect((fleet.hits.get('127.0.0.1') ?? 0) + (fleet.hits.get('127.0.0.2') ?? 0)).toBe(primaryBefore);
    } finally {
      await l.stop();
    }
    expect(l.failures).toEqual([]);
    await dns.setSrv([]);
  });

  it('dnsmasq stopped: connection refused at once, calls continue on the last set, fresh again after restart', async () => {
    await dns.setHosts({ [NAME]: ALL.slice(0, 2) });
    const m = mesh(
      dnsDiscovery({
        name: NAME,
        port: fleet.port,
        servers: [dns.address],
        minTtlMs: 100,
        backoff: { baseMs: 50, maxMs: 200 },
      }),
    );
    const l = load(m, 4);
    try {
      await until(() => endpoints(m).length === 2, 10_000, 'timer');
      await dns.stop();
      await until(() => m.snapshot().services[0]!.discovery.stale, 10_000, 'timer');
      await everyTakesTraffic(ALL.slice(0, 2));
      expect(endpoints(m)).toHaveLength(2);
      await dns.start();
      await until(() => !m.snapshot().services[0]!.discovery.stale, 10_000, 'timer');
    } finally {
      await l.stop();
    }
    expect(l.failures).toEqual([]);
  });
});
