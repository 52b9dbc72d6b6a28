// Failure accrual, deterministic: a mock endpoint whose outcomes the test scripts, the fake clock and fixed or
// seeded randomness. Triggers (consecutive failures, success rate over a sliding window), what is ignored,
// the equal-jittered backoff, probing one at a time (also through a real P2C distributor), options.
import { PassThrough, Readable } from 'node:stream';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PendingLoad } from '../../src/balance/pending.js';
import { P2CDistributor } from '../../src/balance/p2c.js';
import type { BalancerNode } from '../../src/balance/types.js';
import { CallContext } from '../../src/core/context.js';
import { ConfigError, DeadlineExceededError, TransportError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/core/logger.js';
import type { MeshRequest, MeshResponse } from '../../src/core/message.js';
import { Params } from '../../src/core/params.js';
import { OutcomeWindow } from '../../src/core/outcome-window.js';
import { seededRng, type Rng } from '../../src/core/rng.js';
import {
  FAILURE_ACCRUAL_DEFAULTS,
  FailureAccrualParam,
  resolveFailureAccrualOptions,
  type FailureAccrualOptions,
} from '../../src/resilience/accrual-options.js';
import {
  failureAccrualModule,
  failureAccrualOf,
  type AccrualTransition,
  type FailureAccrualFilter,
} from '../../src/resilience/accrual.js';
import {
  ClassifierParam,
  Classified,
  defaultClassifier,
  type Classifier,
} from '../../src/resilience/classifier.js';
import { FakeClock } from '../../src/testing/fake-clock.js';
import { mockService, type MockHandle } from '../../src/testing/mock.js';
import { memoryLogger } from '../support/memory-logger.js';
import { meshRequest } from '../support/requests.js';
import { targetOf } from '../support/targets.js';

type Outcome = MeshResponse | Error | 'hold';

type Endpoint = MockHandle<MeshRequest, MeshResponse>;

/** Answers each call with what `next` gives; `hold` leaves it pending, for the test to settle (`nextCall`). */
function answer(ep: Endpoint, next: () => Outcome): void {
  ep.onCall = (call) => {
    const o = next();
    if (o === 'hold') return;
    if (o instanceof Error) call.fail(o);
    else call.respond(o);
  };
}

function res(
  statusCode: number,
  rawHeaders: string[] = [],
  body: Readable = Readable.from([]),
): MeshResponse {
  return { statusCode, statusText: '', rawHeaders, body };
}

const transportError = (): TransportError =>
  new TransportError('connect ECONNREFUSED', {
    phase: 'connect',
    retryable: true,
    causeCode: 'ECONNREFUSED',
  });

const request = meshRequest;

function context(signal?: AbortSignal): CallContext {
  return new CallContext('users', signal, Infinity, undefined, 0, silentLogger);
}

const fixed = (v: number): Rng => ({ next: () => v });

interface Setup {
  clock: FakeClock;
  ep: Endpoint;
  f: FailureAccrualFilter;
  transitions: AccrualTransition[];
  /** Sends one call with the given outcome; resolves to the response or the error. */
  send(o: Outcome | (() => Outcome), signal?: AbortSignal): Promise<MeshResponse | unknown>;
  sendN(n: number, o: Outcome | (() => Outcome)): Promise<void>;
}

function setup(
  options: FailureAccrualOptions = {},
  rng: Rng = fixed(0),
  classifier?: Classifier,
  logger = silentLogger,
): Setup {
  const clock = new FakeClock();
  const { service, handle: ep } = mockService();
  answer(ep, () => res(200));
  let params = Params.empty.with(
    FailureAccrualParam,
    resolveFailureAccrualOptions(options, 'failureAccrual'),
  );
  if (classifier) params = params.with(ClassifierParam, classifier);
  const svc = failureAccrualModule.make(service, {
    level: 'endpoint',
    target: targetOf('endpoint'),
    params,
    clock,
    rng,
    logger,
  });
  const f = failureAccrualOf(svc)!;
  expect(f).toBeDefined();
  const transitions: AccrualTransition[] = [];
  f.onTransition((t) => transitions.push(t));
  const send = (o: Outcome | (() => Outcome), signal?: AbortSignal): Promise<MeshResponse | unknown> => {
    answer(ep, typeof o === 'function' ? o : () => o);
    return f.call(request(), context(signal)).then(
      (r) => {
        r.body.resume();
        return r;
      },
      (e: unknown) => e,
    );
  };
  const sendN = async (n: number, o: Outcome | (() => Outcome)): Promise<void> => {
    for (let i = 0; i < n; i++) await send(o);
  };
  return { clock, ep, f, transitions, send, sendN };
}

const s503 = (): MeshResponse => res(503);
const ok = (): MeshResponse => res(200);

describe('failure accrual: consecutive failures', () => {
  it('marks the endpoint busy after 5 failures in a row (the default), not before', async () => {
    const t = setup();
    await t.sendN(4, s503);
    expect(t.f.status).toBe('ready');
    expect(t.f.snapshot().consecutiveFailures).toBe(4);
    await t.send(s503);
    expect(t.f.status).toBe('busy');
    expect(t.f.accrualState).toBe('busy');
    expect(t.transitions.map((x) => [x.from, x.to, x.reason])).toEqual([
      ['ready', 'busy', 'consecutive-failures'],
    ]);
    expect(t.transitions[0]!.endpoint).toBe('10.0.0.1:80');
    const s = t.f.snapshot();
    expect(s).toMatchObject({ state: 'busy', timesMarkedBusy: 1, backoffStep: 1, busyForMs: 2_500 });
    // Counters start afresh for the next ready period.
    expect(s.consecutiveFailures).toBe(0);
  });

  it('a success ends the run; transport errors count and pass through unchanged', async () => {
    const t = setup({ successRate: 0 });
    await t.sendN(4, s503);
    await t.send(ok);
    await t.sendN(4, transportError);
    expect(t.f.status).toBe('ready');
    const e = transportError();
    expect(await t.send(e)).toBe(e);
    expect(t.f.status).toBe('busy');
  });

  it('counts 4xx as success (the caller is at fault, not the endpoint)', async () => {
    const t = setup({ successRate: 0 });
    await t.sendN(4, s503);
    await t.send(res(404));
    await t.sendN(4, s503);
    expect(t.f.status).toBe('ready');
  });

  it('0 turns the trigger off', async () => {
    const t = setup({ consecutiveFailures: 0, successRate: 0 });
    await t.sendN(100, s503);
    expect(t.f.status).toBe('ready');
    expect(t.f.snapshot().consecutiveFailures).toBe(100);
  });
});

describe('failure accrual: success rate over a window', () => {
  it('marks busy below 80 % with at least 5 outcomes in the window', async () => {
    const t = setup({ consecutiveFailures: 0 });
    await t.send(ok);
    await t.send(s503);
    await t.send(ok);
    await t.send(s503); // 50 %, but only 4 outcomes
    expect(t.f.status).toBe('ready');
    await t.send(ok); // 60 % over 5; only a failure can lower the rate, so only a failure checks it
    expect(t.f.status).toBe('ready');
    await t.send(s503); // 50 % over 6
    expect(t.f.status).toBe('busy');
    expect(t.transitions.at(-1)!.reason).toBe('success-rate');
  });

  it('exactly 80 % is not below 80 %', async () => {
    const t = setup({ consecutiveFailures: 0 });
    await t.sendN(4, ok);
    await t.send(s503); // 4/5 = 80 %
    expect(t.f.status).toBe('ready');
    expect(t.f.snapshot().successRate).toBeCloseTo(0.8);
    await t.send(s503); // 4/6
    expect(t.f.status).toBe('busy');
  });

  it('forgets outcomes older than the window', async () => {
    const t = setup({ consecutiveFailures: 0 });
    await t.sendN(4, s503);
    t.clock.advance(30_001);
    await t.send(s503); // the 4 earlier failures left the window: 1 outcome
    expect(t.f.status).toBe('ready');
    expect(t.f.snapshot().windowRequests).toBe(1);
    // 20 successes then failures: busy at the 6th failure (20 / 26 < 80 %; 20 / 25 is not).
    const u = setup({ consecutiveFailures: 0 });
    await u.sendN(20, ok);
    u.clock.advance(10_000);
    await u.sendN(5, s503);
    expect(u.f.status).toBe('ready');
    await u.send(s503);
    expect(u.f.status).toBe('busy');
    // The same successes, 30 s earlier, no longer hold the rate up.
    const v = setup({ consecutiveFailures: 0 });
    await v.sendN(20, ok);
    v.clock.advance(30_000);
    await v.sendN(4, s503);
    expect(v.f.status).toBe('ready'); // only 4 outcomes in the window
    await v.send(s503);
    expect(v.f.status).toBe('busy');
  });

  it('minRequests and successRate are configurable', async () => {
    const t = setup({ consecutiveFailures: 0, minRequests: 10, successRate: 0.5 });
    await t.sendN(5, ok);
    await t.sendN(4, s503); // 9 outcomes
    expect(t.f.status).toBe('ready');
    await t.send(s503); // 10 outcomes, 50 %: not below 50 %
    expect(t.f.status).toBe('ready');
    await t.send(s503);
    expect(t.f.status).toBe('busy');
  });
});

describe('failure accrual: ignored outcomes', () => {
  it('back-pressure, aborts and deadlines neither count as failures nor end a run', async () => {
    const t = setup();
    await t.sendN(4, s503);
    const ignored: Array<() => Outcome> = [
      () => res(429),
      () => res(503, ['Retry-After', '1']),
      () => new DOMException('aborted', 'AbortError'),
      () => new DeadlineExceededError('users', 100, 'headers'),
    ];
    for (const o of ignored) await t.sendN(3, o);
    // The caller aborted with a reason of its own: whatever error that produces is the caller's doing.
    const ac = new AbortController();
    ac.abort(new Error('caller went away'));
    await t.send(() => new Error('caller went away'), ac.signal);
    expect(t.f.status).toBe('ready');
    expect(t.f.snapshot()).toMatchObject({ consecutiveFailures: 4, windowRequests: 4 });
    await t.send(s503);
    expect(t.f.status).toBe('busy');
  });

  it("uses the service's classifier (ClassifierParam)", async () => {
    const classifier: Classifier = (i) =>
      i.res?.statusCode === 404
        ? Classified.failure
        : i.res?.statusCode === 503
          ? Classified.ignored
          : defaultClassifier(i);
    const t = setup({}, fixed(0), classifier);
    await t.sendN(10, s503);
    expect(t.f.status).toBe('ready');
    await t.sendN(5, () => res(404));
    expect(t.f.status).toBe('busy');
  });

  it('a classifier that throws is logged, its outcome ignored, and the response still returned', async () => {
    const log = memoryLogger();
    const t = setup(
      {},
      fixed(0),
      () => {
        throw new Error('bad classifier');
      },
      log.logger,
    );
    const r = res(500);
    expect(await t.send(r)).toBe(r);
    expect(t.f.snapshot().windowRequests).toBe(0);
    expect(log.lines.some((l) => l.level === 'warn' && /classifier threw/.test(l.msg ?? ''))).toBe(true);
  });
});

/** Drives the filter from busy to probing and sends a failing probe: the next busy period. */
async function failProbe(t: Setup): Promise<number> {
  t.clock.advance(t.f.snapshot().busyForMs!);
  expect(t.f.accrualState).toBe('probing');
  await t.send(s503);
  expect(t.f.accrualState).toBe('busy');
  return t.f.snapshot().busyForMs!;
}

describe('failure accrual: backoff', () => {
  it('doubles from 5 s up to 300 s (lower edge of the jitter: b/2)', async () => {
    const t = setup({}, fixed(0));
    await t.sendN(5, s503);
    const periods = [t.f.snapshot().busyForMs!];
    for (let i = 0; i < 9; i++) periods.push(await failProbe(t));
    expect(periods).toEqual([
      2_500, 5_000, 10_000, 20_000, 40_000, 80_000, 150_000, 150_000, 150_000, 150_000,
    ]);
    expect(t.transitions.filter((x) => x.reason === 'probe-failed')).toHaveLength(9);
  });

  it('upper edge of the jitter: b', async () => {
    const t = setup({}, fixed(1 - 2 ** -53));
    await t.sendN(5, s503);
    const periods = [t.f.snapshot().busyForMs!];
    for (let i = 0; i < 8; i++) periods.push(await failProbe(t));
    const expected = [5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000];
    periods.forEach((p, i) => expect(p).toBeCloseTo(expected[i]!, 6));
  });

  it('with a seeded rng every period is within [b/2, b] and the periods differ', async () => {
    for (const seed of [1, 2, 3, 42]) {
      const t = setup({ backoffBaseMs: 100, backoffMaxMs: 3_000 }, seededRng(seed));
      await t.sendN(5, s503);
      const periods = [t.f.snapshot().busyForMs!];
      for (let i = 0; i < 30; i++) periods.push(await failProbe(t));
      periods.forEach((p, i) => {
        const b = Math.min(3_000, 100 * 2 ** i);
        expect(p).toBeGreaterThanOrEqual(b / 2);
        expect(p).toBeLessThanOrEqual(b);
      });
      expect(new Set(periods.slice(6)).size).toBeGreaterThan(20);
    }
  });

  it('a revival resets the backoff', async () => {
    const t = setup({}, fixed(0));
    await t.sendN(5, s503);
    await failProbe(t);
    await failProbe(t);
    expect(t.f.snapshot().busyForMs).toBe(10_000);
    t.clock.advance(10_000);
    await t.send(ok);
    expect(t.f.accrualState).toBe('ready');
    expect(t.f.snapshot().backoffStep).toBe(0);
    await t.sendN(5, s503);
    expect(t.f.snapshot().busyForMs).toBe(2_500);
  });

  it('sets no timer: the end of a busy period is read from the clock', async () => {
    const t = setup();
    await t.sendN(5, s503);
    expect(t.clock.pendingTimers).toBe(0);
    t.clock.advance(2_499);
    expect(t.f.status).toBe('busy');
    t.clock.advance(1);
    expect(t.f.status).toBe('ready');
    expect(t.f.accrualState).toBe('probing');
    expect(t.transitions.at(-1)).toMatchObject({
      from: 'busy',
      to: 'probing',
      reason: 'backoff-elapsed',
      at: 2_500,
    });
  });
});

describe('failure accrual: probing', () => {
  async function probing(options: FailureAccrualOptions = {}): Promise<Setup> {
    const t = setup(options, fixed(0));
    await t.sendN(5, s503);
    t.clock.advance(2_500);
    expect(t.f.status).toBe('ready');
    return t;
  }

  it('lets one probe at a time: busy while it is in flight; its success makes the endpoint ready', async () => {
    const t = await probing();
    const probe = t.send('hold');
    expect(t.f.status).toBe('busy');
    expect(t.f.snapshot()).toMatchObject({ state: 'probing', probeInFlight: true });
    (await t.ep.nextCall()).respond(res(200));
    await probe;
    expect(t.f.status).toBe('ready');
    expect(t.f.accrualState).toBe('ready');
    expect(t.transitions.at(-1)).toMatchObject({ from: 'probing', to: 'ready', reason: 'probe-succeeded' });
  });

  it('a failed probe marks it busy again for a longer backoff', async () => {
    const t = await probing();
    await t.send(s503);
    expect(t.f.status).toBe('busy');
    expect(t.f.snapshot().busyForMs).toBe(5_000);
    expect(t.transitions.at(-1)!.reason).toBe('probe-failed');
  });

  it('an ignored probe (e.g. the caller aborted) frees the slot and keeps probing', async () => {
    const t = await probing();
    const probe = t.send('hold');
    expect(t.f.status).toBe('busy');
    (await t.ep.nextCall()).fail(new DOMException('aborted', 'AbortError'));
    await probe;
    expect(t.f.status).toBe('ready');
    expect(t.f.accrualState).toBe('probing');
  });

  it('probeSuccesses: that many successful probes in a row, one at a time', async () => {
    const t = await probing({ probeSuccesses: 3 });
    await t.send(ok);
    expect(t.f.snapshot()).toMatchObject({ state: 'probing', probeSuccesses: 1, probeInFlight: false });
    expect(t.f.status).toBe('ready'); // room for the next probe
    await t.send(ok);
    expect(t.f.accrualState).toBe('probing');
    await t.send(ok);
    expect(t.f.accrualState).toBe('ready');
  });

  it('a call sent while a probe is in flight (panic mode) is no probe, but its outcome counts as one', async () => {
    const t = await probing();
    const probe = t.send('hold');
    await t.send(s503); // panic-mode traffic that fails: still broken
    expect(t.f.accrualState).toBe('busy');
    // The probe's late answer belongs to the period that ended: it changes nothing.
    (await t.ep.nextCall()).respond(res(200));
    await probe;
    expect(t.f.accrualState).toBe('busy');
    expect(t.f.snapshot().busyForMs).toBe(5_000);
  });

  it('calls sent while busy (panic mode) neither revive nor extend it', async () => {
    const t = setup({}, fixed(0));
    await t.sendN(5, s503);
    const until = t.f.snapshot().busyUntil;
    await t.sendN(10, ok);
    await t.sendN(10, s503);
    expect(t.f.snapshot()).toMatchObject({ state: 'busy', busyUntil: until, timesMarkedBusy: 1 });
  });

  it('outcomes of calls that started in an earlier state are ignored', async () => {
    const t = setup({}, fixed(0));
    const early = [t.send('hold'), t.send('hold'), t.send('hold')];
    await t.sendN(5, s503);
    t.clock.advance(2_500);
    expect(t.f.accrualState).toBe('probing');
    for (const call of t.ep.calls) if (!call.settled) call.fail(transportError());
    await Promise.all(early);
    expect(t.f.accrualState).toBe('probing');
    expect(t.f.status).toBe('ready');
  });

  it('P2C sends exactly one probe to a probing endpoint, however many picks come in a burst', async () => {
    const clock = new FakeClock();
    const rng = seededRng(7);
    const eps = Array.from({ length: 4 }, () => mockService());
    const filters = eps.map((ep, i) =>
      failureAccrualOf(
        failureAccrualModule.make(ep.service, {
          level: 'endpoint',
          target: { ...targetOf('endpoint'), address: `n${i}` },
          params: Params.empty,
          clock,
          rng,
          logger: silentLogger,
        }),
      )!,
    );
    const nodes: BalancerNode[] = filters.map((f, i) => ({
      id: `n${i}`,
      weight: 1,
      load: new PendingLoad(),
      get status() {
        return f.status;
      },
    }));
    // Node 0 fails five times, sits out its backoff, and is probing with no load: the cheapest node.
    answer(eps[0]!.handle, s503);
    for (let i = 0; i < 5; i++) await filters[0]!.call(request(), context()).then((r) => r.body.resume());
    clock.advance(5_000);
    expect(filters[0]!.status).toBe('ready');
    const p2c = new P2CDistributor<BalancerNode>({ clock, rng });
    p2c.update(nodes);
    for (const ep of eps) ep.handle.onCall = undefined; // every call waits
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 1_000; i++) {
      const node = p2c.pick()!;
      const k = nodes.indexOf(node);
      counts[k]!++;
      node.load.start(clock.now());
      void filters[k]!.call(request(), context());
    }
    expect(counts[0]).toBe(1);
    expect(eps[0]!.handle.calls).toHaveLength(6);
    expect(counts[1]! + counts[2]! + counts[3]!).toBe(999);
    expect(p2c.panicking).toBe(false);
  });
});

