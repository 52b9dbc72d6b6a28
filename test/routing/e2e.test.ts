// Routing end to end, through createMesh and real HTTP servers on loopback with static endpoints: the split
// ratio (seeded rng), sticky assignment, header / method / path matches, a run-time weight change that leaves
// an in-flight call untouched and drains the destination it dropped, failover on an empty endpoint set and on
// an open breaker (and back), per-request overrides (applied and forwarded when enabled, ignored and removed
// when not, never sent to a host outside the mesh), and malformed overrides (a typed error, nothing else).
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createMesh, meshHandler, staticDiscovery, type Mesh } from 'meshfetch';
import { seededRng } from 'meshfetch/extend';
import { ConfigError } from '../../src/core/errors.js';
import { InvalidOverrideError, NoRouteError } from '../../src/routing/errors.js';
import { stickyIndex } from '../../src/routing/hash.js';
import { startServer, type TestServer } from '../support/servers.js';

let v1: TestServer;
let v2: TestServer;
let alice: TestServer;
let outside: TestServer;
let mesh: Mesh | undefined;

beforeAll(async () => {
  [v1, v2, alice, outside] = await Promise.all([startServer(), startServer(), startServer(), startServer()]);
});
afterEach(async () => {
  await mesh?.close({ gracePeriodMs: 500 });
  mesh = undefined;
  for (const s of [v1, v2, alice, outside]) s.received.length = 0;
});
afterAll(async () => {
  await Promise.all([v1, v2, alice, outside].map((s) => s.close()));
});

/** The users service: v1, v2 and alice's instance, told apart by meta. */
function users() {
  return staticDiscovery([
    { address: v1.address, meta: { version: 'v1' } },
    { address: v2.address, meta: { version: 'v2' } },
    { address: alice.address, meta: { version: 'v1', owner: 'alice' } },
  ]);
}

const destinations = {
  v1: { subset: { meta: { version: 'v1' } } },
  v2: { subset: { meta: { version: 'v2' } } },
};

/** Which server answered a call. */
async function who(
  m: Mesh,
  headers: Record<string, string> = {},
  path = '/',
  method = 'GET',
): Promise<string> {
  const before = [v1, v2, alice].map((s) => s.received.length);
  const res = await m.request(`http://users${path}`, { headers, method });
  await res.body.text();
  expect(res.statusCode).toBe(200);
  const i = [v1, v2, alice].findIndex((s, j) => s.received.length > before[j]!);
  return ['v1', 'v2', 'alice'][i] ?? 'none';
}

