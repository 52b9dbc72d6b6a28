// DNS discovery against a fault-injection DNS server on loopback (test/support/dns-server.ts): what each kind
// of answer and failure does to the endpoint set and to calls. A record set is followed and balanced over
// every address; SERVFAIL, REFUSED, timeouts and a stopped server keep the last good set (stale, with its
// age) while calls continue; NXDOMAIN is a negative answer and NODATA an empty set; garbage TTLs stay within
// the bounds; a truncated answer is fetched again over TCP; SRV targets, weights and priorities become
// weighted endpoints in failover tiers; and a DNS-backed routing destination works like any other.
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { afterEach, describe, expect, it } from 'vitest';
import {
  CHANNELS,
  createMesh,
  dnsDiscovery,
  DiscoveryError,
  NoHealthyEndpointsError,
  ServiceNotFoundError,
  type DiscoveryErrorEvent,
  type DnsResolver,
  type Mesh,
} from 'meshfetch';
import { silentLogger } from '../../src/core/logger.js';
import { systemClock } from '../../src/core/clock.js';
import { seededRng } from '../../src/core/rng.js';
import type { Addr } from '../../src/discovery/types.js';
import { startDnsServer, loopbackRecords, type DnsReply, type TestDnsServer } from '../support/dns-server.js';
import { startLoopbackFleet, type LoopbackFleet } from '../support/loopback-fleet.js';
import { until } from '../support/until.js';

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function dnsServer(
  handler: (name: string, type: unknown) => DnsReply,
  tcp = false,
): Promise<TestDnsServer> {
  const s = await startDnsServer((q) => handler(q.name, q.type), { tcp });
  cleanup.push(() => s.close());
  return s;
}

async function fleet(hosts: string[]): Promise<LoopbackFleet> {
  const f = await startLoopbackFleet(hosts);
  cleanup.push(() => f.close());
  return f;
}

function mesh(config: Parameters<typeof createMesh>[0]): Mesh {
  const m = createMesh(config);
  cleanup.push(() => m.close({ gracePeriodMs: 200 }));
  return m;
}

const ctx = { service: 'users', clock: systemClock, rng: seededRng(7), logger: silentLogger };

function resolver(options: Parameters<typeof dnsDiscovery>[0]): DnsResolver {
  const r = dnsDiscovery(options).resolve(ctx);
  cleanup.push(() => r.close());
  return r;
}

/** Resolves with the first Addr (current or next) that satisfies `check`. */
function addrWhere(r: DnsResolver, check: (a: Addr) => boolean, ms = 5_000): Promise<Addr> {
  if (check(r.addr)) return Promise.resolve(r.addr);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      sub.unsubscribe();
      reject(new Error(`no matching Addr in ${ms} ms; last: ${JSON.stringify(r.snapshot())}`));
    }, ms);
    const sub = r.subscribe((a) => {
      if (!check(a)) return;
      clearTimeout(timer);
      sub.unsubscribe();
      resolve(a);
    });
  });
}

const bound = (n: number) => (a: Addr) => a.state === 'bound' && !a.stale && a.endpoints.length === n;

async function call(m: Mesh, url = 'http://users/'): Promise<string> {
  const res = await m.request(url);
  const text = await res.body.text();
  expect(res.statusCode).toBe(200);
  return text;
}

/** `n` calls at once: traffic with some concurrency, as a service sees it (sequential calls on loopback let
 * Peak EWMA keep to the first measured endpoints for a while). */
async function calls(m: Mesh, n: number): Promise<void> {
  await Promise.all(Array.from({ length: n }, () => call(m)));
}

