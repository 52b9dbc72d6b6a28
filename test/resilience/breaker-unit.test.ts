// The circuit breaker without a network: option validation, the stack module's contract, the shared bucket
// rotation on the mesh clock (FakeClock), counting by the shared classifier, and state-change subscriptions.
// The end-to-end behaviour against real servers is in breaker.test.ts.
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  ConfigError,
  DeadlineExceededError,
  type MeshRequest,
  type MeshResponse,
  type ModuleEnv,
  type Service,
} from 'meshfetch';
import { CallContext, Params, silentLogger } from 'meshfetch/extend';
import { FakeClock, mockResponse, mockService, seededRng, type MockHandle } from 'meshfetch/testing';
import {
  bucketRotationStats,
  circuitBreakerModule,
  CircuitBreakerFilter,
  CircuitBreakerParam,
  CircuitOpenError,
  createCircuitBreakerModule,
  defaultCircuitBreakerOptions,
  resolveCircuitBreakerOptions,
  type CircuitBreakerOptions,
  type CircuitStateChange,
} from '../../src/resilience/breaker.js';
import {
  Classified,
  ClassifierParam,
  defaultClassifier,
  type Classifier,
} from '../../src/resilience/classifier.js';
import { meshRequest } from '../support/requests.js';
import { moduleEnv } from '../support/targets.js';

/** A mock leaf that answers every call with `outcome` (a status code, or an error to fail with). */
function mockLeaf(outcome: number | Error = 200): {
  leaf: Service;
  handle: MockHandle<MeshRequest, MeshResponse>;
} {
  const { service, handle } = mockService();
  answer(handle, outcome);
  return { leaf: service, handle };
}

/** Sets the outcome of the leaf's calls from now on. */
function answer(handle: MockHandle<MeshRequest, MeshResponse>, o: number | Error): void {
  handle.onCall = (call) =>
    o instanceof Error ? call.fail(o) : call.respond(mockResponse(o, {}, `status ${o}`));
}

const req: MeshRequest = meshRequest();
const ctx = (): CallContext => new CallContext('users', undefined, Infinity, undefined, 0, silentLogger);

const open: CircuitBreakerFilter[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((f) => f.close()));
});

function env(clock: FakeClock, params = Params.empty): ModuleEnv<'concrete'> {
  return moduleEnv('concrete', { params, clock, rng: seededRng(1), logger: silentLogger });
}

function breaker(
  leaf: Service,
  clock: FakeClock,
  options: Partial<CircuitBreakerOptions> = {},
  classifier: Classifier = defaultClassifier,
): CircuitBreakerFilter {
  const o = resolveCircuitBreakerOptions(options) as CircuitBreakerOptions;
  const f = new CircuitBreakerFilter(leaf, env(clock), o, classifier);
  open.push(f);
  return f;
}

/** Calls and consumes the body; returns the status code or the error. */
async function hit(f: Service): Promise<number | unknown> {
  try {
    const res = await f.call(req, ctx());
    res.body.resume();
    return res.statusCode;
  } catch (err) {
    return err;
  }
}