describe('rules and splits', () => {
  it('splits 80 / 20 within 4 % over 2000 calls (seeded rng)', async () => {
    mesh = createMesh({
      rng: seededRng(3),
      services: {
        users: {
          discovery: users(),
          destinations: { ...destinations, v1: { subset: { meta: { version: 'v1' }, tags: [] } } },
          routes: [
            {
              to: [
                { destination: 'v1', weight: 80 },
                { destination: 'v2', weight: 20 },
              ],
            },
          ],
        },
      },
    });
    const n = 2000;
    let onV2 = 0;
    for (let i = 0; i < n; i++) if ((await who(mesh)) === 'v2') onV2++;
    // Binomial sd at p = 0.2, n = 2000 is 0.9 %: 4 % is more than 4 of them.
    expect(Math.abs(onV2 / n - 0.2)).toBeLessThan(0.04);
  });

  it('keeps a sticky key on one destination, the one every process computes', async () => {
    mesh = createMesh({
      services: {
        users: {
          discovery: users(),
          destinations,
          routes: [
            {
              to: [
                { destination: 'v1', weight: 50 },
                { destination: 'v2', weight: 50 },
              ],
              sticky: { header: 'x-user' },
            },
          ],
        },
      },
    });
    const seen = new Set<string>();
    for (let u = 0; u < 30; u++) {
      const key = `user-${u}`;
      const expected = ['v1', 'v2'][
        stickyIndex(
          [
            { name: 'v1', weight: 50 },
            { name: 'v2', weight: 50 },
          ],
          key,
        )
      ];
      const got = new Set<string>();
      for (let k = 0; k < 4; k++) {
        const w = await who(mesh, { 'x-user': key });
        // The v1 subset holds alice's instance too (version=v1).
        got.add(w === 'alice' ? 'v1' : w);
      }
      expect([...got]).toEqual([expected]);
      seen.add(expected!);
    }
    expect(seen.size).toBe(2);
  });

  it('matches headers (A/B), methods and path prefixes in order; no match is a NoRouteError', async () => {
    mesh = createMesh({
      services: {
        users: {
          discovery: users(),
          destinations: { ...destinations, alice: { subset: { meta: { owner: 'alice' } } } },
          routes: [
            { name: 'b-group', match: { headers: { 'x-group': /^b(eta)?$/ } }, to: 'v2' },
            { name: 'writes', match: { method: ['POST', 'PUT'], pathPrefix: '/admin/' }, to: 'alice' },
            { name: 'v1-api', match: { path: /^\/v1\/[a-z]+$/ }, to: 'v1' },
          ],
        },
      },
    });
    expect(await who(mesh, { 'x-group': 'beta' })).toBe('v2');
    expect(await who(mesh, { 'x-group': 'b' })).toBe('v2');
    expect(await who(mesh, {}, '/admin/x?y=1', 'POST')).toBe('alice');
    expect(['v1', 'alice']).toContain(await who(mesh, { 'x-group': 'a' }, '/v1/users?q=1'));
    await expect(mesh.request('http://users/admin/x')).rejects.toBeInstanceOf(NoRouteError);
    await expect(mesh.fetch('http://users/other')).rejects.toMatchObject({ code: 'MESH_NO_ROUTE' });
  });

  it('changes weights at run time without touching an in-flight call, and drains what it dropped', async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    v1.handler = async (_req, res) => {
      res.write('start-');
      await held;
      res.end('end');
    };
    try {
      mesh = createMesh({
        services: { users: { discovery: users(), destinations, routes: [{ to: 'v1' }] } },
      });
      // Only v1 (not alice) for this test: a subset by meta and a fixed endpoint.
      mesh.setRoutes('users', [{ to: 'only-v1' }], {
        'only-v1': { endpoints: [v1.address] },
        v2: destinations.v2,
      });
      const inflight = await mesh.request('http://users/slow');
      expect(v1.received).toHaveLength(1);

      // A bad table is refused whole, naming the option, and changes nothing.
      expect(() => mesh!.setRoutes('users', [{ to: [{ destination: 'v2', weight: -1 }] }])).toThrow(
        expect.objectContaining({ path: 'services.users.routes[0].to[0].weight' }),
      );
      expect(mesh.snapshot().services[0]!.routing!.version).toBe(1);

      mesh.setRoutes('users', [{ to: 'v2' }], { v2: destinations.v2 });
      const snap = mesh.snapshot().services[0]!.routing!;
      expect(snap.version).toBe(2);
      expect(snap.draining).toEqual(['only-v1']);
      expect(mesh.routes('users')).toEqual([{ to: 'v2' }]);
      expect(await who(mesh)).toBe('v2');

      release();
      expect(await inflight.body.text()).toBe('start-end');
      expect(inflight.statusCode).toBe(200);
      // Drained and closed once its last call ended.
      await expect.poll(() => mesh!.snapshot().services[0]!.routing!.draining).toEqual([]);
      expect(await who(mesh)).toBe('v2');
    } finally {
      release();
      v1.handler = (await import('../support/servers.js')).echoHandler;
    }
  });
});

