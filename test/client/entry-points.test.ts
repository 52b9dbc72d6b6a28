// End to end through each entry point against real node:http servers on loopback.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { request as undiciRequest } from 'undici';
import { createMesh, callOptions, type Mesh } from 'meshfetch';
import { startServer, type TestServer } from '../support/servers.js';

let a: TestServer;
let b: TestServer;
let mesh: Mesh;

beforeAll(async () => {
  a = await startServer();
  b = await startServer();
});
afterAll(async () => {
  await a.close();
  await b.close();
});
afterEach(async () => {
  await mesh?.close();
});

type Echo = { method: string; url: string; headers: Record<string, string>; body: string };

// Each entry point, normalised to { status, headers, text } so the same assertions run on all four.
const entryPoints = {
  'mesh.fetch': async (
    m: Mesh,
    url: string,
    init: { method?: string; headers?: Record<string, string>; body?: string },
  ) => {
    const res = await m.fetch(url, init);
    expect(res).toBeInstanceOf(Response);
    return { status: res.status, header: (n: string) => res.headers.get(n), text: await res.text() };
  },
  'mesh.request': async (
    m: Mesh,
    url: string,
    init: { method?: string; headers?: Record<string, string>; body?: string },
  ) => {
    const res = await m.request(url, init);
    return {
      status: res.statusCode,
      header: (n: string) => res.headers[n] as string | undefined,
      text: await res.body.text(),
    };
  },
  'global fetch + dispatcher': async (
    m: Mesh,
    url: string,
    init: { method?: string; headers?: Record<string, string>; body?: string },
  ) => {
    const res = await fetch(url, { ...init, dispatcher: m.dispatcher });
    expect(res).toBeInstanceOf(Response);
    return { status: res.status, header: (n: string) => res.headers.get(n), text: await res.text() };
  },
  'undici.request + dispatcher': async (
    m: Mesh,
    url: string,
    init: { method?: string; headers?: Record<string, string>; body?: string },
  ) => {
    const res = await undiciRequest(url, {
      ...init,
      method: (init.method ?? 'GET') as 'GET',
      dispatcher: m.dispatcher,
    });
    return {
      status: res.statusCode,
      header: (n: string) => res.headers[n] as string | undefined,
      text: await res.body.text(),
    };
  },
};

