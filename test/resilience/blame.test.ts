// Failures are counted against the party that caused them: a caller's invalid request against nothing, an
// empty endpoint set as the destination's state (not its failure), and an open breaker answered at once.
import { afterEach, describe, expect, it } from 'vitest';
import { request as undiciRequest } from 'undici';
import {
  callOptions,
  createMesh,
  InvalidRequestError,
  type MeshError,
  NoHealthyEndpointsError,
  type Mesh,
  type ServiceConfig,
} from 'meshfetch';
import { FakeClock, seededRng, staticDiscovery } from 'meshfetch/testing';
import { startServer, type TestServer } from '../support/servers.js';

let mesh: Mesh | undefined;
const servers: TestServer[] = [];
afterEach(async () => {
  await mesh?.close({ gracePeriodMs: 0 });
  mesh = undefined;
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function server(handler?: Parameters<typeof startServer>[0]): Promise<TestServer> {
  const s = await startServer(handler);
  servers.push(s);
  return s;
}

function svc(m: Mesh) {
  return m.snapshot().services[0]!;
}

async function ok(m: Mesh, url = 'http://svc/'): Promise<number> {
  const r = await m.request(url);
  await r.body.dump();
  return r.statusCode;
}

describe("a caller's invalid request counts against nothing", () => {
  const bad: Array<[string, (m: Mesh) => Promise<unknown>, string]> = [
    [
      'a header value with CR/LF',
      (m) => m.request('http://svc/', { headers: { 'x-a': 'one\r\ntwo' } }),
      'headers.x-a',
    ],
    [
      'a header name that is not a token',
      (m) => m.request('http://svc/', { headers: { 'bad name': 'v' } }),
      'headers',
    ],
    ['a number as the body', (m) => m.request('http://svc/', { method: 'PUT', body: 42 as never }), 'body'],
    [
      'a plain object as the body',
      (m) => m.request('http://svc/', { method: 'POST', body: { a: 1 } as never }),
      'body',
    ],
    ['a method that is not a token', (m) => m.request('http://svc/', { method: 'GE T' }), 'method'],
    [
      'a header value with CR/LF through mesh.dispatcher (undici.request)',
      (m) => undiciRequest('http://svc/', { dispatcher: m.dispatcher, headers: { 'x-a': 'one\r\ntwo' } }),
      'headers.x-a',
    ],
  ];
  for (const [what, call, field] of bad) {
    it(`${what}: InvalidRequestError naming ${field}, 25 times, and the breaker, the endpoint and the budget are untouched`, async () => {
      const s = await server();
      mesh = createMesh({ services: { svc: { endpoints: [s.address] } } });
      for (let i = 0; i < 20; i++) expect(await ok(mesh)).toBe(200);
      const budget = svc(mesh).retryBudget;
      for (let i = 0; i < 25; i++) {
        const err = await call(mesh).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(InvalidRequestError);
        expect((err as InvalidRequestError).message).toContain(field);
      }
      const after = svc(mesh);
      expect(after.breaker).toBe('closed');
      expect(after.endpoints[0]!.status).toBe('ready');
      expect((after.endpoints[0] as { failures: number }).failures).toBe(0);
      expect(after.retryBudget).toBe(budget);
      expect(await ok(mesh)).toBe(200);
      expect(s.received).toHaveLength(21);
    });
  }
});

describe('an empty endpoint set is a state, not a failure', () => {
  it('calls while discovery has no instance do not open the breaker: the first call after endpoints return succeeds', async () => {
    const s = await server();
    const discovery = staticDiscovery([]);
    mesh = createMesh({
      services: { svc: { discovery, circuitBreaker: { volumeThreshold: 5, resetTimeoutMs: 60_000 } } },
    });
    for (let i = 0; i < 30; i++) {
      const err = await mesh.request('http://svc/').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NoHealthyEndpointsError);
    }
    expect(svc(mesh).breaker).toBe('closed');
    discovery.set([s.address]);
    expect(await ok(mesh)).toBe(200);
  });
});

describe('an open breaker fails fast', () => {
  /** The call's outcome, or 'still waiting' if it has not settled within 2 s of real time (the clock is fake). */
  function settledWithoutTimers(call: Promise<unknown>): Promise<unknown> {
    return Promise.race([
      call.catch((e: unknown) => e),
      new Promise((r) => setTimeout(() => r('still waiting'), 2_000)),
    ]);
  }

  /** A mesh whose breaker opens after 2 failures; the clock is fake, so every timer is counted. */
  async function openBreaker(
    extra: Partial<ServiceConfig> = {},
    fake = true,
  ): Promise<{ m: Mesh; clock: FakeClock }> {
    const s = await server((_req, res) => void res.writeHead(500).end('broken'));
    const clock = new FakeClock();
    const m = createMesh({
      ...(fake ? { clock } : {}),
      rng: seededRng(7),
      services: {
        svc: {
          endpoints: [s.address],
          failureAccrual: false,
          circuitBreaker: { volumeThreshold: 2, resetTimeoutMs: 60_000 },
          ...extra,
        },
      },
    });
    mesh = m;
    // 500: a failure, not retried; the breaker opens after the second.
    for (let i = 0; i < 5 && svc(m).breaker !== 'open'; i++) expect(await ok(m)).toBe(500);
    expect(svc(m).breaker).toBe('open');
    return { m, clock };
  }

  it('CircuitOpenError at once: no backoff timer scheduled and no retry budget spent', async () => {
    const { m, clock } = await openBreaker();
    const budget = svc(m).retryBudget;
    const timers = clock.pendingTimers;
    // Settled without the (fake) clock moving: nothing waits on a timer.
    const err = await settledWithoutTimers(m.request('http://svc/'));
    expect((err as MeshError).code).toBe('MESH_CIRCUIT_OPEN');
    expect(clock.pendingTimers).toBe(timers);
    expect(svc(m).retryBudget).toBe(budget);
  });

  it('unless the route splits over another destination: then the call is retried and lands there', async () => {
    const bad = await server((_req, res) => void res.writeHead(500).end('broken'));
    const good = await server((_req, res) => void res.end('fine'));
    const m = createMesh({
      rng: seededRng(3),
      services: {
        svc: {
          endpoints: [
            { host: '127.0.0.1', port: bad.port, meta: { version: 'v1' } },
            { host: '127.0.0.1', port: good.port, meta: { version: 'v2' } },
          ],
          failureAccrual: false,
          circuitBreaker: { volumeThreshold: 2, resetTimeoutMs: 60_000 },
          destinations: {
            v1: { subset: { meta: { version: 'v1' } } },
            v2: { subset: { meta: { version: 'v2' } } },
          },
          routes: [
            {
              to: [
                { destination: 'v1', weight: 50 },
                { destination: 'v2', weight: 50 },
              ],
            },
          ],
        },
      },
    });
    mesh = m;
    // Open v1's breaker (its 500s are failures, not retried).
    for (let i = 0; i < 40 && bad.received.length < 2; i++) await ok(m);
    const open = svc(m).routing!.destinations.find((d) => d.name === 'v1')!;
    expect(open.breaker).toBe('open');
    let fine = 0;
    for (let i = 0; i < 40; i++) {
      const r = await m.request('http://svc/').catch((e: unknown) => e);
      if ((r as { statusCode?: number }).statusCode === 200) {
        fine++;
        await (r as { body: { dump(): Promise<void> } }).body.dump();
      } else expect((r as MeshError).code).toBe('MESH_CIRCUIT_OPEN');
    }
    // Half the calls are routed to v1 first; most of those are retried onto v2 (without retries: about 20).
    expect(fine).toBeGreaterThanOrEqual(30);
  });

  it('with deadlineMs: 20 the caller gets CircuitOpenError, not DeadlineExceededError', async () => {
    const { m } = await openBreaker({}, false);
    const err = await m
      .request('http://svc/', { headers: callOptions({ deadlineMs: 20 }) })
      .catch((e: unknown) => e);
    expect((err as MeshError).code).toBe('MESH_CIRCUIT_OPEN');
  });
});