describe('failure accrual: pass-through', () => {
  it('returns the response and its body untouched (never read, never buffered)', async () => {
    const t = setup();
    const body = new PassThrough();
    const r = res(200, ['x-a', '1'], body);
    answer(t.ep, () => r);
    const got = await t.f.call(request(), context());
    expect(got).toBe(r);
    expect(got.body).toBe(body);
    expect(body.readableFlowing).toBe(null); // nobody started reading
    body.end('hello');
    const chunks: Buffer[] = [];
    for await (const c of got.body) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).toString()).toBe('hello');
  });

  it('reports the status below when it is worse; close() closes what is below', async () => {
    const t = setup();
    t.ep.status = 'down';
    expect(t.f.status).toBe('down');
    t.ep.status = 'busy';
    expect(t.f.status).toBe('busy');
    await t.f.close();
    expect(t.ep.closed).toBe(true);
  });

  it('listeners can be disposed; one that throws is logged and skipped', async () => {
    const log = memoryLogger();
    const t = setup({}, fixed(0), undefined, log.logger);
    const seen: string[] = [];
    const sub = t.f.onTransition((x) => seen.push(x.to));
    t.f.onTransition(() => {
      throw new Error('bad listener');
    });
    await t.sendN(5, s503);
    sub.dispose();
    t.clock.advance(2_500);
    void t.f.status;
    expect(seen).toEqual(['busy']);
    expect(t.transitions.map((x) => x.to)).toEqual(['busy', 'probing']);
    expect(log.lines.filter((l) => /listener threw/.test(l.msg ?? ''))).toHaveLength(2);
    expect(log.lines.some((l) => l.level === 'info' && /marked busy/.test(l.msg ?? ''))).toBe(true);
  });
});