describe('failover', () => {
  it('fails over while the destination has no endpoints, and comes back when it has', async () => {
    const primary = staticDiscovery([v1.address]);
    mesh = createMesh({
      services: {
        users: {
          discovery: primary,
          destinations: { primary: { fallbacks: ['backup'] }, backup: { endpoints: [v2.address] } },
        },
      },
    });
    expect(await who(mesh)).toBe('v1');
    primary.set([]);
    expect(await who(mesh)).toBe('v2');
    expect(mesh.snapshot().services[0]!.routing!.destinations).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          name: 'primary',
          availability: 'down',
          endpoints: 0,
          fallbacks: ['backup'],
        }),
        expect.objectContaining({ name: 'backup', availability: 'ready', endpoints: 1 }),
      ]),
    );
    primary.set([v1.address]);
    expect(await who(mesh)).toBe('v1');
  });

  it('fails over while the breaker is open (the open breaker counts as no healthy endpoints)', async () => {
    v1.handler = (_req, res) => {
      res.statusCode = 503;
      res.end('down');
    };
    try {
      mesh = createMesh({
        services: {
          users: {
            endpoints: [v1.address],
            retries: false,
            failureAccrual: false,
            circuitBreaker: { volumeThreshold: 4, errorThresholdPercentage: 10, resetTimeoutMs: 60_000 },
            destinations: { primary: { fallbacks: ['backup'] }, backup: { endpoints: [v2.address] } },
          },
        },
      });
      for (let i = 0; i < 4; i++) {
        const r = await mesh.request('http://users/');
        await r.body.text();
        expect(r.statusCode).toBe(503);
      }
      const snap = mesh.snapshot().services[0]!.routing!;
      expect(snap.destinations.find((d) => d.name === 'primary')).toMatchObject({
        breaker: 'open',
        availability: 'down',
      });
      const before = v1.received.length;
      expect(await who(mesh)).toBe('v2');
      expect(await who(mesh)).toBe('v2');
      expect(v1.received.length).toBe(before);
    } finally {
      v1.handler = (await import('../support/servers.js')).echoHandler;
    }
  });
});

describe('per-request overrides', () => {
  const routed = (enabled: boolean): Mesh =>
    createMesh({
      overrides: { enabled },
      services: { users: { discovery: users(), destinations, routes: [{ to: 'v2' }] } },
    });

  it('applies the mesh-dtab header when enabled and forwards it to the mesh service', async () => {
    mesh = routed(true);
    expect(await who(mesh, { 'mesh-dtab': 'users => owner=alice' })).toBe('alice');
    expect(alice.received[0]!.headers['mesh-dtab']).toBe('users => owner=alice');
    expect(['v1', 'alice']).toContain(await who(mesh, { 'mesh-dtab': 'billing => #x;users=>#v1' }));
    // An entry for another service leaves this one on its rules.
    expect(await who(mesh, { 'mesh-dtab': 'billing => @dc2' })).toBe('v2');
    // Alternatives: the first available (nobody is owner=bob).
    expect(await who(mesh, { 'mesh-dtab': 'users => owner=bob | #v2' })).toBe('v2');
    const dests = mesh.snapshot().services[0]!.routing!.destinations;
    expect(dests.filter((d) => d.origin === 'override').map((d) => d.name)).toEqual([
      '~owner=alice',
      '~owner=bob',
    ]);
  });

  it('ignores and removes the header when overrides are not enabled', async () => {
    mesh = routed(false);
    expect(await who(mesh, { 'mesh-dtab': 'users => owner=alice' })).toBe('v2');
    expect(v2.received[0]!.headers['mesh-dtab']).toBeUndefined();
    // Malformed is not even parsed.
    expect(await who(mesh, { 'mesh-dtab': '=> =>' })).toBe('v2');
  });

  it('never sends the header to a host outside the mesh', async () => {
    mesh = routed(true);
    const res = await mesh.request(`http://${outside.address}/`, {
      headers: { 'mesh-dtab': 'users => #v1' },
    });
    await res.body.text();
    const r2 = await fetch(`http://${outside.address}/`, {
      dispatcher: mesh.dispatcher,
      headers: { 'mesh-dtab': 'users => #v1' },
    });
    await r2.text();
    expect(outside.received.map((r) => r.headers['mesh-dtab'])).toEqual([undefined, undefined]);
  });

  it('a malformed or unroutable override fails that call with a typed error and nothing else', async () => {
    mesh = routed(true);
    const good = Promise.all(Array.from({ length: 5 }, () => who(mesh!)));
    const bad = mesh.request('http://users/', { headers: { 'mesh-dtab': 'users => owner=' } });
    await expect(bad).rejects.toBeInstanceOf(InvalidOverrideError);
    await expect(bad).rejects.toMatchObject({
      service: 'users',
      part: 'owner=',
      statusCode: 400,
      attempts: 1,
    });
    await expect(mesh.fetch('http://users/', { headers: { 'mesh-dtab': 'users => #nope' } })).rejects.toThrow(
      /no destination "nope"/,
    );
    await expect(mesh.fetch('http://users/', { headers: { 'mesh-dtab': 'users => @dc2' } })).rejects.toThrow(
      /static' discovery, which has no datacenters/,
    );
    expect(await good).toEqual(['v2', 'v2', 'v2', 'v2', 'v2']);
    expect(v2.received).toHaveLength(5);
    expect(v1.received.length + alice.received.length).toBe(0);
    const snap = mesh.snapshot().services[0]!.routing!;
    expect(snap.destinations.map((d) => d.name)).toEqual(['primary', 'v1', 'v2']);
    expect(await who(mesh)).toBe('v2');
  });
});

