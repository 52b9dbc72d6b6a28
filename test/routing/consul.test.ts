// Routing with a real Consul: two dev agents joined over the WAN as datacenters dc1 and dc2. Subsets by meta
// and tag share one watch; a destination fails over to dc2 when every instance in dc1 goes critical and comes
// back when one recovers; and an override set at service A reaches service C through service B, each hop a
// real HTTP server running meshHandler with overrides trusted and its own mesh with overrides enabled.
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { consulDiscovery, createMesh, meshHandler, type Mesh } from 'meshfetch';
import { registerInstance, setCheck, startConsul, waitFor, type ConsulAgent } from '../support/consul.js';
import { startServer, type TestServer } from '../support/servers.js';

let dc1: ConsulAgent;
let dc2: ConsulAgent;
let s: TestServer[] = [];
const meshes: Mesh[] = [];
const servers: Server[] = [];

beforeAll(async () => {
  [dc1, s] = await Promise.all([
    startConsul({ datacenter: 'dc1' }),
    Promise.all([1, 2, 3, 4, 5].map(() => startServer())),
  ]);
  dc2 = await startConsul({ datacenter: 'dc2', joinWan: dc1.serfWanAddr });
  await waitFor(
    async () => (await dc1.api<string[]>('GET', '/v1/catalog/datacenters')).includes('dc2'),
    'dc1 sees dc2 over the WAN',
    15_000,
  );
});
afterEach(async () => {
  await Promise.all(meshes.splice(0).map((m) => m.close({ gracePeriodMs: 500 })));
  await Promise.all(servers.splice(0).map((x) => new Promise<void>((r) => x.close(() => r()))));
  for (const x of s) x.received.length = 0;
});
afterAll(async () => {
  await Promise.all(s.map((x) => x.close()));
  await Promise.all([dc1?.stop(), dc2?.stop()]);
});

const consul = () => consulDiscovery({ address: dc1.httpAddr, backoff: { baseMs: 20, maxMs: 200 } });

/** Index of the test server that answered. */
async function who(m: Mesh, url: string, headers: Record<string, string> = {}): Promise<number> {
  const before = s.map((x) => x.received.length);
  const res = await m.request(url, { headers });
  await res.body.text();
  expect(res.statusCode).toBe(200);
  return s.findIndex((x, i) => x.received.length > before[i]!);
}

