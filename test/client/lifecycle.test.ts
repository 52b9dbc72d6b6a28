// close(), run-time changes to services and endpoints, and what is left running afterwards.
import { getEventListeners } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { fetch as undiciFetch } from 'undici';
import {
  createMesh,
  installGlobalDispatcher,
  MeshClosedError,
  staticDiscovery,
  callOptions,
  DeadlineExceededError,
  type Mesh,
} from 'meshfetch';
import { startServer, type TestServer } from '../support/servers.js';
import { until } from '../support/until.js';

const servers: TestServer[] = [];
let mesh: Mesh | undefined;
async function server(...args: Parameters<typeof startServer>): Promise<TestServer> {
  const s = await startServer(...args);
  servers.push(s);
  return s;
}
afterEach(async () => {
  await mesh?.close({ gracePeriodMs: 0 });
  mesh = undefined;
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

function gate() {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { open, opened };
}

function resources(kind: string): number {
  return process.getActiveResourcesInfo().filter((r) => r === kind).length;
}

describe('close()', () => {
  it('rejects new calls on every entry point with MeshClosedError', async () => {
    const s = await server();
    mesh = createMesh({ services: { users: { endpoints: [s.address] } } });
    await mesh.close();
    await expect(mesh.request('http://users/')).rejects.toBeInstanceOf(MeshClosedError);
    await expect(mesh.fetch('http://users/')).rejects.toBeInstanceOf(MeshClosedError);
    const e = await fetch('http://users/', { dispatcher: mesh.dispatcher }).catch((x: unknown) => x);
    expect((e as TypeError).cause).toBeInstanceOf(MeshClosedError);
    // Pass-through calls are refused too: the mesh is closed.
    await expect(mesh.request(`http://${s.address}/`)).rejects.toBeInstanceOf(MeshClosedError);
    expect(() => mesh!.addService('x', { endpoints: [s.address] })).toThrow(MeshClosedError);
  });

  it('lets an in-flight call finish within the grace period, body included', async () => {
    const g = gate();
    let arrived!: () => void;
    const inHandler = new Promise<void>((r) => (arrived = r));
    const s = await server(async (_req, res) => {
      res.write('head;');
      arrived();
      await g.opened;
      res.end('tail');
    });
    mesh = createMesh({ services: { users: { endpoints: [s.address] } } });
    const res = await mesh.request('http://users/');
    await inHandler;
    const closed = mesh.close({ gracePeriodMs: 10_000 });
    let closedYet = false;
    void closed.then(() => (closedYet = true));
    await new Promise((r) => setImmediate(r));
    expect(closedYet).toBe(false);
    expect(mesh.inflightCalls).toBe(1);
    g.open();
    expect(await res.body.text()).toBe('head;tail');
    await closed;
    expect(mesh.inflightCalls).toBe(0);
  });

  it('aborts calls still in flight when the grace period ends', async () => {
    let arrived!: () => void;
    const inHandler = new Promise<void>((r) => (arrived = r));
    const s = await server(() => {
      arrived(); // never answers
    });
    mesh = createMesh({ services: { users: { endpoints: [s.address] } } });
    const pending = mesh.request('http://users/').catch((e: unknown) => e);
    const viaFetch = mesh.fetch('http://users/').catch((e: unknown) => e);
    await inHandler;
    await mesh.close({ gracePeriodMs: 50 });
    const [e1, e2] = await Promise.all([pending, viaFetch]);
    expect(e1).toBeInstanceOf(Error);
    expect(e2).toBeInstanceOf(Error);
    await until(() => s.openSockets === 0);
  });

  it('leaves no sockets, timers or listeners behind', async () => {
    const s = await server();
    const other = await server();
    const third = await server(); // reached by plain fetch, outside the mesh
    await new Promise((r) => setImmediate(r));
    const sockets0 = resources('TCPSocketWrap');
    const timers0 = resources('Timeout');
    mesh = createMesh({ services: { users: { endpoints: [s.address, other.address] } } });
    // A long-lived caller signal shared by many calls: the mesh must leave no listener on it.
    const signal = new AbortController().signal;
    for (let i = 0; i < 20; i++) {
      await (
        await mesh.request('http://users/', { signal, headers: callOptions({ deadlineMs: 5_000 }) })
      ).body.text();
      await (await mesh.request(`http://${other.address}/`, { signal })).body.text(); // pass-through
    }
    await until(() => getEventListeners(signal, 'abort').length === 0);
    // Node's built-in fetch itself leaves one listener per call on the caller's signal until GC (its
    // Request follows the signal weakly); through the mesh it must leave no more than plain fetch does.
    const viaMesh = new AbortController().signal;
    const plain = new AbortController().signal;
    for (let i = 0; i < 20; i++) {
      await (await mesh.fetch('http://users/', { signal: viaMesh })).text();
      await (await fetch('http://users/', { signal: viaMesh, dispatcher: mesh.dispatcher })).text();
      await (await fetch(`http://${third.address}/`, { signal: plain })).text();
      await (await fetch(`http://${third.address}/`, { signal: plain })).text();
    }
    await until(() => getEventListeners(viaMesh, 'abort').length <= getEventListeners(plain, 'abort').length);
    expect(s.openSockets + other.openSockets).toBeGreaterThan(0);
    await mesh.close();
    await until(() => s.openSockets === 0 && other.openSockets === 0);
    await third.close(); // closes the global dispatcher's sockets to it, which are not the mesh's
    await until(() => resources('TCPSocketWrap') <= sockets0);
    expect(resources('Timeout')).toBeLessThanOrEqual(timers0);
  });

  it('is idempotent and works with await using', async () => {
    const s = await server();
    {
      await using m = createMesh({ services: { users: { endpoints: [s.address] } } });
      const res = await m.request('http://users/');
      expect(res.statusCode).toBe(200);
      await res.body.dump(); // read, so the call is over and close() need not wait for its grace period
      mesh = m;
    }
    expect(mesh.closed).toBe(true);
    await mesh.close();
    await expect(mesh.close({ gracePeriodMs: -1 })).rejects.toMatchObject({ path: 'close.gracePeriodMs' });
  });
});

describe('run-time changes', () => {
  it('follows endpoint changes; a removed endpoint finishes its in-flight call, then closes', async () => {
    const g = gate();
    let arrived!: () => void;
    const inHandler = new Promise<void>((r) => (arrived = r));
    const old = await server(async (_req, res) => {
      arrived();
      await g.opened;
      res.end('old');
    });
    const fresh = await server((_req, res) => {
      res.end('new');
    });
    const d = staticDiscovery([old.address]);
    mesh = createMesh({ services: { users: { discovery: d } } });
    const inflight = mesh.request('http://users/');
    await inHandler;
    d.set([fresh.address]);
    expect(mesh.snapshot().services[0]!.endpoints.map((e) => e.address)).toEqual([fresh.address]);
    for (let i = 0; i < 5; i++) expect(await (await mesh.request('http://users/')).body.text()).toBe('new');
    g.open();
    expect(await (await inflight).body.text()).toBe('old');
    await until(() => old.openSockets === 0);
  });

  it('keeps the state of an endpoint re-announced unchanged', async () => {
    const s = await server();
    const t = await server();
    const d = staticDiscovery([s.address]);
    mesh = createMesh({ services: { users: { discovery: d, balancer: 'p2c-peak-ewma' } } });
    for (let i = 0; i < 3; i++) await (await mesh.request('http://users/')).body.text();
    const before = mesh.snapshot().services[0]!.endpoints[0]!.latencyMs;
    d.set([s.address, t.address]);
    const after = mesh.snapshot().services[0]!.endpoints.find((e) => e.address === s.address)!.latencyMs;
    expect(after).toBeCloseTo(before!, 0);
    // And its pool: no new connection was opened to the kept endpoint.
    const socketsBefore = s.openSockets;
    await (await mesh.request('http://users/')).body.text();
    expect(s.openSockets).toBeLessThanOrEqual(Math.max(1, socketsBefore));
  });

  it('adds and removes services at run time', async () => {
    const s = await server();
    mesh = createMesh({ services: {}, unknownHosts: 'reject' });
    await expect(mesh.request('http://billing/')).rejects.toMatchObject({ code: 'MESH_UNKNOWN_SERVICE' });
    mesh.addService('billing', { endpoints: [s.address] });
    expect((await mesh.request('http://billing/')).statusCode).toBe(200);
    expect(() => mesh!.addService('billing', { endpoints: [s.address] })).toThrow(/not already in use/);
    await mesh.removeService('billing');
    await expect(mesh.request('http://billing/')).rejects.toMatchObject({ code: 'MESH_UNKNOWN_SERVICE' });
    await expect(mesh.removeService('billing')).rejects.toMatchObject({ path: 'services.billing' });
    await until(() => s.openSockets === 0);
  });
});

describe('deadlines', () => {
  it('fails with DeadlineExceededError while waiting for headers', async () => {
    const s = await server(() => {});
    mesh = createMesh({ services: { slow: { endpoints: [s.address] } } });
    const t0 = performance.now();
    const err = await mesh
      .request('http://slow/', { headers: callOptions({ deadlineMs: 100 }) })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(DeadlineExceededError);
    expect(err).toMatchObject({ phase: 'headers', service: 'slow', budgetMs: 100 });
    expect(performance.now() - t0).toBeGreaterThanOrEqual(95);
    await expect(
      mesh.fetch('http://slow/', { headers: callOptions({ deadlineMs: 50 }) }),
    ).rejects.toBeInstanceOf(DeadlineExceededError);
  });

  it('aborts the body when the deadline passes mid-body', async () => {
    const s = await server((_req, res) => {
      res.write('partial');
    });
    // Long enough that the headers always arrive first on a loaded 2-core machine; the body never ends.
    mesh = createMesh({ services: { slow: { endpoints: [s.address], timeoutMs: 800 } } });
    const res = await mesh.request('http://slow/');
    await expect(res.body.text()).rejects.toMatchObject({ code: 'MESH_DEADLINE_EXCEEDED', phase: 'body' });
    const r2 = await mesh.fetch('http://slow/');
    await expect(r2.text()).rejects.toThrow();
  });

  it('a per-call deadline tightens but never extends the service timeout', async () => {
    const s = await server();
    mesh = createMesh({ services: { users: { endpoints: [s.address], timeoutMs: 1_000 } } });
    const echo = (await (
      await mesh.request('http://users/', { headers: callOptions({ deadlineMs: 60_000 }) })
    ).body.json()) as {
      headers: Record<string, string>;
    };
    expect(Number(echo.headers['mesh-deadline-ms'])).toBeLessThanOrEqual(1_000);
  });

  it('an already-aborted signal fails without touching the network', async () => {
    const s = await server();
    mesh = createMesh({ services: { users: { endpoints: [s.address] } } });
    const ac = new AbortController();
    ac.abort();
    await expect(mesh.request('http://users/', { signal: ac.signal })).rejects.toMatchObject({
      name: 'AbortError',
    });
    expect(s.received).toHaveLength(0);
  });
});

describe('global install', () => {
  it('installGlobalDispatcher routes the built-in fetch and undici fetch through the mesh, and restores', async () => {
    const s = await server();
    mesh = createMesh({ services: { users: { endpoints: [s.address] } } });
    const restore = installGlobalDispatcher(mesh);
    try {
      const res = await fetch('http://users/global');
      expect(((await res.json()) as { url: string }).url).toBe('/global');
      const res2 = await undiciFetch('http://users/undici');
      expect(((await res2.json()) as { url: string }).url).toBe('/undici');
      // Other hosts still work through the global fetch.
      expect((await fetch(`http://${s.address}/plain`)).status).toBe(200);
    } finally {
      restore();
    }
    await expect(fetch('http://users/global')).rejects.toThrow();
  });
});
