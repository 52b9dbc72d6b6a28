// Balancer fairness through the mesh (issue 20): a fast 429 or 503 is not a latency sample, it makes its
// endpoint costlier; a Retry-After takes that endpoint out of the draw until the time given, while the
// call's retry goes to another endpoint at once instead of waiting or failing; the snapshot shows what the
// balancer knows (probing, measured) and the cost it compares. Real servers on loopback, the mesh on a fake
// clock (so every RTT is 0 unless a test advances it) and backoff 0 so that no retry waits on that clock.
import { afterEach, describe, expect, it } from 'vitest';
import { createMesh, p2cPeakEwma, type Mesh } from '../../src/index.js';
import { FakeClock, seededRng } from '../../src/testing/index.js';
import { startServer, type TestServer } from '../support/servers.js';

let mesh: Mesh | undefined;
const servers: TestServer[] = [];
afterEach(async () => {
  await mesh?.close({ gracePeriodMs: 0 });
  mesh = undefined;
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function server(status: number, headers: Record<string, string> = {}): Promise<TestServer> {
  const s = await startServer((_req, res) => {
    res.writeHead(status, headers);
    res.end(String(status));
  });
  servers.push(s);
  return s;
}

function endpointsOf(m: Mesh, name: string) {
  return m.snapshot().services.find((s) => s.name === name)!.endpoints;
}

async function get(m: Mesh, url: string): Promise<number> {
  const res = await m.request(url);
  await res.body.text();
  return res.statusCode;
}

const retries = { backoff: { baseMs: 0, maxMs: 0 } };

describe('failures cost, Retry-After holds an endpoint', () => {
  it('a Retry-After longer than the deadline takes its endpoint out of the draw and the call is served by another at once', async () => {
    const clock = new FakeClock(0);
    const limited = await server(429, { 'retry-after': '5' });
    const healthy = await server(200);
    mesh = createMesh({
      clock,
      rng: seededRng(1),
      services: {
        api: {
          endpoints: [limited.address, healthy.address],
          timeoutMs: 1_000,
          retries,
        },
      },
    });
    // The first pick goes to the first new endpoint: the limited one. Its 5 s Retry-After is longer than the
    // 1 s deadline, but another endpoint can serve the call: it does, without waiting.
    expect(await get(mesh, 'http://api/')).toBe(200);
    expect(limited.received.length).toBe(1);
    expect(healthy.received.length).toBe(1);
    expect(endpointsOf(mesh, 'api')[0]!.status).toBe('busy');
    // Until the time given, every call goes to the other endpoint.
    for (let i = 0; i < 30; i++) expect(await get(mesh, 'http://api/')).toBe(200);
    expect(limited.received.length).toBe(1);
    clock.advance(4_999);
    for (let i = 0; i < 30; i++) expect(await get(mesh, 'http://api/')).toBe(200);
    expect(limited.received.length).toBe(1);
    // Then it is back in the draw.
    clock.advance(1);
    expect(endpointsOf(mesh, 'api')[0]!.status).toBe('ready');
    for (let i = 0; i < 200 && limited.received.length === 1; i++) await get(mesh, 'http://api/');
    expect(limited.received.length).toBeGreaterThan(1);
  });

  it('with every endpoint held, the call still waits for the Retry-After as before', async () => {
    const clock = new FakeClock(0);
    const limited = await server(429, { 'retry-after': '5' });
    mesh = createMesh({
      clock,
      rng: seededRng(1),
      services: { api: { endpoints: [limited.address], timeoutMs: 1_000, retries } },
    });
    await expect(get(mesh, 'http://api/')).rejects.toMatchObject({
      code: 'MESH_RETRY_AFTER_EXCEEDS_DEADLINE',
    });
  });

  it('a fast 429 is not a latency sample: it makes its endpoint cost more than a healthy one', async () => {
    const clock = new FakeClock(0);
    const limited = await server(429);
    const healthy = await server(200);
    mesh = createMesh({
      clock,
      rng: seededRng(1),
      services: { api: { endpoints: [limited.address, healthy.address], retries } },
    });
    for (let i = 0; i < 10; i++) expect(await get(mesh, 'http://api/')).toBe(200);
    const [a, b] = endpointsOf(mesh, 'api');
    expect(a!.cost).toBeGreaterThan(b!.cost);
    expect(a!.latencyMs!).toBeGreaterThan(0);
    // 4 of its attempts at most: its three probes and, perhaps, one more.
    expect(limited.received.length).toBeLessThanOrEqual(4);
  });

  it('a 503 with Retry-After: 0 costs like any failure and holds nothing', async () => {
    const clock = new FakeClock(0);
    const unavailable = await server(503, { 'retry-after': '0' });
    const healthy = await server(200);
    mesh = createMesh({
      clock,
      rng: seededRng(1),
      services: { api: { endpoints: [unavailable.address, healthy.address], retries } },
    });
    for (let i = 0; i < 10; i++) expect(await get(mesh, 'http://api/')).toBe(200);
    // It was tried (and failed) at least once: its cost now carries the failure.
    expect(unavailable.received.length).toBeGreaterThan(0);
    const [a, b] = endpointsOf(mesh, 'api');
    expect(a!.status).toBe('ready');
    expect(a!.cost).toBeGreaterThan(b!.cost);
  });
});

describe('connect time', () => {
  it('an answer after more than the keep-alive timeout of idleness (a new connection) moves the estimate half way', async () => {
    const clock = new FakeClock(0);
    const held: Array<() => void> = [];
    let onArrival: (() => void) | undefined;
    const s = await startServer((_req, res) => {
      held.push(() => res.end('ok'));
      onArrival?.();
    });
    servers.push(s);
    mesh = createMesh({
      clock,
      rng: seededRng(1),
      services: { api: { endpoints: [s.address], transport: { keepAliveTimeoutMs: 4_000 } } },
    });
    /** One call that takes `ms` on the mesh clock. */
    const timed = async (ms: number): Promise<void> => {
      const arrived = new Promise<void>((r) => (onArrival = r));
      const pending = get(mesh!, 'http://api/');
      await arrived;
      clock.advance(ms);
      held.shift()!();
      await pending;
    };
    const estimate = (): number => endpointsOf(mesh!, 'api')[0]!.latencyMs!;
    for (let i = 0; i < 3; i++) await timed(10); // probed: 10 ms
    expect(endpointsOf(mesh, 'api')[0]!.loadState).toBe('measured');
    clock.advance(1_000); // idle, but within keep-alive: a warm peak replaces the estimate
    await timed(50);
    expect(estimate()).toBe(50);
    clock.advance(5_000); // idle past the keep-alive: the next request opens a connection
    const before = estimate();
    await timed(200);
    // Half way between the estimate as decayed when the answer came (200 ms later, tau 10 s) and 200 ms.
    expect(estimate()).toBeCloseTo((before * Math.exp(-200 / 10_000) + 200) / 2, 6);
  });
});

describe('the snapshot shows what the balancer knows', () => {
  it('a new endpoint is probing at cost 0, then measured', async () => {
    const clock = new FakeClock(0);
    const one = await server(200);
    mesh = createMesh({ clock, rng: seededRng(1), services: { api: { endpoints: [one.address] } } });
    const before = endpointsOf(mesh, 'api')[0]!;
    expect(before.loadState).toBe('probing');
    expect(before.cost).toBe(0);
    for (let i = 0; i < 3; i++) await get(mesh, 'http://api/');
    const after = endpointsOf(mesh, 'api')[0]!;
    expect(after.loadState).toBe('measured');
    expect(after.requests).toBe(3);
  });

  it('slow start shows as warming until its window has passed', async () => {
    const clock = new FakeClock(0);
    const one = await server(200);
    mesh = createMesh({
      clock,
      rng: seededRng(1),
      services: { api: { endpoints: [one.address], balancer: p2cPeakEwma({ slowStartMs: 30_000 }) } },
    });
    for (let i = 0; i < 3; i++) await get(mesh, 'http://api/');
    expect(endpointsOf(mesh, 'api')[0]!.loadState).toBe('warming');
    clock.advance(30_000);
    expect(endpointsOf(mesh, 'api')[0]!.loadState).toBe('measured');
  });
});