describe('resolveCircuitBreakerOptions', () => {
  it('gives the defaults for undefined and true, false for false, and fills in a partial object', () => {
    expect(resolveCircuitBreakerOptions(undefined)).toEqual(defaultCircuitBreakerOptions);
    expect(resolveCircuitBreakerOptions(true)).toEqual(defaultCircuitBreakerOptions);
    expect(resolveCircuitBreakerOptions(false)).toBe(false);
    expect(resolveCircuitBreakerOptions({ resetTimeoutMs: 10_000, volumeThreshold: 0 })).toEqual({
      ...defaultCircuitBreakerOptions,
      resetTimeoutMs: 10_000,
      volumeThreshold: 0,
    });
    // Hystrix's defaults.
    expect(defaultCircuitBreakerOptions).toEqual({
      errorThresholdPercentage: 50,
      volumeThreshold: 20,
      windowMs: 10_000,
      windowBuckets: 10,
      resetTimeoutMs: 5_000,
    });
  });

  it.each([
    [{ errorThresholdPercentage: 100 }, 'errorThresholdPercentage', 100],
    [{ errorThresholdPercentage: -1 }, 'errorThresholdPercentage', -1],
    [{ errorThresholdPercentage: '50' }, 'errorThresholdPercentage', '50'],
    [{ volumeThreshold: 2.5 }, 'volumeThreshold', 2.5],
    [{ volumeThreshold: -1 }, 'volumeThreshold', -1],
    [{ windowMs: 0 }, 'windowMs', 0],
    [{ windowMs: Infinity }, 'windowMs', Infinity],
    [{ windowBuckets: 0 }, 'windowBuckets', 0],
    [{ windowMs: 5, windowBuckets: 10 }, 'windowBuckets', 10],
    [{ resetTimeoutMs: NaN }, 'resetTimeoutMs', NaN],
    [{ resetTimeoutMs: 2 ** 31 }, 'resetTimeoutMs', 2 ** 31],
    [{ resetTimeout: 1000 }, 'resetTimeout', 1000],
  ])('%o is a ConfigError at path.%s', (input, field, value) => {
    let err: unknown;
    try {
      resolveCircuitBreakerOptions(input, 'services.users.circuitBreaker');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).path).toBe(`services.users.circuitBreaker.${field}`);
    expect((err as ConfigError).value).toEqual(value);
    expect((err as ConfigError).code).toBe('MESH_CONFIG');
  });

  it.each([null, 3, 'on', [1]])(
    '%o (not an object or boolean) is a ConfigError at the path itself',
    (input) => {
      expect(() => resolveCircuitBreakerOptions(input, 'defaults.circuitBreaker')).toThrow(
        expect.objectContaining({ path: 'defaults.circuitBreaker' }),
      );
    },
  );

  it('createCircuitBreakerModule validates at once', () => {
    expect(() => createCircuitBreakerModule({ resetTimeoutMs: 0 })).toThrow(
      expect.objectContaining({ path: 'circuitBreaker.resetTimeoutMs', value: 0 }),
    );
  });
});

describe('the circuit-breaker module', () => {
  it('wraps a concrete stack, and returns next unchanged when the param is false', () => {
    const clock = new FakeClock();
    const { leaf } = mockLeaf();
    expect(circuitBreakerModule.role).toBe('circuit-breaker');
    expect(circuitBreakerModule.params).toContain(CircuitBreakerParam);
    const f = circuitBreakerModule.make(leaf, env(clock));
    expect(f).toBeInstanceOf(CircuitBreakerFilter);
    open.push(f as CircuitBreakerFilter);
    expect((f as CircuitBreakerFilter).options).toEqual(defaultCircuitBreakerOptions);
    expect(circuitBreakerModule.make(leaf, env(clock, Params.empty.with(CircuitBreakerParam, false)))).toBe(
      leaf,
    );
    expect(createCircuitBreakerModule(false).make(leaf, env(clock))).toBe(leaf);
  });

  it('a service param overrides the module options; bad params are a ConfigError naming the service', () => {
    const clock = new FakeClock();
    const m = createCircuitBreakerModule({ volumeThreshold: 3 });
    const a = m.make(mockLeaf().leaf, env(clock)) as CircuitBreakerFilter;
    const b = m.make(
      mockLeaf().leaf,
      env(
        clock,
        Params.empty.with(CircuitBreakerParam, { ...defaultCircuitBreakerOptions, volumeThreshold: 7 }),
      ),
    ) as CircuitBreakerFilter;
    open.push(a, b);
    expect(a.options.volumeThreshold).toBe(3);
    expect(b.options.volumeThreshold).toBe(7);
    const bad = { ...defaultCircuitBreakerOptions, windowBuckets: 0 };
    expect(() => m.make(mockLeaf().leaf, env(clock, Params.empty.with(CircuitBreakerParam, bad)))).toThrow(
      expect.objectContaining({ path: 'services.users.circuitBreaker.windowBuckets' }),
    );
  });

  it('refuses to be built anywhere but the concrete stack', () => {
    const clock = new FakeClock();
    for (const level of ['logical', 'endpoint'] as const) {
      const wrong = moduleEnv(level, {
        params: Params.empty,
        clock,
        rng: seededRng(1),
        logger: silentLogger,
      });
      expect(() => circuitBreakerModule.make(mockLeaf().leaf, wrong)).toThrow(ConfigError);
    }
  });

  it('counts with the service classifier (ClassifierParam)', async () => {
    const clock = new FakeClock();
    // This service says 409 is a failure.
    const classifier: Classifier = (i) =>
      i.res?.statusCode === 409 ? Classified.failure : defaultClassifier(i);
    const { leaf, handle } = mockLeaf();
    const f = createCircuitBreakerModule({ volumeThreshold: 4 }).make(
      leaf,
      env(clock, Params.empty.with(ClassifierParam, classifier)),
    ) as CircuitBreakerFilter;
    open.push(f);
    answer(handle, 409);
    for (let i = 0; i < 4; i++) expect(await hit(f)).toBe(409);
    expect(f.state).toBe('open');
    expect(await hit(f)).toBeInstanceOf(CircuitOpenError);
  });
});

