// The deterministic parts of DNS discovery: option validation (a ConfigError that names the option), what a
// resolver error means, TTL bounds, SRV weights, failover tiers in the balancer, and the refresh schedule
// driven by a fake clock (TTL-paced refreshes, jittered backoff after failures) against the fault-injection
// DNS server.
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, createMesh, dnsDiscovery, p2cPeakEwma, registerService, roundRobin } from 'meshfetch';
import { TieredDistributor } from '../../src/balance/tiers.js';
import { silentLogger } from '../../src/core/logger.js';
import { seededRng } from '../../src/core/rng.js';
import {
  classifyDnsError,
  DnsQueryError,
  refreshDelayMs,
  srvWeights,
} from '../../src/discovery/dns/records.js';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { startDnsServer, type DnsReply } from '../support/dns-server.js';
import { until } from '../support/until.js';
import { FixedLoad, TestNode } from '../balance/helpers.js';

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

function configError(f: () => unknown): ConfigError {
  try {
    f();
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('no ConfigError');
}

describe('dnsDiscovery options', () => {
  it.each([
    ['an empty label', { name: 'users..test', port: 80 }, 'dnsDiscovery.name'],
    ['a space', { name: 'users test', port: 80 }, 'dnsDiscovery.name'],
    ['a leading hyphen', { name: '-users.test', port: 80 }, 'dnsDiscovery.name'],
    ['a label of 64 characters', { name: `${'a'.repeat(64)}.test`, port: 80 }, 'dnsDiscovery.name'],
    ['a name of 254 characters', { name: `${'a.'.repeat(127)}ab`, port: 80 }, 'dnsDiscovery.name'],
    ['an IP address', { name: '10.0.0.1', port: 80 }, 'dnsDiscovery.name'],
    ['port 0', { name: 'users.test', port: 0 }, 'dnsDiscovery.port'],
    ['port 65536', { name: 'users.test', port: 65536 }, 'dnsDiscovery.port'],
    ['port 80.5', { name: 'users.test', port: 80.5 }, 'dnsDiscovery.port'],
    ['no port for A', { name: 'users.test' }, 'dnsDiscovery.port'],
    ['a port with SRV', { name: '_http._tcp.users.test', type: 'SRV', port: 80 }, 'dnsDiscovery.port'],
    ['an unknown type', { name: 'users.test', type: 'MX', port: 80 }, 'dnsDiscovery.type'],
    ['targets without SRV', { name: 'users.test', port: 80, targets: 'AAAA' }, 'dnsDiscovery.targets'],
    [
      'an unknown targets type',
      { name: '_x._tcp.test', type: 'SRV', targets: 'CNAME' },
      'dnsDiscovery.targets',
    ],
    [
      'a server with a name',
      { name: 'users.test', port: 80, servers: ['dns.local'] },
      'dnsDiscovery.servers[0]',
    ],
    [
      'a server port out of range',
      { name: 'users.test', port: 80, servers: ['127.0.0.1:70000'] },
      'dnsDiscovery.servers[0]',
    ],
    ['no servers', { name: 'users.test', port: 80, servers: [] }, 'dnsDiscovery.servers'],
    [
      'maxTtlMs below minTtlMs',
      { name: 'users.test', port: 80, minTtlMs: 5_000, maxTtlMs: 1_000 },
      'dnsDiscovery.maxTtlMs',
    ],
    ['a negative minTtlMs', { name: 'users.test', port: 80, minTtlMs: -1 }, 'dnsDiscovery.minTtlMs'],
    ['tries 0', { name: 'users.test', port: 80, tries: 0 }, 'dnsDiscovery.tries'],
    ['an unknown option', { name: 'users.test', port: 80, ttl: 5 }, 'dnsDiscovery.ttl'],
  ])('%s is a ConfigError naming the option', (_label, options, path) => {
    const e = configError(() => dnsDiscovery(options as never));
    expect(e.path).toBe(path);
    expect(e.message).toContain(`Invalid option ${path}`);
  });

  it('accepts what real deployments use', () => {
    expect(dnsDiscovery({ name: 'users.default.svc.cluster.local.', port: 8080 }).options).toMatchObject({
      type: 'A',
      minTtlMs: 1_000,
      maxTtlMs: 30_000,
      timeoutMs: 2_000,
      tries: 2,
    });
    expect(
      dnsDiscovery({
        name: '_http._tcp.users.default.svc.cluster.local',
        type: 'SRV',
        servers: ['[::1]:53', '10.0.0.10'],
      }).options.targets,
    ).toBe('A');
    expect(
      dnsDiscovery({ name: 'users.service.consul', type: 'A+AAAA', port: 80, servers: ['127.0.0.1:8600'] })
        .kind,
    ).toBe('dns');
  });

  it('without a name the logical service name is used, and must be a DNS name', () => {
    const d = dnsDiscovery({ port: 80, servers: ['127.0.0.1:1'] });
    const e = configError(() =>
      d.resolve({ service: 'bad..name', clock: new FakeClock(), rng: seededRng(1), logger: silentLogger }),
    );
    expect(e.path).toBe('dnsDiscovery.name');
  });

  it('a bad option fails createMesh before anything runs', () => {
    expect(() =>
      createMesh({ services: { users: { discovery: dnsDiscovery({ name: 'users.test', port: 99999 }) } } }),
    ).toThrow(ConfigError);
  });

  it('registerService: weights must be integers in 1..65535', async () => {
    await expect(registerService({ name: 'users', port: 80, weights: { passing: 0 } })).rejects.toMatchObject(
      {
        path: 'registerService.weights.passing',
      },
    );
    await expect(
      registerService({ name: 'users', port: 80, weights: { passing: 2, warning: 1.5 } }),
    ).rejects.toMatchObject({ path: 'registerService.weights.warning' });
  });
});

describe('DNS answers and errors', () => {
  const err = (code: string): Error => Object.assign(new Error(code), { code });
  it('NXDOMAIN and NODATA are answers; everything else a DnsQueryError of a kind', () => {
    expect(classifyDnsError(err('ENOTFOUND'), 'A x')).toBe('nxdomain');
    expect(classifyDnsError(err('ENODATA'), 'A x')).toBe('nodata');
    const kinds = ['ESERVFAIL', 'EREFUSED', 'ETIMEOUT', 'ECONNREFUSED', 'EBADRESP', 'ENOMEM'].map((c) => {
      const e = classifyDnsError(err(c), 'A x');
      expect(e).toBeInstanceOf(DnsQueryError);
      return (e as DnsQueryError).kind;
    });
    expect(kinds).toEqual(['servfail', 'refused', 'timeout', 'unreachable', 'malformed', 'other']);
  });

  it('TTLs become refresh delays within the bounds; garbage counts as 0', () => {
    expect(refreshDelayMs(0, 1_000, 30_000)).toBe(1_000);
    expect(refreshDelayMs(5, 1_000, 30_000)).toBe(5_000);
    expect(refreshDelayMs(86_400, 1_000, 30_000)).toBe(30_000);
    expect(refreshDelayMs(-1, 1_000, 30_000)).toBe(1_000);
    expect(refreshDelayMs(Number.NaN, 1_000, 30_000)).toBe(1_000);
    expect(refreshDelayMs(undefined, 1_000, 30_000)).toBe(1_000);
  });

  it('SRV weights: as given; weight 0 is 1 when the whole priority has 0, else 1 % of the smallest', () => {
    const r = (priority: number, weight: number) => ({ name: 't', port: 1, priority, weight });
    expect(srvWeights([r(1, 0), r(1, 0), r(2, 5), r(2, 0), r(2, 10)])).toEqual([1, 1, 5, 0.05, 10]);
  });
});

describe('TieredDistributor', () => {
  const env = () => ({ clock: new FakeClock(), rng: seededRng(11) });
  const node = (id: string, priority: number, status: 'ready' | 'busy' | 'down' = 'ready') => {
    const n = new TestNode(id, new FixedLoad(0), 1, status) as TestNode & { priority: number };
    n.priority = priority;
    return n;
  };
  const picks = (
    d: TieredDistributor<TestNode>,
    n: number,
    avoid?: ReadonlySet<string>,
  ): Record<string, number> => {
    const out: Record<string, number> = {};
    for (let i = 0; i < n; i++) {
      const p = d.pick(avoid)!;
      out[p.id] = (out[p.id] ?? 0) + 1;
    }
    return out;
  };

  it.each([
    ['p2cPeakEwma', p2cPeakEwma()],
    ['roundRobin', roundRobin()],
  ])(
    '%s: the lowest tier with a ready endpoint serves; the next takes over when it has none',
    (_n, factory) => {
      const d = new TieredDistributor<TestNode>(factory, env());
      const [a, b, c] = [node('a', 1), node('b', 1), node('c', 2)];
      d.update([c, a, b]);
      expect(d.tierSizes).toEqual([
        { priority: 1, endpoints: 2 },
        { priority: 2, endpoints: 1 },
      ]);
      expect(picks(d, 200).c).toBeUndefined();
      a.status = 'busy';
      b.status = 'down';
      expect(picks(d, 100)).toEqual({ c: 100 });
      b.status = 'ready';
      expect(picks(d, 100).c).toBeUndefined();
    },
  );

  it('a retry prefers an untried ready endpoint of the next tier to the tried one', () => {
    const d = new TieredDistributor<TestNode>(roundRobin(), env());
    const [a, c] = [node('a', 1), node('c', 2)];
    d.update([a, c]);
    expect(d.pick(new Set(['a']))!.id).toBe('c');
    expect(d.pick(new Set(['a', 'c']))!.id).toBe('a');
  });

  it('every endpoint not ready: the lowest tier still answers (the balancers’ last resort)', () => {
    const d = new TieredDistributor<TestNode>(roundRobin(), env());
    d.update([node('a', 1, 'busy'), node('c', 2, 'down')]);
    expect(d.pick()!.id).toBe('a');
  });

  it('apply moves an endpoint between tiers and drops empty tiers in O(change)', () => {
    const d = new TieredDistributor<TestNode>(p2cPeakEwma(), env());
    const [a, b, c] = [node('a', 1), node('b', 1), node('c', 2)];
    d.update([a, b, c]);
    const a2 = node('a', 3);
    d.apply([], [b], [a2]);
    expect(d.tierSizes).toEqual([
      { priority: 2, endpoints: 1 },
      { priority: 3, endpoints: 1 },
    ]);
    expect(picks(d, 50)).toEqual({ c: 50 });
    d.apply([node('d', 0)], [c], []);
    expect(d.tierSizes.map((t) => t.priority)).toEqual([0, 3]);
    expect(picks(d, 50)).toEqual({ d: 50 });
    d.update([]);
    expect(d.pick()).toBeUndefined();
  });

  it('one tier: picks go straight to the tier’s distributor', () => {
    const d = new TieredDistributor<TestNode>(roundRobin(), env());
    d.update([node('a', 0), node('b', 0)]);
    expect(picks(d, 10)).toEqual({ a: 5, b: 5 });
  });
});

describe('refresh schedule (fake clock)', () => {
  // A refresh starts in the microtasks after its (fake) timer fires; one turn of the event loop runs them all.
  const flush = (): Promise<void> => new Promise((res) => setImmediate(res));

  async function setup(handler: () => DnsReply, options: Record<string, unknown> = {}) {
    const dns = await startDnsServer(handler);
    cleanup.push(() => dns.close());
    const clock = new FakeClock();
    const r = dnsDiscovery({ name: 'users.test', port: 80, servers: [dns.address], ...options }).resolve({
      service: 'users',
      clock,
      rng: seededRng(5),
      logger: silentLogger,
    });
    cleanup.push(() => r.close());
    return { dns, clock, r };
  }

  it('refreshes when the TTL runs out, not before', async () => {
    const { dns, clock, r } = await setup(() => ({ answers: [{ type: 'A', address: '127.0.0.1', ttl: 5 }] }));
    await until(() => r.addr.state === 'bound');
    await until(() => r.snapshot().refreshMs === 5_000);
    clock.advance(4_999);
    await flush();
    expect(r.snapshot().stats.lookups).toBe(1);
    clock.advance(1);
    await until(() => dns.questions.length === 2);
  });

  it('after a failure the next try waits a jittered backoff: half the step plus a random share', async () => {
    const { dns, clock, r } = await setup(() => ({ rcode: 2 }), { backoff: { baseMs: 1_000, maxMs: 8_000 } });
    await until(() => r.addr.state === 'failed');
    // First retry after 500..1000 ms, second after 1000..2000 ms.
    clock.advance(499);
    await flush();
    expect(r.snapshot().stats.lookups).toBe(1);
    clock.advance(501);
    await until(() => dns.questions.length === 2);
    await until(() => r.snapshot().consecutiveErrors === 2);
    clock.advance(999);
    await flush();
    expect(r.snapshot().stats.lookups).toBe(2);
    clock.advance(1_001);
    await until(() => dns.questions.length === 3);
  });
});
