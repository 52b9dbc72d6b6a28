// Failure accrual end to end: real node:http servers on loopback, the real mesh (default stacks with retries),
// the accrual module placed first of the endpoint stack. Time runs for real, except that the test can jump
// the mesh clock forward to end a busy period without waiting seconds for it.
import { afterEach, describe, expect, it } from 'vitest';
import {
  createMesh,
  systemClock,
  type BalancerName,
  type Clock,
  type Mesh,
  type ServiceConfig,
  type StackModule,
} from 'meshfetch';
import { seededRng } from 'meshfetch/extend';
import {
  FailureAccrualParam,
  resolveFailureAccrualOptions,
  type FailureAccrualOptions,
} from '../../src/resilience/accrual-options.js';
import {
  failureAccrualModule,
  failureAccrualOf,
  type FailureAccrualFilter,
} from '../../src/resilience/accrual.js';
import {
  closedPort,
  echoHandler,
  startServer,
  type TestHandler,
  type TestServer,
} from '../support/servers.js';

const servers: TestServer[] = [];
let mesh: Mesh | undefined;
async function server(handler?: TestHandler): Promise<TestServer> {
  const s = await startServer(handler);
  servers.push(s);
  return s;
}
afterEach(async () => {
  await mesh?.close({ gracePeriodMs: 0 });
  mesh = undefined;
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/** The system clock with a jump the test controls: real timers, and a `now()` that can leap forward. */
class JumpClock implements Clock {
  private offset = 0;
  now(): number {
    return systemClock.now() + this.offset;
  }
  wallNow(): number {
    return systemClock.wallNow() + this.offset;
  }
  setTimeout(fn: () => void, ms: number): ReturnType<Clock['setTimeout']> {
    return systemClock.setTimeout(fn, ms);
  }
  clearTimeout(h: ReturnType<Clock['setTimeout']> | undefined): void {
    systemClock.clearTimeout(h);
  }
  jump(ms: number): void {
    this.offset += ms;
  }
}

const unavailable: TestHandler = (_req, res) => {
  res.writeHead(503, { 'content-type': 'text/plain' });
  res.end('unavailable');
};

/** The accrual module with options of the test's choosing (what the service config will set once wired). */
function accrual(
  created: Map<string, FailureAccrualFilter>,
  options: FailureAccrualOptions = {},
): StackModule<'endpoint'> {
  const resolved = resolveFailureAccrualOptions(options, 'failureAccrual');
  return {
    ...failureAccrualModule,
    make(next, env) {
      const s = failureAccrualModule.make(next, {
        ...env,
        params: env.params.with(FailureAccrualParam, resolved),
      });
      created.set(env.target.address, failureAccrualOf(s)!);
      return s;
    },
  };
}

/**
 * A mesh over `addresses` with accrual first in the endpoint stack. Least-loaded P2C by default: with one call
 * at a time every endpoint ties on load, so each gets its share until accrual says otherwise (Peak EWMA would
 * stop sending to the failing endpoint on its own after one slow answer, which is not what is tested here).
 */
function meshOver(
  addresses: string[],
  clock: Clock,
  created: Map<string, FailureAccrualFilter>,
  balancer: BalancerName = 'p2c-least-loaded',
  extra: Omit<ServiceConfig, 'endpoints' | 'balancer'> = {},
): Mesh {
  mesh = createMesh({
    clock,
    rng: seededRng(11),
    // The breaker would open on a destination that fails this much; this file tests accrual alone.
    services: { users: { endpoints: addresses, balancer, circuitBreaker: false, ...extra } },
    stack: (d) => ({ ...d, endpoint: d.endpoint.replace('failure-accrual', accrual(created)) }),
  });
  return mesh;
}

async function get(m: Mesh): Promise<number> {
  const res = await m.request('http://users/');
  await res.body.dump();
  return res.statusCode;
}

function statusOf(m: Mesh, address: string): string | undefined {
  return m.snapshot().services[0]!.endpoints.find((e) => e.address === address)?.status;
}

describe('failure accrual through the mesh', () => {
  it.each<BalancerName>(['p2c-least-loaded', 'round-robin'])(
    'marks an endpoint answering 503 busy, moves traffic to the others, and probes bring it back (%s)',
    async (balancer) => {
      const bad = await server(unavailable);
      const good = [await server(), await server()];
      const clock = new JumpClock();
      const created = new Map<string, FailureAccrualFilter>();
      const m = meshOver([bad.address, ...good.map((s) => s.address)], clock, created, balancer);
      expect(m.snapshot().services[0]!.endpoints.map((e) => e.status)).toEqual(['ready', 'ready', 'ready']);

      // Until it is marked busy, the bad endpoint gets its share; the retries send each of its 503s elsewhere.
      const statuses: number[] = [];
      for (let i = 0; i < 300 && statusOf(m, bad.address) === 'ready'; i++) statuses.push(await get(m));
      expect(statusOf(m, bad.address)).toBe('busy');
      expect(bad.received).toHaveLength(5);
      expect(created.get(bad.address)!.snapshot()).toMatchObject({ state: 'busy', timesMarkedBusy: 1 });
      expect(statuses.every((s) => s === 200)).toBe(true);

      // While busy it gets nothing.
      for (let i = 0; i < 60; i++) expect(await get(m)).toBe(200);
      expect(bad.received).toHaveLength(5);

      // It recovers; once the backoff (at most 5 s) is over, a single probe finds out and it is ready again.
      bad.handler = echoHandler;
      clock.jump(5_000);
      expect(created.get(bad.address)!.accrualState).toBe('probing');
      for (let i = 0; i < 300 && created.get(bad.address)!.accrualState !== 'ready'; i++)
        expect(await get(m)).toBe(200);
      expect(created.get(bad.address)!.accrualState).toBe('ready');
      expect(bad.received).toHaveLength(6);
      expect(statusOf(m, bad.address)).toBe('ready');

      // And takes its share again.
      for (let i = 0; i < 90; i++) expect(await get(m)).toBe(200);
      expect(bad.received.length).toBeGreaterThan(6 + 10);
    },
  );

  it.each<BalancerName>(['p2c-least-loaded', 'round-robin'])(
    'a burst of calls to a probing endpoint sends it exactly one probe: the slot is taken in the turn of the pick (%s)',
    async (balancer) => {
      const bad = await server(unavailable);
      const good = [await server(), await server()];
      const clock = new JumpClock();
      const created = new Map<string, FailureAccrualFilter>();
      const m = meshOver([bad.address, ...good.map((s) => s.address)], clock, created, balancer);
      for (let i = 0; i < 300 && statusOf(m, bad.address) === 'ready'; i++) await get(m);
      expect(bad.received).toHaveLength(5);
      bad.handler = echoHandler;
      clock.jump(5_000);
      expect(created.get(bad.address)!.accrualState).toBe('probing');
      // Every call is sent before any answer comes back: the probe is in flight for the whole burst.
      const statuses = await Promise.all(Array.from({ length: 40 }, () => get(m)));
      expect(statuses.every((s) => s === 200)).toBe(true);
      expect(bad.received).toHaveLength(6);
      expect(created.get(bad.address)!.accrualState).toBe('ready');
    },
  );

  it('a probe that still fails keeps it busy, for longer', async () => {
    const bad = await server(unavailable);
    const good = await server();
    const clock = new JumpClock();
    const created = new Map<string, FailureAccrualFilter>();
    const m = meshOver([bad.address, good.address], clock, created);
    const f = (): FailureAccrualFilter => created.get(bad.address)!;
    for (let i = 0; i < 300 && f().accrualState === 'ready'; i++) await get(m);
    const first = f().snapshot().busyForMs!;
    expect(first).toBeGreaterThanOrEqual(2_400);
    expect(first).toBeLessThanOrEqual(5_000);
    clock.jump(5_000);
    for (let i = 0; i < 300 && f().accrualState === 'probing'; i++) expect(await get(m)).toBe(200);
    expect(bad.received).toHaveLength(6);
    const s = f().snapshot();
    expect(s).toMatchObject({ state: 'busy', timesMarkedBusy: 2, backoffStep: 2 });
    expect(s.busyForMs!).toBeGreaterThanOrEqual(4_900);
    expect(s.busyForMs!).toBeLessThanOrEqual(10_000);
  });

  it('marks an endpoint that refuses connections busy; the calls still succeed elsewhere', async () => {
    const refused = `127.0.0.1:${await closedPort()}`;
    const good = [await server(), await server()];
    const created = new Map<string, FailureAccrualFilter>();
    const m = meshOver([refused, ...good.map((s) => s.address)], new JumpClock(), created);
    for (let i = 0; i < 100; i++) expect(await get(m)).toBe(200);
    expect(statusOf(m, refused)).toBe('busy');
    expect(created.get(refused)!.snapshot().timesMarkedBusy).toBe(1);
  });

  it('with more than half busy, the balancer panics and traffic continues over all of them', async () => {
    const bad = [await server(unavailable), await server(unavailable), await server(unavailable)];
    const good = await server();
    const created = new Map<string, FailureAccrualFilter>();
    // Without retries, so that what each endpoint receives is what the balancer chose.
    const m = meshOver([...bad.map((s) => s.address), good.address], new JumpClock(), created, undefined, {
      retries: false,
    });
    for (let i = 0; i < 500 && bad.some((s) => statusOf(m, s.address) === 'ready'); i++) await get(m);
    expect(bad.map((s) => statusOf(m, s.address))).toEqual(['busy', 'busy', 'busy']);
    const before = bad.map((s) => s.received.length);
    const goodBefore = good.received.length;
    // Panic mode (Envoy's 50 % threshold): statuses are ignored, every endpoint competes on load, rather than
    // the one ready endpoint taking everything. Every call is answered (200 from the good one, 503 from the
    // others); none is refused by the mesh.
    const answers: number[] = [];
    for (let i = 0; i < 100; i++) answers.push(await get(m));
    expect(answers.every((s) => s === 200 || s === 503)).toBe(true);
    expect(good.received.length - goodBefore).toBe(answers.filter((s) => s === 200).length);
    expect(good.received.length - goodBefore).toBeGreaterThan(5);
    const spread = bad.map((s, i) => s.received.length - before[i]!);
    for (const n of spread) expect(n).toBeGreaterThan(5);
    // Outcomes while busy neither revive nor extend a busy period.
    for (const s of bad) expect(created.get(s.address)!.snapshot().timesMarkedBusy).toBe(1);
  });

  it('hands the response body to the caller as the server sent it, failures included', async () => {
    const big = Buffer.alloc(1024 * 1024, 7);
    const s = await server((req, res) => {
      if (req.url === '/fail') return unavailable(req, res, Buffer.alloc(0));
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      for (let i = 0; i < 16; i++) res.write(big.subarray(i * 65_536, (i + 1) * 65_536));
      res.end();
    });
    const created = new Map<string, FailureAccrualFilter>();
    const m = meshOver([s.address], new JumpClock(), created, undefined, { retries: false });
    const r = await m.request('http://users/big');
    expect(Buffer.from(await r.body.arrayBuffer()).equals(big)).toBe(true);
    const f = await m.request('http://users/fail');
    expect(f.statusCode).toBe(503);
    expect(await f.body.text()).toBe('unavailable');
    expect(created.get(s.address)!.snapshot()).toMatchObject({ consecutiveFailures: 1, windowRequests: 2 });
  });
});