describe('counting', () => {
  it('counts exactly what the classifier says: 5xx fail, 4xx succeed, 429 / aborts / deadlines are ignored', async () => {
    const clock = new FakeClock();
    const { leaf, handle } = mockLeaf();
    const f = breaker(leaf, clock, { volumeThreshold: 1000 });
    for (const o of [503, 502, 500, 200, 404, 400, 429]) {
      answer(handle, o);
      expect(await hit(f)).toBe(o);
    }
    const abort = new DOMException('aborted', 'AbortError');
    answer(handle, abort);
    expect(await hit(f)).toBe(abort);
    const late = new DeadlineExceededError('users', 100, 'headers');
    answer(handle, late);
    expect(await hit(f)).toBe(late);
    const refused = new Error('connect ECONNREFUSED');
    answer(handle, refused);
    expect(await hit(f)).toBe(refused); // the original error, not a wrapper
    expect(f.snapshot()).toMatchObject({ requests: 7, failures: 4, successes: 3, ignored: 3, rejected: 0 });
  });

  it('a throwing classifier neither loses the response nor breaks the call', async () => {
    const clock = new FakeClock();
    const { leaf, handle } = mockLeaf();
    const f = breaker(leaf, clock, {}, () => {
      throw new Error('classifier bug');
    });
    answer(handle, 503);
    expect(await hit(f)).toBe(503);
    const err = new Error('boom');
    answer(handle, err);
    expect(await hit(f)).toBe(err);
    expect(f.snapshot()).toMatchObject({ successes: 1, failures: 1 });
  });

  it('opens at more than errorThresholdPercentage once the volume is reached, not before', async () => {
    const clock = new FakeClock();
    const { leaf, handle } = mockLeaf();
    const f = breaker(leaf, clock, { volumeThreshold: 10, errorThresholdPercentage: 50 });
    // 5 successes then failures: at the 10th request the rate is 50 % (not above), at the 11th 6/11.
    for (let i = 0; i < 5; i++) await hit(f);
    answer(handle, 503);
    for (let i = 0; i < 5; i++) await hit(f);
    expect(f.state).toBe('closed');
    await hit(f);
    expect(f.state).toBe('open');
    expect(f.status).toBe('down');
    const calls = handle.calls.length;
    const e = await hit(f);
    expect(e).toBeInstanceOf(CircuitOpenError);
    expect(e).toMatchObject({
      code: 'MESH_CIRCUIT_OPEN',
      phase: 'route',
      retryable: true,
      service: 'users',
      destination: 'primary',
      state: 'open',
    });
    expect(handle.calls.length).toBe(calls);
    expect(f.snapshot()).toMatchObject({ state: 'open', rejected: 1, opened: 1, failures: 6, successes: 5 });
  });

  it('closed: outcomes are counted without opossum’s fire; the failure past the threshold opens opossum', async () => {
    const clock = new FakeClock();
    const { leaf, handle } = mockLeaf();
    const f = breaker(leaf, clock, { volumeThreshold: 4, errorThresholdPercentage: 50 });
    const realFire = f.opossum.fire.bind(f.opossum);
    let fired = 0;
    f.opossum.fire = (...args) => {
      fired++;
      return realFire(...args);
    };
    for (let i = 0; i < 3; i++) expect(await hit(f)).toBe(200);
    expect(fired).toBe(0);
    expect(f.snapshot()).toMatchObject({ state: 'closed', requests: 3, successes: 3, failures: 0 });
    answer(handle, 500);
    for (let i = 0; i < 3; i++) expect(await hit(f)).toBe(500);
    // 3 failures of 6 is 50 %, not above it: still closed; counted by the breaker, not through opossum.
    expect(fired).toBe(0);
    expect(f.snapshot()).toMatchObject({ state: 'closed', requests: 6, successes: 3, failures: 3 });
    expect(await hit(f)).toBe(500); // 4 of 7 > 50 %: opossum is opened, before the caller has the response
    expect(f.opossum.opened).toBe(true);
    expect(f.state).toBe('open');
    expect(await hit(f)).toBeInstanceOf(CircuitOpenError);
  });

  it('keeps no per-call latency samples in opossum’s window', async () => {
    const clock = new FakeClock();
    const { leaf } = mockLeaf();
    const f = breaker(leaf, clock, { volumeThreshold: 10_000, windowMs: 1_000 });
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 50; i++) await hit(f);
      clock.advance(100);
    }
    const held = f.opossum.status.window.reduce(
      (n, b) => n + (Array.isArray(b.latencyTimes) ? b.latencyTimes.length : 0),
      0,
    );
    expect(held).toBe(0);
    expect(f.snapshot().requests).toBe(150);
  });
});