describe('failure accrual: options', () => {
  const path = 'services.users.failureAccrual';

  it('has the documented defaults; true and undefined give them; false disables', () => {
    expect(FAILURE_ACCRUAL_DEFAULTS).toEqual({
      consecutiveFailures: 5,
      successRate: 0.8,
      successRateWindowMs: 30_000,
      minRequests: 5,
      backoffBaseMs: 5_000,
      backoffMaxMs: 300_000,
      probeSuccesses: 1,
    });
    expect(resolveFailureAccrualOptions(undefined, path)).toBe(FAILURE_ACCRUAL_DEFAULTS);
    expect(resolveFailureAccrualOptions(true, path)).toBe(FAILURE_ACCRUAL_DEFAULTS);
    expect(resolveFailureAccrualOptions(false, path)).toBe(false);
    expect(resolveFailureAccrualOptions({ consecutiveFailures: 3 }, path)).toEqual({
      ...FAILURE_ACCRUAL_DEFAULTS,
      consecutiveFailures: 3,
    });
    expect(FailureAccrualParam.defaultValue).toBe(FAILURE_ACCRUAL_DEFAULTS);
  });

  it('false leaves the module out of the stack', () => {
    const { service: ep } = mockService();
    const made = failureAccrualModule.make(ep, {
      level: 'endpoint',
      target: targetOf('endpoint'),
      params: Params.empty.with(FailureAccrualParam, false),
      clock: new FakeClock(),
      rng: fixed(0),
      logger: silentLogger,
    });
    expect(made).toBe(ep);
    expect(failureAccrualOf(made)).toBeUndefined();
    expect(failureAccrualModule.role).toBe('failure-accrual');
  });

  it.each([
    [{ consecutiveFailures: 1.5 }, 'consecutiveFailures', /an integer >= 0/],
    [{ consecutiveFailures: -1 }, 'consecutiveFailures', /an integer >= 0/],
    [{ successRate: 2 }, 'successRate', /<= 1/],
    [{ successRate: Number.NaN }, 'successRate', /a finite number/],
    [{ successRateWindowMs: 0 }, 'successRateWindowMs', /> 0/],
    [{ minRequests: 0 }, 'minRequests', /an integer >= 1/],
    [{ backoffBaseMs: '5s' }, 'backoffBaseMs', /a finite number > 0/],
    [{ backoffMaxMs: Infinity }, 'backoffMaxMs', /a finite number/],
    [{ backoffBaseMs: 10_000, backoffMaxMs: 5_000 }, 'backoffMaxMs', /backoffBaseMs/],
    [{ probeSuccesses: 0 }, 'probeSuccesses', /an integer >= 1/],
    [{ consecutiveFailure: 3 }, 'consecutiveFailure', /a known option/],
  ])('rejects %j with a ConfigError naming the field', (input, field, expected) => {
    const e = (() => {
      try {
        resolveFailureAccrualOptions(input as FailureAccrualOptions, path);
      } catch (err) {
        return err;
      }
      return undefined;
    })();
    expect(e).toBeInstanceOf(ConfigError);
    expect((e as ConfigError).path).toBe(`${path}.${field}`);
    expect((e as ConfigError).message).toMatch(expected);
  });

  it.each([[null], ['yes'], [[1]], [5]])('rejects %j as a whole', (input) => {
    expect(() => resolveFailureAccrualOptions(input as never, path)).toThrow(
      expect.objectContaining({ path, code: 'MESH_CONFIG' }),
    );
  });

  it('accepts every valid combination unchanged (property)', () => {
    fc.assert(
      fc.property(
        fc.record(
          {
            consecutiveFailures: fc.nat(100),
            successRate: fc.double({ min: 0, max: 1, noNaN: true }),
            successRateWindowMs: fc.double({ min: 1, max: 1e7, noNaN: true }),
            minRequests: fc.integer({ min: 1, max: 1_000 }),
            backoffBaseMs: fc.double({ min: 1, max: 1e5, noNaN: true }),
            probeSuccesses: fc.integer({ min: 1, max: 10 }),
          },
          { requiredKeys: [] },
        ),
        (o) => {
          const r = resolveFailureAccrualOptions(o, path);
          expect(r).toEqual({ ...FAILURE_ACCRUAL_DEFAULTS, ...o, backoffMaxMs: 300_000 });
        },
      ),
    );
  });
});

describe('OutcomeWindow', () => {
  it('matches a model that keeps every outcome, at slice granularity (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 10, max: 100_000 }),
        fc.array(fc.tuple(fc.nat(20_000), fc.boolean()), { maxLength: 200 }),
        (windowMs, steps) => {
          const w = new OutcomeWindow(windowMs);
          const slice = windowMs / 10;
          const events: Array<[number, boolean]> = [];
          let now = 0;
          for (const [dt, success] of steps) {
            now += dt;
            w.record(success, now);
            events.push([now, success]);
            const k = Math.floor(now / slice);
            const live = events.filter(([t]) => Math.floor(t / slice) > k - 10);
            const okCount = live.filter(([, s]) => s).length;
            expect(w.total(now)).toBe(live.length);
            expect(w.failures(now)).toBe(live.length - okCount);
            expect(w.successRate(now)).toBeCloseTo(live.length === 0 ? 1 : okCount / live.length, 12);
          }
        },
      ),
    );
  });

  it('reset forgets everything', () => {
    const w = new OutcomeWindow(1_000);
    w.record(false, 5);
    w.reset();
    expect(w.total(5)).toBe(0);
    expect(w.successRate(5)).toBe(1);
  });
});