describe('dnsDiscovery: answers', () => {
  it('balances over every A record and follows a change at the next refresh', async () => {
    const hosts = ['127.0.0.1', '127.0.0.2', '127.0.0.3'];
    const f = await fleet([...hosts, '127.0.0.4']);
    let records = hosts;
    const dns = await dnsServer(() => ({
      answers: records.map((address) => ({ type: 'A' as const, address, ttl: 0 })),
    }));
    const m = mesh({
      services: {
        users: {
          discovery: dnsDiscovery({ name: 'users.test', port: f.port, servers: [dns.address], minTtlMs: 50 }),
        },
      },
    });
    for (let i = 0; i < 10; i++) await calls(m, 8);
    for (const h of hosts) expect(f.hits.get(h) ?? 0).toBeGreaterThan(0);
    records = [...hosts, '127.0.0.4'];
    await until(() => m.snapshot().services[0]!.endpoints.length === 4, 5_000, 'timer');
    for (let i = 0; i < 50 && (f.hits.get('127.0.0.4') ?? 0) === 0; i++) await calls(m, 8);
    expect(f.hits.get('127.0.0.4') ?? 0).toBeGreaterThan(0);
    const snap = m.snapshot().services[0]!;
    expect(snap.discovery).toMatchObject({ kind: 'dns', state: 'bound', stale: false });
  });

  it('NXDOMAIN is a negative answer: calls fail with ServiceNotFoundError naming the DNS name', async () => {
    const dns = await dnsServer(() => ({ rcode: 3 }));
    const m = mesh({
      services: {
        users: { discovery: dnsDiscovery({ name: 'gone.test', port: 8080, servers: [dns.address] }) },
      },
    });
    const err = await m.request('http://users/').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ServiceNotFoundError);
    expect((err as Error).message).toContain('"gone.test" does not exist (NXDOMAIN)');
    expect(m.snapshot().services[0]!.discovery).toMatchObject({ kind: 'dns', state: 'negative' });
  });

  it('NODATA (the name exists without records of the type) is an empty set: NoHealthyEndpointsError', async () => {
    const dns = await dnsServer(() => ({ answers: [] }));
    const r = resolver({ name: 'empty.test', port: 8080, servers: [dns.address] });
    await addrWhere(r, bound(0));
    expect(r.snapshot().stats.nodata).toBe(1);
    const m = mesh({
      services: {
        users: { discovery: dnsDiscovery({ name: 'empty.test', port: 8080, servers: [dns.address] }) },
      },
    });
    await expect(m.request('http://users/')).rejects.toBeInstanceOf(NoHealthyEndpointsError);
  });

  it('A+AAAA: both families, one endpoint per address', async () => {
    const dns = await dnsServer((_name, type) => ({
      answers:
        type === 'A'
          ? [{ type: 'A', address: '127.0.0.1', ttl: 5 }]
          : [{ type: 'AAAA', address: '::1', ttl: 5 }],
    }));
    const r = resolver({ name: 'dual.test', type: 'A+AAAA', port: 8080, servers: [dns.address] });
    const a = await addrWhere(r, bound(2));
    if (a.state !== 'bound') throw new Error('unreachable');
    expect(a.endpoints.map((e) => e.id).sort()).toEqual(['127.0.0.1:8080', '[::1]:8080']);
  });

  it('keeps Endpoint objects across refreshes and publishes only what changed', async () => {
    let n = 3;
    const dns = await dnsServer(() => ({ answers: loopbackRecords(n, 0) }));
    const r = resolver({ name: 'many.test', port: 8080, servers: [dns.address], minTtlMs: 20 });
    const first = await addrWhere(r, bound(3));
    const updates: Addr[] = [];
    r.subscribe((a) => updates.push(a));
    const lookups = r.snapshot().stats.lookups;
    await until(() => r.snapshot().stats.lookups >= lookups + 3, 5_000, 'timer');
    expect(updates).toEqual([]); // unchanged refreshes publish nothing
    n = 4;
    const next = await addrWhere(r, bound(4));
    if (first.state !== 'bound' || next.state !== 'bound') throw new Error('unreachable');
    expect(next.changes).toEqual({ added: [next.endpoints[3]], removed: [], updated: [] });
    for (let i = 0; i < 3; i++) expect(next.endpoints[i]).toBe(first.endpoints[i]);
  });
});