describe('the shared bucket rotation (mesh clock)', () => {
  it('slides the window: failures older than windowMs no longer count', async () => {
    const clock = new FakeClock();
    const { leaf } = mockLeaf(503);
    const f = breaker(leaf, clock, { volumeThreshold: 4, windowMs: 1_000, windowBuckets: 10 });
    for (let i = 0; i < 3; i++) await hit(f);
    clock.advance(500);
    expect(f.snapshot().failures).toBe(3);
    clock.advance(500);
    expect(f.snapshot()).toMatchObject({ failures: 0, requests: 0 });
    await hit(f); // 1 in the window: below the volume threshold
    expect(f.state).toBe('closed');
    for (let i = 0; i < 3; i++) await hit(f);
    expect(f.state).toBe('open');
  });

  it('runs one timer for every breaker with the same bucket length, and none once they are closed', async () => {
    const clock = new FakeClock();
    const a = breaker(mockLeaf().leaf, clock);
    const b = breaker(mockLeaf().leaf, clock);
    const c = breaker(mockLeaf().leaf, clock);
    expect(clock.pendingTimers).toBe(1);
    expect(bucketRotationStats(clock)).toEqual({ timers: 1, breakers: 3 });
    const d = breaker(mockLeaf().leaf, clock, { windowMs: 30_000 });
    expect(bucketRotationStats(clock)).toEqual({ timers: 2, breakers: 4 });
    clock.advance(60_000); // many rotations; still one timer per bucket length
    expect(clock.pendingTimers).toBe(2);
    for (const f of [a, b, c, d]) await f.close();
    expect(clock.pendingTimers).toBe(0);
    expect(bucketRotationStats(clock)).toEqual({ timers: 0, breakers: 0 });
    // A breaker made afterwards starts the rotation again.
    breaker(mockLeaf().leaf, clock);
    expect(bucketRotationStats(clock)).toEqual({ timers: 1, breakers: 1 });
  });
});

