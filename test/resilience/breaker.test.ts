// The circuit breaker end to end: a mesh whose concrete stack starts with the breaker, real node:http servers
// on loopback whose answers each test controls. It opens on 503s past the volume threshold, fails fast without
// touching the server, half-opens after the reset time (waited for on the state-change event, not a sleep),
// closes after a successful trial, and leaves nothing running after mesh.close().
import { createHook } from 'node:async_hooks';
import type { ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { createMesh, systemClock, TransportError, type Mesh, type StackModule } from 'meshfetch';
import { Filter } from 'meshfetch/extend';
import {
  bucketRotationStats,
  CircuitBreakerFilter,
  CircuitOpenError,
  createCircuitBreakerModule,
  type CircuitBreakerOptions,
  type CircuitState,
  type CircuitStateChange,
} from '../../src/resilience/breaker.js';
import { closedPort, startServer, type TestServer } from '../support/servers.js';
import { until } from '../support/until.js';

const servers: TestServer[] = [];
let mesh: Mesh | undefined;
afterEach(async () => {
  await mesh?.close({ gracePeriodMs: 0 });
  mesh = undefined;
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function server(...args: Parameters<typeof startServer>): Promise<TestServer> {
  const s = await startServer(...args);
  servers.push(s);
  return s;
}

/**
 * A mesh over `endpoints` with the breaker first in the concrete stack; returns the breaker it built. Retries
 * are taken out unless asked for, so that one call is one attempt and the counts are exact.
 */
function breakerMesh(
  endpoints: string[],
  options: Partial<CircuitBreakerOptions>,
  { retries = false }: { retries?: boolean } = {},
): { mesh: Mesh; breaker: CircuitBreakerFilter } {
  const base = createCircuitBreakerModule(options);
  let built: CircuitBreakerFilter | undefined;
  const capture: StackModule = {
    ...base,
    make: (next, env) => {
      const s = base.make(next, env);
      if (s instanceof CircuitBreakerFilter) built = s;
      return s;
    },
  };
  const m = createMesh({
    // Failure accrual would mark the lone endpoint busy; this file tests the breaker alone.
    services: { users: { endpoints, failureAccrual: false } },
    stack: (d) => ({
      ...d,
      logical: retries || !d.logical.has('retries') ? d.logical : d.logical.remove('retries'),
      concrete: d.concrete.replace('circuit-breaker', capture),
    }),
  });
  mesh = m;
  return { mesh: m, breaker: built! };
}

/** Resolves at the breaker's next transition to `to`. */
function next(breaker: CircuitBreakerFilter, to: CircuitState): Promise<CircuitStateChange> {
  return new Promise((resolve) => {
    const sub = breaker.onStateChange((c) => {
      if (c.to !== to) return;
      sub.unsubscribe();
      resolve(c);
    });
  });
}

/** One call; returns the status and the body text, or the error. */
async function hit(m: Mesh, signal?: AbortSignal): Promise<{ status: number; text: string } | Error> {
  try {
    const r = await m.request('http://users/', signal ? { signal } : {});
    return { status: r.statusCode, text: await r.body.text() };
  } catch (err) {
    return err as Error;
  }
}

function gate(): { open: () => void; opened: Promise<void> } {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { open, opened };
}

const answer =
  (status: number, body = `status ${status}`) =>
  (_req: unknown, res: ServerResponse): void => {
    res.statusCode = status;
    res.end(body);
  };

describe('circuit breaker (per concrete destination)', () => {
  it('opens on 503s once the volume threshold is reached, then fails fast without touching the server', async () => {
    const s = await server(answer(503));
    const { mesh: m, breaker } = breakerMesh([s.address], { volumeThreshold: 10, resetTimeoutMs: 60_000 });
    for (let i = 0; i < 9; i++) expect(await hit(m)).toEqual({ status: 503, text: 'status 503' });
    expect(breaker.state).toBe('closed'); // 9 requests: below the volume threshold
    expect(breaker.status).toBe('ready');
    const opened = next(breaker, 'open');
    expect(await hit(m)).toEqual({ status: 503, text: 'status 503' }); // the 10th still reaches the caller
    expect(await opened).toMatchObject({
      service: 'users',
      destination: 'primary',
      from: 'closed',
      to: 'open',
    });
    expect(breaker.status).toBe('down');

    const received = s.received.length;
    for (let i = 0; i < 20; i++) {
      const e = await hit(m);
      expect(e).toBeInstanceOf(CircuitOpenError);
      expect(e).toMatchObject({
        code: 'MESH_CIRCUIT_OPEN',
        phase: 'route',
        retryable: true,
        service: 'users',
        destination: 'primary',
        state: 'open',
      });
    }
    expect(s.received.length).toBe(received);
    expect(breaker.snapshot()).toMatchObject({ state: 'open', failures: 10, rejected: 20, opened: 1 });
  });

  it('hands a 503 to the caller with its body intact and unbuffered, while counting it as a failure', async () => {
    const g = gate();
    const big = Buffer.alloc(512 * 1024, 'x').toString() + 'end';
    const s = await server(async (_req, res) => {
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.write(big.slice(0, 1024));
      await g.opened;
      res.end(big.slice(1024));
    });
    const { mesh: m, breaker } = breakerMesh([s.address], { volumeThreshold: 1000 });
    // The call resolves at the headers, before the server has sent the rest: nothing was buffered.
    const r = await m.request('http://users/');
    expect(r.statusCode).toBe(503);
    expect(r.headers['content-type']).toBe('text/plain');
    expect(r.body.readableEnded).toBe(false);
    expect(breaker.snapshot()).toMatchObject({ failures: 1, successes: 0 });
    g.open();
    expect(await r.body.text()).toBe(big);
    // The same through the fetch entry point.
    const g2 = gate();
    g2.open();
    const res = await m.fetch('http://users/');
    expect(res.status).toBe(503);
    expect(await res.text()).toBe(big);
    expect(breaker.snapshot()).toMatchObject({ failures: 2, successes: 0, requests: 2 });
  });

  it('half-opens after the reset time, lets one trial through, and closes when it succeeds', async () => {
    const s = await server(answer(503));
    const { mesh: m, breaker } = breakerMesh([s.address], { volumeThreshold: 4, resetTimeoutMs: 200 });
    const changes: CircuitStateChange[] = [];
    breaker.onStateChange((c) => changes.push(c));
    for (let i = 0; i < 4; i++) await hit(m);
    expect(breaker.state).toBe('open');
    const halfOpen = next(breaker, 'half-open');
    expect(await hit(m)).toBeInstanceOf(CircuitOpenError);
    await halfOpen;
    expect(breaker.status).toBe('busy'); // waiting for a trial: usable, but not preferred

    // One trial at a time: while it is in flight, other calls fail fast.
    const g = gate();
    s.handler = async (_req, res) => {
      await g.opened;
      res.end('recovered');
    };
    const before = s.received.length;
    const trial = hit(m);
    await until(() => s.received.length === before + 1, 5_000, 'timer');
    expect(breaker.status).toBe('down');
    const refused = await hit(m);
    expect(refused).toBeInstanceOf(CircuitOpenError);
    expect(refused).toMatchObject({ state: 'half-open' });
    const closed = next(breaker, 'closed');
    g.open();
    expect(await trial).toEqual({ status: 200, text: 'recovered' });
    await closed;
    expect(s.received.length).toBe(before + 1);
    expect(breaker.status).toBe('ready');
    expect(changes.map((c) => `${c.from}->${c.to}`)).toEqual([
      'closed->open',
      'open->half-open',
      'half-open->closed',
    ]);
    // The window starts afresh on close (as Hystrix does): the failures that opened it are gone, so one new
    // failure does not open it again.
    expect(breaker.snapshot()).toMatchObject({ failures: 0 });
    s.handler = answer(503);
    await hit(m);
    expect(breaker.state).toBe('closed');
    expect(await hit(m)).toEqual({ status: 503, text: 'status 503' });
  });

  it('opens again when the half-open trial fails', async () => {
    const s = await server(answer(503));
    const { mesh: m, breaker } = breakerMesh([s.address], { volumeThreshold: 2, resetTimeoutMs: 200 });
    const halfOpen = next(breaker, 'half-open');
    await hit(m);
    await hit(m);
    expect(breaker.state).toBe('open');
    await halfOpen;
    const reopened = next(breaker, 'open');
    expect(await hit(m)).toEqual({ status: 503, text: 'status 503' }); // the trial's answer reaches the caller
    expect(await reopened).toMatchObject({ from: 'half-open', to: 'open' });
    expect(await hit(m)).toBeInstanceOf(CircuitOpenError);
    expect(breaker.snapshot().opened).toBe(2);
  });

  it('does not open on 4xx answers', async () => {
    const s = await server(answer(404));
    const { mesh: m, breaker } = breakerMesh([s.address], {
      volumeThreshold: 4,
      errorThresholdPercentage: 0,
    });
    for (let i = 0; i < 30; i++) expect(await hit(m)).toMatchObject({ status: 404 });
    expect(breaker.state).toBe('closed');
    expect(breaker.snapshot()).toMatchObject({ successes: 30, failures: 0 });
  });

  it('does not count caller aborts or back-pressure (429) either way', async () => {
    const s = await server(() => {
      // Never answers: the caller gives up.
    });
    const { mesh: m, breaker } = breakerMesh([s.address], {
      volumeThreshold: 2,
      errorThresholdPercentage: 0,
    });
    for (let i = 0; i < 10; i++) {
      const ac = new AbortController();
      const call = hit(m, ac.signal);
      await until(() => s.received.length === i + 1, 5_000, 'timer');
      ac.abort();
      expect(await call).toMatchObject({ name: 'AbortError' });
    }
    s.handler = answer(429);
    for (let i = 0; i < 10; i++) expect(await hit(m)).toMatchObject({ status: 429 });
    expect(breaker.state).toBe('closed');
    expect(breaker.snapshot()).toMatchObject({ failures: 0, successes: 0, requests: 0, ignored: 20 });
  });

  it('does not close on a half-open trial the caller aborted: that proves nothing, so it opens again', async () => {
    const s = await server(answer(503));
    const { mesh: m, breaker } = breakerMesh([s.address], { volumeThreshold: 2, resetTimeoutMs: 200 });
    const halfOpen = next(breaker, 'half-open');
    await hit(m);
    await hit(m);
    await halfOpen;
    s.handler = () => {}; // hangs
    const before = s.received.length;
    const ac = new AbortController();
    const trial = hit(m, ac.signal);
    await until(() => s.received.length === before + 1, 5_000, 'timer');
    const reopened = next(breaker, 'open');
    ac.abort();
    expect(await trial).toMatchObject({ name: 'AbortError' });
    expect(await reopened).toMatchObject({ from: 'half-open', to: 'open' });
  });

  it('passes real errors through unchanged, counting them as failures', async () => {
    const port = await closedPort();
    const { mesh: m, breaker } = breakerMesh([`127.0.0.1:${port}`], {
      volumeThreshold: 3,
      resetTimeoutMs: 60_000,
    });
    for (let i = 0; i < 3; i++) {
      const e = await hit(m);
      expect(e).toBeInstanceOf(TransportError);
      expect(e).toMatchObject({ code: 'MESH_TRANSPORT', causeCode: 'ECONNREFUSED' });
    }
    expect(breaker.state).toBe('open');
    expect(await hit(m)).toBeInstanceOf(CircuitOpenError);
  });

  it('sees each attempt once under retries, which stop at the open breaker', async () => {
    const s = await server(answer(503));
    const { mesh: m, breaker } = breakerMesh(
      [s.address],
      { volumeThreshold: 6, resetTimeoutMs: 60_000 },
      { retries: true },
    );
    for (let i = 0; i < 10; i++) {
      const r = await hit(m);
      if (r instanceof Error) expect(r).toBeInstanceOf(CircuitOpenError);
      else expect(r).toEqual({ status: 503, text: 'status 503' });
    }
    expect(breaker.state).toBe('open');
    // Every attempt that reached the server was counted once, as a failure; the rest failed fast.
    const snap = breaker.snapshot();
    expect(snap.failures).toBe(s.received.length);
    expect(snap.failures).toBeGreaterThanOrEqual(6);
    expect(snap.rejected).toBeGreaterThan(0);
  });

  it('leaves nothing running after mesh.close(): no reset timer, no bucket rotation', async () => {
    // Timers are unref'ed, so getActiveResourcesInfo() does not list them: follow opossum's reset timer itself
    // with an async hook, from its creation to its destruction.
    const asyncIds = new WeakMap<object, number>();
    const destroyed = new Set<number>();
    const hook = createHook({
      init: (id, type, _trigger, resource) =>
        void (type === 'Timeout' && asyncIds.set(resource as object, id)),
      destroy: (id) => void destroyed.add(id),
    }).enable();
    try {
      const s = await server(answer(503));
      const { mesh: m, breaker } = breakerMesh([s.address], { volumeThreshold: 2, resetTimeoutMs: 60_000 });
      expect(bucketRotationStats(systemClock)).toEqual({ timers: 1, breakers: 1 });
      await hit(m);
      await hit(m);
      expect(breaker.state).toBe('open');
      const key = Object.getOwnPropertySymbols(breaker.opossum).find(
        (x) => x.description === 'reset-timeout',
      );
      const resetTimer = (breaker.opossum as unknown as Record<symbol, object>)[key!]!;
      const id = asyncIds.get(resetTimer);
      expect(id).toBeTypeOf('number');
      expect(destroyed.has(id!)).toBe(false);
      await m.close();
      mesh = undefined;
      expect(breaker.opossum.isShutdown).toBe(true);
      expect(bucketRotationStats(systemClock)).toEqual({ timers: 0, breakers: 0 });
      await until(() => destroyed.has(id!), 5_000, 'timer');
      expect(await m.request('http://users/').catch((e: unknown) => e)).toMatchObject({
        code: 'MESH_CLOSED',
      });
    } finally {
      hook.disable();
    }
  });
});

describe('circuit breaker right above the destination, or with a module in between', () => {
  /** Sits between the breaker and the destination. */
  const passThrough: StackModule = {
    role: 'pass-through',
    description: 'calls the next service',
    make: (next) =>
      new (class extends Filter {
        call(req: Parameters<Filter['call']>[0], ctx: Parameters<Filter['call']>[1]) {
          return this.next.call(req, ctx);
        }
      })(next),
  };

  async function run(direct: boolean, s: TestServer): Promise<Record<string, unknown>[]> {
    const address = s.address;
    const built: CircuitBreakerFilter[] = [];
    const base = createCircuitBreakerModule({ volumeThreshold: 1_000, resetTimeoutMs: 60_000 });
    const capture: StackModule = {
      ...base,
      make: (next, env) => {
        const f = base.make(next, env);
        if (f instanceof CircuitBreakerFilter) built.push(f);
        return f;
      },
    };
    const m = createMesh({
      services: {
        users: { endpoints: [address], failureAccrual: false },
        nobody: { endpoints: [], failureAccrual: false },
      },
      stack: (d) => {
        const concrete = d.concrete.replace('circuit-breaker', capture);
        return {
          ...d,
          logical: d.logical.remove('retries'),
          concrete: direct ? concrete : concrete.insertAfter('circuit-breaker', passThrough),
        };
      },
    });
    mesh = m;
    const outcomes: string[] = [];
    for (const path of ['/200', '/503', '/200', '/404', '/429', '/503', '/200']) {
      const r = await m.request(`http://users${path}`);
      outcomes.push(`${r.statusCode}:${await r.body.text()}`);
    }
    const ac = new AbortController();
    const aborted = m.request('http://users/hang', { signal: ac.signal });
    const seen = s.received.length;
    await until(() => s.received.length > seen);
    ac.abort();
    outcomes.push(String(await aborted.catch((e: Error) => e.message)));
    for (let i = 0; i < 3; i++)
      outcomes.push(
        String(await m.request('http://nobody/').catch((e: Error) => (e as { code?: string }).code)),
      );
    const snapshots = built.map((b) => {
      const { service, state, requests, successes, failures, rejected, ignored, opened } = b.snapshot();
      return { service, state, requests, successes, failures, rejected, ignored, opened };
    });
    await m.close({ gracePeriodMs: 0 });
    mesh = undefined;
    return [{ outcomes }, ...snapshots.sort((a, b) => String(a.service).localeCompare(String(b.service)))];
  }

  it('counts every kind of outcome the same way in both places', async () => {
    const s = await server((req, res) => {
      if (req.url === '/hang') return; // never answers: the caller aborts
      const status = Number(req.url!.slice(1));
      res.statusCode = status;
      res.end(`status ${status}`);
    });
    const direct = await run(true, s);
    const between = await run(false, s);
    expect(direct).toEqual(between);
    // And the counts are the expected ones, not merely equal: 3 successes, 2 failures (503), 404 a success,
    // 429 and the caller's abort ignored; the service with no endpoint counts nothing (an empty endpoint set
    // is the destination's state, not its failure).
    expect(direct[1]).toMatchObject({ service: 'nobody', failures: 0 });
    expect(direct[2]).toMatchObject({ service: 'users', successes: 4, failures: 2, state: 'closed' });
  });
});