describe('dnsDiscovery: TTLs', () => {
  it.each([
    ['0', 0, 40],
    ['3600 s', 3600, 400],
    ['0xFFFFFFFF (top bit set)', 0xffffffff, 40],
    ['0x80000000', 0x80000000, 40],
    ['2', 2, 400],
  ])('TTL %s gives a refresh within minTtlMs..maxTtlMs', async (_label, ttl, expected) => {
    const dns = await dnsServer(() => ({ answers: [{ type: 'A', address: '127.0.0.1', ttl }] }));
    const r = resolver({ name: 'ttl.test', port: 8080, servers: [dns.address], minTtlMs: 40, maxTtlMs: 400 });
    await addrWhere(r, bound(1));
    const refreshMs = r.snapshot().refreshMs!;
    expect(refreshMs).toBeGreaterThanOrEqual(40);
    expect(refreshMs).toBeLessThanOrEqual(400);
    // A top-bit TTL is 0 (RFC 2181 section 8) or, if the resolver reads it as unsigned, a very long one.
    if (ttl < 0x80000000) expect(refreshMs).toBe(expected);
  });

  it('refreshes at the TTL, not faster (TTL 1 s, minTtlMs 100)', async () => {
    const dns = await dnsServer(() => ({ answers: [{ type: 'A', address: '127.0.0.1', ttl: 1 }] }));
    const r = resolver({ name: 'pace.test', port: 8080, servers: [dns.address], minTtlMs: 100 });
    await addrWhere(r, bound(1));
    const t0 = performance.now();
    await until(() => dns.questions.length >= 2, 5_000, 'timer');
    expect(performance.now() - t0).toBeGreaterThan(700);
    expect(r.snapshot().refreshMs).toBe(1_000);
  });
});

describe('dnsDiscovery: failures keep the last good set', () => {
  it('SERVFAIL and REFUSED: the set goes stale with its age, calls continue, a discovery error is published', async () => {
    const f = await fleet(['127.0.0.1', '127.0.0.2']);
    let reply: DnsReply = {
      answers: [
        { type: 'A', address: '127.0.0.1', ttl: 0 },
        { type: 'A', address: '127.0.0.2', ttl: 0 },
      ],
    };
    const dns = await dnsServer(() => reply);
    const events: DiscoveryErrorEvent[] = [];
    const onError = (m: unknown): void => void events.push(m as DiscoveryErrorEvent);
    subscribe(CHANNELS.discoveryError, onError);
    cleanup.push(async () => unsubscribe(CHANNELS.discoveryError, onError));
    const m = mesh({
      services: {
        users: {
          discovery: dnsDiscovery({
            name: 'flaky.test',
            port: f.port,
            servers: [dns.address],
            minTtlMs: 30,
            backoff: { baseMs: 20, maxMs: 60 },
          }),
        },
      },
    });
    await call(m);
    for (const rcode of [2, 5]) {
      reply = { rcode };
      await until(() => m.snapshot().services[0]!.discovery.stale, 5_000, 'timer');
      for (let i = 0; i < 20; i++) await call(m);
      const age0 = m.snapshot().services[0]!.discovery.ageMs!;
      await until(() => m.snapshot().services[0]!.discovery.ageMs! > age0 + 100, 5_000, 'timer');
      expect(m.snapshot().services[0]!.endpoints).toHaveLength(2);
      reply = {
        answers: [
          { type: 'A', address: '127.0.0.1', ttl: 0 },
          { type: 'A', address: '127.0.0.2', ttl: 0 },
        ],
      };
      await until(() => !m.snapshot().services[0]!.discovery.stale, 5_000, 'timer');
    }
    const kinds = new Set(events.filter((e) => e.kind === 'dns').map((e) => e.errorKind));
    expect(kinds).toEqual(new Set(['servfail', 'refused']));
    expect(events.every((e) => e.stale && e.service === 'users')).toBe(true);
  });

  it('a stopped server (ECONNREFUSED at once) keeps the last set serving', async () => {
    const f = await fleet(['127.0.0.1']);
    const dns = await startDnsServer(() => ({ answers: [{ type: 'A', address: '127.0.0.1', ttl: 0 }] }));
    const discovery = dnsDiscovery({
      name: 'stop.test',
      port: f.port,
      servers: [dns.address],
      minTtlMs: 30,
      backoff: { baseMs: 20, maxMs: 60 },
    });
    const m = mesh({ services: { users: { discovery } } });
    await call(m);
    await dns.close();
    await until(() => m.snapshot().services[0]!.discovery.stale, 5_000, 'timer');
    for (let i = 0; i < 20; i++) await call(m);
    expect(f.hits.get('127.0.0.1')).toBe(21);
  });

  it('before any answer a failure is a DiscoveryError for calls (timeouts: a server that never answers)', async () => {
    const dns = await dnsServer(() => ({ drop: true }));
    const r = resolver({ name: 'silent.test', port: 8080, servers: [dns.address], timeoutMs: 50, tries: 1 });
    const a = await addrWhere(r, (x) => x.state === 'failed');
    if (a.state !== 'failed') throw new Error('unreachable');
    expect(a.error.message).toMatch(/no answer in time \[ETIMEOUT\]/);
    const m = mesh({
      services: {
        users: {
          discovery: dnsDiscovery({
            name: 'silent.test',
            port: 8080,
            servers: [dns.address],
            timeoutMs: 50,
            tries: 1,
          }),
        },
      },
    });
    const err = await m.request('http://users/').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DiscoveryError);
  });

  it('a truncated UDP answer is fetched again over TCP (300 records)', async () => {
    const records = loopbackRecords(300, 5);
    const dns = await dnsServer(() => ({ answers: records, truncate: true }), true);
    const r = resolver({ name: 'big.test', port: 8080, servers: [dns.address] });
    await addrWhere(r, bound(300));
    expect(dns.questions.map((q) => q.transport)).toEqual(['udp', 'tcp']);
  });

  it('a truncated answer with no TCP listener is a failure, not an empty set', async () => {
    const dns = await dnsServer(() => ({ answers: loopbackRecords(300, 5), truncate: true }), false);
    const r = resolver({ name: 'big.test', port: 8080, servers: [dns.address], timeoutMs: 200, tries: 1 });
    const a = await addrWhere(r, (x) => x.state === 'failed');
    expect(a.state).toBe('failed');
  });

  it('close() cancels a query in flight and settles at once', async () => {
    const dns = await dnsServer(() => ({ drop: true }));
    const r = dnsDiscovery({
      name: 'slow.test',
      port: 8080,
      servers: [dns.address],
      timeoutMs: 10_000,
    }).resolve(ctx);
    await until(() => dns.questions.length > 0, 5_000, 'timer');
    const t0 = performance.now();
    await r.close();
    expect(performance.now() - t0).toBeLessThan(1_000);
    expect(r.addr.state).toBe('pending');
  });
});