describe('the half-open trial', () => {
  /** Resolves at the breaker's next transition to `to` (opossum's reset timer runs on real time). */
  function next(f: CircuitBreakerFilter, to: CircuitStateChange['to']): Promise<CircuitStateChange> {
    return new Promise((resolve) => {
      const sub = f.onStateChange((c) => {
        if (c.to !== to) return;
        sub.unsubscribe();
        resolve(c);
      });
    });
  }

  it('closes on an error the classifier calls a success, and the caller still gets that error', async () => {
    const clock = new FakeClock();
    const benign = new Error('benign');
    const classifier: Classifier = (i) => (i.error === benign ? Classified.success : defaultClassifier(i));
    const { leaf, handle } = mockLeaf(503);
    const f = breaker(leaf, clock, { volumeThreshold: 2, resetTimeoutMs: 1 }, classifier);
    const halfOpen = next(f, 'half-open');
    await hit(f);
    await hit(f);
    expect(f.state).toBe('open');
    await halfOpen;
    answer(handle, benign);
    const closed = next(f, 'closed');
    expect(await hit(f)).toBe(benign);
    await closed;
    expect(f.snapshot()).toMatchObject({ state: 'closed', requests: 0, failures: 0, opened: 1 });
  });

  it('counts a closed-state call that ends after the breaker opened, without deciding anything', async () => {
    const clock = new FakeClock();
    const { leaf, handle } = mockLeaf(503);
    handle.onCall = undefined;
    const f = breaker(leaf, clock, { volumeThreshold: 2, resetTimeoutMs: 60_000 });
    const late = f.call(req, ctx());
    const lateCall = await handle.nextCall();
    handle.onCall = (call) => call.respond(mockResponse(503, {}, 'status 503'));
    await hit(f);
    await hit(f);
    expect(f.state).toBe('open');
    lateCall.respond(mockResponse(200, {}, 'late'));
    expect((await late).statusCode).toBe(200);
    expect(f.snapshot()).toMatchObject({ state: 'open', requests: 3, successes: 1, failures: 2, opened: 1 });
  });
});

describe('state changes', () => {
  it('are delivered to subscribers until they unsubscribe; a listener that throws harms nothing', async () => {
    const clock = new FakeClock();
    clock.advance(1234);
    const { leaf } = mockLeaf(503);
    const f = breaker(leaf, clock, { volumeThreshold: 2, resetTimeoutMs: 60_000 });
    const seen: CircuitStateChange[] = [];
    f.onStateChange(() => {
      throw new Error('listener bug');
    });
    const sub = f.onStateChange((c) => seen.push(c));
    await hit(f);
    expect(await hit(f)).toBe(503);
    expect(seen).toEqual([
      { service: 'users', destination: 'primary', from: 'closed', to: 'open', at: 1234 },
    ]);
    sub.unsubscribe();
    f.opossum.close(); // (driving opossum by hand only to produce a transition)
    expect(f.state).toBe('closed');
    expect(seen).toHaveLength(1);
    {
      using _ = f.onStateChange((c) => seen.push(c));
    }
    f.opossum.open();
    expect(seen).toHaveLength(1);
  });

  it('close() shuts opossum down and closes what is below; calls then fail with MeshClosedError', async () => {
    const clock = new FakeClock();
    const { leaf } = mockLeaf();
    const closeBelow = vi.spyOn(leaf, 'close');
    const f = breaker(leaf, clock);
    await f.close();
    await f.close();
    expect(f.opossum.isShutdown).toBe(true);
    expect(f.status).toBe('down');
    expect(closeBelow).toHaveBeenCalledTimes(2);
    expect(await hit(f)).toMatchObject({ code: 'MESH_CLOSED' });
  });
});