describe('the server helper and overrides', () => {
  let server: Server;
  let port: number;
  let seen: string[] = [];
  const start = async (options: Parameters<typeof meshHandler>[1]): Promise<void> => {
    server = createServer(
      meshHandler(async (req, res) => {
        seen.push(String(req.headers['mesh-dtab']));
        const r = await mesh!.request('http://users/');
        await r.body.text();
        res.end(String(v1.received.length + alice.received.length));
      }, options),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  };
  afterEach(async () => {
    seen = [];
    await new Promise<void>((r) => server.close(() => r()));
  });
  const call = (headers: Record<string, string>): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const req = httpRequest({ port, host: '127.0.0.1', headers }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.on('error', reject);
      req.end();
    });

  it('strips the header from untrusted callers (and by default), applies it from trusted ones', async () => {
    mesh = createMesh({
      overrides: { enabled: true },
      services: { users: { discovery: users(), destinations, routes: [{ to: 'v2' }] } },
    });
    await start({ overrides: { trust: (req) => req.headers['x-internal'] === 'yes' } });
    expect(await call({ 'mesh-dtab': 'users => owner=alice' })).toEqual({ status: 200, body: '0' });
    expect(await call({ 'mesh-dtab': 'users => owner=alice', 'x-internal': 'yes' })).toEqual({
      status: 200,
      body: '1',
    });
    expect(seen).toEqual(['undefined', 'users => owner=alice']);
    expect(alice.received[0]!.headers['mesh-dtab']).toBe('users => owner=alice');
    await new Promise<void>((r) => server.close(() => r()));
    await start({});
    expect(await call({ 'mesh-dtab': 'users => owner=alice' })).toEqual({ status: 200, body: '1' });
    expect(seen.at(-1)).toBe('undefined');
  });

  it('answers a malformed override from a trusted caller with 400, without calling the handler', async () => {
    mesh = createMesh({
      overrides: { enabled: true },
      services: { users: { discovery: users(), destinations, routes: [{ to: 'v2' }] } },
    });
    await start({ overrides: { trust: () => true } });
    const r = await call({ 'mesh-dtab': 'users => #' });
    expect(r.status).toBe(400);
    expect(r.body).toMatch(/Invalid routing override at 9 \("#"\): expected a destination name/);
    expect(seen).toEqual([]);
    expect(await call({})).toEqual({ status: 200, body: '0' });
  });

  it('validates its options', () => {
    expect(() => meshHandler(() => {}, { overrides: { trust: 1 as never } })).toThrow(ConfigError);
    expect(() => meshHandler(() => {}, { overrides: { trusted: () => true } as never })).toThrow(
      /meshHandler\.overrides\.trusted/,
    );
    expect(() => createMesh({ overrides: { enabled: 'yes' as never } })).toThrow(/overrides\.enabled/);
  });
});