describe.each(Object.entries(entryPoints))('%s', (_name, call) => {
  it('sends methods, headers and bodies to the endpoints and returns the response', async () => {
    mesh = createMesh({ services: { users: { endpoints: [a.address, b.address] } } });
    for (const method of ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
      const withBody = method !== 'GET' && method !== 'OPTIONS';
      const res = await call(mesh, 'http://users/v1/items?q=1', {
        method,
        headers: { 'x-trace': `t-${method}`, ...(withBody ? { 'content-type': 'text/plain' } : {}) },
        ...(withBody ? { body: `body of ${method}` } : {}),
      });
      expect(res.status).toBe(200);
      expect(res.header('content-type')).toBe('application/json');
      const echo = JSON.parse(res.text) as Echo;
      expect(echo.method).toBe(method);
      expect(echo.url).toBe('/v1/items?q=1');
      expect(echo.headers['x-trace']).toBe(`t-${method}`);
      // The Host header keeps the logical authority by default.
      expect(echo.headers.host).toBe('users');
      expect(echo.body).toBe(withBody ? `body of ${method}` : '');
    }
  });

  it('answers HEAD without a body', async () => {
    mesh = createMesh({ services: { users: { endpoints: [a.address] } } });
    const res = await call(mesh, 'http://users/head', { method: 'HEAD' });
    expect(res.status).toBe(200);
    expect(res.text).toBe('');
  });

  it('spreads calls over the endpoints (round robin: exactly in turn)', async () => {
    mesh = createMesh({
      services: { users: { endpoints: [a.address, b.address], balancer: 'round-robin' } },
    });
    const before = [a.received.length, b.received.length];
    for (let i = 0; i < 10; i++) await call(mesh, 'http://users/spread', {});
    expect(a.received.length - before[0]!).toBe(5);
    expect(b.received.length - before[1]!).toBe(5);
  });

  it('forwards the remaining deadline and strips hop-local per-call headers', async () => {
    mesh = createMesh({ services: { users: { endpoints: [a.address] } } });
    const res = await call(mesh, 'http://users/deadline', {
      headers: { ...callOptions({ deadlineMs: 5_000, idempotent: true }) },
    });
    const echo = JSON.parse(res.text) as Echo;
    const remaining = Number(echo.headers['mesh-deadline-ms']);
    expect(remaining).toBeGreaterThan(4_000);
    expect(remaining).toBeLessThanOrEqual(5_000);
    expect(echo.headers['mesh-idempotent']).toBeUndefined();
  });

  it('sends a configured timeout to the next hop, and not the built-in default', async () => {
    mesh = createMesh({
      defaults: { timeoutMs: 8_000 },
      services: { users: { endpoints: [a.address], timeoutMs: 6_000 }, orders: { endpoints: [a.address] } },
    });
    const service = JSON.parse((await call(mesh, 'http://users/t', {})).text) as Echo;
    const remaining = Number(service.headers['mesh-deadline-ms']);
    expect(remaining).toBeGreaterThan(5_000);
    expect(remaining).toBeLessThanOrEqual(6_000);
    const fromDefaults = JSON.parse((await call(mesh, 'http://orders/t', {})).text) as Echo;
    expect(Number(fromDefaults.headers['mesh-deadline-ms'])).toBeGreaterThan(7_000);
    expect(Number(fromDefaults.headers['mesh-deadline-ms'])).toBeLessThanOrEqual(8_000);
    await mesh.close();
    // The built-in 30 s is enforced but not sent; a per-call deadline is.
    mesh = createMesh({ services: { users: { endpoints: [a.address] } } });
    const builtIn = JSON.parse((await call(mesh, 'http://users/t', {})).text) as Echo;
    expect(builtIn.headers['mesh-deadline-ms']).toBeUndefined();
    const perCall = JSON.parse(
      (await call(mesh, 'http://users/t', { headers: callOptions({ deadlineMs: 40_000 }) })).text,
    ) as Echo;
    expect(Number(perCall.headers['mesh-deadline-ms'])).toBeGreaterThan(29_000);
    expect(Number(perCall.headers['mesh-deadline-ms'])).toBeLessThanOrEqual(30_000);
  });

  it('passes hosts that are not services through, without the mesh headers', async () => {
    mesh = createMesh({ services: { users: { endpoints: [b.address] } } });
    const res = await call(mesh, `http://${a.address}/direct`, {
      headers: { ...callOptions({ deadlineMs: 1_000, idempotent: true }), 'x-keep': 'yes' },
    });
    const echo = JSON.parse(res.text) as Echo;
    expect(echo.url).toBe('/direct');
    expect(echo.headers.host).toBe(a.address);
    expect(echo.headers['x-keep']).toBe('yes');
    expect(echo.headers['mesh-deadline-ms']).toBeUndefined();
    expect(echo.headers['mesh-idempotent']).toBeUndefined();
  });
});

describe('Host header policy', () => {
  it("sends the endpoint address with hostHeader: 'endpoint' and a fixed name when given one", async () => {
    mesh = createMesh({
      services: {
        byaddr: { endpoints: [a.address], hostHeader: 'endpoint' },
        fixed: { endpoints: [a.address], hostHeader: 'users.internal' },
        withport: { endpoints: [a.address] },
      },
    });
    const e1 = (await (await mesh.request('http://byaddr/')).body.json()) as Echo;
    expect(e1.headers.host).toBe(a.address);
    const e2 = (await (await mesh.request('http://fixed/')).body.json()) as Echo;
    expect(e2.headers.host).toBe('users.internal');
    // The port in a logical URL is kept in the Host header; the service is found by hostname.
    const e3 = (await (await mesh.request('http://withport:8080/')).body.json()) as Echo;
    expect(e3.headers.host).toBe('withport:8080');
  });

  it('keeps a Host header the caller set explicitly', async () => {
    mesh = createMesh({ services: { users: { endpoints: [a.address] } } });
    const e = (await (
      await mesh.request('http://users/', { headers: { host: 'custom' } })
    ).body.json()) as Echo;
    expect(e.headers.host).toBe('custom');
  });
});