describe('dnsDiscovery: SRV', () => {
  it('targets become addresses, weights balancer weights, priorities tiers; unknown targets are skipped', async () => {
    const dns = await dnsServer((name, type) => {
      if (type === 'SRV' && name === '_http._tcp.users.test') {
        return {
          answers: [
            { type: 'SRV', target: 'a.users.test', port: 9001, priority: 10, weight: 3 },
            { type: 'SRV', target: 'b.users.test', port: 9002, priority: 10, weight: 1 },
            { type: 'SRV', target: 'c.users.test', port: 9003, priority: 20, weight: 0 },
            { type: 'SRV', target: '127.0.0.9', port: 9009, priority: 20, weight: 0 },
            { type: 'SRV', target: 'gone.users.test', port: 9004, priority: 10, weight: 1 },
          ],
        };
      }
      const map: Record<string, string> = {
        'a.users.test': '127.0.0.1',
        'b.users.test': '127.0.0.2',
        'c.users.test': '127.0.0.3',
      };
      if (type === 'A' && map[name]) return { answers: [{ type: 'A', address: map[name]!, ttl: 7 }] };
      return { rcode: 3 };
    });
    const r = resolver({ name: '_http._tcp.users.test', type: 'SRV', servers: [dns.address] });
    const a = await addrWhere(r, bound(4));
    if (a.state !== 'bound') throw new Error('unreachable');
    expect(a.endpoints.map((e) => [e.id, e.weight, e.priority ?? 0])).toEqual([
      ['127.0.0.1:9001', 3, 10],
      ['127.0.0.2:9002', 1, 10],
      ['127.0.0.3:9003', 1, 20],
      ['127.0.0.9:9009', 1, 20],
    ]);
    expect(r.skipped).toEqual([{ target: 'gone.users.test', port: 9004, reason: 'NXDOMAIN' }]);
    expect(r.snapshot().refreshMs).toBe(7_000);
  });

  it('the lowest tier with ready endpoints serves; the next takes over when it has none', async () => {
    const f = await fleet(['127.0.0.1', '127.0.0.2', '127.0.0.3']);
    let primary = ['127.0.0.1', '127.0.0.2'];
    const dns = await dnsServer((name, type) => {
      if (type === 'SRV') {
        return {
          answers: [
            { type: 'SRV', target: 'primary.test', port: f.port, priority: 1, weight: 1 },
            { type: 'SRV', target: 'backup.test', port: f.port, priority: 2, weight: 1 },
          ],
        };
      }
      if (name === 'primary.test')
        return primary.length
          ? { answers: primary.map((address) => ({ type: 'A' as const, address, ttl: 0 })) }
          : { answers: [] };
      return { answers: [{ type: 'A', address: '127.0.0.3', ttl: 0 }] };
    });
    const m = mesh({
      services: {
        users: {
          discovery: dnsDiscovery({
            name: '_http._tcp.users.test',
            type: 'SRV',
            servers: [dns.address],
            minTtlMs: 30,
          }),
        },
      },
    });
    for (let i = 0; i < 40; i++) await call(m);
    expect(f.hits.get('127.0.0.3') ?? 0).toBe(0);
    expect((f.hits.get('127.0.0.1') ?? 0) + (f.hits.get('127.0.0.2') ?? 0)).toBe(40);
    expect(m.snapshot().services[0]!.endpoints.map((e) => e.priority)).toEqual([1, 1, 2]);

    // Tier 1 stops answering: connection refused marks its endpoints failing; calls are retried on tier 2.
    await f.remove('127.0.0.1');
    await f.remove('127.0.0.2');
    for (let i = 0; i < 40; i++) await call(m);
    const before = f.hits.get('127.0.0.3')!;
    for (let i = 0; i < 20; i++) await call(m);
    expect(f.hits.get('127.0.0.3')).toBe(before + 20);

    // Tier 1 leaves DNS: tier 2 alone.
    primary = [];
    await until(() => m.snapshot().services[0]!.endpoints.length === 1, 5_000, 'timer');
    // Tier 1 comes back in DNS and up: it serves again.
    await f.add('127.0.0.1');
    primary = ['127.0.0.1'];
    await until(() => m.snapshot().services[0]!.endpoints.length === 2, 5_000, 'timer');
    const b3 = f.hits.get('127.0.0.3')!;
    for (let i = 0; i < 20; i++) await call(m);
    expect(f.hits.get('127.0.0.3')).toBe(b3);
  });

  it('a target whose lookup fails keeps its previous addresses', async () => {
    let failB = false;
    const dns = await dnsServer((name, type) => {
      if (type === 'SRV') {
        return {
          answers: [
            { type: 'SRV', target: 'a.test', port: 9001 },
            { type: 'SRV', target: 'b.test', port: 9002 },
          ],
        };
      }
      if (name === 'b.test' && failB) return { rcode: 2 };
      return { answers: [{ type: 'A', address: name === 'a.test' ? '127.0.0.1' : '127.0.0.2', ttl: 0 }] };
    });
    const r = resolver({ name: '_x._tcp.test', type: 'SRV', servers: [dns.address], minTtlMs: 20 });
    await addrWhere(r, bound(2));
    failB = true;
    await until(() => r.snapshot().stats.targetErrors >= 2, 5_000, 'timer');
    expect(r.addr).toMatchObject({ state: 'bound', stale: false });
    if (r.addr.state === 'bound') expect(r.addr.endpoints).toHaveLength(2);
  });
});

describe('dnsDiscovery: routing', () => {
  it('a routing destination may be DNS-backed', async () => {
    const f = await fleet(['127.0.0.5', '127.0.0.6']);
    const dns = await dnsServer((name) => ({
      answers: [{ type: 'A', address: name === 'canary.test' ? '127.0.0.6' : '127.0.0.5', ttl: 5 }],
    }));
    const m = mesh({
      services: {
        users: {
          discovery: dnsDiscovery({ name: 'stable.test', port: f.port, servers: [dns.address] }),
          destinations: {
            canary: {
              discovery: dnsDiscovery({ name: 'canary.test', port: f.port, servers: [dns.address] }),
            },
          },
          routes: [{ match: { headers: { 'x-canary': '1' } }, to: 'canary' }, { to: 'primary' }],
        },
      },
    });
    const res = await m.request('http://users/', { headers: { 'x-canary': '1' } });
    expect(await res.body.text()).toBe('127.0.0.6');
    expect(await call(m)).toBe('127.0.0.5');
  });
});