describe('routing with Consul', () => {
  it('routes to subsets by meta and by tag over one shared watch', async () => {
    const [a, b, c] = s as [TestServer, TestServer, TestServer];
    await registerInstance(dc1, {
      name: 'shop',
      id: 'shop-a',
      address: '127.0.0.1',
      port: a.port,
      meta: { version: 'v1' },
    });
    await registerInstance(dc1, {
      name: 'shop',
      id: 'shop-b',
      address: '127.0.0.1',
      port: b.port,
      meta: { version: 'v2' },
    });
    await registerInstance(dc1, {
      name: 'shop',
      id: 'shop-c',
      address: '127.0.0.1',
      port: c.port,
      tags: ['canary'],
      meta: { version: 'v2' },
    });
    const m = createMesh({
      services: {
        shop: {
          discovery: consul(),
          balancer: 'round-robin',
          destinations: {
            v1: { subset: { meta: { version: 'v1' } } },
            v2: { subset: { meta: { version: 'v2' } } },
            canary: { subset: { tags: ['canary'] } },
          },
          routes: [
            { match: { headers: { 'x-canary': '1' } }, to: 'canary' },
            { match: { pathPrefix: '/v2/' }, to: 'v2' },
            { to: 'v1' },
          ],
        },
      },
    });
    meshes.push(m);
    expect(await who(m, 'http://shop/x')).toBe(0);
    expect(await who(m, 'http://shop/x', { 'x-canary': '1' })).toBe(2);
    const v2 = new Set<number>();
    for (let i = 0; i < 10; i++) v2.add(await who(m, 'http://shop/v2/x'));
    expect([...v2].sort()).toEqual([1, 2]);
    // One Consul watch for the four destinations (primary, v1, v2, canary).
    expect(m.snapshot().services[0]!.routing!.destinations.map((d) => [d.name, d.endpoints])).toEqual([
      ['primary', 3],
      ['v1', 1],
      ['v2', 2],
      ['canary', 1],
    ]);
    // A change to v2's instances reaches v2 only.
    await setCheck(dc1, 'shop-b', 'critical');
    await waitFor(
      () => m.snapshot().services[0]!.routing!.destinations[2]!.endpoints === 1,
      'v2 shrinks',
      5_000,
    );
    for (let i = 0; i < 5; i++) expect(await who(m, 'http://shop/v2/x')).toBe(2);
  });

  it('fails over to dc2 when every dc1 instance goes critical, and back when one recovers', async () => {
    const [a, b, , , e] = s as [TestServer, TestServer, TestServer, TestServer, TestServer];
    await registerInstance(dc1, { name: 'geo', id: 'geo-a', address: '127.0.0.1', port: a.port });
    await registerInstance(dc1, { name: 'geo', id: 'geo-b', address: '127.0.0.1', port: b.port });
    await registerInstance(dc2, { name: 'geo', id: 'geo-e', address: '127.0.0.1', port: e.port });
    const m = createMesh({
      services: {
        geo: {
          discovery: consul(),
          destinations: { local: { fallbacks: ['remote'] }, remote: { datacenter: 'dc2' } },
          routes: [{ to: 'local' }],
        },
      },
    });
    meshes.push(m);
    expect([0, 1]).toContain(await who(m, 'http://geo/'));
    await setCheck(dc1, 'geo-a', 'critical');
    await setCheck(dc1, 'geo-b', 'critical');
    const routing = () => m.snapshot().services[0]!.routing!.destinations;
    await waitFor(
      () => routing().find((d) => d.name === 'local')!.availability === 'down',
      'dc1 down',
      5_000,
    );
    expect(routing().find((d) => d.name === 'remote')).toMatchObject({ datacenter: 'dc2', endpoints: 1 });
    for (let i = 0; i < 5; i++) expect(await who(m, 'http://geo/')).toBe(4);

    await setCheck(dc1, 'geo-b', 'passing');
    await waitFor(
      () => routing().find((d) => d.name === 'local')!.availability === 'ready',
      'dc1 back',
      5_000,
    );
    for (let i = 0; i < 5; i++) expect(await who(m, 'http://geo/')).toBe(1);
  });

  it('carries an override from A through B to C (environment isolation)', async () => {
    const [, , , d, e] = s as [TestServer, TestServer, TestServer, TestServer, TestServer];
    // C: a shared instance and alice's.
    await registerInstance(dc1, {
      name: 'svc-c',
      id: 'c-main',
      address: '127.0.0.1',
      port: d.port,
      meta: { env: 'shared' },
    });
    await registerInstance(dc1, {
      name: 'svc-c',
      id: 'c-alice',
      address: '127.0.0.1',
      port: e.port,
      meta: { owner: 'alice' },
    });
    const serve = async (name: string, handler: Parameters<typeof meshHandler>[0]): Promise<number> => {
      const srv = createServer(meshHandler(handler, { overrides: { trust: () => true } }));
      servers.push(srv);
      await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
      const port = (srv.address() as AddressInfo).port;
      await registerInstance(dc1, {
        name,
        id: `${name}-${port}`,
        address: '127.0.0.1',
        port,
        meta: { env: 'shared' },
      });
      return port;
    };
    const meshFor = (name: string): Mesh => {
      const m = createMesh({
        overrides: { enabled: true },
        services: {
          [name]: {
            discovery: consul(),
            destinations: { main: { subset: { meta: { env: 'shared' } } } },
            routes: [{ to: 'main' }],
          },
        },
      });
      meshes.push(m);
      return m;
    };
    const meshB = meshFor('svc-c');
    const meshA = meshFor('svc-b');
    // B calls C; A calls B. Neither handler knows about overrides.
    await serve('svc-b', async (_req, res) => {
      const r = await meshB.request('http://svc-c/');
      const body = (await r.body.json()) as { headers: Record<string, string> };
      res.end(`c saw ${body.headers['mesh-dtab'] ?? 'nothing'}`);
    });
    const aPort = await serve('svc-a', async (_req, res) => {
      const r = await meshA.request('http://svc-b/');
      res.end(await r.body.text());
    });
    const callA = (headers: Record<string, string>): Promise<string> =>
      new Promise((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port: aPort, headers }, (res) => {
          let t = '';
          res.on('data', (c: Buffer) => (t += c.toString()));
          res.on('end', () => resolve(t));
        });
        req.on('error', reject);
        req.end();
      });
    await waitFor(
      async () => (await dc1.api<unknown[]>('GET', '/v1/health/service/svc-b?passing')).length === 1,
      'b registered',
    );

    expect(await callA({})).toBe('c saw nothing');
    expect(d.received).toHaveLength(1);
    const dtab = 'svc-c => owner=alice';
    for (let i = 0; i < 3; i++) expect(await callA({ 'mesh-dtab': dtab })).toBe(`c saw ${dtab}`);
    expect(e.received).toHaveLength(3);
    expect(d.received).toHaveLength(1);
    // Other traffic is untouched.
    expect(await callA({})).toBe('c saw nothing');
    expect(d.received).toHaveLength(2);
  });
});
